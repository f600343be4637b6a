"""InitProducerId (key 22), versions 0-5.

For idempotent producers (no transactional id) a fresh producer id with epoch 0 on
every call, as Kafka's TransactionCoordinator.handleInitProducerId does ("if the
transactional id is null, then always blindly accept the request and return a new
producerId"). Ids come in blocks reserved in the metadata log (as KRaft's
AllocateProducerIds), so they are never reused across restarts. kafka-python 3 and the
Java client enable idempotence by default and call this first.

KIP-360 (v3+): a request may carry the producer's current id and epoch. For a
transactional id the transaction coordinator bumps that epoch; for an idempotent
producer Kafka ignores them and hands out a new id with epoch 0, and so do we
(kafka-python sends them after an OUT_OF_ORDER_SEQUENCE_NUMBER and accepts the new id;
the Java client and librdkafka bump an idempotent producer's epoch locally and start
the partition's sequences at 0 again, which the per-partition checks in
kafkette.log.producer_state accept).

A transactional id goes to the transaction coordinator (coordinator/
transaction_coordinator.py): the id's epoch is bumped, an ongoing transaction of the
previous producer is aborted (the client is told CONCURRENT_TRANSACTIONS and retries
until the abort completes), and the previous producer is fenced.
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import IDEMPOTENT_WRITE, TOPIC, TRANSACTIONAL_ID, WRITE
from kafkette.broker.handlers.transactions import answer_of, fenced_for_version, txn_coordinator
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import InitProducerIdResponse


def _error_response(request, code, ctx, message=None):
    return InitProducerIdResponse(error_code=code, producer_id=-1, producer_epoch=-1)


@handler(22, 0, 5, error_response=_error_response)
def handle(ctx, request):
    if request.transactional_id == "":
        # Kafka: an empty transactional id is invalid (clients send null instead).
        return InitProducerIdResponse(error_code=ErrorCode.INVALID_REQUEST,
                                      producer_id=-1, producer_epoch=-1)
    # KafkaApis: WRITE on the transactional id; without one, IDEMPOTENT_WRITE on the
    # cluster or WRITE on some topic (authorizeByResourceType, KIP-679).
    if request.transactional_id is not None:
        if not authz.authorize(ctx, WRITE, TRANSACTIONAL_ID, request.transactional_id):
            return _error_response(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ctx)
        return _transactional(ctx, request)
    if authz.enabled(ctx) and not (authz.authorize_cluster(ctx, IDEMPOTENT_WRITE) or
                                   authz.authorize_by_resource_type(ctx, WRITE, TOPIC)):
        return _error_response(request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ctx)
    pid = ctx.broker.next_producer_id()
    if isinstance(pid, int):
        return InitProducerIdResponse(error_code=0, producer_id=pid, producer_epoch=0)
    return _await_producer_id(pid)


async def _await_producer_id(pending):
    """Cluster: a new block of ids comes from the active controller."""
    try:
        pid = await pending
    except Exception:  # noqa: BLE001 - the controller is unreachable: clients retry
        return InitProducerIdResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                      producer_id=-1, producer_epoch=-1)
    return InitProducerIdResponse(error_code=0, producer_id=pid, producer_epoch=0)


async def _transactional(ctx, request):
    coordinator = txn_coordinator(ctx)
    if coordinator is None:
        return _error_response(request, ErrorCode.COORDINATOR_NOT_AVAILABLE, ctx)
    v = ctx.api_version
    result = await answer_of(lambda cb: coordinator.init_producer_id(
        request.transactional_id, request.transaction_timeout_ms,
        request.producer_id if v >= 3 else -1, request.producer_epoch if v >= 3 else -1, cb))
    return InitProducerIdResponse(error_code=fenced_for_version(result.error, v, 4),
                                  producer_id=result.producer_id,
                                  producer_epoch=result.producer_epoch)
