"""Connection and request limits (server/limits.py), the client-error log limiter
(server/log_limiter.py) and the connection's backpressure, without sockets."""
from __future__ import annotations

import asyncio

import pytest

from kafkette.config import BrokerConfig, ConfigError, parse_ip_overrides
from kafkette.server.limits import (
    BROKER,
    LISTENER,
    PER_IP,
    ConnectionQuotas,
    RequestPool,
    resolve_ip_overrides,
)
from kafkette.server.log_limiter import ClientErrorLog


# ------------------------------------------------------------------ log limiter

class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class _Log:
    def __init__(self):
        self.lines = []

    def warning(self, event, **kw):
        self.lines.append(("warning", event, kw))

    def info(self, event, **kw):
        self.lines.append(("info", event, kw))

    def exception(self, event, **kw):
        self.lines.append(("exception", event, kw))


def _limiter(**kw):
    clock, out = _Clock(), _Log()
    return ClientErrorLog(out, clock=clock, **kw), clock, out


def test_limiter_logs_a_burst_per_peer_then_one_summary_per_interval():
    lim, clock, out = _limiter(burst=3, interval_s=60)
    logged = [lim.warning("bad_frame", "10.0.0.1", "closing", size=i) for i in range(10)]
    assert logged == [True] * 3 + [False] * 7
    # another peer has its own burst
    assert lim.warning("bad_frame", "10.0.0.2", "closing") is True
    assert [l[2]["size"] for l in out.lines if "size" in l[2]] == [0, 1, 2]
    clock.now += 59
    lim.flush()
    assert not any(l[1].startswith("suppressed") for l in out.lines)  # interval not over
    # another kind from the same host has its own burst
    assert lim.info("connection_refused", "10.0.0.1", "refused") is True
    assert out.lines[-1] == ("info", "refused", {"kind": "connection_refused"})
    clock.now += 1
    lim.flush()
    summaries = [l for l in out.lines if l[1].startswith("suppressed")]
    assert summaries == [("warning", "suppressed similar events from a client",
                          {"peer_host": "10.0.0.1", "kind": "bad_frame", "suppressed": 7,
                           "interval_s": 60})]
    # a new interval: logged again; the counts by kind include what was suppressed
    assert lim.warning("bad_frame", "10.0.0.1", "closing") is True
    assert lim.counts == {"bad_frame": 12, "connection_refused": 1}


def test_limiter_summarises_at_the_next_event_and_forgets_quiet_peers():
    lim, clock, out = _limiter(burst=1, interval_s=10)
    lim.warning("bad_request", "h", "e")
    lim.warning("bad_request", "h", "e")
    clock.now += 10
    assert lim.warning("bad_request", "h", "e") is True  # the old interval's summary first
    assert [l[1] for l in out.lines] == ["e", "suppressed similar events from a client", "e"]
    clock.now += 10
    lim.flush()
    assert lim._peers == {}  # nothing suppressed: no line, and the entry is gone
    assert len(out.lines) == 3


def test_limiter_tracks_a_bounded_number_of_peers():
    lim, clock, out = _limiter(burst=1, interval_s=10, max_peers=2)
    for i in range(100):
        lim.warning("bad_frame", f"10.0.0.{i}", "e")
    assert len(lim._peers) == 3  # two hosts and the shared "other peers" entry
    assert len(out.lines) == 3
    clock.now += 10
    lim.flush()
    assert out.lines[-1][2]["peer_host"] == "other peers"
    assert out.lines[-1][2]["suppressed"] == 97


# ------------------------------------------------------------------ config

def test_ip_overrides_parse():
    assert parse_ip_overrides("") == {}
    assert parse_ip_overrides("hostA:100, 127.0.0.1:200,::1:3,[fe80::1]:0") == {
        "hostA": 100, "127.0.0.1": 200, "::1": 3, "fe80::1": 0}
    for bad in ("hostA", "hostA:x", ":5", "h:-1", "h:99999999999"):
        with pytest.raises(ValueError):
            parse_ip_overrides(bad)


def test_limit_keys_are_checked_as_kafka_checks_them():
    c = BrokerConfig({"max.connections": "7", "listener.name.plaintext.max.connections": 3,
                      "max.connections.per.ip": 0,
                      "max.connections.per.ip.overrides": "127.0.0.1:2",
                      "queued.max.requests": 10, "queued.max.request.bytes": 104857600})
    assert c["max.connections"] == 7 and c.listener_value("PLAINTEXT", "max.connections") == 3
    assert c["queued.max.requests"] == 10
    with pytest.raises(ConfigError, match="overrides"):
        BrokerConfig({"max.connections.per.ip.overrides": "localhost"})
    with pytest.raises(ConfigError, match="can be set to zero only if"):
        BrokerConfig({"max.connections.per.ip": 0})
    with pytest.raises(ConfigError, match="socket.request.max.bytes"):
        BrokerConfig({"queued.max.request.bytes": 1000})
    BrokerConfig({"queued.max.request.bytes": 0})  # <= 0: unbounded, as Kafka
    with pytest.raises(ConfigError):
        BrokerConfig({"max.connections": -1})
    assert BrokerConfig({"connections.max.idle.ms": -1})["connections.max.idle.ms"] == -1


