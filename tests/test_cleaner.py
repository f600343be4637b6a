"""Log compaction (kafkette.log.cleaner): real files, small segments, a fake clock."""
from __future__ import annotations

import dataclasses

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler_harness import START_MS, broker, call, create_topic, fetch_request, make_broker, produce  # noqa: F401
from kafkette.clock import ManualClock
from kafkette.errors import KafkaStorageError
from kafkette.log import LogConfig, PartitionLog
from kafkette.log import cleaner
from kafkette.log.cleaner import (
    CHECKPOINT_FILE,
    SWAP_MANIFEST_FILE,
    build_cleaned_segments,
    clean_log,
    plan_cleaning,
    read_checkpoint,
    swap_cleaned,
    write_checkpoint,
)
from kafkette.protocol import records as rec
from kafkette.protocol.records import build_batch, decode_records, iter_batches

TS = 1_700_000_000_000
COMPACT = ("compact",)


# --------------------------------------------------------------------------- helpers

def open_log(path, clock=None, **cfg) -> PartitionLog:
    cfg.setdefault("cleanup_policy", COMPACT)
    cfg.setdefault("min_cleanable_dirty_ratio", 0.0)
    cfg.setdefault("segment_bytes", 300)
    return PartitionLog(str(path), LogConfig(**cfg), clock=clock or ManualClock(TS))


def append(plog, recs, ts=TS, codec=0, now=None, **kw) -> int:
    """Append one batch of (key, value) records (timestamp ts + i); returns its base offset."""
    b = bytearray(build_batch([(k, v, [], ts + i) for i, (k, v) in enumerate(recs)],
                              timestamp_ms=ts, codec=codec, **kw))
    if any(k is None for k, _ in recs) and plog.config.compact:
        # A compacted log refuses keyless records on append (as Kafka's validator); they
        # get there when a topic becomes compacted later, which this stands for.
        config = plog.config
        plog.config = dataclasses.replace(config, cleanup_policy=("delete",))
        try:
            return plog.append(b, 0, ts if now is None else now).base_offset
        finally:
            plog.config = config
    return plog.append(b, 0, ts if now is None else now).base_offset


def put(plog, key, value, ts=TS, **kw) -> int:
    return append(plog, [(key, value)], ts, **kw)


def contents(plog) -> list[tuple[int, bytes | None, bytes | None]]:
    data = plog.read(plog.log_start_offset, 1 << 30)
    return [(r.offset, r.key, r.value) for r in decode_records(data)]


def batch_headers(plog) -> list[rec.BatchHeader]:
    return [h for _, h in iter_batches(plog.read(plog.log_start_offset, 1 << 30))]


def file_bytes(seg) -> bytes:
    with open(seg.log_path, "rb") as f:
        return f.read()


def latest_per_key(rows, end):
    """The model: records below `end` keep only the latest per (non-null) key; the rest
    stay as they are. rows: (offset, key, value), in offset order."""
    last = {}
    for off, k, _v in rows:
        if off < end and k is not None:
            last[k] = off
    return [r for r in rows if r[0] >= end or (r[1] is not None and last[r[1]] == r[0])]


def crash(plog: PartitionLog) -> None:
    """Simulate a process death: fds closed, nothing flushed, no clean marker."""
    for seg in plog.segments:
        if not seg._closed:
            os.close(seg.fd)
            seg._closed = True
    plog._closed = True


def leftovers(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith((".cleaned", ".swap")) or n == SWAP_MANIFEST_FILE)


def fill(plog, n=40, keys=3, ts=TS):
    rows = []
    for i in range(n):
        k, v = b"k%d" % (i % keys), b"v%d" % i
        rows.append((put(plog, k, v, ts), k, v))
    return rows


# --------------------------------------------------------------------------- basics

