"""Connection and request limits on a live broker, with Kafka's setting names:
max.connections(.per.ip, .overrides), connections.max.idle.ms, queued.max.requests,
the backpressure on a client that never reads its answers, and the rate-limited
client-error log.

The broker is a black box: what it does is read from the sockets and from /metrics.
"""
from __future__ import annotations

import os
import socket
import struct
import time
import urllib.request

import pytest
from kafka import TopicPartition

from it_clients import consumer, create_topic, producer
from itutil import (
    Reader,
    free_port,
    frame,
    kstring,
    recv_frame,
    request_header_v1,
    unique_topic,
    wait_for_close,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

CLOSE_DEADLINE = 5.0
FLOOD_REQUESTS = 100_000
MAX_FLOOD_RSS_GROWTH_KB = 64 * 1024


def scrape(port: int) -> dict[tuple, float]:
    """(name, sorted labels) -> value of the broker's /metrics."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        name, _, labels = key.partition("{")
        pairs = tuple(sorted(tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",")
                             if kv)) if labels else ()
        out[(name, tuple((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def metric(port: int, name: str, **labels) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), 0.0)


def _broker(make_broker, **config):
    mport = free_port()
    b = make_broker({"metrics.listener": f"127.0.0.1:{mport}", **config})
    b.metrics_port = mport
    # The readiness probes' connections are gone before a test counts its own.
    wait_until(lambda: metric(mport, "kafka_server_socketservermetrics_connection_count",
                              listener="PLAINTEXT") == 0, message="probe connections closed")
    return b


def api_versions(s: socket.socket, correlation_id: int = 1) -> None:
    s.sendall(frame(request_header_v1(18, 0, correlation_id)))
    data = recv_frame(s)
    assert struct.unpack_from(">ih", data) == (correlation_id, 0)


def _open(b) -> socket.socket:
    return socket.create_connection((b.host, b.port), timeout=5)


def _open_served(b) -> socket.socket:
    s = _open(b)
    try:
        api_versions(s)
    except BaseException:
        s.close()
        raise
    return s


def _assert_refused(b) -> None:
    with _open(b) as s:
        try:
            s.sendall(frame(request_header_v1(18, 0, 9)))
        except (BrokenPipeError, ConnectionResetError):
            return  # closed before we could even send
        closed, got, how = wait_for_close(s, CLOSE_DEADLINE)
    assert closed and got == b"", f"connection over the limit was served ({how}, {got[:40]!r})"


def _limit_cycle(b, limit: int, limit_name: str) -> None:
    """`limit` connections are served, the next is closed at once, and once one of them
    closes a new connection is served again."""
    socks = [_open_served(b) for _ in range(limit)]
    try:
        _assert_refused(b)
        assert metric(b.metrics_port, "kafka_server_socketservermetrics_connections_refused_total",
                      listener="PLAINTEXT", limit=limit_name) >= 1
        for s in socks:  # the connections under the limit are untouched
            api_versions(s, 2)
        socks.pop().close()

        def served_again():
            try:
                socks.append(_open_served(b))
                return True
            except (OSError, AssertionError):
                return False  # the broker has not seen the close yet
        wait_until(served_again, timeout=10, message="a connection after one closed")
        _assert_refused(b)
    finally:
        for s in socks:
            s.close()
    assert "closing connection: over a limit" in b.log_path.read_text()


@pytest.mark.parametrize("config", [
    {"max.connections.per.ip": 3},
    # 0 for every other host; 127.0.0.1 gets its own limit
    {"max.connections.per.ip": 0, "max.connections.per.ip.overrides": "127.0.0.1:3"},
], ids=["per-ip", "per-ip-override"])
def test_max_connections_per_ip(make_broker, config):
    _limit_cycle(_broker(make_broker, **config), 3, "max.connections.per.ip")


def test_max_connections(make_broker):
    _limit_cycle(_broker(make_broker, **{"max.connections": 2}), 2, "max.connections")


def test_listener_max_connections(make_broker):
    b = _broker(make_broker, **{"listener.name.plaintext.max.connections": 2})
    _limit_cycle(b, 2, "listener.max.connections")


def test_stalled_partial_frame_is_closed_after_idle_ms(make_broker):
    idle_ms = 800
    b = _broker(make_broker, **{"connections.max.idle.ms": idle_ms})
    t0 = time.monotonic()
    with _open(b) as stalled, _open_served(b) as active:
        stalled.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x00")  # 4 of 100 bytes
        # The active connection sends a request every 200 ms: never idle.
        closed = False
        while time.monotonic() - t0 < 10 and not closed:
            api_versions(active, 3)
            closed, got, how = wait_for_close(stalled, 0.2)
        elapsed = time.monotonic() - t0
        assert closed, "stalled connection still open after 10 s"
        assert got == b""
        assert elapsed >= idle_ms / 1000, f"closed after {elapsed:.2f}s, before the idle time"
        while time.monotonic() - t0 < 2 * idle_ms / 1000:
            api_versions(active, 4)  # still open well past the idle time
            time.sleep(0.2)
    assert metric(b.metrics_port, "kafka_server_socketservermetrics_idle_connections_closed_total",
                  listener="PLAINTEXT") >= 1


def _produce_and_fetch(bootstrap: str, topic: str, n: int, deadline_s: float) -> float:
    """Produce n records and read them back with kafka-python; the seconds it took."""
    t0 = time.monotonic()
    tp = TopicPartition(topic, 0)
    with producer(bootstrap) as p, consumer(bootstrap) as c:
        fs = [p.send(topic, value=b"v%d" % i, partition=0) for i in range(n)]
        p.flush(deadline_s)
        assert [f.get(0).offset for f in fs] == list(range(n))
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        wait_until(lambda: got.extend(c.poll(timeout_ms=200).get(tp, [])) or len(got) >= n,
                   timeout=deadline_s, message="records read back")
        assert [r.value for r in got] == [b"v%d" % i for i in range(n)]
    return time.monotonic() - t0


def test_client_that_never_reads_is_throttled_and_memory_stays_bounded(make_broker):
    b = _broker(make_broker)
    topic = unique_topic("never-reads")
    create_topic(b.bootstrap, topic)
    rss0 = b.rss_kb()
    one = frame(request_header_v1(18, 0, 7, "never-reads"))
    chunk = one * 1000
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # answers pile up at the broker
    s.connect((b.host, b.port))
    sent = 0
    try:
        s.settimeout(2.0)
        try:
            while sent < FLOOD_REQUESTS:
                s.sendall(chunk)
                sent += 1000
        except socket.timeout:
            pass  # the broker stopped reading this socket: backpressure reached us
        wait_until(lambda: metric(b.metrics_port,
                                  "kafka_server_socketservermetrics_paused_connections",
                                  reason="write_buffer") == 1,
                   timeout=10, message="the flooding connection paused")
        rss1 = b.rss_kb()
        # Another client's Produce and Fetch are still answered.
        took = _produce_and_fetch(b.bootstrap, topic, 20, deadline_s=15)
        rss2 = b.rss_kb()
        assert b.is_alive()
        growth = max(rss1, rss2) - rss0
        print(f"\nnever-reading client: {sent} requests sent before the broker stopped "
              f"reading; broker RSS {rss0} -> {rss1} -> {rss2} kB (+{growth} kB); "
              f"other client's produce+fetch took {took:.2f}s")
        _record("never_reads", sent=sent, rss0_kb=rss0, rss_flooded_kb=rss1,
                rss_after_witness_kb=rss2, witness_s=round(took, 2))
        assert growth < MAX_FLOOD_RSS_GROWTH_KB, f"broker RSS grew {growth} kB"
    finally:
        s.close()
    wait_until(lambda: metric(b.metrics_port, "kafka_server_socketservermetrics_paused_connections",
                              reason="write_buffer") == 0, message="paused connection gone")


def _record(name: str, **values) -> None:
    """Figures for the report, when KAFKETTE_LIMITS_FIGURES names a file."""
    path = os.environ.get("KAFKETTE_LIMITS_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(f"{name} {values}\n")


def _fetch_v4_long_poll(topic: str, max_wait_ms: int, correlation_id: int) -> bytes:
    body = struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
    body += struct.pack(">i", 1) + kstring(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20)
    return frame(request_header_v1(1, 4, correlation_id) + body)


def test_queued_max_requests_pauses_a_pipelining_connection(make_broker):
    b = _broker(make_broker, **{"queued.max.requests": 2})
    topic = unique_topic("queued")
    create_topic(b.bootstrap, topic)
    with _open(b) as s, _open_served(b) as other:
        s.settimeout(15)
        # A long poll on an empty partition, then requests that wait behind it.
        wait_ms = 5000
        t0 = time.monotonic()
        s.sendall(_fetch_v4_long_poll(topic, wait_ms, 100)
                  + b"".join(frame(request_header_v1(18, 0, 101 + i)) for i in range(5)))
        wait_until(lambda: metric(b.metrics_port,
                                  "kafka_server_socketservermetrics_paused_connections",
                                  reason="request_pool") == 1,
                   timeout=4, message="the pipelining connection paused by the pool")
        assert metric(b.metrics_port, "kafka_network_requestchannel_requestqueuesize") >= 2
        assert metric(b.metrics_port, "kafka_network_socketserver_requestpoolpauses_total") >= 1
        # A connection with nothing waiting is still served at once.
        t1 = time.monotonic()
        api_versions(other, 5)
        assert time.monotonic() - t1 < 1.0
        assert time.monotonic() - t0 < wait_ms / 1000, "the long poll ended before the checks"
        # Then everything is answered, in order, after the long poll.
        corr = [Reader(recv_frame(s)).int32() for _ in range(6)]
        assert corr == [100, 101, 102, 103, 104, 105]
        assert time.monotonic() - t0 >= wait_ms / 1000 * 0.9  # the Fetch did wait
    wait_until(lambda: metric(b.metrics_port, "kafka_network_requestchannel_requestqueuesize")
               == 0, message="queue empty")


def test_a_flood_of_bad_frames_is_logged_rate_limited_and_counted(make_broker):
    b = _broker(make_broker)
    n = 60
    for _ in range(n):
        with _open(b) as s:
            s.sendall(struct.pack(">i", -5) + b"xxxxx")
            assert wait_for_close(s, CLOSE_DEADLINE)[0]
    wait_until(lambda: metric(b.metrics_port, "kafka_server_socketservermetrics_client_errors_total",
                              kind="bad_frame") == n, message="bad frames counted")
    log = b.log_path.read_text()
    lines = log.count("closing connection: bad frame size")
    assert 1 <= lines <= 10, f"{lines} log lines for {n} bad frames"
    assert b.is_alive()


def test_tls_listener_refuses_over_the_limit_before_the_handshake(tmp_path):
    """max.connections.per.ip on an SSL listener is checked at accept, as Kafka does:
    a connection over it is closed at once, without waiting for (or costing) a TLS
    handshake; a failed handshake gives its slot back."""
    import ssl
    from kafkette.embedded import EmbeddedBroker
    mport = free_port()
    with EmbeddedBroker({"max.connections.per.ip": 1, "metrics.listener": f"127.0.0.1:{mport}"},
                        data_dir=tmp_path / "data", security="SSL") as b:
        ctx = ssl.create_default_context(cafile=b.ca_file)

        def open_tls() -> socket.socket:
            raw = _open(b)
            try:
                s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                api_versions(s)
                return s
            except BaseException:
                raw.close()
                raise

        def served_again() -> socket.socket | None:
            try:
                return open_tls()
            except (OSError, AssertionError):
                return None   # the broker has not seen the last close yet

        first = wait_until(served_again, timeout=10, message="a TLS connection served")
        try:
            # Over the limit: closed without a byte, though it never sent a ClientHello.
            with _open(b) as s:
                closed, got, how = wait_for_close(s, CLOSE_DEADLINE)
            assert closed and got == b"", (how, got[:40])
            assert metric(mport, "kafka_server_socketservermetrics_connections_refused_total",
                          listener="SSL", limit="max.connections.per.ip") >= 1
            api_versions(first, 2)   # the one under the limit is untouched
        finally:
            first.close()
        # A plaintext client on the TLS port fails its handshake and frees its slot.
        plain = wait_until(lambda: (s := _open(b)) and s, timeout=5)
        with plain:
            plain.sendall(frame(request_header_v1(18, 0, 1)))
            closed, got, how = wait_for_close(plain, CLOSE_DEADLINE)
        assert closed, how
        again = wait_until(served_again, timeout=10, message="served after a failed handshake")
        again.close()
