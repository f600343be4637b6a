"""Retention (kafkette.log.retention) and the log-start-offset mechanics under it
(PartitionLog "retention" section), on real files with a manual clock.

Most tests use segment.bytes small enough that every batch gets a segment of its own,
so "segment i" holds offset i and the producer timestamp chosen for it.
"""
from __future__ import annotations

import os

import pytest

from handler_harness import START_MS, call, create_topic, make_broker, produce  # noqa: F401
from kafkette.broker.log_maintenance import LogMaintenance
from kafkette.clock import ManualClock
from kafkette.errors import OffsetOutOfRangeError
from kafkette.log.partition_log import LOG_START_OFFSET_FILE, LogConfig, PartitionLog
from kafkette.log.retention import enforce_retention, segment_largest_timestamp
from kafkette.protocol.messages import ListOffsetsRequest
from kafkette.protocol.records import build_batch, decode_records, iter_batches

T0 = 1_700_000_000_000
VALUE = 100
ONE_PER_SEGMENT = 200  # segment.bytes: a one-record batch of VALUE bytes is ~180


def batch(ts: int, tag: int = 0, n: int = 1) -> bytearray:
    return bytearray(build_batch([(b"k%d" % tag, bytes([tag % 256]) * VALUE, [])] * n, timestamp_ms=ts))


BATCH_SIZE = len(batch(T0))


def open_log(path, clock=None, **cfg) -> PartitionLog:
    cfg.setdefault("segment_bytes", ONE_PER_SEGMENT)
    return PartitionLog(str(path), LogConfig(**cfg), clock=clock or ManualClock(T0))


def fill(plog: PartitionLog, timestamps, now_ms: int = T0) -> None:
    for i, ts in enumerate(timestamps):
        plog.append(batch(ts, tag=i), 0, now_ms)


def files(path, suffix: str) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(suffix))


def offsets_in(data) -> list[int]:
    return [h.base_offset for _, h in iter_batches(data)]


@pytest.fixture
def five(tmp_path):
    """Five one-batch segments, producer timestamps T0, T0+1s, ..., T0+4s."""
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    fill(plog, [T0 + 1000 * i for i in range(5)])
    assert plog.segment_base_offsets() == [0, 1, 2, 3, 4]
    yield plog
    plog.close()


# --- retention.ms ------------------------------------------------------------------------


def test_time_retention_deletes_only_expired_segments(five, tmp_path):
    # Expired: now - largest timestamp > retention.ms, i.e. ts < T0 + 2500.
    assert enforce_retention(five, T0 + 12_500) == 3
    assert five.segment_base_offsets() == [3, 4]
    assert five.log_start_offset == 3
    assert five.log_end_offset == 5
    d = tmp_path / "t-0"
    assert files(d, ".log") == ["00000000000000000003.log", "00000000000000000004.log"]
    assert files(d, ".index") == ["00000000000000000003.index", "00000000000000000004.index"]
    assert files(d, ".timeindex") == ["00000000000000000003.timeindex", "00000000000000000004.timeindex"]
    assert [n for n in os.listdir(d) if n.endswith(".deleted")] == []
    assert five.size_bytes == 2 * BATCH_SIZE
    # Nothing more is due at the same time.
    assert enforce_retention(five, T0 + 12_500) == 0


def test_time_retention_boundary_is_strict(five):
    # Segment 0's largest timestamp is exactly retention.ms old: kept (Kafka: `>`).
    assert enforce_retention(five, T0 + 10_000) == 0
    assert enforce_retention(five, T0 + 10_001) == 1
    assert five.log_start_offset == 1


def test_time_retention_uses_the_largest_timestamp_of_the_segment(tmp_path):
    plog = open_log(tmp_path / "t-0", retention_ms=10_000, segment_bytes=10_000)
    # One segment of two batches (old, then new), rolled; then an active one.
    plog.append(batch(T0, 0), 0, T0)
    plog.append(batch(T0 + 9_000, 1), 0, T0)
    plog.roll()
    plog.append(batch(T0 + 20_000, 2), 0, T0)
    assert segment_largest_timestamp(plog.segments[0]) == T0 + 9_000
    assert enforce_retention(plog, T0 + 15_000) == 0  # first batch is old, the segment is not
    assert enforce_retention(plog, T0 + 19_001) == 1
    assert plog.log_start_offset == 2
    plog.close()


