"""ListOffsets (key 2), versions 1-9."""
from __future__ import annotations

import pytest

from handler_harness import broker, call, create_topic, make_broker, produce  # noqa: F401
from kafkette.protocol.messages import ListOffsetsRequest
from kafkette.protocol.records import build_batch

LT = ListOffsetsRequest.ListOffsetsTopic
LP = ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition
LATEST, EARLIEST, MAX_TS = -1, -2, -3


def list_offsets(broker, topic, timestamp, version=9, partition=0, leader_epoch=-1):
    req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
        LT(name=topic, partitions=[LP(partition_index=partition, current_leader_epoch=leader_epoch,
                                      timestamp=timestamp)])], timeout_ms=1000)
    resp = call(broker, req, version)
    (t,) = resp.topics
    assert t.name == topic
    (p,) = t.partitions
    assert p.partition_index == partition
    return p


def records(timestamps, tag):
    return build_batch([(None, f"{tag}{i}".encode(), [], ts) for i, ts in enumerate(timestamps)],
                       timestamp_ms=timestamps[0])


@pytest.fixture
def stamped(broker):
    """Offsets 0-2 at ts 1000-1002, 3-6 at 2000-2003, 7-8 at 3000-3001 (three batches)."""
    create_topic(broker, "ts")
    for ts, tag in [([1000, 1001, 1002], "a"), ([2000, 2001, 2002, 2003], "b"),
                    ([3000, 3001], "c")]:
        assert produce(broker, "ts", 0, records(ts, tag)).error_code == 0
    return broker


@pytest.mark.parametrize("version", range(1, 10))
def test_earliest_and_latest(stamped, version):
    p = list_offsets(stamped, "ts", EARLIEST, version)
    assert (p.error_code, p.offset) == (0, 0)
    assert p.timestamp == -1
    p = list_offsets(stamped, "ts", LATEST, version)
    # The high watermark: last offset + 1 = 9, not the last batch's base offset + 1 (8).
    assert (p.error_code, p.offset) == (0, 9)
    assert p.timestamp == -1
    if version >= 4:
        assert p.leader_epoch == 0


@pytest.mark.parametrize("version", range(1, 10))
def test_empty_partition(broker, version):
    create_topic(broker, "empty")
    assert list_offsets(broker, "empty", EARLIEST, version).offset == 0
    assert list_offsets(broker, "empty", LATEST, version).offset == 0
    p = list_offsets(broker, "empty", 0, version)
    assert (p.error_code, p.offset, p.timestamp) == (0, -1, -1)
    if version >= 7:
        p = list_offsets(broker, "empty", MAX_TS, version)
        assert (p.error_code, p.offset, p.timestamp) == (0, -1, -1)


@pytest.mark.parametrize("version", range(1, 10))
@pytest.mark.parametrize("target,offset,ts", [
    (0, 0, 1000),
    (1000, 0, 1000),
    (1001, 1, 1001),
    (1002, 2, 1002),
    (1003, 3, 2000),
    (1500, 3, 2000),
    (2002, 5, 2002),
    (2003, 6, 2003),
    (2004, 7, 3000),
    (3001, 8, 3001),
])
def test_by_timestamp_first_offset_at_or_after(stamped, version, target, offset, ts):
    p = list_offsets(stamped, "ts", target, version)
    assert (p.error_code, p.offset, p.timestamp) == (0, offset, ts)


@pytest.mark.parametrize("version", range(1, 10))
def test_timestamp_after_all_records(stamped, version):
    p = list_offsets(stamped, "ts", 3002, version)
    assert (p.error_code, p.offset, p.timestamp) == (0, -1, -1)
    p = list_offsets(stamped, "ts", 10**13, version)
    assert (p.error_code, p.offset, p.timestamp) == (0, -1, -1)


@pytest.mark.parametrize("version", range(7, 10))
def test_max_timestamp(broker, version):
    """KIP-734: the record with the largest timestamp, not the last one."""
    create_topic(broker, "mx")
    produce(broker, "mx", 0, records([1000, 1001, 1002], "a"))
    produce(broker, "mx", 0, records([5000, 9000, 6000], "b"))  # max at offset 4
    produce(broker, "mx", 0, records([7000, 7001], "c"))
    p = list_offsets(broker, "mx", MAX_TS, version)
    assert (p.error_code, p.timestamp, p.offset) == (0, 9000, 4)
    # By timestamp across a non-monotonic batch: the first offset whose ts >= target.
    assert (list_offsets(broker, "mx", 5500, version).offset,
            list_offsets(broker, "mx", 5500, version).timestamp) == (4, 9000)
    assert list_offsets(broker, "mx", 9001, version).offset == -1


