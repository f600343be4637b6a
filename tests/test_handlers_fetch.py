"""Fetch (key 1), versions 4-17 (v13+ by topic id), including the long poll."""
from __future__ import annotations

import asyncio
import inspect
import uuid

import pytest

from handler_harness import (  # noqa: F401
    acall,
    broker,
    call,
    create_topic,
    fetch_request,
    make_broker,
    produce,
    start,
)
from kafkette.protocol.messages import FetchRequest
from kafkette.protocol.records import build_batch, decode_records, iter_batches, stamp_batch


def mk_batch(n: int, tag: str, ts: int = 10_000, size: int = 20) -> bytes:
    return build_batch([(f"{tag}-k{i}".encode(), (f"{tag}-v{i}-" + "z" * size).encode(),
                         [("hdr", f"{tag}{i}".encode()), ("null", None)], ts + i)
                        for i in range(n)], timestamp_ms=ts)


def stored(b: bytes, base_offset: int, leader_epoch: int = 0) -> bytes:
    """The produced batch as the broker stores it: base offset and epoch stamped."""
    buf = bytearray(b)
    stamp_batch(buf, 0, base_offset, leader_epoch)
    return bytes(buf)


def topic_id(broker, name):
    return broker.image.topics[name].topic_id


def fetch(broker, topic, partitions, version=12, **kw):
    if version >= 13:
        kw.setdefault("topic_id", topic_id(broker, topic))
    return call(broker, fetch_request(topic, partitions, version=version, **kw), version)


def part(resp, index=0, topic_index=0):
    ps = {p.partition_index: p for p in resp.responses[topic_index].partitions}
    return ps[index]


def rec_bytes(p) -> bytes:
    return bytes(p.records) if p.records is not None else b""


@pytest.fixture
def loaded(broker):
    """Topic "t" with 3 batches of 3, 2 and 4 records (offsets 0-2, 3-4, 5-8)."""
    create_topic(broker, "t", partitions=2)
    batches = [mk_batch(3, "a"), mk_batch(2, "b"), mk_batch(4, "c")]
    base = 0
    for b in batches:
        r = produce(broker, "t", 0, b)
        assert (r.error_code, r.base_offset) == (0, base)
        base += parse_count(b)
    return broker, batches


def parse_count(b: bytes) -> int:
    return sum(h.records_count for _, h in iter_batches(b))


@pytest.mark.parametrize("version", range(4, 18))
def test_fetch_returns_the_stored_bytes(loaded, version):
    broker, batches = loaded
    resp = fetch(broker, "t", {0: 0}, version=version)
    assert resp.responses[0].topic == ("t" if version <= 12 else "")
    if version >= 13:
        assert resp.responses[0].topic_id == topic_id(broker, "t")
    if version >= 7:
        assert resp.error_code == 0 and resp.session_id == 0
    p = part(resp)
    assert p.error_code == 0
    assert p.high_watermark == 9
    assert p.last_stable_offset == 9
    if version >= 5:
        assert p.log_start_offset == 0
    assert not p.aborted_transactions  # null or empty: no transactions
    if version >= 11:
        assert p.preferred_read_replica == -1
    data = rec_bytes(p)
    expected = stored(batches[0], 0) + stored(batches[1], 3) + stored(batches[2], 5)
    assert data == expected
    recs = decode_records(data)
    assert [r.offset for r in recs] == list(range(9))
    assert [r.key for r in recs[:3]] == [b"a-k0", b"a-k1", b"a-k2"]
    assert recs[4].value == b"b-v1-" + b"z" * 20
    assert recs[5].headers == [("hdr", b"c0"), ("null", None)]
    assert [r.timestamp for r in recs[5:]] == [10_000, 10_001, 10_002, 10_003]


@pytest.mark.parametrize("offset,first_base", [(0, 0), (1, 0), (2, 0), (3, 3), (4, 3), (6, 5), (8, 5)])
def test_fetch_inside_a_batch_returns_the_whole_batch(loaded, offset, first_base):
    broker, batches = loaded
    data = rec_bytes(part(fetch(broker, "t", {0: offset})))
    first = next(iter_batches(data))[1]
    assert first.base_offset == first_base
    recs = decode_records(data)
    assert recs[0].offset == first_base
    assert recs[-1].offset == 8


def test_fetch_at_high_watermark_is_empty(loaded):
    broker, _ = loaded
    p = part(fetch(broker, "t", {0: 9}))
    assert (p.error_code, p.high_watermark) == (0, 9)
    assert rec_bytes(p) == b""


