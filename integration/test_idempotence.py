"""Idempotent producers against a real kafkette process whose Produce acks get lost.

A small TCP proxy sits between the clients and the broker. The broker advertises the
proxy's address (advertised.listeners), so every connection of every client goes
through it. For the first N Produce responses the proxy does not forward the answer:
the broker has appended the batch and written its response, the proxy drops it and
resets the client's connection. The client cannot know the batch is in the log and
sends it again. An idempotent producer's retry carries the same producer id, epoch and
sequence, and the broker must answer it with the original offsets instead of appending
it twice: the log holds every record exactly once, in order. Without idempotence the
same retries duplicate records, which shows the proxy really forces retries.
"""
from __future__ import annotations

import socket
import struct
import threading

import pytest
from confluent_kafka import Producer

import it_clients
from itutil import BrokerProcess, free_port, unique_topic

pytestmark = pytest.mark.timeout(180)

PRODUCE = 0
N_RECORDS = 300
N_DROPS = 3


class AckDroppingProxy:
    """127.0.0.1:<port> → 127.0.0.1:<upstream_port>, frame-aware. Requests are forwarded
    as they are (noting correlation id → api key); responses are forwarded except the
    first `drop` Produce responses, on which the client connection is reset (RST) and
    the upstream one closed, as when a network path dies after the broker answered."""

    def __init__(self, upstream_port: int, drop: int):
        self.upstream_port = upstream_port
        self.drop_left = drop
        self.dropped = 0
        self.produce_responses = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop)

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._socks += [client, upstream]
            in_flight: dict[int, int] = {}
            self._spawn(self._requests, client, upstream, in_flight)
            self._spawn(self._responses, client, upstream, in_flight)

    @staticmethod
    def _recv_frame(sock: socket.socket) -> bytes | None:
        head = AckDroppingProxy._recv_exact(sock, 4)
        if head is None:
            return None
        (size,) = struct.unpack(">i", head)
        body = AckDroppingProxy._recv_exact(sock, size)
        return None if body is None else head + body

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
        out = bytearray()
        while len(out) < n:
            try:
                chunk = sock.recv(n - len(out))
            except OSError:
                return None
            if not chunk:
                return None
            out += chunk
        return bytes(out)

    def _requests(self, client, upstream, in_flight) -> None:
        while True:
            frame = self._recv_frame(client)
            if frame is None:
                break
            api_key, _version, corr = struct.unpack_from(">hhi", frame, 4)
            with self._lock:
                in_flight[corr] = api_key
            try:
                upstream.sendall(frame)
            except OSError:
                break
        self._close(client, upstream, reset=False)

    def _responses(self, client, upstream, in_flight) -> None:
        while True:
            frame = self._recv_frame(upstream)
            if frame is None:
                break
            (corr,) = struct.unpack_from(">i", frame, 4)
            with self._lock:
                api_key = in_flight.pop(corr, None)
                drop = False
                if api_key == PRODUCE:
                    self.produce_responses += 1
                    if self.drop_left > 0:
                        self.drop_left -= 1
                        self.dropped += 1
                        drop = True
            if drop:
                self._close(client, upstream, reset=True)
                return
            try:
                client.sendall(frame)
            except OSError:
                break
        self._close(client, upstream, reset=False)

    @staticmethod
    def _close(client, upstream, reset: bool) -> None:
        # close() alone does not end a connection another thread is blocked in recv()
        # on (the kernel keeps the socket until that call returns): shutdown first.
        if reset:
            try:  # SO_LINGER 0: the final close sends RST, the client sees ECONNRESET
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.shutdown(socket.SHUT_RD)  # wakes our reader without sending FIN
            except OSError:
                pass
        for s in (client, upstream):
            try:
                if not (reset and s is client):
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close does not)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(5)


@pytest.fixture
def proxied(tmp_path):
    """(broker, proxy): the broker listens on its own port and advertises the proxy's."""
    port = free_port()
    proxy = AckDroppingProxy(port, drop=0)
    b = BrokerProcess(tmp_path / "broker", {
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}",
        "num.partitions": 1,
    }, port=port)
    b.start()
    try:
        yield b, proxy
    finally:
        proxy.close()
        if b.is_alive():
            b.stop()


