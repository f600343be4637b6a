"""Produce (key 0), versions 3-11 served, 0-2 listed and refused."""
from __future__ import annotations

import pytest

from handler_harness import (  # noqa: F401
    START_MS,
    broker,
    call,
    create_topic,
    fetch_request,
    make_broker,
    produce,
    produce_request,
)
from kafkette.protocol.records import (
    CRC_OFFSET,
    CODEC_GZIP,
    PARTITION_LEADER_EPOCH_OFFSET,
    build_batch,
    decode_records,
    parse_header,
)


def leo(broker, topic, partition=0) -> int:
    return broker.replica_manager.partition(topic, partition).log.log_end_offset


def batch(n: int, tag: str = "v", ts: int = 1_000, size: int = 10, **kw) -> bytes:
    return build_batch([(f"k{i}".encode(), (f"{tag}{i}-" + "x" * size).encode(), [("h", b"1")])
                        for i in range(n)], timestamp_ms=ts, **kw)


def fetched(broker, topic, partition=0, offset=0) -> list:
    resp = call(broker, fetch_request(topic, {partition: offset}), 12)
    p = resp.responses[0].partitions[0]
    assert p.error_code == 0
    return decode_records(p.records or b"")


@pytest.mark.parametrize("acks", [1, -1])
def test_v3_to_v11_append_and_return_increasing_base_offsets(broker, acks):
    create_topic(broker, "t")
    expected = 0
    for version in range(3, 12):
        r = produce(broker, "t", 0, batch(3, tag=f"v{version}-"), version=version, acks=acks)
        assert r.error_code == 0, (version, r)
        assert r.base_offset == expected, version
        if version >= 5:
            assert r.log_start_offset == 0
        assert r.log_append_time_ms == -1  # CreateTime topic
        expected += 3
    assert leo(broker, "t") == expected == 27
    recs = fetched(broker, "t")
    assert [r.offset for r in recs] == list(range(27))
    assert recs[0].value == b"v3-0-" + b"x" * 10
    assert recs[-1].value == b"v11-2-" + b"x" * 10


def test_several_partitions_in_one_request(broker):
    create_topic(broker, "t", partitions=3)
    req = produce_request("t", {0: batch(2), 2: batch(4)})
    resp = call(broker, req, 11)
    (t,) = resp.responses
    assert t.name == "t"
    assert [(p.index, p.error_code, p.base_offset) for p in t.partition_responses] == [
        (0, 0, 0), (2, 0, 0)]
    assert (leo(broker, "t", 0), leo(broker, "t", 1), leo(broker, "t", 2)) == (2, 0, 4)
    r = produce(broker, "t", 0, batch(1))
    assert r.base_offset == 2


@pytest.mark.parametrize("version", [3, 7, 11])
def test_two_batches_for_one_partition_are_invalid_record(broker, version):
    """Kafka's ProduceRequest.validateRecords: v3+ carries exactly one batch per
    partition. The other partitions of the request are appended."""
    create_topic(broker, "t", partitions=3)
    req = produce_request("t", {0: batch(2) + batch(3), 2: batch(4)})
    resp = call(broker, req, version)
    (t,) = resp.responses
    assert [(p.index, p.error_code) for p in t.partition_responses] == [(0, 87), (2, 0)]
    assert (leo(broker, "t", 0), leo(broker, "t", 2)) == (0, 4)


