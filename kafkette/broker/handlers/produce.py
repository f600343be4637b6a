"""Produce (key 0), versions 3-11; listed from v0 in ApiVersions.

Kafka 4.0 lists Produce v0-2 in ApiVersions but refuses them, because librdkafka
only enables compression when the broker lists Produce v0 (KAFKA-18659); we do the
same and answer v0-2 with UNSUPPORTED_VERSION on every partition.

The hot path: for each partition the record bytes (a memoryview into the request
frame) go to PartitionLog.append, which checks each batch header and CRC, stamps
offsets in place and writes them with one write. No record is decoded here. As in
Kafka, a partition's records must be exactly one batch (INVALID_RECORD otherwise);
PartitionLog.append itself takes several, for internal writers.

acks: 0 → no response at all; 1 → answered once appended on the leader; -1 (all) →
answered once the high watermark covers the batch, i.e. every in-sync replica has it
(ReplicaManager.append_records waits in the produce purgatory; REQUEST_TIMED_OUT at the
request's timeout_ms, NOT_ENOUGH_REPLICAS before appending when the ISR is smaller than
min.insync.replicas, NOT_ENOUGH_REPLICAS_AFTER_APPEND when it shrank meanwhile);
anything else → INVALID_REQUIRED_ACKS.

Transactional batches (KIP-98) are appended like others; the log tracks the open
transaction and the LSO. With transaction.partition.verification.enable (Kafka's
default) the first batch of a transaction on a partition is first checked with the
transaction coordinator (KIP-890 part 1, broker/txn_state.verify_transactional_produce):
INVALID_TXN_STATE if the partition is not in the producer's transaction.

Compacted topics refuse records without a key, as Kafka's LogValidator does:
INVALID_RECORD with KIP-467 record_errors (each bad record's index in the batch and
Kafka's message) and Kafka's summary as error_message, so clients fail exactly those
records. It is the one produce-path check that reads records (PartitionLog.append);
topics that are not compacted keep the bytes-only path.

Idempotent producers (KIP-98; rules in kafkette.log.producer_state, checked on the
batch header by PartitionLog.append): a retry of one of the producer's last five
batches is answered with error NONE and the ORIGINAL base offset (Kafka >= 1.0; the old
DUPLICATE_SEQUENCE_NUMBER is never sent); a gap, a duplicate of an older batch, or a
bumped epoch not starting at sequence 0 → OUT_OF_ORDER_SEQUENCE_NUMBER; an epoch older
than the partition's → INVALID_PRODUCER_EPOCH (never PRODUCER_FENCED in a Produce
response: KAFKA-10687); base_sequence < 0 → INVALID_RECORD. For a duplicate Kafka also
returns the batch's max timestamp as log_append_time_ms even for CreateTime topics; we
return -1 there (the original append time for LogAppendTime topics).
"""
import inspect

from kafkette.broker import authorization as authz
from kafkette.broker.handlers.common import error_of, leader_endpoints
from kafkette.broker.quotas import PRODUCER_BYTE_RATE
from kafkette.broker.registry import PartitionScope, handler
from kafkette.broker.replica_manager import ProduceResult
from kafkette.broker.txn_state import verify_transactional_produce
from kafkette.controller.acls import TOPIC, TRANSACTIONAL_ID, WRITE
from kafkette.errors import ErrorCode, InvalidRecordError, KafkaError
from kafkette.logging import get_logger
from kafkette.protocol import records as rec
from kafkette.protocol.messages import ProduceResponse

log = get_logger("kafkette.produce")
TopicResp = ProduceResponse.TopicProduceResponse
PartResp = ProduceResponse.TopicProduceResponse.PartitionProduceResponse
# Rejections worth a log line: a client bug or, for the producer-state ones, a lost
# or reordered batch (the message names producer id, sequences and epochs).
_LOGGED_ERRORS = frozenset({
    ErrorCode.CORRUPT_MESSAGE, ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.INVALID_RECORD,
    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorCode.INVALID_PRODUCER_EPOCH,
})


