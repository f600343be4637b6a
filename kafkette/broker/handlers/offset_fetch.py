"""OffsetFetch (key 9), versions 1-9.

v1-7 ask for one group; v8+ for several (KIP-709). A null topic list (v2+) means
every partition the group has committed. Partitions without a committed offset get
offset -1 and empty metadata with no error, as Kafka. Offsets of transactions that
have not ended (TxnOffsetCommit) are never returned. require_stable (v7+, KIP-447):
a partition with such a pending offset is answered UNSTABLE_OFFSET_COMMIT (offset -1),
which the consumer retries; per partition in every version, the group's error staying
NONE, as Kafka's coordinators answer (the Java consumer reads it per partition).
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, GROUP, TOPIC
from kafkette.broker.handlers.common import error_of
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import OffsetFetchResponse

Topic = OffsetFetchResponse.OffsetFetchResponseTopic
Part = Topic.OffsetFetchResponsePartition
Group = OffsetFetchResponse.OffsetFetchResponseGroup
GTopic = Group.OffsetFetchResponseTopics
GPart = GTopic.OffsetFetchResponsePartitions


def _fetch(coordinator, group_id, topics, require_stable=False, ctx=None):
    """(error, [(topic, [(partition, offset, leader_epoch, metadata, error)])]).
    KafkaApis: topics the principal may not DESCRIBE answer TOPIC_AUTHORIZATION_FAILED
    when named, and are left out of an all-topics answer."""
    allowed = None
    if ctx is not None and authz.enabled(ctx) and topics is not None:
        allowed = authz.filter_authorized(ctx, DESCRIBE, TOPIC, (t.name for t in topics))
        denied = [t for t in topics if t.name not in allowed]
        code, rows = _fetch(coordinator, group_id, [t for t in topics if t.name in allowed],
                            require_stable)
        return code, rows + [(t.name, [(p, -1, -1, "", ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                                       for p in t.partition_indexes]) for t in denied]
    if ctx is not None and authz.enabled(ctx):
        code, rows = _fetch(coordinator, group_id, None, require_stable)
        return code, [(name, parts) for name, parts in rows
                      if authz.authorize(ctx, DESCRIBE, TOPIC, name)]
    wanted = None
    if topics is not None:
        wanted = [(t.name, p) for t in topics for p in t.partition_indexes]
    try:
        unstable = coordinator.unstable_offsets(group_id, wanted) if require_stable else set()
        code, found = coordinator.fetch_offsets(group_id, wanted, require_stable=require_stable)
    except KafkaError as e:
        return error_of(e)[0], []
    by_topic: dict[str, list] = {}
    keys = wanted if wanted is not None else sorted(set(found) | unstable)
    for tp in keys:
        o = found.get(tp)
        if tp in unstable:
            row = (tp[1], -1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)
        elif o is None:
            row = (tp[1], -1, -1, "", 0)
        else:
            row = (tp[1], o.offset, o.leader_epoch, o.metadata or "", 0)
        by_topic.setdefault(tp[0], []).append(row)
    return code, list(by_topic.items())


def _group_ids(ctx, request):
    if ctx.api_version >= 8:   # several groups per request (KIP-709)
        return [g.group_id for g in request.groups]
    return [request.group_id]


def _per_group_response(ctx, request, handle, codes):
    """v8+: serve the groups this node coordinates, answer the others per group."""
    if ctx.api_version < 8:
        return None
    ours = [g for g in request.groups if not codes[g.group_id]]
    served = {}
    if ours:
        request.groups = ours
        served = {g.group_id: g for g in handle(ctx, request).groups}
    return OffsetFetchResponse(error_code=0, groups=[
        served.get(g) or Group(group_id=g, error_code=codes[g], topics=[]) for g in codes])


def _touches(ctx, request):
    topic_lists = [request.topics or []] + [g.topics or [] for g in (request.groups or [])]
    return [(t.name, p) for ts in topic_lists for t in ts for p in t.partition_indexes]


def _error_response(request, code, ctx, message=None):
    def part(cls, i):
        return cls(partition_index=i, committed_offset=-1, committed_leader_epoch=-1,
                   metadata="", error_code=code)
    if request.groups:   # v8+: one entry per group
        return OffsetFetchResponse(error_code=code, groups=[
            Group(group_id=g.group_id, error_code=code, topics=[
                GTopic(name=t.name, partitions=[part(GPart, i) for i in t.partition_indexes])
                for t in (g.topics or [])])
            for g in request.groups])
    return OffsetFetchResponse(error_code=code, topics=[
        Topic(name=t.name, partitions=[part(Part, i) for i in t.partition_indexes])
        for t in (request.topics or [])])


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, DESCRIBE, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(9, 1, 9, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         per_group_response=_per_group_response, touches=_touches,
         error_response=_error_response)
def handle(ctx, request):
    coordinator = ensure_coordinator(ctx)
    require_stable = ctx.api_version >= 7 and bool(request.require_stable)
    if ctx.api_version >= 8:
        groups = []
        for g in request.groups:
            if not authz.authorize(ctx, DESCRIBE, GROUP, g.group_id):
                groups.append(Group(group_id=g.group_id,
                                    error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, topics=[]))
                continue
            code, rows = _fetch(coordinator, g.group_id, g.topics, require_stable, ctx)
            groups.append(Group(group_id=g.group_id, error_code=code, topics=[
                GTopic(name=name, partitions=[
                    GPart(partition_index=p, committed_offset=o, committed_leader_epoch=e,
                          metadata=m, error_code=err) for p, o, e, m, err in parts])
                for name, parts in rows]))
        return OffsetFetchResponse(groups=groups)
    if not authz.authorize(ctx, DESCRIBE, GROUP, request.group_id):
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    code, rows = _fetch(coordinator, request.group_id, request.topics, require_stable, ctx)
    return OffsetFetchResponse(error_code=code, topics=[
        Topic(name=name, partitions=[
            Part(partition_index=p, committed_offset=o, committed_leader_epoch=e, metadata=m,
                 error_code=err) for p, o, e, m, err in parts])
        for name, parts in rows])
