"""Readers and writers for the coordinator's own byte formats (the `__consumer_offsets`
record keys and values, the consumer protocol's subscription), over the Kafka
primitives of protocol/primitives.py. These are not wire messages, so they do not go
through the generated protocol classes (which coordinator/ may not import anyway).

What this adds to the primitives: errors are `CoordinatorRecordError` (CORRUPT_MESSAGE)
naming what was being read, a null where a record needs a value is an error, an array
count must fit the bytes left at its smallest element size, and the writer chains.
Every length and count is checked against the bytes that remain before anything is
allocated: a corrupt record never triggers a huge allocation.
"""
from __future__ import annotations

from kafkette.errors import ErrorCode, KafkaError, ProtocolError
from kafkette.protocol import primitives


class CoordinatorRecordError(KafkaError, ValueError):
    """A `__consumer_offsets` key or value (or a consumer-protocol blob) that cannot be
    decoded: truncated, a negative or oversized length, an unknown value version."""

    code = ErrorCode.CORRUPT_MESSAGE


class Reader:
    __slots__ = ("_r", "what")

    def __init__(self, data, what: str = "record"):
        if data is None:
            raise CoordinatorRecordError(f"{what}: no bytes")
        self._r = primitives.Reader(data if isinstance(data, (bytes, bytearray, memoryview))
                                    else bytes(data))
        self.what = what

    def remaining(self) -> int:
        return self._r.remaining()

    def _read(self, fn, *args):
        try:
            return fn(*args)
        except ProtocolError as e:
            raise CoordinatorRecordError(f"{self.what}: {e}") from None

    def _required(self, value, kind: str):
        if value is None:
            raise CoordinatorRecordError(f"{self.what}: null where {kind} is required")
        return value

    def int16(self) -> int:
        return self._read(self._r.int16)

    def int32(self) -> int:
        return self._read(self._r.int32)

    def int64(self) -> int:
        return self._read(self._r.int64)

    def uvarint(self) -> int:
        return self._read(self._r.uvarint)

    def string(self) -> str:
        return self._required(self._read(self._r.string, False, True), "a string")

    def nullable_string(self) -> str | None:
        return self._read(self._r.string, False, True)

    def bytes_(self) -> bytes:
        return self._required(self._read(self._r.bytes, False, True), "bytes")

    def _fitting(self, n: int, min_element_size: int) -> int:
        if n * max(1, min_element_size) > self.remaining():
            raise CoordinatorRecordError(
                f"{self.what}: array of {n} elements cannot fit in {self.remaining()} bytes")
        return n

    def array_count(self, min_element_size: int) -> int:
        return self._fitting(self._read(self._r.array_len, False), min_element_size)

    # --- flexible versions (KIP-482): unsigned varints, compact strings, tagged fields

    def compact_string(self) -> str:
        return self._required(self._read(self._r.string, True, True), "a string")

    def compact_nullable_string(self) -> str | None:
        return self._read(self._r.string, True, True)

    def compact_bytes(self) -> bytes:
        return self._required(self._read(self._r.bytes, True, True), "bytes")

    def compact_array_count(self, min_element_size: int) -> int:
        n = self._read(self._r.array_len, True, True)
        if n < 0:
            raise CoordinatorRecordError(f"{self.what}: null where an array is required")
        return self._fitting(n, min_element_size)

    def skip_tagged_fields(self) -> None:
        self._read(self._r.skip_tagged_fields)


class Writer:
    """A chaining writer: `Writer().int16(1).string(g).getvalue()`."""
    __slots__ = ("_w",)

    def __init__(self):
        self._w = primitives.Writer()

    def int16(self, v: int) -> "Writer":
        self._w.int16(v)
        return self

    def int32(self, v: int) -> "Writer":
        self._w.int32(v)
        return self

    def int64(self, v: int) -> "Writer":
        self._w.int64(v)
        return self

    def string(self, s: str) -> "Writer":
        if len(s) > 0x7FFF // 4 and len(s.encode("utf-8")) > 0x7FFF:
            raise ValueError("string does not fit an int16 length")
        self._w.string(s, False)
        return self

    def nullable_string(self, s: str | None) -> "Writer":
        if s is None:
            self._w.string(None, False)
            return self
        return self.string(s)

    def bytes_(self, b: bytes) -> "Writer":
        self._w.bytes(b, False)
        return self

    def getvalue(self) -> bytes:
        return self._w.getvalue()
