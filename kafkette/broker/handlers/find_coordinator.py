"""FindCoordinator (key 10), versions 0-6 (v4+ batches several keys, KIP-699).

Group keys (key_type 0): the coordinator is the leader of the group's partition of
`__consumer_offsets` (hash(group) % its partition count), as in Kafka: on one node
that is this node; in a cluster, COORDINATOR_NOT_AVAILABLE while the topic is being
created or the partition is offline (clients retry).
Transaction keys (key_type 1): the leader of the id's partition of
`__transaction_state` (created on first use), the same way. Other key types (share
groups, KIP-932): INVALID_REQUEST.

Listing FindCoordinator matters beyond groups: librdkafka enables lz4 only when the
broker lists FindCoordinator v0 (its feature map ties lz4 to the 0.9 API set).
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, TRANSACTIONAL_ID
from kafkette.controller.acls import GROUP as ACL_GROUP
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import FindCoordinatorResponse

GROUP, TRANSACTION = 0, 1


def _lookup(ctx, key: str, key_type: int):
    """(error code, message, node id, host, port) for one key."""
    broker = ctx.broker
    # KafkaApis: DESCRIBE on the group / transactional id before anything else.
    if key_type == GROUP and not authz.authorize(ctx, DESCRIBE, ACL_GROUP, key):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, None, -1, "", -1
    if key_type == TRANSACTION and not authz.authorize(ctx, DESCRIBE, TRANSACTIONAL_ID, key):
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None, -1, "", -1
    if key_type == GROUP:
        if not key and ctx.api_version < 4:
            # Kafka: an empty group id is invalid (INVALID_GROUP_ID) for lookups.
            return ErrorCode.INVALID_GROUP_ID, "The group id is empty", -1, "", -1
        # Creates __consumer_offsets on first use (in the background in a cluster).
        node = (broker.group_coordinator_node(key)
                if broker.group_coordinator_ready() is not None else None)
    elif key_type == TRANSACTION:
        if not key:
            return ErrorCode.INVALID_REQUEST, "The transactional id is empty", -1, "", -1
        # Creates __transaction_state on first use, as Kafka does.
        node = (broker.txn_coordinator_node(key)
                if broker.txn_coordinator_ready() is not None else None)
    else:
        return ErrorCode.INVALID_REQUEST, f"unsupported key type {key_type}", -1, "", -1
    if node == broker.node_id:
        host, port = broker.advertised.get(ctx.listener, next(iter(broker.advertised.values())))
        return ErrorCode.NONE, None, node, host, port
    b = broker.image.brokers.get(node) if node is not None else None
    if b is None or b.fenced:
        return (ErrorCode.COORDINATOR_NOT_AVAILABLE,
                "The coordinator is not available.", -1, "", -1)
    host, port = b.address(ctx.listener)   # on the listener the client asked on (KIP-103)
    return ErrorCode.NONE, None, b.node_id, host, port


def _error_response(request, code, ctx, message=None):
    C = FindCoordinatorResponse.Coordinator
    return FindCoordinatorResponse(error_code=code, error_message=message, node_id=-1,
                                   host="", port=-1,
                                   coordinators=[C(key=k, node_id=-1, host="", port=-1,
                                                   error_code=code, error_message=message)
                                                 for k in (request.coordinator_keys or [])])


@handler(10, 0, 6, error_response=_error_response)
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
