"""ReplicaManager on a leader with two (simulated) followers: acks=all waits in the
produce purgatory for the followers' fetches, fetches from followers read past the high
watermark, consumers do not, and long polls are woken by appends and high-watermark
moves. Real log files; the followers are Fetch calls with a replica id."""
from __future__ import annotations

import asyncio
import inspect
import uuid

import pytest

from kafkette.broker.replica_manager import (
    FetchParams,
    FetchPartition,
    ReplicaManager,
    read_hw_checkpoint,
    write_hw_checkpoint,
)
from kafkette.clock import SystemClock
from kafkette.controller.metadata_image import MetadataImage, apply_records
from kafkette.errors import ErrorCode
from kafkette.log.log_manager import LogManager
from kafkette.protocol.records import build_batch

TID = str(uuid.uuid4())


def image(isr=(1, 2, 3), leader=1, epoch=0, min_isr="2", partition_epoch_bumps=0):
    recs = [{"type": "ClusterIdRecord", "cluster_id": "c"},
            {"type": "TopicRecord", "name": "t", "topic_id": TID},
            {"type": "PartitionRecord", "topic_id": TID, "partition": 0, "leader": leader,
             "leader_epoch": epoch, "replicas": [1, 2, 3], "isr": list(isr)},
            {"type": "ConfigRecord", "resource_type": "topic", "resource_name": "t",
             "name": "min.insync.replicas", "value": min_isr}]
    return apply_records(MetadataImage(cluster_id="", controller_id=1), recs, 10)


def change(img, **fields):
    rec = {"type": "PartitionChangeRecord", "topic_id": TID, "partition": 0, **fields}
    return apply_records(img, [rec], img.offset + 1)


@pytest.fixture
def rm(tmp_path):
    lm = LogManager(tmp_path / "data")
    img = image()
    m = ReplicaManager(1, lm, lambda name, image=None: dict((image or img).topics[name].configs),
                       SystemClock())
    m.on_metadata_update(MetadataImage(cluster_id="", controller_id=1), img)
    yield m
    lm.close_all()


def batch(n=1):
    return memoryview(bytearray(build_batch([(b"k", b"v%d" % i, []) for i in range(n)],
                                            timestamp_ms=SystemClock().time_ms())))


def follower_fetch(rm, replica_id, offset, max_wait_ms=0, epoch=-1):
    return rm.fetch_messages(FetchParams(replica_id=replica_id, max_wait_ms=max_wait_ms),
                             [FetchPartition("t", 0, offset, 1 << 20, last_fetched_epoch=epoch)])


async def test_acks_all_waits_for_every_isr_member(rm):
    pending = rm.append_records([("t", 0, batch(3))], -1, timeout_ms=5000)
    assert inspect.isawaitable(pending)
    task = asyncio.ensure_future(pending)
    # Follower 2 fetches the batch and then asks for what follows it.
    r = follower_fetch(rm, 2, 0)
    assert r[0].error == 0 and len(r[0].records) > 0 and r[0].high_watermark == 0
    follower_fetch(rm, 2, 3)
    await asyncio.sleep(0.01)
    assert not task.done(), "acks=all must wait for follower 3 too"
    follower_fetch(rm, 3, 3)
    results = await asyncio.wait_for(task, 2)
    assert results[0].error == 0 and results[0].base_offset == 0
    assert rm.partitions[("t", 0)].high_watermark == 3


async def test_acks_all_times_out_without_followers(rm):
    results = await rm.append_records([("t", 0, batch())], -1, timeout_ms=50)
    assert results[0].error == ErrorCode.REQUEST_TIMED_OUT
    # The data is in the leader's log, as in Kafka; only the answer says it timed out.
    assert rm.partitions[("t", 0)].log_end_offset == 1


async def test_acks_1_is_answered_at_once(rm):
    results = rm.append_records([("t", 0, batch())], 1)
    assert not inspect.isawaitable(results) and results[0].error == 0


