"""Transactional offset commits in the GroupCoordinator (KIP-98, KIP-447), sans-IO on a
FakeScheduler with a MemoryOffsetStore: pending offsets are invisible until their
transaction's marker, COMMIT applies them (the later record wins against a plain
commit), ABORT drops them, OffsetFetch require_stable reports them, KIP-447 fences
zombie members, and a reload replays committed, aborted and open transactions.

Expected behaviour is Apache Kafka's (GroupMetadata.scala / OffsetMetadataManager.java);
each test name says the rule."""
from __future__ import annotations

import pytest

from kafkette.coordinator import (
    FakeScheduler, GroupConfig, GroupCoordinator, MemoryOffsetStore, OffsetCommit)
from kafkette.coordinator.offsets_store import (
    LoadedRecord, OffsetCommitKey, OffsetCommitValue, TxnMarker, encode_offset_commit_key,
    encode_offset_commit_value, replay)
from kafkette.errors import ErrorCode, KafkaError

from test_group_coordinator import make_stable

E = ErrorCode
PID, EPOCH = 4000, 3
TP = ("orders", 0)
TP1 = ("orders", 1)


def make(store=None, **cfg):
    s = FakeScheduler(now_ms=1_700_000_000_000)
    store = store if store is not None else MemoryOffsetStore()
    return s, GroupCoordinator(s, GroupConfig(**cfg), store), store


def txn(c, gid, offsets, pid=PID, epoch=EPOCH, gen=-1, member="", instance=None):
    return c.commit_txn_offsets(gid, pid, epoch, gen, member, instance,
                                {tp: OffsetCommit(o) for tp, o in offsets.items()})


def committed(c, gid, tps=None):
    return {tp: o.offset for tp, o in c.fetch_offsets(gid, tps)[1].items()}


def reload(store, partition=None):
    s2 = FakeScheduler(now_ms=1_700_000_100_000)
    c2 = GroupCoordinator(s2, GroupConfig(), store)
    c2.load(store.load_items(partition))
    return c2


# ------------------------------------------------------------------ pending and completion

def test_txn_offsets_are_pending_and_invisible_until_commit():
    s, c, store = make()
    assert txn(c, "g", {TP: 10, TP1: 20}) == {TP: E.NONE, TP1: E.NONE}
    # Written as one transactional batch of the producer...
    assert [(i.producer_id, i.transactional) for _, i in store.items] == [(PID, True)] * 2
    # ...but not committed yet.
    assert committed(c, "g") == {}
    assert committed(c, "g", [TP]) == {}
    assert c.has_pending_txn_offsets(PID)
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {TP: 10, TP1: 20}
    assert not c.has_pending_txn_offsets(PID)


def test_abort_drops_the_pending_offsets_and_keeps_the_committed_ones():
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(5)})
    txn(c, "g", {TP: 10})
    c.complete_txn_offsets(PID, 0, commit=False)
    assert committed(c, "g") == {TP: 5}
    # A second marker for the same producer is a no-op.
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {TP: 5}


def test_a_later_txn_commit_in_the_same_transaction_replaces_the_earlier():
    s, c, store = make()
    txn(c, "g", {TP: 10})
    txn(c, "g", {TP: 12})
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {TP: 12}


def test_plain_commit_written_after_the_txn_offset_wins_at_commit():
    """Kafka: the offset whose record is later in the log is the committed one."""
    s, c, store = make()
    txn(c, "g", {TP: 10, TP1: 11})
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(99)})   # later record
    assert committed(c, "g") == {TP: 99}
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {TP: 99, TP1: 11}
    # And the same after a reload from the log.
    store.write_marker(PID, True)
    assert committed(reload(store), "g") == {TP: 99, TP1: 11}


def test_txn_offset_written_after_a_plain_commit_wins_at_commit():
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(5)})
    txn(c, "g", {TP: 10})
    assert committed(c, "g") == {TP: 5}
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {TP: 10}


