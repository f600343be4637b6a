"""AddPartitionsToTxn (key 24), versions 0-5.

v0-3 are the client's: a producer adds the partitions it is about to write to its
ongoing transaction before it produces to them (the coordinator records them in
`__transaction_state`, so that EndTxn knows where to write markers). v4+ are Kafka's
broker-to-coordinator form (KIP-890 part 1): batches of transactions, each either
adding partitions or, with verify_only, asking whether they are in the transaction —
what a partition leader asks before it appends a transaction's first batch.

Partitions of unknown topics fail with UNKNOWN_TOPIC_OR_PARTITION and the others of
the request with OPERATION_NOT_ATTEMPTED, nothing added, as Kafka answers; otherwise
one error from the coordinator for every partition (CONCURRENT_TRANSACTIONS while the
previous transaction completes, PRODUCER_FENCED — INVALID_PRODUCER_EPOCH before v2,
KIP-588 —, INVALID_TXN_STATE, NOT_COORDINATOR, ...).
"""
from collections import defaultdict

from kafkette.broker import authorization as authz
from kafkette.controller.acls import CLUSTER_ACTION, TOPIC, TRANSACTIONAL_ID, WRITE
from kafkette.broker.handlers.transactions import answer_of, fenced_for_version, txn_coordinator
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import AddPartitionsToTxnResponse

R = AddPartitionsToTxnResponse
TopicResult = R.AddPartitionsToTxnTopicResult
PartResult = R.AddPartitionsToTxnPartitionResult
TxnResult = R.AddPartitionsToTxnResult


def _topic_results(codes: dict[tuple[str, int], int]):
    by_topic = defaultdict(list)
    for (t, p), code in codes.items():
        by_topic[t].append(PartResult(partition_index=p, partition_error_code=code))
    return [TopicResult(name=t, results_by_partition=ps) for t, ps in by_topic.items()]


def _partitions(topics):
    return [(t.name, p) for t in topics for p in t.partitions]


def _error_response(request, code, ctx, message=None):
    if ctx.api_version >= 4:
        return R(error_code=code, results_by_transaction=[])
    return R(results_by_topic_v3_and_below=_topic_results(
        {tp: code for tp in _partitions(request.v3_and_below_topics)}))


@handler(24, 0, 5, error_response=_error_response)
async def handle(ctx, request):
    coordinator = txn_coordinator(ctx)
    v = ctx.api_version
    if v >= 4 and not authz.authorize_cluster(ctx, CLUSTER_ACTION):
        # KafkaApis: batched (v4+) requests come from brokers (KIP-890).
        return R(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, results_by_transaction=[])
    if v < 4:
        codes = await _one(ctx, coordinator, request.v3_and_below_transactional_id,
                           request.v3_and_below_producer_id, request.v3_and_below_producer_epoch,
                           _partitions(request.v3_and_below_topics), False)
        return R(results_by_topic_v3_and_below=_topic_results(codes))
    results = []
    for txn in request.transactions:
        codes = await _one(ctx, coordinator, txn.transactional_id, txn.producer_id,
                           txn.producer_epoch, _partitions(txn.topics), txn.verify_only)
        results.append(TxnResult(transactional_id=txn.transactional_id,
                                 topic_results=_topic_results(codes)))
    return R(error_code=0, results_by_transaction=results)


async def _one(ctx, coordinator, txn_id, pid, epoch, partitions, verify_only):
    # KafkaApis: WRITE on the transactional id (every partition fails), then WRITE on
    # each topic (TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED).
    if not authz.authorize(ctx, WRITE, TRANSACTIONAL_ID, txn_id):
        return {tp: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED for tp in partitions}
    if authz.enabled(ctx):
        ok = authz.filter_authorized(ctx, WRITE, TOPIC, (t for t, _ in partitions))
        if any(t not in ok for t, _ in partitions):
            return {tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED if tp[0] not in ok
                    else ErrorCode.OPERATION_NOT_ATTEMPTED for tp in partitions}
    if coordinator is None:
        return {tp: ErrorCode.COORDINATOR_NOT_AVAILABLE for tp in partitions}
    image = ctx.broker.image
    unknown = {tp for tp in partitions
               if (t := image.topics.get(tp[0])) is None or tp[1] not in t.partitions}
    if unknown:
        return {tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if tp in unknown
                else ErrorCode.OPERATION_NOT_ATTEMPTED for tp in partitions}
    if verify_only:
        return coordinator.verify_partitions(txn_id, pid, epoch, partitions)
    code = await answer_of(lambda cb: coordinator.add_partitions(txn_id, pid, epoch,
                                                                 partitions, cb))
    code = fenced_for_version(code, ctx.api_version, 2)
    return {tp: code for tp in partitions}
