"""Byte-exact vectors from real clients: the request frames of
../shared/client-captures/ (kafka-python, confluent-kafka, kcat, aiokafka, kafkajs).

For every capture in index.json: decode the request header and the body with the
generated class of its api key at its version, then encode both again and compare
with the frame byte for byte. The only capture that does not re-encode identically
is the one index.json marks with `trailing_bytes_after_schema_body` (librdkafka's
Metadata v12 all-topics request): its trailing bytes are asserted explicitly.

Produce record batches are opaque to the message codec: they must come out of the
decoder as the very bytes of the frame, and their batch headers (magic, CRC-32C,
compression codec) must agree with what index.json says the client sent.

Responses in the folder come from a third-party broker, so their values are not a
reference; they are only decoded and re-encoded as a smoke test of the response
codecs (README: all re-encode identically, ApiVersions replies marked with
`response_note` having a v0 body).

The shared folder is located at `<repo>/../shared` or by KAFKETTE_SHARED_DIR; the
tests skip when it is absent.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from kafkette.protocol.headers import (decode_request_header, encode_request_header,
                                       encode_response_header, request_header_version,
                                       response_header_version)
from kafkette.protocol.messages import API_MESSAGES, RequestHeader, ResponseHeader
from kafkette.protocol.primitives import Reader


def shared_dir() -> Path:
    env = os.environ.get("KAFKETTE_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


CAPTURES = shared_dir() / "client-captures"
INDEX = CAPTURES / "index.json"

if not INDEX.is_file():
    pytest.skip(f"client captures not found at {CAPTURES}", allow_module_level=True)

ENTRIES = json.loads(INDEX.read_text())["captures"]
COMPRESSION = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def _param(e, file_key="file"):
    return pytest.param(e, id=e[file_key])


def _frame(e) -> bytes:
    data = (CAPTURES / e["file"]).read_bytes()
    assert len(data) == e["byte_length"]
    assert hashlib.sha256(data).hexdigest() == e["sha256"], "capture file changed"
    return data


def test_index_is_complete():
    assert len(ENTRIES) == 347
    assert len({e["file"] for e in ENTRIES}) == len(ENTRIES)
    assert {e["client"] for e in ENTRIES} == {"kafka-python", "confluent-kafka", "kcat",
                                             "aiokafka", "kafkajs"}
    # Exactly one capture carries bytes beyond the schema body (README).
    odd = [e for e in ENTRIES if e.get("trailing_bytes_after_schema_body")]
    assert [e["file"] for e in odd] == ["confluent-kafka/0003_Metadata_v12.req.bin"]


@pytest.mark.parametrize("e", [_param(e) for e in ENTRIES])
def test_request_capture_round_trip(e):
    data = _frame(e)
    trailing = e.get("trailing_bytes_after_schema_body", 0)
    api_key, version = e["api_key"], e["api_version"]
    assert api_key in API_MESSAGES, f"no generated class for api key {api_key}"
    req_cls = API_MESSAGES[api_key][0]
    assert req_cls.MIN_VERSION <= version <= req_cls.MAX_VERSION

    # header: the hand-written fast path and the generated RequestHeader agree
    r = Reader(data)
    hdr = decode_request_header(r)
    header_len = r.pos
    assert (hdr.api_key, hdr.api_version, hdr.correlation_id, hdr.client_id) == (
        api_key, version, e["correlation_id"], e["client_id"])
    assert hdr.header_version == e["request_header_version"]
    assert request_header_version(api_key, version) == e["request_header_version"]
    gen_hdr = RequestHeader.decode(data, hdr.header_version)
    assert (gen_hdr.request_api_key, gen_hdr.request_api_version, gen_hdr.correlation_id,
            gen_hdr.client_id) == (api_key, version, e["correlation_id"], e["client_id"])
    assert gen_hdr.encode(hdr.header_version) == data[:header_len]

    # body: decoding must not raise, and consumes exactly the schema body
    body = req_cls.read(r, version)
    assert r.remaining() == trailing, (
        f"decoder stopped {r.remaining()} bytes before the end (expected {trailing})")

    out = encode_request_header(api_key, version, e["correlation_id"], e["client_id"])
    assert out == data[:header_len]
    out += body.encode(version)
    assert out == data[:len(data) - trailing]

    # decode(bytes) (the public entry point) gives the same message
    assert req_cls.decode(data[header_len:], version) == body


def test_librdkafka_metadata_trailing_bytes():
    """confluent-kafka/0003_Metadata_v12: librdkafka writes the null topics array as a
    4-byte placeholder; read by the schema the body ends 3 bytes early (README)."""
    (e,) = [e for e in ENTRIES if e["file"] == "confluent-kafka/0003_Metadata_v12.req.bin"]
    data = _frame(e)
    assert e["trailing_bytes_after_schema_body"] == 3
    r = Reader(data)
    decode_request_header(r)
    body = API_MESSAGES[3][0].read(r, 12)
    assert body.topics is None
    assert body.allow_auto_topic_creation is False
    assert body.include_topic_authorized_operations is False
    assert bytes(data[r.pos:]) == bytes.fromhex("010000")
    reencoded = encode_request_header(3, 12, e["correlation_id"], e["client_id"]) + body.encode(12)
    assert len(reencoded) == len(data) - 3
    assert reencoded == data[:-3]


# --------------------------------------------------------------------------- record batches
PRODUCE = [e for e in ENTRIES if e["api_key"] == 0]


def _batches(records: bytes):
    """Yield (magic, attributes, crc ok, producer id) for each batch of a record set."""
    import crc32c
    pos = 0
    while pos < len(records):
        base_offset, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        assert end <= len(records), "truncated batch"
        magic = records[pos + 16]
        (crc,) = struct.unpack_from(">I", records, pos + 17)
        attributes, = struct.unpack_from(">h", records, pos + 21)
        producer_id, = struct.unpack_from(">q", records, pos + 43)
        ok = crc32c.crc32c(records[pos + 21:end]) == crc
        yield magic, attributes, ok, producer_id
        pos = end


@pytest.mark.parametrize("e", [_param(e) for e in PRODUCE])
def test_produce_records_carried_unchanged(e):
    data = _frame(e)
    r = Reader(data)
    decode_request_header(r)
    start = r.pos
    req = API_MESSAGES[0][0].read(r, e["api_version"])
    info = e["produce"]
    assert req.acks == info["acks"]
    assert len(req.topic_data) == info["topics"]
    assert sum(len(t.partition_data) for t in req.topic_data) == info["partitions"]
    codecs, magics, idempotent, transactional = set(), set(), False, False
    for t in req.topic_data:
        for p in t.partition_data:
            rec = p.records
            assert rec is not None
            # the records are the frame's own bytes (a view, not a re-encoding)
            raw = bytes(rec)
            assert raw in data[start:]
            for magic, attrs, ok, pid in _batches(raw):
                assert ok, "CRC-32C mismatch"
                magics.add(magic)
                codecs.add(COMPRESSION[attrs & 0x07])
                transactional |= bool(attrs & 0x10)
                idempotent |= pid >= 0
    assert sorted(codecs) == sorted(info["compression"])
    assert sorted(magics) == sorted(info["magic"])
    assert idempotent == info["idempotent"]
    assert transactional == info["transactional"]


def test_produce_records_are_zero_copy_views():
    """Records decode as a view into the frame (no copy) and encode back as a chunk."""
    e = max(PRODUCE, key=lambda e: e["byte_length"])
    buf = bytearray(_frame(e))
    r = Reader(buf)
    decode_request_header(r)
    req = API_MESSAGES[0][0].read(r, e["api_version"])
    rec = req.topic_data[0].partition_data[0].records
    assert isinstance(rec, memoryview)
    assert rec.obj is buf


# --------------------------------------------------------------------------- responses (smoke)
RESPONSES = [e for e in ENTRIES if e.get("response_file")]


@pytest.mark.parametrize("e", [_param(e, "response_file") for e in RESPONSES])
def test_response_capture_round_trip(e):
    data = (CAPTURES / e["response_file"]).read_bytes()
    assert len(data) == e["response_byte_length"]
    api_key = e["api_key"]
    version = 0 if e.get("response_note") else e["api_version"]
    hv = e["response_header_version"]
    assert hv == response_header_version(api_key, e["api_version"])
    r = Reader(data)
    hdr = ResponseHeader.read(r, hv)
    assert hdr.correlation_id == e["correlation_id"]
    header_len = r.pos
    resp_cls = API_MESSAGES[api_key][1]
    body = resp_cls.read(r, version)
    assert r.remaining() == 0
    assert encode_response_header(e["correlation_id"], hv) == data[:header_len]
    assert hdr.encode(hv) == data[:header_len]
    assert data[:header_len] + body.encode(version) == data
