"""Small helpers shared by handlers."""
from kafkette.errors import ErrorCode, KafkaError

# Kafka's AclOperation codes; the "authorized operations" fields are bit sets of them.
# -2147483648 (Integer.MIN_VALUE) means "not requested".
NO_OPERATIONS = -2147483648
_READ, _WRITE, _CREATE, _DELETE, _ALTER, _DESCRIBE = 3, 4, 5, 6, 7, 8
_CLUSTER_ACTION, _DESCRIBE_CONFIGS, _ALTER_CONFIGS, _IDEMPOTENT_WRITE = 9, 10, 11, 12
TOPIC_AUTHORIZED_OPERATIONS = sum(1 << op for op in (
    _READ, _WRITE, _CREATE, _DELETE, _ALTER, _DESCRIBE, _DESCRIBE_CONFIGS, _ALTER_CONFIGS))
CLUSTER_AUTHORIZED_OPERATIONS = sum(1 << op for op in (
    _CREATE, _ALTER, _DESCRIBE, _CLUSTER_ACTION, _DESCRIBE_CONFIGS, _ALTER_CONFIGS,
    _IDEMPOTENT_WRITE))


def error_of(exc: Exception) -> tuple[int, str | None]:
    """(error code, message) for an exception raised by a domain layer."""
    if isinstance(exc, KafkaError):
        return int(exc.code), exc.message
    return int(ErrorCode.UNKNOWN_SERVER_ERROR), None


def leader_endpoints(ctx, node_ids, endpoint_cls) -> list:
    """KIP-951 NodeEndpoints of the given (new leader) brokers, for Produce v10+ and
    Fetch v16+ answers to NOT_LEADER_OR_FOLLOWER; unknown or fenced ones are left out."""
    out = []
    image = ctx.broker.image
    for node_id in sorted(node_ids):
        b = image.brokers.get(node_id)
        if b is None or b.fenced:
            continue
        host, port = b.address(getattr(ctx, "listener", None))   # the client's listener
        out.append(endpoint_cls(node_id=b.node_id, host=host, port=port, rack=b.rack))
    return out


def client_controller_id(image) -> int:
    """The controller id a client is given (Metadata, DescribeCluster). With dedicated
    controllers (process.roles=controller) the active controller is no broker, and a
    client cannot reach it (it opens no client listener): name the lowest-id live broker
    instead, which forwards admin requests to the controller. Kafka names a random
    alive broker in KRaft mode for the same reason (KIP-590); the lowest id keeps every
    broker's answer the same. -1 when there is no active controller or no live broker."""
    c = image.controller_id
    if c < 0 or c in image.brokers:
        return c
    live = sorted(b.node_id for b in image.brokers.values() if not b.fenced)
    return live[0] if live else -1
