"""__transaction_state record codecs: byte-exact vectors written by hand from Kafka's
TransactionLogKey.json / TransactionLogValue.json (v0 and the flexible v1 with its
KIP-890 tagged fields), round trips, and hostile bytes."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkette.coordinator import CoordinatorRecordError
from kafkette.coordinator.transaction_log import (
    TxnLogValue, TxnState, decode_txn_key, decode_txn_value, encode_txn_key, encode_txn_value)


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def s(v):
    raw = v.encode()
    return i16(len(raw)) + raw


def cs(v):  # compact string, length < 127
    raw = v.encode()
    return bytes([len(raw) + 1]) + raw


# ------------------------------------------------------------------ state ids

def test_state_ids_and_names_are_kafkas():
    assert [(int(st_), st_.kafka_name) for st_ in TxnState] == [
        (0, "Empty"), (1, "Ongoing"), (2, "PrepareCommit"), (3, "PrepareAbort"),
        (4, "CompleteCommit"), (5, "CompleteAbort"), (6, "Dead"), (7, "PrepareEpochFence")]
    assert TxnState.from_name("PrepareAbort") is TxnState.PREPARE_ABORT
    assert TxnState.from_name("prepareabort") is None


# ------------------------------------------------------------------ key

def test_key_bytes():
    key = encode_txn_key("my-txn")
    assert key == i16(0) + s("my-txn")
    assert decode_txn_key(key) == "my-txn"


def test_key_unknown_version_and_truncation():
    with pytest.raises(CoordinatorRecordError):
        decode_txn_key(i16(1) + s("x"))
    with pytest.raises(CoordinatorRecordError):
        decode_txn_key(i16(0) + i16(10) + b"abc")
    with pytest.raises(CoordinatorRecordError):
        decode_txn_key(b"\x00")


# ------------------------------------------------------------------ value v0

ONGOING_V0 = (i16(0) + i64(1000) + i16(2) + i32(60000) + i8(1)
              + i32(2) + s("orders") + i32(2) + i32(0) + i32(3)
              + s("pay") + i32(1) + i32(7)
              + i64(1700) + i64(1600))


def test_value_v0_ongoing_bytes():
    value = TxnLogValue(1000, 2, 60000, TxnState.ONGOING,
                        (("orders", 0), ("orders", 3), ("pay", 7)), 1700, 1600, version=0)
    assert encode_txn_value(value) == ONGOING_V0
    assert decode_txn_value(ONGOING_V0) == value


def test_value_v0_empty_writes_a_null_partition_array():
    value = TxnLogValue(5, 0, 1000, TxnState.EMPTY, (), 10, -1, version=0)
    raw = i16(0) + i64(5) + i16(0) + i32(1000) + i8(0) + i32(-1) + i64(10) + i64(-1)
    assert encode_txn_value(value) == raw
    assert decode_txn_value(raw) == value


def test_value_v0_ignores_extra_bytes_as_kafka_does():
    assert decode_txn_value(ONGOING_V0 + b"\x01\x02").producer_id == 1000


# ------------------------------------------------------------------ value v1 (flexible)

def test_value_v1_with_every_tagged_field():
    value = TxnLogValue(1000, 3, 60000, TxnState.PREPARE_COMMIT, (("orders", 0), ("orders", 3)),
                        1700, 1600, previous_producer_id=999, next_producer_id=2000,
                        client_transaction_version=2, version=1)
    raw = (i16(1) + i64(1000) + i16(3) + i32(60000) + i8(2)
           + bytes([2]) + cs("orders") + bytes([3]) + i32(0) + i32(3) + b"\x00"
           + i64(1700) + i64(1600)
           + bytes([3])                      # three tagged fields, ascending tags
           + bytes([0, 8]) + i64(999)        # PreviousProducerId
           + bytes([1, 8]) + i64(2000)       # NextProducerId
           + bytes([2, 2]) + i16(2))         # ClientTransactionVersion
    assert encode_txn_value(value) == raw
    assert decode_txn_value(raw) == value


def test_value_v1_defaults_are_not_written():
    value = TxnLogValue(7, 0, 100, TxnState.EMPTY, (), 5, -1, version=1)
    raw = i16(1) + i64(7) + i16(0) + i32(100) + i8(0) + b"\x00" + i64(5) + i64(-1) + b"\x00"
    assert encode_txn_value(value) == raw
    assert decode_txn_value(raw) == value


def test_value_v1_complete_with_no_partitions_is_an_empty_array():
    value = TxnLogValue(7, 1, 100, TxnState.COMPLETE_ABORT, (), 5, 4, version=1)
    raw = encode_txn_value(value)
    assert raw == (i16(1) + i64(7) + i16(1) + i32(100) + i8(5) + b"\x01" + i64(5) + i64(4)
                   + b"\x00")
    assert decode_txn_value(raw) == value


def test_value_v1_skips_unknown_tags():
    raw = (i16(1) + i64(7) + i16(0) + i32(100) + i8(0) + b"\x00" + i64(5) + i64(-1)
           + bytes([2]) + bytes([2, 2]) + i16(2) + bytes([9, 3]) + b"abc")
    assert decode_txn_value(raw).client_transaction_version == 2


def test_empty_record_partitions_are_ignored_on_read():
    raw = (i16(0) + i64(5) + i16(0) + i32(1000) + i8(0) + i32(1) + s("t") + i32(1) + i32(0)
           + i64(10) + i64(-1))
    assert decode_txn_value(raw).partitions == ()


def test_empty_with_partitions_cannot_be_written():
    with pytest.raises(ValueError):
        encode_txn_value(TxnLogValue(5, 0, 1000, TxnState.EMPTY, (("t", 0),), 10, -1))


def test_tombstone():
    assert decode_txn_value(None) is None


@pytest.mark.parametrize("raw", [
    i16(2) + ONGOING_V0[2:],                                   # unknown value version
    ONGOING_V0[:16] + i8(8) + ONGOING_V0[17:],                 # unknown state id
    ONGOING_V0[:-3],                                           # truncated
    ONGOING_V0[:17] + i32(0x7FFFFFFF) + ONGOING_V0[21:],       # hostile topic count
    i16(0) + i64(1) + i16(0) + i32(1) + i8(1) + i32(1) + s("t") + i32(1 << 28),  # ids count
    i16(1) + i64(1) + i16(0) + i32(1) + i8(1) + b"\xff\xff\xff\xff\x0f",          # varint count
    b"\x00",
])
def test_corrupt_values_raise(raw):
    with pytest.raises(CoordinatorRecordError):
        decode_txn_value(raw)


_states = st.sampled_from(list(TxnState))
_parts = st.lists(st.tuples(st.sampled_from(["a", "bb", "ccc"]), st.integers(0, 1000)),
                  max_size=6, unique=True)


@settings(max_examples=200, deadline=None)
@given(pid=st.integers(0, 2**63 - 1), epoch=st.integers(-1, 32767),
       timeout=st.integers(1, 2**31 - 1), state=_states, parts=_parts,
       ts=st.integers(-1, 2**62), prev=st.integers(-1, 2**62), nxt=st.integers(-1, 2**62), tv=st.integers(0, 2), version=st.sampled_from([0, 1]))
def test_round_trip(pid, epoch, timeout, state, parts, ts, prev, nxt, tv, version):
    # Grouped by topic, as the encoder writes them, so the order survives.
    parts = tuple(sorted(parts)) if state != TxnState.EMPTY else ()
    if version == 0:
        prev = nxt = -1
        tv = 0
    value = TxnLogValue(pid, epoch, timeout, state, parts, ts, ts - 1, prev, nxt, tv, version)
    assert decode_txn_value(encode_txn_value(value)) == value
