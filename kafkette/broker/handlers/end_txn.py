"""EndTxn (key 26), versions 0-5: commit or abort the producer's transaction.

The coordinator writes PrepareCommit / PrepareAbort to `__transaction_state`, answers,
and then has every partition's leader write the marker (WriteTxnMarkers) before it
writes CompleteCommit / CompleteAbort. A retry of the same result is answered as Kafka
does (NONE once complete, CONCURRENT_TRANSACTIONS while markers are being written), the
opposite result INVALID_TXN_STATE, a stale epoch PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
before v2, KIP-588).

v5 is transaction version 2 (KIP-890 part 2): the coordinator bumps the producer epoch
on every commit and abort, and the answer carries the new producer id and epoch, which
the client uses for its next transaction.
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import TRANSACTIONAL_ID, WRITE
from kafkette.broker.handlers.transactions import answer_of, fenced_for_version, txn_coordinator
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import EndTxnResponse


def _error_response(request, code, ctx, message=None):
    return EndTxnResponse(error_code=code, producer_id=-1, producer_epoch=-1)


@handler(26, 0, 5, error_response=_error_response)
async def handle(ctx, request):
    if not authz.authorize(ctx, WRITE, TRANSACTIONAL_ID, request.transactional_id):
        return _error_response(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ctx)
    coordinator = txn_coordinator(ctx)
    if coordinator is None:
        return _error_response(request, ErrorCode.COORDINATOR_NOT_AVAILABLE, ctx)
    v = ctx.api_version
    result = await answer_of(lambda cb: coordinator.end_txn(
        request.transactional_id, request.producer_id, request.producer_epoch,
        request.committed, 2 if v >= 5 else 0, cb))
    return EndTxnResponse(error_code=fenced_for_version(result.error, v, 2),
                          producer_id=result.producer_id if v >= 5 else -1,
                          producer_epoch=result.producer_epoch if v >= 5 else -1)
