"""The log of one partition: a directory of segments, Kafka's `UnifiedLog` in miniature.

Single-threaded: one asyncio event loop owns it. File IO is plain blocking os.write /
os.pread on raw fds, which for page-cache-backed appends and reads is a few microseconds;
fsync only happens when flush.messages / flush.ms ask for it, or on close.

Hot paths (DESIGN.md, "The hot path: batches stay bytes"):
- append: per batch one header unpack + one CRC-32C + two pack_into (offset, leader
  epoch), then ONE os.write for the whole request. Records are never looked at. Real
  Kafka (LogValidator) iterates the records of every batch, and decompresses compressed
  ones, to check offsets, timestamps and keys of compacted topics; we trust the header
  (count vs offset range) and let consumers see what producers wrote.
- read: index lookup + a header walk over a few KiB + os.pread of whole batches.

Durability follows Kafka's model: data goes to the page cache, and replication (later)
is what protects acknowledged writes; fsync only per flush.messages / flush.ms. A
`recovery-point` file records the offset up to which everything has been fsynced; after
an unclean shutdown every segment from the one holding that offset on is validated batch
by batch and a torn tail is cut off. Kafka flushes rolled segments in a background
thread, which moves its recovery point forward at each roll; we have no threads in the
core, so with the default config an unclean restart re-validates everything written
since the last flush (CRC-32C runs at GB/s, so this is seconds even for large logs).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections import deque
from bisect import bisect_right
from dataclasses import dataclass
from typing import Mapping, NamedTuple

from kafkette.clock import SystemClock
from kafkette.errors import (
    CorruptRecordError,
    ErrorCode,
    InvalidConfigError,
    InvalidRecordError,
    KafkaError,
    KafkaStorageError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    RecordValidationError,
)
from kafkette.log.segment import (
    INDEX_SUFFIX,
    INT32_MAX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    LogSegment,
)
from kafkette.log.leader_epoch import LeaderEpochCache
from kafkette.log.producer_state import (
    CompletedTxn,
    ProducerStateEntry,
    ProducerStateManager,
    iter_stored_headers,
)
from kafkette.log.txn_index import TXN_INDEX_SUFFIX, AbortedTxn, CorruptTxnIndexError
from kafkette.logging import get_logger
from kafkette.protocol import records as rec
from kafkette.log.fsutil import fsync_path as _fsync_dir

log = logging.getLogger(__name__)
# The replication primitives (follower append, truncation, leader epochs) log through
# structlog; configure_logging renders the stdlib lines above the same way.
slog = get_logger(__name__)

CLEAN_SHUTDOWN_FILE = ".kafkette_clean_shutdown"
# Kafka keeps both in per-log-dir checkpoint files (log-start-offset-checkpoint,
# recovery-point-offset-checkpoint); one small text file per partition is simpler here.
LOG_START_OFFSET_FILE = "log-start-offset"
RECOVERY_POINT_FILE = "recovery-point"

TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
_LONG_MAX = 2**63 - 1


@dataclass
class LogConfig:
    """The topic-level settings the log store uses, with Kafka's defaults."""

    segment_bytes: int = 1073741824  # segment.bytes (1 GiB)
    segment_ms: int = 7 * 24 * 3600 * 1000  # segment.ms (7 days)
    index_interval_bytes: int = 4096  # index.interval.bytes
    max_message_bytes: int = 1048588  # max.message.bytes (largest batch accepted)
    flush_messages: int | None = None  # flush.messages (None: Kafka's Long.MAX_VALUE, never)
    flush_ms: int | None = None  # flush.ms (None: never)
    message_timestamp_type: str = "CreateTime"  # message.timestamp.type
    # Retention (enforced by kafkette.log.retention) and compaction (kafkette.log.cleaner).
    retention_ms: int = 7 * 24 * 3600 * 1000  # retention.ms (-1: keep forever)
    retention_bytes: int = -1  # retention.bytes (-1: no size limit)
    cleanup_policy: tuple[str, ...] = ("delete",)  # cleanup.policy: delete, compact or both
    delete_retention_ms: int = 24 * 3600 * 1000  # delete.retention.ms (tombstone horizon)
    min_compaction_lag_ms: int = 0  # min.compaction.lag.ms
    max_compaction_lag_ms: int = _LONG_MAX  # max.compaction.lag.ms
    min_cleanable_dirty_ratio: float = 0.5  # min.cleanable.dirty.ratio
    file_delete_delay_ms: int = 60000  # file.delete.delay.ms
    # min.insync.replicas: checked by the replica manager for acks=all produces.
    min_insync_replicas: int = 1
    # Timestamp windows checked per batch in append() (KIP-937).
    message_timestamp_before_max_ms: int = _LONG_MAX  # message.timestamp.before.max.ms
    message_timestamp_after_max_ms: int = 3600000  # message.timestamp.after.max.ms (Kafka 4.0: 1 h)
    # message.timestamp.difference.max.ms: Kafka 3.9's older bound (removed in 4.0), used
    # on a side whose before/after setting is Long.MAX_VALUE, as 3.9's LogConfig does.
    message_timestamp_difference_max_ms: int = _LONG_MAX

    # Kafka property name -> field
    PROPERTIES = {
        "segment.bytes": "segment_bytes",
        "segment.ms": "segment_ms",
        "index.interval.bytes": "index_interval_bytes",
        "max.message.bytes": "max_message_bytes",
        "flush.messages": "flush_messages",
        "flush.ms": "flush_ms",
        "message.timestamp.type": "message_timestamp_type",
        "retention.ms": "retention_ms",
        "retention.bytes": "retention_bytes",
        "cleanup.policy": "cleanup_policy",
        "delete.retention.ms": "delete_retention_ms",
        "min.compaction.lag.ms": "min_compaction_lag_ms",
        "max.compaction.lag.ms": "max_compaction_lag_ms",
        "min.cleanable.dirty.ratio": "min_cleanable_dirty_ratio",
        "file.delete.delay.ms": "file_delete_delay_ms",
        "min.insync.replicas": "min_insync_replicas",
        "message.timestamp.before.max.ms": "message_timestamp_before_max_ms",
        "message.timestamp.after.max.ms": "message_timestamp_after_max_ms",
        "message.timestamp.difference.max.ms": "message_timestamp_difference_max_ms",
    }

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def timestamp_before_bound_ms(self) -> int:
        """How far in the past a CreateTime timestamp may lie (KIP-937, with Kafka 3.9's
        fallback to message.timestamp.difference.max.ms)."""
        before = self.message_timestamp_before_max_ms
        return self.message_timestamp_difference_max_ms if before == _LONG_MAX else before

    @property
    def timestamp_after_bound_ms(self) -> int:
        """How far in the future a CreateTime timestamp may lie (same fallback)."""
        after = self.message_timestamp_after_max_ms
        return self.message_timestamp_difference_max_ms if after == _LONG_MAX else after

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy

    def __post_init__(self) -> None:
        if self.message_timestamp_type not in TIMESTAMP_TYPES:
            raise InvalidConfigError(f"message.timestamp.type must be one of {TIMESTAMP_TYPES}")
        # Kafka's minimum segment.bytes is 14 (a legacy message header); positions in
        # the .index are int32, so a segment can hold at most 2 GiB.
        if not 14 <= self.segment_bytes <= INT32_MAX:
            raise InvalidConfigError("segment.bytes must be between 14 and 2147483647")
        if self.segment_ms < 1:
            raise InvalidConfigError("segment.ms must be >= 1")
        if self.index_interval_bytes < 0:
            raise InvalidConfigError("index.interval.bytes must be >= 0")
        if self.max_message_bytes < 0:
            raise InvalidConfigError("max.message.bytes must be >= 0")

    @classmethod
    def from_properties(cls, props: Mapping[str, str], base: "LogConfig | None" = None) -> "LogConfig":
        """Build from Kafka-named topic configs (strings, as in CreateTopics), over
        `base` (or the defaults). Unknown names are ignored: they belong to others."""
        values = dataclasses.asdict(base) if base is not None else {}
        for name, field in cls.PROPERTIES.items():
            if name not in props or props[name] is None:
                continue
            raw = props[name]
            if field == "message_timestamp_type":
                values[field] = str(raw)
                continue
            if field == "cleanup_policy":
                items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
                values[field] = tuple(sorted(x.strip() for x in items if x.strip()))
                continue
            if field == "min_cleanable_dirty_ratio":
                try:
                    values[field] = float(raw)
                except (TypeError, ValueError):
                    raise InvalidConfigError(f"invalid value {raw!r} for {name}") from None
                continue
            try:
                value = int(raw)
            except (TypeError, ValueError):
                raise InvalidConfigError(f"invalid value {raw!r} for {name}") from None
            if field in ("flush_messages", "flush_ms") and value >= _LONG_MAX:
                value = None
            values[field] = value
        return cls(**values)


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless message.timestamp.type=LogAppendTime
    log_start_offset: int


