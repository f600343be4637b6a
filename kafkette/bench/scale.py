"""The scale suite (`python -m kafkette.bench.scale`, or `make bench BENCH_ARGS="--only scale"`,
which also runs it against --scale-base-rev):
how kafkette's costs grow with partitions, consumer groups and idle connections.

One broker process (`python -m kafkette serve`, Kafka's defaults) on a free port and a
data dir of its own:

- partitions: --topics x --partitions-per-topic partitions are created and each gets one
  small batch; the broker is stopped cleanly (SIGTERM) and restarted, then written to
  again and killed (SIGKILL) and restarted. Each start is timed from Popen to the first
  ApiVersions answer, to the first Metadata answer listing every partition with a
  leader, and to the first acknowledged Produce to a random partition. Then: RSS, open
  fds, Metadata (all topics) p50/p99, and Fetch over --fetch-partitions partitions
  (one request naming them all, from offset 0) p50/p99.
- groups: --groups consumer groups, each joined, synced and committed by one member
  (JoinGroup, SyncGroup, OffsetCommit), then ListGroups and DescribeGroups (one group
  per request) p50/p99 and RSS.
- connections: --connections idle TCP connections (each sends one ApiVersions so the
  broker holds a live session), RSS before and after, per connection.

`--source DIR` runs the broker from another kafkette source tree (e.g. a worktree of
main) so that before/after figures come from the same script and machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from kafkette.bench.targets import PY, env_for, free_port, proc_status_kb, wait_ready


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Broker:
    """A broker process over a data dir that outlives it (restarts reuse the dir)."""

    def __init__(self, data_dir: str, source: str | None = None, extra=()):
        self.dir = data_dir
        self.source = source
        self.port = free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        cmd = [PY, "-m", "kafkette", "serve",
               "--set", f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
               "--set", f"log.dirs={self.dir}", *self.extra]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(os.path.dirname(self.dir),
                                                              "broker.err"), "ab"),
                                     env=env_for(self.source) if self.source else None,
                                     # `python -m` puts the working directory first on
                                     # sys.path, ahead of PYTHONPATH: run from the source
                                     # tree, or a checkout we were started in wins.
                                     cwd=self.source or None, start_new_session=True)
        return wait_ready("127.0.0.1", self.port, self.proc, deadline_s=120) - self.t0

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def rss_mb(self) -> float:
        return proc_status_kb(self.proc.pid, "VmRSS") / 1024

    def fds(self) -> int:
        return _fds(self.proc.pid)


async def _connect(port: int):
    from kafkette.client import KafkaConnection
    conn = await KafkaConnection.connect("127.0.0.1", port, client_id="bench-scale")
    await conn.api_versions()
    return conn


def _topics(n: int) -> list[str]:
    return [f"scale-{i:04d}" for i in range(n)]


async def create_and_fill(port: int, topics: list[str], parts: int) -> None:
    from kafkette.protocol.messages import CreateTopicsRequest
    conn = await _connect(port)
    T = CreateTopicsRequest.CreatableTopic
    for i in range(0, len(topics), 10):
        req = CreateTopicsRequest(topics=[T(name=t, num_partitions=parts, replication_factor=1,
                                            assignments=[], configs=[]) for t in topics[i:i + 10]],
                                  timeout_ms=120000, validate_only=False)
        resp = await conn.send(req, 7, timeout=180)
        for r in resp.topics:
            if r.error_code not in (0, 36):  # TOPIC_ALREADY_EXISTS
                raise RuntimeError(f"create {r.name}: error {r.error_code}")
    conn.close()
    await produce_all(port, topics, parts)


async def produce_all(port: int, topics: list[str], parts: int) -> None:
    """One small batch to every partition (one Produce per topic, acks=1)."""
    from kafkette.protocol.messages import ProduceRequest
    from kafkette.protocol.records import build_batch
    conn = await _connect(port)
    TD, PD = ProduceRequest.TopicProduceData, ProduceRequest.TopicProduceData.PartitionProduceData
    batch = build_batch([(b"k", b"v" * 100, [])] * 5)
    deadline = time.monotonic() + 120
    pending = list(topics)
    while pending:
        futs = [conn.send(ProduceRequest(transactional_id=None, acks=1, timeout_ms=30000,
                                         topic_data=[TD(name=t, partition_data=[
                                             PD(index=p, records=batch) for p in range(parts)])]),
                          7, timeout=60) for t in pending]
        retry = []
        for t, f in zip(pending, futs):
            resp = await f
            if any(p.error_code for td in resp.responses for p in td.partition_responses):
                retry.append(t)  # leaders not ready yet right after creation
        pending = retry
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"produce to {len(pending)} topics kept failing")
            await asyncio.sleep(0.2)
    conn.close()


async def time_to_metadata_and_produce(port: int, t0: float, topics: list[str], parts: int) -> tuple[float, float]:
    from kafkette.protocol.messages import MetadataRequest, ProduceRequest
    from kafkette.protocol.records import build_batch
    conn = await _connect(port)
    want = len(topics) * parts
    deadline = time.monotonic() + 120
    while True:
        resp = await conn.send(MetadataRequest(topics=None, allow_auto_topic_creation=False), 9, timeout=60)
        n = sum(1 for t in resp.topics if t.name in set(topics) for p in t.partitions
                if p.error_code == 0 and p.leader_id >= 0)
        if n >= want:
            t_meta = time.monotonic() - t0
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"metadata lists {n} of {want} partitions")
        await asyncio.sleep(0.005)
    TD, PD = ProduceRequest.TopicProduceData, ProduceRequest.TopicProduceData.PartitionProduceData
    topic, part = random.choice(topics), random.randrange(parts)
    batch = build_batch([(None, b"x", [])])
    while True:
        resp = await conn.send(ProduceRequest(transactional_id=None, acks=1, timeout_ms=30000,
                                              topic_data=[TD(name=topic, partition_data=[
                                                  PD(index=part, records=batch)])]), 7, timeout=60)
        if resp.responses[0].partition_responses[0].error_code == 0:
            t_prod = time.monotonic() - t0
            break
        if time.monotonic() > deadline:
            raise RuntimeError("produce after restart kept failing")
        await asyncio.sleep(0.005)
    conn.close()
    return t_meta, t_prod


async def latencies(port: int, topics: list[str], parts: int, fetch_partitions: int,
                    rounds: int) -> dict:
    from kafkette.protocol.messages import FetchRequest, MetadataRequest
    conn = await _connect(port)
    meta = []
    for _ in range(rounds):
        t = time.perf_counter()
        await conn.send(MetadataRequest(topics=None, allow_auto_topic_creation=False), 9, timeout=60)
        meta.append((time.perf_counter() - t) * 1000)
    FT, FP = FetchRequest.FetchTopic, FetchRequest.FetchTopic.FetchPartition
    tps = [(t, p) for t in topics for p in range(parts)][:fetch_partitions]
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    req = FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=50 << 20,
                       isolation_level=0, session_id=0, session_epoch=-1, rack_id="",
                       topics=[FT(topic=t, partitions=[FP(partition=p, fetch_offset=0,
                                                          partition_max_bytes=1 << 20)
                                                       for p in ps])
                               for t, ps in by_topic.items()],
                       forgotten_topics_data=[])
    fetch = []
    for _ in range(rounds):
        t = time.perf_counter()
        resp = await conn.send(req, 11, timeout=60)
        fetch.append((time.perf_counter() - t) * 1000)
    got = sum(1 for t in resp.responses for p in t.partitions if p.records)
    conn.close()
    return {"metadata_p50_ms": _pct(meta, 50), "metadata_p99_ms": _pct(meta, 99),
            "fetch_p50_ms": _pct(fetch, 50), "fetch_p99_ms": _pct(fetch, 99),
            "fetch_partitions": len(tps), "fetch_partitions_with_data": got}


async def groups(port: int, n: int, topic: str, rounds: int) -> dict:
    from kafkette.protocol.messages import (DescribeGroupsRequest, FindCoordinatorRequest,
                                            JoinGroupRequest, ListGroupsRequest,
                                            OffsetCommitRequest, SyncGroupRequest)
    from kafkette.tools.group_member import encode_assignment, encode_subscription
    conn = await _connect(port)
    # The coordinator of every group is this broker; one FindCoordinator makes sure
    # __consumer_offsets exists and is led before the joins.
    deadline = time.monotonic() + 60
    while True:
        r = await conn.send(FindCoordinatorRequest(key="g-0", key_type=0), 2, timeout=30)
        if r.error_code == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"FindCoordinator error {r.error_code}")
        await asyncio.sleep(0.1)
    sub = encode_subscription([topic])
    assign = encode_assignment([(topic, 0)])
    OT = OffsetCommitRequest.OffsetCommitRequestTopic
    t0 = time.perf_counter()

    async def one(conn, i: int) -> None:
        g = f"scale-group-{i:05d}"
        member = ""
        for _ in range(3):  # v4+: the first join answers MEMBER_ID_REQUIRED (KIP-394)
            j = await conn.send(JoinGroupRequest(group_id=g, session_timeout_ms=300000,
                                                 rebalance_timeout_ms=60000, member_id=member,
                                                 protocol_type="consumer",
                                                 protocols=[JoinGroupRequest.JoinGroupRequestProtocol(
                                                     name="range", metadata=sub)]), 5, timeout=90)
            if j.error_code == 79:
                member = j.member_id
                continue
            break
        if j.error_code:
            raise RuntimeError(f"join {g}: {j.error_code}")
        s = await conn.send(SyncGroupRequest(group_id=g, generation_id=j.generation_id,
                                             member_id=j.member_id, assignments=[
                                                 SyncGroupRequest.SyncGroupRequestAssignment(
                                                     member_id=j.member_id, assignment=assign)]),
                            3, timeout=60)
        if s.error_code:
            raise RuntimeError(f"sync {g}: {s.error_code}")
        c = await conn.send(OffsetCommitRequest(group_id=g, generation_id_or_member_epoch=j.generation_id,
                                                member_id=j.member_id, topics=[OT(
                                                    name=topic, partitions=[
                                                        OT.OffsetCommitRequestPartition(
                                                            partition_index=0, committed_offset=1,
                                                            committed_metadata="")])]),
                            7, timeout=60)
        err = c.topics[0].partitions[0].error_code
        if err:
            raise RuntimeError(f"commit {g}: {err}")
    # A connection answers its requests in order and a JoinGroup waits in purgatory:
    # one connection per concurrent member, each working through its share of groups.
    pool = [await _connect(port) for _ in range(20)]

    async def worker(c, ids) -> None:
        for k in ids:
            await one(c, k)
    await asyncio.gather(*(worker(c, range(w, n, len(pool))) for w, c in enumerate(pool)))
    for c in pool:
        c.close()
    create_s = time.perf_counter() - t0
    lg, dg = [], []
    listed = 0
    for _ in range(rounds):
        t = time.perf_counter()
        r = await conn.send(ListGroupsRequest(states_filter=[]), 4, timeout=60)
        lg.append((time.perf_counter() - t) * 1000)
        listed = sum(1 for g in r.groups if g.group_id.startswith("scale-group-"))
    for _ in range(rounds):
        g = f"scale-group-{random.randrange(n):05d}"
        t = time.perf_counter()
        await conn.send(DescribeGroupsRequest(groups=[g]), 5, timeout=60)
        dg.append((time.perf_counter() - t) * 1000)
    conn.close()
    return {"groups": n, "groups_listed": listed, "create_s": create_s,
            "list_groups_p50_ms": _pct(lg, 50), "list_groups_p99_ms": _pct(lg, 99),
            "describe_group_p50_ms": _pct(dg, 50), "describe_group_p99_ms": _pct(dg, 99)}


async def idle_connections(port: int, n: int) -> int:
    """Open n connections, each with one ApiVersions answered; keep them open and return
    how many are held (the caller reads RSS, then they are closed)."""
    from kafkette.client import KafkaConnection
    conns = []
    for i in range(0, n, 200):
        batch = await asyncio.gather(*(KafkaConnection.connect("127.0.0.1", port, client_id="idle")
                                       for _ in range(min(200, n - i))))
        await asyncio.gather(*(c.api_versions() for c in batch))
        conns.extend(batch)
    return conns


def run(args) -> dict:
    out: dict = {"partitions": args.topics * args.partitions_per_topic,
                 "source": args.source or "this checkout"}
    base = tempfile.mkdtemp(prefix="kafkette-scale-", dir=args.tmpdir)
    data = os.path.join(base, "data")
    os.makedirs(data)
    topics = _topics(args.topics)
    parts = args.partitions_per_topic
    # Kafka's default group.initial.rebalance.delay.ms (3 s) would time the delay, not
    # the coordinator, for each of the --groups one-member groups.
    b = Broker(data, args.source, extra=["--set", "group.initial.rebalance.delay.ms=0"])
    try:
        b.start()
        t = time.monotonic()
        asyncio.run(create_and_fill(b.port, topics, parts))
        out["create_and_fill_s"] = time.monotonic() - t
        for mode in ("clean", "kill9"):
            if mode == "kill9":
                asyncio.run(produce_all(b.port, topics, parts))  # an unflushed tail everywhere
            b.stop(kill=mode == "kill9")
            t_api = b.start()
            t_meta, t_prod = asyncio.run(time_to_metadata_and_produce(b.port, b.t0, topics, parts))
            out[f"{mode}_start_api_versions_s"] = t_api
            out[f"{mode}_start_metadata_s"] = t_meta
            out[f"{mode}_start_produce_s"] = t_prod
            out[f"{mode}_rss_mb"] = b.rss_mb()
            out[f"{mode}_fds"] = b.fds()
        out.update(asyncio.run(latencies(b.port, topics, parts, args.fetch_partitions, args.rounds)))
        out["rss_after_latency_mb"] = b.rss_mb()
        out["fds_after_fetch"] = b.fds()
        if args.groups:
            out.update(asyncio.run(groups(b.port, args.groups, topics[0], args.rounds)))
            out["groups_rss_mb"] = b.rss_mb()
        if args.connections:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if soft < args.connections + 1000:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 1000), hard))
            # The broker inherits its limit at start: restart it with the raised one.
            b.stop()
            b.start()
            asyncio.run(time_to_metadata_and_produce(b.port, b.t0, topics, parts))
            before = b.rss_mb()

            async def hold():
                conns = await idle_connections(b.port, args.connections)
                after = b.rss_mb()
                held = b.fds()
                for c in conns:
                    c.close()
                return after, held, len(conns)
            try:
                after, held_fds, n = asyncio.run(hold())
                out.update({"connections": n, "conn_rss_before_mb": before,
                            "conn_rss_after_mb": after, "conn_broker_fds": held_fds,
                            "rss_per_connection_kb": (after - before) * 1024 / n})
            except OSError as e:
                out["connections_error"] = str(e)
    finally:
        b.stop()
        shutil.rmtree(base, ignore_errors=True)
    return out


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--partitions-per-topic", type=int, default=100)
    ap.add_argument("--fetch-partitions", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--source", default=None, help="run the broker from this kafkette source tree")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--json", default=None)
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    res = run(args)
    for k, v in res.items():
        print(f"{k:32} {v:.3f}" if isinstance(v, float) else f"{k:32} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
