"""The active controller's broker lifecycle (registration, heartbeats, fencing,
leader changes) and what brokers answer for partitions they do not lead (KIP-951),
driven on one node with a LocalQuorum and a manual clock: the same controller code
runs on the Raft quorum in a cluster."""
from __future__ import annotations

import uuid

import pytest

from handler_harness import broker, call, make_broker, produce_request, fetch_request  # noqa: F401
from kafkette.controller.quorum import encode_records, run_now
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import MetadataRequest
from kafkette.protocol.records import build_batch


def _register(b, node_id: int, port: int):
    return run_now(b.controller.register_broker(node_id, "10.0.0.%d" % node_id, port, None,
                                                None))


def _heartbeat(b, node_id: int, epoch: int, offset: int | None = None, **kw):
    if offset is None:
        offset = b.image.offset
    return run_now(b.controller.broker_heartbeat(node_id, epoch, offset,
                                                 kw.get("want_fence", False),
                                                 kw.get("want_shutdown", False)))


def test_registration_starts_fenced_and_a_caught_up_heartbeat_unfences(broker):
    epoch = _register(broker, 2, 9093)
    assert broker.image.brokers[2].fenced
    # Behind the registration record: still fenced.
    caught_up, fenced, _ = _heartbeat(broker, 2, epoch, offset=epoch - 1)
    assert (caught_up, fenced) == (False, True)
    caught_up, fenced, _ = _heartbeat(broker, 2, epoch)
    assert (caught_up, fenced) == (True, False)
    assert not broker.image.brokers[2].fenced


def test_heartbeat_with_a_stale_epoch_or_unknown_broker_is_refused(broker):
    epoch = _register(broker, 2, 9093)
    with pytest.raises(KafkaError) as e:
        _heartbeat(broker, 2, epoch + 100)
    assert e.value.code == ErrorCode.STALE_BROKER_EPOCH
    with pytest.raises(KafkaError) as e:
        _heartbeat(broker, 7, 1)
    assert e.value.code == ErrorCode.BROKER_ID_NOT_REGISTERED


def test_session_timeout_fences_and_moves_leadership_then_unfence_restores(make_broker):
    b = make_broker({"broker.session.timeout.ms": "3000"})
    clock = b.clock
    epoch = _register(b, 2, 9093)
    _heartbeat(b, 2, epoch)
    run_now(b.controller.create_topic("spread", 6, 1, {}))
    led_by_2 = [p.partition for p in b.image.topics["spread"].partitions.values()
                if p.leader == 2]
    assert len(led_by_2) == 3  # round robin over brokers 1 and 2
    epochs = {p: b.image.topics["spread"].partitions[p].leader_epoch for p in led_by_2}

    clock.advance(2000)
    _heartbeat(b, 2, epoch)   # broker 1 is this node: heartbeats keep it alive too
    _heartbeat(b, 1, b.image.brokers[1].epoch)
    clock.advance(2000)
    _heartbeat(b, 1, b.image.brokers[1].epoch)
    assert run_now(b.controller.check_sessions()) == []   # 2 s since broker 2's heartbeat
    clock.advance(1500)
    _heartbeat(b, 1, b.image.brokers[1].epoch)
    assert run_now(b.controller.check_sessions()) == [2]
    assert b.image.brokers[2].fenced
    for p in led_by_2:
        pi = b.image.topics["spread"].partitions[p]
        # RF=1: no other replica, the partition is offline. KIP-966 (Kafka 4.1): the
        # last ISR member moves to the ELR, so it may lead again when it comes back.
        assert (pi.leader, pi.isr, pi.elr) == (-1, (), (2,))
        assert pi.leader_epoch == epochs[p] + 1
    # Metadata: broker 2 is gone, its partitions are LEADER_NOT_AVAILABLE.
    md = call(b, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="spread")],
                                 allow_auto_topic_creation=False), 12)
    assert [x.node_id for x in md.brokers] == [1]
    offline = [p for p in md.topics[0].partitions if p.leader_id == -1]
    assert sorted(p.partition_index for p in offline) == sorted(led_by_2)
    assert {p.error_code for p in offline} == {ErrorCode.LEADER_NOT_AVAILABLE}
    assert all(p.offline_replicas == [2] for p in offline)

    _heartbeat(b, 2, epoch)  # it comes back
    assert not b.image.brokers[2].fenced
    for p in led_by_2:
        pi = b.image.topics["spread"].partitions[p]
        assert pi.leader == 2 and pi.leader_epoch == epochs[p] + 2


def test_controlled_shutdown_fences_at_once(broker):
    epoch = _register(broker, 2, 9093)
    _heartbeat(broker, 2, epoch)
    _, fenced, shutdown = _heartbeat(broker, 2, epoch, want_shutdown=True)
    assert fenced and shutdown and broker.image.brokers[2].fenced


