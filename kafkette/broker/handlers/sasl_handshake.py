"""SaslHandshake (key 17), versions 0-1: the client names its SASL mechanism.

Served inside a connection's SASL exchange (server/sasl.py; the dispatcher passes the
session as `ctx.sasl`): NONE or UNSUPPORTED_SASL_MECHANISM, with the listener's enabled
mechanisms either way. v0 means raw SASL tokens follow; v1 means SaslAuthenticate
requests (KIP-152). Outside an exchange (a PLAINTEXT or SSL listener, or an
authenticated connection whose client cannot re-authenticate) the answer is
ILLEGAL_SASL_STATE, as KafkaApis gives.
"""
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import SaslHandshakeResponse


def _error_response(request, code, ctx, message=None):
    return SaslHandshakeResponse(error_code=code, mechanisms=[])


# The SASL exchange is the authenticator's, not a client request: no quota
# (Kafka's authenticator answers it before KafkaApis, which throttles).
@handler(17, 0, 1, error_response=_error_response, quota_exempt=lambda ctx, r: True)
def handle(ctx, request):
    session = getattr(ctx, "sasl", None)
    if session is None:
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])
    code, mechanisms = session.handshake(request.mechanism, ctx.api_version)
    return SaslHandshakeResponse(error_code=code, mechanisms=mechanisms)
