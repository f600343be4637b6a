"""kafkette's one Kafka client: asyncio connections speaking the generated messages.

Everything in kafkette that talks to a Kafka listener goes through here: the admin
tools, EmbeddedBroker's admin calls and readiness probe, the healthcheck, the
benchmark's raw clients, the controller channels between Raft voters, and (next) the
replica fetchers. Framing is kafkette.protocol.framing (sans-IO); this module adds
the sockets.

- `KafkaConnection`: one TCP connection. `send()` pipelines (any number of requests
  in flight, answers matched by correlation id), `send_no_response()` is Produce
  acks=0, `api_versions()` + `version_for()` negotiate as Kafka's NetworkClient does
  (NodeApiVersions.latestUsableVersion). A lost connection fails every request in
  flight with `NetworkError` (a ConnectionError); a request that times out closes the
  connection, as Kafka's NetworkClient does, so that a late answer is never taken for
  another request's. Response frames are bounded (`max_response_bytes`).
- `NodeChannel`: one address, connected on first use and again after a loss, with
  exponential back-off and jitter between failed attempts (Kafka's
  reconnect.backoff.ms / reconnect.backoff.max.ms, KIP-144).
- `KafkaClient`: a bootstrap list, Metadata, a NodeChannel per broker and routing by
  node id; what the tools need, not a producer or a consumer.
- `run_sync()` / `request_once()` / `probe_api_versions()`: blocking use from
  synchronous code (tools, EmbeddedBroker, tests), on one private event-loop thread,
  so they work whether or not the caller's thread runs a loop of its own.

The reads use asyncio.BufferedProtocol (`FrameProtocol`) rather than StreamReader:
the socket reads straight into the FrameDecoder (one copy less for a large Fetch
response). The broker's own connections (kafkette.server.connection) read their
requests with the same FrameProtocol.

Security (TLS, SASL PLAIN / SCRAM) is kafkette.client_security's `ClientSecurity`:
`KafkaConnection.connect(security=...)` wraps the socket in TLS, and
`authenticate()` runs the SASL exchange; NodeChannel and KafkaClient do both on every
new connection, SASL right after ApiVersions as Kafka's clients do.

Layering (tests/test_layers.py): this module imports only protocol, errors, logging,
clock, config and client_security; broker/ and controller/ use it only where they talk to another
node.
"""
from __future__ import annotations

import asyncio
import os
import random
import ssl
import threading
import time

from kafkette.client_security import ClientSecurity, SaslAuthenticationError, SaslClient
from kafkette.errors import ErrorCode, KafkaError, ProtocolError
from kafkette.logging import get_logger
from kafkette.protocol.framing import (
    FrameDecoder,
    FrameError,
    decode_response,
    encode_request,
    frame_request,
    response_correlation_id,
)
from kafkette.protocol.headers import API_VERSIONS_KEY
from kafkette.protocol.messages import API_MESSAGES, API_NAMES

log = get_logger("kafkette.client")

DEFAULT_CLIENT_ID = "kafkette"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_REQUEST_TIMEOUT = 30.0       # Kafka's request.timeout.ms
#: The largest response frame accepted. Kafka's clients read any size; a bound keeps a
#: broken peer from making us allocate without limit (framing grows a large frame's
#: buffer only as its bytes arrive).
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
DEFAULT_BACKOFF = 0.05               # Kafka's reconnect.backoff.ms
DEFAULT_BACKOFF_MAX = 1.0            # Kafka's reconnect.backoff.max.ms
_JITTER = 0.2                        # as Kafka's ExponentialBackoff
#: ApiVersions v3+ sends the client's name and version (KIP-511); the name must match
#: [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?, or the broker answers INVALID_REQUEST.
SOFTWARE_NAME = "kafkette"
PRODUCE_KEY = 0


class NetworkError(KafkaError, ConnectionError):
    """A request that got no answer: the connection could not be made, was lost or
    closed. A ConnectionError too, so code that catches OSError sees it."""

    code = ErrorCode.NETWORK_EXCEPTION


