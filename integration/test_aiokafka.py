"""aiokafka (the asyncio Python client) live against a real kafkette process.

aiokafka shares kafka-python's ancestry but has its own connection, fetcher, group
coordinator and record codecs, and it negotiates every request at the highest version
both sides list in ApiVersions (no probing, no `api_version` pinning since 0.13). It
therefore reaches request versions the other clients of the matrix do not (Fetch v11 with
isolation level and rack id, ListOffsets v3, Produce v7, InitProducerId v0); the module
records the versions it used and prints them at the end.

Covered: round trips per compression codec (keys, values, headers, nulls, CreateTime
timestamps, exact offsets, the codec kept on disk), the idempotent producer (one
producer id, contiguous sequences, nothing stored twice), a two-member group with commit
and resume, the admin client, ListOffsets by timestamp (per record, in one batch, out
of order), the Fetch long poll (wakes on data, honours max wait when empty), a batch
larger than the fetch limits (KIP-74), acks 0/1/all and MESSAGE_TOO_LARGE, DeleteRecords
moving the log start offset under read_committed, and transactions (commit, abort,
read_committed against read_uncommitted).

The tests are coroutines (asyncio_mode=auto): polling uses `_until`, the awaitable twin
of itutil.wait_until, because a time.sleep there would stall aiokafka's own tasks
(heartbeats, fetches) running on the same loop.
"""
from __future__ import annotations

import asyncio
import collections
import struct
import time
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.codec import has_lz4, has_snappy, has_zstd
import aiokafka
import aiokafka.errors
import aiokafka.protocol.api as aiokafka_api

from itutil import fetch_v4, unique_topic

WAIT = 30.0                       # generous deadline for any condition on a loaded box
CLIENT = dict(request_timeout_ms=15000, retry_backoff_ms=50,
              metadata_max_age_ms=30000, connections_max_idle_ms=60000)
GROUP = dict(session_timeout_ms=10000, heartbeat_interval_ms=200,
             rebalance_timeout_ms=20000, enable_auto_commit=False,
             auto_offset_reset="earliest")
CODEC_ID = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def broker_config():
    # A new group's first join completes without the 3 s initial rebalance delay.
    return {"group.initial.rebalance.delay.ms": 0}


# --------------------------------------------------------------------------- API versions

USED: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _record_api_versions():
    """Record (request name, api key, version) of every request aiokafka builds. Its
    Request.prepare() picks the highest version in the broker's advertised range."""
    orig = aiokafka_api.Request.prepare

    def prepare(self, versions):
        built = orig(self, versions)
        USED[(built.API_KEY, built.API_VERSION, type(self).__name__)] += 1
        return built

    aiokafka_api.Request.prepare = prepare
    try:
        yield USED
    finally:
        aiokafka_api.Request.prepare = orig
        print(f"\n[aiokafka {aiokafka.__version__}] requests (key, version, name): count")
        for (key, ver, name), n in sorted(USED.items()):
            print(f"  {key:>3} v{ver:<2} {name}: {n}")


def _versions(name: str) -> set[int]:
    return {v for (_k, v, n) in USED if n == name}


def _count(name: str) -> int:
    return sum(c for (_k, _v, n), c in USED.items() if n == name)


# --------------------------------------------------------------------------- helpers

