"""Transactions (KIP-98, KIP-447) with confluent-kafka (librdkafka) and kafka-python
against a real kafkette process: commit and abort across partitions, with and without
compression; read_committed readers see exactly the committed records and
read_uncommitted ones see everything; the read_committed end offset (the LSO) stays
below the high watermark while a transaction is open; a second producer with the same
transactional id fences the first; a producer that stalls past its timeout is aborted
by the coordinator; empty transactions; consume-transform-produce with
send_offsets_to_transaction, exactly once under a forced rebalance.
"""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from it_clients import create_topic, end_offsets_confluent, read_partitions_confluent
from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(180)

WAIT = 30.0


@pytest.fixture(scope="module")
def broker_config():
    return {"group.initial.rebalance.delay.ms": 0,
            # The coordinator looks for timed-out transactions every half second, so
            # the timeout test waits seconds, not Kafka's default 10 s interval.
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500}


def _txn_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _producer(broker, txn_id: str, **conf) -> Producer:
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id,
                  "linger.ms": 5, **conf})
    p.init_transactions(WAIT)
    return p


def _read(broker, topic: str, partitions: int, isolation: str) -> list[tuple[int, int, bytes]]:
    return read_partitions_confluent(broker.bootstrap, topic, partitions, isolation, WAIT)


def _end_offsets(broker, topic: str, partition: int, isolation: str) -> int:
    return end_offsets_confluent(broker.bootstrap, topic, [partition], isolation)[0]


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_confluent_commit_and_abort_across_partitions(broker, compression):
    topic = unique_topic("txn-ca")
    create_topic(broker.bootstrap, topic, partitions=3)
    p = _producer(broker, _txn_id("ca"), **{"compression.type": compression})
    committed, aborted = set(), set()
    for round_ in range(4):
        p.begin_transaction()
        values = [f"r{round_}-{i}".encode() for i in range(30)]
        for i, v in enumerate(values):
            p.produce(topic, v, partition=i % 3)
        if round_ % 2 == 0:
            p.commit_transaction(WAIT)
            committed.update(values)
        else:
            p.flush(WAIT)   # sent: librdkafka's abort drops what is still queued
            p.abort_transaction(WAIT)
            aborted.update(values)
    p.flush(WAIT)
    rc = _read(broker, topic, 3, "read_committed")
    ru = _read(broker, topic, 3, "read_uncommitted")
    assert sorted(v for _, _, v in rc) == sorted(committed)
    assert sorted(v for _, _, v in ru) == sorted(committed | aborted)
    # every record once, in order per partition
    assert len(rc) == len(set(v for _, _, v in rc))


def test_confluent_lso_stays_below_while_open_then_catches_up(broker):
    topic = unique_topic("txn-lso")
    create_topic(broker.bootstrap, topic, partitions=1)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(5):
        plain.produce(topic, f"plain-{i}".encode(), partition=0)
    plain.flush(WAIT)
    p = _producer(broker, _txn_id("lso"))
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, f"open-{i}".encode(), partition=0)
    p.flush(WAIT)
    wait_until(lambda: _end_offsets(broker, topic, 0, "read_uncommitted") == 15, WAIT)
    assert _end_offsets(broker, topic, 0, "read_committed") == 5
    assert [v for _, _, v in _read(broker, topic, 1, "read_committed")] == \
        [f"plain-{i}".encode() for i in range(5)]
    p.commit_transaction(WAIT)
    # the marker is offset 15: both ends are past it
    wait_until(lambda: _end_offsets(broker, topic, 0, "read_committed") == 16, WAIT)
    assert _end_offsets(broker, topic, 0, "read_uncommitted") == 16
    assert len(_read(broker, topic, 1, "read_committed")) == 15


