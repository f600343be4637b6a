"""The Raft log on disk (kafkette.controller.raft.file_log): entries as RecordBatch v2
in a PartitionLog, quorum-state, snapshots, truncation, and the single-node data dirs
written before the quorum existed."""
from __future__ import annotations

import json
import random

from kafkette.clock import ManualClock
from kafkette.controller.raft.core import Apply, RaftConfig, RaftNode
from kafkette.controller.raft.file_log import FileLog
from kafkette.controller.raft.messages import Entry, SnapshotId
from kafkette.controller.raft.storage import QuorumState
from kafkette.log.partition_log import LogConfig, PartitionLog
from kafkette.protocol import records as rec


def test_entries_are_record_batches_with_the_raft_epoch_and_survive_a_reopen(tmp_path):
    d = tmp_path / "__cluster_metadata-0"
    log = FileLog(d, ManualClock())
    log.append(Entry(0, 1, (b"c",), control=True))
    log.append(Entry(1, 1, (b"a", b"b")))
    log.append(Entry(3, 2, (b"x",)))
    assert log.flushed_end_offset == 0
    log.flush()
    assert log.flushed_end_offset == 4
    log.close()
    # On disk: one batch per entry, partitionLeaderEpoch = the Raft epoch.
    raw = PartitionLog(d, LogConfig(), ManualClock()).read(0, 1 << 20)
    headers = [h for _, h in rec.iter_batches(raw)]
    assert [(h.base_offset, h.records_count, h.partition_leader_epoch, h.is_control) for h in headers] == [
        (0, 1, 1, True), (1, 2, 1, False), (3, 1, 2, False)]
    log = FileLog(d, ManualClock())
    assert log.read(1) == [Entry(1, 1, (b"a", b"b")), Entry(3, 2, (b"x",))]
    assert log.read(0)[0].control
    assert log.end_offset_for_epoch(1) == (1, 3) and log.last_epoch() == 2


def test_truncation_is_durable_and_appends_continue_after_it(tmp_path):
    log = FileLog(tmp_path / "m", ManualClock())
    for i in range(5):
        log.append(Entry(i, 1 + i // 3, (b"v%d" % i,)))
    log.flush()
    log.truncate_to(2)
    assert log.log_end_offset == 2
    log.append(Entry(2, 3, (b"new",)))
    log.flush()
    log.close()
    log = FileLog(tmp_path / "m", ManualClock())
    assert [(e.offset, e.epoch, e.values) for e in log.read(0)] == [
        (0, 1, (b"v0",)), (1, 1, (b"v1",)), (2, 3, (b"new",))]


def test_quorum_state_file(tmp_path):
    log = FileLog(tmp_path / "m", ManualClock())
    assert log.read_quorum_state() == QuorumState()
    log.write_quorum_state(QuorumState(7, 2, None))
    assert json.loads((tmp_path / "m" / "quorum-state").read_text())["leaderEpoch"] == 7
    assert FileLog(tmp_path / "m", ManualClock()).read_quorum_state() == QuorumState(7, 2, None)


def test_snapshot_moves_the_log_start_and_install_replaces_the_log(tmp_path):
    log = FileLog(tmp_path / "m", ManualClock(), segment_bytes=200)
    for i in range(10):
        log.append(Entry(i, 1, (b"value-%d" % i,)))
    log.flush()
    log.write_snapshot(SnapshotId(6, 1), b"state@6")
    assert log.log_start_offset == 6 and log.read(6)[0].offset == 6
    assert (tmp_path / "m" / "00000000000000000006-0000000001.checkpoint").read_bytes() == b"state@6"
    assert len(log.partition_log.segments) < 10  # whole segments below the start are gone
    log.close()
    log = FileLog(tmp_path / "m", ManualClock(), segment_bytes=200)
    assert log.log_start_offset == 6 and log.latest_snapshot == SnapshotId(6, 1)
    assert log.end_offset_for_epoch(0) is None  # below the snapshot
    log.install_snapshot(SnapshotId(40, 3), b"state@40")
    assert (log.log_start_offset, log.log_end_offset) == (40, 40)
    assert not (tmp_path / "m" / "00000000000000000006-0000000001.checkpoint").exists()
    log.append(Entry(40, 3, (b"after",)))
    log.flush()
    log.close()
    log = FileLog(tmp_path / "m", ManualClock(), segment_bytes=200)
    assert (log.log_start_offset, log.log_end_offset) == (40, 41)
    assert log.read_snapshot(SnapshotId(40, 3)) == b"state@40"


def test_single_node_data_dir_from_before_the_quorum_is_committed_by_a_quorum_of_one(tmp_path):
    d = tmp_path / "__cluster_metadata-0"
    old = PartitionLog(d, LogConfig(), ManualClock())
    for records in ([{"type": "ClusterIdRecord", "cluster_id": "abc"}],
                    [{"type": "TopicRecord", "name": "t"}, {"type": "PartitionRecord", "partition": 0}]):
        batch = bytearray(rec.build_batch([(None, json.dumps(r).encode(), []) for r in records],
                                          timestamp_ms=ManualClock().time_ms()))
        old.append(memoryview(batch), 0, ManualClock().time_ms())
    old.close()
    log = FileLog(d, ManualClock())
    node = RaftNode(1, (1,), log, RaftConfig(), random.Random(0))
    acts = node.start(0)
    applied = [a.entry for a in acts if isinstance(a, Apply)]
    assert [(e.offset, len(e.values)) for e in applied] == [(0, 1), (1, 2)]
    assert json.loads(applied[1].values[0]) == {"type": "TopicRecord", "name": "t"}
    assert node.leader_ready and node.high_watermark == 4
    log.close()
    # Again: the leader-change entry is skipped, the epoch moves on.
    log = FileLog(d, ManualClock())
    node = RaftNode(1, (1,), log, RaftConfig(), random.Random(0))
    acts = node.start(0)
    assert [a.entry.offset for a in acts if isinstance(a, Apply)] == [0, 1]
    assert node.epoch == 2 and node.high_watermark == 5


def test_partition_log_truncate_to_across_segments_then_append_read_and_reopen(tmp_path):
    """PartitionLog.truncate_to (added for the Raft log): whole later segments go, the
    last kept one is cut at a batch boundary, its indexes rebuilt; durable."""
    clock = ManualClock()
    plog = PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=300, index_interval_bytes=1), clock)
    for i in range(12):
        plog.append(bytearray(rec.build_batch([(None, b"v%02d" % i, [])], timestamp_ms=clock.time_ms())),
                    1, clock.time_ms())
    assert len(plog.segments) == 3  # 4 batches each: offsets 0-3, 4-7, 8-11
    size_before = plog.size_bytes
    removed = plog.truncate_to(5)
    assert removed > 0 and plog.size_bytes == size_before - removed
    assert plog.log_end_offset == 5
    assert all(s.base_offset <= 5 for s in plog.segments)
    assert [r.value for r in rec.decode_records(plog.read(0, 1 << 20))] == [b"v%02d" % i for i in range(5)]
    plog.append(bytearray(rec.build_batch([(None, b"new", [])], timestamp_ms=clock.time_ms())), 2, clock.time_ms())
    assert plog.truncate_to(6) == 0            # at the log end: nothing
    plog.close(clean=False)                    # as after a crash: full recovery on open
    plog = PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=300, index_interval_bytes=1), clock)
    vals = [(r.offset, r.value) for r in rec.decode_records(plog.read(0, 1 << 20))]
    assert vals == [(i, b"v%02d" % i) for i in range(5)] + [(5, b"new")]
    assert plog.read(5, 1 << 20)[:8] == (5).to_bytes(8, "big")   # the index finds it


