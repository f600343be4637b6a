"""DeleteTopics (key 20), versions 1-6, by name (all versions) or by topic id (v6).

The topic leaves the metadata at once and its partition logs are removed (Kafka
renames them with a `-delete` suffix and deletes them later). With
`delete.topic.enable=false` every deletion gets TOPIC_DELETION_DISABLED.
"""
import uuid

from kafkette.broker import authorization as authz
from kafkette.controller.acls import DELETE, TOPIC
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import DeleteTopicsResponse

Result = DeleteTopicsResponse.DeletableTopicResult
ZERO = uuid.UUID(int=0)


def _error_response(request, code, ctx, message=None):
    if request.topics:   # v6+: by name or id
        return DeleteTopicsResponse(responses=[
            Result(name=t.name, topic_id=t.topic_id, error_code=code, error_message=message)
            for t in request.topics])
    return DeleteTopicsResponse(responses=[
        Result(name=n, error_code=code, error_message=message) for n in request.topic_names])


# Sent to the active controller by the broker that receives it (broker/cluster.py); the
# error response is what the client gets when no controller could serve it.
@handler(20, 1, 6, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    broker = ctx.broker
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id if t.topic_id != ZERO else None) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    for name, tid in wanted:
        res = Result(name=name, topic_id=tid or ZERO, error_code=0)
        try:
            # KafkaApis: DELETE on each topic (by id: on the topic the id names).
            target = name if tid is None else broker.image.topics_by_id.get(tid)
            if target is not None and not authz.authorize(ctx, DELETE, TOPIC, target):
                raise KafkaError("Topic authorization failed.",
                                 ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            if not broker.config["delete.topic.enable"]:
                raise KafkaError("Topic deletion is disabled.", ErrorCode.TOPIC_DELETION_DISABLED)
            t = broker.image.topics.get(name) if name is not None else None
            deleted = await broker.controller.delete_topic(name if tid is None else None, tid)
            res.name = deleted
            if t is not None:
                res.topic_id = t.topic_id
        except KafkaError as e:
            res.error_code, res.error_message = error_of(e)
        results.append(res)
    return DeleteTopicsResponse(responses=results)
