"""Consumer groups with confluent-kafka (librdkafka 2.x, classic protocol) against a
real kafkette process: eager and cooperative rebalancing, commit and resume across a
restart, static membership (KIP-345), and the first join's latency."""
from __future__ import annotations

import collections
import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from it_clients import (ConfluentMember, assignments, create_topic, is_partition_of,
                        last_change, members, produce_to_partitions)
from itutil import record_timings, unique_topic, wait_stable, wait_until

FAST_GROUP = {"group.initial.rebalance.delay.ms": 0}
SESSION_MS = 30000
MEMBER_CONF = {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500}


@pytest.fixture(scope="module")
def broker_config():
    return dict(FAST_GROUP)


def _admin(b) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 10000})


def _describe(b, group):
    a = _admin(b)
    return a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)


def _committed(b, group, topic) -> dict[int, tuple[int, str | None]]:
    a = _admin(b)
    fs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                       request_timeout=15)
    res = fs[group].result(timeout=20)
    return {tp.partition: (tp.offset, tp.metadata) for tp in res.topic_partitions
            if tp.topic == topic}


def _desc_parts(member, topic) -> list[int]:
    return sorted(tp.partition for tp in member.assignment.topic_partitions
                  if tp.topic == topic)


def _non_empty(events, kinds) -> list:
    return [(k, tps) for k, tps in list(events) if k in kinds and tps]


# --------------------------------------------------------------------------- rebalancing

@pytest.mark.timeout(90)
@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_three_members_then_one_leaves(broker, strategy):
    t, g = unique_topic("ckg-rb"), unique_topic("ckg")
    create_topic(broker.bootstrap, t, partitions=6)
    conf = dict(MEMBER_CONF, **{"partition.assignment.strategy": strategy})
    ms = [ConfluentMember(broker.bootstrap, g, [t], name=f"ck{i}", **conf) for i in range(3)]
    t0 = time.monotonic()
    with members(*ms):
        parts = wait_stable(lambda: assignments(ms, t), lambda v: is_partition_of(v, 6),
                            settle=1.0, timeout=40,
                            message=f"3 {strategy} members to split 6 partitions")
        three_s = last_change(ms) - t0     # excluding the settle window
        assert sorted(len(p) for p in parts) == [2, 2, 2], parts
        if strategy == "range":
            assert sorted(sorted(p) for p in parts) == [[0, 1], [2, 3], [4, 5]], parts
        elif strategy == "roundrobin":
            assert sorted(sorted(p) for p in parts) == [[0, 3], [1, 4], [2, 5]], parts

        d = _describe(broker, g)
        assert d.state == ConsumerGroupState.STABLE, d.state
        assert d.partition_assignor == strategy, d.partition_assignor
        assert not d.is_simple_consumer_group
        assert len(d.members) == 3, d.members
        assert sorted(_desc_parts(m, t) for m in d.members) == sorted(sorted(p) for p in parts)
        assert sorted(m.client_id for m in d.members) == ["it-ck0", "it-ck1", "it-ck2"]

        leaving, survivors = ms[0], ms[1:]
        before = {m.member_name: m.partitions(t) for m in survivors}
        revokes_before = {m.member_name: len(_non_empty(m.events, ("revoked", "lost")))
                          for m in survivors}
        t1 = time.monotonic()
        leaving.stop()                         # close(): LeaveGroup (dynamic member)
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
        if strategy == "cooperative-sticky":
            for m in survivors:
                # incremental: survivors keep their partitions, nothing is revoked
                assert before[m.member_name] <= m.partitions(t), (m, before)
                assert len(_non_empty(m.events, ("revoked", "lost"))) == \
                    revokes_before[m.member_name], m.events
        d = _describe(broker, g)
        assert d.state == ConsumerGroupState.STABLE and len(d.members) == 2, (d.state, d.members)
        for m in survivors:
            m.check()
            assert not [e for e in m.errors if e.fatal()], m.errors
    record_timings("confluent-kafka", {
        f"fast_three_members_stable_s[{strategy}]": round(three_s, 3),
        f"fast_leave_rebalance_s[{strategy}]": round(leave_s, 3)})


# --------------------------------------------------------------------------- commits

