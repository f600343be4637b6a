"""A small HDR-style latency histogram: log-bucketed with 8 significant bits.

Values (integers, e.g. microseconds) below 256 get a bucket each; above that a value
keeps its top 8 bits, so any value is recorded with a relative error under 0.4 %
(HdrHistogram with 2-3 significant decimal digits does the same job). Recording is
one dict increment; memory is a few thousand buckets at most. Written here rather
than adding the `hdrhistogram` package: it is 40 lines and the harness needs only
record / merge / percentile.
"""
from __future__ import annotations

_BITS = 8


class LogHistogram:
    __slots__ = ("counts", "total", "max")

    def __init__(self):
        self.counts: dict[int, int] = {}
        self.total = 0
        self.max = 0

    @staticmethod
    def _key(v: int) -> int:
        shift = v.bit_length() - _BITS
        if shift <= 0:
            return v
        # (shift, top bits) packed so that keys sort like values.
        return (shift << _BITS) + (v >> shift) + (1 << 40)

    @staticmethod
    def _value(key: int) -> int:
        if key < (1 << 40):
            return key
        key -= 1 << 40
        shift, top = key >> _BITS, key & ((1 << _BITS) - 1)
        # The middle of the bucket [top << shift, (top + 1) << shift).
        return (top << shift) + (1 << shift) // 2

    def record(self, v: int) -> None:
        v = max(0, int(v))
        k = self._key(v)
        self.counts[k] = self.counts.get(k, 0) + 1
        self.total += 1
        if v > self.max:
            self.max = v

    def percentile(self, p: float) -> int:
        """The value at percentile p (0-100): the smallest bucket whose cumulative
        count reaches p % of all values."""
        if not self.total:
            return 0
        if p >= 100:
            return self.max
        want = max(1, -(-self.total * p // 100))
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen >= want:
                return min(self._value(k), self.max)
        return self.max
