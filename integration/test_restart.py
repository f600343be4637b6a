"""Durability across restarts: clean (SIGTERM) and crash (SIGKILL)."""
from __future__ import annotations

import collections
import threading
import time

import pytest
from confluent_kafka import Producer

from it_clients import admin, create_topic, end_offsets, producer, read_all
from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(150)


def _produce_keyed(bootstrap, topic, n, start=0, **kw):
    """Produce n keyed records; return [(key, value, partition, offset)] as acknowledged."""
    with producer(bootstrap, **kw) as p:
        fs = []
        for i in range(start, start + n):
            key, value = f"key-{i % 17}".encode(), f"value-{i}".encode()
            fs.append((key, value, p.send(topic, key=key, value=value)))
        p.flush(30)
        return [(k, v, f.get(0).partition, f.get(0).offset) for k, v, f in fs]


def _as_rows(recs):
    return sorted((r.key, r.value, r.partition, r.offset) for rs in recs.values() for r in rs)


def test_data_survives_sigterm_restart(fresh_broker):
    b = fresh_broker
    t1, t2 = unique_topic("rs-a"), unique_topic("rs-b")
    create_topic(b.bootstrap, t1, partitions=3)
    create_topic(b.bootstrap, t2, partitions=1, configs={"retention.ms": "86400000"})
    acked = _produce_keyed(b.bootstrap, t1, 300)
    acked2 = _produce_keyed(b.bootstrap, t2, 5)
    ends_before = end_offsets(b.bootstrap, t1, [0, 1, 2])
    assert sum(ends_before.values()) == 300
    assert sorted(acked) == _as_rows(read_all(b.bootstrap, t1, [0, 1, 2]))

    b.stop()                               # asserts exit code 0
    assert b.proc.returncode == 0
    b.start()

    with admin(b.bootstrap) as a:
        names = a.list_topics()
        assert t1 in names and t2 in names
        described = {t["name"]: t for t in a.describe_topics([t1, t2])}
        assert len(described[t1]["partitions"]) == 3
        assert len(described[t2]["partitions"]) == 1
        from kafka.admin import ConfigResource, ConfigResourceType
        cfg = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t2)],
                                 config_filter="all")
        assert cfg["topic"][t2]["retention.ms"]["value"] == "86400000"   # topic config kept
    assert end_offsets(b.bootstrap, t1, [0, 1, 2]) == ends_before
    assert _as_rows(read_all(b.bootstrap, t1, [0, 1, 2])) == sorted(acked)
    assert _as_rows(read_all(b.bootstrap, t2, [0])) == sorted(acked2)

    # new records continue the offsets of each partition
    more = _produce_keyed(b.bootstrap, t1, 60, start=300)
    per_part = collections.defaultdict(list)
    for _k, _v, p, o in more:
        per_part[p].append(o)
    for p, offs in per_part.items():
        assert offs == list(range(ends_before[p], ends_before[p] + len(offs))), p
    # a key stays in its partition across the restart
    part_of_key = {k: p for k, _v, p, _o in acked}
    assert all(part_of_key[k] == p for k, _v, p, _o in more)
    assert _as_rows(read_all(b.bootstrap, t1, [0, 1, 2])) == sorted(acked + more)

    # and a second restart still holds everything
    b.restart()
    assert _as_rows(read_all(b.bootstrap, t1, [0, 1, 2])) == sorted(acked + more)


def test_acked_data_survives_sigkill(fresh_broker):
    b = fresh_broker
    t = unique_topic("rs-kill")
    create_topic(b.bootstrap, t, partitions=2)
    acked = _produce_keyed(b.bootstrap, t, 200, acks=1, enable_idempotence=False)
    ends = end_offsets(b.bootstrap, t, [0, 1])

    assert b.kill() == -9
    b.start()

    assert end_offsets(b.bootstrap, t, [0, 1]) == ends
    assert _as_rows(read_all(b.bootstrap, t, [0, 1])) == sorted(acked)
    more = _produce_keyed(b.bootstrap, t, 20, start=200, acks=1, enable_idempotence=False)
    for _k, _v, p, o in more:
        assert o >= ends[p]
    assert _as_rows(read_all(b.bootstrap, t, [0, 1])) == sorted(acked + more)


def test_sigkill_during_produce_keeps_every_acked_record(fresh_broker):
    """Kill the broker while a producer is writing: after restart every record that
    was acknowledged is at the offset it was acknowledged with, and the log is a
    contiguous sequence of offsets (a torn tail, if any, was cut away)."""
    b = fresh_broker
    t = unique_topic("rs-kill-live")
    create_topic(b.bootstrap, t, partitions=1)
    acked = {}        # offset -> value
    failed = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[msg.offset()] = msg.value()
            else:
                failed.append((err, msg.value()))

    p = Producer({"bootstrap.servers": b.bootstrap, "acks": 1, "linger.ms": 2,
                  "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 500})
    i = 0
    deadline = time.monotonic() + 30
    while len(acked) < 2000:          # keep writing until a good share was acked
        assert time.monotonic() < deadline, f"only {len(acked)} acks in 30 s"
        try:
            p.produce(t, key=b"k%d" % (i % 7), value=b"value-%08d" % i, partition=0,
                      on_delivery=on_delivery)
            i += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    b.kill()
    with lock:
        acked_at_kill = dict(acked)

    b.start()
    assert p.flush(60) == 0            # the producer reconnects and delivers the rest
    p = None
    assert failed == [], f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    with lock:
        final_acks = dict(acked)
    recs = read_all(b.bootstrap, t, [0], timeout=60)[0]
    offsets = [r.offset for r in recs]
    assert offsets == list(range(len(recs))), "offsets are not contiguous from 0"
    stored = {r.offset: r.value for r in recs}
    missing = {o: v for o, v in acked_at_kill.items() if stored.get(o) != v}
    assert not missing, f"{len(missing)} records acknowledged before SIGKILL are lost or " \
                        f"changed, e.g. {sorted(missing.items())[:3]}"
    missing = {o: v for o, v in final_acks.items() if stored.get(o) != v}
    assert not missing, f"{len(missing)} acknowledged records are lost or changed"
    # every value the producer ever sent is there (acks=1 without idempotence may
    # duplicate a record whose ack was lost in the crash, but not lose one)
    values = {r.value for r in recs}
    assert all(b"value-%08d" % j in values for j in range(i))