async def _until(cond, timeout: float = WAIT, interval: float = 0.05, message: str = ""):
    """Await `cond()` (sync or async) until truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = cond()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{detail}")
        await asyncio.sleep(interval)


@asynccontextmanager
async def _producer(b, **kw):
    p = AIOKafkaProducer(bootstrap_servers=b.bootstrap, client_id="it-aiok-producer",
                         **dict(CLIENT, **kw))
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@asynccontextmanager
async def _consumer(b, *topics, **kw):
    cfg = dict(CLIENT, client_id="it-aiok-consumer", auto_offset_reset="earliest",
               enable_auto_commit=False, group_id=None)
    cfg.update(kw)
    c = AIOKafkaConsumer(*topics, bootstrap_servers=b.bootstrap, **cfg)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@asynccontextmanager
async def _admin(b):
    a = AIOKafkaAdminClient(bootstrap_servers=b.bootstrap, client_id="it-aiok-admin",
                            request_timeout_ms=15000)
    await a.start()
    try:
        yield a
    finally:
        await a.close()


async def _create(a, topic: str, partitions: int, configs: dict | None = None):
    res = await a.create_topics([NewTopic(topic, partitions, 1,
                                          topic_configs=configs or {})])
    assert [(t[0], t[1]) for t in res.topic_errors] == [(topic, 0)], res

    async def all_partitions():
        desc = await a.describe_topics([topic])
        return (desc[0]["error_code"] == 0
                and sorted(p["partition"] for p in desc[0]["partitions"]) ==
                list(range(partitions))
                and all(p["leader"] >= 0 for p in desc[0]["partitions"]))
    await _until(all_partitions, message=f"{topic} to have {partitions} led partitions")


async def _read_to_end(c: AIOKafkaConsumer, tps, start: dict | None = None,
                       timeout: float = WAIT) -> dict:
    """Assign `tps`, seek to the beginning (or `start`), and getmany() until every
    partition's position reaches the end offset read at the start."""
    c.assign(tps)
    if start:
        for tp in tps:
            c.seek(tp, start[tp])
    else:
        await c.seek_to_beginning(*tps)
    ends = await c.end_offsets(tps)
    out = {tp: [] for tp in tps}

    async def done():
        batch = await c.getmany(*tps, timeout_ms=200)
        for tp, recs in batch.items():
            out[tp].extend(recs)
        positions = {tp: await c.position(tp) for tp in tps}
        return all(positions[tp] >= ends[tp] for tp in tps)
    await _until(done, timeout=timeout, interval=0,
                 message=f"positions to reach the end offsets {ends}")
    return out


def _raw_batches(records: bytes) -> list[dict]:
    """RecordBatch v2 headers of a raw Fetch answer: offsets, codec, producer fields."""
    out, pos = [], 0
    while pos + 61 <= len(records):
        base_offset, length = struct.unpack_from(">qi", records, pos)
        if pos + 12 + length > len(records):
            break
        attrs, last_delta = struct.unpack_from(">hi", records, pos + 21)
        pid, epoch, base_seq, count = struct.unpack_from(">qhii", records, pos + 43)
        out.append({"base_offset": base_offset, "codec": attrs & 0x07,
                    "last_offset_delta": last_delta, "producer_id": pid,
                    "producer_epoch": epoch, "base_sequence": base_seq, "count": count})
        pos += 12 + length
    return out


async def _stored_batches(b, topic: str, partition: int) -> list[dict]:
    host, port = b.bootstrap.rsplit(":", 1)
    part = await asyncio.to_thread(fetch_v4, host, int(port), topic, partition, 0)
    assert part["error_code"] == 0, part
    return _raw_batches(part["records"])


# --------------------------------------------------------------------------- round trip

