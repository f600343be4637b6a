"""OffsetForLeaderEpoch (key 23), versions 2-4 (as Kafka 4.0 serves them, KIP-896).

For each partition: the end offset of the requested leader epoch in the leader's log,
from its leader-epoch cache (log/leader_epoch.py): the start offset of the next larger
epoch, or the log end offset for the current epoch; an epoch between two known ones
answers the largest known epoch below it; an unknown (older) epoch answers epoch -1,
offset -1. Consumers use it after a leader change to detect a truncated log (KIP-320);
followers use DivergingEpoch in Fetch instead (KIP-279), as Kafka's do.

Errors: NOT_LEADER_OR_FOLLOWER from a non-leader, UNKNOWN_TOPIC_OR_PARTITION,
FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH for a stale or future current_leader_epoch.
"""
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import handler
from kafkette.errors import KafkaError
from kafkette.protocol.messages import OffsetForLeaderEpochResponse

TopicResp = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult
PartResp = TopicResp.EpochEndOffset


@handler(23, 2, 4)
def handle(ctx, request):
    rm = ctx.broker.replica_manager
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            try:
                epoch, end = rm.end_offset_for_epoch(t.topic, p.partition, p.leader_epoch,
                                                     p.current_leader_epoch)
                parts.append(PartResp(error_code=0, partition=p.partition, leader_epoch=epoch,
                                      end_offset=end))
            except KafkaError as e:
                parts.append(PartResp(error_code=error_of(e)[0], partition=p.partition,
                                      leader_epoch=-1, end_offset=-1))
        topics.append(TopicResp(topic=t.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)