def _error_response(request, error_code, ctx, message=None):
    return ProduceResponse(responses=[
        TopicResp(name=t.name, partition_responses=[
            PartResp(index=p.index, error_code=error_code, base_offset=-1,
                     log_append_time_ms=-1, log_start_offset=-1)
            for p in t.partition_data])
        for t in request.topic_data])


def _check_one_batch(records, version: int) -> None:
    """Produce v3+ carries exactly one record batch per partition, as Kafka's
    ProduceRequest.validateRecords requires (INVALID_RECORD otherwise). Only the first
    batch's length field is read: a first batch whose length is implausible is left to
    PartitionLog.append, which answers CORRUPT_MESSAGE as Kafka's batch iterator does."""
    n = 0 if records is None else len(records)
    if n == 0:
        raise InvalidRecordError(
            f"Produce requests with version {version} must have at least one record batch per partition")
    if n > rec.BATCH_HEADER_SIZE:
        first = rec.LOG_OVERHEAD + int.from_bytes(
            records[rec.BATCH_LENGTH_OFFSET:rec.BATCH_LENGTH_OFFSET + 4], "big", signed=True)
        if rec.BATCH_HEADER_SIZE <= first < n:
            raise InvalidRecordError(
                f"Produce requests with version {version} are only allowed to contain exactly "
                "one record batch per partition")
        if records[rec.ATTRIBUTES_OFFSET + 1] & rec.CONTROL_BIT:
            # Kafka's LogValidator: markers come from transaction coordinators only
            # (WriteTxnMarkers); a client's control batch would end transactions.
            raise InvalidRecordError("Clients are not allowed to write control records")


def _has_transactional_batch(request) -> bool:
    """Whether a partition's (first) batch is transactional: one attributes byte each."""
    for t in request.topic_data:
        for p in t.partition_data:
            r = p.records
            if r is not None and len(r) > rec.BATCH_HEADER_SIZE and \
                    r[rec.ATTRIBUTES_OFFSET + 1] & rec.TRANSACTIONAL_BIT:
                return True
    return False


# Partition by partition, for fault rules that fail some partitions (broker/faults.py).
SCOPE = PartitionScope(
    request_topics="topic_data", request_partitions="partition_data", request_index="index",
    response_topics="responses", response_partitions="partition_responses",
    topic_name=lambda ctx, t: t.name, topic_key=lambda ctx, t: t.name,
    partition_error=lambda index, code: PartResp(index=index, error_code=code, base_offset=-1,
                                                 log_append_time_ms=-1, log_start_offset=-1),
    topic_response=lambda t, parts: TopicResp(name=t.name, partition_responses=parts),
    empty_response=lambda: ProduceResponse(responses=[]),
    wants_response=lambda request: request.acks != 0)


def _touches(ctx, request):
    return [(t.name, p.index) for t in request.topic_data for p in t.partition_data]


def _quota_bytes(ctx, request, response, frame_size):
    # KIP-13: a producer's rate is the size of its Produce requests, as Kafka records.
    return PRODUCER_BYTE_RATE, frame_size


# throttle_mute_version: KIP-219 came with Produce v6; v3-5 get a delayed answer.
@handler(0, 3, 11, advertised_min_version=0, error_response=_error_response,
         touches=_touches, partition_scope=SCOPE, quota_bytes=_quota_bytes,
         throttle_mute_version=6)
