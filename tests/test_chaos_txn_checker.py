"""kafkette.chaos.txn_checker on synthetic histories: a clean history passes, and each
kind of transactional violation is found (and only that kind), so every check is shown
to be able to fail. The transactional worker's seeded plan is checked without a
cluster (integration/test_chaos.py runs it against real processes)."""
from __future__ import annotations

import random

import pytest

from kafkette.chaos.checker import BatchInfo, Produced, Read
from kafkette.chaos.txn_checker import (TXN_VIOLATION_KINDS, Txn, TxnHistory, check,
                                        txn_value)

C, A = "commit", "abort"


def txn(producer, number, intent, outcome, parts, commit_called=None, error=None) -> Txn:
    values = tuple(txn_value(producer, number, i, intent) for i in range(len(parts)))
    if commit_called is None:
        commit_called = intent == C
    return Txn(producer, number, intent, outcome, values, tuple(parts), commit_called, error)


# t1/0 committed over p0, p1; t1/1 aborted on purpose over p1, p2; t2/0 unknown (commit
# was asked for) and visible over p0, p2; t2/1 unknown, written, and invisible (its
# coordinator aborted it) over p1, p2. Control records hold the offsets not listed.
TXNS = [txn("t1", 0, C, "committed", [0, 1]), txn("t1", 1, A, "aborted", [1, 2]),
        txn("t2", 0, C, "unknown", [0, 2], error="commit: _TIMED_OUT"),
        txn("t2", 1, C, "unknown", [1, 2], error="commit: PRODUCER_FENCED")]
LOG = [(0, 0, "t1/0/0/c"), (0, 2, "t2/0/0/c"),
       (1, 0, "t1/0/1/c"), (1, 1, "t1/1/0/a"), (1, 4, "t2/1/0/c"),
       (2, 0, "t1/1/1/a"), (2, 2, "t2/0/1/c"), (2, 3, "t2/1/1/c")]
VISIBLE = [r for r in LOG if r[2] in {"t1/0/0/c", "t1/0/1/c", "t2/0/0/c", "t2/0/1/c"}]
HW = {0: 4, 1: 6, 2: 6}
B = {p: [BatchInfo(0, hw - 1, 0, 0xA000 + p)] for p, hw in HW.items()}


def reads(reader, rows) -> list[Read]:
    return [Read(reader, p, o, v) for p, o, v in rows]


def delivered(rows) -> list[Produced]:
    return [Produced(v.split("/")[0], i, v, True, p, o) for i, (p, o, v) in enumerate(rows)]


def clean(**changes) -> TxnHistory:
    h = TxnHistory(
        txns=list(TXNS), produced=delivered(LOG),
        live_reads=reads("tc1", VISIBLE[:3]), drain=reads("drain", VISIBLE),
        drain_end_offsets=dict(HW), drain_positions=dict(HW),
        uncommitted_drain=reads("drain-ru", LOG), uncommitted_positions=dict(HW),
        high_watermarks=dict(HW), last_stable_offsets=dict(HW),
        leaders={0: 1, 1: 2, 2: 3}, isr={p: (1, 2, 3) for p in HW},
        replica_logs={p: {n: list(bs) for n in (1, 2, 3)} for p, bs in B.items()})
    for k, v in changes.items():
        setattr(h, k, v)
    return h


def kinds(h: TxnHistory) -> dict[str, int]:
    return check(h).counts()


def without(rows, *values):
    return [r for r in rows if r.value not in values]


def test_a_clean_history_passes_and_counts_outcomes():
    r = check(clean())
    assert r.violations == [] and r.ok
    assert r.outcomes == {"committed": 1, "aborted": 1, "unknown": 2, "open": 0}
    assert r.unknown_resolved == {"visible": 1, "invisible": 1, "torn": 0}
    assert (r.records, r.delivered, r.read_live, r.drained, r.drained_uncommitted) == \
        (8, 8, 3, 4, 8)
    assert r.aborted_after_error == 0


def test_values_name_producer_transaction_index_and_intent():
    assert txn_value("t3", 12, 4, "abort") == "t3/12/4/a"
    assert len({txn_value("t1", n, i, C) for n in range(20) for i in range(6)}) == 120


