"""Creating many partitions at once (issue 13): the logs of a big metadata change are
created in slices that yield to the event loop, a partition whose turn has not come
answers NOT_LEADER_OR_FOLLOWER (retriable), and what a crash right after the create
leaves is recovered."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from handler_harness import START_MS, acall, call, make_broker, new_broker  # noqa: F401
from kafkette.broker import replica_manager as rm_module
from kafkette.errors import ErrorCode
from kafkette.log.leader_epoch import CHECKPOINT_FILE
from kafkette.log.partition_log import PartitionLog
from kafkette.protocol.messages import CreateTopicsRequest, DeleteTopicsRequest, ProduceRequest
from kafkette.protocol.records import build_batch, iter_batches

T = CreateTopicsRequest.CreatableTopic
TD = ProduceRequest.TopicProduceData
PD = TD.PartitionProduceData
BATCH = build_batch([(b"k", b"v" * 20, [])], timestamp_ms=START_MS)


def _create(name: str, n: int):
    return CreateTopicsRequest(topics=[T(name=name, num_partitions=n, replication_factor=1,
                                         assignments=[], configs=[])], timeout_ms=5000)


def _produce(topic: str, parts):
    return ProduceRequest(transactional_id=None, acks=1, timeout_ms=1000, topic_data=[
        TD(name=topic, partition_data=[PD(index=p, records=BATCH) for p in parts])])


async def _until(cond, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.001)


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(rm_module, "HOST_SLICE", 20)
    monkeypatch.setattr(rm_module, "HOST_SLICE_MS", 1)
    monkeypatch.setattr(rm_module, "HOST_SLICE_MAX_MS", 1)


def test_big_create_is_hosted_in_slices_that_yield(make_broker, small_slices):
    b = make_broker()
    rm = b.replica_manager

    async def scenario():
        ticks = []
        stop = asyncio.Event()

        async def bystander():   # another connection's work, every loop turn
            while not stop.is_set():
                ticks.append(rm.hosting_pending)
                await asyncio.sleep(0)

        task = asyncio.ensure_future(bystander())
        create = asyncio.ensure_future(acall(b, _create("big", 300), 7))
        await _until(lambda: rm.hosting_pending > 0)   # the metadata is applied
        # A partition not created yet: retriable NOT_LEADER_OR_FOLLOWER, not a crash.
        last = max(p for (t, p) in rm._pending_host if t == "big")
        r = await acall(b, _produce("big", [last]), 9)
        assert r.responses[0].partition_responses[0].error_code == \
            ErrorCode.NOT_LEADER_OR_FOLLOWER
        # The answer waits for the last slice: every partition is writable once answered.
        resp = await create
        assert resp.topics[0].error_code == 0
        assert rm.hosting_pending == 0
        stop.set()
        await task
        # The other coroutine ran between slices, while logs were still pending.
        assert len({n for n in ticks if n > 0}) >= 3
        r = await acall(b, _produce("big", range(300)), 9)
        assert [p.error_code for p in r.responses[0].partition_responses] == [0] * 300

    asyncio.run(scenario())
    assert len(b.log_manager.partitions("big")) == 300


def test_small_create_is_hosted_at_once(make_broker, small_slices):
    b = make_broker()

    async def scenario():
        resp = await acall(b, _create("small", 20), 7)
        assert resp.topics[0].error_code == 0
        assert b.replica_manager.hosting_pending == 0
        r = await acall(b, _produce("small", range(20)), 9)
        assert all(p.error_code == 0 for p in r.responses[0].partition_responses)

    asyncio.run(scenario())


def test_topic_deleted_while_its_logs_are_pending(make_broker, small_slices):
    b = make_broker()
    rm = b.replica_manager

    async def scenario():
        create = asyncio.ensure_future(acall(b, _create("gone", 300), 7))
        await _until(lambda: rm.hosting_pending > 0)
        req = DeleteTopicsRequest(topic_names=["gone"], timeout_ms=5000)
        resp = await acall(b, req, 5)
        assert resp.responses[0].error_code == 0
        assert rm.hosting_pending == 0
        assert (await create).topics[0].error_code == 0   # created, then deleted
        await asyncio.sleep(0.05)   # the hosting task, if it still ran, would run now

    asyncio.run(scenario())
    assert b.log_manager.partitions("gone") == []
    data_dir = b.log_manager.data_dir
    assert not [n for n in os.listdir(data_dir) if n.startswith("gone-")]


def test_hosting_finishes_when_its_loop_is_gone(make_broker, small_slices):
    """asyncio.run ended (a tool, a test) before the slices ran: the next request for
    a pending partition hosts the rest."""
    from kafkette.controller.quorum import run_now
    b = make_broker()

    async def create_and_leave():   # the metadata is applied, the slices never run
        run_now(b.controller.create_topic("big", 100, 1, {}))
        assert b.replica_manager.hosting_pending == 100

    asyncio.run(create_and_leave())   # its end cancels the hosting task
    assert b.replica_manager.hosting_pending > 0
    r = call(b, _produce("big", range(100)), 9)
    assert all(p.error_code == 0 for p in r.responses[0].partition_responses)
    assert b.replica_manager.hosting_pending == 0


def test_crash_right_after_a_big_create_and_produce(tmp_path, small_slices):
    """kill -9 safety: a created topic (logs made in slices, first leader-epoch
    checkpoints written without fsync), one batch in each partition, then the log
    manager's unclean close (nothing flushed, no clean-shutdown marker) and a new
    broker on the same directory: every partition is there with its batch and its
    leader epoch."""
    b = new_broker(tmp_path / "data")

    async def scenario():
        assert (await acall(b, _create("t", 100), 7)).topics[0].error_code == 0
        await _until(lambda: b.replica_manager.hosting_pending == 0)
        r = await acall(b, _produce("t", range(100)), 9)
        assert all(p.error_code == 0 for p in r.responses[0].partition_responses)

    asyncio.run(scenario())
    epochs = {p: b.log_manager.get("t", p).latest_epoch for p in range(100)}
    b.log_manager.close_all(clean=False)
    b.controller.close()
    b2 = new_broker(tmp_path / "data")
    try:
        for p in range(100):
            plog = b2.log_manager.get("t", p)
            assert plog.log_end_offset == 1
            assert plog.latest_epoch == epochs[p] >= 0
        r = call(b2, _produce("t", [0, 99]), 9)
        assert all(p.error_code == 0 for p in r.responses[0].partition_responses)
    finally:
        b2.close()


@pytest.mark.parametrize("keep", [0, 1, 2, 3, 4, 5, 6, 7])
def test_torn_first_epoch_checkpoint_is_rebuilt_from_the_log(tmp_path, keep):
    """The first checkpoint of a new log is written without fsync: whatever prefix of it
    a crash leaves, the reopened log has the epoch its batches carry."""
    d = tmp_path / "t-0"
    plog = PartitionLog(d)
    assert plog.assign_epoch_start_offset(7)
    plog.append(bytearray(BATCH), 7, START_MS)
    whole = (d / CHECKPOINT_FILE).read_bytes()
    assert whole == b"0\n1\n7 0\n"
    for seg in plog.segments:   # as a killed process leaves them
        seg.abandon()
    (d / CHECKPOINT_FILE).write_bytes(whole[:keep])
    reopened = PartitionLog(d)
    assert reopened.log_end_offset == 1
    assert reopened.latest_epoch == 7
    assert reopened.end_offset_for_epoch(7) == (7, 1)
    data = reopened.read(0, 10_000)
    assert [h.partition_leader_epoch for _, h in iter_batches(data)] == [7]


def test_a_failing_metadata_listener_does_not_stop_the_others(make_broker):
    """An exception in one listener is logged and the later listeners (here the
    replica manager's, and one added last) still see the change;
    the node keeps applying the next changes."""
    from structlog.testing import capture_logs

    b = make_broker()
    seen = []
    calls = {"n": 0}

    def broken(old, new):
        calls["n"] += 1
        raise RuntimeError("listener bug")

    # Before the replica manager's listener, so that a failure that stopped the publish
    # would leave the new topic unhosted.
    b.controller._listeners.insert(0, broken)
    b.controller.add_listener(lambda old, new: seen.append(new.offset))
    with capture_logs() as logs:
        create_topic_ok(b, "a")
        create_topic_ok(b, "b")
    assert calls["n"] >= 2
    assert len(seen) >= 2 and seen == sorted(seen)
    assert {"a", "b"} <= set(b.image.topics)
    for name in ("a", "b"):
        r = call(b, _produce(name, [0]), 9)
        assert r.responses[0].partition_responses[0].error_code == 0
    failures = [e for e in logs if e["event"] == "metadata listener failed"]
    assert len(failures) == calls["n"]
    assert all("broken" in e["listener"] and e.get("exc_info") for e in failures)


def create_topic_ok(b, name: str) -> None:
    assert call(b, _create(name, 1), 7).topics[0].error_code == 0


def test_a_metadata_entry_of_10000_partition_records_fits_a_quorum_of_one(tmp_path):
    """A CreateTopics at the 10,000-partition limit is one metadata entry of ~1.6 MB,
    over max.message.bytes' 1 MiB default: the single node's metadata log takes it
    (Kafka's Raft client takes 8 MiB batches) and replays it after a restart."""
    import json
    import uuid

    from kafkette.clock import ManualClock
    from kafkette.controller.quorum import LocalQuorum, run_now

    class Recorder:
        def __init__(self):
            self.values = []

        def apply(self, last_offset, values):
            self.values.extend(values)

        def load_snapshot(self, last_offset, data):
            raise AssertionError("no snapshot expected")

        def snapshot(self):
            return -1, b""

        def leader_changed(self, leader_id, epoch):
            pass

    tid = str(uuid.uuid4())
    values = [json.dumps({"type": "PartitionRecord", "topic_id": tid, "partition": p,
                          "replicas": [1], "isr": [1], "leader": 1, "leader_epoch": 0,
                          "partition_epoch": 0}).encode() for p in range(10_000)]
    assert sum(map(len, values)) > 1_048_588
    clock = ManualClock(START_MS)
    q = LocalQuorum(1, tmp_path, clock)
    q.start_sync(Recorder())
    run_now(q.append(values))
    q._log.close()
    again = Recorder()
    LocalQuorum(1, tmp_path, clock).start_sync(again)
    assert again.values == values


def test_create_partitions_of_thousands_is_hosted_in_slices_too(make_broker, small_slices):
    """CreatePartitions adds partitions to a topic whose first ones are hosted: the
    new logs come in slices, the old partitions are served all along."""
    from kafkette.protocol.messages import CreatePartitionsRequest
    b = make_broker()
    rm = b.replica_manager

    async def scenario():
        assert (await acall(b, _create("grow", 2), 7)).topics[0].error_code == 0
        req = CreatePartitionsRequest(topics=[CreatePartitionsRequest.CreatePartitionsTopic(
            name="grow", count=302, assignments=None)], timeout_ms=5000)
        grow = asyncio.ensure_future(acall(b, req, 3))
        await _until(lambda: rm.hosting_pending > 0)
        r = await acall(b, _produce("grow", [0, 1]), 9)
        assert [p.error_code for p in r.responses[0].partition_responses] == [0, 0]
        assert (await grow).results[0].error_code == 0
        assert rm.hosting_pending == 0
        r = await acall(b, _produce("grow", range(302)), 9)
        assert all(p.error_code == 0 for p in r.responses[0].partition_responses)

    asyncio.run(scenario())
    assert len(b.log_manager.partitions("grow")) == 302
