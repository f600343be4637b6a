"""Request dispatch: one frame in, the response frame out (as a list of chunks).

    frame (bytearray, no length prefix) -> header -> handler -> response chunks

The frame is a writable buffer owned by this request: Produce stamps offsets into
the record batches in place, so no byte of record data is copied on the way to disk.

`handle()` returns the chunks directly when the handler answered synchronously (the
common case: no task, no await), an awaitable when the handler must wait (a Fetch
long poll, later acks=all), or None when no response is sent (Produce acks=0).

Client quotas (broker/quotas.py, KIP-13): once the metadata image holds a quota, each
request's bytes (the handler's `quota_bytes` fact) and handler time are recorded for
its (user, client id); a request over quota gets throttle_time_ms in its answer and,
at versions with KIP-219 semantics, the answer at once and its connection muted for
that long (`KafkaConnection.mute_for`); older versions get the answer that much later.

Errors: an unknown API key or an undecodable frame raises ProtocolError and the
server closes the connection, as Kafka does. A known API at a version the broker does
not serve gets UNSUPPORTED_VERSION; for ApiVersions that answer is the v0 body with
the supported list (KIP-511).
"""
from __future__ import annotations

import asyncio
import inspect
import struct
from dataclasses import dataclass
from time import perf_counter

from kafkette.errors import ErrorCode, ProtocolError
from kafkette.protocol.headers import (
    API_VERSIONS_KEY,
    decode_request_header,
    encode_response_header,
    peek_header,
    response_header_version,
)
from kafkette.protocol.messages import API_MESSAGES
from kafkette.protocol.primitives import Reader, Writer
from kafkette.broker.registry import HandlerSpec, load_handlers
from kafkette.broker.faults import apply_faults
from kafkette.broker.quotas import REQUEST_PERCENTAGE

_size = struct.Struct(">i")
_api_key = struct.Struct(">h")


@dataclass
class RequestContext:
    broker: object            # kafkette.broker.broker.Broker
    header: object            # RequestHeader
    client_host: str = ""
    listener: str = "PLAINTEXT"
    # The connection's authenticated principal, KafkaPrincipal's string form
    # ("User:alice"); User:ANONYMOUS when unauthenticated, as Kafka.
    principal: str = "User:ANONYMOUS"
    # The server's KafkaConnection (None in handler tests): quotas mute it.
    connection: object = None

    @property
    def api_version(self) -> int:
        return self.header.api_version


def frame_response(header_bytes: bytes, w: Writer) -> list:
    chunks = w.to_chunks()
    total = len(header_bytes) + sum(len(c) for c in chunks)
    return [_size.pack(total) + header_bytes, *chunks]


def _carries_error_code(resp_cls, version: int) -> bool:
    """Whether `version` of this response has a top-level error code on the wire
    (Fetch has one only from v7, for instance): encode one and read it back."""
    if "error_code" not in resp_cls.FIELDS:
        return False
    probe = resp_cls(error_code=ErrorCode.UNSUPPORTED_VERSION)
    return resp_cls.decode(probe.encode(version), version).error_code == probe.error_code


