"""Wire primitives: varints, bounded reads of hostile input, zero-copy output and the
header version rules."""
from __future__ import annotations

import struct
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkette.errors import ProtocolError
from kafkette.protocol.headers import (decode_request_header, encode_request_header,
                                       encode_response_header, peek_header,
                                       request_header_version, response_header_version)
from kafkette.protocol.messages import (API_MESSAGES, ApiVersionsRequest, FetchResponse,
                                        MetadataRequest, ProduceRequest)
from kafkette.protocol.primitives import Reader, Writer

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _w(fn, *args) -> bytes:
    w = Writer()
    fn(w, *args)
    return w.getvalue()


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _uvarint_ref(n: int) -> bytes:
    """Unsigned LEB128, written out from the definition."""
    out = []
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


# --------------------------------------------------------------------------- varints
@pytest.mark.parametrize("value,encoded", [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16383, "ff7f"),
    (16384, "808001"), (2**32 - 1, "ffffffff0f"), (2**64 - 1, "ffffffffffffffffff01"),
])
def test_uvarint_known_encodings(value, encoded):
    assert _w(Writer.uvarint, value).hex() == encoded
    r = Reader(bytes.fromhex(encoded))
    assert r.uvarint() == value
    assert r.remaining() == 0


@pytest.mark.parametrize("value,encoded", [
    (0, "00"), (-1, "01"), (1, "02"), (-2, "03"), (2, "04"), (63, "7e"), (-64, "7f"),
    (64, "8001"), (-65, "8101"),
    (INT32_MAX, "feffffff0f"), (INT32_MIN, "ffffffff0f"),
    (INT64_MAX, "feffffffffffffffff01"), (INT64_MIN, "ffffffffffffffffff01"),
])
def test_varint_zigzag_known_encodings(value, encoded):
    assert _w(Writer.varint, value).hex() == encoded
    assert _w(Writer.varlong, value).hex() == encoded
    assert Reader(bytes.fromhex(encoded)).varint() == value
    assert Reader(bytes.fromhex(encoded)).varlong() == value


@pytest.mark.parametrize("value", [0, -1, 1, INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1,
                                   INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1,
                                   2**31, -(2**31) - 1])
def test_varint_edges_round_trip(value):
    data = _w(Writer.varlong, value)
    assert data == _uvarint_ref(_zigzag(value))
    r = Reader(data)
    assert r.varlong() == value and r.remaining() == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(INT64_MIN, INT64_MAX))
def test_varint_round_trip_property(value):
    data = _w(Writer.varint, value)
    assert data == _uvarint_ref(_zigzag(value))
    assert Reader(data).varint() == value


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_uvarint_round_trip_property(value):
    data = _w(Writer.uvarint, value)
    assert data == _uvarint_ref(value)
    assert Reader(data).uvarint() == value


def test_uvarint_rejects_negative():
    with pytest.raises(ValueError):
        _w(Writer.uvarint, -1)
    with pytest.raises(ValueError):
        _w(Writer.uvarint, -300)


@pytest.mark.parametrize("data", ["", "80", "ff", "8080", "ffffffff"])
def test_truncated_varint(data):
    with pytest.raises(ProtocolError):
        Reader(bytes.fromhex(data)).uvarint()
    with pytest.raises(ProtocolError):
        Reader(bytes.fromhex(data)).varint()


def test_overlong_varint():
    with pytest.raises(ProtocolError):
        Reader(b"\x80" * 11 + b"\x00").uvarint()


# --------------------------------------------------------------------------- fixed width
@pytest.mark.parametrize("method,size", [("int8", 1), ("int16", 2), ("uint16", 2),
                                         ("int32", 4), ("uint32", 4), ("int64", 8),
                                         ("float64", 8), ("uuid", 16), ("bool", 1)])
def test_fixed_width_reads_are_bounded(method, size):
    data = b"\x01" * (size - 1)
    with pytest.raises(ProtocolError):
        getattr(Reader(data), method)()
    # the end bound, not the buffer length, is what counts
    with pytest.raises(ProtocolError):
        getattr(Reader(b"\x01" * 32, 0, size - 1), method)()
    r = Reader(b"\x01" * size)
    getattr(r, method)()
    assert r.remaining() == 0


