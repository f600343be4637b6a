"""kafkette.chaos.checker on synthetic histories: a clean history passes, and each kind
of violation is found (and only that kind), so every check is shown to be able to fail.
The replica-log reader is checked on real segment files written by kafkette.log."""
from __future__ import annotations

import time

import pytest

from kafkette.chaos.checker import (VIOLATION_KINDS, BatchInfo, History, Produced, Read,
                                    check)


def acked(value: str, partition: int, offset: int) -> Produced:
    producer, seq = value.split("/")
    return Produced(producer, int(seq), value, True, partition, offset)


def failed(value: str) -> Produced:
    producer, seq = value.split("/")
    return Produced(producer, int(seq), value, False, None, None, "Local: Message timed out")


def reads(reader: str, rows) -> list[Read]:
    return [Read(reader, p, o, v) for p, o, v in rows]


# Two partitions, three records each; p1/2 failed (never written).
ROWS = [(0, 0, "p1/0"), (0, 1, "p2/0"), (0, 2, "p1/3"),
        (1, 0, "p1/1"), (1, 1, "p2/1"), (1, 2, "p2/2")]
B = {0: [BatchInfo(0, 1, 0, 0xAAAA), BatchInfo(2, 2, 1, 0xBBBB)],
     1: [BatchInfo(0, 2, 0, 0xCCCC)]}


def clean(**changes) -> History:
    h = History(
        produced=[acked(v, p, o) for p, o, v in ROWS] + [failed("p1/2")],
        live_reads=reads("c1", ROWS) + reads("c2", ROWS[:4]),
        drain=reads("drain", ROWS),
        drain_end_offsets={0: 3, 1: 3}, drain_positions={0: 3, 1: 3},
        high_watermarks={0: 3, 1: 3}, leaders={0: 1, 1: 2},
        isr={0: (1, 2, 3), 1: (2, 3, 1)},
        replica_logs={p: {n: list(bs) for n in (1, 2, 3)} for p, bs in B.items()})
    for k, v in changes.items():
        setattr(h, k, v)
    return h


def kinds(h: History) -> dict[str, int]:
    return check(h).counts()


def test_a_clean_history_has_no_violation_and_counts_acks_and_failures():
    r = check(clean())
    assert r.violations == []
    assert r.ok
    assert (r.acknowledged, r.failed, r.lost, r.duplicated) == (6, 1, 0, 0)
    assert (r.read_live, r.drained) == (10, 6)


def test_an_acknowledged_record_missing_from_the_drain_is_lost():
    h = clean(drain=reads("drain", [row for row in ROWS if row[2] != "p2/1"]),
              live_reads=reads("c1", [row for row in ROWS if row[2] != "p2/1"]))
    r = check(h)
    assert r.counts() == {"lost": 1}
    (v,) = r.violations
    assert (v.value, v.partition, v.offset) == ("p2/1", 1, 1)
    assert r.lost == 1


def test_a_failed_delivery_that_was_written_anyway_is_no_violation():
    rows = ROWS + [(1, 3, "p1/2")]
    assert kinds(clean(drain=reads("drain", rows), drain_end_offsets={0: 3, 1: 4},
                       drain_positions={0: 3, 1: 4})) == {}


def test_one_value_at_two_offsets_is_a_duplicate():
    rows = ROWS + [(1, 3, "p1/3")]   # a retry written twice
    r = check(clean(drain=reads("drain", rows), drain_end_offsets={0: 3, 1: 4},
                    drain_positions={0: 3, 1: 4}))
    # Its delivery report named one of the two places: the other one is a mismatch too.
    assert r.counts() == {"duplicate": 1, "ack_mismatch": 1}
    assert r.duplicated == 1


def test_one_offset_read_with_two_values_is_a_divergent_read():
    # c2 was served another history of partition 0 at offset 1 (the value is one that
    # failed, so nothing else is wrong with it).
    live = reads("c1", ROWS) + reads("c2", [(0, 0, "p1/0"), (0, 1, "p1/2")])
    r = check(clean(live_reads=live))
    assert r.counts() == {"divergent_read": 1, "read_then_lost": 1}
    div = [v for v in r.violations if v.kind == "divergent_read"][0]
    assert (div.partition, div.offset) == (0, 1)
    assert "c2" in div.detail


def test_an_acknowledged_offset_other_than_where_the_value_is_read_is_a_mismatch():
    produced = [acked(v, p, o if v != "p2/2" else 7) for p, o, v in ROWS]
    r = check(clean(produced=produced))
    assert r.counts() == {"ack_mismatch": 1}
    assert r.violations[0].value == "p2/2"


def test_a_record_read_live_then_absent_after_healing_is_read_then_lost():
    # p3/0 was read by c1 (so it was below the high watermark), and is gone; it was
    # never acknowledged, which does not make it any less a violation.
    live = reads("c1", ROWS + [(0, 3, "p3/0")])
    r = check(clean(live_reads=live))
    assert r.counts() == {"read_then_lost": 1}
    assert r.violations[0].value == "p3/0"