def test_keeps_latest_value_per_key_with_original_offsets(tmp_path):
    plog = open_log(tmp_path / "t-0")
    rows = fill(plog, 40, keys=3)
    assert len(plog.segments) > 3
    active = plog.active_segment
    active_before = file_bytes(active)
    end = active.base_offset
    leo, lso = plog.log_end_offset, plog.log_start_offset

    stats = clean_log(plog, TS)

    assert stats is not None
    assert stats["records_removed"] == sum(1 for r in rows if r[0] < end) - 3
    assert stats["records_kept"] == 3
    assert stats["bytes_read"] > stats["bytes_written"] > 0
    assert stats["end_offset"] == end
    assert contents(plog) == latest_per_key(rows, end)
    offsets = [r[0] for r in contents(plog)]
    assert offsets == sorted(offsets)
    assert plog.active_segment is active and file_bytes(active) == active_before
    assert (plog.log_end_offset, plog.log_start_offset) == (leo, lso)
    assert read_checkpoint(plog.dir) == end
    assert plog.size_bytes == sum(s.size for s in plog.segments)
    # Nothing dirty any more.
    assert clean_log(plog, TS) is None
    assert leftovers(plog.dir) == []


def test_batches_keep_base_offset_last_offset_delta_and_producer_fields(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    append(plog, [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", b"4"), (b"d", b"5")],
           producer_id=-1, partition_leader_epoch=0)
    put(plog, b"c", b"6")
    put(plog, b"d", b"7")
    plog.roll(TS)
    put(plog, b"x", b"active")
    assert clean_log(plog, TS) is not None
    h0 = batch_headers(plog)[0]
    assert (h0.base_offset, h0.last_offset_delta, h0.records_count) == (0, 4, 2)
    assert contents(plog) == [(1, b"b", b"2"), (2, b"a", b"3"), (5, b"c", b"6"), (6, b"d", b"7"),
                              (7, b"x", b"active")]


def test_nothing_to_do(tmp_path):
    plog = open_log(tmp_path / "d-0", cleanup_policy=("delete",))
    fill(plog, 20)
    assert clean_log(plog, TS) is None  # not compacted
    plog2 = open_log(tmp_path / "c-0", segment_bytes=1 << 20)
    fill(plog2, 20)
    assert len(plog2.segments) == 1
    assert clean_log(plog2, TS) is None  # only the active segment
    assert not os.path.exists(os.path.join(plog2.dir, CHECKPOINT_FILE))


def test_compact_and_delete_policy_is_cleaned(tmp_path):
    plog = open_log(tmp_path / "t-0", cleanup_policy=("compact", "delete"))
    rows = fill(plog, 30)
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS) is not None
    assert contents(plog) == latest_per_key(rows, end)


def test_never_past_the_high_watermark(tmp_path):
    plog = open_log(tmp_path / "t-0")
    rows = fill(plog, 30)
    assert clean_log(plog, TS, high_watermark=0) is None
    bases = plog.segment_base_offsets()
    # a high watermark inside the third segment
    assert clean_log(plog, TS, high_watermark=bases[2] + 1)["end_offset"] == bases[2]
    assert contents_all(plog) == latest_per_key(rows, bases[2])


def contents_all(plog):
    data = plog.read(plog.log_start_offset, 1 << 30, max_offset=plog.log_end_offset)
    return [(r.offset, r.key, r.value) for r in decode_records(data)]


# --------------------------------------------------------------------------- when to clean

def test_min_compaction_lag(tmp_path):
    clock = ManualClock(TS)
    plog = open_log(tmp_path / "t-0", clock=clock, min_compaction_lag_ms=60_000)
    old = fill(plog, 12, ts=TS)  # three segments of old data
    boundary = plog.log_end_offset
    plog.roll(TS)
    young = [(put(plog, b"k0", b"young%d" % i, ts=TS + 50_000), b"k0", b"young%d" % i) for i in range(12)]
    rows = old + young
    # At TS + 50_000 nothing is 60 s old.
    assert clean_log(plog, TS + 50_000) is None
    # At TS + 60_000 the old segments are, the young ones are not: they stay untouched.
    young_segments = [s for s in plog.segments if s.base_offset >= boundary]
    young_bytes = [file_bytes(s) for s in young_segments]
    stats = clean_log(plog, TS + 60_000)
    assert stats["end_offset"] == boundary
    assert contents(plog) == latest_per_key(rows, boundary)
    assert [file_bytes(s) for s in plog.segments if s.base_offset >= boundary] == young_bytes
    # Later the young ones are old enough too.
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS + 110_001)["end_offset"] == end
    assert contents(plog) == latest_per_key(rows, end)