def test_partition_log_truncate_to_refuses_the_middle_of_a_batch_and_changes_nothing(tmp_path):
    import pytest
    from kafkette.errors import InvalidRecordError
    clock = ManualClock()
    plog = PartitionLog(tmp_path / "t-0", LogConfig(), clock)
    plog.append(bytearray(rec.build_batch([(None, b"a", []), (None, b"b", [])], timestamp_ms=clock.time_ms())),
                1, clock.time_ms())
    with pytest.raises(InvalidRecordError):
        plog.truncate_to(1)
    assert plog.log_end_offset == 2 and len(rec.decode_records(plog.read(0, 1 << 20))) == 2
    plog.truncate_to(0)
    assert plog.log_end_offset == 0 and plog.read(0, 1 << 20) == b""


def test_a_metadata_change_larger_than_a_topics_max_message_bytes_is_one_batch(tmp_path):
    """A CreateTopics of 10,000 partitions is about 1.6 MB of records in one atomic
    batch: the metadata log takes it (Kafka's takes up to 8 MiB), in the Raft log and in
    a single node's local quorum alike, where a topic's 1 MiB max.message.bytes would
    refuse it."""
    from kafkette.controller.quorum import METADATA_MAX_BATCH_BYTES, LocalQuorum, run_now
    values = tuple(b"p" * 150 + b"%05d" % i for i in range(10_000))
    assert 1 << 20 < sum(map(len, values)) < METADATA_MAX_BATCH_BYTES
    log = FileLog(tmp_path / "raft", ManualClock())
    log.append(Entry(0, 1, values))
    log.flush()
    log.close()
    assert FileLog(tmp_path / "raft", ManualClock()).read(0) == [Entry(0, 1, values)]

    applied = []

    class Listener:
        def apply(self, last_offset, vals):
            applied.append((last_offset, list(vals)))

        def load_snapshot(self, last_offset, data):
            pass

        def snapshot(self):
            return -1, b""

        def leader_changed(self, leader_id, epoch):
            pass
    q = LocalQuorum(1, tmp_path / "local", ManualClock())
    q.start_sync(Listener())
    run_now(q.append(list(values)))
    assert applied[-1] == (len(values) - 1, list(values))