def test_overrides_resolve_host_names():
    got = resolve_ip_overrides("localhost:4,10.1.2.3:5")
    assert got["10.1.2.3"] == 5
    assert got.get("127.0.0.1") == 4 or got.get("::1") == 4
    with pytest.raises(ConfigError, match="cannot resolve"):
        resolve_ip_overrides("no-such-host.invalid:1")


def test_quotas_from_config():
    c = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0,EXTERNAL://127.0.0.1:0",
                      "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT",
                      "listener.name.external.max.connections": 5, "max.connections": 9,
                      "max.connections.per.ip.overrides": "10.0.0.9:1"})
    q = ConnectionQuotas.from_config(c, ["PLAINTEXT", "EXTERNAL"])
    assert (q.max_connections, q.per_listener, q.ip_overrides) == (9, {"EXTERNAL": 5},
                                                                   {"10.0.0.9": 1})
    assert q.protected_listener == "PLAINTEXT"   # the inter-broker listener, not alone
    assert ConnectionQuotas.from_config(BrokerConfig({}), ["PLAINTEXT"]).protected_listener is None


# ------------------------------------------------------------------ quotas

def test_per_ip_limit_and_overrides():
    q = ConnectionQuotas(per_ip=2, ip_overrides={"10.0.0.9": 0, "10.0.0.8": 3})
    assert [q.admit("L", "10.0.0.1") for _ in range(3)] == [None, None, PER_IP]
    assert q.admit("L", "::ffff:10.0.0.1") == PER_IP   # the same IPv4 host, dual stack
    assert q.admit("L", "10.0.0.9") == PER_IP
    assert [q.admit("L", "10.0.0.8") for _ in range(4)] == [None] * 3 + [PER_IP]
    q.release("L", "10.0.0.1")
    assert q.admit("L", "10.0.0.1") is None
    assert q.refused == {("L", PER_IP): 4}
    assert q.total == 5


def test_broker_and_listener_limits_and_the_protected_listener():
    q = ConnectionQuotas(max_connections=2, per_listener={"EXT": 1}, protected_listener="IB")
    assert q.admit("EXT", "a") is None
    assert q.admit("EXT", "b") == LISTENER
    assert q.admit("PLAIN", "c") is None
    assert q.admit("PLAIN", "d") == BROKER
    assert q.admit("IB", "e") is None        # over the broker-wide limit, but protected
    q.release("EXT", "a")
    assert q.by_ip == {"c": 1, "e": 1}      # released hosts are forgotten
    assert q.admit("PLAIN", "d") == BROKER  # IB's connection still counts in the total
    q.release("IB", "e")
    assert q.admit("PLAIN", "d") is None


def test_request_pool_wakes_its_waiters_when_it_has_room():
    pool = RequestPool(max_requests=3, max_bytes=100)
    woken = []

    class W:
        def pool_has_room(self):
            woken.append(self)
    w = W()
    pool.add(3, 10)
    assert pool.full
    pool.waiters.add(w)
    pool.add(0, 5)
    assert woken == []
    pool.add(-1, -5)
    assert not pool.full and woken == [w] and pool.waiters == set()
    pool.add(0, 90)
    assert pool.full  # by bytes
    assert RequestPool.from_config(BrokerConfig({})).max_bytes == 104857600
    assert RequestPool.from_config(BrokerConfig({})).max_requests == 500


# ------------------------------------------------------------------ connection

class _Transport:
    def __init__(self, conn=None, high_water=None):
        self.writes = []
        self.paused = False
        self.aborted = False
        self.conn = conn
        self.high_water = high_water
        self.buffered = 0

    def get_extra_info(self, name):
        return ("127.0.0.1", 5555) if name == "peername" else None

    def writelines(self, chunks):
        self.writes.append([bytes(c) for c in chunks])
        self.buffered += sum(len(c) for c in chunks)
        if self.high_water is not None and self.buffered > self.high_water:
            self.conn.pause_writing()

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def abort(self):
        self.aborted = True
        self.conn.connection_lost(None)

    def close(self):
        self.abort()


class _Metrics:
    def connection_opened(self, listener):
        pass

    def connection_closed(self, listener):
        pass


class _Dispatcher:
    """b"S<n>" answers at once; b"A<n>" waits for `gate`."""

    def __init__(self, gate=None):
        self.gate = gate
        self.metrics = _Metrics()
        self.broker = None

    def handle(self, frame, peer, listener, principal="User:ANONYMOUS", connection=None):
        kind, n = bytes(frame[:1]), bytes(frame[1:])
        if kind == b"S":
            return [b"r" + n]

        async def later():
            await self.gate
            return [b"r" + n]
        return later()