def _codec_available(codec):
    return {None: True, "gzip": True, "snappy": has_snappy(), "lz4": has_lz4(),
            "zstd": has_zstd()}[codec]


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
async def test_round_trip_per_codec(broker, codec):
    if not _codec_available(codec):
        pytest.skip(f"aiokafka has no {codec} library in this environment")
    topic, n_parts, n = unique_topic("aiok-rt"), 3, 90
    base_ts = int(time.time() * 1000) - 60_000
    async with _admin(broker) as a:
        await _create(a, topic, n_parts)

    sent = []    # (partition, key, value, headers, timestamp)
    for i in range(n):
        key = None if i % 7 == 3 else f"key-{i}".encode()
        value = f"value-{i}-".encode() * (1 + i % 5)
        if i % 11 == 0 and key is not None:    # aiokafka refuses a record with both null
            value = None
        headers = [("idx", str(i).encode()), ("dup", b"a"), ("dup", b"b")] if i % 3 else []
        if i % 13 == 0:
            headers.append(("empty", b""))
        # Explicit partitions: 0 and 1 in turn, 2 left to aiokafka's murmur2 partitioner
        # (keyed) or its sticky choice (null key); both are checked through the metadata.
        part = i % 2 if i % 4 else None
        sent.append((part, key, value, headers, base_ts + i * 10))

    async with _producer(broker, compression_type=codec, linger_ms=20,
                         max_batch_size=64 * 1024) as p:
        futs = [await p.send(topic, value=v, key=k, headers=h, partition=part,
                             timestamp_ms=ts)
                for part, k, v, h, ts in sent]
        metas = await asyncio.gather(*futs)

    expected: dict[tuple[int, int], tuple] = {}
    per_part: dict[int, list[int]] = collections.defaultdict(list)
    for (part, k, v, h, ts), md in zip(sent, metas):
        if part is not None:
            assert md.partition == part, (part, md)
        assert 0 <= md.partition < n_parts, md
        # CreateTime kept (the broker answered log_append_time -1). md.timestamp is not
        # checked: aiokafka 0.14's MessageBatch.done() overwrites its `timestamp` with
        # the batch's first record's and hands that to every later record of the batch.
        assert md.timestamp_type == 0, md
        assert (md.partition, md.offset) not in expected, md
        expected[(md.partition, md.offset)] = (k, v, tuple(h), ts)
        per_part[md.partition].append(md.offset)
    for p, offs in per_part.items():
        # one producer, one partition: acked offsets are 0..n-1 in send order
        assert offs == list(range(len(offs))), (p, offs)

    tps = [TopicPartition(topic, p) for p in range(n_parts)]
    async with _consumer(broker) as c:
        got = await _read_to_end(c, tps)
        ends = await c.end_offsets(tps)
        starts = await c.beginning_offsets(tps)
    seen = {}
    for tp, recs in got.items():
        offsets = [r.offset for r in recs]
        assert offsets == list(range(len(per_part[tp.partition]))), (tp, offsets)
        assert ends[tp] == len(offsets) and starts[tp] == 0, (tp, ends, starts)
        for r in recs:
            assert r.topic == topic and r.partition == tp.partition
            assert r.timestamp_type == 0, r
            seen[(r.partition, r.offset)] = (r.key, r.value, tuple(r.headers), r.timestamp)
    assert seen == expected

    # The broker keeps batches as the producer framed them: the codec on disk is the
    # producer's (Kafka recompresses only when the topic's compression.type differs).
    counts = []
    for p in range(n_parts):
        batches = await _stored_batches(broker, topic, p)
        assert batches, p
        assert {bt["codec"] for bt in batches} == {CODEC_ID[codec]}, (codec, batches)
        assert sum(bt["count"] for bt in batches) == len(per_part[p])
        counts += [bt["count"] for bt in batches]
    # batching really happened, so the codec covered several records in one batch
    assert max(counts) > 1, counts


# --------------------------------------------------------------------------- idempotence

