"""Log store: segments, indexes, partition logs and the manager, on real files."""
from __future__ import annotations

import os
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkette.clock import ManualClock
from kafkette.errors import (
    CorruptRecordError,
    ErrorCode,
    InvalidConfigError,
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    KafkaStorageError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
)
from kafkette.log import LogConfig, LogManager, PartitionLog
from kafkette.log.partition_log import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_FILE,
    OffsetsOutOfOrderError,
    UnexpectedAppendOffsetError,
)
from kafkette.protocol.records import build_batch, decode_records, iter_batches, parse_header, stamp_batch

TS = 1_700_000_000_000
DAY_MS = 24 * 3600 * 1000


def batch(n: int = 1, value_size: int = 10, ts: int = TS, tag: int = 0, **kw) -> bytearray:
    return bytearray(build_batch(
        [(b"key-%d-%d" % (tag, i), bytes([(tag + i) % 256]) * value_size, []) for i in range(n)],
        timestamp_ms=ts, **kw))


def open_log(path, clock=None, **cfg) -> PartitionLog:
    return PartitionLog(str(path), LogConfig(**cfg), clock=clock or ManualClock(TS))


def headers(data) -> list:
    return [h for _, h in iter_batches(data)]


def crash(plog: PartitionLog) -> None:
    """Simulate a process death: fds closed, nothing flushed, no clean marker."""
    for seg in plog.segments:
        os.close(seg.fd)
        seg._closed = True
    plog._closed = True


def append_together(plog: PartitionLog, *bufs, epoch: int = 0) -> list[bytes]:
    """Append several batches as ONE request; return each batch as stamped in the log."""
    buf = bytearray(b"".join(bufs))
    plog.append(buf, epoch, TS)
    return [bytes(buf[pos:pos + h.size]) for pos, h in iter_batches(buf)]


def log_files(path, suffix=".log") -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(suffix))


# --- append -------------------------------------------------------------------------


def test_append_multiple_batches_in_one_buffer_gets_contiguous_offsets(tmp_path):
    plog = open_log(tmp_path / "t-0")
    buf = batch(1, tag=1) + batch(3, tag=2) + batch(2, tag=3)
    res = plog.append(buf, partition_leader_epoch=4, now_ms=TS)
    assert (res.base_offset, res.last_offset, res.log_append_time_ms, res.log_start_offset) == (0, 5, -1, 0)
    assert plog.log_end_offset == 6
    hs = headers(buf)  # stamped in place, CRCs still valid
    assert [h.base_offset for h in hs] == [0, 1, 4]
    assert {h.partition_leader_epoch for h in hs} == {4}
    res2 = plog.append(batch(2, tag=4), 4, TS)
    assert (res2.base_offset, res2.last_offset) == (6, 7)
    data = plog.read(0, 1 << 20)
    assert [h.base_offset for h in headers(data)] == [0, 1, 4, 6]
    assert [r.offset for r in decode_records(data)] == list(range(8))
    assert plog.size_bytes == len(data)


def test_client_leader_epoch_is_overwritten_not_rejected(tmp_path):
    plog = open_log(tmp_path / "t-0")
    plog.append(batch(partition_leader_epoch=99), 7, TS)
    assert headers(plog.read(0, 1000))[0].partition_leader_epoch == 7


def test_append_accepts_bytes_and_memoryview(tmp_path):
    plog = open_log(tmp_path / "t-0")
    plog.append(bytes(batch(tag=1)), 0, TS)
    plog.append(memoryview(batch(tag=2)), 0, TS)
    assert [h.base_offset for h in headers(plog.read(0, 10000))] == [0, 1]


def test_corrupt_batch_rejects_whole_request(tmp_path):
    plog = open_log(tmp_path / "t-0")
    good, bad = batch(tag=1), batch(tag=2)
    bad[-1] ^= 0x55
    with pytest.raises(CorruptRecordError):
        plog.append(good + bad, 0, TS)
    with pytest.raises(CorruptRecordError):
        plog.append(good + good[:-5], 0, TS)
    assert plog.log_end_offset == 0 and plog.size_bytes == 0
    assert os.path.getsize(tmp_path / "t-0" / "00000000000000000000.log") == 0


def test_message_too_large(tmp_path):
    plog = open_log(tmp_path / "t-0", max_message_bytes=200)
    plog.append(batch(value_size=50), 0, TS)
    with pytest.raises(MessageTooLargeError) as ei:
        plog.append(batch(tag=1) + batch(value_size=300), 0, TS)
    assert ei.value.code == ErrorCode.MESSAGE_TOO_LARGE
    assert plog.log_end_offset == 1


def test_request_larger_than_segment_is_record_list_too_large(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=500)
    with pytest.raises(KafkaError) as ei:
        plog.append(batch(value_size=200) + batch(value_size=200) + batch(value_size=200), 0, TS)
    assert ei.value.code == ErrorCode.RECORD_LIST_TOO_LARGE


def test_inconsistent_record_count_is_invalid_record(tmp_path):
    from crc32c import crc32c
    plog = open_log(tmp_path / "t-0")
    b = batch(3)
    struct.pack_into(">i", b, 57, 2)  # records_count 2 but last offset delta 2
    struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    with pytest.raises(InvalidRecordError):
        plog.append(b, 0, TS)


def test_empty_append_writes_nothing(tmp_path):
    plog = open_log(tmp_path / "t-0")
    res = plog.append(bytearray(), 0, TS)
    assert res.base_offset == -1 and plog.log_end_offset == 0


