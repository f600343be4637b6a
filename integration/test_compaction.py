"""Log compaction in a real broker: the log cleaner (run by LogMaintenance every
log.cleaner.backoff.ms) compacts a `cleanup.policy=compact` topic while stock clients
produce to it and read it from the beginning."""
from __future__ import annotations

import collections

import pytest

from it_clients import (create_topic, kafka_python_has_codec, producer, read_all,
                        read_to_eof_confluent)
from itutil import PROJECT_ROOT, unique_topic, wait_until

pytestmark = pytest.mark.timeout(180)

KEYS = [f"key-{i}".encode() for i in range(5)]
UPDATES = 2000


def _maintenance_started() -> bool:
    src = (PROJECT_ROOT / "kafkette" / "server" / "server.py").read_text()
    return "maintenance.start()" in src


@pytest.fixture
def compacting_broker(make_broker):
    if not _maintenance_started():
        pytest.skip("kafkette/server/server.py does not start LogMaintenance yet, so nothing "
                    "runs the log cleaner in a real broker")
    return make_broker({"log.cleaner.backoff.ms": "200"})


def _snapshot(bootstrap, topic):
    recs = read_all(bootstrap, topic, [0])[0]
    per_key = collections.Counter(r.key for r in recs)
    last = {r.key: (r.offset, r.value) for r in recs}
    return recs, per_key, last


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_cleaner_keeps_the_latest_value_per_key(compacting_broker, compression):
    if compression and not kafka_python_has_codec(compression):
        pytest.skip(f"kafka-python has no {compression} codec here")
    b = compacting_broker
    t = unique_topic("compact")
    # Small segments that also roll by time, so that the last updates leave the active
    # segment once later records arrive; any dirty byte makes the log cleanable.
    create_topic(b.bootstrap, t, configs={
        "cleanup.policy": "compact", "segment.bytes": "16384", "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "500"})
    acked: dict[bytes, tuple[int, bytes]] = {}
    # batch_size well below segment.bytes: a produce request larger than a segment is
    # refused (RECORD_LIST_TOO_LARGE), as in Kafka.
    with producer(b.bootstrap, compression_type=compression, linger_ms=2, batch_size=4096) as p:
        fs = []
        for i in range(UPDATES):
            k, v = KEYS[i % len(KEYS)], f"value-{i}".encode()
            fs.append((k, v, p.send(t, key=k, value=v, partition=0)))
        p.flush(30)
        for k, v, f in fs:
            acked[k] = (f.get(10).offset, v)  # in offset order: the last one wins

    ticks = [0]

    with producer(b.bootstrap) as tick_producer:
        def tick():
            # A record of another key: the active segment rolls (segment.ms) and what was
            # in it becomes cleanable. Kafka needs the same: it never cleans the active
            # segment.
            ticks[0] += 1
            tick_producer.send(t, key=b"tick", value=b"%d" % ticks[0], partition=0)
            tick_producer.flush(10)

        def compacted():
            tick()
            recs, per_key, last = _snapshot(b.bootstrap, t)
            if all(per_key[k] <= 2 for k in KEYS) and all(last.get(k) == acked[k] for k in KEYS):
                return recs
            return None

        recs = wait_until(compacted, timeout=90, interval=0.2,
                          message="the log cleaner to compact the topic to the latest value per key")
        offsets = [r.offset for r in recs]
        assert offsets == sorted(set(offsets))
        assert len(recs) < UPDATES // 10
        # Offsets are never changed by compaction: each latest value is where it was acked.
        for k in KEYS:
            assert [(r.offset, r.value) for r in recs if r.key == k][-1] == acked[k]

        # A tombstone deletes a key: kept for delete.retention.ms after the cleaning
        # that first sees it, then removed by a later cleaning.
        with producer(b.bootstrap) as p:
            tomb_offset = p.send(t, key=KEYS[0], value=None, partition=0).get(10).offset

        def tombstone_seen():
            tick()
            _recs, _per_key, last = _snapshot(b.bootstrap, t)
            return last.get(KEYS[0]) == (tomb_offset, None) and _per_key[KEYS[0]] == 1

        wait_until(tombstone_seen, timeout=60, interval=0.2,
                   message="the old values of the deleted key to be cleaned away")

        def key_gone():
            tick()
            _recs, per_key, _last = _snapshot(b.bootstrap, t)
            return per_key[KEYS[0]] == 0

        wait_until(key_gone, timeout=60, interval=0.3,
                   message="the tombstone to be removed after delete.retention.ms")

    # The cleaned log survives a restart as it is. The cleaner still runs until the
    # stop and may drop an older record (a superseded "tick") between this snapshot and
    # the stop, so the log after the restart must be a part of the log before it, with
    # the same latest record for every key. The broker comes back with the cleaner off,
    # so that the two reads below see the same log.
    recs_before, _pk, last_before = _snapshot(b.bootstrap, t)
    b.config["log.cleaner.enable"] = "false"
    b.restart()
    recs_after, per_key, last_after = _snapshot(b.bootstrap, t)
    triples_after = [(r.offset, r.key, r.value) for r in recs_after]
    assert set(triples_after) <= {(r.offset, r.key, r.value) for r in recs_before}
    assert [o for o, _k, _v in triples_after] == sorted({o for o, _k, _v in triples_after})
    assert last_after == last_before
    for k in KEYS[1:]:
        assert last_after[k] == acked[k]
    assert per_key[KEYS[0]] == 0
    assert read_to_eof_confluent(b.bootstrap, t) == [(r.offset, r.key, r.value) for r in recs_after]
