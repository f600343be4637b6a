"""OffsetCommit (key 8), versions 2-9.

Members commit with their generation and member id (checked: ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID); a client that assigns
partitions itself commits with generation -1 and no member id ("simple" commits,
allowed while the group has no members). Offsets are written to `__consumer_offsets`
before the answer, so they survive a restart. The metadata string round-trips
through OffsetFetch. retention_time_ms (v2-4) is ignored, as Kafka does since 2.1
(KIP-211): offsets.retention.minutes applies.
"""
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import handler
from kafkette.coordinator.group_coordinator import OffsetCommit
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import OffsetCommitResponse

TopicResp = OffsetCommitResponse.OffsetCommitResponseTopic
PartResp = TopicResp.OffsetCommitResponsePartition


@handler(8, 2, 9)
def handle(ctx, request):
    coordinator = ensure_coordinator(ctx)
    image = ctx.broker.image
    now = ctx.broker.clock.time_ms()
    offsets = {}
    codes = {}
    for t in request.topics:
        topic = image.topics.get(t.name)
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if topic is None or p.partition_index not in topic.partitions:
                codes[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            offsets[tp] = OffsetCommit(
                offset=p.committed_offset,
                leader_epoch=p.committed_leader_epoch if ctx.api_version >= 6 else -1,
                metadata=p.committed_metadata, commit_timestamp=now)
    if offsets:
        codes.update(coordinator.commit_offsets(
            request.group_id, request.generation_id_or_member_epoch, request.member_id,
            request.group_instance_id if ctx.api_version >= 7 else None, offsets))
    return OffsetCommitResponse(topics=[
        TopicResp(name=t.name, partitions=[
            PartResp(partition_index=p.partition_index,
                     error_code=codes.get((t.name, p.partition_index), ErrorCode.NONE))
            for p in t.partitions])
        for t in request.topics])
