"""FindCoordinator (key 10), versions 0-6 (v4+ batches several keys, KIP-699).

Group keys (key_type 0): the coordinator is this node — on one node it leads every
partition of `__consumer_offsets`; with a cluster it becomes the leader of
partition hash(group) % offsets.topic.num.partitions, as in Kafka.
Transaction keys (key_type 1): COORDINATOR_NOT_AVAILABLE until transactions land
(what Kafka answers while it cannot host `__transaction_state`). Other key types
(share groups, KIP-932): INVALID_REQUEST.

Listing FindCoordinator matters beyond groups: librdkafka enables lz4 only when the
broker lists FindCoordinator v0 (its feature map ties lz4 to the 0.9 API set).
"""
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import FindCoordinatorResponse

GROUP, TRANSACTION = 0, 1


def _lookup(ctx, key: str, key_type: int):
    """(error code, message, node id, host, port) for one key."""
    if key_type == GROUP:
        if not key and ctx.api_version < 4:
            # Kafka: an empty group id is invalid (INVALID_GROUP_ID) for lookups.
            return ErrorCode.INVALID_GROUP_ID, "The group id is empty", -1, "", -1
        ctx.broker.group_coordinator_ready()  # creates __consumer_offsets on first use
        host, port = ctx.broker.advertised.get(ctx.listener,
                                               next(iter(ctx.broker.advertised.values())))
        return ErrorCode.NONE, None, ctx.broker.node_id, host, port
    if key_type == TRANSACTION:
        return (ErrorCode.COORDINATOR_NOT_AVAILABLE, "transactions are not supported yet",
                -1, "", -1)
    return ErrorCode.INVALID_REQUEST, f"unsupported key type {key_type}", -1, "", -1


@handler(10, 0, 6)
def handle(ctx, request):
    if ctx.api_version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            code, msg, node, host, port = _lookup(ctx, key, request.key_type)
            coordinators.append(FindCoordinatorResponse.Coordinator(
                key=key, node_id=node, host=host, port=port, error_code=code,
                error_message=msg))
        return FindCoordinatorResponse(coordinators=coordinators)
    code, msg, node, host, port = _lookup(ctx, request.key, request.key_type)
    return FindCoordinatorResponse(error_code=code, error_message=msg, node_id=node,
                                   host=host, port=port)