async def test_idempotent_producer_sequences(broker):
    topic, n_parts, n = unique_topic("aiok-idem"), 4, 400
    async with _admin(broker) as a:
        await _create(a, topic, n_parts)

    pids = []
    for round_ in range(2):          # a second producer gets its own id, sequences from 0
        async with _producer(broker, enable_idempotence=True, linger_ms=5,
                             max_batch_size=4096) as p:
            futs = [await p.send(topic, value=f"r{round_}-{i}".encode(),
                                 key=f"k{i}".encode(), partition=i % n_parts)
                    for i in range(n)]
            metas = await asyncio.gather(*futs)
        assert all(md.offset >= 0 for md in metas)
        # The same producer's acks per partition are contiguous: nothing duplicated.
        for part in range(n_parts):
            offs = [md.offset for md in metas if md.partition == part]
            assert offs == list(range(offs[0], offs[0] + len(offs))), offs
        for part in range(n_parts):
            batches = [bt for bt in await _stored_batches(broker, topic, part)
                       if bt["base_offset"] >= (n // n_parts) * round_]
            round_pids = {bt["producer_id"] for bt in batches}
            assert len(round_pids) == 1 and min(round_pids) >= 0, batches
            assert {bt["producer_epoch"] for bt in batches} == {0}, batches
            seq = 0
            for bt in batches:                 # sequences start at 0, no gap, no repeat
                assert bt["base_sequence"] == seq, (part, batches)
                seq += bt["count"]
            assert seq == n // n_parts
        pids.append(round_pids.pop())
    assert pids[0] != pids[1], pids

    tps = [TopicPartition(topic, p) for p in range(n_parts)]
    async with _consumer(broker) as c:
        got = await _read_to_end(c, tps)
    for tp, recs in got.items():
        assert [r.offset for r in recs] == list(range(2 * n // n_parts)), tp
        want = [f"r{r}-{i}".encode() for r in range(2) for i in range(n)
                if i % n_parts == tp.partition]
        assert [r.value for r in recs] == want, tp
    assert _versions("InitProducerIdRequest"), USED


# --------------------------------------------------------------------------- groups

async def _member(broker, group, topic, name):
    c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                         client_id=f"it-aiok-{name}", **dict(CLIENT, **GROUP))
    await c.start()
    return c


async def _poll_forever(c, sink):
    # aiokafka joins, syncs and heartbeats in its own coordinator task; polling keeps
    # the fetcher busy as a real application would while the group rebalances.
    while True:
        for tp, recs in (await c.getmany(timeout_ms=200)).items():
            sink[tp].extend(recs)


async def test_group_split_commit_and_resume(broker):
    topic, group, n_parts, per_part = unique_topic("aiok-g"), unique_topic("aiok-grp"), 4, 10
    async with _admin(broker) as a:
        await _create(a, topic, n_parts)
    async with _producer(broker) as p:
        for part in range(n_parts):
            for i in range(per_part):
                await p.send(topic, value=f"p{part}-{i}".encode(), partition=part)
        await p.flush()
    all_tps = {TopicPartition(topic, q) for q in range(n_parts)}

    members = [await _member(broker, group, topic, f"m{i}") for i in range(2)]
    sinks = [collections.defaultdict(list) for _ in members]
    tasks = [asyncio.create_task(_poll_forever(c, s)) for c, s in zip(members, sinks)]
    try:
        def split():
            a0, a1 = (m.assignment() for m in members)
            return (a0 and a1 and not (a0 & a1) and (a0 | a1) == all_tps
                    and len(a0) == len(a1) == 2)
        await _until(split, message="2 members to split 4 partitions")
        for t in tasks:
            assert not t.done(), t     # a poll loop that raised would hide here

        # Each member commits an offset inside the data for its own partitions.
        commits = {}
        for m in members:
            mine = {tp: 3 + tp.partition for tp in m.assignment()}
            await m.commit(mine)
            commits.update(mine)
            for tp, off in mine.items():
                assert await m.committed(tp) == off, tp
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for m in members:
            await m.stop()                 # LeaveGroup: the next member need not wait

    async with _admin(broker) as a:
        offs = await a.list_consumer_group_offsets(group)
        assert {tp: om.offset for tp, om in offs.items()} == commits, offs

    c3 = await _member(broker, group, topic, "m3")
    try:
        await _until(lambda: c3.assignment() == all_tps, message="m3 to own all partitions")
        got = collections.defaultdict(list)

        async def caught_up():
            for tp, recs in (await c3.getmany(timeout_ms=200)).items():
                got[tp].extend(recs)
            return all(got[tp] and got[tp][-1].offset == per_part - 1 for tp in all_tps)
        await _until(caught_up, interval=0, message="m3 to read to the end")
        for tp in all_tps:
            # resumed at the committed offset, not at the start (auto_offset_reset)
            assert [r.offset for r in got[tp]] == list(range(commits[tp], per_part)), tp
            assert got[tp][0].value == f"p{tp.partition}-{commits[tp]}".encode()
            assert await c3.committed(tp) == commits[tp]
    finally:
        await c3.stop()
    for name in ("JoinGroupRequest", "SyncGroupRequest", "HeartbeatRequest",
                 "OffsetCommitRequest", "OffsetFetchRequest", "LeaveGroupRequest"):
        assert _versions(name), (name, USED)


# --------------------------------------------------------------------------- admin

async def test_admin_client(broker):
    topic, group = unique_topic("aiok-adm"), unique_topic("aiok-adm-g")
    async with _admin(broker) as a:
        await _create(a, topic, 3, {"retention.ms": "3600000", "cleanup.policy": "delete",
                                    "max.message.bytes": "200000"})
        assert topic in await a.list_topics()
        desc = await a.describe_topics([topic])
        assert desc[0]["topic"] == topic and not desc[0]["is_internal"], desc
        assert sorted(p["partition"] for p in desc[0]["partitions"]) == [0, 1, 2], desc
        assert all(p["replicas"] == [p["leader"]] == p["isr"] for p in desc[0]["partitions"])

        cluster = await a.describe_cluster()
        assert len(cluster["brokers"]) == 1, cluster
        assert cluster["controller_id"] == cluster["brokers"][0]["node_id"], cluster

        [resp] = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [(err, _msg, rtype, rname, entries)] = resp.resources
        assert (err, rtype, rname) == (0, ConfigResourceType.TOPIC, topic), resp
        cfg = {e[0]: e[1] for e in entries}
        assert cfg["retention.ms"] == "3600000" and cfg["max.message.bytes"] == "200000", cfg
        assert cfg["cleanup.policy"] == "delete", cfg

        [resp] = await a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                       {"retention.ms": "7200000"})])
        assert [r[0] for r in resp.resources] == [0], resp
        [resp] = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        cfg = {e[0]: e[1] for e in resp.resources[0][4]}
        assert cfg["retention.ms"] == "7200000", cfg

        await a.create_partitions({topic: NewPartitions(5)})

        async def five():
            d = await a.describe_topics([topic])
            return len(d[0]["partitions"]) == 5
        await _until(five, message="5 partitions after CreatePartitions")

        # A group with committed offsets, through a consumer of this client.
        async with _producer(broker) as p:
            for part in range(5):
                await p.send_and_wait(topic, b"x", partition=part)
        c = await _member(broker, group, topic, "adm")
        try:
            await _until(lambda: len(c.assignment()) == 5, message="the member to own 5")
            want = {TopicPartition(topic, q): 1 for q in range(5)}
            await c.commit(want)
            listed = await a.list_consumer_groups()
            assert (group, "consumer") in [tuple(g[:2]) for g in listed], listed
            [resp] = await a.describe_consumer_groups([group])
            [(err, gid, state, ptype, protocol, gmembers, *_ops)] = resp.groups
            assert (err, gid, state, ptype) == (0, group, "Stable", "consumer"), resp
            assert protocol == "roundrobin", protocol    # aiokafka's first assignor
            [(member_id, client_id, _host, _meta, assignment)] = gmembers
            assert member_id and client_id == "it-aiok-adm", gmembers
            decoded = ConsumerProtocolMemberAssignment.decode(assignment)
            assert [(t, sorted(ps)) for t, ps in decoded.assignment] == \
                [(topic, [0, 1, 2, 3, 4])], decoded
        finally:
            await c.stop()
        offs = await a.list_consumer_group_offsets(group)
        assert {tp: om.offset for tp, om in offs.items()} == want, offs
        part_offs = await a.list_consumer_group_offsets(
            group, partitions=[TopicPartition(topic, 0), TopicPartition(topic, 4)])
        assert {tp.partition: om.offset for tp, om in part_offs.items()} == {0: 1, 4: 1}

        res = await a.delete_topics([topic])
        assert [tuple(t[:2]) for t in res.topic_error_codes] == [(topic, 0)], res

        async def gone():
            return topic not in await a.list_topics()
        await _until(gone, message=f"{topic} to leave the topic list")


