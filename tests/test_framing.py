"""kafkette.protocol.framing: the sans-IO frame decoder and the request/response
encode and decode helpers, with no sockets."""
from __future__ import annotations

import struct
import tracemalloc

import pytest

from kafkette.errors import ErrorCode, ProtocolError
from kafkette.protocol import framing
from kafkette.protocol.framing import (
    EAGER_FRAME_BYTES,
    FrameDecoder,
    FrameError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    frame_request,
    response_correlation_id,
)
from kafkette.protocol.headers import request_header_version
from kafkette.protocol.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    ControlledShutdownRequest,
    FetchRequest,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
)
from kafkette.protocol.primitives import Writer
from kafkette.protocol.records import build_batch


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)) * 3]
STREAM = b"".join(framed(p) for p in PAYLOADS)


# --------------------------------------------------------------------------- decoder

@pytest.mark.parametrize("buffer_size", [4, 7, 64, 1 << 16])
def test_frames_split_at_every_byte_boundary(buffer_size):
    for cut in range(len(STREAM) + 1):
        d = FrameDecoder(1 << 20, buffer_size=buffer_size)
        got = d.feed(STREAM[:cut]) + d.feed(STREAM[cut:])
        assert got == PAYLOADS, cut
        assert d.buffered == 0


def test_one_byte_at_a_time():
    d = FrameDecoder(1 << 20, buffer_size=16)
    got = []
    for i in range(len(STREAM)):
        got += d.feed(STREAM[i:i + 1])
    assert got == PAYLOADS


def test_several_frames_in_one_feed_are_writable_and_independent():
    d = FrameDecoder(1 << 20)
    frames = d.feed(STREAM)
    assert frames == PAYLOADS
    assert all(type(f) is bytearray for f in frames)
    frames[3][0] = 0xFF            # Produce stamps offsets in place
    assert frames[2] == PAYLOADS[2] and d.feed(framed(b"x")) == [b"x"]


def test_a_frame_larger_than_the_receive_buffer_through_the_buffer_interface():
    big = bytes(range(256)) * 4000          # ~1 MB, larger than the 64 KB buffer
    stream = framed(b"small") + framed(big) + framed(b"after")
    d = FrameDecoder(4 << 20, buffer_size=1 << 16)
    got, pos = [], 0
    while pos < len(stream):               # as asyncio.BufferedProtocol drives it
        buf = d.get_buffer()
        assert len(buf) > 0
        k = min(len(buf), 10_000, len(stream) - pos)
        buf[:k] = stream[pos:pos + k]
        pos += k
        got += d.buffer_updated(k)
    assert got == [b"small", big, b"after"]


def test_a_large_frame_buffer_grows_with_the_bytes_that_arrive():
    size = 64 * EAGER_FRAME_BYTES
    d = FrameDecoder(size + 1, buffer_size=1 << 16)
    assert d.feed(struct.pack(">i", size) + b"\x01" * 1000) == []
    assert len(d.get_buffer()) + d.buffered == EAGER_FRAME_BYTES   # not the 64 MB claimed
    d.feed(b"\x02" * (EAGER_FRAME_BYTES - 1000))
    assert len(d.get_buffer()) + d.buffered == 2 * EAGER_FRAME_BYTES
    rest = size - EAGER_FRAME_BYTES
    frames = d.feed(b"\x03" * rest)
    assert len(frames) == 1 and len(frames[0]) == size
    assert frames[0][:1000] == b"\x01" * 1000 and frames[0][-1:] == b"\x03"


