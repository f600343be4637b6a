"""Leader epochs of one partition log: Kafka's LeaderEpochFileCache (KIP-101, KIP-279).

The cache maps each leader epoch that wrote data to the partition to the first offset it
wrote (`EpochEntry(epoch, start_offset)`), both strictly increasing. A follower asks the
leader for the end of its own latest epoch (OffsetForLeaderEpoch) and truncates to that
instead of to its high watermark, which is what lets a replica that diverged during a
leader change (KIP-101) or a quick series of them (KIP-279) find the point where its
history and the leader's part.

Persistence: `leader-epoch-checkpoint` in the partition directory, Kafka's checkpoint
text format, so that an operator who knows Kafka reads it as such:

    0                  version
    2                  number of entries
    0 0                epoch start_offset, one line per entry, oldest first
    3 1200

It is rewritten whole (temporary file, fsync, rename, fsync of the directory) at every
change, which is once per new epoch on the append path: rare, so the fsync costs nothing
that matters. Entries are assigned BEFORE the data of the new epoch is written, so after
a crash the file may run ahead of the log (PartitionLog cuts it back to the log end on
open, as Kafka's LogLoader does) but never behind it.

What real Kafka does differently: a checkpoint it cannot parse fails the whole log
directory (KafkaStorageException), and a missing one just starts an empty cache. Here
both are rebuilt from the batch headers (each v2 batch header carries its partition
leader epoch), which is always possible and gives the same entries the appends would
have assigned; see PartitionLog._load_leader_epochs.

Single-threaded, owned by the PartitionLog.
"""
from __future__ import annotations

import os
from bisect import bisect_right
from typing import Iterable, NamedTuple

from kafkette.log.fsutil import write_file_atomically
from kafkette.logging import get_logger
from kafkette.protocol import records as rec

log = get_logger(__name__)

# Kafka: OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1

CHECKPOINT_FILE = "leader-epoch-checkpoint"
CHECKPOINT_VERSION = 0
_TMP_SUFFIX = ".tmp"


class EpochEntry(NamedTuple):
    epoch: int
    start_offset: int


class CorruptCheckpointError(Exception):
    pass


def encode_checkpoint(entries: Iterable[EpochEntry]) -> bytes:
    rows = [f"{e.epoch} {e.start_offset}\n" for e in entries]
    return f"{CHECKPOINT_VERSION}\n{len(rows)}\n{''.join(rows)}".encode("ascii")


def decode_checkpoint(data: bytes) -> list[EpochEntry]:
    """Parse a checkpoint strictly: version 0, a count, exactly that many `epoch offset`
    lines of non-negative integers, nothing after them (a final newline allowed)."""
    try:
        lines = data.decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        raise CorruptCheckpointError("not ASCII text") from exc
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        raise CorruptCheckpointError(f"{len(lines)} line(s), expected at least a version and a count")
    try:
        version = int(lines[0])
        count = int(lines[1])
    except ValueError as exc:
        raise CorruptCheckpointError("malformed version or count line") from exc
    if version != CHECKPOINT_VERSION:
        raise CorruptCheckpointError(f"unknown checkpoint version {version}")
    if count != len(lines) - 2:
        raise CorruptCheckpointError(f"expected {count} entries, found {len(lines) - 2} lines")
    out = []
    for line in lines[2:]:
        fields = line.split()
        if len(fields) != 2:
            raise CorruptCheckpointError(f"malformed line {line!r}")
        try:
            epoch, start = int(fields[0]), int(fields[1])
        except ValueError as exc:
            raise CorruptCheckpointError(f"malformed line {line!r}") from exc
        if epoch < 0 or start < 0:
            raise CorruptCheckpointError(f"negative epoch or offset in {line!r}")
        out.append(EpochEntry(epoch, start))
    return out


