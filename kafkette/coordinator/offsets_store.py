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

Transactions (KIP-98): a TxnOffsetCommit's records are appended as a transactional
batch with the producer's id and epoch. Replaying the log, such records stay pending
per producer id until that producer's control batch in the same partition: a COMMIT
marker applies them (unless a plain commit of the same partition has a later record),
an ABORT drops them, and with no marker yet they are still pending after the load.
Load input therefore carries batch facts: `LoadedRecord` (key, value, log offset,
producer id, transactional) and `TxnMarker`; a bare (key, value) pair is a
non-transactional record at an unknown offset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Protocol

from kafkette.coordinator.wire import CoordinatorRecordError, Reader, Writer
from kafkette.errors import KafkaError

__all__ = [
    "CoordinatorRecordError", "OffsetCommitKey", "GroupMetadataKey", "UnknownKey",
    "OffsetCommitValue", "MemberMetadataValue", "GroupMetadataValue",
    "encode_offset_commit_key", "encode_offset_commit_value", "encode_group_metadata_key",
    "encode_group_metadata_value", "decode_key", "decode_offset_commit_value",
    "decode_group_metadata_value", "OffsetStore", "MemoryOffsetStore",
    "OFFSET_COMMIT_KEY_VERSION", "GROUP_METADATA_KEY_VERSION", "LoadedRecord", "TxnMarker",
    "NO_PRODUCER_ID",
]

LEGACY_OFFSET_COMMIT_KEY_VERSION = 0
OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2

OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_VALUE_VERSION = 3

NO_LEADER_EPOCH = -1
NO_TIMESTAMP = -1
NO_PRODUCER_ID = -1


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

class LoadedRecord(NamedTuple):
    """One record of `__consumer_offsets` as a coordinator replays it: the facts of
    its batch that decide what it means (a transactional batch's records are pending
    until their producer's marker)."""
    key: bytes
    value: bytes | None
    offset: int = -1                       # its log offset; -1 unknown
    producer_id: int = NO_PRODUCER_ID
    transactional: bool = False


class TxnMarker(NamedTuple):
    """A control batch: the COMMIT (commit=True) or ABORT marker of `producer_id`'s
    transaction in this partition."""
    producer_id: int
    commit: bool
    offset: int = -1


class OffsetStore(Protocol):
    def append(self, group_id: str, records: list[tuple[bytes, bytes | None]], *,
               producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1) -> int | None:
        """Append (key, value) records (value None = tombstone) for `group_id`, all or
        nothing, to partition offsets_partition_for(group_id) of __consumer_offsets.
        With a producer id: one transactional batch of that producer and epoch
        (TxnOffsetCommit). Returns the log offset of the first record (the others
        follow it), or None when the store does not know it. Raises KafkaError on
        failure; returns once the records are durable as the broker defines it
        (acks=all on the offsets topic). A store may also offer
        `partition_for(group_id) -> int`, which the coordinator uses to find the
        groups a transaction marker concerns."""
        ...


