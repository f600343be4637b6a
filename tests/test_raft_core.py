"""Unit tests of the Raft core's roles and transitions, driven by messages and a fake
clock (integers), no network (kafkette.controller.raft.core)."""
from __future__ import annotations

import random
from collections import deque

import pytest

from kafkette.controller.raft import messages as m
from kafkette.controller.raft.core import (
    Appended,
    Apply,
    Candidate,
    Follower,
    HighWatermark,
    Leader,
    LeaderChanged,
    LoadSnapshot,
    NotLeaderError,
    Prospective,
    RaftConfig,
    RaftNode,
    Resigned,
    Send,
    TakeSnapshot,
    Unattached,
)
from kafkette.controller.raft.messages import Entry, SnapshotId
from kafkette.controller.raft.storage import MemoryLog, QuorumState


def cfg(**kw) -> RaftConfig:
    base = dict(election_timeout_ms=1000, fetch_timeout_ms=2000, election_backoff_max_ms=1000,
                fetch_max_wait_ms=500, request_timeout_ms=1000, begin_epoch_retry_ms=200)
    base.update(kw)
    return RaftConfig(**base)


def node(node_id=1, voters=(1, 2, 3), log=None, **kw) -> RaftNode:
    return RaftNode(node_id, voters, log if log is not None else MemoryLog(), cfg(**kw), random.Random(node_id))


def sends(actions, typ=None):
    return [(a.dst, a.message) for a in actions if isinstance(a, Send) and (typ is None or isinstance(a.message, typ))]


def of(actions, typ):
    return [a for a in actions if isinstance(a, typ)]


def make_leader(n: RaftNode, now=0) -> list:
    """Drive node n from a fresh start to Leader through pre-vote and vote."""
    n.start(now)
    acts = n.tick(n.next_deadline())
    t = n.next_deadline() - 1
    pre = sends(acts, m.VoteRequest)
    acts = n.receive(pre[0][0], m.VoteResponse(pre[0][1].rid, n.epoch, None, True, True), t)
    votes = sends(acts, m.VoteRequest)
    assert isinstance(n.role, Candidate)
    return n.receive(votes[0][0], m.VoteResponse(votes[0][1].rid, n.epoch, None, True, False), t)


# --- Unattached / Prospective / Candidate --------------------------------------------------------
def test_starts_unattached_with_randomized_election_timeout():
    n = node()
    acts = n.start(0)
    assert isinstance(n.role, Unattached) and n.epoch == 0
    assert 1000 <= n.next_deadline() <= 2000
    assert of(acts, LeaderChanged) == [LeaderChanged(None, 0)]
    # Different rngs give different timeouts (randomization is what breaks split votes).
    d = set()
    for seed in range(5):
        k = RaftNode(1, (1, 2, 3), MemoryLog(), cfg(), random.Random(seed))
        k.start(0)
        d.add(k.next_deadline())
    assert len(d) > 1


def test_election_timeout_starts_a_pre_vote_without_bumping_the_epoch():
    log = MemoryLog()
    n = node(log=log)
    n.start(0)
    acts = n.tick(n.next_deadline() - 1)
    assert isinstance(n.role, Unattached) and not sends(acts)
    acts = n.tick(n.next_deadline())
    assert isinstance(n.role, Prospective)
    reqs = sends(acts, m.VoteRequest)
    assert sorted(d for d, _ in reqs) == [2, 3]
    assert all(r.pre_vote and r.epoch == 0 and r.candidate_id == 1 for _, r in reqs)
    assert log.read_quorum_state() == QuorumState(0, None, None)  # nothing persisted


def test_pre_vote_majority_makes_a_candidate_that_persists_its_vote_first():
    log = MemoryLog()
    n = node(log=log)
    n.start(0)
    acts = n.tick(n.next_deadline())
    (dst, req), _ = sends(acts, m.VoteRequest)
    acts = n.receive(dst, m.VoteResponse(req.rid, 0, None, True, True), 10)
    assert isinstance(n.role, Candidate) and n.epoch == 1
    assert log.read_quorum_state() == QuorumState(1, 1, None)
    votes = sends(acts, m.VoteRequest)
    assert sorted(d for d, _ in votes) == [2, 3] and all(not r.pre_vote and r.epoch == 1 for _, r in votes)


def test_pre_vote_majority_rejection_backs_off_and_retries():
    n = node()
    n.start(0)
    acts = n.tick(n.next_deadline())
    reqs = sends(acts, m.VoteRequest)
    for dst, req in reqs:
        n.receive(dst, m.VoteResponse(req.rid, 0, None, False, True), 5)
    assert isinstance(n.role, Prospective) and n.epoch == 0
    assert n.next_deadline() <= 5 + 1000
    acts = n.tick(n.next_deadline())
    assert isinstance(n.role, Prospective) and sends(acts, m.VoteRequest)


