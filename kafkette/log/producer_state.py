"""Idempotent producer state of one partition: Kafka's ProducerStateManager,
ProducerStateEntry and ProducerAppendInfo (KIP-98, KIP-360), in miniature.

Per producer id the partition remembers the producer epoch and the metadata of the
producer's last NUM_BATCHES_TO_RETAIN (5) batches: last sequence, last offset, offset
delta (so first sequence and first offset) and max timestamp. Every check reads batch
HEADER fields only (producer_id, producer_epoch, base_sequence, last_offset_delta,
max_timestamp, attributes): no record is decoded, the hot path stays bytes.

The rules, as Kafka 3.x/4.x applies them to a client append (ProducerAppendInfo.
checkProducerEpoch / checkSequence, UnifiedLog.analyzeAndValidateProducerState,
ProducerStateEntry.findDuplicateBatch), for a batch with producer_id >= 0:

1. base_sequence < 0 → INVALID_RECORD (LogValidator.validateBatch).
2. Duplicate: the batch's epoch equals the producer's current epoch and its
   (first_seq, last_seq) equals one of the retained batches → nothing is appended and
   the produce is answered with error NONE and the ORIGINAL base offset (Kafka >= 1.0,
   KAFKA-5793; DUPLICATE_SEQUENCE_NUMBER is no longer sent). Only the state committed
   by earlier requests is searched, and one duplicate batch makes the whole request a
   duplicate (Kafka returns at the first one).
3. epoch < current epoch → INVALID_PRODUCER_EPOCH (Kafka >= 2.7 answers Produce with
   this code, never PRODUCER_FENCED: KIP-588, KAFKA-10687).
4. epoch > current epoch (the producer bumped it, KIP-360: the Java client and
   librdkafka bump the epoch of an idempotent producer locally) → the batch must start
   at sequence 0, else OUT_OF_ORDER_SEQUENCE_NUMBER — unless the producer is unknown
   here (current epoch -1), when any sequence is accepted.
5. same epoch → first_seq must follow the last sequence (last + 1, or 0 after
   2147483647: sequences wrap at int32), else OUT_OF_ORDER_SEQUENCE_NUMBER. A duplicate
   of a batch older than the retained five therefore gets OUT_OF_ORDER_SEQUENCE_NUMBER,
   as in Kafka (UnifiedLogTest.testDuplicateAppends).
6. Unknown producer id (never seen, expired, or all its batches gone with retention):
   the batch is accepted whatever its sequence (KIP-360, Kafka >= 2.5; older brokers
   answered UNKNOWN_PRODUCER_ID, which Kafka no longer sends for Produce).

Transactions (KIP-98), as Kafka 3.9's ProducerAppendInfo / ProducerStateManager track
them per partition:

- A transactional data batch (TRANSACTIONAL bit, not CONTROL) starts a transaction of
  its producer at its base offset unless one is ongoing (`current_txn_first_offset`).
  A later transactional batch with a NEWER epoch while one is ongoing is accepted and
  simply continues it — its first offset stays — exactly as Kafka's appendDataBatch
  (checkProducerEpoch only refuses older epochs; the marker closing the old epoch's
  transaction is the coordinator's business).
- A non-transactional batch from a producer with an ongoing transaction is refused
  with INVALID_TXN_STATE ("Expected transactional write from producer ...").
- A control batch (COMMIT/ABORT marker, written by the coordinator's WriteTxnMarkers
  through PartitionLog.append_marker) is checked first: epoch older than the
  producer's → INVALID_PRODUCER_EPOCH (Kafka's checkProducerEpoch throws
  InvalidProducerEpochException for markers too, never PRODUCER_FENCED), coordinator
  epoch older than the last marker's → TRANSACTION_COORDINATOR_FENCED. It then ends
  the ongoing transaction, if any, yielding a CompletedTxn (a marker without a
  transaction is still written, and yields nothing: Kafka's appendEndTxnMarker), sets
  the producer's epoch (a newer one forgets its batches) and coordinator epoch.
- The ongoing transactions are also kept as first offset -> producer id in offset order
  (Kafka: the ongoingTxns TreeMap), so `first_unstable_offset()` is O(1). What Kafka
  adds and kafkette leaves to the broker: Kafka also counts a COMPLETED transaction
  whose marker is not yet below the high watermark as unstable (unreplicatedTxns);
  here the broker takes LSO = min(high watermark, first_unstable_offset()).
- Recovery, truncation and follower appends replay the same state changes without the
  checks (origin REPLICATION). The coordinator's own appends (origin "coordinator":
  transactional offset commits, markers) skip duplicate and sequence checks, as
  Kafka's AppendOrigin.COORDINATOR does, but keep the epoch and transaction checks.

Persistence: a snapshot `<offset, 20 digits>.snapshot` in the partition directory is
the state after every batch below `offset`. It is written when a segment rolls (offset =
the new segment's base offset), on flush, and on close (then fsynced), as Kafka writes
one on roll and close. Recovery loads the newest readable snapshot (one above the log
end after a torn-tail truncation, or below the first segment after retention, is
deleted) and replays the batch headers from its offset to the log end. State survives
retention and compaction because it lives in the snapshot, not in old segments. The
newest two snapshots are kept (the older one is the fallback if the newest is torn);
Kafka keeps one per segment (followers truncate to them), which replication may want.

The file format is Kafka's producer snapshot v1 (ProducerStateManager's
PID_SNAPSHOT_MAP_SCHEMA: int16 version, uint32 CRC-32C of the rest, int32 count, then
per entry int64 producer_id, int16 epoch, int32 last_sequence, int64 last_offset, int32
offset_delta, int64 timestamp, int32 coordinator_epoch, int64 current_txn_first_offset).
Kafka writes one entry per producer (its last batch only, so after a restart Kafka only
recognises a retry of the last batch until newer batches are replayed). kafkette writes
one entry per RETAINED batch, oldest first: Kafka's reader keeps the last entry per
producer id (exactly what it would have written), kafkette keeps all five, so a
restarted kafkette still recognises a retry of any of the last five batches.

The snapshot keeps `coordinator_epoch` and `current_txn_first_offset` per producer,
so ongoing transactions survive a restart. Besides the newest two, the newest snapshot
at or below `anchor_offset` is kept (the PartitionLog sets it to the base of the
segment holding its recovery point), so that recovery can rebuild the aborted
transaction indexes of the segments it re-reads from the producer state at their start
(Kafka keeps one snapshot per segment for the same reason).

Expiry: `remove_expired(now_ms, producer.id.expiration.ms)` drops producers without an
ongoing transaction whose last batch timestamp is older than the expiration (Kafka's
removeExpiredProducers; its scheduler runs it every
producer.id.expiration.check.interval.ms, 10 minutes). As in Kafka the timestamp is
the batch's max timestamp (the producer's clock for CreateTime topics). Loading a
snapshot does not expire anything (Kafka filters expired producers at load); the next
periodic check does.

Single-threaded, owned by the PartitionLog.
"""
from __future__ import annotations