def test_log_append_time(tmp_path):
    plog = open_log(tmp_path / "t-0", message_timestamp_type="LogAppendTime")
    res = plog.append(batch(2, ts=123), 0, TS + 5)
    assert res.log_append_time_ms == TS + 5
    data = plog.read(0, 10000)
    (h,) = headers(data)  # CRC recomputed
    assert h.is_log_append_time and h.max_timestamp == TS + 5
    assert [r.timestamp for r in decode_records(data)] == [TS + 5, TS + 5]


# --- read ---------------------------------------------------------------------------


def test_read_from_start_middle_and_end(tmp_path):
    plog = open_log(tmp_path / "t-0")
    (b0,) = append_together(plog, batch(3, tag=0))  # offsets 0-2
    b1, b2 = append_together(plog, batch(4, tag=1), batch(2, tag=2))  # 3-6, 7-8
    everything = b0 + b1 + b2
    assert plog.read(0, 1 << 20) == everything
    # inside the second batch: the whole batch comes back, the client skips records
    for off in (3, 4, 6):
        assert plog.read(off, 1 << 20) == b1 + b2
    assert plog.read(8, 1 << 20) == b2
    assert plog.read(9, 1 << 20) == b""  # log end offset
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(10, 100)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(-1, 100)


def test_max_bytes_smaller_than_first_batch_still_returns_one_batch(tmp_path):
    """KIP-74: at least one whole batch, whatever max_bytes says."""
    plog = open_log(tmp_path / "t-0")
    b0, b1 = append_together(plog, batch(5, value_size=100, tag=0), batch(1, tag=1))
    assert plog.read(0, 10) == b0
    assert plog.read(0, 0) == b0
    assert plog.read(0, len(b0) + len(b1) - 1) == b0
    assert plog.read(0, len(b0) + len(b1)) == b0 + b1
    assert plog.read(2, 1) == b0
    assert plog.read(5, 1) == b1
    # later partitions of a Fetch: strictly within max_bytes
    assert plog.read(0, 10, min_one_batch=False) == b""
    assert plog.read(0, len(b0) + len(b1) - 1, min_one_batch=False) == b0


def test_read_stops_at_high_watermark(tmp_path):
    plog = open_log(tmp_path / "t-0")
    b0, b1 = append_together(plog, batch(2, tag=0), batch(2, tag=1))
    assert plog.read(0, 10000, max_offset=2) == b0
    assert plog.read(2, 10000, max_offset=2) == b""
    plog.append(batch(tag=2), 0, TS)
    assert plog.log_end_offset == 5
    assert plog.read(0, 10000, max_offset=2) == b0
    assert plog.read(4, 10000, max_offset=5) != b""


def test_read_across_segment_roll(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=400)
    appended = bytearray()
    for i in range(12):
        b = batch(2, value_size=40, tag=i)  # ~150 bytes: 2 per segment
        plog.append(b, 0, TS)
        appended += b
    bases = plog.segment_base_offsets()
    assert len(bases) == 6 and bases == [0, 4, 8, 12, 16, 20]
    assert plog.read(0, 1 << 20) == bytes(appended)
    # starting inside a later segment, and spanning a boundary with a budget
    data = plog.read(5, 1 << 20)
    assert headers(data)[0].base_offset == 4 and headers(data)[-1].last_offset == 23
    limited = plog.read(6, 3 * 150)
    assert [h.base_offset for h in headers(limited)] == [6, 8]


def test_segment_files_are_named_by_20_digit_base_offset(tmp_path):
    d = tmp_path / "my.topic-3"
    plog = open_log(d, segment_bytes=300)
    for i in range(4):
        plog.append(batch(3, value_size=40, tag=i), 0, TS)
    assert plog.topic == "my.topic" and plog.partition == 3
    names = log_files(d)
    assert names == [f"{b:020d}.log" for b in plog.segment_base_offsets()]
    assert names[0] == "00000000000000000000.log" and names[1] == "00000000000000000003.log"
    for n in names:
        stem = n[:-4]
        assert (d / f"{stem}.index").exists() and (d / f"{stem}.timeindex").exists()


# --- indexes ------------------------------------------------------------------------


def test_sparse_offset_index_and_time_index(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, index_interval_bytes=1000)
    sizes = []
    for i in range(30):
        b = batch(2, value_size=100, ts=TS + i * 10, tag=i)
        sizes.append(len(b))
        plog.append(b, 0, TS)
    seg = plog.active_segment
    entries = seg.index_entries()
    # ~250-byte batches, one entry once more than 1000 bytes were written: every 5th
    assert 3 <= len(entries) < 30
    assert entries == sorted(entries)
    for offset, pos in entries:
        h = parse_header(os.pread(seg.fd, 61, pos))
        assert h.last_offset == offset  # Kafka's convention: last offset of the batch
    positions = [p for _, p in entries]
    assert all(b - a > 1000 for a, b in zip(positions, positions[1:]))
    tentries = seg.time_index_entries()
    assert len(tentries) == len(entries)
    assert [t for t, _ in tentries] == sorted({t for t, _ in tentries})
    # on disk after a flush: big-endian (int32 relative offset, int32 position)
    plog.flush()
    raw = (d / "00000000000000000000.index").read_bytes()
    assert len(raw) == 8 * len(entries)
    assert [struct.unpack_from(">ii", raw, i * 8) for i in range(len(entries))] == entries
    traw = (d / "00000000000000000000.timeindex").read_bytes()
    assert [struct.unpack_from(">qi", traw, i * 12) for i in range(len(tentries))] == tentries


