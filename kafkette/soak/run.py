"""The soak run: one real broker process under a mixed steady load for a long time,
then data checks and a check that its memory, file descriptors and threads stayed flat.

What runs at once against one ``kafkette serve`` child (EmbeddedBroker, free port):

- three idempotent acks=all confluent-kafka producers (kafkette.chaos.workload's
  ProducerWorker), one per topic: ``soak-keep`` (delete policy, nothing expires: every
  acknowledged record is checked), ``soak-retained`` (retention.ms and segment.bytes
  small: segments roll and are deleted all the time) and ``soak-compact``
  (cleanup.policy=compact, small segments, the cleaner's backoff short: it cleans all
  the time). The compacted topic's key is a function of the record's sequence number,
  so the checker knows every record's key from its value;
- a consumer group on ``soak-keep`` whose members come and go: every 20-30 s (seeded)
  the oldest member closes (LeaveGroup) and a new one joins, committing offsets
  (auto-commit, cooperative-sticky assignment);
- an admin loop (confluent-kafka AdminClient): create a scratch topic, alter its
  config, describe configs (topic and broker), list and describe groups, list offsets,
  delete the scratch topic; a new AdminClient (new connections) every few cycles;
- a sampler: every ``sample_interval`` the broker's VmRSS and Threads
  (/proc/<pid>/status) and its open fds (/proc/<pid>/fd), appended to samples.csv.

Then: the producers stop (every delivery report in), the members leave, every topic is
drained from the beginning, and the checks run (kafkette.soak.checks and
kafkette.chaos.checker). Any failure makes the run's result not ok.
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import socket
import urllib.request
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, OffsetSpec, ResourceType)

from kafkette.chaos import checker
from kafkette.chaos.workload import _CLIENT_COMMON, ProducerWorker, drain
from kafkette.logging import get_logger
from kafkette.soak import checks

log = get_logger("kafkette.soak")

KEEP, RETAINED, COMPACT = "soak-keep", "soak-retained", "soak-compact"
GROUP = "soak-group"
SCRATCH = "soak-scratch"


@dataclass
class Options:
    duration: float = 3600.0
    seed: int = 1
    partitions: int = 3
    #: records per second per producer (three producers: keep, retained, compact).
    rate: float = 50.0
    compact_keys: int = 200
    members: int = 2                 # group members live at once
    churn_min: float = 20.0          # a member leaves and one joins every [min, max] s
    churn_max: float = 30.0
    admin_interval: float = 2.0      # one admin operation every ... s
    sample_interval: float = 10.0
    #: samples before this many seconds are warm-up, left out of the flatness check
    #: (imports, first segments, the first group, allocator arenas filling).
    warmup: float = 300.0
    #: the flatness windows: the first and the last share of the samples after warm-up.
    window: float = 0.2
    rss_mb: float = 30.0             # RSS may grow by max(rss_mb, rss_pct * baseline)
    rss_pct: float = 0.25
    fds: float = 20.0                # open fds may grow by this many
    threads: float = 5.0
    retention_ms: int = 30000
    segment_bytes: int = 16384
    out: str = "soak-results"
    broker_settings: dict = field(default_factory=dict)


def _read_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(rest.split()[0])
    return out


def sample(pid: int) -> dict[str, float]:
    st = _read_status(pid)
    fds = os.listdir(f"/proc/{pid}/fd")
    # What the fds are, so that growth can be told apart: connections or segment files.
    sockets = files = 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:   # closed since the listing
            continue
        if target.startswith("socket:"):
            sockets += 1
        elif target.startswith("/"):
            files += 1
    return {"rss_mb": st["VmRSS"] / 1024, "fds": len(fds), "threads": st["Threads"],
            "fd_sockets": sockets, "fd_files": files}


def fd_audit(pid: int, data_dir: Path) -> dict[str, int]:
    """The broker's fds by what they point at: ``sockets``; ``segments`` (files under
    the data directory that still exist); ``deleted`` (files of the data directory
    unlinked while still open:
    a segment deleted by retention or replaced by the cleaner whose file was never
    closed is the classic fd leak, and shows here as "(deleted)"); ``other`` (pipes,
    the event loop's fds, the broker's own log, /dev/null); ``segment_files``: the
    segment files on disk (not fds)."""
    out = {"sockets": 0, "segments": 0, "deleted": 0, "other": 0,
           "segment_files": len(list(data_dir.glob("*/*.log")))}
    prefix = str(data_dir.resolve()) + os.sep
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out["sockets"] += 1
        elif target.startswith(prefix) and target.endswith(" (deleted)"):
            out["deleted"] += 1
        elif target.startswith(prefix):
            out["segments"] += 1
        else:
            out["other"] += 1
    return out


def idle_fd_failures(start: dict[str, int], idle: dict[str, int]) -> list[str]:
    """Exact checks once every client is gone: as many sockets as before the first
    client (the listeners), as many other fds as then, none to a deleted file."""
    out = []
    if idle["deleted"]:
        out.append(f"{idle['deleted']} fds still open on deleted files")
    for kind in ("sockets", "other"):
        if idle[kind] != start[kind]:
            out.append(f"{idle[kind]} {kind} fds once every client left, {start[kind]} "
                       "before the first one")
    # At most one fd per segment file on disk, beyond the data directory's fixed ones
    # (its .lock): an open data file that no live segment explains is a leak.
    extra = idle["segments"] - idle["segment_files"]
    if extra > start["segments"] - start["segment_files"]:
        out.append(f"{idle['segments']} fds on data files for {idle['segment_files']} "
                   f"segment files, {start['segments']} for {start['segment_files']} "
                   "before the first client")
    return out


class Sampler(threading.Thread):
    FIELDS = ("t", "rss_mb", "fds", "threads", "fd_sockets", "fd_files", "phase")

    def __init__(self, pid: int, interval: float, path: Path, t0: float):
        super().__init__(name="soak-sampler", daemon=True)
        self.pid, self.interval, self.path, self.t0 = pid, interval, path, t0
        self.stop_event = threading.Event()
        self.samples: list[dict] = []
        self.phase = "load"
        self.errors: list[str] = []
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerow(self.FIELDS)

    def take(self) -> dict | None:
        try:
            s = {"t": round(time.monotonic() - self.t0, 1), **sample(self.pid),
                 "phase": self.phase}
        except OSError as e:   # the broker died: the run reports it
            self.errors.append(repr(e))
            return None
        self.samples.append(s)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([round(s[k], 2) if isinstance(s[k], float) else s[k]
                                    for k in self.FIELDS])
        return s

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.stop_event.is_set():
            self.take()
            nxt += self.interval
            self.stop_event.wait(max(0.0, nxt - time.monotonic()))


class Member(threading.Thread):
    """One group member: subscribes, consumes, auto-commits, and on stop closes
    (confluent-kafka commits its offsets and sends LeaveGroup)."""

    def __init__(self, n: int, bootstrap: str, reads: list, lock: threading.Lock):
        super().__init__(name=f"soak-member-{n}", daemon=True)
        self.n, self.bootstrap, self.reads, self.lock = n, bootstrap, reads, lock
        self.stop_event = threading.Event()
        self.consumed = 0
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": GROUP,
                          "client.id": f"soak-member-{self.n}",
                          "auto.offset.reset": "earliest", "enable.auto.commit": True,
                          "auto.commit.interval.ms": 1000,
                          "partition.assignment.strategy": "cooperative-sticky",
                          "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                          **_CLIENT_COMMON})
        except Exception as e:  # noqa: BLE001 - counted, the run reports it
            self.errors[repr(e)] = 1
            return
        try:
            c.subscribe([KEEP])
            while not self.stop_event.is_set():
                batch = []
                for m in c.consume(500, 0.2):
                    if m.error():
                        self.errors[m.error().name()] = self.errors.get(m.error().name(), 0) + 1
                        continue
                    batch.append(checker.Read(f"member-{self.n}", m.partition(), m.offset(),
                                              m.value().decode(errors="replace")))
                if batch:
                    with self.lock:
                        self.reads.extend(batch)
                    self.consumed += len(batch)
        except Exception as e:  # noqa: BLE001
            self.errors[repr(e)] = self.errors.get(repr(e), 0) + 1
        finally:
            try:
                c.close()
            except Exception as e:  # noqa: BLE001
                self.errors[repr(e)] = self.errors.get(repr(e), 0) + 1


class Churn(threading.Thread):
    """Keeps ``members`` members; every churn_min..churn_max s the oldest leaves and a
    new one joins."""

    def __init__(self, bootstrap: str, o: Options, rng: random.Random):
        super().__init__(name="soak-churn", daemon=True)
        self.bootstrap, self.o, self.rng = bootstrap, o, rng
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.reads: list[checker.Read] = []
        self.live: list[Member] = []
        self.done: list[Member] = []
        self.started = 0

    def _join(self) -> None:
        m = Member(self.started, self.bootstrap, self.reads, self.lock)
        self.started += 1
        m.start()
        self.live.append(m)

    def _leave(self) -> None:
        m = self.live.pop(0)
        m.stop_event.set()
        m.join(30)
        self.done.append(m)

    def run(self) -> None:
        for _ in range(self.o.members):
            self._join()
        while not self.stop_event.wait(self.rng.uniform(self.o.churn_min, self.o.churn_max)):
            self._leave()
            self._join()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(60)
        while self.live:
            self._leave()

    def members(self) -> list[Member]:
        return self.done + self.live


class AdminLoop(threading.Thread):
    """One admin operation every ``interval`` s, in a fixed cycle; a new AdminClient
    every ``renew`` cycles. Errors are counted per operation."""

    OPS = ("create_topic", "produce", "alter_config", "describe_configs", "list_groups",
           "describe_groups", "list_offsets", "delete_topic")

    def __init__(self, bootstrap: str, interval: float, partitions: int, renew: int = 5):
        super().__init__(name="soak-admin", daemon=True)
        self.bootstrap, self.interval, self.partitions, self.renew = \
            bootstrap, interval, partitions, renew
        self.stop_event = threading.Event()
        self.ops: dict[str, int] = {}
        self.errors: dict[str, list[str]] = {}
        self.cycles = 0
        self.clients = 0
        self._scratch = 0

    def _client(self) -> AdminClient:
        self.clients += 1
        return AdminClient({"bootstrap.servers": self.bootstrap,
                            "client.id": f"soak-admin-{self.clients}", **_CLIENT_COMMON})

    def run(self) -> None:
        admin = self._client()
        while not self.stop_event.is_set():
            for op in self.OPS:
                if self.stop_event.wait(self.interval):
                    return
                try:
                    getattr(self, op)(admin)
                    self.ops[op] = self.ops.get(op, 0) + 1
                except Exception as e:  # noqa: BLE001 - counted, the run reports it
                    self.errors.setdefault(op, []).append(repr(e))
                    log.warning("soak admin operation failed", op=op, error=repr(e))
            self.cycles += 1
            if self.cycles % self.renew == 0:
                admin = self._client()   # the old one's connections close when it is freed

    @property
    def scratch(self) -> str:
        return f"{SCRATCH}-{self._scratch}"

    def create_topic(self, admin: AdminClient) -> None:
        self._scratch += 1
        admin.create_topics([NewTopic(self.scratch, 2, 1, config={"retention.ms": "60000"})],
                            operation_timeout=10)[self.scratch].result(15)

    def produce(self, admin: AdminClient) -> None:
        """A few records into the scratch topic: a topic that was used, then deleted,
        must leave nothing behind (its metrics, its partitions' state)."""
        # A producer of its own each time: a long-lived one keeps the deleted topic in
        # its metadata cache and its next refresh auto-creates it again
        # (auto.create.topics.enable, as with Kafka), so scratch topics would pile up.
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 0,
                      "client.id": "soak-admin-producer", "message.timeout.ms": 10000,
                      **_CLIENT_COMMON})
        failed = []
        for i in range(10):
            p.produce(self.scratch, value=b"scratch", partition=i % 2,
                      on_delivery=lambda err, _msg: err and failed.append(err))
        left = p.flush(15)
        del p   # closes its connections
        if left:
            raise AssertionError("scratch records not delivered in 15 s")
        if failed:
            raise AssertionError(f"scratch records failed: {failed[:3]}")

    def alter_config(self, admin: AdminClient) -> None:
        res = ConfigResource(ResourceType.TOPIC, self.scratch, incremental_configs=[
            ConfigEntry("retention.ms", str(30000 + self.cycles),
                        incremental_operation=AlterConfigOpType.SET)])
        for f in admin.incremental_alter_configs([res]).values():
            f.result(15)

    def describe_configs(self, admin: AdminClient) -> None:
        rs = [ConfigResource(ResourceType.TOPIC, self.scratch),
              ConfigResource(ResourceType.TOPIC, COMPACT),
              ConfigResource(ResourceType.BROKER, "1")]
        got = {r.name: f.result(15) for r, f in admin.describe_configs(rs).items()}
        want = str(30000 + self.cycles)
        if got[self.scratch]["retention.ms"].value != want:
            raise AssertionError(f"retention.ms of {self.scratch} is "
                                 f"{got[self.scratch]['retention.ms'].value}, altered to {want}")

    def list_groups(self, admin: AdminClient) -> None:
        groups = admin.list_consumer_groups(request_timeout=15).result(15)
        if GROUP not in {g.group_id for g in groups.valid}:
            raise AssertionError(f"{GROUP} not listed")

    def describe_groups(self, admin: AdminClient) -> None:
        admin.describe_consumer_groups([GROUP], request_timeout=15)[GROUP].result(15)

    def list_offsets(self, admin: AdminClient) -> None:
        req = {CTopicPartition(t, p): spec for t in (KEEP, RETAINED)
               for p in range(self.partitions)
               for spec in (OffsetSpec.latest(),)}
        for f in admin.list_offsets(req, request_timeout=15).values():
            f.result(15)

    def delete_topic(self, admin: AdminClient) -> None:
        admin.delete_topics([self.scratch], operation_timeout=10)[self.scratch].result(15)


