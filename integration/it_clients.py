"""kafka-python helpers shared by the integration tests (public client API only)."""
from __future__ import annotations

import time
from contextlib import contextmanager

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

def kafka_python_has_codec(codec: str) -> bool:
    import kafka.codec as kc
    return {"gzip": kc.has_gzip, "snappy": kc.has_snappy, "lz4": kc.has_lz4,
            "zstd": kc.has_zstd}[codec]()


FAST = dict(request_timeout_ms=15000, reconnect_backoff_max_ms=1000)


@contextmanager
def admin(bootstrap: str, **kw):
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="it-admin", **FAST, **kw)
    try:
        yield a
    finally:
        a.close()


@contextmanager
def producer(bootstrap: str, **kw):
    cfg = dict(client_id="it-producer", max_block_ms=15000, linger_ms=5, **FAST)
    cfg.update(kw)
    p = KafkaProducer(bootstrap_servers=bootstrap, **cfg)
    try:
        yield p
    finally:
        p.close(timeout=5)


@contextmanager
def consumer(bootstrap: str, **kw):
    cfg = dict(client_id="it-consumer", group_id=None, enable_auto_commit=False,
               auto_offset_reset="earliest", **FAST)
    cfg.update(kw)
    c = KafkaConsumer(bootstrap_servers=bootstrap, **cfg)
    try:
        yield c
    finally:
        c.close()


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None):
    with admin(bootstrap) as a:
        spec = {"num_partitions": partitions, "replication_factor": 1}
        if configs:
            spec["configs"] = configs
        res = a.create_topics({name: spec})
    errs = [(t["name"], t["error_code"]) for t in res["topics"]]
    assert errs == [(name, 0)], res
    return res


def read_partitions(c: KafkaConsumer, topic: str, partitions, timeout: float = 30.0,
                    from_offsets: dict | None = None) -> dict[int, list]:
    """Assign `partitions`, seek to the beginning (or `from_offsets`), and poll until
    every partition's position reaches the end offset read at the start."""
    tps = [TopicPartition(topic, p) for p in partitions]
    c.assign(tps)
    if from_offsets:
        for tp in tps:
            c.seek(tp, from_offsets.get(tp.partition, 0))
    else:
        c.seek_to_beginning(*tps)
    ends = c.end_offsets(tps)
    out: dict[int, list] = {tp.partition: [] for tp in tps}
    deadline = time.monotonic() + timeout
    while any(c.position(tp) < ends[tp] for tp in tps):
        if time.monotonic() > deadline:
            got = {tp.partition: (c.position(tp), ends[tp]) for tp in tps}
            raise AssertionError(f"timed out reading {topic}: (position, end) per partition: {got}")
        for tp, recs in c.poll(timeout_ms=500).items():
            out[tp.partition].extend(recs)
    return out


def read_all(bootstrap: str, topic: str, partitions, timeout: float = 30.0, **kw):
    with consumer(bootstrap, **kw) as c:
        return read_partitions(c, topic, partitions, timeout)


def end_offsets(bootstrap: str, topic: str, partitions) -> dict[int, int]:
    with consumer(bootstrap) as c:
        ends = c.end_offsets([TopicPartition(topic, p) for p in partitions])
    return {tp.partition: off for tp, off in ends.items()}
