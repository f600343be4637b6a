"""A compacted topic refuses records without a key, as Kafka's log validator does:
INVALID_RECORD with KIP-467 per-record errors, seen through librdkafka (confluent-kafka)
and kafka-python, for a lone keyless record and for a batch that mixes keyed and
keyless records; the keyed records of other batches are written, and a topic that is
not compacted takes keyless records."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaError as CkError, Producer
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError as KpInvalidRecord

from it_clients import create_topic, read_all
from itutil import unique_topic

pytestmark = pytest.mark.timeout(120)

KAFKA_MESSAGE = "Compacted topic cannot accept message without key in topic partition"


def test_confluent_kafka_gets_invalid_record_for_keyless_records(broker):
    t = unique_topic("cmpkeys-ck")
    create_topic(broker.bootstrap, t, configs={"cleanup.policy": "compact"})
    results = {}

    def report(err, msg):
        results[msg.value()] = err
    # linger.ms: the three records of the second round go in one batch.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200,
                  "enable.idempotence": False, "retries": 0})
    p.produce(t, key=b"k0", value=b"keyed-alone", partition=0, on_delivery=report)
    assert p.flush(10) == 0
    p.produce(t, value=b"keyless-alone", partition=0, on_delivery=report)
    assert p.flush(10) == 0
    for v, k in ((b"mixed-1", b"k1"), (b"mixed-2", None), (b"mixed-3", b"k3")):
        p.produce(t, key=k, value=v, partition=0, on_delivery=report)
    assert p.flush(10) == 0
    assert results[b"keyed-alone"] is None
    assert results[b"keyless-alone"].code() == CkError.INVALID_RECORD
    # The batch is refused as a whole (Kafka's validator fails the batch); the client
    # reports each record with its own error.
    assert {v: e.code() if e else None for v, e in results.items() if v.startswith(b"mixed")} \
        == {b"mixed-1": CkError.INVALID_RECORD, b"mixed-2": CkError.INVALID_RECORD,
            b"mixed-3": CkError.INVALID_RECORD}
    print("\nlibrdkafka's errors:", {v: e.str() for v, e in results.items() if e})
    assert [r.value for r in read_all(broker.bootstrap, t, [0])[0]] == [b"keyed-alone"]


def test_kafka_python_gets_invalid_record_naming_the_keyless_record(broker):
    t = unique_topic("cmpkeys-kp")
    create_topic(broker.bootstrap, t, configs={"cleanup.policy": "compact"})
    with KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0, linger_ms=200) as p:
        assert p.send(t, key=b"k0", value=b"keyed", partition=0).get(10).offset == 0
        with pytest.raises(KpInvalidRecord) as e:
            p.send(t, value=b"keyless", partition=0).get(10)
        assert KAFKA_MESSAGE in str(e.value), str(e.value)
        mixed = [p.send(t, key=k, value=v, partition=0)
                 for v, k in ((b"m1", b"k1"), (b"m2", None), (b"m3", b"k3"))]
        p.flush(10)
        errors = [f.exception for f in mixed]
        print("\nkafka-python's errors:", [str(x) for x in errors])
        # KIP-467: the keyless record fails with Kafka's message for it; its keyed
        # neighbours fail with the client's "part of a batch" error (nothing of the
        # batch was written).
        assert isinstance(errors[1], KpInvalidRecord) and KAFKA_MESSAGE in str(errors[1])
        for x in (errors[0], errors[2]):
            assert x is not None and not isinstance(x, KpInvalidRecord), x
            assert "part of a batch" in str(x), x
    assert [r.value for r in read_all(broker.bootstrap, t, [0])[0]] == [b"keyed"]


def test_keyless_records_on_a_topic_that_is_not_compacted(broker):
    t = unique_topic("delkeys")
    create_topic(broker.bootstrap, t)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    errs = []
    for i in range(3):
        p.produce(t, value=b"v%d" % i, partition=0, on_delivery=lambda e, m: errs.append(e))
    assert p.flush(10) == 0 and errs == [None, None, None]