def test_a_committed_record_missing_from_the_drain_is_lost_and_the_transaction_torn():
    h = clean(drain=without(reads("drain", VISIBLE), "t1/0/1/c"), live_reads=[])
    assert kinds(h) == {"txn_lost": 1, "txn_torn": 1}
    lost = [v for v in check(h).violations if v.kind == "txn_lost"][0]
    assert (lost.partition, lost.value) == (1, "t1/0/1/c")


def test_a_committed_transaction_wholly_missing_is_lost_not_torn():
    h = clean(drain=without(reads("drain", VISIBLE), "t1/0/0/c", "t1/0/1/c"), live_reads=[])
    assert kinds(h) == {"txn_lost": 2}
    # Read live first, then gone: read_then_lost says that too.
    h.live_reads = reads("tc1", VISIBLE[:1])
    assert kinds(h) == {"txn_lost": 2, "txn_read_then_lost": 1}


@pytest.mark.parametrize("where", ["drain", "live_reads"])
def test_an_aborted_record_read_under_read_committed_is_an_aborted_read(where):
    h = clean()
    setattr(h, where, list(getattr(h, where)) + reads("x", [(2, 0, "t1/1/1/a")]))
    got = kinds(h)
    # A live read absent from the drain is also a read that vanished.
    assert got == {"txn_aborted_read": 1, **({"txn_read_then_lost": 1}
                                            if where == "live_reads" else {})}
    v = check(h).violations[0]
    assert (v.partition, v.offset, v.value) == (2, 0, "t1/1/1/a")
    assert "abort returned" in v.detail


def test_a_read_of_a_transaction_whose_commit_was_never_asked_for_is_an_aborted_read():
    # Meant to commit, failed while producing (so commit was never called), outcome
    # unknown: only EndTxn(commit) can commit it, so it must stay invisible.
    failed = txn("t3", 0, C, "unknown", [0, 1], commit_called=False,
                 error="produce: _STATE")
    rows = [(0, 4, failed.values[0]), (1, 6, failed.values[1])]
    h = clean(txns=TXNS + [failed], drain=reads("drain", VISIBLE + rows),
              uncommitted_drain=reads("drain-ru", LOG + rows))
    assert kinds(h) == {"txn_aborted_read": 2}
    # The same with commit asked for is merely an unknown that committed.
    asked = txn("t3", 0, C, "unknown", [0, 1], commit_called=True)
    assert kinds(clean(txns=TXNS + [asked], drain=reads("drain", VISIBLE + rows),
                       uncommitted_drain=reads("drain-ru", LOG + rows))) == {}


def test_an_abort_after_a_failed_commit_still_forbids_reads():
    after = txn("t3", 0, C, "aborted", [0, 1], commit_called=True,
                error="commit: INVALID_TXN_STATE")
    row = [(0, 4, after.values[0])]
    h = clean(txns=TXNS + [after], live_reads=reads("tc1", VISIBLE[:3] + row))
    assert check(h).aborted_after_error == 1
    assert kinds(h) == {"txn_aborted_read": 1, "txn_read_then_lost": 1}


def test_a_read_of_a_transaction_open_at_the_end_is_an_open_read():
    still = txn("t3", 0, C, "open", [0, 1], commit_called=False)
    h = clean(txns=TXNS + [still], drain=reads("drain", VISIBLE + [(0, 4, still.values[0])]))
    assert kinds(h) == {"txn_open_read": 1}
    assert check(h).outcomes["open"] == 1


def test_an_unknown_transaction_partly_visible_is_torn():
    h = clean(drain=without(reads("drain", VISIBLE), "t2/0/1/c"),
              live_reads=reads("tc1", VISIBLE[:1]))
    r = check(h)
    assert r.counts() == {"txn_torn": 1}
    v = r.violations[0]
    assert (v.partition, v.value) == (2, "t2/0/1/c") and "1 of 2" in v.detail
    assert r.unknown_resolved == {"visible": 0, "invisible": 1, "torn": 1}


