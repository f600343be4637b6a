"""ListGroups (key 16), versions 0-5, with the state filter (v4+, KIP-518) and the
type filter (v5+, KIP-848: every group here is "classic")."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, GROUP
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import handler
from kafkette.protocol.messages import ListGroupsResponse

Listed = ListGroupsResponse.ListedGroup


@handler(16, 0, 5)
def handle(ctx, request):
    states = request.states_filter if ctx.api_version >= 4 and request.states_filter else None
    types = request.types_filter if ctx.api_version >= 5 and request.types_filter else None
    coordinator = ensure_coordinator(ctx)
    # A cluster node whose `__consumer_offsets` is still being created has no groups.
    groups = coordinator.list_groups(states, types) if coordinator is not None else []
    # KafkaApis: DESCRIBE on the cluster lists every group, else those the principal
    # may DESCRIBE.
    if authz.enabled(ctx) and not authz.authorize_cluster(ctx, DESCRIBE):
        groups = [g for g in groups if authz.authorize(ctx, DESCRIBE, GROUP, g.group_id)]
    return ListGroupsResponse(error_code=0, groups=[
        Listed(group_id=g.group_id, protocol_type=g.protocol_type, group_state=g.state,
               group_type=g.group_type) for g in groups])