@pytest.mark.parametrize("offset", [10, 1000, -1])
@pytest.mark.parametrize("version", [4, 12, 13, 17])
def test_offset_out_of_range(loaded, offset, version):
    broker, _ = loaded
    p = part(fetch(broker, "t", {0: offset}, version=version))
    assert p.error_code == 1
    assert p.high_watermark == 9
    if version >= 5:
        assert p.log_start_offset == 0
    assert rec_bytes(p) == b""


def test_out_of_range_partition_does_not_hide_the_others(loaded):
    broker, _ = loaded
    produce(broker, "t", 1, mk_batch(2, "p1"))
    resp = fetch(broker, "t", {0: 50, 1: 0})
    assert part(resp, 0).error_code == 1
    p1 = part(resp, 1)
    assert p1.error_code == 0 and len(decode_records(rec_bytes(p1))) == 2


@pytest.mark.parametrize("max_bytes", [1, 50, 100])
def test_max_bytes_smaller_than_first_batch_still_returns_it(loaded, max_bytes):
    """KIP-74: at least one whole batch, else the consumer would never progress."""
    broker, batches = loaded
    assert len(batches[0]) > 100
    data = rec_bytes(part(fetch(broker, "t", {0: 0}, max_bytes=max_bytes)))
    assert data == stored(batches[0], 0)


def test_partition_max_bytes_smaller_than_first_batch_still_returns_it(loaded):
    broker, batches = loaded
    data = rec_bytes(part(fetch(broker, "t", {0: 3}, partition_max_bytes=10)))
    assert data == stored(batches[1], 3)


def test_max_bytes_limits_whole_batches(loaded):
    broker, batches = loaded
    two = len(batches[0]) + len(batches[1])
    for limit, want in [(two, 2), (two + 1, 2), (two - 1, 1), (two + len(batches[2]), 3)]:
        data = rec_bytes(part(fetch(broker, "t", {0: 0}, max_bytes=limit)))
        assert len(list(iter_batches(data))) == want, limit
        assert len(data) <= max(limit, len(batches[0]))
    for limit, want in [(two, 2), (two - 1, 1)]:
        data = rec_bytes(part(fetch(broker, "t", {0: 0}, partition_max_bytes=limit)))
        assert len(list(iter_batches(data))) == want, limit


def test_partition_max_bytes_limits_later_partitions(broker):
    create_topic(broker, "t", partitions=2)
    b0, b1 = mk_batch(3, "zero", size=200), mk_batch(3, "one", size=200)
    produce(broker, "t", 0, b0)
    produce(broker, "t", 1, b1)
    small = 100
    assert len(b0) > small and len(b1) > small
    resp = fetch(broker, "t", {0: 0, 1: 0}, partition_max_bytes=small)
    # The first partition with data gets its first batch anyway (KIP-74) ...
    assert rec_bytes(part(resp, 0)) == stored(b0, 0)
    # ... a later one is held to its partition limit: nothing fits.
    p1 = part(resp, 1)
    assert (p1.error_code, p1.high_watermark, rec_bytes(p1)) == (0, 3, b"")
    # Partition 0 empty (fetch at its end): partition 1 becomes the first with data.
    resp = fetch(broker, "t", {0: 3, 1: 0}, partition_max_bytes=small)
    assert rec_bytes(part(resp, 0)) == b""
    assert rec_bytes(part(resp, 1)) == stored(b1, 0)


def test_max_bytes_limits_later_partitions(broker):
    create_topic(broker, "t", partitions=2)
    b0, b1 = mk_batch(3, "zero", size=200), mk_batch(3, "one", size=200)
    produce(broker, "t", 0, b0)
    produce(broker, "t", 1, b1)
    resp = fetch(broker, "t", {0: 0, 1: 0}, max_bytes=len(b0) + len(b1) - 1)
    assert rec_bytes(part(resp, 0)) == stored(b0, 0)
    assert rec_bytes(part(resp, 1)) == b""
    resp = fetch(broker, "t", {0: 0, 1: 0}, max_bytes=len(b0) + len(b1))
    assert rec_bytes(part(resp, 1)) == stored(b1, 0)


