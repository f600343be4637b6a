"""One log segment: `<base offset, 20 digits>.log` with its sparse `.index` and
`.timeindex`, in Kafka's on-disk layout.

- `.log`: RecordBatch v2 bytes exactly as produced (offsets and leader epoch stamped).
- `.index`: 8-byte big-endian entries (offset - base_offset: int32, file position:
  int32). As in Kafka the entry's offset is the LAST offset of the batch at that
  position, and one entry is added once more than index.interval.bytes of log have been
  written since the previous one.
- `.timeindex`: 12-byte entries (timestamp: int64, offset - base_offset: int32), added
  at the same cadence when the segment's max timestamp so far has grown; the offset is
  that of the batch holding the max timestamp (its last offset, Kafka's "shallow"
  offset).

What real Kafka does differently: it preallocates index files (segment.index.bytes,
10 MiB) and mmaps them, trimming on roll/close; we keep the entries in Python arrays
(bisect for lookups) and append them to plain files in batches, at flush/roll/close.
Index files are only an accelerator: recovery rebuilds them from the log, so entries
that were not yet written when a process died cost nothing but a rescan. Kafka also
serves fetches with sendfile (zero-copy); we os.pread whole batches into bytes.

Indexes of inactive segments are loaded lazily (Kafka's LazyIndex, KAFKA-7283): a broker
with many old segments only keeps the active ones' indexes in memory.

The aborted-transaction index (`.txnindex`, kafkette.log.txn_index) belongs to the
segment too: flushed, closed and deleted with it. Unlike the other two it cannot be
rebuilt from this segment alone (an entry needs the producer state at the abort), so
`recover()` leaves it alone and the PartitionLog rebuilds it with the producer state.
"""
from __future__ import annotations

import logging
import os
import struct
import sys
from array import array
from bisect import bisect_right
from typing import Iterator

from kafkette.errors import KafkaStorageError
from kafkette.log.txn_index import TXN_INDEX_SUFFIX, TransactionIndex
from kafkette.protocol import records as rec

log = logging.getLogger(__name__)

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"  # Kafka's suffix for files awaiting deletion

OFFSET_INDEX_ENTRY = struct.Struct(">ii")
TIME_INDEX_ENTRY = struct.Struct(">qi")
OFFSET_INDEX_ENTRY_SIZE = OFFSET_INDEX_ENTRY.size  # 8
TIME_INDEX_ENTRY_SIZE = TIME_INDEX_ENTRY.size  # 12

# base_offset, batch_length, last_offset_delta, base_timestamp, max_timestamp: the header
# fields needed to walk a segment, in one unpack (43 bytes; every batch is >= 61).
_WALK = struct.Struct(">qi11xiqq")
_WALK_SIZE = _WALK.size
_WALK_UNPACK = _WALK.unpack_from

INT32_MAX = 2**31 - 1
# Bytes read per pread while scanning for a batch (index entries are ~index.interval.bytes
# apart, so one read usually covers the whole walk) and while recovering a segment.
SCAN_CHUNK = 32 * 1024
RECOVERY_CHUNK = 1024 * 1024

_BIG_ENDIAN = sys.byteorder == "big"
_O_BINARY = getattr(os, "O_BINARY", 0)
_fdatasync = getattr(os, "fdatasync", os.fsync)


def segment_file_name(base_offset: int, suffix: str = LOG_SUFFIX) -> str:
    """Kafka's name: base offset zero-padded to 20 digits (Long.MAX_VALUE has 19)."""
    return f"{base_offset:020d}{suffix}"


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    written = os.write(fd, view)
    while written < len(view):
        written += os.write(fd, view[written:])


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _rewrite_file(path: str, data: bytes, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o644)
    try:
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _append_file(path: str, data, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _O_BINARY, 0o644)
    try:
        if data:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
            except OSError:
                # A partial entry (a full disk) would shift every later one: cut back,
                # the caller keeps the entries pending and writes them again.
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass
                raise
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def iter_file_batches(fd: int, start: int, end: int, chunk: int = RECOVERY_CHUNK) -> Iterator[tuple[int, rec.BatchHeader]]:
    """Yield (file position, header) for each valid batch (length, magic, CRC) in
    [start, end) of a segment file, reading in chunks; stops silently at the first
    torn or corrupt batch, so the caller's last (position + size) is the valid end."""
    pos = start
    need = chunk
    while pos < end:
        data = os.pread(fd, min(max(chunk, need), end - pos), pos)
        if not data:
            return
        valid, batches = rec.scan_valid_prefix(data)
        for p, header in batches:
            yield pos + p, header
        chunk_end = pos + len(data)
        pos += valid
        if valid == len(data):
            need = chunk
            continue
        if chunk_end >= end:
            return  # invalid or torn batch at pos, and nothing after it
        if valid:
            need = chunk  # re-read from the first batch the chunk cut in two
            continue
        # The first batch of this chunk is either corrupt or longer than the chunk.
        if len(data) >= rec.LOG_OVERHEAD:
            batch_length = struct.unpack_from(">i", data, rec.BATCH_LENGTH_OFFSET)[0]
            size = batch_length + rec.LOG_OVERHEAD
            if batch_length >= rec.MIN_BATCH_LENGTH and len(data) < size <= end - pos:
                need = size
                continue
        return


