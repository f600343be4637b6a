"""ListOffsets (key 2), versions 1-9.

Timestamps: -2 earliest (log start offset), -1 latest (the high watermark, i.e.
last offset + 1; for read_committed (v2+) the last stable offset), -3 the
record with the largest timestamp (KIP-734), -4 earliest local (KIP-1005: equal to
earliest without tiered storage); any other value: the first offset whose timestamp
is >= it, found with the time index; none → offset -1, timestamp -1 (as Kafka).
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, TOPIC
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import PartitionScope, handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import ListOffsetsResponse

TopicResp = ListOffsetsResponse.ListOffsetsTopicResponse
PartResp = ListOffsetsResponse.ListOffsetsTopicResponse.ListOffsetsPartitionResponse


def _part_error(index, code):
    return PartResp(partition_index=index, error_code=code, timestamp=-1, offset=-1,
                    leader_epoch=-1)


# Partition by partition, for fault rules that fail some partitions (broker/faults.py).
SCOPE = PartitionScope(
    request_topics="topics", request_partitions="partitions", request_index="partition_index",
    response_topics="topics", response_partitions="partitions",
    topic_name=lambda ctx, t: t.name, topic_key=lambda ctx, t: t.name,
    partition_error=_part_error,
    topic_response=lambda t, parts: TopicResp(name=t.name, partitions=parts),
    empty_response=lambda: ListOffsetsResponse(topics=[]))


def _touches(ctx, request):
    return [(t.name, p.partition_index) for t in request.topics for p in t.partitions]


def _error_response(request, code, ctx, message=None):
    return ListOffsetsResponse(topics=[
        TopicResp(name=t.name, partitions=[_part_error(p.partition_index, code)
                                           for p in t.partitions])
        for t in request.topics])


@handler(2, 1, 9, error_response=_error_response, touches=_touches,
         partition_scope=SCOPE)
def handle(ctx, request):
    rm = ctx.broker.replica_manager
    topics = []
    described = authz.filter_authorized(ctx, DESCRIBE, TOPIC, (t.name for t in request.topics))
    for t in request.topics:
        parts = []
        for p in t.partitions:
            if t.name not in described:   # KafkaApis: DESCRIBE on the topic
                parts.append(PartResp(partition_index=p.partition_index,
                                      error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                      timestamp=-1, offset=-1))
                continue
            try:
                offset, timestamp, epoch = rm.offset_for(t.name, p.partition_index, p.timestamp,
                                                         p.current_leader_epoch,
                                                         request.replica_id,
                                                         request.isolation_level
                                                         if ctx.api_version >= 2 else 0)
                parts.append(PartResp(partition_index=p.partition_index, error_code=0,
                                      timestamp=timestamp, offset=offset, leader_epoch=epoch))
            except KafkaError as e:
                code, _ = error_of(e)
                parts.append(PartResp(partition_index=p.partition_index, error_code=code,
                                      timestamp=-1, offset=-1))
        topics.append(TopicResp(name=t.name, partitions=parts))
    return ListOffsetsResponse(topics=topics)