def test_candidate_majority_becomes_leader_with_control_entry_and_begin_quorum_epoch():
    log = MemoryLog()
    n = node(log=log)
    acts = make_leader(n)
    assert isinstance(n.role, Leader) and n.epoch == 1 and n.leader_id == 1
    assert log.read_quorum_state() == QuorumState(1, 1, 1)
    (e,) = log.entries()
    assert e.offset == 0 and e.epoch == 1 and e.control
    assert sorted(d for d, _ in sends(acts, m.BeginQuorumEpochRequest)) == [2, 3]
    assert LeaderChanged(1, 1) in acts
    assert not n.leader_ready  # not committed yet


def test_candidate_timeout_goes_back_to_prospective():
    n = node()
    n.start(0)
    acts = n.tick(n.next_deadline())
    (dst, req), _ = sends(acts, m.VoteRequest)
    n.receive(dst, m.VoteResponse(req.rid, 0, None, True, True), 10)
    assert isinstance(n.role, Candidate)
    n.tick(n.next_deadline())
    assert isinstance(n.role, Prospective) and n.epoch == 1


def test_candidate_learning_the_leader_of_its_epoch_follows_it():
    n = node()
    n.start(0)
    acts = n.tick(n.next_deadline())
    (dst, req), _ = sends(acts, m.VoteRequest)
    n.receive(dst, m.VoteResponse(req.rid, 0, None, True, True), 10)
    acts = n.receive(3, m.BeginQuorumEpochRequest(7, 1, 3), 11)
    assert isinstance(n.role, Follower) and n.leader_id == 3 and n.epoch == 1
    assert sends(acts, m.FetchRequest)[0][0] == 3


# --- voting rules ------------------------------------------------------------------------------------
def test_vote_granted_once_per_epoch_and_persisted_before_the_answer():
    log = MemoryLog()
    n = node(log=log)
    n.start(0)
    acts = n.receive(2, m.VoteRequest(1, 2, 2, 0, 0), 5)
    (_, resp), = sends(acts, m.VoteResponse)
    assert resp.granted and resp.epoch == 2
    assert log.read_quorum_state() == QuorumState(2, 2, None)
    acts = n.receive(3, m.VoteRequest(1, 2, 3, 0, 0), 6)
    assert not sends(acts, m.VoteResponse)[0][1].granted
    # The same candidate asking again (a retry) gets the same answer.
    assert sends(n.receive(2, m.VoteRequest(2, 2, 2, 0, 0), 7), m.VoteResponse)[0][1].granted


def test_vote_refused_to_a_candidate_with_a_shorter_or_older_log():
    log = MemoryLog()
    log.append(Entry(0, 1, (b"a",)))
    log.append(Entry(1, 2, (b"b",)))
    n = node(log=log)
    n.start(0)
    assert not sends(n.receive(2, m.VoteRequest(1, 3, 2, 2, 1), 1), m.VoteResponse)[0][1].granted
    assert not sends(n.receive(2, m.VoteRequest(2, 4, 2, 1, 5), 1), m.VoteResponse)[0][1].granted
    assert sends(n.receive(2, m.VoteRequest(3, 5, 2, 2, 2), 1), m.VoteResponse)[0][1].granted


def test_stale_epoch_requests_are_fenced():
    n = node()
    n.start(0)
    n.receive(2, m.VoteRequest(1, 5, 2, 0, 0), 1)
    (_, resp), = sends(n.receive(3, m.FetchRequest(1, 3, 3, 0, 0), 2), m.FetchResponse)
    assert resp.epoch == 5 and resp.error != 0


def test_pre_vote_refused_by_a_follower_that_hears_from_its_leader_and_changes_nothing():
    """KIP-996: a node coming back from a partition cannot disrupt a healthy quorum."""
    log = MemoryLog()
    n = node(log=log)
    n.start(0)
    acts = n.receive(2, m.BeginQuorumEpochRequest(1, 4, 2), 10)
    (_, fetch), = sends(acts, m.FetchRequest)
    n.receive(2, m.FetchResponse(fetch.rid, 4, 2, high_watermark=0), 11)
    acts = n.receive(3, m.VoteRequest(9, 9, 3, 9, 100, pre_vote=True), 12)
    (_, resp), = sends(acts, m.VoteResponse)
    assert not resp.granted and resp.pre_vote and resp.leader_id == 2
    assert isinstance(n.role, Follower) and n.epoch == 4 and log.read_quorum_state().epoch == 4
    # Once the leader has been silent for fetch.timeout, the same pre-vote is granted.
    n.tick(11 + 2000)
    assert isinstance(n.role, Prospective)
    (_, resp), = sends(n.receive(3, m.VoteRequest(10, 9, 3, 9, 100, pre_vote=True), 2013), m.VoteResponse)
    assert resp.granted and n.epoch == 4