import logging
import os
import struct
from typing import Iterable, Iterator, NamedTuple

from crc32c import crc32c

from kafkette.errors import ErrorCode, InvalidRecordError, KafkaError
from kafkette.log.txn_index import AbortedTxn
from kafkette.protocol import records as rec
from kafkette.log.fsutil import fsync_path as _fsync_file, remove_quietly

log = logging.getLogger(__name__)

NUM_BATCHES_TO_RETAIN = 5  # Kafka: ProducerStateEntry.NUM_BATCHES_TO_RETAIN
INT32_MAX = 2**31 - 1
NO_PRODUCER_EPOCH = rec.NO_PRODUCER_EPOCH  # -1
NO_SEQUENCE = rec.NO_SEQUENCE  # -1
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86400000  # producer.id.expiration.ms (KIP-854)

SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
SNAPSHOTS_TO_KEEP = 2
_SNAP_HEADER = struct.Struct(">hIi")  # version, crc, entry count
_SNAP_ENTRY = struct.Struct(">qhiqiqiq")
_CRC_FROM = 6  # the CRC covers everything after version and crc

_SCAN_CHUNK = 64 * 1024


class OutOfOrderSequenceError(KafkaError):
    code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class InvalidProducerEpochError(KafkaError):
    code = ErrorCode.INVALID_PRODUCER_EPOCH


class InvalidTxnStateError(KafkaError):
    """Kafka's InvalidTxnStateException from the partition: a non-transactional write
    from a producer in the middle of a transaction."""

    code = ErrorCode.INVALID_TXN_STATE


class TransactionCoordinatorFencedError(KafkaError):
    """A marker from a coordinator whose epoch is older than the last one seen here."""

    code = ErrorCode.TRANSACTION_COORDINATOR_FENCED