class RequestTimeoutError(NetworkError, TimeoutError):
    """No answer within the request timeout (the connection was closed)."""

    code = ErrorCode.REQUEST_TIMED_OUT


class UnsupportedVersionError(KafkaError):
    """No version of an API both sides support."""

    code = ErrorCode.UNSUPPORTED_VERSION


def highest_common_version(ours: tuple[int, int], theirs: tuple[int, int] | None) -> int | None:
    """The highest version in both (min, max) ranges; None when they do not overlap
    or the broker does not have the API."""
    if theirs is None:
        return None
    v = min(ours[1], theirs[1])
    return v if v >= max(ours[0], theirs[0]) else None


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """HOST:PORT[,HOST:PORT...] as Kafka's bootstrap.servers ([::1]:9092 for IPv6);
    ValueError on a malformed entry."""
    out = []
    for item in servers.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"bad bootstrap server {item.strip()!r}: expected HOST:PORT")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    return out


_software_version: str | None = None


def _software_version_string() -> str:
    global _software_version
    if _software_version is None:
        try:
            from importlib.metadata import version
            _software_version = version("kafkette")
        except Exception:  # noqa: BLE001 - not installed (running from a checkout)
            _software_version = "0"
    return _software_version


class _Pending:
    __slots__ = ("future", "api_key", "version", "decode", "timer", "timeout")

    def __init__(self, future, api_key, version, decode, timer, timeout):
        self.future = future
        self.api_key = api_key
        self.version = version
        self.decode = decode
        self.timer = timer
        self.timeout = timeout


class FrameProtocol(asyncio.BufferedProtocol):
    """An asyncio BufferedProtocol that reads Kafka frames through a FrameDecoder, so
    the socket reads straight into the decoder's buffers. After every read
    `frames_received(frames)` gets the frames it completed (maybe none); a bad size
    prefix goes to `bad_frame(error)` instead. The broker's connections
    (kafkette.server.connection) read requests this way, KafkaConnection responses."""

    def __init__(self, max_frame_bytes: int):
        self._decoder = FrameDecoder(max_frame_bytes)

    def get_buffer(self, sizehint: int):
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames = self._decoder.buffer_updated(nbytes)
        except FrameError as e:
            self.bad_frame(e)
            return
        self.frames_received(frames)

    def frames_received(self, frames: list) -> None:
        raise NotImplementedError

    def bad_frame(self, error: FrameError) -> None:
        raise NotImplementedError


class _Protocol(FrameProtocol):
    """asyncio callbacks of one KafkaConnection (kept off its public surface)."""

    def __init__(self, conn: "KafkaConnection", max_frame_bytes: int):
        super().__init__(max_frame_bytes)
        self.conn = conn

    def connection_made(self, transport) -> None:
        self.conn._transport = transport

    def frames_received(self, frames: list) -> None:
        if frames:
            self.conn._on_frames(frames)

    def bad_frame(self, error: FrameError) -> None:
        self.conn._protocol_violation(f"bad response frame size {error.size} "
                                      f"(max {error.max_frame_bytes})")

    def eof_received(self):
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc) -> None:
        self.conn._on_lost(exc)

    def pause_writing(self) -> None:
        self.conn._write_paused = True

    def resume_writing(self) -> None:
        self.conn._write_paused = False
        self.conn._wake_drainers(None)