# --- Follower ------------------------------------------------------------------------------------------
def follower_of_2(log=None, epoch=1):
    n = node(log=log)
    n.start(0)
    acts = n.receive(2, m.BeginQuorumEpochRequest(1, epoch, 2), 1)
    assert isinstance(n.role, Follower)
    return n, sends(acts, m.FetchRequest)[0][1]


def test_follower_appends_fetched_entries_flushes_then_fetches_on_and_follows_the_high_watermark():
    log = MemoryLog()
    n, f = follower_of_2(log)
    assert (f.fetch_offset, f.last_fetched_epoch) == (0, 0)
    entries = (Entry(0, 1, (b"c",), True), Entry(1, 1, (b"x", b"y")))
    acts = n.receive(2, m.FetchResponse(f.rid, 1, 2, high_watermark=1, entries=entries), 5)
    assert log.log_end_offset == 3 and n.needs_flush
    assert not sends(acts, m.FetchRequest)           # not before the flush
    assert of(acts, HighWatermark) == [HighWatermark(1)]
    assert not of(acts, Apply)                      # offset 0 is a control entry
    acts = n.flush(6)
    assert log.flushed_end_offset == 3
    (_, f2), = sends(acts, m.FetchRequest)
    assert (f2.fetch_offset, f2.last_fetched_epoch) == (3, 1)
    acts = n.receive(2, m.FetchResponse(f2.rid, 1, 2, high_watermark=3), 7)
    assert of(acts, HighWatermark) == [HighWatermark(3)]
    assert [a.entry.values for a in of(acts, Apply)] == [(b"x", b"y")]


def test_follower_ignores_stale_and_duplicated_fetch_responses():
    log = MemoryLog()
    n, f = follower_of_2(log)
    n.receive(2, m.FetchResponse(f.rid + 100, 1, 2, high_watermark=0, entries=(Entry(0, 1, (b"z",)),)), 5)
    assert log.log_end_offset == 0


def test_follower_truncates_on_a_diverging_epoch():
    log = MemoryLog()
    log.append(Entry(0, 1, (b"a",)))
    log.append(Entry(1, 2, (b"b",)))
    log.append(Entry(2, 2, (b"c",)))
    n, f = follower_of_2(log, epoch=3)
    assert (f.fetch_offset, f.last_fetched_epoch) == (3, 2)
    acts = n.receive(2, m.FetchResponse(f.rid, 3, 2, high_watermark=0, diverging_epoch=1,
                                        diverging_end_offset=1), 5)
    assert log.log_end_offset == 1
    (_, f2), = sends(acts, m.FetchRequest)
    assert (f2.fetch_offset, f2.last_fetched_epoch) == (1, 1)


def test_follower_fetch_timeout_starts_a_pre_vote_and_a_lost_fetch_is_resent():
    n, f = follower_of_2()
    acts = n.tick(1 + 1000)  # request timeout: re-send
    (_, f2), = sends(acts, m.FetchRequest)
    assert f2.rid != f.rid and isinstance(n.role, Follower)
    acts = n.tick(1 + 2000)
    assert isinstance(n.role, Prospective) and n.epoch == 1
    assert all(r.pre_vote for _, r in sends(acts, m.VoteRequest))


def test_end_quorum_epoch_makes_followers_elect_soon():
    n, _ = follower_of_2()
    acts = n.receive(2, m.EndQuorumEpochRequest(3, 1, 2, (1, 3)), 100)
    assert isinstance(n.role, Unattached) and n.epoch == 1
    assert n.next_deadline() < 100 + 1000  # sooner than an election timeout
    assert sends(acts, m.EndQuorumEpochResponse)


def test_restart_keeps_epoch_and_vote_and_a_leader_comes_back_resigned():
    log = MemoryLog()
    n = node(log=log)
    make_leader(n)
    n2 = node(log=log)
    n2.start(5)
    assert isinstance(n2.role, Resigned) and n2.epoch == 1 and not n2.is_leader
    log2 = MemoryLog()
    log2.write_quorum_state(QuorumState(4, 3, 3))
    n3 = node(log=log2)
    acts = n3.start(0)
    assert isinstance(n3.role, Follower) and n3.leader_id == 3 and n3.epoch == 4
    assert sends(acts, m.FetchRequest)[0][0] == 3