class LeaderEpochCache:
    """The (epoch, start offset) entries of one partition and their checkpoint file in
    `dir_path`. Starts empty; `load()` reads the checkpoint."""

    def __init__(self, dir_path: str, topic_partition: str = ""):
        self.dir = os.fspath(dir_path)
        self.path = os.path.join(self.dir, CHECKPOINT_FILE)
        self.name = topic_partition or os.path.basename(self.dir)
        # Parallel ascending lists (Kafka keeps a TreeMap keyed by epoch): bisect finds
        # an epoch or an offset, and the append path only ever looks at the last entry.
        self._epochs: list[int] = []
        self._starts: list[int] = []
        # False once load() found no checkpoint and none has been written since: the
        # first write of a new log may then skip the fsyncs (see flush).
        self._file_exists: bool | None = None

    # --- reading -------------------------------------------------------------------------
    @property
    def latest_epoch(self) -> int:
        """The newest epoch, UNDEFINED_EPOCH (-1) when the cache is empty."""
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    @property
    def latest_entry(self) -> EpochEntry | None:
        return EpochEntry(self._epochs[-1], self._starts[-1]) if self._epochs else None

    @property
    def earliest_entry(self) -> EpochEntry | None:
        return EpochEntry(self._epochs[0], self._starts[0]) if self._epochs else None

    def entries(self) -> list[EpochEntry]:
        return [EpochEntry(e, s) for e, s in zip(self._epochs, self._starts)]

    def __len__(self) -> int:
        return len(self._epochs)

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self.name}, {self.entries()})"

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (epoch, end offset) for `requested_epoch`, Kafka's
        LeaderEpochFileCache.endOffsetFor:

        - UNDEFINED_EPOCH asked, or an epoch above every known one (also: empty cache)
          → (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        - the latest epoch → (it, log_end_offset): it is still being written;
        - otherwise the largest known epoch <= the requested one, and the start offset
          of the first epoch above the requested one;
        - below the earliest known epoch → (requested_epoch, start offset of the
          earliest entry), as current Kafka answers: that history is gone from the log
          (retention), and the follower replicates from where the known history
          starts; KRaft's metadata log depends on this answer (KAFKA-10761). The first
          leader-epoch brokers (KIP-101) answered UNDEFINED_EPOCH_OFFSET here, so that
          followers fell back to truncating to their high watermark."""
        if requested_epoch == UNDEFINED_EPOCH:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        epochs = self._epochs
        if epochs and epochs[-1] == requested_epoch:
            return requested_epoch, log_end_offset
        higher = bisect_right(epochs, requested_epoch)  # first entry with epoch > requested
        if higher == len(epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return requested_epoch, self._starts[0]
        return epochs[higher - 1], self._starts[higher]

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch that wrote `offset` (the entry with the largest start offset <=
        it), or None below the earliest entry (Kafka's epochForOffset, which ListOffsets
        uses to answer the leader epoch of an offset, KIP-320)."""
        i = bisect_right(self._starts, offset) - 1
        return self._epochs[i] if i >= 0 else None

    # --- changes -------------------------------------------------------------------------
    def assign(self, epoch: int, start_offset: int, *, flush: bool = True) -> bool:
        """Record that `epoch` starts at `start_offset`. Kafka's rules: nothing changes
        when `epoch` is the latest epoch and `start_offset` is not below its start;
        otherwise every entry from the end whose epoch >= `epoch` or whose start offset
        >= `start_offset` goes (an epoch that wrote nothing before the next one started
        is simply replaced, without a warning), then the new entry is added. So a smaller
        start offset for the latest epoch moves it down, and an epoch below the latest
        drops the later epochs. Returns True when the entries changed (then the
        checkpoint is rewritten, unless flush=False). Negative values are refused
        (ValueError), as Kafka does."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset}) for {self.name}")
        epochs, starts = self._epochs, self._starts
        if epochs and epochs[-1] == epoch and start_offset >= starts[-1]:
            return False
        removed = []
        while epochs and (epochs[-1] >= epoch or starts[-1] >= start_offset):
            removed.append(EpochEntry(epochs.pop(), starts.pop()))
        epochs.append(epoch)
        starts.append(start_offset)
        if len(removed) > 1 or (removed and removed[0].start_offset != start_offset):
            log.warning("leader_epoch_entries_truncated", partition=self.name, epoch=epoch,
                        start_offset=start_offset, removed=[tuple(e) for e in removed])
        if flush:
            try:
                self.flush()
            except OSError:
                # The checkpoint kept the old entries (a full disk): so does memory, and
                # the next append of this epoch tries again.
                epochs.pop()
                starts.pop()
                for e in reversed(removed):
                    epochs.append(e.epoch)
                    starts.append(e.start_offset)
                raise
        return True

    def assign_from_headers(self, headers: Iterable[rec.BatchHeader], *, flush: bool = True) -> bool:
        """Assign the partition leader epoch of each batch header at its base offset, in
        order (the follower append path, and rebuilding). One comparison per batch;
        batches without an epoch (-1) are skipped. Writes the checkpoint once, at the
        end, when anything changed."""
        changed = False
        latest = self.latest_epoch
        for h in headers:
            epoch = h.partition_leader_epoch
            if epoch != latest and epoch >= 0:
                changed = self.assign(epoch, h.base_offset, flush=False) or changed
                latest = epoch
        if changed and flush:
            self.flush()
        return changed

    def truncate_from_end(self, end_offset: int) -> list[EpochEntry]:
        """Drop every entry that starts at or after `end_offset` (the log was truncated
        to it: Kafka's truncateFromEnd). Returns the entries removed."""
        starts = self._starts
        if end_offset < 0 or not starts or starts[-1] < end_offset:
            return []
        removed = []
        while starts and starts[-1] >= end_offset:
            removed.append(EpochEntry(self._epochs.pop(), starts.pop()))
        self.flush()
        log.debug("leader_epochs_truncated_from_end", partition=self.name, end_offset=end_offset,
                  removed=len(removed))
        return removed

    def truncate_from_start(self, start_offset: int) -> list[EpochEntry]:
        """The log start offset moved up to `start_offset` (retention, DeleteRecords):
        drop the entries that start at or below it and put the last of them back with
        its start moved up to `start_offset` (Kafka's truncateFromStart: that epoch
        still owns the data from the new log start on). Returns the entries removed."""
        n = bisect_right(self._starts, start_offset)  # entries starting <= start_offset
        if n == 0 or (n == 1 and self._starts[0] == start_offset):
            return []
        removed = [EpochEntry(e, s) for e, s in zip(self._epochs[:n], self._starts[:n])]
        first_epoch = self._epochs[n - 1]
        del self._epochs[:n]
        del self._starts[:n]
        self._epochs.insert(0, first_epoch)
        self._starts.insert(0, start_offset)
        self.flush()
        log.debug("leader_epochs_truncated_from_start", partition=self.name, start_offset=start_offset,
                  removed=len(removed))
        return removed

    def clear(self, *, flush: bool = True) -> None:
        """Forget every entry (Kafka's clearAndFlush; flush=False: its clear)."""
        self._epochs.clear()
        self._starts.clear()
        if flush:
            self.flush()

    # --- persistence ---------------------------------------------------------------------
    def load(self) -> bool:
        """Read the checkpoint. Returns False, leaving the cache empty, when there is no
        file or it cannot be parsed (logged): the caller rebuilds from the log. The
        entries go through assign(), as Kafka's constructor does, so a file whose entries
        are not increasing comes out with Kafka's repairs applied."""
        self.clear(flush=False)
        try:
            os.unlink(self.path + _TMP_SUFFIX)  # an interrupted write
        except FileNotFoundError:
            pass
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self._file_exists = False
            return False
        self._file_exists = True
        try:
            entries = decode_checkpoint(data)
        except CorruptCheckpointError as exc:
            log.warning("leader_epoch_checkpoint_unreadable", partition=self.name, path=self.path,
                        error=str(exc))
            return False
        for e in entries:
            self.assign(e.epoch, e.start_offset, flush=False)
        return True

    def rebuild(self, headers: Iterable[rec.BatchHeader]) -> int:
        """Recompute the entries from the headers of every stored batch, oldest first
        (a header walk: nothing else of a batch is read), and write the checkpoint.
        Returns the number of entries."""
        self.clear(flush=False)
        self.assign_from_headers(headers, flush=False)
        self.flush()
        log.info("leader_epoch_cache_rebuilt", partition=self.name, entries=len(self._epochs),
                 latest_epoch=self.latest_epoch)
        return len(self._epochs)

    def flush(self) -> None:
        """Write the checkpoint crash-safely: a crash leaves the old file or the new one
        (Kafka's CheckpointFile.write: temporary file, fsync, atomic move).

        One exception: the first entry of a new log, starting at offset 0, with no file
        yet, is written in place without fsync (the become-leader step of every
        partition of a CreateTopics; two fsyncs and a rename each were most of its cost).
        A crash leaves no file, a torn one or the whole one: no torn prefix of
        `0\n1\n<epoch> 0\n` parses to other entries (decode_checkpoint is strict),
        and a missing or unreadable checkpoint is rebuilt from
        the batch headers (PartitionLog._load_leader_epochs), which hold every epoch
        that wrote data. Kafka fsyncs here (KAFKA-16541 put the fsync back after
        KAFKA-15046 removed it), because its loader trusts a readable file and starts an
        empty cache from a missing one."""
        data = encode_checkpoint(self.entries())
        if self._file_exists is False and len(self._starts) == 1 and self._starts[0] == 0:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        else:
            write_file_atomically(self.path, data, _TMP_SUFFIX)
        self._file_exists = True
