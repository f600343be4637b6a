"""kcat (Debian's, on librdkafka 2.0.2: older and pickier) against kafkette."""
from __future__ import annotations

import collections
import re
import shutil
import subprocess
import time

import pytest

from it_clients import create_topic, read_all
from itutil import unique_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = [pytest.mark.skipif(KCAT is None, reason="kcat not installed"),
              pytest.mark.timeout(120)]


def kcat(b, *args, stdin: str | None = None, timeout: float = 40.0) -> subprocess.CompletedProcess:
    cmd = [KCAT, "-b", b.bootstrap, "-X", "socket.timeout.ms=10000", *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\nstdout:\n{r.stdout[-2000:]}\n" \
                              f"stderr:\n{r.stderr[-4000:]}"
    return r


def test_kcat_metadata_lists_broker_and_topic(broker):
    t = unique_topic("kcat-md")
    create_topic(broker.bootstrap, t, partitions=3)
    out = kcat(broker, "-L").stdout
    assert re.search(rf"^\s*1 brokers:\s*$", out, re.M), out
    assert re.search(rf"broker \d+ at {re.escape(broker.host)}:{broker.port}\b", out), out
    assert f'topic "{t}" with 3 partitions:' in out, out
    # only the named topic, with a leader per partition and no errors
    out = kcat(broker, "-L", "-t", t).stdout
    assert f'topic "{t}" with 3 partitions:' in out
    parts = re.findall(r"partition (\d+), leader (\d+), replicas: (\S+), isrs: (\S+)", out)
    assert sorted(int(p[0]) for p in parts) == [0, 1, 2], out
    assert "Broker:" not in out and "error" not in out.lower(), out


@pytest.mark.parametrize("compression", [None, "snappy"])
def test_kcat_produce_keys_and_consume_back(broker, compression):
    t = unique_topic("kcat-pc")
    create_topic(broker.bootstrap, t, partitions=3)
    lines = [f"key-{i % 13}:value {i} with spaces:and:colons" for i in range(200)]
    args = ["-P", "-t", t, "-K:"]
    if compression:
        args += ["-z", compression]
    kcat(broker, *args, stdin="\n".join(lines) + "\n")

    r = kcat(broker, "-C", "-t", t, "-e", "-o", "beginning", "-f", "%k=%s\n")
    got = r.stdout.splitlines()
    want = [ln.replace(":", "=", 1) for ln in lines]
    assert collections.Counter(got) == collections.Counter(want)

    # per partition: offsets contiguous from 0, a key always in one partition, and each
    # key's values in the order they were written
    r = kcat(broker, "-C", "-t", t, "-e", "-o", "beginning", "-f", "%p %o %k %s\n")
    rows = [ln.split(" ", 3) for ln in r.stdout.splitlines()]
    offsets = collections.defaultdict(list)
    key_parts = collections.defaultdict(set)
    key_values = collections.defaultdict(list)
    for p, o, k, v in rows:
        offsets[int(p)].append(int(o))
        key_parts[k].add(int(p))
        key_values[k].append(int(v.split(" ")[1]))
    for p, offs in offsets.items():
        assert offs == list(range(len(offs))), p
    assert all(len(ps) == 1 for ps in key_parts.values())
    assert all(vs == sorted(vs) for vs in key_values.values())

    # another client reads what kcat wrote (kafka-python for plain batches; it has no
    # snappy library here, so confluent-kafka 2.x for compressed ones)
    if compression is None:
        kp = read_all(broker.bootstrap, t, [0, 1, 2])
        other = [f"{r.key.decode()}={r.value.decode()}" for rs in kp.values() for r in rs]
    else:
        other = [f"{m.key().decode()}={m.value().decode()}" for m in _confluent_read(broker, t, 3)]
    assert sorted(other) == sorted(want)


def _confluent_read(b, topic, nparts, timeout=30.0):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "it-unused",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(nparts)])
        msgs, eof = [], set()
        deadline = time.monotonic() + timeout
        while len(eof) < nparts:
            assert time.monotonic() < deadline, f"timeout: {len(msgs)} messages, EOF {eof}"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                eof.add(m.partition())
                continue
            msgs.append(m)
        return msgs
    finally:
        c.close()
