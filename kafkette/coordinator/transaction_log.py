"""Transaction metadata as records of `__transaction_state`.

The transaction coordinator persists one record per state change of a transactional
id to partition `partition_for(transactional_id)` of the compacted topic
`__transaction_state`; the last record per key is the id's current metadata, and a
null value (a tombstone) means the id expired. Keys and values use Apache Kafka's
byte layout (TransactionLogKey.json / TransactionLogValue.json), so a log copied from
a Kafka cluster loads here and Kafka's tools (kafka-dump-log's transaction decoder)
read ours. Big-endian; every key and value starts with an int16 version.

TransactionLogKey
  v0  transactional_id string (int16 length + UTF-8)

TransactionLogValue (null = tombstone)
  v0  producer_id int64, producer_epoch int16, transaction_timeout_ms int32,
      transaction_status int8 (TxnState id), transaction_partitions nullable
      [topic string, partition_ids [int32]], last_update_timestamp_ms int64,
      start_timestamp_ms int64
  v1  the same fields as a flexible version (KIP-482: compact strings and arrays,
      an empty tagged-field section after each struct), plus tagged fields added by
      KIP-890 part 2 for the epoch bump on every commit/abort:
        tag 0  previous_producer_id int64        (default -1)
        tag 1  next_producer_id int64            (default -1)
        tag 2  client_transaction_version int16  (default 0)
      A tagged field equal to its default is not written, as Kafka's generated
      writers do.

Kafka writes v0 until the cluster's `transaction.version` feature is at least 1 and
v1 after; kafkette always writes v1 (a Kafka 4.x cluster with TV2 enabled does the
same), and reads both. Kafka writes a null partition array in the Empty state (the
set must be empty there) and ignores the array of an Empty record on read; so do we.
Unknown tags are skipped, as the generated readers skip them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable

from kafkette.coordinator.wire import CoordinatorRecordError, Reader, Writer
from kafkette.errors import ProtocolError

__all__ = [
    "TxnState", "TxnLogValue", "TXN_LOG_KEY_VERSION", "TXN_LOG_VALUE_VERSION",
    "encode_txn_key", "decode_txn_key", "encode_txn_value", "decode_txn_value",
    "NO_PRODUCER_ID", "NO_PRODUCER_EPOCH",
]

TXN_LOG_KEY_VERSION = 0
TXN_LOG_VALUE_VERSION = 1  # what kafkette writes

NO_PRODUCER_ID = -1       # RecordBatch.NO_PRODUCER_ID
NO_PRODUCER_EPOCH = -1    # RecordBatch.NO_PRODUCER_EPOCH

_TAG_PREVIOUS_PRODUCER_ID = 0
_TAG_NEXT_PRODUCER_ID = 1
_TAG_CLIENT_TRANSACTION_VERSION = 2


class TxnState(enum.IntEnum):
    """Kafka's TransactionState; the value is the id in the record's status byte and
    `kafka_name` is the spelling of DescribeTransactions / ListTransactions."""
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        return _NAMES[self]

    @classmethod
    def from_name(cls, name: str) -> "TxnState | None":
        return _BY_NAME.get(name)

    def __str__(self) -> str:
        return self.kafka_name


_NAMES = {
    TxnState.EMPTY: "Empty", TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit", TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit", TxnState.COMPLETE_ABORT: "CompleteAbort",
    TxnState.DEAD: "Dead", TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
_BY_NAME = {name: state for state, name in _NAMES.items()}


@dataclass(frozen=True)
class TxnLogValue:
    """One TransactionLogValue. `partitions` are (topic, partition) pairs; they are
    written grouped by topic, topics in order of first appearance."""
    producer_id: int
    producer_epoch: int
    transaction_timeout_ms: int
    state: TxnState
    partitions: tuple[tuple[str, int], ...] = ()
    last_update_timestamp_ms: int = -1
    start_timestamp_ms: int = -1
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    client_transaction_version: int = 0
    version: int = TXN_LOG_VALUE_VERSION


# ---------------------------------------------------------------- readers and writers

class _Reader(Reader):
    """wire.Reader plus what TransactionLogValue needs: int8, nullable arrays and
    tagged fields read by tag."""
    __slots__ = ()

    def int8(self) -> int:
        return self._read(self._r.int8)

    def nullable_array_count(self, min_element_size: int, compact: bool) -> int:
        n = self._read(self._r.array_len, compact, True)
        return -1 if n < 0 else self._fitting(n, min_element_size)

    def tagged_fields(self) -> Iterable[tuple[int, "_Reader"]]:
        try:
            fields = list(self._r.tagged_fields())
        except ProtocolError as e:
            raise CoordinatorRecordError(f"{self.what}: {e}") from None
        for tag, sub in fields:
            r = _Reader(b"", self.what)
            r._r = sub
            yield tag, r


class _Writer(Writer):
    __slots__ = ()

    def int8(self, v: int) -> "_Writer":
        self._w.int8(v)
        return self

    def uvarint(self, v: int) -> "_Writer":
        self._w.uvarint(v)
        return self

    def compact_string(self, s: str) -> "_Writer":
        self._w.string(s, True)
        return self

    def raw(self, data: bytes) -> "_Writer":
        self._w.raw(data)
        return self


# ---------------------------------------------------------------- key

def encode_txn_key(transactional_id: str) -> bytes:
    return _Writer().int16(TXN_LOG_KEY_VERSION).string(transactional_id).getvalue()


def decode_txn_key(data: bytes) -> str:
    """The transactional id of a key. A key version other than 0 raises
    CoordinatorRecordError (Kafka's loader logs and skips such keys; the caller decides
    whether to skip)."""
    r = _Reader(data, "TransactionLogKey")
    version = r.int16()
    if version != TXN_LOG_KEY_VERSION:
        raise CoordinatorRecordError(f"TransactionLogKey: unknown version {version}")
    return r.string()


# ---------------------------------------------------------------- value

def _grouped(partitions: Iterable[tuple[str, int]]) -> list[tuple[str, list[int]]]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    return list(by_topic.items())


def encode_txn_value(value: TxnLogValue) -> bytes:
    if value.version not in (0, 1):
        raise ValueError(f"TransactionLogValue has versions 0 and 1, not {value.version}")
    if value.state == TxnState.EMPTY and value.partitions:
        # Kafka refuses the same (TransactionLog.valueToBytes): Empty has no partitions.
        raise ValueError("an Empty transaction has no partitions")
    flexible = value.version >= 1
    w = _Writer().int16(value.version)
    w.int64(value.producer_id).int16(value.producer_epoch)
    w.int32(value.transaction_timeout_ms).int8(int(value.state))
    groups = None if value.state == TxnState.EMPTY else _grouped(value.partitions)
    if groups is None:  # a null array
        if flexible:
            w.uvarint(0)
        else:
            w.int32(-1)
    else:
        if flexible:
            w.uvarint(len(groups) + 1)
        else:
            w.int32(len(groups))
        for topic, ids in groups:
            if flexible:
                w.compact_string(topic).uvarint(len(ids) + 1)
            else:
                w.string(topic).int32(len(ids))
            for partition in ids:
                w.int32(partition)
            if flexible:
                w.uvarint(0)  # the struct's tagged fields
    w.int64(value.last_update_timestamp_ms).int64(value.start_timestamp_ms)
    if flexible:
        tagged: list[tuple[int, bytes]] = []
        if value.previous_producer_id != NO_PRODUCER_ID:
            tagged.append((_TAG_PREVIOUS_PRODUCER_ID,
                           _Writer().int64(value.previous_producer_id).getvalue()))
        if value.next_producer_id != NO_PRODUCER_ID:
            tagged.append((_TAG_NEXT_PRODUCER_ID,
                           _Writer().int64(value.next_producer_id).getvalue()))
        if value.client_transaction_version != 0:
            tagged.append((_TAG_CLIENT_TRANSACTION_VERSION,
                           _Writer().int16(value.client_transaction_version).getvalue()))
        w.uvarint(len(tagged))
        for tag, data in tagged:
            w.uvarint(tag).uvarint(len(data)).raw(data)
    return w.getvalue()


def decode_txn_value(data: bytes | None) -> TxnLogValue | None:
    """None for a tombstone. Raises CoordinatorRecordError for a truncated value, an
    unknown version or an unknown state id (Kafka throws IllegalStateException for
    both of the latter)."""
    if data is None:
        return None
    r = _Reader(data, "TransactionLogValue")
    version = r.int16()
    if version not in (0, 1):
        raise CoordinatorRecordError(f"TransactionLogValue: unknown version {version}")
    flexible = version == 1
    producer_id, epoch, timeout_ms = r.int64(), r.int16(), r.int32()
    state_id = r.int8()
    try:
        state = TxnState(state_id)
    except ValueError:
        raise CoordinatorRecordError(
            f"TransactionLogValue: unknown transaction state id {state_id}") from None
    partitions: list[tuple[str, int]] = []
    # Smallest topic entry: v0 int16 length + int32 count; v1 two varints + tags.
    n_topics = r.nullable_array_count(3 if flexible else 6, flexible)
    for _ in range(max(0, n_topics)):
        topic = r.compact_string() if flexible else r.string()
        n = (r.compact_array_count(4) if flexible else r.array_count(4))
        ids = [r.int32() for _ in range(n)]
        if flexible:
            r.skip_tagged_fields()
        partitions.extend((topic, p) for p in ids)
    last_update, start = r.int64(), r.int64()
    previous_pid = next_pid = NO_PRODUCER_ID
    client_tv = 0
    if flexible:
        for tag, sub in r.tagged_fields():
            if tag == _TAG_PREVIOUS_PRODUCER_ID:
                previous_pid = sub.int64()
            elif tag == _TAG_NEXT_PRODUCER_ID:
                next_pid = sub.int64()
            elif tag == _TAG_CLIENT_TRANSACTION_VERSION:
                client_tv = sub.int16()
    if state == TxnState.EMPTY:
        partitions = []  # Kafka ignores the array of an Empty record
    return TxnLogValue(producer_id, epoch, timeout_ms, state, tuple(partitions), last_update,
                       start, previous_pid, next_pid, client_tv, version)
