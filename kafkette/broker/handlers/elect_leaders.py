"""ElectLeaders (key 43), versions 0-2 (KIP-183; election types since v1, KIP-460).

PREFERRED (0; the only kind before v1) moves leadership back to each partition's
first replica where it is live and in sync; UNCLEAN (1) gives leaderless partitions
a leader, out of sync if need be. Per partition errors as KRaft: ELECTION_NOT_NEEDED,
PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
UNKNOWN_TOPIC_OR_PARTITION. A null topic list means every partition (those that
need no election are then left out of the answer). An unknown election type gets
INVALID_REQUEST, at the top level (v1+) and for every partition asked for.

In a cluster it is forwarded to the active controller like CreateTopics
(broker/cluster.py FORWARDED_APIS). Not done: ACLs (Kafka needs ALTER on CLUSTER).
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import ALTER
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import ElectLeadersResponse

Result = ElectLeadersResponse.ReplicaElectionResult
PartitionResult = ElectLeadersResponse.ReplicaElectionResult.PartitionResult


def error_response(request, code: int, ctx=None, message: str | None = None) -> ElectLeadersResponse:
    """Every partition asked for fails with `code` (Kafka's getErrorResponse)."""
    return ElectLeadersResponse(error_code=code, replica_election_results=[
        Result(topic=t.topic, partition_result=[
            PartitionResult(partition_id=p, error_code=code, error_message=message)
            for p in t.partitions])
        for t in request.topic_partitions or []])


# Sent to the active controller by the broker that receives it (broker/cluster.py); the
# error response is what the client gets when no controller could serve it.
@handler(43, 0, 2, route=ROUTE_CONTROLLER, error_response=error_response)
async def handle(ctx, request):
    if not authz.authorize_cluster(ctx, ALTER):   # KafkaApis: ALTER on the cluster
        return error_response(request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ctx)
    wanted = None
    if request.topic_partitions is not None:
        wanted = {}
        for t in request.topic_partitions:
            wanted.setdefault(t.topic, []).extend(t.partitions or [])
    election_type = request.election_type if ctx.api_version >= 1 else 0
    try:
        results = await ctx.broker.controller.elect_leaders(election_type, wanted)
    except KafkaError as e:
        code, message = error_of(e)
        return error_response(request, code, ctx, message)
    return ElectLeadersResponse(error_code=0, replica_election_results=[
        Result(topic=topic, partition_result=[
            PartitionResult(partition_id=p, error_code=code, error_message=message)
            for p, code, message in parts])
        for topic, parts in results.items()])