def test_time_retention_stops_at_the_first_retained_segment(tmp_path):
    # Kafka deletes a prefix of the log only: an old segment after a young one stays.
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    fill(plog, [T0, T0 + 50_000, T0, T0])
    assert enforce_retention(plog, T0 + 20_000) == 1
    assert plog.segment_base_offsets() == [1, 2, 3]
    plog.close()


def test_retention_ms_minus_one_keeps_forever(tmp_path):
    plog = open_log(tmp_path / "t-0", retention_ms=-1)
    fill(plog, [T0, T0 + 1])
    assert enforce_retention(plog, T0 + 10**12) == 0
    assert plog.segment_base_offsets() == [0, 1]
    plog.close()


def test_compact_only_policy_deletes_nothing_by_time_or_size(tmp_path):
    plog = open_log(tmp_path / "t-0", retention_ms=1, retention_bytes=0, cleanup_policy=("compact",))
    fill(plog, [T0, T0 + 1, T0 + 2])
    assert enforce_retention(plog, T0 + 10**9) == 0
    assert plog.segment_base_offsets() == [0, 1, 2]
    plog.close()


def test_segment_without_timestamps_falls_back_to_file_mtime(tmp_path):
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    fill(plog, [-1, -1])  # producer sent no timestamps (-1)
    seg0 = plog.segments[0]
    os.utime(seg0.log_path, ns=(T0 * 1_000_000, T0 * 1_000_000))
    assert seg0.max_timestamp == -1
    assert segment_largest_timestamp(seg0) == T0
    assert enforce_retention(plog, T0 + 10_001) == 1
    assert plog.log_start_offset == 1
    plog.close()


# --- retention.bytes -----------------------------------------------------------------------


@pytest.mark.parametrize("retention_bytes,left", [
    (5 * BATCH_SIZE, [0, 1, 2, 3, 4]),        # exactly at the limit: nothing to delete
    (3 * BATCH_SIZE, [2, 3, 4]),              # delete while what is left stays >= the limit
    (2 * BATCH_SIZE + 10, [2, 3, 4]),         # one more would leave less than the limit
    (1, [4]),                                 # only the active segment remains
])
def test_size_retention(tmp_path, retention_bytes, left):
    plog = open_log(tmp_path / "t-0", retention_bytes=retention_bytes, retention_ms=-1)
    fill(plog, [T0 + i for i in range(5)])
    assert plog.size_bytes == 5 * BATCH_SIZE
    assert enforce_retention(plog, T0) == 5 - len(left)
    assert plog.segment_base_offsets() == left
    assert plog.size_bytes == len(left) * BATCH_SIZE
    assert plog.log_start_offset == left[0]
    plog.close()


def test_size_retention_zero_empties_the_log_kafka_style(tmp_path):
    plog = open_log(tmp_path / "t-0", retention_bytes=0, retention_ms=-1)
    fill(plog, [T0, T0 + 1, T0 + 2])
    assert enforce_retention(plog, T0) == 3
    assert plog.segment_base_offsets() == [3]
    assert (plog.log_start_offset, plog.log_end_offset, plog.size_bytes) == (3, 3, 0)
    plog.close()


# --- the active segment ---------------------------------------------------------------------


def test_active_segment_with_retained_data_is_kept(tmp_path):
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    fill(plog, [T0, T0 + 1, T0 + 100_000])
    assert enforce_retention(plog, T0 + 50_000) == 2
    assert plog.segment_base_offsets() == [2]
    assert plog.active_segment.base_offset == 2 and plog.active_segment.size == BATCH_SIZE
    assert offsets_in(plog.read(2, 1 << 20)) == [2]
    plog.close()


