"""The controller: validates metadata changes, proposes them as records to the
metadata quorum, and applies committed records to the immutable MetadataImage.

The quorum is either a LocalQuorum (no `controller.quorum.voters`: a node alone is a
quorum of one, and a change commits as soon as it is fsynced to the local metadata
log) or the RaftQuorum of kafkette/controller/raft (a change commits once a majority
of voters has it). Every node applies committed records, so every broker reads the
same image; only the active controller (the Raft leader, once its epoch has
committed) validates and proposes changes. On the active controller it also runs the
broker lifecycle: registration (fenced until caught up), heartbeats, fencing after
`broker.session.timeout.ms`, and the leader changes those imply.

Replication control, as KRaft's ReplicationControlManager: rack-aware placement
(placement.py), explicit replica assignments, the ISR changes leaders ask for
(AlterPartition), elections when brokers are fenced or come back, KIP-966 eligible
leader replicas (partition_change.py), ElectLeaders and the preferred-leader
balancer (`check_leader_balance`, called from the cluster's periodic loop).

Real Kafka differences: KRaft's records are binary (its own schemas); kafkette's are
JSON values in ordinary record batches. KRaft's controller validates against its
uncommitted in-memory state and pipelines writes; kafkette validates each change
after the previous one committed (one lock), which is simpler and ample for metadata.
A broker asking for controlled shutdown is fenced at once (its leaderships move in
the same entry); KRaft keeps it unfenced "in controlled shutdown" until it leads
nothing. A broker registering again while its old incarnation seems alive is
accepted (fenced until caught up); KRaft refuses with DUPLICATE_BROKER_REGISTRATION
until the old session expires. No partition reassignment (AlterPartitionReassignments)
and no DescribeTopicPartitions yet, though the image carries the ELR it would show.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import hmac
import json
import random
import re
import uuid
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from kafkette.config import BrokerConfig, effective_topic_config
from kafkette.controller.acls import AclBinding, AclFilter, validate_binding
from kafkette.controller.metadata_image import (
    RECOVERED,
    RECOVERING,
    MetadataImage,
    PartitionImage,
    ScramCredential,
    TopicImage,
    apply_records,
    image_to_records,
    quota_record,
    scram_record,
)
from kafkette.controller.partition_change import NO_LEADER, Election, partition_change
from kafkette.controller.placement import place_replicas
from kafkette.controller.quorum import encode_records, run_now
from kafkette.errors import (
    InvalidPartitionsError,
    PolicyViolationError,
    InvalidReplicationFactorError,
    InvalidRequestError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    KafkaError,
    ErrorCode,
    NotControllerError,
)
from kafkette.logging import get_logger

log = get_logger("kafkette.controller")

# Kafka: Topic.MAX_NAME_LENGTH = 249 and legal characters [a-zA-Z0-9._-].
MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
# Kafka refuses partition counts that would blow up its controller; so do we.
MAX_PARTITIONS = 100_000
# KRaft's QuorumController refuses to create more than 10,000 partitions in one
# operation (one atomic batch of records): "Excessively large number of partitions per
# request", POLICY_VIOLATION. Here each new partition also opens its log in the event
# loop: the fuzzer's CreatePartitions to 100,000 stalled every connection for over 10 s.
# Kafka counts the whole request; kafkette counts each topic of it.
MAX_PARTITIONS_PER_REQUEST = 10_000

Listener = Callable[[MetadataImage, MetadataImage], None]
ELECTION_PREFERRED, ELECTION_UNCLEAN = 0, 1  # ElectLeaders election types (KIP-460)


@dataclass(frozen=True)
class AlterPartitionItem:
    """One partition of an AlterPartition request. `topic` is the topic id (v2+) or
    its name (v0-1). `new_isr`: broker ids, or (broker id, broker epoch) pairs (v3,
    KIP-903; epoch -1 skips the check)."""

    topic: uuid.UUID | str
    partition: int
    leader_epoch: int
    partition_epoch: int
    new_isr: Sequence[int | tuple[int, int]]
    leader_recovery_state: int = RECOVERED


@dataclass(frozen=True)
class AlterPartitionResult:
    """The answer for one partition: on success (error NONE) its committed state."""

    error: ErrorCode
    leader_id: int = -1
    leader_epoch: int = -1
    isr: tuple[int, ...] = ()
    partition_epoch: int = -1
    leader_recovery_state: int = RECOVERED


def validate_topic_name(name: str) -> None:
    if not name:
        raise InvalidTopicError("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise InvalidTopicError("Topic name cannot be \".\" or \"..\"")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopicError(
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters")
    if not _LEGAL_TOPIC.match(name):
        raise InvalidTopicError(
            f"Topic name \"{name}\" is illegal, it contains a character other than "
            "ASCII alphanumerics, '.', '_' and '-'")


class Controller:
    """Validates metadata changes and proposes them as records to the quorum; applies
    committed records (on every node) to the immutable MetadataImage.

    Writes are coroutines serialised by one lock, so that a change is validated
    against an image that already holds every earlier change (KRaft's controller
    validates against its uncommitted in-memory state on a single thread; kafkette
    waits for each change to commit before validating the next, simpler and plenty
    for metadata rates). With a LocalQuorum a write never suspends, and single-node
    callers may run it with `run_now()`.
    """

    def __init__(self, quorum, node_id: int, cluster_id: str | None, clock,
                 broker_endpoint: tuple[str, int] | None = None, rack: str | None = None,
                 validate_configs: Callable[[dict], dict] | None = None,
                 validate_broker_configs: Callable[[str, dict], dict] | None = None,
                 session_timeout_ms: int = 9000,
                 config: Callable[[], BrokerConfig] | None = None,
                 eligible_leader_replicas: bool = True,
                 rng: random.Random | None = None):
        """`config`: the node's effective broker config (read at each use: dynamic
        configs change it), for topic defaults (min.insync.replicas,
        unclean.leader.election.enable) and the leader balancer; Kafka's defaults
        when None. `eligible_leader_replicas`: KIP-966, on as in Kafka 4.1 for new
        clusters (Kafka: the eligible.leader.replicas.version feature)."""
        self.node_id = node_id
        self.clock = clock
        self.quorum = quorum
        self._cluster_id = cluster_id
        self._listeners: list[Listener] = []
        self._validate_configs = validate_configs or (lambda c: c)
        # (resource name, changes) -> normalised changes; raises KafkaError.
        self._validate_broker_configs = validate_broker_configs or (lambda name, c: c)
        self._lock = asyncio.Lock()
        self.image = MetadataImage(cluster_id="", controller_id=-1)
        # Active controller only: broker id -> monotonic ms of its last heartbeat.
        self.session_timeout_ms = session_timeout_ms
        self._last_heartbeat: dict[int, int] = {}
        self._config = config or _default_config
        self.elr_enabled = eligible_leader_replicas
        self._rng = rng or random.Random()
        # Active controller only: when the leader balancer runs next (None: not
        # scheduled yet; the first run is one interval after this node took over).
        self._next_balance_ms: int | None = None
        if getattr(quorum, "is_local", False):
            quorum.start_sync(self)
            records = self._bootstrap_records()
            host, port = broker_endpoint
            b = self.image.brokers.get(node_id)
            if b is None or (b.host, b.port, b.rack, b.fenced) != (host, port, rack, False):
                records.append({"type": "RegisterBrokerRecord", "broker_id": node_id,
                                "host": host, "port": port, "rack": rack})
            if records:
                run_now(self.quorum.append(encode_records(records)))

    def _bootstrap_records(self) -> list[dict]:
        if not self.image.cluster_id:
            return [{"type": "ClusterIdRecord",
                     "cluster_id": self._cluster_id or _new_cluster_id()}]
        if self._cluster_id and self._cluster_id != self.image.cluster_id:
            raise KafkaError(f"cluster.id {self._cluster_id} does not match the stored "
                             f"cluster id {self.image.cluster_id}",
                             ErrorCode.INCONSISTENT_CLUSTER_ID)
        return []

    @property
    def is_active(self) -> bool:
        """This node is the active controller (leads the quorum, caught up)."""
        return self.quorum.is_leader()

    # -- QuorumListener ----------------------------------------------------------
    def apply(self, last_offset: int, values: list[bytes]) -> None:
        self._publish(apply_records(self.image, [json.loads(v) for v in values], last_offset))

    def load_snapshot(self, last_offset: int, data: bytes) -> None:
        fresh = MetadataImage(cluster_id="", controller_id=self.image.controller_id)
        self._publish(apply_records(fresh, json.loads(data), last_offset))

    def snapshot(self) -> tuple[int, bytes]:
        image = self.image
        return image.offset, json.dumps(image_to_records(image),
                                        separators=(",", ":")).encode()

    def leader_changed(self, leader_id: int | None, epoch: int) -> None:
        new_id = -1 if leader_id is None else leader_id
        if new_id != self.image.controller_id:
            if not getattr(self.quorum, "is_local", False):
                log.info("controller changed", controller_id=new_id, epoch=epoch)
            # A new active controller gives every broker a full session from now:
            # heartbeats went to the old one (KRaft's BrokerHeartbeatManager does too).
            self._last_heartbeat.clear()
            self._next_balance_ms = None
            self._publish(replace(self.image, controller_id=new_id))

    def _publish(self, new: MetadataImage) -> None:
        """The image is replaced first, then each listener told in order. A listener that
        raises is logged (one line with its traceback) and the others still run: the
        exception used to escape into the Raft apply, half-way through a publish, so that
        the listeners after it never saw the change and the node stopped applying.
        Kafka's MetadataLoader likewise catches a publisher's error (its
        faultHandler) and carries on with the other publishers."""
        old, self.image = self.image, new
        for listener in self._listeners:
            try:
                listener(old, new)
            except Exception:  # noqa: BLE001 - see above
                log.exception("metadata listener failed", listener=_listener_name(listener),
                              metadata_offset=new.offset)

    async def _commit(self, records: list[dict]) -> MetadataImage:
        """Propose the records as one entry (atomic: all or nothing) and return the
        image once it is committed and applied here. NotControllerError when this
        node is not the active controller."""
        if not self.quorum.is_leader():
            raise NotControllerError("This node is not the active controller.")
        await self.quorum.append(encode_records(records))
        return self.image

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def close(self) -> None:
        if getattr(self.quorum, "is_local", False):
            self.quorum.close_sync()

    # -- producer ids -----------------------------------------------------------
    async def allocate_producer_ids(self, broker_id: int | None = None,
                                    count: int = 1000) -> range:
        """Reserve a block of producer ids in the metadata log, as KRaft's
        AllocateProducerIds does, so that ids are never reused after a restart."""
        async with self._lock:
            start = self.image.next_producer_id
            await self._commit([{"type": "ProducerIdsRecord",
                                 "broker_id": self.node_id if broker_id is None else broker_id,
                                 "next_producer_id": start + count}])
            return range(start, start + count)

    # -- brokers (active controller) -----------------------------------------------
    async def ensure_cluster_id(self) -> None:
        async with self._lock:
            records = self._bootstrap_records()
            if records:
                await self._commit(records)

    async def register_broker(self, broker_id: int, host: str, port: int,
                              rack: str | None, cluster_id: str | None,
                              previous_broker_epoch: int | None = None,
                              endpoints: list[tuple[str, str, int]] = (),
                              incarnation_id: str | None = None) -> int:
        """BrokerRegistration: returns the broker epoch (the offset of its registration
        record, as KRaft). A new registration starts fenced; the first heartbeat that
        shows the broker has caught up with the metadata log unfences it. A broker
        registering again loses its leaderships and ISR places as on fencing.

        `previous_broker_epoch` (KIP-966): the epoch the broker had when it last shut
        down cleanly, -1 when it did not. One that differs from its registered epoch
        means an unclean shutdown (unflushed data may be lost), and the broker also
        leaves every ELR, as KRaft. None: the broker does not say; no such check.

        `incarnation_id` (new at each process start): a registration with another
        incarnation id than the registered one while the registered broker's session is
        alive (unfenced, heartbeat within broker.session.timeout.ms) is refused with
        DUPLICATE_BROKER_REGISTRATION, as KRaft's ClusterControlManager.registerBroker
        does: two processes with one node.id, or a broker restarted after kill -9
        before its old session expired (it registers once the session is fenced). The
        same incarnation registering again (a retried request) is accepted."""
        await self.ensure_cluster_id()
        if cluster_id and cluster_id != self.image.cluster_id:
            raise KafkaError(f"Expected cluster id {self.image.cluster_id}, got {cluster_id}",
                             ErrorCode.INCONSISTENT_CLUSTER_ID)
        async with self._lock:
            old = self.image.brokers.get(broker_id)
            if (old is not None and incarnation_id is not None
                    and old.incarnation_id is not None
                    and old.incarnation_id != incarnation_id and self._has_session(old)):
                raise KafkaError(
                    "Another broker is registered with that broker id. If the broker was "
                    "recently restarted this resolves once the controller expires the old "
                    "session.", ErrorCode.DUPLICATE_BROKER_REGISTRATION)
            unclean = (old is not None and previous_broker_epoch is not None
                       and previous_broker_epoch != old.epoch and self.elr_enabled)
            records = [{"type": "RegisterBrokerRecord", "broker_id": broker_id,
                        "host": host, "port": port, "rack": rack, "fenced": True,
                        "endpoints": [[n, h, p] for n, h, p in endpoints],
                        "incarnation_id": incarnation_id}]
            if unclean:
                records += self._partition_changes(
                    self._partitions(lambda p: broker_id in p.isr or broker_id in p.elr),
                    remove=broker_id, unclean_shutdown=True)
                log.warning("broker restarted after an unclean shutdown", broker_id=broker_id,
                            partitions_changed=len(records) - 1)
            else:
                records += self._fence_changes(broker_id)
            image = await self._commit(records)
            self._last_heartbeat[broker_id] = self.clock.monotonic_ms()
            log.info("broker registered", broker_id=broker_id, host=host, port=port,
                     broker_epoch=image.offset)
            return image.brokers[broker_id].epoch

    async def broker_heartbeat(self, broker_id: int, broker_epoch: int,
                               metadata_offset: int, want_fence: bool,
                               want_shutdown: bool) -> tuple[bool, bool, bool]:
        """(is_caught_up, is_fenced, should_shut_down). Raises STALE_BROKER_EPOCH /
        BROKER_ID_NOT_REGISTERED as KRaft does."""
        b = self.image.brokers.get(broker_id)
        if b is None:
            raise KafkaError(f"Broker {broker_id} is not registered.",
                             ErrorCode.BROKER_ID_NOT_REGISTERED)
        if b.epoch != broker_epoch:
            raise KafkaError(f"Expected broker epoch {b.epoch}, got {broker_epoch}.",
                             ErrorCode.STALE_BROKER_EPOCH)
        self._last_heartbeat[broker_id] = self.clock.monotonic_ms()
        caught_up = metadata_offset >= b.epoch
        async with self._lock:
            b = self.image.brokers[broker_id]
            if want_shutdown:
                if not b.fenced:
                    await self._fence(broker_id, "controlled shutdown")
                return caught_up, True, True
            if want_fence and not b.fenced:
                # KRaft's BrokerHeartbeatManager fences an active broker at its request
                # (kafkette's brokers ask when every log dir is offline, KIP-112: their
                # leaderships move, as when Kafka halts such a broker).
                await self._fence(broker_id, "at its request")
                return caught_up, True, False
            if b.fenced and caught_up and not want_fence:
                records = [{"type": "UnfenceBrokerRecord", "broker_id": broker_id}]
                # KRaft: every leaderless partition may now get a leader (this broker
                # from its ISR or ELR, or any live replica where unclean is allowed).
                records += self._partition_changes(
                    self._partitions(lambda p: p.leader == NO_LEADER), add=broker_id)
                await self._commit(records)
                log.info("broker unfenced", broker_id=broker_id,
                         partitions_changed=len(records) - 1)
            return caught_up, self.image.brokers[broker_id].fenced, False

    def _has_session(self, b) -> bool:
        """KRaft's BrokerHeartbeatManager.hasValidSession: unfenced, and heard from within
        the session timeout (a broker not heard from since this controller became
        active has a full session from then, as check_sessions counts it)."""
        if b.fenced:
            return False
        last = self._last_heartbeat.get(b.node_id)
        return last is None or self.clock.monotonic_ms() - last <= self.session_timeout_ms

    async def check_sessions(self) -> list[int]:
        """Fence every unfenced broker whose last heartbeat is older than
        broker.session.timeout.ms; returns the ids fenced."""
        if not self.is_active:
            return []
        now = self.clock.monotonic_ms()
        fenced = []
        for b in list(self.image.brokers.values()):
            if b.fenced:
                continue
            last = self._last_heartbeat.setdefault(b.node_id, now)
            if now - last > self.session_timeout_ms:
                async with self._lock:
                    if not self.image.brokers[b.node_id].fenced:
                        await self._fence(b.node_id, "session timed out")
                        fenced.append(b.node_id)
        return fenced

    async def _fence(self, broker_id: int, reason: str) -> None:
        records = [{"type": "FenceBrokerRecord", "broker_id": broker_id}]
        records += self._fence_changes(broker_id)
        await self._commit(records)
        log.warning("broker fenced", broker_id=broker_id, reason=reason,
                    partitions_changed=len(records) - 1)

    # -- partition changes ----------------------------------------------------------
    def _is_active(self, broker_id: int) -> bool:
        b = self.image.brokers.get(broker_id)
        return b is not None and not b.fenced

    def _partitions(self, pred: Callable[[PartitionImage], bool]
                    ) -> Iterator[tuple[TopicImage, PartitionImage]]:
        for t in self.image.topics.values():
            for p in t.partitions.values():
                if pred(p):
                    yield t, p

    def _topic_settings(self, t: TopicImage) -> tuple[int, bool]:
        """(min.insync.replicas, unclean.leader.election.enable) of a topic: its
        override, else this controller's broker default (KRaft reads the same)."""
        cfg = effective_topic_config(self._config(), t.configs)
        return cfg["min.insync.replicas"], cfg["unclean.leader.election.enable"]

    def _fence_changes(self, broker_id: int) -> list[dict]:
        """`broker_id` is fenced (session timeout, controlled shutdown, registering
        again): it leaves every ISR and its leaderships (KRaft's handleBrokerFenced)."""
        return self._partition_changes(
            self._partitions(lambda p: broker_id in p.isr or p.leader == broker_id),
            remove=broker_id)

    def _partition_changes(self, parts: Iterable[tuple[TopicImage, PartitionImage]], *,
                           remove: int = NO_LEADER, add: int = NO_LEADER,
                           unclean_shutdown: bool = False,
                           election: Election | None = None) -> list[dict]:
        """PartitionChangeRecords for `parts` after `remove` left (not acceptable as a
        leader, out of the ISR; with `unclean_shutdown` out of the ELR too) and/or
        `add` came back (acceptable although the image still shows it fenced).
        The election is the topic's (UNCLEAN when unclean.leader.election.enable)
        unless given."""
        def acceptable(r: int) -> bool:
            return r != remove and (r == add or self._is_active(r))

        out: list[dict] = []
        settings: dict[str, tuple[int, bool]] = {}
        for t, p in parts:
            if t.name not in settings:
                settings[t.name] = self._topic_settings(t)
            min_isr, unclean_ok = settings[t.name]
            change = partition_change(
                p, acceptable=acceptable, min_isr=min(min_isr, len(p.replicas)),
                target_isr=[r for r in p.isr if r != remove],
                election=election or (Election.UNCLEAN if unclean_ok else Election.ONLINE),
                elr_enabled=self.elr_enabled,
                unclean_shutdown=(remove,) if unclean_shutdown else ())
            if change is not None:
                out.append(self._change_record(t, p, change))
        return out

    def _change_record(self, t: TopicImage, p: PartitionImage, change: dict) -> dict:
        if change.get("leader_recovery_state") == RECOVERING and "leader" in change:
            # Kafka logs unclean elections at INFO whatever its log level: data may be
            # lost. Rare and important, so one warning each.
            log.warning("unclean leader election", topic=t.name, partition=p.partition,
                        leader=change["leader"], leader_epoch=change["leader_epoch"])
        return {"type": "PartitionChangeRecord", "topic_id": str(t.topic_id),
                "partition": p.partition, **change}

    # -- topics ----------------------------------------------------------------
    def live_brokers(self) -> list[int]:
        return sorted(b.node_id for b in self.image.brokers.values() if not b.fenced)

    def _place(self, count: int, rf: int) -> list[list[int]]:
        live = [(b.node_id, b.rack) for b in self.image.brokers.values() if not b.fenced]
        return place_replicas(live, count, rf, self._rng)

    async def create_topic(self, *args, **kwargs) -> TopicImage | None:
        async with self._lock:
            return await self._create_topic(*args, **kwargs)

    async def _create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     configs: dict[str, str | None], *, validate_only: bool = False,
                     default_partitions: int = 1, default_replication_factor: int = 1,
                     assignments: Sequence[tuple[int, Sequence[int]]] | None = None,
                     ) -> TopicImage | None:
        """`assignments`: (partition index, broker ids) of a manual assignment, with
        num_partitions and replication_factor -1 (INVALID_REQUEST otherwise), checked
        as KRaft: INVALID_REPLICA_ASSIGNMENT for an index given twice, indexes that are
        not 0..n-1, an empty list, an unregistered broker, a broker twice, a size that
        differs from the first partition's, or only fenced brokers. The ISR is the
        live brokers of the assignment, led by the first of them."""
        validate_topic_name(name)
        if name in self.image.topics:
            raise TopicAlreadyExistsError(f"Topic '{name}' already exists.")
        # Kafka also refuses names that collide once '.' is read as '_' (metrics names).
        folded = name.replace(".", "_")
        for other in self.image.topics:
            if other.replace(".", "_") == folded:
                raise InvalidTopicError(
                    f"Topic '{name}' collides with existing topic: {other}")
        if assignments:
            if replication_factor != -1:
                raise InvalidRequestError("A manual partition assignment was specified, but "
                                          "replication factor was not set to -1.")
            if num_partitions != -1:
                raise InvalidRequestError("A manual partition assignment was specified, but "
                                          "numPartitions was not set to -1.")
            by_index: dict[int, list[int]] = {}
            rf = None
            for index, broker_ids in assignments:
                if index in by_index:
                    raise _invalid_assignment("Found multiple manual partition assignments "
                                              f"for partition {index}")
                self._check_manual_assignment(broker_ids, rf)
                rf = len(broker_ids)
                by_index[index] = list(broker_ids)
            if sorted(by_index) != list(range(len(by_index))):
                raise _invalid_assignment(
                    "partitions should be a consecutive 0-based integer sequence")
            placements = [by_index[i] for i in range(len(by_index))]
            num_partitions, replication_factor = len(placements), rf
        else:
            if replication_factor == -1:
                replication_factor = default_replication_factor
            if replication_factor <= 0:
                raise InvalidReplicationFactorError(
                    "Replication factor must be larger than 0.")
            if num_partitions == -1:
                num_partitions = default_partitions
            if num_partitions <= 0 or num_partitions > MAX_PARTITIONS:
                raise InvalidPartitionsError("Number of partitions must be larger than 0.")
            if num_partitions > MAX_PARTITIONS_PER_REQUEST:
                raise PolicyViolationError("Excessively large number of partitions per request.")
            placements = self._place(num_partitions, replication_factor)
        configs = self._validate_configs(configs)
        if validate_only:
            return None
        tid = uuid.uuid4()
        records: list[dict] = [{"type": "TopicRecord", "name": name, "topic_id": str(tid)}]
        records += self._new_partition_records(tid, 0, placements)
        for k, v in configs.items():
            records.append({"type": "ConfigRecord", "resource_type": "topic",
                            "resource_name": name, "name": k, "value": v})
        image = await self._commit(records)
        log.info("topic created", topic=name, partitions=num_partitions,
                 replication_factor=replication_factor, topic_id=str(tid),
                 manual_assignment=bool(assignments))
        return image.topics[name]

    def _check_manual_assignment(self, broker_ids: Sequence[int], rf: int | None) -> None:
        if not broker_ids:
            raise _invalid_assignment(
                "The manual partition assignment includes an empty replica list.")
        seen: set[int] = set()
        for b in sorted(broker_ids):
            if b not in self.image.brokers:
                raise _invalid_assignment(f"The manual partition assignment includes broker "
                                          f"{b}, but no such broker is registered.")
            if b in seen:
                raise _invalid_assignment(f"The manual partition assignment includes the "
                                          f"broker {b} more than once.")
            seen.add(b)
        if rf is not None and len(broker_ids) != rf:
            raise _invalid_assignment(
                f"The manual partition assignment includes a partition with "
                f"{len(broker_ids)} replica(s), but this is not consistent with previous "
                f"partitions, which have {rf} replica(s).")
        if not any(self._is_active(b) for b in broker_ids):
            raise _invalid_assignment(
                f"All brokers specified in the manual partition assignment {list(broker_ids)} "
                "are fenced or in controlled shutdown.")

    def _new_partition_records(self, tid: uuid.UUID, start: int,
                               placements: list[list[int]]) -> list[dict]:
        out = []
        for p, replicas in enumerate(placements, start):
            isr = [r for r in replicas if self._is_active(r)]
            out.append({"type": "PartitionRecord", "topic_id": str(tid), "partition": p,
                        "leader": isr[0], "leader_epoch": 0, "replicas": list(replicas),
                        "isr": isr})
        return out

    async def delete_topic(self, name: str | None = None,
                           topic_id: uuid.UUID | None = None) -> str:
        async with self._lock:
            return await self._delete_topic(name, topic_id)

    async def _delete_topic(self, name: str | None = None, topic_id: uuid.UUID | None = None) -> str:
        if name is None and topic_id is not None:
            name = self.image.topics_by_id.get(topic_id)
            if name is None:
                raise KafkaError("This server does not host this topic ID.",
                                 ErrorCode.UNKNOWN_TOPIC_ID)
        t = self.image.topics.get(name) if name is not None else None
        if t is None:
            raise UnknownTopicOrPartitionError(
                "This server does not host this topic-partition.")
        await self._commit([{"type": "RemoveTopicRecord", "topic_id": str(t.topic_id)}])
        log.info("topic deleted", topic=name, topic_id=str(t.topic_id))
        return name

    async def create_partitions(self, name: str, count: int, *,
                                assignments: Sequence[Sequence[int]] | None = None,
                                validate_only: bool = False) -> None:
        async with self._lock:
            await self._create_partitions(name, count, assignments=assignments,
                                          validate_only=validate_only)

    async def _create_partitions(self, name: str, count: int, *,
                                 assignments: Sequence[Sequence[int]] | None = None,
                                 validate_only: bool = False) -> None:
        """`assignments`: broker ids of each new partition, one list per partition
        added, each checked as CreateTopics' (and as many replicas as the topic has)."""
        t = self.image.topics.get(name)
        if t is None:
            raise UnknownTopicOrPartitionError(f"The topic '{name}' does not exist.")
        current = len(t.partitions)
        if count < current:
            raise InvalidPartitionsError(
                f"Topic currently has {current} partitions, which is higher than the "
                f"requested {count}.")
        if count == current:
            raise InvalidPartitionsError(f"Topic already has {current} partitions.")
        if count > MAX_PARTITIONS:
            raise InvalidPartitionsError(f"Too many partitions: {count}.")
        if count - current > MAX_PARTITIONS_PER_REQUEST:
            raise PolicyViolationError("Excessively large number of partitions per request.")
        rf = len(t.partitions[0].replicas) if t.partitions else 1
        if assignments is not None:
            if len(assignments) != count - current:
                raise _invalid_assignment(
                    f"Attempted to add {count - current} additional partition(s), but only "
                    f"{len(assignments)} assignment(s) were specified.")
            for broker_ids in assignments:
                self._check_manual_assignment(broker_ids, rf)
            placements = [list(a) for a in assignments]
        else:
            placements = self._place(count - current, rf)
        if validate_only:
            return
        await self._commit(self._new_partition_records(t.topic_id, current, placements))
        log.info("partitions created", topic=name, partitions=count,
                 manual_assignment=assignments is not None)

    async def alter_topic_configs(self, name: str, configs: dict[str, str | None],
                                  *, validate_only: bool = False) -> None:
        async with self._lock:
            await self._alter_topic_configs(name, configs, validate_only=validate_only)

    async def _alter_topic_configs(self, name: str, configs: dict[str, str | None],
                                   *, validate_only: bool = False) -> None:
        """Set (value) or delete (None) topic config overrides. As KRaft's
        ConfigurationControlManager: the topic's whole resulting set of overrides is
        validated (INVALID_CONFIG), then the topic must exist; only changed keys are
        written, so deleting a key that is not set is a no-op."""
        t = self.image.topics.get(name)
        current = dict(t.configs) if t is not None else {}
        merged = dict(current)
        for k, v in configs.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        normalised = self._validate_configs(merged)
        if t is None:
            raise UnknownTopicOrPartitionError(f"The topic '{name}' does not exist.")
        changes = {k: (normalised[k] if v is not None else None) for k, v in configs.items()}
        changes = {k: v for k, v in changes.items() if current.get(k) != v}
        if validate_only or not changes:
            return
        records = [{"type": "ConfigRecord", "resource_type": "topic", "resource_name": name,
                    "name": k, "value": v} for k, v in changes.items()]
        if "min.insync.replicas" in changes:
            overrides = {k: v for k, v in normalised.items() if v is not None}
            new_min = effective_topic_config(self._config(), overrides)["min.insync.replicas"]
            records += self._stale_elr_changes(lambda t: new_min if t.name == name else None)
        await self._commit(records)
        log.info("topic configs altered", topic=name, configs=changes)

    def _stale_elr_changes(self, new_min_isr: Callable[[TopicImage], int | None]
                           ) -> list[dict]:
        """KIP-966: ELR members hold everything up to the high watermark only because
        the leader does not advance it while the ISR is below min.insync.replicas. A
        new min.insync.replicas (`new_min_isr` of a topic; None: unchanged) that the
        ISR now reaches lets the high watermark move past them, so their ELR goes.
        Kafka 4.x clears every ELR of the topic whatever the ISR; kafkette keeps the
        ELR of partitions whose ISR stays below the new minimum (their high watermark
        still cannot move), so that a leaderless partition keeps its eligible leaders."""
        out = []
        for t, p in self._partitions(lambda p: bool(p.elr)):
            new_min = new_min_isr(t)
            if new_min is not None and len(p.isr) >= min(new_min, len(p.replicas)):
                out.append(self._change_record(t, p, {"elr": [], "last_known_elr": []}))
        return out

    # -- AlterPartition (KIP-497; partition leaders, active controller) -------------
    async def alter_partition(self, broker_id: int, broker_epoch: int,
                              topic_id_or_name: uuid.UUID | str, partition: int,
                              leader_epoch: int, partition_epoch: int,
                              new_isr: Sequence[int | tuple[int, int]],
                              leader_recovery_state: int = RECOVERED
                              ) -> AlterPartitionResult:
        """The leader `broker_id` asks for a new ISR of one partition; see
        alter_partitions. Raises STALE_BROKER_EPOCH / NOT_CONTROLLER (KafkaError)."""
        (result,) = await self.alter_partitions(broker_id, broker_epoch, [AlterPartitionItem(
            topic_id_or_name, partition, leader_epoch, partition_epoch, new_isr,
            leader_recovery_state)])
        return result

    async def alter_partitions(self, broker_id: int, broker_epoch: int,
                               items: Sequence[AlterPartitionItem]
                               ) -> list[AlterPartitionResult]:
        """AlterPartition, as KRaft's ReplicationControlManager.alterPartition: the
        whole request fails with STALE_BROKER_EPOCH when the sender's broker epoch is
        not its registered one (raised); each partition is checked in KRaft's order
        (alter_partition_error) and the accepted ones are committed as one metadata
        entry: the new ISR (and KIP-966 ELR) bumps the partition epoch, never the
        leader epoch. Each result carries the committed leader, leader epoch, ISR and
        partition epoch; a request that changes nothing is answered with the current
        ones."""
        if not self.is_active:
            raise NotControllerError("This node is not the active controller.")
        async with self._lock:
            b = self.image.brokers.get(broker_id)
            if b is None or b.epoch != broker_epoch:
                raise KafkaError(
                    f"Broker {broker_id} is not registered." if b is None else
                    f"Expected broker epoch {b.epoch}, got {broker_epoch}.",
                    ErrorCode.STALE_BROKER_EPOCH)
            records: list[dict] = []
            outcome: list[tuple[ErrorCode, tuple[str, int] | None]] = []
            for item in items:
                legacy = isinstance(item.topic, str)  # v0-1 name topics, v2+ use ids
                name = item.topic if legacy else self.image.topics_by_id.get(item.topic)
                t = self.image.topics.get(name) if name is not None else None
                if t is None:
                    outcome.append((ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if legacy
                                    else ErrorCode.UNKNOWN_TOPIC_ID, None))
                    continue
                p = t.partitions.get(item.partition)
                error = self._alter_partition_error(broker_id, p, item, legacy)
                if error:
                    outcome.append((error, None))
                    continue
                min_isr, unclean_ok = self._topic_settings(t)
                change = partition_change(
                    p, acceptable=self._is_active, min_isr=min(min_isr, len(p.replicas)),
                    target_isr=[_isr_id(m) for m in item.new_isr],
                    election=Election.UNCLEAN if unclean_ok else Election.ONLINE,
                    elr_enabled=self.elr_enabled,
                    target_recovery_state=item.leader_recovery_state)
                if change is not None:
                    records.append(self._change_record(t, p, change))
                    if change.get("leader", broker_id) != broker_id:
                        # As KRaft when a change moves leadership (there: an ISR that
                        # completes a reassignment); the change is committed anyway.
                        outcome.append((ErrorCode.FENCED_LEADER_EPOCH if legacy
                                        else ErrorCode.NEW_LEADER_ELECTED, None))
                        continue
                    log.info("partition ISR altered", topic=t.name, partition=p.partition,
                             leader=broker_id, isr=change.get("isr", list(p.isr)),
                             elr=change.get("elr", list(p.elr)))
                outcome.append((ErrorCode.NONE, (t.name, p.partition)))
            if records:
                await self._commit(records)
            results = []
            for error, key in outcome:
                if key is None:
                    results.append(AlterPartitionResult(error))
                    continue
                p = self.image.topics[key[0]].partitions[key[1]]
                results.append(AlterPartitionResult(error, p.leader, p.leader_epoch, p.isr,
                                                    p.partition_epoch,
                                                    p.leader_recovery_state))
            return results

    def _alter_partition_error(self, broker_id: int, p: PartitionImage | None,
                               item: AlterPartitionItem, legacy: bool) -> ErrorCode:
        """KRaft's validateAlterPartitionData, in its order. Kafka's differences from
        what one might expect: a sender that does not lead (at the current leader
        epoch) gets INVALID_REQUEST, not NOT_LEADER_OR_FOLLOWER; epochs above the
        controller's get NOT_CONTROLLER (the sender has seen a newer controller); a
        new ISR with a non-replica or a duplicate is INVALID_REQUEST, one with a
        member that is not registered, fenced (kafkette fences a broker as soon as
        it asks for controlled shutdown) or of another broker epoch (v3, KIP-903) is
        INELIGIBLE_REPLICA (OPERATION_NOT_ATTEMPTED before v2)."""
        if p is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if item.leader_epoch > p.leader_epoch or item.partition_epoch > p.partition_epoch:
            return ErrorCode.NOT_CONTROLLER
        if item.leader_epoch < p.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if broker_id != p.leader:
            return ErrorCode.INVALID_REQUEST
        if item.partition_epoch < p.partition_epoch:
            return ErrorCode.INVALID_UPDATE_VERSION
        ids = [_isr_id(m) for m in item.new_isr]
        if len(set(ids)) != len(ids) or not set(ids) <= set(p.replicas):
            return ErrorCode.INVALID_REQUEST
        if p.leader not in ids:  # also an empty ISR: the leader must stay in it
            return ErrorCode.INVALID_REQUEST
        if item.leader_recovery_state == RECOVERING and len(ids) > 1:
            return ErrorCode.INVALID_REQUEST  # KIP-704: no ISR growth while recovering
        if p.leader_recovery_state == RECOVERED and item.leader_recovery_state == RECOVERING:
            return ErrorCode.INVALID_REQUEST
        for m in item.new_isr:
            b = self.image.brokers.get(_isr_id(m))
            epoch = m[1] if isinstance(m, tuple) else -1
            if b is None or b.fenced or (epoch != -1 and epoch != b.epoch):
                return (ErrorCode.OPERATION_NOT_ATTEMPTED if legacy
                        else ErrorCode.INELIGIBLE_REPLICA)
        return ErrorCode.NONE

    # -- elections (ElectLeaders, KIP-460; the preferred-leader balancer) -------------
    async def elect_leaders(self, election_type: int,
                            topic_partitions: Mapping[str, Sequence[int]] | None
                            ) -> dict[str, list[tuple[int, ErrorCode, str | None]]]:
        """ElectLeaders: topic -> [(partition, error, message)]. PREFERRED (0) moves
        leadership to the first replica when it is live and in the ISR (or the ELR of
        an empty ISR); UNCLEAN (1) elects a leader for a leaderless partition, from
        any live replica if no in-sync one is left, whatever the topic's
        unclean.leader.election.enable. Per partition, as KRaft: ELECTION_NOT_NEEDED
        (already led by the preferred replica / already has a leader),
        PREFERRED_LEADER_NOT_AVAILABLE / ELIGIBLE_LEADERS_NOT_AVAILABLE (no change
        possible), UNKNOWN_TOPIC_OR_PARTITION. None means every partition, and then
        ELECTION_NOT_NEEDED results are left out. An unknown election type raises
        INVALID_REQUEST. All changes commit as one entry."""
        if election_type not in (ELECTION_PREFERRED, ELECTION_UNCLEAN):
            raise InvalidRequestError(f"Unknown election type {election_type}")
        async with self._lock:
            every = topic_partitions is None
            if every:
                topic_partitions = {name: sorted(t.partitions)
                                    for name, t in sorted(self.image.topics.items())}
            records: list[dict] = []
            results: dict[str, list[tuple[int, ErrorCode, str | None]]] = {}
            done: dict[tuple[str, int], tuple[ErrorCode, str | None]] = {}
            for name, partitions in topic_partitions.items():
                out = results.setdefault(name, [])
                for index in partitions:
                    if (name, index) not in done:
                        done[name, index] = self._elect_one(name, index, election_type,
                                                            records)
                    error, message = done[name, index]
                    if not (every and error == ErrorCode.ELECTION_NOT_NEEDED):
                        out.append((index, error, message))
            if records:
                await self._commit(records)
                log.info("leaders elected", partitions=len(records),
                         election="unclean" if election_type else "preferred")
            return results

    def _elect_one(self, name: str, index: int, election_type: int,
                   records: list[dict]) -> tuple[ErrorCode, str | None]:
        t = self.image.topics.get(name)
        if t is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such topic as {name}"
        p = t.partitions.get(index)
        if p is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such partition as {name}-{index}"
        preferred = election_type == ELECTION_PREFERRED
        if (p.leader == p.replicas[0]) if preferred else (p.leader != NO_LEADER):
            return ErrorCode.ELECTION_NOT_NEEDED, None
        change = self._elect(t, p, Election.PREFERRED if preferred else Election.UNCLEAN)
        if change is None:
            return (ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE if preferred
                    else ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE), None
        records.append(self._change_record(t, p, change))
        return ErrorCode.NONE, None

    def _elect(self, t: TopicImage, p: PartitionImage, election: Election) -> dict | None:
        min_isr, _ = self._topic_settings(t)
        return partition_change(p, acceptable=self._is_active,
                                min_isr=min(min_isr, len(p.replicas)), election=election,
                                elr_enabled=self.elr_enabled)

    async def check_leader_balance(self) -> int:
        """The active controller's periodic elections; call it often (the cluster's
        session-check loop): it acts once per `leader.imbalance.check.interval.seconds`,
        the first time one interval after this node became active. Returns the number
        of partitions changed.

        - `auto.leader.rebalance.enable`: for each broker whose share of partitions
          it prefers (first replica) but does not lead exceeds
          `leader.imbalance.per.broker.percentage`, leadership of those moves back to
          it where it is live and in the ISR. That is the rule of Kafka's ZooKeeper
          controller; KRaft ignores the percentage and moves every one it can.
        - leaderless partitions get a leader where their topic now allows an unclean
          election (KRaft's periodic unclean election, so that turning on
          unclean.leader.election.enable takes effect)."""
        if not self.is_active:
            return 0
        cfg = self._config()
        now = self.clock.monotonic_ms()
        interval_ms = cfg["leader.imbalance.check.interval.seconds"] * 1000
        if self._next_balance_ms is None:
            self._next_balance_ms = now + interval_ms
        if now < self._next_balance_ms:
            return 0
        self._next_balance_ms = now + interval_ms
        async with self._lock:
            records = self._partition_changes(self._partitions(lambda p: p.leader == NO_LEADER))
            if cfg["auto.leader.rebalance.enable"]:
                records += self._preferred_leader_records(
                    cfg["leader.imbalance.per.broker.percentage"])
            if records:
                await self._commit(records)
                log.info("leader balance check changed partitions", partitions=len(records))
            return len(records)

    def _preferred_leader_records(self, percentage: int) -> list[dict]:
        preferred: dict[int, list[tuple[TopicImage, PartitionImage]]] = {}
        for t, p in self._partitions(lambda p: bool(p.replicas)):
            preferred.setdefault(p.replicas[0], []).append((t, p))
        records = []
        for broker_id, parts in sorted(preferred.items()):
            if not self._is_active(broker_id):
                continue
            off = [(t, p) for t, p in parts if p.leader != broker_id]
            if not off or len(off) * 100 <= percentage * len(parts):
                continue
            for t, p in off:
                if p.leader == NO_LEADER:
                    continue  # the leaderless pass of check_leader_balance has it
                change = self._elect(t, p, Election.PREFERRED)
                if change is not None and change.get("leader") == broker_id:
                    records.append(self._change_record(t, p, change))
        return records

    # -- dynamic broker configs (KIP-226) -----------------------------------------
    async def alter_broker_configs(self, resource_name: str, configs: dict[str, str | None],
                                   *, validate_only: bool = False) -> None:
        async with self._lock:
            await self._alter_broker_configs(resource_name, configs,
                                             validate_only=validate_only)

    async def _alter_broker_configs(self, resource_name: str,
                                    configs: dict[str, str | None],
                                    *, validate_only: bool = False) -> None:
        """Set (value) or delete (None) dynamic broker configs of a BROKER resource:
        "" is the cluster-wide default, a node id (as a string) that node. Written as
        ConfigRecords with resource_type "broker", as KRaft does (which also rewrites
        unchanged broker keys, KAFKA-14136, so that brokers reload SSL files; kafkette
        has nothing to reload and writes only changes)."""
        current = dict(self.image.broker_configs.get(resource_name, {}))
        changes = self._validate_broker_configs(resource_name, configs)
        changes = {k: v for k, v in changes.items() if current.get(k) != v}
        if validate_only or not changes:
            return
        records = [{"type": "ConfigRecord", "resource_type": "broker",
                    "resource_name": resource_name, "name": k, "value": v}
                   for k, v in changes.items()]
        if "min.insync.replicas" in changes and resource_name == "":
            # The cluster-wide default, for the topics that do not override it.
            # Kafka 4.1 also refuses per-broker min.insync.replicas while the ELR is
            # on; kafkette's controller reads its own node's value for defaults.
            value = changes["min.insync.replicas"]
            new_min = (int(value) if value is not None
                       else self._config().static_value("min.insync.replicas"))
            records += self._stale_elr_changes(
                lambda t: None if "min.insync.replicas" in t.configs else new_min)
        await self._commit(records)
        log.info("broker configs altered", resource=resource_name or "<cluster default>",
                 configs=changes)


    # -- ACLs (KRaft's AclControlManager) ------------------------------------------
    async def create_acls(self, bindings: Sequence[AclBinding]) -> list[str | None]:
        """Create ACLs, one AccessControlEntryRecord each, committed as one entry.
        Returns, per binding, None (created, or already present: creating an
        existing ACL is a no-op, as Kafka) or why it is invalid (INVALID_REQUEST)."""
        async with self._lock:
            errors: list[str | None] = []
            records: list[dict] = []
            seen = set()
            for b in bindings:
                why = validate_binding(b)
                errors.append(why)
                if why is None and b not in seen and self.image.acls.id_of(b) is None:
                    seen.add(b)
                    records.append(b.to_record(uuid.uuid4()))
            if records:
                await self._commit(records)
                log.info("acls created", count=len(records))
            return errors

    async def delete_acls(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        """Delete the ACLs matching each filter (one RemoveAccessControlEntryRecord
        per ACL, all in one entry); per filter, the ACLs it matched. An ACL matched
        by two filters is listed under both and removed once, as Kafka."""
        async with self._lock:
            out: list[list[AclBinding]] = []
            removed: dict[uuid.UUID, AclBinding] = {}
            for f in filters:
                matched = self.image.acls.matching(f)
                out.append([b for _, b in matched])
                removed.update(matched)
            if removed:
                await self._commit([{"type": "RemoveAccessControlEntryRecord",
                                     "id": str(i)} for i in removed])
                log.info("acls deleted", count=len(removed))
            return out

    # -- SCRAM credentials (KIP-554, KRaft's ScramControlManager) --------------------
    async def alter_user_scram_credentials(self, deletions, upsertions) -> dict[str, tuple[int, str | None]]:
        """Apply deletions [(user, mechanism)] and upsertions [(user, mechanism,
        iterations, salt, salted_password)] as one entry; returns user -> (error code,
        message). Kafka's rules: a user named twice in the request, or in both lists,
        gets DUPLICATE_RESOURCE for all of its alterations; an unknown mechanism
        UNSUPPORTED_SASL_MECHANISM; iterations outside [4096, 16384], an empty user
        name or salt UNACCEPTABLE_CREDENTIAL; deleting a credential that does not exist
        RESOURCE_NOT_FOUND. The salted password never reaches the log: the stored and
        server keys derived from it do (RFC 5802)."""
        async with self._lock:
            counts: dict[str, int] = {}
            for item in list(deletions) + list(upsertions):
                counts[item[0]] = counts.get(item[0], 0) + 1
            results: dict[str, tuple[int, str | None]] = {}
            records: list[dict] = []
            creds = self.image.scram_credentials
            for user, mechanism in deletions:
                why = _scram_refusal(user, mechanism, counts)
                if why is None and (user, mechanism) not in creds:
                    why = (ErrorCode.RESOURCE_NOT_FOUND,
                           "Attempt to delete a user credential that does not exist")
                if why is None:
                    records.append({"type": "RemoveUserScramCredentialRecord", "name": user,
                                    "mechanism": mechanism})
                results.setdefault(user, why or (ErrorCode.NONE, None))
            for user, mechanism, iterations, salt, salted in upsertions:
                why = _scram_refusal(user, mechanism, counts)
                if why is None and not MIN_SCRAM_ITERATIONS <= iterations <= MAX_SCRAM_ITERATIONS:
                    why = (ErrorCode.UNACCEPTABLE_CREDENTIAL,
                           f"Iterations {iterations} must be between {MIN_SCRAM_ITERATIONS} "
                           f"and {MAX_SCRAM_ITERATIONS}")
                if why is None and (not salt or not salted):
                    why = (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Salt and salted password are required")
                if why is None:
                    records.append(scram_record(user, mechanism,
                                                scram_keys(mechanism, salt, salted, iterations)))
                results.setdefault(user, why or (ErrorCode.NONE, None))
            if records:
                await self._commit(records)
                log.info("scram credentials altered", users=sorted(
                    u for u, (code, _) in results.items() if code == ErrorCode.NONE))
            return results

    # -- client quotas (KIP-13, KIP-546; KRaft's ClientQuotaControlManager) -----------
    async def alter_client_quotas(self, entries, validate_only: bool = False
                                  ) -> list[tuple[int, str | None]]:
        """entries: [(entity [(type, name or None)], ops [(key, value, remove)])];
        per entry (error code, message). Valid entries are committed together as
        ClientQuotaRecords; an invalid one is refused alone (INVALID_REQUEST), as
        Kafka answers each entry on its own."""
        async with self._lock:
            results: list[tuple[int, str | None]] = []
            records: list[dict] = []
            stored_only: set[str] = set()
            for components, ops in entries:
                why = quota_entity_refusal(components) or quota_ops_refusal(components, ops)
                if why is not None:
                    results.append((ErrorCode.INVALID_REQUEST, why))
                    continue
                results.append((ErrorCode.NONE, None))
                entity = tuple(sorted(components))
                current = self.image.client_quotas.get(entity, {})
                for key, value, remove in ops:
                    if remove and key in current:
                        records.append(quota_record(entity, key, None))
                    elif not remove and current.get(key) != value:
                        records.append(quota_record(entity, key, float(value)))
                        if key in NOT_ENFORCED_KEYS:
                            stored_only.add(key)
            if records and not validate_only:
                await self._commit(records)
                log.info("client quotas altered", count=len(records))
                if stored_only:
                    # KIP-599 / KIP-612 throttling is not built: say so where it is set.
                    log.warning("client quota stored but not enforced by kafkette",
                                keys=sorted(stored_only))
            return results


def _isr_id(member: int | tuple[int, int]) -> int:
    return member[0] if isinstance(member, tuple) else member


def _invalid_assignment(message: str) -> KafkaError:
    return KafkaError(message, ErrorCode.INVALID_REPLICA_ASSIGNMENT)


_DEFAULTS: list[BrokerConfig] = []


def _default_config() -> BrokerConfig:
    if not _DEFAULTS:
        _DEFAULTS.append(BrokerConfig())
    return _DEFAULTS[0]


def _new_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes, base64url without padding (22 chars).
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# Kafka's ScramMechanism: the iteration bounds it accepts for a stored credential.
MIN_SCRAM_ITERATIONS = 4096
MAX_SCRAM_ITERATIONS = 16384
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def _scram_refusal(user: str, mechanism: str, counts: dict[str, int]):
    if counts.get(user, 0) > 1:
        return (ErrorCode.DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request")
    if not user:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"
    if mechanism not in SCRAM_HASHES:
        return ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"
    return None


def scram_keys(mechanism: str, salt: bytes, salted_password: bytes,
               iterations: int) -> ScramCredential:
    """RFC 5802: StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey =
    HMAC(SaltedPassword, "Server Key")."""
    name = SCRAM_HASHES[mechanism]
    client_key = hmac.new(salted_password, b"Client Key", name).digest()
    return ScramCredential(salt, hashlib.new(name, client_key).digest(),
                           hmac.new(salted_password, b"Server Key", name).digest(), iterations)


# Kafka's QuotaConfigs: the keys each entity type takes, and their types.
_USER_CLIENT_KEYS = {"producer_byte_rate": "long", "consumer_byte_rate": "long",
                     "request_percentage": "double", "controller_mutation_rate": "double"}
QUOTA_KEYS = {"user": _USER_CLIENT_KEYS, "client-id": _USER_CLIENT_KEYS,
              "ip": {"connection_creation_rate": "int"}}
NOT_ENFORCED_KEYS = frozenset(("controller_mutation_rate", "connection_creation_rate"))
_QUOTA_COMBINATIONS = ({"user"}, {"client-id"}, {"user", "client-id"}, {"ip"})


def quota_entity_refusal(components) -> str | None:
    """Why an entity [(type, name or None)] cannot hold quotas (INVALID_REQUEST), or None."""
    if not components:
        return "Invalid empty client quota entity"
    types = [t for t, _ in components]
    for t in types:
        if t not in QUOTA_KEYS:
            return f"Unhandled client quota entity type: {t}"
    if len(set(types)) != len(types):
        return "Duplicate entity type in client quota entity"
    if set(types) not in _QUOTA_COMBINATIONS:
        return "Invalid quota entity combination: " + ", ".join(types)
    for t, name in components:
        if t == "ip" and name is not None:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return f"{name} is not a valid IP address"
    return None


def quota_ops_refusal(components, ops) -> str | None:
    keys = QUOTA_KEYS[components[0][0]]
    seen = set()
    for key, value, remove in ops:
        if key not in keys:
            return f"Invalid configuration key {key}"
        if key in seen:
            return f"Duplicate configuration key {key}"
        seen.add(key)
        if remove:
            continue
        kind = keys[key]
        if value != value or value in (float("inf"), float("-inf")):
            return f"Invalid value {value} for configuration key {key}"
        if kind in ("long", "int") and value != int(value):
            return f"Configuration {key} must be a {kind.upper()} value"
        if kind == "int" and not -2**31 <= value < 2**31:
            return f"Proposed value for {key} is too large for an INT"
        if value <= 0:
            # A quota of zero or less would throttle every request of the entity for a
            # whole window at once: kafkette refuses it.
            return f"Configuration {key} must be positive"
    return None


def _listener_name(listener) -> str:
    return getattr(listener, "__qualname__", None) or repr(listener)
