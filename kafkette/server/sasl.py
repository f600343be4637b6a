"""The SASL exchange of one connection, sans-IO (Kafka's SaslServerAuthenticator).

The connection (server/connection.py) asks `route(api_key)` what to do with each
frame until the session is authenticated, hands the SaslHandshake / SaslAuthenticate
requests to their handler modules (which call `handshake()` / `authenticate()`
here) and raw tokens to `authenticate_raw()`. Nothing here reads a socket or a clock:
the caller passes the time in milliseconds.

States (Kafka's SaslState, without GSSAPI's INITIAL_REQUEST):

    HANDSHAKE_OR_VERSIONS --ApiVersions--> HANDSHAKE
    HANDSHAKE_OR_VERSIONS / HANDSHAKE --SaslHandshake(enabled mechanism)--> AUTHENTICATE
    AUTHENTICATE --token(s) accepted--> COMPLETE
    any --unsupported mechanism, bad token, other request--> FAILED (connection closes)
    COMPLETE --SaslHandshake, client speaks SaslAuthenticate v1+--> REAUTH (KIP-368)
    REAUTH --SaslHandshake(same mechanism)--> AUTHENTICATE (same principal required)

Before COMPLETE only ApiVersions (once, before the handshake) and SaslHandshake are
served; anything else closes the connection without an answer, as Kafka does (its
IllegalSaslStateException "Unexpected Kafka request of type X during SASL
handshake"); a request other than SaslAuthenticate after the handshake gets nothing
either (Kafka answers that one with the request's error response carrying
ILLEGAL_SASL_STATE before closing).

SaslHandshake v0 means the client sends raw SASL tokens, each with a 4-byte size and
no Kafka header, answered the same way (Kafka keeps this for old clients); v1 means
SaslAuthenticate requests (KIP-152).
"""
from __future__ import annotations

import hmac
from enum import Enum
from typing import Callable

from kafkette.errors import ErrorCode

HANDSHAKE_OR_VERSIONS = "HANDSHAKE_OR_VERSIONS"
HANDSHAKE = "HANDSHAKE"
AUTHENTICATE = "AUTHENTICATE"
COMPLETE = "COMPLETE"
FAILED = "FAILED"
REAUTH = "REAUTH"


class Route(Enum):
    DISPATCH = "dispatch"          # an ordinary request (ApiVersions before the handshake)
    EXCHANGE = "exchange"          # SaslHandshake / SaslAuthenticate, with this session
    RAW_TOKEN = "raw_token"        # the frame is a bare SASL token (handshake v0)
    CLOSE = "close"                # not allowed now: close the connection


class AuthenticationFailed(Exception):
    """The client's credentials were refused; `str(e)` is the message the client gets."""


class PlainServer:
    """SASL/PLAIN (RFC 4616) against the users of the listener's JAAS config. The
    messages are Kafka's PlainSaslServer's."""

    mechanism = "PLAIN"

    def __init__(self, users: dict[str, str]):
        self.users = users
        self.complete = False
        self.username: str | None = None

    def step(self, token: bytes) -> bytes:
        parts = token.split(b"\x00")
        if len(parts) != 3:
            raise AuthenticationFailed(
                f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(parts)}")
        try:
            authzid, username, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            raise AuthenticationFailed("Authentication failed: Invalid username or password") from None
        if not username:
            raise AuthenticationFailed("Authentication failed: username not specified")
        if not password:
            raise AuthenticationFailed("Authentication failed: password not specified")
        expected = self.users.get(username)
        # compare_digest on bytes: the time taken says nothing of how much matched.
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise AuthenticationFailed("Authentication failed: Invalid username or password")
        if authzid and authzid != username:
            raise AuthenticationFailed("Authentication failed: Client requested an "
                                       "authorization id that is different from username")
        self.username = username
        self.complete = True
        return b""