class KafkaConnection:
    """One connection to a Kafka listener. Make it with `await KafkaConnection.connect()`.

    Not thread-safe: use it from the event loop that connected it."""

    def __init__(self, host: str, port: int, *, client_id: str | None = DEFAULT_CLIENT_ID,
                 request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self.host = host
        self.port = port
        self.client_id = client_id
        self.request_timeout = request_timeout
        #: api key -> (min, max) the broker serves, after api_versions().
        self.versions: dict[int, tuple[int, int]] | None = None
        self.closed_at: float | None = None     # time.monotonic() of the loss or close
        self.max_response_bytes = max_response_bytes
        self._transport = None
        self._pending: dict[int, _Pending] = {}
        self._correlation = 0
        self._error: str | None = None          # why the connection is unusable
        self._write_paused = False
        self._drainers: list[asyncio.Future] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        #: time.monotonic() when the SASL session ends (KIP-368), None without one.
        self.session_expires_at: float | None = None
        self._auth_at = time.monotonic()

    @classmethod
    async def connect(cls, host: str, port: int, *, client_id: str | None = DEFAULT_CLIENT_ID,
                      timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
                      request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
                      max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                      security: ClientSecurity | None = None) -> "KafkaConnection":
        """Open a TCP connection (NetworkError when it cannot be made within `timeout`),
        with the TLS handshake done when `security` says SSL / SASL_SSL. Nothing is
        sent: call api_versions() to negotiate, then authenticate() for SASL."""
        conn = cls(host, port, client_id=client_id, request_timeout=request_timeout,
                   max_response_bytes=max_response_bytes)
        loop = conn._loop = asyncio.get_running_loop()
        tls = {}
        if security is not None and security.uses_tls:
            tls = dict(ssl=security.ssl_context,
                       server_hostname=security.server_hostname or host)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(conn, max_response_bytes), host, port,
                                       **tls),
                timeout)
        except asyncio.TimeoutError:
            raise NetworkError(f"cannot connect to {host}:{port}: "
                               f"timed out after {timeout:g} s") from None
        except ssl.SSLError as e:
            # A certificate the trust store refuses, a plaintext port, a host name that
            # does not match: a NetworkError (so a bootstrap list moves on) saying so.
            raise NetworkError(f"TLS handshake with {host}:{port} failed: "
                               f"{getattr(e, 'verify_message', None) or e.reason or e}") from e
        except OSError as e:
            # asyncio's message is "Connect call failed (address)"; the errno says why.
            detail = os.strerror(e.errno) if e.errno else str(e)
            raise NetworkError(f"cannot connect to {host}:{port}: {detail}") from e
        return conn

    def __repr__(self) -> str:
        state = "closed" if self._error is not None else f"{len(self._pending)} in flight"
        return f"<KafkaConnection {self.host}:{self.port} {state}>"

    async def __aenter__(self) -> "KafkaConnection":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    @property
    def is_closed(self) -> bool:
        return self._error is not None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ requests

    async def send(self, request, version: int, timeout: float | None = None, *,
                   client_id: str | None = None):
        """Send a generated request message at `version`; the decoded response.

        `timeout` (seconds) defaults to the connection's request_timeout. Raises
        NetworkError when the connection is or gets lost, RequestTimeoutError on a
        timeout, ProtocolError when the answer cannot be decoded."""
        return await self._submit(request.API_KEY, version, request, timeout, client_id, True)

    def send_encoded(self, api_key: int, version: int, body, timeout: float | None = None, *,
                     client_id: str | None = None) -> asyncio.Future:
        """Send a pre-encoded request body (bytes, or a list of chunks); a future of
        the raw response frame (correlation id first, header not stripped). For load
        generators that re-send one body and read one field of the answer."""
        return self._submit(api_key, version, body, timeout, client_id, False)

    def send_no_response(self, request, version: int, *, client_id: str | None = None) -> None:
        """Send a Produce with acks=0, which the broker never answers. Not awaited:
        call `await drain()` to wait for the socket when sending many."""
        if request.API_KEY != PRODUCE_KEY or request.acks != 0:
            # Any other request gets an answer, which would then match no request.
            raise ValueError("only a Produce request with acks=0 gets no response")
        self._check_open()
        self._transport.writelines(
            encode_request(request, version, self._next_correlation(), self._cid(client_id)))

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        self._check_open()
        if not self._write_paused:
            return
        fut = self._loop.create_future()
        self._drainers.append(fut)
        await fut

    def _submit(self, api_key, version, payload, timeout, client_id, decode) -> asyncio.Future:
        self._check_open()
        corr = self._next_correlation()
        cid = self._cid(client_id)
        if isinstance(payload, (bytes, bytearray, memoryview, list)):
            chunks = frame_request(api_key, version, corr, cid, payload)
        else:
            chunks = encode_request(payload, version, corr, cid)   # may raise: nothing sent
        loop = self._loop
        fut = loop.create_future()
        if timeout is None:
            timeout = self.request_timeout
        timer = loop.call_later(timeout, self._on_timeout, corr) if timeout is not None else None
        self._pending[corr] = _Pending(fut, api_key, version, decode, timer, timeout)
        self._transport.writelines(chunks)
        return fut

    def _cid(self, client_id):
        return self.client_id if client_id is None else client_id

    def _next_correlation(self) -> int:
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        return self._correlation

    def _check_open(self) -> None:
        if self._error is not None:
            raise NetworkError(self._error)
        if self._transport is None:
            raise NetworkError(f"not connected to {self.host}:{self.port}: "
                               f"use await KafkaConnection.connect()")

    # ------------------------------------------------------------------ responses

    def _on_frames(self, frames) -> None:
        pending = self._pending
        for frame in frames:
            try:
                corr = response_correlation_id(frame)
            except ProtocolError as e:
                self._protocol_violation(str(e))
                return
            p = pending.pop(corr, None)
            if p is None:
                # Answers to requests we gave up on are still expected (their entry
                # stays until then); an id we never sent means the stream is not ours.
                self._protocol_violation(f"response with unknown correlation id {corr}")
                return
            if p.timer is not None:
                p.timer.cancel()
            fut = p.future
            if fut.done():
                continue  # the caller was cancelled
            if not p.decode:
                fut.set_result(frame)
                continue
            try:
                _, resp = decode_response(frame, p.api_key, p.version)
            except Exception as e:  # noqa: BLE001 - the caller gets it
                fut.set_exception(ProtocolError(
                    f"undecodable {API_NAMES.get(p.api_key, p.api_key)} v{p.version} "
                    f"response from {self.host}:{self.port}: {e}"))
                continue
            fut.set_result(resp)

    def _on_timeout(self, corr: int) -> None:
        p = self._pending.get(corr)
        if p is None or p.future.done():
            return
        name = API_NAMES.get(p.api_key, p.api_key)
        p.future.set_exception(RequestTimeoutError(
            f"{name} v{p.version} request to {self.host}:{self.port} timed out after "
            f"{p.timeout * 1000:.0f} ms"))
        log.debug("request timed out: closing the connection", peer=f"{self.host}:{self.port}",
                  api=name, timeout_ms=round(p.timeout * 1000))
        self._shutdown(f"connection to {self.host}:{self.port} closed after a request timeout")

    def _protocol_violation(self, what: str) -> None:
        log.warning("closing connection: bad response", peer=f"{self.host}:{self.port}",
                    error=what)
        self._shutdown(f"connection to {self.host}:{self.port} closed: {what}")

    def _on_lost(self, exc) -> None:
        if self._error is None and self._pending:
            log.debug("connection lost with requests in flight",
                      peer=f"{self.host}:{self.port}", in_flight=len(self._pending),
                      error=str(exc) if exc else None)
        detail = f": {exc}" if exc else ""
        self._shutdown(f"connection to {self.host}:{self.port} lost{detail}", transport=None)

    def _shutdown(self, reason: str, transport: str | None = "abort") -> None:
        """Fail what is in flight; then the transport is aborted (unsent bytes
        dropped: the stream is no longer trusted), closed (they are sent first), or
        (None) already gone."""
        if self._error is None:
            self._error = reason
            self.closed_at = time.monotonic()
        if transport is not None and self._transport is not None:
            if transport == "close":
                self._transport.close()
            else:
                self._transport.abort()
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if p.timer is not None:
                p.timer.cancel()
            if not p.future.done():
                p.future.set_exception(NetworkError(self._error))
                p.future.exception()  # retrieved: a send_encoded future may be unwatched
        self._wake_drainers(NetworkError(self._error))

    def _wake_drainers(self, error) -> None:
        drainers, self._drainers = self._drainers, []
        for fut in drainers:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)
                    fut.exception()

    def close(self) -> None:
        """Close the connection after sending what is buffered (an acks=0 Produce is
        not lost); requests still waiting for an answer fail with NetworkError."""
        self._shutdown(f"connection to {self.host}:{self.port} closed", transport="close")

    # ------------------------------------------------------------------ versions

    async def api_versions(self, timeout: float | None = None) -> dict[int, tuple[int, int]]:
        """Ask which API versions the broker serves; also kept in `self.versions`.

        Sent at our newest ApiVersions version; a broker that does not know it answers
        with the v0 body, UNSUPPORTED_VERSION and its own range (KIP-511), and we ask
        once more at the newest version it has, as Kafka's NetworkClient does."""
        from kafkette.protocol.messages import ApiVersionsRequest
        req = ApiVersionsRequest(client_software_name=SOFTWARE_NAME,
                                 client_software_version=_software_version_string())
        version = ApiVersionsRequest.MAX_VERSION
        for _ in range(2):
            resp = await self.send(req, version, timeout)
            if resp.error_code != ErrorCode.UNSUPPORTED_VERSION or version == 0:
                break
            theirs = {k.api_key: k.max_version for k in resp.api_keys}.get(API_VERSIONS_KEY, 0)
            version = max(0, min(theirs, version - 1))
        if resp.error_code != 0:
            raise KafkaError(f"ApiVersions v{version} to {self.host}:{self.port} failed",
                             code=_error_code(resp.error_code))
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
        return self.versions

    async def authenticate(self, mechanism: str, username: str, password: str,
                           timeout: float | None = None) -> None:
        """The SASL exchange (after api_versions()): SaslHandshake v1, then
        SaslAuthenticate requests carrying the tokens (KIP-152), as Kafka's
        SaslClientAuthenticator. KafkaError SASL_AUTHENTICATION_FAILED (the broker's
        message) or UNSUPPORTED_SASL_MECHANISM (naming what it offers); the broker closes
        the connection after a failure, and so do we.

        A session lifetime in the answer (KIP-368, the broker's connections.max.reauth.ms)
        is kept in `session_expires_at`: NodeChannel opens a new connection before then
        rather than re-authenticating this one."""
        from kafkette.protocol.messages import SaslAuthenticateRequest, SaslHandshakeRequest
        peer = f"{self.host}:{self.port}"
        try:
            hs = await self.send(SaslHandshakeRequest(mechanism=mechanism),
                                 self.version_for(SaslHandshakeRequest.API_KEY, min_version=1),
                                 timeout)
            if hs.error_code != 0:
                raise KafkaError(f"{peer} does not offer SASL mechanism {mechanism} "
                                 f"(enabled: {', '.join(hs.mechanisms) or 'none'})",
                                 code=_error_code(hs.error_code))
            version = self.version_for(SaslAuthenticateRequest.API_KEY)
            client = SaslClient(mechanism, username, password)
            token = client.first()
            while True:
                resp = await self.send(SaslAuthenticateRequest(auth_bytes=token), version,
                                       timeout)
                if resp.error_code != 0:
                    raise KafkaError(f"{mechanism} authentication of {username!r} at {peer} "
                                     f"failed: {resp.error_message or 'no reason given'}",
                                     code=_error_code(resp.error_code))
                try:
                    token = client.step(bytes(resp.auth_bytes))
                except SaslAuthenticationError as e:
                    raise KafkaError(f"{peer}: {e}",
                                     code=ErrorCode.SASL_AUTHENTICATION_FAILED) from None
                if token is None:
                    break
        except BaseException:
            self.close()
            raise
        lifetime = getattr(resp, "session_lifetime_ms", 0) or 0
        self._auth_at = time.monotonic()
        self.session_expires_at = self._auth_at + lifetime / 1000.0 if lifetime > 0 else None

    @property
    def reauthentication_due(self) -> bool:
        """Past 90% of the SASL session's lifetime (Kafka's clients re-authenticate
        at 85-95%): time for a new connection."""
        exp = self.session_expires_at
        return exp is not None and time.monotonic() >= exp - 0.1 * max(0.0, exp - self._auth_at)

    def version_for(self, api_key: int, min_version: int | None = None,
                    max_version: int | None = None) -> int:
        """The highest version of `api_key` that both the broker (api_versions() first)
        and we (the generated classes, narrowed by min/max_version) support."""
        if self.versions is None:
            raise RuntimeError("version_for() needs api_versions() first")
        req_cls = API_MESSAGES[api_key][0]
        ours = (req_cls.MIN_VERSION if min_version is None else max(min_version, req_cls.MIN_VERSION),
                req_cls.MAX_VERSION if max_version is None else min(max_version, req_cls.MAX_VERSION))
        theirs = self.versions.get(api_key)
        v = highest_common_version(ours, theirs)
        if v is None:
            name = API_NAMES.get(api_key, api_key)
            if theirs is None:
                raise UnsupportedVersionError(f"{self.host}:{self.port} does not support {name}")
            raise UnsupportedVersionError(
                f"no common version of {name}: ours {ours[0]}-{ours[1]}, "
                f"broker {self.host}:{self.port} {theirs[0]}-{theirs[1]}")
        return v


