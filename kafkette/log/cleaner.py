"""Log compaction: Kafka's LogCleaner for one partition log, `cleanup.policy=compact`.

`clean_log(plog, now_ms)` runs one cleaning pass when the log needs one and returns its
statistics (None when there is nothing to clean). kafkette.broker.log_maintenance calls
it every `log.cleaner.backoff.ms` for each compacted partition.

What a pass does (Kafka: LogCleanerManager.grabFilthiestCompactedLog, Cleaner.doClean):

1. Choose the range (`plan_cleaning`, cheap). The log is a clean prefix (cleaned before,
   up to the *cleaner checkpoint*, Kafka's cleaner-offset-checkpoint; here the small file
   `cleaner-offset-checkpoint` in the partition directory) followed by dirty segments.
   Cleanable segments are the closed segments from the start of the log up to the first
   one that is the active segment, reaches past the high watermark (Kafka: the last
   stable offset), or holds a batch younger than `min.compaction.lag.ms` (by the
   segment's max timestamp). The log is cleaned when dirty bytes / (clean + dirty bytes)
   of that range is above `min.cleanable.dirty.ratio` — strictly above, as in Kafka
   (`cleanableRatio > minCleanableRatio`) — or when the first batch of a dirty segment is
   older than `max.compaction.lag.ms` (Kafka's maxCompactionDelay / needCompactionNow).
2. Build the offset map (`build_cleaned_segments`, heavy): key -> offset of its latest
   record over the dirty range. Kafka stores 16-byte MD5 hashes in a fixed buffer
   (log.cleaner.dedupe.buffer.size); we use a dict of the key bytes, capped at
   OFFSET_MAP_MAX_ENTRIES: when it fills up, the pass stops at the end of that segment
   and the rest stays dirty for the next pass, as in Kafka.
3. Rewrite every cleanable segment from the start of the log (the clean prefix too: it
   may hold older values of keys rewritten since), in groups of consecutive segments
   totalling at most segment.bytes (Kafka's groupSegmentsBySize), each group into ONE
   new segment `<base of the group>.log.cleaned`. A record is kept unless its key has a
   later offset in the map, its key is null, or it is a tombstone whose delete horizon
   has passed. Offsets never change: as Kafka does for v2 batches
   (MemoryRecords.buildRetainedRecordsInto), a rewritten batch keeps its base offset,
   its last offset delta (so the producer's last sequence stays what it was), its
   producer id/epoch/base sequence and leader epoch; kept records keep their offset
   deltas, so a batch may have gaps (record count < last offset delta + 1, which every
   client handles). A batch whose records are all kept is copied byte for byte.
4. Swap (`swap_cleaned`, the only step that changes the PartitionLog, on the event-loop
   thread): `.cleaned` -> `.swap` (the commit point), delete the old segments, `.swap` ->
   `.log`, rebuild the indexes; then move the checkpoint to the end of the cleaned range.

Steps 1 and 4 touch the PartitionLog; step 2-3 only read segment files (through their
own file descriptors) and write `.cleaned` files, so they may move to a worker thread
later; `swap_cleaned` re-checks that the segments did not change meanwhile. Today
`clean_log` runs all of it synchronously on the caller's thread.

Tombstones (null value), KIP-534: a tombstone is kept at least delete.retention.ms after
the cleaning that first kept it. That cleaning sets the batch's "delete horizon"
attribute (bit 6) and stores now + delete.retention.ms in the batch's base timestamp,
re-encoding the records' timestamp deltas against it. A later cleaning at or after the
horizon drops the tombstones of that batch. As in Kafka, a tombstone only disappears
when a cleaning runs, i.e. when there is new dirty data (or max.compaction.lag.ms).

Records with a null key: Kafka rejects them at produce time for compacted topics
(LogValidator.validateKey: InvalidRecordException, error INVALID_RECORD), and its cleaner
drops any it finds (Cleaner.shouldRetainRecord counts it as an invalid message and does
not retain it). kafkette refuses them on produce too (PartitionLog.append, KIP-467
record errors); they still reach a compacted log that was not compacted when they were
written (cleanup.policy changed later), and the cleaner drops them like Kafka's.

Compressed batches are decompressed and, when something is removed, recompressed with
the same codec (cramjam: gzip, snappy, lz4 frame, zstd). Snappy is rewritten as a raw
snappy block, as librdkafka writes it, even when the producer used the Java client's
xerial framing; every Kafka reader accepts both.

Transactions (KIP-98, KIP-534), as Kafka's Cleaner and CleanedTransactionMetadata:
- Only offsets below the first unstable offset are cleaned (Kafka: the last stable
  offset bounds firstUncleanableOffset), so every transactional batch seen is decided.
- The aborted transactions come from the segments' .txnindex files (planned with the
  log). Batches of an aborted transaction are dropped and their keys are never put in
  the offset map; committed transactional batches are compacted like any other.
- An ABORT marker whose transaction still had batches in this pass is kept, and its
  index entry goes into the cleaned segment's `.txnindex`; a COMMIT marker whose
  transaction still had batches is kept. Once its transaction has no batch left, a
  marker is "discardable": the first pass that sees it so stamps a delete horizon on
  it (as for tombstones), and a pass at or after the horizon removes it — the
  delete.retention.ms grace during which a consumer that read the data can still read
  the marker. A marker that is its producer's last entry (no data batch since) is kept,
  emptied, so the producer's epoch stays in the log (Kafka's RETAIN_EMPTY).
- The cleaned `.txnindex` is swapped in with its `.log` (see swap_files).

What kafkette does differently from Kafka, for now:
- Empty batches: like Kafka (BatchRetention.RETAIN_EMPTY), an emptied batch is kept as
  a header without records when it is the last batch of a producer that is still in the
  log's producer state (kafkette.log.producer_state), so the producer's last sequence
  stays in the log and a rebuild of the producer state after a restart still finds it.
  Without a producer state the cleaner keeps the emptied batch that is its producer's
  last one within the rewritten range (at most one per producer id, never losing the
  last one).
- The old segment files are deleted at once, not renamed to `.deleted` and removed
  file.delete.delay.ms later: reads are synchronous on the event loop, so no reader can
  still be using them.
- The swap of all groups is recorded in a small manifest (`cleaner-swap-manifest`: the
  offset range each `.swap` replaces), written before the first `.swap` exists; Kafka
  derives the range from the swap segment's content, which cannot tell a trailing old
  segment whose records were all removed from the next, uncleaned one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from crc32c import crc32c as _crc32c

from kafkette.errors import CorruptRecordError
from kafkette.logging import get_logger
from kafkette.log.segment import INDEX_SUFFIX, INT32_MAX, LOG_SUFFIX, TIMEINDEX_SUFFIX, segment_file_name
from kafkette.log.txn_index import TXN_INDEX_SUFFIX, encode_entry
from kafkette.protocol import records as rec
from kafkette.log.fsutil import fsync_path as _fsync_dir

if TYPE_CHECKING:  # pragma: no cover
    from kafkette.log.partition_log import PartitionLog
    from kafkette.log.segment import LogSegment

log = get_logger("kafkette.cleaner")

CHECKPOINT_FILE = "cleaner-offset-checkpoint"
SWAP_MANIFEST_FILE = "cleaner-swap-manifest"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"

# The offset map holds the key bytes (Kafka: 16-byte hashes in 128 MiB by default, ~5M
# keys). 2M entries of small keys is roughly 200 MB of Python objects at worst.
OFFSET_MAP_MAX_ENTRIES = 2_000_000
READ_CHUNK = 4 * 1024 * 1024  # bytes per pread while reading a segment
WRITE_CHUNK = 1024 * 1024  # output is written in pieces of about this size

_HEADER_UNPACK = rec.HEADER_STRUCT.unpack_from
_O_BINARY = getattr(os, "O_BINARY", 0)

_HEADER_SIZE = rec.BATCH_HEADER_SIZE
_LOG_OVERHEAD = rec.LOG_OVERHEAD
_HORIZON_BIT = rec.DELETE_HORIZON_BIT


# --------------------------------------------------------------------------- checkpoint

def read_checkpoint(dir_path: str) -> int | None:
    """The cleaner checkpoint of a partition: the offset up to which it has been cleaned."""
    try:
        with open(os.path.join(dir_path, CHECKPOINT_FILE), "rb") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_checkpoint(dir_path: str, offset: int) -> None:
    # write + rename, no fsync: a lost update only means cleaning some data again.
    path = os.path.join(dir_path, CHECKPOINT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{offset}\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- planning

@dataclass
class SegmentRef:
    """What the heavy step needs of one segment (no PartitionLog access)."""

    segment: "LogSegment"  # identity, checked again by the swap
    base_offset: int
    next_offset: int  # the base offset of the following segment
    size: int
    path: str


@dataclass
class CleaningTask:
    dir: str
    now_ms: int
    first_dirty_offset: int
    segments: list[SegmentRef]  # every cleanable segment, from the start of the log
    first_dirty_index: int  # index in `segments` of the first segment with dirty data
    segment_bytes: int
    delete_retention_ms: int
    clean_bytes: int
    dirty_bytes: int
    dirty_ratio: float
    forced: bool  # max.compaction.lag.ms exceeded
    # producer id -> last offset of its last batch, from the log's producer state (None
    # without one: the cleaner then uses each producer's last batch in the cleaned range)
    active_producers: dict[int, int] | None = None
    # producer id -> epoch, for producers whose last entry is a marker (no data batch of
    # the current epoch): that marker is kept (emptied at most) for the epoch's sake
    marker_producers: dict[int, int] = field(default_factory=dict)
    # aborted transactions overlapping the cleanable range (from the .txnindex files),
    # by first offset
    aborted: list = field(default_factory=list)


@dataclass
class CleanedGroup:
    old: list[SegmentRef]
    cleaned_path: str
    bytes_written: int
    txn_index_path: str | None = None  # `<base>.txnindex.cleaned`, when it has entries

    @property
    def base_offset(self) -> int:
        return self.old[0].base_offset

    @property
    def end_offset(self) -> int:
        return self.old[-1].next_offset


@dataclass
class CleanedLog:
    task: CleaningTask
    end_offset: int  # new cleaner checkpoint
    groups: list[CleanedGroup] = field(default_factory=list)
    bytes_read: int = 0
    map_bytes_read: int = 0
    records_kept: int = 0
    records_removed: int = 0
    started: float = 0.0


def _first_batch_max_timestamp(seg: "LogSegment") -> int:
    """Kafka's LogSegment.getFirstBatchTimestamp (its first batch's max timestamp)."""
    if seg.size < _HEADER_SIZE:
        return -1
    head = os.pread(seg.fd, _HEADER_SIZE, 0)
    if len(head) < _HEADER_SIZE:
        return -1
    return _HEADER_UNPACK(head)[8]


def plan_cleaning(plog: "PartitionLog", now_ms: int,
                  high_watermark: int | None = None) -> CleaningTask | None:
    """Decide whether `plog` needs cleaning now and snapshot what the heavy step needs.
    Cheap (segment metadata, a checkpoint file, a few header reads); runs on the thread
    that owns the PartitionLog."""
    config = plog.config
    if not config.compact or plog.closed:
        return None
    segments = plog.segments
    if len(segments) < 2:
        return None
    log_start = plog.log_start_offset
    checkpoint = read_checkpoint(plog.dir)
    # Kafka resets a checkpoint outside [log start, log end] to the log start offset.
    if checkpoint is None or not log_start <= checkpoint <= plog.log_end_offset:
        first_dirty = log_start
    else:
        first_dirty = checkpoint
    # Only below the high watermark (the partition owner's; default the log end):
    # what a follower may still have to truncate is never compacted.
    hw = plog.log_end_offset if high_watermark is None else high_watermark
    # Nor what an ongoing transaction may still abort (Kafka: the last stable offset).
    first_unstable = plog.first_unstable_offset() if hasattr(plog, "first_unstable_offset") else None
    if first_unstable is not None and first_unstable < hw:
        hw = first_unstable
    min_lag = config.min_compaction_lag_ms
    cleanable: list = []
    for seg in segments[:-1]:  # never the active segment
        if seg.next_offset > hw:
            break
        if min_lag > 0 and seg.next_offset > first_dirty and seg.max_timestamp > now_ms - min_lag:
            break
        cleanable.append(seg)
    first_dirty_index = len(cleanable)
    clean_bytes = dirty_bytes = 0
    for i, seg in enumerate(cleanable):
        if seg.next_offset <= first_dirty:
            clean_bytes += seg.size
        else:
            if first_dirty_index == len(cleanable):
                first_dirty_index = i
            dirty_bytes += seg.size
    if dirty_bytes == 0:
        return None
    ratio = dirty_bytes / (clean_bytes + dirty_bytes)
    forced = False
    clean_until = now_ms - max(config.max_compaction_lag_ms, 0)
    if clean_until > 0:
        for seg in segments[:-1]:
            if seg.next_offset > first_dirty and seg.size:
                ts = _first_batch_max_timestamp(seg)
                if 0 < ts < clean_until:
                    forced = True
                    break
    if not (ratio > config.min_cleanable_dirty_ratio or forced):
        return None
    producer_state = getattr(plog, "producer_state", None)
    active = None
    marker_producers: dict[int, int] = {}
    if producer_state is not None:
        active = {pid: entry.last_data_offset for pid, entry in producer_state.producers.items()}
        marker_producers = {pid: entry.producer_epoch for pid, entry in producer_state.producers.items()
                            if entry.last_data_offset < 0}
    refs = []
    for i, seg in enumerate(cleanable):
        next_offset = segments[i + 1].base_offset
        refs.append(SegmentRef(seg, seg.base_offset, next_offset, seg.size, seg.log_path))
    # Kafka collects them per segment with collectAbortedTransactions; the cleanable
    # range is read here once (the txn indexes are small: one entry per abort).
    start, end = refs[0].base_offset, refs[-1].next_offset
    aborted = sorted((txn for seg in segments if seg.next_offset > start
                      for txn in seg.txn_index.entries()
                      if txn.last_offset >= start and txn.first_offset < end),
                     key=lambda t: t.first_offset)
    return CleaningTask(
        dir=plog.dir, now_ms=now_ms, first_dirty_offset=first_dirty, segments=refs,
        first_dirty_index=first_dirty_index, segment_bytes=config.segment_bytes,
        delete_retention_ms=config.delete_retention_ms, clean_bytes=clean_bytes,
        dirty_bytes=dirty_bytes, dirty_ratio=ratio, forced=forced, active_producers=active,
        marker_producers=marker_producers, aborted=aborted)


# --------------------------------------------------------------------------- reading

def _iter_file_batches(fd: int, size: int, path: str, validate: bool = True) -> Iterator[tuple[bytes, int, tuple]]:
    """(buffer, position in buffer, raw header tuple) for every batch of a segment file,
    READ_CHUNK bytes per pread. The whole file must be valid batches (closed segments
    were validated on open or written by this process): anything else raises
    CorruptRecordError and the pass is abandoned, as Kafka's cleaner gives up on a log
    it cannot read."""
    pos = 0
    crc = _crc32c
    while pos < size:
        chunk = os.pread(fd, min(READ_CHUNK, size - pos), pos)
        n = len(chunk)
        if n < _HEADER_SIZE:
            raise CorruptRecordError(f"truncated batch at position {pos} of {path}")
        p = 0
        view = memoryview(chunk)
        while p + _HEADER_SIZE <= n:
            h = _HEADER_UNPACK(chunk, p)
            batch_length = h[1]
            end = p + batch_length + _LOG_OVERHEAD
            if batch_length < rec.MIN_BATCH_LENGTH or h[3] != rec.MAGIC:
                raise CorruptRecordError(f"corrupt batch header at position {pos + p} of {path}")
            if end > n:
                break
            if validate and crc(view[p + rec.ATTRIBUTES_OFFSET:end]) != h[4]:
                raise CorruptRecordError(f"batch CRC mismatch at position {pos + p} of {path}")
            yield chunk, p, h
            p = end
        if p == 0:
            # One batch larger than the chunk: read exactly that batch.
            h = _HEADER_UNPACK(chunk, 0)
            total = h[1] + _LOG_OVERHEAD
            data = os.pread(fd, total, pos)
            if len(data) < total:
                raise CorruptRecordError(f"truncated batch at position {pos} of {path}")
            if validate and crc(memoryview(data)[rec.ATTRIBUTES_OFFSET:]) != h[4]:
                raise CorruptRecordError(f"batch CRC mismatch at position {pos} of {path}")
            yield data, 0, h
            p = total
        pos += p


# --------------------------------------------------------------------------- records
# Per-record work (this is the one place that looks inside batches); the record codec
# is protocol/records.py's (scan_records, rebuild_batch).

def _map_records(data, count: int, base_offset: int, min_offset: int) -> list[tuple[bytes, int]]:
    """(key, offset) of the keyed records of one batch's payload with offset >= min_offset."""
    return [(data[kp:kp + kl], base_offset + od)
            for _s, _e, _a, _t, _tsd, od, kp, kl in rec.scan_records(data, count)
            if kl >= 0 and base_offset + od >= min_offset]


