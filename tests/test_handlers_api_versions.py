"""ApiVersions (key 18) and dispatcher robustness, through Dispatcher.handle."""
from __future__ import annotations

import struct

import pytest

from handler_harness import broker, call, encode_request, make_broker  # noqa: F401
from kafkette.broker.registry import HANDLERS
from kafkette.errors import ErrorCode, ProtocolError
from kafkette.protocol.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    MetadataRequest,
    ProduceRequest,
)
from kafkette.protocol.records import build_batch

# What the handler tier serves today (api key -> listed min, max). Produce is listed
# from v0 although v0-2 are refused, as Kafka 4.0 does (KAFKA-18659).
EXPECTED = {
    0: (0, 11),    # Produce
    1: (4, 17),    # Fetch
    2: (1, 9),     # ListOffsets
    3: (0, 12),    # Metadata
    18: (0, 4),    # ApiVersions
    19: (2, 7),    # CreateTopics
    20: (1, 6),    # DeleteTopics
    22: (0, 5),    # InitProducerId
    32: (1, 4),    # DescribeConfigs
    37: (0, 3),    # CreatePartitions
    43: (0, 2),    # ElectLeaders
    60: (0, 1),    # DescribeCluster
}


def _listed(resp) -> dict[int, tuple[int, int]]:
    keys = [k.api_key for k in resp.api_keys]
    assert keys == sorted(keys), "api keys not in ascending order"
    assert len(keys) == len(set(keys)), f"duplicate api keys in {keys}"
    return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}


@pytest.mark.parametrize("version", range(0, 5))
def test_api_versions_lists_exactly_the_registered_handlers(broker, version):
    req = ApiVersionsRequest(client_software_name="kafkette-tests",
                             client_software_version="1.0")
    resp = call(broker, req, version)
    assert resp.error_code == 0
    listed = _listed(resp)
    registered = {s.api_key: (s.advertised_min_version, s.max_version)
                  for s in HANDLERS.values()}
    assert listed == registered
    for key, rng in EXPECTED.items():
        assert listed.get(key) == rng, f"api key {key}: listed {listed.get(key)}, want {rng}"
    if version >= 1:
        assert resp.throttle_time_ms == 0


def test_api_versions_v3_response_header_is_v0(broker):
    """The v3 body is flexible, but its response header has no tagged-field byte."""
    frame, corr = encode_request(ApiVersionsRequest(client_software_name="x",
                                                    client_software_version="1"), 3)
    data = b"".join(bytes(c) for c in broker.dispatcher.handle(frame))
    assert struct.unpack_from(">ii", data, 0)[1] == corr
    # Header v0: the body (error_code int16 = 0, then the compact array length) follows
    # the correlation id directly. With a v1 header a 0x00 tag byte would come first.
    body = data[8:]
    resp = ApiVersionsResponse.decode(body, 3)
    assert resp.error_code == 0
    assert _listed(resp) == {s.api_key: (s.advertised_min_version, s.max_version)
                             for s in HANDLERS.values()}
    assert body[:2] == b"\x00\x00"
    assert body[2] == len(resp.api_keys) + 1  # compact array length, right after error_code


def test_api_versions_v4_decodes_with_v0_header(broker):
    resp = call(broker, ApiVersionsRequest(client_software_name="x",
                                           client_software_version="1"), 4)
    assert resp.error_code == 0 and len(resp.api_keys) == len(HANDLERS)


@pytest.mark.parametrize("version", [5, 99, 32767])
def test_api_versions_unknown_version_gets_v0_body_with_the_list(broker, version):
    """KIP-511: UNSUPPORTED_VERSION with the v0 body and the supported keys."""
    req = ApiVersionsRequest(client_software_name="future-client",
                             client_software_version="9.9")
    resp = call(broker, req, version, response_version=0)
    assert resp.error_code == ErrorCode.UNSUPPORTED_VERSION == 35
    listed = _listed(resp)
    assert listed, "KIP-511: the error answer must carry the supported list"
    assert listed[18] == (0, 4)
    assert listed == {s.api_key: (s.advertised_min_version, s.max_version)
                      for s in HANDLERS.values()}


