"""The Raft log on disk: `<log.dirs>/__cluster_metadata-0/`, as in KRaft.

- The entries are a PartitionLog (kafkette.log.partition_log): one RecordBatch v2 per
  proposal, its partitionLeaderEpoch field carrying the Raft epoch, one record per
  value (key null; control entries have the control bit and KRaft's LeaderChange key).
  Built with kafkette.protocol.records.build_batch.
- `quorum-state`: JSON {"leaderId", "leaderEpoch", "votedId", "data_version"} (KRaft's
  file has the same keys plus a few we do not need), replaced atomically (write a
  temporary file, fsync, rename, fsync the directory) before the core goes on.
- Snapshots: `<end offset, 20 digits>-<epoch, 10 digits>.checkpoint` (KRaft's naming),
  written as `.checkpoint.part`, fsynced, renamed. Only the newest is kept. KRaft's
  snapshot files are record batches framed by header/footer control records; ours
  hold the state machine's bytes as they are.

Recovery on open: a snapshot whose end is past the log end (a crash while installing a
snapshot fetched from the leader) empties the log and restarts it at the snapshot end;
a snapshot inside the log moves the log start up to it (a crash between writing the
snapshot and deleting the log before it).

Compatibility: a single-node data dir of the days before the quorum has JSON records in
batches of epoch 0, no control entries and no quorum-state: it opens as a log of epoch-0
entries that a quorum of one commits as soon as it has elected itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from kafkette.clock import SystemClock
from kafkette.controller.raft.core import CONTROL_KEY
from kafkette.controller.raft.messages import Entry, SnapshotId
from kafkette.controller.raft.storage import QuorumState, RaftLog
from kafkette.log.fsutil import write_file_atomically
from kafkette.log.partition_log import LogConfig, PartitionLog
from kafkette.protocol import records as rec

METADATA_TOPIC = "__cluster_metadata"
QUORUM_STATE_FILE = "quorum-state"
SNAPSHOT_SUFFIX = ".checkpoint"
PART_SUFFIX = ".part"
# PartitionLog's own files (kafkette.log.partition_log): dropped when a fetched snapshot
# replaces the whole log.
_LOG_START_FILE = "log-start-offset"
_RECOVERY_POINT_FILE = "recovery-point"
_CLEAN_SHUTDOWN_FILE = ".kafkette_clean_shutdown"


def snapshot_file_name(sid: SnapshotId) -> str:
    return f"{sid.end_offset:020d}-{sid.epoch:010d}{SNAPSHOT_SUFFIX}"


def _parse_snapshot_name(name: str) -> SnapshotId | None:
    if not name.endswith(SNAPSHOT_SUFFIX):
        return None
    stem = name[:-len(SNAPSHOT_SUFFIX)]
    end, dash, epoch = stem.partition("-")
    if not (dash and end.isdigit() and epoch.isdigit()):
        return None
    return SnapshotId(int(end), int(epoch))


def _write_atomically(dir_path: Path, name: str, data: bytes) -> None:
    write_file_atomically(dir_path / name, data, PART_SUFFIX)


class FileLog(RaftLog):
    def __init__(self, dir_path, clock=None, *, segment_bytes: int = 8 << 20):
        super().__init__()
        self.dir = Path(dir_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock or SystemClock()
        # Batches up to 8 MiB, as Kafka's metadata log (controller/quorum.py).
        self._config = LogConfig(segment_bytes=segment_bytes, max_message_bytes=8 << 20)
        for name in os.listdir(self.dir):
            if name.endswith(PART_SUFFIX):
                os.unlink(self.dir / name)  # an interrupted atomic write
        self._qs = self._load_quorum_state()
        snaps = sorted(s for s in (_parse_snapshot_name(n) for n in os.listdir(self.dir)) if s is not None)
        self._snapshot = snaps[-1] if snaps else None
        for old in snaps[:-1]:
            os.unlink(self.dir / snapshot_file_name(old))
        self._plog = self._open_plog()
        snap = self._snapshot
        if snap is not None:
            if snap.end_offset > self._plog.log_end_offset or snap.end_offset < self._plog.log_start_offset:
                self._reset_at(snap.end_offset)
            elif snap.end_offset > self._plog.log_start_offset:
                self._plog.delete_records(snap.end_offset)
        self._start = self._plog.log_start_offset
        self._build_index()
        self._flushed = self.log_end_offset

    # --- opening ---------------------------------------------------------------------------
    def _open_plog(self) -> PartitionLog:
        return PartitionLog(self.dir, self._config, self._clock, topic=METADATA_TOPIC, partition=0)

    def _reset_at(self, offset: int) -> None:
        """Empty the log and restart it at `offset` (a fetched snapshot replaces it)."""
        self._plog.close(clean=False)
        for name in os.listdir(self.dir):
            stem = name.partition(".")[0]
            if (len(stem) == 20 and stem.isdigit()) or name in (_RECOVERY_POINT_FILE, _CLEAN_SHUTDOWN_FILE):
                os.unlink(self.dir / name)
        _write_atomically(self.dir, _LOG_START_FILE, f"{offset}\n".encode())
        self._plog = self._open_plog()
        if self._plog.log_end_offset != offset:
            raise RuntimeError(f"metadata log reset to {offset} opened at {self._plog.log_end_offset}")

    def _build_index(self) -> None:
        plog = self._plog
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            data = plog.read(offset, 1 << 20, max_offset=end)
            if not data:
                break
            for _pos, h in rec.iter_batches(data, validate_crc=False):
                if h.last_offset < offset:
                    continue
                if h.base_offset < offset:
                    # The log start fell inside a batch (a DeleteRecords of old): that
                    # batch is gone as far as the quorum is concerned.
                    offset = h.next_offset
                    self._start = offset
                    continue
                # Batches written before the quorum have epoch 0 (or -1: none).
                self._offs.append(h.base_offset)
                self._ends.append(h.next_offset)
                self._eps.append(max(0, h.partition_leader_epoch))
                offset = h.next_offset
        if self._offs and self._offs[0] > self._start:
            self._start = self._offs[0]

    def _load_quorum_state(self) -> QuorumState:
        try:
            raw = json.loads((self.dir / QUORUM_STATE_FILE).read_text())
        except FileNotFoundError:
            return QuorumState()
        leader = raw.get("leaderId", -1)
        voted = raw.get("votedId", -1)
        return QuorumState(int(raw.get("leaderEpoch", 0)),
                           None if voted is None or voted < 0 else int(voted),
                           None if leader is None or leader < 0 else int(leader))

    # --- RaftLog -----------------------------------------------------------------------------
    def read_quorum_state(self) -> QuorumState:
        return self._qs

    def write_quorum_state(self, state: QuorumState) -> None:
        if state == self._qs:
            return
        body = {"leaderId": -1 if state.leader_id is None else state.leader_id,
                "leaderEpoch": state.epoch,
                "votedId": -1 if state.voted_for is None else state.voted_for,
                "data_version": 0}
        _write_atomically(self.dir, QUORUM_STATE_FILE, json.dumps(body).encode())
        self._qs = state

    def _store_append(self, entry: Entry) -> None:
        key = CONTROL_KEY if entry.control else None
        now = self._clock.time_ms()
        batch = bytearray(rec.build_batch([(key, v, []) for v in entry.values], timestamp_ms=now,
                                          partition_leader_epoch=entry.epoch, control=entry.control))
        result = self._plog.append(memoryview(batch), entry.epoch, now)
        if result.base_offset != entry.offset:
            raise RuntimeError(f"metadata log appended at {result.base_offset}, expected {entry.offset}")

    def _store_truncate(self, offset: int) -> None:
        self._plog.truncate_to(offset)
        self._flushed = min(self._flushed, offset)

    def _store_read(self, index: int, count: int) -> list[Entry]:
        out = []
        end = self.log_end_offset
        for i in range(index, index + count):
            data = self._plog.read(self._offs[i], 1, max_offset=end)
            for pos, h in rec.iter_batches(data, validate_crc=False):
                records = rec.decode_records(memoryview(data)[pos:pos + h.size])
                out.append(Entry(h.base_offset, max(0, h.partition_leader_epoch),
                                 tuple(r.value if r.value is not None else b"" for r in records),
                                 h.is_control))
                break
        return out

    def flush(self) -> None:
        self._plog.flush()
        self._flushed = self.log_end_offset

    @property
    def flushed_end_offset(self) -> int:
        return self._flushed

    def read_snapshot(self, snapshot_id: SnapshotId) -> bytes | None:
        try:
            return (self.dir / snapshot_file_name(snapshot_id)).read_bytes()
        except FileNotFoundError:
            return None

    def _store_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        old = self._snapshot
        _write_atomically(self.dir, snapshot_file_name(snapshot_id), bytes(data))
        if old is not None and old != snapshot_id:
            try:
                os.unlink(self.dir / snapshot_file_name(old))
            except FileNotFoundError:
                pass

    def _store_drop_before(self, offset: int, *, all_entries: bool) -> None:
        if all_entries:
            self._reset_at(offset)
            self._flushed = offset
        else:
            self._plog.delete_records(offset)

    def close(self) -> None:
        self._plog.close()

    @property
    def partition_log(self) -> PartitionLog:
        return self._plog
