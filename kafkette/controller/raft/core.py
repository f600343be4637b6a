"""The Raft core of the controller quorum: a pure state machine in the style of KRaft
(KIP-595), with pre-vote (KIP-996) and check-quorum. No IO, no clock, no asyncio: it
takes events and returns actions.

Events (methods of `RaftNode`, each returns a list of actions):
    start(now)                      load the persisted state and pick the first role
    tick(now)                       timers (see next_deadline())
    receive(src, message, now)      a request or response from another voter
    propose(values, now)            leader only: append one entry (one atomic proposal)
    flush(now)                      make appended entries durable (the driver calls it
                                    soon after an event that appended; see needs_flush)
    snapshot(last_offset, data, now)  the state machine's snapshot, asked for by TakeSnapshot
Actions: Send, HighWatermark, Apply, LoadSnapshot, LeaderChanged, Appended, TakeSnapshot.

Roles and transitions (epoch = KRaft's leader epoch = Raft's term):

    Unattached(e, voted?)  --election timeout-->            Prospective(e)
    Prospective(e)         --majority of pre-votes-->       Candidate(e+1)
    Prospective(e)         --timeout / majority rejects-->  Follower(e, L) if it had given up
                                                            on leader L, else Prospective(e)
    Candidate(e)           --majority of votes-->           Leader(e)
    Candidate(e)           --election timeout-->            Prospective(e)
    Leader(e)              --no fetch from a majority for fetch.timeout (check-quorum),
                             or resign()-->                 Resigned(e)  (sends EndQuorumEpoch)
    Follower(e, L)         --no answer from L for fetch.timeout-->  Prospective(e)
    Resigned(e)            --election timeout-->            Prospective(e)
    any role               --message with epoch e' > e naming leader L--> Follower(e', L)
    any role               --message with epoch e' > e, no leader-->      Unattached(e')
    Unattached/Prospective/Candidate(e) --learns leader L of epoch e-->   Follower(e, L)
    Follower(e, L)         --EndQuorumEpoch(e, L)-->        Unattached(e) (short timeout)

Observers (a node whose id is not in the voter set: a broker-only node,
`process.roles=broker`) use two roles only, and never vote, never become Prospective or
Candidate, and never count towards the high watermark:

    Unattached(e)  --probe timer-->  Fetch to the next voter (a shuffled round; KRaft's
                                     observers fetch from a random bootstrap voter)
    Unattached(e)  --an answer naming leader L of epoch e' >= e-->  Follower(e', L)
    Follower(e, L) --no answer from L for fetch.timeout, or L says it does not lead
                     (NOT_LEADER_OR_FOLLOWER without a leader)-->  Unattached(e), probing
    Follower(e, L) --an answer naming leader L' of epoch e' > e-->  Follower(e', L')

An observer learns the leader only from Fetch answers (KRaft's FetchResponse
CurrentLeader: a voter that does not lead answers NOT_LEADER_OR_FOLLOWER with the leader
id and epoch it knows); voters never send it Vote, BeginQuorumEpoch or EndQuorumEpoch.
A voter that gets a Vote from it refuses (INCONSISTENT_VOTER_SET). The leader tracks an
observer's fetch offset (DescribeQuorum shows it) but the commit counts voters only.

A pre-vote (KIP-996) asks "would you vote for me?" without bumping the epoch; a voter
says yes only when the candidate's log is at least as up to date as its own AND it has
not heard from a leader within fetch.timeout. So a node that was partitioned away and
comes back cannot force an election on a healthy quorum (the disruptive-rejoin problem).

Replication is PULL-based, as in KRaft: followers send Fetch(fetch_offset,
last_fetched_epoch) to the leader; the leader validates the pair against its log and
answers with entries, or a diverging epoch + end offset (the follower truncates and
fetches again), or a snapshot id (the follower is below the log start; it fetches the
snapshot in chunks with FetchSnapshot). Why pull: it is what KRaft does, so the wire
messages exist; the leader keeps no per-follower send loop or retry state (a follower's
fetch offset doubles as its acknowledgement); observers (non-voting brokers) can follow
the log with the very same request; and the leader learns liveness from the fetches,
which is what check-quorum needs. The cost is a round trip of latency per batch, hidden
by long polling: a fetch at the log end is parked up to `fetch_max_wait_ms` and answered
as soon as there is something new (an entry or a high-watermark change).

Commit: the leader's high watermark is the largest offset that a majority of voters
(the leader's own flushed end included) have durably, but only once it covers the
control entry the leader appended at the start of its epoch (Raft's rule that a leader
only commits entries of its own term by counting; KRaft's LeaderChangeMessage).
The epoch, vote and leader are persisted (QuorumState) before anything depending on them
is sent. The high watermark is not persisted: after a restart it starts at the snapshot
end offset and is relearned from the leader (a quorum of one recommits its whole log at
once by committing its new epoch-start entry). Within one process lifetime it never
moves back.

What real KRaft does differently: records are binary with KRaft's own schemas
(kafkette's are JSON values in RecordBatch v2); the voter set is static
(`controller.quorum.voters`; KIP-853's AddRaftVoter/RemoveRaftVoter and directory ids
are not supported); KRaft's snapshots are themselves record batches with header/footer
control records, ours are opaque bytes from the state machine; KRaft staggers elections
after EndQuorumEpoch by the position in the preferred-successor list with exponential
backoff, we use a shorter random backoff; KRaft's leader keeps a fetch purgatory per
request, ours parks at most one fetch per replica.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable

from kafkette.controller.raft import messages as m
from kafkette.controller.raft.messages import Entry, SnapshotId
from kafkette.controller.raft.storage import QuorumState, RaftLog

CONTROL_KEY = b"\x00\x00\x00\x02"  # KRaft's control record key: version 0, type 2 (LeaderChange)


@dataclass
class RaftConfig:
    election_timeout_ms: int = 1000           # controller.quorum.election.timeout.ms
    fetch_timeout_ms: int = 2000              # controller.quorum.fetch.timeout.ms
    election_backoff_max_ms: int = 1000       # controller.quorum.election.backoff.max.ms
    fetch_max_wait_ms: int = 500              # long poll of a follower's Fetch
    # Resend a Fetch / FetchSnapshot unanswered this long; below fetch_timeout_ms so that
    # one lost message does not start an election (KRaft: controller.quorum.request.timeout.ms).
    request_timeout_ms: int = 1000
    begin_epoch_retry_ms: int = 200           # re-send BeginQuorumEpoch to silent voters
    max_fetch_bytes: int = 1 << 20
    snapshot_chunk_bytes: int = 1 << 20
    # metadata.log.max.record.bytes.between.snapshots (Kafka: 20 MiB). Smaller here: a
    # kafkette cluster's metadata is small and a snapshot is cheap.
    max_bytes_between_snapshots: int = 1 << 20
    # The leader forgets an observer that has not fetched this long (KRaft's
    # LeaderState.OBSERVER_SESSION_TIMEOUT_MS), so DescribeQuorum stops listing it.
    observer_session_timeout_ms: int = 300_000

    @classmethod
    def from_properties(cls, props: dict) -> "RaftConfig":
        c = cls()
        names = {
            "controller.quorum.election.timeout.ms": "election_timeout_ms",
            "controller.quorum.fetch.timeout.ms": "fetch_timeout_ms",
            "controller.quorum.election.backoff.max.ms": "election_backoff_max_ms",
            "metadata.log.max.record.bytes.between.snapshots": "max_bytes_between_snapshots",
        }
        for k, attr in names.items():
            if k in props and props[k] is not None:
                setattr(c, attr, int(props[k]))
        return c


class NotLeaderError(Exception):
    """propose() on a node that is not the leader."""


# --- actions --------------------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    dst: int
    message: Any


@dataclass(frozen=True)
class HighWatermark:
    high_watermark: int


@dataclass(frozen=True)
class Apply:
    """A committed, non-control entry, in log order, once per RaftNode lifetime."""
    entry: Entry


@dataclass(frozen=True)
class LoadSnapshot:
    snapshot_id: SnapshotId
    data: bytes


@dataclass(frozen=True)
class LeaderChanged:
    leader_id: int | None
    epoch: int


@dataclass(frozen=True)
class Appended:
    """propose() put `entry` in the log (not yet committed)."""
    entry: Entry


@dataclass(frozen=True)
class TakeSnapshot:
    """The applied state is `applied_bytes` past the last snapshot: call snapshot()."""
    applied_end_offset: int


# --- roles ----------------------------------------------------------------------------
@dataclass
class Role:
    epoch: int
    voted_for: int | None = None
    leader_id: int | None = None
    deadline: int = 0        # election / fetch timeout, role dependent
    name = "role"


@dataclass
class Unattached(Role):
    name = "Unattached"


@dataclass
class Prospective(Role):
    granted: set = field(default_factory=set)
    rejected: set = field(default_factory=set)
    # The leader of this epoch we gave up on: other voters may still name it (they have
    # not timed out yet), which must not send us back to following it.
    lost_leader: int | None = None
    name = "Prospective"


@dataclass
class Candidate(Role):
    granted: set = field(default_factory=set)
    rejected: set = field(default_factory=set)
    name = "Candidate"


@dataclass
class ReplicaState:
    end_offset: int = -1             # last validated fetch offset in this epoch
    last_fetch_ms: int | None = None
    last_sent_hw: int = -1


@dataclass
class Parked:
    src: int
    request: m.FetchRequest
    deadline: int


@dataclass
class Leader(Role):
    epoch_start_offset: int = 0
    became_ms: int = 0
    replicas: dict = field(default_factory=dict)     # voter/observer id -> ReplicaState
    parked: dict = field(default_factory=dict)       # replica id -> Parked
    begin_retry_at: int = 0
    name = "Leader"


@dataclass
class Follower(Role):
    last_contact_ms: int | None = None     # last successful answer from the leader
    fetch_rid: int | None = None           # outstanding Fetch / FetchSnapshot
    fetch_sent_ms: int = 0
    snapshot_id: SnapshotId | None = None  # a snapshot being fetched
    snapshot_buf: bytearray = field(default_factory=bytearray)
    name = "Follower"


@dataclass
class Resigned(Role):
    name = "Resigned"


class RaftNode:
    def __init__(self, node_id: int, voters: Iterable[int], log: RaftLog,
                 config: RaftConfig | None = None, rng: random.Random | None = None):
        self.node_id = node_id
        self.voters = tuple(sorted(set(voters)))
        if not self.voters:
            raise ValueError("a Raft node needs at least one voter")
        # Not a voter: an observer (KRaft's broker-only node) that follows the log only.
        self.observer = node_id not in self.voters
        self.log = log
        self.config = config or RaftConfig()
        self.rng = rng or random.Random()
        self.role: Role = Unattached(0)
        self.high_watermark = 0
        self.applied_end = 0          # offsets below this have been applied / snapshotted
        self._bytes_since_snapshot = 0
        self._snapshot_asked = False
        self._rid = 0
        self._out: list = []
        self._announced: tuple[int | None, int] | None = None
        self._needs_flush = False
        self.started = False
        # Observer only: voters still to try in this round, and the outstanding probe.
        self._probe_order: list[int] = []
        self._probe_rid: int | None = None
        self._probe_dst: int | None = None
        # (epoch, leader) the observer gave up on: voters that have not timed out yet
        # still name it, which must not send the observer back to it (as Prospective's
        # lost_leader for a voter).
        self._lost_leader: tuple[int, int] | None = None

    # --- helpers ---------------------------------------------------------------------------
    @property
    def majority(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def epoch(self) -> int:
        return self.role.epoch

    @property
    def leader_id(self) -> int | None:
        return self.role.leader_id if isinstance(self.role, (Leader, Follower)) else None

    @property
    def is_leader(self) -> bool:
        return isinstance(self.role, Leader)

    @property
    def leader_ready(self) -> bool:
        """Leader whose epoch-start entry is committed and applied here: everything
        committed before this epoch has been applied."""
        r = self.role
        return isinstance(r, Leader) and self.applied_end > r.epoch_start_offset

    @property
    def needs_flush(self) -> bool:
        return self._needs_flush

    def _next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def _send(self, dst: int, msg) -> None:
        self._out.append(Send(dst, msg))

    def _drain(self) -> list:
        self._announce()
        out, self._out = self._out, []
        return out

    def _others(self) -> list[int]:
        return [v for v in self.voters if v != self.node_id]

    def _election_timeout(self, now: int) -> int:
        t = self.config.election_timeout_ms
        return now + t + self.rng.randrange(t + 1)

    def _persist(self) -> None:
        r = self.role
        self.log.write_quorum_state(QuorumState(r.epoch, r.voted_for, r.leader_id))

    def _announce(self) -> None:
        cur = (self.leader_id, self.epoch)
        if cur != self._announced:
            self._announced = cur
            self._out.append(LeaderChanged(*cur))

    def _log_up_to_date(self, last_epoch: int, end_offset: int) -> bool:
        return (last_epoch, end_offset) >= (self.log.last_epoch(), self.log.log_end_offset)

    def next_deadline(self) -> int:
        """The earliest time at which tick() has something to do."""
        r = self.role
        d = r.deadline
        if isinstance(r, Leader):
            d = min(d, r.begin_retry_at) if any(
                r.replicas.get(v) is None or r.replicas[v].last_fetch_ms is None for v in self._others()) else d
            for p in r.parked.values():
                d = min(d, p.deadline)
        elif isinstance(r, Follower) and r.fetch_rid is not None:
            d = min(d, r.fetch_sent_ms + self.config.request_timeout_ms)
        return d

    # --- events ----------------------------------------------------------------------------
    def start(self, now: int) -> list:
        """Load persisted state. A snapshot, if any, is loaded first (LoadSnapshot)."""
        self.started = True
        qs = self.log.read_quorum_state()
        snap = self.log.latest_snapshot
        if snap is not None:
            data = self.log.read_snapshot(snap)
            self._out.append(LoadSnapshot(snap, data if data is not None else b""))
            self.high_watermark = self.applied_end = snap.end_offset
        else:
            # A log whose start moved without a snapshot (cannot happen with our own
            # writes): nothing below the start can be applied.
            self.high_watermark = self.applied_end = self.log.log_start_offset
        if self.observer:
            # An observer resumes following the leader it knew (its fetches say soon
            # enough whether that one still leads), else probes the voters at once.
            if qs.leader_id is not None and qs.leader_id in self.voters:
                self.role = Follower(qs.epoch, None, qs.leader_id, now + self.config.fetch_timeout_ms)
                self._send_fetch(now)
            else:
                self.role = Unattached(qs.epoch, None, None, now)
            return self._drain()
        if qs.leader_id == self.node_id:
            # KRaft: a restarted leader comes back Resigned, never Leader of the same epoch.
            self.role = Resigned(qs.epoch, qs.voted_for, None, self._election_timeout(now))
        elif qs.leader_id is not None:
            self.role = Follower(qs.epoch, qs.voted_for, qs.leader_id, now + self.config.fetch_timeout_ms)
        else:
            self.role = Unattached(qs.epoch, qs.voted_for, None, self._election_timeout(now))
        if len(self.voters) == 1:
            self._become_candidate(now)
        elif isinstance(self.role, Follower):
            self._send_fetch(now)
        return self._drain()

    def tick(self, now: int) -> list:
        r = self.role
        if isinstance(r, Leader):
            self._leader_tick(r, now)
        elif isinstance(r, Follower):
            if now >= r.deadline:
                self._become_prospective(now)
            elif r.fetch_rid is not None and now >= r.fetch_sent_ms + self.config.request_timeout_ms:
                r.fetch_rid = None
                self._send_fetch(now)
        elif isinstance(r, Candidate):
            if now >= r.deadline:
                self._become_prospective(now)
        elif self.observer:
            if isinstance(r, Unattached) and now >= r.deadline:
                self._probe(now)
        elif isinstance(r, Prospective) and r.lost_leader is not None:
            if now >= r.deadline:
                # KIP-996: a pre-vote round that did not win goes back to the leader we
                # knew (it may be reachable again); its fetch timeout starts another round.
                self._become_follower(r.epoch, r.lost_leader, now)
        elif isinstance(r, (Unattached, Resigned, Prospective)):
            if now >= r.deadline:
                self._become_prospective(now)
        return self._drain()

    def propose(self, values: list[bytes], now: int) -> list:
        r = self.role
        if not isinstance(r, Leader):
            raise NotLeaderError(f"node {self.node_id} is not the leader (leader {self.leader_id}, epoch {self.epoch})")
        if not values:
            raise ValueError("a proposal needs at least one value")
        entry = Entry(self.log.log_end_offset, r.epoch, tuple(bytes(v) for v in values))
        self.log.append(entry)
        self._needs_flush = True
        self._out.append(Appended(entry))
        # Followers may take it before our flush: only durable copies count for commit.
        self._complete_parked(now, only_new_data=True)
        if len(self.voters) == 1:
            self._flush(now)
        return self._drain()

    def flush(self, now: int) -> list:
        """Make appended entries durable; then the leader counts them and a follower
        fetches on (its fetch offset is its acknowledgement, so it must be durable)."""
        self._flush(now)
        return self._drain()

    def _flush(self, now: int) -> None:
        if self._needs_flush:
            self.log.flush()   # a failure (full disk) leaves the flush pending
            self._needs_flush = False
            r = self.role
            if isinstance(r, Leader):
                self._complete_parked(now, only_new_data=True)
                self._maybe_advance_hw(now)
            elif isinstance(r, Follower) and r.fetch_rid is None:
                self._send_fetch(now)

    def snapshot(self, last_offset: int, data: bytes, now: int) -> list:
        """The state machine's state after applying everything up to `last_offset`."""
        self._snapshot_asked = False
        end = last_offset + 1
        if end <= self.log.log_start_offset or end > self.applied_end or end > self.log.log_end_offset:
            return self._drain()
        epoch = self.log.epoch_at(last_offset)
        if epoch is None or self.log.boundary_at_or_below(end) != end:
            return self._drain()
        self.log.write_snapshot(SnapshotId(end, epoch), data)
        self._bytes_since_snapshot = 0
        return self._drain()

    def resign(self, now: int) -> list:
        """Graceful shutdown of a leader: EndQuorumEpoch so the others elect at once."""
        if isinstance(self.role, Leader):
            self._become_resigned(now)
        return self._drain()

    def receive(self, src: int, msg, now: int) -> list:
        name = _HANDLERS.get(type(msg))
        if name is None:
            return self._drain()
        getattr(self, name)(src, msg, now)
        return self._drain()

    # --- transitions ----------------------------------------------------------------------
    def _leave_role(self, now: int) -> None:
        r = self.role
        if isinstance(r, Leader):
            # Every request gets exactly one answer: parked fetches are released.
            for p in list(r.parked.values()):
                self._send(p.src, m.FetchResponse(p.request.rid, r.epoch, None,
                                                  m.NOT_LEADER_OR_FOLLOWER, self.high_watermark))
            r.parked.clear()

    def _become_unattached(self, epoch: int, now: int, voted_for: int | None = None,
                           deadline: int | None = None) -> None:
        self._leave_role(now)
        if self.observer:
            # No election to wait for: probe the voters again after a short backoff.
            self._probe_rid = None
            deadline = now + self.rng.randrange(self.config.begin_epoch_retry_ms + 1)
        self.role = Unattached(epoch, voted_for, None,
                               self._election_timeout(now) if deadline is None else deadline)
        self._persist()

    def _become_follower(self, epoch: int, leader_id: int, now: int) -> None:
        self._leave_role(now)
        voted = self.role.voted_for if self.role.epoch == epoch else None
        self.role = Follower(epoch, voted, leader_id, now + self.config.fetch_timeout_ms)
        self._persist()
        self._send_fetch(now)

    def _become_prospective(self, now: int) -> None:
        r = self.role
        if self.observer:
            # An observer that lost its leader looks for the next one; it never runs.
            if isinstance(r, Follower):
                self._lost_leader = (r.epoch, r.leader_id)
            self._become_unattached(r.epoch, now)
            return
        self._leave_role(now)
        lost = r.leader_id if isinstance(r, (Follower, Resigned)) else getattr(r, "lost_leader", None)
        p = Prospective(r.epoch, r.voted_for, None, self._election_timeout(now), lost_leader=lost)
        p.granted.add(self.node_id)
        self.role = p
        if len(p.granted) >= self.majority:
            self._become_candidate(now)
            return
        req = m.VoteRequest(0, r.epoch, self.node_id, self.log.last_epoch(), self.log.log_end_offset, pre_vote=True)
        for v in self._others():
            self._send(v, m.VoteRequest(self._next_rid(), req.epoch, req.candidate_id, req.last_epoch,
                                        req.end_offset, True))

    def _count_votes(self, granted: set) -> int:
        return len(granted)

    def _become_candidate(self, now: int) -> None:
        assert not self.observer, "an observer never becomes a candidate"
        self._leave_role(now)
        c = Candidate(self.role.epoch + 1, self.node_id, None, self._election_timeout(now))
        c.granted.add(self.node_id)
        self.role = c
        self._persist()
        if self._count_votes(c.granted) >= self.majority:
            self._become_leader(now)
            return
        for v in self._others():
            self._send(v, m.VoteRequest(self._next_rid(), c.epoch, self.node_id, self.log.last_epoch(),
                                        self.log.log_end_offset))

    def _become_leader(self, now: int) -> None:
        c = self.role
        self._leave_role(now)
        start = self.log.log_end_offset
        r = Leader(c.epoch, self.node_id, self.node_id, now + self.config.fetch_timeout_ms,
                   epoch_start_offset=start, became_ms=now, begin_retry_at=now + self.config.begin_epoch_retry_ms)
        for v in self._others():
            r.replicas[v] = ReplicaState()
        self.role = r
        self._persist()
        # KRaft's LeaderChangeMessage: an entry of the new epoch, so that the leader can
        # commit (and thereby commit everything before it) without waiting for a proposal.
        value = ('{"type":"LeaderChange","leader_id":%d,"epoch":%d,"voters":[%s]}' % (
            self.node_id, c.epoch, ",".join(map(str, self.voters)))).encode()
        self.log.append(Entry(start, c.epoch, (value,), control=True))
        self._needs_flush = True
        for v in self._others():
            self._send(v, m.BeginQuorumEpochRequest(self._next_rid(), r.epoch, self.node_id))
        if len(self.voters) == 1:
            # A quorum of one: nothing to wait for.
            self._flush(now)

    def _become_resigned(self, now: int) -> None:
        r = self.role
        self._leave_role(now)
        self.role = Resigned(r.epoch, r.voted_for, None, self._election_timeout(now))
        # quorum-state keeps leader_id = self: a restart comes back Resigned too.
        self.log.write_quorum_state(QuorumState(r.epoch, r.voted_for, self.node_id))
        successors = tuple(sorted(
            (v for v in self._others()),
            key=lambda v: -(r.replicas[v].end_offset if v in r.replicas else -1)))
        for v in self._others():
            self._send(v, m.EndQuorumEpochRequest(self._next_rid(), r.epoch, self.node_id, successors))

    def _observe(self, epoch: int, leader_id: int | None, now: int) -> None:
        """Any message from epoch `epoch` that names `leader_id` (or None)."""
        r = self.role
        if epoch > r.epoch:
            if leader_id is not None and leader_id != self.node_id:
                self._become_follower(epoch, leader_id, now)
            else:
                self._become_unattached(epoch, now)
        elif epoch == r.epoch and leader_id is not None and leader_id != self.node_id \
                and isinstance(r, (Unattached, Prospective, Candidate)) \
                and not (isinstance(r, Prospective) and leader_id == r.lost_leader):
            self._become_follower(epoch, leader_id, now)

    # --- vote -------------------------------------------------------------------------------
    def _on_vote_request(self, src: int, req: m.VoteRequest, now: int) -> None:
        r = self.role
        if req.candidate_id not in self.voters or self.observer:
            # From a non-voter, or to one (an observer has no vote to give): refused, as
            # KRaft does, whatever the epoch.
            self._send(src, m.VoteResponse(req.rid, r.epoch, self.leader_id, False, req.pre_vote,
                                           m.INCONSISTENT_VOTER_SET))
            return
        if req.pre_vote and isinstance(r, Leader) and req.epoch > r.epoch:
            # A voter already past our epoch (it became a candidate, then lost touch) can
            # never follow us again: only an epoch above its own brings it back. Step
            # down (as for a Vote) and answer no. With pre-vote a partitioned node cannot
            # raise its epoch alone, so this is rare and not the disruptive-rejoin case.
            self._become_unattached(req.epoch, now)
            self._send(src, m.VoteResponse(req.rid, self.role.epoch, None, False, True))
            return
        if req.pre_vote:
            # KIP-996: no state change; yes only if we would vote and have no live leader.
            up = self._log_up_to_date(req.last_epoch, req.end_offset)
            live_leader = isinstance(r, Leader) or (
                isinstance(r, Follower) and r.last_contact_ms is not None
                and now - r.last_contact_ms < self.config.fetch_timeout_ms)
            granted = req.epoch >= r.epoch and up and not live_leader
            self._send(src, m.VoteResponse(req.rid, r.epoch, self.leader_id, granted, True))
            return
        if req.epoch > r.epoch:
            self._become_unattached(req.epoch, now)
            r = self.role
        granted = False
        if req.epoch == r.epoch and isinstance(r, (Unattached, Prospective)) \
                and r.voted_for in (None, req.candidate_id) \
                and self._log_up_to_date(req.last_epoch, req.end_offset):
            granted = True
            if r.voted_for is None or not isinstance(r, Unattached):
                # Persist the vote before answering.
                self._become_unattached(r.epoch, now, voted_for=req.candidate_id)
            else:
                r.deadline = self._election_timeout(now)
        elif req.epoch == r.epoch and isinstance(r, Candidate) and req.candidate_id == self.node_id:
            granted = True
        self._send(src, m.VoteResponse(req.rid, self.role.epoch, self.leader_id, granted, False))

    def _on_vote_response(self, src: int, resp: m.VoteResponse, now: int) -> None:
        self._observe(resp.epoch, resp.leader_id, now)
        r = self.role
        if resp.epoch != r.epoch:
            return
        if resp.pre_vote and isinstance(r, Prospective):
            (r.granted if resp.granted else r.rejected).add(src)
            if len(r.granted) >= self.majority:
                self._become_candidate(now)
            elif len(r.rejected) >= self.majority:
                if r.lost_leader is not None:
                    self._become_follower(r.epoch, r.lost_leader, now)  # see tick()
                else:
                    # Lost this round: wait (backoff) before the next one.
                    r.deadline = now + self.rng.randrange(self.config.election_backoff_max_ms + 1)
        elif not resp.pre_vote and isinstance(r, Candidate):
            (r.granted if resp.granted else r.rejected).add(src)
            if self._count_votes(r.granted) >= self.majority:
                self._become_leader(now)
            elif len(r.rejected) >= self.majority:
                r.deadline = now + self.rng.randrange(self.config.election_backoff_max_ms + 1)

    # --- begin / end quorum epoch ---------------------------------------------------------------
    def _on_begin_epoch(self, src: int, req: m.BeginQuorumEpochRequest, now: int) -> None:
        r = self.role
        if req.epoch < r.epoch:
            self._send(src, m.BeginQuorumEpochResponse(req.rid, r.epoch, self.leader_id, m.FENCED_LEADER_EPOCH))
            return
        self._observe(req.epoch, req.leader_id, now)
        self._send(src, m.BeginQuorumEpochResponse(req.rid, self.role.epoch, self.leader_id))

    def _on_begin_epoch_response(self, src: int, resp: m.BeginQuorumEpochResponse, now: int) -> None:
        self._observe(resp.epoch, resp.leader_id, now)

    def _on_end_epoch(self, src: int, req: m.EndQuorumEpochRequest, now: int) -> None:
        r = self.role
        if req.epoch < r.epoch:
            self._send(src, m.EndQuorumEpochResponse(req.rid, r.epoch, self.leader_id, m.FENCED_LEADER_EPOCH))
            return
        self._observe(req.epoch, None, now)
        r = self.role
        if req.epoch == r.epoch and isinstance(r, Follower) and r.leader_id == req.leader_id:
            # The leader is going away: elect soon, the best-placed successor first.
            try:
                pos = list(req.preferred_successors).index(self.node_id)
            except ValueError:
                pos = len(self.voters)
            backoff = min(self.config.election_backoff_max_ms,
                          pos * self.config.election_backoff_max_ms // max(1, len(self.voters)))
            self._become_unattached(r.epoch, now, voted_for=r.voted_for,
                                    deadline=now + backoff + self.rng.randrange(50))
        self._send(src, m.EndQuorumEpochResponse(req.rid, self.role.epoch, self.leader_id))

    def _on_end_epoch_response(self, src: int, resp: m.EndQuorumEpochResponse, now: int) -> None:
        self._observe(resp.epoch, resp.leader_id, now)

    # --- fetch: leader side ----------------------------------------------------------------------
    def _on_fetch(self, src: int, req: m.FetchRequest, now: int) -> None:
        r = self.role
        if req.epoch > r.epoch and req.replica_id not in self.voters:
            # An observer already knows a newer epoch than ours: we learn epochs from
            # voters only (as KRaft, which answers UNKNOWN_LEADER_EPOCH and changes
            # nothing); the observer asks another voter.
            self._send(src, m.FetchResponse(req.rid, r.epoch, self.leader_id, m.UNKNOWN_LEADER_EPOCH,
                                            self.high_watermark))
            return
        if req.epoch > r.epoch:
            self._observe(req.epoch, None, now)
            r = self.role
        if not isinstance(r, Leader):
            self._send(src, m.FetchResponse(req.rid, r.epoch, self.leader_id, m.NOT_LEADER_OR_FOLLOWER,
                                            self.high_watermark))
            return
        if req.epoch < r.epoch:
            self._send(src, m.FetchResponse(req.rid, r.epoch, self.node_id, m.FENCED_LEADER_EPOCH,
                                            self.high_watermark))
            return
        rs = r.replicas.get(req.replica_id)
        if rs is None:
            rs = r.replicas[req.replica_id] = ReplicaState()  # an observer
        rs.last_fetch_ms = now
        old = r.parked.pop(req.replica_id, None)
        if old is not None:
            # Replaced by a newer fetch from the same replica: answer the old one now.
            self._answer_fetch(r, old.src, old.request, now, force=True)
        self._answer_fetch(r, src, req, now, force=req.max_wait_ms <= 0)

    def _answer_fetch(self, r: Leader, src: int, req: m.FetchRequest, now: int, force: bool) -> None:
        log = self.log
        rs = r.replicas[req.replica_id]
        base = dict(rid=req.rid, epoch=r.epoch, leader_id=self.node_id, log_start_offset=log.log_start_offset)
        if req.fetch_offset < log.log_start_offset:
            self._send(src, m.FetchResponse(high_watermark=self.high_watermark,
                                            snapshot_id=log.latest_snapshot, **base))
            return
        found = log.end_offset_for_epoch(req.last_fetched_epoch)
        if found is None:
            self._send(src, m.FetchResponse(high_watermark=self.high_watermark,
                                            snapshot_id=log.latest_snapshot, **base))
            return
        e, end = found
        if e != req.last_fetched_epoch or end < req.fetch_offset or req.fetch_offset > log.log_end_offset:
            self._send(src, m.FetchResponse(high_watermark=self.high_watermark,
                                            diverging_epoch=e, diverging_end_offset=end, **base))
            return
        # A valid position: the replica has everything below fetch_offset, durably.
        # (Only forward: a duplicated old request must not move it back.)
        # Observers' offsets are kept for DescribeQuorum but never count for commit.
        if req.fetch_offset > rs.end_offset:
            rs.end_offset = req.fetch_offset
            if req.replica_id in self.voters:
                self._maybe_advance_hw(now)
        if req.fetch_offset >= log.log_end_offset and not force and rs.last_sent_hw == self.high_watermark:
            r.parked[req.replica_id] = Parked(src, req, now + min(req.max_wait_ms, self.config.fetch_max_wait_ms))
            return
        entries = tuple(log.read(req.fetch_offset, self.config.max_fetch_bytes))
        rs.last_sent_hw = self.high_watermark
        self._send(src, m.FetchResponse(high_watermark=self.high_watermark, entries=entries, **base))

    def _complete_parked(self, now: int, only_new_data: bool = False) -> None:
        r = self.role
        if not isinstance(r, Leader) or not r.parked:
            return
        for rid, p in list(r.parked.items()):
            new_data = p.request.fetch_offset < self.log.log_end_offset
            if new_data or (not only_new_data and r.replicas[rid].last_sent_hw != self.high_watermark) \
                    or now >= p.deadline:
                del r.parked[rid]
                self._answer_fetch(r, p.src, p.request, now, force=True)

    def _maybe_advance_hw(self, now: int) -> None:
        r = self.role
        if not isinstance(r, Leader):
            return
        offsets = [self.log.flushed_end_offset] + [
            r.replicas[v].end_offset if v in r.replicas else -1 for v in self._others()]
        offsets.sort(reverse=True)
        candidate = offsets[self.majority - 1]
        if candidate > r.epoch_start_offset and candidate > self.high_watermark:
            self._set_hw(candidate, now)
            self._complete_parked(now)

    def _leader_tick(self, r: Leader, now: int) -> None:
        self._complete_parked(now)
        if now >= r.begin_retry_at:
            r.begin_retry_at = now + self.config.begin_epoch_retry_ms
            for v in self._others():
                rs = r.replicas.get(v)
                if rs is None or rs.last_fetch_ms is None:
                    self._send(v, m.BeginQuorumEpochRequest(self._next_rid(), r.epoch, self.node_id))
        if now >= r.deadline:
            # Check-quorum: resign unless a majority fetched within fetch.timeout.
            t = self.config.fetch_timeout_ms
            alive = 1 + sum(1 for v in self._others()
                            if v in r.replicas and r.replicas[v].last_fetch_ms is not None
                            and now - r.replicas[v].last_fetch_ms < t)
            if alive < self.majority:
                self._become_resigned(now)
                return
            r.deadline = now + max(1, t // 4)
            gone = [k for k, rs in r.replicas.items() if k not in self.voters and k not in r.parked
                    and (rs.last_fetch_ms is None
                         or now - rs.last_fetch_ms >= self.config.observer_session_timeout_ms)]
            for k in gone:
                del r.replicas[k]

    # --- fetch: follower side -----------------------------------------------------------------------
    def _send_fetch(self, now: int) -> None:
        r = self.role
        if not isinstance(r, Follower) or self._needs_flush:
            return
        r.fetch_rid = self._next_rid()
        r.fetch_sent_ms = now
        if r.snapshot_id is not None:
            self._send(r.leader_id, m.FetchSnapshotRequest(r.fetch_rid, r.epoch, self.node_id, r.snapshot_id,
                                                           len(r.snapshot_buf), self.config.snapshot_chunk_bytes))
            return
        end = self.log.log_end_offset
        last = self.log.epoch_at(end - 1) if end > 0 else 0
        self._send(r.leader_id, m.FetchRequest(r.fetch_rid, r.epoch, self.node_id, end,
                                               last if last is not None else 0,
                                               self.config.fetch_max_wait_ms))

    def _probe(self, now: int) -> None:
        """Observer without a leader: Fetch from the next voter of a shuffled round. The
        answer names the leader (the leader itself answers, another voter says
        NOT_LEADER_OR_FOLLOWER with the leader it knows); no answer within the request
        timeout moves on to the next voter."""
        r = self.role
        if not self._probe_order:
            self._probe_order = list(self.voters)
            self.rng.shuffle(self._probe_order)
        dst = self._probe_order.pop()
        self._probe_rid, self._probe_dst = self._next_rid(), dst
        end = self.log.log_end_offset
        last = self.log.epoch_at(end - 1) if end > 0 else 0
        # max_wait 0: the leader answers at once instead of parking the probe.
        self._send(dst, m.FetchRequest(self._probe_rid, r.epoch, self.node_id, end,
                                       last if last is not None else 0, 0))
        r.deadline = now + self.config.request_timeout_ms

    def _on_probe_response(self, src: int, resp: m.FetchResponse, now: int) -> None:
        r = self.role
        self._probe_rid = None
        leader = resp.leader_id
        if (resp.epoch, leader) == self._lost_leader and src != leader:
            leader = None   # hearsay about the leader we gave up on: ask the next voter
        if leader is not None and leader != self.node_id and leader in self.voters and resp.epoch >= r.epoch:
            # Follower(e', L) sends its first real Fetch; the probe's entries, if any,
            # are simply fetched again.
            self._observe(resp.epoch, leader, now)
            if not isinstance(self.role, Follower):
                self._become_follower(resp.epoch, leader, now)
            return
        if resp.epoch > r.epoch:
            self._observe(resp.epoch, None, now)   # Unattached(e'), probing after a backoff
            return
        # This voter knows no leader (an election is on): the next one after a backoff.
        r.deadline = now + self.rng.randrange(self.config.begin_epoch_retry_ms + 1)

    def _on_fetch_response(self, src: int, resp: m.FetchResponse, now: int) -> None:
        r = self.role
        if self.observer and isinstance(r, Unattached):
            if resp.rid == self._probe_rid and src == self._probe_dst:
                self._on_probe_response(src, resp, now)
            return
        if resp.epoch > r.epoch or (resp.error and resp.epoch >= r.epoch):
            self._observe(resp.epoch, resp.leader_id if resp.leader_id != self.node_id else None, now)
        r = self.role
        if not isinstance(r, Follower) or resp.rid != r.fetch_rid or src != r.leader_id:
            return
        r.fetch_rid = None
        if resp.error == m.NOT_LEADER_OR_FOLLOWER and resp.epoch == r.epoch and resp.leader_id is None:
            # Our leader says it no longer leads this epoch (it resigned, or restarted and
            # came back Resigned): no point waiting for fetch.timeout.
            self._become_prospective(now)
            return
        if resp.error:
            # Re-sent by tick() after the request timeout (unless a role change above).
            r.fetch_rid, r.fetch_sent_ms = -1, now
            return
        r.last_contact_ms = now
        r.deadline = now + self.config.fetch_timeout_ms
        log = self.log
        if resp.snapshot_id is not None:
            r.snapshot_id = resp.snapshot_id
            r.snapshot_buf = bytearray()
        elif resp.diverging_epoch >= 0:
            # As KRaft's follower: truncate to the smaller of the leader's and our own end
            # offset for the diverging epoch (ours alone when the leader's end is past
            # our log end; otherwise a log diverging below that point would loop).
            own = log.end_offset_for_epoch(resp.diverging_epoch)
            own_end = own[1] if own is not None else log.log_start_offset
            target = log.boundary_at_or_below(min(resp.diverging_end_offset, own_end, log.log_end_offset))
            if target < log.log_start_offset:
                target = log.log_start_offset
            log.truncate_to(target)
        elif resp.entries:
            for e in resp.entries:
                if e.offset == log.log_end_offset:
                    log.append(e)
                    self._needs_flush = True
            self._set_hw(min(resp.high_watermark, log.log_end_offset), now)
        else:
            self._set_hw(min(resp.high_watermark, log.log_end_offset), now)
        self._send_fetch(now)  # unless a flush must come first

    def _on_fetch_snapshot(self, src: int, req: m.FetchSnapshotRequest, now: int) -> None:
        r = self.role
        if not isinstance(r, Leader) or req.epoch != r.epoch:
            err = m.FENCED_LEADER_EPOCH if req.epoch < r.epoch else m.NOT_LEADER_OR_FOLLOWER
            self._send(src, m.FetchSnapshotResponse(req.rid, r.epoch, self.leader_id, err))
            return
        rs = r.replicas.get(req.replica_id)
        if rs is not None:
            rs.last_fetch_ms = now
        data = self.log.read_snapshot(req.snapshot_id) if req.snapshot_id == self.log.latest_snapshot else None
        if data is None:
            self._send(src, m.FetchSnapshotResponse(req.rid, r.epoch, self.node_id, m.SNAPSHOT_NOT_FOUND))
            return
        if not 0 <= req.position <= len(data):
            self._send(src, m.FetchSnapshotResponse(req.rid, r.epoch, self.node_id, m.POSITION_OUT_OF_RANGE))
            return
        chunk = data[req.position:req.position + max(1, min(req.max_bytes, self.config.snapshot_chunk_bytes))]
        self._send(src, m.FetchSnapshotResponse(req.rid, r.epoch, self.node_id, m.NONE, req.snapshot_id,
                                                len(data), req.position, bytes(chunk)))

    def _on_fetch_snapshot_response(self, src: int, resp: m.FetchSnapshotResponse, now: int) -> None:
        r = self.role
        if resp.epoch > r.epoch or (resp.error and resp.epoch >= r.epoch):
            self._observe(resp.epoch, resp.leader_id if resp.leader_id != self.node_id else None, now)
        r = self.role
        if not isinstance(r, Follower) or resp.rid != r.fetch_rid or src != r.leader_id:
            return
        r.fetch_rid = None
        if resp.error or resp.snapshot_id != r.snapshot_id or resp.position != len(r.snapshot_buf):
            # Gone (a newer snapshot replaced it) or out of step: start over with a Fetch.
            r.snapshot_id = None
            r.snapshot_buf = bytearray()
            if not resp.error:
                r.last_contact_ms = now
            self._send_fetch(now)
            return
        r.last_contact_ms = now
        r.deadline = now + self.config.fetch_timeout_ms
        r.snapshot_buf += resp.chunk
        if len(r.snapshot_buf) >= resp.size:
            sid, data = r.snapshot_id, bytes(r.snapshot_buf)
            r.snapshot_id = None
            r.snapshot_buf = bytearray()
            # Only sent when our log end is below the leader's log start: the snapshot
            # replaces our whole log.
            self.log.install_snapshot(sid, data)
            if sid.end_offset > self.applied_end:
                self._out.append(LoadSnapshot(sid, data))
                self.applied_end = sid.end_offset
                self._bytes_since_snapshot = 0
            if sid.end_offset > self.high_watermark:
                self._set_hw(sid.end_offset, now)
        self._send_fetch(now)

    # --- commit / apply ---------------------------------------------------------------------------
    def _set_hw(self, hw: int, now: int) -> None:
        if hw <= self.high_watermark:
            return
        self.high_watermark = hw
        self._out.append(HighWatermark(hw))
        self._apply_committed()

    def _apply_committed(self) -> None:
        log = self.log
        while self.applied_end < self.high_watermark:
            if self.applied_end < log.log_start_offset:
                break  # below a snapshot we have not loaded (cannot happen: see install)
            entries = log.read(self.applied_end, self.config.max_fetch_bytes)
            if not entries:
                break
            for e in entries:
                if e.end_offset > self.high_watermark:
                    return
                if not e.control:
                    self._out.append(Apply(e))
                    self._bytes_since_snapshot += e.size
                self.applied_end = e.end_offset
            if self._bytes_since_snapshot >= self.config.max_bytes_between_snapshots and not self._snapshot_asked:
                self._snapshot_asked = True
                self._out.append(TakeSnapshot(self.applied_end))

    # --- introspection ------------------------------------------------------------------------------
    def describe(self, now: int) -> dict:
        r = self.role
        voters = {}
        for v in self.voters:
            if v == self.node_id:
                voters[v] = {"log_end_offset": self.log.log_end_offset, "last_fetch_ms": now}
            elif isinstance(r, Leader) and v in r.replicas:
                rs = r.replicas[v]
                voters[v] = {"log_end_offset": rs.end_offset, "last_fetch_ms": rs.last_fetch_ms}
            else:
                voters[v] = {"log_end_offset": -1, "last_fetch_ms": None}
        observers = {}
        if isinstance(r, Leader):
            for k, rs in r.replicas.items():
                if k not in self.voters:
                    observers[k] = {"log_end_offset": rs.end_offset, "last_fetch_ms": rs.last_fetch_ms}
        return {"node_id": self.node_id, "role": r.name, "observer": self.observer, "leader_id": self.leader_id, "epoch": r.epoch,
                "high_watermark": self.high_watermark, "log_start_offset": self.log.log_start_offset,
                "log_end_offset": self.log.log_end_offset, "voters": voters, "observers": observers}


_HANDLERS = {
    m.VoteRequest: "_on_vote_request",
    m.VoteResponse: "_on_vote_response",
    m.BeginQuorumEpochRequest: "_on_begin_epoch",
    m.BeginQuorumEpochResponse: "_on_begin_epoch_response",
    m.EndQuorumEpochRequest: "_on_end_epoch",
    m.EndQuorumEpochResponse: "_on_end_epoch_response",
    m.FetchRequest: "_on_fetch",
    m.FetchResponse: "_on_fetch_response",
    m.FetchSnapshotRequest: "_on_fetch_snapshot",
    m.FetchSnapshotResponse: "_on_fetch_snapshot_response",
}
