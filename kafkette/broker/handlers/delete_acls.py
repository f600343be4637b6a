"""DeleteAcls (key 31), versions 0-3.

Each filter (DescribeAcls' semantics, see describe_acls.py) removes the ACLs it
matches, one RemoveAccessControlEntryRecord each, committed by the active controller
(forwarded there, KIP-590); the answer lists, per filter, the ACLs it matched. A
filter with an UNKNOWN element fails alone with INVALID_REQUEST.

Authorization: ALTER on the CLUSTER, else every filter fails with
CLUSTER_AUTHORIZATION_FAILED; without an authorizer: SECURITY_DISABLED, as Kafka.
"""
from kafkette.broker import authorization as authz
from kafkette.broker.handlers.common import error_of
from kafkette.broker.handlers.describe_acls import acl_filter
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.controller.acls import ALTER
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import DeleteAclsResponse

Result = DeleteAclsResponse.DeleteAclsFilterResult
Matching = DeleteAclsResponse.DeleteAclsFilterResult.DeleteAclsMatchingAcl


def _error_response(request, code, ctx, message=None):
    return DeleteAclsResponse(filter_results=[
        Result(error_code=code, error_message=message, matching_acls=[])
        for _ in request.filters])


@handler(31, 0, 3, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    refused = authz.acl_api_refusal(ctx, ALTER)
    if refused is not None:
        return _error_response(request, refused[0], ctx, refused[1])
    filters = [acl_filter(f) for f in request.filters]
    try:
        matched = await ctx.broker.controller.delete_acls([f for f in filters if f is not None])
    except KafkaError as e:
        code, msg = error_of(e)
        return _error_response(request, code, ctx, msg)
    it = iter(matched)
    results = []
    for f in filters:
        if f is None:
            results.append(Result(error_code=ErrorCode.INVALID_REQUEST,
                                  error_message="The filter contains UNKNOWN elements.",
                                  matching_acls=[]))
            continue
        results.append(Result(error_code=0, error_message=None, matching_acls=[
            Matching(error_code=0, error_message=None, resource_type=b.resource_type,
                     resource_name=b.resource_name, pattern_type=b.pattern_type,
                     principal=b.principal, host=b.host, operation=b.operation,
                     permission_type=b.permission)
            for b in next(it)]))
    return DeleteAclsResponse(filter_results=results)
