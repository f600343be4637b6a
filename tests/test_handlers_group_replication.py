"""Group answers wait for `__consumer_offsets` replication, as Kafka's coordinator
appends with acks=all: on a leader whose offsets partition has a second (simulated)
in-sync replica, SyncGroup and OffsetCommit are answered only once that replica's fetch
covers the write, and COORDINATOR_NOT_AVAILABLE when it does not come in time."""
from __future__ import annotations

import asyncio

import pytest

from handler_harness import acall, call, make_broker  # noqa: F401
from kafkette.broker.group_offsets import offsets_topic_spec
from kafkette.broker.handlers import groups as group_handlers
from kafkette.broker.replica_manager import FetchParams, FetchPartition
from kafkette.controller.quorum import run_now
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (FindCoordinatorRequest, JoinGroupRequest,
                                        OffsetCommitRequest, SyncGroupRequest)

OFFSETS = "__consumer_offsets"
Proto = JoinGroupRequest.JoinGroupRequestProtocol
Assign = SyncGroupRequest.SyncGroupRequestAssignment
OC = OffsetCommitRequest.OffsetCommitRequestTopic


@pytest.fixture
def leader(make_broker):
    """Broker 1, leading the one `__consumer_offsets` partition, with broker 2 as an
    in-sync follower that only fetches when the test says so."""
    b = make_broker({"group.initial.rebalance.delay.ms": "0",
                     "offsets.topic.num.partitions": "1",
                     "offsets.topic.replication.factor": "2"})
    epoch = run_now(b.controller.register_broker(2, "10.0.0.2", 9093, None, None))
    run_now(b.controller.broker_heartbeat(2, epoch, b.image.offset, False, False))
    # Created as FindCoordinator would, but with broker 1 as the preferred leader.
    _, _, configs = offsets_topic_spec(b)
    run_now(b.controller.create_topic(OFFSETS, -1, -1, configs, assignments=[(0, [1, 2])]))
    assert call(b, FindCoordinatorRequest(key="g", key_type=0), 3).node_id == 1
    part = b.image.topics[OFFSETS].partitions[0]
    assert (part.leader, sorted(part.isr)) == (1, [1, 2])
    return b


async def pending(task) -> bool:
    """Whether `task` is still waiting once everything else ready has run: yields to
    the loop (no timed sleep) so that the handler reaches its wait."""
    for _ in range(50):
        await asyncio.sleep(0)
    return not task.done()


def follower_catches_up(b):
    """Broker 2 fetches from where it is to the log end, twice: the second fetch tells
    the leader that 2 has everything (its fetch offset is the log end)."""
    p = b.replica_manager.partitions[(OFFSETS, 0)]
    for _ in range(2):
        b.replica_manager.fetch_messages(FetchParams(replica_id=2, max_wait_ms=0),
                                         [FetchPartition(OFFSETS, 0, p.log_end_offset,
                                                         1 << 20)])
    return p.high_watermark


async def joined(b):
    req = dict(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=10000,
               protocol_type="consumer", protocols=[Proto(name="range", metadata=b"")])
    r = await acall(b, JoinGroupRequest(member_id="", **req), 9)
    r = await asyncio.wait_for(acall(b, JoinGroupRequest(member_id=r.member_id, **req), 9), 5)
    assert r.error_code == 0
    return r


def sync(b, r):
    return acall(b, SyncGroupRequest(group_id="g", generation_id=r.generation_id,
                                     member_id=r.member_id, protocol_type="consumer",
                                     protocol_name="range",
                                     assignments=[Assign(member_id=r.member_id,
                                                         assignment=b"A")]), 5)


async def test_sync_group_answers_once_the_assignment_is_replicated(leader):
    r = await joined(leader)
    task = asyncio.ensure_future(sync(leader, r))
    assert await pending(task), "SyncGroup answered before the ISR had the assignment"
    p = leader.replica_manager.partitions[(OFFSETS, 0)]
    assert p.high_watermark < p.log_end_offset
    assert follower_catches_up(leader) == p.log_end_offset
    s = await asyncio.wait_for(task, 5)
    assert (s.error_code, bytes(s.assignment)) == (0, b"A")


async def test_sync_group_without_replication_in_time_is_coordinator_not_available(
        leader, monkeypatch):
    monkeypatch.setattr(group_handlers, "REPLICATION_TIMEOUT_MS", 100)
    r = await joined(leader)
    s = await asyncio.wait_for(sync(leader, r), 5)
    assert s.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE


async def test_offset_commit_answers_once_replicated(leader, monkeypatch):
    def commit():
        return acall(leader, OffsetCommitRequest(
            group_id="g", generation_id_or_member_epoch=-1, member_id="",
            topics=[OC(name=OFFSETS, partitions=[OC.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=7)])]), 8)
    task = asyncio.ensure_future(commit())
    assert await pending(task), "OffsetCommit answered before the ISR had the offset"
    follower_catches_up(leader)
    resp = await asyncio.wait_for(task, 5)
    assert resp.topics[0].partitions[0].error_code == 0
    monkeypatch.setattr(group_handlers, "REPLICATION_TIMEOUT_MS", 100)
    resp = await asyncio.wait_for(commit(), 5)
    assert resp.topics[0].partitions[0].error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