# --- Leader ----------------------------------------------------------------------------------------------
def test_leader_commits_on_a_durable_majority_only():
    log = MemoryLog()
    n = node(log=log)
    make_leader(n)
    # A follower has the control entry, but the leader has not flushed it: no commit.
    acts = n.receive(2, m.FetchRequest(50, 1, 2, 1, 1), 10)
    assert not of(acts, HighWatermark)
    acts = n.flush(11)
    assert of(acts, HighWatermark) == [HighWatermark(1)]
    assert n.leader_ready


def test_leader_does_not_commit_an_older_epoch_entry_by_counting_replicas():
    """Raft's rule (KRaft: the LeaderChange entry): entries of earlier epochs commit only
    with an entry of the leader's own epoch."""
    log = MemoryLog()
    log.append(Entry(0, 1, (b"old",)))
    log.flush()
    log.write_quorum_state(QuorumState(2, None, None))
    n = node(log=log)
    make_leader(n)
    assert n.epoch == 3
    n.flush(1)
    acts = n.receive(2, m.FetchRequest(50, 3, 2, 1, 1), 2)   # follower has the old entry only
    assert not of(acts, HighWatermark) and n.high_watermark == 0
    acts = n.receive(2, m.FetchRequest(51, 3, 2, 2, 3), 3)   # and now the control entry
    assert of(acts, HighWatermark) == [HighWatermark(2)]
    assert [a.entry.values for a in of(acts, Apply)] == [(b"old",)]


def test_leader_answers_diverging_or_snapshot_and_long_polls_at_the_log_end():
    log = MemoryLog()
    n = node(log=log)
    make_leader(n)
    n.flush(1)
    # A follower with an epoch-5 entry the leader never had.
    (_, r), = sends(n.receive(2, m.FetchRequest(1, 1, 2, 3, 5), 2), m.FetchResponse)
    assert (r.diverging_epoch, r.diverging_end_offset) == (1, 1)
    # A voter's first valid fetch commits the control entry and is answered at once
    # (the high watermark changed).
    (_, r), = sends(n.receive(3, m.FetchRequest(2, 1, 3, 1, 1, max_wait_ms=500), 3), m.FetchResponse)
    assert r.rid == 2 and r.high_watermark == 1 and not r.entries
    # At the log end with nothing new: parked, then answered by the next proposal.
    assert not sends(n.receive(3, m.FetchRequest(4, 1, 3, 1, 1, max_wait_ms=500), 4))
    (_, r), = sends(n.propose([b"v"], 5), m.FetchResponse)
    assert r.rid == 4 and [e.values for e in r.entries] == [(b"v",)]
    n.flush(6)
    (_, r), = sends(n.receive(3, m.FetchRequest(5, 1, 3, 2, 1, max_wait_ms=500), 7), m.FetchResponse)
    assert r.rid == 5 and r.high_watermark == 2
    # Parked with nothing new: answered empty once the max wait is over.
    assert not sends(n.receive(3, m.FetchRequest(6, 1, 3, 2, 1, max_wait_ms=500), 8))
    assert n.next_deadline() == 8 + 500
    assert not sends(n.tick(8 + 499), m.FetchResponse)
    (_, r), = sends(n.tick(8 + 500), m.FetchResponse)
    assert r.rid == 6 and not r.entries and r.error == 0


def test_propose_on_a_non_leader_raises():
    n = node()
    n.start(0)
    with pytest.raises(NotLeaderError):
        n.propose([b"x"], 1)


def test_check_quorum_resigns_a_leader_that_lost_its_majority():
    log = MemoryLog()
    n = node(log=log)
    make_leader(n, now=0)
    t0 = n.role.became_ms
    n.flush(t0)
    n.receive(2, m.FetchRequest(1, 1, 2, 1, 1), t0 + 100)   # then nothing more
    acts = n.tick(t0 + 2000)
    assert isinstance(n.role, Leader)                        # 2 fetched within the timeout
    acts = n.tick(t0 + 2100 + 500)
    assert isinstance(n.role, Resigned)
    assert sorted(d for d, _ in sends(acts, m.EndQuorumEpochRequest)) == [2, 3]
    assert LeaderChanged(None, 1) in acts
    assert log.read_quorum_state().leader_id == 1


