"""Consumer groups with kafka-python 3 against a real kafkette process.

The group protocol as kafka-python drives it: FindCoordinator, JoinGroup (v4+: first
MEMBER_ID_REQUIRED, then again with the id), SyncGroup, Heartbeat, LeaveGroup on close,
OffsetCommit / OffsetFetch. Consumers poll in their own threads (GroupMember), since a
group member must keep polling to heartbeat and to rejoin during a rebalance.
"""
from __future__ import annotations

import collections
import time

import pytest
from kafka import TopicPartition
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from kafka.structs import OffsetAndMetadata

from it_clients import (KafkaPythonMember, admin, assignments, create_topic, is_partition_of,
                        kafka_python_group_trouble, last_change, members,
                        produce_to_partitions)
from itutil import record_timings, unique_topic, wait_stable, wait_until

FAST_GROUP = {"group.initial.rebalance.delay.ms": 0}

# Survivors must see a LeaveGroup-triggered rebalance well before this runs out: a broker
# that ignored LeaveGroup would only move the partitions after the session timeout.
SESSION_MS = 30000
MEMBER_CFG = dict(session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)

ASSIGNORS = {
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "sticky": StickyPartitionAssignor,
    "cooperative-sticky": CooperativeStickyAssignor,
}


@pytest.fixture(scope="module")
def broker_config():
    return dict(FAST_GROUP)


def _group(prefix="kpg") -> str:
    return unique_topic(prefix)


def _describe(bootstrap, group) -> dict:
    with admin(bootstrap) as a:
        return a.describe_groups([group])[group]


def _member_partitions(member: dict, topic: str) -> frozenset:
    """Partitions of `topic` in a DescribeGroups member's (decoded) assignment."""
    asg = member["member_assignment"]
    if hasattr(asg, "partitions"):
        return frozenset(tp.partition for tp in asg.partitions() if tp.topic == topic)
    if isinstance(asg, dict):
        out = set()
        for entry in asg.get("assigned_partitions") or []:
            if isinstance(entry, dict):
                t, ps = entry.get("topic"), entry.get("partitions")
            else:
                t, ps = entry
            if t == topic:
                out.update(ps)
        return frozenset(out)
    raise AssertionError(f"cannot read member_assignment {asg!r}")


# --------------------------------------------------------------------------- rebalancing

@pytest.mark.timeout(90)
@pytest.mark.parametrize("strategy", sorted(ASSIGNORS))
def test_three_members_then_one_leaves(broker, strategy):
    t, g = unique_topic("kpg-rb"), _group()
    create_topic(broker.bootstrap, t, partitions=6)
    cfg = dict(MEMBER_CFG, partition_assignment_strategy=[ASSIGNORS[strategy]])
    ms = [KafkaPythonMember(broker.bootstrap, g, [t], name=f"kp{i}", **cfg) for i in range(3)]
    t0 = time.monotonic()
    with kafka_python_group_trouble() as trouble, members(*ms):
        parts = wait_stable(lambda: assignments(ms, t), lambda v: is_partition_of(v, 6),
                            settle=1.0, timeout=40,
                            message=f"3 {strategy} members to split 6 partitions")
        three_s = last_change(ms) - t0     # excluding the settle window
        assert sorted(len(p) for p in parts) == [2, 2, 2], parts
        if strategy == "range":
            # range: each member gets a contiguous block of 2
            assert sorted(sorted(p) for p in parts) == [[0, 1], [2, 3], [4, 5]], parts
        elif strategy == "roundrobin":
            assert sorted(sorted(p) for p in parts) == [[0, 3], [1, 4], [2, 5]], parts

        # the broker's view (DescribeGroups) is what the members hold
        d = _describe(broker.bootstrap, g)
        assert d["error"] is None, d
        assert d["group_state"] == "Stable", d
        assert d["protocol_type"] == "consumer", d
        assert d["protocol_data"] == strategy, d
        assert len(d["members"]) == 3, d
        assert sorted(sorted(_member_partitions(m, t)) for m in d["members"]) == \
            sorted(sorted(p) for p in parts), d["members"]
        assert {m["client_id"] for m in d["members"]} == {"it-kp0", "it-kp1", "it-kp2"}

        leaving, survivors = ms[0], ms[1:]
        before = {m.member_name: m.partitions(t) for m in survivors}
        revoked_before = {m.member_name: _revoked(m, t) for m in survivors}
        t1 = time.monotonic()
        leaving.stop()                         # close(): LeaveGroup
        assert leaving.close_error is None, leaving.close_error
        parts2 = wait_stable(lambda: assignments(survivors, t),
                             lambda v: is_partition_of(v, 6), settle=1.0,
                             timeout=SESSION_MS / 2000,
                             message="the 2 remaining members to take all 6 partitions "
                                     "(before the session timeout: LeaveGroup honoured)")
        leave_s = last_change(survivors) - t1
        assert sorted(len(p) for p in parts2) == [3, 3], parts2
        if strategy == "range":
            assert sorted(sorted(p) for p in parts2) == [[0, 1, 2], [3, 4, 5]], parts2
        if strategy in ("sticky", "cooperative-sticky"):
            # sticky: a survivor keeps what it had and gains from the leaver
            for m in survivors:
                assert before[m.member_name] <= m.partitions(t), (m, before)
        if strategy == "cooperative-sticky":
            # incremental: a survivor never had a partition revoked by this rebalance
            for m in survivors:
                assert _revoked(m, t) == revoked_before[m.member_name], m.events
        d = _describe(broker.bootstrap, g)
        assert d["group_state"] == "Stable" and len(d["members"]) == 2, d
        for m in survivors:
            m.check()
    assert trouble == [], trouble
    record_timings("kafka-python", {f"fast_three_members_stable_s[{strategy}]": round(three_s, 3),
                                    f"fast_leave_rebalance_s[{strategy}]": round(leave_s, 3)})