class ScramServer:
    """SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, 7677) with `scramp`, against the
    credentials of the metadata image. `lookup(username)` returns (salt, stored_key,
    server_key, iterations) or None. Failures give the client Kafka's generic
    message (its ScramSaslServer throws SaslException, which never reaches the
    client, so an unknown user and a wrong password look the same)."""

    def __init__(self, mechanism: str, lookup: Callable[[str], tuple | None],
                 s_nonce: str | None = None):
        import scramp

        self.mechanism = mechanism
        self.complete = False
        self.username: str | None = None
        self._user: str | None = None
        self._lookup = lookup
        # s_nonce: only tests fix the server's nonce (RFC 7677's vector).
        self._server = scramp.ScramMechanism(mechanism).make_server(self._auth_info,
                                                                    s_nonce=s_nonce)
        self._stage = 0

    def _auth_info(self, username: str):
        info = self._lookup(username)
        if info is None:
            raise KeyError(username)
        self._user = username
        return info

    def _failed(self) -> AuthenticationFailed:
        return AuthenticationFailed(
            f"Authentication failed during authentication due to invalid credentials "
            f"with SASL mechanism {self.mechanism}")

    def step(self, token: bytes) -> bytes:
        try:
            text = token.decode("utf-8")
            if self._stage == 0:
                authzid = _gs2_authzid(text)
                self._server.set_client_first(text)
                if authzid and authzid != self._user:
                    raise AuthenticationFailed(
                        "Authentication failed: Client requested an authorization id that "
                        "is different from username")
                self._stage = 1
                return self._server.get_server_first().encode()
            if self._stage == 1:
                self._server.set_client_final(text)
                self._stage = 2
                self.complete = True
                self.username = self._user
                return self._server.get_server_final().encode()
        except AuthenticationFailed:
            raise
        except Exception:  # scramp.ScramException, an unknown user, a bad message
            raise self._failed() from None
        raise self._failed()


def _gs2_authzid(client_first: str) -> str | None:
    """The a=<authzid> of a client-first message's GS2 header (n,a=alice,n=...)."""
    parts = client_first.split(",", 2)
    if len(parts) >= 2 and parts[1].startswith("a="):
        return parts[1][2:].replace("=2C", ",").replace("=3D", "=")
    return None


