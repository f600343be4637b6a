"""SyncGroup (key 14), versions 0-5.

The leader sends the assignments; followers wait for them (a delayed answer, as
JoinGroup). A SyncGroup on a group that is already Stable returns the member's
current assignment rather than an error: the librdkafka mock answers
INVALID_REQUEST there, which kafka-python and aiokafka treat as fatal.
v5 echoes protocol type and name (and checks them when sent).

The leader's assignments are written to `__consumer_offsets` (the group's metadata),
and every member's answer waits until the in-sync replicas have that write, as Kafka's
coordinator answers SyncGroup only after its acks=all append: a coordinator that fails
over right after a rebalance does not forget it. If the write is not replicated in
time the members get COORDINATOR_NOT_AVAILABLE (NOT_COORDINATOR when the leadership
moved) and rediscover the coordinator; Kafka also drops the group back to
PreparingRebalance there, kafkette keeps it Stable in memory (the new coordinator
rebuilds it from the log).
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import GROUP, READ
from kafkette.errors import ErrorCode
from kafkette.broker.handlers.groups import (await_group_replication, delayed_response,
                                             ensure_coordinator)
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.protocol.messages import SyncGroupResponse


def _group_ids(ctx, request):
    return [request.group_id]


def _error_response(request, code, ctx, message=None):
    return SyncGroupResponse(error_code=code, assignment=b"")


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, READ, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(14, 0, 5, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         error_response=_error_response)
def handle(ctx, request):
    if not authz.authorize(ctx, READ, GROUP, request.group_id):   # KafkaApis: READ group
        return _error_response(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, ctx)
    coordinator = ensure_coordinator(ctx)
    fut, respond = delayed_response()
    coordinator.sync_group(
        group_id=request.group_id,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id if ctx.api_version >= 3 else None,
        protocol_type=request.protocol_type if ctx.api_version >= 5 else None,
        protocol_name=request.protocol_name if ctx.api_version >= 5 else None,
        assignments={a.member_id: bytes(a.assignment) for a in request.assignments},
        respond=respond,
    )
    return _answer(coordinator, request.group_id, fut)


async def _answer(coordinator, group_id, fut):
    r = await fut
    if r.error_code == 0:
        waiting = await_group_replication(coordinator, group_id)
        if waiting is not None:
            code = await waiting
            if code:
                return _error_response(None, code, None)
    return SyncGroupResponse(error_code=r.error_code, protocol_type=r.protocol_type,
                             protocol_name=r.protocol_name, assignment=r.assignment or b"")
