"""DescribeAcls (key 29), versions 0-3.

Answered by any broker from the ACLs of its metadata image (as a KRaft broker answers
from its StandardAuthorizer's copy), grouped by resource pattern. Kafka's filter
semantics: ANY (resource type, pattern type, operation, permission) and a null name,
principal or host match everything; pattern type MATCH matches the ACLs that apply to
the named resource (LITERAL of that name, LITERAL `*`, PREFIXED prefixes of it). A
filter with an UNKNOWN element is INVALID_REQUEST. v0 carries no pattern type: LITERAL.

Authorization: DESCRIBE on the CLUSTER (CLUSTER_AUTHORIZATION_FAILED); without an
authorizer: SECURITY_DISABLED, as Kafka.
"""
from kafkette.broker import authorization as authz
from kafkette.broker.registry import handler
from kafkette.controller.acls import DESCRIBE, AclFilter
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeAclsResponse

Resource = DescribeAclsResponse.DescribeAclsResource
Description = DescribeAclsResponse.DescribeAclsResource.AclDescription


def acl_filter(f) -> AclFilter | None:
    """The AclFilter of a DescribeAcls request or a DeleteAcls filter; None when an
    element is UNKNOWN (0), which Kafka refuses."""
    codes = (f.resource_type_filter, f.pattern_type_filter, f.operation, f.permission_type)
    if any(c <= 0 for c in codes):
        return None
    return AclFilter(f.resource_type_filter, f.resource_name_filter, f.pattern_type_filter,
                     f.principal_filter, f.host_filter, f.operation, f.permission_type)


def _error_response(request, code, ctx, message=None):
    return DescribeAclsResponse(error_code=code, error_message=message, resources=[])


@handler(29, 0, 3, error_response=_error_response)
def handle(ctx, request):
    refused = authz.acl_api_refusal(ctx, DESCRIBE)
    if refused is not None:
        return _error_response(request, refused[0], ctx, refused[1])
    f = acl_filter(request)
    if f is None:
        return _error_response(request, ErrorCode.INVALID_REQUEST, ctx,
                               "The filter contains UNKNOWN elements.")
    grouped: dict[tuple, list] = {}
    for _, b in ctx.broker.image.acls.matching(f):
        grouped.setdefault((b.resource_type, b.resource_name, b.pattern_type), []).append(b)
    return DescribeAclsResponse(error_code=0, error_message=None, resources=[
        Resource(resource_type=rt, resource_name=name, pattern_type=pt, acls=[
            Description(principal=b.principal, host=b.host, operation=b.operation,
                        permission_type=b.permission)
            for b in sorted(acls, key=lambda b: (b.principal, b.host, b.operation,
                                                 b.permission))])
        for (rt, name, pt), acls in sorted(grouped.items())])