def handle(ctx, request):
    acks = request.acks
    if acks not in (0, 1, -1):
        return _error_response(request, ErrorCode.INVALID_REQUIRED_ACKS, ctx)
    if request.transactional_id is None and _has_transactional_batch(request):
        # Kafka's KafkaApis: transactional records need the transactional id they are
        # authorized by; without one the whole request is refused.
        return _error_response(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ctx)
    denied = ()
    if authz.enabled(ctx):
        # KafkaApis: WRITE on the transactional id (else the whole request fails),
        # then WRITE on each topic (else its partitions fail, the others go on).
        if request.transactional_id is not None and not authz.authorize(
                ctx, WRITE, TRANSACTIONAL_ID, request.transactional_id):
            return _error_response(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ctx)
        names = {t.name for t in request.topic_data}
        denied = names - authz.filter_authorized(ctx, WRITE, TOPIC, names)
    entries = []
    early = {}  # position -> ProduceResult refused before the replica manager
    for t in request.topic_data:
        for p in t.partition_data:
            if t.name in denied:
                early[len(entries)] = ProduceResult(error=ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                entries.append((t.name, p.index, p.records))
                continue
            try:
                _check_one_batch(p.records, ctx.api_version)
            except KafkaError as e:
                code, msg = error_of(e)
                early[len(entries)] = ProduceResult(error=code, message=msg)
            entries.append((t.name, p.index, p.records))
    if request.transactional_id is not None and \
            ctx.broker.config["transaction.partition.verification.enable"]:
        refused = verify_transactional_produce(ctx.broker, request.transactional_id, entries)
        if inspect.isawaitable(refused):
            return _after_verification(ctx, request, entries, early, refused)
        _refuse(early, refused)
    return _append(ctx, request, entries, early)


def _refuse(early, refused) -> None:
    for i, code in refused.items():
        if i not in early:
            early[i] = ProduceResult(error=code, message=(
                "the partition is not in the producer's transaction"
                if code == ErrorCode.INVALID_TXN_STATE else None))


async def _after_verification(ctx, request, entries, early, refused):
    _refuse(early, await refused)
    result = _append(ctx, request, entries, early)
    return await result if inspect.isawaitable(result) else result


def _append(ctx, request, entries, early):
    acks = request.acks
    results = ctx.broker.replica_manager.append_records(
        [e for i, e in enumerate(entries) if i not in early], acks, request.timeout_ms)
    if inspect.isawaitable(results):
        return _finish(ctx, request, entries, early, results)
    return _response(ctx, request, entries, early, results)


async def _finish(ctx, request, entries, early, awaitable):
    return _response(ctx, request, entries, early, await awaitable)


def _response(ctx, request, entries, early, results):
    metrics = ctx.broker.metrics  # kafkette.broker.metrics: per partition, never per record
    it = iter(results)
    new_leaders: set[int] = set()
    responses = []
    i = 0
    for t in request.topic_data:
        parts = []
        for p in t.partition_data:
            r = early[i] if i in early else next(it)
            i += 1
            if r.error:
                if r.error in _LOGGED_ERRORS:
                    log.info("produce rejected", topic=t.name, partition=p.index,
                             error=ErrorCode(r.error).name, client_id=ctx.header.client_id,
                             reason=r.message)
                resp = PartResp(index=p.index, error_code=r.error, base_offset=-1,
                                error_message=r.message)
                if r.record_errors:
                    # KIP-467 (v8+; older versions carry only the error code): the client
                    # fails exactly these records of the batch.
                    resp.record_errors = [PartResp.BatchIndexAndErrorMessage(
                        batch_index=i, batch_index_error_message=m) for i, m in r.record_errors]
                if r.current_leader is not None and ctx.api_version >= 10:
                    # KIP-951: say who leads now, with its address below.
                    resp.current_leader = PartResp.LeaderIdAndEpoch(
                        leader_id=r.current_leader[0], leader_epoch=r.current_leader[1])
                    if r.current_leader[0] >= 0:
                        new_leaders.add(r.current_leader[0])
                parts.append(resp)
                continue
            a = r.appended
            if a is not None and a.base_offset >= 0:
                metrics.record_append(t.name, len(p.records), a.base_offset, a.last_offset)
            parts.append(PartResp(index=p.index, error_code=0, base_offset=r.base_offset,
                                  log_append_time_ms=r.log_append_time_ms,
                                  log_start_offset=r.log_start_offset))
        responses.append(TopicResp(name=t.name, partition_responses=parts))
    if request.acks == 0:
        return None
    if new_leaders:
        return ProduceResponse(responses=responses,
                               node_endpoints=leader_endpoints(ctx, new_leaders,
                                                               ProduceResponse.NodeEndpoint))
    return ProduceResponse(responses=responses)