def test_higher_epoch_vote_demotes_the_leader_and_releases_parked_fetches():
    n = node()
    make_leader(n)
    n.flush(1)
    n.receive(2, m.FetchRequest(1, 1, 2, 1, 1, max_wait_ms=500), 2)  # may answer: hw changed
    n.receive(2, m.FetchRequest(2, 1, 2, 1, 1, max_wait_ms=500), 3)  # parked
    acts = n.receive(3, m.VoteRequest(9, 7, 3, 1, 1), 4)
    assert isinstance(n.role, Unattached) and n.epoch == 7
    fetch_answers = [r for d, r in sends(acts, m.FetchResponse) if d == 2]
    assert fetch_answers and fetch_answers[0].error == m.NOT_LEADER_OR_FOLLOWER


def test_single_voter_leads_at_once_and_commits_an_existing_epoch_zero_log():
    """The compatibility case: a single-node data dir with JSON records in epoch-0
    batches and no quorum state."""
    log = MemoryLog()
    log.append(Entry(0, 0, (b'{"type":"ClusterIdRecord"}',)))
    log.append(Entry(1, 0, (b'{"a":1}', b'{"b":2}')))
    log.flush()
    n = RaftNode(1, (1,), log, cfg(), random.Random(1))
    acts = n.start(0)
    assert n.leader_ready and n.epoch == 1 and n.high_watermark == 4
    assert [a.entry.offset for a in of(acts, Apply)] == [0, 1]
    acts = n.propose([b"new"], 1)
    assert [a.entry.values for a in of(acts, Apply)] == [(b"new",)]


# --- snapshots -------------------------------------------------------------------------------------------
class Net:
    """Deliver everything at once, in order; flush right after each event."""

    def __init__(self, nodes):
        self.nodes = {n.node_id: n for n in nodes}
        self.down: set[int] = set()
        self.seen: dict[int, list] = {i: [] for i in self.nodes}

    def run(self, src_id, actions, now, limit=10_000):
        q = deque((src_id, a) for a in actions)
        while q and limit:
            limit -= 1
            who, a = q.popleft()
            self.seen[who].append(a)
            if isinstance(a, Send) and a.dst not in self.down:
                dst = self.nodes[a.dst]
                q.extend((a.dst, x) for x in dst.receive(who, a.message, now))
                if dst.needs_flush:
                    q.extend((a.dst, x) for x in dst.flush(now))
            if isinstance(a, TakeSnapshot):
                n = self.nodes[who]
                applied = [x.entry for x in self.seen[who] if isinstance(x, Apply)]
                q.extend((who, x) for x in n.snapshot(applied[-1].last_offset, b"state", now))
            n = self.nodes[who]
            if n.needs_flush:
                q.extend((who, x) for x in n.flush(now))


def test_snapshot_moves_the_log_start_and_a_lagging_follower_fetches_it_in_chunks():
    c = cfg(snapshot_chunk_bytes=2, max_bytes_between_snapshots=40)
    logs = {i: MemoryLog() for i in (1, 2, 3)}
    nodes = [RaftNode(i, (1, 2, 3), logs[i], c, random.Random(i)) for i in (1, 2, 3)]
    net = Net(nodes)
    for n in nodes:
        net.run(n.node_id, n.start(0), 0)
    net.down.add(3)
    leader = nodes[0]
    net.run(1, leader.tick(leader.next_deadline()), leader.next_deadline())
    assert leader.leader_ready
    for i in range(10):
        net.run(1, leader.propose([b"value-%d" % i], 3000 + i), 3000 + i)
    assert leader.log.log_start_offset > 0 and leader.log.latest_snapshot is not None
    assert logs[3].log_end_offset == 0
    net.down.clear()
    # Node 3 learns the leader and fetches: below the log start, so the snapshot first.
    net.run(1, leader.tick(leader.role.begin_retry_at), leader.role.begin_retry_at)
    loads = [a for a in net.seen[3] if isinstance(a, LoadSnapshot)]
    assert loads and loads[0].data == b"state" and loads[0].snapshot_id == leader.log.latest_snapshot
    assert logs[3].log_start_offset == leader.log.latest_snapshot.end_offset
    assert logs[3].log_end_offset == leader.log.log_end_offset
    snaps = [a for a in net.seen[1] if isinstance(a, Send) and isinstance(a.message, m.FetchSnapshotResponse)]
    assert len(snaps) >= 3  # b"state" in 2-byte chunks


