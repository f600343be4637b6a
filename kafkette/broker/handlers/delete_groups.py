"""DeleteGroups (key 42), versions 0-2: only groups without members (NON_EMPTY_GROUP
otherwise); their committed offsets go with them (tombstones in
`__consumer_offsets`). GROUP_ID_NOT_FOUND for unknown groups."""
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import handler
from kafkette.protocol.messages import DeleteGroupsResponse

Result = DeleteGroupsResponse.DeletableGroupResult


@handler(42, 0, 2)
def handle(ctx, request):
    codes = ensure_coordinator(ctx).delete_groups(list(request.groups_names))
    return DeleteGroupsResponse(results=[Result(group_id=g, error_code=codes[g])
                                         for g in request.groups_names])
