"""Client quotas (KIP-13, KIP-219) against real brokers: kafka-configs.sh sets and
describes them (AlterClientQuotas / DescribeClientQuotas); confluent-kafka (librdkafka)
producers and consumers held to producer_byte_rate / consumer_byte_rate, their
measured rate compared with the quota and the throttle times the broker sent them;
a quota set through one node of a 3-node cluster is in every node's metadata image.

The rates are measured over RUN_S seconds from the start: Kafka's sampled rate
(quota.window.num=11 x 1 s, never less than 10 s of window) lets a new client send
about 10 s worth of quota before the first throttle, and a greedy client then moves
in bursts as the oldest samples expire, so a short run measures the burst, not the
quota (tests/test_quotas.py simulates this).
"""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

import pytest

from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(300)
PY = sys.executable
QUOTA = 102_400          # bytes per second
RUN_S = 33.0
VALUE = b"q" * 1000


def tool(*args):
    r = subprocess.run([PY, "-m", "kafkette.tools.kafka_configs", *args],
                       capture_output=True, text=True, timeout=60)
    return r


def ok(r) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def broker_config() -> dict:
    return {"num.partitions": 1, "group.initial.rebalance.delay.ms": 0}


def test_kafka_configs_sets_and_describes_quotas(broker):
    bs = ["--bootstrap-server", broker.bootstrap]
    assert ok(tool(*bs, "--alter", "--entity-type", "clients", "--entity-name", "tool-c",
                   "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152")) \
        == "Completed updating config for client tool-c.\n"
    assert ok(tool(*bs, "--alter", "--entity-type", "users", "--entity-default",
                   "--entity-type", "clients", "--entity-name", "tool-c",
                   "--add-config", "request_percentage=50")) == \
        "Completed updating config for user-principal the default, client-id 'tool-c'.\n"
    assert ok(tool(*bs, "--describe", "--entity-type", "clients", "--entity-name", "tool-c")) \
        == ("Quota configs for client-id 'tool-c' are consumer_byte_rate=2097152.0, "
            "producer_byte_rate=1048576.0\n")
    assert ok(tool(*bs, "--describe", "--entity-type", "users", "--entity-type", "clients")) \
        == ("Quota configs for user-principal the default, client-id 'tool-c' are "
            "request_percentage=50.0\n")
    ok(tool(*bs, "--alter", "--entity-type", "clients", "--entity-name", "tool-c",
            "--delete-config", "consumer_byte_rate"))
    assert ok(tool(*bs, "--describe", "--entity-type", "clients")) == \
        "Quota configs for client-id 'tool-c' are producer_byte_rate=1048576.0\n"
    r = tool(*bs, "--alter", "--entity-type", "users", "--entity-name", "u",
             "--add-config", "no_such_quota=1")
    assert r.returncode == 1 and "Invalid configuration key no_such_quota" in r.stderr


def test_kafka_configs_alters_a_users_scram_credentials_and_quotas_together(broker):
    """As Kafka's ConfigCommand: SCRAM-* keys and quota keys of one user in one command
    (two requests), and a describe of the user prints the quota, then the credentials."""
    bs = ["--bootstrap-server", broker.bootstrap]
    assert ok(tool(*bs, "--alter", "--entity-type", "users", "--entity-name", "mixed",
                   "--add-config", "SCRAM-SHA-256=[iterations=4096,password=pw],"
                                   "producer_byte_rate=2048")) == \
        "Completed updating config for user mixed.\n"
    assert ok(tool(*bs, "--describe", "--entity-type", "users", "--entity-name", "mixed")) == (
        "Quota configs for user-principal 'mixed' are producer_byte_rate=2048.0\n"
        "SCRAM credential configs for user-principal 'mixed' are "
        "SCRAM-SHA-256=iterations=4096\n")
    assert ok(tool(*bs, "--alter", "--entity-type", "users", "--entity-name", "mixed",
                   "--delete-config", "SCRAM-SHA-256,producer_byte_rate")) == \
        "Completed updating config for user mixed.\n"
    assert ok(tool(*bs, "--describe", "--entity-type", "users", "--entity-name", "mixed")) == ""


def _set_quota(broker, entity_type, name, key):
    ok(tool("--bootstrap-server", broker.bootstrap, "--alter", "--entity-type", entity_type,
            "--entity-name", name, "--add-config", f"{key}={QUOTA}"))