def test_missing_index_is_rebuilt(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, index_interval_bytes=300, segment_bytes=3000)
    for i in range(40):
        plog.append(batch(1, value_size=100, ts=TS + i, tag=i), 0, TS)
    before = {s.base_offset: (s.index_entries(), s.time_index_entries()) for s in plog.segments}
    assert len(before) >= 3 and all(e for e, _ in before.values())
    plog.close()
    for name in os.listdir(d):
        if name.endswith((".index", ".timeindex")):
            os.unlink(d / name)
    plog = open_log(d, index_interval_bytes=300, segment_bytes=3000)
    after = {s.base_offset: (s.index_entries(), s.time_index_entries()) for s in plog.segments}
    assert after == before
    assert all((d / n).stat().st_size > 0 for n in os.listdir(d) if n.endswith(".index"))
    assert plog.log_end_offset == 40
    assert plog.offset_for_timestamp(TS + 17) == (17, TS + 17)


def test_inconsistent_index_is_rebuilt(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, index_interval_bytes=200, segment_bytes=2000)
    for i in range(30):
        plog.append(batch(1, value_size=100, tag=i), 0, TS)
    before = [s.index_entries() for s in plog.segments]
    plog.close()
    first = d / "00000000000000000000.index"
    with open(first, "ab") as f:
        f.write(b"\x00\x00\x00")  # not a whole entry
    with open(d / "00000000000000000000.timeindex", "ab") as f:
        f.write(struct.pack(">qi", TS, 10_000))  # points past the segment
    plog = open_log(d, index_interval_bytes=200, segment_bytes=2000)
    assert [s.index_entries() for s in plog.segments] == before
    assert first.stat().st_size % 8 == 0


# --- timestamps ---------------------------------------------------------------------


def test_offset_for_timestamp(tmp_path):
    plog = open_log(tmp_path / "t-0", index_interval_bytes=100, segment_bytes=1000)
    # batch k holds offsets 3k..3k+2 with timestamps TS+100k, TS+100k+10, TS+100k+20
    for k in range(20):
        recs = [(b"k", b"v" * 20, [], TS + 100 * k + 10 * j) for j in range(3)]
        plog.append(bytearray(build_batch(recs)), 0, TS)
    assert len(plog.segments) > 2
    assert plog.offset_for_timestamp(0) == (0, TS)
    assert plog.offset_for_timestamp(TS) == (0, TS)
    assert plog.offset_for_timestamp(TS + 1) == (1, TS + 10)  # a record inside batch 0
    assert plog.offset_for_timestamp(TS + 1015) == (32, TS + 1020)
    assert plog.offset_for_timestamp(TS + 1021) == (33, TS + 1100)
    assert plog.offset_for_timestamp(TS + 1920) == (59, TS + 1920)
    assert plog.offset_for_timestamp(TS + 1921) is None
    # never below the log start offset
    plog.set_log_start_offset(31)
    assert plog.offset_for_timestamp(TS) == (31, TS + 1010)


def test_offset_for_timestamp_with_out_of_order_timestamps(tmp_path):
    plog = open_log(tmp_path / "t-0", index_interval_bytes=0)
    for ts in (TS + 50, TS + 10, TS + 70, TS + 20):
        plog.append(batch(ts=ts), 0, TS)
    assert plog.offset_for_timestamp(TS + 15) == (0, TS + 50)
    assert plog.offset_for_timestamp(TS + 60) == (2, TS + 70)
    assert plog.max_timestamp() == (TS + 70, 2)


def test_max_timestamp(tmp_path):
    plog = open_log(tmp_path / "t-0", segment_bytes=400)
    assert plog.max_timestamp() is None
    plog.append(batch(2, ts=TS), 0, TS)
    plog.append(bytearray(build_batch([(b"a", b"1", [], TS + 5), (b"b", b"2", [], TS + 900),
                                       (b"c", b"3", [], TS + 1)])), 0, TS)
    plog.append(batch(2, ts=TS + 300), 0, TS)
    res = plog.max_timestamp()
    assert res == (TS + 900, 3) and (res.timestamp, res.offset) == (TS + 900, 3)
    plog.close()
    plog = open_log(tmp_path / "t-0", segment_bytes=400)
    assert plog.max_timestamp() == (TS + 900, 3)


# --- roll ---------------------------------------------------------------------------


