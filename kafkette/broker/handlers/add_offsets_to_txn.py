"""AddOffsetsToTxn (key 25), versions 0-4: a producer that will commit consumer
offsets in its transaction (sendOffsetsToTransaction) first adds the group's partition
of `__consumer_offsets` to the transaction, so that the coordinator writes a marker
there too and the offsets become visible exactly when the transaction commits. The
offsets themselves go to the group coordinator with TxnOffsetCommit."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import GROUP, READ, TRANSACTIONAL_ID, WRITE
from kafkette.broker.handlers.transactions import answer_of, fenced_for_version, txn_coordinator
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import AddOffsetsToTxnResponse


def _error_response(request, code, ctx, message=None):
    return AddOffsetsToTxnResponse(error_code=code)


@handler(25, 0, 4, error_response=_error_response)
async def handle(ctx, request):
    if not authz.authorize(ctx, WRITE, TRANSACTIONAL_ID, request.transactional_id):
        return _error_response(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ctx)
    if not authz.authorize(ctx, READ, GROUP, request.group_id):
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    coordinator = txn_coordinator(ctx)
    if coordinator is None:
        return AddOffsetsToTxnResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
    # The group's partition must exist for the marker to have somewhere to go.
    if ctx.broker.group_coordinator_ready() is None:
        return AddOffsetsToTxnResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
    code = await answer_of(lambda cb: coordinator.add_offsets(
        request.transactional_id, request.producer_id, request.producer_epoch,
        request.group_id, cb))
    return AddOffsetsToTxnResponse(error_code=fenced_for_version(code, ctx.api_version, 2))
