"""InitProducerId (key 22), versions 0-5, and state that must survive a broker restart
(topics, data, offsets, producer ids), all through Dispatcher.handle."""
from __future__ import annotations

import pytest

from handler_harness import (  # noqa: F401
    broker,
    call,
    create_topic,
    fetch_request,
    make_broker,
    produce,
)
from kafkette.protocol.messages import (
    CreatePartitionsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
    InitProducerIdRequest,
    ListOffsetsRequest,
    MetadataRequest,
)
from kafkette.protocol.records import build_batch, decode_records


def init_pid(broker, version=4, transactional_id=None):
    req = InitProducerIdRequest(transactional_id=transactional_id, transaction_timeout_ms=60000,
                                producer_id=-1, producer_epoch=-1)
    return call(broker, req, version)


def batch(n, tag, **kw):
    return build_batch([(f"{tag}-k{i}".encode(), f"{tag}-v{i}".encode(), []) for i in range(n)],
                       timestamp_ms=1_000, **kw)


def fetch_values(broker, topic, partition=0, offset=0):
    resp = call(broker, fetch_request(topic, {partition: offset}), 12)
    p = resp.responses[0].partitions[0]
    assert p.error_code == 0, p
    return [r.value for r in decode_records(bytes(p.records or b""))], p.high_watermark


def latest(broker, topic, partition=0):
    LT = ListOffsetsRequest.ListOffsetsTopic
    LP = LT.ListOffsetsPartition
    resp = call(broker, ListOffsetsRequest(replica_id=-1, topics=[
        LT(name=topic, partitions=[LP(partition_index=partition, timestamp=-1)])]), 9)
    return resp.topics[0].partitions[0].offset


# -- InitProducerId ------------------------------------------------------------------

@pytest.mark.parametrize("version", range(0, 6))
def test_distinct_producer_ids_epoch_0(broker, version):
    a, b = init_pid(broker, version), init_pid(broker, version)
    assert (a.error_code, b.error_code) == (0, 0)
    assert a.producer_id >= 0 and b.producer_id >= 0
    assert a.producer_id != b.producer_id
    assert (a.producer_epoch, b.producer_epoch) == (0, 0)


def test_many_ids_unique(broker):
    ids = [init_pid(broker).producer_id for _ in range(50)]
    assert len(set(ids)) == 50
    assert ids == sorted(ids)


async def test_transactional_id_epoch_survives_restart(make_broker):
    """`__transaction_state` is read back on start: the same transactional id keeps its
    producer id and gets the next epoch, so the producer of before the restart stays
    fenced."""
    from handler_harness import acall
    req = InitProducerIdRequest(transactional_id="txn-1", transaction_timeout_ms=60000,
                                producer_id=-1, producer_epoch=-1)
    b1 = make_broker()
    r1 = await acall(b1, req, 4)
    assert r1.error_code == 0 and r1.producer_id >= 0
    make_broker.close(b1)
    b2 = make_broker()
    r2 = await acall(b2, req, 4)
    assert (r2.error_code, r2.producer_id, r2.producer_epoch) == \
        (0, r1.producer_id, r1.producer_epoch + 1)


def test_idempotent_batch_accepted(broker):
    create_topic(broker, "idem")
    pid = init_pid(broker).producer_id
    r = produce(broker, "idem", 0, batch(3, "a", producer_id=pid, producer_epoch=0, base_sequence=0))
    assert (r.error_code, r.base_offset) == (0, 0)


def test_producer_ids_survive_restart(make_broker):
    b1 = make_broker()
    before = [init_pid(b1, v).producer_id for v in range(0, 6)]
    make_broker.close(b1)
    b2 = make_broker()
    after = [init_pid(b2).producer_id for _ in range(3)]
    assert min(after) > max(before), (before, after)
    assert len(set(after)) == 3
    make_broker.close(b2)
    b3 = make_broker()
    assert init_pid(b3).producer_id > max(after)


# -- restart -------------------------------------------------------------------------

