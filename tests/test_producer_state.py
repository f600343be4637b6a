"""Idempotent producer state (KIP-98 / KIP-360) on a real PartitionLog in a tmp dir:
duplicates, sequence and epoch checks, wrap-around, snapshots, restart and recovery."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkette.clock import ManualClock
from kafkette.errors import ErrorCode, InvalidRecordError
from kafkette.log import LogConfig, PartitionLog
from kafkette.log.producer_state import (
    INT32_MAX,
    NUM_BATCHES_TO_RETAIN,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    decode_snapshot,
    increment_sequence,
    snapshot_file_name,
)
from kafkette.protocol.records import CONTROL_BIT, build_batch, decode_records, iter_batches

TS = 1_700_000_000_000
PID = 4242


def batch(seq: int, n: int = 1, *, pid: int = PID, epoch: int = 0, tag: str = "v",
          ts: int = TS, **kw) -> bytearray:
    return bytearray(build_batch(
        [(b"k", f"{tag}-{seq}-{i}".encode(), []) for i in range(n)], timestamp_ms=ts,
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, **kw))


def open_log(path, clock=None, **cfg) -> PartitionLog:
    return PartitionLog(str(path / "t-0"), LogConfig(**cfg), clock=clock or ManualClock(TS))


def values(plog: PartitionLog) -> list[str]:
    return [r.value.decode() for r in decode_records(plog.read(plog.log_start_offset, 1 << 30))]


def crash(plog: PartitionLog) -> None:
    """A process death: fds closed, nothing flushed, no clean-shutdown marker."""
    for seg in plog.segments:
        os.close(seg.fd)
        seg._closed = True
    plog._closed = True


def snapshots(plog_or_dir) -> list[int]:
    d = plog_or_dir.dir if isinstance(plog_or_dir, PartitionLog) else plog_or_dir
    return sorted(int(n[:20]) for n in os.listdir(d) if n.endswith(".snapshot"))


def append_seq(plog: PartitionLog, count: int, size: int = 2, start: int = 0, **kw) -> list:
    """`count` in-sequence batches of `size` records; returns [(first_seq, n, base_offset)]."""
    out = []
    seq = start
    for _ in range(count):
        r = plog.append(batch(seq, size, **kw), 0, TS)
        out.append((seq, size, r.base_offset))
        seq = increment_sequence(seq, size)
    return out


@pytest.fixture
def plog(tmp_path):
    p = open_log(tmp_path)
    yield p
    p.close()


# --- duplicates --------------------------------------------------------------------------

def test_retry_of_each_of_the_last_five_batches_returns_original_offsets(plog):
    sent = append_seq(plog, 7, size=3)
    leo, size, before = plog.log_end_offset, plog.size_bytes, values(plog)
    for seq, n, base in sent[-NUM_BATCHES_TO_RETAIN:]:
        r = plog.append(batch(seq, n), 0, TS)
        assert (r.base_offset, r.last_offset) == (base, base + n - 1)
        assert r.log_append_time_ms == -1
    assert plog.log_end_offset == leo and plog.size_bytes == size
    assert values(plog) == before
    assert len(before) == 21 and len(set(before)) == 21


def test_retry_older_than_five_batches_is_out_of_order(plog):
    # Kafka: UnifiedLogTest.testDuplicateAppends, "Duplicates at older entries are
    # reported as OutOfOrderSequence errors".
    sent = append_seq(plog, NUM_BATCHES_TO_RETAIN + 1)
    leo = plog.log_end_offset
    seq, n, _ = sent[0]
    with pytest.raises(OutOfOrderSequenceError) as ei:
        plog.append(batch(seq, n), 0, TS)
    assert ei.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert plog.log_end_offset == leo


def test_duplicate_of_a_batch_with_a_different_range_is_not_a_duplicate(plog):
    append_seq(plog, 2, size=4)  # seqs 0-3, 4-7
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(4, 2), 0, TS)  # 4-5 overlaps but is no retained batch
    r = plog.append(batch(8, 1), 0, TS)
    assert r.base_offset == 8


def test_duplicate_in_a_multi_batch_request_makes_the_whole_request_a_duplicate(plog):
    plog.append(batch(0, 2), 0, TS)
    leo = plog.log_end_offset
    r = plog.append(batch(2, 1) + batch(0, 2), 0, TS)
    assert (r.base_offset, r.last_offset) == (0, 1)
    assert plog.log_end_offset == leo


def test_in_sequence_batches_in_one_request(plog):
    plog.append(batch(0, 2) + batch(2, 3) + batch(5, 1), 0, TS)
    assert plog.log_end_offset == 6
    entry = plog.producer_state.producers[PID]
    assert [(b.first_seq, b.last_seq, b.first_offset, b.last_offset) for b in entry.batches] == \
        [(0, 1, 0, 1), (2, 4, 2, 4), (5, 5, 5, 5)]
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(6, 1) + batch(8, 1), 0, TS)  # the gap is in the second batch
    assert plog.log_end_offset == 6  # all or nothing


def test_log_append_time_duplicate_returns_the_original_append_time(tmp_path):
    clock = ManualClock(TS)
    plog = open_log(tmp_path, clock, message_timestamp_type="LogAppendTime")
    try:
        first = plog.append(batch(0, 2), 0, TS + 5)
        assert first.log_append_time_ms == TS + 5
        dup = plog.append(batch(0, 2), 0, TS + 999)
        assert (dup.base_offset, dup.log_append_time_ms) == (0, TS + 5)
    finally:
        plog.close()


# --- sequence and epoch rules -----------------------------------------------------------------

def test_gap_is_out_of_order_and_nothing_is_appended(plog):
    append_seq(plog, 2, size=1)  # 0, 1
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(3), 0, TS)
    assert plog.log_end_offset == 2
    assert plog.append(batch(2), 0, TS).base_offset == 2  # the right one still goes in


def test_unknown_producer_any_sequence_is_accepted(plog):
    # KIP-360 (Kafka >= 2.5): no UNKNOWN_PRODUCER_ID; a producer the partition does not
    # know (new, expired, or all its data deleted) may start anywhere.
    r = plog.append(batch(57, 2), 0, TS)
    assert r.base_offset == 0
    assert plog.append(batch(59), 0, TS).base_offset == 2
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(61), 0, TS)


def test_old_epoch_is_invalid_producer_epoch(plog):
    plog.append(batch(0, epoch=3), 0, TS)
    with pytest.raises(InvalidProducerEpochError) as ei:
        plog.append(batch(1, epoch=2), 0, TS)
    assert ei.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    # a retry of the old epoch's batch is not a duplicate either: the epoch is checked
    plog.append(batch(0, epoch=4), 0, TS)
    with pytest.raises(InvalidProducerEpochError):
        plog.append(batch(0, epoch=3), 0, TS)
    assert plog.log_end_offset == 2


def test_new_epoch_must_start_at_sequence_zero(plog):
    append_seq(plog, 3, size=1)
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(3, epoch=1), 0, TS)
    r = plog.append(batch(0, epoch=1), 0, TS)
    assert r.base_offset == 3
    entry = plog.producer_state.producers[PID]
    assert entry.producer_epoch == 1 and len(entry.batches) == 1  # old epoch's batches forgotten
    assert plog.append(batch(0, epoch=1), 0, TS).base_offset == 3  # duplicate in the new epoch


def test_negative_sequence_with_a_producer_id_is_invalid_record(plog):
    with pytest.raises(InvalidRecordError) as ei:
        plog.append(batch(-1), 0, TS)
    assert ei.value.code == ErrorCode.INVALID_RECORD
    assert plog.log_end_offset == 0


def test_producers_are_independent_and_plain_batches_are_not_checked(plog):
    plog.append(batch(0, pid=1), 0, TS)
    plog.append(batch(0, pid=2), 0, TS)
    plog.append(bytearray(build_batch([(None, b"plain", [])], timestamp_ms=TS)), 0, TS)
    plog.append(bytearray(build_batch([(None, b"plain", [])], timestamp_ms=TS)), 0, TS)
    assert plog.append(batch(0, pid=1), 0, TS).base_offset == 0
    assert plog.append(batch(1, pid=2), 0, TS).base_offset == 4
    assert plog.append(batch(1, pid=1), 0, TS).base_offset == 5
    assert set(plog.producer_state.producers) == {1, 2}


def test_control_batch_moves_the_epoch_and_never_back(plog):
    plog.append(batch(0, epoch=2), 0, TS)
    plog.append_marker(PID, 3, 0, True, 0, TS)  # markers come from the coordinator
    assert plog.producer_state.producers[PID].producer_epoch == 3
    with pytest.raises(InvalidProducerEpochError):
        plog.append(batch(1, epoch=2), 0, TS)
    with pytest.raises(InvalidProducerEpochError):
        plog.append_marker(PID, 1, 0, True, 0, TS)


def test_clients_may_not_write_markers(plog):
    # Kafka's LogValidator: "Clients are not allowed to write control records".
    marker = bytearray(build_batch([(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00", [])],
                                   timestamp_ms=TS, producer_id=PID, producer_epoch=3,
                                   base_sequence=-1, control=True, transactional=True))
    with pytest.raises(InvalidRecordError):
        plog.append(marker, 0, TS)
    assert plog.log_end_offset == 0


# --- sequence wrap ----------------------------------------------------------------------------

def test_sequence_wraps_at_int32_max(plog):
    plog.append(batch(INT32_MAX - 5), 0, TS)  # an unknown producer may start anywhere
    r = plog.append(batch(INT32_MAX - 4, 6), 0, TS)  # ... INT32_MAX, 0
    assert (r.base_offset, r.last_offset) == (1, 6)
    entry = plog.producer_state.producers[PID]
    assert (entry.batches[-1].first_seq, entry.batches[-1].last_seq) == (INT32_MAX - 4, 0)
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(2), 0, TS)  # the next one is 1
    assert plog.append(batch(1, 2), 0, TS).base_offset == 7
    # the wrapped batch is still recognised as a duplicate
    dup = plog.append(batch(INT32_MAX - 4, 6), 0, TS)
    assert (dup.base_offset, dup.last_offset) == (1, 6)


def test_batch_ending_exactly_at_int32_max_is_followed_by_zero(plog):
    plog.append(batch(INT32_MAX - 1, 2), 0, TS)
    assert plog.append(batch(0), 0, TS).base_offset == 2
    assert increment_sequence(INT32_MAX, 1) == 0 and increment_sequence(INT32_MAX - 1, 3) == 1


# --- persistence ----------------------------------------------------------------------------

def test_restart_keeps_the_state_of_all_five_batches(tmp_path):
    plog = open_log(tmp_path)
    sent = append_seq(plog, 8, size=2)
    leo = plog.log_end_offset
    plog.close()
    assert snapshots(plog) == [leo]  # Kafka's name: <offset, 20 digits>.snapshot
    plog = open_log(tmp_path)
    try:
        for seq, n, base in sent[-NUM_BATCHES_TO_RETAIN:]:
            assert plog.append(batch(seq, n), 0, TS).base_offset == base
        assert plog.log_end_offset == leo
        with pytest.raises(OutOfOrderSequenceError):
            plog.append(batch(sent[-6][0], 2), 0, TS)
        assert plog.append(batch(16, 1), 0, TS).base_offset == leo
    finally:
        plog.close()


def test_snapshot_file_is_kafka_v1_layout_one_row_per_retained_batch(tmp_path):
    plog = open_log(tmp_path)
    append_seq(plog, 7, size=1, pid=9, epoch=2)
    plog.append(batch(0, pid=10, epoch=0, ts=TS + 1), 0, TS)
    plog.close()
    data = open(os.path.join(plog.dir, snapshot_file_name(8)), "rb").read()
    version, crc, count = struct.unpack_from(">hIi", data)
    assert version == 1 and count == 6 and len(data) == 10 + 6 * 46
    rows = list(struct.iter_unpack(">qhiqiqiq", data[10:]))
    # producer 9: its five retained batches, oldest first; producer 10: one
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == \
        [(9, 2, s, s) for s in range(2, 7)] + [(10, 0, 0, 7)]
    assert rows[-1][5] == TS + 1 and rows[0][7] == -1
    # A Kafka reader keeps the last row per producer id: the last batch, as Kafka writes.
    last_rows = {r[0]: r for r in rows}
    assert last_rows[9][2] == 6
    entries = decode_snapshot(data)
    assert [b.last_seq for b in entries[9].batches] == [2, 3, 4, 5, 6]


def test_crash_rebuilds_from_the_snapshot_and_the_batches_after_it(tmp_path):
    plog = open_log(tmp_path)
    first = append_seq(plog, 3, size=2)
    plog.flush()  # snapshot at 6
    assert snapshots(plog) == [6]
    later = append_seq(plog, 3, size=2, start=6)
    crash(plog)
    plog = open_log(tmp_path)
    try:
        assert snapshots(plog)[-1] == 12  # written after the replay
        for seq, n, base in (first + later)[-NUM_BATCHES_TO_RETAIN:]:
            assert plog.append(batch(seq, n), 0, TS).base_offset == base
        assert plog.log_end_offset == 12
    finally:
        plog.close()


def test_torn_tail_recovery_rebuilds_state_from_the_surviving_batches(tmp_path):
    plog = open_log(tmp_path)
    sent = append_seq(plog, 6, size=2)
    plog.flush()  # a snapshot at 12 that includes the batch about to be torn
    path = plog.active_segment.log_path
    crash(plog)
    with open(path, "r+b") as f:  # tear the last batch in half
        size = os.path.getsize(path)
        last_size = len(batch(10, 2))
        f.truncate(size - last_size // 2)
    plog = open_log(tmp_path)
    try:
        assert plog.log_end_offset == 10
        assert 12 not in snapshots(plog)  # above the log end: deleted
        # The torn batch is not in the log, so its retry must be appended, not answered
        # as a duplicate with an offset that does not exist.
        r = plog.append(batch(10, 2), 0, TS)
        assert (r.base_offset, r.last_offset) == (10, 11)
        assert plog.append(batch(10, 2), 0, TS).base_offset == 10
        for seq, n, base in sent[-NUM_BATCHES_TO_RETAIN:-1]:
            assert plog.append(batch(seq, n), 0, TS).base_offset == base
        assert values(plog) == [f"v-{s}-{i}" for s in range(0, 12, 2) for i in range(2)]
    finally:
        plog.close()


def test_corrupt_snapshot_falls_back_to_the_log(tmp_path):
    plog = open_log(tmp_path)
    sent = append_seq(plog, 4)
    plog.close()
    p = os.path.join(plog.dir, snapshot_file_name(8))
    data = bytearray(open(p, "rb").read())
    data[-1] ^= 0xFF
    open(p, "wb").write(data)
    plog = open_log(tmp_path)
    try:
        for seq, n, base in sent:
            assert plog.append(batch(seq, n), 0, TS).base_offset == base
        assert plog.log_end_offset == 8
    finally:
        plog.close()


def test_state_survives_deletion_of_the_segments_holding_the_batches(tmp_path):
    # Retention deletes old segments; the state lives in the snapshot taken at the roll.
    plog = open_log(tmp_path)
    sent = append_seq(plog, 5, size=2)
    plog.roll()  # snapshot at 10
    plog.append(bytearray(build_batch([(None, b"plain", [])], timestamp_ms=TS)), 0, TS)
    plog.close()
    os.unlink(os.path.join(plog.dir, f"{0:020d}.log"))
    plog = open_log(tmp_path)
    try:
        assert plog.log_start_offset == 10
        for seq, n, base in sent:
            assert plog.append(batch(seq, n), 0, TS).base_offset == base
        assert plog.append(batch(10, 1), 0, TS).base_offset == 11
    finally:
        plog.close()


def test_stale_snapshot_below_the_first_segment_is_not_used(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(0, 2), 0, TS)
    plog.roll()  # snapshot at 2: last sequence 1
    plog.append(batch(2, 2), 0, TS)
    plog.roll()  # snapshot at 4: last sequence 3
    plog.append(bytearray(build_batch([(None, b"plain", [])], timestamp_ms=TS)), 0, TS)
    crash(plog)
    # Retention took the segments at 0 and 2, and the newest snapshot is lost: the one at
    # 2 now lies below the log, and the batch with sequences 2-3 is gone. Replaying from
    # it would leave "last sequence 1" and refuse the producer's next batch (4).
    os.unlink(os.path.join(plog.dir, snapshot_file_name(4)))
    for base in (0, 2):
        os.unlink(os.path.join(plog.dir, f"{base:020d}.log"))
    plog = open_log(tmp_path)
    try:
        assert plog.log_start_offset == 4
        assert 2 not in snapshots(plog)
        assert PID not in plog.producer_state.producers  # unknown: KIP-360 applies
        assert plog.append(batch(4, 2), 0, TS).base_offset == 5
    finally:
        plog.close()


def test_junk_snapshot_files_are_ignored(tmp_path):
    plog = open_log(tmp_path)
    sent = append_seq(plog, 3)
    plog.close()
    for off in (0, 6):
        with open(os.path.join(plog.dir, snapshot_file_name(off)), "wb") as f:
            f.write(b"\x00\x01junk")
    with open(os.path.join(plog.dir, snapshot_file_name(3) + ".tmp"), "wb") as f:
        f.write(b"half")
    plog = open_log(tmp_path)
    try:
        assert not any(n.endswith(".tmp") for n in os.listdir(plog.dir))
        for seq, n, base in sent:
            assert plog.append(batch(seq, n), 0, TS).base_offset == base
    finally:
        plog.close()


def test_snapshots_on_roll_flush_and_close_keep_the_newest_two_and_the_anchor(tmp_path):
    plog = open_log(tmp_path)
    assert snapshots(plog) == []
    append_seq(plog, 1)
    plog.roll()
    assert snapshots(plog) == [2]
    append_seq(plog, 1, start=2)
    plog.flush()
    assert snapshots(plog) == [2, 4]
    append_seq(plog, 1, start=4)
    plog.close()
    # The newest two, and the one at the start of the segment holding the recovery
    # point (6, in the segment that starts at 2): an unclean restart re-reads that
    # segment and rebuilds its transaction index from the producer state at 2.
    assert snapshots(plog) == [2, 4, 6]
    plog = open_log(tmp_path)
    plog.roll()
    append_seq(plog, 1, start=6)
    plog.close()
    assert snapshots(plog) == [6, 8]  # the recovery point (8) is in the segment at 6


def test_empty_log_writes_no_snapshot(tmp_path):
    plog = open_log(tmp_path)
    plog.close()
    assert snapshots(plog) == []
    plog = open_log(tmp_path)
    plog.close()
    assert snapshots(plog) == []


def test_upgrade_without_any_snapshot_rebuilds_from_the_whole_log(tmp_path):
    plog = open_log(tmp_path, segment_bytes=300)
    sent = append_seq(plog, 8, size=2)
    plog.close()
    assert len(plog.segments) > 2
    for off in snapshots(plog):
        os.unlink(os.path.join(plog.dir, snapshot_file_name(off)))
    plog = open_log(tmp_path, segment_bytes=300)
    try:
        for seq, n, base in sent[-NUM_BATCHES_TO_RETAIN:]:
            assert plog.append(batch(seq, n), 0, TS).base_offset == base
    finally:
        plog.close()


# --- expiry ----------------------------------------------------------------------------------

def test_idle_producers_expire_after_producer_id_expiration_ms(plog):
    plog.append(batch(0, pid=1, ts=TS), 0, TS)
    plog.append(batch(0, pid=2, ts=TS + 50_000), 0, TS)
    assert plog.remove_expired_producers(TS + 99_999, expiration_ms=100_000) == 0
    assert plog.remove_expired_producers(TS + 100_000, expiration_ms=100_000) == 1
    assert set(plog.producer_state.producers) == {2}
    # An expired producer is unknown again: any sequence goes in, and a retry of its last
    # batch is appended a second time (Kafka behaves the same).
    assert plog.append(batch(0, pid=1), 0, TS).base_offset == 2
    # the default is Kafka's 1 day
    assert plog.remove_expired_producers(TS + 86_400_000 - 1) == 0
    assert plog.remove_expired_producers(TS + 86_400_000 + 50_000) == 2


# --- a model check ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["next", "retry", "gap", "crash", "restart"]),
                          st.integers(1, 4), st.integers(0, 7)), max_size=25))
def test_model_each_batch_once_in_order(tmp_path_factory, ops):
    """A producer that sends new batches, retries one of its recent ones, or skips ahead,
    with restarts and crashes in between: the log holds every accepted batch exactly
    once, in order, and every answer matches the model."""
    path = tmp_path_factory.mktemp("model")
    plog = open_log(path)
    sent: list[tuple[int, int, int]] = []  # (first seq, count, base offset), all in the log
    seq = 0
    try:
        for op, n, k in ops:
            if op == "next":
                r = plog.append(batch(seq, n), 0, TS)
                assert r.base_offset == plog.log_end_offset - n
                sent.append((seq, n, r.base_offset))
                seq += n
            elif op == "retry" and sent:
                i = min(k, len(sent) - 1)
                s, c, base = sent[-1 - i]
                if i < NUM_BATCHES_TO_RETAIN:
                    leo = plog.log_end_offset
                    assert plog.append(batch(s, c), 0, TS).base_offset == base
                    assert plog.log_end_offset == leo
                else:
                    with pytest.raises(OutOfOrderSequenceError):
                        plog.append(batch(s, c), 0, TS)
            elif op == "gap" and sent:
                with pytest.raises(OutOfOrderSequenceError):
                    plog.append(batch(seq + 1 + k, n), 0, TS)
            elif op == "crash":
                if k % 2:
                    plog.flush()
                crash(plog)
                plog = open_log(path)
            elif op == "restart":
                plog.close()
                plog = open_log(path)
        expected = [f"v-{s}-{i}" for s, c, _ in sent for i in range(c)]
        assert values(plog) == expected
    finally:
        plog.close()


def test_headers_only_no_record_decoding(tmp_path, monkeypatch):
    """The checks and the replay read batch headers only."""
    import kafkette.protocol.records as records

    plog = open_log(tmp_path)
    append_seq(plog, 3)
    crash(plog)

    def boom(*a, **k):
        raise AssertionError("records decoded")
    monkeypatch.setattr(records, "decode_records", boom)
    monkeypatch.setattr(records, "_decode_batch", boom)
    plog = open_log(tmp_path)
    try:
        assert plog.append(batch(2, 2), 0, TS).base_offset == 2
        plog.append(batch(6, 2), 0, TS)
    finally:
        plog.close()
    assert [h.base_sequence for _, h in iter_batches(open(plog.segments[0].log_path, "rb").read())] \
        == [0, 2, 4, 6]
