"""The transaction gauges of kafkette.broker.metrics through the dispatcher: open
transactions on this coordinator by state, and each partition's last-stable-offset lag
(high watermark - LSO), while a transaction is open, after it commits, after an abort."""
from __future__ import annotations

from handler_harness import create_topic, make_broker  # noqa: F401
from test_handlers_transactions import TOPIC, _add, _end, _init, _lso, _produce, _until

OPEN = "kafka_server_transaction_coordinator_metrics_open_transactions"
LAG = "kafka_cluster_partition_laststableoffsetlag"


def sample(broker, name, **labels):
    return broker.metrics.registry.get_sample_value(name, labels)


async def test_open_transactions_and_lso_lag(make_broker):
    b = make_broker()
    create_topic(b, TOPIC, partitions=2)
    # no coordinator yet: no open-transactions series (scraping does not create it)
    assert sample(b, OPEN, state="Ongoing") is None
    assert b._txn_coordinator is None
    assert sample(b, LAG, topic=TOPIC, partition="0") == 0

    pid, epoch = await _init(b, "m1")
    assert sample(b, OPEN, state="Ongoing") == 0
    assert await _add(b, "m1", pid, epoch, [0]) == {(TOPIC, 0): 0}
    assert (await _produce(b, "m1", pid, epoch, 0, [b"a", b"b", b"c"], 0)).error_code == 0
    assert sample(b, OPEN, state="Ongoing") == 1
    assert sample(b, OPEN, state="PrepareCommit") == 0
    # the LSO is held at the transaction's first offset (0); HW 3
    assert await _lso(b, 0, 1) == 0
    assert sample(b, LAG, topic=TOPIC, partition="0") == 3
    assert sample(b, LAG, topic=TOPIC, partition="1") == 0

    # a second transactional id, two records after the first three
    pid2, epoch2 = await _init(b, "m2")
    await _add(b, "m2", pid2, epoch2, [0, 1])
    assert (await _produce(b, "m2", pid2, epoch2, 0, [b"d", b"e"], 0)).error_code == 0
    assert (await _produce(b, "m2", pid2, epoch2, 1, [b"f"], 0)).error_code == 0
    assert sample(b, OPEN, state="Ongoing") == 2
    assert sample(b, LAG, topic=TOPIC, partition="0") == 5
    assert sample(b, LAG, topic=TOPIC, partition="1") == 1

    # commit m1: EndTxn answers once PrepareCommit is written; the markers follow. The
    # LSO then moves to m2's first offset (3); HW 6 with m1's marker
    assert await _end(b, "m1", pid, epoch, True) == 0
    await _until(lambda: sample(b, OPEN, state="PrepareCommit") == 0)
    assert await _lso(b, 0, 1) == 3
    assert sample(b, LAG, topic=TOPIC, partition="0") == 6 - 3
    assert sample(b, OPEN, state="Ongoing") == 1
    # abort m2: nothing open anywhere once its markers are written
    assert await _end(b, "m2", pid2, epoch2, False) == 0
    await _until(lambda: sample(b, OPEN, state="PrepareAbort") == 0)
    assert sample(b, OPEN, state="Ongoing") == 0
    assert sample(b, LAG, topic=TOPIC, partition="0") == 0
    assert sample(b, LAG, topic=TOPIC, partition="1") == 0
