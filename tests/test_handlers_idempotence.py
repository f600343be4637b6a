"""Idempotent produce through Dispatcher.handle: InitProducerId, then Produce retries
answered with the original offsets, sequence and epoch errors, and state that survives
a broker restart."""
from __future__ import annotations

import pytest

from handler_harness import (  # noqa: F401
    broker,
    call,
    create_topic,
    fetch_request,
    make_broker,
    produce,
    produce_request,
)
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import InitProducerIdRequest
from kafkette.protocol.records import build_batch, decode_records


def init_pid(broker, version=4, producer_id=-1, producer_epoch=-1):
    r = call(broker, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000,
                                           producer_id=producer_id, producer_epoch=producer_epoch),
             version)
    assert r.error_code == 0, r
    return r


def batch(pid, seq, n=1, epoch=0, tag="v", ts=1_000):
    return build_batch([(b"k", f"{tag}{seq + i}".encode(), []) for i in range(n)], timestamp_ms=ts,
                       producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def values(broker, topic, partition=0):
    resp = call(broker, fetch_request(topic, {partition: 0}), 12)
    p = resp.responses[0].partitions[0]
    assert p.error_code == 0, p
    return [r.value.decode() for r in decode_records(bytes(p.records or b""))]


def leo(broker, topic, partition=0):
    return broker.replica_manager.partition(topic, partition).log.log_end_offset


@pytest.mark.parametrize("version", range(3, 12))
def test_retry_answered_with_original_offset(broker, version):
    create_topic(broker, "idem")
    pid = init_pid(broker).producer_id
    first = produce(broker, "idem", 0, batch(pid, 0, 3), version=version)
    second = produce(broker, "idem", 0, batch(pid, 3, 2), version=version)
    assert (first.error_code, first.base_offset, second.base_offset) == (0, 0, 3)
    for b, base in ((batch(pid, 0, 3), 0), (batch(pid, 3, 2), 3)):
        r = produce(broker, "idem", 0, b, version=version)
        assert (r.error_code, r.base_offset) == (ErrorCode.NONE, base)
        if version >= 5:
            assert r.log_start_offset == 0
        assert r.log_append_time_ms == -1
    assert values(broker, "idem") == ["v0", "v1", "v2", "v3", "v4"]


def test_retry_on_log_append_time_topic_returns_original_append_time(broker):
    create_topic(broker, "lat", configs={"message.timestamp.type": "LogAppendTime"})
    pid = init_pid(broker).producer_id
    first = produce(broker, "lat", 0, batch(pid, 0, 2))
    broker.clock.advance(5_000)
    again = produce(broker, "lat", 0, batch(pid, 0, 2))
    assert first.log_append_time_ms > 0
    assert (again.base_offset, again.log_append_time_ms) == (0, first.log_append_time_ms)


def test_out_of_order_sequence(broker):
    create_topic(broker, "ooo")
    pid = init_pid(broker).producer_id
    produce(broker, "ooo", 0, batch(pid, 0, 2))
    r = produce(broker, "ooo", 0, batch(pid, 5))
    assert (r.error_code, r.base_offset) == (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
    assert "out of order sequence" in r.error_message
    assert leo(broker, "ooo") == 2


def test_six_batches_back_is_out_of_order(broker):
    create_topic(broker, "six")
    pid = init_pid(broker).producer_id
    for seq in range(6):
        produce(broker, "six", 0, batch(pid, seq))
    assert produce(broker, "six", 0, batch(pid, 1)).base_offset == 1
    r = produce(broker, "six", 0, batch(pid, 0))
    assert r.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert leo(broker, "six") == 6


def test_old_epoch_is_invalid_producer_epoch_never_producer_fenced(broker):
    create_topic(broker, "ep")
    pid = init_pid(broker).producer_id
    produce(broker, "ep", 0, batch(pid, 0, epoch=0))
    # The Java client / librdkafka bump an idempotent producer's epoch locally (KIP-360)
    # and restart the sequences at 0.
    r = produce(broker, "ep", 0, batch(pid, 0, epoch=1))
    assert (r.error_code, r.base_offset) == (0, 1)
    for version in (3, 8, 11):
        r = produce(broker, "ep", 0, batch(pid, 1, epoch=0), version=version)
        assert r.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    r = produce(broker, "ep", 0, batch(pid, 5, epoch=2))
    assert r.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_negative_sequence_is_invalid_record(broker):
    create_topic(broker, "neg")
    pid = init_pid(broker).producer_id
    r = produce(broker, "neg", 0, batch(pid, -1))
    assert r.error_code == ErrorCode.INVALID_RECORD


def test_partitions_are_independent_in_one_request(broker):
    create_topic(broker, "multi", partitions=2)
    pid = init_pid(broker).producer_id
    produce(broker, "multi", 0, batch(pid, 0, 2, tag="a"))
    # partition 0: a retry; partition 1: this producer's first batch there
    resp = call(broker, produce_request("multi", {0: batch(pid, 0, 2, tag="a"),
                                                 1: batch(pid, 0, 2, tag="b")}), 9)
    got = {p.index: (p.error_code, p.base_offset) for p in resp.responses[0].partition_responses}
    assert got == {0: (0, 0), 1: (0, 0)}
    assert values(broker, "multi", 0) == ["a0", "a1"]
    assert values(broker, "multi", 1) == ["b0", "b1"]


def test_acks_0_retry_appends_nothing(broker):
    create_topic(broker, "a0")
    pid = init_pid(broker).producer_id
    assert produce(broker, "a0", 0, batch(pid, 0), acks=0) is None
    assert produce(broker, "a0", 0, batch(pid, 0), acks=0) is None
    assert values(broker, "a0") == ["v0"]


def test_plain_batches_are_not_checked(broker):
    create_topic(broker, "plain")
    b = build_batch([(None, b"x", [])], timestamp_ms=1_000)
    assert [produce(broker, "plain", 0, b).base_offset for _ in range(3)] == [0, 1, 2]


@pytest.mark.parametrize("version", [3, 4, 5])
def test_init_producer_id_with_id_and_epoch_gives_a_new_id(broker, version):
    # Kafka: for a null transactional id, always a new producer id with epoch 0; the
    # KIP-360 id/epoch fields only matter for transactional ids.
    a = init_pid(broker, version)
    b = init_pid(broker, version, producer_id=a.producer_id, producer_epoch=a.producer_epoch)
    assert b.producer_id > a.producer_id and b.producer_epoch == 0


def test_duplicates_detected_after_a_broker_restart(make_broker):
    b1 = make_broker()
    create_topic(b1, "rs", partitions=1)
    pid = init_pid(b1).producer_id
    bases = [produce(b1, "rs", 0, batch(pid, seq, 2)).base_offset for seq in range(0, 14, 2)]
    make_broker.close(b1)
    b2 = make_broker()
    for i, seq in enumerate(range(4, 14, 2)):  # the last five batches
        r = produce(b2, "rs", 0, batch(pid, seq, 2))
        assert (r.error_code, r.base_offset) == (0, bases[i + 2])
    assert produce(b2, "rs", 0, batch(pid, 0, 2)).error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce(b2, "rs", 0, batch(pid, 14)).base_offset == 14
    assert values(b2, "rs") == [f"v{i}" for i in range(15)]
