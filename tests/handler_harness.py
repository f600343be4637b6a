"""Harness for the handler tests: a Broker on a temporary directory, and `call()`,
which sends one request through the dispatcher exactly as the server would (request
header + body, no length prefix) and decodes the response frame it gets back.

The response frame is checked on the way: its 4-byte length prefix must match the
bytes that follow, the correlation id must be ours, the header version must follow
the rule (v0 for ApiVersions, v1 for other flexible versions) and the body must be
consumed exactly by the response schema.

Usage in a test module:

    from handler_harness import broker, make_broker, call, acall  # noqa: F401
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import struct

import pytest

from kafkette.broker.broker import Broker
from kafkette.clock import ManualClock
from kafkette.config import BrokerConfig
from kafkette.protocol.headers import encode_request_header, response_header_version
from kafkette.protocol.messages import API_MESSAGES
from kafkette.protocol.primitives import Reader, Writer

ADVERTISED_HOST = "broker.handler.test"
ADVERTISED_PORT = 19092
ADVERTISED = {"PLAINTEXT": (ADVERTISED_HOST, ADVERTISED_PORT)}
CLIENT_ID = "handler-tests"
START_MS = 1_700_000_000_000

_correlation = itertools.count(1000)


def new_broker(path, config: dict | None = None, clock=None,
               advertised: dict | None = None) -> Broker:
    raw = {"log.dirs": str(path), "listeners": "PLAINTEXT://127.0.0.1:9092"}
    raw.update(config or {})
    return Broker(BrokerConfig(raw), dict(advertised or ADVERTISED),
                  clock=clock if clock is not None else ManualClock(START_MS))


class BrokerFactory:
    """Creates brokers on one data directory and closes whatever is still open at the
    end of the test (a test that restarts closes the old broker itself)."""

    def __init__(self, path):
        self.path = path
        self.open: list[Broker] = []

    def __call__(self, config: dict | None = None, clock=None, advertised=None) -> Broker:
        b = new_broker(self.path, config, clock, advertised)
        self.open.append(b)
        return b

    def close(self, b: Broker) -> None:
        if b in self.open:
            self.open.remove(b)
            b.close()

    def close_all(self) -> None:
        for b in list(self.open):
            self.close(b)


@pytest.fixture
def make_broker(tmp_path):
    factory = BrokerFactory(tmp_path / "data")
    yield factory
    factory.close_all()


@pytest.fixture
def broker(make_broker):
    return make_broker()


# -- requests -------------------------------------------------------------------------

def encode_request(request, version: int, api_key: int | None = None,
                   correlation_id: int | None = None, client_id: str | None = CLIENT_ID
                   ) -> tuple[bytearray, int]:
    """(frame without length prefix, correlation id). `request` is a generated message,
    or raw body bytes (then `api_key` is required)."""
    if api_key is None:
        api_key = request.API_KEY
    if correlation_id is None:
        correlation_id = next(_correlation)
    if isinstance(request, (bytes, bytearray, memoryview)):
        body = bytes(request)
    else:
        w = Writer()
        request.write(w, version)
        body = w.getvalue()
    frame = bytearray(encode_request_header(api_key, version, correlation_id, client_id))
    frame += body
    return frame, correlation_id


def decode_response(chunks, api_key: int, version: int, correlation_id: int,
                    response_version: int | None = None, resp_cls=None):
    """Decode a response frame (list of chunks, length prefix included)."""
    assert isinstance(chunks, list), f"expected a list of chunks, got {type(chunks)!r}"
    data = b"".join(bytes(c) for c in chunks)
    assert len(data) >= 8, f"response frame too short: {data!r}"
    (size,) = struct.unpack_from(">i", data, 0)
    assert size == len(data) - 4, f"length prefix {size} != {len(data) - 4} bytes that follow"
    if resp_cls is None:
        resp_cls = API_MESSAGES[api_key][1]
    if response_version is None:
        response_version = version
    r = Reader(memoryview(data)[4:])
    got_corr = r.int32()
    assert got_corr == correlation_id, f"correlation id {got_corr} != {correlation_id}"
    if response_header_version(api_key, response_version) >= 1:
        r.skip_tagged_fields()
    resp = resp_cls.read(r, response_version)
    assert r.remaining() == 0, (f"{r.remaining()} trailing bytes after the "
                                f"{resp_cls.__name__} v{response_version} body")
    return resp


def _handle(broker, request, version, api_key, client_host, listener, client_id):
    frame, corr = encode_request(request, version, api_key, client_id=client_id)
    api_key = api_key if api_key is not None else request.API_KEY
    result = broker.dispatcher.handle(frame, client_host=client_host, listener=listener)
    return result, api_key, corr


def call(broker, request, version: int, api_key: int | None = None, *,
         response_version: int | None = None, listener: str = "PLAINTEXT",
         client_host: str = "127.0.0.1", client_id: str | None = CLIENT_ID):
    """Send one request; return the decoded response, or None when the broker sends
    none (Produce acks=0). A handler that answers with an awaitable (Fetch long poll)
    is run to completion with asyncio.run when no loop is running; from a coroutine,
    use `acall`."""
    result, api_key, corr = _handle(broker, request, version, api_key, client_host,
                                    listener, client_id)
    if inspect.isawaitable(result):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            result = asyncio.run(_await(result))
        else:
            # Admin handlers are coroutines that never suspend on a single node (the
            # local quorum commits at once): finish those inline.
            if not inspect.iscoroutine(result):
                raise AssertionError("handler returned an awaitable inside a running "
                                     "loop: use `await acall(...)`")
            try:
                result.send(None)
            except StopIteration as done:
                result = done.value
            else:
                result.close()
                raise AssertionError("handler suspended inside a running loop: "
                                     "use `await acall(...)`")
    if result is None:
        return None
    return decode_response(result, api_key, version, corr, response_version)


async def _await(awaitable):
    return await awaitable


def start(broker, request, version: int, api_key: int | None = None, *,
          listener: str = "PLAINTEXT", client_id: str | None = CLIENT_ID):
    """Send a request and return (raw result, finish) where `finish(chunks)` decodes
    the response; for tests that need to see whether the answer is pending."""
    result, api_key, corr = _handle(broker, request, version, api_key, "127.0.0.1",
                                    listener, client_id)

    def finish(chunks):
        return None if chunks is None else decode_response(chunks, api_key, version, corr)
    return result, finish


async def acall(broker, request, version: int, api_key: int | None = None, *,
                response_version: int | None = None, listener: str = "PLAINTEXT",
                client_id: str | None = CLIENT_ID):
    result, api_key, corr = _handle(broker, request, version, api_key, "127.0.0.1",
                                    listener, client_id)
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return None
    return decode_response(result, api_key, version, corr, response_version)


# -- small builders used by several test modules ---------------------------------------

def create_topic(broker, name: str, partitions: int = 1, configs: dict | None = None,
                 version: int = 7):
    from kafkette.protocol.messages import CreateTopicsRequest
    T = CreateTopicsRequest.CreatableTopic
    C = CreateTopicsRequest.CreatableTopic.CreatableTopicConfig
    req = CreateTopicsRequest(topics=[T(name=name, num_partitions=partitions,
                                        replication_factor=1, assignments=[],
                                        configs=[C(name=k, value=v)
                                                 for k, v in (configs or {}).items()])],
                              timeout_ms=5000)
    resp = call(broker, req, version)
    assert resp.topics[0].error_code == 0, resp.topics[0]
    return resp.topics[0]


def produce_request(topic: str, batches_by_partition: dict[int, bytes], acks: int = 1):
    from kafkette.protocol.messages import ProduceRequest
    TD = ProduceRequest.TopicProduceData
    PD = ProduceRequest.TopicProduceData.PartitionProduceData
    return ProduceRequest(transactional_id=None, acks=acks, timeout_ms=5000, topic_data=[
        TD(name=topic, partition_data=[PD(index=p, records=bytes(b))
                                       for p, b in batches_by_partition.items()])])


def produce(broker, topic: str, partition: int, batch: bytes, version: int = 9, acks: int = 1):
    """Produce one partition's bytes; returns the partition response."""
    resp = call(broker, produce_request(topic, {partition: batch}, acks), version)
    if resp is None:
        return None
    (t,) = resp.responses
    (p,) = t.partition_responses
    return p


def fetch_request(topic: str, partitions: dict[int, int], *, version: int = 12,
                  topic_id=None, max_bytes: int = 0x7FFFFFFF,
                  partition_max_bytes: int = 1 << 20, min_bytes: int = 0,
                  max_wait_ms: int = 0):
    """`partitions`: index -> fetch offset (a dict keeps request order)."""
    from kafkette.protocol.messages import FetchRequest
    FT = FetchRequest.FetchTopic
    FP = FetchRequest.FetchTopic.FetchPartition
    t = FT(topic=topic if version <= 12 else "",
           partitions=[FP(partition=p, fetch_offset=off, partition_max_bytes=partition_max_bytes)
                       for p, off in partitions.items()])
    if version >= 13:
        assert topic_id is not None, "Fetch v13+ needs the topic id"
        t.topic_id = topic_id
    return FetchRequest(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes,
                        max_bytes=max_bytes, isolation_level=0, session_id=0,
                        session_epoch=-1, topics=[t], forgotten_topics_data=[], rack_id="")