def test_completion_only_touches_groups_of_the_marker_partition():
    store = MemoryOffsetStore(num_partitions=50)
    s, c, _ = make(store)
    a, b = "group-a", "group-b"
    pa, pb = store.partition_for(a), store.partition_for(b)
    assert pa != pb
    txn(c, a, {TP: 1})
    txn(c, b, {TP: 2})
    c.complete_txn_offsets(PID, pa, commit=True)
    assert committed(c, a) == {TP: 1} and committed(c, b) == {}
    assert c.has_pending_txn_offsets(PID)
    c.complete_txn_offsets(PID, pb, commit=False)
    assert committed(c, b) == {} and not c.has_pending_txn_offsets(PID)


def test_two_producers_complete_independently():
    s, c, store = make()
    txn(c, "g", {TP: 1}, pid=1)
    txn(c, "g", {TP1: 2}, pid=2)
    c.complete_txn_offsets(2, 0, commit=True)
    assert committed(c, "g") == {TP1: 2}
    c.complete_txn_offsets(1, 0, commit=False)
    assert committed(c, "g") == {TP1: 2}


def test_failed_append_leaves_nothing_pending():
    s, c, store = make()
    store.fail_with = KafkaError("down", E.NOT_LEADER_OR_FOLLOWER)
    assert txn(c, "g", {TP: 10}) == {TP: E.NOT_COORDINATOR}
    store.fail_with = None
    assert c.group("g") is None and not c.has_pending_txn_offsets(PID)
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {}


def test_metadata_too_large_is_refused_per_partition():
    s, c, store = make(offset_metadata_max_bytes=4)
    res = c.commit_txn_offsets("g", PID, EPOCH, -1, "", None,
                               {TP: OffsetCommit(1, metadata="toolong"), TP1: OffsetCommit(2)})
    assert res == {TP: E.OFFSET_METADATA_TOO_LARGE, TP1: E.NONE}
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {TP1: 2}


# ------------------------------------------------------------------ OffsetFetch require_stable

def test_require_stable_reports_partitions_with_pending_offsets():
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(5), TP1: OffsetCommit(6)})
    txn(c, "g", {TP: 10, ("other", 0): 7})
    # Without require_stable the committed offsets are returned as they are.
    assert committed(c, "g") == {TP: 5, TP1: 6}
    assert c.unstable_offsets("g", [TP, TP1, ("other", 0)]) == {TP, ("other", 0)}
    err, found = c.fetch_offsets("g", [TP, TP1], require_stable=True)
    assert err == E.NONE and set(found) == {TP1}
    # All partitions: Kafka lists the committed ones, so ("other", 0) is not reported.
    assert c.unstable_offsets("g", None) == {TP}
    assert set(c.fetch_offsets("g", None, require_stable=True)[1]) == {TP1}
    c.complete_txn_offsets(PID, 0, commit=True)
    assert c.unstable_offsets("g", None) == set()
    assert {tp: o.offset for tp, o in c.fetch_offsets("g", None, require_stable=True)[1].items()} \
        == {TP: 10, TP1: 6, ("other", 0): 7}


def test_unknown_group_is_stable():
    s, c, store = make()
    assert c.unstable_offsets("nope", [TP]) == set()
    assert c.fetch_offsets("nope", [TP], require_stable=True) == (E.NONE, {})


# ------------------------------------------------------------------ KIP-447 fencing

def test_kip447_generation_and_member_are_checked():
    s, c, store = make()
    ids, gen, _ = make_stable(c, s, "g", 2)
    member = ids[0]
    assert txn(c, "g", {TP: 1}, gen=gen, member=member) == {TP: E.NONE}
    assert txn(c, "g", {TP: 1}, gen=gen - 1, member=member) == {TP: E.ILLEGAL_GENERATION}
    assert txn(c, "g", {TP: 1}, gen=gen, member="zombie") == {TP: E.UNKNOWN_MEMBER_ID}
    # v0-2: no generation, no member: accepted even though the group has members (a
    # plain OffsetCommit would be UNKNOWN_MEMBER_ID).
    assert txn(c, "g", {TP: 1}) == {TP: E.NONE}
    assert c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(1)}) == \
        {TP: E.UNKNOWN_MEMBER_ID}