def test_dirty_ratio(tmp_path):
    plog = open_log(tmp_path / "t-0", min_cleanable_dirty_ratio=0.5, segment_bytes=200)
    # Many distinct keys: the clean part stays big after cleaning.
    for i in range(20):
        put(plog, b"key-%02d" % i, b"v")
    plog.roll(TS)
    assert clean_log(plog, TS) is not None  # all dirty: ratio 1.0
    clean_bytes = sum(s.size for s in plog.segments[:-1])
    # A little dirty data: ratio < 0.5.
    put(plog, b"key-00", b"w")
    plog.roll(TS)
    task = plan_cleaning(plog, TS)
    assert task is None
    # Kafka's test is strict: dirty / total must be ABOVE the ratio.
    dirty = plog.segments[-2].size
    ratio = dirty / (clean_bytes + dirty)
    assert ratio < 0.5
    plog.config.min_cleanable_dirty_ratio = ratio
    assert plan_cleaning(plog, TS) is None
    plog.config.min_cleanable_dirty_ratio = ratio - 1e-9
    task = plan_cleaning(plog, TS)
    assert task is not None and task.dirty_ratio == pytest.approx(ratio)
    plog.config.min_cleanable_dirty_ratio = 0.5
    # Enough dirty data: cleaned.
    for i in range(40):
        put(plog, b"key-%02d" % (i % 20), b"x")
    plog.roll(TS)
    stats = clean_log(plog, TS)
    assert stats is not None and stats["dirty_ratio"] > 0.5
    assert sorted(v for _o, _k, v in contents(plog)) == [b"x"] * 20


def test_max_compaction_lag_forces_cleaning(tmp_path):
    plog = open_log(tmp_path / "t-0", min_cleanable_dirty_ratio=0.99, segment_bytes=200,
                    max_compaction_lag_ms=3_600_000)
    for i in range(20):
        put(plog, b"key-%02d" % i, b"v", ts=TS)
    plog.roll(TS)
    assert clean_log(plog, TS) is not None
    put(plog, b"key-00", b"w", ts=TS + 1000)
    plog.roll(TS)
    assert clean_log(plog, TS + 1000 + 3_600_000) is None  # not older than the lag yet
    stats = clean_log(plog, TS + 1000 + 3_600_001)
    assert stats is not None and stats["forced"] and stats["dirty_ratio"] < 0.99
    assert (0, b"key-00", b"v") not in contents(plog)


# --------------------------------------------------------------------------- tombstones

def test_tombstones_kept_until_delete_retention_after_first_cleaning(tmp_path):
    plog = open_log(tmp_path / "t-0", delete_retention_ms=10_000, segment_bytes=150)
    put(plog, b"a", b"1", ts=TS - 5000)
    put(plog, b"b", b"2", ts=TS - 5000)
    tomb = put(plog, b"a", None, ts=TS - 4000)
    plog.roll(TS)
    put(plog, b"z", b"0")
    plog.roll(TS)

    # First cleaning at TS: the old value of a goes, its tombstone stays, stamped with
    # the delete horizon TS + 10 s (KIP-534).
    assert clean_log(plog, TS) is not None
    assert contents(plog) == [(1, b"b", b"2"), (tomb, b"a", None), (tomb + 1, b"z", b"0")]
    (h,) = [h for h in batch_headers(plog) if h.base_offset == tomb]
    assert h.has_delete_horizon and h.base_timestamp == TS + 10_000
    assert h.max_timestamp == TS - 4000
    recs = decode_records(plog.read(tomb, 1 << 20))
    assert recs[0].timestamp == TS - 4000  # record timestamps unchanged

    def dirty_again(i):
        put(plog, b"z", b"%d" % i)
        plog.roll(TS)

    dirty_again(1)
    assert clean_log(plog, TS + 9_999) is not None
    assert (tomb, b"a", None) in contents(plog)  # within the horizon
    dirty_again(2)
    assert clean_log(plog, TS + 10_000) is not None
    assert [k for _o, k, _v in contents(plog)] == [b"b", b"z"]  # gone at the horizon


def test_tombstone_horizon_not_reset_by_later_cleanings(tmp_path):
    plog = open_log(tmp_path / "t-0", delete_retention_ms=10_000, segment_bytes=150)
    tomb = put(plog, b"a", None)
    plog.roll(TS)
    assert clean_log(plog, TS) is not None
    for t in (TS + 4000, TS + 8000):
        put(plog, b"z", b"%d" % t)
        plog.roll(TS)
        assert clean_log(plog, t) is not None
        (h,) = [h for h in batch_headers(plog) if h.base_offset == tomb]
        assert h.base_timestamp == TS + 10_000