def arm(proxy: AckDroppingProxy, n: int) -> None:
    with proxy._lock:
        proxy.drop_left = n


def create_topic(b: BrokerProcess, topic: str) -> None:
    # Directly at the broker: the CreateTopics answer is not what is under test.
    it_clients.create_topic(b.bootstrap, topic, partitions=1)


def read_values(b: BrokerProcess, topic: str, timeout: float = 30.0) -> list[bytes]:
    """Every record of partition 0, read through the proxy (it forwards everything
    once its drops are used up), until EOF."""
    return [v for _o, _k, v in it_clients.read_to_eof_confluent(
        b.bootstrap, topic, timeout, **{"socket.timeout.ms": 10000})]


def expected_values(n: int = N_RECORDS) -> list[bytes]:
    return [f"m-{i:05d}".encode() for i in range(n)]


def confluent_produce(proxy: AckDroppingProxy, topic: str, idempotent: bool) -> dict:
    """Produce N_RECORDS to partition 0 through the proxy; {value: offset} as reported."""
    p = Producer({
        "bootstrap.servers": f"127.0.0.1:{proxy.port}",
        "enable.idempotence": idempotent,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 25,   # several batches, several in flight when one is lost
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "message.timeout.ms": 60000,
        "socket.timeout.ms": 10000,
    })
    reported: dict[bytes, int] = {}
    errors: list = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reported[msg.value()] = msg.offset()

    for v in expected_values():
        p.produce(topic, value=v, partition=0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(90) == 0, "messages still queued after flush"
    assert errors == [], errors[:5]
    return reported


def test_confluent_idempotent_retries_are_not_duplicated(proxied):
    b, proxy = proxied
    topic = unique_topic("idem-ck")
    create_topic(b, topic)
    arm(proxy, N_DROPS)
    reported = confluent_produce(proxy, topic, idempotent=True)
    assert proxy.dropped == N_DROPS, (proxy.dropped, proxy.produce_responses)
    values = read_values(b, topic)
    assert values == expected_values(), (len(values), len(set(values)))
    # and the acks of the retried batches carried the original offsets
    assert reported == {v: i for i, v in enumerate(expected_values())}


def test_kafka_python_default_producer_retries_are_not_duplicated(proxied):
    b, proxy = proxied
    topic = unique_topic("idem-kp")
    create_topic(b, topic)
    arm(proxy, N_DROPS)
    with it_clients.producer(f"127.0.0.1:{proxy.port}", linger_ms=5, batch_size=400,
                             retry_backoff_ms=50, request_timeout_ms=10000,
                             delivery_timeout_ms=90000) as p:
        assert p.config["enable_idempotence"] is True  # kafka-python 3's default
        futures = [(v, p.send(topic, value=v, partition=0)) for v in expected_values()]
        p.flush(90)
        reported = {v: f.get(30).offset for v, f in futures}
    assert proxy.dropped == N_DROPS, (proxy.dropped, proxy.produce_responses)
    values = read_values(b, topic)
    assert values == expected_values(), (len(values), len(set(values)))
    assert reported == {v: i for i, v in enumerate(expected_values())}


def test_without_idempotence_the_same_retries_duplicate(proxied):
    """The control experiment: the proxy does force retries of appended batches."""
    b, proxy = proxied
    topic = unique_topic("plain-ck")
    create_topic(b, topic)
    arm(proxy, N_DROPS)
    confluent_produce(proxy, topic, idempotent=False)
    assert proxy.dropped == N_DROPS
    values = read_values(b, topic)
    assert set(values) == set(expected_values())
    # Each dropped response was for a request the broker had appended (the proxy only
    # drops what the broker wrote back), and the client resent it: duplicates.
    assert len(values) > N_RECORDS
    print(f"\n[idempotence] without idempotence: {len(values)} records stored for "
          f"{N_RECORDS} sent ({len(values) - N_RECORDS} duplicates) after {N_DROPS} lost acks")