def test_confluent_second_producer_fences_the_first(broker):
    topic = unique_topic("txn-fence")
    create_topic(broker.bootstrap, topic, partitions=1)
    txn_id = _txn_id("fence")
    first = _producer(broker, txn_id)
    first.begin_transaction()
    first.produce(topic, b"zombie", partition=0)
    first.flush(WAIT)
    second = _producer(broker, txn_id)   # aborts the first's open transaction
    second.begin_transaction()
    second.produce(topic, b"winner", partition=0)
    second.commit_transaction(WAIT)
    with pytest.raises(KafkaException) as e:
        first.produce(topic, b"zombie-2", partition=0)
        first.commit_transaction(WAIT)
    assert e.value.args[0].fatal() or "fenced" in str(e.value).lower(), e.value
    assert [v for _, _, v in _read(broker, topic, 1, "read_committed")] == [b"winner"]


def test_confluent_stalled_transaction_is_aborted_by_the_coordinator(broker):
    topic = unique_topic("txn-timeout")
    create_topic(broker.bootstrap, topic, partitions=1)
    p = _producer(broker, _txn_id("timeout"), **{"transaction.timeout.ms": 2000})
    p.begin_transaction()
    p.produce(topic, b"stalled", partition=0)
    p.flush(WAIT)
    # The coordinator aborts it: the LSO moves past the abort marker (offset 1).
    wait_until(lambda: _end_offsets(broker, topic, 0, "read_committed") == 2, WAIT,
               message="the timed-out transaction was not aborted")
    assert _read(broker, topic, 1, "read_committed") == []
    with pytest.raises(KafkaException):
        p.commit_transaction(WAIT)


def test_confluent_empty_transactions(broker):
    p = _producer(broker, _txn_id("empty"))
    for commit in (True, False, True):
        p.begin_transaction()
        if commit:
            p.commit_transaction(WAIT)
        else:
            p.abort_transaction(WAIT)


def _kp_producer(broker, txn_id, **kw):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id,
                      request_timeout_ms=15000, **kw)
    p.init_transactions()
    return p


def _kp_read(broker, topic, partitions, isolation) -> list[bytes]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      consumer_timeout_ms=3000)
    try:
        c.assign([KTP(topic, p) for p in range(partitions)])
        return [m.value for m in c]
    finally:
        c.close()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_kafka_python_commit_and_abort(broker, compression):
    topic = unique_topic("txn-kp")
    create_topic(broker.bootstrap, topic, partitions=2)
    p = _kp_producer(broker, _txn_id("kp"), compression_type=compression)
    try:
        # aborted first: a leaked aborted record would come before the committed ones
        p.begin_transaction()
        for i in range(20):
            p.send(topic, f"a{i}".encode(), partition=i % 2)
        p.flush()   # sent, so that aborting has something to abort
        p.abort_transaction()
        p.begin_transaction()
        for i in range(20):
            p.send(topic, f"c{i}".encode(), partition=i % 2)
        p.commit_transaction()
        for _ in range(2):              # empty transactions
            p.begin_transaction()
            p.commit_transaction()
    finally:
        p.close(timeout=5)
    assert sorted(_kp_read(broker, topic, 2, "read_committed")) == \
        sorted(f"c{i}".encode() for i in range(20))
    assert len(_kp_read(broker, topic, 2, "read_uncommitted")) == 40