def _topic_led_by(b, node_id: int, name: str = "elsewhere") -> None:
    """A topic whose only partition is led by `node_id` (registered and unfenced)."""
    epoch = _register(b, node_id, 9000 + node_id)
    _heartbeat(b, node_id, epoch)
    tid = str(uuid.uuid4())
    run_now(b.controller.quorum.append(encode_records([
        {"type": "TopicRecord", "name": name, "topic_id": tid},
        {"type": "PartitionRecord", "topic_id": tid, "partition": 0, "leader": node_id,
         "leader_epoch": 4, "replicas": [node_id], "isr": [node_id]}])))


def test_produce_to_a_partition_led_elsewhere_names_the_leader_kip_951(broker):
    _topic_led_by(broker, 3)
    batch = build_batch([(None, b"v", [])])
    resp = call(broker, produce_request("elsewhere", {0: batch}), 10)
    p = resp.responses[0].partition_responses[0]
    assert p.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (3, 4)
    assert [(e.node_id, e.host, e.port) for e in resp.node_endpoints] == [(3, "10.0.0.3", 9003)]
    # Before v10 the error alone (clients refresh their metadata).
    old = call(broker, produce_request("elsewhere", {0: batch}), 9)
    assert old.responses[0].partition_responses[0].error_code == \
        ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_fetch_from_a_partition_led_elsewhere_names_the_leader_kip_951(broker):
    _topic_led_by(broker, 3)
    tid = broker.image.topics["elsewhere"].topic_id
    resp = call(broker, fetch_request("elsewhere", {0: 0}, version=16, topic_id=tid), 16)
    p = resp.responses[0].partitions[0]
    assert p.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (3, 4)
    assert [e.node_id for e in resp.node_endpoints] == [3]
    assert ("elsewhere", 0) not in set(broker.log_manager.partitions())  # no local log


def test_find_coordinator_points_at_the_offsets_partition_leader(make_broker):
    from kafkette.protocol.messages import FindCoordinatorRequest
    b = make_broker({"offsets.topic.num.partitions": "4"})
    epoch = _register(b, 2, 9093)
    _heartbeat(b, 2, epoch)
    resp = call(b, FindCoordinatorRequest(key_type=0, coordinator_keys=[f"g{i}" for i in
                                                                         range(40)]), 4)
    nodes = {c.node_id for c in resp.coordinators}
    assert nodes == {1, 2}   # 4 partitions spread over both brokers
    for c in resp.coordinators:
        assert c.error_code == 0
        assert c.node_id == b.group_coordinator_node(c.key)
        if c.node_id == 2:
            assert (c.host, c.port) == ("10.0.0.2", 9093)


def test_fetch_checks_the_clients_leader_epoch_kip_320(broker):
    run_now(broker.controller.create_topic("epochs", 1, 1, {}))
    t = broker.image.topics["epochs"]

    def fetch_with(epoch):
        req = fetch_request("epochs", {0: 0}, version=12)
        req.topics[0].partitions[0].current_leader_epoch = epoch
        return call(broker, req, 12).responses[0].partitions[0].error_code

    assert fetch_with(-1) == 0 and fetch_with(0) == 0
    assert fetch_with(1) == ErrorCode.UNKNOWN_LEADER_EPOCH
    run_now(broker.controller.quorum.append(encode_records([
        {"type": "PartitionChangeRecord", "topic_id": str(t.topic_id), "partition": 0,
         "leader": 1, "leader_epoch": 3}])))
    assert fetch_with(1) == ErrorCode.FENCED_LEADER_EPOCH
    assert fetch_with(3) == 0


