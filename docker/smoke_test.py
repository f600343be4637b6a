"""Smoke test of the container image: produce and consume through the container's
port with kafka-python and confluent-kafka. Run by `make container-test`.

    python docker/smoke_test.py HOST:PORT
"""
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KPTopicPartition


def main(bootstrap: str) -> int:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    # kafka-python: auto-creates the topic through Metadata, idempotent producer.
    kp = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        kp.send(topic, key=b"k%d" % i, value=b"kafka-python-%d" % i).get(timeout=30)
    kp.close()
    # confluent-kafka (librdkafka), compressed.
    cp = Producer({"bootstrap.servers": bootstrap, "compression.type": "zstd"})
    for i in range(10):
        cp.produce(topic, key=b"c%d" % i, value=b"confluent-%d" % i)
    assert cp.flush(30) == 0, "confluent-kafka could not deliver"

    kc = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10000)
    kc.assign([KPTopicPartition(topic, 0)])
    kc.seek_to_beginning()
    values = [m.value for m in kc]
    kc.close()
    assert len(values) == 20, f"kafka-python read {len(values)} records, expected 20"

    cc = Consumer({"bootstrap.servers": bootstrap, "group.id": "smoke",
                   "enable.auto.commit": False})
    cc.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 20 and time.monotonic() < deadline:
        m = cc.poll(1.0)
        if m is not None and m.error() is None:
            got.append(m.value())
    cc.close()
    assert got == values, "confluent-kafka read different records than kafka-python"
    print(f"smoke test passed: 20 records through {bootstrap} with both clients")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
