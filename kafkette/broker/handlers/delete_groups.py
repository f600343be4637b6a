"""DeleteGroups (key 42), versions 0-2: only groups without members (NON_EMPTY_GROUP
otherwise); their committed offsets go with them (tombstones in
`__consumer_offsets`). GROUP_ID_NOT_FOUND for unknown groups."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DELETE, GROUP
from kafkette.errors import ErrorCode
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.protocol.messages import DeleteGroupsResponse

Result = DeleteGroupsResponse.DeletableGroupResult


def _group_ids(ctx, request):
    return list(request.groups_names)


def _error_response(request, code, ctx, message=None):
    return DeleteGroupsResponse(results=[Result(group_id=g, error_code=code)
                                         for g in request.groups_names])


def _per_group_response(ctx, request, handle, codes):
    """Serve the groups this node coordinates, answer the others per group (as KafkaApis)."""
    ids = list(request.groups_names)
    request.groups_names = [g for g in ids if not codes[g]]
    got = {r.group_id: r for r in (handle(ctx, request).results if request.groups_names else [])}
    return DeleteGroupsResponse(results=[got.get(g) or Result(group_id=g, error_code=codes[g])
                                         for g in ids])


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, DELETE, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(42, 0, 2, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         per_group_response=_per_group_response, error_response=_error_response)
def handle(ctx, request):
    # KafkaApis: DELETE on each group, the others answer GROUP_AUTHORIZATION_FAILED.
    allowed = [g for g in request.groups_names if authz.authorize(ctx, DELETE, GROUP, g)]
    codes = dict.fromkeys(request.groups_names, ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if allowed:
        codes.update(ensure_coordinator(ctx).delete_groups(allowed))
    return DeleteGroupsResponse(results=[Result(group_id=g, error_code=codes[g])
                                         for g in request.groups_names])
