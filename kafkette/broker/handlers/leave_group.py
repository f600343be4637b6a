"""LeaveGroup (key 13), versions 0-5. v0-2 name one member; v3+ a batch of members
by member id and/or group.instance.id (KIP-345), each with its own error."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import GROUP, READ
from kafkette.errors import ErrorCode
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.protocol.messages import LeaveGroupResponse

MemberResponse = LeaveGroupResponse.MemberResponse


def _group_ids(ctx, request):
    return [request.group_id]


def _error_response(request, code, ctx, message=None):
    return LeaveGroupResponse(error_code=code, members=[])


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, READ, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(13, 0, 5, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         error_response=_error_response)
def handle(ctx, request):
    if not authz.authorize(ctx, READ, GROUP, request.group_id):   # KafkaApis: READ group
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    coordinator = ensure_coordinator(ctx)
    if ctx.api_version < 3:
        code, codes = coordinator.leave_group(request.group_id, [(request.member_id, None)])
        # v0-2 have one member and one error: the member's, if the group had no error.
        return LeaveGroupResponse(error_code=code or (codes[0] if codes else 0))
    members = [(m.member_id or None, m.group_instance_id) for m in request.members]
    code, codes = coordinator.leave_group(request.group_id, members)
    return LeaveGroupResponse(error_code=code, members=[
        MemberResponse(member_id=m.member_id, group_instance_id=m.group_instance_id,
                       error_code=c)
        for m, c in zip(request.members, codes)])