def test_kafka_python_fencing_and_send_offsets(broker):
    """A second producer with the same id fences the first (ProducerFencedError on its
    next commit, its open records never visible); send_offsets_to_transaction commits
    a group's offsets with the transaction."""
    import kafka.errors as ke
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata
    src, dst = unique_topic("txn-kp-src"), unique_topic("txn-kp-dst")
    create_topic(broker.bootstrap, src, partitions=1)
    create_topic(broker.bootstrap, dst, partitions=1)
    txn_id = _txn_id("kpf")
    first = _kp_producer(broker, txn_id)
    first.begin_transaction()
    first.send(dst, b"zombie", partition=0)
    first.flush()
    second = _kp_producer(broker, txn_id)
    group = f"kp-eos-{uuid.uuid4().hex[:6]}"
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                      enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        second.begin_transaction()
        second.send(dst, b"winner", partition=0)
        second.send_offsets_to_transaction({KTP(src, 0): OffsetAndMetadata(7, "", -1)},
                                           c.group_metadata())
        second.commit_transaction()
        # The zombie cannot commit. kafka-python's error depends on timing: its send gets
        # INVALID_PRODUCER_EPOCH and it tries a KIP-360 epoch bump, which the coordinator
        # refuses (PRODUCER_FENCED); commit then raises ProducerFencedError or, with the
        # bump still under way, a KafkaError about its own state machine.
        with pytest.raises(ke.KafkaError):
            first.send(dst, b"zombie-2", partition=0)
            first.commit_transaction()
        assert c.committed(KTP(src, 0)) == 7
    finally:
        c.close()
        second.close(timeout=5)
        first.close(timeout=1)
    assert _kp_read(broker, dst, 1, "read_committed") == [b"winner"]


def test_confluent_consume_transform_produce_exactly_once(broker):
    """Input → (uppercase) → output with send_offsets_to_transaction. A second member
    joins midway (a rebalance between transactions); then member "a" crashes inside a
    transaction (records produced, nothing committed) and restarts with the same
    transactional id, which fences its old producer and aborts that transaction, and
    rejoins the group. Every input record appears in the committed output exactly once."""
    src, dst = unique_topic("txn-in"), unique_topic("txn-out")
    create_topic(broker.bootstrap, src, partitions=4)
    create_topic(broker.bootstrap, dst, partitions=4)
    group = f"eos-{uuid.uuid4().hex[:6]}"
    feeder = Producer({"bootstrap.servers": broker.bootstrap})
    n = 400
    for i in range(n):
        feeder.produce(src, f"m{i}".encode(), partition=i % 4)
    feeder.flush(WAIT)
    txn_ids = {name: _txn_id(f"eos-{name}") for name in "ab"}

    def member(name):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "isolation.level": "read_committed", "session.timeout.ms": 6000,
                      "heartbeat.interval.ms": 200})
        c.subscribe([src])
        return c, _producer(broker, txn_ids[name])

    def step(c, p, max_records=25, commit=True):
        msgs = [m for m in c.consume(max_records, 1.0) if not m.error()]
        if not msgs:
            return 0
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, m.value().upper(), partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()),
                                      c.consumer_group_metadata(), WAIT)
        if commit:
            p.commit_transaction(WAIT)
        else:
            p.flush(WAIT)
        return len(msgs)

    def committed_total(c) -> int:
        parts = c.committed([TopicPartition(src, i) for i in range(4)], timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)

    deadline = time.monotonic() + 90
    a, pa = member("a")
    done = 0
    while done < n // 4 and time.monotonic() < deadline:
        done += step(a, pa)
    b, pb = member("b")       # joins: a rebalance between transactions
    for _ in range(3):
        step(a, pa)
        step(b, pb)
    while not step(a, pa, commit=False) and time.monotonic() < deadline:
        pass                  # "a" crashes with a transaction open
    a.close()
    a, pa = member("a")       # restarted: fences the old producer, aborts its transaction
    while committed_total(b) < n and time.monotonic() < deadline:
        step(a, pa)
        step(b, pb)
    for c in (a, b):
        c.close()
    assert committed_total_after(broker, src, group) == n
    got = [v for _, _, v in _read(broker, dst, 4, "read_committed")]
    assert sorted(got) == sorted(f"M{i}".encode() for i in range(n)), \
        f"{len(got)} records, {len(set(got))} distinct of {n}"
    # the crashed transaction's records were written, and aborted
    assert len(_read(broker, dst, 4, "read_uncommitted")) > n


def committed_total_after(broker, topic, group) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        parts = c.committed([TopicPartition(topic, i) for i in range(4)], timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        c.close()
