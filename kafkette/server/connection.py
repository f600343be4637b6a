"""One client connection: Kafka framing over an asyncio BufferedProtocol.

Framing: kafkette.protocol.framing.FrameDecoder, driven by kafkette.client's
FrameProtocol (the reader of the client's connections too): the socket reads straight
into the decoder's memory (small frames out of one receive buffer, a large frame into
a buffer of its own, grown as its bytes arrive). Each frame is a bytearray the
request owns, so Produce can stamp offsets into its record batches in place.

Ordering: requests on one connection are answered strictly in order, as Kafka does
(it mutes a channel until its response is sent). Synchronous handlers run inline
from `buffer_updated` — no task per request; a handler that must wait (a Fetch long
poll) parks the connection's queue until it completes.

Backpressure: when the transport's write buffer is over its high-water mark (a
client not reading its responses) we stop handling and reading this connection's
requests until it drains, as Kafka mutes a channel with a pending response; we stop
reading when too many requests are queued on it, or when the broker's request pool
(queued.max.requests / queued.max.request.bytes, server/limits.py) is full and this
connection has requests waiting. Memory per connection stays bounded.

Limits: a connection over max.connections(.per.ip) is closed in connection_made
(server/limits.py), on TLS listeners at accept, before the TLS handshake (server.py);
one with no complete request and no response for connections.max.idle.ms is closed,
also one stalled in the middle of a frame (Kafka counts any bytes as activity, so a
client that trickles a frame is not idle there).

Quotas (KIP-219): a throttled request's answer goes out at once and `mute_for(ms)`
stops reading and serving this connection's requests for that long, as Kafka mutes
the channel; what the client sends meanwhile waits in the socket.

Errors: a frame larger than socket.request.max.bytes, a negative length, an unknown
API key or an undecodable request closes this connection (with a log line, rate-limited
per peer host by server/log_limiter.py), as Kafka does; other connections are
unaffected.

Security (SSL, SASL_PLAINTEXT, SASL_SSL listeners): a TLS listener's sockets are
accepted by server.py's own accept loop, which checks the connection limits (as
Kafka's acceptor does, so a client over them costs no handshake) and then hands the
socket to asyncio's loop.connect_accepted_socket(ssl=context); connection_made comes
after the handshake (a failed one is logged by server/tls.py). Until the SASL
exchange (server/sasl.py) succeeds, frames go through the session's gate, are
bounded by sasl.server.max.receive.size, and the connection is closed when
connections.max.idle.ms passes before it authenticates. Every request carries the
connection's principal ("User:ANONYMOUS" on PLAINTEXT, as Kafka).
"""
from __future__ import annotations

import asyncio
import struct
import time
from collections import deque

from kafkette.client import FrameProtocol
from kafkette.errors import ProtocolError
from kafkette.logging import get_logger
from kafkette.server.sasl import Route
from kafkette.server.tls import ANONYMOUS

log = get_logger("kafkette.connection")
_api_key = struct.Struct(">h")
MAX_QUEUED_REQUESTS = 64
# Responses handed to the transport at a time: between two writelines the loop checks
# whether the client has stopped reading (pause_writing), so one read of small
# pipelined requests cannot pile all its responses into the write buffer.
WRITE_EVERY = 32


def admit(server, listener: str, peer) -> bool:
    """Count a new connection from `peer` (its (host, port)) in the listener's limits,
    or log the refusal and say no (the caller closes it)."""
    host = peer[0] if peer else "?"
    refused = server.quotas.admit(listener, host)
    if refused is None:
        return True
    server.client_errors.info(
        "connection_refused", host, "closing connection: over a limit", limit=refused,
        listener=listener, peer=f"{peer[0]}:{peer[1]}" if peer else "?")
    return False


