"""TxnOffsetCommit (28) and OffsetFetch require_stable through the dispatcher, on a real
broker: the offsets are written to `__consumer_offsets` as a transactional batch, stay
invisible (UNSTABLE_OFFSET_COMMIT with require_stable) until the transaction's marker,
which the tests deliver with `GroupCoordinator.complete_txn_offsets` (or, for a
restart, write into the log as the transaction coordinator would), and the answer
waits for the in-sync replicas as OffsetCommit's does."""
from __future__ import annotations

import asyncio

import pytest

from handler_harness import acall, call, create_topic, make_broker  # noqa: F401
from test_handlers_group_replication import follower_catches_up, leader, pending  # noqa: F401
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (JoinGroupRequest, OffsetCommitRequest,
                                        OffsetFetchRequest, SyncGroupRequest,
                                        TxnOffsetCommitRequest)
from kafkette.protocol.records import build_batch, iter_batches

E = ErrorCode
OFFSETS = "__consumer_offsets"
TTopic = TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic
TPart = TTopic.TxnOffsetCommitRequestPartition
OFTopic = OffsetFetchRequest.OffsetFetchRequestTopic
OFGroup = OffsetFetchRequest.OffsetFetchRequestGroup
OFGTopic = OFGroup.OffsetFetchRequestTopics
OCTopic = OffsetCommitRequest.OffsetCommitRequestTopic
OCPart = OCTopic.OffsetCommitRequestPartition
Proto = JoinGroupRequest.JoinGroupRequestProtocol
Assign = SyncGroupRequest.SyncGroupRequestAssignment
PID, EPOCH = 7000, 2


NO_VERIFY = {"transaction.partition.verification.enable": "false"}


@pytest.fixture
def tbroker(make_broker):
    # These tests commit without a transaction coordinator in the way (the offsets'
    # side alone): KIP-890's check with the coordinator is tested with transactions.
    b = make_broker({"group.initial.rebalance.delay.ms": "0",
                     "offsets.topic.num.partitions": "1", **NO_VERIFY})
    create_topic(b, "t", partitions=2)
    return b


def txn_commit(group="g", offsets=None, pid=PID, epoch=EPOCH, gen=-1, member="",
               instance=None, topic="t", txn_id="tx-1"):
    offsets = offsets if offsets is not None else {0: 10}
    return TxnOffsetCommitRequest(
        transactional_id=txn_id, group_id=group, producer_id=pid, producer_epoch=epoch,
        generation_id=gen, member_id=member, group_instance_id=instance,
        topics=[TTopic(name=topic, partitions=[
            TPart(partition_index=p, committed_offset=o, committed_leader_epoch=1,
                  committed_metadata="m") for p, o in offsets.items()])])


def codes(resp):
    return {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}


async def fetch(b, group="g", partitions=(0, 1), version=7, stable=True):
    f = await acall(b, OffsetFetchRequest(
        group_id=group, topics=[OFTopic(name="t", partition_indexes=list(partitions))],
        require_stable=stable), version)
    assert f.error_code == 0
    return {p.partition_index: (p.committed_offset, p.error_code)
            for t in f.topics for p in t.partitions}


def coordinator(b):
    return b.group_coordinator_ready()


def write_marker(b, pid, epoch, commit, partition=0):
    """A COMMIT / ABORT control batch, appended as WriteTxnMarkers appends it."""
    part = b.replica_manager.partitions[(OFFSETS, partition)]
    part.append_marker(pid, epoch, 0, commit, b.clock.time_ms())


@pytest.mark.parametrize("version", [0, 2, 3, 4])
async def test_txn_offsets_are_invisible_until_the_commit_marker(tbroker, version):
    r = await acall(tbroker, txn_commit(offsets={0: 10, 1: 11}), version)
    assert codes(r) == {("t", 0): 0, ("t", 1): 0}
    # Not committed: OffsetFetch without require_stable sees nothing yet...
    assert await fetch(tbroker, stable=False) == {0: (-1, 0), 1: (-1, 0)}
    # ...and with it, the partitions are unstable (KIP-447).
    assert await fetch(tbroker) == {0: (-1, E.UNSTABLE_OFFSET_COMMIT),
                                    1: (-1, E.UNSTABLE_OFFSET_COMMIT)}
    coordinator(tbroker).complete_txn_offsets(PID, 0, commit=True)
    assert await fetch(tbroker) == {0: (10, 0), 1: (11, 0)}
    f = await acall(tbroker, OffsetFetchRequest(
        group_id="g", topics=[OFTopic(name="t", partition_indexes=[0])]), 7)
    p = f.topics[0].partitions[0]
    assert (p.metadata, p.committed_leader_epoch) == ("m", 1 if version >= 2 else -1)


