"""Hostile and outdated input over raw sockets.

Every bad connection must be closed by the broker (recv -> b'' or a reset) within a
deadline, without hurting the other connections: a kafka-python producer and consumer
(the "witness") keep working before and after, and the broker process stays alive
with bounded memory.
"""
from __future__ import annotations

import socket
import struct

import pytest
from kafka import TopicPartition

from it_clients import consumer, create_topic, end_offsets, producer
from itutil import (
    Reader,
    build_record_batch,
    frame,
    kstring,
    recv_frame,
    request_header_v1,
    unique_topic,
    wait_for_close,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

CLOSE_DEADLINE = 5.0
UNSUPPORTED_VERSION = 35
MAX_RSS_GROWTH_KB = 256 * 1024


class Witness:
    """A well-behaved client on its own long-lived connections."""

    def __init__(self, bootstrap: str):
        self.topic = unique_topic("witness")
        create_topic(bootstrap, self.topic, partitions=1)
        self.tp = TopicPartition(self.topic, 0)
        self._p_cm = producer(bootstrap)
        self._c_cm = consumer(bootstrap)
        self.p = self._p_cm.__enter__()
        self.c = self._c_cm.__enter__()
        self.c.assign([self.tp])
        self.c.seek_to_beginning(self.tp)
        self.sent = 0

    def check(self, n: int = 5):
        """Produce n records and consume exactly them, in order, at the next offsets."""
        first = self.sent
        fs = [self.p.send(self.topic, key=b"w", value=b"w-%d" % (first + i), partition=0)
              for i in range(n)]
        self.p.flush(15)
        assert [f.get(0).offset for f in fs] == list(range(first, first + n))
        self.sent += n
        got = []
        wait_until(lambda: got.extend(self.c.poll(timeout_ms=200).get(self.tp, []))
                   or len(got) >= n, timeout=15, message="witness records")
        assert [(r.offset, r.value) for r in got] == \
            [(first + i, b"w-%d" % (first + i)) for i in range(n)]

    def close(self):
        self._c_cm.__exit__(None, None, None)
        self._p_cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def witness(broker):
    w = Witness(broker.bootstrap)
    w.check()
    yield w
    w.close()


def _connect(b) -> socket.socket:
    return socket.create_connection((b.host, b.port), timeout=5)


def _assert_closed_by_broker(b, data: bytes, what: str):
    rss0 = b.rss_kb()
    with _connect(b) as s:
        s.sendall(data)
        closed, got, how = wait_for_close(s, CLOSE_DEADLINE)
    assert closed, f"{what}: connection still open after {CLOSE_DEADLINE}s " \
                   f"(received {len(got)} bytes: {got[:64]!r})"
    assert b.is_alive(), f"{what}: broker died\n{b.log_tail()}"
    rss1 = b.rss_kb()
    assert rss1 - rss0 < MAX_RSS_GROWTH_KB, f"{what}: broker RSS grew {rss0} -> {rss1} kB"
    return got, how


GARBAGE = {
    "http-request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",   # length 0x47455420
    "tls-client-hello": bytes.fromhex("1603010200010001fc0303") + b"\x00" * 64,
    "negative-length": struct.pack(">i", -5) + b"xxxxx",
    "frame-shorter-than-header": struct.pack(">i", 3) + b"abc",
    "junk-frame": struct.pack(">i", 32) + b"\xde\xad\xbe\xef" * 8,
    "truncated-client-id": frame(struct.pack(">hhih", 18, 0, 1, 200) + b"abc"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_bytes_close_the_connection(broker, witness, name):
    witness.check()
    _assert_closed_by_broker(broker, GARBAGE[name], name)
    witness.check()


def test_2gb_length_prefix_closes_the_connection(broker, witness):
    witness.check()
    # the claimed 2 GB never arrive; the broker must not wait for (or allocate) them
    _assert_closed_by_broker(broker, b"\x7f\xff\xff\xff" + b"\x00" * 4096, "0x7fffffff prefix")
    witness.check()


def test_unknown_api_key_closes_the_connection(broker, witness):
    witness.check()
    got, _ = _assert_closed_by_broker(broker, frame(request_header_v1(999, 0, 77) + b"\x00" * 8),
                                      "api key 999")
    assert got == b"", f"unexpected answer to api key 999: {got[:64]!r}"
    witness.check()


def test_huge_array_count_is_refused_without_allocation(broker, witness):
    """Metadata v4 whose topics array claims 2^31-1 entries but carries none."""
    witness.check()
    rss0 = broker.rss_kb()
    payload = request_header_v1(3, 4, 78) + struct.pack(">i", 0x7FFFFFFF) + b"\x01"
    with _connect(broker) as s:
        s.sendall(frame(payload))
        closed, got, _ = wait_for_close(s, CLOSE_DEADLINE)
    # Kafka closes such a connection; an error answer would also be acceptable, as long
    # as the broker neither hangs on it nor tries to allocate the array
    assert closed or got, "no answer and no close for a bogus array count"
    assert broker.is_alive(), broker.log_tail()
    assert broker.rss_kb() - rss0 < MAX_RSS_GROWTH_KB
    witness.check()


def test_api_versions_v99_gets_unsupported_version_as_v0(broker, witness):
    witness.check()
    # header v2 (ApiVersions v3+ is flexible): v1 fields + empty tagged fields, then a
    # v3-style body (compact strings); a broker must not parse a body of a version it
    # does not know, so this must not matter
    body = b"\x03it\x041.0\x00"
    req = request_header_v1(18, 99, 4321, "hostile") + b"\x00" + body
    with _connect(broker) as s:
        s.sendall(frame(req))
        data = recv_frame(s)
        r = Reader(data)
        assert r.int32() == 4321                 # response header v0
        assert r.int16() == UNSUPPORTED_VERSION
        n = r.int32()
        assert n > 0, "KIP-511: the list of supported APIs must come with the error"
        apis = {}
        for _ in range(n):
            key, lo, hi = r.int16(), r.int16(), r.int16()
            apis[key] = (lo, hi)
        assert r.remaining() == 0, f"{r.remaining()} trailing bytes: not a v0 body"
        assert 18 in apis and apis[18][0] == 0 and apis[18][1] >= 3, apis.get(18)
        assert 0 in apis and 3 in apis and 1 in apis, sorted(apis)   # Produce, Metadata, Fetch
        # the connection stays usable: the client retries with a version we know
        s.sendall(frame(request_header_v1(18, 0, 4322)))
        r = Reader(recv_frame(s))
        assert (r.int32(), r.int16()) == (4322, 0)
    witness.check()


def _produce_request(version: int, topic: str, batches: dict[int, bytes], corr: int) -> bytes:
    body = b""
    if version >= 3:
        body += kstring(None)                                  # transactional_id
    body += struct.pack(">hi", 1, 5000)                        # acks=1, timeout
    body += struct.pack(">i", 1) + kstring(topic)
    body += struct.pack(">i", len(batches))
    for part, batch in batches.items():
        body += struct.pack(">ii", part, len(batch)) + batch
    return request_header_v1(0, version, corr) + body


def _parse_produce_response(data: bytes, corr: int) -> dict[int, tuple[int, int]]:
    r = Reader(data)
    assert r.int32() == corr
    out = {}
    for _ in range(r.int32()):
        r.string()
        for _ in range(r.int32()):
            part, err, base = r.int32(), r.int16(), r.int64()
            r.int64()                                          # log_append_time (v2+)
            out[part] = (err, base)
    r.int32()                                                  # throttle_time_ms
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in the Produce response"
    return out


def test_produce_v2_is_refused_per_partition(broker, witness):
    witness.check()
    t = unique_topic("hostile-p2")
    create_topic(broker.bootstrap, t, partitions=2)
    batch = build_record_batch([(b"k1", b"v1"), (b"k2", b"v2"), (None, b"v3")])
    with _connect(broker) as s:
        s.sendall(frame(_produce_request(2, t, {0: batch, 1: batch}, 501)))
        res = _parse_produce_response(recv_frame(s), 501)
        assert set(res) == {0, 1}
        assert all(err == UNSUPPORTED_VERSION for err, _ in res.values()), res
        assert end_offsets(broker.bootstrap, t, [0, 1]) == {0: 0, 1: 0}

        # the same batch at v3 (the Kafka 4.0 floor) on the same connection is stored
        s.sendall(frame(_produce_request(3, t, {0: batch}, 502)))
        res = _parse_produce_response(recv_frame(s), 502)
        assert res == {0: (0, 0)}, res
    assert end_offsets(broker.bootstrap, t, [0, 1]) == {0: 3, 1: 0}
    with consumer(broker.bootstrap) as c:
        tp = TopicPartition(t, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        wait_until(lambda: got.extend(c.poll(timeout_ms=200).get(tp, [])) or len(got) >= 3,
                   timeout=15, message="the v3-produced batch")
        assert [(r.offset, r.key, r.value) for r in got] == \
            [(0, b"k1", b"v1"), (1, b"k2", b"v2"), (2, None, b"v3")]
    witness.check()


def test_broker_still_alive_at_the_end(broker, witness):
    assert broker.is_alive(), broker.log_tail()
    witness.check(20)
