"""The campaign's checker: pure functions over recorded histories, no IO.

Fed what the workload saw (every message handed to a producer with its delivery report,
every record each consumer read in stream order, the final drain of every partition)
and, after the cluster stopped, the batch headers of every replica's log with the high
watermark the leader last reported. It returns the violations of Kafka's promises for
acks=all producers with idempotence and read_uncommitted consumers:

- ``lost``: a message acknowledged (its delivery report had no error) is absent from
  the final drain. A failed delivery is not a violation: the client said it may or may
  not have been written.
- ``duplicate``: one value at two different (partition, offset) positions, across all
  reads. Values are unique (``producer/sequence``), so any second copy is a retry that
  idempotence should have removed or a record copied by a bad truncation.
- ``divergent_read``: one (partition, offset) read with two different values (by two
  consumers, or by a consumer and the drain): two histories of one log were served.
- ``ack_mismatch``: a value read at another position than its delivery report said.
- ``read_then_lost``: a record a consumer saw before healing is absent from the drain.
  Consumers only see records below the high watermark, which Kafka never takes back
  (unclean leader election is off), so any such record being gone is a violation.
- ``offset_regression``: offsets going backwards (or repeating) within one consumer's
  stream of one partition: the log it read was truncated below what it had been served
  (or its position was reset).
- ``drain_incomplete``: the drain did not reach a partition's end offset in time, so
  the checks above are blind there.
- ``no_high_watermark``: a partition had no leader to answer ListOffsets at the end,
  after every fault was healed.
- ``replica_divergence``: below the high watermark, replicas of a partition do not hold
  the same batches (base offset, partition leader epoch, CRC), or the leader's log does
  not reach the high watermark. In-sync replicas must match exactly; a replica outside
  the ISR may be shorter but must agree on what it has.

Real Kafka's own system tests (and Jepsen's Kafka workload) count lost and duplicated
records the same way; the replica comparison is what Kafka's
`kafka-replica-verification` tool did over the wire, here done on the segment files.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

VIOLATION_KINDS = ("lost", "duplicate", "divergent_read", "ack_mismatch", "read_then_lost",
                   "offset_regression", "drain_incomplete", "no_high_watermark",
                   "replica_divergence")


@dataclass(frozen=True)
class Produced:
    """One message handed to a producer and what its delivery report said."""
    producer: str
    seq: int
    value: str
    acked: bool
    partition: int | None = None   # from the delivery report (None: never assigned)
    offset: int | None = None      # -1/None when failed
    error: str | None = None


@dataclass(frozen=True)
class Read:
    """One record as a consumer (or the drain) got it."""
    reader: str
    partition: int
    offset: int
    value: str


@dataclass(frozen=True)
class BatchInfo:
    """The identity of one stored batch: what replicas must agree on."""
    base_offset: int
    last_offset: int
    partition_leader_epoch: int
    crc: int


@dataclass
class History:
    produced: Sequence[Produced] = ()
    #: Every live consumer's reads, each consumer's in the order it got them.
    live_reads: Sequence[Read] = ()
    #: The final drain: every partition from the beginning to `drain_end_offsets`.
    drain: Sequence[Read] = ()
    #: partition -> the end offset the drain aimed for, and the position it reached.
    drain_end_offsets: Mapping[int, int] = field(default_factory=dict)
    drain_positions: Mapping[int, int] = field(default_factory=dict)
    #: partition -> high watermark (ListOffsets latest) before the cluster stopped;
    #: None: no leader answered. Empty: replica logs were not compared.
    high_watermarks: Mapping[int, int | None] = field(default_factory=dict)
    #: partition -> leader and ISR from the last Metadata before stopping.
    leaders: Mapping[int, int] = field(default_factory=dict)
    isr: Mapping[int, Sequence[int]] = field(default_factory=dict)
    #: partition -> node id -> the batches of that replica's log, in offset order.
    replica_logs: Mapping[int, Mapping[int, Sequence[BatchInfo]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str
    partition: int | None = None
    offset: int | None = None
    value: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in (("kind", self.kind), ("partition", self.partition),
                                  ("offset", self.offset), ("value", self.value),
                                  ("detail", self.detail)) if v is not None}


@dataclass
class Report:
    acknowledged: int
    failed: int
    read_live: int
    drained: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        c = Counter(v.kind for v in self.violations)
        return {k: c[k] for k in VIOLATION_KINDS if c[k]}

    @property
    def lost(self) -> int:
        return self.counts().get("lost", 0)

    @property
    def duplicated(self) -> int:
        return self.counts().get("duplicate", 0)


def check(h: History) -> Report:
    """Every check over one history; the violations in a stable order (by kind)."""
    out: list[Violation] = []
    out += check_drain_complete(h.drain_end_offsets, h.drain_positions)
    out += check_lost(h.produced, h.drain)
    out += check_duplicates(list(h.live_reads) + list(h.drain))
    out += check_divergent_reads(list(h.live_reads) + list(h.drain))
    out += check_ack_positions(h.produced, list(h.live_reads) + list(h.drain))
    out += check_read_then_lost(h.live_reads, h.drain)
    out += check_offset_regressions(h.live_reads)
    out += check_replica_logs(h.replica_logs, h.high_watermarks, h.leaders, h.isr)
    order = {k: i for i, k in enumerate(VIOLATION_KINDS)}
    out.sort(key=lambda v: order[v.kind])
    acked = sum(1 for p in h.produced if p.acked)
    return Report(acknowledged=acked, failed=len(h.produced) - acked,
                  read_live=len(h.live_reads), drained=len(h.drain), violations=out)


def check_drain_complete(ends: Mapping[int, int],
                         positions: Mapping[int, int]) -> list[Violation]:
    out = []
    for p in sorted(ends):
        reached = positions.get(p, -1)
        if reached < ends[p]:
            out.append(Violation("drain_incomplete", f"drain reached offset {reached} of "
                                 f"end offset {ends[p]}", partition=p))
    return out


def check_lost(produced: Iterable[Produced], drain: Iterable[Read]) -> list[Violation]:
    present = {r.value for r in drain}
    return [Violation("lost", f"acknowledged at offset {m.offset} by {m.producer}, "
                      "absent from the final drain", partition=m.partition,
                      offset=m.offset, value=m.value)
            for m in produced if m.acked and m.value not in present]


def _positions_by_value(reads: Iterable[Read]) -> dict[str, set[tuple[int, int]]]:
    where: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for r in reads:
        where[r.value].add((r.partition, r.offset))
    return where


def check_duplicates(reads: Iterable[Read]) -> list[Violation]:
    out = []
    for value, places in sorted(_positions_by_value(reads).items()):
        if len(places) > 1:
            first = min(places)
            out.append(Violation("duplicate", f"at {sorted(places)} (partition, offset)",
                                 partition=first[0], offset=first[1], value=value))
    return out


def check_divergent_reads(reads: Iterable[Read]) -> list[Violation]:
    seen: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)  # -> value -> reader
    for r in reads:
        seen[(r.partition, r.offset)].setdefault(r.value, r.reader)
    out = []
    for (p, o), values in sorted(seen.items()):
        if len(values) > 1:
            shown = ", ".join(f"{v!r} (read by {who})" for v, who in sorted(values.items()))
            out.append(Violation("divergent_read", f"two values at one offset: {shown}",
                                 partition=p, offset=o))
    return out


def check_ack_positions(produced: Iterable[Produced], reads: Iterable[Read]) -> list[Violation]:
    where = _positions_by_value(reads)
    out = []
    for m in produced:
        if not m.acked:
            continue
        elsewhere = sorted(pl for pl in where.get(m.value, ()) if pl != (m.partition, m.offset))
        if elsewhere:
            out.append(Violation("ack_mismatch", f"acknowledged at ({m.partition}, "
                                 f"{m.offset}), read at {elsewhere}", partition=m.partition,
                                 offset=m.offset, value=m.value))
    return out


def check_read_then_lost(live: Iterable[Read], drain: Iterable[Read]) -> list[Violation]:
    present = {r.value for r in drain}
    out, reported = [], set()
    for r in live:
        if r.value not in present and r.value not in reported:
            reported.add(r.value)
            out.append(Violation("read_then_lost", f"read by {r.reader} before healing, "
                                 "absent from the final drain", partition=r.partition,
                                 offset=r.offset, value=r.value))
    return out


def check_offset_regressions(live: Iterable[Read]) -> list[Violation]:
    last: dict[tuple[str, int], int] = {}
    out = []
    for r in live:
        key = (r.reader, r.partition)
        prev = last.get(key)
        if prev is not None and r.offset <= prev:
            out.append(Violation("offset_regression", f"{r.reader} read offset {r.offset} "
                                 f"after offset {prev}", partition=r.partition,
                                 offset=r.offset, value=r.value))
        last[key] = r.offset
    return out


def check_replica_logs(logs: Mapping[int, Mapping[int, Sequence[BatchInfo]]],
                       high_watermarks: Mapping[int, int | None],
                       leaders: Mapping[int, int],
                       isr: Mapping[int, Sequence[int]]) -> list[Violation]:
    out = []
    for p in sorted(high_watermarks):
        hw = high_watermarks[p]
        if hw is None:
            out.append(Violation("no_high_watermark", "no leader answered ListOffsets after "
                                 "healing", partition=p))
            continue
        replicas = logs.get(p, {})
        if not replicas:
            continue
        below = {node: [b for b in batches if b.base_offset < hw]
                 for node, batches in replicas.items()}
        leader = leaders.get(p, -1)
        ref_node = leader if leader in below else min(below)
        ref = below[ref_node]
        ref_end = ref[-1].last_offset + 1 if ref else 0
        if hw > 0 and ref_end < hw:
            out.append(Violation("replica_divergence", f"the log of node {ref_node} "
                                 f"(leader {leader}) ends at offset {ref_end}, below the high "
                                 f"watermark {hw}", partition=p, offset=ref_end))
        in_sync = set(isr.get(p, ()))
        for node in sorted(below):
            if node == ref_node:
                continue
            mine = below[node]
            n = len(mine) if node not in in_sync else max(len(mine), len(ref))
            for i in range(n):
                a = ref[i] if i < len(ref) else None
                b = mine[i] if i < len(mine) else None
                if a != b:
                    where = (b or a).base_offset
                    out.append(Violation(
                        "replica_divergence",
                        f"below the high watermark {hw}, batch {i} of node {node}"
                        f"{' (in sync)' if node in in_sync else ''} is {_show(b)}, "
                        f"node {ref_node} has {_show(a)}", partition=p, offset=where))
                    break
    return out


def _show(b: BatchInfo | None) -> str:
    if b is None:
        return "missing"
    return (f"offsets {b.base_offset}-{b.last_offset} epoch {b.partition_leader_epoch} "
            f"crc {b.crc:#010x}")