class LogSegment:
    """A segment: an open fd on the .log file, its size, and its sparse indexes.

    Single-threaded; the owning PartitionLog decides when to roll, flush and recover.
    """

    __slots__ = (
        "dir", "base_offset", "fd", "size", "next_offset", "max_timestamp",
        "offset_of_max_timestamp", "rolling_base_ms", "dirty",
        "_idx_rel", "_idx_pos", "_ts", "_ts_rel", "_loaded",
        "_pending_index", "_pending_timeindex", "_bytes_since_index", "_closed",
        "_interval", "_index_dirty", "txn_index",
    )

    def __init__(self, dir_path: str, base_offset: int, fd: int, size: int, index_interval_bytes: int = 4096,
                 txn_index_exists: bool | None = False):
        self.dir = dir_path
        self.base_offset = base_offset
        self.fd = fd
        self.size = size
        self.next_offset = base_offset  # last offset + 1 of the data in this segment
        self.max_timestamp = rec.NO_TIMESTAMP
        self.offset_of_max_timestamp = -1
        # segment.ms is measured from here (see PartitionLog._should_roll).
        self.rolling_base_ms: int | None = None
        self.dirty = False  # bytes (or index entries) written since the last fsync
        self._idx_rel = array("i")
        self._idx_pos = array("i")
        self._ts = array("q")
        self._ts_rel = array("i")
        self._loaded = True
        self._pending_index = bytearray()
        self._pending_timeindex = bytearray()
        self._bytes_since_index = 0
        self._closed = False
        self._interval = index_interval_bytes  # index.interval.bytes (updated on append)
        self._index_dirty = False  # index entries written or pending but not fsynced
        self.txn_index = TransactionIndex(
            os.path.join(dir_path, segment_file_name(base_offset, TXN_INDEX_SUFFIX)), base_offset,
            txn_index_exists)

    # --- paths ---------------------------------------------------------------------
    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, segment_file_name(self.base_offset, LOG_SUFFIX))

    @property
    def index_path(self) -> str:
        return os.path.join(self.dir, segment_file_name(self.base_offset, INDEX_SUFFIX))

    @property
    def timeindex_path(self) -> str:
        return os.path.join(self.dir, segment_file_name(self.base_offset, TIMEINDEX_SUFFIX))

    @property
    def txn_index_path(self) -> str:
        return self.txn_index.path

    def __repr__(self) -> str:
        return f"LogSegment(base_offset={self.base_offset}, size={self.size}, next_offset={self.next_offset})"

    # --- creation / opening ----------------------------------------------------------
    @classmethod
    def create(cls, dir_path: str, base_offset: int, index_interval_bytes: int = 4096,
               now_ms: int | None = None) -> "LogSegment":
        """A new empty segment; any stale files with the same base offset are replaced."""
        path = os.path.join(dir_path, segment_file_name(base_offset, LOG_SUFFIX))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | _O_BINARY, 0o644)
        seg = cls(dir_path, base_offset, fd, 0, index_interval_bytes)
        for p in (seg.index_path, seg.timeindex_path):
            _rewrite_file(p, b"", fsync=False)
        seg.txn_index.reset()  # a stale .txnindex of an earlier segment at this offset
        seg.rolling_base_ms = now_ms
        return seg

    @classmethod
    def open_existing(cls, dir_path: str, base_offset: int, index_interval_bytes: int = 4096,
                      txn_index_exists: bool | None = None) -> "LogSegment":
        """Open the .log file; the caller then calls load() or recover().
        `txn_index_exists`: whether a .txnindex is there (None: look)."""
        path = os.path.join(dir_path, segment_file_name(base_offset, LOG_SUFFIX))
        fd = os.open(path, os.O_RDWR | os.O_APPEND | _O_BINARY)
        seg = cls(dir_path, base_offset, fd, os.fstat(fd).st_size, index_interval_bytes, txn_index_exists)
        seg._loaded = False
        return seg

    def _index_files_sane(self, next_offset: int | None) -> bool:
        """Kafka's index sanity check: whole entries, and the last entry inside the log.
        Only the last entries are read, so opening an old segment costs two small preads."""
        max_rel = None if next_offset is None else next_offset - self.base_offset
        try:
            isize = os.path.getsize(self.index_path)
            tsize = os.path.getsize(self.timeindex_path)
        except FileNotFoundError:
            return False
        if isize % OFFSET_INDEX_ENTRY_SIZE or tsize % TIME_INDEX_ENTRY_SIZE:
            return False
        if isize:
            with open(self.index_path, "rb") as f:
                f.seek(isize - OFFSET_INDEX_ENTRY_SIZE)
                rel, pos = OFFSET_INDEX_ENTRY.unpack(f.read(OFFSET_INDEX_ENTRY_SIZE))
            if rel < 0 or pos < 0 or pos >= self.size or (max_rel is not None and rel >= max_rel):
                return False
        if tsize:
            with open(self.timeindex_path, "rb") as f:
                f.seek(tsize - TIME_INDEX_ENTRY_SIZE)
                ts, rel = TIME_INDEX_ENTRY.unpack(f.read(TIME_INDEX_ENTRY_SIZE))
            if rel < 0 or (max_rel is not None and rel >= max_rel) or self.size == 0:
                return False
            self.max_timestamp = ts
            self.offset_of_max_timestamp = self.base_offset + rel
        elif self.size and next_offset is not None:
            # An inactive non-empty segment always ends with a time index entry (added on
            # roll); without one we would not know its max timestamp.
            return False
        return True

    def load_inactive(self, next_offset: int, now_ms: int) -> None:
        """Open an inactive segment trusted to be complete (clean shutdown, or below the
        recovery point): sanity-check the indexes, rebuild them if needed, load lazily."""
        self.next_offset = next_offset
        if not self._index_files_sane(next_offset):
            log.warning("rebuilding indexes of %s", self.log_path)
            self.recover(truncate=False, now_ms=now_ms, inactive=True)
            self.next_offset = max(self.next_offset, next_offset)
            self._unload()
        if self.rolling_base_ms is None:
            self.rolling_base_ms = now_ms

    def load_active(self, now_ms: int) -> int:
        """Open the active segment after a clean shutdown: load the indexes, then validate
        the batches after the last index entry (a few KiB). Falls back to a full
        recover() when anything does not line up. Returns bytes truncated."""
        if not self._index_files_sane(None):
            return self.recover(truncate=True, now_ms=now_ms)
        self._load()
        start_pos, expect_last = 0, None
        if self._idx_pos:
            start_pos = self._idx_pos[-1]
            expect_last = self.base_offset + self._idx_rel[-1]
        ts_max, ts_off = self.max_timestamp, self.offset_of_max_timestamp
        end = start_pos
        next_offset = self.base_offset
        first = True
        for pos, h in iter_file_batches(self.fd, start_pos, self.size):
            last = h.base_offset + h.last_offset_delta
            if first and expect_last is not None and last != expect_last:
                log.warning("index of %s does not match the log; recovering", self.log_path)
                return self.recover(truncate=True, now_ms=now_ms)
            first = False
            if h.max_timestamp > ts_max:
                ts_max, ts_off = h.max_timestamp, last
            next_offset = last + 1
            end = pos + h.size
        if end != self.size:
            return self.recover(truncate=True, now_ms=now_ms)
        if expect_last is not None:
            next_offset = max(next_offset, expect_last + 1)
        self.next_offset = next_offset
        self.max_timestamp, self.offset_of_max_timestamp = ts_max, ts_off
        # Bytes after the last index entry count towards the next one, as before the restart.
        self._bytes_since_index = self.size - start_pos if self._idx_pos else self.size
        self._set_rolling_base(now_ms)
        return 0

    def recover(self, *, truncate: bool, now_ms: int, inactive: bool = False) -> int:
        """Validate every batch (length, magic, CRC, increasing offsets), rebuild both
        indexes from scratch and rewrite their files. With truncate=True a torn or corrupt
        tail is cut off (os.ftruncate); returns the number of bytes removed. Kafka's
        LogSegment.recover does the same (it also rebuilds the producer state, which
        comes with idempotence here)."""
        self._idx_rel, self._idx_pos = array("i"), array("i")
        self._ts, self._ts_rel = array("q"), array("i")
        self._pending_index.clear()
        self._pending_timeindex.clear()
        self._loaded = True
        self._bytes_since_index = 0
        self.max_timestamp, self.offset_of_max_timestamp = rec.NO_TIMESTAMP, -1
        expected = self.base_offset
        end = 0
        for pos, h in iter_file_batches(self.fd, 0, self.size):
            last = h.base_offset + h.last_offset_delta
            if h.base_offset < expected or h.last_offset_delta < 0 or last - self.base_offset > INT32_MAX:
                break  # offsets going backwards: not data this log wrote
            self._track(pos, h.size, last, h.max_timestamp)
            expected = last + 1
            end = pos + h.size
        truncated = self.size - end
        if truncated:
            if truncate:
                log.warning("truncating %d bytes of torn/corrupt data at position %d of %s",
                            truncated, end, self.log_path)
                os.ftruncate(self.fd, end)
                self.size = end
                self.dirty = True
            else:
                log.warning("corrupt data at position %d of inactive segment %s (left in place)",
                            end, self.log_path)
        self.next_offset = expected
        if inactive:
            self._maybe_append_time_entry()  # the entry on_roll() would have added
        _rewrite_file(self.index_path, bytes(self._pending_index), fsync=False)
        _rewrite_file(self.timeindex_path, bytes(self._pending_timeindex), fsync=False)
        self._pending_index.clear()
        self._pending_timeindex.clear()
        self._index_dirty = True
        self._set_rolling_base(now_ms)
        return truncated if truncate else 0

    def _set_rolling_base(self, now_ms: int) -> None:
        # Kafka measures segment.ms from the first batch's timestamp once a segment has
        # data (rollingBasedTimestamp). After a restart we do the same, clamped to now
        # so a client clock far in the past or future cannot force an instant roll.
        if self.size >= rec.BATCH_HEADER_SIZE:
            head = os.pread(self.fd, _WALK_SIZE, 0)
            if len(head) == _WALK_SIZE:
                ts = _WALK_UNPACK(head)[4]
                self.rolling_base_ms = ts if 0 <= ts <= now_ms else now_ms
                return
        self.rolling_base_ms = None  # set by the first append

    def _load(self) -> None:
        data = _read_file(self.index_path)
        data = data[: len(data) - len(data) % OFFSET_INDEX_ENTRY_SIZE]
        both = array("i")
        both.frombytes(data)
        if not _BIG_ENDIAN:
            both.byteswap()
        self._idx_rel, self._idx_pos = both[0::2], both[1::2]
        tdata = _read_file(self.timeindex_path)
        tdata = tdata[: len(tdata) - len(tdata) % TIME_INDEX_ENTRY_SIZE]
        ts, rel = array("q"), array("i")
        for t, r in TIME_INDEX_ENTRY.iter_unpack(tdata):
            ts.append(t)
            rel.append(r)
        self._ts, self._ts_rel = ts, rel
        if ts:
            self.max_timestamp, self.offset_of_max_timestamp = ts[-1], self.base_offset + rel[-1]
        self._loaded = True

    def _unload(self) -> None:
        if not self._pending_index and not self._pending_timeindex:
            self._idx_rel, self._idx_pos = array("i"), array("i")
            self._ts, self._ts_rel = array("q"), array("i")
            self._loaded = False

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._load()

    # --- append ----------------------------------------------------------------------
    def _track(self, pos: int, size: int, last_offset: int, max_ts: int) -> None:
        """Index bookkeeping for one batch at file position `pos` (Kafka's
        LogSegment.append rule: update the max timestamp, then add entries if more than
        index.interval.bytes were written since the last entry)."""
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
            self.offset_of_max_timestamp = last_offset
        if self._bytes_since_index > self._interval:
            rel = last_offset - self.base_offset
            self._idx_rel.append(rel)
            self._idx_pos.append(pos)
            self._pending_index += OFFSET_INDEX_ENTRY.pack(rel, pos)
            self._index_dirty = True
            self._maybe_append_time_entry()
            self._bytes_since_index = 0
        self._bytes_since_index += size

    def _maybe_append_time_entry(self) -> None:
        ts = self.max_timestamp
        if ts > (self._ts[-1] if self._ts else rec.NO_TIMESTAMP):
            rel = self.offset_of_max_timestamp - self.base_offset
            self._ts.append(ts)
            self._ts_rel.append(rel)
            self._pending_timeindex += TIME_INDEX_ENTRY.pack(ts, rel)
            self._index_dirty = True

    def append(self, buf, metas: list[tuple[int, int, int, int]], index_interval_bytes: int, now_ms: int) -> None:
        """Write `buf` (whole, stamped batches) with one write and index it.
        metas: (position in buf, size, last offset, max timestamp) per batch."""
        self._ensure_loaded()
        start = self.size
        try:
            _write_all(self.fd, buf)
        except OSError:
            # Never leave half a request in the log (a full disk takes what fits): cut
            # back to where it was. The caller turns the error into KAFKA_STORAGE_ERROR
            # (kafkette.log.log_dirs).
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                pass
            raise
        if self.rolling_base_ms is None:
            self.rolling_base_ms = now_ms
        self._interval = index_interval_bytes
        track = self._track
        for p, size, last, max_ts in metas:
            track(start + p, size, last, max_ts)
        self.size = start + len(buf)
        self.next_offset = metas[-1][2] + 1
        self.dirty = True

    def on_roll(self) -> None:
        """The segment becomes inactive: add a final time index entry so its max
        timestamp survives a restart (Kafka: onBecomeInactiveSegment), write out the
        pending index entries, and drop the in-memory indexes until needed."""
        self._ensure_loaded()
        self._maybe_append_time_entry()
        self._write_pending(fsync=False)
        self._unload()
        self.txn_index.unload()

    def _write_pending(self, fsync: bool) -> None:
        fsync = fsync and self._index_dirty
        if self._pending_index or fsync:
            _append_file(self.index_path, self._pending_index, fsync)
            self._pending_index.clear()
        if self._pending_timeindex or fsync:
            _append_file(self.timeindex_path, self._pending_timeindex, fsync)
            self._pending_timeindex.clear()
        if fsync:
            self._index_dirty = False

    def flush(self) -> None:
        """fsync the log, then the index files (only those with new entries)."""
        if self.dirty:
            _fdatasync(self.fd)
            self.dirty = False
        self._write_pending(fsync=True)
        self.txn_index.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._write_pending(fsync=False)
        os.close(self.fd)
        self._closed = True

    def abandon(self) -> None:
        """Close the fd without writing anything (its log dir went offline)."""
        if self._closed:
            return
        self._closed = True
        try:
            os.close(self.fd)
        except OSError:
            pass

    def delete_files(self) -> None:
        self.close()
        for p in (self.log_path, self.index_path, self.timeindex_path, self.txn_index.path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    # --- deletion (retention, DeleteRecords) -----------------------------------------
    def delete(self) -> None:
        """Remove the segment's files for retention / DeleteRecords, Kafka's way: rename
        them with the `.deleted` suffix (the .log first: from that rename on, a restart
        no longer sees the segment; leftovers are removed by the next open), then unlink.
        Kafka unlinks only after file.delete.delay.ms (default 60 s) so that reads in
        flight on other threads can finish; here every read runs synchronously on the
        one event loop and copies its bytes out, so nothing can still be reading and the
        delay is taken as 0."""
        self.close()
        renamed = []
        for p in (self.log_path, self.index_path, self.timeindex_path, self.txn_index.path):
            try:
                os.rename(p, p + DELETED_SUFFIX)
            except FileNotFoundError:
                continue
            renamed.append(p + DELETED_SUFFIX)
        for p in renamed:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def last_modified_ms(self) -> int:
        """The .log file's mtime: Kafka's LogSegment.largestTimestamp falls back to it
        when no batch carries a timestamp (max timestamp -1)."""
        return os.fstat(self.fd).st_mtime_ns // 1_000_000

    # --- lookups -----------------------------------------------------------------------
    def index_entries(self) -> list[tuple[int, int]]:
        """(absolute offset, position) of every offset index entry (for tests/tools)."""
        self._ensure_loaded()
        return [(self.base_offset + r, p) for r, p in zip(self._idx_rel, self._idx_pos)]

    def time_index_entries(self) -> list[tuple[int, int]]:
        """(timestamp, absolute offset) of every time index entry (for tests/tools)."""
        self._ensure_loaded()
        return [(t, self.base_offset + r) for t, r in zip(self._ts, self._ts_rel)]

    def _index_floor_position(self, offset: int) -> int:
        i = bisect_right(self._idx_rel, offset - self.base_offset) - 1
        return self._idx_pos[i] if i >= 0 else 0

    def find_position(self, offset: int) -> int | None:
        """File position of the first batch whose last offset >= `offset` (the batch
        containing it, or the next one after a gap), or None if there is none here.
        Index lookup, then a walk over batch headers from that position, reading
        SCAN_CHUNK bytes at a time (Kafka: OffsetIndex.lookup + FileRecords.searchForOffset)."""
        self._ensure_loaded()
        for pos, base, lod, _max_ts in self._walk(self._index_floor_position(offset)):
            if base + lod >= offset:
                return pos
        return None

    def _walk(self, pos: int):
        """(position, base offset, last offset delta, max timestamp) of each batch
        from file position `pos`, reading headers SCAN_CHUNK bytes at a time."""
        size, fd = self.size, self.fd
        while pos < size:
            chunk = os.pread(fd, min(SCAN_CHUNK, size - pos), pos)
            n = len(chunk)
            if n < _WALK_SIZE:
                return
            p = 0
            while p + _WALK_SIZE <= n:
                base, batch_length, lod, _bts, max_ts = _WALK_UNPACK(chunk, p)
                if batch_length < rec.MIN_BATCH_LENGTH:
                    raise KafkaStorageError(f"corrupt batch header at position {pos + p} of {self.log_path}")
                yield pos + p, base, lod, max_ts
                p += batch_length + rec.LOG_OVERHEAD
            pos += p

    def read_from(self, pos: int, max_bytes: int, limit_offset: int, min_one: bool,
                  view: bool = False) -> tuple[bytes, bool]:
        """Whole batches from file position `pos`: as many as fit in max_bytes (at least
        one if min_one, KIP-74), stopping before the first batch whose last offset is
        >= limit_offset (the high watermark). Returns (data, reached_segment_end).
        One pread of up to max_bytes, a walk over the headers in memory, and a second
        pread only when the first batch alone is larger than max_bytes.
        view=True (Fetch) trims the read to whole batches with a memoryview instead of
        a bytes slice, which copies nearly all of it: Fetch hands the bytes read to the
        transport as they are (Kafka: sendfile from the segment, no copy at all)."""
        avail = self.size - pos
        if avail <= 0:
            return b"", True
        data = os.pread(self.fd, min(max(max_bytes, _WALK_SIZE), avail), pos)
        n = len(data)
        p = 0
        limited = False
        while p + _WALK_SIZE <= n:
            base, batch_length, lod, _bts, _mts = _WALK_UNPACK(data, p)
            if base + lod >= limit_offset:
                limited = True
                break
            size = batch_length + rec.LOG_OVERHEAD
            if batch_length < rec.MIN_BATCH_LENGTH:
                raise KafkaStorageError(f"corrupt batch header at position {pos + p} of {self.log_path}")
            if p + size > n or p + size > max_bytes:
                if p == 0 and min_one:
                    if size > n:
                        data = os.pread(self.fd, size, pos)
                    else:
                        data = memoryview(data)[:size] if view else data[:size]
                    return data, size == avail
                break
            p += size
        if p != n:
            data = memoryview(data)[:p] if view else data[:p]
        return data, (not limited and p == avail)

    def read_batch_at(self, pos: int) -> tuple[bytes, rec.BatchHeader]:
        head = os.pread(self.fd, rec.BATCH_HEADER_SIZE, pos)
        header = rec.parse_header(head)
        return os.pread(self.fd, header.size, pos), header

    def find_timestamp(self, target_ms: int, start_offset: int) -> int | None:
        """File position of the first batch with max_timestamp >= target_ms and last
        offset >= start_offset, or None. The time index gives the offset to start the
        walk from (largest entry with timestamp <= target), the offset index its position."""
        self._ensure_loaded()
        i = bisect_right(self._ts, target_ms) - 1
        from_offset = self.base_offset + self._ts_rel[i] if i >= 0 else self.base_offset
        pos = self.find_position(max(from_offset, start_offset))
        if pos is None:
            return None
        for pos, base, lod, max_ts in self._walk(pos):
            if max_ts >= target_ms and base + lod >= start_offset:
                return pos
        return None
