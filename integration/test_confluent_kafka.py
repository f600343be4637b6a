"""confluent-kafka (librdkafka) against a real kafkette process."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

import it_clients
from itutil import fetch_v4, parse_batch_headers, unique_topic, wait_until

pytestmark = pytest.mark.timeout(120)

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.fixture(scope="module")
def broker_config():
    return {"num.partitions": 3, "auto.create.topics.enable": "true"}


def _base(b) -> dict:
    return {"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 1000}


def _admin(b) -> AdminClient:
    return AdminClient(_base(b))


def _create(b, topic: str, partitions: int, config: dict | None = None):
    a = _admin(b)     # keep the handle alive until the future resolves
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions,
                                   replication_factor=1, config=config or {})],
                         operation_timeout=10, request_timeout=15)
    assert fs[topic].result(timeout=20) is None


class Deliveries:
    def __init__(self):
        self.ok = []      # (key, value, headers, partition, offset, timestamp)
        self.errors = []

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append((err, msg.key()))
        else:
            self.ok.append((msg.key(), msg.value(), msg.headers(), msg.partition(),
                            msg.offset(), msg.timestamp()[1]))


def _produce(b, topic: str, records, extra: dict | None = None, flush_each=False,
             timeout: float = 30.0) -> Deliveries:
    """records: iterable of dicts of Producer.produce keyword arguments."""
    conf = {**_base(b), "linger.ms": 50, "message.timeout.ms": 20000}
    conf.update(extra or {})
    p = Producer(conf)
    d = Deliveries()
    for kw in records:
        p.produce(topic, on_delivery=d, **kw)
        p.poll(0)
        if flush_each:
            assert p.flush(timeout) == 0
    assert p.flush(timeout) == 0, "messages still in the producer queue after flush"
    assert d.errors == [], d.errors[:5]
    return d


def _consumer(b, **extra) -> Consumer:
    conf = {**_base(b), "group.id": f"it-unused-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": True}
    conf.update(extra)
    return Consumer(conf)


def _consume(b, topic: str, partitions, expected: int, timeout: float = 30.0, **extra):
    """assign() from the beginning (no group protocol, no commit) and read until
    `expected` messages arrived and every partition reported EOF after its last one."""
    c = _consumer(b, **extra)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        msgs, at_eof = [], set()
        deadline = time.monotonic() + timeout
        while not (len(msgs) >= expected and at_eof == set(partitions)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: {len(msgs)}/{expected} messages, "
                                     f"EOF on {sorted(at_eof)}")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                raise AssertionError(f"consumer error: {m.error()}")
            at_eof.discard(m.partition())
            msgs.append(m)
        return msgs
    finally:
        c.close()


# --------------------------------------------------------------------------- compression

@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compressed_produce_consume(broker, codec):
    t = unique_topic(f"ck-{codec}")
    _create(broker, t, 2)
    n = 400
    recs = [dict(key=f"key-{i % 37}".encode(), value=(f"value-{i}-" + "abc" * 100).encode(),
                 headers=[("i", str(i).encode())]) for i in range(n)]
    d = _produce(broker, t, recs, {"compression.type": codec, "linger.ms": 100})
    assert len(d.ok) == n

    # delivery reports: offsets contiguous from 0 per partition, same key -> same partition
    by_part = {}
    key_part = {}
    for key, value, headers, part, off, _ts in d.ok:
        by_part.setdefault(part, []).append(off)
        assert key_part.setdefault(key, part) == part
    for part, offs in by_part.items():
        assert sorted(offs) == list(range(len(offs))), part

    headers_of = {r["value"]: r["headers"] for r in recs}
    reported = sorted((k, v, headers_of[v], p, o) for k, v, _h, p, o, _ts in d.ok)
    assert sorted((k, v) for k, v, *_ in reported) == sorted((r["key"], r["value"]) for r in recs)

    got = _consume(broker, t, [0, 1], n)
    assert len(got) == n
    consumed = sorted((m.key(), m.value(), m.headers(), m.partition(), m.offset()) for m in got)
    assert consumed == reported

    # the stored batches really are compressed with the codec (and stay intact)
    codecs_seen = set()
    for part, offs in by_part.items():
        resp = fetch_v4(broker.host, broker.port, t, part, 0)
        assert resp["error_code"] == 0 and resp["high_watermark"] == len(offs)
        batches = parse_batch_headers(resp["records"])
        assert batches and all(bh["crc_ok"] and bh["magic"] == 2 for bh in batches)
        assert sum(bh["record_count"] for bh in batches) == len(offs)
        codecs_seen |= {bh["codec"] for bh in batches}
    assert codecs_seen == {CODECS[codec]}, (
        f"stored batches use codec ids {codecs_seen}, expected {CODECS[codec]} ({codec}); "
        "librdkafka silently sends uncompressed batches when the broker's ApiVersions "
        "lacks what it ties a codec to (gzip/snappy: Produce v0; lz4: FindCoordinator v0; "
        "zstd: Produce v7 and Fetch v10)")



@pytest.mark.parametrize("codec", sorted(CODECS))
def test_kafka_python_reads_librdkafka_compressed_batches(broker, codec):
    """The broker passes compressed batches through intact: another client decodes
    what librdkafka compressed."""
    if not it_clients.kafka_python_has_codec(codec):
        pytest.skip(f"kafka-python 3 finds no {codec} library (it needs python-snappy / "
                    f"lz4 / zstandard, not cramjam)")
    t = unique_topic(f"ck-kp-{codec}")
    _create(broker, t, 2)
    recs = [dict(key=f"key-{i % 11}".encode(), value=(f"value-{i}-" + "xyz" * 50).encode(),
                 headers=[("i", str(i).encode())]) for i in range(150)]
    d = _produce(broker, t, recs, {"compression.type": codec, "linger.ms": 100})
    headers_of = {r["value"]: r["headers"] for r in recs}
    reported = sorted((k, v, headers_of[v], p, o) for k, v, _h, p, o, _ts in d.ok)
    kp = it_clients.read_all(broker.bootstrap, t, [0, 1])
    kp_rows = sorted((r.key, r.value, [tuple(h) for h in r.headers], r.partition, r.offset)
                     for rs in kp.values() for r in rs)
    assert kp_rows == reported


# --------------------------------------------------------------------- offsets / times

def test_offsets_for_times(broker):
    t = unique_topic("ck-times")
    _create(broker, t, 1)
    t0 = int(time.time() * 1000) - 3_600_000
    first = [dict(key=b"k%d" % i, value=b"v%d" % i, partition=0, timestamp=t0 + i * 1000)
             for i in range(10)]
    rest = [dict(key=b"k%d" % i, value=b"v%d" % i, partition=0, timestamp=t0 + i * 1000)
            for i in range(10, 20)]
    _produce(broker, t, first, {"linger.ms": 200})        # few batches
    _produce(broker, t, rest, flush_each=True)            # one batch per record

    msgs = _consume(broker, t, [0], 20)
    assert [(m.offset(), m.timestamp()) for m in msgs] == \
        [(i, (TIMESTAMP_CREATE_TIME, t0 + i * 1000)) for i in range(20)]

    c = _consumer(broker)
    try:
        cases = [(t0 - 60_000, 0), (t0, 0), (t0 + 1, 1), (t0 + 5000, 5), (t0 + 5500, 6),
                 (t0 + 9999, 10), (t0 + 12_000, 12), (t0 + 12_001, 13), (t0 + 19_000, 19),
                 (t0 + 19_001, -1)]
        for target, want in cases:
            res = c.offsets_for_times([TopicPartition(t, 0, target)], timeout=10)
            assert len(res) == 1 and res[0].error is None, res
            assert res[0].offset == want, f"timestamp {target - t0:+d} ms: got offset " \
                                          f"{res[0].offset}, want {want}"
    finally:
        c.close()


def test_get_watermark_offsets(broker):
    t = unique_topic("ck-wm")
    _create(broker, t, 2)
    c = _consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False) == (0, 0)
        _produce(broker, t, [dict(key=b"k", value=b"v%d" % i, partition=0) for i in range(7)])
        _produce(broker, t, [dict(value=b"w", partition=1)], flush_each=True)
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False) == (0, 7)
        assert c.get_watermark_offsets(TopicPartition(t, 1), timeout=10, cached=False) == (0, 1)
    finally:
        c.close()


# --------------------------------------------------------------------------------- admin

def test_admin_create_list_delete(broker):
    a = _admin(broker)
    t1, t2 = unique_topic("ck-adm"), unique_topic("ck-adm")
    fs = a.create_topics([NewTopic(t1, num_partitions=4, replication_factor=1),
                          NewTopic(t2, num_partitions=1, replication_factor=1,
                                   config={"retention.ms": "7200000"})],
                         operation_timeout=10, request_timeout=15)
    for f in fs.values():
        assert f.result(timeout=20) is None

    md = a.list_topics(timeout=10)
    assert md.orig_broker_id >= 0
    assert len(md.brokers) == 1
    (bm,) = md.brokers.values()
    assert (bm.host, bm.port) == (broker.host, broker.port)
    for t, n in ((t1, 4), (t2, 1)):
        tm = md.topics[t]
        assert tm.error is None
        assert sorted(tm.partitions) == list(range(n))
        for pm in tm.partitions.values():
            assert pm.error is None and pm.leader == bm.id and pm.replicas == [bm.id]

    fs = a.create_topics([NewTopic(t1, num_partitions=4, replication_factor=1)],
                         request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[t1].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # DescribeConfigs through librdkafka: default and overridden retention.ms
    res = a.describe_configs([ConfigResource(ResourceType.TOPIC, t1),
                              ConfigResource(ResourceType.TOPIC, t2)], request_timeout=15)
    cfgs = {r.name: f.result(timeout=20) for r, f in res.items()}
    assert cfgs[t1]["retention.ms"].value == "604800000"
    assert cfgs[t1]["retention.ms"].is_default
    assert cfgs[t2]["retention.ms"].value == "7200000"
    assert not cfgs[t2]["retention.ms"].is_default

    fs = a.delete_topics([t1], operation_timeout=10, request_timeout=15)
    assert fs[t1].result(timeout=20) is None
    wait_until(lambda: t1 not in a.list_topics(timeout=10).topics, timeout=10,
               message=f"{t1} to disappear")
    assert t2 in a.list_topics(timeout=10).topics


def test_produce_to_auto_created_topic(broker):
    t = unique_topic("ck-auto")
    assert t not in _admin(broker).list_topics(timeout=10).topics
    d = _produce(broker, t, [dict(key=b"key-%d" % i, value=b"value-%d" % i) for i in range(30)])
    assert len(d.ok) == 30
    md = _admin(broker).list_topics(topic=t, timeout=10)
    assert md.topics[t].error is None
    assert sorted(md.topics[t].partitions) == [0, 1, 2]     # num.partitions=3
    got = _consume(broker, t, [0, 1, 2], 30)
    assert sorted((m.key(), m.value()) for m in got) == \
        sorted((b"key-%d" % i, b"value-%d" % i) for i in range(30))


def test_metadata_request_does_not_auto_create_when_disabled(make_broker):
    b = make_broker({"auto.create.topics.enable": "false"})
    t = unique_topic("ck-noauto")
    p = Producer({**_base(b), "message.timeout.ms": 3000})
    errors = []
    p.produce(t, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert t not in _admin(b).list_topics(timeout=10).topics