class CompletedTxn(NamedTuple):
    """A transaction ended by a marker (Kafka's CompletedTxn): last_offset is the
    marker's offset."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool


class CorruptSnapshotError(Exception):
    pass


def increment_sequence(sequence: int, increment: int) -> int:
    """Kafka's DefaultRecordBatch.incrementSequence: sequences wrap at int32 max to 0."""
    if sequence > INT32_MAX - increment:
        return increment - (INT32_MAX - sequence) - 1
    return sequence + increment


def decrement_sequence(sequence: int, decrement: int) -> int:
    if sequence < decrement:
        return INT32_MAX - (decrement - sequence) + 1
    return sequence - decrement


def in_sequence(last_seq: int, next_seq: int) -> bool:
    """Kafka's ProducerAppendInfo.inSequence."""
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


def snapshot_file_name(offset: int) -> str:
    return f"{offset:020d}{SNAPSHOT_SUFFIX}"


class BatchMetadata(NamedTuple):
    """One retained batch (Kafka's BatchMetadata)."""

    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp: int

    @property
    def first_seq(self) -> int:
        return decrement_sequence(self.last_seq, self.offset_delta)

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


_new_meta = tuple.__new__  # BatchMetadata without the NamedTuple __new__ indirection


class ProducerStateEntry:
    """What a partition knows about one producer id (Kafka's ProducerStateEntry)."""

    __slots__ = ("producer_id", "producer_epoch", "batches", "last_timestamp",
                 "coordinator_epoch", "current_txn_first_offset")

    def __init__(self, producer_id: int, producer_epoch: int = NO_PRODUCER_EPOCH,
                 batches: list[BatchMetadata] | None = None, last_timestamp: int = rec.NO_TIMESTAMP,
                 coordinator_epoch: int = -1, current_txn_first_offset: int | None = None):
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.batches: list[BatchMetadata] = batches if batches is not None else []
        self.last_timestamp = last_timestamp
        self.coordinator_epoch = coordinator_epoch
        self.current_txn_first_offset = current_txn_first_offset

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_data_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        if epoch != self.producer_epoch:
            return None
        for b in self.batches:
            if b.last_seq == last_seq and b.first_seq == first_seq:
                return b
        return None

    def maybe_update_epoch(self, epoch: int) -> None:
        if epoch != self.producer_epoch:
            self.batches = []
            self.producer_epoch = epoch

    def add_batch(self, epoch: int, meta: BatchMetadata) -> None:
        self.maybe_update_epoch(epoch)
        batches = self.batches
        batches.append(meta)
        if len(batches) > NUM_BATCHES_TO_RETAIN:
            del batches[0]
        self.last_timestamp = meta.timestamp

    def __repr__(self) -> str:
        return (f"ProducerStateEntry(producer_id={self.producer_id}, epoch={self.producer_epoch}, "
                f"batches={self.batches}, last_timestamp={self.last_timestamp}, "
                f"coordinator_epoch={self.coordinator_epoch}, "
                f"current_txn_first_offset={self.current_txn_first_offset})")


class _Update:
    """The changes one append makes to one producer (Kafka's ProducerAppendInfo's
    updatedEntry): applied only once the bytes are written. `events` (None until the
    first transactional batch or marker of the append): (offset, producer id, None) for
    a transaction started at `offset`, (offset, producer id, CompletedTxn) for one a
    marker at `offset` ended, in append order."""

    __slots__ = ("epoch", "batches", "last_timestamp", "txn_first", "coordinator_epoch", "events")

    def __init__(self, current: "ProducerStateEntry | None"):
        if current is None:
            self.epoch = NO_PRODUCER_EPOCH
            self.txn_first = None
            self.coordinator_epoch = -1
        else:
            self.epoch = current.producer_epoch
            self.txn_first = current.current_txn_first_offset
            self.coordinator_epoch = current.coordinator_epoch
        self.batches: list[BatchMetadata] = []
        self.last_timestamp: int | None = None
        self.events: list | None = None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = []


