"""The transactional workload's checker: pure functions over recorded histories, no IO.

Fed every transaction as its producer saw it (the records it handed to the client, the
intended outcome, whether commit was ever asked for, and the outcome: committed when
commit returned, aborted when abort returned, unknown when an error left it undecided,
open when the workload stopped before it ended), every record's delivery report, what
the read_committed consumers read live, the final read_committed drain, a final
read_uncommitted drain, and each partition's high watermark and last stable offset
after healing. It returns the violations of Kafka's transactional promises (KIP-98):

- ``txn_lost``: a record of a committed transaction absent from the final
  read_committed drain.
- ``txn_aborted_read``: a read_committed reader (live or the drain) got a record of a
  transaction that cannot have committed: aborted (abort returned), or one whose commit
  was never asked for (the transactions meant to abort, and those that failed before
  their commit call: only EndTxn(commit) can commit, and a recreated producer's
  InitProducerId aborts what its predecessor left open).
- ``txn_open_read``: a read_committed reader got a record of a transaction still open
  when the workload stopped (its producer hung in it).
- ``txn_torn``: a committed or unknown transaction partly visible in the final
  read_committed drain: a transaction commits or aborts as a whole, over every
  partition. (A live reader may see one partition's part before another's: markers are
  written partition by partition, so only the drain after healing is held to this.)
- ``txn_aborted_unwritten``: a record of an aborted transaction that its delivery report
  acknowledged, absent from the read_uncommitted drain: it was written (below the high
  watermark, which is never taken back), so it must be in the log for the abort to
  mean anything — this keeps ``txn_aborted_read`` from passing vacuously.
- ``txn_lso_stuck``: after healing, with every producer finished, a partition's last
  stable offset (ListOffsets latest, read_committed) never reached its high watermark:
  a transaction hangs open on it (a marker never written, a coordinator that lost it).
- ``txn_duplicate``, ``txn_divergent_read``, ``txn_ack_mismatch``,
  ``txn_read_then_lost``, ``txn_offset_regression``, ``txn_drain_incomplete``,
  ``txn_no_high_watermark``, ``txn_replica_divergence``: the plain checks of
  kafkette.chaos.checker, run over the transactional topic (its reads under both
  isolation levels; its replicas' batches, markers included).

Jepsen's Kafka workload checks transactions the same way: aborted reads (G1a), lost
writes and torn (non-atomic) transactions from values that name their transaction.
"""
from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from kafkette.chaos import checker
from kafkette.chaos.checker import BatchInfo, Produced, Read, Violation

TXN_VIOLATION_KINDS = ("txn_lost", "txn_aborted_read", "txn_open_read", "txn_torn",
                       "txn_aborted_unwritten", "txn_lso_stuck", "txn_duplicate",
                       "txn_divergent_read", "txn_ack_mismatch", "txn_read_then_lost",
                       "txn_offset_regression", "txn_drain_incomplete",
                       "txn_no_high_watermark", "txn_replica_divergence")

OUTCOMES = ("committed", "aborted", "unknown", "open")


def txn_value(producer: str, number: int, index: int, intent: str) -> str:
    """A record's value: unique, and naming its transaction and intended outcome
    (``t1/17/2/c``: producer t1, transaction 17, record 2, meant to commit)."""
    return f"{producer}/{number}/{index}/{intent[0]}"


@dataclass(frozen=True)
class Txn:
    """One transaction as its producer saw it."""
    producer: str
    number: int
    intent: str                        # "commit" | "abort"
    outcome: str                       # one of OUTCOMES
    values: tuple[str, ...]            # every record handed to the client in it
    partitions: tuple[int, ...] = ()   # the partition of each record, as values
    commit_called: bool = False        # commit_transaction() was ever called for it
    error: str | None = None           # what went wrong, when something did
    seconds: float = 0.0               # from begin to the outcome, as the client saw it

    @property
    def key(self) -> str:
        return f"{self.producer}/{self.number}"

    @property
    def cannot_commit(self) -> bool:
        return self.outcome in ("aborted", "open") or not self.commit_called