def test_segment_ms_roll_with_manual_clock(tmp_path):
    clock = ManualClock(TS)
    plog = open_log(tmp_path / "t-0", clock=clock, segment_ms=DAY_MS)
    plog.append(batch(tag=0), 0, clock.time_ms())
    clock.advance(DAY_MS)
    plog.append(batch(tag=1), 0, clock.time_ms())
    assert plog.segment_base_offsets() == [0]
    clock.advance(1)
    plog.append(batch(tag=2), 0, clock.time_ms())
    assert plog.segment_base_offsets() == [0, 2]
    # the new segment's age counts from its first append
    clock.advance(DAY_MS // 2)
    plog.append(batch(tag=3), 0, clock.time_ms())
    assert plog.segment_base_offsets() == [0, 2]
    assert [h.base_offset for h in headers(plog.read(0, 10000))] == [0, 1, 2, 3]


def test_empty_segment_never_rolls_by_time(tmp_path):
    clock = ManualClock(TS)
    plog = open_log(tmp_path / "t-0", clock=clock, segment_ms=1000)
    clock.advance(10 * DAY_MS)
    plog.append(batch(), 0, clock.time_ms())
    assert plog.segment_base_offsets() == [0]


# --- restart / recovery -------------------------------------------------------------


def test_restart_keeps_data_and_log_end_offset(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, segment_bytes=500)
    for i in range(10):
        plog.append(batch(2, value_size=30, tag=i), 0, TS)
    data = plog.read(0, 1 << 20)
    segs = plog.segment_base_offsets()
    plog.close()
    assert (d / CLEAN_SHUTDOWN_FILE).exists()
    plog = open_log(d, segment_bytes=500)
    assert not (d / CLEAN_SHUTDOWN_FILE).exists()
    assert plog.log_end_offset == 20
    assert plog.segment_base_offsets() == segs
    assert plog.read(0, 1 << 20) == data
    res = plog.append(batch(tag=99), 0, TS)
    assert res.base_offset == 20
    plog.close()
    plog = open_log(d, segment_bytes=500)
    assert plog.log_end_offset == 21
    assert plog.read(20, 1000) == plog.read(0, 1 << 20)[len(data):]


def test_unclean_restart_keeps_acknowledged_data(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, segment_bytes=500, index_interval_bytes=100)
    for i in range(10):
        plog.append(batch(2, value_size=30, tag=i), 0, TS)
    data = plog.read(0, 1 << 20)
    entries = [s.index_entries() for s in plog.segments]
    crash(plog)
    plog = open_log(d, segment_bytes=500, index_interval_bytes=100)
    assert plog.log_end_offset == 20 and plog.read(0, 1 << 20) == data
    assert [s.index_entries() for s in plog.segments] == entries


@pytest.mark.parametrize("clean", [True, False])
def test_garbage_tail_is_truncated_and_appends_continue(tmp_path, clean):
    d = tmp_path / "t-0"
    plog = open_log(d)
    plog.append(batch(3, tag=0), 0, TS)
    plog.append(batch(2, tag=1), 0, TS)
    data = plog.read(0, 1 << 20)
    plog.close() if clean else crash(plog)
    with open(d / "00000000000000000000.log", "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x01\x00garbage" * 3)
    plog = open_log(d)
    assert plog.log_end_offset == 5
    assert os.path.getsize(d / "00000000000000000000.log") == len(data)
    assert plog.append(batch(tag=2), 0, TS).base_offset == 5
    assert [h.base_offset for h in headers(plog.read(0, 1 << 20))] == [0, 3, 5]


def test_torn_last_batch_is_truncated(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d)
    b0, b1 = batch(3, tag=0), batch(4, value_size=100, tag=1)
    plog.append(b0, 0, TS)
    plog.append(b1, 0, TS)
    crash(plog)
    path = d / "00000000000000000000.log"
    os.truncate(path, len(b0) + len(b1) - 17)  # half-written last batch
    plog = open_log(d)
    assert plog.log_end_offset == 3 and plog.size_bytes == len(b0)
    assert plog.read(0, 1 << 20) == bytes(b0)
    b2 = batch(2, tag=2)
    assert plog.append(b2, 0, TS).base_offset == 3
    plog.close()
    plog = open_log(d)
    assert plog.read(0, 1 << 20) == bytes(b0 + b2)


def test_corrupt_byte_in_last_batch_is_truncated(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d)
    b0, b1 = append_together(plog, batch(1, tag=0), batch(1, value_size=50, tag=1))
    crash(plog)
    path = d / "00000000000000000000.log"
    raw = bytearray(path.read_bytes())
    raw[len(b0) + 70] ^= 0xFF  # flips a byte under b1's CRC
    path.write_bytes(raw)
    plog = open_log(d)
    assert plog.log_end_offset == 1 and plog.read(0, 1000) == b0


def test_corruption_in_unflushed_older_segment_drops_later_segments(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, segment_bytes=400)
    for i in range(8):
        plog.append(batch(2, value_size=40, tag=i), 0, TS)  # ~170 bytes: 2 per segment
    bases = plog.segment_base_offsets()
    assert bases == [0, 4, 8, 12]
    crash(plog)  # never flushed: recovery point 0, every segment is re-validated
    second = d / f"{bases[1]:020d}.log"
    raw = bytearray(second.read_bytes())
    raw[-3] ^= 0xFF
    second.write_bytes(raw)
    plog = open_log(d, segment_bytes=400)
    assert plog.segment_base_offsets() == [0, 4]
    assert not (d / f"{bases[2]:020d}.log").exists()
    assert plog.log_end_offset == 6  # the last batch of segment 4 went with its bad byte
    assert [h.base_offset for h in headers(plog.read(0, 10000))] == [0, 2, 4]
    assert plog.append(batch(), 0, TS).base_offset == 6


def test_flushed_segments_are_not_revalidated(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, segment_bytes=300)
    for i in range(6):
        plog.append(batch(2, value_size=40, tag=i), 0, TS)
    plog.flush()
    assert plog.recovery_point == 12
    plog.append(batch(2, value_size=40, tag=7), 0, TS)
    bases = plog.segment_base_offsets()
    crash(plog)
    # damage inside a flushed segment goes unnoticed (Kafka trusts data below the
    # recovery point too); the unflushed tail is still validated
    first = d / f"{bases[0]:020d}.log"
    raw = bytearray(first.read_bytes())
    raw[-3] ^= 0xFF
    first.write_bytes(raw)
    plog = open_log(d, segment_bytes=300)
    assert plog.segment_base_offsets() == bases and plog.log_end_offset == 14


def test_flush_messages_policy(tmp_path):
    plog = open_log(tmp_path / "t-0", flush_messages=5)
    plog.append(batch(3), 0, TS)
    assert plog.recovery_point == 0
    plog.append(batch(2), 0, TS)
    assert plog.recovery_point == 5
    assert (tmp_path / "t-0" / "recovery-point").read_text().strip() == "5"


def test_flush_ms_policy(tmp_path):
    clock = ManualClock(TS)
    plog = open_log(tmp_path / "t-0", clock=clock, flush_ms=1000)
    plog.append(batch(), 0, clock.time_ms())
    assert plog.recovery_point == 0
    clock.advance(1000)
    plog.append(batch(), 0, clock.time_ms())
    assert plog.recovery_point == 2
    plog.append(batch(), 0, clock.time_ms())
    assert not plog.maybe_flush(clock.time_ms() + 10)
    assert plog.maybe_flush(clock.time_ms() + 1000) and plog.recovery_point == 3


def test_log_start_offset_persists(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d)
    plog.append(batch(5), 0, TS)
    assert plog.set_log_start_offset(3) and not plog.set_log_start_offset(2)
    with pytest.raises(OffsetOutOfRangeError):
        plog.set_log_start_offset(6)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(2, 1000)
    assert plog.read(3, 1000) != b""  # the batch containing 3 (from offset 0)
    plog.close()
    assert (d / LOG_START_OFFSET_FILE).read_text().strip() == "3"
    plog = open_log(d)
    assert plog.log_start_offset == 3
    assert plog.append(batch(), 0, TS).log_start_offset == 3


def test_closed_log_refuses_operations(tmp_path):
    plog = open_log(tmp_path / "t-0")
    plog.close()
    plog.close()  # idempotent
    with pytest.raises(KafkaStorageError):
        plog.append(batch(), 0, TS)


def test_log_config_from_properties():
    cfg = LogConfig.from_properties({"segment.bytes": "1000", "flush.messages": str(2**63 - 1),
                                     "message.timestamp.type": "LogAppendTime", "retention.ms": "5"})
    assert cfg.segment_bytes == 1000 and cfg.flush_messages is None
    assert cfg.message_timestamp_type == "LogAppendTime" and cfg.segment_ms == 7 * DAY_MS
    with pytest.raises(InvalidConfigError):
        LogConfig.from_properties({"segment.bytes": "lots"})
    with pytest.raises(InvalidConfigError):
        LogConfig(message_timestamp_type="Whenever")


# --- replication: follower append, truncation -------------------------------------------


def leader_log_bytes(path, epochs=(1, 1, 3), **cfg) -> tuple[PartitionLog, bytes]:
    """A leader log with one 2-record batch per epoch in `epochs`; returns it and its
    whole content as a follower would fetch it."""
    leader = open_log(path, **cfg)
    for i, epoch in enumerate(epochs):
        leader.append(batch(2, tag=i), epoch, TS)
    return leader, leader.read(0, 1 << 20)


def test_append_as_follower_stores_the_leaders_bytes_unchanged(tmp_path):
    leader, fetched = leader_log_bytes(tmp_path / "leader-0", message_timestamp_type="LogAppendTime")
    follower = open_log(tmp_path / "t-0")
    res = follower.append_as_follower(fetched, TS + 999)
    assert (res.base_offset, res.last_offset, res.log_append_time_ms) == (0, 5, -1)
    assert follower.log_end_offset == leader.log_end_offset == 6
    assert follower.read(0, 1 << 20) == fetched  # offsets, epochs, timestamps, CRCs as sent
    assert [tuple(e) for e in follower.leader_epoch_cache.entries()] == [(1, 0), (3, 4)]
    assert follower.end_offset_for_epoch(1) == leader.end_offset_for_epoch(1) == (1, 4)
    follower.close()
    follower = open_log(tmp_path / "t-0")
    assert follower.read(0, 1 << 20) == fetched
    assert [tuple(e) for e in follower.leader_epoch_cache.entries()] == [(1, 0), (3, 4)]
    follower.close()
    leader.close()


def test_append_as_follower_in_several_fetches_and_empty(tmp_path):
    leader, fetched = leader_log_bytes(tmp_path / "leader-0", epochs=(0, 2, 2, 5))
    follower = open_log(tmp_path / "t-0")
    hs = headers(fetched)
    cut = hs[2].size + hs[0].size + hs[1].size
    follower.append_as_follower(fetched[:hs[0].size], TS)
    follower.append_as_follower(fetched[hs[0].size:cut], TS)
    assert follower.append_as_follower(b"", TS) == (-1, -1, -1, 0)
    follower.append_as_follower(fetched[cut:], TS)
    assert follower.read(0, 1 << 20) == fetched
    assert [tuple(e) for e in follower.leader_epoch_cache.entries()] == [(0, 0), (2, 2), (5, 6)]
    follower.close()
    leader.close()


def test_append_as_follower_accepts_gaps_of_a_compacted_leader(tmp_path):
    d = tmp_path / "t-0"
    follower = open_log(d)
    fetched = (build_batch([(b"a", b"1", [])] * 3, base_offset=0, timestamp_ms=TS, partition_leader_epoch=2)
               # offsets 3-9 were compacted away; a batch whose records lost offsets 11-12
               + build_batch([(b"b", b"2", [])], base_offset=10, timestamp_ms=TS, partition_leader_epoch=2)
               + build_batch([(b"c", b"3", [])] * 2, base_offset=20, timestamp_ms=TS, partition_leader_epoch=4))
    res = follower.append_as_follower(fetched, TS)
    assert (res.base_offset, res.last_offset) == (0, 21)
    assert follower.log_end_offset == 22
    assert [h.base_offset for h in headers(follower.read(3, 1 << 20))] == [10, 20]  # 3 is in the gap
    assert [h.base_offset for h in headers(follower.read(11, 1 << 20))] == [20]
    assert [tuple(e) for e in follower.leader_epoch_cache.entries()] == [(2, 0), (4, 20)]
    follower.close()
    follower = open_log(d)
    assert follower.log_end_offset == 22
    assert follower.read(0, 1 << 20) == fetched
    follower.close()


def test_append_as_follower_gap_wider_than_int32_starts_a_segment_at_the_batch(tmp_path):
    # .index offsets are relative int32: a batch more than 2**31 offsets past the base of
    # the active segment (even an empty one) needs a segment of its own.
    d = tmp_path / "t-0"
    follower = open_log(d)
    far = 2**31 + 10
    first = build_batch([(b"b", b"2", [])] * 2, base_offset=far, timestamp_ms=TS)
    follower.append_as_follower(first, TS)  # into an empty log at 0
    assert follower.segment_base_offsets() == [0, far]
    second = build_batch([(b"c", b"3", [])], base_offset=2 * far, timestamp_ms=TS)
    follower.append_as_follower(second, TS)  # past a non-empty segment
    assert follower.segment_base_offsets() == [0, far, 2 * far]
    assert follower.log_end_offset == 2 * far + 1
    assert follower.read(far + 1, 1000) == first + second  # reads go on into the next segment
    follower.close()
    follower = open_log(d)
    assert follower.log_end_offset == 2 * far + 1 and follower.read(0, 1 << 20) == first + second
    follower.close()


def test_append_as_follower_bad_crc_writes_nothing(tmp_path):
    leader, fetched = leader_log_bytes(tmp_path / "leader-0")
    follower = open_log(tmp_path / "t-0")
    follower.append_as_follower(fetched[:headers(fetched)[0].size], TS)
    before = (follower.log_end_offset, follower.size_bytes, follower.leader_epoch_cache.entries(),
              os.path.getsize(follower.segments[-1].log_path))
    bad = bytearray(fetched[headers(fetched)[0].size:])
    bad[-1] ^= 0xFF  # a record byte of the LAST batch: the CRC no longer matches
    with pytest.raises(CorruptRecordError):
        follower.append_as_follower(bad, TS)
    assert (follower.log_end_offset, follower.size_bytes, follower.leader_epoch_cache.entries(),
            os.path.getsize(follower.segments[-1].log_path)) == before
    with pytest.raises(CorruptRecordError):
        follower.append_as_follower(bytes(bad[:-5]), TS)  # torn: runs past the buffer
    assert follower.log_end_offset == before[0]
    follower.close()
    leader.close()


def test_append_as_follower_refuses_offsets_below_the_log_end_or_overlapping(tmp_path):
    leader, fetched = leader_log_bytes(tmp_path / "leader-0")
    follower = open_log(tmp_path / "t-0")
    first = fetched[:headers(fetched)[0].size]
    follower.append_as_follower(first, TS)
    with pytest.raises(UnexpectedAppendOffsetError) as ei:
        follower.append_as_follower(fetched, TS)  # starts at 0, the log end is 2
    assert isinstance(ei.value, KafkaStorageError) and ei.value.first_offset == 0
    rest = fetched[len(first):]
    with pytest.raises(OffsetsOutOfOrderError):
        follower.append_as_follower(rest + first, TS)  # goes back to 0 after 2-5
    overlapping = build_batch([(b"k", b"v", [])] * 2, base_offset=5, timestamp_ms=TS)  # 5-6 over 4-5
    with pytest.raises(OffsetsOutOfOrderError):
        follower.append_as_follower(rest + overlapping, TS)
    assert follower.log_end_offset == 2 and follower.read(0, 1 << 20) == first
    follower.append_as_follower(rest, TS)
    assert follower.read(0, 1 << 20) == fetched
    follower.close()
    leader.close()


def test_append_as_follower_rolls_and_splits_a_fetch_over_segments(tmp_path):
    cfg = dict(segment_bytes=300, index_interval_bytes=1)
    leader = open_log(tmp_path / "leader-0", **cfg)
    for i in range(12):
        leader.append(batch(1, value_size=40, tag=i), i // 4, TS)
    fetched = leader.read(0, 1 << 20)
    assert len(fetched) > 3 * 300  # more than one segment's worth in one fetch
    follower = open_log(tmp_path / "t-0", **cfg)
    follower.append_as_follower(fetched, TS)
    assert len(follower.segments) > 3
    assert all(s.size <= 300 for s in follower.segments)
    assert follower.segment_base_offsets() == leader.segment_base_offsets()
    assert follower.read(0, 1 << 20) == fetched
    assert [follower.read(o, 1)[:8] for o in range(12)] == [leader.read(o, 1)[:8] for o in range(12)]
    assert [tuple(e) for e in follower.leader_epoch_cache.entries()] == [(0, 0), (1, 4), (2, 8)]
    follower.close()
    follower = open_log(tmp_path / "t-0", **cfg)
    assert follower.log_end_offset == 12 and follower.read(0, 1 << 20) == fetched
    follower.close()
    leader.close()


def test_append_as_follower_leaves_out_batches_above_the_fetch_leader_epoch(tmp_path):
    # KAFKA-18723: a deposed leader may answer a fetch with batches of a newer epoch
    # appended after it lost leadership; the follower keeps only what the leader's epoch
    # at fetch time covers.
    leader, fetched = leader_log_bytes(tmp_path / "leader-0", epochs=(1, 2, 1))
    follower = open_log(tmp_path / "t-0")
    res = follower.append_as_follower(fetched, TS, leader_epoch=1)
    assert (res.base_offset, res.last_offset) == (0, 1)  # the epoch-1 batch after the epoch-2 one goes too
    assert follower.log_end_offset == 2
    assert follower.append_as_follower(fetched[headers(fetched)[0].size:], TS, leader_epoch=1).base_offset == -1
    follower.close()
    leader.close()


def test_append_as_follower_updates_producer_state_without_sequence_checks(tmp_path):
    pid = 77
    idem = [bytearray(build_batch([(b"k", b"v%d" % s, [])], timestamp_ms=TS, producer_id=pid,
                                  producer_epoch=0, base_sequence=s)) for s in range(3)]
    follower = open_log(tmp_path / "t-0")
    # Offsets stamped as a leader would; sequence 2 before 1 would be refused on the
    # leader path, and the repeated batch would be a duplicate: replication takes both.
    stamped = bytearray()
    for offset, b in enumerate((idem[0], idem[2], idem[1], idem[1])):
        b = bytearray(b)
        stamp_batch(b, 0, offset, 0)
        stamped += b
    follower.append_as_follower(stamped, TS)
    assert follower.log_end_offset == 4
    entry = follower.producer_state.producers[pid]
    assert entry.last_seq == 1 and entry.last_data_offset == 3
    assert [b.first_offset for b in entry.batches] == [0, 1, 2, 3]
    # Become leader: a retry of sequence 1 is now a duplicate, answered with the first
    # retained copy (Kafka's findDuplicateBatch), and nothing is appended.
    dup = follower.append(bytearray(idem[1]), 1, TS)
    assert (dup.base_offset, follower.log_end_offset) == (2, 4)
    follower.close()


def test_truncate_to_rewinds_producer_state_so_a_resent_batch_is_appended(tmp_path):
    pid = 99

    def idem(seq):
        return bytearray(build_batch([(b"k", b"seq-%d" % seq, [])] * 2, timestamp_ms=TS, producer_id=pid,
                                     producer_epoch=0, base_sequence=seq))
    d = tmp_path / "t-0"
    plog = open_log(d)
    plog.append(idem(0), 1, TS)  # offsets 0-1
    plog.flush()                 # a producer snapshot at 2
    plog.append(idem(2), 1, TS)  # 2-3
    plog.flush()                 # a snapshot at 4, which truncation must not trust
    plog.append(idem(4), 1, TS)  # 4-5
    assert plog.append(idem(2), 1, TS).base_offset == 2  # a retry: the original offset
    plog.truncate_to(2)          # the follower's history diverged after offset 1
    assert plog.producer_state.producers[pid].last_seq == 1
    assert all(off <= 2 for off in plog.producer_state.snapshot_offsets())
    # The producer (through the new leader) re-sends sequence 2: it must be appended,
    # not answered as a duplicate at the offset that no longer holds it.
    res = plog.append(idem(2), 2, TS)
    assert (res.base_offset, plog.log_end_offset) == (2, 4)
    assert [r.value for r in decode_records(plog.read(0, 1 << 20))] == [b"seq-0", b"seq-0", b"seq-2", b"seq-2"]
    plog.close()
    plog = open_log(d)
    assert plog.producer_state.producers[pid].last_seq == 3
    assert plog.append(idem(4), 2, TS).base_offset == 4
    plog.close()


def test_truncate_to_below_every_snapshot_replays_from_the_log_start(tmp_path):
    pid = 5
    plog = open_log(tmp_path / "t-0", segment_bytes=200)
    for seq in range(6):
        plog.append(bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=TS, producer_id=pid,
                                          producer_epoch=0, base_sequence=seq)), 0, TS)
    assert len(plog.segments) > 2 and min(plog.producer_state.snapshot_offsets()) > 1
    plog.truncate_to(1)
    assert plog.producer_state.producers[pid].last_seq == 0
    assert plog.producer_state.producers[pid].last_data_offset == 0
    assert plog.append(bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=TS, producer_id=pid,
                                             producer_epoch=0, base_sequence=1)), 0, TS).base_offset == 1
    plog.close()