def test_big_endian_signed_and_unsigned():
    assert Reader(b"\xff\xfe").int16() == -2
    assert Reader(b"\xff\xfe").uint16() == 65534
    assert Reader(b"\xff\xff\xff\xfe").uint32() == 2**32 - 2
    assert _w(Writer.uint16, 65535) == b"\xff\xff"
    assert _w(Writer.int64, -2) == b"\xff" * 7 + b"\xfe"


# --------------------------------------------------------------------------- lengths
def test_string_length_beyond_buffer():
    with pytest.raises(ProtocolError):
        Reader(struct.pack(">h", 10) + b"abc").string(False)
    with pytest.raises(ProtocolError):
        Reader(b"\x0b" + b"abc").string(True)  # compact: 10 bytes claimed
    with pytest.raises(ProtocolError):
        Reader(struct.pack(">i", 5) + b"abcd").bytes(False)
    with pytest.raises(ProtocolError):
        Reader(struct.pack(">i", 2**31 - 1) + b"abcd").records(False)


@pytest.mark.parametrize("method,head", [
    ("string", struct.pack(">h", -2)), ("string", struct.pack(">h", -32768)),
    ("bytes", struct.pack(">i", -2)), ("bytes", struct.pack(">i", INT32_MIN)),
    ("records", struct.pack(">i", -7)),
])
def test_negative_lengths_other_than_null_are_invalid(method, head):
    for nullable in (False, True):
        with pytest.raises(ProtocolError):
            getattr(Reader(head + b"x" * 8), method)(False, nullable)


def test_null_only_where_nullable():
    assert Reader(b"\xff\xff").string(False, True) is None
    assert Reader(b"\x00").string(True, True) is None
    assert Reader(b"\xff\xff\xff\xff").bytes(False, True) is None
    with pytest.raises(ProtocolError):
        Reader(b"\xff\xff").string(False, False)
    with pytest.raises(ProtocolError):
        Reader(b"\x00").string(True, False)
    with pytest.raises(ProtocolError):
        Reader(b"\xff\xff\xff\xff").bytes(False, False)
    with pytest.raises(ProtocolError):
        Reader(b"\xff\xff\xff\xff").array_len(False, False)
    assert Reader(b"\xff\xff\xff\xff").array_len(False, True) == -1
    with pytest.raises(ProtocolError):
        Reader(b"\xff\xff\xff\xfe").array_len(False, True)  # -2


def test_invalid_utf8():
    with pytest.raises(ProtocolError):
        Reader(struct.pack(">h", 2) + b"\xc3\x28").string(False)
    with pytest.raises(ProtocolError):
        Reader(b"\x03\xff\xfe").string(True)
    # valid multi-byte text passes, and its length is in bytes
    text = "t\u00f6pic-\u2713"
    data = _w(Writer.string, text, True)
    assert data[0] == len(text.encode()) + 1
    assert Reader(data).string(True) == text