@pytest.mark.parametrize("size", [-1, -5, -(2 ** 31), 1001, 2 ** 31 - 1])
def test_negative_or_oversized_length_is_refused_without_allocating(size):
    d = FrameDecoder(1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with pytest.raises(FrameError) as e:
            d.feed(struct.pack(">i", size) + b"\x00" * 16)
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert e.value.size == size and isinstance(e.value, ProtocolError)
    assert grown < 64 * 1024, grown
    with pytest.raises(FrameError):   # the stream is lost: the decoder stays failed
        d.feed(framed(b"ok"))


def test_an_accepted_but_unsent_huge_frame_costs_at_most_the_eager_allocation():
    d = FrameDecoder(2 ** 31 - 1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert d.feed(b"\x7f\xff\xff\xff" + b"\x00" * 4096) == []
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak <= EAGER_FRAME_BYTES + 64 * 1024, peak


def test_the_limit_itself_is_allowed():
    d = FrameDecoder(5)
    assert d.feed(framed(b"12345")) == [b"12345"]
    with pytest.raises(FrameError):
        d.feed(framed(b"123456"))


# --------------------------------------------------------------------------- requests

def _one_frame(chunks) -> bytearray:
    frames = FrameDecoder(1 << 26).feed(b"".join(bytes(c) for c in chunks))
    assert len(frames) == 1
    return frames[0]


@pytest.mark.parametrize("request_, version", [
    (ApiVersionsRequest(), 0),
    (ApiVersionsRequest(client_software_name="kafkette", client_software_version="1"), 3),
    (MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t")],
                     allow_auto_topic_creation=False), 4),     # header v1
    (MetadataRequest(topics=None, allow_auto_topic_creation=False), 12),  # header v2
    (ControlledShutdownRequest(broker_id=3), 0),                          # header v0
    (FetchRequest(replica_id=2, max_wait_ms=100, min_bytes=1, topics=[]), 12),
])
def test_request_encode_round_trips_through_the_server_decode(request_, version):
    frame = _one_frame(encode_request(request_, version, 77, "framing-test"))
    header, back = decode_request(frame)
    assert (header.api_key, header.api_version, header.correlation_id) == \
        (request_.API_KEY, version, 77)
    assert header.header_version == request_header_version(request_.API_KEY, version)
    assert header.client_id == (None if header.header_version == 0 else "framing-test")
    assert back == type(request_).decode(request_.encode(version), version)


def test_produce_records_stay_a_separate_chunk_and_arrive_writable():
    batch = build_batch([(None, b"v" * 2000, [])])
    TD = ProduceRequest.TopicProduceData
    req = ProduceRequest(acks=1, timeout_ms=1000, topic_data=[TD(
        name="t", partition_data=[TD.PartitionProduceData(index=0, records=batch)])])
    chunks = encode_request(req, 9, 5, None)
    assert any(c is batch for c in chunks)           # not copied by the encoder
    frame = _one_frame(chunks)
    header, back = decode_request(frame)
    records = back.topic_data[0].partition_data[0].records
    assert bytes(records) == batch and not records.readonly


def test_frame_request_takes_a_pre_encoded_body():
    body = MetadataRequest(topics=[], allow_auto_topic_creation=False).encode(9)
    a = b"".join(frame_request(3, 9, 1, "c", body))
    b = b"".join(encode_request(MetadataRequest(topics=[], allow_auto_topic_creation=False),
                                9, 1, "c"))
    assert a == b and struct.unpack(">i", a[:4])[0] == len(a) - 4


def test_decode_request_refuses_unknown_api_keys_and_versions():
    w = Writer()
    w.int16(999)
    w.int16(0)
    w.int32(1)
    w.string("c", False)
    with pytest.raises(ProtocolError):
        decode_request(w.getvalue())
    frame = _one_frame(frame_request(3, 99, 1, "c", b""))   # Metadata v99
    with pytest.raises(ProtocolError):
        decode_request(frame)


# --------------------------------------------------------------------------- responses

def _metadata_response():
    B = MetadataResponse.MetadataResponseBroker
    return MetadataResponse(brokers=[B(node_id=1, host="h", port=9092, rack=None)],
                            cluster_id="c", controller_id=1, topics=[])


@pytest.mark.parametrize("version", [1, 8, 9, 12])   # header v0 before v9, v1 from it
def test_response_encode_decode_round_trip(version):
    frame = _one_frame(encode_response(_metadata_response(), 3, version, 4242))
    assert response_correlation_id(frame) == 4242
    corr, resp = decode_response(frame, 3, version)
    assert corr == 4242
    assert [b.node_id for b in resp.brokers] == [1] and resp.controller_id == 1


def test_api_versions_response_header_is_v0_even_when_flexible():
    resp = ApiVersionsResponse(error_code=0, api_keys=[
        ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)])
    frame = _one_frame(encode_response(resp, 18, 3, 9))
    assert len(frame) == 4 + len(resp.encode(3))      # no tagged-field byte after corr
    corr, back = decode_response(frame, 18, 3)
    assert corr == 9 and back.api_keys[0].max_version == 4


def test_unsupported_api_versions_answer_is_read_as_the_v0_body():
    """KIP-511: asked at v4 by a broker that knows only 0-2, the answer is the v0 body
    with UNSUPPORTED_VERSION and the broker's list."""
    old = ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=[
        ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=2),
        ApiVersionsResponse.ApiVersion(api_key=3, min_version=0, max_version=9)])
    frame = _one_frame(encode_response(old, 18, 0, 3))
    corr, back = decode_response(frame, 18, 4)
    assert back.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert {k.api_key: k.max_version for k in back.api_keys} == {18: 2, 3: 9}


def test_short_response_frames_are_protocol_errors():
    with pytest.raises(ProtocolError):
        response_correlation_id(b"\x00\x01")
    with pytest.raises(ProtocolError):
        decode_response(bytearray(b"\x00\x00\x00\x01"), 3, 12)   # header but no body


def test_framing_has_no_io():
    src = open(framing.__file__).read()
    for word in ("import socket", "import asyncio", "import selectors"):
        assert word not in src


def test_receive_buffer_starts_small_and_grows_when_reads_fill_it():
    """An idle connection holds 16 KiB, not 256 KiB; a busy one grows to the full size
    and still cuts every frame right."""
    from kafkette.protocol.framing import INITIAL_RECV_BUFFER_BYTES, RECV_BUFFER_BYTES
    d = FrameDecoder(1 << 20)
    assert len(d.get_buffer()) == INITIAL_RECV_BUFFER_BYTES
    frames = [bytes([i % 251]) * (100 + i % 900) for i in range(2000)]
    stream = b"".join(len(f).to_bytes(4, "big") + f for f in frames)
    got, pos = [], 0
    while pos < len(stream):
        dst = d.get_buffer()
        k = min(len(dst), len(stream) - pos)
        dst[:k] = stream[pos:pos + k]
        pos += k
        got += d.buffer_updated(k)
    assert [bytes(f) for f in got] == frames
    assert len(d.get_buffer()) + d.buffered == RECV_BUFFER_BYTES