def test_snapshot_ignored_when_not_at_an_applied_entry_boundary():
    n = RaftNode(1, (1,), MemoryLog(), cfg(), random.Random(1))
    n.start(0)
    n.propose([b"a", b"b"], 1)
    n.snapshot(1, b"x", 2)            # offset 1 is the middle of an entry
    assert n.log.latest_snapshot is None
    n.snapshot(2, b"x", 2)
    assert n.log.latest_snapshot == SnapshotId(3, 1) and n.log.log_start_offset == 3


def test_unflushed_entries_are_lost_on_crash_but_flushed_ones_and_the_vote_stay():
    log = MemoryLog()
    log.write_quorum_state(QuorumState(3, 2, None))
    log.append(Entry(0, 1, (b"a",)))
    log.flush()
    log.append(Entry(1, 1, (b"b",)))
    log.crash()
    assert log.log_end_offset == 1 and log.read_quorum_state() == QuorumState(3, 2, None)


def test_resigned_runs_for_election_after_its_timeout():
    log = MemoryLog()
    n = node(log=log)
    make_leader(n)
    acts = n.resign(10)
    assert isinstance(n.role, Resigned) and sorted(d for d, _ in sends(acts, m.EndQuorumEpochRequest)) == [2, 3]
    with pytest.raises(NotLeaderError):
        n.propose([b"x"], 11)
    acts = n.tick(n.next_deadline())
    assert isinstance(n.role, Prospective) and n.epoch == 1
    assert all(r.pre_vote for _, r in sends(acts, m.VoteRequest))


def test_follower_told_by_its_leader_that_it_no_longer_leads_starts_a_pre_vote_at_once():
    n, f = follower_of_2()
    n.receive(2, m.FetchResponse(f.rid, 1, None, m.NOT_LEADER_OR_FOLLOWER, 0), 5)
    assert isinstance(n.role, Prospective) and n.epoch == 1


def test_prospective_that_lost_its_round_goes_back_to_the_leader_it_knew():
    n, f = follower_of_2()
    acts = n.tick(1 + 2000)                                   # fetch timeout
    assert isinstance(n.role, Prospective)
    (d1, r1), (d2, r2) = sends(acts, m.VoteRequest)
    # Voters that still hear from leader 2 refuse and name it: not followed at once
    # (we just gave up on it) ...
    assert not sends(n.receive(d1, m.VoteResponse(r1.rid, 1, 2, False, True), 2002), m.FetchRequest)
    assert isinstance(n.role, Prospective)
    # ... but after losing the round we try it again instead of waiting forever.
    acts = n.receive(d2, m.VoteResponse(r2.rid, 1, 2, False, True), 2002)
    assert isinstance(n.role, Follower) and n.leader_id == 2
    assert [d for d, _ in sends(acts, m.FetchRequest)] == [2]


def test_leader_steps_down_for_a_pre_vote_from_a_voter_already_past_its_epoch():
    """Such a voter can never follow this leader again: only a new, higher epoch
    brings it back (with pre-vote, a partitioned node cannot raise its epoch alone)."""
    n = node()
    make_leader(n)
    acts = n.receive(3, m.VoteRequest(4, 5, 3, 0, 0, pre_vote=True), 10)
    (_, r), = sends(acts, m.VoteResponse)
    assert not r.granted and isinstance(n.role, Unattached) and n.epoch == 5


def test_pre_vote_with_a_higher_epoch_changes_nothing_on_a_non_leader():
    log = MemoryLog()
    n = node(log=log)
    n.start(0)
    (_, r), = sends(n.receive(3, m.VoteRequest(4, 5, 3, 0, 0, pre_vote=True), 10), m.VoteResponse)
    assert r.granted and n.epoch == 0 and log.read_quorum_state() == QuorumState()


def test_restart_remembers_the_vote_so_it_cannot_vote_twice_in_an_epoch():
    log = MemoryLog()
    n = node(log=log)
    n.start(0)
    assert sends(n.receive(2, m.VoteRequest(1, 3, 2, 0, 0), 1), m.VoteResponse)[0][1].granted
    n2 = node(log=log)                                        # crash + restart
    n2.start(5)
    assert isinstance(n2.role, Unattached) and n2.epoch == 3 and n2.role.voted_for == 2
    assert not sends(n2.receive(3, m.VoteRequest(1, 3, 3, 0, 0), 6), m.VoteResponse)[0][1].granted


# --- observers (broker-only nodes, process.roles=broker) --------------------------------------------------
def observer(node_id=9, voters=(1, 2, 3), log=None, **kw) -> RaftNode:
    return node(node_id, voters, log, **kw)