@pytest.mark.timeout(120)
def test_commit_metadata_and_resume_after_restart(make_broker):
    b = make_broker(FAST_GROUP)
    t, g = unique_topic("ckg-cr"), unique_topic("ckg")
    create_topic(b.bootstrap, t, partitions=6)
    acked = produce_to_partitions(b.bootstrap, t, 600, 6)
    ends = {p: rows[-1][0] + 1 for p, rows in acked.items()}
    assert ends == {p: 100 for p in range(6)}, ends
    commit_at = {0: 0, 1: 1, 2: 37, 3: 99, 4: 100, 5: 50}
    meta = {p: f"ck p{p} ü→{commit_at[p]}" for p in range(6)}
    meta[4] = None                             # no metadata: read back as "" or None

    m1 = ConfluentMember(b.bootstrap, g, [t], name="ck-first", **MEMBER_CONF)
    with members(m1):
        wait_until(lambda: assignments([m1], t)[0] == frozenset(range(6)), timeout=30,
                   message="the only member to get all 6 partitions")
        want = {p: min(commit_at[p] + 10, ends[p]) for p in range(6)}

        def read_enough():
            m1.check()
            seen = collections.Counter(p for _t, p, *_ in m1.snapshot_records())
            return all(seen[p] >= want[p] for p in range(6))
        wait_until(read_enough, timeout=30, message="the first consumer to read a prefix")

        def commit(c):
            tps = [TopicPartition(t, p, commit_at[p], meta[p]) if meta[p] is not None
                   else TopicPartition(t, p, commit_at[p]) for p in range(6)]
            res = c.commit(offsets=tps, asynchronous=False)
            return [(tp.partition, tp.offset, tp.error) for tp in res]
        res = m1.call(commit)
        assert all(err is None for _p, _o, err in res), res
        got = m1.call(lambda c: c.committed([TopicPartition(t, p) for p in range(6)],
                                            timeout=15))
        got = {tp.partition: (tp.offset, tp.metadata or "") for tp in got}
        assert got == {p: (commit_at[p], meta[p] or "") for p in range(6)}, got
    assert m1.close_error is None, m1.close_error

    def admin_offsets():
        return {p: (o, md or "") for p, (o, md) in _committed(b, g, t).items()}

    expected = {p: (commit_at[p], meta[p] or "") for p in range(6)}
    assert admin_offsets() == expected
    b.restart()                                # SIGTERM (asserts exit 0), same data dir
    assert admin_offsets() == expected, "committed offsets/metadata changed across a restart"

    m2 = ConfluentMember(b.bootstrap, g, [t], name="ck-second", **MEMBER_CONF)
    with members(m2):
        def caught_up():
            m2.check()
            last = {}
            for _t, p, o, *_ in m2.snapshot_records():
                last[p] = max(last.get(p, -1), o)
            return all(last.get(p, commit_at[p] - 1) >= ends[p] - 1 for p in range(6))
        wait_until(caught_up, timeout=30, message="the resumed consumer to reach the end")
        recs = m2.snapshot_records()
        res = m2.call(lambda c: c.commit(asynchronous=False))    # current positions
    by_part = collections.defaultdict(list)
    for _t, p, o, k, v in recs:
        by_part[p].append((o, k, v))
    for p in range(6):
        expected_rows = [row for row in acked[p] if row[0] >= commit_at[p]]
        assert by_part[p] == expected_rows, (
            f"partition {p}: committed {commit_at[p]}, read offsets "
            f"{[o for o, *_ in by_part[p]][:10]}... ({len(by_part[p])} records, "
            f"expected {len(expected_rows)} from {commit_at[p]})")
    # positions committed for the partitions that had new records (librdkafka commits
    # only offsets that moved); partition 4 stays at its committed end
    assert {p: o for p, (o, _m) in admin_offsets().items()} == ends


# --------------------------------------------------------------------------- static