def _bounded(fn):
    """Run fn; return (exception, seconds, peak traced bytes)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
        exc = None
    except Exception as e:  # noqa: BLE001
        exc = e
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return exc, elapsed, peak


def test_hostile_array_count_fails_fast_without_allocating():
    """A MetadataRequest v4 body claiming 2^31-1 topics, followed by a few bytes."""
    body = struct.pack(">i", 2**31 - 1) + b"\x00\x03abc\x01"
    exc, elapsed, peak = _bounded(lambda: MetadataRequest.decode(body, 4))
    assert isinstance(exc, ProtocolError), exc
    assert elapsed < 0.05
    assert peak < 64 * 1024, f"allocated {peak} bytes"


def test_hostile_compact_array_count():
    """A MetadataRequest v9 body (compact array) claiming ~2^35 topics."""
    body = bytes.fromhex("ffffffff7f") + b"\x04abc" + b"\x00" * 20
    exc, elapsed, peak = _bounded(lambda: MetadataRequest.decode(body, 9))
    assert isinstance(exc, ProtocolError), exc
    assert peak < 64 * 1024
    # and a count that only just exceeds what is left
    exc, _, _ = _bounded(lambda: MetadataRequest.decode(b"\x05" + b"\x00" * 3, 9))
    assert isinstance(exc, ProtocolError)


def test_hostile_primitive_array_count():
    # Produce v3 partition array of int32s in a ForgottenTopic-like list: use
    # FetchRequest v7 forgotten_topics_data[].partitions ([]int32)
    from kafkette.protocol.messages import FetchRequest
    good = FetchRequest(forgotten_topics_data=[FetchRequest.ForgottenTopic(topic="t", partitions=[1])])
    data = bytearray(good.encode(7))
    # the []int32 count is the 4 bytes before the final partition value
    pos = len(data) - 8
    assert data[pos:pos + 4] == struct.pack(">i", 1)
    data[pos:pos + 4] = struct.pack(">i", 2**31 - 1)
    exc, _, peak = _bounded(lambda: FetchRequest.decode(bytes(data), 7))
    assert isinstance(exc, ProtocolError)
    assert peak < 64 * 1024


def test_hostile_tagged_fields():
    base = ApiVersionsRequest(client_software_name="a", client_software_version="b").encode(3)
    assert base.endswith(b"\x00")
    # tag count far beyond the buffer
    with pytest.raises(ProtocolError):
        ApiVersionsRequest.decode(base[:-1] + bytes.fromhex("ffffffff0f"), 3)
    # a tagged field whose size runs past the end
    with pytest.raises(ProtocolError):
        ApiVersionsRequest.decode(base[:-1] + b"\x01\x05\x7f\x00", 3)


def _sample_messages():
    from kafkette.protocol.messages import FetchRequest
    P = FetchResponse.FetchableTopicResponse.PartitionData
    return [
        (MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="orders")],
                         allow_auto_topic_creation=True), (4, 9, 12)),
        (FetchResponse(session_id=5, responses=[FetchResponse.FetchableTopicResponse(
            topic="orders", partitions=[P(partition_index=1, high_watermark=9,
                                          aborted_transactions=None, records=b"r" * 40,
                                          current_leader=P.LeaderIdAndEpoch(2, 3))])]),
         (4, 11, 12, 16)),
        (FetchRequest(cluster_id="c", max_wait_ms=10, topics=[FetchRequest.FetchTopic(
            topic="t", partitions=[FetchRequest.FetchTopic.FetchPartition(partition=0)])]),
         (4, 12, 15)),
    ]


def test_every_truncation_is_a_protocol_error():
    """Any prefix of a valid body fails with ProtocolError and nothing else."""
    for msg, versions in _sample_messages():
        cls = type(msg)
        for v in versions:
            data = msg.encode(v)
            assert cls.decode(data, v) == cls.decode(data + b"\x00\x01", v)
            for n in range(len(data)):
                with pytest.raises(ProtocolError):
                    cls.decode(data[:n], v)


@settings(max_examples=400, deadline=None)
@given(api_key=st.sampled_from(sorted(API_MESSAGES)), data=st.binary(max_size=64),
       which=st.integers(0, 1), vsel=st.integers(0, 100))
def test_garbage_raises_only_protocol_error(api_key, data, which, vsel):
    cls = API_MESSAGES[api_key][which]
    v = cls.MIN_VERSION + vsel % (cls.MAX_VERSION - cls.MIN_VERSION + 1)
    try:
        cls.decode(data, v)
    except ProtocolError:
        pass


_SAMPLES = [(msg, v) for msg, versions in _sample_messages() for v in versions]


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, len(_SAMPLES) - 1), pos=st.integers(0, 10_000),
       byte=st.integers(0, 255))
def test_corrupted_valid_body_raises_only_protocol_error(which, pos, byte):
    """One byte of a valid body replaced: the decoder either decodes something or
    raises ProtocolError (never IndexError, struct.error, MemoryError, ...)."""
    msg, v = _SAMPLES[which]
    data = bytearray(msg.encode(v))
    data[pos % len(data)] = byte
    try:
        type(msg).decode(bytes(data), v)
    except ProtocolError:
        pass


# --------------------------------------------------------------------------- zero copy
def test_writer_keeps_large_bytes_as_their_own_chunk():
    big = bytes(range(256)) * 4  # 1024 bytes: the threshold
    small = b"s" * 1023
    w = Writer()
    w.int32(7)
    w.bytes(big, False)
    w.bytes(small, True)
    w.int16(1)
    chunks = w.to_chunks()
    assert any(c is big for c in chunks)
    assert not any(c is small for c in chunks)
    assert b"".join(chunks) == (struct.pack(">ii", 7, 1024) + big + _uvarint_ref(1024) + small
                                + struct.pack(">h", 1))
    assert w.getvalue() == b"".join(chunks)


def test_records_field_is_not_copied_on_encode():
    """A Produce request's records (a view into a frame) and a Fetch response's
    records (segment bytes) reach the output chunks as the same objects."""
    frame = bytearray(b"\x00" * 4096)
    view = memoryview(frame)[100:3100]
    req = ProduceRequest(acks=-1, timeout_ms=1000, topic_data=[ProduceRequest.TopicProduceData(
        name="t", partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(
            index=0, records=view)])])
    for v in (3, 9):
        w = Writer()
        req.write(w, v)
        chunks = w.to_chunks()
        assert any(c is view for c in chunks), v
        assert b"".join(bytes(c) for c in chunks) == req.encode(v)

    seg = b"\x01" * 2048
    P = FetchResponse.FetchableTopicResponse.PartitionData
    resp = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(
        topic="t", partitions=[P(partition_index=0, records=seg)])])
    w = Writer()
    resp.write(w, 12)
    assert any(c is seg for c in w.to_chunks())


def test_reader_records_is_a_view():
    payload = b"\x07" * 2000
    data = bytearray(struct.pack(">i", len(payload)) + payload)
    rec = Reader(data).records(False)
    assert isinstance(rec, memoryview) and rec.obj is data
    assert rec == payload


# --------------------------------------------------------------------------- headers
def test_header_version_rules():
    # ApiVersions: flexible from v3, but its response header is always v0 (KIP-511)
    assert request_header_version(18, 3) == 2
    assert request_header_version(18, 2) == 1
    assert response_header_version(18, 3) == 0
    assert response_header_version(18, 4) == 0
    # Metadata: flexible from v9
    assert request_header_version(3, 9) == 2
    assert request_header_version(3, 8) == 1
    assert response_header_version(3, 9) == 1
    assert response_header_version(3, 8) == 0
    # ControlledShutdown v0 is the one request with header v0 (no client_id)
    assert request_header_version(7, 0) == 0
    assert request_header_version(7, 1) == 1
    # the rule follows each API's flexible version
    for key, (req, resp) in API_MESSAGES.items():
        for v in range(req.MIN_VERSION, req.MAX_VERSION + 1):
            flex = req.FLEXIBLE_VERSION is not None and v >= req.FLEXIBLE_VERSION
            if (key, v) != (7, 0):
                assert request_header_version(key, v) == (2 if flex else 1)
            if key != 18:
                assert response_header_version(key, v) == (1 if flex else 0)


def test_request_header_round_trip():
    for key, v, cid in [(3, 8, "client"), (3, 9, "client"), (18, 3, None), (0, 9, "p\u00e9")]:
        frame = encode_request_header(key, v, 12345, cid) + b"BODY"
        assert peek_header(frame) == (key, v, 12345)
        r = Reader(frame)
        h = decode_request_header(r)
        assert (h.api_key, h.api_version, h.correlation_id, h.client_id) == (key, v, 12345, cid)
        assert h.header_version == request_header_version(key, v)
        assert bytes(frame[r.pos:]) == b"BODY"
        # v2 ends with an empty tagged-field section; client_id stays an int16 string
        cid_bytes = b"\xff\xff" if cid is None else struct.pack(">h", len(cid.encode())) + cid.encode()
        expected = struct.pack(">hhi", key, v, 12345) + cid_bytes
        if h.header_version == 2:
            expected += b"\x00"
        assert frame[:r.pos] == expected


def test_request_header_v0():
    frame = encode_request_header(7, 0, 99, "ignored") + b"BODY"
    assert frame == struct.pack(">hhi", 7, 0, 99) + b"BODY"
    r = Reader(frame)
    h = decode_request_header(r)
    assert (h.api_key, h.api_version, h.correlation_id, h.client_id, h.header_version) == (
        7, 0, 99, None, 0)
    assert bytes(frame[r.pos:]) == b"BODY"


def test_response_header_encoding():
    assert encode_response_header(7, 0) == struct.pack(">i", 7)
    assert encode_response_header(7, 1) == struct.pack(">i", 7) + b"\x00"


def test_peek_header_short_frame():
    with pytest.raises(ProtocolError):
        peek_header(b"\x00\x12\x00")


def test_truncated_request_header():
    frame = encode_request_header(3, 12, 1, "client-id")
    for n in range(len(frame)):
        with pytest.raises(ProtocolError):
            decode_request_header(Reader(frame[:n]))