# --------------------------------------------------------------------------- wire details

async def test_offsets_for_times(broker):
    """ListOffsets by timestamp (KIP-79): the first offset whose timestamp is >= the
    target, searched per record even inside one batch and with timestamps out of order,
    as Kafka's time index plus in-batch scan answers it."""
    topic = unique_topic("aiok-lot")
    base = int(time.time() * 1000) - 600_000
    async with _admin(broker) as a:
        await _create(a, topic, 2)
    deltas = [5000, 1000, 3000, 7000, 6000]
    async with _producer(broker, linger_ms=0) as p:
        for i, d in enumerate(deltas):                 # partition 0: one batch each
            await p.send_and_wait(topic, f"a{i}".encode(), partition=0,
                                  timestamp_ms=base + d)
    async with _producer(broker, linger_ms=500) as p:   # partition 1: one batch
        futs = [await p.send(topic, f"b{i}".encode(), partition=1, timestamp_ms=base + d)
                for i, d in enumerate(deltas)]
        metas = await asyncio.gather(*futs)
    assert [m.offset for m in metas] == list(range(5))
    t0, t1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    b1 = await _stored_batches(broker, topic, 1)
    assert len(b1) == 1, b1         # the in-batch case really is one batch

    def first_at_or_after(target):
        for off, d in enumerate(deltas):
            if base + d >= target:
                return off, base + d
        return None

    async with _consumer(broker) as c:
        for target_delta in (0, 1000, 2000, 5000, 5500, 6500, 7000):
            target = base + target_delta
            res = await c.offsets_for_times({t0: target, t1: target})
            want = first_at_or_after(target)
            for tp in (t0, t1):
                got = res[tp]
                assert got is not None and (got.offset, got.timestamp) == want, \
                    (tp, target_delta, got, want)
        res = await c.offsets_for_times({t0: base + 8000, t1: base + 8000})
        assert res == {t0: None, t1: None}, res     # past the last timestamp: no offset
        assert await c.end_offsets([t0, t1]) == {t0: 5, t1: 5}
    assert _versions("OffsetRequest"), USED