class KafkaConnection(FrameProtocol):
    def __init__(self, server, listener_name: str, security=None, admitted_ip: str | None = None):
        super().__init__(server.max_request_bytes)
        # Set by a TLS listener's accept loop: the limits already counted this one.
        self._admitted_ip = admitted_ip
        # server.ListenerSecurity of this listener, or None (PLAINTEXT).
        self.security = security
        self.principal = ANONYMOUS
        self.sasl = None          # server.sasl.SaslSession on SASL listeners
        self._auth_timer = None
        self.server = server
        self.dispatcher = server.dispatcher
        self.listener = listener_name
        self.max_request_bytes = server.max_request_bytes
        self.transport = None
        self.peer = ""
        self.peer_host = ""
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._pooled = (0, 0)      # (requests, bytes) counted in server.request_pool
        self._pause_reason: str | None = None
        self._quota_ip: str | None = None   # counted in server.quotas
        self._idle_timer = None
        self._last_active = 0.0
        self._busy = False
        self._write_paused = False
        self._read_paused = False
        self._mute_timer = None   # quotas: mute_for
        self.closed = False
        self.client_id: str | None = None  # faults: from the first request header
        self.idle = asyncio.Event()
        self.idle.set()

    # -- asyncio callbacks -----------------------------------------------------
    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.peer_host = peer[0] if peer else "?"
        if self._admitted_ip is not None:
            self._quota_ip = self._admitted_ip
        else:
            if not admit(self.server, self.listener, peer):
                self.closed = True
                transport.abort()
                return
            self._quota_ip = self.peer_host
        sec = self.security
        if sec is not None and sec.tls is not None and sec.sasl is None:
            # SSL: the client certificate is the principal. The TLS handshake is done
            # before connection_made (connect_accepted_socket(ssl=context)).
            principal = sec.principals.principal(transport.get_extra_info("ssl_object"))
            if principal is None:
                self.server.client_errors.warning(
                    "ssl_principal", self.peer_host, "closing connection: no "
                    "ssl.principal.mapping.rules rule matches the client certificate",
                    listener=self.listener, peer=self.peer)
                self.server.count_failed_authentication(self.listener)
                transport.abort()
                return
            self.principal = principal
        self._connected(transport)

    def _connected(self, transport) -> None:
        self.transport = transport
        sec = self.security
        if sec is not None and sec.sasl is not None:
            self.sasl = sec.sasl(self)
            self._decoder.max_frame_bytes = sec.max_receive_size
            loop = asyncio.get_running_loop()
            if sec.auth_timeout_s >= 0:  # negative connections.max.idle.ms: no timeout
                self._auth_timer = loop.call_later(sec.auth_timeout_s, self._auth_timed_out)
        self.server.connections.add(self)
        self.dispatcher.metrics.connection_opened(self.listener)  # metrics: connection_count
        self._last_active = time.monotonic()
        if self.server.idle_timeout_s >= 0:  # negative: never closed for idleness
            self._idle_timer = asyncio.get_running_loop().call_later(
                self.server.idle_timeout_s, self._idle_check)
        self._faults = getattr(self.dispatcher.broker, "faults", None)  # faults: close_connections
        if self._faults is not None:
            self._faults.track_connection(self)

    def _auth_timed_out(self) -> None:
        self._auth_timer = None
        if self.sasl is not None and not self.sasl.authenticated and not self.closed:
            self.server.client_errors.warning(
                "authentication_timeout", self.peer_host, "closing connection: not "
                "authenticated within connections.max.idle.ms", listener=self.listener,
                peer=self.peer)
            self._abort()

    def _idle_check(self) -> None:
        # One timer per connection, re-armed for the rest of the idle time when it
        # fires early, rather than moved on every request.
        self._idle_timer = None
        if self.closed:
            return
        now = time.monotonic()
        idle_s = self.server.idle_timeout_s
        # A request being answered (a long-poll Fetch) is activity, not idleness.
        deadline = now + idle_s if self._busy else self._last_active + idle_s
        if now >= deadline:
            log.debug("closing connection: idle for connections.max.idle.ms",
                      listener=self.listener, peer=self.peer,
                      partial_frame_bytes=self._decoder.buffered)
            self.server.count_idle_close(self.listener)
            self._abort()
            return
        self._idle_timer = asyncio.get_running_loop().call_later(deadline - now,
                                                                 self._idle_check)

    def connection_lost(self, exc) -> None:
        if self._mute_timer is not None:
            self._mute_timer.cancel()
            self._mute_timer = None
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.closed = True
        self._clear_queue()
        self._sync_pool()
        self.server.request_pool.waiters.discard(self)
        if self._quota_ip is not None:
            self.server.quotas.release(self.listener, self._quota_ip)
            self._quota_ip = None
        self.server.connections.discard(self)
        if getattr(self, "_faults", None) is not None:  # faults
            self._faults.untrack_connection(self)
        if self.transport is not None:  # metrics: only connections that were counted
            self.dispatcher.metrics.connection_closed(self.listener)
        self.idle.set()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._process()  # the requests left waiting while the client was not reading

    def pool_has_room(self) -> None:  # server/limits.RequestPool
        self._update_reading()

    def frames_received(self, frames: list) -> None:
        if frames:
            self._queue.extend(frames)
            self._queued_bytes += sum(map(len, frames))
            self._last_active = time.monotonic()
        self._process()

    def bad_frame(self, error) -> None:
        # 0x1603xxxx read as a size is a TLS ClientHello on a plaintext listener.
        hint = {"hint": "TLS handshake on a plaintext listener"} if (
            error.size >> 16) in (0x1603, 0x1601) else {}
        self.server.client_errors.warning(
            "bad_frame", self.peer_host, "closing connection: bad frame size",
            listener=self.listener, peer=self.peer, size=error.size,
            max=error.max_frame_bytes, **hint)
        self._abort()

    def eof_received(self):
        return False  # close our side too

    # -- processing ------------------------------------------------------------
    def _process(self) -> None:
        queue = self._queue
        # The answers of all the requests handled in this pass go out with one
        # writelines: the transport sends at once when its buffer is empty, so one call
        # per response meant one send() per response, the largest cost of a pipelined
        # Produce in the profile (bench: capacity with 16 KB batches).
        out: list = []
        answered = 0
        while queue and not self._busy and not self.closed and not self._write_paused \
                and self._mute_timer is None:
            frame = queue.popleft()
            self._queued_bytes -= len(frame)
            if self.client_id is None:  # faults: close_connections(client_id)
                self.client_id = _peek_client_id(frame)
            sasl = self.sasl
            try:
                # Past authentication only a SaslHandshake (KIP-368 re-authentication)
                # and sessions with a lifetime need the gate.
                if sasl is not None and (not sasl.authenticated or len(frame) < 2 or
                                         sasl.session_expires_ms is not None or
                                         _api_key.unpack_from(frame, 0)[0] == 17):
                    result = self._sasl_frame(frame, out)
                    if result is False:
                        return
                else:
                    result = self.dispatcher.handle(frame, self.peer, self.listener,
                                                    self.principal, connection=self)
            except ProtocolError as e:
                self._bad_request(e)
                self._flush_and_abort(out)
                return
            except Exception:
                self._handler_failed()
                self._flush_and_abort(out)
                return
            if result is None:
                continue
            if isinstance(result, list):
                out += result
                answered += 1
                if answered % WRITE_EVERY == 0:
                    self.transport.writelines(out)  # may call pause_writing
                    out = []
                continue
            self._busy = True
            self.idle.clear()
            asyncio.ensure_future(self._complete(result))
            break
        if out and not self.closed:
            self.transport.writelines(out)  # before any later (awaited) response: in order
        if not self._busy:
            self.idle.set()
        self._update_reading()

    async def _complete(self, awaitable) -> None:
        try:
            chunks = await awaitable
            self._last_active = time.monotonic()
            if chunks is not None and not self.closed:
                self.transport.writelines(chunks)
        except ProtocolError as e:
            self._bad_request(e)
            self._abort()
        except Exception:
            self._handler_failed()
            self._abort()
        finally:
            self._busy = False
        self._process()

    def _sasl_frame(self, frame, out: list):
        """A frame while the session is not authenticated (or a re-authentication's
        SaslHandshake): the response chunks, None, or False when the connection was
        closed."""
        sasl = self.sasl
        now_ms = int(time.monotonic() * 1000)
        api_key = _api_key.unpack_from(frame, 0)[0] if len(frame) >= 2 else None
        was_authenticated = sasl.authenticated
        route = sasl.route(api_key, now_ms)
        if route is Route.DISPATCH:
            return self.dispatcher.handle(frame, self.peer, self.listener, self.principal,
                                          connection=self)
        if route is Route.CLOSE:
            if not was_authenticated:
                self.server.count_failed_authentication(self.listener)
            self.server.client_errors.warning(
                "sasl", self.peer_host, "closing connection: SASL", listener=self.listener,
                peer=self.peer, reason=sasl.failure)
            self._flush_and_abort(out)
            return False
        if route is Route.RAW_TOKEN:
            token = sasl.authenticate_raw(frame, now_ms)
            result = None if token is None else [struct.pack(">i", len(token)) + token]
        else:
            result = self.dispatcher.handle_sasl(frame, sasl, self.peer, self.listener)
        if sasl.failed:
            self.server.count_failed_authentication(self.listener)
            self.server.client_errors.warning(
                "authentication_failed", self.peer_host,
                "closing connection: SASL authentication failed", listener=self.listener,
                peer=self.peer, mechanism=sasl.mechanism, reason=sasl.failure)
            # close, not abort: the client must get the error response first.
            if not self.closed:
                self.transport.writelines(out + (result or []))
                self.closed = True
                self._clear_queue()
                self.transport.close()
            return False
        if sasl.authenticated and not was_authenticated:
            self.principal = sasl.principal
            self._decoder.max_frame_bytes = self.max_request_bytes
            if self._auth_timer is not None:
                self._auth_timer.cancel()
                self._auth_timer = None
            self.server.count_authentication(self.listener)
            log.info("authenticated", listener=self.listener, peer=self.peer,
                     principal=self.principal, mechanism=sasl.mechanism)
        return result

    def _bad_request(self, e: ProtocolError) -> None:
        self.server.client_errors.warning("bad_request", self.peer_host,
                                          "closing connection: bad request",
                                          peer=self.peer, error=str(e))

    def _handler_failed(self) -> None:
        self.server.client_errors.exception("handler_failed", self.peer_host,
                                            "closing connection: handler failed",
                                            peer=self.peer)

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    def _sync_pool(self) -> None:
        """Tell the broker's request pool what this connection holds now. A muted
        connection (its client not reading) holds its requests outside the pool."""
        if self.closed or self._write_paused:
            held = (0, 0)
        else:
            held = (len(self._queue), self._queued_bytes)
        if held != self._pooled:
            before, self._pooled = self._pooled, held
            self.server.request_pool.add(held[0] - before[0], held[1] - before[1])

    def mute_for(self, ms: int) -> None:
        """Quotas (KIP-219): serve and read nothing more from this client for `ms`."""
        if self.closed or ms <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._mute_timer is not None:
            if self._mute_timer.when() >= loop.time() + ms / 1000.0:
                return  # already muted for longer
            self._mute_timer.cancel()
        self._mute_timer = loop.call_later(ms / 1000.0, self._unmute)
        self._update_reading()

    def _unmute(self) -> None:
        self._mute_timer = None
        self._process()

    def _update_reading(self) -> None:
        self._sync_pool()
        if self.closed or self.transport is None:
            return
        pool = self.server.request_pool
        if self._write_paused:
            reason = "write_buffer"
        elif self._mute_timer is not None:
            reason = "quota_mute"
        elif len(self._queue) >= MAX_QUEUED_REQUESTS:
            reason = "connection_queue"
        elif self._queue and pool.full:
            reason = "request_pool"
            if self not in pool.waiters:
                pool.waiters.add(self)
                pool.pauses += 1
        else:
            reason = None
        self._pause_reason = reason
        if reason is not None and not self._read_paused:
            self.transport.pause_reading()
            self._read_paused = True
        elif reason is None and self._read_paused:
            self.transport.resume_reading()
            self._read_paused = False

    def _flush_and_abort(self, out: list) -> None:
        # The requests before the bad one are answered first, as when each response
        # was written on its own.
        if out and not self.closed:
            self.transport.writelines(out)
        self._abort()

    def _abort(self) -> None:
        self.closed = True
        self._clear_queue()
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:  # faults: FaultInjector.close_connections
        log.info("closing connection: fault injected", peer=self.peer, client_id=self.client_id)
        self._abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


def _peek_client_id(frame) -> str:
    """The client id of a request header (v1/v2: int16 length + bytes at offset 8), for
    FaultInjector.close_connections(client_id)."""
    try:
        n = struct.unpack_from(">h", frame, 8)[0]
        return "" if n < 0 else bytes(frame[10:10 + n]).decode("utf-8", "replace")
    except struct.error:
        return ""
