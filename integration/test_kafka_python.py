"""kafka-python 3 against a real kafkette process: admin, produce, consume."""
from __future__ import annotations

import collections
import os
import time

import pytest
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from kafka.partitioner.default import murmur2

from it_clients import admin, consumer, create_topic, end_offsets, producer, read_all
from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(120)


# ----------------------------------------------------------------------------- admin

def test_create_list_delete_topics(broker):
    t1, t2 = unique_topic("kp-adm"), unique_topic("kp-adm")
    with admin(broker.bootstrap) as a:
        res = a.create_topics({t1: {"num_partitions": 3, "replication_factor": 1},
                               t2: {"num_partitions": 1, "replication_factor": 1}})
        assert sorted((t["name"], t["error_code"]) for t in res["topics"]) == \
            sorted([(t1, 0), (t2, 0)])

        # usable as soon as CreateTopics returns: listed, with a leader per partition
        names = a.list_topics()
        assert t1 in names and t2 in names
        described = {t["name"]: t for t in a.describe_topics([t1, t2])}
        assert described[t1]["error_code"] == 0
        assert sorted(p["partition_index"] for p in described[t1]["partitions"]) == [0, 1, 2]
        assert sorted(p["partition_index"] for p in described[t2]["partitions"]) == [0]
        for t in (t1, t2):
            for p in described[t]["partitions"]:
                assert p["error_code"] == 0 and p["leader_id"] >= 0, p

        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics({t1: {"num_partitions": 3, "replication_factor": 1}})

        res = a.delete_topics([t1])
        assert [(t["name"], t["error_code"]) for t in res["topics"]] == [(t1, 0)]
        wait_until(lambda: t1 not in a.list_topics(), timeout=10, message=f"{t1} to disappear")
        assert t2 in a.list_topics()

        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([unique_topic("kp-never-created")])


def test_deleted_then_recreated_topic_is_empty(broker):
    t = unique_topic("kp-recreate")
    create_topic(broker.bootstrap, t, partitions=1)
    with producer(broker.bootstrap) as p:
        for i in range(5):
            p.send(t, key=b"k%d" % i, value=b"old-%d" % i, partition=0)
        p.flush(10)
    assert end_offsets(broker.bootstrap, t, [0]) == {0: 5}

    with admin(broker.bootstrap) as a:
        a.delete_topics([t])
        wait_until(lambda: t not in a.list_topics(), timeout=10, message=f"{t} to disappear")
    # recreating may briefly race the deletion; Kafka answers TopicAlreadyExists meanwhile
    wait_until(lambda: create_topic(broker.bootstrap, t, partitions=2), timeout=10,
               message=f"re-create {t}")
    assert end_offsets(broker.bootstrap, t, [0, 1]) == {0: 0, 1: 0}
    with producer(broker.bootstrap) as p:
        md = p.send(t, key=b"k", value=b"new", partition=0).get(10)
    assert md.offset == 0
    recs = read_all(broker.bootstrap, t, [0, 1])
    assert [(r.key, r.value) for r in recs[0]] == [(b"k", b"new")] and recs[1] == []


@pytest.mark.parametrize("name", ["has space", "slash/name", "star*", "a" * 250, ".."])
def test_create_invalid_topic_name_raises(broker, name):
    with admin(broker.bootstrap) as a:
        with pytest.raises(InvalidTopicError):
            a.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
        assert name not in a.list_topics()


def test_describe_configs_retention_ms(broker):
    t_default, t_custom = unique_topic("kp-cfg"), unique_topic("kp-cfg")
    create_topic(broker.bootstrap, t_default)
    create_topic(broker.bootstrap, t_custom, configs={"retention.ms": "3600000"})
    with admin(broker.bootstrap) as a:
        res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t_default),
                                  ConfigResource(ConfigResourceType.TOPIC, t_custom)],
                                 config_filter="all")
        topics = res["topic"]
        assert topics[t_default]["retention.ms"]["value"] == "604800000", \
            topics[t_default].get("retention.ms")
        assert topics[t_default]["retention.ms"]["config_source"] == "DEFAULT_CONFIG"
        assert topics[t_custom]["retention.ms"]["value"] == "3600000"
        assert topics[t_custom]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        # a describe of only the overridden keys ("modified") lists retention.ms for
        # the custom topic only
        modified = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t_default),
                                       ConfigResource(ConfigResourceType.TOPIC, t_custom)])
        assert "retention.ms" not in modified.get("topic", {}).get(t_default, {})
        assert modified["topic"][t_custom]["retention.ms"]["value"] == "3600000"


