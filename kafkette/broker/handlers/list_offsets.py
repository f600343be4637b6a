"""ListOffsets (key 2), versions 1-9.

Timestamps: -2 earliest (log start offset), -1 latest (the high watermark, i.e.
last offset + 1; for read_committed the last stable offset, equal today), -3 the
record with the largest timestamp (KIP-734), -4 earliest local (KIP-1005: equal to
earliest without tiered storage); any other value: the first offset whose timestamp
is >= it, found with the time index; none → offset -1, timestamp -1 (as Kafka).
"""
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import ListOffsetsResponse

TopicResp = ListOffsetsResponse.ListOffsetsTopicResponse
PartResp = ListOffsetsResponse.ListOffsetsTopicResponse.ListOffsetsPartitionResponse
LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5


@handler(2, 1, 9)
def handle(ctx, request):
    rm = ctx.broker.replica_manager
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            try:
                part = rm.partition(t.name, p.partition_index)
                if p.current_leader_epoch >= 0 and p.current_leader_epoch != part.leader_epoch:
                    # KIP-320: the client's view of the leader is stale or ahead.
                    code = (ErrorCode.FENCED_LEADER_EPOCH
                            if p.current_leader_epoch < part.leader_epoch
                            else ErrorCode.UNKNOWN_LEADER_EPOCH)
                    raise KafkaError(code=code)
                plog = part.log
                ts = p.timestamp
                offset, timestamp = -1, -1
                if ts == LATEST:
                    offset = plog.high_watermark
                elif ts in (EARLIEST, EARLIEST_LOCAL):
                    offset = plog.log_start_offset
                elif ts == LATEST_TIERED:
                    offset = -1
                elif ts == MAX_TIMESTAMP:
                    found = plog.max_timestamp()
                    if found is not None:
                        timestamp, offset = found
                else:
                    found = plog.offset_for_timestamp(ts)
                    if found is not None:
                        offset, timestamp = found
                parts.append(PartResp(partition_index=p.partition_index, error_code=0,
                                      timestamp=timestamp, offset=offset,
                                      leader_epoch=part.leader_epoch))
            except KafkaError as e:
                code, _ = error_of(e)
                parts.append(PartResp(partition_index=p.partition_index, error_code=code,
                                      timestamp=-1, offset=-1))
        topics.append(TopicResp(name=t.name, partitions=parts))
    return ListOffsetsResponse(topics=topics)
