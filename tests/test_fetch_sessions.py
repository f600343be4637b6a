"""Fetch sessions (KIP-227): the handler tier (create, incremental, forgotten, bad epoch,
unknown id) and the session cache (eviction) with an injected clock."""
from __future__ import annotations

import pytest

from handler_harness import broker, call, create_topic, make_broker, produce  # noqa: F401
from kafkette.broker import fetch_session as fs
from kafkette.clock import ManualClock
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import FetchRequest
from kafkette.protocol.records import build_batch

FT, FP = FetchRequest.FetchTopic, FetchRequest.FetchTopic.FetchPartition
Forgotten = FetchRequest.ForgottenTopic


def batch(n=1, tag="x"):
    return build_batch([(None, f"{tag}{i}".encode(), []) for i in range(n)], timestamp_ms=10_000)


def req(broker, parts: dict, *, session_id=0, epoch=0, forgotten=(), version=12):
    """parts: {(topic, partition): fetch offset}."""
    by_topic: dict = {}
    for (t, p), off in parts.items():
        by_topic.setdefault(t, []).append(FP(partition=p, fetch_offset=off,
                                             partition_max_bytes=1 << 20))
    topics = []
    for t, ps in by_topic.items():
        ft = FT(topic=t if version <= 12 else "", partitions=ps)
        if version >= 13:
            ft.topic_id = broker.image.topics[t].topic_id
        topics.append(ft)
    fg = []
    for t, ps in forgotten:
        f = Forgotten(topic=t if version <= 12 else "", partitions=list(ps))
        if version >= 13:
            f.topic_id = broker.image.topics[t].topic_id
        fg.append(f)
    r = FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=0x7FFFFFFF,
                     isolation_level=0, session_id=session_id, session_epoch=epoch,
                     topics=topics, forgotten_topics_data=fg, rack_id="")
    return call(broker, r, version)


def listed(resp, broker=None, version=12) -> dict:
    out = {}
    for t in resp.responses:
        name = t.topic if version <= 12 else broker.image.topics_by_id[t.topic_id]
        for p in t.partitions:
            out[(name, p.partition_index)] = p
    return out


@pytest.fixture
def topics(broker):
    create_topic(broker, "a", partitions=3)
    create_topic(broker, "b", partitions=2)
    for p in range(3):
        produce(broker, "a", p, batch(2, f"a{p}"))
    produce(broker, "b", 0, batch(1, "b0"))
    return broker


ALL = {("a", 0): 0, ("a", 1): 0, ("a", 2): 0, ("b", 0): 0, ("b", 1): 0}


@pytest.mark.parametrize("version", [7, 12, 13, 17])
def test_full_then_incremental_lists_only_what_changed(topics, version):
    broker = topics
    full = req(broker, ALL, epoch=0, version=version)
    assert full.error_code == 0 and full.session_id != 0
    assert set(listed(full, broker, version)) == set(ALL)  # a full answer has everything
    sid = full.session_id

    # The client moved its positions past what it got; nothing new: nothing listed.
    moved = {("a", 0): 2, ("a", 1): 2, ("a", 2): 2, ("b", 0): 1}
    inc = req(broker, moved, session_id=sid, epoch=1, version=version)
    assert (inc.error_code, inc.session_id) == (0, sid)
    assert listed(inc, broker, version) == {}

    # New data on one partition: only it comes back, though the request names none.
    produce(broker, "a", 1, batch(3, "new"))
    inc = req(broker, {}, session_id=sid, epoch=2, version=version)
    got = listed(inc, broker, version)
    assert set(got) == {("a", 1)}
    assert got[("a", 1)].high_watermark == 5 and got[("a", 1)].records

    # The session still reads a-1 from offset 2 until the client says otherwise.
    inc = req(broker, {("a", 1): 5}, session_id=sid, epoch=3, version=version)
    assert listed(inc, broker, version) == {}


def test_forgotten_partitions_leave_the_session(topics):
    broker = topics
    at_end = {("a", 0): 2, ("a", 1): 2, ("a", 2): 2, ("b", 0): 1, ("b", 1): 0}
    sid = req(broker, at_end, epoch=0).session_id
    session = broker.fetch_sessions.get(sid)
    assert len(session.partitions) == 5
    inc = req(broker, {}, session_id=sid, epoch=1, forgotten=[("a", [0, 1]), ("b", [1])])
    assert inc.error_code == 0
    assert sorted(k for k in session.partitions) == [("a", 2), ("b", 0)]
    # Data on a forgotten partition is no longer answered.
    produce(broker, "a", 0, batch(1, "late"))
    assert listed(req(broker, {}, session_id=sid, epoch=2)) == {}
    # Forgetting everything ends the session (Kafka: an empty session is removed).
    inc = req(broker, {}, session_id=sid, epoch=3, forgotten=[("a", [2]), ("b", [0])])
    assert inc.session_id == 0 and sid not in broker.fetch_sessions


