"""DescribeTransactions (key 65), version 0 (KIP-664): state, timeout, start time,
producer id and epoch, and partitions of each transactional id this node coordinates
(NOT_COORDINATOR for the others, TRANSACTIONAL_ID_NOT_FOUND for an unknown id), what
`kafka-transactions.sh describe` shows."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, TRANSACTIONAL_ID
from kafkette.broker.handlers.transactions import txn_coordinator
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeTransactionsResponse

State = DescribeTransactionsResponse.TransactionState
Topic = State.TopicData


def _error_response(request, code, ctx, message=None):
    return DescribeTransactionsResponse(transaction_states=[
        State(error_code=code, transactional_id=t, transaction_state="",
              transaction_timeout_ms=0, transaction_start_time_ms=-1, producer_id=-1,
              producer_epoch=-1, topics=[]) for t in request.transactional_ids])


@handler(65, 0, 0, error_response=_error_response)
def handle(ctx, request):
    coordinator = txn_coordinator(ctx)
    if coordinator is None:
        return _error_response(request, ErrorCode.COORDINATOR_NOT_AVAILABLE, ctx)
    # KafkaApis: DESCRIBE on each transactional id, per id.
    ids = list(request.transactional_ids)
    allowed = [t for t in ids if authz.authorize(ctx, DESCRIBE, TRANSACTIONAL_ID, t)]
    if len(allowed) < len(ids):
        denied = {t: _error_response(type(request)(transactional_ids=[t]),
                                     ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                     ctx).transaction_states[0]
                  for t in ids if t not in allowed}
        request.transactional_ids = allowed
        served = iter(handle(ctx, request).transaction_states if allowed else [])
        return DescribeTransactionsResponse(transaction_states=[
            denied[t] if t in denied else next(served) for t in ids])
    states = [State(error_code=d.error, transactional_id=d.transactional_id,
                    transaction_state=d.state, transaction_timeout_ms=d.transaction_timeout_ms,
                    transaction_start_time_ms=d.transaction_start_time_ms,
                    producer_id=d.producer_id, producer_epoch=d.producer_epoch,
                    topics=[Topic(topic=t, partitions=ps) for t, ps in d.topics])
              for d in coordinator.describe(list(request.transactional_ids))]
    return DescribeTransactionsResponse(transaction_states=states)