def test_null_keys_are_dropped(tmp_path):
    # Kafka rejects them at produce time for compacted topics and its cleaner drops them.
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    append(plog, [(None, b"x"), (b"k", b"1"), (None, b"y")])
    plog.roll(TS)
    put(plog, b"k", b"active")
    stats = clean_log(plog, TS)
    assert stats["records_removed"] == 2
    assert contents(plog) == [(1, b"k", b"1"), (3, b"k", b"active")]


# --------------------------------------------------------------------------- batch kinds

@pytest.mark.parametrize("codec", [rec.CODEC_GZIP, rec.CODEC_SNAPPY, rec.CODEC_LZ4, rec.CODEC_ZSTD])
def test_compressed_batches_round_trip(tmp_path, codec):
    plog = open_log(tmp_path / "t-0", segment_bytes=600)
    rows = []
    for i in range(12):
        recs = [(b"k%d" % ((i * 3 + j) % 5), b"value-%d-%d" % (i, j) * 3) for j in range(3)]
        base = append(plog, recs, codec=codec)
        rows += [(base + j, k, v) for j, (k, v) in enumerate(recs)]
    keep_whole = append(plog, [(b"only-%d" % j, b"x" * 50) for j in range(3)], codec=codec)
    original = plog.read(keep_whole, 1 << 20)[:batch_headers(plog)[-1].size]
    rows += [(keep_whole + j, b"only-%d" % j, b"x" * 50) for j in range(3)]
    plog.roll(TS)
    put(plog, b"k0", b"active")
    rows.append((plog.log_end_offset - 1, b"k0", b"active"))
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS) is not None
    assert contents(plog) == latest_per_key(rows, end)
    headers = batch_headers(plog)
    assert {h.codec for h in headers[:-1]} == {codec}
    # A batch whose records all stay is copied byte for byte (no recompression).
    assert original in plog.read(keep_whole, 1 << 20)


def test_unchanged_batches_are_copied_byte_for_byte(tmp_path):
    import gzip
    import struct

    from crc32c import crc32c

    # A gzip batch compressed differently from how the cleaner would recompress it
    # (level 1, a header mtime): only a byte-for-byte copy keeps it identical.
    plain = bytearray(build_batch([(b"u%d" % i, b"same" * 20, []) for i in range(5)], timestamp_ms=TS))
    payload = gzip.compress(bytes(plain[rec.BATCH_HEADER_SIZE:]), compresslevel=1, mtime=12345)
    batch = bytearray(plain[:rec.BATCH_HEADER_SIZE]) + payload
    struct.pack_into(">i", batch, rec.BATCH_LENGTH_OFFSET, len(batch) - rec.LOG_OVERHEAD)
    struct.pack_into(">h", batch, rec.ATTRIBUTES_OFFSET, rec.CODEC_GZIP)
    struct.pack_into(">I", batch, rec.CRC_OFFSET, crc32c(bytes(batch[rec.ATTRIBUTES_OFFSET:])))
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    put(plog, b"gone", b"1")
    plog.append(bytearray(batch), 0, TS)
    put(plog, b"gone", b"2")
    plog.roll(TS)
    put(plog, b"x", b"y")
    stored = plog.read(1, 1 << 20)[:len(batch)]
    assert clean_log(plog, TS)["records_removed"] == 1
    assert plog.read(1, 1 << 20)[:len(batch)] == stored


def test_log_append_time_batches(tmp_path):
    plog = open_log(tmp_path / "t-0", message_timestamp_type="LogAppendTime", segment_bytes=10_000)
    b = bytearray(build_batch([(b"a", b"1", []), (b"b", b"2", [])], timestamp_ms=5))
    plog.append(b, 0, TS + 7)
    put(plog, b"a", b"3", now=TS + 8)
    plog.roll(TS)
    put(plog, b"x", b"y", now=TS + 9)
    assert clean_log(plog, TS + 9) is not None
    h = batch_headers(plog)[0]
    assert h.is_log_append_time and h.max_timestamp == TS + 7 and h.records_count == 1
    r = decode_records(plog.read(0, 1 << 20))[0]
    assert (r.offset, r.key, r.timestamp) == (1, b"b", TS + 7)