def test_group_requests_for_groups_coordinated_elsewhere(make_broker):
    """In a cluster, this node serves only the groups whose `__consumer_offsets`
    partition it leads: multi-group requests are answered per group (KIP-709
    OffsetFetch, DescribeGroups), single-group ones with NOT_COORDINATOR."""
    from kafkette.broker.cluster import ClusterMember
    from kafkette.protocol.messages import (DeleteGroupsRequest, DescribeGroupsRequest,
                                            FindCoordinatorRequest, HeartbeatRequest,
                                            LeaveGroupRequest, OffsetFetchRequest)
    b = make_broker({"offsets.topic.num.partitions": "4"})
    epoch = _register(b, 2, 9093)
    _heartbeat(b, 2, epoch)
    call(b, FindCoordinatorRequest(key_type=0, coordinator_keys=["x"]), 4)  # creates the topic
    groups = [f"g{i}" for i in range(12)]
    mine = [g for g in groups if b.group_coordinator_node(g) == 1]
    theirs = [g for g in groups if b.group_coordinator_node(g) == 2]
    assert mine and theirs
    # The cluster side of this broker, not started: no quorum traffic is needed here.
    b.cluster = ClusterMember(b, b.controller.quorum, {1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2)})

    G = OffsetFetchRequest.OffsetFetchRequestGroup
    resp = call(b, OffsetFetchRequest(groups=[G(group_id=g, topics=None) for g in groups],
                                      require_stable=False), 8)
    assert [g.group_id for g in resp.groups] == groups
    codes = {g.group_id: g.error_code for g in resp.groups}
    assert all(codes[g] == 0 for g in mine)
    assert all(codes[g] == ErrorCode.NOT_COORDINATOR for g in theirs)

    resp = call(b, DescribeGroupsRequest(groups=groups, include_authorized_operations=False), 5)
    codes = {g.group_id: g.error_code for g in resp.groups}
    assert [g.group_id for g in resp.groups] == groups
    assert all(codes[g] == 0 for g in mine)
    assert all(codes[g] == ErrorCode.NOT_COORDINATOR for g in theirs)

    hb = call(b, HeartbeatRequest(group_id=theirs[0], generation_id=1, member_id="m",
                                  group_instance_id=None), 4)
    assert hb.error_code == ErrorCode.NOT_COORDINATOR
    hb = call(b, HeartbeatRequest(group_id=mine[0], generation_id=1, member_id="m",
                                  group_instance_id=None), 4)
    assert hb.error_code == ErrorCode.UNKNOWN_MEMBER_ID  # served here: no such member

    resp = call(b, DeleteGroupsRequest(groups_names=groups), 2)
    codes = {r.group_id: r.error_code for r in resp.results}
    assert [r.group_id for r in resp.results] == groups
    assert all(codes[g] == ErrorCode.GROUP_ID_NOT_FOUND for g in mine)
    assert all(codes[g] == ErrorCode.NOT_COORDINATOR for g in theirs)
    L = LeaveGroupRequest.MemberIdentity
    resp = call(b, LeaveGroupRequest(group_id=theirs[0], members=[L(member_id="m")]), 3)
    assert (resp.error_code, resp.members) == (ErrorCode.NOT_COORDINATOR, [])


def test_a_broker_asking_to_be_fenced_is_fenced_and_its_leaderships_move(broker):
    # KIP-112 in a cluster: a broker whose every log dir is offline asks to be fenced
    # (ClusterMember.wants_fence), as KRaft's controller fences a broker at its request.
    epoch = _register(broker, 2, 9093)
    _heartbeat(broker, 2, epoch)
    run_now(broker.controller.create_topic("spread", 4, 1, {}))
    led_by_2 = [p.partition for p in broker.image.topics["spread"].partitions.values()
                if p.leader == 2]
    assert led_by_2
    caught_up, fenced, shutdown = _heartbeat(broker, 2, epoch, want_fence=True)
    assert fenced and not shutdown and broker.image.brokers[2].fenced
    assert all(broker.image.topics["spread"].partitions[p].leader == -1 for p in led_by_2)
    _heartbeat(broker, 2, epoch, want_fence=True)   # stays fenced while it asks
    assert broker.image.brokers[2].fenced
    _heartbeat(broker, 2, epoch)                     # a restarted, healthy broker
    assert not broker.image.brokers[2].fenced


def test_a_cluster_broker_wants_fence_only_when_every_log_dir_is_offline(tmp_path):
    import types

    from kafkette.broker.cluster import ClusterMember
    from kafkette.log.log_manager import LogManager
    lm = LogManager([tmp_path / "a", tmp_path / "b"])
    try:
        member = types.SimpleNamespace(broker=types.SimpleNamespace(log_manager=lm))
        wants = lambda: ClusterMember.wants_fence(member)  # noqa: E731
        assert not wants()
        lm.failure_channel.mark_offline(lm.log_dirs[0], OSError(5, "EIO"), "test")
        assert not wants()
        lm.failure_channel.mark_offline(lm.log_dirs[1], OSError(5, "EIO"), "test")
        assert wants()
    finally:
        lm.close_all()


