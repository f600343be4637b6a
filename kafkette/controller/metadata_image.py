"""The cluster metadata image: an immutable view of brokers, topics, partitions and
configs, rebuilt by applying metadata records (as KRaft's MetadataImage is).

Handlers read the current image; they never mutate it. Every change goes through
the controller as a record, so that the same records can later be ordered by a
Raft quorum and replayed by every broker.

Records are plain dicts (a `type` and its fields), named after KRaft's metadata
record types (TopicRecord, PartitionRecord, PartitionChangeRecord, ConfigRecord,
RemoveTopicRecord, RegisterBrokerRecord, FenceBrokerRecord, UnfenceBrokerRecord,
ProducerIdsRecord, AccessControlEntryRecord, RemoveAccessControlEntryRecord (ACLs, see
acls.py), UserScramCredentialRecord, RemoveUserScramCredentialRecord (KIP-554), ClientQuotaRecord (KIP-13, KIP-546); ClusterIdRecord is kafkette's, KRaft keeps the id in meta.properties). A ConfigRecord's resource_type is "topic" or "broker" (a
dynamic broker config; resource_name "" is the cluster-wide default). Kafka encodes
them with its own generated schemas; kafkette stores them as JSON inside ordinary
record batches, which keeps them readable with any Kafka consumer tool pointed at the
metadata log's segment files.
"""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from kafkette.controller.acls import EMPTY_ACLS, AclBinding, AclIndex


@dataclass(frozen=True)
class BrokerImage:
    node_id: int
    host: str
    port: int
    rack: str | None = None
    fenced: bool = False
    # Offset of its registration record (KRaft's broker epoch): heartbeats carry it,
    # so a heartbeat from a previous incarnation is refused (STALE_BROKER_EPOCH).
    epoch: int = -1
    # Every listener it registered, as (name, host, port) (RegisterBrokerRecord's
    # endPoints): peers reach it on the inter-broker listener, clients on the listener
    # they asked on (KIP-103). host/port above are the first one's.
    endpoints: tuple[tuple[str, str, int], ...] = ()
    # The incarnation id of the process that registered (RegisterBrokerRecord's
    # incarnationId, new at each start): another process registering the same id while
    # this one's session lives is refused (DUPLICATE_BROKER_REGISTRATION). None: not
    # given (a single node's own registration, records written before it was kept).
    incarnation_id: str | None = None

    def address(self, listener: str | None) -> tuple[str, int]:
        """(host, port) of the named listener; the first listener's when it did not
        register that one (a registration from before endpoints were recorded)."""
        for name, host, port in self.endpoints:
            if name == listener:
                return host, port
        return self.host, self.port


# KIP-704 leader recovery state: RECOVERING after an unclean election until the new
# leader says (AlterPartition) that it has recovered; the ISR may not grow meanwhile.
RECOVERED, RECOVERING = 0, 1


@dataclass(frozen=True)
class PartitionImage:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    # Bumped by every PartitionChangeRecord; AlterPartition carries the epoch it was
    # based on (INVALID_UPDATE_VERSION when stale), as KRaft.
    partition_epoch: int = 0
    # KIP-966 eligible leader replicas: replicas that left the ISR while it was below
    # min.insync.replicas (so the high watermark could not move past what they have)
    # and may be elected when the ISR is empty. last_known_elr holds the last leader
    # once the ISR went empty (Kafka 4.x's "last known leader"), elected only when ISR
    # and ELR are both empty.
    elr: tuple[int, ...] = ()
    last_known_elr: tuple[int, ...] = ()
    leader_recovery_state: int = RECOVERED