# ------------------------------------------------------------------- produce / consume

def test_keys_headers_assign_and_seek(broker):
    t = unique_topic("kp-seek")
    create_topic(broker.bootstrap, t, partitions=2)
    tp = TopicPartition(t, 1)
    sent = []
    with producer(broker.bootstrap) as p:   # idempotent by default: InitProducerId first
        assert p.config["enable_idempotence"] is True
        futures = []
        for i in range(10):
            key, value = f"key-{i}".encode(), f"value-{i}".encode() * (i + 1)
            headers = [("h-index", str(i).encode()), ("h-empty", b""), ("h-index", b"again")]
            sent.append((key, value, headers))
            futures.append(p.send(t, key=key, value=value, headers=headers, partition=1))
        p.flush(10)
        mds = [f.get(10) for f in futures]
    assert [(m.partition, m.offset) for m in mds] == [(1, i) for i in range(10)]

    with consumer(broker.bootstrap) as c:
        c.assign([tp])
        c.seek_to_beginning(tp)
        assert c.position(tp) == 0
        got = []
        wait_until(lambda: got.extend(c.poll(timeout_ms=200).get(tp, [])) or len(got) >= 10,
                   timeout=20, message="10 records")
        assert len(got) == 10
        for i, r in enumerate(got):
            key, value, headers = sent[i]
            assert (r.topic, r.partition, r.offset) == (t, 1, i)
            assert (r.key, r.value) == (key, value)
            assert [tuple(h) for h in r.headers] == headers
            assert abs(r.timestamp - time.time() * 1000) < 120_000, r.timestamp
            assert r.timestamp_type == 0   # CreateTime

        c.seek(tp, 5)
        assert c.position(tp) == 5
        after_seek = []
        wait_until(lambda: after_seek.extend(c.poll(timeout_ms=200).get(tp, [])) or after_seek,
                   timeout=10, message="records after seek(5)")
        assert [r.offset for r in after_seek] == list(range(5, 5 + len(after_seek)))
        assert after_seek[0].key == b"key-5"

        c.seek_to_end(tp)
        assert c.position(tp) == 10
        assert c.poll(timeout_ms=300).get(tp, []) == []
        with producer(broker.bootstrap) as p:
            assert p.send(t, key=b"late", value=b"v", partition=1).get(10).offset == 10
        late = []
        wait_until(lambda: late.extend(c.poll(timeout_ms=200).get(tp, [])) or late,
                   timeout=10, message="the record produced after seek_to_end")
        assert [(r.offset, r.key) for r in late] == [(10, b"late")]
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 11}
    # nothing leaked into the other partition
    assert end_offsets(broker.bootstrap, t, [0]) == {0: 0}


@pytest.mark.timeout(180)
def test_ten_thousand_keyed_records_six_partitions(broker):
    t = unique_topic("kp-10k")
    n, nkeys, nparts = 10_000, 500, 6
    create_topic(broker.bootstrap, t, partitions=nparts)
    expected = {}    # value -> (key, partition, offset) as acknowledged
    with producer(broker.bootstrap, linger_ms=10, batch_size=64 * 1024) as p:
        futures = []
        for i in range(n):
            key, value = f"key-{i % nkeys}".encode(), f"{i:06d}".encode()
            futures.append((key, value, p.send(t, key=key, value=value)))
        p.flush(60)
        for key, value, f in futures:
            md = f.get(0)
            expected[value] = (key, md.partition, md.offset)

    # the client partitions by murmur2(key) (the broker never re-partitions)
    for value, (key, part, _off) in expected.items():
        assert part == (murmur2(key) & 0x7FFFFFFF) % nparts

    recs = read_all(broker.bootstrap, t, range(nparts), timeout=90,
                    max_partition_fetch_bytes=512 * 1024)
    total = sum(len(v) for v in recs.values())
    assert total == n, {p: len(v) for p, v in recs.items()}

    seen = collections.Counter()
    key_parts = collections.defaultdict(set)
    for part, rs in recs.items():
        # offsets contiguous from 0, records in the order they were sent
        assert [r.offset for r in rs] == list(range(len(rs))), f"partition {part}"
        values = [int(r.value) for r in rs]
        assert values == sorted(values), f"partition {part} out of send order"
        for r in rs:
            seen[r.value] += 1
            key_parts[r.key].add(part)
            assert expected[r.value] == (r.key, part, r.offset), (r.value, r.key, part, r.offset)
    assert len(seen) == n and set(seen.values()) == {1}   # exactly once
    assert all(len(ps) == 1 for ps in key_parts.values())  # same key -> same partition
    assert len(key_parts) == nkeys
    assert sum(1 for rs in recs.values() if rs) == nparts  # all partitions used
    ends = end_offsets(broker.bootstrap, t, range(nparts))
    assert ends == {p: len(rs) for p, rs in recs.items()}