async def test_abort_drops_the_pending_offsets(tbroker):
    await acall(tbroker, OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=-1, member_id="",
        topics=[OCTopic(name="t", partitions=[OCPart(partition_index=0,
                                                     committed_offset=5)])]), 8)
    await acall(tbroker, txn_commit(offsets={0: 10}), 3)
    assert await fetch(tbroker, stable=False) == {0: (5, 0), 1: (-1, 0)}
    coordinator(tbroker).complete_txn_offsets(PID, 0, commit=False)
    assert await fetch(tbroker) == {0: (5, 0), 1: (-1, 0)}


async def test_offset_fetch_v8_reports_unstable_per_partition(tbroker):
    await acall(tbroker, txn_commit(group="a", offsets={0: 10}), 3)
    await acall(tbroker, OffsetCommitRequest(
        group_id="b", generation_id_or_member_epoch=-1, member_id="",
        topics=[OCTopic(name="t", partitions=[OCPart(partition_index=0,
                                                     committed_offset=5)])]), 8)
    f = await acall(tbroker, OffsetFetchRequest(groups=[
        OFGroup(group_id="a", topics=[OFGTopic(name="t", partition_indexes=[0, 1])]),
        OFGroup(group_id="b", topics=None)], require_stable=True), 9)
    got = {g.group_id: (g.error_code, {(p.partition_index, p.committed_offset, p.error_code)
                                       for t in g.topics for p in t.partitions})
           for g in f.groups}
    # As Kafka: the group's error stays NONE, the partition says UNSTABLE_OFFSET_COMMIT.
    assert got == {"a": (0, {(0, -1, E.UNSTABLE_OFFSET_COMMIT), (1, -1, 0)}),
                   "b": (0, {(0, 5, 0)})}


async def test_the_batch_is_transactional_with_the_producers_id_and_epoch(tbroker):
    await acall(tbroker, txn_commit(offsets={0: 10, 1: 11}), 3)
    plog = tbroker.replica_manager.partitions[(OFFSETS, 0)].log
    data = plog.read(plog.log_start_offset, 1 << 20)
    headers = [h for _, h in iter_batches(data)]
    assert len(headers) == 1
    h = headers[0]
    assert (h.is_transactional, h.is_control, h.producer_id, h.producer_epoch,
            h.base_sequence, h.records_count) == (True, False, PID, EPOCH, -1, 2)


