"""Transactions on a 3-node cluster of real processes (confluent-kafka): the
coordinator is the leader of the id's `__transaction_state` partition (replication
factor 3, min ISR 2), the data partitions are led by other nodes, so markers travel as
WriteTxnMarkers and KIP-890's check as AddPartitionsToTxn v4 between brokers.

- commit and abort over partitions led by every node: read_committed readers see
  exactly the committed records;
- kill -9 of the coordinator's broker during an open transaction: the producer's
  commit goes to the new coordinator (the state was replicated) and commits;
- kill -9 between the EndTxn answer and the markers: the leader of a data partition
  is killed first, so its marker cannot be written, then, once EndTxn has answered, the
  coordinator's broker; the new coordinator finds PrepareCommit in the replicated
  state, writes the missing markers, and the LSO of every partition moves past them —
  no committed record lost, no transaction left hanging;
- kafka-python, aiokafka and kafkajs: an aborted and a committed transaction over two
  RF 3 partitions each, read back under read_committed.
"""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from it_clients import end_offsets_confluent, read_partitions_confluent

from itutil import unique_topic, wait_until
from kafkette.broker.txn_state import txn_partition_for

pytestmark = pytest.mark.timeout(240)
WAIT = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from kafkette.embedded_cluster import EmbeddedCluster
    logs = tmp_path_factory.mktemp("txn-cluster-logs")
    with EmbeddedCluster(3, {"replica.lag.time.max.ms": 3000}, log_dir=logs) as kc:
        yield kc


@pytest.fixture(autouse=True)
def _logs_on_failure(request, cluster):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n{cluster!r}\n{cluster.log_tails(80)}")


def _whole(cluster):
    cluster.restore()
    cluster.wait_ready(timeout=30)


def _topic(cluster, partitions=3) -> str:
    name = unique_topic("ctx")
    cluster.create_topic(name, partitions=partitions, replication_factor=3,
                         config={"min.insync.replicas": 2})
    wait_until(lambda: all(len(s.isr) == 3 and s.leader >= 0
                           for s in cluster.partition_states(name).values()), 30)
    return name


def _producer(cluster, txn_id) -> Producer:
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": txn_id,
                  "linger.ms": 5, "transaction.timeout.ms": 60000,
                  "message.timeout.ms": 60000})
    p.init_transactions(WAIT)
    return p


def _coordinator(cluster, txn_id) -> int:
    states = cluster.partition_states("__transaction_state")
    return states[txn_partition_for(txn_id, len(states))].leader


def _read_committed(cluster, topic, partitions) -> list[bytes]:
    return [v for _, _, v in read_partitions_confluent(cluster.bootstrap_servers, topic,
                                                        partitions, "read_committed", WAIT)]


def _lso(cluster, topic, partition) -> int:
    return end_offsets_confluent(cluster.bootstrap_servers, topic, [partition],
                                 "read_committed")[0]


def test_commit_and_abort_with_leaders_on_every_node(cluster):
    _whole(cluster)
    topic = _topic(cluster)
    leaders = {s.leader for s in cluster.partition_states(topic).values()}
    txn_id = f"c-{uuid.uuid4().hex[:8]}"
    p = _producer(cluster, txn_id)
    committed = []
    for r in range(4):
        p.begin_transaction()
        vals = [f"{r}-{i}".encode() for i in range(30)]
        for i, v in enumerate(vals):
            p.produce(topic, v, partition=i % 3)
        p.flush(WAIT)
        if r % 2:
            p.abort_transaction(WAIT)
        else:
            p.commit_transaction(WAIT)
            committed += vals
    assert sorted(_read_committed(cluster, topic, 3)) == sorted(committed)
    # the test means something only if some markers went to other nodes
    assert leaders - {_coordinator(cluster, txn_id)}, leaders


def test_coordinator_killed_during_an_open_transaction(cluster):
    _whole(cluster)
    topic = _topic(cluster)
    txn_id = f"k-{uuid.uuid4().hex[:8]}"
    p = _producer(cluster, txn_id)
    p.begin_transaction()
    vals = [f"open-{i}".encode() for i in range(60)]
    for i, v in enumerate(vals):
        p.produce(topic, v, partition=i % 3)
    assert p.flush(WAIT) == 0
    coordinator = _coordinator(cluster, txn_id)
    cluster.node(coordinator).kill()
    t0 = time.monotonic()
    p.commit_transaction(WAIT)
    print(f"\ncommit through the new coordinator {time.monotonic() - t0:.1f} s after the kill")
    assert _coordinator(cluster, txn_id) != coordinator
    cluster.node(coordinator).start()
    _whole(cluster)
    assert sorted(_read_committed(cluster, topic, 3)) == sorted(vals)


