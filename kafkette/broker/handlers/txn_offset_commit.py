"""TxnOffsetCommit (key 28), versions 0-4.

A transactional producer commits its consumer's offsets as part of its transaction
(KIP-98, `sendOffsetsToTransaction`), after AddOffsetsToTxn made the group's
`__consumer_offsets` partition part of it. The offsets are written to that partition
as a transactional batch of the producer, and stay invisible to OffsetFetch until the
transaction's COMMIT marker (an ABORT drops them); the answer waits until the in-sync
replicas have the batch, as OffsetCommit's does. v3+ (KIP-447) carry the consumer's
generation, member id and instance id, which the coordinator checks like an
OffsetCommit's; v0-2 have none and are not checked.

Whether the producer's transaction includes the group is the transaction
coordinator's to say: as Kafka 4.x's broker verifies with it before writing (KIP-890),
the handler asks `broker.verify_txn_offset_commit(transactional_id, producer_id,
producer_epoch, group_id)` when the broker offers it (an error code, None, or an
awaitable of either); without it nothing is verified. Partitions of unknown topics
are answered UNKNOWN_TOPIC_OR_PARTITION, as Kafka does. ACLs (TRANSACTIONAL_ID WRITE,
GROUP READ, TOPIC READ) are not checked yet.
"""
import inspect

from kafkette.broker import authorization as authz
from kafkette.controller.acls import GROUP, READ, TOPIC, TRANSACTIONAL_ID, WRITE
from kafkette.broker.handlers.groups import (
    await_group_replication,
    ensure_coordinator,
    offsets_to_commit,
)
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.coordinator.group_coordinator import offset_commit_error
from kafkette.errors import ErrorCode
from kafkette.logging import get_logger
from kafkette.protocol.messages import TxnOffsetCommitResponse

TopicResp = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic
PartResp = TopicResp.TxnOffsetCommitResponsePartition

log = get_logger("kafkette.txn_offset_commit")


def _group_ids(ctx, request):
    return [request.group_id]


def _touches(ctx, request):
    return [(t.name, p.partition_index) for t in request.topics for p in t.partitions]


def _error_response(request, code, ctx, message=None):
    return _response(request, {}, getattr(ctx, "api_version", None), default=code)


def _group_authorized(ctx, request, group_id):
    # KafkaApis: WRITE on the transactional id, then READ on the group, before the
    # coordinator is looked for.
    return (authz.allowed(ctx, WRITE, TRANSACTIONAL_ID, request.transactional_id)
            and authz.allowed(ctx, READ, GROUP, group_id))


@handler(28, 0, 4, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized, touches=_touches,
         error_response=_error_response)
def handle(ctx, request):
    # KafkaApis: WRITE on the transactional id, READ on the group (each failing every
    # partition), then READ on each topic.
    if not authz.authorize(ctx, WRITE, TRANSACTIONAL_ID, request.transactional_id):
        return _error_response(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ctx)
    if not authz.authorize(ctx, READ, GROUP, request.group_id):
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    coordinator = ensure_coordinator(ctx)
    topics, denied = request.topics, set()
    if authz.enabled(ctx):
        names = {t.name for t in topics}
        denied = names - authz.filter_authorized(ctx, READ, TOPIC, names)
        topics = [t for t in topics if t.name not in denied]
    offsets, codes = offsets_to_commit(ctx, topics, ctx.api_version >= 2)
    for t in request.topics:
        if t.name in denied:
            for p in t.partitions:
                codes[(t.name, p.partition_index)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    if not offsets:
        return _response(request, codes, ctx.api_version)
    verify = getattr(ctx.broker, "verify_txn_offset_commit", None)
    verdict = None
    if verify is not None:
        verdict = verify(request.transactional_id, request.producer_id,
                         request.producer_epoch, request.group_id)
    if inspect.isawaitable(verdict):
        return _after_verification(ctx, coordinator, request, offsets, codes, verdict)
    return _commit(ctx, coordinator, request, offsets, codes, verdict)


async def _after_verification(ctx, coordinator, request, offsets, codes, verdict):
    result = _commit(ctx, coordinator, request, offsets, codes, await verdict)
    if inspect.isawaitable(result):
        result = await result
    return result


def _commit(ctx, coordinator, request, offsets, codes, verdict):
    if verdict:
        # Kafka converts the verification's error as an append error
        # (GroupCoordinator's postVerificationCallback).
        error = offset_commit_error(int(verdict))
        log.info("txn offset commit refused by the transaction check",
                 group_id=request.group_id, transactional_id=request.transactional_id,
                 producer_id=request.producer_id, error=int(error))
        codes.update({tp: error for tp in offsets})
        return _response(request, codes, ctx.api_version)
    v3 = ctx.api_version >= 3
    codes.update(coordinator.commit_txn_offsets(
        request.group_id, request.producer_id, request.producer_epoch,
        request.generation_id if v3 else -1, request.member_id if v3 else "",
        request.group_instance_id if v3 else None, offsets))
    waiting = None
    if any(codes.get(tp) == ErrorCode.NONE for tp in offsets):
        waiting = await_group_replication(coordinator, request.group_id)
    if waiting is not None:
        return _after_replication(request, codes, offsets, waiting, ctx.api_version)
    return _response(request, codes, ctx.api_version)


async def _after_replication(request, codes, offsets, waiting, version):
    code = await waiting
    if code:
        for tp in offsets:
            if codes.get(tp) == ErrorCode.NONE:
                codes[tp] = code
    return _response(request, codes, version)


def _response(request, codes, version=None, default=ErrorCode.NONE):
    def code_for(tp):
        code = codes.get(tp, default)
        # Producers before 2.0 (TxnOffsetCommit v0-1) treat COORDINATOR_LOAD_IN_PROGRESS
        # as fatal (KAFKA-7296): Kafka answers them COORDINATOR_NOT_AVAILABLE instead.
        if version is not None and version < 2 and code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        return code
    return TxnOffsetCommitResponse(topics=[
        TopicResp(name=t.name, partitions=[
            PartResp(partition_index=p.partition_index,
                     error_code=code_for((t.name, p.partition_index)))
            for p in t.partitions])
        for t in request.topics])
