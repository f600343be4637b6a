"""Group APIs through the dispatcher with bytes: JoinGroup (11), SyncGroup (14),
Heartbeat (12), LeaveGroup (13), OffsetCommit (8), OffsetFetch (9), OffsetDelete
(47), DescribeGroups (15), ListGroups (16), DeleteGroups (42).

The broker runs with group.initial.rebalance.delay.ms=0 so that a single member's
join completes within one event-loop turn; the timing rules themselves are tested
on a fake clock in test_group_coordinator.py.
"""
from __future__ import annotations

import asyncio

import pytest

from handler_harness import acall, create_topic, make_broker  # noqa: F401
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (
    DeleteGroupsRequest,
    DescribeGroupsRequest,
    FindCoordinatorRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    MetadataRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)

Proto = JoinGroupRequest.JoinGroupRequestProtocol
Assign = SyncGroupRequest.SyncGroupRequestAssignment
OCTopic = OffsetCommitRequest.OffsetCommitRequestTopic
OCPart = OCTopic.OffsetCommitRequestPartition
OFTopic = OffsetFetchRequest.OffsetFetchRequestTopic
OFGroup = OffsetFetchRequest.OffsetFetchRequestGroup
ODTopic = OffsetDeleteRequest.OffsetDeleteRequestTopic
ODPart = ODTopic.OffsetDeleteRequestPartition
Leaver = LeaveGroupRequest.MemberIdentity

# A ConsumerProtocolSubscription v0 for topic "t": version, [topics], user data.
SUBSCRIPTION = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\xff\xff\xff\xff"


@pytest.fixture
def gbroker(make_broker):
    b = make_broker({"group.initial.rebalance.delay.ms": "0",
                     "offsets.topic.num.partitions": "3"})
    create_topic(b, "t", partitions=2)
    return b


async def join(broker, member_id="", version=9, group="g", instance=None):
    return await acall(broker, JoinGroupRequest(
        group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000,
        member_id=member_id, group_instance_id=instance, protocol_type="consumer",
        protocols=[Proto(name="range", metadata=SUBSCRIPTION)]), version)


async def join_and_sync(broker, group="g"):
    r = await join(broker, group=group)
    assert r.error_code == ErrorCode.MEMBER_ID_REQUIRED and r.member_id
    r = await asyncio.wait_for(join(broker, r.member_id, group=group), 5)
    assert r.error_code == 0
    s = await acall(broker, SyncGroupRequest(
        group_id=group, generation_id=r.generation_id, member_id=r.member_id,
        protocol_type="consumer", protocol_name="range",
        assignments=[Assign(member_id=r.member_id, assignment=b"ASSIGNMENT")]), 5)
    assert s.error_code == 0 and bytes(s.assignment) == b"ASSIGNMENT"
    return r


async def test_join_sync_heartbeat_leave(gbroker):
    r = await join_and_sync(gbroker)
    assert r.leader == r.member_id and r.generation_id == 1 and r.protocol_name == "range"
    assert [m.member_id for m in r.members] == [r.member_id]
    assert bytes(r.members[0].metadata) == SUBSCRIPTION
    hb = await acall(gbroker, HeartbeatRequest(group_id="g", generation_id=1,
                                               member_id=r.member_id), 4)
    assert hb.error_code == 0
    hb = await acall(gbroker, HeartbeatRequest(group_id="g", generation_id=0,
                                               member_id=r.member_id), 4)
    assert hb.error_code == ErrorCode.ILLEGAL_GENERATION
    d = await acall(gbroker, DescribeGroupsRequest(groups=["g"]), 5)
    g = d.groups[0]
    assert (g.group_state, g.protocol_type, g.protocol_data) == ("Stable", "consumer", "range")
    assert bytes(g.members[0].member_assignment) == b"ASSIGNMENT"
    lv = await acall(gbroker, LeaveGroupRequest(group_id="g", members=[
        Leaver(member_id=r.member_id), Leaver(member_id="nobody")]), 5)
    assert lv.error_code == 0
    assert [m.error_code for m in lv.members] == [0, ErrorCode.UNKNOWN_MEMBER_ID]
    d = await acall(gbroker, DescribeGroupsRequest(groups=["g"]), 5)
    assert d.groups[0].group_state == "Empty" and d.groups[0].members == []


async def test_leave_group_v0_reports_the_member_error(gbroker):
    await join_and_sync(gbroker)
    lv = await acall(gbroker, LeaveGroupRequest(group_id="g", member_id="stranger"), 1)
    assert lv.error_code == ErrorCode.UNKNOWN_MEMBER_ID


@pytest.mark.parametrize("version", [0, 1, 3])
async def test_old_join_versions_get_a_member_id_without_asking(gbroker, version):
    # Before v4 there is no MEMBER_ID_REQUIRED round trip (KIP-394).
    r = await asyncio.wait_for(join(gbroker, "", version=version), 5)
    assert r.error_code == 0 and r.member_id and r.generation_id == 1


