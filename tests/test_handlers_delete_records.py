"""DeleteRecords (key 21), versions 0-2, through the dispatcher; and what follows the
log start offset it moves: ListOffsets earliest and Fetch's OFFSET_OUT_OF_RANGE."""
from __future__ import annotations

import asyncio
import inspect
import os

import pytest

from handler_harness import (  # noqa: F401
    broker,
    call,
    create_topic,
    fetch_request,
    make_broker,
    produce,
    start,
)
from kafkette.protocol.messages import (
    ApiVersionsRequest,
    DeleteRecordsRequest,
    ListOffsetsRequest,
)
from kafkette.protocol.records import build_batch, iter_batches

OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION = 1, 3
INVALID_TOPIC_EXCEPTION, POLICY_VIOLATION = 17, 44
DT = DeleteRecordsRequest.DeleteRecordsTopic
DP = DT.DeleteRecordsPartition


def batch(n: int, tag: str) -> bytes:
    return build_batch([(f"{tag}{i}".encode(), b"v" * 50, []) for i in range(n)],
                       timestamp_ms=1_000)


def delete_records(broker, offsets: dict, version: int = 2):
    """offsets: {(topic, partition): offset}, request order kept per topic."""
    by_topic: dict[str, list] = {}
    for (t, p), off in offsets.items():
        by_topic.setdefault(t, []).append(DP(partition_index=p, offset=off))
    req = DeleteRecordsRequest(topics=[DT(name=t, partitions=ps) for t, ps in by_topic.items()],
                               timeout_ms=5000)
    resp = call(broker, req, version)
    assert resp.throttle_time_ms == 0
    out = {}
    for t in resp.topics:
        for p in t.partitions:
            out[(t.name, p.partition_index)] = (p.error_code, p.low_watermark)
    assert list(out) == list(offsets), "one answer per partition, in request order"
    return out


def earliest(broker, topic, partition=0):
    LT = ListOffsetsRequest.ListOffsetsTopic
    LP = LT.ListOffsetsPartition
    resp = call(broker, ListOffsetsRequest(replica_id=-1, topics=[
        LT(name=topic, partitions=[LP(partition_index=partition, current_leader_epoch=-1,
                                      timestamp=-2)])]), 9)
    p = resp.topics[0].partitions[0]
    assert p.error_code == 0
    return p.offset


def fetch_part(broker, topic, offset, partition=0):
    resp = call(broker, fetch_request(topic, {partition: offset}), 12)
    return resp.responses[0].partitions[0]


@pytest.fixture
def loaded(broker):
    """Topic "d": offsets 0-9 in five 2-record batches, two batches per segment."""
    create_topic(broker, "d", configs={"segment.bytes": str(2 * len(batch(2, "b0")))})
    for i in range(5):
        assert produce(broker, "d", 0, batch(2, f"b{i}")).error_code == 0
    plog = broker.replica_manager.partitions[("d", 0)].log
    assert plog.segment_base_offsets() == [0, 4, 8]
    return broker


@pytest.mark.parametrize("version", [0, 1, 2])
def test_delete_records_moves_earliest_and_fetch_range(loaded, version):
    assert delete_records(loaded, {("d", 0): 5}, version) == {("d", 0): (0, 5)}
    assert earliest(loaded, "d") == 5
    p = fetch_part(loaded, "d", 4)
    assert (p.error_code, p.log_start_offset, p.high_watermark) == (OFFSET_OUT_OF_RANGE, 5, 10)
    p = fetch_part(loaded, "d", 5)
    assert p.error_code == 0 and p.log_start_offset == 5
    # The batch holding offset 5 (4-5) comes back whole; the client skips offset 4.
    assert [h.base_offset for _, h in iter_batches(bytes(p.records))] == [4, 6, 8]


def test_segments_wholly_below_are_deleted_at_once(loaded):
    plog = loaded.replica_manager.partitions[("d", 0)].log
    assert delete_records(loaded, {("d", 0): 5}) == {("d", 0): (0, 5)}
    assert plog.segment_base_offsets() == [4, 8]
    logs = sorted(n for n in os.listdir(plog.dir) if n.endswith(".log"))
    assert logs == ["00000000000000000004.log", "00000000000000000008.log"]