@dataclass
class TxnHistory:
    txns: Sequence[Txn] = ()
    #: The delivery report of every transactional record (acked: written, not committed).
    produced: Sequence[Produced] = ()
    #: The read_committed consumers' reads, each consumer's in the order it got them.
    live_reads: Sequence[Read] = ()
    #: The final read_committed drain, to `drain_end_offsets` (the high watermarks).
    drain: Sequence[Read] = ()
    drain_end_offsets: Mapping[int, int] = field(default_factory=dict)
    drain_positions: Mapping[int, int] = field(default_factory=dict)
    #: The final read_uncommitted drain (every record written, aborted ones included).
    uncommitted_drain: Sequence[Read] = ()
    uncommitted_positions: Mapping[int, int] = field(default_factory=dict)
    #: partition -> high watermark and last stable offset after healing (None: no
    #: leader answered).
    high_watermarks: Mapping[int, int | None] = field(default_factory=dict)
    last_stable_offsets: Mapping[int, int | None] = field(default_factory=dict)
    leaders: Mapping[int, int] = field(default_factory=dict)
    isr: Mapping[int, Sequence[int]] = field(default_factory=dict)
    replica_logs: Mapping[int, Mapping[int, Sequence[BatchInfo]]] = field(default_factory=dict)


@dataclass
class TxnReport:
    outcomes: dict[str, int]            # outcome -> transactions
    #: unknown transactions as the drain decided them: "visible" (committed),
    #: "invisible" (aborted or never written), "torn".
    unknown_resolved: dict[str, int]
    aborted_after_error: int            # commit failed as abortable, then abort returned
    slowest_seconds: float              # the longest transaction, begin to outcome
    median_seconds: float
    records: int                        # handed to the producers
    delivered: int                      # acknowledged by their delivery report
    read_live: int
    drained: int                        # read_committed drain
    drained_uncommitted: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        c = Counter(v.kind for v in self.violations)
        return {k: c[k] for k in TXN_VIOLATION_KINDS if c[k]}

    def count(self, kind: str) -> int:
        return self.counts().get(kind, 0)


def check(h: TxnHistory) -> TxnReport:
    """Every check over one history; the violations in a stable order (by kind)."""
    committed_reads = list(h.live_reads) + list(h.drain)
    all_reads = committed_reads + list(h.uncommitted_drain)
    out: list[Violation] = []
    out += _renamed(checker.check_drain_complete(h.drain_end_offsets, h.drain_positions),
                    "read_committed ")
    out += _renamed(checker.check_drain_complete(h.drain_end_offsets,
                                                 h.uncommitted_positions), "read_uncommitted ")
    out += check_lost(h.txns, h.drain)
    out += check_never_committed_reads(h.txns, committed_reads)
    out += check_torn(h.txns, h.drain)
    out += check_aborted_written(h.txns, h.produced, h.uncommitted_drain)
    out += check_lso(h.high_watermarks, h.last_stable_offsets)
    out += _renamed(checker.check_duplicates(all_reads))
    out += _renamed(checker.check_divergent_reads(all_reads))
    out += _renamed(checker.check_ack_positions(h.produced, all_reads))
    out += _renamed(checker.check_read_then_lost(h.live_reads, h.drain))
    out += _renamed(checker.check_offset_regressions(h.live_reads))
    out += _renamed(checker.check_replica_logs(h.replica_logs, h.high_watermarks, h.leaders,
                                               h.isr))
    order = {k: i for i, k in enumerate(TXN_VIOLATION_KINDS)}
    out.sort(key=lambda v: order[v.kind])
    outcomes = Counter(t.outcome for t in h.txns)
    return TxnReport(
        outcomes={k: outcomes[k] for k in OUTCOMES},
        unknown_resolved=resolve_unknown(h.txns, h.drain),
        aborted_after_error=sum(1 for t in h.txns if t.outcome == "aborted" and t.commit_called),
        slowest_seconds=round(max((t.seconds for t in h.txns), default=0.0), 2),
        median_seconds=round(statistics.median([t.seconds for t in h.txns] or [0.0]), 3),
        records=sum(len(t.values) for t in h.txns),
        delivered=sum(1 for p in h.produced if p.acked),
        read_live=len(h.live_reads), drained=len(h.drain),
        drained_uncommitted=len(h.uncommitted_drain), violations=out)


def _renamed(vs: Iterable[Violation], prefix: str = "") -> list[Violation]:
    return [dataclasses.replace(v, kind="txn_" + v.kind, detail=prefix + v.detail) for v in vs]