def test_truncate_to_an_offset_in_a_gap_of_a_compacted_log(tmp_path):
    # A follower's high watermark can fall between two batches of a compacted log.
    d = tmp_path / "t-0"
    plog = open_log(d)
    kept = build_batch([(b"a", b"1", [])] * 3, base_offset=0, timestamp_ms=TS, partition_leader_epoch=1)
    plog.append_as_follower(kept + build_batch([(b"b", b"2", [])], base_offset=10, timestamp_ms=TS,
                                               partition_leader_epoch=2), TS)
    assert plog.truncate_to(5) > 0
    assert plog.log_end_offset == 3  # where the kept batches end
    assert plog.read(0, 1 << 20) == kept
    assert [tuple(e) for e in plog.leader_epoch_cache.entries()] == [(1, 0)]
    plog.close()


def test_truncate_to_inside_a_batch_only_when_allowed(tmp_path):
    plog = open_log(tmp_path / "t-0")
    first = append_together(plog, batch(2, tag=1))[0]
    plog.append(batch(3, tag=2), 4, TS)  # offsets 2-4
    with pytest.raises(InvalidRecordError):
        plog.truncate_to(3)
    assert plog.log_end_offset == 5
    plog.truncate_to(3, allow_inside_batch=True)  # the whole batch 2-4 goes
    assert plog.log_end_offset == 2
    assert plog.read(0, 1 << 20) == first
    assert [tuple(e) for e in plog.leader_epoch_cache.entries()] == [(0, 0)]
    plog.close()