def test_max_timestamp_first_of_equal_records(broker):
    create_topic(broker, "eq")
    produce(broker, "eq", 0, records([10, 50, 50], "a"))
    produce(broker, "eq", 0, records([20, 50], "b"))
    p = list_offsets(broker, "eq", MAX_TS, 9)
    assert (p.timestamp, p.offset) == (50, 1)


def test_latest_follows_appends(broker):
    create_topic(broker, "grow")
    assert list_offsets(broker, "grow", LATEST).offset == 0
    for n, want in [(5, 5), (1, 6), (3, 9)]:
        produce(broker, "grow", 0, records([100] * n, "x"))
        assert list_offsets(broker, "grow", LATEST).offset == want


def test_earliest_after_log_start_moves(stamped):
    stamped.replica_manager.partition("ts", 0).log.set_log_start_offset(4)
    assert list_offsets(stamped, "ts", EARLIEST).offset == 4
    # A timestamp before the log start maps to the log start, not to a deleted offset.
    p = list_offsets(stamped, "ts", 0)
    assert p.offset == 4 and p.timestamp == 2001


def test_unknown_topic_and_partition(stamped):
    assert list_offsets(stamped, "missing", LATEST).error_code == 3
    p = list_offsets(stamped, "ts", LATEST, partition=3)
    assert (p.error_code, p.offset) == (3, -1)


@pytest.mark.parametrize("version", range(4, 10))
def test_current_leader_epoch_checked(stamped, version):
    assert list_offsets(stamped, "ts", LATEST, version, leader_epoch=0).error_code == 0
    assert list_offsets(stamped, "ts", LATEST, version, leader_epoch=1).error_code == 75


def test_several_partitions_in_one_request(broker):
    create_topic(broker, "multi", partitions=3)
    produce(broker, "multi", 0, records([1, 2], "a"))
    produce(broker, "multi", 2, records([1, 2, 3], "b"))
    req = ListOffsetsRequest(replica_id=-1, topics=[LT(name="multi", partitions=[
        LP(partition_index=i, timestamp=LATEST) for i in range(3)])])
    resp = call(broker, req, 9)
    assert [(p.partition_index, p.error_code, p.offset) for p in resp.topics[0].partitions] == [
        (0, 0, 2), (1, 0, 0), (2, 0, 3)]


def test_by_timestamp_and_max_timestamp_across_segments(broker):
    """Several segments: the time index of the right one must be used."""
    create_topic(broker, "segs", configs={"segment.bytes": "250"})
    expected = {}
    offset = 0
    for i in range(8):
        ts = [10_000 * (i + 1) + j for j in range(3)]
        assert produce(broker, "segs", 0, records(ts, f"s{i}")).base_offset == offset
        for j, t in enumerate(ts):
            expected[t] = offset + j
        offset += 3
    plog = broker.replica_manager.partition("segs", 0).log
    assert len(plog.segment_base_offsets()) >= 3
    for t, off in sorted(expected.items()):
        p = list_offsets(broker, "segs", t)
        assert (p.offset, p.timestamp) == (off, t), t
        p = list_offsets(broker, "segs", t - 5000)  # between batches, or before the first
        first_at_or_after = min(o for tt, o in expected.items() if tt >= t - 5000)
        assert p.offset == first_at_or_after, t
    p = list_offsets(broker, "segs", MAX_TS)
    assert (p.timestamp, p.offset) == (80_002, 23)
    assert list_offsets(broker, "segs", 80_003).offset == -1
    assert list_offsets(broker, "segs", LATEST).offset == 24


def test_log_append_time_topic_by_timestamp(make_broker):
    from kafkette.clock import ManualClock
    clock = ManualClock(5_000_000)
    b = make_broker(clock=clock)
    create_topic(b, "lat", configs={"message.timestamp.type": "LogAppendTime"})
    produce(b, "lat", 0, records([1, 2], "a"))       # client timestamps are replaced
    clock.advance(1000)
    produce(b, "lat", 0, records([3, 4, 5], "b"))
    p = list_offsets(b, "lat", 5_000_001)
    assert (p.offset, p.timestamp) == (2, 5_001_000)
    p = list_offsets(b, "lat", 0)
    assert (p.offset, p.timestamp) == (0, 5_000_000)
    p = list_offsets(b, "lat", MAX_TS)
    assert p.timestamp == 5_001_000 and p.offset in (2, 4)


def test_timestamp_index_after_restart(make_broker):
    b = make_broker()
    create_topic(b, "ts")
    produce(b, "ts", 0, records([1000, 1001], "a"))
    produce(b, "ts", 0, records([2000, 2001], "b"))
    make_broker.close(b)
    b = make_broker()
    assert (list_offsets(b, "ts", 1500).offset, list_offsets(b, "ts", 2001).offset) == (2, 3)
    p = list_offsets(b, "ts", MAX_TS)
    assert (p.timestamp, p.offset) == (2001, 3)
    assert list_offsets(b, "ts", LATEST).offset == 4
