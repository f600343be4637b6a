"""kafkette.client against a real broker (EmbeddedBroker in process) and, where a
broker would not misbehave on demand, against small fake listeners on 127.0.0.1."""
from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from kafkette import EmbeddedBroker
from kafkette.client import (
    KafkaClient,
    KafkaConnection,
    NetworkError,
    NodeChannel,
    RequestTimeoutError,
    UnsupportedVersionError,
    highest_common_version,
    parse_bootstrap,
    probe_api_versions,
    request_once,
    run_sync,
)
from kafkette.errors import ErrorCode, ProtocolError
from kafkette.protocol.framing import FrameDecoder, decode_request, encode_response
from kafkette.protocol.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    FetchRequest,
    MetadataRequest,
    ProduceRequest,
)
from kafkette.protocol.records import build_batch, iter_batches

CLIENT = "test-client"


@pytest.fixture(scope="module")
def kb():
    with EmbeddedBroker(in_process=True) as b:
        b.create_topic("pipelined", partitions=3)
        b.create_topic("parked", partitions=1)
        b.create_topic("acks0", partitions=1)
        b.create_topic("closing", partitions=1)
        yield b


async def connect(kb, **kw) -> KafkaConnection:
    kw.setdefault("client_id", CLIENT)
    return await KafkaConnection.connect(kb.host, kb.port, timeout=5, **kw)


def metadata(*topics) -> MetadataRequest:
    return MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
                           allow_auto_topic_creation=False)