async def test_acks_all_refused_when_isr_below_min(rm):
    rm.on_metadata_update(rm.image, change(rm.image, isr=[1]))
    results = rm.append_records([("t", 0, batch())], -1)
    assert results[0].error == ErrorCode.NOT_ENOUGH_REPLICAS
    assert rm.partitions[("t", 0)].log_end_offset == 0


async def test_leadership_change_fails_a_waiting_produce(rm):
    task = asyncio.ensure_future(rm.append_records([("t", 0, batch())], -1, timeout_ms=5000))
    await asyncio.sleep(0.01)
    rm.on_metadata_update(rm.image, change(rm.image, leader=2, leader_epoch=1, isr=[2, 3]))
    results = await asyncio.wait_for(task, 2)
    assert results[0].error == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_consumer_reads_only_to_the_high_watermark(rm):
    rm.append_records([("t", 0, batch(2))], 1)
    consumer = rm.fetch_messages(FetchParams(), [FetchPartition("t", 0, 0, 1 << 20)])
    assert consumer[0].records == b"" and consumer[0].high_watermark == 0
    assert len(follower_fetch(rm, 2, 0)[0].records) > 0


async def test_consumer_long_poll_is_woken_by_the_high_watermark(rm):
    rm.append_records([("t", 0, batch(2))], 1)
    poll = rm.fetch_messages(FetchParams(max_wait_ms=5000), [FetchPartition("t", 0, 0, 1 << 20)])
    assert inspect.isawaitable(poll)
    task = asyncio.ensure_future(poll)
    follower_fetch(rm, 2, 2)
    await asyncio.sleep(0.01)
    assert not task.done()
    follower_fetch(rm, 3, 2)
    results = await asyncio.wait_for(task, 2)
    assert len(results[0].records) > 0 and results[0].high_watermark == 2


async def test_follower_long_poll_is_woken_by_an_append(rm):
    poll = follower_fetch(rm, 2, 0, max_wait_ms=5000)
    assert inspect.isawaitable(poll)
    task = asyncio.ensure_future(poll)
    await asyncio.sleep(0.01)
    rm.append_records([("t", 0, batch())], 1)
    results = await asyncio.wait_for(task, 2)
    assert len(results[0].records) > 0


async def test_fetch_from_a_non_leader_follower_is_refused(rm):
    rm.on_metadata_update(rm.image, change(rm.image, leader=2, leader_epoch=1))
    r = follower_fetch(rm, 3, 0)
    assert r[0].error == ErrorCode.NOT_LEADER_OR_FOLLOWER and r[0].current_leader == (2, 1)


async def test_isr_proposals_go_through_alter_isr(rm):
    proposals = []
    rm.alter_isr = lambda part, isr: proposals.append(isr)
    rm.lag_time_max_ms = 0
    rm.append_records([("t", 0, batch())], 1)
    follower_fetch(rm, 2, 1)
    await asyncio.sleep(0.002)
    assert rm.maybe_update_isr() == 1 and proposals == [(1, 2)]
    # One change in flight at a time.
    assert rm.maybe_update_isr() == 0
    part = rm.partitions[("t", 0)]
    rm.on_isr_change(part, 0, part.partition_epoch + 1, (1, 2))
    assert part.isr == (1, 2) and part.high_watermark == 1


def test_hw_checkpoint_round_trip_and_garbage(tmp_path):
    path = str(tmp_path / "replication-offset-checkpoint")
    write_hw_checkpoint(path, {("a-b", 0): 5, ("c", 12): 0})
    assert read_hw_checkpoint(path) == {("a-b", 0): 5, ("c", 12): 0}
    with open(path, "w") as f:
        f.write("0\n3\na 0 1\n")  # count does not match: torn
    assert read_hw_checkpoint(path) == {}
    assert read_hw_checkpoint(str(tmp_path / "missing")) == {}


