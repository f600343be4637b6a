"""Kafka framing, sans-IO: a 4-byte big-endian size, then that many bytes.

`FrameDecoder` turns a byte stream into frames (the bytes after the size prefix) and
is shared by every reader in kafkette: the broker's connections, the controller
listener and the client (kafkette.client). It has two ways in:

- `feed(data)` copies bytes in and returns the frames they completed (tests, tools);
- `get_buffer()` / `buffer_updated(nbytes)` mirror asyncio.BufferedProtocol, so a
  transport reads straight into the decoder's memory: small frames out of one
  receive buffer, a large frame into a buffer of its own (no second copy of a big
  Produce request or Fetch response).

Every frame is a `bytearray` the caller owns: Produce stamps offsets into its record
batches in place.

Bounds: the size prefix is checked (negative, or above `max_frame_bytes`) before
anything is allocated for it. An accepted size is still only a claim, so a large
frame's buffer starts at `EAGER_FRAME_BYTES` (or twice what has arrived) and doubles
as its bytes come in: a peer that announces 100 MB and sends nothing costs 1 MB, not
100 MB. Kafka's NetworkReceive allocates the whole claimed size at once (bounded by
socket.request.max.bytes and, on the broker, the queued.max.request.bytes pool).

The encode/decode helpers below know the header rules of kafkette.protocol.headers:
request header v0/v1/v2 by API and version, response header v0/v1, and the
ApiVersions exception (KIP-511: its response header is always v0, and a broker that
does not know the requested version answers with the v0 body and UNSUPPORTED_VERSION).
"""
from __future__ import annotations

import struct

from kafkette.errors import ErrorCode, ProtocolError
from kafkette.protocol.headers import (
    API_VERSIONS_KEY,
    decode_request_header,
    encode_request_header,
    encode_response_header,
    response_header_version,
)
from kafkette.protocol.messages import API_MESSAGES
from kafkette.protocol.primitives import Reader, Writer

SIZE = struct.Struct(">i")      # the size prefix; the correlation id is an int32 too
_error_code = struct.Struct(">h")

#: The receive buffer of small frames (one recv_into fills it), at its largest.
RECV_BUFFER_BYTES = 256 * 1024
#: ... and at first: a connection's buffer grows (x4 per fill) only once its reads fill
#: it, so that 5,000 idle connections do not hold 256 KiB of zeroed memory each.
INITIAL_RECV_BUFFER_BYTES = 16 * 1024
#: The most a frame's buffer gets on the strength of its size prefix alone.
EAGER_FRAME_BYTES = 1024 * 1024


class FrameError(ProtocolError):
    """A size prefix that is negative or larger than allowed: the stream is lost."""

    def __init__(self, size: int, max_frame_bytes: int):
        super().__init__(f"frame size {size} outside 0..{max_frame_bytes}")
        self.size = size
        self.max_frame_bytes = max_frame_bytes