def test_fetch_across_segments(make_broker):
    broker = make_broker()
    create_topic(broker, "seg", configs={"segment.bytes": "300"})
    batches = [mk_batch(2, f"s{i}") for i in range(6)]
    for i, b in enumerate(batches):
        assert produce(broker, "seg", 0, b).base_offset == 2 * i
    plog = broker.replica_manager.partition("seg", 0).log
    assert len(plog.segment_base_offsets()) > 2, plog.segment_base_offsets()
    data = rec_bytes(part(fetch(broker, "seg", {0: 0})))
    assert data == b"".join(stored(b, 2 * i) for i, b in enumerate(batches))
    for off in range(12):
        data = rec_bytes(part(fetch(broker, "seg", {0: off})))
        recs = decode_records(data)
        assert recs[0].offset == off - off % 2
        assert recs[-1].offset == 11


def test_unknown_topic_by_name(broker):
    p = part(fetch(broker, "missing", {0: 0}, version=12))
    assert p.error_code == 3
    assert rec_bytes(p) == b""


def test_unknown_partition(loaded):
    broker, _ = loaded
    p = part(fetch(broker, "t", {7: 0}), 7)
    assert p.error_code == 3


@pytest.mark.parametrize("version", [13, 15, 17])
def test_unknown_topic_id(loaded, version):
    broker, _ = loaded
    resp = fetch(broker, "t", {0: 0}, version=version, topic_id=uuid.uuid4())
    p = part(resp)
    assert p.error_code == 100
    assert rec_bytes(p) == b""


def test_two_topics_in_one_request(broker):
    create_topic(broker, "x")
    create_topic(broker, "y")
    produce(broker, "x", 0, mk_batch(1, "x"))
    produce(broker, "y", 0, mk_batch(2, "y"))
    FT, FP = FetchRequest.FetchTopic, FetchRequest.FetchTopic.FetchPartition
    req = FetchRequest(max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, topics=[
        FT(topic_id=topic_id(broker, n), partitions=[FP(partition=0, fetch_offset=0,
                                                        partition_max_bytes=1 << 20)])
        for n in ("x", "y")], forgotten_topics_data=[], rack_id="")
    resp = call(broker, req, 16)
    got = [(t.topic_id, len(decode_records(rec_bytes(t.partitions[0])))) for t in resp.responses]
    assert got == [(topic_id(broker, "x"), 1), (topic_id(broker, "y"), 2)]


def test_log_start_offset_after_it_moves(loaded):
    broker, batches = loaded
    broker.replica_manager.partition("t", 0).log.set_log_start_offset(3)
    p = part(fetch(broker, "t", {0: 3}))
    assert (p.error_code, p.log_start_offset, p.high_watermark) == (0, 3, 9)
    assert rec_bytes(p) == stored(batches[1], 3) + stored(batches[2], 5)
    p = part(fetch(broker, "t", {0: 2}))
    assert (p.error_code, p.log_start_offset) == (1, 3)


# -- long poll ---------------------------------------------------------------------------