def test_committed_transactional_batches_are_compacted_and_their_marker_kept(tmp_path):
    # Kafka compacts committed transactional records like any other; the COMMIT marker
    # stays while its transaction still has a batch (here emptied, kept for producer 5).
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    txn = append(plog, [(b"a", b"txn")], producer_id=5, producer_epoch=0, base_sequence=0,
                 transactional=True)
    ctrl = plog.append_marker(5, 0, 0, True, 0, TS).base_offset
    put(plog, b"a", b"plain")
    put(plog, b"a", b"later")
    plog.roll(TS)
    put(plog, b"x", b"y")
    assert clean_log(plog, TS) is not None
    after = batch_headers(plog)
    assert after[0].base_offset == txn and after[0].records_count == 0 and after[0].is_transactional
    assert after[1].base_offset == ctrl and after[1].is_control and not after[1].has_delete_horizon
    assert [r[0] for r in contents(plog)] == [ctrl, 3, 4]


def test_emptied_batch_kept_for_the_last_batch_of_a_producer(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    # Producer 7: one batch, then its key is overwritten by a plain producer.
    p7 = append(plog, [(b"a", b"1"), (b"b", b"1")], producer_id=7, producer_epoch=0, base_sequence=0)
    # Producer 8: two batches, the first one emptied by the second.
    p8a = append(plog, [(b"c", b"1")], producer_id=8, producer_epoch=0, base_sequence=0)
    p8b = append(plog, [(b"c", b"2")], producer_id=8, producer_epoch=0, base_sequence=1)
    append(plog, [(b"a", b"2"), (b"b", b"2")])
    plog.roll(TS)
    put(plog, b"x", b"y")
    assert clean_log(plog, TS) is not None
    hs = {h.base_offset: h for h in batch_headers(plog)}
    # Kept, empty: producer 7's last sequence stays in the log.
    assert p7 in hs
    h = hs[p7]
    assert (h.records_count, h.last_offset_delta, h.producer_id, h.base_sequence, h.codec) == (0, 1, 7, 0, 0)
    assert p8a not in hs and p8b in hs
    assert [r[0] for r in contents(plog)] == [p8b, 4, 5, 6]
    # The producer state still knows producer 7: its next sequence is accepted after a
    # restart (which rebuilds the state from snapshots and batch headers).
    plog.close()
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    append(plog, [(b"a", b"3")], producer_id=7, producer_epoch=0, base_sequence=2)
    # ... and the empty batch disappears once producer 7 has a later batch.
    plog.roll(TS)
    put(plog, b"x", b"z")
    assert clean_log(plog, TS) is not None
    assert p7 not in {h.base_offset for h in batch_headers(plog)}


# --------------------------------------------------------------------------- layout

def test_checkpoint_survives_restart_and_resets_below_log_start(tmp_path):
    plog = open_log(tmp_path / "t-0")
    rows = fill(plog, 30)
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS)["end_offset"] == end
    plog.close()
    plog = open_log(tmp_path / "t-0")
    assert read_checkpoint(plog.dir) == end
    assert clean_log(plog, TS) is None
    assert contents(plog) == latest_per_key(rows, end)
    # A checkpoint outside [log start, log end] is reset to the log start (Kafka).
    write_checkpoint(plog.dir, plog.log_end_offset + 100)
    assert plan_cleaning(plog, TS).first_dirty_offset == plog.log_start_offset


def test_small_cleaned_segments_are_merged(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=250)
    rows = fill(plog, 60, keys=2)
    n_before = len(plog.segments)
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS) is not None
    put(plog, b"k0", b"more")
    rows.append((plog.log_end_offset - 1, b"k0", b"more"))
    plog.roll(TS)
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS) is not None
    # The cleaned segments are tiny now; the second pass merged them (groupSegmentsBySize).
    assert len(plog.segments) < n_before
    assert plog.segments[0].base_offset == 0  # the log keeps its first base offset
    assert contents(plog) == latest_per_key(rows, end)
    plog.close()
    plog = open_log(tmp_path / "t-0", segment_bytes=250)
    assert contents(plog) == latest_per_key(rows, end)