async def test_fetch_long_poll(broker):
    """aiokafka sends Fetch with max_wait = fetch_max_wait_ms and min_bytes = 1: an
    empty partition must park the request (not answer at once, which turns the client
    into a busy loop) and data must wake it before max_wait."""
    topic = unique_topic("aiok-lp")
    async with _admin(broker) as a:
        await _create(a, topic, 1)
    tp = TopicPartition(topic, 0)

    async with _consumer(broker, fetch_max_wait_ms=1000) as c:
        c.assign([tp])
        await c.seek_to_end(tp)
        assert await c.position(tp) == 0
        before, t_start = _count("FetchRequest"), time.monotonic()
        assert await c.getmany(tp, timeout_ms=3000) == {}
        fetches, elapsed = _count("FetchRequest") - before, time.monotonic() - t_start
        # ~3 parked fetches in 3 s; an immediate empty answer would give hundreds.
        assert fetches <= 8, (fetches, elapsed)
        print(f"\n[long-poll] empty: {fetches} fetches in {elapsed:.2f}s")

    # request_timeout_ms above max_wait, or aiokafka abandons the parked fetch itself
    async with _consumer(broker, fetch_max_wait_ms=20000, request_timeout_ms=40000) as c, \
            _producer(broker) as p:
        n0 = _count("FetchRequest")
        c.assign([tp])
        await c.seek_to_end(tp)
        task = asyncio.create_task(c.getmany(tp, timeout_ms=25000))
        # aiokafka's fetcher task sends the fetch for the empty partition as soon as the
        # position is known (often inside seek_to_end); once it is on the wire, produce.
        await _until(lambda: _count("FetchRequest") > n0, message="a fetch to be sent")
        md = await p.send_and_wait(topic, b"wake", key=b"k", partition=0)
        t_acked = time.monotonic()
        got = await asyncio.wait_for(task, WAIT)
        woke_s = time.monotonic() - t_acked
        assert [(r.offset, r.key, r.value) for r in got[tp]] == [(md.offset, b"k", b"wake")]
        # 20 s max_wait: only a purgatory wake-up on the append delivers it this early
        assert woke_s < 10.0, woke_s
        print(f"[long-poll] woke {woke_s:.3f}s after the produce ack")


