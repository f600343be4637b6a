"""kill -9 of a partition leader during acks=all produce, once per live client.

integration/test_replication.py runs the scenario with confluent-kafka; here every
client of the matrix is the producer in turn (confluent-kafka, kafka-python 3.0.12,
aiokafka 0.14.0, kafkajs 2.2.4, kcat on librdkafka 2.0.2), each on its own topic with
replication factor 3 and min.insync.replicas 2, on one module-scoped 3-node cluster of
real processes. Each client has its own code for finding the new leader (metadata
refresh on NOT_LEADER_OR_FOLLOWER or a dead connection), for retrying, and for keeping
its idempotent sequence numbers across the move, so each can break in its own way.

Per client:
- records "s000000", "s000001", ... go to partition 0 with acks=all while the leader is
  killed (SIGKILL); the time from the kill to the next acknowledged record is printed
  with -s: the failover ends with the first acknowledgement of a record at or above
  the first offset the new leader wrote (its first batch with the new leader epoch, read
  from its log), so late acknowledgements of the dead leader's records do not count;
- the controller elects a new leader from the ISR; the producer goes on through it;
- the old leader restarts, catches up as a follower and rejoins the ISR;
- the same client, as a consumer (kcat -C for kcat), reads the partition back and
  must read exactly what a reference reader (confluent-kafka) reads;
- zero acknowledged records lost (each is at the offset its acknowledgement named)
  and, for an idempotent producer, zero duplicated.

What Kafka promises here: with acks=all and min.insync.replicas 2, an acknowledged
record is on at least two replicas, so losing one broker loses none of them. With
idempotence (KIP-98) a retry of a batch the old leader had written but not answered
carries the same producer id, epoch and sequence, and the new leader (which holds the
producer's state, replicated with the log) answers it as a duplicate instead of
appending it again: no duplicates. Every client here has an idempotent producer and
uses it: librdkafka >= 1.0 (so kcat's 2.0.2 and confluent-kafka: enable.idempotence),
kafka-python >= 2.1 (on by default in 3.x), aiokafka (enable_idempotence) and kafkajs
(idempotent, with one request in flight, which kafkajs requires). A client without it
would be promised at-least-once only: the duplicate check is per client
(`Client.idempotent`) so such a client would be asserted lossless and its duplicates
reported, not failed.

Failover times measured here (2 cores, broker.session.timeout.ms 3000): 3-5 s for the
librdkafka clients, kafka-python and aiokafka (the controller fences the dead broker
after its session timeout, then elects). kafkajs takes 9-14 s, by its own retry
schedule: on a connection error it refreshes metadata at once and then backs off
(100 ms doubling, with jitter), so its refresh 2.5 s after the kill, before the fence,
still names the dead leader, and the next refresh comes with a backoff of about 6 s.
kafkajs against Kafka does the same: until the controller fences a broker, Kafka's
metadata names it as the leader too.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from it_clients import read_all, read_to_eof_confluent
from itutil import record_timings, wait_until
from kafkette.chaos.replica_logs import partition_batches
from test_replication import (  # noqa: F401  (cluster and the log-tail fixture are used)
    _node_logs_on_failure, cluster, full_isr, rf3_topic, same_replicas, whole)

pytestmark = pytest.mark.timeout(150)

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
NODE = shutil.which("node")
KJS_DIR = Path(__file__).resolve().parent / "kafkajs"
HAVE_KAFKAJS = NODE is not None and (KJS_DIR / "node_modules" / "kafkajs" /
                                     "package.json").exists()
NODE_ENV = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")

ACKED_BEFORE_KILL = 200     # records acknowledged before the leader is killed
ACKED_AFTER_FAILOVER = 100  # and after the first acknowledgement by the new leader
PACE_S = 0.005              # between sends: a steady stream, not a flood


def value(seq: int) -> bytes:
    return b"s%06d" % seq


class Client:
    """One producer stream and one reader of a client. The producer side runs in the
    background from start() to stop(); acknowledgements land in `acked` as
    (monotonic time, seq, offset), failures in `failed` as (seq, error)."""

    name = ""
    idempotent = True

    def __init__(self, cluster, topic: str):
        self.cluster = cluster
        self.topic = topic
        self.acked: list[tuple[float, int, int]] = []
        self.failed: list[tuple[int, str]] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def ack(self, seq: int, offset: int) -> None:
        self.acked.append((time.monotonic(), seq, offset))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"produce-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.run()
        except BaseException as e:  # noqa: BLE001 - raised again by stop()
            self.error = e

    def run(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 90.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.name}: the producer did not finish"
        if self.error is not None:
            raise AssertionError(f"{self.name}: the producer failed: {self.error!r}") \
                from self.error

    def read(self, end: int) -> list[tuple[int, bytes]]:
        """(offset, value) of partition 0 from 0 to `end`, read by this client."""
        raise NotImplementedError


class Confluent(Client):
    name = "confluent-kafka"

    def run(self):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.cluster.bootstrap_servers, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 5,
                      "message.timeout.ms": 60000})
        while not self._stop.is_set():
            seq = self.sent
            p.produce(self.topic, value=value(seq), partition=0, on_delivery=lambda e, m, s=seq: (
                self.ack(s, m.offset()) if e is None else self.failed.append((s, str(e)))))
            self.sent += 1
            p.poll(PACE_S)
        p.flush(60)

    def read(self, end):
        return [(o, v) for o, _k, v in read_to_eof_confluent(self.cluster.bootstrap_servers,
                                                               self.topic, 60)]


class KafkaPython(Client):
    name = "kafka-python"

    def run(self):
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=self.cluster.bootstrap_servers, acks="all",
                          enable_idempotence=True, linger_ms=5, delivery_timeout_ms=60000,
                          request_timeout_ms=10000, reconnect_backoff_max_ms=1000)
        try:
            while not self._stop.is_set():
                seq = self.sent
                f = p.send(self.topic, value=value(seq), partition=0)
                f.add_callback(lambda md, s=seq: self.ack(s, md.offset))
                f.add_errback(lambda e, s=seq: self.failed.append((s, repr(e))))
                self.sent += 1
                time.sleep(PACE_S)
            p.flush(60)
        finally:
            p.close(timeout=10)

    def read(self, end):
        recs = read_all(self.cluster.bootstrap_servers, self.topic, [0], timeout=60)[0]
        return [(r.offset, r.value) for r in recs]


class AioKafka(Client):
    name = "aiokafka"

    def run(self):
        asyncio.run(self._produce())

    async def _produce(self):
        from aiokafka import AIOKafkaProducer
        p = AIOKafkaProducer(bootstrap_servers=self.cluster.bootstrap_servers, acks="all",
                             enable_idempotence=True, linger_ms=5, request_timeout_ms=10000,
                             retry_backoff_ms=100)
        await p.start()
        try:
            pending = []
            while not self._stop.is_set():
                seq = self.sent
                fut = await p.send(self.topic, value=value(seq), partition=0)
                fut.add_done_callback(lambda f, s=seq: self._done(s, f))
                pending.append(fut)
                self.sent += 1
                await asyncio.sleep(PACE_S)
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await p.stop()

    def _done(self, seq, fut):
        if fut.exception() is None:
            self.ack(seq, fut.result().offset)
        else:
            self.failed.append((seq, repr(fut.exception())))

    def read(self, end):
        return asyncio.run(self._read(end))

    async def _read(self, end):
        from aiokafka import AIOKafkaConsumer, TopicPartition
        tp = TopicPartition(self.topic, 0)
        c = AIOKafkaConsumer(bootstrap_servers=self.cluster.bootstrap_servers,
                             enable_auto_commit=False, request_timeout_ms=15000)
        await c.start()
        try:
            c.assign([tp])
            await c.seek_to_beginning(tp)
            out = []
            deadline = time.monotonic() + 60
            while await c.position(tp) < end:
                assert time.monotonic() < deadline, f"aiokafka read {len(out)} of {end}"
                for recs in (await c.getmany(tp, timeout_ms=500)).values():
                    out.extend((r.offset, r.value) for r in recs)
            return out
        finally:
            await c.stop()


class KafkaJs(Client):
    """integration/kafkajs/client.js produceStream: one send of BATCH records at a time
    (kafkajs's idempotent producer keeps one request in flight), one stdout line per
    acknowledged send, timestamped here on arrival."""

    name = "kafkajs"
    BATCH = 5

    def _node(self, cmd: dict, **kw) -> subprocess.Popen:
        payload = json.dumps({"brokers": self.cluster.bootstrap_servers.split(","),
                              "retries": 30, **cmd})
        p = subprocess.Popen([NODE, str(KJS_DIR / "client.js")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(KJS_DIR), env=NODE_ENV, **kw)
        p.stdin.write(payload + "\n")
        p.stdin.flush()
        return p

    def start(self):
        self.proc = self._node({"cmd": "produceStream", "topic": self.topic, "partition": 0,
                                "idempotent": True, "batch": self.BATCH})
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr),
                         daemon=True).start()
        super().start()

    def run(self):
        self.result = None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "acked" in msg:
                first, n = msg["acked"]
                for i in range(n):
                    self.ack(first + i, msg["offset"] + i)
            elif "failed" in msg:
                first, n = msg["failed"]
                self.failed.extend((first + i, msg["error"]) for i in range(n))
            else:
                self.result = msg
                self.sent = msg["sent"]

    def stop(self, timeout: float = 90.0):
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        super().stop(timeout)
        assert self.proc.wait(10) == 0 and self.result is not None, \
            f"client.js produceStream failed:\n{''.join(self.stderr)[-3000:]}"

    def read(self, end):
        p = self._node({"cmd": "consume", "topic": self.topic, "groupId": f"{self.topic}-g",
                        "count": end, "timeoutMs": 60000, "commit": False})
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, f"client.js consume failed:\n{err[-3000:]}"
        got = json.loads(out.strip().splitlines()[-1])
        assert not got["timedOut"], f"kafkajs read {len(got['records'])} of {end}"
        return [(r["offset"], r["value"].encode()) for r in got["records"]]


class Kcat(Client):
    """kcat -P reads the records from its stdin as the test writes them. kcat prints
    no per-record acknowledgement on stdout, but with verbosity 3 (-v -v) its delivery
    report callback logs "Message delivered to partition 0 (offset N)" on stderr, one
    line per record, in delivery order. librdkafka's idempotent producer delivers a
    partition's records in the order they were produced, so the k-th report is the k-th
    record written; should that not hold, the check of each acknowledged record at its
    offset fails (it cannot pass by accident). kcat serves its delivery reports between
    reads of its input, and they reach stderr in bursts (about 1 s apart here), so its
    failover time is an upper bound with about a second's resolution."""

    name = "kcat"
    DELIVERED = re.compile(r"Message delivered to partition (\d+) \(offset (-?\d+)\)")

    def start(self):
        self.proc = subprocess.Popen(
            [KCAT, "-P", "-b", self.cluster.bootstrap_servers, "-t", self.topic, "-p", "0",
             "-X", "enable.idempotence=true", "-X", "acks=all", "-X", "linger.ms=5",
             "-X", "message.timeout.ms=60000", "-v", "-v"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        self.log: list[str] = []
        self._reports = threading.Thread(target=self._read_reports, daemon=True)
        self._reports.start()
        super().start()

    def _read_reports(self):
        delivered = 0
        for line in self.proc.stderr:
            m = self.DELIVERED.search(line)
            if m:
                self.ack(delivered, int(m.group(2)))
                delivered += 1
            elif "Delivery failed" in line:
                self.failed.append((-1, line.strip()))
            else:
                self.log.append(line)

    def run(self):
        while not self._stop.is_set():
            self.proc.stdin.write(value(self.sent).decode() + "\n")
            self.sent += 1
            time.sleep(PACE_S)
        self.proc.stdin.close()     # EOF: kcat flushes what is outstanding and exits

    def stop(self, timeout: float = 90.0):
        super().stop(timeout)
        rc = self.proc.wait(timeout)
        self._reports.join(10)
        assert rc == 0, f"kcat exited {rc}:\n{''.join(self.log)[-3000:]}"

    def read(self, end):
        r = subprocess.run([KCAT, "-C", "-b", self.cluster.bootstrap_servers, "-t", self.topic,
                            "-p", "0", "-o", "beginning", "-e", "-f", "%o %s\n"],
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, f"kcat -C exited {r.returncode}:\n{r.stderr[-3000:]}"
        rows = [ln.split(" ", 1) for ln in r.stdout.splitlines() if ln]
        return [(int(o), v.encode()) for o, v in rows]


CLIENTS = [
    pytest.param(Confluent, id="confluent-kafka"),
    pytest.param(KafkaPython, id="kafka-python"),
    pytest.param(AioKafka, id="aiokafka"),
    pytest.param(KafkaJs, id="kafkajs", marks=pytest.mark.skipif(
        not HAVE_KAFKAJS, reason="node or integration/kafkajs/node_modules missing "
                                 "(npm ci --prefix integration/kafkajs)")),
    pytest.param(Kcat, id="kcat", marks=pytest.mark.skipif(KCAT is None,
                                                           reason="kcat not installed")),
]


@pytest.mark.parametrize("client_class", CLIENTS)
def test_kill_leader_during_acks_all_produce(cluster, client_class):
    whole(cluster)
    topic = rf3_topic(cluster, f"kill-{client_class.name}")
    full_isr(cluster, topic)
    state = cluster.partition_states(topic)[0]
    leader = state.leader
    client = client_class(cluster, topic)
    client.start()
    try:
        wait_until(lambda: len(client.acked) >= ACKED_BEFORE_KILL, 30,
                   message=f"{client.name}: records acknowledged before the kill")
        killed_at = time.monotonic()
        cluster.node(leader).kill()
        new = wait_until(lambda: next((s for s in [cluster.partition_states(topic)[0]]
                                       if s.leader not in (-1, leader)), None), 60,
                         message="a new leader")
        assert leader not in new.isr and new.leader_epoch > state.leader_epoch, new
        # The first offset the new leader wrote: its first batch stamped with a later
        # epoch. Acknowledgements of records below it may still arrive after the kill
        # (the dead leader's answers already on the wire, or a client that reports
        # late); the failover ends with the first acknowledgement at or above it.
        new_log = Path(cluster.node(new.leader).data_dir) / f"{topic}-0"
        start = wait_until(lambda: next(((b.base_offset,) for b in partition_batches(new_log)
                                         if b.partition_leader_epoch > state.leader_epoch),
                                        None), 60,
                           message=f"{client.name}: a batch written by the new leader")[0]
        wait_until(lambda: sum(1 for a in list(client.acked) if a[2] >= start)
                   >= ACKED_AFTER_FAILOVER, 30,
                   message=f"{client.name}: records acknowledged by the new leader")
        failover_s = min(t for t, _s, o in list(client.acked) if o >= start) - killed_at
    finally:
        if not cluster.node(leader).is_running():
            cluster.node(leader).start()
        client.stop()
    print(f"\n[{client.name}] kill -9 of the leader to the next acknowledged record: "
          f"{failover_s:.2f} s ({len(client.acked)} acknowledged of {client.sent} sent, "
          f"{len(client.failed)} failed; the new leader's first offset {start})")
    record_timings("replication_clients", {f"{client.name}_leader_kill_to_next_ack_s":
                                           round(failover_s, 2)}, "KAFKETTE_CLUSTER_TIMINGS")

    end = cluster.list_offsets(topic)[0]
    reference = read_to_eof_confluent(cluster.bootstrap_servers, topic, 60)
    log = [(o, v) for o, _k, v in reference]
    assert [o for o, _ in log] == list(range(end)), "offsets not contiguous from 0"
    assert client.read(end) == log, f"{client.name} as a consumer reads another log"

    seen = {v: o for o, v in log}
    lost = [(s, o) for _t, s, o in client.acked if seen.get(value(s)) != o]
    assert not lost, (f"{client.name}: {len(lost)} acknowledged records lost or moved, "
                      f"e.g. (seq, acknowledged offset) {lost[:3]}")
    duplicated = len(log) - len(seen)
    if client.idempotent:
        assert duplicated == 0, f"{client.name}: {duplicated} records stored twice"
    elif duplicated:
        print(f"[{client.name}] not idempotent: {duplicated} records stored twice")
    # Every acknowledged record and nothing the client never sent.
    assert set(seen) <= {value(s) for s in range(client.sent)}

    # The old leader comes back as a follower, catches up and rejoins the ISR.
    states = full_isr(cluster, topic, 60)
    assert leader in states[0].isr and states[0].leader_epoch > 0
    same_replicas(cluster, topic, [0], {0: cluster.list_offsets(topic)[0]})
