"""GroupCoordinator on a FakeScheduler: the classic group protocol, static membership,
offsets, expiry and persistence, with time moved by hand (no real waiting).

Expected behaviour is Apache Kafka's classic coordinator (GroupCoordinator.scala /
GroupMetadataManager.java); the test names say which rule each checks.
"""
from __future__ import annotations

import asyncio

import pytest

from kafkette.clock import SystemClock
from kafkette.coordinator import (
    FENCED_INSTANCE_ID, GROUP_MAX_SIZE_REACHED, GROUP_SUBSCRIBED_TO_TOPIC,
    NEW_MEMBER_JOIN_TIMEOUT_MS, FakeScheduler, GroupConfig, GroupCoordinator, LoopScheduler,
    MemoryOffsetStore, OffsetCommit)
from kafkette.coordinator.consumer_protocol import encode_subscription
from kafkette.coordinator.offsets_store import (
    GroupMetadataKey, OffsetCommitKey, decode_group_metadata_value)
from kafkette.errors import ErrorCode, KafkaError

E = ErrorCode
PROTO = [("range", b"range-meta")]
SESSION = 10_000
REBALANCE = 30_000
DELAY = 3_000


class Box(list):
    """Collects a respond callback's calls; `one()` insists on exactly one."""

    def one(self):
        assert len(self) == 1, f"expected exactly one answer, got {list(self)}"
        return self[0]


def make(store=None, **cfg):
    s = FakeScheduler(now_ms=1_700_000_000_000)
    c = GroupCoordinator(s, GroupConfig(**cfg), store)
    return s, c


def join(c, gid, member_id="", instance=None, protocols=PROTO, session=SESSION,
         rebalance=REBALANCE, ptype="consumer", client="client", require_known=False,
         skip=False):
    box = Box()
    c.join_group(gid, member_id, instance, client, "/10.0.0.1", session, rebalance, ptype,
                 protocols, require_known, None, box.append, supports_skip_assignment=skip)
    return box


def sync(c, gid, gen, member_id, assignments=None, instance=None, ptype=None, pname=None):
    box = Box()
    c.sync_group(gid, gen, member_id, instance, ptype, pname, assignments or {}, box.append)
    return box


def form_group(c, s, gid, n, instances=None, protocols=PROTO):
    """n members join at once (JoinGroup v3 style) and the initial delay passes."""
    instances = instances or [None] * n
    boxes = [join(c, gid, instance=instances[i], client=f"c{i}", protocols=protocols)
             for i in range(n)]
    s.advance(DELAY)
    s.advance(DELAY)
    results = [b.one() for b in boxes]
    assert all(r.error_code == E.NONE for r in results), results
    return results


def make_stable(c, s, gid, n, instances=None, protocols=PROTO):
    """A Stable group of n members; member i is assigned b"a-<member id>"."""
    results = form_group(c, s, gid, n, instances, protocols)
    gen = results[0].generation_id
    leader = results[0].leader
    ids = [r.member_id for r in results]
    assignments = {m: b"a-" + m.encode() for m in ids}
    answers = {}
    for m in ids:
        answers[m] = sync(c, gid, gen, m, assignments if m == leader else {})
    for m in ids:
        assert answers[m].one().error_code == E.NONE
        assert answers[m].one().assignment == assignments[m]
    assert c.group(gid).state.value == "Stable"
    return ids, gen, leader


def state(c, gid):
    g = c.group(gid)
    return None if g is None else g.state.value


# ------------------------------------------------------------------ error codes

def test_group_error_codes_have_kafkas_values():
    # Kafka's Errors: GROUP_MAX_SIZE_REACHED 81, FENCED_INSTANCE_ID 82,
    # GROUP_SUBSCRIBED_TO_TOPIC 86.
    assert int(GROUP_MAX_SIZE_REACHED) == 81
    assert int(FENCED_INSTANCE_ID) == 82
    assert int(GROUP_SUBSCRIBED_TO_TOPIC) == 86
    assert GROUP_MAX_SIZE_REACHED.name == "GROUP_MAX_SIZE_REACHED"


# ------------------------------------------------------------------ the first join

def test_first_join_waits_initial_delay_not_session_timeout():
    s, c = make()
    box = join(c, "g", session=45_000, rebalance=300_000)  # librdkafka's defaults
    assert box == [] and state(c, "g") == "PreparingRebalance"
    s.advance(DELAY - 1)
    assert box == []
    s.advance(1)
    r = box.one()
    assert r.error_code == E.NONE and r.generation_id == 1
    assert r.leader == r.member_id and r.protocol_name == "range"
    assert r.protocol_type == "consumer"
    assert [m.member_id for m in r.members] == [r.member_id]
    assert r.members[0].metadata == b"range-meta"
    assert state(c, "g") == "CompletingRebalance"


def test_first_join_with_member_id_required_flow_v4():
    s, c = make()
    first = join(c, "g", client="rdkafka", require_known=True).one()
    assert first.error_code == E.MEMBER_ID_REQUIRED
    assert first.member_id.startswith("rdkafka-") and len(first.member_id) > len("rdkafka-")
    assert first.generation_id == -1
    assert c.group("g").is_pending_member(first.member_id)
    assert state(c, "g") == "Empty"
    box = join(c, "g", first.member_id, require_known=True)
    s.advance(DELAY - 1)
    assert box == []
    s.advance(1)
    r = box.one()
    assert r.error_code == E.NONE and r.member_id == first.member_id and r.generation_id == 1


def test_initial_delay_is_extended_by_new_members_up_to_rebalance_timeout():
    s, c = make()
    a = join(c, "g", rebalance=10_000)         # t=0: timer at 3000, 7000 left
    s.advance(2000)
    b = join(c, "g", rebalance=10_000)         # t=2000
    s.advance(1000)                            # t=3000: extended to 6000
    assert a == [] and b == []
    s.advance(2000)
    cc = join(c, "g", rebalance=10_000)        # t=5000
    s.advance(1000)                            # t=6000: extended to 9000
    s.advance(2000)
    d = join(c, "g", rebalance=10_000)         # t=8000
    s.advance(1000)                            # t=9000: extended by 1000 only
    s.advance(500)
    e = join(c, "g", rebalance=10_000)         # t=9500
    assert all(x == [] for x in (a, b, cc, d, e))
    s.advance(499)
    assert a == []
    s.advance(1)                               # t=10000 = the rebalance timeout
    results = [x.one() for x in (a, b, cc, d, e)]
    assert {r.generation_id for r in results} == {1}
    assert len({r.member_id for r in results}) == 5


def test_join_storm_one_generation_one_leader():
    s, c = make()
    firsts = [join(c, "g", client=f"c{i}", require_known=True).one() for i in range(5)]
    assert all(f.error_code == E.MEMBER_ID_REQUIRED for f in firsts)
    protos = {f.member_id: [("range", f"meta-{i}".encode())] for i, f in enumerate(firsts)}
    boxes = {f.member_id: join(c, "g", f.member_id, protocols=protos[f.member_id],
                               require_known=True) for f in firsts}
    s.advance(DELAY)   # extended once: other members arrived during the delay
    assert all(b == [] for b in boxes.values())
    s.advance(DELAY)
    results = {m: b.one() for m, b in boxes.items()}
    assert {r.generation_id for r in results.values()} == {1}
    leaders = {r.leader for r in results.values()}
    assert len(leaders) == 1
    leader = leaders.pop()
    assert leader == firsts[0].member_id  # the first to join leads
    for m, r in results.items():
        assert r.member_id == m and r.error_code == E.NONE
        if m == leader:
            assert {jm.member_id: jm.metadata for jm in r.members} == \
                {mid: p[0][1] for mid, p in protos.items()}
        else:
            assert r.members == []