def test_expired_active_segment_is_rolled_then_deleted(tmp_path):
    """Kafka 3.x/4.0 behaviour (UnifiedLog.deleteSegments rolls when every segment is
    deletable): the log keeps one empty active segment at the log end."""
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    fill(plog, [T0, T0 + 1, T0 + 2])
    assert enforce_retention(plog, T0 + 60_000) == 3
    assert plog.segment_base_offsets() == [3]
    assert (plog.log_start_offset, plog.log_end_offset) == (3, 3)
    assert plog.read(3, 1 << 20) == b""
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(2, 1 << 20)
    # An empty active segment is never deleted, however late it is.
    assert enforce_retention(plog, T0 + 10**9) == 0
    assert files(tmp_path / "t-0", ".log") == ["00000000000000000003.log"]
    # Appends go on at the log end.
    res = plog.append(batch(T0 + 70_000), 0, T0 + 70_000)
    assert res.base_offset == 3 and res.log_start_offset == 3
    assert offsets_in(plog.read(3, 1 << 20)) == [3]
    plog.close()


def test_nothing_at_or_past_the_high_watermark_is_deleted(tmp_path):
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    fill(plog, [T0, T0, T0, T0])
    # offsets 2 and 3 not yet replicated
    assert enforce_retention(plog, T0 + 60_000, high_watermark=2) == 2
    assert plog.segment_base_offsets() == [2, 3]
    assert plog.log_start_offset == 2
    assert enforce_retention(plog, T0 + 60_000, high_watermark=4) == 2
    assert plog.segment_base_offsets() == [4]
    plog.close()


# --- log start offset: persistence, reads -----------------------------------------------


def test_log_start_offset_persisted_across_clean_reopen(five, tmp_path):
    assert enforce_retention(five, T0 + 12_500) == 3
    five.close()
    with open(tmp_path / "t-0" / LOG_START_OFFSET_FILE) as f:
        assert int(f.read()) == 3
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    assert (plog.log_start_offset, plog.log_end_offset) == (3, 5)
    assert plog.segment_base_offsets() == [3, 4]
    assert offsets_in(plog.read(3, 1 << 20)) == [3, 4]
    plog.close()


def test_log_start_offset_survives_a_crash(five, tmp_path):
    assert five.delete_records(4) == 4  # mid-log: segment 4 is the active one, kept
    # Simulate a process death: no flush, no clean marker.
    for seg in five.segments:
        os.close(seg.fd)
        seg._closed = True
    five._closed = True
    plog = open_log(tmp_path / "t-0", retention_ms=10_000)
    assert (plog.log_start_offset, plog.log_end_offset) == (4, 5)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(3, 1 << 20)
    plog.close()


def test_leftover_deleted_files_are_removed_on_open(five, tmp_path):
    five.close()
    d = tmp_path / "t-0"
    os.rename(d / "00000000000000000000.log", d / "00000000000000000000.log.deleted")
    os.rename(d / "00000000000000000000.index", d / "00000000000000000000.index.deleted")
    plog = open_log(d, retention_ms=10_000)
    assert [n for n in os.listdir(d) if n.endswith(".deleted")] == []
    assert plog.segment_base_offsets() == [1, 2, 3, 4]
    assert plog.log_start_offset == 1
    plog.close()


def test_reads_after_deletion(five):
    assert enforce_retention(five, T0 + 12_500) == 3
    with pytest.raises(OffsetOutOfRangeError):
        five.read(0, 1 << 20)
    with pytest.raises(OffsetOutOfRangeError):
        five.read(2, 1 << 20)
    data = five.read(3, 1 << 20)
    assert offsets_in(data) == [3, 4]
    assert [r.value[0] for r in decode_records(data)] == [3, 4]
    # A timestamp before everything left answers the first offset left.
    assert five.offset_for_timestamp(0) == (3, T0 + 3000)
    assert five.offset_for_timestamp(T0 + 4000) == (4, T0 + 4000)
    assert five.max_timestamp() == (T0 + 4000, 4)


def test_recovery_point_moves_with_the_log_start(five):
    assert five.recovery_point == 0
    enforce_retention(five, T0 + 12_500)
    assert five.recovery_point == 3


# --- DeleteRecords mechanics -----------------------------------------------------------------