@pytest.mark.parametrize("version", [2, 5, 7, 9])
async def test_commit_and_fetch_offsets_with_metadata(gbroker, version):
    r = await join_and_sync(gbroker)
    c = await acall(gbroker, OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=r.generation_id, member_id=r.member_id,
        topics=[OCTopic(name="t", partitions=[
            OCPart(partition_index=0, committed_offset=42, committed_metadata="meta-0"),
            OCPart(partition_index=9, committed_offset=1)])]), version)
    assert [p.error_code for p in c.topics[0].partitions] == [
        0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    f = await acall(gbroker, OffsetFetchRequest(
        group_id="g", topics=[OFTopic(name="t", partition_indexes=[0, 1])]), 7)
    parts = {p.partition_index: (p.committed_offset, p.metadata) for p in f.topics[0].partitions}
    assert parts == {0: (42, "meta-0"), 1: (-1, "")}
    # Stale generation.
    c = await acall(gbroker, OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=r.generation_id + 5,
        member_id=r.member_id, topics=[OCTopic(name="t", partitions=[
            OCPart(partition_index=0, committed_offset=50)])]), version)
    assert c.topics[0].partitions[0].error_code == ErrorCode.ILLEGAL_GENERATION


async def test_simple_commit_all_partitions_and_multi_group_fetch(gbroker):
    for group, offset in (("a", 5), ("b", 7)):
        c = await acall(gbroker, OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=-1, member_id="",
            topics=[OCTopic(name="t", partitions=[
                OCPart(partition_index=1, committed_offset=offset)])]), 8)
        assert c.topics[0].partitions[0].error_code == 0
    # v2+ null topics: everything the group committed.
    f = await acall(gbroker, OffsetFetchRequest(group_id="a", topics=None), 5)
    assert [(t.name, [(p.partition_index, p.committed_offset) for p in t.partitions])
            for t in f.topics] == [("t", [(1, 5)])]
    # v8+: several groups in one request (KIP-709).
    f = await acall(gbroker, OffsetFetchRequest(groups=[
        OFGroup(group_id="a", topics=None), OFGroup(group_id="b", topics=None)]), 9)
    got = {g.group_id: [p.committed_offset for t in g.topics for p in t.partitions]
           for g in f.groups}
    assert got == {"a": [5], "b": [7]}


async def test_offsets_survive_restart(make_broker):
    b = make_broker({"offsets.topic.num.partitions": "3"})
    create_topic(b, "t", partitions=1)
    c = await acall(b, OffsetCommitRequest(
        group_id="keep", generation_id_or_member_epoch=-1, member_id="",
        topics=[OCTopic(name="t", partitions=[
            OCPart(partition_index=0, committed_offset=123, committed_metadata="m")])]), 8)
    assert c.topics[0].partitions[0].error_code == 0
    make_broker.close(b)
    b2 = make_broker({"offsets.topic.num.partitions": "3"})
    f = await acall(b2, OffsetFetchRequest(
        group_id="keep", topics=[OFTopic(name="t", partition_indexes=[0])]), 7)
    p = f.topics[0].partitions[0]
    assert (p.committed_offset, p.metadata) == (123, "m")


async def test_list_delete_groups_and_offset_delete(gbroker):
    r = await join_and_sync(gbroker, group="busy")
    await acall(gbroker, OffsetCommitRequest(
        group_id="idle", generation_id_or_member_epoch=-1, member_id="",
        topics=[OCTopic(name="t", partitions=[OCPart(partition_index=0, committed_offset=1),
                                              OCPart(partition_index=1, committed_offset=2)])]),
        8)
    lg = await acall(gbroker, ListGroupsRequest(), 4)
    assert {(g.group_id, g.group_state) for g in lg.groups} == {("busy", "Stable"),
                                                               ("idle", "Empty")}
    lg = await acall(gbroker, ListGroupsRequest(states_filter=["Stable"]), 4)
    assert [g.group_id for g in lg.groups] == ["busy"]
    # The busy group is subscribed to "t": its offsets cannot be deleted.
    od = await acall(gbroker, OffsetDeleteRequest(group_id="busy", topics=[
        ODTopic(name="t", partitions=[ODPart(partition_index=0)])]), 0)
    assert od.topics[0].partitions[0].error_code == ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
    od = await acall(gbroker, OffsetDeleteRequest(group_id="idle", topics=[
        ODTopic(name="t", partitions=[ODPart(partition_index=0)])]), 0)
    assert od.error_code == 0 and od.topics[0].partitions[0].error_code == 0
    f = await acall(gbroker, OffsetFetchRequest(group_id="idle", topics=None), 5)
    assert [p.partition_index for t in f.topics for p in t.partitions] == [1]
    dg = await acall(gbroker, DeleteGroupsRequest(groups_names=["busy", "idle", "nope"]), 2)
    assert {x.group_id: x.error_code for x in dg.results} == {
        "busy": ErrorCode.NON_EMPTY_GROUP, "idle": 0, "nope": ErrorCode.GROUP_ID_NOT_FOUND}
    assert r.member_id


async def test_offsets_topic_is_created_on_first_lookup_and_hidden(gbroker):
    assert "__consumer_offsets" not in gbroker.image.topics
    fc = await acall(gbroker, FindCoordinatorRequest(key="g", key_type=0), 3)
    assert fc.error_code == 0
    assert len(gbroker.image.topics["__consumer_offsets"].partitions) == 3
    md = await acall(gbroker, MetadataRequest(topics=None), 12)
    assert "__consumer_offsets" not in {t.name for t in md.topics}
    md = await acall(gbroker, MetadataRequest(
        topics=[MetadataRequest.MetadataRequestTopic(name="__consumer_offsets")]), 12)
    assert md.topics[0].error_code == 0 and md.topics[0].is_internal