def test_observer_probes_a_voter_at_once_and_follows_the_leader_it_names():
    n = observer()
    assert n.observer
    acts = n.start(0)
    assert isinstance(n.role, Unattached)
    assert not sends(acts)                         # the probe waits for the first tick
    acts = n.tick(n.next_deadline())
    (dst, probe), = sends(acts)
    assert isinstance(probe, m.FetchRequest) and probe.replica_id == 9 and probe.max_wait_ms == 0
    assert dst in (1, 2, 3)
    # A voter that does not lead answers NOT_LEADER_OR_FOLLOWER naming the leader (KRaft's
    # FetchResponse CurrentLeader): the observer follows it, fetching from it.
    leader = 2 if dst != 2 else 3
    acts = n.receive(dst, m.FetchResponse(probe.rid, 4, leader, m.NOT_LEADER_OR_FOLLOWER), 10)
    assert isinstance(n.role, Follower) and (n.leader_id, n.epoch) == (leader, 4)
    (dst2, f), = sends(acts, m.FetchRequest)
    assert dst2 == leader and f.replica_id == 9 and f.max_wait_ms > 0
    assert of(acts, LeaderChanged) == [LeaderChanged(leader, 4)]


def test_observer_tries_every_voter_in_a_shuffled_round_when_none_answers():
    seen = []
    n = observer()
    n.start(0)
    t = 0
    for _ in range(6):
        t = n.next_deadline()
        (dst, probe), = sends(n.tick(t))
        seen.append(dst)
    assert sorted(seen[:3]) == [1, 2, 3] and sorted(seen[3:]) == [1, 2, 3]
    assert isinstance(n.role, Unattached) and n.epoch == 0
    # Different seeds give different orders (no observer always hammers voter 1 first).
    firsts = set()
    for seed in range(8):
        k = RaftNode(9, (1, 2, 3), MemoryLog(), cfg(), random.Random(seed))
        k.start(0)
        firsts.add(sends(k.tick(k.next_deadline()))[0][0])
    assert len(firsts) > 1


def test_observer_never_votes_never_runs_and_refuses_vote_requests():
    n = observer()
    n.start(0)
    # Hours of silence: it keeps probing and never asks anyone for a vote.
    t, kinds = 0, set()
    for _ in range(200):
        t = n.next_deadline()
        for _, msg in sends(n.tick(t)):
            kinds.add(type(msg))
    assert kinds == {m.FetchRequest}
    assert isinstance(n.role, Unattached)
    acts = n.receive(1, m.VoteRequest(7, 5, 1, 0, 0), t + 1)
    (_, resp), = sends(acts, m.VoteResponse)
    assert not resp.granted and resp.error == m.INCONSISTENT_VOTER_SET
    acts = n.receive(1, m.VoteRequest(8, 5, 1, 0, 0, pre_vote=True), t + 2)
    (_, resp), = sends(acts, m.VoteResponse)
    assert not resp.granted
    assert n.log.read_quorum_state().voted_for is None


def test_observer_whose_leader_goes_silent_probes_again_instead_of_electing():
    n = observer()
    n.start(0)
    (dst, probe), = sends(n.tick(n.next_deadline()))
    n.receive(dst, m.FetchResponse(probe.rid, 2, 1, m.NOT_LEADER_OR_FOLLOWER), 5)
    assert isinstance(n.role, Follower) and n.leader_id == 1
    acts = n.tick(5 + 2000)                         # fetch.timeout without an answer
    assert isinstance(n.role, Unattached) and n.epoch == 2
    assert not sends(acts, m.VoteRequest)
    (_, p2), = sends(n.tick(n.next_deadline()), m.FetchRequest)
    assert p2.epoch == 2
    # Its leader saying "I no longer lead" sends it probing at once too.
    n2 = observer()
    n2.start(0)
    (dst, probe), = sends(n2.tick(n2.next_deadline()))
    acts = n2.receive(dst, m.FetchResponse(probe.rid, 2, 1, m.NOT_LEADER_OR_FOLLOWER), 5)
    (_, f), = sends(acts, m.FetchRequest)
    n2.receive(1, m.FetchResponse(f.rid, 2, None, m.NOT_LEADER_OR_FOLLOWER), 6)
    assert isinstance(n2.role, Unattached) and not n2.is_leader