async def test_delete_records_and_read_committed(broker):
    """DeleteRecords moves the log start offset that ListOffsets(earliest) reports;
    a read_committed consumer (Fetch isolation_level 1) reads up to the last stable
    offset, which without transactions is the high watermark."""
    topic = unique_topic("aiok-del")
    async with _admin(broker) as a:
        await _create(a, topic, 1)
        tp = TopicPartition(topic, 0)
        async with _producer(broker) as p:
            for i in range(10):
                await p.send(topic, f"v{i}".encode(), partition=0)
            await p.flush()
        res = await a.delete_records({tp: RecordsToDelete(before_offset=4)})
        assert res == {tp: 4}, res
    async with _consumer(broker, isolation_level="read_committed") as c:
        assert await c.beginning_offsets([tp]) == {tp: 4}
        assert await c.end_offsets([tp]) == {tp: 10}
        got = await _read_to_end(c, [tp])
        assert [(r.offset, r.value) for r in got[tp]] == \
            [(i, f"v{i}".encode()) for i in range(4, 10)]
        # a position below the log start is out of range: auto_offset_reset applies
        c.seek(tp, 1)
        recs = await c.getmany(tp, timeout_ms=10000)
        assert recs and recs[tp][0].offset == 4, recs


async def test_acks_and_oversized_record(broker):
    """acks=0 Produce gets no response at all (aiokafka sends it without expecting one:
    an answer would arrive under an unknown correlation id and break the connection);
    acks=1 and acks=all answer; a record over the topic's max.message.bytes is refused
    with MESSAGE_TOO_LARGE and the broker and connection stay usable."""
    topic = unique_topic("aiok-acks")
    async with _admin(broker) as a:
        await _create(a, topic, 1, {"max.message.bytes": "20000"})
    tp = TopicPartition(topic, 0)
    for acks in (0, 1, "all"):
        async with _producer(broker, acks=acks, linger_ms=0) as p:
            for i in range(5):
                await p.send_and_wait(topic, f"{acks}-{i}".encode(), partition=0)
            if acks == "all":
                with pytest.raises(aiokafka.errors.MessageSizeTooLargeError):
                    await p.send_and_wait(topic, b"x" * 30000, partition=0)
            # the same producer still works after the refusal
            md = await p.send_and_wait(topic, f"{acks}-last".encode(), partition=0)
            if acks != 0:
                assert md.offset >= 5, md
    async with _consumer(broker) as c:
        got = await _read_to_end(c, [tp])
    want = [f"{acks}-{i}".encode() for acks in (0, 1, "all")
            for i in [*range(5), "last"]]
    assert [(r.offset, r.value) for r in got[tp]] == list(enumerate(want))


async def test_fetch_returns_a_batch_over_the_partition_limit(broker):
    """KIP-74: a Fetch whose partition/fetch byte limits are below the first batch's
    size still returns that whole batch, or the consumer could never progress (aiokafka
    raises RecordTooLargeError on a truncated first batch)."""
    topic = unique_topic("aiok-big")
    async with _admin(broker) as a:
        await _create(a, topic, 1)
    tp = TopicPartition(topic, 0)
    values = [bytes([65 + i]) * (20_000 + i) for i in range(3)]
    async with _producer(broker, linger_ms=0, max_request_size=1_000_000) as p:
        for v in values:
            await p.send_and_wait(topic, v, partition=0)
    async with _consumer(broker, max_partition_fetch_bytes=1024, fetch_max_bytes=2048) as c:
        got = await _read_to_end(c, [tp])
    assert [(r.offset, r.value) for r in got[tp]] == list(enumerate(values))


