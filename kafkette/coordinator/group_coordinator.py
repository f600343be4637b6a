"""The group coordinator: consumer groups of the classic protocol and committed offsets.

Serves, through the wire handlers: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, TxnOffsetCommit, OffsetFetch, OffsetDelete, DescribeGroups, ListGroups,
DeleteGroups.
The group state machine is in group.py (transition table at its top); this module
adds timers, persistence and answers, following Apache Kafka's classic coordinator
(GroupCoordinator.scala up to 3.x; GroupMetadataManager / ClassicGroup in the Java
group-coordinator module since 3.7) rule for rule. Where it differs, a comment says so.

Sans-IO: no asyncio here. The broker calls methods; timers are callbacks on a
`Scheduler`; persistence is a synchronous `OffsetStore.append` that raises KafkaError.
JoinGroup and SyncGroup answer through a `respond` callback that is called exactly
once, now or later (when the rebalance completes, from a timer, or from another
member's request). Answers are queued and delivered after the coordinator has
finished updating its state, so a `respond` that calls back into the coordinator sees
a consistent group.

What lives elsewhere: the group state machine and a group rebuilt from its metadata
record (group.py), the record formats of `__consumer_offsets` and their replay
(offsets_store.py), timers (scheduler.py).

Failover: one coordinator per broker holds the groups of the `__consumer_offsets`
partitions that broker leads; `load` adds a partition's groups when it becomes leader
and `unload_groups` drops them when it stops leading (broker/group_offsets.py).

Transactional offset commits (KIP-98, KIP-447): TxnOffsetCommit writes a
transactional batch of the producer and keeps its offsets pending per producer id,
invisible to OffsetFetch, until the broker reports the transaction's marker in the
group's `__consumer_offsets` partition (`complete_txn_offsets`): COMMIT makes them the
committed offsets unless a plain commit wrote a later record for the partition, ABORT
drops them. OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for a
partition with a pending offset. Whether the producer may commit for the group (the
group was added with AddOffsetsToTxn) is the transaction coordinator's check, which
the handler asks for before calling in (KIP-890).

Not done (yet): the KIP-848 consumer protocol (ConsumerGroupHeartbeat) and its
records; quotas on metadata size other than offset.metadata.max.bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from kafkette.errors import ErrorCode as _EC

GROUP_MAX_SIZE_REACHED = _EC.GROUP_MAX_SIZE_REACHED
GROUP_SUBSCRIBED_TO_TOPIC = _EC.GROUP_SUBSCRIBED_TO_TOPIC


def code_name(code: int) -> str:
    """Kafka's name of an error code, for logs."""
    try:
        return _EC(int(code)).name
    except ValueError:
        return str(int(code))
from kafkette.coordinator.group import (
    COMPLETING_REBALANCE, DEAD, EMPTY, PREPARING_REBALANCE, STABLE, UNKNOWN_MEMBER_ID,
    ClassicGroup, ClassicGroupMember, GroupState, JoinCallback, JoinMember, JoinResult,
    OffsetAndMetadata, SyncCallback, SyncResult)
from kafkette.coordinator.outbox import Outbox
from kafkette.coordinator.offsets_store import (
    NO_PRODUCER_ID, GroupMetadataValue, MemberMetadataValue, OffsetCommitValue, OffsetStore,
    encode_group_metadata_key, encode_group_metadata_value, encode_offset_commit_key,
    encode_offset_commit_value, replay)
from kafkette.coordinator.partitioning import offsets_partition_for
from kafkette.coordinator.scheduler import Scheduler
from kafkette.coordinator.wire import CoordinatorRecordError
from kafkette.errors import ErrorCode, KafkaError
from kafkette.logging import get_logger

__all__ = [
    "GroupConfig", "GroupCoordinator", "JoinResult", "JoinMember", "SyncResult",
    "OffsetCommit", "OffsetAndMetadata", "GroupDescription", "MemberDescription",
    "ListedGroup", "NEW_MEMBER_JOIN_TIMEOUT_MS", "GroupState", "offsets_partition_for",
]

# Kafka expires a member added by a JoinGroup that is still waiting after 5 minutes:
# it has no member id to heartbeat with, and a client that gave up on the request
# (request timeout during a long rebalance) would otherwise linger as a defunct member.
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class GroupConfig:
    """The broker settings the coordinator uses (Kafka property names in comments)."""
    group_min_session_timeout_ms: int = 6000          # group.min.session.timeout.ms
    group_max_session_timeout_ms: int = 1800000       # group.max.session.timeout.ms
    group_initial_rebalance_delay_ms: int = 3000      # group.initial.rebalance.delay.ms
    group_max_size: int = 2**31 - 1                   # group.max.size
    offsets_retention_ms: int = 7 * 24 * 60 * 60 * 1000  # offsets.retention.minutes
    offset_metadata_max_bytes: int = 4096             # offset.metadata.max.bytes
    offsets_retention_check_interval_ms: int = 600000  # offsets.retention.check.interval.ms

    @classmethod
    def from_config(cls, config: Any) -> "GroupConfig":
        """From anything indexable by Kafka property names (kafkette.config's Config)."""
        return cls(
            group_min_session_timeout_ms=config["group.min.session.timeout.ms"],
            group_max_session_timeout_ms=config["group.max.session.timeout.ms"],
            group_initial_rebalance_delay_ms=config["group.initial.rebalance.delay.ms"],
            group_max_size=config["group.max.size"],
            offsets_retention_ms=config["offsets.retention.minutes"] * 60_000,
            offset_metadata_max_bytes=config["offset.metadata.max.bytes"],
            offsets_retention_check_interval_ms=config["offsets.retention.check.interval.ms"],
        )


@dataclass
class OffsetCommit:
    """One partition of an OffsetCommit request. metadata None is stored as "" (Kafka).
    commit_timestamp: OffsetCommit v1's per-partition timestamp (None or -1: now).
    expire_timestamp: now + retention_time_ms for OffsetCommit v2-v4 with a retention
    time other than -1 (KIP-211 removed it in v5); None: the broker's retention."""
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""
    commit_timestamp: int | None = None
    expire_timestamp: int | None = None


@dataclass
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass
class GroupDescription:
    error_code: ErrorCode | int
    group_id: str
    state: str
    protocol_type: str
    protocol_name: str
    members: list[MemberDescription] = field(default_factory=list)


class ListedGroup(NamedTuple):
    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


# --- turning a failed append into the error a client understands (Kafka's tables)

def offset_commit_error(code: int) -> ErrorCode | int:
    """GroupMetadataManager.maybeConvertOffsetCommitError: what an offset commit
    (plain or transactional) answers for a failed append or transaction check."""
    if code == ErrorCode.NETWORK_EXCEPTION:
        return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    if code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT):
        # REQUEST_TIMED_OUT: the Java coordinator maps it to COORDINATOR_NOT_AVAILABLE too.
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE,
                ErrorCode.INVALID_FETCH_SIZE):
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return code


def _group_metadata_error(code: int) -> ErrorCode | int:
    """What a SyncGroup (or a static member's JoinGroup) answers when the group
    metadata record could not be appended (GroupMetadataManager.storeGroup)."""
    if code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code == ErrorCode.REQUEST_TIMED_OUT:
        return ErrorCode.REBALANCE_IN_PROGRESS
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE,
                ErrorCode.INVALID_FETCH_SIZE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return code


def _loaded_offset(v: OffsetCommitValue, record_offset: int) -> OffsetAndMetadata:
    return OffsetAndMetadata(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp,
                             v.expire_timestamp if v.expire_timestamp >= 0 else None,
                             record_offset)


