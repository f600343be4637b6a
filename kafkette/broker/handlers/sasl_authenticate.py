"""SaslAuthenticate (key 36), versions 0-2: one SASL token each way (KIP-152).

Served inside a connection's SASL exchange (server/sasl.py, the session as
`ctx.sasl`). A refused token gets SASL_AUTHENTICATION_FAILED with Kafka's message
(PLAIN's "Authentication failed: Invalid username or password"; SCRAM's generic
"... due to invalid credentials with SASL mechanism ..."), then the connection closes.
From v1 the last answer carries session_lifetime_ms (KIP-368,
connections.max.reauth.ms; 0 when sessions do not expire). Outside an exchange:
ILLEGAL_SASL_STATE, as KafkaApis answers.
"""
import time

from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import SaslAuthenticateResponse


def _error_response(request, code, ctx, message=None):
    return SaslAuthenticateResponse(error_code=code, error_message=message)


# The SASL exchange is the authenticator's, not a client request: no quota
# (Kafka's authenticator answers it before KafkaApis, which throttles).
@handler(36, 0, 2, error_response=_error_response, quota_exempt=lambda ctx, r: True)
def handle(ctx, request):
    session = getattr(ctx, "sasl", None)
    if session is None:
        return SaslAuthenticateResponse(
            error_code=ErrorCode.ILLEGAL_SASL_STATE,
            error_message="SaslAuthenticate request received after successful authentication")
    code, message, token, lifetime_ms = session.authenticate(
        request.auth_bytes, ctx.api_version, int(time.monotonic() * 1000))
    return SaslAuthenticateResponse(error_code=code, error_message=message, auth_bytes=token,
                                    session_lifetime_ms=lifetime_ms)
