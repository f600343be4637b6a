"""RecordBatch v2 (magic 2): a zero-copy view of batch headers, plus a builder and a
record decoder for tests, tools and internal topics.

Sans-IO. The produce/fetch hot path only uses `iter_batches`, `stamp_batch` and
`stamp_log_append_time`: one `struct.unpack_from` of the 61-byte header and one CRC-32C
per batch, never a look at individual records (see DESIGN.md, "The hot path").
`build_batch` and `decode_records` do per-record work and decompress through cramjam,
which is imported lazily because the broker itself never needs it.

Only magic 2 exists in Kafka 4.x (KIP-724); magic 0/1 message sets are rejected as
corrupt here, where a real Kafka 4 broker answers UNSUPPORTED_VERSION/INVALID_RECORD.

Layout (big endian), from the start of the batch:

    0  base_offset int64          8  batch_length int32 (bytes after this field)
    12 partition_leader_epoch     16 magic int8
    17 crc uint32 (CRC-32C of bytes 21..end)
    21 attributes int16           23 last_offset_delta int32
    27 base_timestamp int64       35 max_timestamp int64
    43 producer_id int64          51 producer_epoch int16
    53 base_sequence int32        57 records_count int32
    61 records...
"""
from __future__ import annotations

import struct
import time
from typing import Iterator, NamedTuple, Sequence

from crc32c import crc32c as _crc32c

from kafkette.errors import CorruptRecordError

# --- field offsets ---------------------------------------------------------------
BASE_OFFSET_OFFSET = 0
BATCH_LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
LAST_OFFSET_DELTA_OFFSET = 23
BASE_TIMESTAMP_OFFSET = 27
MAX_TIMESTAMP_OFFSET = 35
PRODUCER_ID_OFFSET = 43
PRODUCER_EPOCH_OFFSET = 51
BASE_SEQUENCE_OFFSET = 53
RECORDS_COUNT_OFFSET = 57
RECORDS_OFFSET = 61

BATCH_HEADER_SIZE = 61
# base_offset + batch_length: the bytes that batch_length does not count (Kafka's
# LOG_OVERHEAD). A batch occupies batch_length + LOG_OVERHEAD bytes.
LOG_OVERHEAD = 12
MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD  # 49: a header with no records
MAGIC = 2

# --- attribute bits --------------------------------------------------------------
CODEC_MASK = 0x07
CODEC_NONE = 0
CODEC_GZIP = 1
CODEC_SNAPPY = 2
CODEC_LZ4 = 3
CODEC_ZSTD = 4
TIMESTAMP_TYPE_BIT = 0x08  # set: LogAppendTime, clear: CreateTime
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

NO_TIMESTAMP = -1
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
assert _HEADER.size == BATCH_HEADER_SIZE
# The header as one struct, for readers that want its fields as a plain tuple (the
# cleaner): base_offset, batch_length, partition_leader_epoch, magic, crc, attributes,
# last_offset_delta, base_timestamp, max_timestamp, producer_id, producer_epoch,
# base_sequence, records_count.
HEADER_STRUCT = _HEADER
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")