def _where(values: Iterable[str], reads: Iterable[Read]) -> dict[str, Read]:
    wanted = set(values)
    return {r.value: r for r in reads if r.value in wanted}


def check_lost(txns: Iterable[Txn], drain: Iterable[Read]) -> list[Violation]:
    present = {r.value for r in drain}
    return [Violation("txn_lost", f"transaction {t.key} committed, record absent from the "
                      "final read_committed drain", partition=part, value=v)
            for t in txns if t.outcome == "committed"
            for v, part in zip(t.values, _parts(t)) if v not in present]


def check_never_committed_reads(txns: Iterable[Txn], reads: Iterable[Read]) -> list[Violation]:
    by_value = {v: t for t in txns if t.cannot_commit for v in t.values}
    out, reported = [], set()
    for r in reads:
        t = by_value.get(r.value)
        if t is None or r.value in reported:
            continue
        reported.add(r.value)
        if t.outcome == "open":
            out.append(Violation("txn_open_read", f"read by {r.reader} under read_committed: "
                                 f"transaction {t.key} was still open when the workload "
                                 "stopped", partition=r.partition, offset=r.offset,
                                 value=r.value))
            continue
        why = ("abort returned" if t.outcome == "aborted" else
               f"its commit was never asked for ({t.outcome}, meant to {t.intent})")
        if t.error:
            why += f"; {t.error}"
        out.append(Violation("txn_aborted_read", f"read by {r.reader} under read_committed: "
                             f"transaction {t.key} cannot have committed: {why}",
                             partition=r.partition, offset=r.offset, value=r.value))
    return out


def _visible(t: Txn, present: set[str]) -> int:
    return sum(1 for v in t.values if v in present)


def check_torn(txns: Iterable[Txn], drain: Iterable[Read]) -> list[Violation]:
    present = {r.value for r in drain}
    out = []
    for t in txns:
        if t.outcome not in ("committed", "unknown") or not t.values:
            continue
        seen = _visible(t, present)
        if 0 < seen < len(t.values):
            missing = [(v, p) for v, p in zip(t.values, _parts(t)) if v not in present]
            out.append(Violation("txn_torn", f"transaction {t.key} ({t.outcome}) partly "
                                 f"visible: {seen} of {len(t.values)} records in the final "
                                 f"read_committed drain; missing (value, partition) "
                                 f"{missing[:6]}", partition=missing[0][1],
                                 value=missing[0][0]))
    return out


def check_aborted_written(txns: Iterable[Txn], produced: Iterable[Produced],
                          uncommitted: Iterable[Read]) -> list[Violation]:
    aborted = {v: t for t in txns if t.outcome == "aborted" for v in t.values}
    present = {r.value for r in uncommitted}
    return [Violation("txn_aborted_unwritten", f"transaction {aborted[m.value].key} "
                      f"aborted; record acknowledged at offset {m.offset}, absent from the "
                      "read_uncommitted drain", partition=m.partition, offset=m.offset,
                      value=m.value)
            for m in produced if m.acked and m.value in aborted and m.value not in present]


def check_lso(high_watermarks: Mapping[int, int | None],
              last_stable_offsets: Mapping[int, int | None]) -> list[Violation]:
    out = []
    for p in sorted(high_watermarks):
        hw = high_watermarks[p]
        if hw is None:
            continue   # txn_no_high_watermark says it
        lso = last_stable_offsets.get(p)
        if lso is None or lso < hw:
            out.append(Violation("txn_lso_stuck", f"last stable offset {lso} below the high "
                                 f"watermark {hw} after healing, every producer finished: a "
                                 "transaction hangs open", partition=p, offset=lso))
    return out


def resolve_unknown(txns: Iterable[Txn], drain: Iterable[Read]) -> dict[str, int]:
    present = {r.value for r in drain}
    got: Counter = Counter()
    for t in txns:
        if t.outcome != "unknown":
            continue
        seen = _visible(t, present)
        got["visible" if t.values and seen == len(t.values) else
            "invisible" if seen == 0 else "torn"] += 1
    return {k: got[k] for k in ("visible", "invisible", "torn")}


def _parts(t: Txn) -> Sequence[int | None]:
    return t.partitions if len(t.partitions) == len(t.values) else [None] * len(t.values)

