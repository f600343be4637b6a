"""Storage behind the Raft core: the metadata log, the quorum state (epoch + vote) and
snapshots. Two implementations: `MemoryLog` here (the simulator's, able to lose its
unflushed tail on a simulated crash) and `FileLog` in kafkette.controller.raft.file_log
(a PartitionLog in `<log.dirs>/__cluster_metadata-0/`).

Durability contract the core relies on:
- `write_quorum_state` is durable when it returns (the core persists epoch and vote
  before it answers or sends anything that depends on them).
- `append` may sit in memory until `flush`; only `flushed_end_offset` counts towards
  the leader's high watermark and is reported by a follower's next Fetch.
- `truncate_to`, `write_snapshot` and `install_snapshot` are durable when they return.

The base class keeps an index (offset, end offset, epoch) of every entry in the log,
which answers the epoch questions of fetch validation. Epochs never decrease along the
log, so "the last entry with epoch <= E" is a bisect.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from kafkette.controller.raft.messages import Entry, SnapshotId


@dataclass(frozen=True)
class QuorumState:
    epoch: int = 0
    voted_for: int | None = None
    leader_id: int | None = None


class RaftLog:
    """Shared index logic; subclasses store the entries."""

    def __init__(self) -> None:
        self._offs: list[int] = []
        self._ends: list[int] = []
        self._eps: list[int] = []
        self._start = 0          # log start offset (= snapshot end, or 0)
        self._snapshot: SnapshotId | None = None

    # --- to implement -------------------------------------------------------------------
    def read_quorum_state(self) -> QuorumState:
        raise NotImplementedError

    def write_quorum_state(self, state: QuorumState) -> None:
        raise NotImplementedError

    def _store_append(self, entry: Entry) -> None:
        raise NotImplementedError

    def _store_truncate(self, offset: int) -> None:
        raise NotImplementedError

    def _store_read(self, index: int, count: int) -> list[Entry]:
        """Entries number index .. index+count-1 of the index."""
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    @property
    def flushed_end_offset(self) -> int:
        raise NotImplementedError

    def read_snapshot(self, snapshot_id: SnapshotId) -> bytes | None:
        raise NotImplementedError

    def _store_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        raise NotImplementedError

    def _store_drop_before(self, offset: int, *, all_entries: bool) -> None:
        raise NotImplementedError

    # --- common -------------------------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        return self._start

    @property
    def log_end_offset(self) -> int:
        return self._ends[-1] if self._ends else self._start

    @property
    def latest_snapshot(self) -> SnapshotId | None:
        return self._snapshot

    def last_epoch(self) -> int:
        if self._eps:
            return self._eps[-1]
        return self._snapshot.epoch if self._snapshot else 0

    def __len__(self) -> int:
        return len(self._offs)

    def append(self, entry: Entry) -> None:
        if entry.offset != self.log_end_offset:
            raise ValueError(f"append at {entry.offset}, log end is {self.log_end_offset}")
        if entry.epoch < self.last_epoch():
            raise ValueError(f"epoch {entry.epoch} below the last epoch {self.last_epoch()}")
        self._store_append(entry)
        self._offs.append(entry.offset)
        self._ends.append(entry.end_offset)
        self._eps.append(entry.epoch)

    def boundary_at_or_below(self, offset: int) -> int:
        """The largest entry boundary <= offset (never below the log start)."""
        if offset >= self.log_end_offset:
            return self.log_end_offset
        i = bisect_right(self._offs, offset) - 1
        if i < 0:
            return self._start
        return offset if self._offs[i] == offset else self._offs[i]

    def truncate_to(self, offset: int) -> None:
        """Remove every entry at or after `offset` (an entry boundary)."""
        if offset >= self.log_end_offset:
            return
        if offset < self._start:
            raise ValueError(f"cannot truncate to {offset} below the log start {self._start}")
        i = bisect_left(self._offs, offset)
        if i < len(self._offs) and self._offs[i] != offset:
            raise ValueError(f"{offset} is not an entry boundary")
        self._store_truncate(offset)
        del self._offs[i:], self._ends[i:], self._eps[i:]

    def read(self, offset: int, max_bytes: int = 1 << 20, max_entries: int = 1 << 30) -> list[Entry]:
        """Whole entries from the one starting at `offset`, at least one, up to
        max_bytes. [] at the log end or when `offset` is not an entry start."""
        i = bisect_left(self._offs, offset)
        if i >= len(self._offs) or self._offs[i] != offset:
            return []
        out: list[Entry] = []
        budget = max_bytes
        while i < len(self._offs) and len(out) < max_entries:
            (e,) = self._store_read(i, 1)
            if out and e.size > budget:
                break
            out.append(e)
            budget -= e.size
            i += 1
        return out

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int] | None:
        """KIP-595 fetch validation / KIP-279's OffsetsForLeaderEpoch: (E, end) for the
        largest epoch E <= `epoch` in the log, end = the offset where the next larger
        epoch starts (or the log end). None when that epoch lies below the snapshot."""
        i = bisect_right(self._eps, epoch)
        if i == 0:
            snap = self._snapshot
            if snap is None:
                # Nothing of epoch <= `epoch` is in the log: it diverges at the start.
                return (0, self._start)
            if epoch >= snap.epoch:
                return (snap.epoch, snap.end_offset)
            return None
        e = self._eps[i - 1]
        end = self._offs[i] if i < len(self._offs) else self.log_end_offset
        return (e, end)

    def epoch_at(self, offset: int) -> int | None:
        """The epoch of the entry holding `offset` (the snapshot's epoch for the offset
        just below the log start)."""
        if self._snapshot is not None and offset == self._snapshot.end_offset - 1:
            return self._snapshot.epoch
        i = bisect_right(self._offs, offset) - 1
        if i < 0 or offset >= self._ends[i]:
            return None
        return self._eps[i]

    def write_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """A local snapshot of the applied state up to snapshot_id.end_offset (an entry
        boundary inside the log): stored durably, then the log before it deleted."""
        end = snapshot_id.end_offset
        if end <= self._start or end > self.log_end_offset:
            raise ValueError(f"snapshot end {end} outside ({self._start}, {self.log_end_offset}]")
        self._store_snapshot(snapshot_id, data)
        self._snapshot = snapshot_id
        self._store_drop_before(end, all_entries=False)
        i = bisect_left(self._offs, end)
        del self._offs[:i], self._ends[:i], self._eps[:i]
        self._start = end

    def install_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """A snapshot fetched from the leader: replaces the whole log (a follower only
        fetches one when it is behind the leader's log start)."""
        self._store_snapshot(snapshot_id, data)
        self._snapshot = snapshot_id
        self._store_drop_before(snapshot_id.end_offset, all_entries=True)
        self._offs.clear(), self._ends.clear(), self._eps.clear()
        self._start = snapshot_id.end_offset


class MemoryLog(RaftLog):
    """In memory, for the simulator and unit tests. `crash()` models a process crash:
    entries appended since the last flush are lost; quorum state, truncations and
    snapshots (all written durably) stay."""

    def __init__(self) -> None:
        super().__init__()
        self._entries: list[Entry] = []
        self._flushed = 0        # number of entries known durable
        self._qs = QuorumState()
        self._snapshots: dict[SnapshotId, bytes] = {}
        self.flushes = 0

    def read_quorum_state(self) -> QuorumState:
        return self._qs

    def write_quorum_state(self, state: QuorumState) -> None:
        self._qs = state

    def _store_append(self, entry: Entry) -> None:
        self._entries.append(entry)

    def _store_truncate(self, offset: int) -> None:
        i = bisect_left(self._offs, offset)
        del self._entries[i:]
        self._flushed = min(self._flushed, i)

    def _store_read(self, index: int, count: int) -> list[Entry]:
        return self._entries[index:index + count]

    def flush(self) -> None:
        self._flushed = len(self._entries)
        self.flushes += 1

    @property
    def flushed_end_offset(self) -> int:
        return self._entries[self._flushed - 1].end_offset if self._flushed else self._start

    def read_snapshot(self, snapshot_id: SnapshotId) -> bytes | None:
        return self._snapshots.get(snapshot_id)

    def _store_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self._snapshots = {snapshot_id: bytes(data)}  # older ones are no longer needed

    def _store_drop_before(self, offset: int, *, all_entries: bool) -> None:
        if all_entries:
            self._entries.clear()
            self._flushed = 0
            return
        i = bisect_left(self._offs, offset)
        del self._entries[:i]
        self._flushed = max(0, self._flushed - i)

    def entries(self) -> list[Entry]:
        return list(self._entries)

    def crash(self) -> None:
        lost = len(self._entries) - self._flushed
        if lost:
            self.truncate_to(self._entries[self._flushed].offset)