def test_restarted_leader_starts_from_the_checkpointed_high_watermark(tmp_path):
    lm = LogManager(tmp_path / "data")
    img = image()
    configs = lambda name, image=None: dict((image or img).topics[name].configs)  # noqa: E731
    rm = ReplicaManager(1, lm, configs, SystemClock())
    rm.on_metadata_update(MetadataImage(cluster_id="", controller_id=1), img)
    rm.append_records([("t", 0, batch(4))], 1)
    follower_fetch(rm, 2, 2)
    follower_fetch(rm, 3, 2)
    rm.close()
    lm.close_all()
    lm2 = LogManager(tmp_path / "data")
    lm2.load_all()
    rm2 = ReplicaManager(1, lm2, configs, SystemClock())
    rm2.on_metadata_update(MetadataImage(cluster_id="", controller_id=1), img)
    part = rm2.partitions[("t", 0)]
    assert part.log_end_offset == 4 and part.high_watermark == 2
    lm2.close_all()


# -- DeleteRecords waits for the followers' log start offsets (DelayedDeleteRecords) ----

def with_brokers(img, fenced=()):
    recs = [{"type": "RegisterBrokerRecord", "broker_id": b, "host": "h", "port": 9000 + b,
             "fenced": b in fenced} for b in (1, 2, 3)]
    return apply_records(img, recs, img.offset + 1)


def report_start(rm, replica_id, log_start):
    """A follower's fetch at the log end, reporting its own log start offset."""
    end = rm.partitions[("t", 0)].log_end_offset
    return rm.fetch_messages(FetchParams(replica_id=replica_id, max_wait_ms=0),
                             [FetchPartition("t", 0, end, 1 << 20, log_start_offset=log_start)])


async def _replicated(rm, n):
    rm.append_records([("t", 0, batch(n))], 1)
    for r in (2, 3):
        follower_fetch(rm, r, 0)
        report_start(rm, r, 0)
    assert rm.partitions[("t", 0)].high_watermark == n


async def test_delete_records_waits_for_every_live_followers_log_start(rm):
    rm.on_metadata_update(rm.image, with_brokers(rm.image))
    await _replicated(rm, 10)
    pending = rm.delete_records("t", 0, 6, timeout_ms=5000)
    assert inspect.isawaitable(pending)
    task = asyncio.ensure_future(pending)
    assert rm.partitions[("t", 0)].log_start_offset == 6   # the leader moved at once
    report_start(rm, 2, 6)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done(), "answered before follower 3 moved its log start"
    report_start(rm, 3, 6)
    assert await asyncio.wait_for(task, 2) == (ErrorCode.NONE, 6)


async def test_delete_records_ignores_fenced_followers_and_times_out_on_live_ones(rm):
    rm.on_metadata_update(rm.image, with_brokers(rm.image, fenced={3}))
    await _replicated(rm, 10)
    assert inspect.isawaitable(waiting := rm.delete_records("t", 0, 4, timeout_ms=50))
    assert await waiting == (ErrorCode.REQUEST_TIMED_OUT, -1)   # follower 2 never moved
    report_start(rm, 2, 4)
    # Broker 3 is fenced: its replica does not hold the answer back (Kafka counts
    # only replicas on live brokers).
    assert rm.delete_records("t", 0, 4, timeout_ms=50) == 4


async def test_delete_records_waiting_when_leadership_moves_is_not_leader(rm):
    rm.on_metadata_update(rm.image, with_brokers(rm.image))
    await _replicated(rm, 10)
    task = asyncio.ensure_future(rm.delete_records("t", 0, 3, timeout_ms=5000))
    for _ in range(20):
        await asyncio.sleep(0)
    rm.on_metadata_update(rm.image, change(rm.image, leader=2, leader_epoch=1))
    assert await asyncio.wait_for(task, 2) == (ErrorCode.NOT_LEADER_OR_FOLLOWER, -1)