class SaslSession:
    """One connection's SASL state. `new_mechanism(name)` makes the server side of a
    mechanism (PlainServer / ScramServer); `reauth_ms` is connections.max.reauth.ms
    (0: sessions do not expire)."""

    def __init__(self, mechanisms: list[str], new_mechanism: Callable[[str], object],
                 reauth_ms: Callable[[str], int] | int = 0):
        self.mechanisms = list(mechanisms)
        self._new_mechanism = new_mechanism
        self._reauth_ms = reauth_ms if callable(reauth_ms) else (lambda m, v=reauth_ms: v)
        self.state = HANDSHAKE_OR_VERSIONS
        self.mechanism: str | None = None
        self._server = None
        self.raw_tokens = False            # handshake v0: bare tokens, no SaslAuthenticate
        self.principal: str | None = None  # "User:<name>" once authenticated
        self.supports_reauth = False       # the client sent SaslAuthenticate v1+
        self.session_expires_ms: int | None = None
        self.failure: str | None = None    # why the session failed (for the log line)

    @property
    def authenticated(self) -> bool:
        return self.state == COMPLETE

    @property
    def failed(self) -> bool:
        return self.state == FAILED

    def _fail(self, why: str) -> None:
        self.state = FAILED
        self.failure = why

    # -- what to do with the next frame -------------------------------------------
    def route(self, api_key: int | None, now_ms: int) -> Route:
        """`api_key` of the frame's header (None when it is too short to have one)."""
        from kafkette.protocol.headers import API_VERSIONS_KEY

        state = self.state
        if state == AUTHENTICATE and self.raw_tokens:
            return Route.RAW_TOKEN
        if state == COMPLETE:
            if api_key == SASL_HANDSHAKE_KEY and self.supports_reauth:
                self.state = REAUTH  # KIP-368: the client re-authenticates
                return Route.EXCHANGE
            if self.session_expires_ms is not None and now_ms > self.session_expires_ms:
                self._fail("session expired without re-authentication "
                           "(connections.max.reauth.ms)")
                return Route.CLOSE
            return Route.DISPATCH
        if state == HANDSHAKE_OR_VERSIONS and api_key == API_VERSIONS_KEY:
            self.state = HANDSHAKE
            return Route.DISPATCH
        if state in (HANDSHAKE_OR_VERSIONS, HANDSHAKE, REAUTH) and api_key == SASL_HANDSHAKE_KEY:
            return Route.EXCHANGE
        if state == AUTHENTICATE and api_key == SASL_AUTHENTICATE_KEY:
            return Route.EXCHANGE
        phase = "handshake" if state != AUTHENTICATE else "authentication"
        self._fail(f"Unexpected Kafka request of type {api_key} during SASL {phase}")
        return Route.CLOSE

    # -- SaslHandshake -------------------------------------------------------------
    def handshake(self, mechanism: str, version: int) -> tuple[int, list[str]]:
        """(error code, enabled mechanisms) for a SaslHandshake request."""
        reauth = self.state == REAUTH
        if self.state not in (HANDSHAKE_OR_VERSIONS, HANDSHAKE, REAUTH):
            return ErrorCode.ILLEGAL_SASL_STATE, self.mechanisms
        if mechanism not in self.mechanisms:
            self._fail(f"Unsupported SASL mechanism {mechanism}")
            return ErrorCode.UNSUPPORTED_SASL_MECHANISM, self.mechanisms
        if reauth and mechanism != self.mechanism:
            # Kafka answers the handshake, then fails the first token.
            self._fail(f"SASL mechanism '{mechanism}' requested by client is not supported "
                       f"for re-authentication of mechanism '{self.mechanism}'")
            return ErrorCode.NONE, self.mechanisms
        self._reauthenticating = reauth
        self.mechanism = mechanism
        self._server = self._new_mechanism(mechanism)
        self.raw_tokens = version == 0
        self.state = AUTHENTICATE
        return ErrorCode.NONE, self.mechanisms

    # -- SaslAuthenticate ----------------------------------------------------------
    def authenticate(self, token: bytes, version: int, now_ms: int) -> tuple[int, str | None, bytes, int]:
        """(error code, error message, server token, session lifetime ms) for a
        SaslAuthenticate request."""
        if self.state != AUTHENTICATE or self.raw_tokens:
            self._fail("SaslAuthenticate outside the SASL exchange")
            return ErrorCode.ILLEGAL_SASL_STATE, "Unexpected SaslAuthenticate request", b"", 0
        if version > 0:
            self.supports_reauth = True
        try:
            out = self._step(token, now_ms)
        except AuthenticationFailed as e:
            return ErrorCode.SASL_AUTHENTICATION_FAILED, str(e), b"", 0
        lifetime = 0
        if self.state == COMPLETE and self.session_expires_ms is not None:
            lifetime = self.session_expires_ms - now_ms
        return ErrorCode.NONE, None, out, lifetime

    def authenticate_raw(self, token: bytes, now_ms: int) -> bytes | None:
        """A bare token (handshake v0): the server's token, or None when the
        exchange failed (the connection then closes, as Kafka's does)."""
        try:
            return self._step(token, now_ms)
        except AuthenticationFailed:
            return None

    def _step(self, token: bytes, now_ms: int) -> bytes:
        if self.failed:  # re-authentication asked for another mechanism
            raise AuthenticationFailed(self.failure)
        try:
            out = self._server.step(bytes(token))
        except AuthenticationFailed as e:
            self._fail(str(e))
            raise
        if self._server.complete:
            principal = f"User:{self._server.username}"
            if getattr(self, "_reauthenticating", False) and principal != self.principal:
                msg = (f"Cannot change principals during re-authentication from "
                       f"{self.principal}: {principal}")
                self._fail(msg)
                raise AuthenticationFailed(msg)
            self.principal = principal
            self.state = COMPLETE
            reauth_ms = self._reauth_ms(self.mechanism)
            self.session_expires_ms = now_ms + reauth_ms if reauth_ms > 0 else None
        return out


SASL_HANDSHAKE_KEY = 17
SASL_AUTHENTICATE_KEY = 36
