"""ClassicGroup: one consumer group of the classic protocol, as a state machine.

States (spelled as Kafka spells them in DescribeGroups and ListGroups):

  Empty                no members: new, all members gone, or only used to store
                       offsets ("simple" consumers, the admin client)
  PreparingRebalance   waiting for the members to (re)join
  CompletingRebalance  everyone joined; waiting for the leader's SyncGroup
  Stable               the leader's assignment is persisted and handed out
  Dead                 deleted, or empty with no offsets left; about to be dropped

Transitions (target <- allowed sources), as Kafka's ClassicGroupState:

  PreparingRebalance  <- Empty, Stable, CompletingRebalance
        a member joins an Empty group (the join phase then lasts
        group.initial.rebalance.delay.ms, KIP-134); a new member joins; the leader
        rejoins; a follower rejoins with different metadata; a member leaves or its
        session expires; members fail to SyncGroup within the rebalance timeout;
        persisting the leader's assignment failed
  CompletingRebalance <- PreparingRebalance
        every known member rejoined, or the rebalance timeout expired (dynamic members
        that did not rejoin are removed); generation + 1, protocol chosen by vote
  Stable              <- CompletingRebalance
        the leader's SyncGroup assignment was appended to __consumer_offsets
  Empty               <- PreparingRebalance
        the join phase ended with no member left; generation + 1
  Dead                <- any state
        DeleteGroups (Empty groups only), or an Empty group whose last offset expired

What each state does with requests (details in group_coordinator.py):

  state                JoinGroup         SyncGroup              Heartbeat      OffsetCommit
  Empty                new members only  UNKNOWN_MEMBER_ID      UNKNOWN_MEMBER generation -1 only
  PreparingRebalance   parked            REBALANCE_IN_PROGRESS  REBALANCE_IN_  current generation
                                                                PROGRESS       (the old one) ok
  CompletingRebalance  answered now      followers parked,      NONE           REBALANCE_IN_
                                         leader completes                      PROGRESS
  Stable               see below         current assignment     NONE           current generation
  Dead                 COORDINATOR_NOT_AVAILABLE everywhere (the group is being dropped)

In Stable a JoinGroup from the leader, or from a follower whose protocols changed,
starts a rebalance (the leader's rejoin is how a consumer asks for a new assignment
after topic metadata changed); a follower rejoining with the same protocols gets the
current generation back and no rebalance. A static member (KIP-345) that rejoins with
an unknown member id takes over its old identity and assignment without a rebalance.

This module holds state and the rules that need only the group; timers, persistence
and answering requests live in GroupCoordinator. `respond` callbacks waiting on a
member are stored here and completed through `complete_join` / `complete_sync`, which
clear them, so each request is answered exactly once.
"""
from __future__ import annotations

import enum
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from kafkette.coordinator.consumer_protocol import PROTOCOL_TYPE as CONSUMER_PROTOCOL_TYPE
from kafkette.coordinator.consumer_protocol import decode_subscription_topics
from kafkette.errors import ErrorCode as _EC

FENCED_INSTANCE_ID = _EC.FENCED_INSTANCE_ID
from kafkette.coordinator.wire import CoordinatorRecordError
from kafkette.errors import ErrorCode

NO_LEADER = ""
NO_GENERATION = -1
UNKNOWN_MEMBER_ID = ""


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"

    def __str__(self) -> str:
        return self.value


EMPTY = GroupState.EMPTY
PREPARING_REBALANCE = GroupState.PREPARING_REBALANCE
COMPLETING_REBALANCE = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

VALID_PREVIOUS_STATES: dict[GroupState, frozenset[GroupState]] = {
    PREPARING_REBALANCE: frozenset({EMPTY, STABLE, COMPLETING_REBALANCE}),
    COMPLETING_REBALANCE: frozenset({PREPARING_REBALANCE}),
    STABLE: frozenset({COMPLETING_REBALANCE}),
    EMPTY: frozenset({PREPARING_REBALANCE}),
    DEAD: frozenset({EMPTY, PREPARING_REBALANCE, COMPLETING_REBALANCE, STABLE, DEAD}),
}