async def test_transactions_commit_abort_and_read_committed(broker):
    """aiokafka's transactional producer (FindCoordinator key type 1, InitProducerId with
    its id, AddPartitionsToTxn, EndTxn): a committed and an aborted transaction over two
    partitions; a read_committed consumer sees only the committed records, a
    read_uncommitted one sees both, and each record once."""
    topic = unique_topic("aiok-txn")
    async with _admin(broker) as a:
        await _create(a, topic, 2)
    async with _producer(broker, transactional_id=unique_topic("aiok-txn-id")) as p:
        async with p.transaction():
            for i in range(10):
                await p.send(topic, f"c{i}".encode(), partition=i % 2)
        await p.begin_transaction()
        for i in range(10):
            await p.send(topic, f"a{i}".encode(), partition=i % 2)
        await p.abort_transaction()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    for isolation, expected in (("read_committed", {f"c{i}".encode() for i in range(10)}),
                                ("read_uncommitted", {f"{k}{i}".encode() for k in "ca"
                                                      for i in range(10)})):
        async with _consumer(broker, isolation_level=isolation) as c:
            got = await _read_to_end(c, tps)
        values = [r.value for recs in got.values() for r in recs]
        assert sorted(values) == sorted(expected), isolation
    assert _versions("EndTxnRequest"), USED
    assert _versions("AddPartitionsToTxnRequest"), USED


async def test_transactions_fencing_compression_and_send_offsets(broker):
    """gzip transactional batches; send_offsets_to_transaction commits a group's offset
    with the transaction (visible once committed); a second producer with the same id
    fences the first, whose open records never become visible."""
    src, dst = unique_topic("aiok-txn-src"), unique_topic("aiok-txn-dst")
    async with _admin(broker) as a:
        await _create(a, src, 1)
        await _create(a, dst, 1)
    txn_id = unique_topic("aiok-fence")
    group = unique_topic("aiok-eos")
    first = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id,
                             compression_type="gzip", **CLIENT)
    await first.start()
    try:
        await first.begin_transaction()
        await first.send_and_wait(dst, b"zombie", partition=0)
        async with _producer(broker, transactional_id=txn_id, compression_type="gzip") as second:
            async with second.transaction():
                await second.send(dst, b"winner", partition=0)
                await second.send_offsets_to_transaction({TopicPartition(src, 0): 5}, group)
            with pytest.raises(aiokafka.errors.KafkaError):
                await first.send_and_wait(dst, b"zombie-2", partition=0)
                await first.commit_transaction()
    finally:
        await first.stop()
    async with _consumer(broker, isolation_level="read_committed") as c:
        got = await _read_to_end(c, [TopicPartition(dst, 0)])
    assert [r.value for r in got[TopicPartition(dst, 0)]] == [b"winner"]
    async with _consumer(broker, group_id=group) as c:
        assert await c.committed(TopicPartition(src, 0)) == 5
    assert _versions("TxnOffsetCommitRequest") and _versions("AddOffsetsToTxnRequest"), USED


async def test_negotiated_versions(broker):
    """aiokafka (pinned in pyproject.toml) builds each request at the highest version
    both sides list. A produce and a fetch of its own, then: the broker's ranges let it
    reach its own maxima for Produce (v7) and Fetch (v11), well past the KIP-896 floors
    (Produce v3, Fetch v4), and Metadata at v5."""
    topic = unique_topic("aiok-ver")
    async with _admin(broker) as a:
        await _create(a, topic, 1)
    n_produce, n_fetch = _count("ProduceRequest"), _count("FetchRequest")
    async with _producer(broker) as p:
        md = await p.send_and_wait(topic, b"v", partition=0)
    tp = TopicPartition(topic, 0)
    async with _consumer(broker) as c:
        c.assign([tp])
        c.seek(tp, md.offset)
        got = await c.getmany(tp, timeout_ms=int(WAIT * 1000))
    assert [r.value for r in got[tp]] == [b"v"]
    assert _count("ProduceRequest") > n_produce and _count("FetchRequest") > n_fetch
    assert _versions("ProduceRequest") == {7}, USED
    assert _versions("FetchRequest") == {11}, USED
    assert _versions("MetadataRequest") == {5}, USED
