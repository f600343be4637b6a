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

As Kafka (DelayedDeleteRecords), the answer waits until every replica on a live broker
has moved its log start offset that far: followers take the leader's in their next
fetch and report theirs in the one after. The low watermark answered is the smallest
log start offset over those replicas; a partition still waiting at timeout_ms gets
REQUEST_TIMED_OUT, one whose leadership moved meanwhile NOT_LEADER_OR_FOLLOWER (both
with low_watermark -1; the leader's records are deleted either way, as in Kafka). No
authorization (ACLs).
"""
import asyncio
import inspect

from kafkette.broker import authorization as authz
from kafkette.controller.acls import DELETE, TOPIC
from kafkette.broker.broker import INTERNAL_TOPICS
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import DeleteRecordsResponse

TopicResult = DeleteRecordsResponse.DeleteRecordsTopicResult
PartResult = DeleteRecordsResponse.DeleteRecordsTopicResult.DeleteRecordsPartitionResult
HIGH_WATERMARK = -1  # DeleteRecordsRequest.HIGH_WATERMARK
INVALID_LOW_WATERMARK = -1


def _delete(ctx, name: str, index: int, offset: int, timeout_ms: int):
    """The new low watermark (or an awaitable of (code, low watermark)); raises a
    KafkaError."""
    t = ctx.broker.image.topics.get(name)
    if t is None or index not in t.partitions:
        raise KafkaError(code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if name in INTERNAL_TOPICS:
        raise KafkaError(f"Cannot delete records of internal topic {name}",
                         ErrorCode.INVALID_TOPIC_EXCEPTION)
    return ctx.broker.replica_manager.delete_records(name, index, offset, timeout_ms)


@handler(21, 0, 2)
def handle(ctx, request):
    results = {}   # (topic, partition) -> (low watermark, code) or an awaitable of it
    deletable = authz.filter_authorized(ctx, DELETE, TOPIC, (t.name for t in request.topics))
    for t in request.topics:
        for p in t.partitions:
            if t.name not in deletable:   # KafkaApis: DELETE on the topic
                results[(t.name, p.partition_index)] = (ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                                        INVALID_LOW_WATERMARK)
                continue
            try:
                low = _delete(ctx, t.name, p.partition_index, p.offset, request.timeout_ms)
                results[(t.name, p.partition_index)] = low if inspect.isawaitable(low) \
                    else (ErrorCode.NONE, low)
            except KafkaError as e:
                results[(t.name, p.partition_index)] = (error_of(e)[0], INVALID_LOW_WATERMARK)
    waiting = {tp: r for tp, r in results.items() if inspect.isawaitable(r)}
    if waiting:
        return _after_followers(request, results, waiting)
    return _response(request, results)


async def _after_followers(request, results, waiting):
    done = await asyncio.gather(*waiting.values())
    results.update(zip(waiting, done))
    return _response(request, results)


def _response(request, results):
    return DeleteRecordsResponse(throttle_time_ms=0, topics=[
        TopicResult(name=t.name, partitions=[
            PartResult(partition_index=p.partition_index,
                       error_code=results[(t.name, p.partition_index)][0],
                       low_watermark=results[(t.name, p.partition_index)][1])
            for p in t.partitions])
        for t in request.topics])