class _Server:
    def __init__(self, dispatcher, *, pool=None, quotas=None, idle_s=600.0):
        self.dispatcher = dispatcher
        self.max_request_bytes = 1 << 20
        self.connections = set()
        self.quotas = quotas or ConnectionQuotas()
        self.request_pool = pool or RequestPool(500, 1 << 30)
        self.client_errors = ClientErrorLog(_Log())
        self.idle_timeout_s = idle_s
        self.idle_closes = 0

    def count_idle_close(self, listener):
        self.idle_closes += 1


def _feed(conn, *payloads):
    data = b"".join(len(p).to_bytes(4, "big") + p for p in payloads)
    while data:
        buf = conn.get_buffer(len(data))
        k = min(len(buf), len(data))
        buf[:k] = data[:k]
        data = data[k:]
        conn.buffer_updated(k)


def _connect(server, high_water=None):
    from kafkette.server.connection import KafkaConnection

    conn = KafkaConnection(server, "PLAINTEXT")
    t = _Transport(conn, high_water)
    conn.connection_made(t)
    return conn, t


def test_a_client_that_does_not_read_mutes_its_connection():
    async def main():
        server = _Server(_Dispatcher())
        conn, t = _connect(server, high_water=100)
        _feed(conn, *[b"S%04d" % i for i in range(1000)])
        # Handling stopped at the first writelines past the high-water mark, in chunks of
        # WRITE_EVERY responses; the rest stay queued, unread from the socket.
        from kafkette.server.connection import WRITE_EVERY
        assert sum(map(len, t.writes)) == WRITE_EVERY
        assert t.paused and conn._pause_reason == "write_buffer"
        assert len(conn._queue) == 1000 - WRITE_EVERY
        # A muted connection's requests are bounded per connection, not in the pool.
        assert server.request_pool.requests == 0
        t.high_water = None
        conn.resume_writing()
        got = [c for w in t.writes for c in w]
        assert got == [b"r%04d" % i for i in range(1000)]
        assert not t.paused and not conn._queue and conn._queued_bytes == 0
    asyncio.run(main())


def test_a_full_request_pool_pauses_connections_with_requests_waiting():
    async def main():
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        pool = RequestPool(max_requests=3, max_bytes=1 << 30)
        server = _Server(_Dispatcher(gate), pool=pool)
        a, ta = _connect(server)
        b, tb = _connect(server)
        _feed(a, b"A1", b"S2", b"S3", b"S4")     # three wait behind A1
        assert pool.requests == 3 and pool.bytes == 6 and pool.full
        assert ta.paused and a._pause_reason == "request_pool" and a in pool.waiters
        assert pool.pauses == 1
        # A connection with nothing waiting still reads and is answered.
        _feed(b, b"S9")
        assert tb.writes == [[b"r9"]] and not tb.paused
        gate.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)
        assert [c for w in ta.writes for c in w] == [b"r1", b"r2", b"r3", b"r4"]
        assert pool.requests == 0 and pool.bytes == 0
        assert not ta.paused and a._pause_reason is None and not pool.waiters
        # Closing a connection gives its queued requests back to the pool.
        gate2 = loop.create_future()
        server.dispatcher.gate = gate2
        _feed(a, b"A5", b"S6", b"S7")
        assert pool.requests == 2
        ta.abort()
        assert pool.requests == 0 and pool.bytes == 0
        gate2.set_result(None)
        await asyncio.sleep(0)
    asyncio.run(main())


def test_connection_over_a_quota_is_closed_at_once_and_released_on_close():
    async def main():
        server = _Server(_Dispatcher(), quotas=ConnectionQuotas(per_ip=1))
        a, ta = _connect(server)
        b, tb = _connect(server)
        assert not ta.aborted and tb.aborted
        assert server.quotas.refused == {("PLAINTEXT", PER_IP): 1}
        assert server.client_errors.counts == {"connection_refused": 1}
        assert server.connections == {a}
        ta.abort()
        assert server.quotas.total == 0
        c, tc = _connect(server)
        assert not tc.aborted
        tc.abort()
    asyncio.run(main())


def test_idle_connection_with_a_partial_frame_is_closed():
    async def main():
        server = _Server(_Dispatcher(), idle_s=0.05)
        conn, t = _connect(server)
        busy, tb = _connect(server)
        conn.get_buffer(100)[:6] = b"\x00\x00\x00\x10ab"   # 16 bytes announced, 2 sent
        conn.buffer_updated(6)
        deadline = asyncio.get_running_loop().time() + 5
        while not t.aborted and asyncio.get_running_loop().time() < deadline:
            _feed(busy, b"S1")  # an active connection stays open
            await asyncio.sleep(0.01)
        assert t.aborted and not tb.aborted
        assert server.idle_closes == 1
        tb.abort()
    asyncio.run(main())


def test_negative_idle_ms_never_closes_for_idleness():
    async def main():
        server = _Server(_Dispatcher(), idle_s=-0.001)
        conn, t = _connect(server)
        assert conn._idle_timer is None
        await asyncio.sleep(0.05)
        assert not t.aborted
        t.abort()
    asyncio.run(main())