def test_unknown_member_id_for_missing_group_and_unknown_member():
    s, c = make()
    assert join(c, "nope", "ghost").one().error_code == E.UNKNOWN_MEMBER_ID
    assert c.group("nope") is None
    make_stable(c, s, "g", 1)
    assert join(c, "g", "ghost").one().error_code == E.UNKNOWN_MEMBER_ID


def test_pending_member_expires_after_session_timeout():
    s, c = make()
    first = join(c, "g", require_known=True).one()
    s.advance(SESSION)
    assert not c.group("g").is_pending_member(first.member_id)
    assert join(c, "g", first.member_id).one().error_code == E.UNKNOWN_MEMBER_ID


def test_static_member_needs_no_member_id_round_trip():
    s, c = make()
    box = join(c, "g", instance="i-1", require_known=True)
    s.advance(DELAY)
    r = box.one()
    assert r.error_code == E.NONE and r.member_id.startswith("i-1-")


def test_invalid_group_id_and_session_timeout():
    s, c = make()
    assert join(c, "").one().error_code == E.INVALID_GROUP_ID
    assert join(c, "g", session=5_999).one().error_code == E.INVALID_SESSION_TIMEOUT
    assert join(c, "g", session=1_800_001).one().error_code == E.INVALID_SESSION_TIMEOUT
    assert join(c, "g", session=6_000) == []  # the bounds are inclusive


def test_group_max_size():
    s, c = make(group_max_size=2)
    make_stable(c, s, "g", 2)
    r = join(c, "g").one()
    assert r.error_code == GROUP_MAX_SIZE_REACHED and int(r.error_code) == 81
    assert r.member_id == ""
    assert c.group("g").size == 2 and state(c, "g") == "Stable"


# ------------------------------------------------------------------ protocols

def test_protocol_selected_by_vote_among_common_protocols():
    s, c = make()
    boxes = [join(c, "g", protocols=[("range", b"r"), ("roundrobin", b"rr")]),
             join(c, "g", protocols=[("roundrobin", b"rr"), ("range", b"r")]),
             join(c, "g", protocols=[("roundrobin", b"rr"), ("range", b"r"), ("sticky", b"s")])]
    s.advance(2 * DELAY)
    results = [b.one() for b in boxes]
    assert {r.protocol_name for r in results} == {"roundrobin"}
    leader = next(r for r in results if r.leader == r.member_id)
    assert {m.metadata for m in leader.members} == {b"rr"}


def test_protocol_vote_only_counts_protocols_everyone_supports():
    s, c = make()
    boxes = [join(c, "g", protocols=[("sticky", b"s"), ("range", b"r")]),
             join(c, "g", protocols=[("sticky", b"s"), ("range", b"r")])]
    boxes.append(join(c, "g", protocols=[("range", b"r"), ("roundrobin", b"x")]))
    s.advance(2 * DELAY)
    assert {b.one().protocol_name for b in boxes} == {"range"}


def test_inconsistent_group_protocol():
    s, c = make()
    make_stable(c, s, "g", 1)
    assert join(c, "g", ptype="connect").one().error_code == E.INCONSISTENT_GROUP_PROTOCOL
    assert join(c, "g", protocols=[("sticky", b"")]).one().error_code == \
        E.INCONSISTENT_GROUP_PROTOCOL
    assert join(c, "other", protocols=[]).one().error_code == E.INCONSISTENT_GROUP_PROTOCOL
    assert join(c, "other2", ptype="").one().error_code == E.INCONSISTENT_GROUP_PROTOCOL
    assert state(c, "g") == "Stable"


# ------------------------------------------------------------------ sync and heartbeat

def test_followers_wait_for_the_leader_sync():
    s, c = make()
    results = form_group(c, s, "g", 3)
    gen, leader = results[0].generation_id, results[0].leader
    followers = [r.member_id for r in results if r.member_id != leader]
    waiting = [sync(c, "g", gen, f) for f in followers]
    assert all(w == [] for w in waiting)
    # A follower heartbeats while the leader assigns: fine (CompletingRebalance).
    assert c.heartbeat("g", gen, followers[0], None) == E.NONE
    leader_box = sync(c, "g", gen, leader, {leader: b"L", followers[0]: b"F0"})
    assert leader_box.one().assignment == b"L"
    assert waiting[0].one().assignment == b"F0"
    assert waiting[1].one().assignment == b""  # the leader left it out: empty
    assert waiting[0].one().protocol_name == "range"
    assert waiting[0].one().protocol_type == "consumer"
    assert state(c, "g") == "Stable"


def test_sync_group_on_stable_group_returns_current_assignment():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    for m in ids:
        r = sync(c, "g", gen, m).one()
        assert r.error_code == E.NONE and r.assignment == b"a-" + m.encode()
        assert r.protocol_name == "range"


def test_sync_group_errors():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    assert sync(c, "g", gen, "ghost").one().error_code == E.UNKNOWN_MEMBER_ID
    assert sync(c, "nope", gen, ids[0]).one().error_code == E.UNKNOWN_MEMBER_ID
    assert sync(c, "g", gen + 1, ids[0]).one().error_code == E.ILLEGAL_GENERATION
    assert sync(c, "g", gen, ids[0], ptype="connect").one().error_code == \
        E.INCONSISTENT_GROUP_PROTOCOL
    assert sync(c, "g", gen, ids[0], pname="sticky").one().error_code == \
        E.INCONSISTENT_GROUP_PROTOCOL
    assert sync(c, "g", gen, ids[0], ptype="consumer", pname="range").one().error_code == E.NONE
    assert sync(c, "", gen, ids[0]).one().error_code == E.INVALID_GROUP_ID
    join(c, "g", leader)  # the leader rejoins: PreparingRebalance
    assert sync(c, "g", gen, ids[1]).one().error_code == E.REBALANCE_IN_PROGRESS


def test_heartbeat_answers_by_state():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    follower = next(m for m in ids if m != leader)
    assert c.heartbeat("g", gen, follower, None) == E.NONE
    assert c.heartbeat("g", gen + 1, follower, None) == E.ILLEGAL_GENERATION
    assert c.heartbeat("g", gen, "ghost", None) == E.UNKNOWN_MEMBER_ID
    assert c.heartbeat("nope", gen, follower, None) == E.UNKNOWN_MEMBER_ID
    assert c.heartbeat("", gen, follower, None) == E.INVALID_GROUP_ID
    join(c, "g", leader)  # the leader's rejoin starts a rebalance
    assert state(c, "g") == "PreparingRebalance"
    # The generation has not moved yet: the member must rejoin.
    assert c.heartbeat("g", gen, follower, None) == E.REBALANCE_IN_PROGRESS