def test_group_requests_are_authorized_before_the_coordinator_is_looked_for(make_broker):
    """As KafkaApis: a client without the group's ACL gets GROUP_AUTHORIZATION_FAILED
    (TRANSACTIONAL_ID_... for TxnOffsetCommit's id) from any node, not NOT_COORDINATOR,
    so it learns nothing about where the group lives."""
    from test_handlers_acls import AUTHZ, acl, call_as, grant
    from kafkette.broker.cluster import ClusterMember
    from kafkette.controller.acls import GROUP, READ, TRANSACTIONAL_ID, WRITE
    from kafkette.protocol.messages import (DescribeGroupsRequest, FindCoordinatorRequest,
                                            HeartbeatRequest, JoinGroupRequest,
                                            TxnOffsetCommitRequest)
    b = make_broker({**AUTHZ, "offsets.topic.num.partitions": "4"})
    epoch = _register(b, 2, 9093)
    _heartbeat(b, 2, epoch)
    call_as(b, "User:admin", FindCoordinatorRequest(key_type=0, coordinator_keys=["x"]), 4)
    groups = [f"g{i}" for i in range(12)]
    mine = [g for g in groups if b.group_coordinator_node(g) == 1]
    theirs = [g for g in groups if b.group_coordinator_node(g) == 2]
    assert mine and theirs
    b.cluster = ClusterMember(b, b.controller.quorum, {1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2)})
    alice = "User:alice"

    def heartbeat(group):
        return call_as(b, alice, HeartbeatRequest(group_id=group, generation_id=1,
                                                  member_id="m", group_instance_id=None),
                       4).error_code
    assert heartbeat(theirs[0]) == ErrorCode.GROUP_AUTHORIZATION_FAILED
    P = JoinGroupRequest.JoinGroupRequestProtocol
    join = call_as(b, alice, JoinGroupRequest(
        group_id=theirs[0], session_timeout_ms=10000, rebalance_timeout_ms=10000,
        member_id="", group_instance_id=None, protocol_type="consumer",
        protocols=[P(name="range", metadata=b"")]), 5)
    assert join.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    # Per group: authorized ones elsewhere NOT_COORDINATOR, the others refused.
    grant(b, acl(GROUP, theirs[0], alice, READ))
    assert heartbeat(theirs[0]) == ErrorCode.NOT_COORDINATOR
    resp = call_as(b, alice, DescribeGroupsRequest(groups=theirs[:2],
                                                   include_authorized_operations=False), 5)
    assert [g.error_code for g in resp.groups] == [ErrorCode.NOT_COORDINATOR,
                                                   ErrorCode.GROUP_AUTHORIZATION_FAILED]
    TT = TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic
    TP = TT.TxnOffsetCommitRequestPartition

    def txn_commit():
        resp = call_as(b, alice, TxnOffsetCommitRequest(
            transactional_id="tx", group_id=theirs[0], producer_id=1, producer_epoch=0,
            generation_id=-1, member_id="", group_instance_id=None, topics=[TT(
                name="t", partitions=[TP(partition_index=0, committed_offset=1,
                                         committed_leader_epoch=-1,
                                         committed_metadata="")])]), 3)
        return [p.error_code for t in resp.topics for p in t.partitions]
    assert txn_commit() == [ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED]
    grant(b, acl(TRANSACTIONAL_ID, "tx", alice, WRITE))
    assert txn_commit() == [ErrorCode.NOT_COORDINATOR]


def _register_as(b, node_id: int, incarnation: str):
    return run_now(b.controller.register_broker(node_id, "10.0.0.%d" % node_id, 9093, None,
                                                None, incarnation_id=incarnation))


def test_a_second_incarnation_is_refused_while_the_first_has_a_session(make_broker):
    """KRaft's registerBroker: another incarnation id for a broker id whose session is
    alive gets DUPLICATE_BROKER_REGISTRATION, and the registered broker keeps its
    epoch, its unfenced state and its leaderships; once the session expires (fenced),
    the new incarnation registers. The same incarnation may register again."""
    b = make_broker({"broker.session.timeout.ms": "3000"})
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    epoch = _register_as(b, 2, first)
    _heartbeat(b, 2, epoch)
    run_now(b.controller.create_topic("spread", 4, 1, {}))
    led = {p.partition for p in b.image.topics["spread"].partitions.values() if p.leader == 2}
    assert led
    b.clock.advance(2000)
    with pytest.raises(KafkaError) as e:
        _register_as(b, 2, second)
    assert e.value.code == ErrorCode.DUPLICATE_BROKER_REGISTRATION
    assert b.image.brokers[2].epoch == epoch and not b.image.brokers[2].fenced
    assert led == {p.partition for p in b.image.topics["spread"].partitions.values()
                   if p.leader == 2}
    _heartbeat(b, 2, epoch)   # the first incarnation is unaffected
    # A retried registration of the registered incarnation is accepted.
    epoch = _register_as(b, 2, first)
    _heartbeat(b, 2, epoch)
    # The session expires: fenced, and the new incarnation gets in.
    b.clock.advance(3001)
    assert run_now(b.controller.check_sessions()) == [2]
    new_epoch = _register_as(b, 2, second)
    assert new_epoch > epoch and b.image.brokers[2].incarnation_id == second


def test_a_fenced_broker_may_register_a_new_incarnation_at_once(broker):
    """A controlled shutdown fences the broker: its next start registers without
    waiting for a session to expire."""
    epoch = _register_as(broker, 2, str(uuid.uuid4()))
    _heartbeat(broker, 2, epoch)
    _heartbeat(broker, 2, epoch, want_shutdown=True)
    assert broker.image.brokers[2].fenced
    assert _register_as(broker, 2, str(uuid.uuid4())) > epoch
