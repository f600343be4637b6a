"""AlterUserScramCredentials (key 51), version 0 (KIP-554).

Creates, replaces or deletes a user's SCRAM-SHA-256 / SCRAM-SHA-512 credential, what
`kafka-configs.sh --alter --add-config 'SCRAM-SHA-512=[password=...]' --entity-type
users` and the admin clients' alter_user_scram_credentials send. The client sends the
salt and the salted password (never the password); the active controller (the request
is forwarded there, KIP-590) derives the stored and server keys and commits them as
UserScramCredentialRecords, so every broker of the cluster checks SCRAM logins against
the same credentials. Errors per user as Kafka: DUPLICATE_RESOURCE, UNSUPPORTED_SASL_MECHANISM,
UNACCEPTABLE_CREDENTIAL, RESOURCE_NOT_FOUND (see Controller.alter_user_scram_credentials).
Authorization: ALTER on the CLUSTER (CLUSTER_AUTHORIZATION_FAILED for every user).
"""
from kafkette.broker import authorization as authz
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.controller.acls import ALTER
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import AlterUserScramCredentialsResponse

Result = AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult
# The mechanism ids of Kafka's ScramMechanism.
MECHANISMS = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}


def _users(request) -> list[str]:
    seen = []
    for item in list(request.deletions) + list(request.upsertions):
        if item.name not in seen:
            seen.append(item.name)
    return seen


def _error_response(request, code, ctx, message=None):
    return AlterUserScramCredentialsResponse(results=[
        Result(user=u, error_code=code, error_message=message) for u in _users(request)])


@handler(51, 0, 0, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    if authz.enabled(ctx) and not authz.authorize_cluster(ctx, ALTER):
        return _error_response(request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ctx,
                               "Cluster authorization failed.")
    deletions = [(d.name, MECHANISMS.get(d.mechanism, "")) for d in request.deletions]
    upsertions = [(u.name, MECHANISMS.get(u.mechanism, ""), u.iterations, bytes(u.salt or b""),
                   bytes(u.salted_password or b"")) for u in request.upsertions]
    try:
        results = await ctx.broker.controller.alter_user_scram_credentials(deletions, upsertions)
    except KafkaError as e:
        code, msg = error_of(e)
        return _error_response(request, code, ctx, msg)
    return AlterUserScramCredentialsResponse(results=[
        Result(user=u, error_code=results[u][0], error_message=results[u][1])
        for u in _users(request)])