def test_null_keys_null_values_and_empty_bytes(broker):
    t = unique_topic("kp-null")
    create_topic(broker.bootstrap, t)
    cases = [(None, b"value-without-key"), (b"tombstone-key", None), (b"", b""),
             (b"k", b""), (b"", b"v"), (None, b"")]
    with producer(broker.bootstrap) as p:
        fs = [p.send(t, key=k, value=v, partition=0) for k, v in cases]
        p.flush(10)
        assert [f.get(0).offset for f in fs] == list(range(len(cases)))
    recs = read_all(broker.bootstrap, t, [0])[0]
    assert [(r.key, r.value) for r in recs] == cases   # None stays None, b"" stays b""
    tomb = recs[1]
    assert tomb.value is None and tomb.serialized_value_size == -1


def test_one_and_a_half_megabyte_record(make_broker):
    b = make_broker({"message.max.bytes": 3 * 1024 * 1024})
    t = unique_topic("kp-big")
    create_topic(b.bootstrap, t)
    big = os.urandom(1_500_000)
    with producer(b.bootstrap, max_request_size=4 * 1024 * 1024, batch_size=64 * 1024) as p:
        md_big = p.send(t, key=b"big", value=big, partition=0).get(30)
        md_small = p.send(t, key=b"small", value=b"x", partition=0).get(30)
    assert (md_big.offset, md_small.offset) == (0, 1)
    recs = read_all(b.bootstrap, t, [0], max_partition_fetch_bytes=4 * 1024 * 1024,
                    fetch_max_bytes=8 * 1024 * 1024)[0]
    assert [(r.offset, r.key) for r in recs] == [(0, b"big"), (1, b"small")]
    assert recs[0].value == big and recs[1].value == b"x"
    # KIP-74: a batch larger than the fetch limits still comes back (one at a time)
    recs = read_all(b.bootstrap, t, [0], max_partition_fetch_bytes=64 * 1024,
                    fetch_max_bytes=64 * 1024)[0]
    assert recs[0].value == big and [r.offset for r in recs] == [0, 1]


def test_record_over_message_max_bytes_is_refused(broker):
    """The module broker runs with Kafka's default message.max.bytes (1048588)."""
    t = unique_topic("kp-toolarge")
    create_topic(broker.bootstrap, t)
    with producer(broker.bootstrap, max_request_size=4 * 1024 * 1024,
                  delivery_timeout_ms=20000, request_timeout_ms=10000) as p:
        f = p.send(t, key=b"k", value=os.urandom(1_200_000), partition=0)
        with pytest.raises(MessageSizeTooLargeError) as ei:
            f.get(20)
    # the broker's answer (error 10), not the client's own max_request_size check
    assert "max_request_size" not in str(ei.value), ei.value
    assert end_offsets(broker.bootstrap, t, [0]) == {0: 0}
    # kafka-python 3.0.12's idempotent producer treats any non-retriable batch error as
    # fatal for the producer, so the follow-up goes through a new one
    with producer(broker.bootstrap) as p:
        assert p.send(t, key=b"k", value=b"small", partition=0).get(10).offset == 0
    assert end_offsets(broker.bootstrap, t, [0]) == {0: 1}
