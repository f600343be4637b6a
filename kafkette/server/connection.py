"""One client connection: Kafka framing over an asyncio BufferedProtocol.

Framing: a 4-byte big-endian length, then that many bytes of request. Small frames
are parsed out of one receive buffer; a frame larger than what is buffered gets a
buffer of its own and the socket reads straight into it (no second copy of a big
Produce request). Each frame is a bytearray the request owns, so Produce can stamp
offsets into its record batches in place.

Ordering: requests on one connection are answered strictly in order, as Kafka does
(it mutes a channel until its response is sent). Synchronous handlers run inline
from `buffer_updated` — no task per request; a handler that must wait (a Fetch long
poll) parks the connection's queue until it completes.

Backpressure: when the transport's write buffer is over its high-water mark (a
client not reading its responses) or too many requests are queued, we stop reading
from that socket until it drains. Memory per connection stays bounded.

Errors: a frame larger than socket.request.max.bytes, a negative length, an unknown
API key or an undecodable request closes this connection (with a log line), as
Kafka does; other connections are unaffected.
"""
from __future__ import annotations

import asyncio
import struct
from collections import deque

from kafkette.errors import ProtocolError
from kafkette.logging import get_logger

log = get_logger("kafkette.connection")
_size = struct.Struct(">i")
RECV_BUFFER = 256 * 1024
MAX_QUEUED_REQUESTS = 64


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, server, listener_name: str):
        self.server = server
        self.dispatcher = server.dispatcher
        self.listener = listener_name
        self.max_request_bytes = server.max_request_bytes
        self.transport = None
        self.peer = ""
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._frame: bytearray | None = None   # a large frame being filled
        self._frame_view: memoryview | None = None
        self._frame_filled = 0
        self._queue: deque = deque()
        self._busy = False
        self._write_paused = False
        self._read_paused = False
        self.closed = False
        self.client_id: str | None = None  # faults: from the first request header
        self.idle = asyncio.Event()
        self.idle.set()

    # -- asyncio callbacks -----------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server.connections.add(self)
        self.dispatcher.metrics.connection_opened(self.listener)  # metrics: connection_count
        self._faults = getattr(self.dispatcher.broker, "faults", None)  # faults: close_connections
        if self._faults is not None:
            self._faults.track_connection(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._queue.clear()
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
        self._update_reading()

    def get_buffer(self, sizehint: int):
        if self._frame is not None:
            return self._frame_view[self._frame_filled:]
        if self._end == len(self._buf):
            # Move the partial frame to the front to make room.
            n = self._end - self._start
            self._buf[:n] = self._buf[self._start:self._end]
            self._start, self._end = 0, n
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._frame is not None:
            self._frame_filled += nbytes
            if self._frame_filled == len(self._frame):
                self._queue.append(self._frame)
                self._frame = self._frame_view = None
        else:
            self._end += nbytes
            if not self._parse_frames():
                return
        self._process()

    def eof_received(self):
        return False  # close our side too

    # -- framing ---------------------------------------------------------------
    def _parse_frames(self) -> bool:
        buf, start, end = self._buf, self._start, self._end
        while end - start >= 4:
            size = _size.unpack_from(buf, start)[0]
            if size < 0 or size > self.max_request_bytes:
                log.warning("closing connection: bad frame size", peer=self.peer, size=size,
                            max=self.max_request_bytes)
                self._abort()
                return False
            avail = end - start - 4
            if avail >= size:
                self._queue.append(bytearray(self._view[start + 4:start + 4 + size]))
                start += 4 + size
                continue
            if size + 4 > len(buf):
                # Too big for the receive buffer: give it its own and read into that.
                frame = bytearray(size)
                frame[:avail] = self._view[start + 4:end]
                self._frame, self._frame_view, self._frame_filled = frame, memoryview(frame), avail
                start = end = 0
            break
        if start == end:
            start = end = 0
        self._start, self._end = start, end
        return True

    # -- processing ------------------------------------------------------------
    def _process(self) -> None:
        queue = self._queue
        # The answers of all the requests handled in this pass go out with one
        # writelines: the transport sends at once when its buffer is empty, so one call
        # per response meant one send() per response, the largest cost of a pipelined
        # Produce in the profile (bench: capacity with 16 KB batches).
        out: list = []
        while queue and not self._busy and not self.closed:
            frame = queue.popleft()
            if self.client_id is None:  # faults: close_connections(client_id)
                self.client_id = _peek_client_id(frame)
            try:
                result = self.dispatcher.handle(frame, self.peer, self.listener)
            except ProtocolError as e:
                log.warning("closing connection: bad request", peer=self.peer, error=str(e))
                self._flush_and_abort(out)
                return
            except Exception:
                log.exception("closing connection: handler failed", peer=self.peer)
                self._flush_and_abort(out)
                return
            if result is None:
                continue
            if isinstance(result, list):
                out += result
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
            if chunks is not None and not self.closed:
                self.transport.writelines(chunks)
        except ProtocolError as e:
            log.warning("closing connection: bad request", peer=self.peer, error=str(e))
            self._abort()
        except Exception:
            log.exception("closing connection: handler failed", peer=self.peer)
            self._abort()
        finally:
            self._busy = False
        self._process()

    def _update_reading(self) -> None:
        if self.closed or self.transport is None:
            return
        want_pause = self._write_paused or len(self._queue) >= MAX_QUEUED_REQUESTS
        if want_pause and not self._read_paused:
            self.transport.pause_reading()
            self._read_paused = True
        elif not want_pause and self._read_paused:
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
        self._queue.clear()
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:  # faults: FaultInjector.close_connections
        log.info("closing connection: fault injected", peer=self.peer, client_id=self.client_id)
        self._abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


# --- faults: the client id of a request header (v1/v2: int16 length + bytes at offset 8)
def _peek_client_id(frame) -> str:
    try:
        n = struct.unpack_from(">h", frame, 8)[0]
        return "" if n < 0 else bytes(frame[10:10 + n]).decode("utf-8", "replace")
    except struct.error:
        return ""
