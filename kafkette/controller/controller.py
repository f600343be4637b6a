"""The controller: validates metadata changes, writes them as records to the metadata
log, and publishes the new metadata image.

Today this is a quorum of one (a single node is broker and controller, as
`process.roles=broker,controller` in KRaft): a change is committed as soon as its
records are appended to the local metadata log `__cluster_metadata-0`. The Raft
quorum of the cluster issue slots in under `_commit`: records are proposed, and
applied once a majority has them. Everything above it (validation, records, image,
listeners) stays as it is.

Real Kafka differences: KRaft's records are binary (its own schemas) and its
metadata log also carries snapshots; kafkette's are JSON values in ordinary record
batches and the log is replayed whole on start (small for a single node).
"""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Callable

from kafkette.controller.metadata_image import MetadataImage, TopicImage, apply_records
from kafkette.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    KafkaError,
    ErrorCode,
)
from kafkette.log.partition_log import LogConfig, PartitionLog
from kafkette.logging import get_logger
from kafkette.protocol.records import build_batch, decode_records

log = get_logger("kafkette.controller")

METADATA_TOPIC = "__cluster_metadata"
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
    def __init__(self, data_dir: Path, node_id: int, cluster_id: str | None, clock,
                 broker_endpoint: tuple[str, int], rack: str | None = None,
                 validate_configs: Callable[[dict], dict] | None = None,
                 validate_broker_configs: Callable[[str, dict], dict] | None = None):
        self.node_id = node_id
        self.clock = clock
        self._listeners: list[Listener] = []
        self._validate_configs = validate_configs or (lambda c: c)
        # (resource name, changes) -> normalised changes; raises KafkaError.
        self._validate_broker_configs = validate_broker_configs or (lambda name, c: c)
        self._log = PartitionLog(Path(data_dir) / f"{METADATA_TOPIC}-0", LogConfig(), clock)
        self.image = MetadataImage(cluster_id="", controller_id=node_id)
        self._replay()
        records: list[dict] = []
        if not self.image.cluster_id:
            records.append({"type": "ClusterIdRecord",
                            "cluster_id": cluster_id or _new_cluster_id()})
        elif cluster_id and cluster_id != self.image.cluster_id:
            raise KafkaError(f"cluster.id {cluster_id} does not match the stored cluster id "
                             f"{self.image.cluster_id}", ErrorCode.INCONSISTENT_CLUSTER_ID)
        host, port = broker_endpoint
        b = self.image.brokers.get(node_id)
        if b is None or (b.host, b.port, b.rack) != (host, port, rack):
            records.append({"type": "RegisterBrokerRecord", "broker_id": node_id,
                            "host": host, "port": port, "rack": rack})
        if records:
            self._commit(records)

    # -- log -------------------------------------------------------------------
    def _replay(self) -> None:
        offset = self._log.log_start_offset
        image = self.image
        while offset < self._log.log_end_offset:
            data = self._log.read(offset, 1 << 20)
            if not data:
                break
            for rec in decode_records(data):
                if rec.offset < offset:
                    continue
                image = apply_records(image, [json.loads(rec.value)], rec.offset)
                offset = rec.offset + 1
        self.image = image

    def _commit(self, records: list[dict]) -> MetadataImage:
        """Append the records as one batch (atomic: all or nothing on replay) and
        publish the new image. With a quorum, this waits for a majority."""
        batch = bytearray(build_batch([(None, json.dumps(r).encode(), []) for r in records],
                                      timestamp_ms=self.clock.time_ms()))
        result = self._log.append(memoryview(batch), 0, self.clock.time_ms())
        self._log.flush()  # metadata is small and precious: always fsync it
        old = self.image
        self.image = apply_records(old, records, result.last_offset)
        for listener in self._listeners:
            listener(old, self.image)
        return self.image

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def close(self) -> None:
        self._log.close()

    # -- producer ids -----------------------------------------------------------
    def allocate_producer_ids(self, count: int = 1000) -> range:
        """Reserve a block of producer ids in the metadata log, as KRaft's
        AllocateProducerIds does, so that ids are never reused after a restart."""
        start = self.image.next_producer_id
        self._commit([{"type": "ProducerIdsRecord", "broker_id": self.node_id,
                       "next_producer_id": start + count}])
        return range(start, start + count)

    # -- topics ----------------------------------------------------------------
    def live_brokers(self) -> list[int]:
        return sorted(b.node_id for b in self.image.brokers.values() if not b.fenced)

    def create_topic(self, name: str, num_partitions: int, replication_factor: int,
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
        image = self._commit(records)
        log.info("topic created", topic=name, partitions=num_partitions,
                 replication_factor=replication_factor, topic_id=str(tid))
        return image.topics[name]

    def _partition_records(self, tid: uuid.UUID, start: int, end: int, rf: int,
                           brokers: list[int]) -> list[dict]:
        # Round-robin leaders over the live brokers, as Kafka's replica placer does
        # (without its rack awareness, which comes with the cluster issue).
        out = []
        n = len(brokers)
        for p in range(start, end):
            replicas = [brokers[(p + i) % n] for i in range(rf)]
            out.append({"type": "PartitionRecord", "topic_id": str(tid), "partition": p,
                        "leader": replicas[0], "leader_epoch": 0, "replicas": replicas,
                        "isr": replicas})
        return out

    def delete_topic(self, name: str | None = None, topic_id: uuid.UUID | None = None) -> str:
        if name is None and topic_id is not None:
            name = self.image.topics_by_id.get(topic_id)
            if name is None:
                raise KafkaError("This server does not host this topic ID.",
                                 ErrorCode.UNKNOWN_TOPIC_ID)
        t = self.image.topics.get(name) if name is not None else None
        if t is None:
            raise UnknownTopicOrPartitionError(
                "This server does not host this topic-partition.")
        self._commit([{"type": "RemoveTopicRecord", "topic_id": str(t.topic_id)}])
        log.info("topic deleted", topic=name, topic_id=str(t.topic_id))
        return name

    def create_partitions(self, name: str, count: int, *, validate_only: bool = False) -> None:
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
        self._commit(self._partition_records(t.topic_id, current, count, rf, brokers))
        log.info("partitions created", topic=name, partitions=count)

    def alter_topic_configs(self, name: str, configs: dict[str, str | None],
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
        self._commit([{"type": "ConfigRecord", "resource_type": "topic", "resource_name": name,
                       "name": k, "value": v} for k, v in changes.items()])
        log.info("topic configs altered", topic=name, configs=changes)

    # -- dynamic broker configs (KIP-226) -----------------------------------------
    def alter_broker_configs(self, resource_name: str, configs: dict[str, str | None],
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
        self._commit([{"type": "ConfigRecord", "resource_type": "broker",
                       "resource_name": resource_name, "name": k, "value": v}
                      for k, v in changes.items()])
        log.info("broker configs altered", resource=resource_name or "<cluster default>",
                 configs=changes)


def _new_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes, base64url without padding (22 chars).
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
