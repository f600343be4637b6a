"""Disk faults (issue 13 item 2): a full disk (a real tmpfs), I/O errors injected into
the segment writes (KIP-112: the log dir goes offline) and several log.dirs."""
from __future__ import annotations

import errno
import os
import subprocess
import uuid

import pytest
from structlog.testing import capture_logs

from handler_harness import START_MS, call, create_topic, fetch_request, new_broker, produce
from kafkette.clock import ManualClock
from kafkette.errors import ErrorCode, KafkaStorageError
from kafkette.log import segment
from kafkette.log.log_manager import LogManager
from kafkette.log.partition_log import LogConfig
from kafkette.protocol import records as rec
from kafkette.protocol.messages import DescribeLogDirsRequest, MetadataRequest
from kafkette.protocol.records import build_batch

STORAGE = ErrorCode.KAFKA_STORAGE_ERROR


def big_batch(n: int = 4, size: int = 3000, tag: int = 0) -> bytes:
    return build_batch([(None, bytes([tag % 256]) * size, []) for _ in range(n)],
                       timestamp_ms=START_MS)


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs mounted for the test (root only; skipped where mount is refused)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk, leave: int = 40_000) -> str:
    """Fill the disk up to `leave` bytes with a filler file; returns its path."""
    path = os.path.join(disk, "filler")
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(path, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return path


def batch_offsets(data) -> list[tuple[int, int]]:
    return [(h.base_offset, h.last_offset) for _, h in rec.iter_batches(memoryview(data))]


# -- full disk, log tier ------------------------------------------------------------------

def test_full_disk_refuses_append_keeps_log_whole_and_resumes(small_disk):
    mgr = LogManager(small_disk / "data", ManualClock(START_MS),
                     LogConfig(segment_bytes=1 << 20))
    plog = mgr.create("t", 0)
    filler = fill(small_disk)
    acked = []
    with capture_logs() as logs:
        for i in range(200):
            try:
                acked.append(plog.append(bytearray(big_batch(tag=i)), 0, START_MS))
            except KafkaStorageError:
                break
        else:
            pytest.fail("the disk never filled up")
        leo, size = plog.log_end_offset, plog.size_bytes
        for _ in range(3):  # refused again, and not logged again
            with pytest.raises(KafkaStorageError, match="no space left"):
                plog.append(bytearray(big_batch()), 0, START_MS)
    assert acked, "nothing fitted: the filler left too little room"
    assert plog.log_end_offset == leo == acked[-1].last_offset + 1
    # The partial write was cut back: the file holds exactly the acknowledged batches.
    assert os.path.getsize(plog.active_segment.log_path) == size == plog.size_bytes
    data = plog.read(0, 1 << 30)
    assert batch_offsets(data) == [(a.base_offset, a.last_offset) for a in acked]
    full = [e for e in logs if e["event"].startswith("log dir full")]
    assert len(full) == 1 and full[0]["log_dir"] == str(small_disk / "data")
    assert not mgr.offline_dirs  # a full disk does not take the dir offline
    os.unlink(filler)
    with capture_logs() as logs:
        more = plog.append(bytearray(big_batch()), 0, START_MS)
        plog.append(bytearray(big_batch()), 0, START_MS)
    assert more.base_offset == leo
    assert [e["event"] for e in logs if "space again" in e["event"]] == [
        "log dir has space again: appends resume"]
    # Indexes and files agree: a restart (validating everything) finds the same log.
    mgr.close_all()
    mgr = LogManager(small_disk / "data", ManualClock(START_MS))
    mgr.load_all()
    again = mgr.get("t", 0)
    assert again.log_end_offset == leo + 8
    assert batch_offsets(again.read(0, 1 << 30))[:len(acked)] == [
        (a.base_offset, a.last_offset) for a in acked]
    assert again.read(acked[-1].base_offset, 1) != b""   # found through the index
    mgr.close_all()


def test_full_disk_checkpoints_keep_old_files(small_disk):
    mgr = LogManager(small_disk / "data", ManualClock(START_MS))
    plog = mgr.create("t", 0)
    plog.append(bytearray(big_batch(1, 10)), 0, START_MS)
    plog.flush()
    before = sorted(os.listdir(plog.dir))
    epochs_before = plog.leader_epoch_cache.entries()
    fill(small_disk, leave=0)
    # A new leader epoch rewrites the leader-epoch checkpoint before the data goes in.
    with pytest.raises(KafkaStorageError):
        plog.append(bytearray(big_batch(1, 10)), 7, START_MS)
    assert plog.leader_epoch_cache.entries() == epochs_before   # memory as the file says
    with pytest.raises(OSError):   # a producer-state snapshot (written at each roll)
        plog.producer_state.take_snapshot(12345)
    assert plog.producer_state.snapshot_offsets() == [1]
    assert sorted(os.listdir(plog.dir)) == before  # no half-written .tmp left
    assert not mgr.offline_dirs
    mgr.close_all()


# -- injected I/O errors: the log dir goes offline (KIP-112) ------------------------------

@pytest.fixture
def two_dir_broker(tmp_path):
    dirs = [str(tmp_path / "d0"), str(tmp_path / "d1")]
    b = new_broker(tmp_path / "unused", {"log.dirs": ",".join(dirs)})
    yield b, dirs
    b.close()


def _fail_writes_under(monkeypatch, log_dir: str, err: int = errno.EIO):
    real = segment._write_all

    def failing(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(log_dir + os.sep):
            raise OSError(err, os.strerror(err))
        return real(fd, data)
    monkeypatch.setattr(segment, "_write_all", failing)


def metadata_partitions(b, topic):
    resp = call(b, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)]), 12)
    return {p.partition_index: p for p in resp.topics[0].partitions}