def _offsets(bootstrap: str, topic: str, partitions: int, spec) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap, **_CLIENT_COMMON})
    fs = admin.list_offsets({CTopicPartition(topic, p): spec for p in range(partitions)},
                            request_timeout=15)
    return {tp.partition: f.result(15).offset for tp, f in fs.items()}


def _committed(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                  "enable.auto.commit": False, **_CLIENT_COMMON})
    try:
        got = c.committed([CTopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metrics_topics(address: str) -> set[str]:
    """The topics named by any series of the broker's /metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=15) as resp:
        text = resp.read().decode()
    return set(re.findall(r'[{,]topic="([^"]*)"', text))


def compact_key(value: str, keys: int) -> str:
    """The compacted topic's key of a value ``<producer>/<sequence>``."""
    return f"k{int(value.rsplit('/', 1)[1]) % keys}"


def broker_config(o: Options) -> dict[str, Any]:
    return {
        # Retention and segment deletion checked every 2 s, deleted files gone after
        # 1 s, the cleaner back after 1 s: what a production broker does over days,
        # done over minutes (Kafka's defaults: 5 min, 60 s, 15 s).
        "log.retention.check.interval.ms": 2000,
        "log.segment.delete.delay.ms": 1000,
        "log.cleaner.backoff.ms": 1000,
        # Scraped at the end: no series may name a deleted topic.
        "metrics.listener": f"127.0.0.1:{_free_port()}",
        **o.broker_settings,
    }


class Soak:
    def __init__(self, o: Options):
        self.o = o
        self.rng = random.Random(o.seed)
        self.out = Path(o.out)
        self.interrupt = threading.Event()

    def run(self) -> dict:
        from kafkette.embedded import EmbeddedBroker
        o = self.o
        self.out.mkdir(parents=True, exist_ok=True)
        kb = EmbeddedBroker(broker_config(o), startup_timeout=60)
        kb.start()
        try:
            return self._run(kb)
        finally:
            alive = kb.is_running()
            try:
                (self.out / "broker.log").write_text(kb.log_path.read_text(errors="replace"))
            except OSError:
                pass
            kb.close()
            if not alive:
                log.error("the broker was not running at the end of the soak")

    def _run(self, kb) -> dict:
        o = self.o
        bs = kb.bootstrap_servers
        seg = {"segment.bytes": o.segment_bytes}
        kb.create_topic(KEEP, o.partitions)
        kb.create_topic(RETAINED, o.partitions, config={"retention.ms": o.retention_ms, **seg})
        kb.create_topic(COMPACT, o.partitions, config={
            "cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.1, **seg})
        # Before the first client; the topic creations' connections closed above
        # may still be open on the broker's side for a moment.
        fds_before, deadline = fd_audit(kb.pid, kb.data_dir), time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.3)
            again = fd_audit(kb.pid, kb.data_dir)
            if again == fds_before:
                break
            fds_before = again
        t0 = time.monotonic()
        sampler = Sampler(kb.pid, o.sample_interval, self.out / "samples.csv", t0)
        sampler.start()
        producers = {
            KEEP: ProducerWorker("keep", bs, KEEP, rng=random.Random(self.rng.random()),
                                 rate=o.rate),
            RETAINED: ProducerWorker("retained", bs, RETAINED,
                                     rng=random.Random(self.rng.random()), rate=o.rate),
            COMPACT: ProducerWorker("compact", bs, COMPACT, rng=random.Random(self.rng.random()),
                                    rate=o.rate,
                                    key_for=lambda seq: f"k{seq % o.compact_keys}"),
        }
        for p in producers.values():
            p.start()
        churn = Churn(bs, o, random.Random(self.rng.random()))
        churn.start()
        admin = AdminLoop(bs, o.admin_interval, o.partitions)
        admin.start()
        log.info("soak started", bootstrap=bs, broker_pid=kb.pid, duration=o.duration,
                 out=str(self.out))
        end = t0 + o.duration
        next_note = t0 + 60
        while not self.interrupt.is_set() and time.monotonic() < end and kb.is_running():
            self.interrupt.wait(min(1.0, max(0.0, end - time.monotonic())))
            if time.monotonic() >= next_note and sampler.samples:
                next_note += 60
                s = sampler.samples[-1]
                log.info("soak progress", t=s["t"], rss_mb=round(s["rss_mb"], 1), fds=s["fds"],
                         threads=s["threads"], reports=sum(len(p.outcomes)
                                                         for p in producers.values()))
        load_seconds = time.monotonic() - t0
        # Stop the load; samples from here on are "drain" (not part of the check).
        sampler.phase = "stopping"
        admin.stop_event.set()
        for p in producers.values():
            p.stop()
        for p in producers.values():
            p.join(60)
        churn.stop()
        admin.join(30)
        committed = _committed(bs, KEEP, o.partitions)
        ends = {t: _offsets(bs, t, o.partitions, OffsetSpec.latest()) for t in producers}
        starts = {t: _offsets(bs, t, o.partitions, OffsetSpec.earliest()) for t in producers}
        drains = {}
        for t in producers:
            drains[t] = drain(bs, t, ends[t], timeout=120)
        sampler.stop_event.set()
        sampler.join(30)
        sampler.phase = "idle"
        # The clients' connections close asynchronously on the broker's side, and
        # deleted segments are closed after log.segment.delete.delay.ms: wait (bounded)
        # for the exact idle state before calling it a leak.
        deadline = time.monotonic() + 30
        while True:
            fds_idle = fd_audit(kb.pid, kb.data_dir) if kb.is_running() else None
            if (fds_idle is None or not idle_fd_failures(fds_before, fds_idle)
                    or time.monotonic() >= deadline):
                break
            time.sleep(0.5)
        idle = sampler.take()
        broker_alive = kb.is_running()
        self._stale_topics = None
        if broker_alive:
            live = set(AdminClient({"bootstrap.servers": bs, **_CLIENT_COMMON})
                       .list_topics(timeout=15).topics)
            # Scratch topics only: librdkafka's list_topics leaves internal ones out.
            self._stale_topics = sorted(t for t in metrics_topics(kb.config["metrics.listener"])
                                        if t.startswith(SCRATCH) and t not in live)
        self._fds = (fds_before, fds_idle)
        return self._summary(load_seconds, sampler, producers, churn, admin, committed,
                             ends, starts, drains, idle, broker_alive)

    def _summary(self, load_seconds, sampler, producers, churn, admin, committed, ends,
                 starts, drains, idle, broker_alive) -> dict:
        o = self.o
        failures: list[str] = []
        if not broker_alive:
            failures.append("the broker died")
        fds_before, fds_idle = self._fds
        if fds_idle is not None:
            failures += [f"idle fds: {x}" for x in idle_fd_failures(fds_before, fds_idle)]
        if self._stale_topics:
            failures.append(f"/metrics still has series of deleted topics: "
                            f"{self._stale_topics[:5]} ({len(self._stale_topics)})")
        if sampler.errors:
            failures.append(f"sampler: {sampler.errors[:3]}")
        # soak-keep: Kafka's promise for idempotent acks=all producers in full.
        keep_reads, keep_pos = drains[KEEP]
        keep = checker.check(checker.History(
            produced=producers[KEEP].outcomes, drain=keep_reads,
            drain_end_offsets=ends[KEEP], drain_positions=keep_pos))
        for kind, n in keep.counts().items():
            failures.append(f"{KEEP}: {n} {kind}")
        # soak-retained: nothing to count lost (retention deletes on purpose), but what
        # remains must not hold copies, and retention must have deleted something.
        ret_reads, ret_pos = drains[RETAINED]
        ret_dups = checker.check_duplicates(ret_reads)
        if ret_dups:
            failures.append(f"{RETAINED}: {len(ret_dups)} duplicate")
        ret_missing = checker.check_drain_complete(ends[RETAINED], ret_pos)
        if ret_missing:
            failures.append(f"{RETAINED}: {len(ret_missing)} drain_incomplete")
        deleted_by_retention = sum(starts[RETAINED].values())
        if o.duration * 1000 > 2 * o.retention_ms and deleted_by_retention == 0:
            failures.append(f"{RETAINED}: retention deleted nothing (log start offsets "
                            f"{starts[RETAINED]})")
        # soak-compact: per key the latest value is the last acknowledged one.
        cmp_reads, cmp_pos = drains[COMPACT]
        mismatches = checks.check_compacted(producers[COMPACT].outcomes, cmp_reads,
                                            lambda v: compact_key(v, o.compact_keys))
        if mismatches:
            failures.append(f"{COMPACT}: {len(mismatches)} keys whose latest value is not the "
                            f"last acknowledged one, e.g. {mismatches[0].as_dict()}")
        cmp_dups = checker.check_duplicates(cmp_reads)
        if cmp_dups:
            failures.append(f"{COMPACT}: {len(cmp_dups)} duplicate")
        cmp_missing = checker.check_drain_complete(ends[COMPACT], cmp_pos)
        if cmp_missing:
            failures.append(f"{COMPACT}: {len(cmp_missing)} drain_incomplete")
        cmp_acked = sum(1 for m in producers[COMPACT].outcomes if m.acked)
        compacted_away = sum(ends[COMPACT].values()) - len(cmp_reads)
        if compacted_away <= 0:
            failures.append(f"{COMPACT}: the cleaner removed nothing ({len(cmp_reads)} "
                            f"records read of {sum(ends[COMPACT].values())} offsets)")
        # The group: every acknowledged record below a partition's committed offset was
        # read by some member (at least once), and offsets were committed at all.
        members = churn.members()
        group_read = {r.value for r in churn.reads}
        gaps = [m for m in producers[KEEP].outcomes
                if m.acked and m.offset < committed.get(m.partition, -1)
                and m.value not in group_read]
        if gaps:
            failures.append(f"{GROUP}: {len(gaps)} acknowledged records below the committed "
                            f"offset that no member read, e.g. {gaps[0].value}")
        if any(committed.get(p, -1) <= 0 for p in range(o.partitions)):
            failures.append(f"{GROUP}: committed offsets {committed}")
        member_errors: dict[str, int] = {}
        for m in members:
            for k, n in m.errors.items():
                member_errors[k] = member_errors.get(k, 0) + n
        if member_errors:
            failures.append(f"{GROUP}: consumer errors {member_errors}")
        # Workers and admin.
        for t, p in producers.items():
            if p.errors or p.fatal_errors:
                failures.append(f"producer on {t}: {(p.errors + p.fatal_errors)[:3]}")
            failed = sum(1 for m in p.outcomes if not m.acked)
            if failed:
                failures.append(f"producer on {t}: {failed} deliveries failed")
        if admin.errors:
            failures.append(f"admin: {({k: len(v) for k, v in admin.errors.items()})} errors, "
                            f"e.g. {next(iter(admin.errors.values()))[0]}")
        # Flatness over the load phase, after warm-up.
        load = [s for s in sampler.samples if s["phase"] == "load"]
        after = [s for s in load if s["t"] >= o.warmup]
        flat: list[checks.Flatness] = []
        slopes = {}
        if len(after) < 4:
            failures.append(f"only {len(after)} samples after the {o.warmup:.0f} s warm-up: "
                            "flatness not checked")
        else:
            bounds = {"rss_mb": checks.Bound(o.rss_mb, o.rss_pct), "fds": checks.Bound(o.fds),
                      "threads": checks.Bound(o.threads)}
            for name, bound in bounds.items():
                f = checks.check_flat(name, [s[name] for s in after], bound, o.window, o.window)
                flat.append(f)
                slopes[name] = checks.slope_per_hour([s["t"] for s in after],
                                                     [s[name] for s in after])
                if not f.ok:
                    failures.append(f"{name} grew by {f.growth:.1f} (mean of the last "
                                    f"{o.window:.0%} {f.final:.1f} vs the first "
                                    f"{f.baseline:.1f}), more than the {f.allowed:.1f} allowed")

        def series(name):
            vals = [s[name] for s in load]
            return {"start": vals[0], "end": vals[-1], "max": max(vals),
                    "idle_after": idle[name] if idle else None} if vals else {}

        summary = {
            "ok": not failures, "failures": failures,
            "seconds": round(load_seconds, 1), "options": asdict(self.o),
            "produced": {t: {"sent": p.sent,
                             "acknowledged": sum(1 for m in p.outcomes if m.acked)}
                         for t, p in producers.items()},
            "keep": {"acknowledged": keep.acknowledged, "drained": keep.drained,
                     "lost": keep.lost, "duplicated": keep.duplicated},
            "retained": {"drained": len(ret_reads), "deleted_by_retention": deleted_by_retention,
                         "log_start_offsets": starts[RETAINED], "duplicated": len(ret_dups)},
            "compact": {"acknowledged": cmp_acked, "drained": len(cmp_reads),
                        "compacted_away": compacted_away, "keys_checked": len(
                            checks.last_acked_by_key(producers[COMPACT].outcomes,
                                                     lambda m: compact_key(m.value,
                                                                           o.compact_keys))),
                        "mismatches": len(mismatches), "duplicated": len(cmp_dups)},
            "group": {"members": len(members), "consumed": len(churn.reads),
                      "distinct": len(group_read), "committed": committed, "gaps": len(gaps)},
            "admin": {"cycles": admin.cycles, "clients": admin.clients, "ops": admin.ops,
                      "errors": {k: len(v) for k, v in admin.errors.items()}},
            "resources": {n: series(n) for n in ("rss_mb", "fds", "threads")},
            "fds_before_load": fds_before, "fds_idle_after": fds_idle,
            "metrics_deleted_topics": self._stale_topics,
            "flatness": [f.as_dict() for f in flat],
            "slope_per_hour": {k: (round(v, 2) if v is not None else None)
                               for k, v in slopes.items()},
            "samples": len(sampler.samples),
        }
        with open(self.out / "summary.json", "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        return summary


def format_summary(s: dict) -> str:
    r = s["resources"]
    lines = [f"soak: {'OK' if s['ok'] else 'FAILED'} after {s['seconds']:.0f} s of load, "
             f"{s['samples']} samples"]
    for t, p in s["produced"].items():
        lines.append(f"  {t:14s} sent {p['sent']}, acknowledged {p['acknowledged']}")
    k, c, g = s["keep"], s["compact"], s["group"]
    lines.append(f"  {KEEP}: drained {k['drained']}, lost {k['lost']}, duplicated "
                 f"{k['duplicated']}")
    lines.append(f"  {RETAINED}: {s['retained']['deleted_by_retention']} records deleted by "
                 f"retention, {s['retained']['drained']} left, duplicated "
                 f"{s['retained']['duplicated']}")
    lines.append(f"  {COMPACT}: {c['drained']} left of {c['acknowledged']} "
                 f"({c['compacted_away']} compacted away), {c['keys_checked']} keys checked, "
                 f"{c['mismatches']} mismatched")
    lines.append(f"  group: {g['members']} members, consumed {g['consumed']} "
                 f"({g['distinct']} distinct), gaps {g['gaps']}")
    a = s["admin"]
    lines.append(f"  admin: {a['cycles']} cycles, {sum(a['ops'].values())} operations, "
                 f"{a['clients']} clients, errors {a['errors'] or 0}")
    for name, unit in (("rss_mb", "MB"), ("fds", ""), ("threads", "")):
        v = r.get(name) or {}
        if v:
            lines.append(f"  {name:8s} start {v['start']:.1f}{unit} end {v['end']:.1f}{unit} "
                         f"max {v['max']:.1f}{unit} idle after {v['idle_after']}")
    lines.append(f"  fds before the load {s['fds_before_load']}, once idle after it "
                 f"{s['fds_idle_after']}")
    for f in s["flatness"]:
        lines.append(f"  flat {f['name']:8s} {f['baseline']} -> {f['final']} "
                     f"(+{f['growth']}, allowed +{f['allowed']}) {'ok' if f['ok'] else 'GREW'}"
                     f"; slope {s['slope_per_hour'].get(f['name'])}/h")
    for x in s["failures"]:
        lines.append(f"  FAIL: {x}")
    return "\n".join(lines)