def test_leader_serves_an_observer_but_does_not_count_it_towards_the_high_watermark():
    log = MemoryLog()
    n = node(log=log)
    make_leader(n)
    n.flush(1)                                       # the control entry is durable here
    # The observer has everything; no voter has fetched: nothing may commit.
    acts = n.receive(9, m.FetchRequest(60, 1, 9, 0, 0), 10)
    (dst, resp), = sends(acts, m.FetchResponse)
    assert dst == 9 and resp.error == m.NONE and resp.entries and resp.leader_id == 1
    acts = n.receive(9, m.FetchRequest(61, 1, 9, 1, 1), 11)
    assert not of(acts, HighWatermark) and n.high_watermark == 0
    assert n.describe(12)["observers"] == {9: {"log_end_offset": 1, "last_fetch_ms": 11}}
    # One voter fetching past the entry makes a majority (leader + 2): now it commits, and
    # the observer learns the new high watermark from its next answer.
    acts = n.receive(2, m.FetchRequest(62, 1, 2, 1, 1), 13)
    assert of(acts, HighWatermark) == [HighWatermark(1)]
    # The observer does not keep the leader in office either (check-quorum counts voters).
    for t in range(14, 14 + 3 * 2000, 100):
        n.receive(9, m.FetchRequest(100 + t, 1, 9, 1, 1, 0), t)
        n.tick(t)
    assert isinstance(n.role, Resigned)


def test_observer_replicates_and_applies_the_committed_log_in_a_three_voter_net():
    logs = {i: MemoryLog() for i in (1, 2, 3, 9)}
    nodes = {i: RaftNode(i, (1, 2, 3), logs[i], cfg(), random.Random(i)) for i in (1, 2, 3, 9)}
    net = Net(list(nodes.values()))
    make_leader(nodes[1])
    for i in (2, 3, 9):
        net.run(i, nodes[i].start(0), 0)
    net.run(1, nodes[1].tick(1000), 1000)           # BeginQuorumEpoch to the voters only
    assert all(not isinstance(a.message, m.BeginQuorumEpochRequest) or a.dst != 9
               for a in net.seen[1] if isinstance(a, Send))
    t = 1000
    for _ in range(4):                               # the observer probes until it finds 1
        t += 500
        for i in (2, 3, 9):
            net.run(i, nodes[i].tick(t), t)
        net.run(1, nodes[1].tick(t), t)
    net.run(1, nodes[1].propose([b"topic-a"], t), t)
    for _ in range(6):
        t += 100
        for i in (1, 2, 3, 9):
            net.run(i, nodes[i].tick(t), t)
    assert nodes[9].leader_id == 1 and isinstance(nodes[9].role, Follower)
    applied = [x.entry.values for x in net.seen[9] if isinstance(x, Apply)]
    assert applied == [(b"new",), (b"topic-a",)] or applied[-1] == (b"topic-a",)
    assert nodes[9].high_watermark == nodes[1].high_watermark
    assert not any(isinstance(a, Send) and isinstance(a.message, m.VoteRequest) for a in net.seen[9])


def test_leader_forgets_an_observer_silent_for_the_observer_session_timeout():
    n = node(observer_session_timeout_ms=5000)
    make_leader(n)
    n.flush(1)
    n.receive(9, m.FetchRequest(60, 1, 9, 0, 0), 10)
    t = 10
    while t < 10 + 6000:                     # voters keep it leader, the observer is silent
        t += 400
        n.receive(2, m.FetchRequest(t, 1, 2, 1, 1, 0), t)
        n.tick(t)
        if t < 10 + 4000:
            assert 9 in n.describe(t)["observers"]
    assert n.is_leader and n.describe(t)["observers"] == {}


def test_observer_does_not_go_back_to_a_silent_leader_on_hearsay():
    n = observer()
    n.start(0)
    (dst, probe), = sends(n.tick(n.next_deadline()))
    n.receive(dst, m.FetchResponse(probe.rid, 2, 1, m.NOT_LEADER_OR_FOLLOWER), 5)
    n.tick(5 + 2000)                                  # leader 1 silent: probing
    (dst, p2), = sends(n.tick(n.next_deadline()), m.FetchRequest)
    if dst != 1:
        # A voter that has not timed out yet still names 1: not followed again.
        n.receive(dst, m.FetchResponse(p2.rid, 2, 1, m.NOT_LEADER_OR_FOLLOWER), n.next_deadline() - 1)
        assert isinstance(n.role, Unattached)
        (dst, p2), = sends(n.tick(n.next_deadline()), m.FetchRequest)
    # A newer epoch's leader is followed at once; so is 1 when it answers itself.
    other = next(v for v in (1, 2, 3) if v != 1)
    acts = n.receive(dst, m.FetchResponse(p2.rid, 3, other, m.NOT_LEADER_OR_FOLLOWER), n.next_deadline() - 1)
    assert isinstance(n.role, Follower) and (n.leader_id, n.epoch) == (other, 3)
    assert sends(acts, m.FetchRequest)[0][0] == other
