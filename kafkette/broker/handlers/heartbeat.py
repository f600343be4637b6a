"""Heartbeat (key 12), versions 0-4. REBALANCE_IN_PROGRESS tells a member to rejoin;
every heartbeat pushes the member's session expiry forward."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import GROUP, READ
from kafkette.errors import ErrorCode
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.protocol.messages import HeartbeatResponse


def _group_ids(ctx, request):
    return [request.group_id]


def _error_response(request, code, ctx, message=None):
    return HeartbeatResponse(error_code=code)


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, READ, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(12, 0, 4, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         error_response=_error_response)
def handle(ctx, request):
    if not authz.authorize(ctx, READ, GROUP, request.group_id):   # KafkaApis: READ group
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    code = ensure_coordinator(ctx).heartbeat(
        request.group_id, request.generation_id, request.member_id,
        request.group_instance_id if ctx.api_version >= 3 else None)
    return HeartbeatResponse(error_code=code)