class MemoryOffsetStore:
    """An OffsetStore in a list, for tests. `fail_with` makes the next appends raise
    (set it back to None to heal); `records()` replays what was stored, in order, for
    `GroupCoordinator.load`, and `load_items()` the same with the batch facts
    (transactional records, markers written with `write_marker`). Log offsets are
    one counter over all partitions: increasing within each, as a log's are."""

    def __init__(self, num_partitions: int = 1):
        self.num_partitions = num_partitions
        self.log: list[tuple[str, bytes, bytes | None]] = []
        self.items: list[tuple[int, LoadedRecord | TxnMarker]] = []   # (partition, item)
        self.fail_with: KafkaError | None = None
        self.appends = 0
        self.next_offset = 0

    def partition_for(self, group_id: str) -> int:
        from kafkette.coordinator.partitioning import offsets_partition_for
        return offsets_partition_for(group_id, self.num_partitions)

    def append(self, group_id: str, records: list[tuple[bytes, bytes | None]], *,
               producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        self.appends += 1
        base = self.next_offset
        p = self.partition_for(group_id)
        for key, value in records:
            key, value = bytes(key), None if value is None else bytes(value)
            self.log.append((group_id, key, value))
            self.items.append((p, LoadedRecord(key, value, self.next_offset, producer_id,
                                               producer_id != NO_PRODUCER_ID)))
            self.next_offset += 1
        return base

    def write_marker(self, producer_id: int, commit: bool, partition: int = 0) -> int:
        """Append `producer_id`'s COMMIT or ABORT marker to `partition` (what the
        transaction coordinator's WriteTxnMarkers does); returns its offset."""
        offset = self.next_offset
        self.items.append((partition, TxnMarker(producer_id, commit, offset)))
        self.next_offset += 1
        return offset

    def load_items(self, partition: int | None = None) -> list[LoadedRecord | TxnMarker]:
        """What a coordinator loading `partition` (None: all) reads, in log order."""
        return [item for p, item in self.items if partition is None or p == partition]

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
    group's metadata (generation, protocol, members with their assignments).
    `record_offsets` has the log offset of each committed offset's record (-1 when
    the input did not say); `pending` the offsets of transactions with no marker yet,
    per producer id, group and partition, as (value, record offset)."""
    offsets: dict[str, dict[tuple[str, int], OffsetCommitValue]] = field(default_factory=dict)
    metadata: dict[str, GroupMetadataValue] = field(default_factory=dict)
    unknown_keys: list[int] = field(default_factory=list)   # key versions skipped
    record_offsets: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)
    pending: dict[int, dict[str, dict[tuple[str, int], tuple[OffsetCommitValue, int]]]] = \
        field(default_factory=dict)


def _as_loaded(item) -> LoadedRecord | TxnMarker:
    if isinstance(item, (LoadedRecord, TxnMarker)):
        return item
    key, value = item
    return LoadedRecord(key, value)


def replay(records: Iterable, strict: bool = True, on_corrupt=None) -> ReplayedGroups:
    """Replay records in log order (a coordinator loading its partitions): (key, value)
    pairs, LoadedRecord or TxnMarker items. An undecodable record raises
    CoordinatorRecordError when `strict`, else is passed to `on_corrupt(error)` and
    skipped.

    Transactions, as Kafka's coordinators load them: a transactional record is pending
    for its producer; a marker's COMMIT applies its producer's pending offsets where
    the committed one has an older record (or none), ABORT drops them. A plain
    tombstone deletes the committed offset and every pending one of its partition
    (the Java coordinator's replay; the Scala one left pending offsets in place)."""
    out = ReplayedGroups()
    for item in records:
        item = _as_loaded(item)
        if isinstance(item, TxnMarker):
            _replay_marker(out, item)
            continue
        try:
            key = decode_key(item.key)
            if isinstance(key, OffsetCommitKey):
                value = decode_offset_commit_value(item.value)
            elif isinstance(key, GroupMetadataKey):
                value = decode_group_metadata_value(item.value)
            else:
                value = item.value
        except CoordinatorRecordError as error:
            if strict:
                raise
            if on_corrupt is not None:
                on_corrupt(error)
            continue
        if isinstance(key, OffsetCommitKey):
            tp = (key.topic, key.partition)
            if value is None:
                out.offsets.get(key.group, {}).pop(tp, None)
                out.record_offsets.get(key.group, {}).pop(tp, None)
                for groups in out.pending.values():
                    groups.get(key.group, {}).pop(tp, None)
            elif item.transactional and item.producer_id != NO_PRODUCER_ID:
                out.pending.setdefault(item.producer_id, {}).setdefault(key.group, {})[tp] = \
                    (value, item.offset)
            else:
                out.offsets.setdefault(key.group, {})[tp] = value
                out.record_offsets.setdefault(key.group, {})[tp] = item.offset
        elif isinstance(key, GroupMetadataKey):
            if value is None:
                out.metadata.pop(key.group, None)
            else:
                out.metadata[key.group] = value
        else:
            out.unknown_keys.append(key.version)
    return out


def _replay_marker(out: ReplayedGroups, marker: TxnMarker) -> None:
    groups = out.pending.pop(marker.producer_id, None)
    if not groups or not marker.commit:
        return
    for group, offsets in groups.items():
        committed = out.offsets.setdefault(group, {})
        positions = out.record_offsets.setdefault(group, {})
        for tp, (value, position) in offsets.items():
            if tp not in committed or position > positions.get(tp, -1):
                committed[tp] = value
                positions[tp] = position