def test_heartbeats_keep_a_member_alive_past_its_session_timeout():
    s, c = make()
    ids, gen, _ = make_stable(c, s, "g", 1)
    for _ in range(10):
        s.advance(SESSION - 1)
        assert c.heartbeat("g", gen, ids[0], None) == E.NONE
    assert state(c, "g") == "Stable" and c.group("g").has(ids[0])


# ------------------------------------------------------------------ session expiry

def test_member_that_never_syncs_expires_and_group_rebalances():
    s, c = make()
    results = form_group(c, s, "g", 2)
    gen, leader = results[0].generation_id, results[0].leader
    other = next(r.member_id for r in results if r.member_id != leader)
    assert sync(c, "g", gen, leader, {leader: b"L", other: b"O"}).one().error_code == E.NONE
    assert state(c, "g") == "Stable"
    for _ in range(3):
        s.advance(SESSION // 3)
        assert c.heartbeat("g", gen, leader, None) == E.NONE
    s.advance(SESSION - 3 * (SESSION // 3))
    # `other` never synced nor heartbeated: its session expired -> rebalance.
    assert not c.group("g").has(other)
    assert state(c, "g") == "PreparingRebalance"
    assert c.heartbeat("g", gen, leader, None) == E.REBALANCE_IN_PROGRESS
    r = join(c, "g", leader).one()   # completes at once: everyone left has joined
    assert r.generation_id == gen + 1 and [m.member_id for m in r.members] == [leader]


def test_session_expiry_during_preparing_rebalance_completes_the_join():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    follower = next(m for m in ids if m != leader)
    t0 = s.now_ms()
    box = join(c, "g", leader)
    assert box == [] and state(c, "g") == "PreparingRebalance"
    s.advance(SESSION)   # the follower neither heartbeats nor rejoins
    r = box.one()
    assert s.now_ms() - t0 <= SESSION < REBALANCE  # not the rebalance timeout
    assert r.generation_id == gen + 1 and [m.member_id for m in r.members] == [leader]
    assert not c.group("g").has(follower)


def test_member_rejoining_is_not_expired_while_parked():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    follower = next(m for m in ids if m != leader)
    lbox = join(c, "g", leader)
    fbox = join(c, "g", follower)
    # Both rejoined: completes immediately.
    assert lbox.one().generation_id == fbox.one().generation_id == gen + 1


def test_session_expiry_during_completing_rebalance():
    s, c = make()
    results = form_group(c, s, "g", 2)
    gen, leader = results[0].generation_id, results[0].leader
    follower = next(r.member_id for r in results if r.member_id != leader)
    fsync = sync(c, "g", gen, follower)  # parked: the leader never syncs
    assert fsync == [] and state(c, "g") == "CompletingRebalance"
    s.advance(SESSION)
    # The leader expired; the parked follower is told to rejoin.
    assert not c.group("g").has(leader)
    assert fsync.one().error_code == E.REBALANCE_IN_PROGRESS
    assert state(c, "g") == "PreparingRebalance"
    r = join(c, "g", follower).one()
    assert r.leader == follower and r.generation_id == gen + 1


def test_last_member_expiring_empties_the_group_and_persists_it():
    store = MemoryOffsetStore()
    s, c = make(store)
    ids, gen, _ = make_stable(c, s, "g", 1)
    s.advance(SESSION)
    assert state(c, "g") == "Empty"
    g = c.group("g")
    assert g.generation_id == gen + 1 and g.members == {} and g.leader_id is None
    key, value = store.decoded()[-1]
    assert key == GroupMetadataKey("g")
    assert value.members == () and value.generation == gen + 1 and value.protocol is None


def test_new_member_stuck_in_join_expires_after_five_minutes():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 1)
    box = join(c, "g", rebalance=600_000)   # a rebalance timeout past 5 minutes
    assert box == []
    for _ in range(NEW_MEMBER_JOIN_TIMEOUT_MS // 5000):
        s.advance(5000)
        assert c.heartbeat("g", gen, leader, None) == E.REBALANCE_IN_PROGRESS
    r = box.one()  # the old member keeps the phase open by never rejoining
    assert r.error_code == E.UNKNOWN_MEMBER_ID
    assert c.group("g").size == 1


def test_member_parked_in_join_longer_than_its_session_is_kept_and_watched():
    s, c = make()
    boxes = [join(c, "g", rebalance=60_000), join(c, "g", rebalance=60_000)]
    s.advance(2 * DELAY)
    a, b = (x.one() for x in boxes)
    sync(c, "g", a.generation_id, a.leader, {})
    sync(c, "g", a.generation_id, b.member_id if a.leader == a.member_id else a.member_id)
    leader = a.leader
    other = b.member_id if leader == a.member_id else a.member_id
    lbox = join(c, "g", leader)
    for _ in range(8):   # 40 s: four session timeouts while the leader is parked
        s.advance(5000)
        assert c.heartbeat("g", a.generation_id, other, None) == E.REBALANCE_IN_PROGRESS
        assert c.group("g").has(leader) and ("g", leader) in c._heartbeat_timers
    assert lbox == []
    assert join(c, "g", other).one().generation_id == lbox.one().generation_id == 2


def test_dynamic_member_that_does_not_rejoin_is_removed_at_rebalance_timeout():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    follower = next(m for m in ids if m != leader)
    box = join(c, "g", leader)
    for _ in range(REBALANCE // 5000):
        s.advance(5000)
        c.heartbeat("g", gen, follower, None)  # alive, but never rejoins
    r = box.one()
    assert r.generation_id == gen + 1 and [m.member_id for m in r.members] == [leader]
    assert c.heartbeat("g", gen, follower, None) == E.UNKNOWN_MEMBER_ID


# ------------------------------------------------------------------ leaving

def test_leader_leaving_mid_rebalance_elects_a_new_leader():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 3)
    assert ids[0] == leader
    b, cc = ids[1], ids[2]
    bbox = join(c, "g", b, protocols=[("range", b"new-meta")])  # metadata changed
    assert state(c, "g") == "PreparingRebalance"
    assert c.leave_group("g", [(leader, None)]) == (E.NONE, [E.NONE])
    assert bbox == []
    cbox = join(c, "g", cc)
    rb, rc = bbox.one(), cbox.one()
    assert rb.leader == rc.leader == b
    assert {m.member_id for m in rb.members} == {b, cc} and rc.members == []
    assert rb.generation_id == gen + 1


def test_leave_group_batch_and_by_instance_id():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 3, instances=[None, "i-1", None])
    top, errors = c.leave_group("g", [(ids[0], None), ("", "i-1"), ("ghost", None),
                                      (ids[2], "i-9")])
    assert top == E.NONE
    assert errors == [E.NONE, E.NONE, E.UNKNOWN_MEMBER_ID, E.UNKNOWN_MEMBER_ID]
    assert set(c.group("g").members) == {ids[2]}
    assert c.leave_group("nope", [("x", None)]) == (E.NONE, [E.UNKNOWN_MEMBER_ID])
    assert c.leave_group("", [("x", None)]) == (E.INVALID_GROUP_ID, [])


def test_last_member_leaving_empties_the_group():
    s, c = make()
    ids, gen, _ = make_stable(c, s, "g", 1)
    assert c.leave_group("g", [(ids[0], None)]) == (E.NONE, [E.NONE])
    assert state(c, "g") == "Empty"


def test_leave_of_a_static_member_with_wrong_member_id_is_fenced():
    s, c = make()
    ids, gen, _ = make_stable(c, s, "g", 1, instances=["i-1"])
    top, errors = c.leave_group("g", [("old-id", "i-1")])
    assert errors == [FENCED_INSTANCE_ID]


# ------------------------------------------------------------------ static membership

def test_static_member_restart_keeps_assignment_without_rebalance():
    store = MemoryOffsetStore()
    s, c = make(store)
    ids, gen, leader = make_stable(c, s, "g", 2, instances=["i-0", "i-1"])
    old = ids[1]
    records_before = len(store.log)
    r = join(c, "g", "", instance="i-1").one()   # the process restarted
    assert r.error_code == E.NONE
    assert r.member_id != old and r.member_id.startswith("i-1-")
    assert r.generation_id == gen and r.leader == leader and r.members == []
    assert state(c, "g") == "Stable"
    # The new member id is persisted before the answer.
    assert len(store.log) == records_before + 1
    value = decode_group_metadata_value(store.log[-1][2])
    assert {m.member_id for m in value.members} == {ids[0], r.member_id}
    assert sync(c, "g", gen, r.member_id, instance="i-1").one().assignment == b"a-" + old.encode()
    assert c.heartbeat("g", gen, ids[0], "i-0") == E.NONE  # nobody else rebalances
    # The old incarnation is fenced everywhere.
    assert c.heartbeat("g", gen, old, "i-1") == FENCED_INSTANCE_ID
    assert sync(c, "g", gen, old, instance="i-1").one().error_code == FENCED_INSTANCE_ID
    assert join(c, "g", old, instance="i-1").one().error_code == FENCED_INSTANCE_ID
    assert c.commit_offsets("g", gen, old, "i-1", {("t", 0): OffsetCommit(1)}) == \
        {("t", 0): FENCED_INSTANCE_ID}


def test_static_leader_restart_v9_skips_assignment():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2, instances=["i-0", "i-1"])
    r = join(c, "g", "", instance="i-0", skip=True).one()
    assert r.leader == r.member_id and r.skip_assignment
    assert {m.member_id for m in r.members} == {r.member_id, ids[1]}
    assert state(c, "g") == "Stable"
    r2 = join(c, "g", "", instance="i-0").one()   # pre-v9: the old leader id
    assert r2.leader == r.member_id and r2.leader != r2.member_id and not r2.skip_assignment


def test_static_member_restart_fences_the_parked_old_join():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2, instances=["i-0", "i-1"])
    old_box = join(c, "g", ids[1], instance="i-1", protocols=[("range", b"changed")])
    assert old_box == [] and state(c, "g") == "PreparingRebalance"
    new_box = join(c, "g", "", instance="i-1")
    assert old_box.one().error_code == FENCED_INSTANCE_ID
    lbox = join(c, "g", leader, instance="i-0")
    assert lbox.one().generation_id == new_box.one().generation_id == gen + 1