def test_coordinator_killed_between_the_end_txn_answer_and_the_markers(cluster):
    _whole(cluster)
    topic = _topic(cluster)
    txn_id = f"m-{uuid.uuid4().hex[:8]}"
    coordinator = _coordinator(cluster, txn_id)
    states = cluster.partition_states(topic)
    # a data partition led by another node: its marker cannot be written while it is down
    victim = next(s.leader for s in states.values() if s.leader != coordinator)
    p = _producer(cluster, txn_id)
    p.begin_transaction()
    vals = [f"m-{i}".encode() for i in range(60)]
    for i, v in enumerate(vals):
        p.produce(topic, v, partition=i % 3)
    assert p.flush(WAIT) == 0
    cluster.node(victim).kill()
    # EndTxn answers once PrepareCommit is replicated; the markers are sent after it
    p.commit_transaction(WAIT)
    cluster.node(coordinator).kill()
    cluster.node(victim).start()
    cluster.node(coordinator).start()
    _whole(cluster)
    # every partition's LSO moves past its marker: the new coordinator wrote them
    t0 = time.monotonic()
    wait_until(lambda: sorted(_read_committed(cluster, topic, 3)) == sorted(vals), WAIT,
               message="the committed transaction to become visible on every partition")
    print(f"\nmarkers completed {time.monotonic() - t0:.1f} s after the restart")
    ends = {q: _lso(cluster, topic, q) for q in range(3)}
    assert all(e > 0 for e in ends.values()), ends


# ------------------------------------------------------------- the other clients

def _committed_and_aborted(n=10):
    return ([f"c{i}".encode() for i in range(n)], [f"a{i}".encode() for i in range(n)])


def test_kafka_python_transactions_on_the_cluster(cluster):
    from kafka import KafkaProducer
    _whole(cluster)
    topic = _topic(cluster, partitions=2)
    committed, aborted = _committed_and_aborted()
    p = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers,
                      transactional_id=f"kpc-{uuid.uuid4().hex[:8]}", request_timeout_ms=30000)
    try:
        p.init_transactions()
        p.begin_transaction()
        for i, v in enumerate(aborted):
            p.send(topic, v, partition=i % 2)
        p.flush()
        p.abort_transaction()
        p.begin_transaction()
        for i, v in enumerate(committed):
            p.send(topic, v, partition=i % 2)
        p.commit_transaction()
    finally:
        p.close(timeout=5)
    assert sorted(_read_committed(cluster, topic, 2)) == sorted(committed)


def test_aiokafka_transactions_on_the_cluster(cluster):
    import asyncio
    from aiokafka import AIOKafkaProducer
    _whole(cluster)
    topic = _topic(cluster, partitions=2)
    committed, aborted = _committed_and_aborted()

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers,
                             transactional_id=f"aic-{uuid.uuid4().hex[:8]}",
                             request_timeout_ms=30000)
        await p.start()
        try:
            await p.begin_transaction()
            for i, v in enumerate(aborted):
                await p.send_and_wait(topic, v, partition=i % 2)
            await p.abort_transaction()
            async with p.transaction():
                for i, v in enumerate(committed):
                    await p.send(topic, v, partition=i % 2)
        finally:
            await p.stop()
    asyncio.run(asyncio.wait_for(run(), WAIT))
    assert sorted(_read_committed(cluster, topic, 2)) == sorted(committed)


def test_kafkajs_transactions_on_the_cluster(cluster):
    import json
    import os
    import shutil
    import subprocess
    from pathlib import Path
    node = shutil.which("node")
    kjs = Path(__file__).resolve().parent / "kafkajs"
    if node is None or not (kjs / "node_modules" / "kafkajs" / "package.json").exists():
        pytest.skip("node or kafkajs is not installed")
    _whole(cluster)
    topic = _topic(cluster, partitions=2)
    committed, aborted = _committed_and_aborted()
    cmd = {"cmd": "transactions", "brokers": cluster.bootstrap_servers.split(","),
           "topic": topic, "transactionalId": f"kjc-{uuid.uuid4().hex[:8]}",
           "transactions": [
               {"messages": [{"partition": i % 2, "value": v.decode()}
                             for i, v in enumerate(aborted)], "commit": False},
               {"messages": [{"partition": i % 2, "value": v.decode()}
                             for i, v in enumerate(committed)], "commit": True}]}
    proc = subprocess.run([node, str(kjs / "client.js")], input=json.dumps(cmd),
                          capture_output=True, text=True, timeout=120, cwd=str(kjs),
                          env=dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1])["done"] == ["aborted", "committed"]
    assert sorted(_read_committed(cluster, topic, 2)) == sorted(committed)
