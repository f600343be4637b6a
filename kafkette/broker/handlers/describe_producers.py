"""DescribeProducers (key 61), version 0 (KIP-664): the producers a partition leader
knows — id, epoch, last sequence and timestamp, coordinator epoch, and the first offset
of the transaction it has open (-1 for none) — what `kafka-transactions.sh
describe-producers` shows to find a hanging transaction. Served by every replica from
its own log's producer state, leader or follower, as Kafka's Partition.activeProducerState
does (`--broker-id` asks one replica); NOT_LEADER_OR_FOLLOWER where the partition is not
hosted."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import READ, TOPIC
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import DescribeProducersResponse

TopicResp = DescribeProducersResponse.TopicResponse
PartResp = TopicResp.PartitionResponse
State = PartResp.ProducerState


def _error_response(request, code, ctx, message=None):
    return DescribeProducersResponse(topics=[
        TopicResp(name=t.name, partitions=[PartResp(partition_index=p, error_code=code,
                                                    error_message=message, active_producers=[])
                                           for p in t.partition_indexes])
        for t in request.topics])


@handler(61, 0, 0, error_response=_error_response)
def handle(ctx, request):
    rm = ctx.broker.replica_manager
    topics = []
    readable = authz.filter_authorized(ctx, READ, TOPIC, (t.name for t in request.topics))
    for t in request.topics:
        parts = []
        for p in t.partition_indexes:
            if t.name not in readable:   # KafkaApis: READ on the topic
                parts.append(PartResp(partition_index=p,
                                      error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                      error_message=None, active_producers=[]))
                continue
            try:
                part = rm.get_partition(t.name, p)
            except KafkaError as e:
                parts.append(PartResp(partition_index=p, error_code=int(e.code),
                                      error_message=e.message, active_producers=[]))
                continue
            producers = [State(producer_id=e.producer_id, producer_epoch=e.producer_epoch,
                               last_sequence=e.last_seq, last_timestamp=e.last_timestamp,
                               coordinator_epoch=e.coordinator_epoch,
                               current_txn_start_offset=-1 if e.current_txn_first_offset is None
                               else e.current_txn_first_offset)
                         for e in part.log.producer_entries()]
            parts.append(PartResp(partition_index=p, error_code=ErrorCode.NONE,
                                  active_producers=producers))
        topics.append(TopicResp(name=t.name, partitions=parts))
    return DescribeProducersResponse(topics=topics)