def test_kip447_static_member_fencing():
    s, c, store = make()
    ids, gen, _ = make_stable(c, s, "g", 1, instances=["i-1"])
    assert txn(c, "g", {TP: 1}, gen=gen, member=ids[0], instance="i-1") == {TP: E.NONE}
    assert txn(c, "g", {TP: 1}, gen=gen, member="old-incarnation", instance="i-1") == \
        {TP: E.FENCED_INSTANCE_ID}
    assert txn(c, "g", {TP: 1}, gen=gen, member=ids[0], instance="i-unknown") == \
        {TP: E.UNKNOWN_MEMBER_ID}


def test_kip447_rebalance_state_is_not_enforced():
    """Kafka: unlike OffsetCommit, no REBALANCE_IN_PROGRESS for CompletingRebalance."""
    s, c, store = make(group_initial_rebalance_delay_ms=0)
    box = []
    c.join_group("g", "", None, "c", "h", 10_000, 10_000, "consumer", [("range", b"")],
                 False, None, box.append)
    s.advance(0)
    r = box[0]
    assert c.group("g").state.value == "CompletingRebalance"
    assert c.commit_offsets("g", r.generation_id, r.member_id, None,
                            {TP: OffsetCommit(1)}) == {TP: E.REBALANCE_IN_PROGRESS}
    assert txn(c, "g", {TP: 1}, gen=r.generation_id, member=r.member_id) == {TP: E.NONE}


def test_unknown_group_is_created_for_generation_minus_one_only():
    s, c, store = make()
    assert txn(c, "new", {TP: 1}, gen=3, member="m") == {TP: E.ILLEGAL_GENERATION}
    assert c.group("new") is None
    assert txn(c, "new", {TP: 1}) == {TP: E.NONE}
    assert c.group("new").state.value == "Empty"


# ------------------------------------------------------------------ load

def test_load_replays_committed_aborted_and_open_transactions():
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(1)})
    txn(c, "g", {TP: 10}, pid=1)            # committed below
    txn(c, "g", {TP1: 20}, pid=2)           # aborted below
    txn(c, "g", {("open", 0): 30}, pid=3)   # no marker yet
    txn(c, "only-pending", {TP: 40}, pid=3)
    store.write_marker(1, True)
    store.write_marker(2, False)
    c2 = reload(store)
    assert committed(c2, "g") == {TP: 10}
    assert c2.unstable_offsets("g", [("open", 0)]) == {("open", 0)}
    # A group known only by a pending offset is loaded (Empty) with it.
    assert c2.group("only-pending").state.value == "Empty"
    assert committed(c2, "only-pending") == {}
    # The open transaction's marker arrives after the load.
    c2.complete_txn_offsets(3, 0, commit=True)
    assert committed(c2, "g") == {TP: 10, ("open", 0): 30}
    assert committed(c2, "only-pending") == {TP: 40}


def test_load_keeps_the_later_record_between_plain_and_txn_commits():
    s, c, store = make()
    txn(c, "g", {TP: 10})
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(99)})
    store.write_marker(PID, True)
    assert committed(reload(store), "g") == {TP: 99}
    # After the reload a new transaction still orders against the loaded records.
    c2 = reload(store)
    txn(c2, "g", {TP: 123}, pid=9)
    c2.complete_txn_offsets(9, 0, commit=True)
    assert committed(c2, "g") == {TP: 123}


def test_replay_tombstone_drops_pending_offsets_of_its_partition():
    k = encode_offset_commit_key("g", *TP)
    v = encode_offset_commit_value(OffsetCommitValue(10))
    out = replay([LoadedRecord(k, v, 0, PID, True), LoadedRecord(k, None, 1),
                  TxnMarker(PID, True, 2)])
    assert out.offsets.get("g", {}) == {} and out.pending == {}
    out = replay([LoadedRecord(k, v, 0, PID, True)])
    assert out.pending == {PID: {"g": {TP: (OffsetCommitValue(10), 0)}}}


