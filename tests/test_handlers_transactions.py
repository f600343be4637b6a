"""Transactions through the dispatcher on one in-process broker: the requests a
transactional client sends (FindCoordinator key type 1, InitProducerId with an id,
AddPartitionsToTxn, Produce of transactional batches, AddOffsetsToTxn, EndTxn) and what
readers see (Fetch read_committed up to the LSO with the aborted transactions,
ListOffsets under read_committed), plus DescribeTransactions, ListTransactions,
DescribeProducers and WriteTxnMarkers' fencing."""
from __future__ import annotations

import asyncio

from handler_harness import acall, create_topic, make_broker  # noqa: F401
from kafkette.errors import ErrorCode
from kafkette.protocol import records as rec
from kafkette.protocol.messages import (
    AddOffsetsToTxnRequest,
    AddPartitionsToTxnRequest,
    DescribeProducersRequest,
    DescribeTransactionsRequest,
    EndTxnRequest,
    FetchRequest,
    FindCoordinatorRequest,
    InitProducerIdRequest,
    ListOffsetsRequest,
    ListTransactionsRequest,
    ProduceRequest,
    WriteTxnMarkersRequest,
)

TOPIC = "tx-topic"


async def _until(cond, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        v = cond() if not asyncio.iscoroutinefunction(cond) else await cond()
        if v:
            return v
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _init(b, txn_id, timeout_ms=60000):
    r = await acall(b, FindCoordinatorRequest(key=txn_id, key_type=1), 3)
    assert r.error_code == 0, r
    for _ in range(200):
        r = await acall(b, InitProducerIdRequest(transactional_id=txn_id,
                                                 transaction_timeout_ms=timeout_ms,
                                                 producer_id=-1, producer_epoch=-1), 4)
        if r.error_code != ErrorCode.CONCURRENT_TRANSACTIONS:
            break
        await asyncio.sleep(0.02)
    assert r.error_code == 0, r
    return r.producer_id, r.producer_epoch


async def _add(b, txn_id, pid, epoch, partitions, version=3):
    """AddPartitionsToTxn, retried while the previous transaction completes
    (CONCURRENT_TRANSACTIONS), as clients do."""
    T = AddPartitionsToTxnRequest.AddPartitionsToTxnTopic
    for _ in range(200):
        r = await acall(b, AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=txn_id, v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=[T(name=TOPIC, partitions=list(partitions))]), version)
        codes = {(t.name, p.partition_index): p.partition_error_code
                 for t in r.results_by_topic_v3_and_below for p in t.results_by_partition}
        if ErrorCode.CONCURRENT_TRANSACTIONS not in codes.values():
            return codes
        await asyncio.sleep(0.02)
    return codes


async def _produce(b, txn_id, pid, epoch, partition, values, seq):
    batch = rec.build_batch([(None, v, []) for v in values], producer_id=pid,
                            producer_epoch=epoch, base_sequence=seq, transactional=True,
                            timestamp_ms=b.clock.time_ms())
    T = ProduceRequest.TopicProduceData
    P = T.PartitionProduceData
    r = await acall(b, ProduceRequest(transactional_id=txn_id, acks=-1, timeout_ms=5000,
                                      topic_data=[T(name=TOPIC, partition_data=[
                                          P(index=partition, records=batch)])]), 9)
    return r.responses[0].partition_responses[0]


async def _end(b, txn_id, pid, epoch, commit):
    for _ in range(200):
        r = await acall(b, EndTxnRequest(transactional_id=txn_id, producer_id=pid,
                                         producer_epoch=epoch, committed=commit), 3)
        if r.error_code != ErrorCode.CONCURRENT_TRANSACTIONS:
            return r.error_code
        await asyncio.sleep(0.02)
    return r.error_code


async def _fetch(b, partition, isolation):
    T = FetchRequest.FetchTopic
    P = T.FetchPartition
    r = await acall(b, FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0,
                                    max_bytes=1 << 20, isolation_level=isolation,
                                    topics=[T(topic=TOPIC, partitions=[
                                        P(partition=partition, fetch_offset=0,
                                          partition_max_bytes=1 << 20)])]), 11)
    return r.responses[0].partitions[0]