def test_offsets_going_backwards_in_one_consumer_stream_are_a_regression():
    live = reads("c1", ROWS[:3] + [(0, 1, "p2/0")] + ROWS[3:])
    r = check(clean(live_reads=live))
    assert r.counts() == {"offset_regression": 1}
    v = r.violations[0]
    assert (v.partition, v.offset) == (0, 1) and "after offset 2" in v.detail


def test_offsets_of_two_partitions_or_two_consumers_are_separate_streams():
    live = reads("c1", [(0, 2, "p1/3"), (1, 0, "p1/1")]) + reads("c2", [(0, 0, "p1/0")])
    assert kinds(clean(live_reads=live)) == {}


def test_a_drain_that_stopped_short_is_reported():
    assert kinds(clean(drain_positions={0: 3, 1: 2})) == {"drain_incomplete": 1}


def test_a_partition_without_high_watermark_is_reported():
    assert kinds(clean(high_watermarks={0: 3, 1: None})) == {"no_high_watermark": 1}


@pytest.mark.parametrize("change, what", [
    (lambda bs: [bs[0], BatchInfo(2, 2, 1, 0xDEAD)], "crc"),
    (lambda bs: [bs[0], BatchInfo(2, 2, 2, 0xBBBB)], "epoch"),
    (lambda bs: [BatchInfo(0, 0, 0, 0xAAAA), BatchInfo(1, 2, 1, 0xBBBB)], "base offset"),
    (lambda bs: bs[:1], "in-sync replica short"),
])
def test_in_sync_replicas_differing_below_the_high_watermark_diverge(change, what):
    logs = {p: {n: list(bs) for n in (1, 2, 3)} for p, bs in B.items()}
    logs[0][3] = change(B[0])
    r = check(clean(replica_logs=logs))
    assert r.counts() == {"replica_divergence": 1}, what
    assert "node 3" in r.violations[0].detail


def test_replicas_may_differ_above_the_high_watermark():
    logs = {p: {n: list(bs) for n in (1, 2, 3)} for p, bs in B.items()}
    logs[0][3] = B[0] + [BatchInfo(3, 5, 1, 0x1)]
    logs[0][2] = B[0] + [BatchInfo(3, 4, 2, 0x2)]
    assert kinds(clean(replica_logs=logs)) == {}


def test_a_replica_outside_the_isr_may_be_shorter_but_must_agree():
    logs = {p: {n: list(bs) for n in (1, 2, 3)} for p, bs in B.items()}
    logs[0][3] = B[0][:1]
    isr = {0: (1, 2), 1: (2, 3, 1)}
    assert kinds(clean(replica_logs=logs, isr=isr)) == {}
    logs[0][3] = [BatchInfo(0, 1, 0, 0x0BAD)]
    assert kinds(clean(replica_logs=logs, isr=isr)) == {"replica_divergence": 1}


def test_a_leader_log_ending_below_the_high_watermark_diverges():
    logs = {p: {n: list(bs) for n in (1, 2, 3)} for p, bs in B.items()}
    logs[0] = {n: B[0][:1] for n in (1, 2, 3)}
    r = check(clean(replica_logs=logs))
    assert r.counts() == {"replica_divergence": 1}
    assert "below the high" in r.violations[0].detail


def test_the_violations_come_ordered_by_kind_and_every_kind_is_known():
    live = reads("c1", ROWS[:3] + [(0, 1, "p2/0"), (0, 3, "p3/0")])
    r = check(clean(live_reads=live, drain=reads("drain", ROWS[1:]),
                    drain_positions={0: 3, 1: 1}))
    ks = [v.kind for v in r.violations]
    assert set(ks) == {"drain_incomplete", "lost", "read_then_lost", "offset_regression"}
    assert ks == sorted(ks, key=VIOLATION_KINDS.index)
    assert all(v.as_dict()["kind"] in VIOLATION_KINDS for v in r.violations)


def test_replica_logs_are_read_from_segment_files(tmp_path):
    from kafkette.chaos.replica_logs import replica_logs
    from kafkette.log.partition_log import LogConfig, PartitionLog
    from kafkette.protocol.records import build_batch

    now_ms = int(time.time() * 1000)
    # Node 1 has three batches over two segments (tiny segments force a roll), node 2
    # the first two, node 3 no directory for partition 1.
    for node, count in ((1, 3), (2, 2)):
        plog = PartitionLog(tmp_path / f"node-{node}" / "t-0",
                            LogConfig(segment_bytes=120))
        for i in range(count):
            plog.append(build_batch([(b"k", b"v%d" % i)] * (i + 1), timestamp_ms=now_ms), i,
                        now_ms)
        plog.close()
    got = replica_logs({n: tmp_path / f"node-{n}" for n in (1, 2, 3)}, "t", [0, 1])
    assert sorted(got[0]) == [1, 2] and got[1] == {}
    first = got[0][1]
    assert [(b.base_offset, b.last_offset, b.partition_leader_epoch) for b in first] == \
        [(0, 0, 0), (1, 2, 1), (3, 5, 2)]
    assert got[0][2] == first[:2]
    assert len({b.crc for b in first}) == 3
    assert len(list((tmp_path / "node-1" / "t-0").glob("*.log"))) > 1