def test_load_accepts_plain_key_value_pairs_as_before():
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(7)})
    c2 = GroupCoordinator(FakeScheduler(), GroupConfig(), MemoryOffsetStore())
    c2.load(store.records())
    assert committed(c2, "g") == {TP: 7}


# ------------------------------------------------------------------ expiry, deletion

def test_expiry_keeps_offsets_with_pending_txn_and_groups_with_open_transactions():
    retention = 3600 * 1000
    s, c, store = make(offsets_retention_ms=retention,
                       offsets_retention_check_interval_ms=10 * retention)
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(5), TP1: OffsetCommit(6)})
    txn(c, "txn-only", {TP: 1}, pid=77)
    s.advance(retention // 2)
    txn(c, "g", {TP: 10})                       # committed at its request's time
    s.advance(retention // 2 + 1)
    assert c.on_offsets_expiry() == 1           # TP1 only: TP has a pending offset
    assert committed(c, "g") == {TP: 5}
    assert c.group("txn-only") is not None      # an open transaction keeps the group
    c.complete_txn_offsets(PID, 0, commit=True)
    c.complete_txn_offsets(77, 0, commit=False)
    assert committed(c, "g") == {TP: 10}
    assert c.on_offsets_expiry() == 0           # TP's offset is only half as old
    assert c.group("txn-only") is None          # nothing left: dropped
    s.advance(retention // 2)
    assert c.on_offsets_expiry() == 1 and c.group("g") is None


def test_delete_groups_deletes_an_empty_group_with_pending_offsets():
    """Kafka deletes an Empty group whatever its open transactions; a partition only
    a transaction has an offset for gets a tombstone too, so a reload agrees."""
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(5)})
    txn(c, "g", {TP: 10, TP1: 11})
    assert c.delete_groups(["g"]) == {"g": E.NONE}
    tombstones = {k for k, v in store.decoded()[-3:] if v is None}
    assert {OffsetCommitKey("g", *TP), OffsetCommitKey("g", *TP1)} <= tombstones
    assert not c.has_pending_txn_offsets(PID)
    c.complete_txn_offsets(PID, 0, commit=True)   # the marker comes later: no effect
    assert c.group("g") is None
    store.write_marker(PID, True)
    assert reload(store).group("g") is None


def test_delete_groups_still_refuses_groups_with_members():
    s, c, store = make()
    ids, gen, _ = make_stable(c, s, "g", 1)
    txn(c, "g", {TP: 1}, gen=gen, member=ids[0])
    assert c.delete_groups(["g"]) == {"g": E.NON_EMPTY_GROUP}
    assert c.has_pending_txn_offsets(PID)


def test_offset_delete_tombstones_pending_offsets_and_keeps_the_group_open():
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(5)})
    txn(c, "g", {TP: 10, TP1: 11})
    err, parts = c.delete_offsets("g", [TP, TP1])
    assert err == E.NONE and parts == {TP: E.NONE, TP1: E.NONE}
    assert {k for k, v in store.decoded()[-2:] if v is None} == \
        {OffsetCommitKey("g", *TP), OffsetCommitKey("g", *TP1)}
    assert c.unstable_offsets("g", [TP, TP1]) == set()
    assert c.group("g") is not None               # its transaction is still open
    c.complete_txn_offsets(PID, 0, commit=True)
    assert committed(c, "g") == {}
    store.write_marker(PID, True)
    assert committed(reload(store), "g") == {}


def test_unloading_a_group_forgets_its_pending_offsets():
    s, c, store = make()
    txn(c, "g", {TP: 10})
    assert c.unload_groups(lambda g: g == "g") == 1
    assert not c.has_pending_txn_offsets(PID)
    c.complete_txn_offsets(PID, 0, commit=True)
    assert c.group("g") is None


@pytest.mark.parametrize("commit", [True, False])
def test_marker_for_a_producer_with_nothing_pending_is_ignored(commit):
    s, c, store = make()
    c.commit_offsets("g", -1, "", None, {TP: OffsetCommit(5)})
    c.complete_txn_offsets(123, 0, commit=commit)
    assert committed(c, "g") == {TP: 5}