def test_minus_one_means_the_high_watermark(loaded):
    assert delete_records(loaded, {("d", 0): -1}) == {("d", 0): (0, 10)}
    assert earliest(loaded, "d") == 10
    p = fetch_part(loaded, "d", 10)
    assert (p.error_code, bytes(p.records or b"")) == (0, b"")
    assert fetch_part(loaded, "d", 9).error_code == OFFSET_OUT_OF_RANGE
    # The log goes on from there.
    assert produce(loaded, "d", 0, batch(1, "after")).base_offset == 10


def test_past_the_high_watermark_is_out_of_range(loaded):
    assert delete_records(loaded, {("d", 0): 11}) == {("d", 0): (OFFSET_OUT_OF_RANGE, -1)}
    assert delete_records(loaded, {("d", 0): -2}) == {("d", 0): (OFFSET_OUT_OF_RANGE, -1)}
    assert earliest(loaded, "d") == 0


def test_never_backwards(loaded):
    assert delete_records(loaded, {("d", 0): 6}) == {("d", 0): (0, 6)}
    assert delete_records(loaded, {("d", 0): 2}) == {("d", 0): (0, 6)}
    assert delete_records(loaded, {("d", 0): 6}) == {("d", 0): (0, 6)}
    assert earliest(loaded, "d") == 6


def test_unknown_topic_and_partition(loaded):
    got = delete_records(loaded, {("nope", 0): 1, ("d", 7): 1, ("d", 0): 2})
    assert got == {("nope", 0): (UNKNOWN_TOPIC_OR_PARTITION, -1),
                   ("d", 7): (UNKNOWN_TOPIC_OR_PARTITION, -1),
                   ("d", 0): (0, 2)}


def test_several_topics_and_partitions(broker):
    create_topic(broker, "a", partitions=2)
    create_topic(broker, "b")
    for t, p in [("a", 0), ("a", 1), ("b", 0)]:
        produce(broker, t, p, batch(3, t))
    got = delete_records(broker, {("a", 0): 1, ("a", 1): -1, ("b", 0): 3})
    assert got == {("a", 0): (0, 1), ("a", 1): (0, 3), ("b", 0): (0, 3)}
    assert [earliest(broker, "a", 0), earliest(broker, "a", 1), earliest(broker, "b")] == [1, 3, 3]


def test_compacted_topic_is_a_policy_violation(broker):
    create_topic(broker, "c", configs={"cleanup.policy": "compact"})
    produce(broker, "c", 0, batch(3, "c"))
    assert delete_records(broker, {("c", 0): 1}) == {("c", 0): (POLICY_VIOLATION, -1)}
    assert earliest(broker, "c") == 0
    create_topic(broker, "cd", configs={"cleanup.policy": "compact,delete"})
    produce(broker, "cd", 0, batch(3, "cd"))
    assert delete_records(broker, {("cd", 0): 1}) == {("cd", 0): (0, 1)}


def test_internal_topic_is_refused(broker):
    broker.group_coordinator_ready()  # creates __consumer_offsets
    assert "__consumer_offsets" in broker.image.topics
    assert delete_records(broker, {("__consumer_offsets", 0): 0}) == {
        ("__consumer_offsets", 0): (INVALID_TOPIC_EXCEPTION, -1)}


def test_log_start_offset_survives_restart(make_broker):
    b = make_broker()
    create_topic(b, "r")
    produce(b, "r", 0, batch(4, "r"))
    assert delete_records(b, {("r", 0): 3}) == {("r", 0): (0, 3)}
    make_broker.close(b)
    b2 = make_broker()
    assert earliest(b2, "r") == 3
    assert fetch_part(b2, "r", 2).error_code == OFFSET_OUT_OF_RANGE


def test_api_versions_advertises_0_to_2(broker):
    resp = call(broker, ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
    (k,) = [k for k in resp.api_keys if k.api_key == 21]
    assert (k.min_version, k.max_version) == (0, 2)


async def test_waiting_fetch_below_the_new_start_is_answered_at_once(loaded):
    # min_bytes far above what the log holds: the fetch at offset 0 waits.
    req = fetch_request("d", {0: 0}, min_bytes=10 << 20, max_wait_ms=30_000)
    result, finish = start(loaded, req, 12)
    assert inspect.isawaitable(result)
    task = asyncio.ensure_future(result)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    assert delete_records(loaded, {("d", 0): 4}) == {("d", 0): (0, 4)}
    resp = finish(await asyncio.wait_for(task, timeout=2.0))
    p = resp.responses[0].partitions[0]
    assert (p.error_code, p.log_start_offset) == (OFFSET_OUT_OF_RANGE, 4)
