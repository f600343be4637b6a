"""OffsetDelete (key 47), version 0 (KIP-496): remove committed offsets of a group
for partitions it is not subscribed to (GROUP_SUBSCRIBED_TO_TOPIC otherwise);
GROUP_ID_NOT_FOUND for an unknown group."""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import DELETE, GROUP, READ, TOPIC
from kafkette.errors import ErrorCode
from kafkette.broker.handlers.groups import ensure_coordinator
from kafkette.broker.registry import ROUTE_COORDINATOR, handler
from kafkette.protocol.messages import OffsetDeleteResponse

Topic = OffsetDeleteResponse.OffsetDeleteResponseTopic
Part = Topic.OffsetDeleteResponsePartition


def _group_ids(ctx, request):
    return [request.group_id]


def _error_response(request, code, ctx, message=None):
    return OffsetDeleteResponse(error_code=code, topics=[])


def _group_authorized(ctx, request, group_id):
    return authz.allowed(ctx, DELETE, GROUP, group_id)   # KafkaApis, before the coordinator


@handler(47, 0, 0, route=ROUTE_COORDINATOR, group_ids=_group_ids,
         group_authorized=_group_authorized,
         error_response=_error_response)
def handle(ctx, request):
    # KafkaApis: DELETE on the group (top-level error), READ on each topic.
    if not authz.authorize(ctx, DELETE, GROUP, request.group_id):
        return OffsetDeleteResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, topics=[])
    readable = authz.filter_authorized(ctx, READ, TOPIC, (t.name for t in request.topics))
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions
              if t.name in readable]
    code, codes = ensure_coordinator(ctx).delete_offsets(request.group_id, wanted)
    codes = dict(codes)
    for t in request.topics:
        if t.name not in readable:
            for p in t.partitions:
                codes[(t.name, p.partition_index)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    if code:
        return OffsetDeleteResponse(error_code=code, topics=[])
    return OffsetDeleteResponse(error_code=0, topics=[
        Topic(name=t.name, partitions=[
            Part(partition_index=p.partition_index,
                 error_code=codes.get((t.name, p.partition_index), 0))
            for p in t.partitions])
        for t in request.topics])