def describe_log_dirs(b):
    return {r.log_dir: r for r in call(b, DescribeLogDirsRequest(topics=None), 4).results}


def test_write_error_takes_the_log_dir_offline(two_dir_broker, monkeypatch):
    b, dirs = two_dir_broker
    create_topic(b, "t", partitions=2)
    where = {p: b.log_manager.log_dir_of("t", p) for p in (0, 1)}
    assert sorted(where.values()) == dirs  # one partition in each dir
    bad = next(p for p in (0, 1) if where[p] == dirs[1])
    good = 1 - bad
    assert produce(b, "t", bad, big_batch(1, 10)).error_code == 0
    _fail_writes_under(monkeypatch, dirs[1])
    with capture_logs() as logs:
        assert produce(b, "t", bad, big_batch(1, 10)).error_code == STORAGE
        monkeypatch.undo()      # the device "works" again: the dir stays offline
        assert produce(b, "t", bad, big_batch(1, 10)).error_code == STORAGE
    assert [e["log_dir"] for e in logs if e["event"].startswith("log dir offline")] == [dirs[1]]
    assert b.log_manager.offline_dirs == [dirs[1]]
    # The other dir is served: produce and fetch.
    assert produce(b, "t", good, big_batch(1, 10)).error_code == 0
    resp = call(b, fetch_request("t", {good: 0, bad: 0}), 12)
    parts = {p.partition_index: p for p in resp.responses[0].partitions}
    assert parts[good].error_code == 0 and parts[good].records
    assert parts[bad].error_code == STORAGE
    meta = metadata_partitions(b, "t")
    assert meta[bad].offline_replicas == [b.node_id]
    assert meta[good].offline_replicas == []
    from kafkette.protocol.messages import DescribeTopicPartitionsRequest
    dtp = call(b, DescribeTopicPartitionsRequest(
        topics=[DescribeTopicPartitionsRequest.TopicRequest(name="t")],
        response_partition_limit=100), 0)
    assert {p.partition_index: p.offline_replicas for p in dtp.topics[0].partitions} == {
        bad: [b.node_id], good: []}
    logdirs = describe_log_dirs(b)
    assert logdirs[dirs[1]].error_code == STORAGE and logdirs[dirs[1]].topics == []
    assert logdirs[dirs[1]].total_bytes == -1
    assert logdirs[dirs[0]].error_code == 0
    assert [(t.name, [p.partition_index for p in t.partitions])
            for t in logdirs[dirs[0]].topics] == [("t", [good])]
    # New partitions go to the online dir only.
    create_topic(b, "u", partitions=2)
    assert {b.log_manager.log_dir_of("u", p) for p in (0, 1)} == {dirs[0]}


