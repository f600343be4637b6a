"""OffsetCommit (key 8), versions 2-9.

Members commit with their generation and member id (checked: ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID); a client that assigns
partitions itself commits with generation -1 and no member id ("simple" commits,
allowed while the group has no members). Offsets are written to `__consumer_offsets`
before the answer, and the answer waits until the in-sync replicas of its partition have
them (as Kafka's coordinator appends with acks=all), so they survive a restart and the
loss of the coordinator's broker. A commit that is not replicated within the request
timeout is answered COORDINATOR_NOT_AVAILABLE (NOT_COORDINATOR when the leadership
moved), as Kafka maps those append errors; the coordinator's in-memory state has the
offset already (Kafka applies it only after the append succeeds). The metadata string round-trips
through OffsetFetch. retention_time_ms (v2-4) is ignored, as Kafka does since 2.1
(KIP-211): offsets.retention.minutes applies.
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import GROUP, READ, TOPIC
from kafkette.broker.handlers.groups import (
    await_group_replication,
    ensure_coordinator,
    offsets_to_commit,
)
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import OffsetCommitResponse

TopicResp = OffsetCommitResponse.OffsetCommitResponseTopic
PartResp = TopicResp.OffsetCommitResponsePartition


def _group_ids(ctx, request):
    return [request.group_id]


def _touches(ctx, request):
    return [(t.name, p.partition_index) for t in request.topics for p in t.partitions]


def _error_response(request, code, ctx, message=None):
    return OffsetCommitResponse(topics=[
        TopicResp(name=t.name, partitions=[PartResp(partition_index=p.partition_index,
                                                    error_code=code)
                                           for p in t.partitions])
        for t in request.topics])


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, READ, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(8, 2, 9, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized, touches=_touches,
         error_response=_error_response)
def handle(ctx, request):
    # KafkaApis: READ on the group (else every partition fails), READ on each topic.
    if not authz.authorize(ctx, READ, GROUP, request.group_id):
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    coordinator = ensure_coordinator(ctx)
    topics = request.topics
    denied = set()
    if authz.enabled(ctx):
        names = {t.name for t in topics}
        denied = names - authz.filter_authorized(ctx, READ, TOPIC, names)
        topics = [t for t in topics if t.name not in denied]
    offsets, codes = offsets_to_commit(ctx, topics, ctx.api_version >= 6)
    for t in request.topics:
        if t.name in denied:
            for p in t.partitions:
                codes[(t.name, p.partition_index)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    waiting = None
    if offsets:
        codes.update(coordinator.commit_offsets(
            request.group_id, request.generation_id_or_member_epoch, request.member_id,
            request.group_instance_id if ctx.api_version >= 7 else None, offsets))
        if any(codes.get(tp) == ErrorCode.NONE for tp in offsets):
            waiting = await_group_replication(coordinator, request.group_id)
    if waiting is not None:
        return _after_replication(request, codes, offsets, waiting)
    return _response(request, codes)


async def _after_replication(request, codes, offsets, waiting):
    code = await waiting
    if code:
        for tp in offsets:
            if codes.get(tp) == ErrorCode.NONE:
                codes[tp] = code
    return _response(request, codes)


def _response(request, codes):
    return OffsetCommitResponse(topics=[
        TopicResp(name=t.name, partitions=[
            PartResp(partition_index=p.partition_index,
                     error_code=codes.get((t.name, p.partition_index), ErrorCode.NONE))
            for p in t.partitions])
        for t in request.topics])
