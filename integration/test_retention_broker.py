"""Retention and DeleteRecords against a real broker process, seen through kafka-python:
time retention (run by the broker's LogMaintenance every
log.retention.check.interval.ms) moves the earliest offset, and
KafkaAdminClient.delete_records moves it at once."""
from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.errors import OffsetOutOfRangeError

from it_clients import admin, consumer, create_topic, producer, read_partitions
from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def broker_config():
    return {"log.retention.check.interval.ms": 200}


def produce_batches(bootstrap: str, topic: str, n: int, value_size: int = 300) -> None:
    """n records, one batch each (flush after every send)."""
    with producer(bootstrap, linger_ms=0) as p:
        for i in range(n):
            p.send(topic, key=b"k%d" % i, value=bytes([65 + i % 26]) * value_size, partition=0)
            p.flush(10)


def beginning_and_end(bootstrap: str, topic: str) -> tuple[int, int]:
    tp = TopicPartition(topic, 0)
    with consumer(bootstrap) as c:
        return c.beginning_offsets([tp])[tp], c.end_offsets([tp])[tp]


def test_time_retention_moves_the_earliest_offset(broker):
    topic = unique_topic("ret")
    # Records carry the producer's clock; with retention.ms=1000 every segment is due a
    # second after its last record, the active one too (rolled first, as Kafka does).
    create_topic(broker.bootstrap, topic, configs={"retention.ms": "1000", "segment.bytes": "1024"})
    produce_batches(broker.bootstrap, topic, 8)
    assert beginning_and_end(broker.bootstrap, topic)[1] == 8
    wait_until(lambda: beginning_and_end(broker.bootstrap, topic)[0] > 0, timeout=20,
               message="retention to move the earliest offset past 0")
    # Eventually everything is gone: earliest == end, and the log goes on from there.
    wait_until(lambda: beginning_and_end(broker.bootstrap, topic) == (8, 8), timeout=20,
               message="retention to delete every segment")
    produce_batches(broker.bootstrap, topic, 1)
    with consumer(broker.bootstrap) as c:
        got = read_partitions(c, topic, [0])
    assert [r.offset for r in got[0]] == [8]


def test_delete_records_moves_the_earliest_offset(broker):
    topic = unique_topic("delrec")
    create_topic(broker.bootstrap, topic)
    produce_batches(broker.bootstrap, topic, 10, value_size=20)
    tp = TopicPartition(topic, 0)
    with admin(broker.bootstrap) as a:
        res = a.delete_records({tp: 6})
        assert res[tp]["low_watermark"] == 6
        assert res[tp]["error_code"] == 0
        with pytest.raises(OffsetOutOfRangeError):
            a.delete_records({tp: 11})
    assert beginning_and_end(broker.bootstrap, topic) == (6, 10)
    with consumer(broker.bootstrap) as c:
        got = read_partitions(c, topic, [0])
    assert [r.offset for r in got[0]] == [6, 7, 8, 9]
