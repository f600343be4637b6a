"""RecordBatch v2: header view, validation, stamping, builder/decoder round trips."""
from __future__ import annotations

import struct

import pytest
from crc32c import crc32c

from kafkette.errors import CorruptRecordError
from kafkette.protocol import records as rec
from kafkette.protocol.records import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    Record,
    build_batch,
    decode_records,
    iter_batches,
    parse_header,
    scan_valid_prefix,
    stamp_batch,
    stamp_log_append_time,
)

TS = 1_700_000_000_123


def test_header_constants_match_the_wire_layout():
    assert BATCH_HEADER_SIZE == 61
    assert (rec.CRC_OFFSET, rec.ATTRIBUTES_OFFSET, rec.RECORDS_COUNT_OFFSET) == (17, 21, 57)
    assert rec.MIN_BATCH_LENGTH == 49


def test_parse_header_of_built_batch():
    raw = build_batch(
        [(b"k1", b"v1", []), (None, b"v2", [("h", b"x")]), (b"k3", None, [])],
        base_offset=42, timestamp_ms=TS, producer_id=7, producer_epoch=3, base_sequence=11,
        partition_leader_epoch=5, transactional=True,
    )
    h = parse_header(raw)
    assert isinstance(h, BatchHeader)
    assert h.base_offset == 42
    assert h.size == len(raw) == h.batch_length + 12
    assert h.partition_leader_epoch == 5
    assert h.magic == 2
    assert h.crc == crc32c(raw[21:])
    assert h.last_offset_delta == 2 and h.records_count == 3
    assert h.last_offset == 44 and h.next_offset == 45
    assert h.base_timestamp == TS and h.max_timestamp == TS
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (7, 3, 11)
    assert h.is_transactional and not h.is_control and not h.is_log_append_time
    assert h.codec == 0
    # independent check of two fields with plain struct
    assert struct.unpack_from(">q", raw, 0)[0] == 42
    assert struct.unpack_from(">i", raw, 57)[0] == 3


def test_wire_bytes_of_a_minimal_record():
    """Byte-exact: one record, key null, value b"a", no headers, all deltas 0."""
    raw = build_batch([(None, b"a", [])], timestamp_ms=0)
    records = raw[61:]
    # length 7 (zigzag 14), attrs 0, ts delta 0, offset delta 0, key -1 (zigzag 1),
    # value len 1 (zigzag 2) + b"a", headers 0
    assert records == bytes([14, 0, 0, 0, 1, 2]) + b"a" + bytes([0])


def test_iter_batches_multiple_and_positions():
    b1 = build_batch([(b"a", b"1", [])], timestamp_ms=TS)
    b2 = build_batch([(b"b", b"2", []), (b"c", b"3", [])], timestamp_ms=TS + 5)
    buf = b1 + b2
    got = list(iter_batches(buf))
    assert [p for p, _ in got] == [0, len(b1)]
    assert [h.records_count for _, h in got] == [1, 2]
    assert list(iter_batches(b"")) == []


def test_crc_mismatch_is_corrupt():
    raw = bytearray(build_batch([(b"k", b"value", [])], timestamp_ms=TS))
    raw[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        list(iter_batches(raw))
    # without CRC validation the header still parses
    assert len(list(iter_batches(raw, validate_crc=False))) == 1


def test_crc_covers_attributes():
    raw = bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=TS))
    raw[22] ^= 0x01  # attributes low byte
    with pytest.raises(CorruptRecordError):
        list(iter_batches(raw))


@pytest.mark.parametrize("cut", [1, 30, 60, 61, 70, -1])
def test_truncated_is_corrupt(cut):
    raw = build_batch([(b"k", b"v" * 20, [])], timestamp_ms=TS)
    assert len(raw) > 71
    with pytest.raises(CorruptRecordError):
        list(iter_batches(raw[:cut]))


def test_truncated_second_batch_is_corrupt():
    b = build_batch([(b"k", b"v", [])], timestamp_ms=TS)
    with pytest.raises(CorruptRecordError):
        list(iter_batches(b + b[:-3]))


def test_bad_magic_length_and_count():
    raw = build_batch([(b"k", b"v", [])], timestamp_ms=TS)
    bad_magic = bytearray(raw)
    bad_magic[16] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        list(iter_batches(bad_magic, validate_crc=False))
    short = bytearray(raw)
    struct.pack_into(">i", short, 8, 48)
    with pytest.raises(CorruptRecordError, match="length"):
        list(iter_batches(short))
    negative = bytearray(raw)
    struct.pack_into(">i", negative, 57, -1)
    struct.pack_into(">I", negative, 17, crc32c(bytes(negative[21:])))
    with pytest.raises(CorruptRecordError, match="count"):
        list(iter_batches(negative))


def test_scan_valid_prefix_stops_at_first_bad_batch():
    b1 = build_batch([(b"a", b"1", [])], timestamp_ms=TS)
    b2 = build_batch([(b"b", b"2", [])], timestamp_ms=TS)
    assert scan_valid_prefix(b1 + b2)[0] == len(b1) + len(b2)
    valid, batches = scan_valid_prefix(b1 + b2[:-1])
    assert valid == len(b1) and len(batches) == 1
    corrupt = bytearray(b1 + b2)
    corrupt[5] ^= 0xFF  # base offset of b1: outside the CRC, still valid
    corrupt[len(b1) + 30] ^= 0xFF  # inside b2's CRC range
    valid, batches = scan_valid_prefix(corrupt)
    assert valid == len(b1) and [p for p, _ in batches] == [0]
    assert scan_valid_prefix(b"\x00" * 100) == (0, [])