def _values(records) -> list[bytes]:
    """Values of the data batches (control batches, the markers, left out)."""
    data = bytes(records or b"")
    out = []
    for pos, h in rec.iter_batches(data):
        if not h.is_control:
            out += [r.value for r in rec.decode_records(data[pos:pos + h.size])]
    return out


async def _lso(b, partition, isolation):
    T = ListOffsetsRequest.ListOffsetsTopic
    P = T.ListOffsetsPartition
    r = await acall(b, ListOffsetsRequest(replica_id=-1, isolation_level=isolation, topics=[
        T(name=TOPIC, partitions=[P(partition_index=partition, timestamp=-1)])]), 5)
    return r.topics[0].partitions[0].offset


async def test_commit_then_abort_read_committed_and_uncommitted(make_broker):
    b = make_broker()
    create_topic(b, TOPIC, partitions=2)
    pid, epoch = await _init(b, "t1")
    assert await _add(b, "t1", pid, epoch, [0, 1]) == {(TOPIC, 0): 0, (TOPIC, 1): 0}
    assert (await _produce(b, "t1", pid, epoch, 0, [b"c0", b"c1"], 0)).error_code == 0
    assert (await _produce(b, "t1", pid, epoch, 1, [b"c2"], 0)).error_code == 0
    # open: read_committed sees nothing and the LSO is the transaction's first offset
    p0 = await _fetch(b, 0, 1)
    assert (p0.high_watermark, p0.last_stable_offset, _values(p0.records)) == (2, 0, [])
    assert await _lso(b, 0, 1) == 0 and await _lso(b, 0, 0) == 2
    assert _values((await _fetch(b, 0, 0)).records) == [b"c0", b"c1"]
    assert await _end(b, "t1", pid, epoch, True) == 0
    # the markers go out after the answer: wait for the LSO to pass the marker
    await _until(lambda: b.replica_manager.partitions[(TOPIC, 0)].last_stable_offset == 3)
    p0 = await _fetch(b, 0, 1)
    assert _values(p0.records) == [b"c0", b"c1"]
    assert p0.aborted_transactions == []
    assert await _lso(b, 0, 1) == 3
    # a second transaction, aborted
    assert await _add(b, "t1", pid, epoch, [0]) == {(TOPIC, 0): 0}
    assert (await _produce(b, "t1", pid, epoch, 0, [b"a0"], 2)).error_code == 0
    assert await _end(b, "t1", pid, epoch, False) == 0
    await _until(lambda: b.replica_manager.partitions[(TOPIC, 0)].last_stable_offset == 5)
    p0 = await _fetch(b, 0, 1)
    # the aborted record is returned with the batch list, and named as aborted
    assert [(a.producer_id, a.first_offset) for a in p0.aborted_transactions] == [(pid, 3)]
    assert (await _fetch(b, 0, 0)).aborted_transactions is None
    # EndTxn again with the same result once complete: NONE; the opposite: INVALID_TXN_STATE
    assert await _end(b, "t1", pid, epoch, False) == 0
    assert await _end(b, "t1", pid, epoch, True) == ErrorCode.INVALID_TXN_STATE


