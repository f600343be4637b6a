"""DescribeTopicPartitions (key 75), version 0 (KIP-966): partitions with their leader,
leader epoch, replicas, ISR, eligible leader replicas (ELR), last known ELR and
offline replicas, as the metadata image has them.

Topics by name (an empty list: every topic, internal ones included), in name order;
`response_partition_limit` bounds the partitions of one answer (Kafka caps it at
max.request.partition.size.limit, 2000) and `next_cursor` names the first partition left
out, which the client sends back as `cursor` to page on, as Kafka's handler does. An
unknown topic is UNKNOWN_TOPIC_OR_PARTITION; a cursor naming a topic not asked for is
INVALID_REQUEST.
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, TOPIC
from kafkette.broker.broker import INTERNAL_TOPICS
from kafkette.broker.handlers.common import TOPIC_AUTHORIZED_OPERATIONS
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeTopicPartitionsResponse

Resp = DescribeTopicPartitionsResponse
Topic = Resp.DescribeTopicPartitionsResponseTopic
Part = Topic.DescribeTopicPartitionsResponsePartition
MAX_PARTITIONS = 2000  # max.request.partition.size.limit


@handler(75, 0, 0)
def handle(ctx, request):
    image = ctx.broker.image
    names = sorted({t.name for t in request.topics}) if request.topics else sorted(image.topics)
    # KafkaApis: DESCRIBE on each topic; left out of an all-topics answer,
    # TOPIC_AUTHORIZATION_FAILED when named.
    denied = set()
    if authz.enabled(ctx):
        denied = set(names) - authz.filter_authorized(ctx, DESCRIBE, TOPIC, names)
        if not request.topics:
            names = [n for n in names if n not in denied]
    cursor = request.cursor
    if cursor is not None:
        if cursor.topic_name not in names:
            # Kafka fails the request (InvalidRequestException); this answer has no
            # top-level error code, so every requested topic carries it.
            return Resp(throttle_time_ms=0, topics=[
                Topic(error_code=ErrorCode.INVALID_REQUEST, name=n, partitions=[])
                for n in names])
        names = names[names.index(cursor.topic_name):]
    limit = max(1, min(request.response_partition_limit, MAX_PARTITIONS))
    offline = frozenset(b.node_id for b in image.brokers.values() if b.fenced)
    # This node's replicas in an offline log dir (KIP-112), as Metadata lists them.
    me, mine = ctx.broker.node_id, ctx.broker.replica_manager.offline_partitions
    topics, next_cursor = [], None
    for name in names:
        if name in denied:
            topics.append(Topic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=name,
                                partitions=[]))
            continue
        t = image.topics.get(name)
        if t is None:
            topics.append(Topic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name,
                                partitions=[]))
            continue
        first = cursor.partition_index if cursor is not None and cursor.topic_name == name else 0
        parts = []
        for p in sorted(t.partitions.values(), key=lambda p: p.partition):
            if p.partition < first:
                continue
            if limit == 0:
                next_cursor = Resp.Cursor(topic_name=name, partition_index=p.partition)
                break
            limit -= 1
            parts.append(Part(
                error_code=ErrorCode.LEADER_NOT_AVAILABLE if p.leader < 0 else 0,
                partition_index=p.partition, leader_id=p.leader, leader_epoch=p.leader_epoch,
                replica_nodes=list(p.replicas), isr_nodes=list(p.isr),
                eligible_leader_replicas=list(p.elr), last_known_elr=list(p.last_known_elr),
                offline_replicas=[r for r in p.replicas if r in offline or (
                    r == me and (name, p.partition) in mine)]))
        topics.append(Topic(error_code=0, name=name, topic_id=t.topic_id,
                            is_internal=name in INTERNAL_TOPICS, partitions=parts,
                            topic_authorized_operations=authz.authorized_operations(
                                ctx, TOPIC, name, TOPIC_AUTHORIZED_OPERATIONS)))
        if next_cursor is not None:
            break
    return Resp(throttle_time_ms=0, topics=topics, next_cursor=next_cursor)