def test_delete_records_moves_start_and_deletes_segments_wholly_below(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=2 * BATCH_SIZE)  # two batches a segment
    fill(plog, [T0 + i for i in range(6)])
    assert plog.segment_base_offsets() == [0, 2, 4]
    assert plog.delete_records(3) == 3
    # Segment 0 (offsets 0-1) is gone; segment 2 holds offset 3 and stays.
    assert plog.segment_base_offsets() == [2, 4]
    assert plog.log_start_offset == 3
    # A read at the log start offset returns the batch holding it (here exactly it).
    assert offsets_in(plog.read(3, 1 << 20)) == [3, 4, 5]
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(2, 1 << 20)
    # Never backwards; past the high watermark or negative is out of range.
    assert plog.delete_records(1) == 3
    with pytest.raises(OffsetOutOfRangeError):
        plog.delete_records(7)
    with pytest.raises(OffsetOutOfRangeError):
        plog.delete_records(-5)
    assert plog.delete_records(6) == 6  # up to the high watermark
    assert plog.segment_base_offsets() == [4]  # the active segment stays, data below start
    assert plog.read(6, 1 << 20) == b""
    plog.close()


def test_delete_records_inside_a_batch(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    plog.append(batch(T0, n=5), 0, T0)  # offsets 0-4 in one batch
    assert plog.delete_records(2) == 2
    # Reading from the start offset returns the whole batch; the client skips 0-1.
    assert offsets_in(plog.read(2, 1 << 20)) == [0]
    plog.close()


def test_segments_below_start_deleted_by_retention_whatever_the_policy(tmp_path):
    # Kafka's deleteLogStartOffsetBreachedSegments runs for compacted logs too.
    plog = open_log(tmp_path / "t-0", cleanup_policy=("compact",))
    fill(plog, [T0, T0, T0])
    assert plog.set_log_start_offset(2)  # segments left in place
    assert plog.segment_base_offsets() == [0, 1, 2]
    assert enforce_retention(plog, T0) == 2
    assert plog.segment_base_offsets() == [2]
    plog.close()


def test_closed_log_is_skipped(five):
    five.close()
    assert enforce_retention(five, T0 + 10**9) == 0


# --- through the broker: topic configs, LogMaintenance, ListOffsets ---------------------


def earliest(broker, topic: str, partition: int = 0) -> int:
    LT = ListOffsetsRequest.ListOffsetsTopic
    LP = LT.ListOffsetsPartition
    resp = call(broker, ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
        LT(name=topic, partitions=[LP(partition_index=partition, current_leader_epoch=-1,
                                      timestamp=-2)])]), 7)
    (p,) = resp.topics[0].partitions
    assert p.error_code == 0
    return p.offset


def test_list_offsets_earliest_follows_retention(make_broker):
    clock = ManualClock(START_MS)
    b = make_broker(clock=clock)
    create_topic(b, "ret", configs={"retention.ms": "60000", "segment.bytes": str(ONE_PER_SEGMENT)})
    for i in range(4):
        assert produce(b, "ret", 0, batch(START_MS + i * 1000, tag=i)).error_code == 0
    maint = LogMaintenance(b)
    assert maint.run_retention(clock.time_ms()) == 0
    assert earliest(b, "ret") == 0
    clock.advance(62_500)  # offsets 0-2 (ts +0s, +1s, +2s) are now older than 60 s
    assert maint.run_retention(clock.time_ms()) == 3
    assert earliest(b, "ret") == 3


def test_delete_segments_keeps_an_empty_active_segment(tmp_path):
    plog = open_log(tmp_path / "t-0")
    fill(plog, [T0, T0])
    plog.roll()  # active segment 2 is empty
    assert plog.segment_base_offsets() == [0, 1, 2]
    assert plog.delete_segments(list(plog.segments)) == 2
    assert plog.segment_base_offsets() == [2]
    assert plog.log_start_offset == 2
    assert plog.delete_segments(list(plog.segments)) == 0
    with pytest.raises(ValueError):
        plog.delete_segments([plog.segments[0], plog.segments[0]])
    plog.close()