class FrameDecoder:
    """Bytes in, complete frames (bytearray, size prefix stripped) out.

    After a FrameError the decoder is unusable (the byte stream cannot be
    re-synchronised; the connection must be closed)."""

    __slots__ = ("max_frame_bytes", "_buf", "_view", "_start", "_end", "_max_buf",
                 "_frame", "_frame_view", "_frame_size", "_filled", "_error")

    def __init__(self, max_frame_bytes: int, *, buffer_size: int = RECV_BUFFER_BYTES):
        if buffer_size < SIZE.size:
            raise ValueError("buffer_size must hold at least a size prefix")
        self.max_frame_bytes = max_frame_bytes
        self._max_buf = buffer_size
        self._buf = bytearray(min(buffer_size, INITIAL_RECV_BUFFER_BYTES))
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._frame: bytearray | None = None   # a large frame being filled
        self._frame_view: memoryview | None = None
        self._frame_size = 0                   # its claimed size
        self._filled = 0
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of frames not yet complete."""
        if self._frame is not None:
            return self._filled
        return self._end - self._start

    def feed(self, data) -> list[bytearray]:
        """Take `data` (any bytes-like object); return the frames it completed."""
        src = memoryview(data).cast("B")
        out: list[bytearray] = []
        pos, n = 0, len(src)
        while pos < n:
            dst = self.get_buffer()
            k = min(len(dst), n - pos)
            dst[:k] = src[pos:pos + k]
            pos += k
            out += self.buffer_updated(k)
        return out

    def get_buffer(self) -> memoryview:
        """Where the next bytes go (never empty); then call buffer_updated(nbytes)."""
        if self._error is not None:
            raise self._error
        frame = self._frame
        if frame is not None:
            filled = self._filled
            if filled == len(frame):
                # The bytes so far have arrived: double the buffer, up to the claim.
                grown = bytearray(min(self._frame_size, 2 * len(frame)))
                grown[:filled] = frame
                self._frame = grown
                self._frame_view = memoryview(grown)
            return self._frame_view[filled:]
        if self._end == len(self._buf):
            # Move the partial frame to the front to make room (it fits: a frame
            # larger than the buffer gets a buffer of its own); a buffer that reads
            # filled grows first, up to buffer_size.
            n = self._end - self._start
            if len(self._buf) < self._max_buf:
                grown = bytearray(min(self._max_buf, 4 * len(self._buf)))
                grown[:n] = self._view[self._start:self._end]
                self._buf, self._view = grown, memoryview(grown)
            else:
                self._buf[:n] = self._view[self._start:self._end]
            self._start, self._end = 0, n
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> list[bytearray]:
        """`nbytes` were written into the last get_buffer(); the frames completed."""
        if self._frame is not None:
            self._filled += nbytes
            if self._filled < self._frame_size:
                return []
            frame, self._frame, self._frame_view = self._frame, None, None
            return [frame]
        self._end += nbytes
        return self._parse()

    def _parse(self) -> list[bytearray]:
        out = []
        buf, view, start, end = self._buf, self._view, self._start, self._end
        limit = self.max_frame_bytes
        while end - start >= 4:
            size = SIZE.unpack_from(buf, start)[0]
            if size < 0 or size > limit:
                self._error = FrameError(size, limit)
                raise self._error
            avail = end - start - 4
            if avail >= size:
                out.append(bytearray(view[start + 4:start + 4 + size]))
                start += 4 + size
                continue
            if size + 4 > len(buf):
                # Too big for the receive buffer: a buffer of its own, grown as the
                # bytes arrive (see the module docstring).
                frame = bytearray(min(size, max(EAGER_FRAME_BYTES, 2 * avail)))
                frame[:avail] = view[start + 4:end]
                self._frame, self._frame_view = frame, memoryview(frame)
                self._frame_size, self._filled = size, avail
                start = end = 0
            break
        if start == end:
            start = end = 0
        self._start, self._end = start, end
        return out


# --------------------------------------------------------------------------- requests

def frame_request(api_key: int, version: int, correlation_id: int, client_id: str | None,
                  body) -> list:
    """A request frame as chunks for `transport.writelines`: size prefix and header,
    then `body` (bytes, or a list of chunks kept as they are: record batches are not
    copied)."""
    header = encode_request_header(api_key, version, correlation_id, client_id)
    chunks = body if isinstance(body, list) else [body]
    total = len(header) + sum(len(c) for c in chunks)
    return [SIZE.pack(total) + header, *chunks]


def encode_request(request, version: int, correlation_id: int,
                   client_id: str | None) -> list:
    """A generated request message at `version`, framed (see frame_request)."""
    w = Writer()
    request.write(w, version)
    return frame_request(request.API_KEY, version, correlation_id, client_id, w.to_chunks())


def decode_request(frame):
    """(RequestHeader, request) of a request frame at a version the generated classes
    know; ProtocolError otherwise. The server side of encode_request."""
    r = Reader(frame)
    header = decode_request_header(r)
    if header.api_key not in API_MESSAGES:
        raise ProtocolError(f"unknown api key {header.api_key}")
    req_cls, _ = API_MESSAGES[header.api_key]
    if not req_cls.MIN_VERSION <= header.api_version <= req_cls.MAX_VERSION:
        raise ProtocolError(f"api key {header.api_key} version {header.api_version} is unknown")
    return header, req_cls.read(r, header.api_version)


# --------------------------------------------------------------------------- responses

def encode_response(response, api_key: int, version: int, correlation_id: int) -> list:
    """A response frame as chunks (size prefix and header first)."""
    w = Writer()
    response.write(w, version)
    chunks = w.to_chunks()
    header = encode_response_header(correlation_id, response_header_version(api_key, version))
    total = len(header) + sum(len(c) for c in chunks)
    return [SIZE.pack(total) + header, *chunks]


def response_correlation_id(frame) -> int:
    """The correlation id a response frame starts with (every header version)."""
    if len(frame) < 4:
        raise ProtocolError(f"response frame of {len(frame)} bytes has no correlation id")
    return SIZE.unpack_from(frame, 0)[0]


def response_body(frame, api_key: int, version: int) -> Reader:
    """A Reader positioned after the response header of `api_key` at `version`."""
    r = Reader(frame, 4)
    if response_header_version(api_key, version) >= 1:
        r.skip_tagged_fields()
    return r


def decode_response(frame, api_key: int, version: int):
    """(correlation id, decoded response) of a response frame to a request of
    `api_key` at `version`.

    ApiVersions: a broker that does not know `version` answers with the v0 body and
    UNSUPPORTED_VERSION (KIP-511); that body is read as v0, so the caller gets the
    broker's version list and can retry at a version it supports. Kafka's client
    tries `version` first and re-parses as v0 when that throws; looking at the error
    code first (the first field of every version) does not depend on a v0 body
    happening to fail as v3."""
    corr = response_correlation_id(frame)
    resp_cls = API_MESSAGES[api_key][1]
    r = response_body(frame, api_key, version)
    if api_key == API_VERSIONS_KEY and version > 0:
        if r.remaining() >= 2 and _error_code.unpack_from(frame, r.pos)[0] \
                == ErrorCode.UNSUPPORTED_VERSION:
            return corr, resp_cls.read(r, 0)
    return corr, resp_cls.read(r, version)
