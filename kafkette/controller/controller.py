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

Real Kafka differences: KRaft's records are binary (its own schemas); kafkette's are
JSON values in ordinary record batches. KRaft's controller validates against its
uncommitted in-memory state and pipelines writes; kafkette validates each change
after the previous one committed (one lock), which is simpler and ample for metadata.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

from kafkette.controller.metadata_image import (
    MetadataImage,
    TopicImage,
    apply_records,
    image_to_records,
)
from kafkette.controller.quorum import encode_records, run_now
from kafkette.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
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

Listener = Callable[[MetadataImage, MetadataImage], None]


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
                 session_timeout_ms: int = 9000):
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
            self._publish(replace(self.image, controller_id=new_id))

    def _publish(self, new: MetadataImage) -> None:
        old, self.image = self.image, new
        for listener in self._listeners:
            listener(old, new)

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
                              rack: str | None, cluster_id: str | None) -> int:
        """BrokerRegistration: returns the broker epoch (the offset of its registration
        record, as KRaft). A new registration starts fenced; the first heartbeat that
        shows the broker has caught up with the metadata log unfences it."""
        await self.ensure_cluster_id()
        if cluster_id and cluster_id != self.image.cluster_id:
            raise KafkaError(f"Expected cluster id {self.image.cluster_id}, got {cluster_id}",
                             ErrorCode.INCONSISTENT_CLUSTER_ID)
        async with self._lock:
            records = [{"type": "RegisterBrokerRecord", "broker_id": broker_id,
                        "host": host, "port": port, "rack": rack, "fenced": True}]
            records += self._leader_changes_for(broker_id, fenced=True)
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
            if b.fenced and caught_up and not want_fence:
                records = [{"type": "UnfenceBrokerRecord", "broker_id": broker_id}]
                records += self._leader_changes_for(broker_id, fenced=False)
                await self._commit(records)
                log.info("broker unfenced", broker_id=broker_id)
            return caught_up, self.image.brokers[broker_id].fenced, False

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
        records += self._leader_changes_for(broker_id, fenced=True)
        await self._commit(records)
        log.warning("broker fenced", broker_id=broker_id, reason=reason,
                    partitions_changed=len(records) - 1)

    def _leader_changes_for(self, broker_id: int, fenced: bool) -> list[dict]:
        """PartitionChangeRecords after `broker_id` is fenced (it leaves the ISR unless
        it is the last member, and loses leadership: another live ISR member leads,
        or none, and the partition is offline, as with RF=1) or unfenced (it leads
        the partitions that have no leader and list it in their ISR)."""
        live = {b.node_id for b in self.image.brokers.values() if not b.fenced}
        if fenced:
            live.discard(broker_id)
        else:
            live.add(broker_id)
        out = []
        for t in self.image.topics.values():
            for p in t.partitions.values():
                if broker_id not in p.replicas:
                    continue
                isr = list(p.isr)
                if fenced:
                    if p.leader != broker_id and broker_id not in isr:
                        continue
                    if broker_id in isr and len(isr) > 1:
                        isr.remove(broker_id)
                    leader = next((r for r in isr if r in live), -1)
                else:
                    if p.leader != -1:
                        continue
                    leader = next((r for r in isr if r in live), -1)
                    if leader == -1:
                        continue
                if leader == p.leader and tuple(isr) == p.isr:
                    continue
                out.append({"type": "PartitionChangeRecord", "topic_id": str(t.topic_id),
                            "partition": p.partition, "leader": leader,
                            "leader_epoch": p.leader_epoch + 1, "isr": isr})
        return out

    # -- topics ----------------------------------------------------------------
    def live_brokers(self) -> list[int]:
        return sorted(b.node_id for b in self.image.brokers.values() if not b.fenced)

    async def create_topic(self, *args, **kwargs) -> TopicImage | None:
        async with self._lock:
            return await self._create_topic(*args, **kwargs)

    async def _create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     configs: dict[str, str | None], *, validate_only: bool = False,
                     default_partitions: int = 1, default_replication_factor: int = 1,
                     ) -> TopicImage | None:
        validate_topic_name(name)
        if name in self.image.topics:
            raise TopicAlreadyExistsError(f"Topic '{name}' already exists.")
        # Kafka also refuses names that collide once '.' is read as '_' (metrics names).
        folded = name.replace(".", "_")
        for other in self.image.topics:
            if other.replace(".", "_") == folded:
                raise InvalidTopicError(
                    f"Topic '{name}' collides with existing topic: {other}")
        if num_partitions == -1:
            num_partitions = default_partitions
        if num_partitions <= 0 or num_partitions > MAX_PARTITIONS:
            raise InvalidPartitionsError("Number of partitions must be larger than 0.")
        if replication_factor == -1:
            replication_factor = default_replication_factor
        if replication_factor <= 0:
            raise InvalidReplicationFactorError("Replication factor must be larger than 0.")
        brokers = self.live_brokers()
        if replication_factor > len(brokers):
            raise InvalidReplicationFactorError(
                f"Unable to replicate the partition {replication_factor} time(s): "
                f"The target replication factor of {replication_factor} cannot be reached "
                f"because only {len(brokers)} broker(s) are registered.")
        configs = self._validate_configs(configs)
        if validate_only:
            return None
        tid = uuid.uuid4()
        records: list[dict] = [{"type": "TopicRecord", "name": name, "topic_id": str(tid)}]
        records += self._partition_records(tid, 0, num_partitions, replication_factor, brokers)
        for k, v in configs.items():
            records.append({"type": "ConfigRecord", "resource_type": "topic",
                            "resource_name": name, "name": k, "value": v})
        image = await self._commit(records)
        log.info("topic created", topic=name, partitions=num_partitions,
                 replication_factor=replication_factor, topic_id=str(tid))
        return image.topics[name]

    def _partition_records(self, tid: uuid.UUID, start: int, end: int, rf: int,
                           brokers: list[int]) -> list[dict]:
        # Round-robin over the live brokers from a random first broker, as Kafka's
        # StripedReplicaPlacer does (without its rack awareness): leaders spread
        # evenly, and many small topics do not all land on the same broker.
        out = []
        n = len(brokers)
        first = random.randrange(n) if start == 0 else 0
        for p in range(start, end):
            replicas = [brokers[(first + p + i) % n] for i in range(rf)]
            out.append({"type": "PartitionRecord", "topic_id": str(tid), "partition": p,
                        "leader": replicas[0], "leader_epoch": 0, "replicas": replicas,
                        "isr": replicas})
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
                                validate_only: bool = False) -> None:
        async with self._lock:
            await self._create_partitions(name, count, validate_only=validate_only)

    async def _create_partitions(self, name: str, count: int, *,
                                 validate_only: bool = False) -> None:
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
        rf = len(t.partitions[0].replicas) if t.partitions else 1
        brokers = self.live_brokers()
        if rf > len(brokers):
            raise InvalidReplicationFactorError(
                f"Replication factor {rf} exceeds the {len(brokers)} live broker(s).")
        if validate_only:
            return
        await self._commit(self._partition_records(t.topic_id, current, count, rf, brokers))
        log.info("partitions created", topic=name, partitions=count)

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
        await self._commit([{"type": "ConfigRecord", "resource_type": "topic",
                              "resource_name": name,
                       "name": k, "value": v} for k, v in changes.items()])
        log.info("topic configs altered", topic=name, configs=changes)

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
        await self._commit([{"type": "ConfigRecord", "resource_type": "broker",
                       "resource_name": resource_name, "name": k, "value": v}
                      for k, v in changes.items()])
        log.info("broker configs altered", resource=resource_name or "<cluster default>",
                 configs=changes)


def _new_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes, base64url without padding (22 chars).
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