async def test_unknown_topics_and_partitions(tbroker):
    r = await acall(tbroker, txn_commit(topic="nope", offsets={0: 1}), 3)
    assert codes(r) == {("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
    r = await acall(tbroker, txn_commit(offsets={0: 1, 7: 1}), 3)
    assert codes(r) == {("t", 0): 0, ("t", 7): E.UNKNOWN_TOPIC_OR_PARTITION}


async def joined_member(b):
    req = dict(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=10000,
               protocol_type="consumer", protocols=[Proto(name="range", metadata=b"")])
    r = await acall(b, JoinGroupRequest(member_id="", **req), 9)
    r = await asyncio.wait_for(acall(b, JoinGroupRequest(member_id=r.member_id, **req), 9), 5)
    s = await asyncio.wait_for(acall(b, SyncGroupRequest(
        group_id="g", generation_id=r.generation_id, member_id=r.member_id,
        protocol_type="consumer", protocol_name="range",
        assignments=[Assign(member_id=r.member_id, assignment=b"A")]), 5), 5)
    assert s.error_code == 0
    return r


async def test_kip447_member_checks_from_v3_only(tbroker):
    r = await joined_member(tbroker)
    ok = await acall(tbroker, txn_commit(gen=r.generation_id, member=r.member_id), 3)
    assert codes(ok) == {("t", 0): 0}
    stale = await acall(tbroker, txn_commit(gen=r.generation_id + 1, member=r.member_id), 3)
    assert codes(stale) == {("t", 0): E.ILLEGAL_GENERATION}
    zombie = await acall(tbroker, txn_commit(gen=r.generation_id, member="gone"), 4)
    assert codes(zombie) == {("t", 0): E.UNKNOWN_MEMBER_ID}
    # v2 has no generation or member fields: nothing to check, accepted.
    v2 = await acall(tbroker, txn_commit(), 2)
    assert codes(v2) == {("t", 0): 0}


@pytest.mark.parametrize("awaitable", [False, True])
async def test_transaction_coordinator_verification_hook(tbroker, awaitable):
    seen = []

    def verify(transactional_id, producer_id, producer_epoch, group_id):
        seen.append((transactional_id, producer_id, producer_epoch, group_id))
        code = E.INVALID_TXN_STATE if producer_epoch == 9 else None
        if not awaitable:
            return code

        async def later():
            await asyncio.sleep(0)
            return code
        return later()

    tbroker.verify_txn_offset_commit = verify
    r = await acall(tbroker, txn_commit(epoch=9), 3)
    assert codes(r) == {("t", 0): E.INVALID_TXN_STATE}
    assert not coordinator(tbroker).has_pending_txn_offsets(PID)
    r = await acall(tbroker, txn_commit(), 3)
    assert codes(r) == {("t", 0): 0}
    assert seen == [("tx-1", PID, 9, "g"), ("tx-1", PID, EPOCH, "g")]
    assert coordinator(tbroker).has_pending_txn_offsets(PID)


async def test_restart_replays_committed_aborted_and_open_transactions(make_broker):
    cfg = {"offsets.topic.num.partitions": "1", **NO_VERIFY}
    b = make_broker(cfg)
    create_topic(b, "t", partitions=2)
    await acall(b, OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=-1, member_id="",
        topics=[OCTopic(name="t", partitions=[OCPart(partition_index=1,
                                                     committed_offset=5)])]), 8)
    await acall(b, txn_commit(offsets={0: 10}, pid=1), 3)      # committed
    await acall(b, txn_commit(offsets={1: 11}, pid=2), 3)      # aborted
    await acall(b, txn_commit(group="h", offsets={0: 12}, pid=3), 3)   # still open
    write_marker(b, 1, EPOCH, commit=True)
    write_marker(b, 2, EPOCH, commit=False)
    make_broker.close(b)
    b2 = make_broker(cfg)
    assert await fetch(b2) == {0: (10, 0), 1: (5, 0)}
    assert await fetch(b2, group="h") == {0: (-1, E.UNSTABLE_OFFSET_COMMIT), 1: (-1, 0)}
    coordinator(b2).complete_txn_offsets(3, 0, commit=True)
    assert await fetch(b2, group="h") == {0: (12, 0), 1: (-1, 0)}


async def test_answer_waits_for_the_in_sync_replicas(leader):  # noqa: F811
    leader.verify_txn_offset_commit = lambda *args: None   # the offsets' side alone
    create_topic(leader, "t", partitions=1)
    task = asyncio.ensure_future(acall(leader, txn_commit(), 3))
    assert await pending(task)
    follower_catches_up(leader)
    r = await asyncio.wait_for(task, 5)
    assert codes(r) == {("t", 0): 0}


def test_error_response_covers_every_partition():
    from kafkette.broker.registry import load_handlers
    spec = load_handlers()[28]
    assert (spec.min_version, spec.max_version) == (0, 4)
    req = txn_commit(offsets={0: 1, 1: 2})
    resp = spec.error_response(req, E.NOT_COORDINATOR, None)
    assert codes(resp) == {("t", 0): E.NOT_COORDINATOR, ("t", 1): E.NOT_COORDINATOR}


def test_v0_1_get_coordinator_not_available_for_load_in_progress(tbroker):
    class Ctx:
        api_version = 1
    from kafkette.broker.registry import load_handlers
    resp = load_handlers()[28].error_response(txn_commit(), E.COORDINATOR_LOAD_IN_PROGRESS,
                                              Ctx())
    assert codes(resp) == {("t", 0): E.COORDINATOR_NOT_AVAILABLE}
    assert codes(call(tbroker, txn_commit(), 1)) == {("t", 0): 0}


def test_only_the_coordinator_origin_may_append_a_transactional_batch_without_sequence(tbroker):
    """Kafka's AppendOrigin.COORDINATOR skips the sequence check; a client's batch with
    a producer id and no sequence is still invalid."""
    call(tbroker, txn_commit(), 3)   # creates __consumer_offsets
    rm = tbroker.replica_manager

    def batch():
        return memoryview(bytearray(build_batch([(b"k", b"v", [])], producer_id=55,
                                                producer_epoch=0, transactional=True,
                                                timestamp_ms=tbroker.clock.time_ms())))
    assert rm.append_records([(OFFSETS, 0, batch())], 1)[0].error == E.INVALID_RECORD
    assert rm.append_records([(OFFSETS, 0, batch())], 1, origin="coordinator")[0].error == 0
