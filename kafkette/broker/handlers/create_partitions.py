"""CreatePartitions (key 37), versions 0-3: grow a topic's partition count.

Fewer or equal partitions → INVALID_PARTITIONS; unknown topic →
UNKNOWN_TOPIC_OR_PARTITION; validate_only creates nothing. Every topic of the
request gets a result (Tansu once answered with an empty list and broke clients).
New partitions are placed rack-aware by the controller, or as the request's
assignments say (one per new partition, each checked as CreateTopics' manual
assignments: INVALID_REPLICA_ASSIGNMENT).
"""
from collections import Counter

from kafkette.broker import authorization as authz
from kafkette.controller.acls import ALTER, TOPIC
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import CreatePartitionsResponse

Result = CreatePartitionsResponse.CreatePartitionsTopicResult


def _error_response(request, code, ctx, message=None):
    return CreatePartitionsResponse(results=[
        Result(name=t.name, error_code=code, error_message=message) for t in request.topics])


# Sent to the active controller by the broker that receives it (broker/cluster.py); the
# error response is what the client gets when no controller could serve it.
@handler(37, 0, 3, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    controller = ctx.broker.controller
    counts = Counter(t.name for t in request.topics)
    results = []
    for t in request.topics:
        res = Result(name=t.name, error_code=0, error_message=None)
        try:
            if not authz.authorize(ctx, ALTER, TOPIC, t.name):   # KafkaApis: ALTER topic
                raise KafkaError("Topic authorization failed.",
                                 ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            if counts[t.name] > 1:
                raise KafkaError(f"Duplicate topic {t.name} in the request",
                                 ErrorCode.INVALID_REQUEST)
            assignments = (None if t.assignments is None
                           else [a.broker_ids for a in t.assignments])
            await controller.create_partitions(t.name, t.count, assignments=assignments,
                                               validate_only=request.validate_only)
        except KafkaError as e:
            res.error_code, res.error_message = error_of(e)
        results.append(res)
    if ctx.broker.cluster is None and not request.validate_only:
        # As CreateTopics: writable once answered (the logs come in slices).
        await ctx.broker.replica_manager.wait_hosted(max(request.timeout_ms, 0) / 1000)
    return CreatePartitionsResponse(results=results)