def test_topics_and_data_survive_restart(make_broker):
    b1 = make_broker()
    create_topic(b1, "durable", partitions=2, configs={"retention.ms": "3600000"})
    create_topic(b1, "other")
    tid = b1.image.topics["durable"].topic_id
    assert produce(b1, "durable", 0, batch(3, "a")).base_offset == 0
    assert produce(b1, "durable", 0, batch(2, "b")).base_offset == 3
    assert produce(b1, "durable", 1, batch(1, "c")).base_offset == 0
    cluster_id = b1.image.cluster_id
    make_broker.close(b1)

    b2 = make_broker()
    md = call(b2, MetadataRequest(topics=None), 12)
    assert md.cluster_id == cluster_id
    topics = {t.name: t for t in md.topics}
    assert sorted(topics) == ["durable", "other"]
    assert topics["durable"].topic_id == tid
    assert [p.partition_index for p in topics["durable"].partitions] == [0, 1]
    values, hw = fetch_values(b2, "durable", 0)
    assert values == [b"a-v0", b"a-v1", b"a-v2", b"b-v0", b"b-v1"]
    assert hw == 5
    assert latest(b2, "durable", 0) == 5
    assert latest(b2, "durable", 1) == 1
    # Next offsets continue where they stopped.
    assert produce(b2, "durable", 0, batch(2, "d")).base_offset == 5
    assert produce(b2, "durable", 1, batch(1, "e")).base_offset == 1
    values, hw = fetch_values(b2, "durable", 0, offset=5)
    assert (values, hw) == ([b"d-v0", b"d-v1"], 7)
    # The topic override survived too.
    DR = DescribeConfigsRequest.DescribeConfigsResource
    (r,) = call(b2, DescribeConfigsRequest(resources=[DR(resource_type=2, resource_name="durable",
                                                         configuration_keys=["retention.ms"])]),
                4).results
    assert [(c.name, c.value, c.config_source) for c in r.configs] == [
        ("retention.ms", "3600000", 1)]


def test_restart_twice_offsets_keep_growing(make_broker):
    b = make_broker()
    create_topic(b, "t")
    expected = 0
    for round_ in range(3):
        r = produce(b, "t", 0, batch(4, f"r{round_}"))
        assert r.base_offset == expected
        expected += 4
        make_broker.close(b)
        b = make_broker()
        assert latest(b, "t") == expected
    values, _ = fetch_values(b, "t")
    assert len(values) == 12 and values[0] == b"r0-v0" and values[-1] == b"r2-v3"


def test_deleted_topic_stays_deleted_after_restart(make_broker):
    b1 = make_broker()
    create_topic(b1, "gone")
    create_topic(b1, "kept")
    produce(b1, "gone", 0, batch(2, "x"))
    call(b1, DeleteTopicsRequest(topic_names=["gone"], timeout_ms=1000), 5)
    make_broker.close(b1)
    b2 = make_broker()
    assert sorted(b2.image.topics) == ["kept"]
    assert not (b2.data_dir / "gone-0").exists()
    (t,) = call(b2, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="gone")],
                                    allow_auto_topic_creation=False), 12).topics
    assert t.error_code == 3


def test_added_partitions_survive_restart(make_broker):
    b1 = make_broker()
    create_topic(b1, "grow")
    call(b1, CreatePartitionsRequest(topics=[CreatePartitionsRequest.CreatePartitionsTopic(
        name="grow", count=3, assignments=None)], timeout_ms=1000), 3)
    produce(b1, "grow", 2, batch(2, "p2"))
    make_broker.close(b1)
    b2 = make_broker()
    assert sorted(b2.image.topics["grow"].partitions) == [0, 1, 2]
    assert fetch_values(b2, "grow", 2) == ([b"p2-v0", b"p2-v1"], 2)
    assert produce(b2, "grow", 2, batch(1, "more")).base_offset == 2


def test_auto_created_topic_survives_restart(make_broker):
    b1 = make_broker()
    call(b1, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="auto")]), 12)
    produce(b1, "auto", 0, batch(1, "a"))
    make_broker.close(b1)
    b2 = make_broker()
    assert fetch_values(b2, "auto") == ([b"a-v0"], 1)