@dataclass(frozen=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: MappingProxyType  # int -> PartitionImage
    configs: MappingProxyType     # str -> str (only explicitly set configs)


@dataclass(frozen=True)
class ScramCredential:
    """What a broker needs to check a SCRAM login (RFC 5802): never the password,
    nor the salted password; the stored and server keys derived from it."""
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


@dataclass(frozen=True)
class MetadataImage:
    cluster_id: str
    controller_id: int
    brokers: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    topics: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    topics_by_id: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    offset: int = -1  # offset of the last applied metadata record
    # First producer id not yet handed out in a block (KRaft: ProducerIdsRecord).
    next_producer_id: int = 0
    # Dynamic broker configs (KIP-226): resource name ("" = cluster-wide default, or a
    # node id as a string) -> MappingProxyType of config name -> value (set ones only).
    broker_configs: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    # ACLs (KRaft's AclControlManager / StandardAuthorizerData), indexed for lookups.
    acls: AclIndex = EMPTY_ACLS
    # SCRAM credentials (KIP-554, KRaft's ScramControlManager): (user, mechanism name
    # "SCRAM-SHA-256" / "SCRAM-SHA-512") -> ScramCredential.
    scram_credentials: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    # Client quotas (KRaft's ClientQuotaControlManager): entity, a sorted tuple of
    # (entity type, name or None for the type's default) -> MappingProxyType of key ->
    # value (set ones only; an entity with none left is dropped).
    client_quotas: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def topic(self, name: str) -> TopicImage | None:
        return self.topics.get(name)


def image_to_records(image: MetadataImage) -> list[dict]:
    """Records that rebuild `image` from an empty one: the content of a metadata
    snapshot (KRaft writes its snapshots as the same record types)."""
    out: list[dict] = [{"type": "ClusterIdRecord", "cluster_id": image.cluster_id}]
    for b in image.brokers.values():
        out.append({"type": "RegisterBrokerRecord", "broker_id": b.node_id, "host": b.host,
                    "port": b.port, "rack": b.rack, "fenced": b.fenced, "epoch": b.epoch,
                    "endpoints": [list(e) for e in b.endpoints],
                    "incarnation_id": b.incarnation_id})
    for t in image.topics.values():
        out.append({"type": "TopicRecord", "name": t.name, "topic_id": str(t.topic_id)})
        for p in t.partitions.values():
            out.append({"type": "PartitionRecord", "topic_id": str(t.topic_id),
                        "partition": p.partition, "leader": p.leader,
                        "leader_epoch": p.leader_epoch, "replicas": list(p.replicas),
                        "isr": list(p.isr), "partition_epoch": p.partition_epoch,
                        "elr": list(p.elr), "last_known_elr": list(p.last_known_elr),
                        "leader_recovery_state": p.leader_recovery_state})
        for k, v in t.configs.items():
            out.append({"type": "ConfigRecord", "resource_type": "topic",
                        "resource_name": t.name, "name": k, "value": v})
    for resource, cfg in image.broker_configs.items():
        for k, v in cfg.items():
            out.append({"type": "ConfigRecord", "resource_type": "broker",
                        "resource_name": resource, "name": k, "value": v})
    for acl_id, b in image.acls.by_id.items():
        out.append(b.to_record(acl_id))
    for (user, mechanism), c in image.scram_credentials.items():
        out.append(scram_record(user, mechanism, c))
    for entity, values in image.client_quotas.items():
        for k, v in values.items():
            out.append(quota_record(entity, k, v))
    out.append({"type": "ProducerIdsRecord", "broker_id": -1,
                "next_producer_id": image.next_producer_id})
    return out


def apply_records(image: MetadataImage, records: list[dict], offset: int) -> MetadataImage:
    """Return a new image with `records` applied. Records that refer to unknown
    topics are ignored (a removed topic's late partition change, for instance)."""
    brokers = dict(image.brokers)
    topics = dict(image.topics)
    by_id = dict(image.topics_by_id)
    cluster_id = image.cluster_id
    next_pid = image.next_producer_id
    broker_configs = dict(image.broker_configs)
    # ACL changes are collected and the index rebuilt once per batch of records.
    acls_added: dict[uuid.UUID, AclBinding] = {}
    acls_removed: set[uuid.UUID] = set()
    scram = None    # copied on the first SCRAM record of the batch
    quotas = None   # likewise, on the first ClientQuotaRecord
    # Topic name -> its partitions dict, copied once per batch and then changed in
    # place (the new image is not seen by anyone before this returns): a CreateTopics
    # of 10,000 partitions is one batch of 10,000 PartitionRecords, and a copy per
    # record made applying it quadratic (0.6 s for 5,000 partitions).
    own_parts: dict[str, dict] = {}

    def partitions_of(name: str) -> dict:
        parts = own_parts.get(name)
        if parts is None:
            t = topics[name]
            parts = own_parts[name] = dict(t.partitions)
            topics[name] = replace(t, partitions=MappingProxyType(parts))
        return parts

    for rec in records:
        kind = rec["type"]
        if kind == "RegisterBrokerRecord":
            brokers[rec["broker_id"]] = BrokerImage(
                rec["broker_id"], rec["host"], rec["port"], rec.get("rack"),
                rec.get("fenced", False), rec.get("epoch", offset),
                tuple((n, h, p) for n, h, p in rec.get("endpoints", ())),
                rec.get("incarnation_id"))
        elif kind in ("FenceBrokerRecord", "UnfenceBrokerRecord"):
            b = brokers.get(rec["broker_id"])
            if b is not None:
                brokers[b.node_id] = replace(b, fenced=kind == "FenceBrokerRecord")
        elif kind == "PartitionChangeRecord":
            # Leader, ISR and/or ELR change of an existing partition (KRaft: only the
            # changed fields are present; the controller writes the bumped leader_epoch
            # with a leader change, KRaft's replay bumps it itself).
            name = by_id.get(uuid.UUID(rec["topic_id"]))
            t = topics.get(name) if name is not None else None
            if t is None or rec["partition"] not in t.partitions:
                continue
            old = t.partitions[rec["partition"]]
            parts = partitions_of(name)
            parts[old.partition] = replace(
                old, leader=rec.get("leader", old.leader),
                leader_epoch=rec.get("leader_epoch", old.leader_epoch),
                isr=tuple(rec.get("isr", old.isr)),
                replicas=tuple(rec.get("replicas", old.replicas)),
                elr=tuple(rec.get("elr", old.elr)),
                last_known_elr=tuple(rec.get("last_known_elr", old.last_known_elr)),
                leader_recovery_state=rec.get("leader_recovery_state",
                                              old.leader_recovery_state),
                partition_epoch=old.partition_epoch + 1)
        elif kind == "ClusterIdRecord":
            cluster_id = rec["cluster_id"]
        elif kind == "TopicRecord":
            tid = uuid.UUID(rec["topic_id"])
            t = TopicImage(rec["name"], tid, MappingProxyType({}), MappingProxyType({}))
            topics[t.name] = t
            by_id[tid] = t.name
            own_parts.pop(t.name, None)
        elif kind == "PartitionRecord":
            name = by_id.get(uuid.UUID(rec["topic_id"]))
            if name is None:
                continue
            parts = partitions_of(name)
            parts[rec["partition"]] = PartitionImage(
                rec["partition"], rec["leader"], rec["leader_epoch"], tuple(rec["replicas"]),
                tuple(rec["isr"]), rec.get("partition_epoch", 0),
                tuple(rec.get("elr", ())), tuple(rec.get("last_known_elr", ())),
                rec.get("leader_recovery_state", RECOVERED))
        elif kind == "ConfigRecord" and rec["resource_type"] == "broker":
            cfg = dict(broker_configs.get(rec["resource_name"], {}))
            if rec["value"] is None:
                cfg.pop(rec["name"], None)
            else:
                cfg[rec["name"]] = rec["value"]
            if cfg:
                broker_configs[rec["resource_name"]] = MappingProxyType(cfg)
            else:
                broker_configs.pop(rec["resource_name"], None)
        elif kind == "ConfigRecord":
            if rec["resource_type"] != "topic" or rec["resource_name"] not in topics:
                continue
            t = topics[rec["resource_name"]]
            cfg = dict(t.configs)
            if rec["value"] is None:
                cfg.pop(rec["name"], None)
            else:
                cfg[rec["name"]] = rec["value"]
            topics[t.name] = replace(t, configs=MappingProxyType(cfg))
        elif kind == "RemoveTopicRecord":
            tid = uuid.UUID(rec["topic_id"])
            name = by_id.pop(tid, None)
            if name is not None:
                topics.pop(name, None)
                own_parts.pop(name, None)
        elif kind == "ProducerIdsRecord":
            next_pid = rec["next_producer_id"]
        elif kind == "AccessControlEntryRecord":
            acl_id = uuid.UUID(rec["id"])
            acls_removed.discard(acl_id)
            acls_added[acl_id] = AclBinding.from_record(rec)
        elif kind == "RemoveAccessControlEntryRecord":
            acl_id = uuid.UUID(rec["id"])
            acls_added.pop(acl_id, None)
            acls_removed.add(acl_id)
        elif kind == "UserScramCredentialRecord":
            if scram is None:
                scram = dict(image.scram_credentials)
            scram[(rec["name"], rec["mechanism"])] = ScramCredential(
                base64.b64decode(rec["salt"]), base64.b64decode(rec["stored_key"]),
                base64.b64decode(rec["server_key"]), rec["iterations"])
        elif kind == "RemoveUserScramCredentialRecord":
            if scram is None:
                scram = dict(image.scram_credentials)
            scram.pop((rec["name"], rec["mechanism"]), None)
        elif kind == "ClientQuotaRecord":
            if quotas is None:
                quotas = dict(image.client_quotas)
            entity = tuple(sorted((e["entity_type"], e["entity_name"]) for e in rec["entity"]))
            values = dict(quotas.get(entity, {}))
            if rec.get("remove"):
                values.pop(rec["key"], None)
            else:
                values[rec["key"]] = rec["value"]
            if values:
                quotas[entity] = MappingProxyType(values)
            else:
                quotas.pop(entity, None)
        else:
            raise ValueError(f"unknown metadata record type {kind!r}")
    return MetadataImage(cluster_id, image.controller_id, MappingProxyType(brokers),
                         MappingProxyType(topics), MappingProxyType(by_id), offset, next_pid,
                         broker_configs=MappingProxyType(broker_configs),
                         acls=image.acls.changed(acls_added, acls_removed)
                         if acls_added or acls_removed else image.acls,
                         scram_credentials=image.scram_credentials if scram is None
                         else MappingProxyType(scram),
                         client_quotas=image.client_quotas if quotas is None
                         else MappingProxyType(quotas))


def scram_record(user: str, mechanism: str, c: ScramCredential) -> dict:
    """Kafka's UserScramCredentialRecord, with the byte fields in base64 (the records
    are JSON)."""
    return {"type": "UserScramCredentialRecord", "name": user, "mechanism": mechanism,
            "salt": base64.b64encode(c.salt).decode(),
            "stored_key": base64.b64encode(c.stored_key).decode(),
            "server_key": base64.b64encode(c.server_key).decode(),
            "iterations": c.iterations}


def quota_record(entity, key: str, value: float | None) -> dict:
    """Kafka's ClientQuotaRecord: the entity's (type, name or null) pairs, the key, and
    the value, or remove: true (value None)."""
    return {"type": "ClientQuotaRecord",
            "entity": [{"entity_type": t, "entity_name": n} for t, n in entity],
            "key": key, "value": 0.0 if value is None else value, "remove": value is None}
