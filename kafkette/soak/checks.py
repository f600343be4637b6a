"""The soak's end checks: pure functions over what the run recorded, no IO.

- ``check_compacted``: per key, the value at the highest offset the final drain of the
  compacted topic read must be the last acknowledged one (the acknowledged record with
  the highest offset: one idempotent producer, so a key's records keep their order in
  its partition). A key whose last write failed (no acknowledgement) is not checked:
  the client was told it may or may not be there.
- ``check_flat``: a resource series (RSS, fds, threads) is "flat" when the mean of its
  last ``tail`` share of samples does not exceed the mean of the samples just after
  warm-up (the first ``head`` share) by more than the bound. A mean over a window and
  not two single samples, because RSS moves by a few MB with every garbage collection
  and fds with every connection that happens to be open at that instant.

The lost/duplicate checks of the non-retention topic are kafkette.chaos.checker's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from kafkette.chaos.checker import Produced, Read


@dataclass(frozen=True)
class CompactionMismatch:
    key: str
    expected: str           # the last acknowledged value
    found: str | None       # the drain's latest value (None: the key is absent)

    def as_dict(self) -> dict:
        return {"key": self.key, "expected": self.expected, "found": self.found}


def last_acked_by_key(produced: Iterable[Produced],
                      key_of: Callable[[Produced], str]) -> dict[str, Produced]:
    """key -> the acknowledged record with the highest offset; keys whose newest
    write (by sequence) was not acknowledged are left out."""
    newest: dict[str, Produced] = {}       # by sequence: what the producer sent last
    last_acked: dict[str, Produced] = {}   # by offset
    for m in produced:
        k = key_of(m)
        if k not in newest or m.seq > newest[k].seq:
            newest[k] = m
        if m.acked and (k not in last_acked or m.offset > last_acked[k].offset):
            last_acked[k] = m
    return {k: m for k, m in last_acked.items() if newest[k].acked}


def latest_read_by_key(reads: Iterable[Read], key_of: Callable[[Read], str]) -> dict[str, Read]:
    out: dict[str, Read] = {}
    for r in reads:
        k = key_of(r)
        if k not in out or r.offset > out[k].offset:
            out[k] = r
    return out


def check_compacted(produced: Sequence[Produced], drain: Sequence[Read],
                    key_of_value: Callable[[str], str]) -> list[CompactionMismatch]:
    expected = last_acked_by_key(produced, lambda m: key_of_value(m.value))
    found = latest_read_by_key(drain, lambda r: key_of_value(r.value))
    out = []
    for k in sorted(expected):
        got = found.get(k)
        if got is None or got.value != expected[k].value:
            out.append(CompactionMismatch(k, expected[k].value, got.value if got else None))
    return out


@dataclass(frozen=True)
class Bound:
    """Growth allowed: the larger of ``absolute`` (in the series' unit) and
    ``relative`` times the baseline (0: absolute only)."""
    absolute: float
    relative: float = 0.0

    def allowed(self, baseline: float) -> float:
        return max(self.absolute, self.relative * baseline)


@dataclass(frozen=True)
class Flatness:
    name: str
    baseline: float     # mean of the samples after warm-up
    final: float        # mean of the last samples
    allowed: float      # growth allowed over the baseline
    samples: int

    @property
    def growth(self) -> float:
        return self.final - self.baseline

    @property
    def ok(self) -> bool:
        return self.growth <= self.allowed

    def as_dict(self) -> dict:
        return {"name": self.name, "baseline": round(self.baseline, 2),
                "final": round(self.final, 2), "growth": round(self.growth, 2),
                "allowed": round(self.allowed, 2), "samples": self.samples, "ok": self.ok}


def window_means(values: Sequence[float], head: float = 0.2,
                 tail: float = 0.2) -> tuple[float, float]:
    """The mean of the first ``head`` share and of the last ``tail`` share of the
    samples, each window at least one sample."""
    if not values:
        raise ValueError("no samples")
    n = len(values)
    h = max(1, round(n * head))
    t = max(1, round(n * tail))
    return sum(values[:h]) / h, sum(values[-t:]) / t


def check_flat(name: str, values: Sequence[float], bound: Bound, head: float = 0.2,
               tail: float = 0.2) -> Flatness:
    base, final = window_means(values, head, tail)
    return Flatness(name, base, final, bound.allowed(base), len(values))


def slope_per_hour(times: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of values over times (seconds), per hour: reported beside
    the window check, which a slow steady leak over a short run can pass."""
    n = len(times)
    if n < 2:
        return None
    mt, mv = sum(times) / n, sum(values) / n
    var = sum((t - mt) ** 2 for t in times)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in zip(times, values)) / var * 3600
