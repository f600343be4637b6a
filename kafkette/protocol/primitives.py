"""Kafka wire primitives: a bounded Reader over a memoryview and a Writer that
collects output as a list of byte chunks.

Every length read from the wire is checked against the bytes that remain before
anything is allocated, so a hostile length prefix or array count ("4 billion
elements") raises ProtocolError instead of allocating. An array element takes at
least one byte on the wire, so a count larger than the remaining bytes is
necessarily a lie.

The Writer keeps large byte fields (record batches) as separate chunks instead of
copying them into its buffer: a Fetch response is written with
`transport.writelines(chunks)` and the record bytes read from a segment are never
copied or re-encoded.
"""
from __future__ import annotations

import struct
import uuid as _uuid

from kafkette.errors import ProtocolError

_i8 = struct.Struct(">b")
_i16 = struct.Struct(">h")
_u16 = struct.Struct(">H")
_i32 = struct.Struct(">i")
_u32 = struct.Struct(">I")
_i64 = struct.Struct(">q")
_f64 = struct.Struct(">d")

ZERO_UUID = _uuid.UUID(int=0)


class _Unset:
    """Default of a generated constructor argument for a nullable array: None is a
    value there (a null array), so "argument not given" needs its own marker."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()

#: Characters of an error_message kept by Writer.message.
MAX_MESSAGE = 1000

# Byte fields at least this large are kept as their own output chunk (no copy).
_ZERO_COPY_THRESHOLD = 1024


class Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf, pos: int = 0, end: int | None = None):
        self.buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        self.pos = pos
        self.end = len(self.buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise ProtocolError(f"read of {n} bytes at {p} past end {self.end}")
        self.pos = p + n
        return p

    def int8(self) -> int:
        return _i8.unpack_from(self.buf, self._need(1))[0]

    def bool(self) -> bool:
        return self.buf[self._need(1)] != 0

    def int16(self) -> int:
        return _i16.unpack_from(self.buf, self._need(2))[0]

    def uint16(self) -> int:
        return _u16.unpack_from(self.buf, self._need(2))[0]

    def int32(self) -> int:
        return _i32.unpack_from(self.buf, self._need(4))[0]

    def uint32(self) -> int:
        return _u32.unpack_from(self.buf, self._need(4))[0]

    def int64(self) -> int:
        return _i64.unpack_from(self.buf, self._need(8))[0]

    def float64(self) -> float:
        return _f64.unpack_from(self.buf, self._need(8))[0]

    def uuid(self) -> _uuid.UUID:
        p = self._need(16)
        return _uuid.UUID(bytes=bytes(self.buf[p:p + 16]))

    def uvarint(self) -> int:
        buf, p, end = self.buf, self.pos, self.end
        value = shift = 0
        while True:
            if p >= end:
                raise ProtocolError("truncated varint")
            b = buf[p]
            p += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise ProtocolError("varint too long")
        self.pos = p
        return value

    def varint(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    varlong = varint

    # -- lengths ---------------------------------------------------------------
    def _len(self, n: int, nullable: bool) -> int:
        if n < 0:
            if n == -1 and nullable:
                return -1
            raise ProtocolError(f"invalid length {n}")
        if n > self.end - self.pos:
            raise ProtocolError(f"length {n} exceeds the {self.end - self.pos} bytes left")
        return n

    def array_len(self, compact: bool, nullable: bool = False) -> int:
        n = self.uvarint() - 1 if compact else self.int32()
        return self._len(n, nullable)

    def _raw(self, n: int) -> memoryview:
        p = self.pos
        self.pos = p + n
        return self.buf[p:p + n]

    def string(self, compact: bool, nullable: bool = False):
        n = self._len(self.uvarint() - 1 if compact else self.int16(), nullable)
        if n < 0:
            return None
        try:
            return str(self._raw(n), "utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"invalid utf-8 in string: {e}") from None

    def bytes(self, compact: bool, nullable: bool = False):
        n = self._len(self.uvarint() - 1 if compact else self.int32(), nullable)
        if n < 0:
            return None
        return bytes(self._raw(n))

    def records(self, compact: bool, nullable: bool = True):
        """Record data as a zero-copy view into the request frame. Produce stamps
        offsets into this view in place, so the frame buffer must be writable."""
        n = self._len(self.uvarint() - 1 if compact else self.int32(), nullable)
        if n < 0:
            return None
        return self._raw(n)

    def skip_tagged_fields(self) -> None:
        for _ in range(self._len(self.uvarint(), False)):
            self.uvarint()
            self._raw(self._len(self.uvarint(), False))

    def tagged_fields(self):
        """Yield (tag, sub-reader) for each tagged field, in order."""
        count = self._len(self.uvarint(), False)
        for _ in range(count):
            tag = self.uvarint()
            size = self._len(self.uvarint(), False)
            start = self.pos
            self.pos += size
            yield tag, Reader(self.buf, start, start + size)


def _uvarint_bytes(v: int) -> bytes:
    if v < 0:
        raise ValueError(f"unsigned varint of negative value {v}")
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_SMALL_UVARINTS = [_uvarint_bytes(i) for i in range(128)]


class Writer:
    """Appends big-endian primitives to a bytearray; large byte fields become their
    own chunks (see module docstring)."""

    __slots__ = ("buf", "chunks")

    def __init__(self):
        self.buf = bytearray()
        self.chunks: list = []

    def getvalue(self) -> bytes:
        if not self.chunks:
            return bytes(self.buf)
        return b"".join(self.to_chunks())

    def to_chunks(self) -> list:
        if self.buf:
            self.chunks.append(self.buf)
            self.buf = bytearray()
        return self.chunks

    def size(self) -> int:
        return len(self.buf) + sum(len(c) for c in self.chunks)

    def int8(self, v: int) -> None:
        self.buf += _i8.pack(v)

    def bool(self, v: bool) -> None:
        self.buf.append(1 if v else 0)

    def int16(self, v: int) -> None:
        self.buf += _i16.pack(v)

    def uint16(self, v: int) -> None:
        self.buf += _u16.pack(v)

    def int32(self, v: int) -> None:
        self.buf += _i32.pack(v)

    def uint32(self, v: int) -> None:
        self.buf += _u32.pack(v)

    def int64(self, v: int) -> None:
        self.buf += _i64.pack(v)

    def float64(self, v: float) -> None:
        self.buf += _f64.pack(v)

    def uuid(self, v) -> None:
        self.buf += (v or ZERO_UUID).bytes

    def uvarint(self, v: int) -> None:
        if 0 <= v < 128:  # a negative index would silently pick a wrong encoding
            self.buf += _SMALL_UVARINTS[v]
        else:
            self.buf += _uvarint_bytes(v)

    def varint(self, v: int) -> None:
        self.uvarint((v << 1) ^ (v >> 63))

    varlong = varint

    def array_len(self, n, compact: bool) -> None:
        # n is None for a null array.
        if compact:
            self.uvarint(0 if n is None else n + 1)
        else:
            self.int32(-1 if n is None else n)

    def string(self, v, compact: bool) -> None:
        if v is None:
            if compact:
                self.buf.append(0)
            else:
                self.buf += b"\xff\xff"
            return
        data = v.encode("utf-8")
        if compact:
            self.uvarint(len(data) + 1)
        else:
            self.buf += _i16.pack(len(data))
        self.buf += data

    def message(self, v, compact: bool) -> None:
        """An error_message: human text, often quoting a client's names (a topic of
        32767 bytes), which must not make the answer unencodable (struct.error on an
        int16 length). Cut at MAX_MESSAGE characters (4 KB of UTF-8 at worst); Kafka's
        generated writers throw on a too-long string instead."""
        if v is not None and len(v) > MAX_MESSAGE:
            v = v[:MAX_MESSAGE] + "..."
        self.string(v, compact)

    def bytes(self, v, compact: bool) -> None:
        if v is None:
            if compact:
                self.buf.append(0)
            else:
                self.buf += b"\xff\xff\xff\xff"
            return
        n = len(v)
        if compact:
            self.uvarint(n + 1)
        else:
            self.buf += _i32.pack(n)
        if n >= _ZERO_COPY_THRESHOLD:
            self.chunks.append(self.buf)
            self.chunks.append(v)
            self.buf = bytearray()
        else:
            self.buf += v

    records = bytes

    def raw(self, data) -> None:
        self.buf += data


def encode_tagged(fields: list[tuple[int, "Writer"]], w: Writer) -> None:
    """Write a tagged-field section: count, then (tag, size, data) by ascending tag."""
    w.uvarint(len(fields))
    for tag, sub in fields:
        data = sub.getvalue()
        w.uvarint(tag)
        w.uvarint(len(data))
        w.raw(data)
