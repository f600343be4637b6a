"""ListOffsets (key 2), versions 1-9.

Timestamps: -2 earliest (log start offset), -1 latest (the high watermark, i.e.
last offset + 1; for read_committed the last stable offset, equal today), -3 the
record with the largest timestamp (KIP-734), -4 earliest local (KIP-1005: equal to
earliest without tiered storage); any other value: the first offset whose timestamp
is >= it, found with the time index; none → offset -1, timestamp -1 (as Kafka).
"""
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import handler
from kafkette.errors import KafkaError
from kafkette.protocol.messages import ListOffsetsResponse

TopicResp = ListOffsetsResponse.ListOffsetsTopicResponse
PartResp = ListOffsetsResponse.ListOffsetsTopicResponse.ListOffsetsPartitionResponse


@handler(2, 1, 9)
def handle(ctx, request):
    rm = ctx.broker.replica_manager
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            try:
                offset, timestamp, epoch = rm.offset_for(t.name, p.partition_index, p.timestamp,
                                                         p.current_leader_epoch,
                                                         request.replica_id)
                parts.append(PartResp(partition_index=p.partition_index, error_code=0,
                                      timestamp=timestamp, offset=offset, leader_epoch=epoch))
            except KafkaError as e:
                code, _ = error_of(e)
                parts.append(PartResp(partition_index=p.partition_index, error_code=code,
                                      timestamp=-1, offset=-1))
        topics.append(TopicResp(name=t.name, partitions=parts))
    return ListOffsetsResponse(topics=topics)