@pytest.mark.parametrize("producer_id", [-1, 7])
def test_client_control_batch_is_invalid_record(broker, producer_id):
    """Kafka's LogValidator: only transaction coordinators write control batches
    (markers); a client's, with or without a producer id, is INVALID_RECORD."""
    create_topic(broker, "t", partitions=1)
    marker = build_batch([(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00", [])],
                         producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                         control=True)
    resp = call(broker, produce_request("t", {0: marker}), 9)
    assert resp.responses[0].partition_responses[0].error_code == 87
    assert leo(broker, "t", 0) == 0


def test_transactional_batch_without_transactional_id_refuses_the_request(broker):
    """Kafka's KafkaApis: transactional records without a transactional id are not
    authorized: TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the whole request."""
    create_topic(broker, "t", partitions=2)
    txn = build_batch([(b"k", b"v", [])], producer_id=5, producer_epoch=0, base_sequence=0,
                      transactional=True)
    resp = call(broker, produce_request("t", {0: txn, 1: batch(1)}), 9)
    assert [p.error_code for p in resp.responses[0].partition_responses] == [53, 53]
    assert (leo(broker, "t", 0), leo(broker, "t", 1)) == (0, 0)


def test_empty_record_set_is_invalid_record(broker):
    create_topic(broker, "t")
    r = produce(broker, "t", 0, b"")
    assert r.error_code == 87
    assert leo(broker, "t") == 0


def test_acks_0_returns_no_response_but_appends(broker):
    create_topic(broker, "t")
    for version in (3, 9, 11):
        assert produce(broker, "t", 0, batch(2), version=version, acks=0) is None
    assert leo(broker, "t") == 6
    assert [r.offset for r in fetched(broker, "t")] == list(range(6))


def test_acks_0_error_sends_nothing(broker):
    assert call(broker, produce_request("missing", {0: batch(1)}, acks=0), 9) is None


@pytest.mark.parametrize("acks", [2, 3, -2, 100])
def test_invalid_required_acks(broker, acks):
    create_topic(broker, "t", partitions=2)
    resp = call(broker, produce_request("t", {0: batch(1), 1: batch(1)}, acks=acks), 9)
    assert [(p.index, p.error_code, p.base_offset)
            for p in resp.responses[0].partition_responses] == [(0, 21, -1), (1, 21, -1)]
    assert leo(broker, "t", 0) == leo(broker, "t", 1) == 0


def _corrupt(b: bytes) -> bytes:
    bad = bytearray(b)
    bad[-3] ^= 0xFF  # inside the last record's value: the CRC no longer matches
    return bytes(bad)


@pytest.mark.parametrize("version", [3, 8, 11])
def test_corrupt_crc_rejected_other_partitions_succeed(broker, version):
    create_topic(broker, "t", partitions=2)
    produce(broker, "t", 0, batch(2))  # something already there
    req = produce_request("t", {0: _corrupt(batch(3)), 1: batch(3)})
    resp = call(broker, req, version)
    parts = {p.index: p for p in resp.responses[0].partition_responses}
    assert (parts[0].error_code, parts[0].base_offset) == (2, -1)
    assert (parts[1].error_code, parts[1].base_offset) == (0, 0)
    assert leo(broker, "t", 0) == 2
    assert leo(broker, "t", 1) == 3
    assert [r.offset for r in fetched(broker, "t", 0)] == [0, 1]


def test_corrupt_crc_header_field(broker):
    create_topic(broker, "t")
    bad = bytearray(batch(2))
    bad[CRC_OFFSET] ^= 0x01
    r = produce(broker, "t", 0, bytes(bad))
    assert r.error_code == 2
    assert leo(broker, "t") == 0


def test_a_corrupt_second_batch_rejects_the_whole_partition_request(broker):
    """Nothing of a refused partition request is appended."""
    create_topic(broker, "t")
    r = produce(broker, "t", 0, batch(2) + _corrupt(batch(2)))
    assert r.error_code == 87  # the one-batch rule is checked before any CRC
    assert leo(broker, "t") == 0
    r = produce(broker, "t", 0, batch(2))
    assert (r.error_code, r.base_offset) == (0, 0)


@pytest.mark.parametrize("junk", [b"\x00" * 10, b"\x00" * 70, b"\xff" * 61])
def test_garbage_records_are_corrupt(broker, junk):
    create_topic(broker, "t")
    r = produce(broker, "t", 0, junk)
    assert r.error_code == 2
    assert leo(broker, "t") == 0


def test_truncated_batch_is_corrupt(broker):
    create_topic(broker, "t")
    r = produce(broker, "t", 0, batch(3)[:-5])
    assert r.error_code == 2
    assert leo(broker, "t") == 0


def test_batch_larger_than_max_message_bytes(broker):
    create_topic(broker, "small", configs={"max.message.bytes": "1000"})
    create_topic(broker, "big")
    large = build_batch([(None, b"y" * 1500, [])], timestamp_ms=5)
    r = produce(broker, "small", 0, large)
    assert r.error_code == 10
    assert r.base_offset == -1
    assert leo(broker, "small") == 0
    # The same batch fits the default limit (1048588).
    assert produce(broker, "big", 0, large).error_code == 0
    # And a small one fits the small topic.
    assert produce(broker, "small", 0, batch(1)).error_code == 0


def test_broker_message_max_bytes_is_the_topic_default(make_broker):
    b = make_broker({"message.max.bytes": "2000"})
    create_topic(b, "t")
    assert produce(b, "t", 0, build_batch([(None, b"y" * 3000, [])], timestamp_ms=5)).error_code == 10
    assert produce(b, "t", 0, build_batch([(None, b"y" * 1000, [])], timestamp_ms=5)).error_code == 0


def test_unknown_topic_and_partition(broker):
    create_topic(broker, "t", partitions=1)
    r = produce(broker, "missing", 0, batch(1))
    assert r.error_code == 3
    assert "missing" not in broker.image.topics  # produce never auto-creates
    r = produce(broker, "t", 5, batch(1))
    assert r.error_code == 3


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_unsupported_per_partition(broker, version):
    create_topic(broker, "t", partitions=2)
    resp = call(broker, produce_request("t", {0: batch(1), 1: batch(1)}), version)
    assert [(p.index, p.error_code) for p in resp.responses[0].partition_responses] == [
        (0, 35), (1, 35)]
    assert leo(broker, "t", 0) == leo(broker, "t", 1) == 0


@pytest.mark.parametrize("client_epoch", [5, 2**31 - 1, -7])
def test_client_partition_leader_epoch_is_not_rejected(broker, client_epoch):
    """franz-go #1229: kfake rejected Sarama's non-zero epoch. The broker overwrites it."""
    create_topic(broker, "t")
    r = produce(broker, "t", 0, batch(2, partition_leader_epoch=client_epoch))
    assert (r.error_code, r.base_offset) == (0, 0)
    resp = call(broker, fetch_request("t", {0: 0}), 12)
    data = bytes(resp.responses[0].partitions[0].records)
    h = parse_header(data)
    assert h.partition_leader_epoch == 0  # the partition's epoch, stamped by the broker
    assert int.from_bytes(data[PARTITION_LEADER_EPOCH_OFFSET:PARTITION_LEADER_EPOCH_OFFSET + 4],
                          "big", signed=True) == 0
    assert len(decode_records(data)) == 2  # CRC still valid after stamping


def test_client_base_offset_is_overwritten(broker):
    create_topic(broker, "t")
    produce(broker, "t", 0, batch(2))
    r = produce(broker, "t", 0, batch(3, base_offset=12345))
    assert r.base_offset == 2
    assert [x.offset for x in fetched(broker, "t")] == [0, 1, 2, 3, 4]


def test_compressed_batch_stored_as_is(broker):
    create_topic(broker, "t")
    b = build_batch([(b"k", b"compress me " * 50, [])] * 4, codec=CODEC_GZIP, timestamp_ms=7)
    r = produce(broker, "t", 0, b)
    assert (r.error_code, r.base_offset) == (0, 0)
    assert leo(broker, "t") == 4
    resp = call(broker, fetch_request("t", {0: 0}), 12)
    data = bytes(resp.responses[0].partitions[0].records)
    assert len(data) == len(b)  # not decompressed or re-encoded
    assert [x.value for x in decode_records(data)] == [b"compress me " * 50] * 4


def test_log_append_time_topic(broker):
    create_topic(broker, "lat", configs={"message.timestamp.type": "LogAppendTime"})
    r = produce(broker, "lat", 0, batch(2, ts=42))
    assert r.error_code == 0
    assert r.log_append_time_ms == broker.clock.time_ms() == START_MS
    assert [x.timestamp for x in fetched(broker, "lat")] == [START_MS, START_MS]


def test_null_records_is_an_error(broker):
    create_topic(broker, "t")
    from kafkette.protocol.messages import ProduceRequest
    req = ProduceRequest(transactional_id=None, acks=1, timeout_ms=100, topic_data=[
        ProduceRequest.TopicProduceData(name="t", partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=None)])])
    resp = call(broker, req, 9)
    assert resp.responses[0].partition_responses[0].error_code != 0
    assert leo(broker, "t") == 0