def _java_length(s: str) -> int:
    """Java's String.length(): UTF-16 code units. Kafka checks
    offset.metadata.max.bytes against it, despite the name."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


class GroupCoordinator:
    def __init__(self, scheduler: Scheduler, config: GroupConfig | None = None,
                 store: OffsetStore | None = None, log: Any = None):
        self._scheduler = scheduler
        self.config = config or GroupConfig()
        self._store = store
        self._log = log if log is not None else get_logger("kafkette.coordinator.group")
        self._groups: dict[str, ClassicGroup] = {}
        self._heartbeat_timers: dict[tuple[str, str], Any] = {}
        self._join_timers: dict[str, Any] = {}
        self._sync_timers: dict[str, Any] = {}
        self._answers = Outbox(self._log, "coordinator_respond_failed")
        self._expiry_timer: Any = None
        self._closed = False
        # producer id -> groups holding its pending transactional offsets (Kafka's
        # openGroupsForProducer): what a transaction marker completes.
        self._txn_groups: dict[int, set[str]] = {}
        # The last log offset of `__consumer_offsets` seen (loaded or appended), to
        # order records when the store does not report offsets (test stores).
        self._last_record_offset = -1
        self._schedule_offsets_expiry()

    # ================================================================ introspection

    def group(self, group_id: str) -> ClassicGroup | None:
        return self._groups.get(group_id)

    @property
    def groups(self) -> dict[str, ClassicGroup]:
        return self._groups

    @property
    def store(self):
        """The OffsetStore the coordinator writes through (None in some tests)."""
        return self._store

    def close(self) -> None:
        """Cancel every timer (broker shutdown). Parked requests are not answered: their
        connections are closing."""
        self._closed = True
        for handle in [*self._heartbeat_timers.values(), *self._join_timers.values(),
                       *self._sync_timers.values(), self._expiry_timer]:
            if handle is not None:
                self._scheduler.cancel(handle)
        self._heartbeat_timers.clear()
        self._join_timers.clear()
        self._sync_timers.clear()
        self._expiry_timer = None

    # ================================================================ JoinGroup

    def join_group(self, group_id: str, member_id: str, group_instance_id: str | None,
                   client_id: str, client_host: str, session_timeout_ms: int,
                   rebalance_timeout_ms: int, protocol_type: str,
                   protocols: Sequence[tuple[str, bytes]], require_known_member_id: bool,
                   reason: str | None, respond: JoinCallback,
                   supports_skip_assignment: bool = False) -> None:
        """JoinGroup. `rebalance_timeout_ms`: JoinGroup v0 has none; pass the session
        timeout, as Kafka does. `require_known_member_id`: JoinGroup v4+ (KIP-394).
        `supports_skip_assignment`: JoinGroup v9+ (KIP-814), see the static rejoin."""
        with self._answering():
            member_id = member_id or UNKNOWN_MEMBER_ID
            protocols = [(name, bytes(meta)) for name, meta in protocols]
            if not group_id:
                self._send(respond, JoinResult(ErrorCode.INVALID_GROUP_ID, member_id))
                return
            if not (self.config.group_min_session_timeout_ms <= session_timeout_ms
                    <= self.config.group_max_session_timeout_ms):
                self._send(respond, JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, member_id))
                return
            is_unknown = member_id == UNKNOWN_MEMBER_ID
            group = self._groups.get(group_id)
            if group is None:
                # Only a new member creates a group; a member id for a group that does
                # not exist is stale (the group expired or was deleted).
                if not is_unknown:
                    self._send(respond, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
                    return
                group = self._create_group(group_id)
            args = (group_instance_id, client_id, client_host, session_timeout_ms,
                    rebalance_timeout_ms, protocol_type, protocols, reason or "not provided",
                    respond)
            if not self._accept_joining_member(group, member_id):
                self._drop_member(group, member_id)
                self._send(respond, JoinResult(GROUP_MAX_SIZE_REACHED, UNKNOWN_MEMBER_ID))
            elif is_unknown:
                self._new_member_join(group, require_known_member_id,
                                      supports_skip_assignment, *args)
            else:
                self._current_member_join(group, member_id, *args)
            if group.is_in(PREPARING_REBALANCE):
                self._maybe_complete_join(group)

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        """group.max.size (KIP-389). While preparing a rebalance, the members that have
        rejoined count, so members beyond a lowered limit are the ones shed."""
        limit = self.config.group_max_size
        if group.is_in(EMPTY, DEAD):
            return True
        if group.is_in(PREPARING_REBALANCE):
            return ((group.has(member_id) and group.get(member_id).is_awaiting_join)
                    or group.num_awaiting_join() < limit)
        return group.has(member_id) or group.size < limit

    def _new_member_join(self, group: ClassicGroup, require_known_member_id: bool,
                         supports_skip_assignment: bool, group_instance_id, client_id,
                         client_host, session_timeout_ms, rebalance_timeout_ms,
                         protocol_type, protocols, reason, respond) -> None:
        if group.is_in(DEAD):
            self._send(respond, JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(protocol_type, [n for n, _ in protocols]):
            self._send(respond, JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        new_member_id = group.generate_member_id(client_id, group_instance_id)
        if group_instance_id is not None:
            old_member_id = group.static_member_id(group_instance_id)
            if old_member_id is not None:
                self._log.info("static_member_rejoined", group_id=group.group_id,
                               group_instance_id=group_instance_id, old_member_id=old_member_id,
                               member_id=new_member_id, state=str(group.state))
                self._update_static_member_and_rebalance(
                    group, old_member_id, new_member_id, group_instance_id, protocols,
                    rebalance_timeout_ms, session_timeout_ms, respond, reason,
                    supports_skip_assignment)
            else:
                self._add_member_and_rebalance(
                    group, new_member_id, group_instance_id, client_id, client_host,
                    session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols,
                    respond, reason)
        elif require_known_member_id:
            # KIP-394: hand out the member id first, so that a client that times out and
            # retries does not leave a defunct member behind; the id is remembered as
            # pending until the member rejoins with it or its session timeout passes.
            group.add_pending_member(new_member_id)
            self._schedule_heartbeat(group, new_member_id, session_timeout_ms)
            self._send(respond, JoinResult(ErrorCode.MEMBER_ID_REQUIRED, new_member_id))
        else:
            self._add_member_and_rebalance(
                group, new_member_id, None, client_id, client_host, session_timeout_ms,
                rebalance_timeout_ms, protocol_type, protocols, respond, reason)

    def _current_member_join(self, group: ClassicGroup, member_id: str, group_instance_id,
                             client_id, client_host, session_timeout_ms, rebalance_timeout_ms,
                             protocol_type, protocols, reason, respond) -> None:
        if group.is_in(DEAD):
            self._send(respond, JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(protocol_type, [n for n, _ in protocols]):
            self._send(respond, JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        if group.is_pending_member(member_id):
            if group_instance_id is not None:
                # Pending ids are only handed to dynamic members; Kafka throws
                # IllegalStateException here, which reaches the client as this.
                self._send(respond, JoinResult(ErrorCode.UNKNOWN_SERVER_ERROR, member_id))
                return
            self._add_member_and_rebalance(
                group, member_id, None, client_id, client_host, session_timeout_ms,
                rebalance_timeout_ms, protocol_type, protocols, respond, reason)
            return
        error = group.validate_member(member_id, group_instance_id)
        if error is not None:
            self._send(respond, JoinResult(error, member_id))
            return
        member = group.get(member_id)
        if group.is_in(PREPARING_REBALANCE):
            self._update_member_and_rebalance(group, member, protocols, rebalance_timeout_ms,
                                              session_timeout_ms, respond,
                                              f"member rejoined; client reason: {reason}")
        elif group.is_in(COMPLETING_REBALANCE):
            if member.matches(protocols):
                # Same metadata: the member probably lost the JoinGroup response; give it
                # the current generation again (the leader gets the member list again).
                self._reschedule_heartbeat(group, member)
                self._send(respond, self._join_result_for(group, member))
            else:
                self._update_member_and_rebalance(group, member, protocols, rebalance_timeout_ms,
                                                  session_timeout_ms, respond,
                                                  f"member metadata changed; client reason: {reason}")
        elif group.is_in(STABLE):
            if group.is_leader(member_id) or not member.matches(protocols):
                # The leader's JoinGroup always rebalances: it is how a consumer asks for a
                # new assignment after topic metadata changed (member metadata unchanged).
                self._update_member_and_rebalance(group, member, protocols, rebalance_timeout_ms,
                                                  session_timeout_ms, respond,
                                                  f"leader rejoined or metadata changed; "
                                                  f"client reason: {reason}")
            else:
                # A follower with unchanged metadata (KIP-429 cooperative consumers rejoin
                # like this): no rebalance, the current generation so it can SyncGroup.
                self._reschedule_heartbeat(group, member)
                self._send(respond, JoinResult(
                    ErrorCode.NONE, member_id, group.generation_id, group.protocol_type,
                    group.protocol_name, group.leader_id or "", False, []))
        else:  # Empty: a member cannot be known; the group lost it.
            self._send(respond, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _join_result_for(self, group: ClassicGroup, member: ClassicGroupMember) -> JoinResult:
        members = group.current_join_members() if group.is_leader(member.member_id) else []
        return JoinResult(ErrorCode.NONE, member.member_id, group.generation_id,
                          group.protocol_type, group.protocol_name, group.leader_id or "",
                          False, members)

    def _add_member_and_rebalance(self, group: ClassicGroup, member_id: str,
                                  group_instance_id: str | None, client_id: str,
                                  client_host: str, session_timeout_ms: int,
                                  rebalance_timeout_ms: int, protocol_type: str,
                                  protocols: list[tuple[str, bytes]], respond: JoinCallback,
                                  reason: str) -> None:
        member = ClassicGroupMember(member_id, group_instance_id, client_id, client_host,
                                    rebalance_timeout_ms, session_timeout_ms, protocol_type,
                                    protocols, is_new=True)
        if group.is_in(PREPARING_REBALANCE) and group.initial_rebalance:
            # KIP-134: another member arrived during the initial delay; extend it.
            group.new_member_added = True
        group.add(member, respond)
        self._schedule_heartbeat(group, member_id, NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._log.info("member_joining", group_id=group.group_id, member_id=member_id,
                       group_instance_id=group_instance_id, client_id=client_id,
                       client_host=client_host, reason=reason)
        self._maybe_prepare_rebalance_or_complete_join(
            group, f"adding new member {member_id}; client reason: {reason}")

    def _update_member_and_rebalance(self, group: ClassicGroup, member: ClassicGroupMember,
                                     protocols, rebalance_timeout_ms: int,
                                     session_timeout_ms: int, respond: JoinCallback,
                                     reason: str) -> None:
        replaced = group.update_member(member, protocols, rebalance_timeout_ms,
                                       session_timeout_ms, respond)
        if replaced is not None:
            # A second JoinGroup while the first is parked. Kafka drops the first answer;
            # answering it keeps "each request answered once" and lets a connection
            # that answers in order move on.
            self._send(replaced, JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        self._reschedule_heartbeat(group, member)
        self._maybe_prepare_rebalance_or_complete_join(group, reason)

    def _update_static_member_and_rebalance(self, group: ClassicGroup, old_member_id: str,
                                            new_member_id: str, group_instance_id: str,
                                            protocols, rebalance_timeout_ms: int,
                                            session_timeout_ms: int, respond: JoinCallback,
                                            reason: str, supports_skip_assignment: bool) -> None:
        """KIP-345: a static member restarted (unknown member id, known instance id). It
        takes over the old member (assignment included) under a new member id; the old
        id is fenced from now on. In Stable, no rebalance unless the group's protocol
        would change: the group metadata is rewritten with the new member id and the
        member gets the current generation, then its SyncGroup returns its old
        assignment."""
        current_leader = group.leader_id
        member, fenced = group.replace_static_member(group_instance_id, old_member_id,
                                                     new_member_id)
        for cb, result in fenced:
            self._send(cb, result)
        self._cancel_heartbeat(group.group_id, old_member_id)
        self._reschedule_heartbeat(group, member)
        old_protocols = member.protocols
        old_rebalance_timeout, old_session_timeout = (member.rebalance_timeout_ms,
                                                      member.session_timeout_ms)
        group.update_member(member, protocols, rebalance_timeout_ms, session_timeout_ms, respond)

        if group.is_in(STABLE):
            if group.protocol_name == group.select_protocol():
                try:
                    self._store_group(group, group.group_assignment())
                except KafkaError as e:
                    # Could not persist the new member id: undo, so the old incarnation
                    # (if still alive) keeps working, and tell the new one.
                    error = _group_metadata_error(e.code)
                    self._log.warning("static_member_persist_failed", group_id=group.group_id,
                                      group_instance_id=group_instance_id,
                                      error=code_name(error))
                    group.update_member(member, old_protocols, old_rebalance_timeout,
                                        old_session_timeout, None)
                    restored, _ = group.replace_static_member(group_instance_id, new_member_id,
                                                              old_member_id)
                    self._cancel_heartbeat(group.group_id, new_member_id)
                    self._reschedule_heartbeat(group, restored)
                    self._send(respond, JoinResult(
                        error, UNKNOWN_MEMBER_ID, group.generation_id, group.protocol_type,
                        group.protocol_name, current_leader or "", False, []))
                    return
                if supports_skip_assignment:
                    # JoinGroup v9+ (KIP-814): a static leader learns it leads but is told
                    # to skip the assignor, which keeps it watching metadata without
                    # producing an assignment a Stable group would ignore.
                    is_leader = group.is_leader(new_member_id)
                    result = JoinResult(
                        ErrorCode.NONE, new_member_id, group.generation_id, group.protocol_type,
                        group.protocol_name, group.leader_id or "", is_leader,
                        group.current_join_members() if is_leader else [])
                else:
                    # Before v9: answer with the *old* leader id, so a restarted leader does
                    # not think it leads and run a pointless assignment.
                    result = JoinResult(
                        ErrorCode.NONE, new_member_id, group.generation_id, group.protocol_type,
                        group.protocol_name, current_leader or "", False, [])
                self._deliver(group.complete_join(member, result))
            else:
                self._prepare_rebalance(group, f"static member {group_instance_id} rejoined with "
                                               f"protocols that change the group's protocol; "
                                               f"client reason: {reason}")
        elif group.is_in(COMPLETING_REBALANCE):
            # The leader may already be assigning to the old member id: start over.
            self._prepare_rebalance(group, f"static member {group_instance_id} rejoined during "
                                           f"CompletingRebalance; client reason: {reason}")
        # PreparingRebalance: the member now waits with the others.

    # ================================================================ rebalance phases

    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join(group)

    def _maybe_prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.is_in(COMPLETING_REBALANCE):
            # Followers parked in SyncGroup must rejoin.
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self._remove_sync_expiration(group)
        initial = group.is_in(EMPTY)
        if initial:
            # KIP-134: the first rebalance of an empty group waits
            # group.initial.rebalance.delay.ms for more members, extended by the same
            # delay each time a member arrives, at most up to the rebalance timeout. It
            # never waits for a session timeout (COMPATIBILITY.md: Tansu waits about half
            # of session.timeout.ms, librdkafka's default of which is 45 s).
            delay = self.config.group_initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms() - delay, 0)
            group.initial_rebalance = True
            group.new_member_added = False
            self._schedule_join_timer(group, delay,
                                      lambda: self._on_initial_join_timer(group, delay, remaining))
        group.transition_to(PREPARING_REBALANCE, self._now())
        self._log.info("group_preparing_rebalance", group_id=group.group_id,
                       generation_id=group.generation_id, members=group.size, reason=reason)
        if not initial:
            if group.has_all_members_joined():
                self._complete_join(group)
            else:
                self._schedule_join_timer(group, group.rebalance_timeout_ms(),
                                          lambda: self._on_join_timer(group))

    def _maybe_complete_join(self, group: ClassicGroup) -> None:
        # During the initial delay only its timer completes the phase (Kafka's
        # InitialDelayedJoin.tryComplete is always false).
        if (group.is_in(PREPARING_REBALANCE) and not group.initial_rebalance
                and group.has_all_members_joined()):
            self._complete_join(group)

    def _on_initial_join_timer(self, group: ClassicGroup, delay: int, remaining: int) -> None:
        with self._answering():
            self._join_timers.pop(group.group_id, None)
            if not self._is_current(group) or not group.is_in(PREPARING_REBALANCE):
                return
            if group.new_member_added and remaining != 0:
                group.new_member_added = False
                new_delay = min(self.config.group_initial_rebalance_delay_ms, remaining)
                new_remaining = max(remaining - delay, 0)
                self._schedule_join_timer(
                    group, new_delay,
                    lambda: self._on_initial_join_timer(group, new_delay, new_remaining))
            else:
                self._complete_join(group)

    def _on_join_timer(self, group: ClassicGroup) -> None:
        with self._answering():
            self._join_timers.pop(group.group_id, None)
            if self._is_current(group) and group.is_in(PREPARING_REBALANCE):
                self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        """End of the join phase: drop dynamic members that did not rejoin (static
        members stay until their session expires, KIP-345), pick the next generation
        and protocol, answer every parked JoinGroup, then wait for SyncGroups."""
        self._cancel_join_timer(group.group_id)
        group.initial_rebalance = False
        group.new_member_added = False
        for member in group.not_yet_rejoined_members():
            if not member.is_static:
                self._log.info("member_removed_not_rejoined", group_id=group.group_id,
                               member_id=member.member_id)
                self._cancel_heartbeat(group.group_id, member.member_id)
                self._deliver(group.complete_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)))
                group.remove(member.member_id)
        if group.is_in(DEAD):
            return
        if group.members and not group.maybe_elect_new_joined_leader():
            # Only static members that did not rejoin are left: wait another rebalance
            # timeout; their sessions expire meanwhile if they are gone.
            self._log.error("group_rebalance_no_member_rejoined", group_id=group.group_id)
            self._schedule_join_timer(group, group.rebalance_timeout_ms(),
                                      lambda: self._on_join_timer(group))
            return
        group.init_next_generation(self._now())
        if group.is_in(EMPTY):
            self._log.info("group_empty", group_id=group.group_id,
                           generation_id=group.generation_id)
            try:
                self._store_group(group, {})
            except KafkaError as e:
                # As Kafka: the previous generation would come back after a restart and
                # its members would expire; nothing to answer.
                self._log.warning("empty_group_persist_failed", group_id=group.group_id,
                                  error=code_name(e.code))
            return
        self._log.info("group_stabilizing", group_id=group.group_id,
                       generation_id=group.generation_id, protocol_name=group.protocol_name,
                       leader=group.leader_id, members=group.size)
        for member in list(group.members.values()):
            self._deliver(group.complete_join(member, self._join_result_for(group, member)))
            # New members trade their join timer for the session timeout now.
            member.is_new = False
            self._reschedule_heartbeat(group, member)
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        self._sync_timers[group.group_id] = self._scheduler.call_at(
            self._now() + group.rebalance_timeout_ms(),
            lambda: self._on_sync_timer(group, generation))

    def _on_sync_timer(self, group: ClassicGroup, generation: int) -> None:
        """Members that got their JoinGroup answer but never sent SyncGroup within the
        rebalance timeout are removed and the group rebalances (KAFKA-13213)."""
        with self._answering():
            self._sync_timers.pop(group.group_id, None)
            if not self._is_current(group) or generation != group.generation_id:
                return
            if not group.is_in(COMPLETING_REBALANCE, STABLE):
                return
            if group.has_received_sync_from_all_members():
                return
            missing = [m for m in group.pending_sync_members if group.has(m)]
            for member_id in missing:
                member = group.get(member_id)
                self._deliver(group.complete_join(member, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID)))
                self._cancel_heartbeat(group.group_id, member_id)
                group.remove(member_id)
            self._log.info("members_removed_no_sync", group_id=group.group_id,
                           members=sorted(missing))
            self._prepare_rebalance(group, f"members {sorted(missing)} did not SyncGroup")

    def _remove_sync_expiration(self, group: ClassicGroup) -> None:
        group.pending_sync_members.clear()
        handle = self._sync_timers.pop(group.group_id, None)
        if handle is not None:
            self._scheduler.cancel(handle)

    def _maybe_complete_sync_expiration(self, group: ClassicGroup) -> None:
        if group.has_received_sync_from_all_members():
            handle = self._sync_timers.pop(group.group_id, None)
            if handle is not None:
                self._scheduler.cancel(handle)

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup, error) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _set_and_propagate_assignment(self, group: ClassicGroup,
                                      assignment: dict[str, bytes]) -> None:
        for member in group.members.values():
            member.assignment = assignment.get(member.member_id, b"")
        self._propagate_assignment(group, ErrorCode.NONE)

    def _propagate_assignment(self, group: ClassicGroup, error) -> None:
        ok = error == ErrorCode.NONE
        for member in list(group.members.values()):
            answer = group.complete_sync(member, SyncResult(
                error, group.protocol_type if ok else None,
                group.protocol_name if ok else None, member.assignment))
            if answer is not None:
                self._deliver(answer)
                # A session that ran out while the member was parked was spared; it
                # starts again now.
                self._reschedule_heartbeat(group, member)

    # ================================================================ SyncGroup

    def sync_group(self, group_id: str, generation_id: int, member_id: str,
                   group_instance_id: str | None, protocol_type: str | None,
                   protocol_name: str | None, assignments: dict[str, bytes],
                   respond: SyncCallback) -> None:
        """SyncGroup. `protocol_type` / `protocol_name`: SyncGroup v5+ (None before), and
        checked against the group's when given."""
        with self._answering():
            if not group_id:
                self._send(respond, SyncResult(ErrorCode.INVALID_GROUP_ID))
                return
            group = self._groups.get(group_id)
            if group is None:
                self._send(respond, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
                return
            if group.is_in(DEAD):
                self._send(respond, SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE))
                return
            error = group.validate_member(member_id, group_instance_id)
            if error is None and generation_id != group.generation_id:
                error = ErrorCode.ILLEGAL_GENERATION
            if error is None and protocol_type is not None and protocol_type != group.protocol_type:
                error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
            if error is None and protocol_name is not None and protocol_name != group.protocol_name:
                error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
            if error is not None:
                self._send(respond, SyncResult(error))
                return
            if group.is_in(EMPTY):
                self._send(respond, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
            elif group.is_in(PREPARING_REBALANCE):
                self._send(respond, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
            elif group.is_in(COMPLETING_REBALANCE):
                member = group.get(member_id)
                if member.awaiting_sync is not None:
                    # A second SyncGroup while the first is parked; see
                    # _update_member_and_rebalance for why it is answered.
                    self._send(member.awaiting_sync, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
                member.awaiting_sync = respond
                group.pending_sync_members.discard(member_id)
                self._maybe_complete_sync_expiration(group)
                if group.is_leader(member_id):
                    self._on_leader_sync(group, member_id, assignments)
            else:  # Stable
                # COMPATIBILITY.md: a SyncGroup arriving after the group stabilised (a
                # retry, or a follower that was slow) gets the current assignment, never
                # an error.
                member = group.get(member_id)
                group.pending_sync_members.discard(member_id)
                self._maybe_complete_sync_expiration(group)
                self._reschedule_heartbeat(group, member)
                self._send(respond, SyncResult(ErrorCode.NONE, group.protocol_type,
                                               group.protocol_name, member.assignment))

    def _on_leader_sync(self, group: ClassicGroup, member_id: str,
                        assignments: dict[str, bytes]) -> None:
        full = {mid: bytes(assignments.get(mid, b"") or b"") for mid in group.members}
        missing = [mid for mid in group.members if mid not in assignments]
        if missing:
            self._log.warning("assignment_missing_members", group_id=group.group_id,
                              generation_id=group.generation_id, members=missing)
        try:
            self._store_group(group, full)
        except KafkaError as e:
            error = _group_metadata_error(e.code)
            self._log.warning("group_assignment_persist_failed", group_id=group.group_id,
                              generation_id=group.generation_id, error=code_name(error))
            self._reset_and_propagate_assignment_error(group, error)
            self._maybe_prepare_rebalance(group, f"error {code_name(error)} storing the "
                                                 f"assignment of leader {member_id}")
            return
        self._set_and_propagate_assignment(group, full)
        group.transition_to(STABLE, self._now())
        self._log.info("group_stable", group_id=group.group_id,
                       generation_id=group.generation_id, members=group.size)

    # ================================================================ Heartbeat

    def heartbeat(self, group_id: str, generation_id: int, member_id: str,
                  group_instance_id: str | None) -> ErrorCode | int:
        with self._answering():
            if not group_id:
                return ErrorCode.INVALID_GROUP_ID
            group = self._groups.get(group_id)
            if group is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if group.is_in(DEAD):
                return ErrorCode.COORDINATOR_NOT_AVAILABLE
            error = group.validate_member(member_id, group_instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
            if group.is_in(EMPTY):
                return ErrorCode.UNKNOWN_MEMBER_ID
            self._reschedule_heartbeat(group, group.get(member_id))
            if group.is_in(PREPARING_REBALANCE):
                # The member must rejoin; it is still alive meanwhile.
                return ErrorCode.REBALANCE_IN_PROGRESS
            # Stable, or CompletingRebalance: the member got its JoinGroup answer and may
            # heartbeat while the leader computes the assignment.
            return ErrorCode.NONE

    def _schedule_heartbeat(self, group: ClassicGroup, member_id: str, timeout_ms: int) -> None:
        key = (group.group_id, member_id)
        old = self._heartbeat_timers.pop(key, None)
        if old is not None:
            self._scheduler.cancel(old)
        self._heartbeat_timers[key] = self._scheduler.call_at(
            self._now() + timeout_ms, lambda: self._on_heartbeat_expired(group, member_id))

    def _reschedule_heartbeat(self, group: ClassicGroup, member: ClassicGroupMember) -> None:
        if member.is_new:
            return  # keeps its new-member join timer until the join phase completes
        self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms)

    def _cancel_heartbeat(self, group_id: str, member_id: str) -> None:
        handle = self._heartbeat_timers.pop((group_id, member_id), None)
        if handle is not None:
            self._scheduler.cancel(handle)

    def _on_heartbeat_expired(self, group: ClassicGroup, member_id: str) -> None:
        with self._answering():
            self._heartbeat_timers.pop((group.group_id, member_id), None)
            if not self._is_current(group) or group.is_in(DEAD):
                return
            if group.is_pending_member(member_id):
                self._log.info("pending_member_expired", group_id=group.group_id,
                               member_id=member_id)
                group.remove(member_id)
                self._maybe_complete_join(group)
                return
            member = group.members.get(member_id)
            if member is None:
                return
            if member.has_satisfied_heartbeat():
                # Parked in JoinGroup/SyncGroup: alive. Kafka stops watching it until the
                # phase completes; watching again is equivalent and cannot be forgotten.
                self._schedule_heartbeat(group, member_id, member.session_timeout_ms)
                return
            self._log.info("member_session_expired", group_id=group.group_id,
                           member_id=member_id, state=str(group.state),
                           new_member=member.is_new)
            self._remove_member_and_update_group(group, member,
                                                 f"member {member_id} session expired")

    def _remove_member_and_update_group(self, group: ClassicGroup, member: ClassicGroupMember,
                                        reason: str) -> None:
        # A member parked in JoinGroup (a new member whose join timed out) gets
        # UNKNOWN_MEMBER_ID, so a client that is in fact still there joins again.
        self._deliver(group.complete_join(member, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID)))
        self._deliver(group.complete_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)))
        self._cancel_heartbeat(group.group_id, member.member_id)
        group.remove(member.member_id)
        if group.is_in(STABLE, COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance_or_complete_join(group, reason)
        elif group.is_in(PREPARING_REBALANCE):
            self._maybe_complete_join(group)

    def _drop_member(self, group: ClassicGroup, member_id: str) -> None:
        """Kafka's bare group.remove (a member over group.max.size)."""
        member = group.members.get(member_id)
        if member is not None:
            self._deliver(group.complete_join(member, JoinResult(GROUP_MAX_SIZE_REACHED)))
            self._deliver(group.complete_sync(member, SyncResult(GROUP_MAX_SIZE_REACHED)))
        if member is not None or group.is_pending_member(member_id):
            self._cancel_heartbeat(group.group_id, member_id)
        group.remove(member_id)

    # ================================================================ LeaveGroup

    def leave_group(self, group_id: str, members: Sequence[tuple]
                    ) -> tuple[ErrorCode | int, list[ErrorCode | int]]:
        """LeaveGroup; `members` are (member_id, group_instance_id[, reason]) (v3+
        batches them, KIP-345). A member id of "" or None with an instance id removes
        that static member whatever its member id (the admin client's
        removeMembersFromConsumerGroup). Returns (top-level error, per-member errors);
        for v0-2 the handler answers the single member's error at top level."""
        with self._answering():
            if not group_id:
                return ErrorCode.INVALID_GROUP_ID, []
            group = self._groups.get(group_id)
            if group is None:
                return ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID for _ in members]
            if group.is_in(DEAD):
                return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
            errors: list[ErrorCode | int] = []
            for entry in members:
                member_id = entry[0] or UNKNOWN_MEMBER_ID
                group_instance_id = entry[1] if len(entry) > 1 else None
                reason = (entry[2] if len(entry) > 2 else None) or "not provided"
                if member_id == UNKNOWN_MEMBER_ID:
                    current = group.static_member_id(group_instance_id)
                    if current is None:
                        errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    else:
                        self._leave(group, current, reason)
                        errors.append(ErrorCode.NONE)
                elif group.is_pending_member(member_id):
                    group.remove(member_id)
                    self._cancel_heartbeat(group_id, member_id)
                    self._maybe_complete_join(group)
                    errors.append(ErrorCode.NONE)
                else:
                    error = group.validate_member(member_id, group_instance_id)
                    if error is None:
                        self._leave(group, member_id, reason)
                        errors.append(ErrorCode.NONE)
                    else:
                        errors.append(error)
            return ErrorCode.NONE, errors

    def _leave(self, group: ClassicGroup, member_id: str, reason: str) -> None:
        self._log.info("member_left", group_id=group.group_id, member_id=member_id,
                       reason=reason)
        self._remove_member_and_update_group(
            group, group.get(member_id), f"member {member_id} left; client reason: {reason}")

    # ================================================================ offsets

    def commit_offsets(self, group_id: str, generation_id: int, member_id: str,
                       group_instance_id: str | None,
                       offsets: dict[TopicPartition, OffsetCommit]
                       ) -> dict[TopicPartition, ErrorCode | int]:
        """OffsetCommit. generation -1 with no member id: a consumer that does not use
        group management (assign()) or the admin client; allowed only while the group
        is Empty (or does not exist: then it is created, Empty, to hold the offsets).

        The rebalance trap (COMPATIBILITY.md), as Kafka: while PreparingRebalance the
        generation has not moved yet, so a member committing with the generation it
        has is accepted (consumers commit in onPartitionsRevoked, before rejoining).
        Once the join phase completes the generation moves: a commit with the previous
        generation is ILLEGAL_GENERATION, and one with the new generation during
        CompletingRebalance is REBALANCE_IN_PROGRESS."""
        with self._answering():
            member_id = member_id or UNKNOWN_MEMBER_ID
            group = self._groups.get(group_id)
            created = False
            if group is None:
                if generation_id >= 0:
                    # A generation for a group this coordinator does not know: stale.
                    return {tp: ErrorCode.ILLEGAL_GENERATION for tp in offsets}
                group = self._create_group(group_id)
                created = True
                self._log.info("simple_group_created", group_id=group_id)
            error = self._validate_offset_commit(group, generation_id, member_id,
                                                 group_instance_id)
            if error is not None:
                if created:
                    self._groups.pop(group_id, None)
                return {tp: error for tp in offsets}
            if group.is_in(STABLE, PREPARING_REBALANCE) and group.has(member_id):
                self._reschedule_heartbeat(group, group.get(member_id))
            results = self._store_offsets(group, offsets)
            if created and not group.offsets:
                self._groups.pop(group_id, None)
            return results

    def _validate_offset_commit(self, group: ClassicGroup, generation_id: int, member_id: str,
                                group_instance_id: str | None, transactional: bool = False):
        """Kafka's validateOffsetCommit. A transactional commit (TxnOffsetCommit) is
        checked only on the member fields it carries: no member id on a group with
        members and a rebalance in progress are fine for it, as in Kafka."""
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation_id < 0 and group.is_in(EMPTY):
            return None
        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or group_instance_id is not None:
            error = group.validate_member(member_id, group_instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
        elif transactional:
            return None
        elif not group.is_in(EMPTY):
            # No member id and generation -1 (OffsetCommit v0/v1 style) on a group with
            # members: only members may commit. Kafka answers UNKNOWN_MEMBER_ID.
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(COMPLETING_REBALANCE) and not transactional:
            # The member knows the new generation (it got its JoinGroup answer) but has
            # no assignment yet: retriable, the consumer commits again after SyncGroup.
            return ErrorCode.REBALANCE_IN_PROGRESS
        return None

    def _store_offsets(self, group: ClassicGroup, offsets: dict[TopicPartition, OffsetCommit],
                       producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1
                       ) -> dict[TopicPartition, ErrorCode | int]:
        """Append the valid offsets as one batch (transactional with a producer id) and
        then, as Kafka's coordinator does once the append succeeded, make them the
        committed offsets or the producer's pending ones."""
        now = self._now()
        results: dict[TopicPartition, ErrorCode | int] = {}
        valid: dict[TopicPartition, OffsetAndMetadata] = {}
        records: list[tuple[bytes, bytes | None]] = []
        for tp, commit in offsets.items():
            metadata = commit.metadata if commit.metadata is not None else ""
            if _java_length(metadata) > self.config.offset_metadata_max_bytes:
                results[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            commit_ts = (commit.commit_timestamp
                         if commit.commit_timestamp is not None and commit.commit_timestamp >= 0
                         else now)
            expire_ts = commit.expire_timestamp if commit.expire_timestamp is not None and \
                commit.expire_timestamp >= 0 else None
            stored = OffsetAndMetadata(commit.offset, commit.leader_epoch, metadata, commit_ts,
                                       expire_ts)
            try:
                value = encode_offset_commit_value(OffsetCommitValue(
                    commit.offset, commit.leader_epoch, metadata, commit_ts,
                    -1 if expire_ts is None else expire_ts))
                key = encode_offset_commit_key(group.group_id, tp[0], tp[1])
            except (ValueError, OverflowError):
                results[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            valid[tp] = stored
            records.append((key, value))
            results[tp] = ErrorCode.NONE
        if records:
            try:
                base = self._append(group.group_id, records, producer_id, producer_epoch)
            except KafkaError as e:
                error = offset_commit_error(e.code)
                self._log.warning("offset_commit_persist_failed", group_id=group.group_id,
                                  error=code_name(error), producer_id=producer_id)
                for tp in valid:
                    results[tp] = error
                return {tp: results[tp] for tp in offsets}
            for i, stored in enumerate(valid.values()):
                stored.record_offset = base + i   # records are in `valid`'s order
            if producer_id == NO_PRODUCER_ID:
                group.offsets.update(valid)
            else:
                group.add_pending_txn_offsets(producer_id, valid)
                self._txn_groups.setdefault(producer_id, set()).add(group.group_id)
        return {tp: results[tp] for tp in offsets}

    # ================================================================ transactional offsets

    def commit_txn_offsets(self, group_id: str, producer_id: int, producer_epoch: int,
                           generation_id: int, member_id: str, group_instance_id: str | None,
                           offsets: dict[TopicPartition, OffsetCommit]
                           ) -> dict[TopicPartition, int]:
        """TxnOffsetCommit: write `offsets` as a transactional batch of the producer
        (KIP-98) and keep them pending until `complete_txn_offsets`. Whether the
        producer's transaction includes this group, and that its epoch is current, is
        checked before (the transaction coordinator's verification, KIP-890). Kafka's
        log also fences a stale epoch through its producer state; kafkette's log
        skips the producer state for these sequence-less coordinator batches, so the
        verification is the only epoch check here.

        KIP-447 (TxnOffsetCommit v3+) carries the consumer's generation, member id and
        instance id, checked as for OffsetCommit (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
        FENCED_INSTANCE_ID), so that a zombie producer whose consumer lost its
        partitions cannot commit; v0-2 send generation -1 and no member, and are not
        checked. Unlike OffsetCommit, no member id is required on a group with members
        (older versions cannot send one), the group state is not enforced (no
        REBALANCE_IN_PROGRESS) and no heartbeat is completed, as in Kafka. A group that
        does not exist is created (Empty) for generation -1 and is ILLEGAL_GENERATION
        otherwise (Kafka 4.x's coordinator; the 3.x one created it and answered
        UNKNOWN_MEMBER_ID)."""
        with self._answering():
            member_id = member_id or UNKNOWN_MEMBER_ID
            group = self._groups.get(group_id)
            created = False
            if group is None:
                if generation_id >= 0:
                    return {tp: ErrorCode.ILLEGAL_GENERATION for tp in offsets}
                group = self._create_group(group_id)
                created = True
            error = self._validate_offset_commit(group, generation_id, member_id,
                                                 group_instance_id, transactional=True)
            if error is not None:
                results = {tp: error for tp in offsets}
            else:
                results = self._store_offsets(group, offsets, producer_id, producer_epoch)
                stored = [tp for tp, code in results.items() if code == ErrorCode.NONE]
                if stored:
                    self._log.info("txn_offsets_pending", group_id=group_id,
                                   producer_id=producer_id, producer_epoch=producer_epoch,
                                   partitions=len(stored))
            if created and not group.offsets and not group.pending_txn_offsets:
                self._groups.pop(group_id, None)
            return results

        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or group_instance_id is not None:
            error = group.validate_member(member_id, group_instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
        return None

    def complete_txn_offsets(self, producer_id: int, offsets_partition: int,
                             commit: bool) -> None:
        """The COMMIT (`commit`) or ABORT marker of `producer_id` was written to
        partition `offsets_partition` of `__consumer_offsets` (the broker calls this
        once it is appended, as Kafka's handleTxnCompletion runs after the marker
        write). The producer's pending offsets of the groups in that partition become
        committed offsets (a partition whose committed offset has a later record keeps
        it) or are dropped. A producer with nothing pending here is ignored: its
        transaction may have touched only other groups, or the groups moved away."""
        with self._answering():
            group_ids = self._txn_groups.get(producer_id)
            if not group_ids:
                return
            for group_id in sorted(group_ids):
                if not self._in_offsets_partition(group_id, offsets_partition):
                    continue
                group_ids.discard(group_id)
                group = self._groups.get(group_id)
                if group is None or group.is_in(DEAD) \
                        or producer_id not in group.pending_txn_offsets:
                    continue
                pending = len(group.pending_txn_offsets[producer_id])
                applied = group.complete_pending_txn_offsets(producer_id, commit)
                self._log.info("txn_offsets_completed", group_id=group_id,
                               producer_id=producer_id, result="commit" if commit else "abort",
                               partitions=pending, applied=len(applied))
            if not group_ids:
                del self._txn_groups[producer_id]

    def has_pending_txn_offsets(self, producer_id: int) -> bool:
        """Whether `producer_id` has pending transactional offsets in any group here."""
        return bool(self._txn_groups.get(producer_id))

    # ================================================================ OffsetFetch

    def fetch_offsets(self, group_id: str, partitions: Sequence[TopicPartition] | None,
                      require_stable: bool = False
                      ) -> tuple[ErrorCode | int, dict[TopicPartition, OffsetAndMetadata]]:
        """OffsetFetch: the committed offsets of `partitions` (None: all the group has).
        Only partitions with an offset are returned; the handler answers offset -1,
        leader epoch -1 and metadata "" for the others (Kafka's INVALID_OFFSET).
        Offsets are returned whatever the group state: a group may use Kafka only to
        store offsets. Pending transactional offsets are never returned; with
        `require_stable` (OffsetFetch v7+, KIP-447) neither is the committed offset
        of a partition that has one: see `unstable_offsets`."""
        with self._answering():
            group = self._groups.get(group_id)
            if group is None or group.is_in(DEAD):
                return ErrorCode.NONE, {}
            if partitions is None:
                found = dict(group.offsets)
            else:
                found = {tp: group.offsets[tp] for tp in partitions if tp in group.offsets}
            if require_stable and group.pending_txn_offsets:
                for tp in group.pending_txn_partitions():
                    found.pop(tp, None)
            return ErrorCode.NONE, found

    def unstable_offsets(self, group_id: str, partitions: Sequence[TopicPartition] | None
                         ) -> set[TopicPartition]:
        """The partitions an OffsetFetch with require_stable answers
        UNSTABLE_OFFSET_COMMIT (retriable: the consumer asks again once the
        transaction ended): those of `partitions` with a pending transactional offset;
        for None (all partitions), the committed ones that have one, as Kafka lists
        only committed partitions in that answer."""
        with self._answering():
            group = self._groups.get(group_id)
            if group is None or group.is_in(DEAD) or not group.pending_txn_offsets:
                return set()
            pending = group.pending_txn_partitions()
            if partitions is None:
                return pending & set(group.offsets)
            return pending & set(partitions)

    def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]
                       ) -> tuple[ErrorCode | int, dict[TopicPartition, ErrorCode | int]]:
        """OffsetDelete (KIP-496). An Empty group may delete any offset; a consumer
        group with members only those of topics no member subscribes to
        (GROUP_SUBSCRIBED_TO_TOPIC for the others); another protocol type with members:
        NON_EMPTY_GROUP. With a group-level error the partition map is empty."""
        with self._answering():
            if not group_id:
                return ErrorCode.INVALID_GROUP_ID, {}
            group = self._groups.get(group_id)
            if group is None or group.is_in(DEAD):
                return ErrorCode.GROUP_ID_NOT_FOUND, {}
            errors: dict[TopicPartition, ErrorCode | int] = {}
            if group.is_in(EMPTY):
                eligible = list(partitions)
            elif group.uses_consumer_protocol():
                eligible = []
                for tp in partitions:
                    if group.is_subscribed_to_topic(tp[0]):
                        errors[tp] = GROUP_SUBSCRIBED_TO_TOPIC
                    else:
                        eligible.append(tp)
            else:
                return ErrorCode.NON_EMPTY_GROUP, {}
            # A tombstone also for a partition that only a transaction has an offset
            # for (Kafka 4.x), which drops the pending offset on reload too.
            pending = group.pending_txn_partitions() if group.pending_txn_offsets else set()
            to_remove = [tp for tp in eligible if tp in group.offsets or tp in pending]
            records = [(encode_offset_commit_key(group_id, t, p), None) for t, p in to_remove]
            group_gone = (group.is_in(EMPTY) and not group.pending_join_members
                          and not group.pending_txn_offsets
                          and len([tp for tp in to_remove if tp in group.offsets])
                          == len(group.offsets))
            if group_gone and group.generation_id > 0:
                records.append((encode_group_metadata_key(group_id), None))
            if records:
                try:
                    self._append(group_id, records)
                except KafkaError as e:
                    return offset_commit_error(e.code), {}
            group.remove_offsets(to_remove)
            for tp in eligible:
                errors[tp] = ErrorCode.NONE
            if group_gone:
                self._drop_group(group)
            self._log.info("offsets_deleted", group_id=group_id, partitions=len(to_remove))
            return ErrorCode.NONE, {tp: errors[tp] for tp in partitions}

    # ================================================================ admin

    def describe_group(self, group_id: str) -> GroupDescription:
        """DescribeGroups for one group. Protocol, member metadata and assignments only
        in Stable (Kafka's summary). An unknown group is described as Dead with error
        NONE; DescribeGroups v6+ answers GROUP_ID_NOT_FOUND instead (KIP-1043), which
        the handler does by the version."""
        with self._answering():
            group = self._groups.get(group_id)
            if group is None:
                return GroupDescription(ErrorCode.NONE, group_id, str(DEAD), "", "", [])
            stable = group.is_in(STABLE)
            members = [MemberDescription(
                m.member_id, m.group_instance_id, m.client_id, m.client_host,
                m.metadata(group.protocol_name) if stable else b"",
                m.assignment if stable else b"") for m in group.members.values()]
            return GroupDescription(ErrorCode.NONE, group_id, str(group.state),
                                    group.protocol_type or "",
                                    (group.protocol_name or "") if stable else "", members)

    def list_groups(self, states_filter: Sequence[str] | None = None,
                    types_filter: Sequence[str] | None = None) -> list[ListedGroup]:
        """ListGroups. States compare case-insensitively (KIP-518); types (KIP-848):
        every group here is "classic", so a filter without it lists nothing."""
        with self._answering():
            states = {s.lower() for s in states_filter or ()}
            types = {t.lower() for t in types_filter or ()}
            if types and "classic" not in types:
                return []
            return [ListedGroup(g.group_id, g.protocol_type or "", str(g.state), "classic")
                    for g in self._groups.values()
                    if not g.is_in(DEAD) and (not states or str(g.state).lower() in states)]

    def delete_groups(self, group_ids: Sequence[str]) -> dict[str, ErrorCode | int]:
        """DeleteGroups: only Empty groups (NON_EMPTY_GROUP otherwise). Their offsets and
        metadata are tombstoned in __consumer_offsets, then dropped."""
        with self._answering():
            results: dict[str, ErrorCode | int] = {}
            for group_id in group_ids:
                group = self._groups.get(group_id)
                if group is None or group.is_in(DEAD):
                    results[group_id] = ErrorCode.GROUP_ID_NOT_FOUND
                    continue
                if not group.is_in(EMPTY):
                    results[group_id] = ErrorCode.NON_EMPTY_GROUP
                    continue
                # Pending transactional offsets go too (Kafka deletes an Empty group
                # whatever its open transactions); a partition only a transaction has
                # gets a tombstone as well, so that a reload drops its pending offset.
                doomed = [*group.offsets,
                          *sorted(group.pending_txn_partitions() - set(group.offsets))]
                records = [(encode_offset_commit_key(group_id, t, p), None) for t, p in doomed]
                records.append((encode_group_metadata_key(group_id), None))
                try:
                    self._append(group_id, records)
                except KafkaError as e:
                    results[group_id] = _group_metadata_error(e.code)
                    continue
                # Pending (MEMBER_ID_REQUIRED) members of a deleted group start over.
                self._log.info("group_deleted", group_id=group_id, offsets=len(group.offsets))
                self._drop_group(group)
                results[group_id] = ErrorCode.NONE
            return results

    # ================================================================ offsets expiry

    def on_offsets_expiry(self) -> int:
        """Expire old offsets (Kafka's cleanupGroupMetadata, KIP-211); returns how many.

        - Empty group with a protocol type (it had members): all its offsets, once
          offsets.retention.minutes have passed since it became Empty (its state
          timestamp; a group loaded from a pre-2.1 record has none: then per offset
          since its commit).
        - No protocol type (only ever used to store offsets): each offset
          offsets.retention.minutes after its commit.
        - Stable consumer group whose subscriptions are known: offsets of topics no
          member subscribes to, by commit time; subscribed topics' offsets are kept.
        - Any other group (rebalancing, or a non-consumer protocol): nothing.
        An explicit expire timestamp (OffsetCommit v2-v4 retention time) wins.
        An Empty group left with no offsets is dropped, its metadata tombstoned.

        Differs from Kafka: tombstones are appended before memory changes, and if the
        append fails nothing is expired this round (Kafka drops them from memory and
        ignores the failed append)."""
        with self._answering():
            now = self._now()
            total = 0
            for group in list(self._groups.values()):
                expired = self._expired_offsets(group, now)
                # An open transaction keeps the group (Kafka's cleanupExpiredOffsets).
                gone = (group.is_in(EMPTY) and len(expired) == len(group.offsets)
                        and not group.pending_join_members and not group.pending_txn_offsets)
                records = [(encode_offset_commit_key(group.group_id, t, p), None)
                           for t, p in expired]
                if gone and group.generation_id > 0:
                    records.append((encode_group_metadata_key(group.group_id), None))
                if records:
                    try:
                        self._append(group.group_id, records)
                    except KafkaError as e:
                        self._log.warning("offsets_expiry_persist_failed",
                                          group_id=group.group_id, error=code_name(e.code))
                        continue
                for tp in expired:
                    del group.offsets[tp]
                total += len(expired)
                if gone:
                    self._drop_group(group)
            if total:
                self._log.info("offsets_expired", count=total)
            return total

    def _expired_offsets(self, group: ClassicGroup, now: int) -> list[TopicPartition]:
        retention = self.config.offsets_retention_ms
        subscribed: set[str] = set()
        if group.protocol_type is not None:
            if group.is_in(EMPTY):
                state_ts = group.state_timestamp_ms
                base = (lambda o: state_ts) if state_ts is not None else \
                    (lambda o: o.commit_timestamp)
            elif (group.uses_consumer_protocol() and group.subscribed_topics is not None
                  and group.is_in(STABLE)):
                base = lambda o: o.commit_timestamp  # noqa: E731
                subscribed = group.subscribed_topics
            else:
                return []
        else:
            base = lambda o: o.commit_timestamp  # noqa: E731
        out = []
        pending = group.pending_txn_partitions() if group.pending_txn_offsets else set()
        for tp, o in group.offsets.items():
            # An offset a transaction is about to replace is not expired yet (Kafka).
            if tp[0] in subscribed or tp in pending:
                continue
            expire_at = o.expire_timestamp if o.expire_timestamp is not None else base(o) + retention
            if now >= expire_at:
                out.append(tp)
        return out

    def _schedule_offsets_expiry(self) -> None:
        if self._closed:
            return
        self._expiry_timer = self._scheduler.call_at(
            self._now() + self.config.offsets_retention_check_interval_ms,
            self._on_offsets_expiry_timer)

    def _on_offsets_expiry_timer(self) -> None:
        self._expiry_timer = None
        try:
            self.on_offsets_expiry()
        finally:
            self._schedule_offsets_expiry()

    # ================================================================ load

    def load(self, records: Iterable, strict: bool = True) -> None:
        """Rebuild groups and offsets from `__consumer_offsets` records in log order (the
        broker reads its offsets partitions at start): (key, value) pairs, or
        offsets_store.LoadedRecord / TxnMarker items that carry the batch facts. The
        last record per key wins; a null value deletes. Transactional records are
        pending until their producer's marker: COMMIT applies them, ABORT drops them,
        and a transaction with no marker yet is still pending after the load (its
        marker comes later, through `complete_txn_offsets`). Groups with members come back Stable with their assignments,
        and every member's session timer starts now: members that do not heartbeat to
        the new coordinator expire, as after a Kafka coordinator failover. Groups known
        only by offsets come back Empty. Unknown key versions are skipped; an
        undecodable record raises CoordinatorRecordError (strict) or is skipped with a
        warning. A group already in memory is kept (Kafka keeps its cached group)."""
        with self._answering():
            loaded = replay(records, strict, on_corrupt=lambda e: self._log.warning(
                "offsets_record_corrupt", error=str(e)))
            for version in loaded.unknown_keys:
                self._log.warning("offsets_record_unknown_key", version=version)
            offsets, metadata = loaded.offsets, loaded.metadata
            positions = loaded.record_offsets
            # producer id -> group -> partition -> (value, record offset), by group
            pending: dict[str, dict[int, dict]] = {}
            for producer_id, by_group in loaded.pending.items():
                for group_id, values in by_group.items():
                    pending.setdefault(group_id, {})[producer_id] = values
            seen = set(metadata)
            order = list(metadata)
            for group_id in [*offsets, *pending]:
                if group_id not in seen:
                    seen.add(group_id)
                    order.append(group_id)
            for group_id in order:
                if group_id in self._groups:
                    self._log.info("group_load_skipped_cached", group_id=group_id)
                    continue
                group_offsets = {tp: _loaded_offset(v, positions.get(group_id, {}).get(tp, -1))
                                 for tp, v in offsets.get(group_id, {}).items()}
                group_pending = {producer_id: {tp: _loaded_offset(v, at)
                                               for tp, (v, at) in values.items()}
                                 for producer_id, values in pending.get(group_id, {}).items()}
                if group_id in metadata:
                    group = self._group_from_metadata(group_id, metadata[group_id], strict)
                    if group is None:
                        continue
                elif group_offsets or group_pending:
                    group = ClassicGroup(group_id, self._now())
                else:
                    continue
                group.offsets.update(group_offsets)
                for producer_id, values in group_pending.items():
                    group.add_pending_txn_offsets(producer_id, values)
                    self._txn_groups.setdefault(producer_id, set()).add(group_id)
                    self._log.info("txn_offsets_loaded_pending", group_id=group_id,
                                   producer_id=producer_id, partitions=len(values))
                for o in [*group_offsets.values(),
                          *(o for values in group_pending.values() for o in values.values())]:
                    self._last_record_offset = max(self._last_record_offset, o.record_offset)
                self._groups[group_id] = group
                for member in group.members.values():
                    self._reschedule_heartbeat(group, member)
                if group.size > self.config.group_max_size:
                    self._prepare_rebalance(group, "loaded group is over group.max.size")
            # Per __consumer_offsets partition (50 at start): the broker logs one summary
            # line ("group coordinator ready"), so this one is debug.
            self._log.debug("groups_loaded", groups=len(self._groups),
                            offsets=sum(len(g.offsets) for g in self._groups.values()))

    def unload_groups(self, belongs: Callable[[str], bool]) -> int:
        """Forget every group for which `belongs(group_id)` holds: this broker no
        longer leads their `__consumer_offsets` partition (Kafka's onResignation). Parked
        JoinGroup / SyncGroup requests are answered NOT_COORDINATOR, so their clients
        find the new coordinator; nothing is written (the new leader has the log).
        Returns the number of groups unloaded."""
        with self._answering():
            gone = [g for gid, g in self._groups.items() if belongs(gid)]
            for group in gone:
                for member in list(group.members.values()):
                    if member.awaiting_join is not None:
                        self._send(member.awaiting_join,
                                   JoinResult(ErrorCode.NOT_COORDINATOR, member.member_id))
                        member.awaiting_join = None
                    if member.awaiting_sync is not None:
                        self._send(member.awaiting_sync, SyncResult(ErrorCode.NOT_COORDINATOR))
                        member.awaiting_sync = None
                self._drop_group(group)
            return len(gone)

    def _group_from_metadata(self, group_id: str, value: GroupMetadataValue,
                             strict: bool) -> ClassicGroup | None:
        try:
            return ClassicGroup.from_metadata(group_id, value, self._now())
        except (ValueError, CoordinatorRecordError) as e:
            if strict:
                raise CoordinatorRecordError(f"group {group_id}: {e}") from None
            self._log.warning("group_metadata_invalid", group_id=group_id, error=str(e))
            return None

    # ================================================================ plumbing

    def _now(self) -> int:
        return self._scheduler.now_ms()

    def _is_current(self, group: ClassicGroup) -> bool:
        return self._groups.get(group.group_id) is group

    def _create_group(self, group_id: str) -> ClassicGroup:
        group = ClassicGroup(group_id, self._now())
        self._groups[group_id] = group
        return group

    def _drop_group(self, group: ClassicGroup) -> None:
        """Dead: forget the group and its timers."""
        if not group.is_in(DEAD):
            group.transition_to(DEAD, self._now())
        if self._groups.get(group.group_id) is group:
            del self._groups[group.group_id]
        # Kafka's removeGroupFromAllProducers: a marker that comes later finds no
        # pending offsets here (a reload drops them too: see offsets_store.replay).
        for producer_id in list(group.pending_txn_offsets):
            groups = self._txn_groups.get(producer_id)
            if groups is not None:
                groups.discard(group.group_id)
                if not groups:
                    del self._txn_groups[producer_id]
        group.pending_txn_offsets.clear()
        self._cancel_join_timer(group.group_id)
        handle = self._sync_timers.pop(group.group_id, None)
        if handle is not None:
            self._scheduler.cancel(handle)
        for member_id in [*group.members, *group.pending_join_members]:
            self._cancel_heartbeat(group.group_id, member_id)

    def _schedule_join_timer(self, group: ClassicGroup, delay_ms: int,
                             callback: Callable[[], None]) -> None:
        self._cancel_join_timer(group.group_id)
        self._join_timers[group.group_id] = self._scheduler.call_at(self._now() + delay_ms,
                                                                    callback)

    def _cancel_join_timer(self, group_id: str) -> None:
        handle = self._join_timers.pop(group_id, None)
        if handle is not None:
            self._scheduler.cancel(handle)

    def _append(self, group_id: str, records: list[tuple[bytes, bytes | None]],
                producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1) -> int:
        """Append through the store; returns the log offset of the first record (the
        store's, or the next after the last one seen when the store does not say)."""
        base = None
        if self._store is not None:
            try:
                if producer_id == NO_PRODUCER_ID:
                    base = self._store.append(group_id, records)
                else:
                    base = self._store.append(group_id, records, producer_id=producer_id,
                                              producer_epoch=producer_epoch)
            except KafkaError:
                raise
            except Exception as e:  # noqa: BLE001 - a store bug must not corrupt group state
                self._log.exception("offsets_store_append_failed", group_id=group_id)
                raise KafkaError(str(e), ErrorCode.UNKNOWN_SERVER_ERROR) from e
        if not isinstance(base, int) or base < 0:
            base = self._last_record_offset + 1
        self._last_record_offset = max(self._last_record_offset, base + len(records) - 1)
        return base

    def _in_offsets_partition(self, group_id: str, offsets_partition: int) -> bool:
        partition_for = getattr(self._store, "partition_for", None)
        return partition_for is None or partition_for(group_id) == offsets_partition

    def _store_group(self, group: ClassicGroup, assignment: dict[str, bytes]) -> None:
        """Append the group's GroupMetadata record (raises KafkaError)."""
        members = tuple(MemberMetadataValue(
            m.member_id, m.group_instance_id, m.client_id, m.client_host,
            m.rebalance_timeout_ms, m.session_timeout_ms, m.metadata(group.protocol_name),
            assignment.get(m.member_id, b"")) for m in group.members.values())
        value = GroupMetadataValue(
            group.protocol_type or "", group.generation_id, group.protocol_name,
            group.leader_id, group.state_timestamp_ms if group.state_timestamp_ms is not None
            else -1, members)
        self._append(group.group_id, [(encode_group_metadata_key(group.group_id),
                                       encode_group_metadata_value(value))])

    # --- answers

    def _answering(self):
        """Every entry point runs inside this (coordinator/outbox.py): answers are
        delivered once the state is consistent."""
        return self._answers.answering()

    def _send(self, callback: Callable[[Any], None], result: Any) -> None:
        self._answers.send(callback, result)

    def _deliver(self, answer) -> None:
        if answer is not None:
            self._answers.send(*answer)