def _revoked(m, topic) -> frozenset:
    out = set()
    for kind, tps in list(m.events):
        if kind in ("revoked", "lost"):
            out.update(p for t, p in tps if t == topic)
    return frozenset(out)


# --------------------------------------------------------------------------- commits

@pytest.mark.timeout(120)
def test_commit_metadata_and_resume_after_restart(make_broker):
    b = make_broker(FAST_GROUP)
    t, g = unique_topic("kpg-cr"), _group()
    create_topic(b.bootstrap, t, partitions=6)
    acked = produce_to_partitions(b.bootstrap, t, 600, 6)
    ends = {p: rows[-1][0] + 1 for p, rows in acked.items()}
    assert ends == {p: 100 for p in range(6)}, ends
    # what to commit per partition: start, middle, one before the end, the end
    commit_at = {0: 0, 1: 1, 2: 37, 3: 99, 4: 100, 5: 50}
    meta = {p: f"kp p{p} ü→{commit_at[p]}" for p in range(6)}
    meta[4] = ""
    tps = {p: TopicPartition(t, p) for p in range(6)}

    m1 = KafkaPythonMember(b.bootstrap, g, [t], name="kp-first", **MEMBER_CFG)
    with members(m1):
        wait_until(lambda: assignments([m1], t)[0] == frozenset(range(6)), timeout=30,
                   message="the only member to get all 6 partitions")
        # read a prefix of every partition, past the offsets committed below
        want = {p: min(commit_at[p] + 10, ends[p]) for p in range(6)}

        def read_enough():
            m1.check()
            seen = collections.Counter(p for _t, p, *_ in m1.snapshot_records())
            return all(seen[p] >= want[p] for p in range(6))
        wait_until(read_enough, timeout=30, message="the first consumer to read a prefix")
        m1.call(lambda c: c.commit({tps[p]: OffsetAndMetadata(commit_at[p], meta[p], -1)
                                    for p in range(6)}))
        got = m1.call(lambda c: {p: c.committed(tps[p], metadata=True) for p in range(6)})
        assert {p: (o.offset, o.metadata) for p, o in got.items()} == \
            {p: (commit_at[p], meta[p]) for p in range(6)}
    assert m1.close_error is None, m1.close_error

    def admin_offsets():
        with admin(b.bootstrap) as a:
            res = a.list_group_offsets({g: None})[g]
        return {tp.partition: (om.offset, om.metadata) for tp, om in res.items()
                if tp.topic == t}

    assert admin_offsets() == {p: (commit_at[p], meta[p]) for p in range(6)}

    b.restart()                                # SIGTERM (asserts exit 0), same data dir

    assert admin_offsets() == {p: (commit_at[p], meta[p]) for p in range(6)}, \
        "committed offsets/metadata changed across a restart"
    m2 = KafkaPythonMember(b.bootstrap, g, [t], name="kp-second", **MEMBER_CFG)
    with members(m2):
        def caught_up():
            m2.check()
            last = {}
            for _t, p, o, *_ in m2.snapshot_records():
                last[p] = max(last.get(p, -1), o)
            return all(last.get(p, commit_at[p] - 1) >= ends[p] - 1 for p in range(6))
        wait_until(caught_up, timeout=30, message="the resumed consumer to reach the end")
        recs = m2.snapshot_records()
        positions = m2.call(lambda c: {p: c.position(tps[p]) for p in range(6)})
        m2.call(lambda c: c.commit())          # commit the positions
    by_part = collections.defaultdict(list)
    for _t, p, o, k, v in recs:
        by_part[p].append((o, k, v))
    for p in range(6):
        expected = [row for row in acked[p] if row[0] >= commit_at[p]]
        assert by_part[p] == expected, (
            f"partition {p}: committed {commit_at[p]}, read offsets "
            f"{[o for o, *_ in by_part[p]][:10]}... ({len(by_part[p])} records, "
            f"expected {len(expected)} from {commit_at[p]})")
    assert positions == ends
    assert admin_offsets() == {p: (ends[p], "") for p in range(6)}