def _filter_records(data, count: int, base_offset: int, offset_map: dict,
                    drop_tombstones: bool):
    """Which records of one batch's payload to keep. Returns (kept, removed, tombstones,
    max_ts_delta): kept is a list of (start, end, attributes position, timestamp delta
    end, timestamp delta) per kept record; tombstones says whether a kept record has a
    null value."""
    kept = []
    append = kept.append
    get = offset_map.get
    removed = 0
    tombstones = False
    max_tsd = None
    for start, end, attr_pos, ts_end, tsd, od, kp, kl in rec.scan_records(data, count):
        if kl < 0:
            # Null key: Kafka's cleaner drops it (Cleaner.shouldRetainRecord).
            removed += 1
            continue
        found = get(data[kp:kp + kl])
        if found is not None and base_offset + od < found:
            removed += 1
            continue
        if rec.is_tombstone(data, kp, kl):
            if drop_tombstones:
                removed += 1
                continue
            tombstones = True
        append((start, end, attr_pos, ts_end, tsd))
        if max_tsd is None or tsd > max_tsd:
            max_tsd = tsd
    return kept, removed, tombstones, max_tsd


# --------------------------------------------------------------------------- transactions

class _TxnTracker:
    """Kafka's CleanedTransactionMetadata: which transactional batches belong to aborted
    transactions, and which markers may go, while the cleaner walks the log in order.
    `aborted`: the aborted transactions (AbortedTxn) whose marker is at or after where
    the walk starts, by first offset."""

    def __init__(self, aborted):
        self._pending = list(aborted)
        self._next = 0
        self._aborted: dict[int, list] = {}  # producer id -> [AbortedTxn, saw a batch]
        self._committed: set[int] = set()  # producers with a (committed) batch seen
        self.index_entries: list = []  # aborts kept in the output: its .txnindex

    def _consume_up_to(self, offset: int) -> None:
        pending = self._pending
        while self._next < len(pending) and pending[self._next].first_offset <= offset:
            txn = pending[self._next]
            self._next += 1
            self._aborted.setdefault(txn.producer_id, [txn, False])

    def on_batch(self, h: tuple) -> bool:
        """A data batch; True when it belongs to an aborted transaction."""
        self._consume_up_to(h[0] + h[6])
        if not h[5] & rec.TRANSACTIONAL_BIT:
            return False
        state = self._aborted.get(h[9])
        if state is not None:
            state[1] = True
            return True
        self._committed.add(h[9])
        return False

    def on_control(self, buf, pos: int, h: tuple) -> bool:
        """A control batch; True when it may be discarded (its transaction has no batch
        left). An ABORT marker that is kept goes into `index_entries`."""
        self._consume_up_to(h[0] + h[6])
        if h[12] == 0:
            return True  # emptied by an earlier pass
        ctype = rec.control_record_type(buf, pos, h)
        pid = h[9]
        if ctype == rec.ABORT_MARKER:
            state = self._aborted.pop(pid, None)
            if state is not None and state[1]:
                self.index_entries.append(state[0])
                return False
            return True
        if ctype == rec.COMMIT_MARKER:
            if pid in self._committed:
                self._committed.discard(pid)
                return False
            return True
        return False