async def test_second_init_fences_the_first_producer(make_broker):
    b = make_broker()
    create_topic(b, TOPIC, partitions=1)
    pid, epoch = await _init(b, "t2")
    assert await _add(b, "t2", pid, epoch, [0]) == {(TOPIC, 0): 0}
    assert (await _produce(b, "t2", pid, epoch, 0, [b"zombie"], 0)).error_code == 0
    pid2, epoch2 = await _init(b, "t2")        # aborts the open transaction
    # Kafka's fence: the abort takes epoch + 1, the retried InitProducerId epoch + 2
    assert (pid2, epoch2) == (pid, epoch + 2)
    await _until(lambda: b.replica_manager.partitions[(TOPIC, 0)].last_stable_offset == 2)
    assert _values((await _fetch(b, 0, 1)).records) == [b"zombie"]  # returned, but aborted
    assert [(a.producer_id, a.first_offset)
            for a in (await _fetch(b, 0, 1)).aborted_transactions] == [(pid, 0)]
    # the old epoch is fenced at the coordinator (v3: PRODUCER_FENCED) and the partition
    assert await _end(b, "t2", pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    assert (await _produce(b, "t2", pid, epoch, 0, [b"late"], 1)).error_code == \
        ErrorCode.INVALID_PRODUCER_EPOCH


async def test_add_offsets_describe_list_and_describe_producers(make_broker):
    b = make_broker()
    create_topic(b, TOPIC, partitions=1)
    pid, epoch = await _init(b, "t3")
    assert await _add(b, "t3", pid, epoch, [0]) == {(TOPIC, 0): 0}
    r = await acall(b, AddOffsetsToTxnRequest(transactional_id="t3", producer_id=pid,
                                              producer_epoch=epoch, group_id="g3"), 3)
    assert r.error_code == 0
    assert (await _produce(b, "t3", pid, epoch, 0, [b"x"], 0)).error_code == 0
    d = (await acall(b, DescribeTransactionsRequest(transactional_ids=["t3", "nope"]), 0))
    by_id = {s.transactional_id: s for s in d.transaction_states}
    assert by_id["t3"].error_code == 0 and by_id["t3"].transaction_state == "Ongoing"
    assert by_id["t3"].producer_id == pid
    parts = {(t.topic, p) for t in by_id["t3"].topics for p in t.partitions}
    assert (TOPIC, 0) in parts and any(t == "__consumer_offsets" for t, _ in parts)
    assert by_id["nope"].error_code == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    ls = await acall(b, ListTransactionsRequest(state_filters=["Ongoing", "Bogus"],
                                                producer_id_filters=[]), 1)
    assert [s.transactional_id for s in ls.transaction_states] == ["t3"]
    assert ls.unknown_state_filters == ["Bogus"]
    T = DescribeProducersRequest.TopicRequest
    dp = await acall(b, DescribeProducersRequest(topics=[T(name=TOPIC, partition_indexes=[0])]), 0)
    (prod,) = dp.topics[0].partitions[0].active_producers
    assert (prod.producer_id, prod.producer_epoch, prod.current_txn_start_offset) == (pid, epoch, 0)
    assert await _end(b, "t3", pid, epoch, True) == 0


async def test_write_txn_markers_refuses_an_older_producer_epoch(make_broker):
    b = make_broker()
    create_topic(b, TOPIC, partitions=1)
    await _init(b, "t4")
    pid, epoch = await _init(b, "t4")   # epoch 1: a marker of epoch 0 is older
    assert epoch >= 1
    await _add(b, "t4", pid, epoch, [0])
    assert (await _produce(b, "t4", pid, epoch, 0, [b"x"], 0)).error_code == 0
    M = WriteTxnMarkersRequest.WritableTxnMarker
    T = M.WritableTxnMarkerTopic
    r = await acall(b, WriteTxnMarkersRequest(markers=[M(
        producer_id=pid, producer_epoch=epoch - 1, transaction_result=True,
        coordinator_epoch=0, topics=[T(name=TOPIC, partition_indexes=[0])])]), 1)
    code = r.markers[0].topics[0].partitions[0].error_code
    assert code in (ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.PRODUCER_FENCED), code
    assert await _end(b, "t4", pid, epoch, True) == 0


async def test_restart_between_the_end_txn_answer_and_the_markers(make_broker):
    """EndTxn answers once PrepareCommit is in `__transaction_state`; if the broker stops
    before the markers are written, the coordinator of the next start finds the
    PrepareCommit and writes them, so the LSO moves on without any client."""
    b = make_broker()
    create_topic(b, TOPIC, partitions=1)
    pid, epoch = await _init(b, "t5")
    assert await _add(b, "t5", pid, epoch, [0]) == {(TOPIC, 0): 0}
    assert (await _produce(b, "t5", pid, epoch, 0, [b"p0", b"p1"], 0)).error_code == 0
    stuck = asyncio.Event()

    async def markers_never_arrive(*args, **kwargs):
        await stuck.wait()
    b.write_txn_markers = markers_never_arrive
    assert await _end(b, "t5", pid, epoch, True) == 0
    await asyncio.sleep(0)
    assert b.replica_manager.partitions[(TOPIC, 0)].last_stable_offset == 0   # still open
    make_broker.close(b)
    b2 = make_broker()
    assert b2.replica_manager.partitions[(TOPIC, 0)].last_stable_offset == 0
    b2.txn_coordinator_ready()     # what the server does at start when the topic exists
    await _until(lambda: b2.replica_manager.partitions[(TOPIC, 0)].last_stable_offset == 3)
    assert _values((await _fetch(b2, 0, 1)).records) == [b"p0", b"p1"]
