"""DeleteRecords (key 21), versions 0-2 (flexible from 2), as Kafka 4.0 serves them.

Per partition: move the log start offset forward to the requested offset (-1 means the
high watermark) and delete the segments now wholly below it; the answer's
low_watermark is the new log start offset. ListOffsets earliest and Fetch's
OFFSET_OUT_OF_RANGE follow the log start offset at once.

Errors, as Kafka's Partition.deleteRecordsOnLeader / ReplicaManager give them:
UNKNOWN_TOPIC_OR_PARTITION for a partition the metadata does not have;
INVALID_TOPIC_EXCEPTION for internal topics; NOT_LEADER_OR_FOLLOWER when this broker
does not lead it; POLICY_VIOLATION when cleanup.policy lacks "delete";
OFFSET_OUT_OF_RANGE for an offset past the high watermark or negative (other than -1).
An offset below the current log start offset is no error: nothing moves. Errors carry
low_watermark -1.

Kafka answers only once every replica's log start offset has reached the offset
(DelayedDeleteRecords in purgatory, bounded by timeout_ms); kafkette answers once the
leader has moved it (followers follow in their next fetch), so timeout_ms is unused. No authorization (ACLs).
"""
from kafkette.broker.broker import INTERNAL_TOPICS
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import DeleteRecordsResponse

TopicResult = DeleteRecordsResponse.DeleteRecordsTopicResult
PartResult = DeleteRecordsResponse.DeleteRecordsTopicResult.DeleteRecordsPartitionResult
HIGH_WATERMARK = -1  # DeleteRecordsRequest.HIGH_WATERMARK
INVALID_LOW_WATERMARK = -1


def _delete(ctx, name: str, index: int, offset: int) -> int:
    """The new low watermark, or raises a KafkaError."""
    t = ctx.broker.image.topics.get(name)
    if t is None or index not in t.partitions:
        raise KafkaError(code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if name in INTERNAL_TOPICS:
        raise KafkaError(f"Cannot delete records of internal topic {name}",
                         ErrorCode.INVALID_TOPIC_EXCEPTION)
    return ctx.broker.replica_manager.delete_records(name, index, offset)


@handler(21, 0, 2)
def handle(ctx, request):
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            try:
                low, code = _delete(ctx, t.name, p.partition_index, p.offset), 0
            except KafkaError as e:
                low, (code, _) = INVALID_LOW_WATERMARK, error_of(e)
            parts.append(PartResult(partition_index=p.partition_index, low_watermark=low,
                                    error_code=code))
        topics.append(TopicResult(name=t.name, partitions=parts))
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics)