def test_reads_and_timestamps_after_cleaning(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=200)
    rows = []
    for i in range(30):
        k, v = b"k%d" % (i % 4), b"v%d" % i
        rows.append((put(plog, k, v, ts=TS + i * 1000), k, v))
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS + 30_000) is not None
    expected = latest_per_key(rows, end)
    kept = [r[0] for r in expected]

    def check(plog):
        # A fetch at any offset returns the first retained record at or after it.
        for off in range(plog.log_end_offset):
            got = [r.offset for r in decode_records(plog.read(off, 1 << 20)) if r.offset >= off]
            assert got and got[0] == min(o for o in kept if o >= off), off
        assert plog.read(plog.log_end_offset, 1 << 20) == b""
        # ListOffsets by timestamp: the first retained record with a timestamp >= target.
        for target in (TS, TS + 10_500, TS + 29_000):
            want = min((o for o in kept if TS + o * 1000 >= target), default=None)
            got = plog.offset_for_timestamp(target)
            assert (got.offset if got else None) == want, target
        assert plog.max_timestamp() == (TS + 29_000, 29)
        assert plog.log_start_offset == 0 and plog.log_end_offset == 30

    check(plog)
    plog.close()
    plog = open_log(tmp_path / "t-0", segment_bytes=200)
    check(plog)
    crash(plog)
    plog = open_log(tmp_path / "t-0", segment_bytes=200)  # unclean: segments re-validated
    check(plog)


# --------------------------------------------------------------------------- crash safety

def test_crash_before_commit_rolls_back(tmp_path):
    plog = open_log(tmp_path / "t-0")
    rows = fill(plog, 30)
    task = plan_cleaning(plog, TS)
    cleaned = build_cleaned_segments(task)
    assert leftovers(plog.dir) and all(n.endswith(".cleaned") for n in leftovers(plog.dir))
    crash(plog)
    plog = open_log(tmp_path / "t-0")
    assert leftovers(plog.dir) == []
    assert contents(plog) == rows
    assert cleaned.groups  # (it had written something)
    # ... and the next pass cleans normally.
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS) is not None
    assert contents(plog) == latest_per_key(rows, end)


class Crash(BaseException):
    pass


@pytest.mark.parametrize("progress", ["committed", "some-old-segments-deleted", "some-groups-done"])
def test_crash_after_commit_finishes_the_swap(tmp_path, monkeypatch, progress):
    plog = open_log(tmp_path / "t-0", segment_bytes=250)
    rows = fill(plog, 30)
    end = plog.active_segment.base_offset
    assert clean_log(plog, TS) is not None  # first pass: segments now small, mergeable
    rows = latest_per_key(rows, end)
    for i in range(30):
        rows.append((put(plog, b"k%d" % (i % 3), b"w%d" % i), b"k%d" % (i % 3), b"w%d" % i))
    end = plog.active_segment.base_offset
    real_complete = cleaner.complete_swaps

    def crashing_complete(dir_path):
        names = sorted(os.listdir(dir_path))
        swaps = [n for n in names if n.endswith(".log.swap")]
        assert swaps and SWAP_MANIFEST_FILE in names
        manifest = cleaner._read_manifest(dir_path)
        if progress == "some-old-segments-deleted":
            base = int(swaps[0][:20])
            later = [int(n[:20]) for n in names if n.endswith(".log") and base < int(n[:20]) < manifest[base]]
            assert later
            os.unlink(os.path.join(dir_path, "%020d.log" % later[0]))
        elif progress == "some-groups-done":
            # Finish the first group by hand, as complete_swaps would, then die.
            (base, stop), = list(manifest.items())[:1]
            for n in names:
                if n[:20].isdigit() and n.endswith((".log", ".index", ".timeindex")) and base <= int(n[:20]) < stop:
                    if not (n.endswith(".log") and int(n[:20]) == base):
                        os.unlink(os.path.join(dir_path, n))
            os.replace(os.path.join(dir_path, "%020d.log.swap" % base), os.path.join(dir_path, "%020d.log" % base))
        raise Crash()

    monkeypatch.setattr(cleaner, "complete_swaps", crashing_complete)
    with pytest.raises(Crash):
        clean_log(plog, TS)
    crash(plog)
    monkeypatch.setattr(cleaner, "complete_swaps", real_complete)
    plog = open_log(tmp_path / "t-0", segment_bytes=250)
    assert leftovers(plog.dir) == []
    assert contents(plog) == latest_per_key(rows, end)
    assert plog.log_end_offset == rows[-1][0] + 1
    # The checkpoint was not moved (the pass never finished): the next pass redoes it.
    assert clean_log(plog, TS) is not None
    assert contents(plog) == latest_per_key(rows, end)