def test_truncate_fully_and_start_at(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d, segment_bytes=200)
    for seq in range(5):
        plog.append(bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=TS, producer_id=8,
                                          producer_epoch=0, base_sequence=seq)), seq // 2, TS)
    plog.flush()
    assert len(plog.segments) > 1 and plog.leader_epoch_cache.entries()
    plog.truncate_fully_and_start_at(100)
    assert (plog.log_start_offset, plog.log_end_offset, plog.recovery_point) == (100, 100, 100)
    assert plog.segment_base_offsets() == [100] and plog.size_bytes == 0
    assert log_files(d) == ["%020d.log" % 100]
    assert plog.leader_epoch_cache.entries() == []
    assert plog.producer_state.producers == {} and plog.producer_state.snapshot_offsets() == []
    assert not [n for n in os.listdir(d) if n.endswith((".snapshot", ".deleted"))]
    assert plog.read(100, 1000) == b""
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(0, 1000)
    # The follower goes on fetching from the leader's log start.
    fetched = build_batch([(b"k", b"v", [])] * 2, base_offset=100, timestamp_ms=TS, partition_leader_epoch=7)
    plog.append_as_follower(fetched, TS)
    assert plog.log_end_offset == 102
    assert [tuple(e) for e in plog.leader_epoch_cache.entries()] == [(7, 100)]
    plog.close()
    plog = open_log(d, segment_bytes=200)
    assert (plog.log_start_offset, plog.log_end_offset) == (100, 102)
    assert plog.read(100, 1000) == fetched
    assert plog.producer_state.producers == {}
    plog.close()