def test_stamp_keeps_crc_valid():
    raw = bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=TS) * 1)
    stamp_batch(raw, 0, 123456789, 17)
    (_, h), = list(iter_batches(raw))  # CRC still valid
    assert h.base_offset == 123456789 and h.partition_leader_epoch == 17
    # in a memoryview too, at a non-zero position
    two = bytearray(build_batch([(b"a", b"1", [])]) + build_batch([(b"b", b"2", [])]))
    mv = memoryview(two)
    pos2 = list(iter_batches(mv))[1][0]
    stamp_batch(mv, pos2, 5, 1)
    assert [h.base_offset for _, h in iter_batches(two)] == [0, 5]


def test_stamp_log_append_time_sets_bit_and_recomputes_crc():
    raw = bytearray(build_batch([(b"k", b"v", []), (b"k2", b"v2", [], TS + 10)], timestamp_ms=TS))
    stamp_log_append_time(raw, 0, len(raw), 999)
    (_, h), = list(iter_batches(raw))
    assert h.is_log_append_time and h.max_timestamp == 999 and h.base_timestamp == TS
    assert [r.timestamp for r in decode_records(raw)] == [999, 999]


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_round_trip_each_codec(codec):
    records = [
        (b"key-1", b"value-1" * 50, [("h1", b"x"), ("h2", None)]),
        (None, b"no key", []),
        (b"null value", None, [("only", b"")]),
        (b"", b"", []),
        (b"k" * 300, b"\x00\xff" * 1000, [("\u00e9t\u00e9", b"\x01" * 200)], TS - 5),
    ]
    raw = build_batch(records, base_offset=100, codec=codec, timestamp_ms=TS)
    h = parse_header(raw)
    assert h.codec == codec
    if codec:
        assert len(raw) < sum(len(r[1] or b"") for r in records)  # really compressed
    got = decode_records(raw)
    assert [r.offset for r in got] == [100, 101, 102, 103, 104]
    assert [r.key for r in got] == [r[0] for r in records]
    assert [r.value for r in got] == [r[1] for r in records]
    assert [r.headers for r in got] == [r[2] for r in records]
    assert [r.timestamp for r in got] == [TS, TS, TS, TS, TS - 5]
    assert h.max_timestamp == TS and h.base_timestamp == TS
    assert all(isinstance(r, Record) for r in got)


def test_decode_xerial_framed_snappy():
    """The Java client writes xerial-framed snappy; decoding must accept it."""
    cramjam = pytest.importorskip("cramjam")
    plain = build_batch([(b"k", b"v" * 100, [])], timestamp_ms=TS)
    body = plain[61:]
    block = bytes(cramjam.snappy.compress_raw(body))
    framed = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + struct.pack(">i", len(block)) + block
    out = bytearray(plain[:61]) + framed
    struct.pack_into(">i", out, 8, 49 + len(framed))
    struct.pack_into(">h", out, 21, rec.CODEC_SNAPPY)
    struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    (r,) = decode_records(out)
    assert r.value == b"v" * 100


def test_decode_multiple_batches_and_negative_timestamp_delta():
    b1 = build_batch([(b"a", b"1", [], TS + 100), (b"b", b"2", [], TS)], base_offset=0)
    b2 = build_batch([(b"c", b"3", [])], base_offset=2, timestamp_ms=TS + 1)
    h1 = parse_header(b1)
    assert h1.base_timestamp == TS + 100 and h1.max_timestamp == TS + 100
    got = decode_records(b1 + b2)
    assert [(r.offset, r.key, r.timestamp) for r in got] == [(0, b"a", TS + 100), (1, b"b", TS), (2, b"c", TS + 1)]


def test_decode_rejects_garbage_records_section():
    raw = bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=TS))
    raw[61] = 0x7E  # record length way past the batch
    struct.pack_into(">I", raw, 17, crc32c(bytes(raw[21:])))
    with pytest.raises(CorruptRecordError):
        decode_records(raw)


def test_build_rejects_empty():
    with pytest.raises(ValueError):
        build_batch([])


def test_varint_extremes_round_trip():
    ts_far = 2**40
    raw = build_batch([(b"a", b"b", [], 0), (b"c", b"d", [], ts_far)], timestamp_ms=0)
    assert [r.timestamp for r in decode_records(raw)] == [0, ts_far]


def test_scan_records_gives_each_records_key_offset_and_span():
    """The cleaner's view of a payload (records.scan_records) agrees with the decoder:
    keys, offset deltas, null keys and tombstones; spans tile the payload."""
    from kafkette.protocol.records import (HEADER_STRUCT, batch_payload, is_tombstone,
                                           scan_records)
    big = b"x" * 300          # a key past the one- and two-byte varint fast paths
    batch = build_batch([(b"a", b"1", []), (None, b"2", []), (b"b", None, []),
                         (big, b"3", [("h", b"v")])], base_offset=10, codec=rec.CODEC_GZIP)
    h = HEADER_STRUCT.unpack_from(batch, 0)
    data = batch_payload(batch, 0, h)
    layout = scan_records(data, h[12])
    assert [(bytes(data[kp:kp + kl]) if kl >= 0 else None, od)
            for _s, _e, _a, _t, _tsd, od, kp, kl in layout] == \
        [(b"a", 0), (None, 1), (b"b", 2), (big, 3)]
    assert [is_tombstone(data, r[6], r[7]) for r in layout] == [False, False, True, False]
    assert layout[0][0] == 0 and all(a[1] == b[0] for a, b in zip(layout, layout[1:]))
    assert layout[-1][1] == len(data)
    with pytest.raises(CorruptRecordError):
        scan_records(data, h[12] + 1)
    with pytest.raises(CorruptRecordError):
        scan_records(data, h[12] - 1)
