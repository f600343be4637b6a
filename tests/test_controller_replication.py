"""The controller's replication control, as KRaft's ReplicationControlManager:
rack-aware placement and manual assignments, AlterPartition (KIP-497/841/903),
elections when brokers are fenced and come back (unclean on/off, KIP-966 ELR),
ElectLeaders (KIP-460) and the preferred-leader balancer.

Driven on one node with a LocalQuorum and a manual clock (the same controller code
runs on the Raft quorum of a cluster); other brokers are registered and heartbeat
through the controller's API, as BrokerRegistration/BrokerHeartbeat would."""
from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest

from handler_harness import broker, call, make_broker  # noqa: F401
from kafkette.broker.cluster import ClusterMember, forwarded_error_response
from kafkette.broker.registry import load_handlers
from kafkette.controller.controller import AlterPartitionItem
from kafkette.controller.metadata_image import (
    RECOVERED,
    RECOVERING,
    MetadataImage,
    apply_records,
    image_to_records,
)
from kafkette.controller.placement import place_replicas, rack_ring
from kafkette.controller.quorum import encode_records, run_now
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import (
    AlterPartitionRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    ElectLeadersRequest,
)
from kafkette.protocol.primitives import Reader, Writer

E = ErrorCode


# -- helpers --------------------------------------------------------------------------

def add_broker(b, node_id: int, rack: str | None = None) -> int:
    """Register `node_id` and unfence it; returns its broker epoch."""
    epoch = run_now(b.controller.register_broker(node_id, f"10.0.0.{node_id}", 9000 + node_id,
                                                 rack, None))
    unfence(b, node_id)
    return epoch


def epoch_of(b, node_id: int) -> int:
    return b.image.brokers[node_id].epoch


def unfence(b, node_id: int) -> None:
    run_now(b.controller.broker_heartbeat(node_id, epoch_of(b, node_id), b.image.offset,
                                          False, False))
    assert not b.image.brokers[node_id].fenced


def fence(b, node_id: int) -> None:
    """Controlled shutdown: the controller fences the broker at once."""
    run_now(b.controller.broker_heartbeat(node_id, epoch_of(b, node_id), b.image.offset,
                                          False, True))
    assert b.image.brokers[node_id].fenced


def topic(b, name: str, *replica_lists, configs: dict | None = None):
    """A topic with one partition per replica list (a manual assignment)."""
    run_now(b.controller.create_topic(name, -1, -1, dict(configs or {}),
                                      assignments=list(enumerate(replica_lists))))
    return b.image.topics[name]


def part(b, name: str, index: int = 0):
    return b.image.topics[name].partitions[index]


def set_partition(b, name: str, index: int = 0, **fields) -> None:
    """Write a PartitionChangeRecord directly (a state the test needs)."""
    t = b.image.topics[name]
    run_now(b.controller.quorum.append(encode_records([
        {"type": "PartitionChangeRecord", "topic_id": str(t.topic_id), "partition": index,
         **fields}])))


def alter(b, broker_id: int, name: str, new_isr, index: int = 0, *, by_name=False,
          leader_epoch=None, partition_epoch=None, broker_epoch=None,
          recovery=RECOVERED):
    p = part(b, name, index)
    t = b.image.topics[name]
    return run_now(b.controller.alter_partition(
        broker_id, epoch_of(b, broker_id) if broker_epoch is None else broker_epoch,
        name if by_name else t.topic_id, index,
        p.leader_epoch if leader_epoch is None else leader_epoch,
        p.partition_epoch if partition_epoch is None else partition_epoch,
        new_isr, recovery))


@pytest.fixture
def three(make_broker):
    """Node 1 (this broker) and brokers 2 and 3, all live."""
    b = make_broker()
    add_broker(b, 2)
    add_broker(b, 3)
    return b


# -- placement --------------------------------------------------------------------------

def test_rack_ring_interleaves_racks():
    ring = rack_ring([(5, "b"), (1, "a"), (2, "a"), (6, None), (3, "b"), (4, "a")])
    assert ring == [(6, None), (1, "a"), (3, "b"), (2, "a"), (5, "b"), (4, "a")]


def test_placement_puts_replicas_on_distinct_racks_and_spreads_leaders(make_broker):
    b = make_broker({"broker.rack": "r1"})
    for node_id, rack in [(2, "r1"), (3, "r2"), (4, "r2"), (5, "r3"), (6, "r3")]:
        add_broker(b, node_id, rack)
    racks = {n: x.rack for n, x in b.image.brokers.items()}
    run_now(b.controller.create_topic("striped", 12, 3, {}))
    parts = b.image.topics["striped"].partitions.values()
    for p in parts:
        assert len(set(p.replicas)) == 3
        assert {racks[r] for r in p.replicas} == {"r1", "r2", "r3"}, p
        assert p.leader == p.replicas[0] and p.isr == p.replicas
    assert Counter(p.leader for p in parts) == {n: 2 for n in range(1, 7)}
    # Each broker's two partitions have different followers: a failure spreads its
    # leaderships.
    assert len({p.replicas for p in parts}) == 12


