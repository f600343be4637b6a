"""Metadata (key 3), versions 0-12.

Brokers, controller id, cluster id, and per topic its id and partitions (leader,
leader epoch, replicas, ISR). A null topic list means all topics (v1+; v0's empty
list means all too); internal topics are listed only when asked for by name, as
Kafka does for `__consumer_offsets` in practice for clients' "list topics".

Unknown topics are created when the request allows it (v4+ flag; always for v0-3)
and `auto.create.topics.enable` is true. Kafka answers the first such request with
LEADER_NOT_AVAILABLE while the controller works; kafkette creates the topic
synchronously and answers with the new topic at once, which clients accept (it
spares them a retry). Topic ids (v10+) may be asked for instead of names.

ACLs (KafkaApis): topics without DESCRIBE are left out of an all-topics answer and
answer TOPIC_AUTHORIZATION_FAILED when named (existing or not, so nothing leaks);
auto-creation needs CREATE on the cluster or on the topic (TOPIC_AUTHORIZATION_FAILED
otherwise); the authorized-operations bit sets (v8+) are the principal's.
"""
import uuid

from kafkette.broker import authorization as authz
from kafkette.broker.broker import INTERNAL_TOPICS
from kafkette.broker.handlers.common import (
    CLUSTER_AUTHORIZED_OPERATIONS,
    NO_OPERATIONS,
    TOPIC_AUTHORIZED_OPERATIONS,
    client_controller_id,
    error_of,
)
from kafkette.broker.registry import handler
from kafkette.controller.acls import CLUSTER, CLUSTER_NAME, CREATE, DESCRIBE, TOPIC
from kafkette.controller.controller import validate_topic_name
from kafkette.controller.quorum import run_now
from kafkette.errors import ErrorCode, KafkaError, TopicAlreadyExistsError
from kafkette.logging import get_logger
from kafkette.protocol.messages import MetadataResponse

log = get_logger("kafkette.metadata")
Topic = MetadataResponse.MetadataResponseTopic
Part = MetadataResponse.MetadataResponseTopic.MetadataResponsePartition
ZERO = uuid.UUID(int=0)


def topic_response(t, include_ops: bool, offline: frozenset = frozenset(),
                   ctx=None, local_offline=None) -> Topic:
    """`offline`: fenced brokers. A partition without a leader (its only replica is
    fenced, RF=1) is LEADER_NOT_AVAILABLE with leader -1, as Kafka answers. `ctx`:
    the request, whose principal's authorized operations are given (all without).
    `local_offline`: (this node's id, its partitions in an offline log dir, KIP-112),
    where this node is listed as an offline replica. Only this node knows them: the
    controller is not told (no BrokerHeartbeat offline_log_dirs, KIP-858), so other
    brokers' answers do not list them and the leadership does not move."""
    ops = NO_OPERATIONS
    if include_ops:
        ops = (TOPIC_AUTHORIZED_OPERATIONS if ctx is None else
               authz.authorized_operations(ctx, TOPIC, t.name, TOPIC_AUTHORIZED_OPERATIONS))
    me, mine = local_offline if local_offline else (None, ())
    return Topic(
        error_code=0, name=t.name, topic_id=t.topic_id, is_internal=t.name in INTERNAL_TOPICS,
        partitions=[Part(error_code=ErrorCode.LEADER_NOT_AVAILABLE if p.leader < 0 else 0,
                         partition_index=p.partition, leader_id=p.leader,
                         leader_epoch=p.leader_epoch, replica_nodes=list(p.replicas),
                         isr_nodes=list(p.isr),
                         offline_replicas=[r for r in p.replicas if r in offline or (
                             r == me and (t.name, p.partition) in mine)])
                    for p in sorted(t.partitions.values(), key=lambda p: p.partition)],
        topic_authorized_operations=ops)


def _denied(name, topic_id=ZERO) -> Topic:
    return Topic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=name,
                 topic_id=topic_id, is_internal=False, partitions=[])


def _auto_create(broker, name: str) -> bool:
    """Create `name`; True when it exists now. A cluster node asks the active
    controller in the background and the topic is answered LEADER_NOT_AVAILABLE
    meanwhile, as Kafka does; a single node creates it synchronously."""
    cfg = broker.config
    validate_topic_name(name)
    if broker.cluster is not None:
        broker.cluster.create_topic_in_background(
            name, cfg["num.partitions"], cfg["default.replication.factor"], {})
        return False
    try:
        run_now(broker.controller.create_topic(
            name, -1, -1, {}, default_partitions=cfg["num.partitions"],
            default_replication_factor=cfg["default.replication.factor"]))
        log.info("topic auto-created", topic=name)
    except TopicAlreadyExistsError:
        pass
    return True


def _touches(ctx, request):
    if request.topics is None:
        return [(name, None) for name in ctx.broker.image.topics]
    return [(t.name, None) for t in request.topics]