async def test_long_poll_completes_promptly_after_produce(broker):
    create_topic(broker, "lp", partitions=2)
    loop = asyncio.get_running_loop()
    req = fetch_request("lp", {0: 0}, min_bytes=1, max_wait_ms=5000)
    result, finish = start(broker, req, 12)
    assert inspect.isawaitable(result), "an empty fetch with max_wait_ms must wait"
    task = asyncio.ensure_future(result)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    assert len(broker.replica_manager.fetch_purgatory) == 1
    # A produce to another partition does not complete it.
    produce(broker, "lp", 1, mk_batch(1, "other"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    t0 = loop.time()
    b = mk_batch(2, "wake")
    r = produce(broker, "lp", 0, b)
    assert r.error_code == 0
    chunks = await asyncio.wait_for(task, timeout=2.0)
    assert loop.time() - t0 < 2.0
    resp = finish(chunks)
    p = part(resp)
    assert (p.error_code, p.high_watermark) == (0, 2)
    assert rec_bytes(p) == stored(b, 0)
    assert len(broker.replica_manager.fetch_purgatory) == 0


async def test_long_poll_on_topic_id_completes(broker):
    create_topic(broker, "lp")
    req = fetch_request("lp", {0: 0}, version=16, topic_id=topic_id(broker, "lp"),
                        min_bytes=1, max_wait_ms=5000)
    result, finish = start(broker, req, 16)
    task = asyncio.ensure_future(result)
    await asyncio.sleep(0)
    assert not task.done()
    produce(broker, "lp", 0, mk_batch(1, "x"))
    resp = finish(await asyncio.wait_for(task, timeout=2.0))
    assert len(decode_records(rec_bytes(part(resp)))) == 1


async def test_long_poll_min_bytes_waits_for_enough_data(broker):
    create_topic(broker, "lp")
    first = mk_batch(1, "a")
    req = fetch_request("lp", {0: 0}, min_bytes=len(first) + 10, max_wait_ms=5000)
    result, finish = start(broker, req, 12)
    task = asyncio.ensure_future(result)
    await asyncio.sleep(0)
    produce(broker, "lp", 0, first)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done(), "fewer than min_bytes: keep waiting"
    second = mk_batch(1, "b")
    produce(broker, "lp", 0, second)
    resp = finish(await asyncio.wait_for(task, timeout=2.0))
    assert rec_bytes(part(resp)) == stored(first, 0) + stored(second, 1)


async def test_long_poll_times_out_empty(broker):
    create_topic(broker, "lp")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await asyncio.wait_for(
        acall(broker, fetch_request("lp", {0: 0}, min_bytes=1, max_wait_ms=100), 12),
        timeout=2.0)
    elapsed = loop.time() - t0
    p = part(resp)
    assert (p.error_code, p.high_watermark, rec_bytes(p)) == (0, 0, b"")
    assert 0.09 <= elapsed < 2.0
    assert len(broker.replica_manager.fetch_purgatory) == 0


async def test_fetch_with_data_answers_without_waiting(loaded):
    broker, _ = loaded
    result, finish = start(broker, fetch_request("t", {0: 0}, min_bytes=1, max_wait_ms=5000), 12)
    assert isinstance(result, list), "data is available: answer at once"
    assert len(decode_records(rec_bytes(part(finish(result))))) == 9


async def test_topic_deleted_during_long_poll(broker):
    from kafkette.protocol.messages import DeleteTopicsRequest
    create_topic(broker, "gone")
    result, finish = start(broker, fetch_request("gone", {0: 0}, min_bytes=1, max_wait_ms=5000), 12)
    task = asyncio.ensure_future(result)
    await asyncio.sleep(0)
    call(broker, DeleteTopicsRequest(topic_names=["gone"], timeout_ms=1000), 5)
    resp = finish(await asyncio.wait_for(task, timeout=2.0))
    assert part(resp).error_code == 3


def test_read_committed_sees_the_same_data(loaded):
    """No transactions yet: last stable offset = high watermark, no aborted list."""
    broker, batches = loaded
    req = fetch_request("t", {0: 0})
    req.isolation_level = 1
    p = part(call(broker, req, 12))
    assert (p.error_code, p.high_watermark, p.last_stable_offset) == (0, 9, 9)
    assert not p.aborted_transactions
    assert len(decode_records(rec_bytes(p))) == 9


def test_fetch_after_restart(make_broker):
    b = make_broker()
    create_topic(b, "t", configs={"segment.bytes": "300"})
    batches = [mk_batch(2, f"r{i}") for i in range(5)]
    for i, x in enumerate(batches):
        produce(b, "t", 0, x)
    make_broker.close(b)
    b = make_broker()
    p = part(fetch(b, "t", {0: 0}))
    assert rec_bytes(p) == b"".join(stored(x, 2 * i) for i, x in enumerate(batches))
    p = part(fetch(b, "t", {0: 7}))
    assert rec_bytes(p) == stored(batches[3], 6) + stored(batches[4], 8)


async def test_two_long_polls_on_one_partition_both_complete(broker):
    create_topic(broker, "lp")
    pending = []
    for _ in range(2):
        result, finish = start(broker, fetch_request("lp", {0: 0}, min_bytes=1, max_wait_ms=5000), 12)
        pending.append((asyncio.ensure_future(result), finish))
    await asyncio.sleep(0)
    assert len(broker.replica_manager.fetch_purgatory) == 2
    produce(broker, "lp", 0, mk_batch(1, "both"))
    for task, finish in pending:
        resp = finish(await asyncio.wait_for(task, timeout=2.0))
        assert len(decode_records(rec_bytes(part(resp)))) == 1


def test_min_bytes_0_answers_at_once_even_with_max_wait(broker):
    create_topic(broker, "t")
    result, finish = start(broker, fetch_request("t", {0: 0}, min_bytes=0, max_wait_ms=5000), 12)
    assert isinstance(result, list)
    p = part(finish(result))
    assert (p.error_code, rec_bytes(p)) == (0, b"")