def test_truncate_fully_and_start_at_below_the_log_start(tmp_path):
    # KAFKA-6975: an empty follower whose log start is inside the leader's first batch
    # restarts at that batch's base offset.
    d = tmp_path / "t-0"
    plog = open_log(d)
    plog.truncate_fully_and_start_at(105)
    fetched = build_batch([(b"k", b"v", [])] * 10, base_offset=100, timestamp_ms=TS, partition_leader_epoch=1)
    with pytest.raises(UnexpectedAppendOffsetError) as ei:
        plog.append_as_follower(fetched, TS)
    plog.truncate_fully_and_start_at(ei.value.first_offset)
    plog.append_as_follower(fetched, TS)
    assert (plog.log_start_offset, plog.log_end_offset) == (100, 110)
    plog.close()


# --- manager ------------------------------------------------------------------------


def test_log_manager_create_load_delete(tmp_path):
    data = tmp_path / "data"
    mgr = LogManager(data, ManualClock(TS), LogConfig(segment_bytes=10_000))
    a0 = mgr.create("orders", 0)
    a1 = mgr.create("orders", 1)
    b0 = mgr.create("my-topic", 0)
    assert mgr.create("orders", 0) is a0
    assert mgr.get("orders", 1) is a1 and mgr.get("orders", 2) is None
    a0.append(batch(3), 0, TS)
    b0.append(batch(2), 0, TS)
    assert sorted(os.listdir(data)) == [".lock", "my-topic-0", "orders-0", "orders-1"]
    with pytest.raises(KafkaStorageError):
        LogManager(str(data))  # the directory is locked
    with pytest.raises(InvalidTopicError):
        mgr.create("../etc", 0)
    mgr.flush_all()
    mgr.close_all()

    mgr = LogManager(str(data), ManualClock(TS))
    (data / "junk.txt").write_text("not a partition")
    (data / "stale-0.0123abc-delete").mkdir()
    (data / "__cluster_metadata-0").mkdir()  # the controller's, not the manager's
    loaded = mgr.load_all()
    assert sorted(loaded) == [("my-topic", 0), ("orders", 0), ("orders", 1)]
    assert not (data / "stale-0.0123abc-delete").exists()
    assert mgr.get("orders", 0).log_end_offset == 3
    assert mgr.get("my-topic", 0).log_end_offset == 2
    assert mgr.partitions("orders") == [("orders", 0), ("orders", 1)]
    assert mgr.delete("orders", 0)
    assert mgr.get("orders", 0) is None and not (data / "orders-0").exists()
    assert not mgr.delete("orders", 0)
    assert sorted(os.listdir(data)) == [".lock", "__cluster_metadata-0", "junk.txt", "my-topic-0", "orders-1"]
    mgr.close_all()
    mgr = LogManager(str(data))
    assert sorted(mgr.load_all()) == [("my-topic", 0), ("orders", 1)]
    mgr.close_all()