def test_an_acknowledged_aborted_record_missing_from_the_uncommitted_drain_is_found():
    h = clean(uncommitted_drain=without(reads("drain-ru", LOG), "t1/1/0/a"))
    assert kinds(h) == {"txn_aborted_unwritten": 1}
    # Not acknowledged (e.g. purged by the abort): nothing was promised.
    produced = [p if p.value != "t1/1/0/a" else Produced("t1", p.seq, p.value, False)
                for p in delivered(LOG)]
    assert kinds(clean(produced=produced,
                       uncommitted_drain=without(reads("drain-ru", LOG), "t1/1/0/a"))) == {}


@pytest.mark.parametrize("lso", [5, None])
def test_a_last_stable_offset_below_the_high_watermark_is_a_hanging_transaction(lso):
    h = clean(last_stable_offsets={0: 4, 1: lso, 2: 6})
    assert kinds(h) == {"txn_lso_stuck": 1}
    assert check(h).violations[0].partition == 1


def test_a_value_at_two_offsets_is_a_duplicate_across_isolation_levels():
    h = clean(uncommitted_drain=reads("drain-ru", LOG + [(0, 5, "t1/0/0/c")]),
              uncommitted_positions={0: 6, 1: 6, 2: 6}, drain_end_offsets={0: 6, 1: 6, 2: 6},
              drain_positions={0: 6, 1: 6, 2: 6})
    assert kinds(h) == {"txn_duplicate": 1, "txn_ack_mismatch": 1}


def test_the_plain_checks_run_on_the_transactional_topic_under_their_own_names():
    assert kinds(clean(drain_positions={0: 4, 1: 3, 2: 6})) == {"txn_drain_incomplete": 1}
    assert kinds(clean(uncommitted_positions={0: 1, 1: 6, 2: 6})) == \
        {"txn_drain_incomplete": 1}
    assert kinds(clean(live_reads=reads("tc1", [VISIBLE[1], VISIBLE[0]]))) == \
        {"txn_offset_regression": 1}
    assert kinds(clean(live_reads=reads("tc1", [(0, 0, "t1/0/0/x")]))) == \
        {"txn_divergent_read": 1, "txn_read_then_lost": 1}
    logs = {p: {n: list(bs) for n in (1, 2, 3)} for p, bs in B.items()}
    logs[1][3] = [BatchInfo(0, 5, 1, 0xFFFF)]
    assert kinds(clean(replica_logs=logs)) == {"txn_replica_divergence": 1}
    assert kinds(clean(high_watermarks={0: 4, 1: None, 2: 6})) == {"txn_no_high_watermark": 1}


def test_every_kind_is_shown_failing_above():
    # The kinds the tests above produce: each one a check that can fail.
    shown = {"txn_lost", "txn_aborted_read", "txn_open_read", "txn_torn",
             "txn_aborted_unwritten", "txn_lso_stuck", "txn_duplicate", "txn_divergent_read",
             "txn_ack_mismatch", "txn_read_then_lost", "txn_offset_regression",
             "txn_drain_incomplete", "txn_no_high_watermark", "txn_replica_divergence"}
    assert shown == set(TXN_VIOLATION_KINDS)


def test_the_worker_plan_is_seeded_and_spans_two_partitions():
    pytest.importorskip("confluent_kafka")
    from kafkette.chaos.txn_workload import TransactionalProducerWorker

    def plans(seed, partitions=(0, 1, 2), n=50):
        w = TransactionalProducerWorker("t1", "localhost:1", "x", list(partitions),
                                        rng=random.Random(seed), abort_ratio=0.3)
        return [w._plan() for _ in range(n)]
    assert plans(7) == plans(7) != plans(8)
    ps = plans(7)
    assert all(2 <= len(parts) <= 6 and len(set(parts)) >= 2 for _, parts in ps)
    intents = [i for i, _ in ps]
    assert 0 < intents.count("abort") < len(ps)
    # One partition: every record on it, and the same intents (draws do not shift).
    one = plans(7, partitions=(0,))
    assert all(set(parts) == {0} for _, parts in one)
    assert [i for i, _ in one] == intents