_AUTH_ERRORS = (ErrorCode.SASL_AUTHENTICATION_FAILED, ErrorCode.UNSUPPORTED_SASL_MECHANISM,
                ErrorCode.ILLEGAL_SASL_STATE)


def _error_code(code: int):
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR


class NodeChannel:
    """One address, connected on first use and again after a loss.

    Failed connection attempts back off exponentially from `backoff` to
    `backoff_max` seconds with ±20% jitter (Kafka's reconnect.backoff.ms /
    reconnect.backoff.max.ms, KIP-144); after a lost connection the next attempt
    waits `backoff`. Concurrent callers share one attempt. With
    `negotiate_versions`, each new connection starts with api_versions() and
    send() without a version uses the highest common one."""

    def __init__(self, host: str, port: int, *, client_id: str | None = DEFAULT_CLIENT_ID,
                 connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
                 request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
                 backoff: float = DEFAULT_BACKOFF, backoff_max: float = DEFAULT_BACKOFF_MAX,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 negotiate_versions: bool = False, security: ClientSecurity | None = None):
        self.host = host
        self.security = security
        self.port = port
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_response_bytes = max_response_bytes
        self.negotiate_versions = negotiate_versions
        self._conn: KafkaConnection | None = None
        self._connecting: asyncio.Future | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"<NodeChannel {self.host}:{self.port} connected={self.connected}>"

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed

    async def connection(self) -> KafkaConnection:
        """The open connection, connecting (after any back-off) when there is none."""
        while True:
            if self._closed:
                raise NetworkError(f"channel to {self.host}:{self.port} is closed")
            conn = self._conn
            if conn is not None and not conn.is_closed:
                if not (conn.reauthentication_due and conn.in_flight == 0):
                    return conn
                # KIP-368: the broker closes a connection whose SASL session ended; a
                # new one (authenticated afresh) replaces it while nothing is in flight.
                conn.close()
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            # shield: one caller cancelled must not cancel the attempt the others share
            await asyncio.shield(self._connecting)

    async def _connect(self) -> None:
        try:
            old = self._conn
            if old is not None and old.closed_at is not None:
                self._next_attempt = max(self._next_attempt, old.closed_at + self.backoff)
                self._conn = None
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                conn = await KafkaConnection.connect(
                    self.host, self.port, client_id=self.client_id, timeout=self.connect_timeout,
                    request_timeout=self.request_timeout,
                    max_response_bytes=self.max_response_bytes, security=self.security)
                sasl = self.security is not None and self.security.uses_sasl
                if self.negotiate_versions or sasl:
                    try:
                        await conn.api_versions()
                        if sasl:
                            await conn.authenticate(self.security.sasl_mechanism,
                                                    self.security.username,
                                                    self.security.password)
                    except (KafkaError, ProtocolError) as e:
                        conn.close()
                        if isinstance(e, NetworkError):
                            raise
                        if e.__class__ is KafkaError and e.code in _AUTH_ERRORS:
                            # Wrong credentials: the caller's to see, not a broker to skip.
                            raise
                        # Not a usable broker: back off and let a bootstrap list move on.
                        raise NetworkError(f"{self.host}:{self.port}: {e}") from e
                    except BaseException:
                        conn.close()
                        raise
            except NetworkError:
                self._failures += 1
                delay = min(self.backoff_max, self.backoff * 2 ** min(self._failures - 1, 30))
                self._next_attempt = time.monotonic() + delay * random.uniform(1 - _JITTER,
                                                                               1 + _JITTER)
                raise
            self._failures = 0
            if self._closed:
                conn.close()
                return
            self._conn = conn
        finally:
            self._connecting = None

    async def send(self, request, version: int | None = None, timeout: float | None = None, *,
                   client_id: str | None = None):
        """Send on the current connection (connecting first if need be); version None:
        the highest common one (needs negotiate_versions). No retry: a failure is the
        caller's to handle, the next send reconnects."""
        conn = await self.connection()
        if version is None:
            version = conn.version_for(request.API_KEY)
        return await conn.send(request, version, timeout, client_id=client_id)

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            try:
                await self._connecting
            except (asyncio.CancelledError, Exception):
                pass
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class KafkaClient:
    """Bootstrap servers, Metadata, and one NodeChannel (with negotiated versions) per
    broker. Requests go to a node id, an address, or the bootstrap connection."""

    def __init__(self, bootstrap: str | list[tuple[str, int]], *,
                 client_id: str | None = DEFAULT_CLIENT_ID,
                 connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
                 request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
                 backoff: float = DEFAULT_BACKOFF, backoff_max: float = DEFAULT_BACKOFF_MAX,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 security: ClientSecurity | None = None):
        self.bootstrap = parse_bootstrap(bootstrap) if isinstance(bootstrap, str) else list(bootstrap)
        if not self.bootstrap:
            raise ValueError("no bootstrap servers")
        self._options = dict(client_id=client_id, connect_timeout=connect_timeout,
                             request_timeout=request_timeout, backoff=backoff,
                             backoff_max=backoff_max, max_response_bytes=max_response_bytes,
                             security=security)
        self.security = security
        self._channels: dict[tuple[str, int], NodeChannel] = {}
        self._bootstrap_channel: NodeChannel | None = None
        #: node id -> (host, port), from the last Metadata answer.
        self.brokers: dict[int, tuple[str, int]] = {}
        self.controller_id: int | None = None

    def channel(self, host: str, port: int) -> NodeChannel:
        """The channel to an address (made on first use, kept)."""
        ch = self._channels.get((host, port))
        if ch is None:
            ch = self._channels[(host, port)] = NodeChannel(host, port, negotiate_versions=True,
                                                            **self._options)
        return ch

    async def bootstrap_channel(self) -> NodeChannel:
        """The first bootstrap server that answers, in order; the same one after that
        while it stays reachable. NetworkError naming every failure otherwise."""
        ch = self._bootstrap_channel
        if ch is not None:
            try:
                await ch.connection()
                return ch
            except NetworkError:
                self._bootstrap_channel = None
        errors = []
        for host, port in self.bootstrap:
            ch = self.channel(host, port)
            try:
                await ch.connection()
            except NetworkError as e:
                errors.append(str(e))
                continue
            self._bootstrap_channel = ch
            return ch
        raise NetworkError("; ".join(errors))

    async def node_channel(self, node: int | tuple[str, int] | None = None) -> NodeChannel:
        """The channel to a node id (Metadata is asked when the id is unknown), an
        address, or (None) the bootstrap connection."""
        if node is None:
            return await self.bootstrap_channel()
        if isinstance(node, tuple):
            return self.channel(*node)
        if node not in self.brokers:
            await self.metadata([])
        if node not in self.brokers:
            raise KafkaError(f"broker {node} is not in the cluster metadata",
                             code=ErrorCode.BROKER_NOT_AVAILABLE)
        return self.channel(*self.brokers[node])

    async def version_for(self, api_key: int, node: int | tuple[str, int] | None = None,
                          min_version: int | None = None, max_version: int | None = None) -> int:
        """The highest version of `api_key` the node and we both support."""
        conn = await (await self.node_channel(node)).connection()
        return conn.version_for(api_key, min_version, max_version)

    async def send(self, request, version: int | None = None, *,
                   node: int | tuple[str, int] | None = None, timeout: float | None = None):
        """Send `request` to `node` (see node_channel) at `version` (None: the highest
        common one)."""
        ch = await self.node_channel(node)
        return await ch.send(request, version, timeout)

    async def metadata(self, topics: list[str] | None = None, *, version: int | None = None,
                       node: int | tuple[str, int] | None = None):
        """A Metadata response (topics None: all; []: brokers only), never creating
        topics; the broker list is kept in `self.brokers`."""
        from kafkette.protocol.messages import MetadataRequest
        ch = await self.node_channel(node)
        if version is None:
            # v0 reads an empty topic list as "all topics": it cannot ask for none.
            version = (await ch.connection()).version_for(MetadataRequest.API_KEY, min_version=1)
        req = MetadataRequest(
            topics=None if topics is None else
            [MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False)
        resp = await ch.send(req, version)
        self.brokers = {b.node_id: (b.host, b.port) for b in resp.brokers}
        self.controller_id = resp.controller_id if resp.controller_id >= 0 else None
        return resp

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        self._bootstrap_channel = None
        for ch in channels:
            await ch.close()


# --------------------------------------------------------------------------- blocking use

class _LoopThread:
    """One event loop on a daemon thread for the process's blocking callers."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _pid: int | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            # After fork() the thread is gone from the child: start a new one there.
            if cls._loop is None or cls._pid != os.getpid() or not cls._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()
                thread = threading.Thread(target=run, name="kafkette-client-loop", daemon=True)
                thread.start()
                ready.wait()
                cls._loop, cls._thread, cls._pid = loop, thread, os.getpid()
            return cls._loop


def run_sync(coro, timeout: float | None = None):
    """Run a coroutine on the client's private loop thread and wait for its result
    (its exception is raised here). `timeout`: TimeoutError after that many seconds,
    the coroutine cancelled."""
    import concurrent.futures
    loop = _LoopThread.loop()
    if threading.current_thread() is _LoopThread._thread:
        coro.close()
        raise RuntimeError("run_sync() called from the client loop itself")
    fut = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise TimeoutError(f"no result after {timeout} s") from None
    except BaseException:
        fut.cancel()   # KeyboardInterrupt in the caller: do not leave it running
        raise


def request_once(host: str, port: int, request, version: int, *,
                 client_id: str | None = DEFAULT_CLIENT_ID, timeout: float = 30.0,
                 security: ClientSecurity | None = None):
    """Blocking: connect, send one request at `version`, close; the decoded response.
    NetworkError / RequestTimeoutError (both OSError) when there is no answer. With
    SASL in `security`, ApiVersions and the SASL exchange come first."""
    async def once():
        conn = await KafkaConnection.connect(host, port, client_id=client_id, timeout=timeout,
                                             request_timeout=timeout, security=security)
        try:
            if security is not None and security.uses_sasl:
                await conn.api_versions()
                await conn.authenticate(security.sasl_mechanism, security.username,
                                        security.password)
            return await conn.send(request, version)
        finally:
            conn.close()
    return run_sync(once())


def probe_api_versions(host: str, port: int, timeout: float = 3.0,
                       client_id: str = "healthcheck",
                       security: ClientSecurity | None = None) -> int:
    """Blocking: the error code of an ApiVersions v0 answer (every Kafka broker and
    librdkafka's mock answer v0). OSError when there is no answer, or a bad one.
    `security`: TLS for an SSL listener (EmbeddedCluster's SSL controller listeners)."""
    from kafkette.protocol.messages import ApiVersionsRequest
    try:
        return request_once(host, port, ApiVersionsRequest(), 0, client_id=client_id,
                            timeout=timeout, security=security).error_code
    except ProtocolError as e:
        raise OSError(f"bad ApiVersions answer from {host}:{port}: {e}") from None