# --- property -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    appends=st.lists(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 120)), min_size=1, max_size=3),
                     min_size=1, max_size=15),
    segment_bytes=st.integers(1800, 5000),
    index_interval=st.integers(0, 2000),
    max_bytes=st.integers(1, 3000),
)
def test_property_appended_batches_read_back_in_order(appends, segment_bytes, index_interval, max_bytes):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p-0")
        cfg = dict(segment_bytes=segment_bytes, index_interval_bytes=index_interval)
        plog = open_log(path, **cfg)
        expected = bytearray()
        starts = []  # (base offset, last offset, position in expected)
        for request in appends:
            buf = bytearray()
            for n, size in request:
                buf += build_batch([(None, b"x" * size, [])] * n, timestamp_ms=TS)
            plog.append(buf, 0, TS)
            for pos, h in iter_batches(buf):
                starts.append((h.base_offset, h.last_offset, len(expected) + pos))
            expected += buf
        # sequential consumption with a small max_bytes
        out = bytearray()
        offset = 0
        while offset < plog.log_end_offset:
            data = plog.read(offset, max_bytes)
            assert data
            out += data
            offset = headers(data)[-1].last_offset + 1
        assert out == expected
        # a read at any offset starts with the batch containing it
        for base, last, pos in starts:
            for off in {base, last}:
                assert plog.read(off, 1)[:12] == bytes(expected[pos:pos + 12])
        plog.close()
        plog = open_log(path, **cfg)
        assert plog.read(0, 1 << 30) == bytes(expected)
        plog.close()
