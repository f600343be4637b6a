"""Bounded big-endian readers and writers for the coordinator's own byte formats
(the `__consumer_offsets` record keys and values, the consumer protocol's
subscription). These are not wire messages, so they do not go through the generated
protocol classes (which coordinator/ may not import anyway).

Every length and count is checked against the bytes that remain before anything is
allocated: a corrupt record raises `CoordinatorRecordError`, it never triggers a huge
allocation.
"""
from __future__ import annotations

import struct

from kafkette.errors import ErrorCode, KafkaError

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class CoordinatorRecordError(KafkaError, ValueError):
    """A `__consumer_offsets` key or value (or a consumer-protocol blob) that cannot be
    decoded: truncated, a negative or oversized length, an unknown value version."""

    code = ErrorCode.CORRUPT_MESSAGE


class Reader:
    __slots__ = ("buf", "pos", "what")

    def __init__(self, data, what: str = "record"):
        if data is None:
            raise CoordinatorRecordError(f"{what}: no bytes")
        self.buf = memoryview(bytes(data)) if not isinstance(data, (bytes, bytearray)) else memoryview(data)
        self.pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining():
            raise CoordinatorRecordError(
                f"{self.what}: needs {n} bytes at position {self.pos}, "
                f"{self.remaining()} left")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def int64(self) -> int:
        return _I64.unpack(self._take(8))[0]

    def _utf8(self, raw: memoryview) -> str:
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CoordinatorRecordError(f"{self.what}: string is not UTF-8 ({e})") from None

    def string(self) -> str:
        n = self.int16()
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: null where a string is required")
        return self._utf8(self._take(n))

    def nullable_string(self) -> str | None:
        n = self.int16()
        if n == -1:
            return None
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: string length {n}")
        return self._utf8(self._take(n))

    def bytes_(self) -> bytes:
        n = self.int32()
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: bytes length {n}")
        return bytes(self._take(n))

    def array_count(self, min_element_size: int) -> int:
        n = self.int32()
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: array count {n}")
        if n * max(1, min_element_size) > self.remaining():
            raise CoordinatorRecordError(
                f"{self.what}: array of {n} elements cannot fit in {self.remaining()} bytes")
        return n

    # --- flexible versions (KIP-482): unsigned varints, compact strings, tagged fields

    def uvarint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            b = self._take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise CoordinatorRecordError(f"{self.what}: unsigned varint longer than 5 bytes")

    def compact_string(self) -> str:
        n = self.uvarint() - 1
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: null where a string is required")
        return self._utf8(self._take(n))

    def compact_nullable_string(self) -> str | None:
        n = self.uvarint() - 1
        if n < 0:
            return None
        return self._utf8(self._take(n))

    def compact_bytes(self) -> bytes:
        n = self.uvarint() - 1
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: null where bytes are required")
        return bytes(self._take(n))

    def compact_array_count(self, min_element_size: int) -> int:
        n = self.uvarint() - 1
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: null where an array is required")
        if n * max(1, min_element_size) > self.remaining():
            raise CoordinatorRecordError(
                f"{self.what}: array of {n} elements cannot fit in {self.remaining()} bytes")
        return n

    def skip_tagged_fields(self) -> None:
        count = self.uvarint()
        if count > self.remaining():
            raise CoordinatorRecordError(f"{self.what}: {count} tagged fields cannot fit")
        for _ in range(count):
            self.uvarint()  # tag
            self._take(self.uvarint())


class Writer:
    __slots__ = ("out",)

    def __init__(self):
        self.out = bytearray()

    def int16(self, v: int) -> "Writer":
        self.out += _I16.pack(v)
        return self

    def int32(self, v: int) -> "Writer":
        self.out += _I32.pack(v)
        return self

    def int64(self, v: int) -> "Writer":
        self.out += _I64.pack(v)
        return self

    def string(self, s: str) -> "Writer":
        raw = s.encode("utf-8")
        if len(raw) > 0x7FFF:
            raise ValueError(f"string of {len(raw)} bytes does not fit an int16 length")
        self.int16(len(raw))
        self.out += raw
        return self

    def nullable_string(self, s: str | None) -> "Writer":
        if s is None:
            return self.int16(-1)
        return self.string(s)

    def bytes_(self, b: bytes) -> "Writer":
        self.int32(len(b))
        self.out += b
        return self

    def getvalue(self) -> bytes:
        return bytes(self.out)
