"""ListTransactions (key 66), versions 0-1 (KIP-664; v1 adds the duration filter,
KIP-994): the transactional ids this node coordinates, filtered by state and producer
id (and, v1, open longer than duration_filter ms). State names Kafka does not know are
returned in unknown_state_filters, as Kafka does, and match nothing."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, TRANSACTIONAL_ID
from kafkette.broker.handlers.transactions import txn_coordinator
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import ListTransactionsResponse

State = ListTransactionsResponse.TransactionState


def _error_response(request, code, ctx, message=None):
    return ListTransactionsResponse(error_code=code, unknown_state_filters=[],
                                    transaction_states=[])


@handler(66, 0, 1, error_response=_error_response)
def handle(ctx, request):
    coordinator = txn_coordinator(ctx)
    if coordinator is None:
        return _error_response(request, ErrorCode.COORDINATOR_NOT_AVAILABLE, ctx)
    listed = coordinator.list_transactions(
        list(request.state_filters or []), list(request.producer_id_filters or []),
        request.duration_filter if ctx.api_version >= 1 else -1)
    return ListTransactionsResponse(
        error_code=listed.error_code, unknown_state_filters=listed.unknown_state_filters,
        transaction_states=[State(transactional_id=t.transactional_id,
                                  producer_id=t.producer_id, transaction_state=t.state)
                            for t in listed
                            # KafkaApis: only the ids the principal may DESCRIBE.
                            if authz.authorize(ctx, DESCRIBE, TRANSACTIONAL_ID,
                                               t.transactional_id)])
