"""DescribeUserScramCredentials (key 50), version 0 (KIP-554): the mechanisms and
iteration counts of users' SCRAM credentials (never salts or keys), from this broker's
metadata image. users null or empty: every user with a credential. A user named twice
gets DUPLICATE_RESOURCE, one without a credential RESOURCE_NOT_FOUND, as Kafka.
Authorization: DESCRIBE on the CLUSTER (top-level CLUSTER_AUTHORIZATION_FAILED)."""
from kafkette.broker import authorization as authz
from kafkette.broker.handlers.alter_user_scram_credentials import MECHANISMS
from kafkette.broker.registry import handler
from kafkette.controller.acls import DESCRIBE
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeUserScramCredentialsResponse

R = DescribeUserScramCredentialsResponse
Result = R.DescribeUserScramCredentialsResult
Info = Result.CredentialInfo
_IDS = {name: i for i, name in MECHANISMS.items()}


def _error_response(request, code, ctx, message=None):
    return R(error_code=code, error_message=message, results=[])


@handler(50, 0, 0, error_response=_error_response)
def handle(ctx, request):
    if authz.enabled(ctx) and not authz.authorize_cluster(ctx, DESCRIBE):
        return _error_response(request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ctx,
                               "Cluster authorization failed.")
    creds = ctx.broker.image.scram_credentials
    by_user: dict[str, list] = {}
    for (user, mechanism), c in sorted(creds.items()):
        by_user.setdefault(user, []).append(Info(mechanism=_IDS[mechanism],
                                                 iterations=c.iterations))
    asked = [u.name for u in request.users] if request.users else sorted(by_user)
    results = []
    for user in dict.fromkeys(asked):
        if asked.count(user) > 1:
            results.append(Result(user=user, error_code=ErrorCode.DUPLICATE_RESOURCE,
                                  error_message=f"Cannot describe SCRAM credentials for the "
                                                f"same user twice in a single request: {user}",
                                  credential_infos=[]))
        elif user not in by_user:
            results.append(Result(user=user, error_code=ErrorCode.RESOURCE_NOT_FOUND,
                                  error_message=f"Attempt to describe a user credential that "
                                                f"does not exist: {user}",
                                  credential_infos=[]))
        else:
            results.append(Result(user=user, error_code=0, credential_infos=by_user[user]))
    return R(error_code=0, results=results)