class BatchHeader(NamedTuple):
    """The 61-byte header of one batch. A plain tuple: built with one unpack_from."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies (header included)."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def codec(self) -> int:
        return self.attributes & CODEC_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_BIT)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & DELETE_HORIZON_BIT)


_new_header = tuple.__new__  # BatchHeader._make without the classmethod indirection
_unpack_header = _HEADER.unpack_from


def parse_header(buf, pos: int = 0) -> BatchHeader:
    """Parse the header at `pos` (no CRC check). CorruptRecordError if truncated."""
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptRecordError("truncated record batch header")
    return _new_header(BatchHeader, _unpack_header(buf, pos))


def _as_bytes_view(buf) -> memoryview:
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def iter_batches(buf, validate_crc: bool = True) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) for each batch of a buffer of concatenated batches.

    Raises CorruptRecordError on a truncated header, batch_length < 49, a batch that
    runs past the buffer, magic != 2, a CRC mismatch or a negative record count.
    Per batch: one unpack_from and one CRC-32C over a memoryview slice (no copy).
    A partial trailing batch is an error: a produce request carries whole batches (Kafka
    silently drops a partial tail in fetched data, where it is normal, and Produce v3+
    even requires exactly one batch per partition: ProduceRequest.validateRecords).
    """
    mv = _as_bytes_view(buf)
    n = len(mv)
    pos = 0
    unpack = _unpack_header
    crc = _crc32c
    while pos < n:
        if n - pos < BATCH_HEADER_SIZE:
            raise CorruptRecordError(f"truncated record batch header at position {pos}")
        fields = unpack(mv, pos)
        batch_length = fields[1]
        if batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecordError(f"record batch length {batch_length} < {MIN_BATCH_LENGTH} at position {pos}")
        end = pos + LOG_OVERHEAD + batch_length
        if end > n:
            raise CorruptRecordError(f"record batch at position {pos} extends past the end of the records")
        if fields[3] != MAGIC:
            raise CorruptRecordError(f"unsupported record batch magic {fields[3]} at position {pos}")
        if validate_crc and crc(mv[pos + ATTRIBUTES_OFFSET:end]) != fields[4]:
            raise CorruptRecordError(f"record batch CRC mismatch at position {pos}")
        if fields[12] < 0:
            raise CorruptRecordError(f"negative record count at position {pos}")
        yield pos, _new_header(BatchHeader, fields)
        pos = end


def scan_valid_prefix(buf) -> tuple[int, list[tuple[int, BatchHeader]]]:
    """Non-raising scan for log recovery: (valid_bytes, [(position, header), ...]) up to
    the first truncated or invalid batch. valid_bytes == len(buf) when all is valid."""
    batches: list[tuple[int, BatchHeader]] = []
    valid = 0
    try:
        for pos, header in iter_batches(buf, True):
            batches.append((pos, header))
            valid = pos + header.batch_length + LOG_OVERHEAD
    except CorruptRecordError:
        pass
    return valid, batches


def stamp_batch(buf, pos: int, base_offset: int, partition_leader_epoch: int) -> None:
    """Assign the base offset and the partition leader epoch in place.

    Both fields lie before the CRC'd range (which starts at attributes), which is why the
    v2 format put them there: the broker stamps them without recomputing the CRC. A
    client-sent non-zero leader epoch is simply overwritten, never rejected (kfake did
    reject it and broke Sarama, franz-go #1229).
    """
    _INT64.pack_into(buf, pos + BASE_OFFSET_OFFSET, base_offset)
    _INT32.pack_into(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, partition_leader_epoch)


def stamp_log_append_time(buf, pos: int, end: int, timestamp_ms: int) -> None:
    """For topics with message.timestamp.type=LogAppendTime: set the timestamp-type bit
    and max_timestamp to the broker's append time, then recompute the CRC (both fields
    are covered by it). Mirrors Kafka's DefaultRecordBatch.setMaxTimestamp: the base
    timestamp and the records are left alone; consumers read max_timestamp as every
    record's timestamp for LogAppendTime batches."""
    attributes = _INT16.unpack_from(buf, pos + ATTRIBUTES_OFFSET)[0] | TIMESTAMP_TYPE_BIT
    _INT16.pack_into(buf, pos + ATTRIBUTES_OFFSET, attributes)
    _INT64.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, timestamp_ms)
    mv = _as_bytes_view(buf)
    _UINT32.pack_into(buf, pos + CRC_OFFSET, _crc32c(mv[pos + ATTRIBUTES_OFFSET:end]))


# --------------------------------------------------------------------------------
# Records: builder and decoder (tests, tools, internal topics; NOT the hot path)
# --------------------------------------------------------------------------------