# --------------------------------------------------------------------------- cleaning

class _Output:
    """A `.cleaned` file being written, in pieces of about WRITE_CHUNK bytes."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o644)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.written = 0
        self.txn_index_path: str | None = None

    def add(self, data) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes >= WRITE_CHUNK:
            self._write()

    def _write(self) -> None:
        data = memoryview(b"".join(self.pending))
        done = 0
        while done < len(data):
            done += os.write(self.fd, data[done:])
        self.written += len(data)
        self.pending.clear()
        self.pending_bytes = 0

    def finish(self) -> None:
        self._write()
        os.fsync(self.fd)  # Kafka flushes the cleaned segment before the swap
        os.close(self.fd)
        self.fd = -1

    def abandon(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        _unlink(self.path)
        if self.txn_index_path:
            _unlink(self.txn_index_path)


def _write_cleaned_txn_index(dir_path: str, base_offset: int, entries) -> str:
    path = os.path.join(dir_path, segment_file_name(base_offset, TXN_INDEX_SUFFIX) + CLEANED_SUFFIX)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o644)
    try:
        os.write(fd, b"".join(encode_entry(e) for e in entries))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _group_segments(segments: list[SegmentRef], max_bytes: int) -> list[list[SegmentRef]]:
    """Kafka's Cleaner.groupSegmentsBySize: consecutive segments whose sizes add up to at
    most segment.bytes and whose offsets fit the int32 relative offsets of one segment."""
    groups: list[list[SegmentRef]] = []
    i = 0
    while i < len(segments):
        group = [segments[i]]
        size = segments[i].size
        i += 1
        while (i < len(segments) and size + segments[i].size <= max_bytes
               and segments[i].next_offset - 1 - group[0].base_offset <= INT32_MAX):
            group.append(segments[i])
            size += segments[i].size
            i += 1
        groups.append(group)
    return groups


def build_cleaned_segments(task: CleaningTask) -> CleanedLog | None:
    """The heavy part: build the offset map over the dirty range, then write one
    `.cleaned` file per group of segments. Reads segment files through its own file
    descriptors and touches no PartitionLog state, so it may run in another thread.
    On an error every `.cleaned` file written so far is deleted."""
    started = time.perf_counter()
    result = CleanedLog(task=task, end_offset=task.first_dirty_offset, started=started)
    fds: dict[int, int] = {}
    outputs: list[_Output] = []
    try:
        for ref in task.segments:
            fds[ref.base_offset] = os.open(ref.path, os.O_RDONLY | _O_BINARY)

        # 1. The offset map, over the dirty segments; stop after the segment that fills it.
        offset_map: dict[bytes, int] = {}
        # producer id -> last offset of its last batch: an emptied batch ending there is
        # kept (empty) so the producer's last sequence stays in the log.
        track_producers = task.active_producers is None
        producer_last: dict[int, int] = {} if track_producers else task.active_producers
        first_dirty = task.first_dirty_offset
        end_index = task.first_dirty_index
        # Kafka's buildOffsetMap: the keys of aborted transactions are never mapped.
        map_txns = _TxnTracker([t for t in task.aborted if t.last_offset >= first_dirty])
        for ref in task.segments[task.first_dirty_index:]:
            fd = fds[ref.base_offset]
            for buf, pos, h in _iter_file_batches(fd, ref.size, ref.path):
                last = h[0] + h[6]
                if track_producers and h[9] >= 0 and not h[5] & rec.CONTROL_BIT:
                    producer_last[h[9]] = last
                if last < first_dirty:
                    continue
                if h[5] & rec.CONTROL_BIT:
                    map_txns.on_control(buf, pos, h)
                    continue
                if map_txns.on_batch(h) or h[12] == 0:
                    continue
                try:
                    pairs = _map_records(rec.batch_payload(buf, pos, h), h[12], h[0], first_dirty)
                except (CorruptRecordError, IndexError) as exc:
                    # Records a producer sent malformed (the produce path trusts headers):
                    # the batch is copied as it is and its keys are not mapped.
                    log.warning("batch records unreadable, copied as they are",
                                base_offset=h[0], segment=ref.path, error=str(exc))
                    continue
                offset_map.update(pairs)
            result.map_bytes_read += ref.size
            end_index += 1
            if len(offset_map) >= OFFSET_MAP_MAX_ENTRIES:
                break
        to_clean = task.segments[:end_index]
        result.end_offset = to_clean[-1].next_offset

        # Producers' last batches in the clean prefix (headers only; the dirty part was
        # seen above).
        if track_producers and task.first_dirty_index:
            for ref in task.segments[:task.first_dirty_index]:
                for _buf, _pos, h in _iter_file_batches(fds[ref.base_offset], ref.size, ref.path, False):
                    if h[9] >= 0 and not h[5] & rec.CONTROL_BIT and producer_last.get(h[9], -1) < h[0] + h[6]:
                        producer_last[h[9]] = h[0] + h[6]

        # 2. Rewrite, one .cleaned file per group.
        now_ms = task.now_ms
        horizon = now_ms + task.delete_retention_ms
        txns = _TxnTracker(task.aborted)  # one for the whole pass, as Kafka's
        for group in _group_segments(to_clean, task.segment_bytes):
            out = _Output(os.path.join(task.dir, segment_file_name(group[0].base_offset, LOG_SUFFIX) + CLEANED_SUFFIX))
            outputs.append(out)
            txns.index_entries = []
            for ref in group:
                _clean_segment(fds[ref.base_offset], ref, out, offset_map, producer_last,
                               now_ms, horizon, result, txns, task.marker_producers)
                result.bytes_read += ref.size
            out.finish()
            if txns.index_entries:
                out.txn_index_path = _write_cleaned_txn_index(task.dir, group[0].base_offset,
                                                              txns.index_entries)
            # Kafka keeps the last modified time of the last segment of the group (file
            # mtime is what time-based retention falls back on for batches without
            # timestamps).
            try:
                st = os.stat(group[-1].path)
                os.utime(out.path, ns=(st.st_atime_ns, st.st_mtime_ns))
            except OSError:
                pass
            result.groups.append(CleanedGroup(group, out.path, out.written, out.txn_index_path))
    except BaseException:
        for out in outputs:
            out.abandon()
        raise
    finally:
        for fd in fds.values():
            os.close(fd)
    return result


def _clean_segment(fd: int, ref: SegmentRef, out: _Output, offset_map: dict, producer_last: dict,
                   now_ms: int, horizon: int, result: CleanedLog, txns: "_TxnTracker | None" = None,
                   marker_producers: dict | None = None) -> None:
    kept_total = removed_total = 0
    if txns is None:
        txns = _TxnTracker([])
    for buf, pos, h in _iter_file_batches(fd, ref.size, ref.path):
        attributes = h[5]
        count = h[12]
        size = h[1] + _LOG_OVERHEAD
        pid = h[9]
        if attributes & rec.CONTROL_BIT:
            discardable = txns.on_control(buf, pos, h)
            has_horizon = attributes & _HORIZON_BIT
            drop = discardable and has_horizon and h[7] <= now_ms
            last_of_producer = (pid >= 0 and marker_producers is not None
                                and marker_producers.get(pid) == h[10])
            if drop or (discardable and count == 0):
                if last_of_producer:
                    # Kafka's RETAIN_EMPTY: the producer's epoch stays in the log.
                    out.add(buf[pos:pos + size] if count == 0 else rec.empty_batch_like(h))
                else:
                    removed_total += count
                continue
            kept_total += count
            if discardable and not has_horizon:
                # KIP-534: the marker's transaction is gone; it stays for
                # delete.retention.ms more, then a later pass removes it.
                out.add(_with_delete_horizon(buf, pos, h, horizon))
            else:
                out.add(buf[pos:pos + size])
            continue
        if txns.on_batch(h):
            # Part of an aborted transaction: its records go (Kafka's cleaner).
            removed_total += count
            if pid >= 0 and producer_last.get(pid) == h[0] + h[6]:
                out.add(rec.empty_batch_like(h))
            continue
        if count == 0:  # an empty batch a previous cleaning kept for its producer
            if pid >= 0 and producer_last.get(pid) == h[0] + h[6]:
                out.add(buf[pos:pos + size])
            continue
        base_ts = h[7]
        has_horizon = attributes & _HORIZON_BIT
        try:
            data = rec.batch_payload(buf, pos, h)
            kept, removed, tombstones, max_tsd = _filter_records(
                data, count, h[0], offset_map, bool(has_horizon) and now_ms >= base_ts)
        except (CorruptRecordError, IndexError):
            out.add(buf[pos:pos + size])  # see the map pass: unreadable, copied as is
            kept_total += count
            continue
        removed_total += removed
        if not kept:
            if pid >= 0 and producer_last.get(pid) == h[0] + h[6]:
                out.add(rec.empty_batch_like(h))
            continue
        kept_total += len(kept)
        set_horizon = tombstones and not has_horizon
        if not removed and not set_horizon:
            out.add(buf[pos:pos + size])  # nothing changes: the batch as it is
            continue
        if attributes & rec.TIMESTAMP_TYPE_BIT:
            max_ts = h[8]  # LogAppendTime: every record's timestamp is the max timestamp
        else:
            max_ts = base_ts + max_tsd
        if set_horizon:
            payload = _shift_timestamps(data, kept, base_ts - horizon)
            attributes |= _HORIZON_BIT
            base_ts = horizon
        elif len(kept) == 1:
            payload = data[kept[0][0]:kept[0][1]]
        else:
            payload = b"".join([data[k[0]:k[1]] for k in kept])
        out.add(rec.rebuild_batch(h, attributes, base_ts, max_ts, len(kept), payload))
    result.records_kept += kept_total
    result.records_removed += removed_total


def _shift_timestamps(data, kept, shift: int) -> bytes:
    """KIP-534: the records' timestamp deltas re-encoded against a new base timestamp
    (the delete horizon); `kept` as _filter_records returns it."""
    body = bytearray()
    rec_buf = bytearray()
    for start, end, attr_pos, ts_end, tsd in kept:
        rec_buf.clear()
        rec_buf.append(data[attr_pos])
        rec.put_varint(rec_buf, tsd + shift)
        rec_buf += data[ts_end:end]
        rec.put_varint(body, len(rec_buf))
        body += rec_buf
    return bytes(body)


def _with_delete_horizon(buf, pos: int, h: tuple, horizon: int) -> bytes:
    """A control batch with its delete horizon set (Kafka sets it on a marker whose
    transaction is gone, as on a batch with tombstones)."""
    size = h[1] + _LOG_OVERHEAD
    try:
        data = rec.batch_payload(buf, pos, h)
        layout = rec.scan_records(data, h[12])
    except (CorruptRecordError, IndexError):
        return buf[pos:pos + size]
    kept = [(start, end, attr_pos, ts_end, tsd) for start, end, attr_pos, ts_end, tsd, _od, _kp, _kl in layout]
    payload = _shift_timestamps(data, kept, h[7] - horizon)
    return rec.rebuild_batch(h, h[5] | _HORIZON_BIT, horizon, h[8], h[12], payload)


def discard_cleaned(cleaned: CleanedLog) -> None:
    """Delete the `.cleaned` files of a pass that will not be swapped in."""
    for group in cleaned.groups:
        _unlink(group.cleaned_path)


# --------------------------------------------------------------------------- swap

def swap_cleaned(plog: "PartitionLog", cleaned: CleanedLog) -> bool:
    """Swap the cleaned segments into the log (PartitionLog.replace_segments) and move
    the cleaner checkpoint. Must run on the thread that owns the PartitionLog. Returns
    False (and deletes the `.cleaned` files) when the log changed under the cleaner:
    segments deleted, truncated or replaced."""
    segments = plog.segments
    ok = not plog.closed
    if ok:
        for group in cleaned.groups:
            for ref in group.old:
                if ref.segment not in segments or ref.segment.size != ref.size:
                    ok = False
    if ok:
        try:
            ok = plog.replace_segments([([r.segment for r in g.old], g.cleaned_path) for g in cleaned.groups])
        except BaseException:
            discard_cleaned(cleaned)  # what was not committed yet (after the commit: nothing)
            raise
    if not ok:
        discard_cleaned(cleaned)
        return False
    write_checkpoint(plog.dir, cleaned.end_offset)
    return True


def _swap_path(dir_path: str, base_offset: int) -> str:
    return os.path.join(dir_path, segment_file_name(base_offset, LOG_SUFFIX) + SWAP_SUFFIX)


def _txn_swap_path(dir_path: str, base_offset: int) -> str:
    return os.path.join(dir_path, segment_file_name(base_offset, TXN_INDEX_SUFFIX) + SWAP_SUFFIX)


def _txn_cleaned_path(dir_path: str, base_offset: int) -> str:
    return os.path.join(dir_path, segment_file_name(base_offset, TXN_INDEX_SUFFIX) + CLEANED_SUFFIX)


def _write_manifest(dir_path: str, ranges: list[tuple[int, int]], txn_bases=frozenset()) -> None:
    """One line per group: `base end`, plus ` txnindex` when the group brings a cleaned
    .txnindex (so that a finished rename of it is told from a group without one)."""
    path = os.path.join(dir_path, SWAP_MANIFEST_FILE)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o644)
    try:
        os.write(fd, "".join(f"{base} {end}{' txnindex' if base in txn_bases else ''}\n"
                             for base, end in ranges).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_manifest(dir_path: str) -> dict[int, int]:
    return {base: end for base, (end, _txn) in _read_manifest_entries(dir_path).items()}


def _read_manifest_entries(dir_path: str) -> dict[int, tuple[int, bool]]:
    out: dict[int, tuple[int, bool]] = {}
    try:
        with open(os.path.join(dir_path, SWAP_MANIFEST_FILE), "r") as f:
            for line in f:
                parts = line.split()
                if len(parts) in (2, 3) and parts[0].isdigit() and parts[1].isdigit():
                    out[int(parts[0])] = (int(parts[1]), parts[2:] == ["txnindex"])
    except FileNotFoundError:
        pass
    return out




def swap_files(dir_path: str, groups: list[tuple[int, int, str]]) -> None:
    """The file side of a swap, crash-safe. `groups`: (base offset, end offset, path of
    the `.cleaned` log file) — the cleaned file replaces every segment with a base offset
    in [base, end). Steps, each durable before the next:

    1. the manifest (base, end per group), fsynced;
    2. every `.cleaned` renamed to `.swap`; the directory fsynced. This is the commit:
       from here on a restart finishes the swap, before it a restart deletes the
       `.cleaned` files and keeps the old segments;
    3. per group: delete the old segments' files, rename `.swap` -> `.log`
       (`complete_swaps`, the same code recovery runs); the manifest goes last.
    Index files are not written here: opening the new segment rebuilds them.
    """
    txn_bases = {base for base, _end, _path in groups if os.path.exists(_txn_cleaned_path(dir_path, base))}
    _write_manifest(dir_path, [(base, end) for base, end, _ in groups], txn_bases)
    _fsync_dir(dir_path)
    for base, _end, cleaned_path in groups:
        # The cleaned .txnindex first: the .log.swap is the commit, and a .txnindex.swap
        # without one is rolled back on open.
        if base in txn_bases:
            os.replace(_txn_cleaned_path(dir_path, base), _txn_swap_path(dir_path, base))
        os.replace(cleaned_path, _swap_path(dir_path, base))
    _fsync_dir(dir_path)
    complete_swaps(dir_path)


def _segment_bases(names: list[str], suffix: str) -> list[int]:
    out = []
    for name in names:
        if len(name) == 20 + len(suffix) and name.endswith(suffix) and name[:20].isdigit():
            out.append(int(name[:20]))
    return sorted(out)


def _end_offset_of_file(path: str) -> int:
    """Last offset + 1 of the batches in a segment file (for a `.swap` without a
    manifest entry, which our swap never leaves: Kafka's way of finding the range)."""
    fd = os.open(path, os.O_RDONLY | _O_BINARY)
    try:
        end = 0
        for _buf, _pos, h in _iter_file_batches(fd, os.fstat(fd).st_size, path, False):
            end = h[0] + h[6] + 1
        return end
    finally:
        os.close(fd)


def complete_swaps(dir_path: str) -> int:
    """Finish every committed swap in a partition directory (`<base>.log.swap` files):
    delete the segments it replaces, then rename it to `<base>.log`. Idempotent: a crash
    in the middle is finished by the next call. Returns the number of swaps finished."""
    names = os.listdir(dir_path)
    swaps = _segment_bases(names, LOG_SUFFIX + SWAP_SUFFIX)
    manifest_path = os.path.join(dir_path, SWAP_MANIFEST_FILE)
    if not swaps:
        _unlink(manifest_path)
        return 0
    manifest = _read_manifest_entries(dir_path)
    logs = _segment_bases(names, LOG_SUFFIX)
    for base in swaps:
        swap = _swap_path(dir_path, base)
        end, has_txn = manifest.get(base, (None, False))
        if end is None:
            log.warning("cleaner swap file not in the manifest, using its last offset",
                        swap=swap)
            end = max(_end_offset_of_file(swap), base + 1)
        txn_swap = _txn_swap_path(dir_path, base)
        # With has_txn and no .txnindex.swap left, an earlier run already moved the
        # cleaned index in place: keep it.
        txn_moved = has_txn and not os.path.exists(txn_swap)
        for b in logs:
            if base <= b < end:
                for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                    _unlink(os.path.join(dir_path, segment_file_name(b, suffix)))
                if b != base or not txn_moved:
                    _unlink(os.path.join(dir_path, segment_file_name(b, TXN_INDEX_SUFFIX)))
                if b != base:
                    _unlink(os.path.join(dir_path, segment_file_name(b, LOG_SUFFIX)))
        if has_txn and not txn_moved:
            os.replace(txn_swap, os.path.join(dir_path, segment_file_name(base, TXN_INDEX_SUFFIX)))
        os.replace(swap, os.path.join(dir_path, segment_file_name(base, LOG_SUFFIX)))
    _fsync_dir(dir_path)
    _unlink(manifest_path)
    return len(swaps)


def recover_interrupted_swap(dir_path: str) -> None:
    """On opening a partition log (PartitionLog._open): roll back an uncommitted
    cleaning (delete `.cleaned` files) and finish a committed one (`.swap` files), as
    Kafka's LogLoader does with the same suffixes."""
    try:
        names = os.listdir(dir_path)
    except FileNotFoundError:
        return
    removed = False
    for name in names:
        if name[:20].isdigit() and name.endswith(CLEANED_SUFFIX):
            _unlink(os.path.join(dir_path, name))
            removed = True
        elif name[:20].isdigit() and name.endswith((INDEX_SUFFIX + SWAP_SUFFIX, TIMEINDEX_SUFFIX + SWAP_SUFFIX)):
            _unlink(os.path.join(dir_path, name))  # indexes are rebuilt from the log
            removed = True
        elif name[:20].isdigit() and name.endswith(TXN_INDEX_SUFFIX + SWAP_SUFFIX) and \
                segment_file_name(int(name[:20]), LOG_SUFFIX) + SWAP_SUFFIX not in names:
            _unlink(os.path.join(dir_path, name))  # its swap was never committed
            removed = True
    if removed:
        log.warning("leftovers of an interrupted log cleaning removed", dir=dir_path)
    n = complete_swaps(dir_path)
    if n:
        log.warning("interrupted cleaner swaps finished", swaps=n, dir=dir_path)


# --------------------------------------------------------------------------- entry point

def clean_log(plog: "PartitionLog", now_ms: int, high_watermark: int | None = None) -> dict | None:
    """One cleaning pass over `plog` if it needs one (see the module docstring). Returns
    statistics, or None when there was nothing to clean (or the log changed under it)."""
    task = plan_cleaning(plog, now_ms, high_watermark)
    if task is None:
        return None
    return finish_cleaning(plog, task, build_cleaned_segments(task))


def finish_cleaning(plog: "PartitionLog", task: CleaningTask,
                    cleaned: CleanedLog | None) -> dict | None:
    """The part of a pass that changes the PartitionLog: swap the cleaned segments in
    (on the event-loop thread) and return statistics, or None if nothing changed.
    `build_cleaned_segments` may have run in a worker thread before this."""
    if cleaned is None or not cleaned.groups:
        return None
    if plog.closed:
        discard_cleaned(cleaned)
        return None
    segments_before = len(plog.segments)
    if not swap_cleaned(plog, cleaned):
        return None
    seconds = time.perf_counter() - cleaned.started
    return {
        "bytes_read": cleaned.bytes_read,
        "bytes_written": sum(g.bytes_written for g in cleaned.groups),
        "records_kept": cleaned.records_kept,
        "records_removed": cleaned.records_removed,
        "seconds": round(seconds, 6),
        "mb_per_s": round(cleaned.bytes_read / 1e6 / seconds, 3) if seconds > 0 else 0.0,
        "map_bytes_read": cleaned.map_bytes_read,
        "dirty_ratio": round(task.dirty_ratio, 4),
        "forced": task.forced,
        "first_dirty_offset": task.first_dirty_offset,
        "end_offset": cleaned.end_offset,
        "segments_before": segments_before,
        "segments_after": len(plog.segments),
    }


__all__ = [
    "CHECKPOINT_FILE",
    "CleanedLog",
    "CleaningTask",
    "build_cleaned_segments",
    "clean_log",
    "complete_swaps",
    "discard_cleaned",
    "plan_cleaning",
    "read_checkpoint",
    "recover_interrupted_swap",
    "swap_cleaned",
    "swap_files",
    "write_checkpoint",
]