class Dispatcher:
    def __init__(self, broker):
        self.broker = broker
        self.handlers: dict[int, HandlerSpec] = load_handlers()
        self.metrics = broker.metrics

    # Every request is counted and timed, awaited handlers included (broker/metrics.py).
    def handle(self, frame, client_host: str = "", listener: str = "PLAINTEXT",
               principal: str = "User:ANONYMOUS", connection=None):
        t0 = perf_counter()
        result = self._dispatch(frame, client_host, listener, principal, connection=connection)
        if result is None or isinstance(result, list):
            self.metrics.record_request(_api_key.unpack_from(frame, 0)[0], perf_counter() - t0)
            return result
        return self._timed(result, _api_key.unpack_from(frame, 0)[0], t0)

    async def _timed(self, awaitable, api_key: int, t0: float):
        try:
            return await awaitable
        finally:
            self.metrics.record_request(api_key, perf_counter() - t0)

    def handle_sasl(self, frame, session, client_host: str, listener: str):
        """A SaslHandshake or SaslAuthenticate of a connection's SASL exchange
        (server/sasl.py): the handler gets the connection's session as `ctx.sasl`.
        Without one (a PLAINTEXT listener, an authenticated connection) the same
        handlers answer ILLEGAL_SASL_STATE, as KafkaApis does."""
        t0 = perf_counter()
        result = self._dispatch(frame, client_host, listener, "User:ANONYMOUS", session)
        # Both handlers answer at once (no await): counted here as handle() counts.
        self.metrics.record_request(_api_key.unpack_from(frame, 0)[0], perf_counter() - t0)
        return result

    def _dispatch(self, frame, client_host: str, listener: str,
                  principal: str = "User:ANONYMOUS", sasl=None, connection=None):
        api_key, api_version, correlation_id = peek_header(frame)
        spec = self.handlers.get(api_key)
        if spec is None or api_key not in API_MESSAGES:
            raise ProtocolError(f"unknown api key {api_key}")
        req_cls, resp_cls = API_MESSAGES[api_key]
        r = Reader(frame)
        schema_ok = req_cls.MIN_VERSION <= api_version <= req_cls.MAX_VERSION
        if api_key == API_VERSIONS_KEY and not (spec.min_version <= api_version <= spec.max_version):
            # KIP-511: a newer client than us; answer v0 with the list we support.
            header = decode_request_header(r, known_version=False)
            ctx = RequestContext(self.broker, header, client_host, listener, principal)
            resp = spec.error_response(None, ErrorCode.UNSUPPORTED_VERSION, ctx)
            return self._encode(resp, resp_cls, 0, correlation_id, api_key)
        if not schema_ok:
            # We cannot even parse it. Kafka closes the connection here too.
            raise ProtocolError(f"api key {api_key} version {api_version} is unknown")
        header = decode_request_header(r)
        ctx = RequestContext(self.broker, header, client_host, listener, principal)
        ctx.sasl = sasl  # the SASL session, for SaslHandshake / SaslAuthenticate only
        ctx.connection = connection
        request = req_cls.read(r, api_version)
        if not (spec.min_version <= api_version <= spec.max_version):
            if spec.error_response is not None and \
                    spec.advertised_min_version <= api_version < spec.min_version:
                # Listed in ApiVersions but refused (Produce v0-2): every partition
                # says UNSUPPORTED_VERSION, as Kafka 4.0 answers.
                resp = spec.error_response(request, ErrorCode.UNSUPPORTED_VERSION, ctx)
            elif _carries_error_code(resp_cls, api_version):
                # A response with a top-level error code can say it directly.
                resp = resp_cls(error_code=ErrorCode.UNSUPPORTED_VERSION)
            else:
                # Nothing in this response can carry the error: close, as Kafka
                # does for any request at a version it does not support.
                raise ProtocolError(f"api key {api_key} version {api_version} is not served")
            return self._encode(resp, resp_cls, api_version, correlation_id, api_key)
        handle = spec.handle
        cluster = getattr(self.broker, "cluster", None)
        if cluster is not None:
            # Cluster: admin requests go to the active controller, group requests to
            # the group's coordinator (broker/cluster.py).
            handle = cluster.handler_for(spec, spec.handle)
        # Injected errors, latency and unavailable leaders for fault tests (broker/faults.py).
        faults = getattr(self.broker, "faults", None)
        t_handler = perf_counter()
        if faults is not None and faults.active:
            result = apply_faults(faults, ctx, spec, request, handle)
        else:
            result = handle(ctx, request)
        if self.broker.image.client_quotas:
            return self._with_quotas(ctx, spec, request, result, len(frame),
                                     perf_counter() - t_handler, resp_cls, correlation_id)
        if result is None:
            return None
        if inspect.isawaitable(result):
            return self._finish(result, resp_cls, api_version, correlation_id, api_key)
        return self._encode(result, resp_cls, api_version, correlation_id, api_key)

    async def _finish(self, awaitable, resp_cls, api_version, correlation_id, api_key):
        resp = await awaitable
        if resp is None:
            return None
        return self._encode(resp, resp_cls, api_version, correlation_id, api_key)

    # -- client quotas -------------------------------------------------------------------
    def _with_quotas(self, ctx, spec, request, result, frame_size, handler_s, resp_cls,
                     correlation_id):
        if inspect.isawaitable(result):
            return self._awaited_with_quotas(ctx, spec, request, result, frame_size,
                                             handler_s, resp_cls, correlation_id)
        throttle = self._throttle_ms(ctx, spec, request, result, frame_size, handler_s)
        return self._throttled(ctx, spec, result, throttle, resp_cls, correlation_id)

    async def _awaited_with_quotas(self, ctx, spec, request, awaitable, frame_size,
                                   handler_s, resp_cls, correlation_id):
        # Only the handler's own time counts towards request_percentage, not the wait
        # in purgatory (a Fetch long poll): Kafka counts request-thread time.
        resp = await awaitable
        throttle = self._throttle_ms(ctx, spec, request, resp, frame_size, handler_s)
        result = self._throttled(ctx, spec, resp, throttle, resp_cls, correlation_id)
        return await result if inspect.isawaitable(result) else result

    def _throttle_ms(self, ctx, spec, request, resp, frame_size, handler_s) -> int:
        # No principal: the broker's own request (see broker/authorization.py).
        if ctx.principal is None or (spec.quota_exempt is not None and
                                     spec.quota_exempt(ctx, request)):
            return 0
        quotas = self.broker.image.client_quotas
        principal = ctx.principal
        user = principal.split(":", 1)[1] if ":" in principal else principal
        client_id = ctx.header.client_id or ""
        now = self.broker.clock.monotonic_ms()
        manager = self.broker.quotas
        throttle = 0
        if spec.quota_bytes is not None:
            got = spec.quota_bytes(ctx, request, resp, frame_size)
            if got is not None:
                throttle = manager.record(quotas, user, client_id, got[0], got[1], now)
        # Handler seconds * 100 per second of window: a percentage of one thread.
        return max(throttle, manager.record(quotas, user, client_id, REQUEST_PERCENTAGE,
                                            handler_s * 100.0, now))

    def _throttled(self, ctx, spec, resp, throttle: int, resp_cls, correlation_id):
        version = ctx.api_version
        if throttle > 0 and resp is not None and "throttle_time_ms" in resp_cls.FIELDS:
            resp.throttle_time_ms = max(resp.throttle_time_ms or 0, throttle)
        chunks = None if resp is None else self._encode(resp, resp_cls, version,
                                                        correlation_id, spec.api_key)
        if throttle <= 0:
            return chunks
        if chunks is None or version >= spec.throttle_mute_version:
            # KIP-219: answer now, read nothing more from this client for that long
            # (an acks=0 Produce has no answer to delay: muting is all there is).
            if ctx.connection is not None:
                ctx.connection.mute_for(throttle)
            return chunks
        return _delayed(chunks, throttle)

    @staticmethod
    def _encode(resp, resp_cls, api_version, correlation_id, api_key) -> list:
        w = Writer()
        resp.write(w, api_version)
        hdr = encode_response_header(correlation_id, response_header_version(api_key, api_version))
        return frame_response(hdr, w)


async def _delayed(chunks, throttle_ms: int):
    """Pre-KIP-219 throttling: the answer itself waits out the throttle time (the
    connection answers in order, so nothing else of this client is served meanwhile)."""
    await asyncio.sleep(throttle_ms / 1000.0)
    return chunks