def _recrc(buf: bytearray) -> bytes:
    from crc32c import crc32c
    from kafkette.protocol.records import ATTRIBUTES_OFFSET
    buf[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(buf[ATTRIBUTES_OFFSET:])).to_bytes(4, "big")
    return bytes(buf)


def test_record_count_inconsistent_with_offset_delta_is_invalid_record(broker):
    from kafkette.protocol.records import RECORDS_COUNT_OFFSET
    create_topic(broker, "t")
    bad = bytearray(batch(3))
    bad[RECORDS_COUNT_OFFSET:RECORDS_COUNT_OFFSET + 4] = (5).to_bytes(4, "big")
    r = produce(broker, "t", 0, _recrc(bad))
    assert r.error_code == 87  # INVALID_RECORD
    assert leo(broker, "t") == 0


def test_magic_1_message_set_is_refused(broker):
    from kafkette.protocol.records import MAGIC_OFFSET
    create_topic(broker, "t")
    bad = bytearray(batch(1))
    bad[MAGIC_OFFSET] = 1
    r = produce(broker, "t", 0, bytes(bad))
    assert r.error_code != 0
    assert leo(broker, "t") == 0


def test_min_insync_replicas_refuses_acks_all_only(broker):
    # One replica cannot satisfy min.insync.replicas=2: Kafka answers acks=all with
    # NOT_ENOUGH_REPLICAS (19) and appends nothing, while acks=1 still succeeds.
    create_topic(broker, "misr", configs={"min.insync.replicas": "2"})
    r = produce(broker, "misr", 0, batch(1), acks=-1)
    assert r.error_code == 19 and r.base_offset == -1
    assert leo(broker, "misr") == 0
    assert produce(broker, "misr", 0, batch(1), acks=1).error_code == 0
    assert leo(broker, "misr") == 1
    create_topic(broker, "misr1")
    assert produce(broker, "misr1", 0, batch(1), acks=-1).error_code == 0