@pytest.mark.timeout(90)
def test_pre_rebalance_commit_is_accepted_no_duplicates(broker):
    """COMPATIBILITY.md: an offset commit sent when a rebalance has started, with the
    generation the member still holds, must be accepted (Kafka accepts it while the
    group is PreparingRebalance); rejecting it makes the partition's next owner re-read.

    kafka-python with auto-commit commits everything consumed right before it rejoins,
    so a member that read records and commits nothing else must hand them over without
    duplicates."""
    t, g = unique_topic("kpg-dup"), _group()
    create_topic(broker.bootstrap, t, partitions=6)
    acked = produce_to_partitions(broker.bootstrap, t, 300, 6)
    # poll_s=1: kafka-python gives its pre-rebalance commit only what is left of the
    # poll() timeout; with 100 ms polls that commit sometimes times out in the client.
    cfg = dict(MEMBER_CFG, enable_auto_commit=True, auto_commit_interval_ms=600000, poll_s=1.0)
    a = KafkaPythonMember(broker.bootstrap, g, [t], name="kp-a", **cfg)
    bm = KafkaPythonMember(broker.bootstrap, g, [t], name="kp-b", **cfg)
    with kafka_python_group_trouble() as trouble, members(a):
        wait_until(lambda: (a.check(), len(a.snapshot_records()) >= 300)[1], timeout=30,
                   message="member a to read the first 300 records")
        with admin(broker.bootstrap) as ad:
            assert ad.list_group_offsets({g: None})[g] == {}, "nothing committed yet"
        with members(bm):
            wait_stable(lambda: assignments([a, bm], t), lambda v: is_partition_of(v, 6),
                        settle=1.0, timeout=20, message="a and b to split the partitions")
            with admin(broker.bootstrap) as ad:
                offs = ad.list_group_offsets({g: None})[g]
            committed = {tp.partition: om.offset for tp, om in offs.items()}
            assert committed == {p: 50 for p in range(6)}, (
                "the pre-rebalance commit of member a was not stored: "
                f"{committed}")
            acked2 = produce_to_partitions(broker.bootstrap, t, 300, 6, start=300)
            total = 600

            def all_read():
                a.check(), bm.check()
                return len(a.snapshot_records()) + len(bm.snapshot_records()) >= total
            wait_until(all_read, timeout=30, message="a and b to read all 600 records")
            recs = a.snapshot_records() + bm.snapshot_records()
    assert trouble == [], trouble
    keys = [(p, o) for _t, p, o, *_ in recs]
    dups = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not dups, f"{len(dups)} records read twice, e.g. {sorted(dups)[:10]}"
    assert sorted(keys) == sorted((p, o) for p in range(6)
                                  for o, *_ in acked[p] + acked2[p])


# --------------------------------------------------------------------------- latency

@pytest.mark.timeout(90)
def test_first_join_latency_default_settings(make_broker):
    """A new group's first join waits group.initial.rebalance.delay.ms (3 s by
    default, KIP-134), not a session timeout (kafka-python 3 defaults to 45 s
    against a 3.0+ broker; COMPATIBILITY.md: Tansu waits about half of it)."""
    b = make_broker({})                        # broker defaults
    t, g = unique_topic("kpg-lat"), _group()
    create_topic(b.bootstrap, t, partitions=6)
    first = KafkaPythonMember(b.bootstrap, g, [t], name="kp-lat1")
    second = KafkaPythonMember(b.bootstrap, g, [t], name="kp-lat2")
    with members(first):
        wait_until(lambda: (first.check(), first.first_assigned_at)[1], timeout=30,
                   message="a first assignment")
        first_join = first.first_assigned_at - first.subscribed_at
        session_ms = first.call(lambda c: c.config["session_timeout_ms"])
        assert first.partitions(t) == frozenset(range(6))
        with members(second):
            wait_stable(lambda: assignments([first, second], t),
                        lambda v: is_partition_of(v, 6), settle=0.5, timeout=30,
                        message="the second member to join")
            second_join = second.first_assigned_at - second.subscribed_at
    record_timings("kafka-python", {
        "default_first_join_s": round(first_join, 3),
        "default_second_member_join_s": round(second_join, 3),
        "client_session_timeout_ms": session_ms,
        "broker_group_initial_rebalance_delay_ms": 3000})
    assert first_join < 8.0, f"first join took {first_join:.2f}s (session {session_ms} ms)"
    assert second_join < 12.0, f"second member's join took {second_join:.2f}s"


