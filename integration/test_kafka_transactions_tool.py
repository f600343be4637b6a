"""kafka-transactions.sh (kafkette/tools/kafka_transactions.py) and `kafkette
transactions` against a real broker process, each command a subprocess as a script runs
it, with transactions opened by confluent-kafka (librdkafka) and, for hanging ones, raw
transactional batches no coordinator knows about. Independent checks: librdkafka's
read_committed end offsets (the LSO) and the broker's /metrics.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from it_clients import create_topic
from itutil import free_port, unique_topic, wait_until

pytestmark = pytest.mark.timeout(180)

PY = sys.executable
WAIT = 30.0
METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def broker_config() -> dict:
    return {"metrics.listener": f"127.0.0.1:{METRICS_PORT}"}


def tool(bootstrap: str, *args, timeout: float = 60):
    return subprocess.run([PY, "-m", "kafkette.tools.kafka_transactions",
                           "--bootstrap-server", bootstrap, *args],
                          capture_output=True, text=True, timeout=timeout)


def ok(r) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def rows(text: str) -> list[list[str]]:
    """The cells of Kafka's prettyPrintTable output, header row first; every line ends
    with a tab."""
    lines = text.splitlines()
    assert lines and all(line.endswith("\t") for line in lines), repr(text)
    return [[c.rstrip(" ") for c in line.split("\t")[:-1]] for line in lines]


def as_dicts(text: str) -> list[dict]:
    header, *body = rows(text)
    return [dict(zip(header, r)) for r in body]


def scrape(port: int) -> dict[tuple, float]:
    """(name, sorted labels) -> value of the broker's /metrics."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        name, _, labels = key.partition("{")
        pairs = tuple(sorted(tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",")
                             if kv)) if labels else ()
        out[(name, tuple((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def lso_lag(port, topic, partition):
    return scrape(port).get(("kafka_cluster_partition_laststableoffsetlag",
                             (("partition", str(partition)), ("topic", topic))))


def open_txns(port, state="Ongoing"):
    return scrape(port).get(("kafka_server_transaction_coordinator_metrics_open_transactions",
                             (("state", state),)))


def offsets(bootstrap, topic, partition, isolation) -> int:
    """The end offset librdkafka sees: the high watermark, or under read_committed the LSO."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"eo-{uuid.uuid4().hex}",
                  "isolation.level": isolation})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=WAIT,
                                       cached=False)[1]
    finally:
        c.close()


def test_open_transaction_listed_described_and_measured(broker):
    topic = unique_topic("txtool")
    create_topic(broker.bootstrap, topic, partitions=2)
    txn_id = f"tool-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id,
                  "linger.ms": 5})
    p.init_transactions(WAIT)
    ongoing_before = open_txns(METRICS_PORT) or 0
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, f"v{i}".encode(), partition=0)
    p.flush(WAIT)      # sent and appended: the transaction is open on partition 0
    try:
        # librdkafka's view: HW 5, LSO held at the transaction's first offset
        assert offsets(broker.bootstrap, topic, 0, "read_uncommitted") == 5
        assert offsets(broker.bootstrap, topic, 0, "read_committed") == 0

        listed = [r for r in as_dicts(ok(tool(broker.bootstrap, "list")))
                  if r["TransactionalId"] == txn_id]
        assert len(listed) == 1
        assert listed[0]["TransactionState"] == "Ongoing" and listed[0]["Coordinator"] == "1"
        pid = listed[0]["ProducerId"]
        # KIP-994's filter: nothing of ours has been open for an hour
        assert txn_id not in ok(tool(broker.bootstrap, "list", "--duration-filter", "3600000"))
        assert txn_id in ok(tool(broker.bootstrap, "list", "--duration-filter", "0"))

        (d,) = as_dicts(ok(tool(broker.bootstrap, "describe", "--transactional-id", txn_id)))
        assert d["CoordinatorId"] == "1" and d["ProducerId"] == pid
        assert d["TransactionState"] == "Ongoing"
        assert d["TopicPartitions"] == f"{topic}-0"
        assert d["TransactionTimeoutMs"] == "60000"   # librdkafka's transaction.timeout.ms
        started = int(d["CurrentTransactionStartTimeMs"])
        assert abs(time.time() * 1000 - started) < 60_000
        assert int(d["TransactionDurationMs"]) >= 0

        (prod,) = as_dicts(ok(tool(broker.bootstrap, "describe-producers", "--topic", topic,
                                   "--partition", "0")))
        assert prod["ProducerId"] == pid and prod["LastSequence"] == "4"
        assert prod["CurrentTransactionStartOffset"] == "0"
        by_id = ok(tool(broker.bootstrap, "describe-producers", "--topic", topic,
                        "--partition", "0", "--broker-id", "1"))
        assert as_dicts(by_id)[0]["ProducerId"] == pid
        # partition 1 has no producer
        assert rows(ok(tool(broker.bootstrap, "describe-producers", "--topic", topic,
                            "--partition", "1"))) == [
            ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence",
             "LastTimestamp", "CurrentTransactionStartOffset"]]

        # open and older than 0 minutes, but its coordinator has the partition in the
        # transaction: not hanging
        hanging = ok(tool(broker.bootstrap, "find-hanging", "--topic", topic,
                          "--max-transaction-timeout", "0"))
        assert as_dicts(hanging) == []

        assert lso_lag(METRICS_PORT, topic, 0) == 5
        assert lso_lag(METRICS_PORT, topic, 1) == 0
        assert open_txns(METRICS_PORT) == ongoing_before + 1
    finally:
        p.commit_transaction(WAIT)

    wait_until(lambda: offsets(broker.bootstrap, topic, 0, "read_committed") == 6, WAIT,
               message="the LSO reaches the high watermark after the commit")
    wait_until(lambda: lso_lag(METRICS_PORT, topic, 0) == 0, WAIT)
    wait_until(lambda: open_txns(METRICS_PORT) == ongoing_before, WAIT)
    (d,) = as_dicts(ok(tool(broker.bootstrap, "describe", "--transactional-id", txn_id)))
    assert d["TransactionState"] == "CompleteCommit"
    listed = [r for r in as_dicts(ok(tool(broker.bootstrap, "list")))
              if r["TransactionalId"] == txn_id]
    assert listed[0]["TransactionState"] == "CompleteCommit"


def test_errors_and_usage(broker):
    r = tool(broker.bootstrap, "describe", "--transactional-id", "never-seen")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.strip() == (
        "Failed to describe transaction state of transactional-id `never-seen`: "
        "DescribeTransactions request for transactionalId `never-seen` failed because the "
        "ID could not be found. Enable debug logging for additional detail.")
    r = tool(broker.bootstrap, "describe-producers", "--topic", unique_topic("nope"),
             "--partition", "0")
    assert r.returncode == 1 and "This server does not host this topic-partition" in r.stderr
    r = tool(broker.bootstrap, "list", "--producer-id", "1")
    assert r.returncode == 1 and "unrecognized arguments: '--producer-id 1'" in r.stderr
    r = tool(broker.bootstrap, "find-hanging")
    assert r.returncode == 1 and "requires either --topic or --broker-id" in r.stderr
    # no broker there: the command fails with its own message, exit code 1
    r = tool(f"127.0.0.1:{free_port()}", "list", timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("Failed to list transactions: ")


def _hanging_batch(bootstrap, topic, partition, values, age_ms, plain_first: int = 0):
    """Append a transactional batch of a producer no transaction coordinator knows (an
    idempotent producer id, a transactional id never initialized): what a hanging
    transaction looks like on a partition, e.g. one left by a pre-KIP-890 client whose
    marker was lost. The batch is `age_ms` old. `plain_first` plain records go before it.
    Returns (producer id, epoch, the transaction's first offset)."""
    from kafkette.client import KafkaClient, run_sync
    from kafkette.protocol import records as rec
    from kafkette.protocol.messages import InitProducerIdRequest, ProduceRequest

    async def go():
        c = KafkaClient(bootstrap)
        try:
            r = await c.send(InitProducerIdRequest(transactional_id=None,
                                                   transaction_timeout_ms=60000,
                                                   producer_id=-1, producer_epoch=-1))
            assert r.error_code == 0, r
            T = ProduceRequest.TopicProduceData
            first = None
            batches = []
            if plain_first:
                batches.append((None, rec.build_batch(
                    [(None, f"plain{i}".encode(), []) for i in range(plain_first)])))
            ts = int(time.time() * 1000) - age_ms
            batches.append((f"ghost-{uuid.uuid4().hex[:6]}", rec.build_batch(
                [(None, v, []) for v in values], producer_id=r.producer_id,
                producer_epoch=r.producer_epoch, base_sequence=0, transactional=True,
                timestamp_ms=ts)))
            for txn_id, batch in batches:
                resp = await c.send(ProduceRequest(
                    transactional_id=txn_id, acks=-1, timeout_ms=10000, topic_data=[T(
                        name=topic, partition_data=[T.PartitionProduceData(
                            index=partition, records=batch)])]), 7)
                pr = resp.responses[0].partition_responses[0]
                assert pr.error_code == 0, pr
                first = pr.base_offset
            return r.producer_id, r.producer_epoch, first
        finally:
            await c.close()
    return run_sync(go())


def test_hanging_transactions_found_and_aborted(make_broker):
    # KIP-890's partition verification would refuse a transactional batch whose
    # partition the coordinator never added; without it (brokers before 3.6, or with
    # transaction.partition.verification.enable=false) a lost marker leaves one hanging
    mport = free_port()
    b = make_broker({"transaction.partition.verification.enable": "false",
                     "metrics.listener": f"127.0.0.1:{mport}"})
    topic = unique_topic("hang")
    create_topic(b.bootstrap, topic, partitions=2)
    twenty_min = 20 * 60_000
    pid0, epoch0, start0 = _hanging_batch(b.bootstrap, topic, 0, [b"h0", b"h1"], twenty_min,
                                          plain_first=3)
    pid1, epoch1, start1 = _hanging_batch(b.bootstrap, topic, 1, [b"x"], twenty_min)
    assert (start0, start1) == (3, 0)
    assert offsets(b.bootstrap, topic, 0, "read_committed") == 3
    assert offsets(b.bootstrap, topic, 0, "read_uncommitted") == 5
    assert lso_lag(mport, topic, 0) == 2 and lso_lag(mport, topic, 1) == 1

    def hanging(*args):
        return [(r["Topic"], r["Partition"], r["ProducerId"], r["StartOffset"], r["Duration(min)"])
                for r in as_dicts(ok(tool(b.bootstrap, "find-hanging", *args)))]
    expected = [(topic, "0", str(pid0), "3", "20"), (topic, "1", str(pid1), "0", "20")]
    # Kafka's default --max-transaction-timeout (15 minutes) finds both
    assert hanging("--topic", topic) == expected
    assert hanging("--topic", topic, "--partition", "1") == expected[1:]
    found = hanging("--broker-id", "1")   # every topic with a replica on broker 1
    assert [h for h in found if h[0] == topic] == expected
    # 30 minutes: 20-minute-old transactions are not suspicious yet
    assert hanging("--topic", topic, "--max-transaction-timeout", "30") == []
    prods = as_dicts(ok(tool(b.bootstrap, "describe-producers", "--topic", topic,
                             "--partition", "0")))
    assert [(p["ProducerId"], p["LatestCoordinatorEpoch"], p["CurrentTransactionStartOffset"])
            for p in prods] == [(str(pid0), "-1", "3")]

    r = tool(b.bootstrap, "abort", "--topic", topic, "--partition", "0", "--start-offset", "99")
    assert r.returncode == 1 and r.stderr.strip() == (
        f"Could not find any open transactions starting at offset 99 on partition {topic}-0")
    # abort by start offset: DescribeProducers finds the producer, WriteTxnMarkers(ABORT)
    # goes to the leader; the LSO moves past the marker, read_committed skips the batch
    r = tool(b.bootstrap, "abort", "--topic", topic, "--partition", "0", "--start-offset", "3")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert offsets(b.bootstrap, topic, 0, "read_committed") == 6
    assert offsets(b.bootstrap, topic, 0, "read_uncommitted") == 6
    assert lso_lag(mport, topic, 0) == 0
    # the old-broker form: producer id, epoch and coordinator epoch (-1 is sent as 0)
    r = tool(b.bootstrap, "abort", "--topic", topic, "--partition", "1", "--producer-id",
             str(pid1), "--producer-epoch", str(epoch1), "--coordinator-epoch", "-1")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert offsets(b.bootstrap, topic, 1, "read_committed") == 2
    assert lso_lag(mport, topic, 1) == 0
    assert hanging("--topic", topic, "--max-transaction-timeout", "0") == []
    # an abort with an older epoch than the producer's is refused by the leader
    r = tool(b.bootstrap, "abort", "--topic", topic, "--partition", "1", "--producer-id",
             str(pid1), "--producer-epoch", str(epoch1 - 1) if epoch1 > 0 else "-5",
             "--coordinator-epoch", "0")
    assert r.returncode == 1 and r.stderr.startswith("Failed to abort transaction "
                                                     "AbortTransactionSpec(")

    # read_committed readers see the plain records only
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"rc-{uuid.uuid4().hex}",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got, deadline = [], time.monotonic() + WAIT
        while True:
            assert time.monotonic() < deadline, got
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:   # _PARTITION_EOF
                    break
                raise AssertionError(str(m.error()))
            got.append(m.value())
        assert got == [b"plain0", b"plain1", b"plain2"]
    finally:
        c.close()


def test_kafkette_transactions_alias(broker):
    topic = unique_topic("alias")
    create_topic(broker.bootstrap, topic, partitions=1)
    txn_id = f"alias-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id})
    p.init_transactions(WAIT)
    p.begin_transaction()
    p.produce(topic, b"x")
    p.commit_transaction(WAIT)

    def kafkette(*args):
        return subprocess.run([PY, "-m", "kafkette", "transactions", *args],
                              capture_output=True, text=True, timeout=60)
    # options after the command, as `kafkette topics` takes them
    out = ok(kafkette("describe", "--transactional-id", txn_id,
                      "--bootstrap-server", broker.bootstrap))
    (d,) = as_dicts(out)
    assert d["TransactionalId"] == txn_id and d["TransactionState"] == "CompleteCommit"
    listed = ok(kafkette("list", "--bootstrap-server", broker.bootstrap))
    assert [r for r in as_dicts(listed) if r["TransactionalId"] == txn_id]
    r = kafkette("describe", "--bootstrap-server", broker.bootstrap)
    assert r.returncode == 1 and "argument --transactional-id is required" in r.stderr
    assert "kafkette transactions describe" in r.stderr


def test_cluster_describe_producers_on_a_follower(tmp_path):
    """`--broker-id` asks that replica, leader or not (Kafka serves DescribeProducers
    from any replica's producer state): a follower has replicated the open transaction,
    and find-hanging over a follower's partitions works."""
    from kafkette.embedded_cluster import EmbeddedCluster
    with EmbeddedCluster(3, {}, log_dir=tmp_path) as kc:
        topic = unique_topic("txc")
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": kc.bootstrap_servers})
        admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(WAIT)
        wait_until(lambda: len(kc.partition_states(topic)[0].isr) == 3, WAIT)
        txn_id = f"cl-{uuid.uuid4().hex[:8]}"
        p = Producer({"bootstrap.servers": kc.bootstrap_servers, "transactional.id": txn_id,
                      "acks": "all"})
        p.init_transactions(WAIT)
        p.begin_transaction()
        for i in range(3):
            p.produce(topic, f"v{i}".encode(), partition=0)
        p.flush(WAIT)
        try:
            state = kc.partition_states(topic)[0]
            followers = [r for r in state.replicas if r != state.leader]
            (lead,) = as_dicts(ok(tool(kc.bootstrap_servers, "describe-producers", "--topic",
                                       topic, "--partition", "0")))
            assert lead["CurrentTransactionStartOffset"] == "0"
            for f in followers:
                def on_follower():
                    r = tool(kc.bootstrap_servers, "describe-producers", "--topic", topic,
                             "--partition", "0", "--broker-id", str(f))
                    assert r.returncode == 0, r.stderr
                    got = as_dicts(r.stdout)
                    return got and got[0]["CurrentTransactionStartOffset"] == "0" and got
                got = wait_until(on_follower, WAIT, message=f"broker {f} has the producer")
                assert got[0]["ProducerId"] == lead["ProducerId"]
                hanging = ok(tool(kc.bootstrap_servers, "find-hanging", "--broker-id", str(f),
                                  "--max-transaction-timeout", "0"))
                assert as_dicts(hanging) == []
        finally:
            p.commit_transaction(WAIT)