def test_fsync_error_takes_the_log_dir_offline(two_dir_broker, monkeypatch):
    b, dirs = two_dir_broker
    create_topic(b, "t", partitions=2, configs={"flush.messages": "1"})
    bad = next(p for p in (0, 1) if b.log_manager.log_dir_of("t", p) == dirs[0])

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(segment, "_fdatasync", eio)
    assert produce(b, "t", bad, big_batch(1, 10)).error_code == STORAGE
    monkeypatch.undo()
    assert b.log_manager.offline_dirs == [dirs[0]]
    assert produce(b, "t", 1 - bad, big_batch(1, 10)).error_code == 0
    assert describe_log_dirs(b)[dirs[0]].error_code == STORAGE


def test_enospc_does_not_take_the_dir_offline(two_dir_broker, monkeypatch):
    b, dirs = two_dir_broker
    create_topic(b, "t", partitions=2)
    p = next(p for p in (0, 1) if b.log_manager.log_dir_of("t", p) == dirs[1])
    _fail_writes_under(monkeypatch, dirs[1], errno.ENOSPC)
    assert produce(b, "t", p, big_batch(1, 10)).error_code == STORAGE
    monkeypatch.undo()
    assert not b.log_manager.offline_dirs
    r = produce(b, "t", p, big_batch(1, 10))
    assert r.error_code == 0 and r.base_offset == 0   # the refused batch took no offset


# -- several log.dirs ------------------------------------------------------------------

def test_partitions_spread_over_log_dirs_and_are_found_again(tmp_path):
    dirs = [str(tmp_path / f"d{i}") for i in range(3)]
    cfg = {"log.dirs": ",".join(dirs)}
    b = new_broker(tmp_path, cfg)
    create_topic(b, "t", partitions=6)
    placed = {p: b.log_manager.log_dir_of("t", p) for p in range(6)}
    counts = {d: list(placed.values()).count(d) for d in dirs}
    # Each dir got two of the six, besides __cluster_metadata which is not a partition.
    assert counts == {d: 2 for d in dirs}, counts
    for p in range(6):
        assert produce(b, "t", p, big_batch(1, 10, tag=p)).error_code == 0
    logdirs = describe_log_dirs(b)
    assert sorted(logdirs) == dirs
    for d in dirs:
        (t,) = logdirs[d].topics
        assert sorted(x.partition_index for x in t.partitions) == sorted(
            p for p, pd in placed.items() if pd == d)
        assert all(x.partition_size > 0 for x in t.partitions)
    b.close()
    b = new_broker(tmp_path, cfg)
    try:
        assert {p: b.log_manager.log_dir_of("t", p) for p in range(6)} == placed
        resp = call(b, fetch_request("t", {p: 0 for p in range(6)}), 12)
        assert all(p.error_code == 0 and p.records for p in resp.responses[0].partitions)
    finally:
        b.close()


def test_a_partition_in_two_log_dirs_refuses_to_start(tmp_path):
    dirs = [str(tmp_path / "d0"), str(tmp_path / "d1")]
    cfg = {"log.dirs": ",".join(dirs)}
    b = new_broker(tmp_path, cfg)
    create_topic(b, "t", partitions=1)
    home = b.log_manager.log_dir_of("t", 0)
    b.close()
    other = dirs[1] if home == dirs[0] else dirs[0]
    os.makedirs(os.path.join(other, "t-0"))
    with pytest.raises(KafkaStorageError, match="t-0 is in two log directories"):
        new_broker(tmp_path, cfg)
    # The refused start released its locks: without the stale copy the broker starts.
    os.rmdir(os.path.join(other, "t-0"))
    new_broker(tmp_path, cfg).close()


# -- full disk, broker tier: produce, fetch, internal writers ------------------------------