def test_swap_without_manifest_uses_the_swap_content(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    rows = fill(plog, 10)
    plog.roll(TS)
    put(plog, b"x", b"y")
    rows.append((10, b"x", b"y"))
    task = plan_cleaning(plog, TS)
    cleaned = build_cleaned_segments(task)
    (group,) = cleaned.groups
    crash(plog)
    os.replace(group.cleaned_path, os.path.join(str(tmp_path / "t-0"), "%020d.log.swap" % 0))
    plog = open_log(tmp_path / "t-0", segment_bytes=10_000)
    assert contents(plog) == latest_per_key(rows, 10)


def test_swap_refused_when_the_log_changed_meanwhile(tmp_path):
    plog = open_log(tmp_path / "t-0", cleanup_policy=("compact", "delete"))
    rows = fill(plog, 30)
    task = plan_cleaning(plog, TS)
    cleaned = build_cleaned_segments(task)  # (could be in another thread)
    plog.delete_records(plog.segments[1].base_offset)  # retention/DeleteRecords meanwhile
    assert swap_cleaned(plog, cleaned) is False
    assert leftovers(plog.dir) == []
    assert read_checkpoint(plog.dir) is None
    assert contents(plog) == [r for r in rows if r[0] >= plog.log_start_offset]


def test_replace_segments_rejects_runs_that_are_not_in_the_log(tmp_path):
    plog = open_log(tmp_path / "t-0")
    fill(plog, 30)
    segs = plog.segments
    assert plog.replace_segments([([segs[-1]], "nope")]) is False  # the active segment
    assert plog.replace_segments([([segs[0], segs[2]], "nope")]) is False  # not consecutive
    assert plog.replace_segments([([], "nope")]) is False


def test_io_error_during_swap_is_a_storage_error(tmp_path, monkeypatch):
    plog = open_log(tmp_path / "t-0")
    rows = fill(plog, 30)

    def failing(*a, **kw):
        raise OSError("disk on fire")

    monkeypatch.setattr(cleaner, "_write_manifest", failing)
    with pytest.raises(KafkaStorageError):
        clean_log(plog, TS)
    monkeypatch.undo()
    assert leftovers(plog.dir) == []  # the .cleaned files were removed
    assert contents(plog) == rows  # nothing changed before the commit point
    plog.close()
    plog = open_log(tmp_path / "t-0")
    assert leftovers(plog.dir) == [] and contents(plog) == rows


# --------------------------------------------------------------------------- the broker

def test_fetch_and_list_offsets_through_the_broker_after_cleaning(broker):  # noqa: F811
    from kafkette.broker.log_maintenance import LogMaintenance
    from kafkette.protocol.messages import ListOffsetsRequest

    create_topic(broker, "cmp", configs={"cleanup.policy": "compact", "segment.bytes": "300",
                                         "min.cleanable.dirty.ratio": "0.01"})
    rows = []
    for i in range(40):
        k, v = b"k%d" % (i % 4), b"v%d" % i
        p = produce(broker, "cmp", 0, build_batch([(k, v, [])], timestamp_ms=START_MS + i))
        assert p.error_code == 0
        rows.append((p.base_offset, k, v))
    plog = broker.replica_manager.partitions[("cmp", 0)].log
    end = plog.active_segment.base_offset
    assert LogMaintenance(broker).run_cleaner(START_MS + 100) == 1

    resp = call(broker, fetch_request("cmp", {0: 0}), 12)
    p = resp.responses[0].partitions[0]
    assert p.error_code == 0 and p.high_watermark == 40
    got = [(r.offset, r.key, r.value) for r in decode_records(p.records)]
    assert got == latest_per_key(rows, end)
    # From an offset whose record was removed: the next retained batch.
    resp = call(broker, fetch_request("cmp", {0: 1}), 12)
    first = decode_records(resp.responses[0].partitions[0].records)[0].offset
    assert first == min(o for o, _k, _v in got if o >= 1)

    LT, LP = ListOffsetsRequest.ListOffsetsTopic, ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition
    for ts, want in ((-2, 0), (-1, 40), (START_MS + 1, min(o for o, _k, _v in got if o >= 1))):
        req = ListOffsetsRequest(replica_id=-1, isolation_level=0, timeout_ms=1000, topics=[
            LT(name="cmp", partitions=[LP(partition_index=0, current_leader_epoch=-1, timestamp=ts)])])
        lp = call(broker, req, 7).topics[0].partitions[0]
        assert (lp.error_code, lp.offset) == (0, want), ts


async def test_maintenance_cleans_in_a_worker_thread(broker):  # noqa: F811
    """The broker's cleaner pass builds the cleaned segments off the event loop and
    swaps them in on it; the result is the same as the synchronous pass."""
    from kafkette.broker.log_maintenance import LogMaintenance

    create_topic(broker, "cmpa", configs={"cleanup.policy": "compact", "segment.bytes": "300",
                                          "min.cleanable.dirty.ratio": "0.01"})
    rows = []
    for i in range(40):
        k, v = b"k%d" % (i % 4), b"v%d" % i
        p = produce(broker, "cmpa", 0, build_batch([(k, v, [])], timestamp_ms=START_MS + i))
        rows.append((p.base_offset, k, v))
    plog = broker.replica_manager.partitions[("cmpa", 0)].log
    end = plog.active_segment.base_offset
    maintenance = LogMaintenance(broker)
    assert await maintenance.run_cleaner_async(START_MS + 100) == 1
    assert await maintenance.run_cleaner_async(START_MS + 100) == 0  # nothing dirty left
    got = [(r.offset, r.key, r.value) for r in decode_records(plog.read(0, 1 << 20))]
    assert got == latest_per_key(rows, end)


# --------------------------------------------------------------------------- property

KEYS = [b"a", b"b", b"c", b"d", None]

record_st = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=0, max_size=6)))
op_st = st.one_of(
    st.tuples(st.just("append"), st.lists(record_st, min_size=1, max_size=4),
              st.sampled_from([0, 0, rec.CODEC_ZSTD])),
    st.tuples(st.just("roll")),
    st.tuples(st.just("clean"), st.integers(0, 1500)),
    st.tuples(st.just("reopen"), st.booleans()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=1, max_size=30))