def test_added_partition_joins_the_session(topics):
    broker = topics
    sid = req(broker, {("a", 0): 2}, epoch=0).session_id
    inc = req(broker, {("b", 0): 0}, session_id=sid, epoch=1)
    got = listed(inc)
    assert set(got) == {("b", 0)} and got[("b", 0)].records
    assert len(broker.fetch_sessions.get(sid).partitions) == 2


def test_wrong_epoch_and_unknown_session(topics):
    broker = topics
    sid = req(broker, ALL, epoch=0).session_id
    bad = req(broker, {}, session_id=sid, epoch=5)
    assert (bad.error_code, bad.session_id, bad.responses) == (
        ErrorCode.INVALID_FETCH_SESSION_EPOCH, 0, [])
    # The bad request did not advance the session: epoch 1 still works.
    assert req(broker, {}, session_id=sid, epoch=1).error_code == 0
    assert req(broker, {}, session_id=sid, epoch=1).error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    missing = req(broker, {}, session_id=sid + 1, epoch=1)
    assert missing.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_full_fetch_closes_the_named_session_and_final_epoch_stays_sessionless(topics):
    broker = topics
    sid = req(broker, ALL, epoch=0).session_id
    again = req(broker, ALL, session_id=sid, epoch=0)
    assert again.session_id not in (0, sid) and sid not in broker.fetch_sessions
    final = req(broker, ALL, session_id=again.session_id, epoch=-1)
    assert final.session_id == 0 and len(broker.fetch_sessions) == 0
    assert set(listed(final)) == set(ALL)


def test_session_topic_id_mismatch(topics):
    broker = topics
    sid = req(broker, ALL, epoch=0, version=12).session_id
    r = req(broker, {}, session_id=sid, epoch=1, version=13)
    assert r.error_code == ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR


def test_no_slots_means_sessionless(make_broker):
    broker = make_broker({"max.incremental.fetch.session.cache.slots": "0"})
    create_topic(broker, "a", partitions=1)
    r = req(broker, {("a", 0): 0}, epoch=0)
    assert r.error_code == 0 and r.session_id == 0 and set(listed(r)) == {("a", 0)}


def test_error_partitions_are_always_listed(topics):
    broker = topics
    sid = req(broker, {("a", 0): 2}, epoch=0).session_id
    # An offset past the end: OFFSET_OUT_OF_RANGE, reported every time.
    for epoch in (1, 2):
        got = listed(req(broker, {("a", 0): 99} if epoch == 1 else {}, session_id=sid, epoch=epoch))
        assert got[("a", 0)].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    # Healthy again: listed once more (its high watermark was forgotten), then quiet.
    assert ("a", 0) in listed(req(broker, {("a", 0): 2}, session_id=sid, epoch=3))
    assert listed(req(broker, {}, session_id=sid, epoch=4)) == {}


# -- the cache ---------------------------------------------------------------------------

def parts(n):
    return [fs.CachedPartition("t", None, i, 0, 1 << 20) for i in range(n)]


def test_cache_evicts_a_stale_lru_session_first():
    clock = ManualClock(1_000_000)
    cache = fs.FetchSessionCache(clock, max_slots=2, eviction_ms=1000)
    s1 = cache.maybe_create(False, False, parts(5))
    clock.advance(10)
    s2 = cache.maybe_create(False, False, parts(5))
    clock.advance(10)
    cache.touch(s1)  # s2 is now the least recently used
    assert cache.maybe_create(False, False, parts(1)) is None  # nothing stale, not worth more
    clock.advance(1001 - 10)
    clock.advance(10)
    cache.touch(s1)
    s3 = cache.maybe_create(False, False, parts(1))
    assert s3 is not None and s2.id not in cache and s1.id in cache and cache.evictions == 1


def test_cache_evicts_the_least_valuable_when_none_is_stale():
    clock = ManualClock(1_000_000)
    cache = fs.FetchSessionCache(clock, max_slots=2, eviction_ms=120_000)
    small = cache.maybe_create(False, False, parts(2))
    follower = cache.maybe_create(True, False, parts(1))
    # A consumer session cannot push out a follower's, but can a smaller consumer's.
    big = cache.maybe_create(False, False, parts(10))
    assert big is not None and small.id not in cache and follower.id in cache
    assert cache.maybe_create(False, False, parts(10)) is None  # equal value: no eviction
    # A follower's session outranks any consumer's.
    f2 = cache.maybe_create(True, False, parts(1))
    assert f2 is not None and big.id not in cache


def test_next_epoch_wraps_to_one():
    assert fs.next_epoch(1) == 2
    assert fs.next_epoch(2**31 - 1) == 1