class IllegalGroupTransition(RuntimeError):
    pass


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class JoinMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass
class JoinResult:
    """What a JoinGroup response carries. On error Kafka answers generation -1, no
    protocol, leader "" and (for MEMBER_ID_REQUIRED) the member id to use."""
    error_code: ErrorCode | int
    member_id: str = UNKNOWN_MEMBER_ID
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = NO_LEADER
    skip_assignment: bool = False
    members: list[JoinMember] = field(default_factory=list)


@dataclass
class SyncResult:
    error_code: ErrorCode | int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


JoinCallback = Callable[[JoinResult], None]
SyncCallback = Callable[[SyncResult], None]


# ---------------------------------------------------------------- members

@dataclass(eq=False)
class ClassicGroupMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    # A parked JoinGroup / SyncGroup of this member, answered (and cleared) through the
    # group's complete_join / complete_sync.
    awaiting_join: JoinCallback | None = None
    awaiting_sync: SyncCallback | None = None
    # A member added by this rebalance. Kafka expires new members on a 5-minute timer
    # instead of their session timeout: they have no member id to heartbeat with yet.
    is_new: bool = False

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def is_awaiting_join(self) -> bool:
        return self.awaiting_join is not None

    @property
    def is_awaiting_sync(self) -> bool:
        return self.awaiting_sync is not None

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol_name: str | None) -> bytes:
        for name, meta in self.protocols:
            if name == protocol_name:
                return meta
        raise KeyError(f"member {self.member_id} does not support protocol {protocol_name!r}")

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among `candidates` (its list order is
        its preference, as in JoinGroup)."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        """Same protocols, same metadata, same order (Kafka's MemberMetadata.matches)."""
        return [(n, bytes(m)) for n, m in protocols] == [(n, bytes(m)) for n, m in self.protocols]

    def has_satisfied_heartbeat(self) -> bool:
        """Whether a session-timer expiry should spare this member. New members are
        expired (their 5-minute join timer ran out); members parked in JoinGroup or
        SyncGroup are alive by definition (they cannot heartbeat while parked: their
        connection waits for the answer)."""
        if self.is_new:
            return False
        return self.is_awaiting_join or self.is_awaiting_sync


# ---------------------------------------------------------------- the group

@dataclass
class OffsetAndMetadata:
    """A committed offset as the coordinator keeps it. leader_epoch -1 = unknown;
    expire_timestamp is only set by OffsetCommit v2-v4 `retention_time_ms`.
    record_offset: where its record is in `__consumer_offsets` (-1 unknown). When a
    transaction's offsets are committed, the most recent record wins against a plain
    commit of the same partition (Kafka's OffsetAndMetadata.recordOffset); it is not
    part of the value, so it takes no part in comparisons."""
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int | None = None
    record_offset: int = field(default=-1, compare=False)


class ClassicGroup:
    @classmethod
    def from_metadata(cls, group_id: str, value, now_ms: int) -> "ClassicGroup":
        """The group a GroupMetadataValue record describes (a coordinator loading it
        after a failover or restart): Stable with its members and assignments, or
        Empty. Raises CoordinatorRecordError (or ValueError) for members without a
        protocol or members that do not fit together."""
        group = cls(group_id, now_ms, STABLE if value.members else EMPTY)
        group.generation_id = value.generation
        group.protocol_type = value.protocol_type or None
        group.protocol_name = value.protocol
        group.state_timestamp_ms = (value.current_state_timestamp
                                    if value.current_state_timestamp >= 0 else None)
        if value.members and (value.protocol is None or not value.protocol_type):
            raise CoordinatorRecordError(f"group {group_id}: members without a protocol")
        for mv in value.members:
            group.add(ClassicGroupMember(
                mv.member_id, mv.group_instance_id, mv.client_id, mv.client_host,
                mv.rebalance_timeout, mv.session_timeout, value.protocol_type,
                [(value.protocol, mv.subscription)], mv.assignment))
        if value.leader in group.members:
            group.leader_id = value.leader
        group.subscribed_topics = group.compute_subscribed_topics()
        return group

    def __init__(self, group_id: str, now_ms: int, state: GroupState = EMPTY):
        self.group_id = group_id
        self.state = state
        self.previous_state = DEAD
        self.state_timestamp_ms: int | None = now_ms
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.generation_id = 0
        self.leader_id: str | None = None
        # Insertion-ordered: when the leader goes, the oldest remaining member leads
        # (Kafka takes whatever its HashMap iterates first).
        self.members: dict[str, ClassicGroupMember] = {}
        self.static_members: dict[str, str] = {}  # group_instance_id -> member_id
        # KIP-394: member ids handed out with MEMBER_ID_REQUIRED, not joined yet.
        self.pending_join_members: set[str] = set()
        self.pending_sync_members: set[str] = set()
        self.supported_protocols: Counter[str] = Counter()
        # KIP-134: set when a member joins during the initial delay, which extends it.
        self.new_member_added = False
        # The join phase started from Empty; only its timer may complete it.
        self.initial_rebalance = False
        # Topics of the consumer protocol's subscriptions, computed at each generation;
        # None = unknown (not a consumer group, or undecodable metadata).
        self.subscribed_topics: set[str] | None = None
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        # Transactional offset commits (TxnOffsetCommit, KIP-98) not yet completed by a
        # COMMIT or ABORT marker, per producer id: written to the log but invisible to
        # OffsetFetch (Kafka's pendingTransactionalOffsetCommits).
        self.pending_txn_offsets: dict[int, dict[tuple[str, int], OffsetAndMetadata]] = {}

    def __repr__(self) -> str:
        return (f"ClassicGroup({self.group_id!r}, {self.state}, generation={self.generation_id}, "
                f"members={list(self.members)})")

    # --- state

    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def can_rebalance(self) -> bool:
        return self.state in VALID_PREVIOUS_STATES[PREPARING_REBALANCE]

    def transition_to(self, target: GroupState, now_ms: int) -> None:
        if self.state not in VALID_PREVIOUS_STATES[target]:
            raise IllegalGroupTransition(
                f"group {self.group_id}: {self.state} -> {target} is not allowed "
                f"(only from {sorted(str(s) for s in VALID_PREVIOUS_STATES[target])})")
        self.previous_state = self.state
        self.state = target
        self.state_timestamp_ms = now_ms

    # --- membership

    def has(self, member_id: str) -> bool:
        return member_id in self.members

    def get(self, member_id: str) -> ClassicGroupMember:
        return self.members[member_id]

    @property
    def size(self) -> int:
        return len(self.members)

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id is not None and self.leader_id == member_id

    def add(self, member: ClassicGroupMember, callback: JoinCallback | None = None) -> None:
        if member.group_instance_id is not None:
            if member.group_instance_id in self.static_members:
                raise ValueError(f"static member {member.group_instance_id} is already in "
                                 f"group {self.group_id}")
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if member.protocol_type != self.protocol_type:
            raise ValueError("the group and member protocol types must match")
        if not self.supports_protocols(member.protocol_type, member.protocol_names()):
            raise ValueError("none of the member's protocols is supported by the group")
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported_protocols.update(set(member.protocol_names()))
        member.awaiting_join = callback
        self.pending_join_members.discard(member.member_id)

    def remove(self, member_id: str) -> ClassicGroupMember | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported_protocols.subtract(set(member.protocol_names()))
            self.supported_protocols += Counter()  # drop zero counts
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.is_leader(member_id):
            self.leader_id = next(iter(self.members), None)
        self.pending_join_members.discard(member_id)
        self.pending_sync_members.discard(member_id)
        return member

    def update_member(self, member: ClassicGroupMember, protocols: list[tuple[str, bytes]],
                      rebalance_timeout_ms: int, session_timeout_ms: int,
                      callback: JoinCallback | None) -> JoinCallback | None:
        """New protocols and timeouts for a rejoining member, parking its JoinGroup.
        Returns the JoinGroup callback it replaces, if the member was already parked
        (the caller answers it: Kafka silently drops it)."""
        self.supported_protocols.subtract(set(member.protocol_names()))
        member.protocols = [(n, bytes(m)) for n, m in protocols]
        self.supported_protocols.update(set(member.protocol_names()))
        self.supported_protocols += Counter()
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        replaced = member.awaiting_join
        member.awaiting_join = callback
        return replaced

    def num_awaiting_join(self) -> int:
        return sum(1 for m in self.members.values() if m.is_awaiting_join)

    def not_yet_rejoined_members(self) -> list[ClassicGroupMember]:
        return [m for m in self.members.values() if not m.is_awaiting_join]

    def has_all_members_joined(self) -> bool:
        return (len(self.members) == self.num_awaiting_join()
                and not self.pending_join_members)

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    @staticmethod
    def generate_member_id(client_id: str, group_instance_id: str | None) -> str:
        """KIP-394 / KIP-345: "<client id>-<uuid>", or "<group instance id>-<uuid>" for a
        static member, as Kafka builds them."""
        prefix = group_instance_id if group_instance_id is not None else client_id
        return f"{prefix}-{uuid.uuid4()}"

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else pick a member that did. False when the
        group has no leader or nobody rejoined."""
        if self.leader_id is None:
            return False
        leader = self.members.get(self.leader_id)
        if leader is not None and leader.is_awaiting_join:
            return True
        for member in self.members.values():
            if member.is_awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    # --- static membership (KIP-345)

    def static_member_id(self, group_instance_id: str | None) -> str | None:
        if group_instance_id is None:
            return None
        return self.static_members.get(group_instance_id)

    def replace_static_member(self, group_instance_id: str, old_member_id: str,
                              new_member_id: str) -> tuple[ClassicGroupMember, list]:
        """Give the static member a new member id, keeping everything else (protocols,
        assignment, timeouts). A JoinGroup or SyncGroup still parked under the old id
        is answered FENCED_INSTANCE_ID: that is the old incarnation of the instance.
        Returns the new member and the (callback, result) pairs to deliver."""
        old = self.members.pop(old_member_id, None)
        if old is None:
            raise KeyError(f"cannot replace unknown member {old_member_id}")
        answers: list = []
        if old.awaiting_join is not None:
            answers.append((old.awaiting_join, JoinResult(FENCED_INSTANCE_ID, old_member_id)))
            old.awaiting_join = None
        if old.awaiting_sync is not None:
            answers.append((old.awaiting_sync, SyncResult(FENCED_INSTANCE_ID)))
            old.awaiting_sync = None
        new = ClassicGroupMember(new_member_id, old.group_instance_id, old.client_id,
                                 old.client_host, old.rebalance_timeout_ms,
                                 old.session_timeout_ms, old.protocol_type,
                                 list(old.protocols), old.assignment)
        self.members[new_member_id] = new
        if self.is_leader(old_member_id):
            self.leader_id = new_member_id
        self.static_members[group_instance_id] = new_member_id
        if old_member_id in self.pending_sync_members:
            self.pending_sync_members.discard(old_member_id)
            self.pending_sync_members.add(new_member_id)
        return new, answers

    def validate_member(self, member_id: str, group_instance_id: str | None):
        """None if (member_id, group_instance_id) names a current member; else
        FENCED_INSTANCE_ID (the instance id belongs to another member id: this is an
        older incarnation) or UNKNOWN_MEMBER_ID."""
        if group_instance_id is not None:
            current = self.static_members.get(group_instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if current != member_id:
                return FENCED_INSTANCE_ID
        if member_id not in self.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None

    # --- pending members

    def add_pending_member(self, member_id: str) -> None:
        if member_id in self.members:
            raise ValueError(f"{member_id} is already a member")
        self.pending_join_members.add(member_id)

    def is_pending_member(self, member_id: str) -> bool:
        return member_id in self.pending_join_members

    def has_received_sync_from_all_members(self) -> bool:
        return not self.pending_sync_members

    # --- protocols

    def candidate_protocols(self) -> set[str]:
        n = len(self.members)
        return {name for name, count in self.supported_protocols.items() if count == n}

    def supports_protocols(self, protocol_type: str, protocol_names: list[str]) -> bool:
        """Whether a member with these protocols may join: an Empty group takes any
        non-empty protocol type with at least one protocol; otherwise the type must be
        the group's and one of the protocols must be supported by every member."""
        if self.state is EMPTY or not self.members:
            return bool(protocol_type) and bool(protocol_names)
        if protocol_type != self.protocol_type:
            return False
        n = len(self.members)
        return any(self.supported_protocols.get(name, 0) == n for name in protocol_names)

    def select_protocol(self) -> str:
        """Kafka's vote: among the protocols every member supports, each member votes
        for its most preferred; most votes wins. Kafka breaks ties by HashMap order
        (arbitrary); here the tie goes to the protocol the oldest member prefers among
        the tied ones, so it is deterministic."""
        if not self.members:
            raise ValueError("cannot select a protocol for an empty group")
        candidates = self.candidate_protocols()
        votes: Counter[str] = Counter(m.vote(candidates) for m in self.members.values())
        best = max(votes.values())
        tied = {name for name, count in votes.items() if count == best}
        for member in self.members.values():
            for name, _ in member.protocols:
                if name in tied:
                    return name
        return next(iter(tied))  # unreachable: every vote comes from a member

    # --- generations

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(EMPTY, now_ms)
        self.pending_sync_members.clear()

    def current_join_members(self) -> list[JoinMember]:
        """The member list a leader's JoinGroup response carries."""
        if self.state in (DEAD, PREPARING_REBALANCE):
            raise ValueError(f"no member metadata for group {self.group_id} in {self.state}")
        return [JoinMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
                for m in self.members.values()]

    def compute_subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to, for protocol_type "consumer": decoded from
        each member's metadata for the chosen protocol (the v0 prefix, as Kafka does).
        None when not a consumer group, no protocol yet, or the metadata does not
        parse (then the group is treated as subscribed to everything)."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return set()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        try:
            for m in self.members.values():
                topics.update(decode_subscription_topics(m.metadata(self.protocol_name)))
        except (CoordinatorRecordError, KeyError):
            return None
        return topics

    def uses_consumer_protocol(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE

    def is_subscribed_to_topic(self, topic: str) -> bool:
        if self.subscribed_topics is not None:
            return topic in self.subscribed_topics
        return self.uses_consumer_protocol()

    # --- answering parked requests

    def complete_join(self, member: ClassicGroupMember, result: JoinResult):
        """Detach the member's parked JoinGroup; returns (callback, result) to deliver,
        or None if it was not parked."""
        cb = member.awaiting_join
        if cb is None:
            return None
        member.awaiting_join = None
        return cb, result

    def complete_sync(self, member: ClassicGroupMember, result: SyncResult):
        cb = member.awaiting_sync
        if cb is None:
            return None
        member.awaiting_sync = None
        return cb, result

    def group_assignment(self) -> dict[str, bytes]:
        return {m.member_id: m.assignment for m in self.members.values()}

    # --- transactional offsets (KIP-98, KIP-447)

    def add_pending_txn_offsets(self, producer_id: int,
                                offsets: dict[tuple[str, int], OffsetAndMetadata]) -> None:
        """Offsets a TxnOffsetCommit of `producer_id` wrote; a later commit of the same
        transaction for a partition replaces its earlier one."""
        self.pending_txn_offsets.setdefault(producer_id, {}).update(offsets)

    def has_pending_txn_offset(self, tp: tuple[str, int]) -> bool:
        """Whether an open transaction holds an offset for `tp` (OffsetFetch with
        require_stable answers UNSTABLE_OFFSET_COMMIT for it)."""
        return any(tp in pending for pending in self.pending_txn_offsets.values())

    def complete_pending_txn_offsets(self, producer_id: int, commit: bool
                                     ) -> list[tuple[str, int]]:
        """The transaction of `producer_id` ended: on commit its offsets become the
        committed ones, except where the committed offset's record is more recent (a
        plain OffsetCommit written after the transactional one wins; both Kafka
        coordinators decide by the position of the records in the log, so that the
        answer is the same after compaction and reload); on abort they are dropped.
        Returns the partitions whose committed offset changed."""
        pending = self.pending_txn_offsets.pop(producer_id, None)
        if not pending or not commit:
            return []
        applied = []
        for tp, offset in pending.items():
            current = self.offsets.get(tp)
            if current is None or offset.record_offset > current.record_offset:
                self.offsets[tp] = offset
                applied.append(tp)
        return applied

    def remove_offsets(self, partitions) -> None:
        """Forget committed and pending transactional offsets of `partitions` (their
        tombstones were written: OffsetDelete, DeleteGroups, expiry). The transactions
        stay open, possibly with no offset left, until their markers: as in Kafka's
        openTransactionsByGroup, an open transaction keeps an Empty group alive."""
        for tp in partitions:
            self.offsets.pop(tp, None)
            for pending in self.pending_txn_offsets.values():
                pending.pop(tp, None)

    def pending_txn_partitions(self) -> set[tuple[str, int]]:
        return {tp for pending in self.pending_txn_offsets.values() for tp in pending}