def test_placement_with_fewer_racks_than_replicas_uses_every_rack():
    live = [(1, "a"), (2, "a"), (3, "a"), (4, "b")]
    placements = place_replicas(live, 8, 3, random.Random(7))
    for replicas in placements:
        assert len(set(replicas)) == 3 and 4 in replicas   # b's only broker every time
    assert Counter(r[0] for r in placements) == {1: 2, 2: 2, 3: 2, 4: 2}


class _Draws:
    """A stand-in for random.Random that returns given draws (start, shift)."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def randrange(self, n):
        return self.draws.pop(0) % n


@pytest.mark.parametrize("live, count, rf", [
    ([(1, "r1"), (2, "r1"), (3, "r2"), (4, "r2"), (5, "r3"), (6, "r3")], 12, 3),
    ([(1, "a"), (2, "a"), (3, "a"), (4, "b")], 8, 3),
    ([(1, None), (2, None), (3, None)], 6, 2),
])
def test_placement_properties_whatever_the_random_draws(live, count, rf):
    racks = dict(live)
    n = len(live)
    for start in range(n):
        for shift in range(n):
            placements = place_replicas(live, count, rf, _Draws(start, shift))
            for replicas in placements:
                assert len(set(replicas)) == rf
                assert len({racks[r] for r in replicas}) == min(rf, len(set(racks.values())))
            leads = Counter(r[0] for r in placements)
            assert set(leads) == set(racks) and max(leads.values()) - min(leads.values()) <= 1
            followers = {}
            for r in placements:
                followers.setdefault(r[0], set()).add(tuple(r[1:]))
            assert all(len(f) == 2 for f in followers.values()), (start, shift, placements)


def test_placement_has_a_random_start(make_broker):
    b = make_broker()
    add_broker(b, 2)
    add_broker(b, 3)
    for i in range(60):
        run_now(b.controller.create_topic(f"small{i}", 1, 1, {}))
    leaders = {b.image.topics[f"small{i}"].partitions[0].leader for i in range(60)}
    assert leaders == {1, 2, 3}


def test_placement_skips_fenced_brokers_and_keeps_the_message(three):
    fence(three, 3)
    run_now(three.controller.create_topic("live-only", 6, 2, {}))
    assert all(3 not in p.replicas
               for p in three.image.topics["live-only"].partitions.values())
    with pytest.raises(KafkaError) as e:
        run_now(three.controller.create_topic("too-wide", 1, 3, {}))
    assert e.value.code == E.INVALID_REPLICATION_FACTOR
    assert "only 2 broker(s) are registered" in e.value.message


CT = CreateTopicsRequest.CreatableTopic
CA = CreateTopicsRequest.CreatableTopic.CreatableReplicaAssignment


def create(b, topic_req, version=7):
    resp = call(b, CreateTopicsRequest(topics=[topic_req], timeout_ms=1000,
                                       validate_only=False), version)
    return resp.topics[0]


def manual(name, *lists, partitions=-1, rf=-1, indexes=None):
    indexes = indexes if indexes is not None else range(len(lists))
    return CT(name=name, num_partitions=partitions, replication_factor=rf, configs=[],
              assignments=[CA(partition_index=i, broker_ids=list(l))
                           for i, l in zip(indexes, lists)])


def test_manual_assignment_is_kept_in_order(three):
    r = create(three, manual("m", [3, 1], [2, 3]))
    assert (r.error_code, r.num_partitions, r.replication_factor) == (0, 2, 2)
    assert [(p.replicas, p.leader, p.isr) for p in three.image.topics["m"].partitions.values()
            ] == [((3, 1), 3, (3, 1)), ((2, 3), 2, (2, 3))]


def test_manual_assignment_with_a_fenced_broker_leaves_it_out_of_the_isr(three):
    fence(three, 3)
    assert create(three, manual("f", [3, 2])).error_code == 0
    p = part(three, "f")
    assert (p.replicas, p.leader, p.isr) == ((3, 2), 2, (2,))
    r = create(three, manual("all-fenced", [3]))
    assert r.error_code == E.INVALID_REPLICA_ASSIGNMENT and "fenced" in r.error_message


@pytest.mark.parametrize("request_topic, fragment", [
    (manual("dup", [1, 1]), "more than once"),
    (manual("unknown", [1, 7]), "broker 7, but no such broker is registered"),
    (manual("sizes", [1, 2], [3]), "not consistent with previous partitions"),
    (manual("empty", []), "empty replica list"),
    (manual("gap", [1], [2], indexes=[0, 2]), "consecutive 0-based"),
    (manual("twice", [1], [2], indexes=[0, 0]), "multiple manual partition assignments"),
])
def test_bad_manual_assignment(three, request_topic, fragment):
    r = create(three, request_topic)
    assert r.error_code == E.INVALID_REPLICA_ASSIGNMENT
    assert fragment in r.error_message
    assert request_topic.name not in three.image.topics


@pytest.mark.parametrize("partitions, rf", [(1, -1), (-1, 1)])
def test_manual_assignment_needs_minus_one_counts(three, partitions, rf):
    r = create(three, manual("counts", [1], partitions=partitions, rf=rf))
    assert r.error_code == E.INVALID_REQUEST
    assert "counts" not in three.image.topics


def test_default_replication_factor_is_used_for_minus_one(make_broker):
    b = make_broker({"default.replication.factor": "2"})
    add_broker(b, 2)
    r = create(b, CT(name="dflt", num_partitions=3, replication_factor=-1, configs=[],
                     assignments=[]))
    assert (r.error_code, r.replication_factor) == (0, 2)
    assert {len(p.replicas) for p in b.image.topics["dflt"].partitions.values()} == {2}


CPT = CreatePartitionsRequest.CreatePartitionsTopic
CPA = CreatePartitionsRequest.CreatePartitionsTopic.CreatePartitionsAssignment


def grow(b, name, count, assignments):
    resp = call(b, CreatePartitionsRequest(topics=[CPT(
        name=name, count=count,
        assignments=None if assignments is None else [CPA(broker_ids=a) for a in assignments])],
        timeout_ms=1000, validate_only=False), 3)
    return resp.results[0]


def test_create_partitions_honours_assignments(three):
    topic(three, "g", [1, 2])
    assert grow(three, "g", 3, [[3, 1], [2, 3]]).error_code == 0
    assert [part(three, "g", i).replicas for i in (1, 2)] == [(3, 1), (2, 3)]
    assert part(three, "g", 1).leader == 3


@pytest.mark.parametrize("assignments, fragment", [
    ([[3, 1]], "2 additional partition(s), but only 1 assignment(s)"),
    ([[3, 1], [2]], "not consistent with previous partitions, which have 2"),
    ([[3, 1], [2, 9]], "broker 9, but no such broker"),
    ([[3, 3], [1, 2]], "more than once"),
])
def test_create_partitions_bad_assignments(three, assignments, fragment):
    topic(three, "g", [1, 2])
    r = grow(three, "g", 3, assignments)
    assert r.error_code == E.INVALID_REPLICA_ASSIGNMENT and fragment in r.error_message
    assert len(three.image.topics["g"].partitions) == 1


def test_offsets_topic_replication_factor_is_capped_with_a_warning(make_broker, capsys):
    from kafkette.broker.group_offsets import ensure_offsets_topic
    b = make_broker()
    add_broker(b, 2)
    assert b.config["offsets.topic.replication.factor"] == 3
    capsys.readouterr()
    assert ensure_offsets_topic(b)
    out = capsys.readouterr()
    assert {len(p.replicas) for p in b.image.topics["__consumer_offsets"].partitions.values()
            } == {2}
    lines = [l for l in (out.out + out.err).splitlines() if "replication factor capped" in l]
    assert len(lines) == 1 and "3" in lines[0] and "2" in lines[0]


# -- AlterPartition ---------------------------------------------------------------------

def test_alter_partition_shrinks_and_expands_the_isr(three):
    topic(three, "ap", [1, 2, 3])
    before = part(three, "ap")
    r = alter(three, 1, "ap", [1, 2])
    assert r.error == E.NONE
    after = part(three, "ap")
    assert after.isr == (1, 2) and after.leader == 1
    assert after.leader_epoch == before.leader_epoch   # ISR-only change: no leader bump
    assert after.partition_epoch == before.partition_epoch + 1
    assert (r.leader_id, r.leader_epoch, r.isr, r.partition_epoch) == (
        1, after.leader_epoch, (1, 2), after.partition_epoch)
    r = alter(three, 1, "ap", [(1, epoch_of(three, 1)), (2, -1), (3, epoch_of(three, 3))])
    assert r.error == E.NONE and part(three, "ap").isr == (1, 2, 3)


def test_alter_partition_that_changes_nothing_commits_nothing(three):
    topic(three, "ap", [1, 2, 3])
    offset = three.image.offset
    r = alter(three, 1, "ap", [1, 2, 3])
    assert r.error == E.NONE and r.isr == (1, 2, 3)
    assert three.image.offset == offset


def test_alter_partition_with_a_stale_or_unknown_broker_epoch(three):
    topic(three, "ap", [1, 2, 3])
    for broker_id, broker_epoch in ((1, epoch_of(three, 1) + 1), (9, 0)):
        with pytest.raises(KafkaError) as e:
            alter(three, broker_id, "ap", [1, 2], broker_epoch=broker_epoch)
        assert e.value.code == E.STALE_BROKER_EPOCH
    assert part(three, "ap").isr == (1, 2, 3)


def test_alter_partition_unknown_topic_or_partition(three):
    topic(three, "ap", [1, 2, 3])
    items = [AlterPartitionItem(uuid.uuid4(), 0, 0, 0, [1]),
             AlterPartitionItem("nope", 0, 0, 0, [1]),
             AlterPartitionItem(three.image.topics["ap"].topic_id, 5, 0, 0, [1])]
    results = run_now(three.controller.alter_partitions(1, epoch_of(three, 1), items))
    assert [r.error for r in results] == [E.UNKNOWN_TOPIC_ID, E.UNKNOWN_TOPIC_OR_PARTITION,
                                          E.UNKNOWN_TOPIC_OR_PARTITION]


def test_alter_partition_epoch_checks(three):
    topic(three, "ap", [1, 2, 3])
    p = part(three, "ap")
    # Epochs above the controller's: the sender saw a newer controller.
    assert alter(three, 1, "ap", [1, 2], leader_epoch=p.leader_epoch + 1).error == \
        E.NOT_CONTROLLER
    assert alter(three, 1, "ap", [1, 2], partition_epoch=p.partition_epoch + 1).error == \
        E.NOT_CONTROLLER
    assert alter(three, 1, "ap", [1, 2], partition_epoch=p.partition_epoch - 1).error == \
        E.INVALID_UPDATE_VERSION
    fence(three, 1)   # broker 2 leads now, at a higher leader epoch
    assert part(three, "ap").leader == 2
    assert alter(three, 2, "ap", [2], leader_epoch=p.leader_epoch).error == \
        E.FENCED_LEADER_EPOCH
    assert part(three, "ap").isr == (2, 3)


def test_alter_partition_from_a_follower_is_an_invalid_request(three):
    # KRaft answers INVALID_REQUEST (not NOT_LEADER_OR_FOLLOWER) to a sender that does
    # not lead at the current leader epoch.
    topic(three, "ap", [1, 2, 3])
    assert alter(three, 2, "ap", [2, 3]).error == E.INVALID_REQUEST


@pytest.mark.parametrize("new_isr", [[], [2, 3], [1, 4], [1, 2, 2]])
def test_alter_partition_bad_isr_is_an_invalid_request(make_broker, new_isr):
    b = make_broker()
    for n in (2, 3, 4):
        add_broker(b, n)
    topic(b, "ap", [1, 2, 3])
    assert alter(b, 1, "ap", new_isr).error == E.INVALID_REQUEST
    assert part(b, "ap").isr == (1, 2, 3)


def test_alter_partition_ineligible_replicas(three):
    topic(three, "ap", [1, 2, 3])
    assert alter(three, 1, "ap", [1, 2]).error == E.NONE
    fence(three, 3)
    assert alter(three, 1, "ap", [1, 2, 3]).error == E.INELIGIBLE_REPLICA
    # v0-1 (topic names) answer OPERATION_NOT_ATTEMPTED instead.
    assert alter(three, 1, "ap", [1, 2, 3], by_name=True).error == \
        E.OPERATION_NOT_ATTEMPTED
    unfence(three, 3)
    # v3 (KIP-903): a member of another broker epoch (it restarted) is ineligible.
    stale = [(1, -1), (2, -1), (3, epoch_of(three, 3) - 1)]
    assert alter(three, 1, "ap", stale).error == E.INELIGIBLE_REPLICA
    assert part(three, "ap").isr == (1, 2)
    assert alter(three, 1, "ap", [(1, -1), (2, -1), (3, epoch_of(three, 3))]).error == E.NONE


def test_alter_partition_leader_recovery_state_kip_704(three):
    topic(three, "ap", [1, 2, 3])
    assert alter(three, 1, "ap", [1], recovery=RECOVERING).error == E.INVALID_REQUEST
    set_partition(three, "ap", isr=[1], leader_recovery_state=RECOVERING)
    assert alter(three, 1, "ap", [1, 2], recovery=RECOVERING).error == E.INVALID_REQUEST
    r = alter(three, 1, "ap", [1], recovery=RECOVERED)
    assert (r.error, r.leader_recovery_state) == (E.NONE, RECOVERED)
    assert part(three, "ap").leader_recovery_state == RECOVERED


def test_alter_partition_below_min_isr_fills_the_elr_kip_966(three):
    topic(three, "ap", [1, 2, 3], configs={"min.insync.replicas": "2"})
    assert alter(three, 1, "ap", [1, 2]).error == E.NONE
    assert part(three, "ap").elr == ()          # 2 >= min ISR: 3 simply left
    assert alter(three, 1, "ap", [1]).error == E.NONE
    assert (part(three, "ap").isr, part(three, "ap").elr) == ((1,), (2,))
    assert alter(three, 1, "ap", [1, 3]).error == E.NONE
    assert (part(three, "ap").isr, part(three, "ap").elr) == ((1, 3), ())


def test_alter_partition_on_the_controller_listener(three):
    """The wire handler of the controller listener, at every version, with the
    request encoded and decoded as a partition leader would send it."""
    topic(three, "ap", [1, 2, 3])
    member = ClusterMember(three, three.controller.quorum, {1: ("127.0.0.1", 1)})
    T = AlterPartitionRequest.TopicData
    P = AlterPartitionRequest.TopicData.PartitionData
    t = three.image.topics["ap"]
    for version, isr in ((0, [1, 2, 3]), (1, [1, 2]), (2, [1, 2, 3]), (3, [1, 2])):
        p = part(three, "ap")
        pd = P(partition_index=0, leader_epoch=p.leader_epoch, leader_recovery_state=0,
               partition_epoch=p.partition_epoch)
        if version >= 3:
            pd.new_isr_with_epochs = [P.BrokerState(broker_id=n, broker_epoch=-1) for n in isr]
        else:
            pd.new_isr = isr
        ghost = P(partition_index=7, leader_epoch=0, new_isr=[1], new_isr_with_epochs=[],
                  partition_epoch=0)
        req = AlterPartitionRequest(broker_id=1, broker_epoch=epoch_of(three, 1), topics=[
            T(topic_name="ap", topic_id=t.topic_id, partitions=[pd, ghost])])
        w = Writer()
        req.write(w, version)
        decoded = AlterPartitionRequest.read(Reader(memoryview(w.getvalue())), version)
        resp = run_now(member._on_alter_partition(decoded, version, None))
        w = Writer()
        resp.write(w, version)   # the response encodes at this version
        assert resp.error_code == 0
        (rt,) = resp.topics
        ok, missing = rt.partitions
        assert (ok.error_code, ok.leader_id, ok.isr) == (0, 1, isr), version
        assert ok.partition_epoch == part(three, "ap").partition_epoch
        assert missing.error_code == E.UNKNOWN_TOPIC_OR_PARTITION
    stale = AlterPartitionRequest(broker_id=1, broker_epoch=-5, topics=[])
    assert run_now(member._on_alter_partition(stale, 2, None)).error_code == \
        E.STALE_BROKER_EPOCH


# -- elections on fencing ---------------------------------------------------------------

def test_fenced_leader_is_replaced_by_the_next_live_isr_member(three):
    topic(three, "e", [2, 3, 1])
    p0 = part(three, "e")
    fence(three, 2)
    p = part(three, "e")
    assert (p.leader, p.isr, p.elr) == (3, (3, 1), ())
    assert p.leader_epoch == p0.leader_epoch + 1


def test_fenced_follower_leaves_the_isr_without_a_leader_epoch_bump(three):
    topic(three, "e", [2, 3, 1])
    p0 = part(three, "e")
    fence(three, 3)
    p = part(three, "e")
    assert (p.leader, p.isr, p.leader_epoch) == (2, (2, 1), p0.leader_epoch)
    assert p.partition_epoch == p0.partition_epoch + 1
    # Coming back does not put it in the ISR: only its leader's AlterPartition does.
    unfence(three, 3)
    assert part(three, "e").isr == (2, 1)


def test_elr_keeps_acknowledged_writes_safe_kip_966(make_broker):
    """min.insync.replicas=2: replicas that leave the ISR while it is below min ISR
    move to the ELR and may lead; one that left while the ISR was big enough (2,
    which may lack writes acknowledged since) never leads, even as the only live
    replica."""
    b = make_broker()
    add_broker(b, 2)
    add_broker(b, 3)
    topic(b, "elr", [2, 3, 1], configs={"min.insync.replicas": "2"})
    fence(b, 2)
    assert (part(b, "elr").leader, part(b, "elr").isr, part(b, "elr").elr) == (3, (3, 1), ())
    fence(b, 3)
    assert (part(b, "elr").leader, part(b, "elr").isr, part(b, "elr").elr) == (1, (1,), (3,))
    fence(b, 1)
    p = part(b, "elr")
    assert (p.leader, p.isr, p.elr, p.last_known_elr) == (-1, (), (3, 1), (1,))
    unfence(b, 2)
    assert part(b, "elr").leader == -1            # 2 is not eligible
    epoch = part(b, "elr").leader_epoch
    unfence(b, 3)
    p = part(b, "elr")
    assert (p.leader, p.isr, p.elr, p.last_known_elr) == (3, (3,), (1,), ())
    assert (p.leader_epoch, p.leader_recovery_state) == (epoch + 1, RECOVERED)


def test_without_elr_the_last_isr_member_stays_and_leads_again(three):
    three.controller.elr_enabled = False   # Kafka before 4.0 / ELR feature off
    topic(three, "old", [2])
    fence(three, 2)
    p = part(three, "old")
    assert (p.leader, p.isr, p.elr) == (-1, (2,), ())
    unfence(three, 2)
    assert (part(three, "old").leader, part(three, "old").isr) == (2, (2,))


def test_unclean_election_off_keeps_the_partition_offline(three):
    topic(three, "u", [2, 3])
    assert alter(three, 2, "u", [2]).error == E.NONE   # 3 fell behind
    fence(three, 2)
    p = part(three, "u")
    assert (p.leader, p.isr, p.elr) == (-1, (), (2,))   # 3 is live but not eligible


def test_unclean_election_on_elects_a_live_out_of_sync_replica(three):
    topic(three, "u", [2, 3], configs={"unclean.leader.election.enable": "true"})
    assert alter(three, 2, "u", [2]).error == E.NONE
    epoch = part(three, "u").leader_epoch
    fence(three, 2)
    p = part(three, "u")
    assert (p.leader, p.isr, p.elr, p.leader_recovery_state) == (3, (3,), (), RECOVERING)
    assert p.leader_epoch == epoch + 1


def test_unclean_election_when_an_out_of_sync_replica_comes_back(three):
    topic(three, "u", [2, 3], configs={"unclean.leader.election.enable": "true"})
    assert alter(three, 2, "u", [2]).error == E.NONE
    fence(three, 3)
    fence(three, 2)
    assert part(three, "u").leader == -1
    unfence(three, 3)
    p = part(three, "u")
    assert (p.leader, p.isr, p.leader_recovery_state) == (3, (3,), RECOVERING)


def test_unclean_leader_election_broker_default(make_broker):
    b = make_broker({"unclean.leader.election.enable": "true"})
    add_broker(b, 2)
    add_broker(b, 3)
    topic(b, "u", [2, 3])
    assert alter(b, 2, "u", [2]).error == E.NONE
    fence(b, 2)
    assert part(b, "u").leader == 3


def test_unclean_shutdown_leaves_the_elr_then_last_known_leader(three):
    topic(three, "us", [2])
    fence(three, 2)
    assert (part(three, "us").elr, part(three, "us").last_known_elr) == ((2,), (2,))
    # It registers again saying it did not shut down cleanly: it may have lost data.
    run_now(three.controller.register_broker(2, "10.0.0.2", 9002, None, None,
                                             previous_broker_epoch=-1))
    assert (part(three, "us").isr, part(three, "us").elr) == ((), ())
    unfence(three, 2)
    p = part(three, "us")   # the last known leader, as an unclean election
    assert (p.leader, p.isr, p.last_known_elr, p.leader_recovery_state) == (
        2, (2,), (), RECOVERING)


def test_clean_restart_keeps_the_elr(three):
    topic(three, "cs", [2])
    fence(three, 2)
    run_now(three.controller.register_broker(2, "10.0.0.2", 9002, None, None,
                                             previous_broker_epoch=epoch_of(three, 2)))
    assert part(three, "cs").elr == (2,)
    unfence(three, 2)
    p = part(three, "cs")
    assert (p.leader, p.isr, p.elr, p.leader_recovery_state) == (2, (2,), (), RECOVERED)


def test_min_insync_replicas_the_isr_reaches_clears_the_elr(three):
    """A lower min.insync.replicas lets the high watermark pass the ELR members."""
    topic(three, "mi", [2, 3, 1], configs={"min.insync.replicas": "3"})
    fence(three, 3)
    assert part(three, "mi").elr == (3,)
    run_now(three.controller.alter_topic_configs("mi", {"min.insync.replicas": "2"}))
    assert (part(three, "mi").isr, part(three, "mi").elr) == ((2, 1), ())


def test_min_insync_replicas_the_isr_stays_below_keeps_the_elr(three):
    topic(three, "mi", [2, 3, 1], configs={"min.insync.replicas": "3"})
    topic(three, "one", [2], configs={"min.insync.replicas": "3"})
    fence(three, 3)
    fence(three, 2)   # "one" is leaderless, with its ELR
    assert (part(three, "mi").elr, part(three, "one").elr) == ((2, 3), (2,))
    for name in ("mi", "one"):
        run_now(three.controller.alter_topic_configs(name, {"min.insync.replicas": "2"}))
    assert (part(three, "mi").elr, part(three, "one").elr) == ((2, 3), (2,))
    unfence(three, 2)
    assert part(three, "one").leader == 2


def test_cluster_default_min_insync_replicas_change_clears_the_elr(three):
    topic(three, "dm", [2, 3, 1])
    topic(three, "own", [2, 3, 1], configs={"min.insync.replicas": "3"})
    run_now(three.controller.alter_broker_configs("", {"min.insync.replicas": "3"}))
    fence(three, 3)
    assert (part(three, "dm").elr, part(three, "own").elr) == ((3,), (3,))
    run_now(three.controller.alter_broker_configs("", {"min.insync.replicas": "2"}))
    # The topic that sets its own min.insync.replicas keeps its ELR.
    assert (part(three, "dm").elr, part(three, "own").elr) == ((), (3,))


def test_elr_survives_a_restart_and_a_snapshot(make_broker):
    b = make_broker()
    add_broker(b, 2)
    topic(b, "keep", [2])
    fence(b, 2)
    snap = apply_records(MetadataImage(cluster_id="", controller_id=1),
                         image_to_records(b.image), b.image.offset)
    assert snap.topics["keep"].partitions[0] == part(b, "keep")
    make_broker.close(b)
    again = make_broker()
    p = part(again, "keep")
    assert (p.leader, p.isr, p.elr, p.last_known_elr) == (-1, (), (2,), (2,))


# -- ElectLeaders ---------------------------------------------------------------------

def elect(b, election_type, topics, version=2):
    TP = ElectLeadersRequest.TopicPartitions
    req = ElectLeadersRequest(election_type=election_type, timeout_ms=1000,
                              topic_partitions=None if topics is None else
                              [TP(topic=t, partitions=ps) for t, ps in topics.items()])
    return call(b, req, version)


def codes(resp):
    return {(r.topic, p.partition_id): p.error_code
            for r in resp.replica_election_results for p in r.partition_result}


def test_preferred_election(three):
    topic(three, "pe", [2, 1])
    fence(three, 2)
    unfence(three, 2)
    assert part(three, "pe").leader == 1 and part(three, "pe").isr == (1,)
    # 2 is live but not in the ISR yet.
    assert codes(elect(three, 0, {"pe": [0]})) == {("pe", 0): E.PREFERRED_LEADER_NOT_AVAILABLE}
    assert alter(three, 1, "pe", [1, 2]).error == E.NONE
    epoch = part(three, "pe").leader_epoch
    resp = elect(three, 0, {"pe": [0]})
    assert resp.error_code == 0 and codes(resp) == {("pe", 0): E.NONE}
    assert (part(three, "pe").leader, part(three, "pe").leader_epoch) == (2, epoch + 1)
    assert codes(elect(three, 0, {"pe": [0]})) == {("pe", 0): E.ELECTION_NOT_NEEDED}


def test_preferred_election_v0_has_no_election_type(three):
    topic(three, "pe", [2, 1])
    set_partition(three, "pe", leader=1, leader_epoch=5)
    assert codes(elect(three, 0, {"pe": [0]}, version=0)) == {("pe", 0): E.NONE}
    assert part(three, "pe").leader == 2


def test_unclean_election(three):
    topic(three, "ue", [2, 3], [2, 3])
    topic(three, "dead", [2])
    assert alter(three, 2, "ue", [2]).error == E.NONE
    fence(three, 2)
    fence(three, 3)
    unfence(three, 3)
    assert part(three, "ue", 0).leader == -1 and part(three, "ue", 1).leader == 3
    resp = elect(three, 1, {"ue": [0, 1, 4], "ghost": [0]})
    assert codes(resp) == {("ue", 0): E.NONE, ("ue", 1): E.ELECTION_NOT_NEEDED,
                           ("ue", 4): E.UNKNOWN_TOPIC_OR_PARTITION,
                           ("ghost", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
    p = part(three, "ue", 0)
    assert (p.leader, p.isr, p.leader_recovery_state) == (3, (3,), RECOVERING)
    # Its only replica is down: nobody can lead.
    assert codes(elect(three, 1, {"dead": [0]})) == {
        ("dead", 0): E.ELIGIBLE_LEADERS_NOT_AVAILABLE}


def test_election_for_every_partition_leaves_out_those_not_needed(three):
    topic(three, "a", [2, 1], [1, 2])
    set_partition(three, "a", 0, leader=1, leader_epoch=3)
    resp = elect(three, 0, None)
    assert codes(resp) == {("a", 0): E.NONE}
    assert [r.topic for r in resp.replica_election_results] == ["a"]


def test_unknown_election_type_is_an_invalid_request(three):
    topic(three, "a", [1])
    resp = elect(three, 7, {"a": [0]})
    assert resp.error_code == E.INVALID_REQUEST
    assert codes(resp) == {("a", 0): E.INVALID_REQUEST}


def test_elect_leaders_forwarding_error_answers_every_partition():
    TP = ElectLeadersRequest.TopicPartitions
    req = ElectLeadersRequest(election_type=0, topic_partitions=[TP(topic="t", partitions=[0, 1])])
    resp = forwarded_error_response(load_handlers()[ElectLeadersRequest.API_KEY], req, E.NOT_CONTROLLER, "no controller")
    assert resp.error_code == E.NOT_CONTROLLER
    assert codes(resp) == {("t", 0): E.NOT_CONTROLLER, ("t", 1): E.NOT_CONTROLLER}


# -- the preferred-leader balancer ----------------------------------------------------

def _moved_away(b, name, count, moved):
    """`count` partitions preferring broker 2; the first `moved` led by 1 instead."""
    topic(b, name, *[[2, 1]] * count)
    for i in range(moved):
        set_partition(b, name, i, leader=1, leader_epoch=1)


def test_balancer_moves_leadership_back_after_the_interval(make_broker):
    b = make_broker({"leader.imbalance.check.interval.seconds": "10"})
    add_broker(b, 2)
    _moved_away(b, "bal", 10, 2)       # 20% imbalanced > 10%
    assert run_now(b.controller.check_leader_balance()) == 0   # schedules the first run
    b.clock.advance(9_000)
    assert run_now(b.controller.check_leader_balance()) == 0
    b.clock.advance(1_000)
    assert run_now(b.controller.check_leader_balance()) == 2
    assert {p.leader for p in b.image.topics["bal"].partitions.values()} == {2}


def test_balancer_respects_the_imbalance_percentage(make_broker):
    b = make_broker({"leader.imbalance.check.interval.seconds": "1"})
    add_broker(b, 2)
    _moved_away(b, "bal", 10, 1)       # 10%: not above the threshold
    run_now(b.controller.check_leader_balance())
    b.clock.advance(1_000)
    assert run_now(b.controller.check_leader_balance()) == 0
    assert part(b, "bal", 0).leader == 1


def test_balancer_can_be_turned_off(make_broker):
    b = make_broker({"leader.imbalance.check.interval.seconds": "1",
                     "auto.leader.rebalance.enable": "false"})
    add_broker(b, 2)
    _moved_away(b, "bal", 4, 4)
    run_now(b.controller.check_leader_balance())
    b.clock.advance(1_000)
    assert run_now(b.controller.check_leader_balance()) == 0
    assert part(b, "bal", 0).leader == 1


def test_balancer_runs_unclean_elections_once_a_topic_allows_them(three):
    three.controller._next_balance_ms = 0    # due now
    topic(three, "late", [2, 3])
    assert alter(three, 2, "late", [2]).error == E.NONE
    fence(three, 2)
    assert part(three, "late").leader == -1
    run_now(three.controller.alter_topic_configs("late",
                                                 {"unclean.leader.election.enable": "true"}))
    assert run_now(three.controller.check_leader_balance()) == 1
    assert part(three, "late").leader == 3


# -- the invariant: an election never loses an acknowledged acks=all write -------------

@pytest.mark.parametrize("min_isr", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_elections_never_lose_an_acknowledged_write(make_broker, min_isr, seed):
    """Random fencing, unfencing, ISR shrinks and expansions (by the leader, through
    AlterPartition), preferred elections and acks=all writes on RF=3 partitions over
    four brokers, unclean elections off. A write is acknowledged only while the ISR
    has min.insync.replicas members (the leader's strict min ISR, KIP-966), and then
    every ISR member has it; a follower joins the ISR only once caught up with the
    leader. Whatever happens, the leader, the ISR and the ELR hold every
    acknowledged write."""
    rng = random.Random(seed * 10 + min_isr)
    b = make_broker()
    for n in (2, 3, 4):
        add_broker(b, n)
    topic(b, "inv", [1, 2, 3], [2, 3, 4], [4, 1, 2], configs={"min.insync.replicas": str(min_isr)})
    parts = range(3)
    has_all = {i: set(part(b, "inv", i).replicas) for i in parts}   # nothing written yet
    for step in range(250):
        i = rng.choice(parts)
        p = part(b, "inv", i)
        live = [n for n, x in b.image.brokers.items() if not x.fenced]
        fenced = [n for n, x in b.image.brokers.items() if x.fenced]
        op = rng.choice(["fence", "unfence", "shrink", "expand", "write", "write", "elect"])
        if op == "fence" and len(live) > 1:
            fence(b, rng.choice(live))
        elif op == "unfence" and fenced:
            unfence(b, rng.choice(fenced))
        elif op == "shrink" and p.leader >= 0 and len(p.isr) > 1:
            out = rng.choice([r for r in p.isr if r != p.leader])
            assert alter(b, p.leader, "inv", [r for r in p.isr if r != out], i).error == E.NONE
        elif op == "expand" and p.leader >= 0:
            joiners = [r for r in p.replicas if r not in p.isr and r in live]
            if joiners:
                j = rng.choice(joiners)
                if alter(b, p.leader, "inv", list(p.isr) + [j], i).error == E.NONE:
                    if p.leader in has_all[i]:
                        has_all[i].add(j)   # caught up with the leader's whole log
        elif op == "write" and p.leader >= 0 and len(p.isr) >= min_isr:
            has_all[i] &= set(p.isr)        # acknowledged: exactly the ISR has it
        elif op == "elect":
            elect(b, 0, {"inv": [i]})
        for k in parts:
            q = part(b, "inv", k)
            assert set(q.isr) <= has_all[k] and set(q.elr) <= has_all[k], (step, op, q)
            assert q.leader == -1 or q.leader in has_all[k], (step, op, q)
            assert not set(q.isr) & set(q.elr)