@pytest.mark.timeout(90)
def test_static_member_restart_gets_same_assignment_without_rebalance(broker):
    """KIP-345: a static member (group.instance.id) that goes away without LeaveGroup
    (librdkafka does not send it for static members) and comes back within the session
    timeout takes its old place: same assignment, and the other member sees no
    rebalance at all (Redpanda once hung here, redpanda #3842)."""
    session_ms = 10000
    t, g = unique_topic("ckg-st"), unique_topic("ckg")
    create_topic(broker.bootstrap, t, partitions=6)
    conf = {"session.timeout.ms": session_ms, "heartbeat.interval.ms": 1000,
            "partition.assignment.strategy": "range"}
    other = ConfluentMember(broker.bootstrap, g, [t], name="ck-other",
                            **{**conf, "group.instance.id": "inst-other"})
    first = ConfluentMember(broker.bootstrap, g, [t], name="ck-static",
                            **{**conf, "group.instance.id": "inst-static"})
    again = ConfluentMember(broker.bootstrap, g, [t], name="ck-static2",
                            **{**conf, "group.instance.id": "inst-static"})
    with members(other):
        wait_until(lambda: assignments([other], t)[0] == frozenset(range(6)), timeout=30,
                   message="the first member to get everything")
        with members(first):
            parts = wait_stable(lambda: assignments([other, first], t),
                                lambda v: is_partition_of(v, 6), settle=1.0, timeout=30,
                                message="the two static members to split the partitions")
            d = _describe(broker, g)
            ids = {m.group_instance_id: m.member_id for m in d.members}
            assert set(ids) == {"inst-other", "inst-static"}, d.members
        # first closed without LeaveGroup: the broker still holds its membership
        t_closed = time.monotonic()
        assert first.close_error is None, first.close_error
        d = _describe(broker, g)
        assert {m.group_instance_id for m in d.members} == {"inst-other", "inst-static"}, \
            f"static member was removed on close (state {d.state}): {d.members}"
        other_events = list(other.events)
        other_parts = other.partitions(t)
        assert other_parts == parts[0]

        with members(again):
            wait_until(lambda: assignments([again], t)[0], timeout=session_ms / 1000,
                       message="the restarted static member to get an assignment")
            rejoin_s = time.monotonic() - t_closed
            assert again.partitions(t) == parts[1], (again.partitions(t), parts)
            d = _describe(broker, g)
            ids2 = {m.group_instance_id: m.member_id for m in d.members}
            assert set(ids2) == {"inst-other", "inst-static"}, d.members
            assert ids2["inst-other"] == ids["inst-other"]
            assert d.state == ConsumerGroupState.STABLE, d.state
            # hold past the old member's session timeout: replacing it must have
            # cancelled its expiry (no rebalance when the old session runs out)
            hold_until = t_closed + session_ms / 1000 + 3

            def held():
                other.check(), again.check()
                assert other.events == other_events, \
                    f"the other member was rebalanced: {other.events[len(other_events):]}"
                assert other.partitions(t) == other_parts
                assert again.partitions(t) == parts[1]
                return time.monotonic() >= hold_until
            wait_until(held, timeout=session_ms / 1000 + 10, interval=0.2,
                       message="the group to stay put past the session timeout")
            d = _describe(broker, g)
            assert d.state == ConsumerGroupState.STABLE and len(d.members) == 2, d.members
            assert sorted(_desc_parts(m, t) for m in d.members) == sorted(sorted(p)
                                                                          for p in parts)
    record_timings("confluent-kafka", {"static_rejoin_s": round(rejoin_s, 3)})


# --------------------------------------------------------------------------- latency

@pytest.mark.timeout(90)
def test_first_join_latency_default_settings(make_broker):
    """A new group's first join waits group.initial.rebalance.delay.ms (3 s by default,
    KIP-134), not a session timeout (librdkafka: 45 s)."""
    b = make_broker({})                        # broker defaults
    t, g = unique_topic("ckg-lat"), unique_topic("ckg")
    create_topic(b.bootstrap, t, partitions=6)
    first = ConfluentMember(b.bootstrap, g, [t], name="ck-lat1")
    second = ConfluentMember(b.bootstrap, g, [t], name="ck-lat2")
    with members(first):
        wait_until(lambda: (first.check(), first.first_assigned_at)[1], timeout=30,
                   message="a first assignment")
        first_join = first.first_assigned_at - first.subscribed_at
        assert first.partitions(t) == frozenset(range(6))
        with members(second):
            wait_stable(lambda: assignments([first, second], t),
                        lambda v: is_partition_of(v, 6), settle=0.5, timeout=30,
                        message="the second member to join")
            second_join = second.first_assigned_at - second.subscribed_at
    record_timings("confluent-kafka", {
        "default_first_join_s": round(first_join, 3),
        "default_second_member_join_s": round(second_join, 3),
        "client_session_timeout_ms": 45000,
        "broker_group_initial_rebalance_delay_ms": 3000})
    assert first_join < 8.0, f"first join took {first_join:.2f}s"
    assert second_join < 12.0, f"second member's join took {second_join:.2f}s"