def test_producer_held_to_producer_byte_rate(broker):
    from confluent_kafka import Producer
    topic = unique_topic("quota-p")
    _set_quota(broker, "clients", "quota-producer", "producer_byte_rate")
    throttles = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "quota-producer",
                  "linger.ms": 5, "batch.size": 16384, "queue.buffering.max.messages": 500,
                  "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    delivered = [0]

    def done(err, msg):
        if err is None:
            delivered[0] += len(msg.value())
    t0 = time.monotonic()
    while time.monotonic() - t0 < RUN_S:
        try:
            p.produce(topic, VALUE, callback=done)
        except BufferError:
            p.poll(0.05)
        p.poll(0)
    elapsed = time.monotonic() - t0
    sent_by_deadline = delivered[0]
    p.purge()
    p.flush(30)
    rate = sent_by_deadline / elapsed
    print(f"\nproducer_byte_rate={QUOTA} B/s: measured {rate:.0f} B/s of record values "
          f"over {elapsed:.1f} s ({rate / QUOTA:.2f} x quota); {len(throttles)} throttled "
          f"answers, max {max(throttles, default=0):.3f} s")
    assert throttles and max(throttles) > 0
    assert 0.8 * QUOTA <= rate <= 1.2 * QUOTA


def test_consumer_held_to_consumer_byte_rate(broker):
    from confluent_kafka import Consumer, Producer
    topic = unique_topic("quota-c")
    # Small batches: a fetch returns whole batches, the unit the quota can act on.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "batch.size": 16384})
    total = int(QUOTA * (RUN_S + 15))
    for _ in range(total // len(VALUE)):
        while True:
            try:
                p.produce(topic, VALUE)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    _set_quota(broker, "clients", "quota-consumer", "consumer_byte_rate")
    throttles = []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "client.id": "quota-consumer",
                  "group.id": "quota-g", "auto.offset.reset": "earliest",
                  "max.partition.fetch.bytes": 65536, "fetch.max.bytes": 1048576,
                  "message.max.bytes": 1048576,
                  "queued.max.messages.kbytes": 128,
                  "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    c.subscribe([topic])
    got = 0
    t0 = None
    try:
        while True:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                if t0 is None:
                    t0 = time.monotonic()  # from the first record: joining is not fetching
                got += len(msg.value())
            if t0 is not None and time.monotonic() - t0 >= RUN_S:
                break
            assert t0 is not None or len(throttles) < 1000
    finally:
        elapsed = time.monotonic() - t0 if t0 else 0
        c.close()
    rate = got / elapsed
    print(f"\nconsumer_byte_rate={QUOTA} B/s: measured {rate:.0f} B/s of record values "
          f"over {elapsed:.1f} s ({rate / QUOTA:.2f} x quota); {len(throttles)} throttled "
          f"answers, max {max(throttles, default=0):.3f} s")
    assert got < total, "the consumer read everything: the quota did not hold it back"
    assert throttles and max(throttles) > 0
    assert 0.8 * QUOTA <= rate <= 1.2 * QUOTA


def test_quota_set_on_one_node_applies_on_all(tmp_path_factory):
    from kafkette.embedded_cluster import EmbeddedCluster
    from kafkette.protocol.messages import DescribeClientQuotasRequest as D
    from kafkette.tools.client import AdminClient
    logs = tmp_path_factory.mktemp("quota-cluster-logs")
    with EmbeddedCluster(3, {}, log_dir=logs) as kc:
        first = kc.brokers[0]
        ok(tool("--bootstrap-server", first.bootstrap_servers, "--alter", "--entity-type",
                "users", "--entity-name", "alice", "--add-config", "producer_byte_rate=4096"))
        req = D(components=[D.ComponentData(entity_type="user", match_type=0, match="alice")],
                strict=True)
        for node in kc.brokers:
            with AdminClient(node.bootstrap_servers) as admin:
                def seen():
                    r = admin.request(req, node=(node.host, node.port))
                    return [(e.entity[0].entity_name, [(v.key, v.value) for v in e.values])
                            for e in r.entries or []] or None
                assert wait_until(seen, 30, message=f"quota on node {node.node_id}") == \
                    [("alice", [("producer_byte_rate", 4096.0)])]
        # ... and enforced there: set through the first node, a producer to a
        # partition led by the last one is throttled by the last one.
        topic = unique_topic("quota-cl")
        from confluent_kafka import Producer
        throttles = []
        last = kc.brokers[-1]
        r = subprocess.run([PY, "-m", "kafkette.tools.kafka_topics", "--bootstrap-server",
                            kc.bootstrap_servers, "--create", "--topic", topic,
                            "--replica-assignment", str(last.node_id)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        ok(tool("--bootstrap-server", first.bootstrap_servers, "--alter", "--entity-type",
                "clients", "--entity-name", "cl-p", "--add-config", "producer_byte_rate=4096"))
        p = Producer({"bootstrap.servers": kc.bootstrap_servers, "client.id": "cl-p",
                      "throttle_cb": lambda e: throttles.append(e)})
        for _ in range(80):   # 80 KB: twice the 10 s worth a new client may send at once
            p.produce(topic, VALUE)

        def throttled():
            p.poll(0.1)
            return throttles
        assert wait_until(throttled, 60, message="a throttled produce answer")
        assert {e.broker_id for e in throttles} == {last.node_id}
        p.purge()
        p.flush(10)


def _produce_frame(topic, value_size, version, corr, client_id):
    from kafkette.protocol.headers import encode_request_header
    from kafkette.protocol.messages import ProduceRequest
    from kafkette.protocol.primitives import Writer
    from kafkette.protocol.records import build_batch
    TD, PD = ProduceRequest.TopicProduceData, ProduceRequest.TopicProduceData.PartitionProduceData
    req = ProduceRequest(transactional_id=None, acks=1, timeout_ms=5000, topic_data=[
        TD(name=topic, partition_data=[PD(index=0, records=build_batch(
            [(None, b"m" * value_size, [])], timestamp_ms=int(time.time() * 1000)))])])
    w = Writer()
    req.write(w, version)
    body = encode_request_header(0, version, corr, client_id) + w.getvalue()
    return struct.pack(">i", len(body)) + body


def _throttle_of(frame_bytes, version):
    from kafkette.protocol.messages import ProduceResponse
    from kafkette.protocol.primitives import Reader
    r = Reader(memoryview(frame_bytes)[4:])  # past the correlation id
    if version >= 9:
        r.skip_tagged_fields()
    return ProduceResponse.read(r, version).throttle_time_ms


@pytest.mark.parametrize("version", [9, 5])
def test_broker_mutes_a_client_that_ignores_throttling(broker, version):
    """A client that pipelines requests and ignores throttle_time_ms: at KIP-219 versions
    the broker answers the throttled request at once and then reads nothing from the
    connection for throttle_time_ms; at older ones the throttled answer itself waits."""
    from itutil import recv_frame
    topic = unique_topic("quota-mute")
    client = f"mute-{version}"
    ok(tool("--bootstrap-server", broker.bootstrap, "--alter", "--entity-type", "clients",
            "--entity-name", client, "--add-config", "producer_byte_rate=10000"))
    # Create the topic (auto-creation on the first produce may answer an error first).
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, b"x")
    assert p.flush(30) == 0
    with socket.create_connection((broker.host, broker.port), timeout=30) as s:
        # 60 KB: 6 KB/s over the 10 s window; 60 KB more: 12 KB/s, 20 % over -> ~2 s.
        frames = [_produce_frame(topic, 60_000, version, 1, client),
                  _produce_frame(topic, 60_000, version, 2, client),
                  _produce_frame(topic, 10, version, 3, client)]
        t_sent = time.monotonic()
        s.sendall(b"".join(frames))
        got = []
        for _ in frames:
            data = recv_frame(s)
            got.append((time.monotonic() - t_sent, _throttle_of(data, version)))
    (t1, th1), (t2, th2), (t3, th3) = got
    print(f"\nProduce v{version}: answers at {t1:.2f} s, {t2:.2f} s, {t3:.2f} s; "
          f"throttle_time_ms {th1}, {th2}, {th3}")
    assert th1 == 0 and 1500 <= th2 <= 2500
    if version >= 6:
        assert t2 < 1.0, "KIP-219: the throttled answer is sent at once"
        assert t3 - t2 >= th2 / 1000 - 0.1, "the connection was not muted"
    else:
        assert t2 >= th2 / 1000 - 0.1, "the throttled answer was not delayed"
