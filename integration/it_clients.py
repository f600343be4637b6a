"""Client helpers shared by the integration tests (public client APIs only): kafka-python
helpers, and group members (kafka-python and confluent-kafka) that poll in threads."""
from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
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


def read_to_eof_confluent(bootstrap: str, topic: str, timeout: float = 30.0,
                          **conf) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of partition 0 from the beginning up to the end, read with
    confluent-kafka (librdkafka: its own reader of batches, gaps and empty batches),
    stopping at its partition-EOF event. `conf` adds consumer settings."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError
    from confluent_kafka import TopicPartition as CTopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-eof-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True, **conf})
    try:
        c.assign([CTopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"timed out reading {topic}: {len(out)} so far"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consumer error: {m.error()}")
            out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()


def read_partitions_confluent(bootstrap: str, topic: str, partitions: int,
                              isolation: str = "read_uncommitted", timeout: float = 60.0
                              ) -> list[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of every record of partitions 0..partitions-1 that a
    confluent-kafka consumer with `isolation` (isolation.level) reads from the beginning
    to each partition's end (its partition-EOF event; under read_committed the end is
    the last stable offset)."""
    import uuid
    from confluent_kafka import Consumer, KafkaError
    from confluent_kafka import TopicPartition as CTopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-read-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True, "isolation.level": isolation})
    try:
        c.assign([CTopicPartition(topic, p, 0) for p in range(partitions)])
        out, eof = [], set()
        deadline = time.monotonic() + timeout
        while len(eof) < partitions:
            assert time.monotonic() < deadline, f"timed out reading {topic}: {len(out)}, eof {eof}"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise AssertionError(f"consumer error: {m.error()}")
            eof.discard(m.partition())
            out.append((m.partition(), m.offset(), m.value()))
        return out
    finally:
        c.close()


def end_offsets_confluent(bootstrap: str, topic: str, partitions, isolation: str) -> list[int]:
    """The end offset of each partition as a consumer with `isolation` sees it: the high
    watermark, or under read_committed the last stable offset."""
    import uuid
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-end-{uuid.uuid4().hex}",
                  "isolation.level": isolation})
    try:
        return [c.get_watermark_offsets(CTopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in partitions]
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


def produce_to_partitions(bootstrap: str, topic: str, n: int, partitions: int,
                          start: int = 0, **kw) -> dict[int, list[tuple[int, bytes, bytes]]]:
    """Produce n keyed records round-robin over `partitions` (partition chosen
    explicitly) and return {partition: [(offset, key, value)]} as acknowledged."""
    with producer(bootstrap, **kw) as p:
        fs = []
        for i in range(start, start + n):
            key, value = f"key-{i % 37}".encode(), f"value-{i}".encode()
            fs.append((key, value, p.send(topic, key=key, value=value, partition=i % partitions)))
        p.flush(30)
        out: dict[int, list] = {q: [] for q in range(partitions)}
        for k, v, f in fs:
            md = f.get(10)
            out[md.partition].append((md.offset, k, v))
    for rows in out.values():
        rows.sort()
    return out


# --------------------------------------------------------------------------- group members

class MemberFailed(AssertionError):
    fatal = True


class GroupMember(threading.Thread):
    """One group consumer owned by its own thread.

    Group consumers must keep polling to heartbeat and to take part in rebalances, and a
    client object should only be used from one thread; so the thread creates the consumer,
    subscribes, polls in a loop and closes it. The test thread reads `assignment`,
    `records`, `events` (rebalance callbacks) and `errors`, and runs code on the consumer
    with `call(fn)` (executed between two polls, in the member's thread)."""

    client = "?"

    def __init__(self, name: str, topics: list[str], poll_s: float = 0.1):
        super().__init__(name=f"member-{name}", daemon=True)
        self.member_name = name
        self.topics = list(topics)
        self.poll_s = poll_s
        self.consumer = None
        self.assignment: frozenset = frozenset()          # {(topic, partition)}
        self.history: list[tuple[float, frozenset]] = []  # (monotonic, assignment) on change
        self.records: list[tuple[str, int, int, bytes | None, bytes | None]] = []
        self.events: list[tuple[str, frozenset]] = []     # ("assigned"|"revoked"|"lost", tps)
        self.errors: list = []
        self.error: BaseException | None = None           # what ended the thread
        self.close_error: BaseException | None = None
        self.created_at: float | None = None
        self.subscribed_at: float | None = None
        self.first_assigned_at: float | None = None
        self.subscribed = threading.Event()
        self.finished = threading.Event()
        self._stop_requested = threading.Event()
        self._pending_calls: queue.Queue = queue.Queue()
        self._mlock = threading.Lock()

    # -- implemented per client
    def _create(self):
        raise NotImplementedError

    def _subscribe(self, c):
        raise NotImplementedError

    def _poll(self, c) -> list[tuple[str, int, int, bytes | None, bytes | None]]:
        raise NotImplementedError

    def _assignment(self, c) -> frozenset:
        raise NotImplementedError

    def _close(self, c):
        c.close()

    # -- thread
    def run(self):
        try:
            c = self.consumer = self._create()
            self.created_at = time.monotonic()
            self.subscribed_at = time.monotonic()
            self._subscribe(c)
            self.subscribed.set()
            while not self._stop_requested.is_set():
                recs = self._poll(c)
                a = self._assignment(c)
                with self._mlock:
                    if recs:
                        self.records.extend(recs)
                    if a != self.assignment:
                        self.assignment = a
                        self.history.append((time.monotonic(), a))
                        if a and self.first_assigned_at is None:
                            self.first_assigned_at = time.monotonic()
                self._run_calls(c)
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            self.error = e
        finally:
            self.subscribed.set()
            if self.consumer is not None:
                try:
                    self._close(self.consumer)
                except BaseException as e:  # noqa: BLE001
                    self.close_error = e
            self._fail_pending_calls()
            self.finished.set()

    def _run_calls(self, c):
        while True:
            try:
                fn, fut = self._pending_calls.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(c))
                except BaseException as e:  # noqa: BLE001
                    fut.set_exception(e)

    def _fail_pending_calls(self):
        while True:
            try:
                _fn, fut = self._pending_calls.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(RuntimeError(f"{self.name} stopped"))

    # -- test-thread API
    def call(self, fn, timeout: float = 30.0):
        """Run fn(consumer) in the member's thread; return its result."""
        self.check()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._pending_calls.put((fn, fut))
        return fut.result(timeout)

    def check(self):
        """Raise MemberFailed (which wait_until does not retry) if the thread died."""
        if self.error is not None:
            raise MemberFailed(f"{self.name} ({self.client}) failed: {self.error!r}") \
                from self.error
        if self.finished.is_set() and not self._stop_requested.is_set():
            raise MemberFailed(f"{self.name} ({self.client}) stopped on its own")

    def partitions(self, topic: str | None = None) -> frozenset:
        with self._mlock:
            return frozenset(p for t, p in self.assignment if topic is None or t == topic)

    def snapshot_records(self) -> list:
        with self._mlock:
            return list(self.records)

    def stop(self, timeout: float = 30.0) -> "GroupMember":
        """Ask the thread to close the consumer (LeaveGroup for dynamic members) and wait."""
        self._stop_requested.set()
        if self.is_alive():
            self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not close within {timeout}s"
        return self

    def __repr__(self):
        return f"<{type(self).__name__} {self.member_name} assignment={sorted(self.assignment)}>"


class KafkaPythonMember(GroupMember):
    client = "kafka-python"

    def __init__(self, bootstrap: str, group: str, topics: list[str], name: str = "kp",
                 poll_s: float = 0.1, **cfg):
        super().__init__(name, topics, poll_s)
        self.cfg = dict(bootstrap_servers=bootstrap, group_id=group, client_id=f"it-{name}",
                        enable_auto_commit=False, auto_offset_reset="earliest", **FAST)
        self.cfg.update(cfg)

    def _create(self):
        return KafkaConsumer(**self.cfg)

    def _subscribe(self, c):
        from kafka import ConsumerRebalanceListener
        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                member.events.append(("revoked", frozenset((tp.topic, tp.partition)
                                                           for tp in revoked)))

            def on_partitions_assigned(self, assigned):
                member.events.append(("assigned", frozenset((tp.topic, tp.partition)
                                                            for tp in assigned)))

            def on_partitions_lost(self, lost):
                member.events.append(("lost", frozenset((tp.topic, tp.partition)
                                                        for tp in lost)))

        # Have the topics' metadata before the first JoinGroup. Otherwise a leader can
        # compute an empty assignment ("No partition metadata for topic"), rejoin when
        # the metadata arrives, and kafka-python 3.0.12 may then drop its own SyncGroup
        # answer: need_rejoin() turns False while that join is in flight (its metadata
        # snapshot already matches), so a poll() that timed out never resumes it; the
        # member keeps no partitions and stops heartbeating until the session expires.
        # Seen with cooperative-sticky; the broker answered every SyncGroup correctly.
        # The metadata must arrive *after* subscribe(): the consumer's metadata snapshot
        # is taken from the subscription on each update, and a leader stores it as its
        # assignment snapshot. Fetched before subscribe(), the snapshot stays empty, and
        # the next refresh (`{} != {topic: partitions}`) forces a second rebalance, whose
        # pre-rebalance auto-commit writes offset 0 for every partition. `topics()`
        # blocks on a fresh (all-topics) metadata update.
        c.subscribe(self.topics, listener=Listener())
        known = c.topics()
        missing = [t for t in self.topics if t not in known]
        assert not missing, f"topics not in metadata before the first join: {missing}"

    def _poll(self, c):
        out = []
        for tp, recs in c.poll(timeout_ms=int(self.poll_s * 1000)).items():
            out.extend((r.topic, r.partition, r.offset, r.key, r.value) for r in recs)
        return out

    def _assignment(self, c):
        return frozenset((tp.topic, tp.partition) for tp in c.assignment())

    def _close(self, c):
        c.close(autocommit=self.cfg.get("enable_auto_commit", True))


class ConfluentMember(GroupMember):
    client = "confluent-kafka"

    def __init__(self, bootstrap: str, group: str, topics: list[str], name: str = "ck",
                 poll_s: float = 0.1, **conf):
        super().__init__(name, topics, poll_s)
        self.conf = {"bootstrap.servers": bootstrap, "group.id": group,
                     "client.id": f"it-{name}", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "socket.timeout.ms": 10000,
                     "reconnect.backoff.max.ms": 1000, "error_cb": self._on_error}
        self.conf.update(conf)

    def _on_error(self, err):
        self.errors.append(err)

    def _create(self):
        from confluent_kafka import Consumer
        return Consumer(self.conf)

    def _subscribe(self, c):
        def tps(parts):
            return frozenset((p.topic, p.partition) for p in parts)

        # Not calling (incremental_)assign in the callbacks: the binding then does it
        # itself, with incremental semantics for cooperative assignors.
        c.subscribe(self.topics,
                    on_assign=lambda _c, parts: self.events.append(("assigned", tps(parts))),
                    on_revoke=lambda _c, parts: self.events.append(("revoked", tps(parts))),
                    on_lost=lambda _c, parts: self.events.append(("lost", tps(parts))))

    def _poll(self, c):
        from confluent_kafka import KafkaError
        m = c.poll(self.poll_s)
        if m is None:
            return []
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                self.errors.append(m.error())
            return []
        return [(m.topic(), m.partition(), m.offset(), m.key(), m.value())]

    def _assignment(self, c):
        return frozenset((tp.topic, tp.partition) for tp in c.assignment())


@contextmanager
def members(*ms: GroupMember):
    """Start the members; stop (close) every one of them on the way out."""
    started = []
    try:
        for m in ms:
            m.start()
            started.append(m)
        yield ms
    finally:
        errors = []
        for m in started:
            try:
                m.stop()
            except AssertionError as e:
                errors.append(e)
        if errors:
            raise errors[0]


def assignments(ms, topic: str | None = None) -> tuple[frozenset, ...]:
    """Current assignment of each member (checks the members are still healthy)."""
    for m in ms:
        m.check()
    return tuple(m.partitions(topic) for m in ms)


def last_change(ms) -> float:
    """monotonic() of the latest assignment change among the members."""
    return max(m.history[-1][0] for m in ms if m.history)


def is_partition_of(parts: tuple[frozenset, ...], n: int) -> bool:
    """True when every member has partitions, no two share one, and all n are covered."""
    if not all(parts):
        return False
    total = sum(len(p) for p in parts)
    union = frozenset().union(*parts)
    return total == len(union) and union == frozenset(range(n))


# kafka-python's messages for a broker telling a member it is unknown, stale or fenced
# (not its own timeouts: "Pre-rebalance offset commit failed: This is likely..." with a
# KafkaTimeoutError is the client running out of its poll() budget).
GROUP_TROUBLE = ("unknown member id", "member_id was not recognized", "UnknownMemberId",
                 "generation id is not", "IllegalGeneration", "group membership out of date",
                 "CommitFailed", "fenced")


@contextmanager
def kafka_python_group_trouble(patterns=GROUP_TROUBLE):
    """Collect kafka-python log messages that show a live member being told it is
    unknown or stale (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, failed commits): a broker
    must not hand these to members that did nothing wrong (COMPATIBILITY.md, Groups)."""
    found: list[str] = []
    wanted = [p.lower() for p in patterns]

    class Handler(logging.Handler):
        def emit(self, record):
            try:
                msg = record.getMessage()
            except Exception:  # noqa: BLE001
                msg = str(record.msg)
            if any(p in msg.lower() for p in wanted):
                found.append(f"{record.name} {record.levelname}: {msg}")

    logger = logging.getLogger("kafka")
    old_level = logger.level
    handler = Handler(logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