class ProducerStateManager:
    """The producer table of one partition, and its snapshots in `dir_path`."""

    def __init__(self, dir_path: str, topic_partition: str = ""):
        self.dir = dir_path
        self.name = topic_partition or os.path.basename(dir_path)
        self.producers: dict[int, ProducerStateEntry] = {}
        # Ongoing transactions: first offset -> producer id, in offset order (Kafka's
        # ongoingTxns TreeMap). Appends start transactions at the log end, so insertion
        # order is offset order; loading a snapshot sorts once. _first_unstable caches
        # the smallest key.
        self._ongoing: dict[int, int] = {}
        self._first_unstable: int | None = None
        self._snapshots: list[int] = []  # offsets of the snapshot files, ascending
        self._last_snap_offset = -1
        self._last_snap_synced = True
        # The newest snapshot at or below this offset is kept as well (module docstring).
        self.anchor_offset = -1

    # --- transactions -----------------------------------------------------------------------
    def first_unstable_offset(self) -> int | None:
        """The first offset of the earliest ongoing transaction (Kafka's
        firstUndecidedOffset), or None."""
        return self._first_unstable

    def ongoing_transactions(self) -> list[tuple[int, int]]:
        """(first offset, producer id) of every ongoing transaction, in offset order."""
        return sorted(self._ongoing.items())

    def _start_txn(self, first_offset: int, pid: int) -> None:
        self._ongoing[first_offset] = pid
        if self._first_unstable is None or first_offset < self._first_unstable:
            self._first_unstable = first_offset

    def _end_txn(self, first_offset: int, last_offset: int) -> int:
        """Forget the ongoing transaction starting at `first_offset`; returns the last
        stable offset after it (Kafka's ProducerStateManager.lastStableOffset: the next
        ongoing transaction's first offset, or the marker's offset + 1)."""
        ongoing = self._ongoing
        ongoing.pop(first_offset, None)
        if first_offset == self._first_unstable:
            self._first_unstable = next(iter(ongoing), None) if ongoing else None
        return self._first_unstable if self._first_unstable is not None else last_offset + 1

    def _rebuild_ongoing(self) -> None:
        self._ongoing = {off: pid for off, pid in sorted(
            (e.current_txn_first_offset, pid) for pid, e in self.producers.items()
            if e.current_txn_first_offset is not None)}
        self._first_unstable = next(iter(self._ongoing), None)

    # --- validation (hot path: once per idempotent batch) -------------------------------
    def check(self, h: rec.BatchHeader, offset: int, timestamp: int,
              pending: dict[int, _Update], client: bool = True,
              marker: tuple[int, int] | None = None) -> BatchMetadata | None:
        """Validate one batch whose base offset will be `offset` (header fields only).
        Returns the retained batch it duplicates, or None after recording the batch in
        `pending` (apply it with `apply(pending)` once the append is written). Raises
        OutOfOrderSequenceError / InvalidProducerEpochError / InvalidRecordError /
        InvalidTxnStateError / TransactionCoordinatorFencedError.
        `client`: False for the coordinator's appends (no duplicate or sequence checks).
        `marker`: (control type, coordinator epoch) of a control batch
        (records.read_end_txn_marker)."""
        pid = h.producer_id
        epoch = h.producer_epoch
        current = self.producers.get(pid)
        upd = pending.get(pid)
        if upd is None:
            upd = pending[pid] = _Update(current)
        attributes = h.attributes
        if attributes & rec.CONTROL_BIT:
            self._check_marker(h, offset, timestamp, upd, marker)
            return None
        first_seq = h.base_sequence
        if first_seq < 0 and client:
            raise InvalidRecordError(
                f"invalid sequence number {first_seq} in a record batch with producer id {pid}")
        delta = h.last_offset_delta
        # increment_sequence and find_duplicate, inlined: this runs for every batch
        if first_seq < 0:
            last_seq = NO_SEQUENCE  # the coordinator's writes carry no sequence
        else:
            last_seq = first_seq + delta if first_seq <= INT32_MAX - delta else delta - (INT32_MAX - first_seq) - 1
        if client and current is not None and epoch == current.producer_epoch:
            for b in current.batches:
                # same last sequence and offset delta <=> same (first, last) sequences
                if b[0] == last_seq and b[2] == delta:
                    return b
        current_epoch = upd.epoch
        if epoch < current_epoch:
            raise InvalidProducerEpochError(
                f"epoch {epoch} of producer {pid} at offset {offset} in {self.name} is older "
                f"than the last seen epoch {current_epoch}")
        if not client:
            if epoch != current_epoch:
                upd.epoch = epoch
                upd.batches = []
        elif epoch != current_epoch:
            if first_seq != 0 and current_epoch != NO_PRODUCER_EPOCH:
                raise OutOfOrderSequenceError(
                    f"invalid sequence number for the new epoch {epoch} of producer {pid} at "
                    f"offset {offset} in {self.name}: {first_seq} (expected 0; current epoch "
                    f"{current_epoch})")
            upd.epoch = epoch
            upd.batches = []
        elif current is not None and current.producer_epoch != NO_PRODUCER_EPOCH:
            # (No current epoch — unknown producer, or all its batches deleted: any
            # sequence is accepted, Kafka's checkSequence, KIP-360.)
            if upd.batches:
                last = upd.batches[-1][0]
            elif epoch == current.producer_epoch:
                last = current.batches[-1][0] if current.batches else NO_SEQUENCE
            else:
                last = NO_SEQUENCE
            if first_seq != last + 1 and not (first_seq == 0 and last == INT32_MAX):
                raise OutOfOrderSequenceError(
                    f"out of order sequence number for producer {pid} at offset {offset} in "
                    f"{self.name}: {first_seq} (incoming), {last} (current end sequence)")
        if attributes & rec.TRANSACTIONAL_BIT:
            if upd.txn_first is None:
                upd.txn_first = offset  # a new transaction begins here
                if upd.events is None:
                    upd.events = []
                upd.events.append((offset, pid, None))
        elif upd.txn_first is not None:
            raise InvalidTxnStateError(
                f"Expected transactional write from producer {pid} at offset {offset} in "
                f"partition {self.name}")
        upd.batches.append(_new_meta(BatchMetadata, (last_seq, offset + delta, delta, timestamp)))
        upd.last_timestamp = timestamp
        return None

    def _check_marker(self, h: rec.BatchHeader, offset: int, timestamp: int, upd: _Update,
                      marker: tuple[int, int] | None) -> None:
        """Kafka's appendEndTxnMarker on the leader (origin COORDINATOR)."""
        pid = h.producer_id
        epoch = h.producer_epoch
        if marker is None or marker[0] not in (rec.ABORT_MARKER, rec.COMMIT_MARKER):
            raise InvalidRecordError(f"control batch of producer {pid} in {self.name} is not a "
                                     f"transaction marker")
        ctype, coordinator_epoch = marker
        if epoch < upd.epoch:
            raise InvalidProducerEpochError(
                f"epoch {epoch} of the marker of producer {pid} at offset {offset} in {self.name} "
                f"is older than the last seen epoch {upd.epoch}")
        if upd.coordinator_epoch > coordinator_epoch:
            raise TransactionCoordinatorFencedError(
                f"invalid coordinator epoch for producer {pid} at offset {offset} in {self.name}: "
                f"{coordinator_epoch} (zombie), {upd.coordinator_epoch} (current)")
        if upd.txn_first is not None:
            if upd.events is None:
                upd.events = []
            upd.events.append((offset, pid, CompletedTxn(pid, upd.txn_first, offset,
                                                         ctype == rec.ABORT_MARKER)))
            upd.txn_first = None
        upd.set_epoch(epoch)
        upd.coordinator_epoch = coordinator_epoch
        upd.last_timestamp = timestamp

    def apply(self, pending: dict[int, _Update]) -> list[tuple[CompletedTxn, int]] | None:
        """Commit the updates of a written append (Kafka's ProducerStateManager.update
        and completeTxn). Returns the transactions the append completed, each with the
        last stable offset right after it (for the aborted-transaction index), in
        offset order; None when the append started or ended none."""
        producers = self.producers
        events = None
        for pid, upd in pending.items():
            entry = producers.get(pid)
            if entry is None:
                entry = producers[pid] = ProducerStateEntry(pid)
            if upd.epoch != entry.producer_epoch:  # maybe_update_epoch, inlined
                entry.producer_epoch = upd.epoch
                entry.batches = []
            new = upd.batches
            if new:
                batches = entry.batches
                batches += new
                if len(batches) > NUM_BATCHES_TO_RETAIN:
                    del batches[:-NUM_BATCHES_TO_RETAIN]
                entry.last_timestamp = new[-1][3]
            elif upd.last_timestamp is not None:
                entry.last_timestamp = upd.last_timestamp
            if upd.events is not None:
                events = upd.events if events is None else events + upd.events
            entry.current_txn_first_offset = upd.txn_first
            entry.coordinator_epoch = upd.coordinator_epoch
        if events is None:
            return None
        if len(pending) > 1:
            events.sort(key=lambda e: e[0])
        done = []
        for offset, pid, completed in events:
            if completed is None:
                self._start_txn(offset, pid)
            else:
                done.append((completed, self._end_txn(completed.first_offset, completed.last_offset)))
        return done

    def remove_expired(self, now_ms: int, expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS) -> int:
        """Forget producers idle for expiration_ms (producer.id.expiration.ms): no
        ongoing transaction and a last batch timestamp at least that old (Kafka's
        isProducerExpired). Returns how many went. Their next batch is accepted whatever
        its sequence (rule 6), so a retry of their last batch would be appended again,
        exactly as in Kafka."""
        expired = [pid for pid, e in self.producers.items()
                   if e.current_txn_first_offset is None and now_ms - e.last_timestamp >= expiration_ms]
        for pid in expired:
            del self.producers[pid]
        return len(expired)

    # --- replay (recovery) ----------------------------------------------------------------
    def replay(self, h: rec.BatchHeader,
               marker: tuple[int, int] | None = None) -> tuple[CompletedTxn, int] | None:
        """Apply one stored batch without validation (Kafka loads the log with origin
        REPLICATION: what is in the log is the truth). `marker`: (control type,
        coordinator epoch) of a control batch (records.read_end_txn_marker). Returns
        the transaction a marker completed, with the last stable offset after it."""
        pid = h.producer_id
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = ProducerStateEntry(pid)
        if h.attributes & rec.CONTROL_BIT:
            entry.maybe_update_epoch(h.producer_epoch)
            entry.last_timestamp = h.max_timestamp
            if marker is None or marker[0] not in (rec.ABORT_MARKER, rec.COMMIT_MARKER):
                # An emptied control batch (the cleaner removed the marker after its
                # transaction was gone) or a control record that is no marker: Kafka's
                # ProducerAppendInfo.append completes nothing for it either.
                return None
            entry.coordinator_epoch = marker[1]
            first = entry.current_txn_first_offset
            if first is None:
                return None
            entry.current_txn_first_offset = None
            completed = CompletedTxn(pid, first, h.base_offset, marker[0] == rec.ABORT_MARKER)
            return completed, self._end_txn(first, h.base_offset)
        delta = h.last_offset_delta
        first_seq = h.base_sequence
        entry.add_batch(h.producer_epoch, BatchMetadata(
            increment_sequence(first_seq, delta) if first_seq >= 0 else NO_SEQUENCE,
            h.base_offset + delta, delta, h.max_timestamp))
        if h.attributes & rec.TRANSACTIONAL_BIT and entry.current_txn_first_offset is None:
            entry.current_txn_first_offset = h.base_offset
            self._start_txn(h.base_offset, pid)
        return None

    def load(self, segments, log_end_offset: int, *, txn_index_from: int | None = None,
             aborted_out: list[AbortedTxn] | None = None) -> int:
        """Rebuild the table for a log made of `segments` (LogSegment, ascending, open)
        ending at `log_end_offset`: newest usable snapshot, then the batch headers after
        it (and the one record of each control batch). Returns the number of batches
        replayed. Also the way to reload after the log was truncated.

        `txn_index_from` (recovery): the aborted-transaction indexes from this offset on
        are being rebuilt. The replay then starts from the newest snapshot at or below
        it (or from nothing at the first segment when there is none), and every abort
        marker at or after it is appended to `aborted_out` as its index entry (Kafka
        rebuilds the index in LogSegment.recover from the producer state at the
        segment's start)."""
        self.producers = {}
        self._ongoing = {}
        self._first_unstable = None
        first_base = segments[0].base_offset if segments else log_end_offset
        self._snapshots = self._list_snapshots()
        for off in list(self._snapshots):
            # Above the log end: written before a torn tail was cut off. Below the first
            # segment: the batches between it and the log are gone (retention), so
            # replaying from it would miss updates (Kafka: truncateAndReload).
            if off > log_end_offset or off < first_base:
                self._delete_snapshot(off)
        start = first_base
        self._last_snap_offset = -1
        candidates = [off for off in self._snapshots if txn_index_from is None or off <= txn_index_from]
        while candidates:
            off = candidates.pop()
            try:
                self._read_snapshot(off)
            except (CorruptSnapshotError, OSError) as e:
                log.warning("producer state snapshot %s of %s unusable (%s); deleting it",
                            snapshot_file_name(off), self.name, e)
                self.producers = {}
                self._delete_snapshot(off)
                continue
            start = off
            self._last_snap_offset = off
            break
        if txn_index_from is not None and self._last_snap_offset < 0 and first_base < txn_index_from \
                and self._snapshots:
            log.warning("no producer state snapshot of %s at or below %d: rebuilding the aborted "
                        "transaction indexes from the first segment (%d); producers known only "
                        "from deleted segments are forgotten", self.name, txn_index_from, first_base)
        self._rebuild_ongoing()
        replayed = 0
        with_producer = 0
        if start < log_end_offset:
            collect = aborted_out is not None and txn_index_from is not None
            for seg, pos, h in iter_stored_batches(segments, start):
                if h.producer_id >= 0:
                    with_producer += 1
                    marker = None
                    if h.attributes & rec.CONTROL_BIT:
                        marker = read_stored_marker(seg, pos, h)
                    done = self.replay(h, marker)
                    if done is not None and collect and done[0].is_aborted \
                            and done[0].last_offset >= txn_index_from:
                        c, lso = done
                        aborted_out.append(AbortedTxn(c.producer_id, c.first_offset, c.last_offset, lso))
                replayed += 1
            # Per log, so debug: after kill -9 every log of the broker comes through here
            # (the log manager logs one line for all of them).
            log.debug("rebuilt producer state of %s from %d batch(es) after offset %d "
                      "(%d producer id(s), %d ongoing transaction(s))", self.name, replayed, start,
                      len(self.producers), len(self._ongoing))
            # So that the next open does not replay the same batches again; not when
            # no idempotent or transactional batch came since the snapshot (or at all):
            # the table is then the snapshot's, or empty, and a file per log after every
            # unclean start would buy nothing until the next flush or close writes one.
            if with_producer:
                self.take_snapshot(log_end_offset)
        elif self._last_snap_offset < 0:
            # An empty log without a snapshot: the empty table is the state at the log
            # end, no file needed (Kafka writes none either until data arrives).
            self._last_snap_offset = log_end_offset
        return replayed

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """The log was emptied and restarts at `offset` (Kafka's
        ProducerStateManager.truncateFullyAndStartAt): forget every producer and delete
        every snapshot. The empty table is the state at `offset`; no file is needed."""
        self.producers = {}
        self._ongoing = {}
        self._first_unstable = None
        for off in self._list_snapshots():
            self._delete_snapshot(off)
        self._snapshots = []
        self._last_snap_offset = offset
        self._last_snap_synced = True

    # --- snapshots ------------------------------------------------------------------------
    def _path(self, offset: int) -> str:
        return os.path.join(self.dir, snapshot_file_name(offset))

    def _list_snapshots(self) -> list[int]:
        out = []
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        for name in names:
            stem, _, suffix = name.partition(".")
            if len(stem) != 20 or not stem.isdigit():
                continue
            if suffix == "snapshot":
                out.append(int(stem))
            elif suffix == "snapshot.tmp":
                try:
                    os.unlink(os.path.join(self.dir, name))  # a write interrupted by a crash
                except FileNotFoundError:
                    pass
        out.sort()
        return out

    def _delete_snapshot(self, offset: int) -> None:
        try:
            os.unlink(self._path(offset))
        except FileNotFoundError:
            pass
        if offset in self._snapshots:
            self._snapshots.remove(offset)

    def latest_snapshot_offset(self) -> int | None:
        return self._snapshots[-1] if self._snapshots else None

    def snapshot_offsets(self) -> list[int]:
        return list(self._snapshots)

    def take_snapshot(self, offset: int, fsync: bool = False) -> bool:
        """Write the table as `<offset>.snapshot` (the state after every batch below
        `offset`, i.e. the log end offset) unless one for `offset` exists already.
        write + rename: a crash leaves the old files or the new one. Keeps the newest
        SNAPSHOTS_TO_KEEP files. Returns True when a file was written."""
        if offset == self._last_snap_offset:
            if fsync and not self._last_snap_synced:
                _fsync_file(self._path(offset))
                self._last_snap_synced = True
            return False
        path = self._path(offset)
        tmp = path + ".tmp"
        data = self.encode_snapshot()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        except OSError:
            # A full disk: the older snapshots stay, the partial file goes.
            os.close(fd)
            remove_quietly(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        self._last_snap_offset = offset
        self._last_snap_synced = fsync
        if offset not in self._snapshots:
            self._snapshots.append(offset)
            self._snapshots.sort()
        if len(self._snapshots) > SNAPSHOTS_TO_KEEP:
            # The newest SNAPSHOTS_TO_KEEP, and the newest one at or below the anchor
            # (the start of the segment holding the recovery point: recovery rebuilds
            # the transaction indexes from there).
            keep = set(self._snapshots[-SNAPSHOTS_TO_KEEP:])
            anchored = [off for off in self._snapshots if off <= self.anchor_offset]
            if anchored:
                keep.add(anchored[-1])
            for off in [off for off in self._snapshots if off not in keep]:
                self._delete_snapshot(off)
        return True

    def encode_snapshot(self) -> bytes:
        rows = []
        pack = _SNAP_ENTRY.pack
        for pid, e in self.producers.items():
            txn = e.current_txn_first_offset if e.current_txn_first_offset is not None else -1
            if not e.batches:
                rows.append(pack(pid, e.producer_epoch, NO_SEQUENCE, -1, 0, e.last_timestamp,
                                 e.coordinator_epoch, txn))
                continue
            for b in e.batches:
                rows.append(pack(pid, e.producer_epoch, b.last_seq, b.last_offset, b.offset_delta,
                                 b.timestamp, e.coordinator_epoch, txn))
        body = struct.pack(">i", len(rows)) + b"".join(rows)
        return struct.pack(">hI", SNAPSHOT_VERSION, crc32c(body)) + body

    def _read_snapshot(self, offset: int) -> None:
        with open(self._path(offset), "rb") as f:
            data = f.read()
        self.producers = decode_snapshot(data)
        self._rebuild_ongoing()


def decode_snapshot(data: bytes) -> dict[int, ProducerStateEntry]:
    """Parse a snapshot file (Kafka's v1 layout; several entries per producer id allowed,
    oldest first, the last one giving the epoch and last timestamp)."""
    if len(data) < _SNAP_HEADER.size:
        raise CorruptSnapshotError("truncated snapshot header")
    version, crc, count = _SNAP_HEADER.unpack_from(data, 0)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshotError(f"unknown snapshot version {version}")
    if crc32c(memoryview(data)[_CRC_FROM:]) != crc:
        raise CorruptSnapshotError("snapshot CRC mismatch")
    if count < 0 or len(data) != _SNAP_HEADER.size + count * _SNAP_ENTRY.size:
        raise CorruptSnapshotError(f"snapshot of {len(data)} bytes cannot hold {count} entries")
    producers: dict[int, ProducerStateEntry] = {}
    for pid, epoch, last_seq, last_offset, delta, ts, coord, txn in _SNAP_ENTRY.iter_unpack(
            memoryview(data)[_SNAP_HEADER.size:]):
        e = producers.get(pid)
        if e is None:
            e = producers[pid] = ProducerStateEntry(pid)
        e.maybe_update_epoch(epoch)
        if last_offset >= 0:
            e.add_batch(epoch, BatchMetadata(last_seq, last_offset, delta, ts))
        e.last_timestamp = ts
        e.coordinator_epoch = coord
        e.current_txn_first_offset = txn if txn >= 0 else None
    return producers


def iter_stored_headers(segments, start_offset: int) -> Iterator[rec.BatchHeader]:
    """Headers of the stored batches whose last offset is >= start_offset, reading
    headers only (a pread of a chunk, then a jump to each next batch). Stops at the
    first implausible header (recovery has validated the segments it did not trust)."""
    for _seg, _pos, h in iter_stored_batches(segments, start_offset):
        yield h


def iter_stored_batches(segments, start_offset: int) -> Iterator[tuple[object, int, rec.BatchHeader]]:
    """(segment, file position, header) of the stored batches whose last offset is >=
    start_offset (see iter_stored_headers)."""
    for seg in segments:
        if seg.next_offset <= start_offset or seg.size == 0:
            continue
        if seg.base_offset >= start_offset:
            pos = 0
        else:
            pos = seg.find_position(start_offset)
            if pos is None:
                continue
        for p, h in _iter_headers(seg.fd, pos, seg.size, seg.log_path):
            if h.base_offset + h.last_offset_delta >= start_offset:
                yield seg, p, h


def read_stored_marker(seg, pos: int, h: rec.BatchHeader) -> tuple[int, int]:
    """(control type, coordinator epoch) of the stored control batch at `pos` of `seg`:
    one pread of the (small) batch."""
    return rec.read_end_txn_marker(os.pread(seg.fd, h.size, pos), 0, h)


def _iter_headers(fd: int, pos: int, end: int, path: str) -> Iterable[tuple[int, rec.BatchHeader]]:
    header_size = rec.BATCH_HEADER_SIZE
    parse = rec.parse_header
    while pos < end:
        chunk = os.pread(fd, min(_SCAN_CHUNK, end - pos), pos)
        n = len(chunk)
        if n < header_size:
            if n:
                log.warning("partial batch header at position %d of %s; producer state "
                            "replay stops there", pos, path)
            return
        p = 0
        while p + header_size <= n:
            h = parse(chunk, p)
            if h.batch_length < rec.MIN_BATCH_LENGTH or h.magic != rec.MAGIC:
                log.warning("implausible batch header at position %d of %s; producer state "
                            "replay stops there", pos + p, path)
                return
            yield pos + p, h
            p += h.size
        pos += p


