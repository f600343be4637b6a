"""Heartbeat (key 12), versions 0-4. REBALANCE_IN_PROGRESS tells a member to rejoin;
every heartbeat pushes the member's session expiry forward."""
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import handler
from kafkette.protocol.messages import HeartbeatResponse


@handler(12, 0, 4)
def handle(ctx, request):
    code = ensure_coordinator(ctx).heartbeat(
        request.group_id, request.generation_id, request.member_id,
        request.group_instance_id if ctx.api_version >= 3 else None)
    return HeartbeatResponse(error_code=code)