def _mark_faults(resp, unavailable: set, error_code: int, error_scope):
    """Injected faults (broker/faults.py) show per topic: the handler answers and the
    matching topics get the error code (brokers and cluster id stay, so clients keep
    their bootstrap); a partition without a leader shows leader -1 with
    LEADER_NOT_AVAILABLE, as while Kafka elects a new leader."""
    for t in resp.topics:
        if error_code and (error_scope is None or error_scope.covers(t.name, None)):
            t.error_code = error_code
        for p in t.partitions:
            if (t.name, p.partition_index) in unavailable:
                p.leader_id = -1
                p.error_code = ErrorCode.LEADER_NOT_AVAILABLE
    return resp


@handler(3, 0, 12, touches=_touches, mark_faults=_mark_faults)
def handle(ctx, request):
    broker = ctx.broker
    version = ctx.api_version
    include_ops = bool(request.include_topic_authorized_operations)
    allow_auto = request.allow_auto_topic_creation if version >= 4 else True
    allow_auto = allow_auto and broker.config["auto.create.topics.enable"]
    topics = []
    image = broker.image
    offline = frozenset(b.node_id for b in image.brokers.values() if b.fenced)
    mine = broker.replica_manager.offline_partitions
    local_offline = (broker.node_id, mine) if mine else None
    if version < 12 and request.topics and any(
            rt.name is None or rt.topic_id != ZERO for rt in request.topics):
        # v10/v11 carry a topic id field but Kafka serves id lookups from v12 only (the
        # response name is not nullable before v12): the whole request gets
        # INVALID_REQUEST, each topic with its name or "" (KafkaApis + MetadataRequest.
        # getErrorResponse).
        return MetadataResponse(brokers=[], topics=[
            Topic(error_code=ErrorCode.INVALID_REQUEST, name=rt.name or "",
                  topic_id=rt.topic_id, partitions=[]) for rt in request.topics])
    if request.topics is None or (version == 0 and not request.topics):
        topics = [topic_response(t, include_ops, offline, ctx, local_offline)
                  for name, t in sorted(image.topics.items())
                  if name not in INTERNAL_TOPICS and authz.authorize(ctx, DESCRIBE, TOPIC, name)]
    else:
        for rt in request.topics:
            name = rt.name
            if name is None:
                # Lookup by topic id (KIP-516, v10+).
                name = image.topics_by_id.get(rt.topic_id)
                if name is None:
                    topics.append(Topic(error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None,
                                        topic_id=rt.topic_id, partitions=[]))
                    continue
                if not authz.authorize(ctx, DESCRIBE, TOPIC, name):
                    topics.append(_denied(None, rt.topic_id))
                    continue
            elif not authz.authorize(ctx, DESCRIBE, TOPIC, name):
                topics.append(_denied(name))
                continue
            t = image.topics.get(name)
            if t is None and allow_auto and not (
                    authz.authorize_cluster(ctx, CREATE) or authz.authorize(ctx, CREATE, TOPIC, name)):
                topics.append(_denied(name))
                continue
            if t is None and allow_auto:
                try:
                    created = _auto_create(broker, name)
                except KafkaError as e:
                    code, _ = error_of(e)
                    topics.append(Topic(error_code=code, name=name, topic_id=ZERO, partitions=[]))
                    continue
                if not created:
                    topics.append(Topic(error_code=ErrorCode.LEADER_NOT_AVAILABLE, name=name,
                                        topic_id=ZERO, partitions=[]))
                    continue
                image = broker.image
                t = image.topics.get(name)
            if t is None:
                try:
                    validate_topic_name(name)
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                except KafkaError as e:
                    code = e.code
                topics.append(Topic(error_code=code, name=name, topic_id=ZERO, partitions=[]))
                continue
            topics.append(topic_response(t, include_ops, offline, ctx, local_offline))
    listener = ctx.listener
    brokers = []
    for b in sorted(image.brokers.values(), key=lambda b: b.node_id):
        if b.fenced:
            continue
        # Each broker's endpoint of the listener this request came on (KIP-103).
        host, port = b.address(listener)
        if b.node_id == broker.node_id and listener in broker.advertised:
            # Each listener advertises its own address (KIP-103).
            host, port = broker.advertised[listener]
        brokers.append(MetadataResponse.MetadataResponseBroker(
            node_id=b.node_id, host=host, port=port, rack=b.rack))
    return MetadataResponse(
        brokers=brokers, cluster_id=image.cluster_id, controller_id=client_controller_id(image),
        topics=topics,
        cluster_authorized_operations=(
            authz.authorized_operations(ctx, CLUSTER, CLUSTER_NAME, CLUSTER_AUTHORIZED_OPERATIONS)
            if request.include_cluster_authorized_operations else NO_OPERATIONS))
