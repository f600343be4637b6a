"""__consumer_offsets record codecs (byte-exact vectors, every readable version, hostile
bytes), the consumer-protocol subscription decoder, and offsets_partition_for against
Java's String.hashCode / Kafka's Utils.abs."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkette.coordinator import CoordinatorRecordError, offsets_partition_for
from kafkette.coordinator.consumer_protocol import (
    decode_subscription_topics, encode_subscription)
from kafkette.coordinator.offsets_store import (
    GroupMetadataKey, GroupMetadataValue, MemberMetadataValue, MemoryOffsetStore,
    OffsetCommitKey, OffsetCommitValue, UnknownKey, decode_group_metadata_value, decode_key,
    decode_offset_commit_value, encode_group_metadata_key, encode_group_metadata_value,
    encode_offset_commit_key, encode_offset_commit_value)
from kafkette.coordinator.partitioning import java_string_hash, kafka_abs
from kafkette.errors import ErrorCode, KafkaError


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def s(v):
    raw = v.encode()
    return i16(len(raw)) + raw


def b(v):
    return i32(len(v)) + v


def cs(v):  # compact string (flexible versions), lengths < 127
    raw = v.encode()
    return bytes([len(raw) + 1]) + raw


NULL = i16(-1)


# ------------------------------------------------------------------ keys

def test_offset_commit_key_bytes():
    key = encode_offset_commit_key("my-group", "orders", 3)
    assert key == i16(1) + s("my-group") + s("orders") + i32(3)
    assert decode_key(key) == OffsetCommitKey("my-group", "orders", 3, 1)


def test_legacy_offset_commit_key_v0_decodes():
    assert decode_key(i16(0) + s("g") + s("t") + i32(0)) == OffsetCommitKey("g", "t", 0, 0)


def test_group_metadata_key_bytes():
    key = encode_group_metadata_key("my-group")
    assert key == i16(2) + s("my-group")
    assert decode_key(key) == GroupMetadataKey("my-group")


def test_unknown_key_versions_are_reported_not_raised():
    # KIP-848 consumer-group records use key versions 3+.
    assert decode_key(i16(3) + s("g")) == UnknownKey(3)


# ------------------------------------------------------------------ offset commit values

def test_offset_commit_value_v3_bytes():
    value = encode_offset_commit_value(OffsetCommitValue(42, 7, "meta", 1_700_000_000_123))
    assert value == i16(3) + i64(42) + i32(7) + s("meta") + i64(1_700_000_000_123)
    assert decode_offset_commit_value(value) == OffsetCommitValue(42, 7, "meta",
                                                                  1_700_000_000_123, -1, 3)


def test_offset_commit_value_with_expire_timestamp_is_written_as_v1():
    value = encode_offset_commit_value(OffsetCommitValue(5, 9, "", 1000, expire_timestamp=2000))
    assert value == i16(1) + i64(5) + s("") + i64(1000) + i64(2000)
    # v1 has no leader epoch
    assert decode_offset_commit_value(value) == OffsetCommitValue(5, -1, "", 1000, 2000, 1)


@pytest.mark.parametrize("version", [0, 2])
def test_offset_commit_value_v0_v2_decode(version):
    raw = i16(version) + i64(11) + s("m") + i64(123)
    assert decode_offset_commit_value(raw) == OffsetCommitValue(11, -1, "m", 123, -1, version)


def test_offset_commit_value_v4_flexible_decodes():
    # a tagged field (tag 0, 2 bytes) that a v4 reader must skip
    raw = i16(4) + i64(11) + i32(2) + cs("m") + i64(123) + bytes([1, 0, 2, 0xAB, 0xCD])
    assert decode_offset_commit_value(raw) == OffsetCommitValue(11, 2, "m", 123, -1, 4)


def test_offset_commit_tombstone():
    assert decode_offset_commit_value(None) is None


# ------------------------------------------------------------------ group metadata values

MEMBER = MemberMetadataValue("m-1", "i-1", "client", "/10.0.0.1", 300000, 45000,
                             b"sub", b"assign")


def test_group_metadata_value_v3_bytes():
    value = GroupMetadataValue("consumer", 4, "range", "m-1", 1_700_000_000_000, (MEMBER,))
    raw = encode_group_metadata_value(value)
    assert raw == (i16(3) + s("consumer") + i32(4) + s("range") + s("m-1")
                   + i64(1_700_000_000_000) + i32(1)
                   + s("m-1") + s("i-1") + s("client") + s("/10.0.0.1") + i32(300000)
                   + i32(45000) + b(b"sub") + b(b"assign"))
    assert decode_group_metadata_value(raw) == value


def test_empty_group_metadata_value_has_null_protocol_and_leader():
    raw = encode_group_metadata_value(GroupMetadataValue("consumer", 5, None, None, 77, ()))
    assert raw == i16(3) + s("consumer") + i32(5) + NULL + NULL + i64(77) + i32(0)
    assert decode_group_metadata_value(raw) == GroupMetadataValue("consumer", 5, None, None, 77,
                                                                  ())


def test_group_metadata_value_v0_decodes():
    raw = (i16(0) + s("consumer") + i32(1) + s("range") + s("m") + i32(1)
           + s("m") + s("c") + s("h") + i32(10000) + b(b"S") + b(b"A"))
    v = decode_group_metadata_value(raw)
    assert v.members == (MemberMetadataValue("m", None, "c", "h", 10000, 10000, b"S", b"A"),)
    assert v.current_state_timestamp == -1 and v.version == 0


def test_group_metadata_value_v1_v2_decode():
    member_v1 = s("m") + s("c") + s("h") + i32(60000) + i32(10000) + b(b"S") + b(b"A")
    v1 = decode_group_metadata_value(i16(1) + s("consumer") + i32(2) + s("range") + s("m")
                                     + i32(1) + member_v1)
    assert v1.members[0] == MemberMetadataValue("m", None, "c", "h", 60000, 10000, b"S", b"A")
    v2 = decode_group_metadata_value(i16(2) + s("consumer") + i32(2) + s("range") + s("m")
                                     + i64(99) + i32(1) + member_v1)
    assert v2.current_state_timestamp == 99 and v2.members == v1.members


def test_group_metadata_value_v4_flexible_decodes():
    member = (cs("m") + bytes([0]) + cs("c") + cs("h") + i32(60000) + i32(10000)
              + bytes([2]) + b"S" + bytes([2]) + b"A" + bytes([0]))
    raw = (i16(4) + cs("consumer") + i32(3) + cs("range") + bytes([0]) + i64(5)
           + bytes([2]) + member + bytes([0]))
    v = decode_group_metadata_value(raw)
    assert (v.protocol_type, v.generation, v.protocol, v.leader, v.current_state_timestamp) == \
        ("consumer", 3, "range", None, 5)
    assert v.members == (MemberMetadataValue("m", None, "c", "h", 60000, 10000, b"S", b"A"),)


def test_group_metadata_tombstone():
    assert decode_group_metadata_value(None) is None


# ------------------------------------------------------------------ garbage

GARBAGE_VALUES = [
    b"",                                       # no version
    b"\x00",                                   # half a version
    i16(3) + i64(1),                           # truncated v3
    i16(9) + i64(1) + s("") + i64(0),          # unknown version
    i16(3) + i64(1) + i32(0) + i16(-5) + i64(0),   # negative string length
    i16(3) + i64(1) + i32(0) + i16(30000) + b"x",  # string longer than the record
    i16(3) + i64(1) + i32(0) + i16(2) + b"\xff\xfe" + i64(0),  # not UTF-8
]


@pytest.mark.parametrize("raw", GARBAGE_VALUES)
def test_garbage_offset_commit_values_raise(raw):
    with pytest.raises(CoordinatorRecordError):
        decode_offset_commit_value(raw)


@pytest.mark.parametrize("raw", [
    b"",
    i16(3) + s("consumer"),                                        # truncated
    i16(7) + s("consumer"),                                        # unknown version
    i16(-1),                                                       # negative version
    i16(3) + s("consumer") + i32(1) + NULL + NULL + i64(0) + i32(2_000_000_000),  # huge count
    i16(3) + s("consumer") + i32(1) + NULL + NULL + i64(0) + i32(-1),
    i16(3) + s("consumer") + i32(1) + NULL + NULL + i64(0) + i32(1) + s("m") + NULL + s("c")
    + s("h") + i32(1) + i32(1) + i32(100) + b"short",              # bytes past the end
    i16(4) + bytes([0xFF] * 6),                                    # varint too long
])
def test_garbage_group_metadata_values_raise(raw):
    with pytest.raises(CoordinatorRecordError):
        decode_group_metadata_value(raw)


@pytest.mark.parametrize("raw", [b"", b"\x00", i16(1) + s("g"), i16(2) + i16(5) + b"ab",
                                 i16(-3) + s("g")])
def test_garbage_keys_raise(raw):
    with pytest.raises(CoordinatorRecordError):
        decode_key(raw)


def test_record_errors_are_kafka_errors_with_corrupt_message():
    with pytest.raises(KafkaError) as e:
        decode_key(b"")
    assert e.value.code == ErrorCode.CORRUPT_MESSAGE
    assert isinstance(e.value, ValueError)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_cleanly(raw):
    for decoder in (decode_key, decode_offset_commit_value, decode_group_metadata_value,
                    decode_subscription_topics):
        try:
            decoder(raw)
        except CoordinatorRecordError:
            pass


# ------------------------------------------------------------------ round trips

text = st.text(max_size=30)
i32s = st.integers(-(2**31), 2**31 - 1)
i64s = st.integers(-(2**63), 2**63 - 1)


@given(text, text, i32s)
def test_offset_commit_key_round_trip(group, topic, partition):
    assert decode_key(encode_offset_commit_key(group, topic, partition)) == \
        OffsetCommitKey(group, topic, partition)


@given(i64s, i32s, text, i64s)
def test_offset_commit_value_round_trip(offset, epoch, metadata, ts):
    v = OffsetCommitValue(offset, epoch, metadata, ts)
    assert decode_offset_commit_value(encode_offset_commit_value(v)) == v


members = st.builds(MemberMetadataValue, text, st.none() | text, text, text, i32s, i32s,
                    st.binary(max_size=40), st.binary(max_size=40))


@given(text, i32s, st.none() | text, st.none() | text, i64s,
       st.lists(members, max_size=5).map(tuple))
def test_group_metadata_value_round_trip(ptype, gen, protocol, leader, ts, ms):
    v = GroupMetadataValue(ptype, gen, protocol, leader, ts, ms)
    assert decode_group_metadata_value(encode_group_metadata_value(v)) == v


def test_memory_store_compaction_keeps_last_value_per_key():
    store = MemoryOffsetStore()
    k1, k2 = encode_offset_commit_key("g", "t", 0), encode_group_metadata_key("g")
    store.append("g", [(k1, b"v1"), (k2, b"x")])
    store.append("g", [(k1, b"v2")])
    store.append("g", [(k2, None)])
    assert store.compacted() == [(k1, b"v2"), (k2, None)]
    store.fail_with = KafkaError(code=ErrorCode.NOT_ENOUGH_REPLICAS)
    with pytest.raises(KafkaError):
        store.append("g", [(k1, b"v3")])
    assert len(store.log) == 4


# ------------------------------------------------------------------ consumer protocol

@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_subscription_topics_decode_in_every_version(version):
    raw = encode_subscription(["a", "bb", "ünïcode"], b"ud", version)
    assert decode_subscription_topics(raw) == ["a", "bb", "ünïcode"]


def test_subscription_decoder_rejects_garbage():
    for raw in (b"", i16(0) + i32(5) + s("a"), i16(-1) + i32(0), i16(0) + i32(-1),
                i16(0) + i32(1_000_000_000)):
        with pytest.raises(CoordinatorRecordError):
            decode_subscription_topics(raw)


# ------------------------------------------------------------------ offsets_partition_for

def java_hash_reference(s: str) -> int:
    """Independent reference: sum of c_i * 31^(n-1-i) over UTF-16 code units, reduced to
    a signed 32-bit int (Java's definition in String.hashCode's javadoc)."""
    units = []
    for ch in s:
        cp = ord(ch)
        if cp >= 0x10000:
            cp -= 0x10000
            units += [0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)]
        else:
            units.append(cp)
    n = len(units)
    total = sum(u * pow(31, n - 1 - i) for i, u in enumerate(units)) % 2**32
    return total - 2**32 if total >= 2**31 else total


@pytest.mark.parametrize("s, expected", [
    ("", 0),
    ("a", 97),
    ("ab", 97 * 31 + 98),
    ("Aa", 2112), ("BB", 2112),                 # the classic collision
    ("hello", 99162322),
    ("polygenelubricants", -(2**31)),           # hashes to Integer.MIN_VALUE
    ("\U0001F600", 0xD83D * 31 + 0xDE00),       # a surrogate pair counts as two units
])
def test_java_string_hash_known_values(s, expected):
    assert java_string_hash(s) == expected
    assert java_hash_reference(s) == expected


@given(st.text(max_size=60))
def test_java_string_hash_matches_reference(s):
    assert java_string_hash(s) == java_hash_reference(s)


def test_offsets_partition_for_uses_kafkas_abs():
    # Utils.abs(Integer.MIN_VALUE) == 0, not MIN_VALUE and not an exception.
    assert kafka_abs(-(2**31)) == 0
    assert offsets_partition_for("polygenelubricants", 50) == 0
    assert offsets_partition_for("", 50) == 0
    assert offsets_partition_for("a", 50) == 97 % 50
    # Utils.abs is |h|, not h & 0x7fffffff (they differ for negative hashes).
    negatives = [g for g in (f"group-{i}" for i in range(200)) if java_hash_reference(g) < 0]
    assert negatives
    for g in negatives:
        h = java_hash_reference(g)
        assert offsets_partition_for(g, 50) == (-h) % 50
    assert any(offsets_partition_for(g, 50) != (java_hash_reference(g) & 0x7FFFFFFF) % 50
               for g in negatives)
    with pytest.raises(ValueError):
        offsets_partition_for("g", 0)


def test_replay_keeps_the_last_record_per_key_and_honours_tombstones():
    from kafkette.coordinator.offsets_store import (
        GroupMetadataValue, OffsetCommitValue, encode_group_metadata_key,
        encode_group_metadata_value, encode_offset_commit_key, encode_offset_commit_value,
        replay)
    k = encode_offset_commit_key("g", "t", 0)
    records = [
        (k, encode_offset_commit_value(OffsetCommitValue(1, -1, "", 10))),
        (encode_offset_commit_key("g", "t", 1), encode_offset_commit_value(
            OffsetCommitValue(5, -1, "", 10))),
        (k, encode_offset_commit_value(OffsetCommitValue(2, 3, "m", 20))),
        (encode_offset_commit_key("g", "t", 1), None),                 # deleted
        (encode_group_metadata_key("h"), encode_group_metadata_value(GroupMetadataValue(
            protocol_type="consumer", generation=4, protocol=None, leader=None,
            current_state_timestamp=30, members=[]))),
        (b"\x00\x09\x00\x01g", b""),                                    # key version 9
    ]
    out = replay(records)
    assert {g: {tp: (v.offset, v.leader_epoch, v.metadata) for tp, v in o.items()}
            for g, o in out.offsets.items()} == {"g": {("t", 0): (2, 3, "m")}}
    assert out.metadata["h"].generation == 4 and out.unknown_keys == [9]
    corrupt = records + [(k, b"\x00\x03\x00")]
    with pytest.raises(CoordinatorRecordError):
        replay(corrupt)
    seen = []
    assert replay(corrupt, strict=False, on_corrupt=seen.append).offsets == out.offsets
    assert len(seen) == 1
