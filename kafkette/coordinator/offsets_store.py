"""Committed offsets and group metadata as records of `__consumer_offsets`.

The coordinator persists through an `OffsetStore`: a list of (key, value) records for
one group, appended to partition `offsets_partition_for(group)` of the compacted
topic `__consumer_offsets`. The broker implements `append` by building a batch and
appending it (and, with replication, waiting for the ISR); a failure raises
`KafkaError`, and the coordinator then answers with that error and leaves its memory
as it was. On start the broker reads the partition back and feeds the records, in
log order, to `GroupCoordinator.load`.

Keys and values use Apache Kafka's byte layout, so tools that read the topic
(kafka-console-consumer's offsets formatter, kcat with a decoder) see what they
expect. Big-endian; a string is an int16 length and UTF-8 (a null string has length
-1); bytes are an int32 length; an array is an int32 count. Each key and value starts
with an int16 version; the key version says what the record is:

  key v0, v1  offset commit    group, topic, int32 partition
  key v2      group metadata   group
  key v3+     KIP-848 consumer-group records: skipped on load (as Kafka skips keys it
              does not know), never written by kafkette.

OffsetCommitValue (a null value is a tombstone: the offset was deleted or expired):
  v0  offset int64, metadata string, commit_timestamp int64
  v1  offset, metadata, commit_timestamp, expire_timestamp int64 (per-partition
      retention, OffsetCommit v2-v4 `retention_time_ms`)
  v2  offset, metadata, commit_timestamp
  v3  offset, leader_epoch int32, metadata, commit_timestamp     <- written
  v4  v3 as a flexible version (compact strings, tagged fields); read only

GroupMetadataValue (a null value: the group was deleted):
  v0  protocol_type string, generation int32, protocol nullable string,
      leader nullable string, members [member_id, client_id, client_host,
      session_timeout int32, subscription bytes, assignment bytes]
  v1  members gain rebalance_timeout int32 (before session_timeout)
  v2  current_state_timestamp int64 after leader
  v3  members gain group_instance_id nullable string after member_id   <- written
  v4  v3 as a flexible version; read only

kafkette writes OffsetCommitValue v3 (v1 when the commit carries an explicit expire
timestamp, as Kafka does) and GroupMetadataValue v3, the versions Kafka 2.3+ writes.
Values are decoded without insisting on consuming every byte, as Kafka's readers do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from kafkette.coordinator.wire import CoordinatorRecordError, Reader, Writer
from kafkette.errors import KafkaError

__all__ = [
    "CoordinatorRecordError", "OffsetCommitKey", "GroupMetadataKey", "UnknownKey",
    "OffsetCommitValue", "MemberMetadataValue", "GroupMetadataValue",
    "encode_offset_commit_key", "encode_offset_commit_value", "encode_group_metadata_key",
    "encode_group_metadata_value", "decode_key", "decode_offset_commit_value",
    "decode_group_metadata_value", "OffsetStore", "MemoryOffsetStore",
    "OFFSET_COMMIT_KEY_VERSION", "GROUP_METADATA_KEY_VERSION",
]

LEGACY_OFFSET_COMMIT_KEY_VERSION = 0
OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2

OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_VALUE_VERSION = 3

NO_LEADER_EPOCH = -1
NO_TIMESTAMP = -1


# ---------------------------------------------------------------- keys

@dataclass(frozen=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int
    version: int = OFFSET_COMMIT_KEY_VERSION


@dataclass(frozen=True)
class GroupMetadataKey:
    group: str
    version: int = GROUP_METADATA_KEY_VERSION


@dataclass(frozen=True)
class UnknownKey:
    """A key version kafkette does not read (KIP-848 consumer-group records, ...)."""
    version: int


def encode_offset_commit_key(group: str, topic: str, partition: int) -> bytes:
    return (Writer().int16(OFFSET_COMMIT_KEY_VERSION).string(group).string(topic)
            .int32(partition).getvalue())


def encode_group_metadata_key(group: str) -> bytes:
    return Writer().int16(GROUP_METADATA_KEY_VERSION).string(group).getvalue()


def decode_key(data: bytes) -> OffsetCommitKey | GroupMetadataKey | UnknownKey:
    r = Reader(data, "__consumer_offsets key")
    version = r.int16()
    if version in (LEGACY_OFFSET_COMMIT_KEY_VERSION, OFFSET_COMMIT_KEY_VERSION):
        return OffsetCommitKey(r.string(), r.string(), r.int32(), version)
    if version == GROUP_METADATA_KEY_VERSION:
        return GroupMetadataKey(r.string(), version)
    if version < 0:
        raise CoordinatorRecordError(f"__consumer_offsets key: negative version {version}")
    return UnknownKey(version)


# ---------------------------------------------------------------- offset commit values

@dataclass(frozen=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int = NO_LEADER_EPOCH
    metadata: str = ""
    commit_timestamp: int = NO_TIMESTAMP
    # Only value v1 carries it; -1 = none (the retention comes from the broker config).
    expire_timestamp: int = NO_TIMESTAMP
    version: int = OFFSET_COMMIT_VALUE_VERSION


def encode_offset_commit_value(value: OffsetCommitValue) -> bytes:
    """v3, or v1 when the value has an explicit expire timestamp (v1 is the only
    version that can hold one; Kafka picks v1 in the same case)."""
    w = Writer()
    if value.expire_timestamp != NO_TIMESTAMP:
        w.int16(1).int64(value.offset).string(value.metadata).int64(value.commit_timestamp)
        w.int64(value.expire_timestamp)
        return w.getvalue()
    w.int16(OFFSET_COMMIT_VALUE_VERSION).int64(value.offset).int32(value.leader_epoch)
    w.string(value.metadata).int64(value.commit_timestamp)
    return w.getvalue()


def decode_offset_commit_value(data: bytes | None) -> OffsetCommitValue | None:
    if data is None:
        return None
    r = Reader(data, "OffsetCommitValue")
    version = r.int16()
    if version in (0, 2):
        return OffsetCommitValue(r.int64(), NO_LEADER_EPOCH, r.string(), r.int64(),
                                 NO_TIMESTAMP, version)
    if version == 1:
        offset, metadata, commit_ts, expire_ts = r.int64(), r.string(), r.int64(), r.int64()
        return OffsetCommitValue(offset, NO_LEADER_EPOCH, metadata, commit_ts, expire_ts, 1)
    if version == 3:
        return OffsetCommitValue(r.int64(), r.int32(), r.string(), r.int64(),
                                 NO_TIMESTAMP, 3)
    if version == 4:
        offset, epoch, metadata, commit_ts = r.int64(), r.int32(), r.compact_string(), r.int64()
        r.skip_tagged_fields()
        return OffsetCommitValue(offset, epoch, metadata, commit_ts, NO_TIMESTAMP, 4)
    raise CoordinatorRecordError(f"OffsetCommitValue: unknown version {version}")


# ---------------------------------------------------------------- group metadata values

@dataclass(frozen=True)
class MemberMetadataValue:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = NO_TIMESTAMP
    members: tuple[MemberMetadataValue, ...] = field(default_factory=tuple)
    version: int = GROUP_METADATA_VALUE_VERSION


def encode_group_metadata_value(value: GroupMetadataValue) -> bytes:
    w = Writer().int16(GROUP_METADATA_VALUE_VERSION)
    w.string(value.protocol_type).int32(value.generation)
    w.nullable_string(value.protocol).nullable_string(value.leader)
    w.int64(value.current_state_timestamp)
    w.int32(len(value.members))
    for m in value.members:
        w.string(m.member_id).nullable_string(m.group_instance_id)
        w.string(m.client_id).string(m.client_host)
        w.int32(m.rebalance_timeout).int32(m.session_timeout)
        w.bytes_(m.subscription).bytes_(m.assignment)
    return w.getvalue()


# The smallest encoding of one member in any non-flexible version: three empty
# strings (2 bytes each), one int32 timeout, two empty byte arrays (4 bytes each).
_MIN_MEMBER_SIZE = 2 + 2 + 2 + 4 + 4 + 4


def decode_group_metadata_value(data: bytes | None) -> GroupMetadataValue | None:
    if data is None:
        return None
    r = Reader(data, "GroupMetadataValue")
    version = r.int16()
    if version < 0 or version > 4:
        raise CoordinatorRecordError(f"GroupMetadataValue: unknown version {version}")
    flexible = version >= 4
    string = r.compact_string if flexible else r.string
    nullable_string = r.compact_nullable_string if flexible else r.nullable_string
    bytes_ = r.compact_bytes if flexible else r.bytes_
    protocol_type = string()
    generation = r.int32()
    protocol = nullable_string()
    leader = nullable_string()
    state_ts = r.int64() if version >= 2 else NO_TIMESTAMP
    # Flexible members are smaller (1-byte lengths, a tagged-field count).
    count = (r.compact_array_count(1 + 1 + 1 + 4 + 4 + 1 + 1 + 1) if flexible
             else r.array_count(_MIN_MEMBER_SIZE))
    members = []
    for _ in range(count):
        member_id = string()
        instance_id = nullable_string() if version >= 3 else None
        client_id = string()
        client_host = string()
        if version >= 1:
            rebalance_timeout = r.int32()
            session_timeout = r.int32()
        else:
            # v0 has no rebalance timeout; Kafka uses the session timeout for it.
            session_timeout = rebalance_timeout = r.int32()
        subscription = bytes_()
        assignment = bytes_()
        if flexible:
            r.skip_tagged_fields()
        members.append(MemberMetadataValue(member_id, instance_id, client_id, client_host,
                                           rebalance_timeout, session_timeout,
                                           subscription, assignment))
    if flexible:
        r.skip_tagged_fields()
    return GroupMetadataValue(protocol_type, generation, protocol, leader, state_ts,
                              tuple(members), version)


# ---------------------------------------------------------------- the store

class OffsetStore(Protocol):
    def append(self, group_id: str, records: list[tuple[bytes, bytes | None]]) -> None:
        """Append (key, value) records (value None = tombstone) for `group_id`, all or
        nothing, to partition offsets_partition_for(group_id) of __consumer_offsets.
        Raises KafkaError on failure; returns once the records are durable as the
        broker defines it (acks=all on the offsets topic)."""
        ...


class MemoryOffsetStore:
    """An OffsetStore in a list, for tests. `fail_with` makes the next appends raise
    (set it back to None to heal); `records()` replays what was stored, in order, for
    `GroupCoordinator.load`."""

    def __init__(self):
        self.log: list[tuple[str, bytes, bytes | None]] = []
        self.fail_with: KafkaError | None = None
        self.appends = 0

    def append(self, group_id: str, records: list[tuple[bytes, bytes | None]]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.appends += 1
        for key, value in records:
            self.log.append((group_id, bytes(key), None if value is None else bytes(value)))

    def records(self) -> list[tuple[bytes, bytes | None]]:
        return [(k, v) for _, k, v in self.log]

    def compacted(self) -> list[tuple[bytes, bytes | None]]:
        """What compaction would keep: the last record per key, tombstones included,
        in the order of their last write."""
        last: dict[bytes, tuple[int, bytes | None]] = {}
        for i, (_, k, v) in enumerate(self.log):
            last[k] = (i, v)
        return [(k, v) for k, (_, v) in sorted(last.items(), key=lambda kv: kv[1][0])]

    def decoded(self) -> list[tuple[object, object]]:
        """(key, value) decoded, for assertions."""
        return [(key, value) for key, value, _ in iter_decoded(self.records())]


def iter_decoded(records: Iterable[tuple[bytes, bytes | None]]):
    """(key, value, error) per record: values decoded by their key's kind (None for a
    tombstone); unknown key versions come back as UnknownKey with the raw value; a
    record that cannot be decoded comes back as (None, None, the CoordinatorRecordError)."""
    for k, v in records:
        try:
            key = decode_key(k)
            if isinstance(key, OffsetCommitKey):
                yield key, decode_offset_commit_value(v), None
            elif isinstance(key, GroupMetadataKey):
                yield key, decode_group_metadata_value(v), None
            else:
                yield key, v, None
        except CoordinatorRecordError as e:
            yield None, None, e


@dataclass
class ReplayedGroups:
    """What `__consumer_offsets` records say, the last record per key winning and a
    tombstone deleting: committed offsets per group and (topic, partition), and each
    group's metadata (generation, protocol, members with their assignments)."""
    offsets: dict[str, dict[tuple[str, int], OffsetCommitValue]] = field(default_factory=dict)
    metadata: dict[str, GroupMetadataValue] = field(default_factory=dict)
    unknown_keys: list[int] = field(default_factory=list)   # key versions skipped


def replay(records: Iterable[tuple[bytes, bytes | None]], strict: bool = True,
           on_corrupt=None) -> ReplayedGroups:
    """Replay records in log order (a coordinator loading its partitions). An
    undecodable record raises CoordinatorRecordError when `strict`, else is passed to
    `on_corrupt(error)` and skipped."""
    out = ReplayedGroups()
    for key, value, error in iter_decoded(records):
        if error is not None:
            if strict:
                raise error
            if on_corrupt is not None:
                on_corrupt(error)
        elif isinstance(key, OffsetCommitKey):
            group_offsets = out.offsets.setdefault(key.group, {})
            if value is None:
                group_offsets.pop((key.topic, key.partition), None)
            else:
                group_offsets[(key.topic, key.partition)] = value
        elif isinstance(key, GroupMetadataKey):
            if value is None:
                out.metadata.pop(key.group, None)
            else:
                out.metadata[key.group] = value
        else:
            out.unknown_keys.append(key.version)
    return out