# -- compacted topics refuse records without a key (LogValidator.validateKey, KIP-467) --

def _keyed(*keys, codec=0) -> bytearray:
    return bytearray(build_batch([(k, b"v", []) for k in keys], timestamp_ms=START_MS,
                                 codec=codec))


@pytest.mark.parametrize("codec", [0, CODEC_GZIP])
def test_compacted_topic_refuses_records_without_a_key_naming_each(broker, codec):
    create_topic(broker, "cmp", configs={"cleanup.policy": "compact"})
    r = call(broker, produce_request("cmp", {0: _keyed(None, b"k1", None, codec=codec)}), 9)
    p = r.responses[0].partition_responses[0]
    msg = "Compacted topic cannot accept message without key in topic partition cmp-0."
    assert p.error_code == 87 and p.base_offset == -1       # INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in p.record_errors] == \
        [(0, msg), (2, msg)]
    assert p.error_message == (
        "One or more records have been rejected due to 2 record errors in total, and only "
        f"showing the first three errors at most: [RecordError(batchIndex=0, message='{msg}'), "
        f"RecordError(batchIndex=2, message='{msg}')]")
    assert leo(broker, "cmp") == 0                           # nothing of the batch written
    ok = call(broker, produce_request("cmp", {0: _keyed(b"a", b"b", codec=codec)}), 9)
    assert ok.responses[0].partition_responses[0].error_code == 0 and leo(broker, "cmp") == 2


def test_compacted_topic_refusal_before_v8_is_the_error_code_alone(broker):
    create_topic(broker, "cmp7", configs={"cleanup.policy": "compact,delete"})
    r = call(broker, produce_request("cmp7", {0: _keyed(None)}), 7)
    p = r.responses[0].partition_responses[0]
    assert p.error_code == 87 and p.record_errors == [] and p.error_message is None


def test_records_without_a_key_are_fine_on_a_topic_that_is_not_compacted(broker):
    create_topic(broker, "del")
    r = call(broker, produce_request("del", {0: _keyed(None, None)}), 9)
    assert r.responses[0].partition_responses[0].error_code == 0 and leo(broker, "del") == 2