class Record(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def _put_varint(out: bytearray, value: int) -> None:
    """Zig-zag varint (Kafka's ByteUtils.writeVarint/writeVarlong: same encoding)."""
    v = (value << 1) ^ (value >> 63)
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _get_varint(buf, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = buf[pos]  # IndexError past the end: turned into CorruptRecordError by callers
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint too long")
    return (result >> 1) ^ -(result & 1), pos


def _put_bytes(out: bytearray, data) -> None:
    if data is None:
        _put_varint(out, -1)
    else:
        _put_varint(out, len(data))
        out += data


def _encode_record(out: bytearray, offset_delta: int, timestamp_delta: int, key, value, headers) -> None:
    body = bytearray()
    body.append(0)  # record attributes: unused in v2
    _put_varint(body, timestamp_delta)
    _put_varint(body, offset_delta)
    _put_bytes(body, key)
    _put_bytes(body, value)
    headers = headers or ()
    _put_varint(body, len(headers))
    for hkey, hvalue in headers:
        _put_bytes(body, hkey.encode() if isinstance(hkey, str) else hkey)
        _put_bytes(body, hvalue)
    _put_varint(out, len(body))
    out += body


def _compress(codec: int, data: bytes) -> bytes:
    import cramjam  # lazy: only the cleaner, internal topics and tools decode batches

    if codec == CODEC_GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == CODEC_SNAPPY:
        # Raw snappy block, as librdkafka writes it. The Java client writes the xerial
        # framing ("\x82SNAPPY\0" + chunks) instead; every Kafka reader accepts both,
        # and _decompress below does too.
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == CODEC_LZ4:
        # LZ4 frame format (KafkaLZ4BlockOutputStream; magic >= 1 has the fixed HC byte).
        return bytes(cramjam.lz4.compress(data))
    if codec == CODEC_ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec}")


_XERIAL_MAGIC = b"\x82SNAPPY\x00"


def _decompress(codec: int, data) -> bytes:
    try:
        import cramjam  # lazy: a test/tool dependency only
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CorruptRecordError("compressed batch and cramjam is not installed") from exc
    try:
        if codec == CODEC_GZIP:
            return bytes(cramjam.gzip.decompress(bytes(data)))
        if codec == CODEC_SNAPPY:
            data = bytes(data)
            if data[:8] == _XERIAL_MAGIC:
                # xerial framing: 8-byte magic, int32 version, int32 compatible version,
                # then (int32 length, raw snappy block) chunks.
                out = bytearray()
                p = 16
                while p < len(data):
                    n = int.from_bytes(data[p:p + 4], "big")
                    p += 4
                    if n < 0 or p + n > len(data):
                        raise CorruptRecordError("truncated xerial snappy chunk")
                    out += bytes(cramjam.snappy.decompress_raw(data[p:p + n]))
                    p += n
                return bytes(out)
            return bytes(cramjam.snappy.decompress_raw(data))
        if codec == CODEC_LZ4:
            return bytes(cramjam.lz4.decompress(bytes(data)))
        if codec == CODEC_ZSTD:
            return bytes(cramjam.zstd.decompress(bytes(data)))
    except CorruptRecordError:
        raise
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise CorruptRecordError(f"cannot decompress batch (codec {codec}): {exc}") from exc
    raise CorruptRecordError(f"unknown compression codec {codec}")


def build_batch(
    records: Sequence[tuple],
    base_offset: int = 0,
    *,
    codec: int = CODEC_NONE,
    timestamp_ms: int | None = None,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    transactional: bool = False,
    control: bool = False,
) -> bytes:
    """Encode one v2 batch. `records`: (key, value, headers[, timestamp_ms]) tuples, key
    and value bytes or None, headers a list of (str, bytes | None). Records without their
    own timestamp get `timestamp_ms` (default: now). As the Java client does, the base
    timestamp is the first record's timestamp and deltas may be negative."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    if timestamp_ms is None:
        timestamp_ms = time.time_ns() // 1_000_000
    timestamps = [r[3] if len(r) > 3 and r[3] is not None else timestamp_ms for r in records]
    base_ts = timestamps[0]
    max_ts = max(timestamps)
    body = bytearray()
    for i, r in enumerate(records):
        _encode_record(body, i, timestamps[i] - base_ts, r[0], r[1], r[2] if len(r) > 2 else None)
    payload = bytes(body) if codec == CODEC_NONE else _compress(codec, bytes(body))
    attributes = (codec & CODEC_MASK) | (TRANSACTIONAL_BIT if transactional else 0) | (CONTROL_BIT if control else 0)
    out = bytearray(BATCH_HEADER_SIZE + len(payload))
    _HEADER.pack_into(
        out, 0, base_offset, MIN_BATCH_LENGTH + len(payload), partition_leader_epoch, MAGIC, 0,
        attributes, len(records) - 1, base_ts, max_ts, producer_id, producer_epoch, base_sequence, len(records),
    )
    out[BATCH_HEADER_SIZE:] = payload
    _UINT32.pack_into(out, CRC_OFFSET, _crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)


def _read_bytes(buf, pos: int, end: int) -> tuple[bytes | None, int]:
    n, pos = _get_varint(buf, pos)
    if n < 0:
        return None, pos
    if pos + n > end:
        raise CorruptRecordError("record field runs past the end of the record")
    return bytes(buf[pos:pos + n]), pos + n


def _decode_batch(mv: memoryview, pos: int, header: BatchHeader) -> list[Record]:
    payload = mv[pos + BATCH_HEADER_SIZE:pos + header.size]
    data = payload if header.codec == CODEC_NONE else memoryview(_decompress(header.codec, payload))
    log_append_time = header.is_log_append_time
    out: list[Record] = []
    p = 0
    n = len(data)
    try:
        for _ in range(header.records_count):
            length, p = _get_varint(data, p)
            end = p + length
            if length < 0 or end > n:
                raise CorruptRecordError("record length runs past the end of the batch")
            p += 1  # attributes
            ts_delta, p = _get_varint(data, p)
            offset_delta, p = _get_varint(data, p)
            key, p = _read_bytes(data, p, end)
            value, p = _read_bytes(data, p, end)
            nheaders, p = _get_varint(data, p)
            if nheaders < 0 or nheaders > end - p:
                raise CorruptRecordError("invalid record header count")
            headers = []
            for _h in range(nheaders):
                hkey, p = _read_bytes(data, p, end)
                if hkey is None:
                    raise CorruptRecordError("null record header key")
                hvalue, p = _read_bytes(data, p, end)
                headers.append((hkey.decode("utf-8"), hvalue))
            if p != end:
                raise CorruptRecordError("record length does not match its fields")
            ts = header.max_timestamp if log_append_time else header.base_timestamp + ts_delta
            out.append(Record(header.base_offset + offset_delta, ts, key, value, headers))
    except (IndexError, UnicodeDecodeError) as exc:
        raise CorruptRecordError(f"malformed record in batch at offset {header.base_offset}") from exc
    return out


def decode_records(buf) -> list[Record]:
    """Decode every record of every batch in `buf` (one batch or several concatenated,
    e.g. a Fetch response's records). CRCs are checked. Timestamps follow the batch's
    timestamp type (LogAppendTime: max_timestamp for all). For tests, tools, internal
    topics and the timestamp lookup of one batch; never on produce or fetch."""
    mv = _as_bytes_view(buf)
    out: list[Record] = []
    for pos, header in iter_batches(mv):
        out.extend(_decode_batch(mv, pos, header))
    return out


# --------------------------------------------------------------------------- the cleaner's view
#
# Compaction is the one reader of records inside the log (DESIGN.md, "The hot path"):
# it needs each record's key and offset, and rewrites batches from the records it keeps
# without decoding them into objects. These helpers keep that codec here, next to the
# builder and decoder, instead of in log/. A record is
#   length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
#   keyLength varint | key | valueLength varint | value | headers...
# with zig-zag varints; the loop below inlines the one- and two-byte varint cases.

put_varint = _put_varint
compress = _compress
decompress = _decompress


def _varint_raw(buf, p: int) -> tuple[int, int]:
    """A varint without the zig-zag step, and the position after it."""
    result = 0
    shift = 0
    while True:
        b = buf[p]
        p += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, p
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint too long")


def batch_payload(buf, pos: int, h: tuple) -> bytes:
    """The records of the batch at `pos` whose HEADER_STRUCT tuple is `h`, decompressed."""
    data = buf[pos + BATCH_HEADER_SIZE:pos + h[1] + LOG_OVERHEAD]
    codec = h[5] & CODEC_MASK
    if codec == CODEC_NONE:
        return data
    return _decompress(codec, data)


def scan_records(data, count: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
    """The layout of each of the `count` records of an uncompressed payload:
    (start, end, attributes position, end of the timestamp delta, timestamp delta,
    offset delta, key position, key length (-1: null key)). Raises CorruptRecordError
    when the records do not fill the payload exactly."""
    try:
        return _scan_records(data, count)
    except IndexError as exc:
        raise CorruptRecordError("record runs past the end of the batch") from exc


def _scan_records(data, count: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
    out = []
    append = out.append
    n = len(data)
    p = 0
    for _ in range(count):
        start = p
        b = data[p]
        if b < 0x80:
            v = b
            p += 1
        else:
            c = data[p + 1]
            if c < 0x80:
                v = (b & 0x7F) | (c << 7)
                p += 2
            else:
                v, p = _varint_raw(data, p)
        end = p + ((v >> 1) ^ -(v & 1))
        if end > n or end <= p:
            raise CorruptRecordError("record length runs past the end of the batch")
        q = p + 1
        b = data[q]
        if b < 0x80:
            v = b
            q += 1
        else:
            v, q = _varint_raw(data, q)
        tsd = (v >> 1) ^ -(v & 1)
        ts_end = q
        b = data[q]
        if b < 0x80:
            od = (b >> 1) ^ -(b & 1)
            q += 1
        else:
            c = data[q + 1]
            if c < 0x80:
                v = (b & 0x7F) | (c << 7)
                q += 2
            else:
                v, q = _varint_raw(data, q)
            od = (v >> 1) ^ -(v & 1)
        b = data[q]
        if b < 0x80:
            kl = (b >> 1) ^ -(b & 1)
            q += 1
        else:
            v, q = _varint_raw(data, q)
            kl = (v >> 1) ^ -(v & 1)
        if kl >= 0 and q + kl >= end:
            raise CorruptRecordError("record key runs past the end of the record")
        append((start, end, p, ts_end, tsd, od, q, kl))
        p = end
    if p != n:
        raise CorruptRecordError("record count does not match the batch payload")
    return out


def is_tombstone(data, key_pos: int, key_length: int) -> bool:
    """Whether the record whose key is at `key_pos` has a null value (length -1 is
    zig-zag 1, one byte)."""
    return data[key_pos + max(key_length, 0)] == 1


def rebuild_batch(h: tuple, attributes: int, base_ts: int, max_ts: int, count: int,
                  payload: bytes) -> bytes:
    """A v2 batch with the header fields of `h` (base offset, leader epoch, last offset
    delta, producer id/epoch/base sequence) and the given rest; `payload` uncompressed,
    compressed here with the codec of `attributes`. The offset range stays that of `h`
    (Kafka keeps a cleaned batch's last offset delta, so producer state survives)."""
    codec = attributes & CODEC_MASK
    if codec != CODEC_NONE and payload:
        payload = _compress(codec, payload)
    out = bytearray(BATCH_HEADER_SIZE + len(payload))
    _HEADER.pack_into(out, 0, h[0], MIN_BATCH_LENGTH + len(payload), h[2], MAGIC, 0,
                      attributes, h[6], base_ts, max_ts, h[9], h[10], h[11], count)
    out[BATCH_HEADER_SIZE:] = payload
    _UINT32.pack_into(out, CRC_OFFSET, _crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)


def empty_batch_like(h: tuple) -> bytes:
    """Header only, no records (Kafka's DefaultRecordBatch.writeEmptyHeader): keeps a
    producer's last sequence and offset range after its records were removed."""
    attributes = h[5] & (TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT)
    return rebuild_batch(h, attributes, h[8], h[8], 0, b"")


# --------------------------------------------------------------------------- control batches
#
# Transaction markers (KIP-98): a control batch (attributes TRANSACTIONAL | CONTROL) holding
# ONE record whose key is the control record key (int16 version 0, int16 type) and whose
# value is Kafka's EndTransactionMarker (int16 version 0, int32 coordinator epoch). The
# coordinator epoch lets a partition leader fence markers of a zombie coordinator.
# Decoding the one record is fine here: markers are tiny and rare, never the data path.

ABORT_MARKER = 0  # Kafka's ControlRecordType.ABORT
COMMIT_MARKER = 1  # ControlRecordType.COMMIT
UNKNOWN_CONTROL_TYPE = -1  # ControlRecordType.UNKNOWN (e.g. KRaft's LEADER_CHANGE = 2)
CONTROL_KEY_VERSION = 0
END_TXN_MARKER_VERSION = 0
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")


def build_control_batch(producer_id: int, producer_epoch: int, commit: bool,
                        coordinator_epoch: int, timestamp_ms: int) -> bytes:
    """One COMMIT or ABORT marker batch for `producer_id`: base offset 0 (the log stamps
    it), base sequence -1 (markers carry no sequence), uncompressed (Kafka never
    compresses markers it writes)."""
    key = _CONTROL_KEY.pack(CONTROL_KEY_VERSION, COMMIT_MARKER if commit else ABORT_MARKER)
    value = _END_TXN_VALUE.pack(END_TXN_MARKER_VERSION, coordinator_epoch)
    return build_batch([(key, value, [], timestamp_ms)], 0, timestamp_ms=timestamp_ms,
                       producer_id=producer_id, producer_epoch=producer_epoch,
                       base_sequence=NO_SEQUENCE, transactional=True, control=True)


def read_end_txn_marker(buf, pos: int, h) -> tuple[int, int]:
    """(control type, coordinator epoch) of the control batch at `pos` of `buf` whose
    header is `h` (a BatchHeader or the raw HEADER_STRUCT tuple). The type is
    ABORT_MARKER, COMMIT_MARKER or UNKNOWN_CONTROL_TYPE (no record — a batch the cleaner
    emptied —, an unknown type, or a record that does not parse); the coordinator epoch
    is -1 unless the type is a marker. Like Kafka's ControlRecordType.parse, a key
    version above 0 is read as version 0."""
    if h[12] <= 0:
        return UNKNOWN_CONTROL_TYPE, -1
    mv = _as_bytes_view(buf)
    try:
        header = h if isinstance(h, BatchHeader) else _new_header(BatchHeader, tuple(h))
        record = _decode_batch(mv, pos, header)[0]
    except (CorruptRecordError, IndexError):
        return UNKNOWN_CONTROL_TYPE, -1
    key, value = record.key, record.value
    if key is None or len(key) < _CONTROL_KEY.size:
        return UNKNOWN_CONTROL_TYPE, -1
    version, ctype = _CONTROL_KEY.unpack_from(key)
    if version < 0 or ctype not in (ABORT_MARKER, COMMIT_MARKER):
        return UNKNOWN_CONTROL_TYPE, -1
    if value is None or len(value) < _END_TXN_VALUE.size:
        return UNKNOWN_CONTROL_TYPE, -1
    value_version, coordinator_epoch = _END_TXN_VALUE.unpack_from(value)
    if value_version < 0:
        return UNKNOWN_CONTROL_TYPE, -1
    return ctype, coordinator_epoch


def control_record_type(buf, pos: int, h) -> int:
    """The marker type of the control batch at `pos`: ABORT_MARKER (0), COMMIT_MARKER (1),
    or UNKNOWN_CONTROL_TYPE (-1)."""
    return read_end_txn_marker(buf, pos, h)[0]