def parked_fetch(topic: str, max_wait_ms: int = 20_000) -> FetchRequest:
    """A Fetch at the end of an empty partition: the broker holds it for max_wait_ms."""
    FT = FetchRequest.FetchTopic
    return FetchRequest(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20,
                        isolation_level=0, session_id=0, session_epoch=-1, rack_id="",
                        topics=[FT(topic=topic, partitions=[FT.FetchPartition(
                            partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
                        forgotten_topics_data=[])


async def wait_for(cond, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- pipelining

async def test_pipelined_requests_are_matched_by_correlation_id(kb):
    conn = await connect(kb)
    try:
        names = ["pipelined", "missing-a", "parked", "missing-b"] * 5
        futures = [asyncio.ensure_future(conn.send(metadata(n), 9)) for n in names]
        await asyncio.sleep(0)          # every task has written its request
        assert conn.in_flight == len(names)
        answers = await asyncio.gather(*futures)
        assert [a.topics[0].name for a in answers] == names
        for a in answers:
            known = a.topics[0].name in ("pipelined", "parked")
            assert a.topics[0].error_code == (0 if known else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        assert len(answers[0].topics[0].partitions) == 3
        assert conn.in_flight == 0
    finally:
        conn.close()


async def test_send_encoded_returns_the_raw_frame(kb):
    conn = await connect(kb)
    try:
        body = metadata("pipelined").encode(9)
        frames = await asyncio.gather(*(conn.send_encoded(3, 9, body) for _ in range(4)))
        corrs = [struct.unpack_from(">i", f, 0)[0] for f in frames]
        assert len(set(corrs)) == 4 and all(type(f) is bytearray for f in frames)
    finally:
        conn.close()


async def test_produce_acks0_gets_no_response_and_is_written(kb):
    conn = await connect(kb)
    try:
        TD = ProduceRequest.TopicProduceData
        for i in range(3):
            req = ProduceRequest(acks=0, timeout_ms=1000, topic_data=[TD(
                name="acks0", partition_data=[TD.PartitionProduceData(
                    index=0, records=build_batch([(None, b"v%d" % i, [])]))])])
            conn.send_no_response(req, 9)
        await conn.drain()
        assert conn.in_flight == 0
        with pytest.raises(ValueError):
            conn.send_no_response(ProduceRequest(acks=1, timeout_ms=1, topic_data=[]), 9)
        # A later request on the same connection is answered in order after them.
        fetch = parked_fetch("acks0", max_wait_ms=0)
        resp = await conn.send(fetch, 12)
        records = resp.responses[0].partitions[0].records
        assert len(list(iter_batches(memoryview(records)))) == 3
    finally:
        conn.close()


async def test_close_sends_what_is_buffered_first(kb):
    conn = await connect(kb)
    TD = ProduceRequest.TopicProduceData
    req = ProduceRequest(acks=0, timeout_ms=1000, topic_data=[TD(
        name="closing", partition_data=[TD.PartitionProduceData(
            index=0, records=build_batch([(None, b"x" * 100, [])] * 10))])])
    for _ in range(50):
        conn.send_no_response(req, 9)
    conn.close()
    check = await connect(kb)
    try:
        async def count():
            resp = await check.send(parked_fetch("closing", max_wait_ms=0), 12)
            return len(list(iter_batches(memoryview(resp.responses[0].partitions[0].records))))
        deadline = time.monotonic() + 5
        while (n := await count()) < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert n == 50
    finally:
        check.close()


# --------------------------------------------------------------------------- losses

async def test_a_dropped_connection_fails_every_request_in_flight(kb):
    conn = await connect(kb, client_id="to-be-dropped")
    try:
        parked = [asyncio.ensure_future(conn.send(parked_fetch("parked"), 12)) for _ in range(3)]
        await wait_for(lambda: conn.in_flight == 3, what="three parked fetches")
        t0 = time.monotonic()
        closed = await asyncio.to_thread(kb.close_connections, "to-be-dropped")
        assert closed == 1
        results = await asyncio.wait_for(asyncio.gather(*parked, return_exceptions=True), 5)
        assert time.monotonic() - t0 < 5    # not the 20 s long poll
        assert all(isinstance(r, NetworkError) and isinstance(r, ConnectionError)
                   for r in results), results
        assert conn.is_closed
        with pytest.raises(NetworkError):
            await conn.send(metadata(), 9)
    finally:
        conn.close()


async def test_closing_locally_fails_requests_in_flight(kb):
    conn = await connect(kb)
    parked = asyncio.ensure_future(conn.send(parked_fetch("parked"), 12))
    await wait_for(lambda: conn.in_flight == 1, what="a parked fetch")
    conn.close()
    with pytest.raises(NetworkError, match="closed"):
        await asyncio.wait_for(parked, 5)


async def test_a_request_timeout_closes_the_connection(kb):
    conn = await connect(kb)
    try:
        other = asyncio.ensure_future(conn.send(parked_fetch("parked"), 12))
        with pytest.raises(RequestTimeoutError, match="timed out after 200 ms"):
            await conn.send(parked_fetch("parked"), 12, timeout=0.2)
        # As Kafka's NetworkClient: the connection is closed, the other request fails.
        with pytest.raises(NetworkError, match="request timeout"):
            await asyncio.wait_for(other, 5)
        assert conn.is_closed
    finally:
        conn.close()


async def test_a_cancelled_request_does_not_disturb_the_next_ones(kb):
    conn = await connect(kb)
    try:
        slow = asyncio.ensure_future(conn.send(parked_fetch("parked", max_wait_ms=300), 12))
        await wait_for(lambda: conn.in_flight == 1, what="a parked fetch")
        slow.cancel()
        # Its late answer arrives first and is dropped; this one gets its own.
        resp = await conn.send(metadata("pipelined"), 9)
        assert resp.topics[0].name == "pipelined" and not conn.is_closed
    finally:
        conn.close()


async def test_connect_failure_is_a_network_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # bound, not listening: refused
        with pytest.raises(NetworkError, match="cannot connect"):
            await KafkaConnection.connect("127.0.0.1", port, timeout=2)


# --------------------------------------------------------------------------- versions

async def test_api_version_negotiation(kb):
    conn = await connect(kb)
    try:
        versions = await conn.api_versions()
        assert versions is conn.versions
        assert versions[18][0] == 0 and versions[3][1] >= 12
        assert conn.version_for(3) == min(MetadataRequest.MAX_VERSION, versions[3][1])
        assert conn.version_for(3, max_version=7) == 7
        assert conn.version_for(1, max_version=11) == 11
        unserved = next(k for k in (52, 53, 54, 55, 59, 60) if k not in versions)
        with pytest.raises(UnsupportedVersionError, match="does not support"):
            conn.version_for(unserved)
        with pytest.raises(UnsupportedVersionError, match="no common version"):
            conn.version_for(3, min_version=versions[3][1] + 1)
    finally:
        conn.close()


def test_highest_common_version():
    assert highest_common_version((0, 12), (1, 9)) == 9
    assert highest_common_version((4, 12), (0, 3)) is None
    assert highest_common_version((0, 3), None) is None


class FakeBroker:
    """A listener answering with `answer(header, request) -> (response, version)`, or
    not at all (None), or with raw bytes."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        decoder = FrameDecoder(1 << 20)
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    header, req = decode_request(frame)
                    self.requests.append((header.api_key, header.api_version))
                    out = self.answer(header, req)
                    if isinstance(out, bytes):
                        writer.write(out)
                    elif out is not None:
                        resp, version = out
                        writer.writelines(encode_response(resp, header.api_key, version,
                                                          header.correlation_id))
        finally:
            writer.close()


async def test_api_versions_retries_at_the_brokers_version_kip_511():
    V = ApiVersionsResponse.ApiVersion

    def old_broker(header, req):     # knows ApiVersions 0-2 only, as a Kafka 2.3 broker
        keys = [V(api_key=18, min_version=0, max_version=2),
                V(api_key=3, min_version=0, max_version=8)]
        if header.api_version > 2:
            return ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=keys), 0
        return ApiVersionsResponse(error_code=0, api_keys=keys, throttle_time_ms=0), \
            header.api_version

    async with FakeBroker(old_broker) as fb:
        conn = await KafkaConnection.connect("127.0.0.1", fb.port)
        try:
            assert await conn.api_versions() == {18: (0, 2), 3: (0, 8)}
            assert fb.requests == [(18, ApiVersionsRequest.MAX_VERSION), (18, 2)]
            assert conn.version_for(3) == 8
        finally:
            conn.close()


@pytest.mark.parametrize("answer, error", [
    (struct.pack(">i", 10_000) + b"\0" * 100, "bad response frame size 10000"),  # > 4096
    (struct.pack(">i", -3), "bad response frame size -3"),
    (struct.pack(">ii", 4, 12345), "unknown correlation id 12345"),
])
async def test_a_broken_answer_closes_the_connection(answer, error):
    async with FakeBroker(lambda h, r: answer) as fb:
        conn = await KafkaConnection.connect("127.0.0.1", fb.port, max_response_bytes=4096)
        try:
            with pytest.raises(NetworkError, match=error):
                await conn.send(metadata(), 9, timeout=5)
            assert conn.is_closed
        finally:
            conn.close()


async def test_an_undecodable_answer_fails_only_its_request():
    def answer(header, req):
        body = b"\x00" if header.correlation_id == 1 else ApiVersionsResponse(
            error_code=0, api_keys=[]).encode(0)
        return struct.pack(">ii", 4 + len(body), header.correlation_id) + body

    async with FakeBroker(answer) as fb:
        conn = await KafkaConnection.connect("127.0.0.1", fb.port)
        try:
            with pytest.raises(ProtocolError, match="undecodable ApiVersions v0"):
                await conn.send(ApiVersionsRequest(), 0)
            assert (await conn.send(ApiVersionsRequest(), 0)).error_code == 0
        finally:
            conn.close()


# --------------------------------------------------------------------------- channels

async def test_node_channel_reconnects_after_a_loss(kb):
    ch = NodeChannel(kb.host, kb.port, client_id="channel-test", backoff=0.01,
                     negotiate_versions=True)
    try:
        assert (await ch.send(metadata("pipelined"))).topics[0].error_code == 0
        first = await ch.connection()
        assert first.versions is not None
        await asyncio.to_thread(kb.close_connections, "channel-test")
        await wait_for(lambda: first.is_closed, what="the connection to drop")
        assert not ch.connected
        assert (await ch.send(metadata("pipelined"))).topics[0].error_code == 0
        assert (await ch.connection()) is not first
    finally:
        await ch.close()
    with pytest.raises(NetworkError, match="closed"):
        await ch.send(metadata())


async def test_node_channel_backs_off_between_failed_attempts():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        ch = NodeChannel("127.0.0.1", port, backoff=0.2, backoff_max=0.4)
        try:
            with pytest.raises(NetworkError):
                await ch.connection()
            t0 = time.monotonic()
            with pytest.raises(NetworkError):
                await ch.connection()
            waited = time.monotonic() - t0
            assert 0.2 * 0.8 - 0.01 <= waited, waited     # the back-off, minus jitter
        finally:
            await ch.close()


async def test_kafka_client_bootstrap_falls_back_and_routes_by_node_id(kb):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        client = KafkaClient(f"127.0.0.1:{dead},{kb.bootstrap_servers}", client_id=CLIENT)
        try:
            md = await client.metadata(["pipelined"])
            assert md.topics[0].error_code == 0
            (node_id, address), = client.brokers.items()
            assert address[1] == kb.port
            resp = await client.send(metadata("parked"), node=node_id)
            assert resp.topics[0].name == "parked"
            assert await client.version_for(3, node=node_id) >= 12
            with pytest.raises(Exception, match="not in the cluster metadata"):
                await client.send(metadata(), node=node_id + 100)
        finally:
            await client.close()


def test_parse_bootstrap():
    assert parse_bootstrap("a:1, b:2,[::1]:3") == [("a", 1), ("b", 2), ("::1", 3)]
    with pytest.raises(ValueError):
        parse_bootstrap("nohost")


# --------------------------------------------------------------------------- blocking

def test_blocking_helpers(kb):
    assert probe_api_versions(kb.host, kb.port, timeout=5) == 0
    resp = request_once(kb.host, kb.port, metadata("pipelined"), 9, timeout=5)
    assert resp.topics[0].name == "pipelined"
    with pytest.raises(TimeoutError):
        run_sync(asyncio.sleep(5), timeout=0.05)


async def test_blocking_helpers_work_inside_a_running_loop(kb):
    # EmbeddedBroker.create_topic and the tools are called from async tests too.
    assert await asyncio.to_thread(probe_api_versions, kb.host, kb.port, 5) == 0
    assert probe_api_versions(kb.host, kb.port, timeout=5) == 0