class UnexpectedAppendOffsetError(KafkaStorageError):
    """A follower append whose first batch starts below the log end offset (Kafka's
    UnexpectedAppendOffsetException). `first_offset` is that batch's base offset: when
    the log is empty at its log start offset and the batch contains it, Kafka's
    Partition truncates fully to `first_offset` and appends again (KAFKA-6975: a leader
    log start inside a batch, after DeleteRecords). A KafkaStorageError because Kafka's
    replica fetcher treats it as one (the partition is marked failed, not retried)."""

    def __init__(self, message: str, first_offset: int, last_offset: int):
        super().__init__(message)
        self.first_offset = first_offset
        self.last_offset = last_offset


class OffsetsOutOfOrderError(KafkaStorageError):
    """Batches of a follower append that overlap or go backwards (Kafka's
    OffsetsOutOfOrderException; handled by its fetcher like a storage error)."""


class OffsetAndTimestamp(NamedTuple):
    offset: int
    timestamp: int


class TimestampAndOffset(NamedTuple):
    timestamp: int
    offset: int


def _read_int_file(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _write_int_file(path: str, value: int) -> None:
    # write + rename: a crash leaves the old value or the new one, never half a number,
    # and a failed write (a full disk) leaves the old file. No fsync: a lost update only
    # means an older (smaller, hence safe) value.
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{value}\n")
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.replace(tmp, path)


def _guard_io(what: str, write: bool = False):
    """An OSError inside the method becomes a KafkaStorageError, classified by the log
    dir failure channel (kafkette.log.log_dirs: a full disk keeps the directory online,
    any other error takes it offline, KIP-112). `write`: a success tells the channel
    that a full directory has room again. A try block costs nothing until it raises."""
    def deco(fn):
        @functools.wraps(fn)
        def guarded(self, *args, **kwargs):
            try:
                result = fn(self, *args, **kwargs)
            except OSError as exc:
                raise self._storage_error(exc, what) from exc
            if write and self.failure_channel is not None and self.failure_channel.full:
                self.failure_channel.space_back(self.log_dir)
            return result
        return guarded
    return deco




class PartitionLog:
    """The segmented log of one partition in `dir_path` (`<data_dir>/<topic>-<partition>`).

    Opening recovers the directory (see module docstring); `close()` flushes and leaves a
    clean-shutdown marker so the next open skips the full validation.
    """

    def __init__(self, dir_path, config: LogConfig | None = None, clock=None, *,
                 topic: str | None = None, partition: int | None = None,
                 failure_channel=None):
        self.dir = os.fspath(dir_path)
        # The log directory holding this partition's directory, and where its I/O
        # errors are reported (kafkette.log.log_dirs.LogDirFailureChannel; None: an
        # error only fails the call).
        self.log_dir = os.path.dirname(os.path.abspath(self.dir))
        self.failure_channel = failure_channel
        self._offline = False
        name = os.path.basename(os.path.normpath(self.dir))
        dir_topic, _, dir_partition = name.rpartition("-")
        self.topic = topic if topic is not None else dir_topic
        self.partition = partition if partition is not None else (int(dir_partition) if dir_partition.isdigit() else -1)
        self.config = config or LogConfig()
        self._clock = clock or SystemClock()
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._leo = 0
        # Completed transactions whose marker may not be on every replica yet: (marker
        # offset, first offset), in marker order (Kafka's unreplicatedTxns).
        self._unreplicated_txns: deque[tuple[int, int]] = deque()
        self._log_start_offset = 0
        self._recovery_point = 0
        self._size = 0
        self._unflushed_messages = 0
        self._last_flush_ms = 0
        self._closed = True
        self._open()

    @classmethod
    def unopened(cls, dir_path, config: LogConfig | None, clock, *, topic: str, partition: int,
                 log_start_offset: int, log_end_offset: int, latest_epoch: int,
                 active_segment: tuple[int, int], size_bytes: int,
                 failure_channel=None) -> "PartitionLog":
        """A log that a clean shutdown left, not opened yet: it knows its offsets and
        latest leader epoch from the log manager's clean-shutdown summary and opens (no
        recovery: the shutdown was clean) on the first use of anything else. Kafka opens
        every log at start (with num.recovery.threads.per.data.dir threads, indexes
        mapped lazily, KAFKA-7283); a broker with 10,000 partitions here would spend
        seconds and an fd per segment before its first answer."""
        self = object.__new__(_UnopenedPartitionLog)
        d = self.__dict__
        d["dir"] = os.fspath(dir_path)
        d["log_dir"] = os.path.dirname(os.path.abspath(d["dir"]))
        d["failure_channel"] = failure_channel
        d["_offline"] = False
        d["topic"], d["partition"] = topic, partition
        d["config"] = config or LogConfig()
        d["_clock"] = clock or SystemClock()
        d["_log_start_offset"], d["_leo"] = log_start_offset, log_end_offset
        d["_latest_epoch"] = latest_epoch
        d["_active_extent"] = active_segment
        d["_size"] = size_bytes  # for /metrics and DescribeLogDirs, which ask every log
        d["_closed"] = False
        return self

    @property
    def opened(self) -> bool:
        """False for a log left unopened at start (see `unopened`) and not used since."""
        return True

    @property
    def latest_epoch(self) -> int:
        """The newest leader epoch in this log (-1: none)."""
        return self.leader_epoch_cache.latest_epoch

    @property
    def active_segment_extent(self) -> tuple[int, int]:
        """(base offset, size in bytes) of the active segment."""
        seg = self.segments[-1]
        return seg.base_offset, seg.size

    # --- opening / recovery -------------------------------------------------------------
    def _open(self, known_clean: bool = False) -> None:
        """known_clean: the log manager's clean-shutdown marker covers this log (its
        own per-partition marker, written by a standalone close(), counts too)."""
        os.makedirs(self.dir, exist_ok=True)
        now = self._clock.time_ms()
        interval = self.config.index_interval_bytes
        marker = os.path.join(self.dir, CLEAN_SHUTDOWN_FILE)
        own_marker = os.path.exists(marker)
        clean = known_clean or own_marker
        if own_marker:
            # Gone before the first write, durably: a stale marker after a crash would
            # make the next open trust unvalidated data.
            os.unlink(marker)
            _fsync_dir(self.dir)
        stored_log_start = _read_int_file(os.path.join(self.dir, LOG_START_OFFSET_FILE))
        recovery_point = _read_int_file(os.path.join(self.dir, RECOVERY_POINT_FILE)) or 0

        # Finish a committed cleaner swap (.swap files) or roll back
        # an uncommitted one (.cleaned files) before looking at the segments.
        from kafkette.log.cleaner import recover_interrupted_swap
        recover_interrupted_swap(self.dir)
        bases, txn_indexed = self._discover_segments()
        segments: list[LogSegment] = []
        # The first segment whose aborted-transaction index must be rebuilt: every
        # segment recovery re-reads (its index may lack entries for the markers it holds,
        # or hold some for markers cut off), and any with an unreadable index.
        rebuild_txn_from: int | None = None
        try:
            if not bases:
                segments.append(LogSegment.create(self.dir, stored_log_start or 0, interval))
            else:
                segments = [LogSegment.open_existing(self.dir, b, interval, b in txn_indexed) for b in bases]
                i = 0
                while i < len(segments):
                    seg = segments[i]
                    next_base = bases[i + 1] if i + 1 < len(segments) else None
                    trusted = (next_base is not None and (clean or next_base <= recovery_point)) or (
                        next_base is None and clean)
                    if trusted and seg.txn_index.exists and rebuild_txn_from is None:
                        try:
                            seg.txn_index.check()
                        except CorruptTxnIndexError as e:
                            log.warning("aborted transaction index %s unusable (%s); rebuilding it",
                                        seg.txn_index.path, e)
                            rebuild_txn_from = seg.base_offset
                    if next_base is not None and (clean or next_base <= recovery_point):
                        seg.load_inactive(next_base, now)
                    elif next_base is None and clean:
                        seg.load_active(now)
                    else:
                        if rebuild_txn_from is None:
                            rebuild_txn_from = seg.base_offset
                        truncated = seg.recover(truncate=True, now_ms=now, inactive=next_base is not None)
                        if next_base is not None:
                            if truncated or seg.next_offset > next_base:
                                # As Kafka does: the log must stay a contiguous prefix, so
                                # everything after a corrupt segment goes.
                                log.warning("deleting %d segment(s) of %s after corruption",
                                            len(segments) - i - 1, self.dir)
                                for later in segments[i + 1:]:
                                    later.delete_files()
                                del segments[i + 1:]
                                break
                            seg.next_offset = next_base
                            seg._unload()
                    i += 1
        except BaseException:
            for seg in segments:
                seg.close()
            raise
        self.segments = segments
        self._bases = [s.base_offset for s in segments]
        self._leo = segments[-1].next_offset
        self._size = sum(s.size for s in segments)
        lso = max(stored_log_start or 0, segments[0].base_offset)
        if lso > self._leo:
            log.warning("log start offset %d of %s is past the log end %d; clamping", lso, self.dir, self._leo)
            lso = self._leo
        self._log_start_offset = lso
        if stored_log_start != lso and not (stored_log_start is None and lso == 0):
            # (A missing file reads as 0: a new log writes none, one file fewer to create.)
            _write_int_file(os.path.join(self.dir, LOG_START_OFFSET_FILE), lso)
        self._recovery_point = min(recovery_point, self._leo)
        self._last_flush_ms = now
        # Idempotent and transactional producers (KIP-98): the newest snapshot + the
        # batch headers after it. When transaction indexes are to be rebuilt, the replay
        # starts at or below the first of them and re-creates their entries.
        self.producer_state = ProducerStateManager(self.dir, f"{self.topic}-{self.partition}")
        self._update_snapshot_anchor()
        if rebuild_txn_from is not None and rebuild_txn_from < self._leo:
            self._rebuild_txn_indexes(rebuild_txn_from)
        else:
            self.producer_state.load(self.segments, self._leo)
        self.leader_epoch_cache = self._load_leader_epochs()
        self._closed = False

    def _rebuild_txn_indexes(self, from_offset: int) -> None:
        """Kafka's LogSegment.recover rebuilds a segment's .txnindex from the producer
        state at the segment's start; here one replay from the newest snapshot at or
        below `from_offset` re-creates the entries of every segment from there on."""
        i = max(0, bisect_right(self._bases, from_offset) - 1)
        for seg in self.segments[i:]:
            seg.txn_index.reset()
        aborted: list[AbortedTxn] = []
        self.producer_state.load(self.segments, self._leo, txn_index_from=self.segments[i].base_offset,
                                 aborted_out=aborted)
        for txn in aborted:
            self._segment_for(txn.last_offset).txn_index.append(txn)
        slog.debug("txn_indexes_rebuilt", partition=f"{self.topic}-{self.partition}",
                  from_offset=self.segments[i].base_offset, aborted_transactions=len(aborted))

    def _segment_for(self, offset: int) -> LogSegment:
        return self.segments[max(0, bisect_right(self._bases, offset) - 1)]

    def _update_snapshot_anchor(self) -> None:
        # Keep the producer snapshot recovery would start from (ProducerStateManager).
        self.producer_state.anchor_offset = self._segment_for(self._recovery_point).base_offset

    def _load_leader_epochs(self) -> LeaderEpochCache:
        """The checkpoint, cut to [log start, log end] as Kafka's LogLoader does (it may
        run ahead of a log whose unflushed tail was lost). Missing (a log written before
        leader epochs were kept) or unreadable: rebuilt from the batch headers. A new,
        empty log gets no file until its first epoch (Kafka creates an empty one)."""
        cache = LeaderEpochCache(self.dir, f"{self.topic}-{self.partition}")
        if cache.load():
            cache.truncate_from_end(self._leo)
        elif self._size:
            cache.rebuild(iter_stored_headers(self.segments, self._log_start_offset))
        cache.truncate_from_start(self._log_start_offset)
        return cache

    def _discover_segments(self) -> tuple[list[int], set[int]]:
        """(base offsets of the segments, ascending; bases that have a .txnindex)."""
        bases: list[int] = []
        index_files: list[str] = []
        for name in os.listdir(self.dir):
            stem, dot, suffix = name.partition(".")
            if not (len(stem) == 20 and stem.isdigit()):
                continue
            if name.endswith((".deleted", ".cleaned")):
                # Leftovers of an interrupted delete/compaction (Kafka's suffixes).
                os.unlink(os.path.join(self.dir, name))
            elif dot + suffix == LOG_SUFFIX:
                bases.append(int(stem))
            elif dot + suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXN_INDEX_SUFFIX):
                index_files.append(name)
        known = set(bases)
        txn_indexed: set[int] = set()
        for name in index_files:
            if int(name[:20]) not in known:
                os.unlink(os.path.join(self.dir, name))  # an index without its log
            elif name.endswith(TXN_INDEX_SUFFIX):
                txn_indexed.add(int(name[:20]))
        bases.sort()
        return bases, txn_indexed

    # --- properties ---------------------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        """The next offset to assign."""
        return self._leo

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def active_segment(self) -> LogSegment:
        return self.segments[-1]

    def segment_base_offsets(self) -> list[int]:
        return list(self._bases)

    def __repr__(self) -> str:
        return (f"PartitionLog({self.topic}-{self.partition}, log_start_offset={self._log_start_offset}, "
                f"log_end_offset={self._leo}, segments={len(self.segments)})")

    def _check_open(self) -> None:
        if self._closed:
            if self._offline:
                raise KafkaStorageError(f"log {self.dir} is in an offline log dir")
            raise KafkaStorageError(f"log {self.dir} is closed")

    def _storage_error(self, exc: OSError, what: str) -> KafkaStorageError:
        what = f"{what} {self.topic}-{self.partition}"
        if self.failure_channel is None:
            return KafkaStorageError(f"{what} failed in {self.dir}: {exc}")
        return self.failure_channel.storage_error(self.log_dir, exc, what)

    @property
    def offline(self) -> bool:
        return self._offline

    def mark_offline(self) -> None:
        """Its log dir went offline (KIP-112): close the files without writing anything
        more (no flush, no snapshot, no clean-shutdown marker: the device is not
        trusted), and refuse every further call with KAFKA_STORAGE_ERROR. The next
        start recovers the log as after a crash."""
        self._offline = True
        if self._closed:
            return
        self._closed = True
        for seg in self.segments:
            seg.abandon()

    # --- append -------------------------------------------------------------------------
    @_guard_io("append to", write=True)
    def append(self, batches, partition_leader_epoch: int, now_ms: int, *,
               origin: str = "client") -> AppendResult:
        """Validate, stamp and append the batches of one produce request (bytes as sent
        by the producer: one or more concatenated v2 batches). `batches` should be
        writable (bytearray / memoryview of one): offsets are stamped in place. All
        batches are checked before anything is written, and the whole request goes to
        the segment with one write, so a request is appended entirely or not at all.

        `origin` (Kafka's AppendOrigin): "client" for Produce; "coordinator" for the
        coordinators' own writes — transactional offset commits (base sequence -1) and
        transaction markers —, which skip duplicate and sequence checks but keep the
        epoch and transaction checks. As in Kafka's LogValidator, a client may not write
        control batches of a producer (INVALID_RECORD); control batches without a
        producer id (the Raft metadata log's) pass as before. A transactional batch
        needs a producer id (INVALID_RECORD)."""
        self._check_open()
        client = origin == "client"
        mv = batches if isinstance(batches, memoryview) else memoryview(batches)
        if mv.readonly:
            mv = memoryview(bytearray(mv))  # a copy; internal callers that pass bytes
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        config = self.config
        max_message_bytes = config.max_message_bytes
        log_append_time = config.message_timestamp_type == "LogAppendTime"
        # KIP-937 timestamp windows (CreateTime topics only).
        ts_low = now_ms - config.timestamp_before_bound_ms
        ts_high = now_ms + config.timestamp_after_bound_ms
        stamp = rec.stamp_batch
        base_offset = offset = self._leo
        messages = 0
        metas: list[tuple[int, int, int, int]] = []
        pending = None  # producer state per producer id, applied after the write
        # One pass: validate (iter_batches: length, magic, CRC), check size and offset
        # range, stamp. A later invalid batch raises after earlier ones were stamped;
        # harmless, the buffer is the request's and nothing has been written yet.
        for pos, h in rec.iter_batches(mv):
            size = h.batch_length + rec.LOG_OVERHEAD
            if size > max_message_bytes:
                # Kafka: RecordTooLargeException (MESSAGE_TOO_LARGE).
                raise MessageTooLargeError(
                    f"record batch of {size} bytes exceeds max.message.bytes={max_message_bytes}")
            count = h.records_count
            if count <= 0 or h.last_offset_delta != count - 1:
                # Kafka's LogValidator.validateBatch: count must match the offset range.
                raise InvalidRecordError(
                    f"record batch count {count} inconsistent with last offset delta {h.last_offset_delta}")
            last = offset + h.last_offset_delta
            if config.compact and not h.is_control:
                self._check_keys(mv, pos, h)
            # message.timestamp.before/after.max.ms (KIP-937). Kafka's
            # LogValidator checks every record's timestamp; we check the header's base
            # (first record's) and max timestamps, so a record older than the first one
            # of its batch can pass the "before" bound.
            if not log_append_time and (
                    (h.base_timestamp != rec.NO_TIMESTAMP and h.base_timestamp < ts_low)
                    or h.max_timestamp > ts_high):
                bad = h.max_timestamp if h.max_timestamp > ts_high else h.base_timestamp
                raise KafkaError(
                    f"Timestamp {bad} of message with offset {offset} is out of range. The "
                    f"timestamp should be within [{ts_low}, {ts_high}]",
                    code=ErrorCode.INVALID_TIMESTAMP)
            # Idempotence and transaction checks on header fields, before stamping (KIP-98).
            if h.producer_id >= 0:
                if pending is None:
                    pending = {}
                marker = None
                if h.attributes & rec.CONTROL_BIT:
                    if client:
                        raise InvalidRecordError(
                            f"Clients are not allowed to write control records in topic partition "
                            f"{self.topic}-{self.partition}")
                    marker = rec.read_end_txn_marker(mv, pos, h)
                dup = self.producer_state.check(h, offset, now_ms if log_append_time else h.max_timestamp,
                                                pending, client, marker)
                if dup is not None:
                    # A retry of a batch already in the log: append nothing, answer with
                    # the original offsets (Kafka: UnifiedLog.append, maybeDuplicate).
                    return AppendResult(dup.first_offset, dup.last_offset,
                                        dup.timestamp if log_append_time else -1, self._log_start_offset)
            elif h.attributes & rec.TRANSACTIONAL_BIT:
                raise InvalidRecordError(f"transactional record batch without a producer id for "
                                         f"{self.topic}-{self.partition}")
            stamp(mv, pos, offset, partition_leader_epoch)
            if log_append_time:
                rec.stamp_log_append_time(mv, pos, pos + size, now_ms)
                metas.append((pos, size, last, now_ms))
            else:
                metas.append((pos, size, last, h.max_timestamp))
            messages += count
            offset = last + 1
        if not metas:
            # Kafka appends nothing for an empty record set and answers offset -1.
            return AppendResult(-1, -1, -1, self._log_start_offset)
        total = len(mv)
        if total > config.segment_bytes:
            # Kafka: RecordBatchTooLargeException, "larger than the segment size".
            raise KafkaError(f"records of {total} bytes exceed segment.bytes={config.segment_bytes}",
                             code=ErrorCode.RECORD_LIST_TOO_LARGE)
        # KIP-101: the first append of a new leader epoch records where it starts, before
        # the data (a crash leaves the checkpoint ahead of the log, which open cuts back,
        # never behind it). One comparison per append; epochs < 0 (internal writers
        # without a leader) are not recorded, where Kafka's assign would refuse them.
        epoch_cache = self.leader_epoch_cache
        if partition_leader_epoch != epoch_cache.latest_epoch and partition_leader_epoch >= 0:
            epoch_cache.assign(partition_leader_epoch, base_offset)
        if self._should_roll(total, offset - 1, now_ms):
            self._roll(now_ms)
        seg = self.segments[-1]
        seg.append(mv, metas, config.index_interval_bytes, now_ms)
        self._leo = offset
        if pending:  # before any flush snapshots the producer state
            completed = self.producer_state.apply(pending)
            if completed:
                self._on_completed_txns(seg, completed)
        self._size += total
        self._unflushed_messages += messages
        if (config.flush_messages is not None and self._unflushed_messages >= config.flush_messages) or (
                config.flush_ms is not None and now_ms - self._last_flush_ms >= config.flush_ms):
            self.flush(now_ms)
        return AppendResult(base_offset, offset - 1, now_ms if log_append_time else -1, self._log_start_offset)

    def append_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                      commit: bool, partition_leader_epoch: int, now_ms: int) -> AppendResult:
        """Write a COMMIT or ABORT marker for `producer_id` as the leader (Kafka:
        appendAsLeader with origin COORDINATOR of an end-transaction marker, for
        WriteTxnMarkers). Raises InvalidProducerEpochError for an epoch older than the
        producer's and TransactionCoordinatorFencedError for a coordinator epoch older
        than the last marker's. A marker for a producer without an ongoing transaction
        here is written all the same, as Kafka does (readers ignore it)."""
        batch = bytearray(rec.build_control_batch(producer_id, producer_epoch, commit,
                                                  coordinator_epoch, now_ms))
        return self.append(batch, partition_leader_epoch, now_ms, origin="coordinator")

    def _on_completed_txns(self, seg: LogSegment, completed: list[tuple[CompletedTxn, int]]) -> None:
        """Index the aborted ones in the segment holding their markers (Kafka's
        LogSegment.updateTxnIndex), and log every completion."""
        partition = f"{self.topic}-{self.partition}"
        for txn, lso in completed:
            self._unreplicated_txns.append((txn.last_offset, txn.first_offset))
            if txn.is_aborted:
                seg.txn_index.append(AbortedTxn(txn.producer_id, txn.first_offset, txn.last_offset, lso))
            slog.debug("txn_completed", partition=partition, producer_id=txn.producer_id,
                       first_offset=txn.first_offset, marker_offset=txn.last_offset,
                       aborted=txn.is_aborted, last_stable_offset=lso)

    # --- transactions (KIP-98) ------------------------------------------------------------
    def first_unstable_offset(self, high_watermark: int | None = None) -> int | None:
        """The first offset of the earliest ongoing transaction or, given the
        partition's `high_watermark`, of the earliest that is ongoing or complete only on
        this replica (its marker at or above the high watermark); None if there is none. The broker's last stable offset is
        min(high watermark, this): as in Kafka, a transaction becomes readable for
        read_committed consumers once its marker is replicated, so what one replica
        shows as committed every replica that may lead next has decided too."""
        first = self.producer_state.first_unstable_offset()
        if high_watermark is None:
            return first          # ongoing transactions only
        self.on_high_watermark(high_watermark)
        for _marker, txn_first in self._unreplicated_txns:
            if first is None or txn_first < first:
                first = txn_first
        return first

    def on_high_watermark(self, high_watermark: int) -> None:
        """The partition's high watermark moved: markers below it are replicated (Kafka's
        ProducerStateManager.onHighWatermarkUpdated). Keeps the list of unreplicated
        completions short on replicas nobody reads from."""
        pending = self._unreplicated_txns
        while pending and pending[0][0] < high_watermark:
            pending.popleft()

    def collect_aborted_transactions(self, start_offset: int, upper_bound_offset: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of every aborted transaction overlapping
        [start_offset, upper_bound_offset) — last offset >= start_offset and first
        offset < upper_bound_offset —, in index order: Fetch(read_committed)'s
        AbortedTransactions. Kafka's collectAbortedTransactions: the index of the
        segment holding start_offset, then the following ones until an entry's last
        stable offset reaches the upper bound."""
        self._check_open()
        out: list[tuple[int, int]] = []
        i = max(0, bisect_right(self._bases, start_offset) - 1)
        for seg in self.segments[i:]:
            found, complete = seg.txn_index.collect(start_offset, upper_bound_offset)
            out.extend((t.producer_id, t.first_offset) for t in found)
            if complete or seg.base_offset >= upper_bound_offset:
                break
        return out

    def producer_entries(self) -> list[ProducerStateEntry]:
        """Every producer this partition knows (DescribeProducers): producer_id,
        producer_epoch, last_seq, last_timestamp, coordinator_epoch,
        current_txn_first_offset."""
        return list(self.producer_state.producers.values())

    def _check_keys(self, mv, pos: int, h) -> None:
        """A compacted log refuses records without a key (Kafka's LogValidator
        validateKey): the only produce-path check that reads records, so only compacted
        topics pay for it; every bad record of the batch is named (KIP-467)."""
        try:
            layout = rec.scan_records(rec.batch_payload(mv, pos, h), h.records_count)
        except CorruptRecordError as e:
            raise InvalidRecordError(f"records of a batch for {self.topic}-{self.partition} "
                                     f"cannot be read: {e}") from None
        message = (f"Compacted topic cannot accept message without key in topic partition "
                   f"{self.topic}-{self.partition}.")
        bad = [(i, message) for i, r in enumerate(layout) if r[7] < 0]
        if bad:
            raise RecordValidationError(bad)

    def _should_roll(self, incoming_bytes: int, last_offset: int, now_ms: int) -> bool:
        seg = self.segments[-1]
        if seg.size == 0:
            return False
        if seg.size + incoming_bytes > self.config.segment_bytes:
            return True
        # segment.ms: measured from the broker time of the segment's first append (or,
        # after a restart, its first batch's timestamp). Kafka measures from the first
        # batch's timestamp and compares with the incoming batch's max timestamp, so
        # producer clocks drive its rolls; it also subtracts segment.jitter.ms (not here).
        if seg.rolling_base_ms is not None and now_ms - seg.rolling_base_ms > self.config.segment_ms:
            return True
        # Relative offsets in the .index are int32 (Kafka rolls for the same reason).
        return last_offset - seg.base_offset > INT32_MAX

    def _roll(self, now_ms: int, base_offset: int | None = None) -> None:
        """New active segment at the log end, or at `base_offset` (> the log end: a
        follower's next batch after a gap in a compacted leader log, as Kafka rolls at
        the incoming batch's offset), which then becomes the log end."""
        self.producer_state.take_snapshot(self._leo)  # as Kafka, on every roll
        self.segments[-1].on_roll()
        base = self._leo if base_offset is None else max(base_offset, self._leo)
        seg = LogSegment.create(self.dir, base, self.config.index_interval_bytes)
        self.segments.append(seg)
        self._bases.append(seg.base_offset)
        self._leo = base
        log.debug("rolled %s to a new segment at offset %d", self.dir, seg.base_offset)

    @_guard_io("roll")
    def roll(self, now_ms: int | None = None) -> None:
        """Force a new active segment (if the current one has data)."""
        self._check_open()
        if self.segments[-1].size:
            self._roll(self._clock.time_ms() if now_ms is None else now_ms)

    # --- replication (KIP-101, KIP-279) ---------------------------------------------------
    @_guard_io("follower append to", write=True)
    def append_as_follower(self, batches, now_ms: int | None = None, *,
                           leader_epoch: int | None = None) -> AppendResult:
        """Append batches fetched from the leader, as they are: whole v2 batches whose
        offsets, partition leader epochs and (LogAppendTime) timestamps the leader
        stamped. Kafka's UnifiedLog.appendAsFollower (AppendOrigin.REPLICATION).

        Every batch is checked (length, magic, CRC: records.iter_batches) and the first
        must start at or after the log end offset, each next one after the previous
        one's last offset (gaps, from a compacted leader log, are fine). Any failure
        raises before anything is written: CorruptRecordError, UnexpectedAppendOffsetError
        or OffsetsOutOfOrderError (both KafkaStorageError). Nothing is re-stamped, and
        neither max.message.bytes nor the record count is checked (Kafka skips both for
        replication: the leader accepted the batch, and a compacted batch has fewer
        records than offsets). The producer state takes each idempotent batch's header
        without sequence checks, and the leader epoch cache each new epoch.

        `leader_epoch` (the leader's epoch when it answered the fetch): batches of a
        higher epoch, and everything after the first of them, are left out, as Kafka
        does since KAFKA-18723 (a deposed leader may have appended them after it
        answered). Returns base and last offset of what was appended, (-1, -1) for
        nothing.

        One write per segment touched: usually one. Unlike the leader path a fetch may
        hold more than segment.bytes (many produce requests), so the batches are split
        over as many segments as they need rather than refused (Kafka refuses any
        append above segment.bytes, and relies on replica.fetch.max.bytes staying
        below it)."""
        self._check_open()
        mv = batches if isinstance(batches, memoryview) else memoryview(batches)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        now = self._clock.time_ms() if now_ms is None else now_ms
        accepted: list[tuple[int, rec.BatchHeader]] = []
        expected = self._leo
        for pos, h in rec.iter_batches(mv):
            if leader_epoch is not None and h.partition_leader_epoch > leader_epoch:
                slog.info("follower_append_skipped_newer_epoch", partition=f"{self.topic}-{self.partition}",
                          offset=h.base_offset, batch_epoch=h.partition_leader_epoch,
                          leader_epoch=leader_epoch)
                break
            if h.last_offset_delta < 0:
                raise CorruptRecordError(f"record batch at offset {h.base_offset} has a negative "
                                         f"last offset delta {h.last_offset_delta}")
            if h.base_offset < expected:
                if not accepted:
                    raise UnexpectedAppendOffsetError(
                        f"first batch of a follower append to {self.topic}-{self.partition} starts at "
                        f"{h.base_offset}, below the log end offset {self._leo}", h.base_offset, h.last_offset)
                raise OffsetsOutOfOrderError(
                    f"batch at offset {h.base_offset} of a follower append to {self.topic}-{self.partition} "
                    f"overlaps the previous batch, which ends at {expected - 1}")
            expected = h.base_offset + h.last_offset_delta + 1
            accepted.append((pos, h))
        if not accepted:
            return AppendResult(-1, -1, -1, self._log_start_offset)
        epoch_cache = self.leader_epoch_cache
        epoch_cache.assign_from_headers(h for _, h in accepted)  # before the data, as on the leader
        try:
            messages = self._write_follower_batches(mv, accepted, now)
        except BaseException:
            # Some runs may be in (each segment write is whole or nothing): the epochs
            # assigned for the batches that are not must go.
            epoch_cache.truncate_from_end(self._leo)
            raise
        self._unflushed_messages += messages
        config = self.config
        if (config.flush_messages is not None and self._unflushed_messages >= config.flush_messages) or (
                config.flush_ms is not None and now - self._last_flush_ms >= config.flush_ms):
            self.flush(now)
        return AppendResult(accepted[0][1].base_offset, accepted[-1][1].last_offset, -1, self._log_start_offset)

    def _write_follower_batches(self, mv: memoryview, accepted: list[tuple[int, rec.BatchHeader]],
                                now_ms: int) -> int:
        """Write validated follower batches in runs, one run per segment (rolling by
        size, time and int32 relative offsets as the leader path does), updating the log
        end offset and the producer state after each run. Returns the record count."""
        seg_bytes = self.config.segment_bytes
        interval = self.config.index_interval_bytes
        producers = self.producer_state
        messages = 0
        i, n = 0, len(accepted)
        while i < n:
            start, first = accepted[i]
            # (The second test: an EMPTY active segment too far below a batch after a
            # gap, which _should_roll never rolls.)
            if self._should_roll(first.size, first.last_offset, now_ms) or \
                    first.last_offset - self.segments[-1].base_offset > INT32_MAX:
                self._roll(now_ms, first.base_offset)
            seg = self.segments[-1]
            room = seg_bytes - seg.size
            metas: list[tuple[int, int, int, int]] = []
            run_bytes = 0
            j = i
            while j < n:
                pos, h = accepted[j]
                size = h.batch_length + rec.LOG_OVERHEAD
                last = h.base_offset + h.last_offset_delta
                if j > i and (run_bytes + size > room or last - seg.base_offset > INT32_MAX):
                    break
                metas.append((pos - start, size, last, h.max_timestamp))
                run_bytes += size
                messages += h.records_count
                j += 1
            seg.append(mv[start:start + run_bytes], metas, interval, now_ms)
            self._leo = metas[-1][2] + 1
            self._size += run_bytes
            for pos, h in accepted[i:j]:
                if h.producer_id >= 0:
                    if h.attributes & rec.CONTROL_BIT:
                        # A marker: complete the transaction and index an abort, as the
                        # leader did (Kafka's appendAsFollower updates the same state).
                        done = producers.replay(h, rec.read_end_txn_marker(mv, pos, h))
                        if done is not None:
                            self._on_completed_txns(seg, [done])
                    else:
                        producers.replay(h)
            i = j
        return messages

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch on this log: (epoch, end offset) per
        LeaderEpochCache.end_offset_for, with this log's end offset for the latest
        epoch; (-1, -1) when unknown."""
        self._check_open()
        return self.leader_epoch_cache.end_offset_for(leader_epoch, self._leo)

    @_guard_io("leader epoch checkpoint of")
    def assign_epoch_start_offset(self, leader_epoch: int) -> bool:
        """Record that `leader_epoch` starts at the log end offset, before it has
        written anything: Kafka's Partition.makeLeader does this on every leader
        election (KAFKA-7415), so a follower asking for the end of the previous epoch
        learns it at once. Returns True when the cache changed."""
        self._check_open()
        return self.leader_epoch_cache.assign(leader_epoch, self._leo)

    # --- read ---------------------------------------------------------------------------
    @_guard_io("read of")
    def read(self, offset: int, max_bytes: int, *, max_offset: int | None = None,
             min_one_batch: bool = True, view: bool = False) -> bytes:
        """Whole batches from the one containing `offset`, up to max_bytes but at least
        one batch (KIP-74; min_one_batch=False for the later partitions of a Fetch,
        which Kafka fills strictly within max_bytes), never including a batch that
        reaches `max_offset` (the high watermark, which the partition's owner passes;
        default: the log end offset). Continues into following segments while room is left (a
        real Kafka broker stops at the end of a segment; the client just fetches again).
        Returns b"" at the end of the visible log. view=True (the Fetch handler) may
        return a memoryview over the bytes read instead of a trimmed copy of them."""
        self._check_open()
        if offset < self._log_start_offset or offset > self._leo:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self._log_start_offset}, {self._leo}] of {self.topic}-{self.partition}")
        limit = self._leo if max_offset is None else min(max_offset, self._leo)
        if offset >= limit:
            return b""
        segments = self.segments
        i = bisect_right(self._bases, offset) - 1
        if i < 0:
            i = 0
        parts: list[bytes] = []
        budget = max_bytes
        first = True
        min_one = min_one_batch
        while i < len(segments):
            seg = segments[i]
            i += 1
            if first:
                pos = seg.find_position(offset)
                if pos is None:
                    continue  # offset in a gap at the end of this segment
            else:
                pos = 0
            data, reached_end = seg.read_from(pos, budget, limit, min_one, view)
            first = False
            min_one = False
            if data:
                parts.append(data)
                budget -= len(data)
            if not reached_end or budget <= 0:
                break
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    # --- timestamps ---------------------------------------------------------------------
    def offset_for_timestamp(self, timestamp_ms: int, *, max_offset: int | None = None) -> OffsetAndTimestamp | None:
        """ListOffsets by timestamp: the first record with timestamp >= timestamp_ms, as
        (offset, timestamp), or None when there is none below `max_offset` (the high
        watermark, passed by the partition's owner; default: the log end offset; Kafka likewise discards an answer at or past the high
        watermark / last stable offset).

        The segment is found by its max timestamp, the batch by the time index and a
        walk over batch headers. Kafka then iterates the matched batch's records; so do
        we, decoding that one batch only (this is not the produce/fetch hot path), which
        makes the answer exact. Without cramjam a compressed batch cannot be decoded,
        and the answer falls back to the batch's base offset and max timestamp.
        For LogAppendTime batches all records carry the max timestamp: no decoding.
        """
        self._check_open()
        start = self._log_start_offset
        limit = self._leo if max_offset is None else max_offset
        result = None
        for seg in self.segments:
            if seg.max_timestamp < timestamp_ms or seg.next_offset <= start:
                continue
            pos = seg.find_timestamp(timestamp_ms, start)
            if pos is None:
                continue
            data, h = seg.read_batch_at(pos)
            result = self._first_record_at_or_after(data, h, timestamp_ms, start)
            break
        if result is None or result.offset >= limit:
            return None
        return result

    @staticmethod
    def _first_record_at_or_after(data: bytes, h: rec.BatchHeader, timestamp_ms: int, start: int) -> OffsetAndTimestamp:
        fallback = OffsetAndTimestamp(max(h.base_offset, start), h.max_timestamp)
        if h.is_log_append_time:
            return fallback
        try:
            records = rec.decode_records(data)
        except CorruptRecordError:
            return fallback
        for r in records:
            if r.timestamp >= timestamp_ms and r.offset >= start:
                return OffsetAndTimestamp(r.offset, r.timestamp)
        return fallback

    def max_timestamp(self) -> TimestampAndOffset | None:
        """ListOffsets MAX_TIMESTAMP (-3, KIP-734): (largest timestamp, offset of the
        first record carrying it), or None for an empty log. Segments and the time index
        know the max timestamp per batch; the record offset comes from decoding that one
        batch (batch granularity — its last offset, as Kafka before 3.8 answered — when
        it cannot be decoded)."""
        self._check_open()
        best = None
        for seg in self.segments:
            if seg.max_timestamp > (best.max_timestamp if best is not None else rec.NO_TIMESTAMP):
                best = seg
        if best is None:
            return None
        ts, offset = best.max_timestamp, best.offset_of_max_timestamp
        pos = best.find_position(offset)
        if pos is not None:
            data, h = best.read_batch_at(pos)
            if h.base_offset <= offset <= h.last_offset and h.max_timestamp == ts:
                offset = self._first_record_at_or_after(data, h, ts, h.base_offset).offset
        return TimestampAndOffset(ts, offset)

    # --- truncation (followers, and the Raft quorum: kafkette.controller.raft.file_log) ----
    @_guard_io("truncation of")
    def truncate_to(self, offset: int, now_ms: int | None = None, *,
                    allow_inside_batch: bool = False) -> int:
        """Remove every batch at or after `offset` durably (fsync) before returning;
        returns the bytes removed. Kafka's UnifiedLog.truncateTo, used when a follower's
        log diverges from the leader's. `offset` is a batch boundary, the log end, or an
        offset in a gap between batches (a compacted log; the log end is then where the
        kept batches end, at or below `offset`). An offset inside a batch is refused
        (InvalidRecordError, nothing changes: the Raft log's entries are batches) unless
        `allow_inside_batch`, when that whole batch goes and the log ends at its base
        offset: Kafka removes the batch too but sets the log end to `offset`, leaving
        the removed offsets as a hole the next fetch cannot fill; ending at the base is
        simply fetched again.

        The leader epochs starting at or after the new end go, and the producer state is
        rewound as Kafka's truncateAndReload does: snapshots above the new end are
        deleted, the newest one at or below it is loaded and the batch headers from there
        to the new end replayed (kafkette.log.producer_state.load). Kafka empties the
        log for an offset below its first segment; here that is OffsetOutOfRangeError
        below the log start (see truncate_fully_and_start_at)."""
        self._check_open()
        if offset >= self._leo:
            return 0
        if offset < self._log_start_offset:
            raise OffsetOutOfRangeError(f"cannot truncate {self.dir} to {offset}, below the log start "
                                        f"{self._log_start_offset}")
        now = self._clock.time_ms() if now_ms is None else now_ms
        i = max(0, bisect_right(self._bases, offset) - 1)
        check = self.segments[i].find_position(offset)
        if check is not None:
            base = self.segments[i].read_batch_at(check)[1].base_offset
            if base < offset:  # (base > offset: `offset` is in a gap before that batch)
                if not allow_inside_batch:
                    raise InvalidRecordError(f"{offset} is not a batch boundary of {self.dir}")
                offset = base
                if offset < self._log_start_offset:
                    raise OffsetOutOfRangeError(
                        f"cannot truncate {self.dir} to {offset}, the start of the batch holding "
                        f"the log start {self._log_start_offset}")
        removed = 0
        while len(self.segments) > 1 and self.segments[-1].base_offset >= offset:
            seg = self.segments.pop()
            self._bases.pop()
            removed += seg.size
            seg.delete()
        seg = self.segments[-1]
        pos = seg.find_position(offset) if offset > seg.base_offset else 0
        if pos is None:
            pos = seg.size
        removed += seg.size - pos
        os.ftruncate(seg.fd, pos)
        seg.size = pos
        seg.recover(truncate=True, now_ms=now)  # rebuilds its indexes
        self._leo = max(offset, seg.base_offset) if not seg.size else seg.next_offset
        # Aborts whose markers are gone leave the index (Kafka's TransactionIndex
        # .truncateTo); the producer state reload below reopens their transactions.
        seg.txn_index.truncate_to(self._leo if seg.size else seg.base_offset)
        seg.flush()
        self._size -= removed
        if self._recovery_point > self._leo:
            self._recovery_point = self._leo
            _write_int_file(os.path.join(self.dir, RECOVERY_POINT_FILE), self._leo)
        self.leader_epoch_cache.truncate_from_end(self._leo)
        self._update_snapshot_anchor()
        self.producer_state.load(self.segments, self._leo)
        # Markers past the new end are gone: their transactions are ongoing again.
        self._unreplicated_txns = deque(t for t in self._unreplicated_txns if t[0] < self._leo)
        slog.info("log_truncated", partition=f"{self.topic}-{self.partition}", offset=self._leo,
                  bytes_removed=removed, latest_epoch=self.leader_epoch_cache.latest_epoch)
        return removed

    @_guard_io("truncation of")
    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and start an empty log at `offset`: log start = log end =
        recovery point = `offset`, no leader epochs, no producers. Kafka's
        UnifiedLog.truncateFullyAndStartAt, for a follower whose fetch offset is below
        the leader's log start offset (OFFSET_OUT_OF_RANGE), or whose log must restart
        inside the leader's first batch (KAFKA-6975). `offset` may be below the current
        log start. (Kafka also moves the high watermark to `offset`: the partition's
        owner does, kafkette.broker.partition.)

        Order, for a crash half way when `offset` is at or past the old log end (both
        replication cases): the log start offset file first, so a restart that still
        finds old segments opens them with the log start clamped to their end (old data
        hidden, the follower fetches again and lands here again); then the segments,
        newest first; then a new empty segment at `offset`; then the epoch checkpoint
        and the producer snapshots (open cuts both to the log anyway); then an fsync of
        the directory. Kafka renames the segments to .deleted and removes them
        asynchronously, with the same window."""
        self._check_open()
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot restart {self.topic}-{self.partition} at {offset}")
        _write_int_file(os.path.join(self.dir, LOG_START_OFFSET_FILE), offset)
        _write_int_file(os.path.join(self.dir, RECOVERY_POINT_FILE), offset)
        for seg in reversed(self.segments):
            seg.delete()
        seg = LogSegment.create(self.dir, offset, self.config.index_interval_bytes)
        self.segments = [seg]
        self._bases = [offset]
        self._leo = self._log_start_offset = self._recovery_point = offset
        self._unreplicated_txns.clear()
        self._size = 0
        self._unflushed_messages = 0
        self.leader_epoch_cache.clear()
        self.producer_state.truncate_fully_and_start_at(offset)
        _fsync_dir(self.dir)
        slog.info("log_truncated_fully", partition=f"{self.topic}-{self.partition}", offset=offset)

    # --- log start offset ---------------------------------------------------------------
    def set_log_start_offset(self, offset: int, high_watermark: int | None = None) -> bool:
        """Move the log start offset forward (DeleteRecords, retention). Persisted at
        once. Returns False when it would not move. Kafka refuses to go past the high
        watermark with OFFSET_OUT_OF_RANGE; so do we. The high watermark belongs to the
        partition's owner (kafkette.broker.partition), which passes it; without one the
        log end offset bounds the move. Segments are left for retention."""
        self._check_open()
        bound = self._leo if high_watermark is None else min(high_watermark, self._leo)
        if offset > bound:
            raise OffsetOutOfRangeError(f"cannot move log start offset to {offset}, past the high watermark {bound}")
        if offset <= self._log_start_offset:
            return False
        self._log_start_offset = offset
        _write_int_file(os.path.join(self.dir, LOG_START_OFFSET_FILE), offset)
        self.leader_epoch_cache.truncate_from_start(offset)  # Kafka: maybeIncrementLogStartOffset
        return True

    # --- flush / close ------------------------------------------------------------------
    @_guard_io("flush of")
    def flush(self, now_ms: int | None = None) -> None:
        """fsync every segment written since the last flush, then advance the recovery
        point to the log end offset."""
        self._check_open()
        i = max(0, bisect_right(self._bases, self._recovery_point) - 1)
        for seg in self.segments[i:]:
            seg.flush()
        if self._recovery_point != self._leo:
            self._recovery_point = self._leo
            _write_int_file(os.path.join(self.dir, RECOVERY_POINT_FILE), self._leo)
            self._update_snapshot_anchor()
        self.producer_state.take_snapshot(self._leo)
        self._unflushed_messages = 0
        self._last_flush_ms = self._clock.time_ms() if now_ms is None else now_ms

    def maybe_flush(self, now_ms: int) -> bool:
        """flush.ms for an idle log: Kafka's scheduler checks it every
        log.flush.scheduler.interval.ms; the broker calls this periodically."""
        if (not self._closed and self.config.flush_ms is not None and self._unflushed_messages
                and now_ms - self._last_flush_ms >= self.config.flush_ms):
            self.flush(now_ms)
            return True
        return False

    def close(self, *, clean: bool = True, marker: bool = True) -> None:
        """Flush, close the files and leave the clean-shutdown marker. clean=False (for a
        log about to be deleted) just closes the files. marker=False: the caller (the log
        manager) records the clean shutdown of all its logs in one file instead."""
        if self._closed:
            return
        try:
            if clean:
                self.flush()
                self.producer_state.take_snapshot(self._leo, fsync=True)
        finally:
            for seg in self.segments:
                seg.close()
            self._closed = True
        if clean and marker:
            try:
                with open(os.path.join(self.dir, CLEAN_SHUTDOWN_FILE), "w"):
                    pass
            except OSError:
                pass  # no marker: the next open validates the log, which is always safe

    @property
    def closed(self) -> bool:
        return self._closed

    # --- producer state -------------------------------------------------------------------
    def remove_expired_producers(self, now_ms: int, expiration_ms: int = 86400000) -> int:
        """producer.id.expiration.ms (default 1 day): forget idle idempotent producers
        (kafkette.log.producer_state). Kafka runs this every
        producer.id.expiration.check.interval.ms (10 minutes)."""
        if self._closed:
            return 0
        return self.producer_state.remove_expired(now_ms, expiration_ms)

    # --- retention ----------------------------------------------------------------------
    # Mechanics only; the policies (retention.ms, retention.bytes, log start offset) are
    # predicates in kafkette.log.retention. Kafka: UnifiedLog.deletableSegments /
    # deleteSegments / maybeIncrementLogStartOffset.
    def deletable_segments(self, predicate, high_watermark: int | None = None) -> list[LogSegment]:
        """The oldest segments, in order, while `predicate(segment, next_segment or None)`
        holds (it is called once per segment, in order, and not after the first False, so
        it may keep state, as the retention.bytes one does). As Kafka: a segment is only a
        candidate when it lies wholly below the high watermark (so the log start offset
        never passes it), and an empty active segment never is (it would be re-created).
        `high_watermark` comes from the partition's owner (default: the log end offset)."""
        hw = self._leo if high_watermark is None else high_watermark
        segs = self.segments
        out: list[LogSegment] = []
        for i, seg in enumerate(segs):
            nxt = segs[i + 1] if i + 1 < len(segs) else None
            if nxt is None and seg.size == 0:
                break
            upper = nxt.base_offset if nxt is not None else self._leo
            if hw < upper or not predicate(seg, nxt):
                break
            out.append(seg)
        return out

    def delete_segments(self, doomed: list[LogSegment], now_ms: int | None = None) -> int:
        """Delete `doomed`, which must be the oldest segments in order (as
        deletable_segments returns them), and move the log start offset (persisted) to the
        base offset of the first segment left. When every segment goes, the log is rolled
        first so it keeps an (empty) active segment at the log end (Kafka does the same: an
        expired active segment is rolled and deleted). Returns the number deleted."""
        self._check_open()
        n = len(doomed)
        if not n:
            return 0
        if [s.base_offset for s in doomed] != self._bases[:n]:
            raise ValueError("delete_segments takes the oldest segments, in order")
        if n == len(self.segments):
            if self.segments[-1].size == 0:
                n -= 1  # an empty active segment stays (rolling would re-create it)
                if not n:
                    return 0
            else:
                self._roll(self._clock.time_ms() if now_ms is None else now_ms)
        doomed = self.segments[:n]
        del self.segments[:n]
        del self._bases[:n]
        self._size -= sum(s.size for s in doomed)
        for seg in doomed:
            seg.delete()
        new_start = self.segments[0].base_offset
        # A crash before the next line is harmless: on open the log start offset is at
        # least the first segment's base offset.
        self.set_log_start_offset(new_start)
        if self._recovery_point < new_start:
            # Kafka's updateLogStartOffset moves the recovery point along: nothing below
            # the log start offset is left to recover.
            self._recovery_point = new_start
            _write_int_file(os.path.join(self.dir, RECOVERY_POINT_FILE), new_start)
        log.info("deleted %d segment(s) of %s-%d; log start offset %d", n, self.topic,
                 self.partition, self._log_start_offset)
        return n

    def delete_segments_below_log_start(self, high_watermark: int | None = None) -> int:
        """Delete the segments that lie wholly below the log start offset (Kafka's
        deleteLogStartOffsetBreachedSegments: the next segment starts at or below it).
        Never the active segment."""
        start = self._log_start_offset
        return self.delete_segments(self.deletable_segments(
            lambda seg, nxt: nxt is not None and nxt.base_offset <= start, high_watermark))

    def delete_records(self, offset: int, high_watermark: int | None = None) -> int:
        """DeleteRecords: move the log start offset forward to `offset` (never back;
        OFFSET_OUT_OF_RANGE when negative or past the high watermark), delete the
        segments now wholly below it, and return the log start offset (the partition's
        low watermark). Kafka leaves the segment deletion to the next retention check;
        doing it at once frees the disk sooner and is otherwise the same."""
        self._check_open()
        if offset < 0:
            raise OffsetOutOfRangeError(f"the offset {offset} of {self.topic}-{self.partition} is not valid")
        self.set_log_start_offset(offset, high_watermark)
        self.delete_segments_below_log_start(high_watermark)
        return self._log_start_offset

    # --- compaction ---------------------------------------------------------------------
    # The log cleaner (kafkette.log.cleaner) reads closed segments and writes cleaned
    # copies as `.cleaned` files without touching this object; swapping them in is the
    # only step that changes the log (Kafka: UnifiedLog.replaceSegments).
    def replace_segments(self, replacements: list[tuple[list[LogSegment], str]],
                         now_ms: int | None = None) -> bool:
        """Swap cleaned segment files in. `replacements`: (old segments, cleaned .log
        file) pairs; each list of old segments must be a consecutive run of this log's
        inactive segments, and the cleaned file (named `<base of the first>.log.cleaned`)
        holds all their retained batches, offsets unchanged. Returns False, changing
        nothing, when a run is not (or no longer) part of the log. The file work is
        crash-safe (kafkette.log.cleaner.swap_files; a restart finishes or rolls back a
        swap that was interrupted). Batches below the high watermark only change shape,
        so the log start/end offsets, high watermark and recovery point stay as they are."""
        from kafkette.log.cleaner import swap_files

        self._check_open()
        segs = self.segments
        plan = []  # (index of the first old segment, number of old segments, end offset, path)
        for old, cleaned_path in replacements:
            if not old:
                return False
            try:
                i = next(k for k, s in enumerate(segs) if s is old[0])
            except StopIteration:
                return False
            n = len(old)
            if i + n >= len(segs) or any(segs[i + k] is not o for k, o in enumerate(old)):
                return False  # gone, or reaching into the active segment
            plan.append((i, n, segs[i + n].base_offset, cleaned_path))
        for i, n, _end, _path in plan:
            for seg in segs[i:i + n]:
                # Write out any pending index entries now, so that close() below, after
                # the files are gone, cannot re-create an index file.
                seg.flush()
        try:
            swap_files(self.dir, [(segs[i].base_offset, end, path) for i, _n, end, path in plan])
        except OSError as exc:
            # Before the commit nothing changed; after it the old segments stay readable
            # through their open fds and the next open finishes the swap.
            raise KafkaStorageError(f"swapping cleaned segments into {self.dir} failed: {exc}") from exc
        now = self._clock.time_ms() if now_ms is None else now_ms
        interval = self.config.index_interval_bytes
        for i, n, end, _path in sorted(plan, reverse=True):
            base = segs[i].base_offset
            for seg in segs[i:i + n]:
                seg.close()  # files already gone
            new = LogSegment.open_existing(self.dir, base, interval)
            new.recover(truncate=False, now_ms=now, inactive=True)  # builds its indexes
            new.next_offset = end
            new._unload()  # loaded again on first use, as for any inactive segment
            segs[i:i + n] = [new]
        self._bases = [s.base_offset for s in segs]
        self._size = sum(s.size for s in segs)
        return True


class _UnopenedPartitionLog(PartitionLog):
    """A PartitionLog from `PartitionLog.unopened`. What start-up and the periodic tasks
    ask of every log (offsets, latest epoch, config, flush of nothing, close) is answered
    without opening; the first access to anything else opens the log in place (the
    instance becomes a plain PartitionLog, so later accesses cost nothing extra)."""

    _CHEAP = frozenset({
        "__class__", "__dict__", "dir", "log_dir", "failure_channel", "_offline",
        "topic", "partition", "config", "_clock",
        "_log_start_offset", "_leo", "_latest_epoch", "_closed", "log_start_offset",
        "log_end_offset", "latest_epoch", "opened", "closed", "close", "flush",
        "_active_extent", "active_segment_extent", "_size", "size_bytes",
        "maybe_flush", "remove_expired_producers", "__repr__", "_open_now",
        "offline", "mark_offline",
    })

    def __getattribute__(self, name):
        if name not in _UnopenedPartitionLog._CHEAP:
            object.__getattribute__(self, "_open_now")()
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if name != "config":  # a new topic config needs no open
            self._open_now()
        object.__setattr__(self, name, value)

    def _open_now(self) -> None:
        if object.__getattribute__(self, "__class__") is not _UnopenedPartitionLog:
            return
        d = object.__getattribute__(self, "__dict__")
        if d["_offline"]:
            raise KafkaStorageError(f"log {d['dir']} is in an offline log dir")
        if d["_closed"]:
            raise KafkaStorageError(f"log {d['dir']} is closed")
        expected = (d["_log_start_offset"], d["_leo"])
        object.__setattr__(self, "__class__", PartitionLog)
        # PartitionLog.__init__'s fields, then the open itself (no recovery: clean).
        keep = {k: d[k] for k in ("dir", "log_dir", "failure_channel", "_offline", "topic",
                                  "partition", "config", "_clock")}
        d.clear()
        d.update(keep)
        self.segments = []
        self._bases = []
        self._leo = 0
        self._unreplicated_txns = deque()
        self._log_start_offset = 0
        self._recovery_point = 0
        self._size = 0
        self._unflushed_messages = 0
        self._last_flush_ms = 0
        self._closed = True
        try:
            self._open(known_clean=True)
        except OSError as exc:
            # A failing device found on first use: the log dir goes offline (KIP-112),
            # as an error at start-up would have taken it.
            raise self._storage_error(exc, "open of") from exc
        if (self._log_start_offset, self._leo) != expected:
            # The summary and the files disagree (edited by hand, or a bug): the files win.
            log.warning("log %s opened at offsets %s, the clean-shutdown summary said %s",
                        self.dir, (self._log_start_offset, self._leo), expected)

    @property
    def opened(self) -> bool:
        return False

    @property
    def active_segment_extent(self) -> tuple[int, int]:
        return self._active_extent

    @property
    def latest_epoch(self) -> int:
        return self._latest_epoch

    @property
    def closed(self) -> bool:
        return self._closed

    def flush(self, now_ms: int | None = None) -> None:
        if self._closed:
            raise KafkaStorageError(f"log {self.dir} is closed")
        # Nothing written since the clean shutdown: nothing to flush.

    def maybe_flush(self, now_ms: int) -> bool:
        return False

    def remove_expired_producers(self, now_ms: int, expiration_ms: int = 86400000) -> int:
        return 0  # the first use after opening expires them, as the next check would

    def mark_offline(self) -> None:
        # Its log dir went offline before it was opened: nothing to close, and it never
        # opens now (every later use is refused, as for an opened log).
        d = self.__dict__
        d["_offline"] = True
        d["_closed"] = True

    def close(self, *, clean: bool = True, marker: bool = True) -> None:
        if self._closed:
            return
        self.__dict__["_closed"] = True
        if clean and marker:
            with open(os.path.join(self.dir, CLEAN_SHUTDOWN_FILE), "w"):
                pass

    def __repr__(self) -> str:
        return (f"PartitionLog({self.topic}-{self.partition}, unopened, "
                f"log_start_offset={self._log_start_offset}, log_end_offset={self._leo})")
