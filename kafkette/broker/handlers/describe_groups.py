"""DescribeGroups (key 15), versions 0-5: state, protocol, members with their
metadata and assignments. An unknown group is described as state "Dead" with no
error, as Kafka does before v6."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE, GROUP
from kafkette.errors import ErrorCode
from kafkette.broker.handlers.common import NO_OPERATIONS
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.protocol.messages import DescribeGroupsResponse

Described = DescribeGroupsResponse.DescribedGroup
Member = Described.DescribedGroupMember
# READ, DESCRIBE, DELETE on a group (AclOperation bits).
GROUP_AUTHORIZED_OPERATIONS = (1 << 3) | (1 << 8) | (1 << 6)


def _group_ids(ctx, request):
    return list(request.groups)


def _failed(group_id, code):
    return Described(error_code=code, group_id=group_id, group_state="", protocol_type="",
                     protocol_data="", members=[])


def _error_response(request, code, ctx, message=None):
    return DescribeGroupsResponse(groups=[_failed(g, code) for g in request.groups])


def _per_group_response(ctx, request, handle, codes):
    """Serve the groups this node coordinates, answer the others per group (as KafkaApis)."""
    ids = list(request.groups)
    request.groups = [g for g in ids if not codes[g]]
    got = {d.group_id: d for d in (handle(ctx, request).groups if request.groups else [])}
    return DescribeGroupsResponse(groups=[got.get(g) or _failed(g, codes[g]) for g in ids])


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, DESCRIBE, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(15, 0, 5, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         per_group_response=_per_group_response, error_response=_error_response)
def handle(ctx, request):
    coordinator = ensure_coordinator(ctx)
    groups = []
    for group_id in request.groups:
        if not authz.authorize(ctx, DESCRIBE, GROUP, group_id):   # KafkaApis, per group
            groups.append(_failed(group_id, ErrorCode.GROUP_AUTHORIZATION_FAILED))
            continue
        d = coordinator.describe_group(group_id)
        groups.append(Described(
            error_code=d.error_code, group_id=group_id, group_state=d.state,
            protocol_type=d.protocol_type or "", protocol_data=d.protocol_name or "",
            members=[Member(member_id=m.member_id, group_instance_id=m.group_instance_id,
                            client_id=m.client_id, client_host=m.client_host,
                            member_metadata=m.metadata, member_assignment=m.assignment)
                     for m in d.members],
            authorized_operations=(authz.authorized_operations(ctx, GROUP, group_id,
                                                               GROUP_AUTHORIZED_OPERATIONS)
                                   if request.include_authorized_operations
                                   else NO_OPERATIONS)))
    return DescribeGroupsResponse(groups=groups)
