"""A classic consumer-group member for the console consumer's --group: JoinGroup,
SyncGroup (the leader assigns with Kafka's RangeAssignor), Heartbeat, OffsetCommit with
the generation, LeaveGroup. Synchronous, driven by the consumer's fetch loop: the loop
calls `heartbeat_if_due()` between fetches (each fetch waits at most fetch.max.wait.ms,
well under the session timeout) and rejoins when it answers that a rebalance began.

What Kafka's consumer does that this does not: other assignors (the group is joined
with "range" only), static membership (group.instance.id), cooperative rebalancing,
and KIP-848 (the consumer group protocol).
"""
from __future__ import annotations

import time

from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
)
from kafkette.protocol.primitives import Reader, Writer
from kafkette.tools.client import AdminClient, BrokerError, ToolError
from kafkette.tools.groups import decode_assignment

#: errors after which the member joins again (Kafka's consumer: rejoinNeeded)
REJOIN = {ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION,
          ErrorCode.UNKNOWN_MEMBER_ID}
#: errors after which the coordinator is looked up again
COORDINATOR = {ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE,
               ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}


def encode_subscription(topics: list[str]) -> bytes:
    w = Writer()
    w.int16(0)
    ConsumerProtocolSubscription(topics=list(topics), user_data=None).write(w, 0)
    return w.getvalue()


def decode_subscription(data) -> list[str]:
    r = Reader(bytes(data))
    version = r.int16()
    if version < 0:
        raise ValueError(f"ConsumerProtocolSubscription version {version}")
    sub = ConsumerProtocolSubscription.read(
        r, min(version, ConsumerProtocolSubscription.MAX_VERSION))
    return list(sub.topics or [])


def encode_assignment(tps: list[tuple[str, int]]) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    A = ConsumerProtocolAssignment
    w = Writer()
    w.int16(0)
    A(assigned_partitions=[A.TopicPartition(topic=t, partitions=sorted(ps))
                           for t, ps in sorted(by_topic.items())], user_data=None).write(w, 0)
    return w.getvalue()


def range_assign(subscriptions: dict[str, list[str]],
                 partitions: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Kafka's RangeAssignor: per topic, its subscribers sorted by member id each get a
    contiguous range, the first (count % members) one partition more."""
    out: dict[str, list] = {m: [] for m in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for t in topics:
        members = sorted(m for m, ts in subscriptions.items() if t in ts)
        n = partitions.get(t, 0)
        per, extra = divmod(n, len(members))
        start = 0
        for i, m in enumerate(members):
            count = per + (1 if i < extra else 0)
            out[m].extend((t, p) for p in range(start, start + count))
            start += count
    return out


class GroupMember:
    def __init__(self, admin: AdminClient, group: str, topics: list[str], *,
                 session_timeout_ms: int = 45000, rebalance_timeout_ms: int = 300000,
                 heartbeat_interval_ms: int = 3000):
        self.admin = admin
        self.group = group
        self.topics = topics
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval = heartbeat_interval_ms / 1000.0
        self.member_id = ""
        self.generation = -1
        self.assignment: list[tuple[str, int]] = []
        self._coordinator = None
        self._last_heartbeat = 0.0

    def coordinator(self):
        if self._coordinator is None:
            self._coordinator = self.admin.coordinator(self.group)
        return self._coordinator

    def _send(self, req, timeout: float | None = None):
        try:
            return self.admin.request(req, node=self.coordinator(), timeout=timeout)
        except ToolError:
            self._coordinator = None   # a lost coordinator: find it again next time
            raise

    def join(self) -> list[tuple[str, int]]:
        """Join (or rejoin) and sync; the partitions assigned to us."""
        deadline = time.monotonic() + self.rebalance_timeout_ms / 1000.0 + 30
        while True:
            if time.monotonic() > deadline:
                raise ToolError(f"could not join group {self.group}")
            resp = self._send(JoinGroupRequest(
                group_id=self.group, session_timeout_ms=self.session_timeout_ms,
                rebalance_timeout_ms=self.rebalance_timeout_ms, member_id=self.member_id,
                group_instance_id=None, protocol_type="consumer",
                protocols=[JoinGroupRequest.JoinGroupRequestProtocol(
                    name="range", metadata=encode_subscription(self.topics))],
                reason=None), timeout=self.rebalance_timeout_ms / 1000.0 + 10)
            if resp.error_code == ErrorCode.MEMBER_ID_REQUIRED:   # KIP-394: again, with it
                self.member_id = resp.member_id
                continue
            if resp.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
                continue
            if resp.error_code in COORDINATOR:
                self._coordinator = None
                time.sleep(0.1)
                continue
            if resp.error_code == ErrorCode.REBALANCE_IN_PROGRESS:
                continue
            if resp.error_code:
                raise BrokerError(resp.error_code)
            self.member_id = resp.member_id
            self.generation = resp.generation_id
            assignments = []
            if resp.leader == resp.member_id and not getattr(resp, "skip_assignment", False):
                assignments = self._assign(resp.members)
            sync = self._send(SyncGroupRequest(
                group_id=self.group, generation_id=self.generation, member_id=self.member_id,
                group_instance_id=None, protocol_type="consumer", protocol_name="range",
                assignments=assignments), timeout=self.rebalance_timeout_ms / 1000.0 + 10)
            if sync.error_code in REJOIN:
                if sync.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                    self.member_id = ""
                continue
            if sync.error_code:
                raise BrokerError(sync.error_code)
            self.assignment = decode_assignment(sync.assignment)
            self._last_heartbeat = time.monotonic()
            return self.assignment

    def _assign(self, members) -> list:
        subs = {}
        for m in members:
            try:
                subs[m.member_id] = decode_subscription(m.metadata)
            except Exception:  # noqa: BLE001 - a member we cannot read gets nothing
                subs[m.member_id] = []
        topics = sorted({t for ts in subs.values() for t in ts})
        md = self.admin.metadata(topics) if topics else None
        counts = {t.name: len(t.partitions) for t in md.topics if t.error_code == 0} if md else {}
        plan = range_assign(subs, counts)
        A = SyncGroupRequest.SyncGroupRequestAssignment
        return [A(member_id=m, assignment=encode_assignment(tps)) for m, tps in plan.items()]

    def heartbeat_if_due(self) -> bool:
        """False when the group is rebalancing (or forgot us): join() again."""
        if time.monotonic() - self._last_heartbeat < self.heartbeat_interval:
            return True
        resp = self._send(HeartbeatRequest(group_id=self.group, generation_id=self.generation,
                                           member_id=self.member_id, group_instance_id=None))
        self._last_heartbeat = time.monotonic()
        if resp.error_code in REJOIN:
            if resp.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            return False
        if resp.error_code in COORDINATOR:
            self._coordinator = None
            return True
        if resp.error_code:
            raise BrokerError(resp.error_code)
        return True

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.admin.commit_offsets(self.group, offsets, generation=self.generation,
                                  member_id=self.member_id)

    def leave(self) -> None:
        if not self.member_id:
            return
        v = self.admin.version(LeaveGroupRequest.API_KEY, self.coordinator())
        if v >= 3:
            req = LeaveGroupRequest(group_id=self.group, members=[
                LeaveGroupRequest.MemberIdentity(member_id=self.member_id,
                                                 group_instance_id=None, reason=None)])
        else:
            req = LeaveGroupRequest(group_id=self.group, member_id=self.member_id)
        try:
            self.admin.request(req, v, node=self.coordinator())
        except ToolError:
            pass   # the session timeout removes us anyway
        self.member_id = ""
