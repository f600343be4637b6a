"""JoinGroup (key 11), versions 0-9.

Thin: decode, hand the join to the group coordinator, answer when it responds. The
answer is delayed until the rebalance completes (all known members rejoined, or the
rebalance timeout, or the initial rebalance delay for a new group: KIP-134), so
the handler returns an awaitable and the connection waits — other connections are
unaffected.

Version notes: v0 has no rebalance timeout (Kafka uses the session timeout); v4+
members must first ask for a member id (KIP-394: MEMBER_ID_REQUIRED); v5+ carry
group.instance.id (KIP-345 static membership); v7+ echo the protocol type; v9 adds
skip_assignment (always false here: no server-side assignors). JoinGroup v0/v1 are
kept: Kafka 4.0.0 dropped them and re-added them in 4.0.1 (KAFKA-19444).
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import GROUP, READ
from kafkette.errors import ErrorCode
from kafkette.broker.handlers.groups import delayed_response, ensure_coordinator
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.protocol.messages import JoinGroupResponse

Member = JoinGroupResponse.JoinGroupResponseMember


def _group_ids(ctx, request):
    return [request.group_id]


def _error_response(request, code, ctx, message=None):
    # protocol_name is nullable from v7 only (Kafka's JoinGroupRequest.getErrorResponse).
    nullable = ctx is not None and ctx.api_version >= 7
    return JoinGroupResponse(error_code=code, generation_id=-1,
                             protocol_name=None if nullable else "",
                             leader="", member_id=request.member_id or "", members=[])


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, READ, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(11, 0, 9, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         error_response=_error_response)
def handle(ctx, request):
    if not authz.authorize(ctx, READ, GROUP, request.group_id):   # KafkaApis: READ group
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    coordinator = ensure_coordinator(ctx)
    version = ctx.api_version
    fut, respond = delayed_response()
    coordinator.join_group(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id if version >= 5 else None,
        client_id=ctx.header.client_id or "",
        client_host=ctx.client_host.rsplit(":", 1)[0] if ctx.client_host else "",
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=(request.rebalance_timeout_ms if version >= 1
                              else request.session_timeout_ms),
        protocol_type=request.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in request.protocols],
        require_known_member_id=version >= 4,
        reason=request.reason if version >= 8 else None,
        respond=respond,
        supports_skip_assignment=version >= 9,
    )
    return _answer(fut, version)


async def _answer(fut, version):
    r = await fut
    return JoinGroupResponse(
        error_code=r.error_code, generation_id=r.generation_id,
        protocol_type=r.protocol_type,
        # Before v7 the protocol name is not nullable.
        protocol_name=r.protocol_name if r.protocol_name is not None or version >= 7 else "",
        leader=r.leader or "", skip_assignment=r.skip_assignment, member_id=r.member_id or "",
        members=[Member(member_id=m.member_id, group_instance_id=m.group_instance_id,
                        metadata=m.metadata) for m in r.members])