def test_full_disk_broker_keeps_serving_and_resumes(small_disk):
    b = new_broker(small_disk / "data", clock=ManualClock(START_MS))
    try:
        create_topic(b, "t", partitions=1)
        filler = fill(small_disk)
        acked = []
        for i in range(200):
            r = produce(b, "t", 0, big_batch(tag=i))
            if r.error_code:
                assert r.error_code == STORAGE, r
                break
            acked.append((r.base_offset, r.base_offset + 3))
        else:
            pytest.fail("the disk never filled up")
        assert acked
        # Reads go on: everything acknowledged is there, nothing else.
        got = []
        offset = 0
        while True:
            resp = call(b, fetch_request("t", {0: offset}), 12)
            part = resp.responses[0].partitions[0]
            assert part.error_code == 0
            if not part.records:
                break
            got += batch_offsets(part.records)
            offset = got[-1][1] + 1
        assert got == acked
        assert part.high_watermark == acked[-1][1] + 1
        # Internal writers refuse cleanly too: a metadata change (the metadata log) and
        # __consumer_offsets (created now, on a full disk).
        from kafkette.protocol.messages import CreateTopicsRequest
        T = CreateTopicsRequest.CreatableTopic
        resp = call(b, CreateTopicsRequest(topics=[T(name="later", num_partitions=1,
                                                     replication_factor=1, assignments=[],
                                                     configs=[])], timeout_ms=5000), 7)
        assert resp.topics[0].error_code != 0
        os.unlink(filler)
        r = produce(b, "t", 0, big_batch())
        assert r.error_code == 0 and r.base_offset == acked[-1][1] + 1
        create_topic(b, "later", partitions=1)
    finally:
        b.close()
    b = new_broker(small_disk / "data", clock=ManualClock(START_MS))
    try:
        assert "later" in b.image.topics
        assert b.log_manager.get("t", 0).log_end_offset == acked[-1][1] + 5
    finally:
        b.close()


async def test_full_disk_offset_commit_is_refused_then_works(small_disk):
    from handler_harness import acall
    from kafkette.protocol.messages import OffsetCommitRequest, OffsetFetchRequest
    OCT = OffsetCommitRequest.OffsetCommitRequestTopic
    OCP = OCT.OffsetCommitRequestPartition
    OFT = OffsetFetchRequest.OffsetFetchRequestTopic

    def commit(offset):
        return acall(b, OffsetCommitRequest(
            group_id="g", generation_id_or_member_epoch=-1, member_id="",
            topics=[OCT(name="t", partitions=[OCP(partition_index=0, committed_offset=offset)])]),
            8)

    async def committed():
        f = await acall(b, OffsetFetchRequest(group_id="g", topics=[
            OFT(name="t", partition_indexes=[0])]), 7)
        return f.topics[0].partitions[0].committed_offset

    b = new_broker(small_disk / "data", {"offsets.topic.num.partitions": "1"})
    try:
        create_topic(b, "t", partitions=1)
        assert (await commit(5)).topics[0].partitions[0].error_code == 0
        filler = fill(small_disk, leave=0)
        last = 5
        for offset in range(6, 2000):   # until the last page of the segment is full too
            code = (await commit(offset)).topics[0].partitions[0].error_code
            if code:
                break
            last = offset
        else:
            pytest.fail("the disk never filled up")
        # The commit's __consumer_offsets append failed: NOT_COORDINATOR, as Kafka maps
        # KAFKA_STORAGE_ERROR for commits; the committed offset is the last one written.
        assert code == ErrorCode.NOT_COORDINATOR
        assert (await commit(5000)).topics[0].partitions[0].error_code == ErrorCode.NOT_COORDINATOR
        assert await committed() == last
        os.unlink(filler)
        assert (await commit(5000)).topics[0].partitions[0].error_code == 0
        assert await committed() == 5000
    finally:
        b.close()


def test_a_partition_created_on_a_full_disk_is_hosted_once_there_is_room(tmp_path, monkeypatch):
    b = new_broker(tmp_path / "data")
    try:
        real = LogManager._open_log

        def no_space(self, *args):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(LogManager, "_open_log", no_space)
        create_topic(b, "t", partitions=1)   # the metadata change commits; the log cannot
        assert produce(b, "t", 0, big_batch(1, 10)).error_code == STORAGE
        assert metadata_partitions(b, "t")[0].offline_replicas == [b.node_id]
        assert produce(b, "t", 0, big_batch(1, 10)).error_code == STORAGE
        monkeypatch.setattr(LogManager, "_open_log", real)
        r = produce(b, "t", 0, big_batch(1, 10))
        assert r.error_code == 0 and r.base_offset == 0
        assert metadata_partitions(b, "t")[0].offline_replicas == []
        assert not b.log_manager.offline_dirs
    finally:
        b.close()