def test_static_member_is_kept_through_a_rebalance_it_misses():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2, instances=[None, "i-1"])
    box = join(c, "g", leader)
    for _ in range(REBALANCE // 5000):
        assert box == []
        assert c.heartbeat("g", gen, ids[1], "i-1") == E.REBALANCE_IN_PROGRESS
        s.advance(5000)   # alive, but does not rejoin in time
    r = box.one()
    # Dynamic members that miss the join phase are dropped; static ones are kept.
    assert {m.member_id for m in r.members} == {leader, ids[1]}


def test_static_member_persist_failure_reverts_the_replacement():
    store = MemoryOffsetStore()
    s, c = make(store)
    ids, gen, leader = make_stable(c, s, "g", 2, instances=["i-0", "i-1"])
    store.fail_with = KafkaError(code=E.NOT_ENOUGH_REPLICAS)
    r = join(c, "g", "", instance="i-1").one()
    assert r.error_code == E.COORDINATOR_NOT_AVAILABLE and r.member_id == ""
    assert c.group("g").static_member_id("i-1") == ids[1]
    assert c.heartbeat("g", gen, ids[1], "i-1") == E.NONE


# ------------------------------------------------------------------ cooperative / rejoin

def test_follower_rejoining_stable_with_same_metadata_does_not_rebalance():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    follower = next(m for m in ids if m != leader)
    r = join(c, "g", follower).one()
    assert r.generation_id == gen and r.leader == leader and r.members == []
    assert state(c, "g") == "Stable"
    assert sync(c, "g", gen, follower).one().assignment == b"a-" + follower.encode()


def test_follower_with_new_metadata_or_leader_rejoin_rebalances():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    follower = next(m for m in ids if m != leader)
    fbox = join(c, "g", follower, protocols=[("range", b"owned-partitions-changed")])
    assert fbox == [] and state(c, "g") == "PreparingRebalance"
    lbox = join(c, "g", leader)
    assert fbox.one().generation_id == lbox.one().generation_id == gen + 1
    assert next(m.metadata for m in lbox.one().members if m.member_id == follower) == \
        b"owned-partitions-changed"


def test_lost_join_response_during_completing_rebalance_is_answered_again():
    s, c = make()
    results = form_group(c, s, "g", 2)
    leader = results[0].leader
    again = join(c, "g", leader).one()
    assert again.generation_id == results[0].generation_id
    assert {m.member_id for m in again.members} == {r.member_id for r in results}
    assert state(c, "g") == "CompletingRebalance"


# ------------------------------------------------------------------ offsets

def test_simple_commit_by_non_member_and_fetch_round_trip():
    s, c = make()
    offsets = {("t", 0): OffsetCommit(42, 7, "héllo ✓ metadata"),
               ("t", 1): OffsetCommit(5, -1, None)}
    assert c.commit_offsets("simple", -1, "", None, offsets) == \
        {("t", 0): E.NONE, ("t", 1): E.NONE}
    err, got = c.fetch_offsets("simple", [("t", 0), ("t", 1), ("t", 2)])
    assert err == E.NONE and set(got) == {("t", 0), ("t", 1)}
    assert (got[("t", 0)].offset, got[("t", 0)].leader_epoch, got[("t", 0)].metadata) == \
        (42, 7, "héllo ✓ metadata")
    assert got[("t", 1)].metadata == ""
    assert c.fetch_offsets("simple", None)[1].keys() == {("t", 0), ("t", 1)}
    assert state(c, "simple") == "Empty"
    assert c.list_groups() == [("simple", "", "Empty", "classic")]


def test_commit_rules_for_non_members():
    s, c = make()
    assert c.commit_offsets("nope", 3, "m", None, {("t", 0): OffsetCommit(1)}) == \
        {("t", 0): E.ILLEGAL_GENERATION}
    assert c.group("nope") is None
    ids, gen, _ = make_stable(c, s, "g", 1)
    # A group with members takes commits from members only (Kafka: UNKNOWN_MEMBER_ID).
    assert c.commit_offsets("g", -1, "", None, {("t", 0): OffsetCommit(1)}) == \
        {("t", 0): E.UNKNOWN_MEMBER_ID}
    assert c.commit_offsets("g", gen, "ghost", None, {("t", 0): OffsetCommit(1)}) == \
        {("t", 0): E.UNKNOWN_MEMBER_ID}
    assert c.commit_offsets("g", gen, ids[0], None, {("t", 0): OffsetCommit(9)}) == \
        {("t", 0): E.NONE}


def test_commit_with_stale_generation_is_illegal_generation():
    s, c = make()
    ids, gen, _ = make_stable(c, s, "g", 1)
    assert c.commit_offsets("g", gen - 1, ids[0], None, {("t", 0): OffsetCommit(1)}) == \
        {("t", 0): E.ILLEGAL_GENERATION}
    assert c.fetch_offsets("g", None) == (E.NONE, {})


def test_commits_during_a_rebalance_follow_kafka():
    s, c = make()
    ids, gen, leader = make_stable(c, s, "g", 2)
    follower = next(m for m in ids if m != leader)
    tp = ("t", 0)
    lbox = join(c, "g", leader)
    # PreparingRebalance: the generation has not moved, commits with it are accepted
    # (consumers commit in onPartitionsRevoked before rejoining).
    assert c.commit_offsets("g", gen, follower, None, {tp: OffsetCommit(10)}) == {tp: E.NONE}
    fbox = join(c, "g", follower)
    new_gen = lbox.one().generation_id
    assert new_gen == fbox.one().generation_id == gen + 1
    # CompletingRebalance: the previous generation is now stale...
    assert c.commit_offsets("g", gen, follower, None, {tp: OffsetCommit(11)}) == \
        {tp: E.ILLEGAL_GENERATION}
    # ... and the new one has no assignment yet.
    assert c.commit_offsets("g", new_gen, follower, None, {tp: OffsetCommit(12)}) == \
        {tp: E.REBALANCE_IN_PROGRESS}
    sync(c, "g", new_gen, leader, {leader: b"", follower: b""})
    assert c.commit_offsets("g", new_gen, follower, None, {tp: OffsetCommit(13)}) == {tp: E.NONE}
    assert c.fetch_offsets("g", [tp])[1][tp].offset == 13


def test_offset_metadata_too_large_is_per_partition():
    s, c = make(offset_metadata_max_bytes=10)
    res = c.commit_offsets("g", -1, "", None, {("t", 0): OffsetCommit(1, metadata="x" * 10),
                                               ("t", 1): OffsetCommit(2, metadata="x" * 11)})
    assert res == {("t", 0): E.NONE, ("t", 1): E.OFFSET_METADATA_TOO_LARGE}
    assert set(c.fetch_offsets("g", None)[1]) == {("t", 0)}


def test_commit_append_failure_leaves_memory_unchanged():
    store = MemoryOffsetStore()
    s, c = make(store)
    tp = ("t", 0)
    c.commit_offsets("g", -1, "", None, {tp: OffsetCommit(1)})
    store.fail_with = KafkaError(code=E.NOT_ENOUGH_REPLICAS)
    assert c.commit_offsets("g", -1, "", None, {tp: OffsetCommit(2)}) == \
        {tp: E.COORDINATOR_NOT_AVAILABLE}
    store.fail_with = KafkaError(code=E.NOT_LEADER_OR_FOLLOWER)
    assert c.commit_offsets("g", -1, "", None, {tp: OffsetCommit(2)}) == {tp: E.NOT_COORDINATOR}
    store.fail_with = KafkaError(code=E.MESSAGE_TOO_LARGE)
    assert c.commit_offsets("g", -1, "", None, {tp: OffsetCommit(2)}) == \
        {tp: E.INVALID_COMMIT_OFFSET_SIZE}
    assert c.fetch_offsets("g", [tp])[1][tp].offset == 1
    # A simple group that never stored anything is not left behind.
    assert c.commit_offsets("fresh", -1, "", None, {tp: OffsetCommit(2)})[tp] != E.NONE
    assert c.group("fresh") is None


def test_leader_sync_append_failure_fails_everyone_and_rebalances():
    store = MemoryOffsetStore()
    s, c = make(store)
    results = form_group(c, s, "g", 2)
    gen, leader = results[0].generation_id, results[0].leader
    follower = next(r.member_id for r in results if r.member_id != leader)
    fbox = sync(c, "g", gen, follower)
    store.fail_with = KafkaError(code=E.NOT_LEADER_OR_FOLLOWER)
    lbox = sync(c, "g", gen, leader, {leader: b"L", follower: b"F"})
    assert lbox.one().error_code == fbox.one().error_code == E.NOT_COORDINATOR
    assert lbox.one().assignment == b""
    assert state(c, "g") == "PreparingRebalance"


def test_delete_offsets():
    s, c = make()
    assert c.delete_offsets("nope", [("t", 0)]) == (E.GROUP_ID_NOT_FOUND, {})
    meta = encode_subscription(["subscribed"])
    ids, gen, _ = make_stable(c, s, "g", 1, protocols=[("range", meta)])
    c.commit_offsets("g", gen, ids[0], None, {("subscribed", 0): OffsetCommit(1),
                                              ("old", 0): OffsetCommit(2)})
    err, res = c.delete_offsets("g", [("subscribed", 0), ("old", 0), ("never", 3)])
    assert err == E.NONE
    assert res == {("subscribed", 0): GROUP_SUBSCRIBED_TO_TOPIC, ("old", 0): E.NONE,
                   ("never", 3): E.NONE}
    assert int(res[("subscribed", 0)]) == 86
    assert set(c.fetch_offsets("g", None)[1]) == {("subscribed", 0)}
    c.leave_group("g", [(ids[0], None)])
    assert c.delete_offsets("g", [("subscribed", 0)]) == (E.NONE, {("subscribed", 0): E.NONE})
    # The Empty group had nothing left: it is gone.
    assert c.group("g") is None


def test_delete_offsets_of_non_consumer_group_with_members():
    s, c = make()
    boxes = [join(c, "connect", ptype="connect", protocols=[("default", b"x")])]
    s.advance(DELAY)
    assert boxes[0].one().error_code == E.NONE
    assert c.delete_offsets("connect", [("t", 0)]) == (E.NON_EMPTY_GROUP, {})


# ------------------------------------------------------------------ admin

def test_describe_group():
    s, c = make()
    d = c.describe_group("nope")
    assert (d.error_code, d.state, d.protocol_type, d.protocol_name, d.members) == \
        (E.NONE, "Dead", "", "", [])
    ids, gen, leader = make_stable(c, s, "g", 2, instances=["i-0", None])
    d = c.describe_group("g")
    assert (d.state, d.protocol_type, d.protocol_name) == ("Stable", "consumer", "range")
    assert [(m.member_id, m.group_instance_id, m.client_id, m.client_host, m.metadata,
             m.assignment) for m in d.members] == [
        (ids[0], "i-0", "c0", "/10.0.0.1", b"range-meta", b"a-" + ids[0].encode()),
        (ids[1], None, "c1", "/10.0.0.1", b"range-meta", b"a-" + ids[1].encode())]
    join(c, "g", leader, instance="i-0")
    d = c.describe_group("g")
    assert d.state == "PreparingRebalance" and d.protocol_name == ""
    assert all(m.metadata == b"" and m.assignment == b"" for m in d.members)


def test_list_groups_with_filters():
    s, c = make()
    make_stable(c, s, "stable", 1)
    c.commit_offsets("simple", -1, "", None, {("t", 0): OffsetCommit(1)})
    join(c, "joining")
    assert sorted(c.list_groups()) == sorted([
        ("stable", "consumer", "Stable", "classic"), ("simple", "", "Empty", "classic"),
        ("joining", "consumer", "PreparingRebalance", "classic")])
    assert [g.group_id for g in c.list_groups(["stable"])] == ["stable"]
    assert [g.group_id for g in c.list_groups(["Empty", "STABLE"], None)] == ["stable", "simple"]
    assert c.list_groups(None, ["consumer"]) == []
    assert len(c.list_groups([], ["Classic"])) == 3


def test_delete_groups():
    store = MemoryOffsetStore()
    s, c = make(store)
    ids, gen, _ = make_stable(c, s, "busy", 1)
    c.commit_offsets("idle", -1, "", None, {("t", 0): OffsetCommit(1), ("t", 1): OffsetCommit(2)})
    res = c.delete_groups(["busy", "idle", "nope"])
    assert res == {"busy": E.NON_EMPTY_GROUP, "idle": E.NONE, "nope": E.GROUP_ID_NOT_FOUND}
    assert c.group("idle") is None and c.fetch_offsets("idle", None) == (E.NONE, {})
    tail = store.decoded()[-3:]
    assert {k for k, v in tail} == {OffsetCommitKey("idle", "t", 0), OffsetCommitKey("idle", "t", 1),
                                    GroupMetadataKey("idle")}
    assert all(v is None for _, v in tail)
    assert state(c, "busy") == "Stable"


# ------------------------------------------------------------------ offsets expiry

def test_offsets_of_an_empty_group_expire_retention_after_it_emptied():
    store = MemoryOffsetStore()
    retention = 3600 * 1000
    s, c = make(store, offsets_retention_ms=retention, offsets_retention_check_interval_ms=60_000)
    ids, gen, _ = make_stable(c, s, "g", 1)
    c.commit_offsets("g", gen, ids[0], None, {("t", 0): OffsetCommit(5)})
    for _ in range(2 * retention // 5000):  # an old commit, but the member is alive
        s.advance(5000)
        assert c.heartbeat("g", gen, ids[0], None) == E.NONE
    assert c.on_offsets_expiry() == 0
    c.leave_group("g", [(ids[0], None)])
    assert state(c, "g") == "Empty"
    s.advance(retention - 60_000)
    assert c.fetch_offsets("g", None)[1].keys() == {("t", 0)}
    s.advance(120_000)            # the periodic check runs by itself
    assert c.group("g") is None
    assert c.fetch_offsets("g", None) == (E.NONE, {})
    assert (OffsetCommitKey("g", "t", 0), None) in store.decoded()
    assert store.decoded()[-1] == (GroupMetadataKey("g"), None)


def test_simple_group_offsets_expire_by_commit_time():
    retention = 10 * 60_000
    s, c = make(offsets_retention_ms=retention, offsets_retention_check_interval_ms=60_000)
    c.commit_offsets("simple", -1, "", None, {("t", 0): OffsetCommit(1)})
    s.advance(retention // 2)
    c.commit_offsets("simple", -1, "", None, {("t", 1): OffsetCommit(1)})
    s.advance(retention // 2)
    assert set(c.fetch_offsets("simple", None)[1]) == {("t", 1)}
    s.advance(retention // 2)
    assert c.group("simple") is None


def test_stable_consumer_group_keeps_subscribed_topics_offsets():
    retention = 10 * 60_000
    s, c = make(offsets_retention_ms=retention, offsets_retention_check_interval_ms=60_000,
                group_max_session_timeout_ms=3_600_000)
    meta = encode_subscription(["orders"], b"userdata", version=1)
    box = join(c, "g", protocols=[("range", meta)], session=3_600_000)
    s.advance(DELAY)
    r = box.one()
    sync(c, "g", r.generation_id, r.member_id, {r.member_id: b""})
    c.commit_offsets("g", r.generation_id, r.member_id, None,
                     {("orders", 0): OffsetCommit(1), ("retired", 0): OffsetCommit(2)})
    s.advance(retention + 60_000)
    assert set(c.fetch_offsets("g", None)[1]) == {("orders", 0)}
    assert state(c, "g") == "Stable"


def test_explicit_expire_timestamp_wins():
    s, c = make(offsets_retention_check_interval_ms=60_000)
    now = s.now_ms()
    c.commit_offsets("g", -1, "", None, {("t", 0): OffsetCommit(1, expire_timestamp=now + 60_000)})
    s.advance(60_000)
    assert c.group("g") is None


def test_expiry_append_failure_keeps_offsets_for_next_round():
    store = MemoryOffsetStore()
    s, c = make(store, offsets_retention_ms=60_000, offsets_retention_check_interval_ms=60_000)
    c.commit_offsets("g", -1, "", None, {("t", 0): OffsetCommit(1)})
    store.fail_with = KafkaError(code=E.NOT_ENOUGH_REPLICAS)
    s.advance(60_000)
    assert set(c.fetch_offsets("g", None)[1]) == {("t", 0)}
    store.fail_with = None
    s.advance(60_000)
    assert c.group("g") is None


# ------------------------------------------------------------------ persistence

def test_store_round_trip_rebuilds_offsets_and_groups():
    store = MemoryOffsetStore()
    s, c = make(store)
    ids, gen, leader = make_stable(c, s, "g", 2, instances=["i-0", None])
    c.commit_offsets("g", gen, ids[1], None, {("t", 0): OffsetCommit(7, 3, "meta ✓"),
                                              ("t", 1): OffsetCommit(8)})
    c.commit_offsets("simple", -1, "", None, {("u", 0): OffsetCommit(100, -1, "x")})
    c.commit_offsets("deleted", -1, "", None, {("u", 0): OffsetCommit(1)})
    c.delete_groups(["deleted"])
    c.commit_offsets("g", gen, ids[1], None, {("t", 1): OffsetCommit(9)})  # overwrites

    s2 = FakeScheduler(now_ms=s.now_ms() + 1000)
    c2 = GroupCoordinator(s2, GroupConfig(), MemoryOffsetStore())
    c2.load(store.records())
    assert c2.group("deleted") is None
    assert {tp: (o.offset, o.leader_epoch, o.metadata) for tp, o in
            c2.fetch_offsets("g", None)[1].items()} == \
        {("t", 0): (7, 3, "meta ✓"), ("t", 1): (9, -1, "")}
    assert c2.fetch_offsets("simple", [("u", 0)])[1][("u", 0)].metadata == "x"
    g1, g2 = c.group("g"), c2.group("g")
    assert g2.state.value == "Stable"
    assert (g2.generation_id, g2.protocol_type, g2.protocol_name, g2.leader_id) == \
        (g1.generation_id, g1.protocol_type, g1.protocol_name, g1.leader_id)
    assert {m: (x.group_instance_id, x.client_id, x.client_host, x.session_timeout_ms,
                x.rebalance_timeout_ms, x.assignment, x.metadata("range"))
            for m, x in g2.members.items()} == \
        {m: (x.group_instance_id, x.client_id, x.client_host, x.session_timeout_ms,
             x.rebalance_timeout_ms, x.assignment, x.metadata("range"))
         for m, x in g1.members.items()}
    assert g2.static_member_id("i-0") == ids[0]
    assert state(c2, "simple") == "Empty"
    # The members carry on against the new coordinator...
    assert c2.heartbeat("g", gen, ids[0], "i-0") == E.NONE
    assert sync(c2, "g", gen, ids[1]).one().assignment == b"a-" + ids[1].encode()
    # ... and one that does not heartbeat expires, as after a Kafka failover.
    for _ in range(3):
        s2.advance(SESSION // 2)
        c2.heartbeat("g", gen, ids[1], None)
    assert not c2.group("g").has(ids[0])
    assert state(c2, "g") == "PreparingRebalance"


def test_load_of_an_emptied_group_keeps_offsets_and_state_time():
    store = MemoryOffsetStore()
    retention = 3_600_000
    s, c = make(store, offsets_retention_ms=retention)
    ids, gen, _ = make_stable(c, s, "g", 1)
    c.commit_offsets("g", gen, ids[0], None, {("t", 0): OffsetCommit(3)})
    c.leave_group("g", [(ids[0], None)])
    emptied_at = s.now_ms()
    s2 = FakeScheduler(now_ms=emptied_at + retention - 1000)
    c2 = GroupCoordinator(s2, GroupConfig(offsets_retention_ms=retention))
    c2.load(store.compacted())
    g = c2.group("g")
    assert g.state.value == "Empty" and g.generation_id == gen + 1
    assert g.state_timestamp_ms == emptied_at
    assert c2.on_offsets_expiry() == 0
    s2.advance(1000)
    assert c2.on_offsets_expiry() == 1 and c2.group("g") is None


def test_load_rejects_garbage_and_skips_unknown_key_versions():
    s, c = make()
    with pytest.raises(KafkaError):
        c.load([(b"\x00\x01\x00\xff", b"")])
    with pytest.raises(KafkaError):
        c.load([(b"\x00\x02\x00\x01g", b"\x00\x63")])  # GroupMetadataValue v99
    c.load([(b"\x00\x05anything", b"whatever")])       # a KIP-848 record: skipped
    c.load([(b"\x00\x01\x00\xff", b"")], strict=False)
    assert c.groups == {}


# ------------------------------------------------------------------ answers

def test_every_parked_request_is_answered_exactly_once_and_reentrancy_is_safe():
    s, c = make()
    answers = []

    def follower_join(result):
        answers.append(("join", result.member_id))
        # Re-enter the coordinator from the callback, as an eager handler might.
        c.sync_group("g", result.generation_id, result.member_id, None, None, None, {},
                     lambda r: answers.append(("sync", r.error_code)))

    c.join_group("g", "", None, "c", "h", SESSION, REBALANCE, "consumer", PROTO, False, None,
                 lambda r: answers.append(("leader-join", r.member_id)))
    c.join_group("g", "", None, "c", "h", SESSION, REBALANCE, "consumer", PROTO, False, None,
                 follower_join)
    s.advance(2 * DELAY)
    assert [a[0] for a in answers] == ["leader-join", "join"]
    assert state(c, "g") == "CompletingRebalance"
    leader = answers[0][1]
    sync(c, "g", 1, leader, {})
    assert answers[-1] == ("sync", E.NONE)


def test_a_failing_respond_callback_does_not_break_the_group():
    s, c = make()

    def boom(_):
        raise RuntimeError("connection gone")

    c.join_group("g", "", None, "c", "h", SESSION, REBALANCE, "consumer", PROTO, False, None, boom)
    ok = join(c, "g")
    s.advance(2 * DELAY)
    assert ok.one().error_code == E.NONE and state(c, "g") == "CompletingRebalance"


# ------------------------------------------------------------------ schedulers

def test_fake_scheduler_runs_due_callbacks_in_deadline_order():
    s = FakeScheduler(now_ms=0)
    seen = []
    s.call_at(20, lambda: seen.append(("b", s.now_ms())))
    s.call_at(10, lambda: (seen.append(("a", s.now_ms())),
                           s.call_at(15, lambda: seen.append(("a2", s.now_ms())))))
    h = s.call_at(12, lambda: seen.append("cancelled"))
    s.cancel(h)
    assert s.advance(9) == 0 and seen == []
    s.advance(11)
    assert seen == [("a", 10), ("a2", 15), ("b", 20)] and s.now_ms() == 20


def test_loop_scheduler_runs_and_cancels_on_the_event_loop():
    async def main():
        loop = asyncio.get_running_loop()
        clock = SystemClock()
        sched = LoopScheduler(loop, clock)
        done = loop.create_future()
        seen = []
        cancelled = sched.call_at(sched.now_ms(), lambda: seen.append("cancelled"))
        sched.cancel(cancelled)
        sched.call_at(sched.now_ms() - 5, lambda: seen.append("past"))
        sched.call_at(sched.now_ms() + 1, lambda: done.set_result(None))

        def raising():
            raise RuntimeError("logged, not fatal")
        sched.call_at(sched.now_ms(), raising)
        await asyncio.wait_for(done, 1)
        return seen

    assert asyncio.run(main()) == ["past"]


def test_loop_scheduler_can_find_the_running_loop_itself():
    async def main():
        sched = LoopScheduler(SystemClock())   # no loop given: the running one
        done = asyncio.get_running_loop().create_future()
        sched.call_at(sched.now_ms(), lambda: done.set_result("ran"))
        return await asyncio.wait_for(done, 1)

    assert asyncio.run(main()) == "ran"


def test_loop_scheduler_arms_timers_set_outside_the_loop_once_a_loop_runs():
    sched = LoopScheduler(SystemClock())
    seen = []
    sched.call_at(sched.now_ms(), lambda: seen.append("early"))   # no loop yet
    cancelled = sched.call_at(sched.now_ms(), lambda: seen.append("cancelled"))
    sched.cancel(cancelled)

    async def main():
        done = asyncio.get_running_loop().create_future()
        sched.call_at(sched.now_ms() + 1, lambda: done.set_result(None))
        await asyncio.wait_for(done, 1)

    asyncio.run(main())
    assert seen == ["early"]


def test_coordinator_close_cancels_its_timers():
    s, c = make()
    join(c, "g")
    c.close()
    assert s.pending() == []


# ------------------------------------------------------------------ random histories

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kafkette.coordinator.group import (  # noqa: E402
    COMPLETING_REBALANCE, EMPTY, PREPARING_REBALANCE, STABLE)


class Client:
    """A consumer that follows the protocol when asked to `step`, and misbehaves when
    the history says so (duplicate requests, restarts, silence)."""

    def __init__(self, idx, instance):
        self.idx, self.instance = idx, instance
        self.member_id, self.generation, self.synced = "", -1, -1
        self.join_box = self.sync_box = None
        self.meta = b"m0"

    def absorb(self):
        box = self.join_box
        if box and len(box) == 1 and not getattr(box, "seen", 0):
            box.seen = 1
            r = box[0]
            if r.error_code in (E.NONE, E.MEMBER_ID_REQUIRED):
                self.member_id, self.generation = r.member_id, r.generation_id
            else:
                self.member_id, self.generation = "", -1
        box = self.sync_box
        if box and len(box) == 1 and not getattr(box, "seen", 0):
            box.seen = 1
            if box[0].error_code == E.NONE:
                self.synced = self.generation

    def parked(self):
        return any(b is not None and len(b) == 0 for b in (self.join_box, self.sync_box))


def check_invariants(c, boxes):
    for box in boxes:
        assert len(box) <= 1, f"answered twice: {list(box)}"
    for gid, g in c.groups.items():
        assert gid == g.group_id
        if g.members:
            assert g.leader_id in g.members
        else:
            assert g.leader_id is None
        assert all(g.members[m].group_instance_id == i for i, m in g.static_members.items())
        assert len(g.static_members) == sum(1 for m in g.members.values() if m.is_static)
        assert g.pending_sync_members <= set(g.members)
        counts = {}
        for m in g.members.values():
            for name in set(m.protocol_names()):
                counts[name] = counts.get(name, 0) + 1
        assert {k: v for k, v in g.supported_protocols.items() if v} == counts
        if g.state is EMPTY:
            assert not g.members
        if g.state in (COMPLETING_REBALANCE, STABLE):
            assert g.members and g.protocol_name is not None
            assert all(not m.is_awaiting_join for m in g.members.values())
        if g.state is not COMPLETING_REBALANCE:
            assert all(not m.is_awaiting_sync for m in g.members.values())
        if g.state is PREPARING_REBALANCE:
            assert gid in c._join_timers or g.has_all_members_joined()
        # Liveness: every member and pending member is watched by a timer.
        for m in [*g.members, *g.pending_join_members]:
            assert (gid, m) in c._heartbeat_timers, f"{m} has no session timer"


ops = st.lists(st.tuples(
    st.sampled_from(["step"] * 3 + ["step_all"] * 6 + ["advance"] * 5 + [
        "join_v4", "dup_join", "dup_sync", "rejoin_new_meta", "leave", "commit", "restart",
        "heartbeat_only", "heartbeat_only"]),
    st.integers(0, 3),
    st.sampled_from([0, 300, 600, 1000, 2000, 4000, 11000])), min_size=10, max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_random_histories_answer_everything_once_and_keep_invariants(history):
    s, c = make(MemoryOffsetStore(), group_initial_rebalance_delay_ms=200)
    clients = [Client(i, "static-%d" % i if i % 2 else None) for i in range(4)]
    boxes = []

    def do_join(cl, member_id, require_known=False):
        cl.join_box = join(c, "g", member_id, cl.instance, [("range", cl.meta)],
                           rebalance=2000 if cl.idx < 2 else 20000,  # some > session
                           require_known=require_known, client=f"c{cl.idx}")
        boxes.append(cl.join_box)

    def do_sync(cl):
        g = c.group("g")
        assignments = {m: m.encode() for m in g.members} if g else {}
        cl.sync_box = sync(c, "g", cl.generation, cl.member_id, assignments, cl.instance)
        boxes.append(cl.sync_box)

    for op, who, ms in history:
        for other in clients:
            other.absorb()
        cl = clients[who]
        if op in ("step", "step_all"):
            for cl in (clients if op == "step_all" else [cl]):
                cl.absorb()
                if cl.parked():
                    pass
                elif not cl.member_id or cl.generation < 0:
                    do_join(cl, cl.member_id, require_known=True)
                elif cl.synced != cl.generation:
                    do_sync(cl)
                else:
                    code = c.heartbeat("g", cl.generation, cl.member_id, cl.instance)
                    if code == E.REBALANCE_IN_PROGRESS:
                        do_join(cl, cl.member_id)
                    elif code != E.NONE:
                        cl.member_id, cl.generation = "", -1
        elif op == "heartbeat_only":   # alive, but slow to rejoin (a long poll loop)
            c.heartbeat("g", cl.generation, cl.member_id, cl.instance)
        elif op == "join_v4":
            do_join(cl, cl.member_id, require_known=True)
        elif op == "dup_join":
            do_join(cl, cl.member_id)
        elif op == "dup_sync":
            do_sync(cl)
        elif op == "rejoin_new_meta":
            cl.meta = b"m" + bytes([len(boxes) % 250])
            do_join(cl, cl.member_id)
        elif op == "restart":
            do_join(cl, "")
        elif op == "leave":
            c.leave_group("g", [(cl.member_id, cl.instance)])
        elif op == "commit":
            c.commit_offsets("g", cl.generation, cl.member_id, cl.instance,
                             {("t", who): OffsetCommit(len(boxes))})
        else:
            s.advance(ms)
        check_invariants(c, boxes)
    # Everyone goes away: every parked request gets exactly one answer.
    for _ in range(40):
        s.advance(30_000)
        check_invariants(c, boxes)
    assert all(len(box) == 1 for box in boxes)
    g = c.group("g")
    assert g is None or (g.state is EMPTY and not g.members)


def test_group_config_from_broker_properties():
    props = {"group.min.session.timeout.ms": 1000, "group.max.session.timeout.ms": 2000,
             "group.initial.rebalance.delay.ms": 0, "group.max.size": 7,
             "offsets.retention.minutes": 2, "offset.metadata.max.bytes": 9,
             "offsets.retention.check.interval.ms": 5}
    assert GroupConfig.from_config(props) == GroupConfig(1000, 2000, 0, 7, 120_000, 9, 5)


def test_zero_initial_delay_completes_on_the_next_tick():
    s, c = make(group_initial_rebalance_delay_ms=0)
    box = join(c, "g")
    assert box == []          # never answered from inside join_group's own call
    s.run_due()
    assert box.one().generation_id == 1


# --- failover: a coordinator that loses its offsets partition unloads its groups -------

def test_unload_groups_answers_parked_requests_and_forgets_the_group():
    store = MemoryOffsetStore()
    s, c = make(store)
    results = form_group(c, s, "moving", 2)
    leader = results[0].leader
    follower = next(r.member_id for r in results if r.member_id != leader)
    parked = sync(c, "moving", results[0].generation_id, follower)
    assert not parked, "a follower's SyncGroup waits for the leader's assignment"
    c.commit_offsets("other", -1, "", None, {("t", 0): OffsetCommit(7)})
    assert c.unload_groups(lambda g: g == "moving") == 1
    assert parked.one().error_code == E.NOT_COORDINATOR
    assert "moving" not in c.groups and "other" in c.groups
    # The new coordinator loads what was written (the rebalance never completed, so
    # "moving" has no record yet) from the replicated records.
    c.unload_groups(lambda g: True)
    assert not c.groups
    c.load(store.records())
    assert set(c.groups) == {"other"}
    assert c.groups["other"].offsets[("t", 0)].offset == 7