# --------------------------------------------------------------------------- wire level

class _Wire:
    """One connection speaking single requests with kafka-python's message classes."""

    def __init__(self, b, client_id="it-wire"):
        import socket
        self.sock = socket.create_connection((b.host, b.port), timeout=15)
        self.client_id = client_id
        self.corr = 0

    def __call__(self, req, version: int, resp_cls):
        from itutil import recv_frame
        self.corr += 1
        req.API_VERSION = version
        req.with_header(correlation_id=self.corr, client_id=self.client_id)
        self.sock.sendall(req.encode(header=True, framed=True))
        resp = resp_cls.decode(recv_frame(self.sock), version=version, header=True)
        assert resp.header.correlation_id == self.corr
        return resp

    def close(self):
        self.sock.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("versions", [{"join": 5, "sync": 3, "hb": 3, "leave": 3},   # librdkafka
                                      {"join": 0, "sync": 0, "hb": 0, "leave": 0}],  # KAFKA-19444
                         ids=["join-v5", "join-v0"])
def test_wire_join_sync_heartbeat_leave(broker, versions):
    """The classic protocol step by step on one connection. COMPATIBILITY.md: a SyncGroup
    that arrives when the group is already Stable gets the current assignment (the
    librdkafka mock answers INVALID_REQUEST, fatal for kafka-python and aiokafka)."""
    from kafka.protocol.consumer import (HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
                                         JoinGroupResponse, LeaveGroupRequest,
                                         LeaveGroupResponse, SyncGroupRequest,
                                         SyncGroupResponse)
    g = _group("kpg-wire")
    meta, assignment = b"\x00\x00subscription-bytes", b"\x00\x00assignment-bytes"
    w = _Wire(broker)
    try:
        def join(member_id):
            return w(JoinGroupRequest(group_id=g, session_timeout_ms=10000,
                                      rebalance_timeout_ms=10000, member_id=member_id,
                                      group_instance_id=None, protocol_type="consumer",
                                      protocols=[("range", meta)]),
                     versions["join"], JoinGroupResponse)

        r = join("")
        if versions["join"] >= 4:      # KIP-394: first ask for a member id
            assert r.error_code == 79 and r.member_id, r     # MEMBER_ID_REQUIRED
            r = join(r.member_id)
        assert r.error_code == 0, r
        member, gen = r.member_id, r.generation_id
        assert member.startswith("it-wire-") and gen >= 1, r
        assert r.leader == member and r.protocol_name == "range", r
        assert [(m.member_id, bytes(m.metadata)) for m in r.members] == [(member, meta)], r

        def sync(generation, assignments):
            return w(SyncGroupRequest(group_id=g, generation_id=generation, member_id=member,
                                      group_instance_id=None, protocol_type="consumer",
                                      protocol_name="range", assignments=assignments),
                     versions["sync"], SyncGroupResponse)

        r = sync(gen, [(member, assignment)])
        assert (r.error_code, bytes(r.assignment)) == (0, assignment), r
        r = sync(gen, [])                       # again, group already Stable
        assert (r.error_code, bytes(r.assignment)) == (0, assignment), r
        assert sync(gen + 1, []).error_code == 22                # ILLEGAL_GENERATION

        def heartbeat(generation, member_id):
            return w(HeartbeatRequest(group_id=g, generation_id=generation, member_id=member_id,
                                      group_instance_id=None),
                     versions["hb"], HeartbeatResponse).error_code

        assert heartbeat(gen, member) == 0
        assert heartbeat(gen + 1, member) == 22                  # ILLEGAL_GENERATION
        assert heartbeat(gen, "it-wire-nobody") == 25            # UNKNOWN_MEMBER_ID
        if versions["leave"] >= 3:
            r = w(LeaveGroupRequest(group_id=g, members=[(member, None)]),
                  versions["leave"], LeaveGroupResponse)
            assert r.error_code == 0 and [(m.member_id, m.error_code) for m in r.members] == \
                [(member, 0)], r
        else:
            r = w(LeaveGroupRequest(group_id=g, member_id=member), versions["leave"],
                  LeaveGroupResponse)
            assert r.error_code == 0, r
        assert heartbeat(gen, member) == 25                      # gone
        d = _describe(broker.bootstrap, g)
        assert d["group_state"] == "Empty" and d["members"] == [], d
    finally:
        w.close()