def test_a_storage_error_in_one_partitions_retention_spares_the_others(tmp_path, monkeypatch):
    from kafkette.broker.log_maintenance import LogMaintenance
    from kafkette.log import partition_log
    b = new_broker(tmp_path / "data")
    try:
        create_topic(b, "t", partitions=2, configs={"retention.ms": "1000",
                                                    "segment.bytes": "200"})
        for _ in range(3):   # three segments on each partition
            for p in (0, 1):
                assert produce(b, "t", p, big_batch(1, 10)).error_code == 0
        sick = b.log_manager.get("t", 0).dir
        real = partition_log._write_int_file

        def write_int_file(path, value):
            if path.startswith(sick + os.sep):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, value)
        monkeypatch.setattr(partition_log, "_write_int_file", write_int_file)
        m = LogMaintenance(b)
        with capture_logs() as logs:
            m.run_retention(START_MS + 60_000)   # t-0 fails after its deletions
            m.run_retention(START_MS + 61_000)
        assert b.log_manager.get("t", 1).log_start_offset == 3
        skipped = [e for e in logs if e["event"].startswith("log maintenance skipped")]
        assert [(e["topic"], e["partition"]) for e in skipped] == [("t", 0)]
    finally:
        b.close()


def test_a_log_dir_that_cannot_be_opened_at_start_is_offline_and_the_others_serve(tmp_path):
    good = str(tmp_path / "d0")
    broken = tmp_path / "not-a-dir"
    broken.write_text("a file where a log dir should be")
    with capture_logs() as logs:
        b = new_broker(tmp_path, {"log.dirs": f"{good},{broken}"})
    try:
        assert b.log_manager.offline_dirs == [str(broken)]
        assert [e["log_dir"] for e in logs if e["event"].startswith("log dir offline")] == [
            str(broken)]
        create_topic(b, "t", partitions=2)
        assert {b.log_manager.log_dir_of("t", p) for p in (0, 1)} == {good}
        assert produce(b, "t", 1, big_batch(1, 10)).error_code == 0
        logdirs = describe_log_dirs(b)
        assert logdirs[str(broken)].error_code == STORAGE
        assert logdirs[good].error_code == 0
    finally:
        b.close()


def test_an_offline_dir_is_used_again_after_a_restart_with_what_was_acknowledged(tmp_path, monkeypatch):
    dirs = [str(tmp_path / "d0"), str(tmp_path / "d1")]
    cfg = {"log.dirs": ",".join(dirs)}
    b = new_broker(tmp_path, cfg)
    create_topic(b, "t", partitions=2)
    bad = next(p for p in (0, 1) if b.log_manager.log_dir_of("t", p) == dirs[1])
    assert produce(b, "t", bad, big_batch(2, 10)).error_code == 0
    _fail_writes_under(monkeypatch, dirs[1])
    assert produce(b, "t", bad, big_batch(1, 10)).error_code == STORAGE
    monkeypatch.undo()
    b.close()   # the offline logs are not flushed or marked clean: recovered at start
    b = new_broker(tmp_path, cfg)
    try:
        assert not b.log_manager.offline_dirs
        resp = call(b, fetch_request("t", {bad: 0}), 12)
        part = resp.responses[0].partitions[0]
        assert part.error_code == 0 and batch_offsets(part.records) == [(0, 1)]
        r = produce(b, "t", bad, big_batch(1, 10))
        assert r.error_code == 0 and r.base_offset == 2
    finally:
        b.close()


def test_serve_refuses_a_partition_in_two_log_dirs_with_a_message_not_a_traceback(tmp_path):
    import sys
    for d in ("a", "b"):
        (tmp_path / d / "t-0").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "kafkette", "serve",
                        "--set", "listeners=PLAINTEXT://127.0.0.1:0",
                        "--set", f"log.dirs={tmp_path / 'a'},{tmp_path / 'b'}"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__)))))
    assert r.returncode == 1
    assert "cannot start: partition t-0 is in two log directories" in r.stderr
    assert "Traceback" not in r.stderr