def test_property_cleaned_log_matches_the_model(ops):
    delete_retention = 1000
    cfg = dict(segment_bytes=260, delete_retention_ms=delete_retention)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p-0")
        clock = ManualClock(TS)
        plog = open_log(path, clock=clock, **cfg)
        # The model: offset -> [key, value, delete horizon or None], and the checkpoint.
        model: dict[int, list] = {}
        checkpoint = 0
        leo = 0
        try:
            for op in ops:
                if op[0] == "append":
                    base = append(plog, op[1], ts=clock.now_ms, codec=op[2], now=clock.now_ms)
                    for j, (k, v) in enumerate(op[1]):
                        model[base + j] = [k, v, None]
                    leo = base + len(op[1])
                elif op[0] == "roll":
                    plog.roll(clock.now_ms)
                elif op[0] == "reopen":
                    if op[1]:
                        plog.close()
                    else:
                        crash(plog)
                    plog = open_log(path, clock=clock, **cfg)
                else:
                    clock.advance(op[1])
                    now = clock.now_ms
                    active = plog.active_segment
                    active_bytes, active_base = file_bytes(active), active.base_offset
                    # Cleaned exactly when a closed segment after the checkpoint has data
                    # (min.cleanable.dirty.ratio 0: any dirty byte is enough).
                    dirty = any(s.size and s.base_offset >= checkpoint for s in plog.segments[:-1])
                    stats = clean_log(plog, now)
                    end = active_base
                    assert (stats is not None) == dirty
                    if stats is not None:
                        assert stats["end_offset"] == end
                        latest = {}
                        for o in sorted(model):
                            if o < end and model[o][0] is not None:
                                latest[model[o][0]] = o
                        for o in sorted(model):
                            if o >= end:
                                continue
                            k, v, horizon = model[o]
                            if k is None or latest[k] != o:
                                del model[o]
                            elif v is None:
                                if horizon is not None and now >= horizon:
                                    del model[o]
                                elif horizon is None:
                                    model[o][2] = now + delete_retention
                        checkpoint = end
                    assert plog.active_segment.base_offset == active_base
                    assert file_bytes(plog.active_segment) == active_bytes
                got = [(r.offset, r.key, r.value) for r in decode_records(
                    plog.read(plog.log_start_offset, 1 << 30))]
                assert got == [(o, model[o][0], model[o][1]) for o in sorted(model)]
                assert plog.log_end_offset == leo
                assert leftovers(path) == []
        finally:
            plog.close()