def test_api_versions_unknown_version_with_garbage_body(broker):
    """A newer client's body may not parse with any schema we know: still answered."""
    resp = call(broker, b"\x07\xff\xfe\x00garbage", 7, api_key=18, response_version=0)
    assert resp.error_code == 35
    assert _listed(resp)[0] == (0, 11)


# -- dispatcher robustness ---------------------------------------------------------------

def _raw_header(api_key: int, version: int, corr: int, client_id: bytes = b"t") -> bytearray:
    return bytearray(struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id)


def _metadata_ok(broker) -> None:
    resp = call(broker, MetadataRequest(topics=None), 12)
    assert resp.controller_id == broker.node_id
    assert [b.node_id for b in resp.brokers] == [broker.node_id]
    resp = call(broker, ApiVersionsRequest(), 3)
    assert resp.error_code == 0


@pytest.mark.parametrize("api_key", [-1, 999, 32767])
def test_unknown_api_key_raises_protocol_error(broker, api_key):
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(_raw_header(api_key, 0, 5) + b"\x00\x00\x00\x00")
    _metadata_ok(broker)


def _unserved_keys():
    from kafkette.broker.registry import load_handlers
    from kafkette.protocol.messages import API_MESSAGES
    served = load_handlers()
    keys = [k for k in sorted(API_MESSAGES) if k not in served]
    return keys[:2] + keys[-1:]


@pytest.mark.parametrize("api_key", _unserved_keys())
def test_known_protocol_api_without_handler_raises(broker, api_key):
    assert api_key not in HANDLERS
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(_raw_header(api_key, 0, 5) + b"\x00" * 16)
    _metadata_ok(broker)


def test_frame_shorter_than_a_header_raises(broker):
    for frame in (bytearray(), bytearray(b"\x00\x03"), bytearray(b"\x00\x03\x00\x0c\x00\x00\x00")):
        with pytest.raises(ProtocolError):
            broker.dispatcher.handle(frame)
    _metadata_ok(broker)


@pytest.mark.parametrize("version", [1, 4, 9, 12])
def test_truncated_metadata_body_raises(broker, version):
    req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="some-topic")],
                          allow_auto_topic_creation=True)
    frame, _ = encode_request(req, version)
    for cut in (1, 3, len(b"some-topic")):
        with pytest.raises(ProtocolError):
            broker.dispatcher.handle(bytearray(frame[:-cut]))
    # Nothing was auto-created by the broken requests.
    assert "some-topic" not in broker.image.topics
    _metadata_ok(broker)


def test_truncated_produce_appends_nothing(broker):
    from handler_harness import create_topic, produce_request
    create_topic(broker, "t")
    batch = build_batch([(b"k", b"v" * 100, [])], timestamp_ms=1000)
    frame, _ = encode_request(produce_request("t", {0: batch}), 9)
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(bytearray(frame[:-10]))
    assert broker.replica_manager.partition("t", 0).log.log_end_offset == 0
    resp = call(broker, produce_request("t", {0: batch}), 9)
    assert resp.responses[0].partition_responses[0].error_code == 0
    assert resp.responses[0].partition_responses[0].base_offset == 0


def test_truncated_request_header_raises(broker):
    frame, _ = encode_request(MetadataRequest(topics=None), 12)
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(bytearray(frame[:9]))  # inside the client id
    _metadata_ok(broker)


def test_hostile_array_count_raises_without_allocating(broker):
    """A topics array claiming 2**31-1 entries (COMPATIBILITY.md, hostile input)."""
    frame = _raw_header(3, 1, 9) + struct.pack(">i", 0x7FFFFFFF) + b"\x00\x01a"
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(frame)
    frame, _ = encode_request(ProduceRequest(acks=1, timeout_ms=1, topic_data=[]), 9)
    frame = frame[:-1] + b"\xff\xff\xff\xff\x0f"  # compact array: huge uvarint count
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(bytearray(frame))
    _metadata_ok(broker)


@pytest.mark.parametrize("api_key,version", [(3, 13), (3, 99), (1, 99), (0, 12)])
def test_version_unknown_to_the_schema_raises(broker, api_key, version):
    frame = _raw_header(api_key, version, 3) + b"\x00" * 32
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(frame)
    _metadata_ok(broker)
