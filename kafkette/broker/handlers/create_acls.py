"""CreateAcls (key 30), versions 0-3.

Each creation becomes an AccessControlEntryRecord in the metadata log, committed by
the active controller (the request is forwarded there, KIP-590), so every node
enforces the same ACLs once it has applied the record. Creating an ACL that exists is
a no-op answered with success, as Kafka. Invalid bindings (pattern type other than
LITERAL / PREFIXED, ANY or UNKNOWN operation or permission, empty name, a CLUSTER
resource not named kafka-cluster, a principal without `Type:`) fail with
INVALID_REQUEST one by one. v0 carries no pattern type: LITERAL.

Authorization: ALTER on the CLUSTER, else every creation fails with
CLUSTER_AUTHORIZATION_FAILED; without an authorizer every creation fails with
SECURITY_DISABLED, as Kafka ("No Authorizer is configured").
"""
from kafkette.broker import authorization as authz
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.controller.acls import ALTER, AclBinding
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import CreateAclsResponse

Result = CreateAclsResponse.AclCreationResult


def _error_response(request, code, ctx, message=None):
    return CreateAclsResponse(results=[Result(error_code=code, error_message=message)
                                       for _ in request.creations])


@handler(30, 0, 3, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    refused = authz.acl_api_refusal(ctx, ALTER)
    if refused is not None:
        return _error_response(request, refused[0], ctx, refused[1])
    bindings = [AclBinding(c.resource_type, c.resource_name, c.resource_pattern_type,
                           c.principal, c.host, c.operation, c.permission_type)
                for c in request.creations]
    try:
        errors = await ctx.broker.controller.create_acls(bindings)
    except KafkaError as e:
        code, msg = error_of(e)
        return _error_response(request, code, ctx, msg)
    return CreateAclsResponse(results=[
        Result(error_code=0 if why is None else ErrorCode.INVALID_REQUEST, error_message=why)
        for why in errors])
