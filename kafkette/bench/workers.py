"""Benchmark clients, each run in its own process by the harness:

    python -m kafkette.bench.workers ROLE '<json args>'

and printing one JSON line with its result on stdout. Roles that run in a group
(capacity generators, loopback sources) print "ready" once connected and start when
the harness writes "go" to their stdin, so that their measuring windows overlap.

- produce:    confluent-kafka producer, N records of 100 B, linger.ms=5
- txn_produce: the same producer with a transactional.id: N records in transactions of
  `per_txn` records, each committed; flush / commit / whole-transaction latencies
- consume:    confluent-kafka consumer, assign() every partition from the start
- fetch:      raw fetcher: Fetch v11 requests on one connection, batch headers only
- capacity:   raw Produce v7 with one pre-built RecordBatch v2, re-sent pipelined
- sink/source: loopback TCP bandwidth with the same connection count
- lat_consume / lat_produce: end-to-end latency, CLOCK_MONOTONIC in the value
  (system-wide on Linux, so comparable across processes)
- failover_produce: idempotent acks=all producer at a steady rate to one partition,
  a sequence number in each value, every acknowledgement's (seq, offset, CLOCK_MONOTONIC
  time) reported; runs on until a record produced after the harness's kill is acked
- readback:   confluent-kafka consumer reading one partition from the start to its high
  watermark: (offset, seq, leader epoch) of each record

The raw roles (fetch, capacity) use kafkette's own client (kafkette.client) on uvloop.
"""
from __future__ import annotations

import json
import socket
import struct
import sys
import time

_i32 = struct.Struct(">i")


def _out(obj) -> None:
    print(json.dumps(obj), flush=True)


def _wait_go() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit("no go")


def _run(coro):
    """Run a raw role's coroutine on uvloop (the broker's loop too) when installed."""
    import asyncio
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def _connect(bootstrap: str):
    from kafkette.client import KafkaConnection
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    return await KafkaConnection.connect(host, int(port), client_id="kafkette-bench")


# ----------------------------------------------------------------------- real clients

def produce(a) -> None:
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": a["bootstrap"], "linger.ms": 5, "acks": a["acks"],
                  "queue.buffering.max.messages": 2_000_000, "batch.size": 1_000_000,
                  "log_level": 0, **a.get("config", {})})
    topic, n = a["topic"], a["records"]
    v = b"x" * a.get("size", 100)
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
    # Metadata first, so the timed part is the produce and not the connection set-up.
    p.list_topics(topic, timeout=30)
    if a.get("warmup"):
        # An idempotent producer's first record waits for its producer id, which
        # librdkafka acquires on a timer: 0.5-1 s after start-up, against the mock too.
        p.produce(topic, v, on_delivery=cb)
        p.flush(30)
    # Round-robin over `spread` partitions when asked (filling the consume topic evenly:
    # the sticky partitioner can put 3x more on one partition than on another, and the
    # mock drops batches beyond ~5 MB per partition); else the default partitioner.
    spread = a.get("spread", 0)
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                if spread:
                    p.produce(topic, v, partition=i % spread, on_delivery=cb)
                else:
                    p.produce(topic, v, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.005)
        if i % 20000 == 0:
            p.poll(0)
    left = p.flush(300)
    dt = time.perf_counter() - t0
    _out({"seconds": dt, "errors": len(errors), "first_error": errors[:1],
          "undelivered": left})


def txn_produce(a) -> None:
    """The produce role's client and settings plus a transactional.id: records in
    transactions of `per_txn`, each committed before the next begins (the pattern of a
    consume-transform-produce loop, without the consume). Per transaction it times the
    flush (the records acknowledged: AddPartitionsToTxn, then Produce, which the leader
    verifies with the coordinator first, KIP-890) and commit_transaction separately:
    commit_transaction flushes by itself, so calling flush() first changes nothing in
    what is sent, and leaves commit_transaction timing the EndTxn round trip alone."""
    from confluent_kafka import Producer
    from kafkette.bench.histogram import LogHistogram
    p = Producer({"bootstrap.servers": a["bootstrap"], "linger.ms": 5, "acks": "all",
                  "queue.buffering.max.messages": 2_000_000, "batch.size": 1_000_000,
                  "transactional.id": a["transactional_id"], "log_level": 0})
    topic, n, per = a["topic"], a["records"], a.get("per_txn", 100)
    v = b"x" * a.get("size", 100)
    errors: list = []
    parts: set = set()

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            parts.add(msg.partition())
    # Untimed set-up: the producer id (on a fresh broker this also creates
    # __transaction_state) and the topic's metadata.
    t = time.perf_counter()
    p.init_transactions(60)
    init_s = time.perf_counter() - t
    p.list_topics(topic, timeout=30)
    h_flush, h_commit, h_txn = LogHistogram(), LogHistogram(), LogHistogram()
    txns = part_sum = 0
    now = time.perf_counter
    t0 = now()
    for start in range(0, n, per):
        ts = now()
        p.begin_transaction()
        for _ in range(min(per, n - start)):
            while True:
                try:
                    p.produce(topic, v, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.005)
        tf = now()
        left = p.flush(60)
        tc = now()
        if left:
            raise SystemExit(f"{left} records of transaction {txns} undelivered after 60 s")
        p.commit_transaction(60)
        te = now()
        h_flush.record((tc - tf) * 1e6)
        h_commit.record((te - tc) * 1e6)
        h_txn.record((te - ts) * 1e6)
        txns += 1
        part_sum += len(parts)
        parts.clear()
    dt = now() - t0
    out = {"seconds": dt, "records": n, "transactions": txns, "errors": len(errors),
           "first_error": errors[:1], "init_ms": init_s * 1000,
           "partitions_per_txn": part_sum / max(1, txns)}
    for name, h in (("flush", h_flush), ("commit", h_commit), ("txn", h_txn)):
        for q, key in ((50, "p50"), (99, "p99"), (100, "max")):
            out[f"{name}_{key}_us"] = h.percentile(q)
    _out(out)


def consume(a) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": a["bootstrap"], "group.id": "bench",
                  "enable.auto.commit": False, "log_level": 0,
                  "auto.offset.reset": "earliest", **a.get("config", {})})
    topic, n = a["topic"], a["records"]
    md = c.list_topics(topic, timeout=30).topics[topic]
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
    got = nbytes = 0
    deadline = time.monotonic() + a.get("timeout", 300)
    t0 = time.perf_counter()
    while got < n and time.monotonic() < deadline:
        # consume() waits until it has num_messages or the timeout: never ask for more
        # than are left, or the last call waits out its timeout.
        for m in c.consume(min(10000, n - got), 1.0):
            if m.error() is None:
                got += 1
                nbytes += len(m.value())
    dt = time.perf_counter() - t0
    c.close()
    _out({"seconds": dt, "records": got, "bytes": nbytes})


# ----------------------------------------------------------------------- raw protocol

def fetch(a) -> None:
    """Fetch v11 (topic names, not flexible: served by both targets) from offset 0 of
    every partition until `records` records came back. Per batch, not per record:
    only the batch headers are read to find the next offset and the record count.
    `isolation_level` 1 is read_committed (up to the last stable offset); control
    batches (transaction markers) are skipped, not counted as records."""
    _out(_run(_fetch(a)))


async def _fetch(a) -> dict:
    from kafkette.protocol.messages import FetchRequest
    from kafkette.protocol.records import (ATTRIBUTES_OFFSET, BATCH_LENGTH_OFFSET,
                                           LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD,
                                           RECORDS_COUNT_OFFSET)
    isolation = a.get("isolation_level", 0)
    topic, parts, n = a["topic"], a["partitions"], a["records"]
    offsets = {p: 0 for p in range(parts)}
    conn = await _connect(a["bootstrap"])
    FT, FP = FetchRequest.FetchTopic, FetchRequest.FetchTopic.FetchPartition
    q = struct.Struct(">q")
    got = nbytes = control = 0
    deadline = time.monotonic() + a.get("timeout", 300)
    t0 = time.perf_counter()
    while got < n and time.monotonic() < deadline:
        req = FetchRequest(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=50 << 20,
                           isolation_level=isolation, session_id=0, session_epoch=-1,
                           rack_id="",
                           topics=[FT(topic=topic, partitions=[
                               FP(partition=p, fetch_offset=o, partition_max_bytes=4 << 20)
                               for p, o in offsets.items()])],
                           forgotten_topics_data=[])
        resp = await conn.send(req, 11)
        for t in resp.responses:
            for p in t.partitions:
                if p.error_code:
                    raise RuntimeError(f"fetch error {p.error_code} on partition "
                                       f"{p.partition_index}")
                recs = p.records
                if not recs:
                    continue
                pos, end = 0, len(recs)
                while end - pos >= 61:
                    size = LOG_OVERHEAD + _i32.unpack_from(recs, pos + BATCH_LENGTH_OFFSET)[0]
                    if pos + size > end:
                        break  # a partial batch at the end of the response
                    base = q.unpack_from(recs, pos)[0]
                    offsets[p.partition_index] = base + 1 + _i32.unpack_from(
                        recs, pos + LAST_OFFSET_DELTA_OFFSET)[0]
                    if recs[pos + ATTRIBUTES_OFFSET + 1] & 0x20:  # a control batch
                        control += 1
                    else:
                        got += _i32.unpack_from(recs, pos + RECORDS_COUNT_OFFSET)[0]
                    pos += size
                nbytes += pos
    dt = time.perf_counter() - t0
    conn.close()
    return {"seconds": dt, "records": got, "bytes": nbytes, "control_batches": control}


def capacity(a) -> None:
    """One connection, one pre-built batch (build_batch once), Produce v7 acks=1 re-sent
    with up to `depth` requests in flight. Counts the responses that arrive inside the
    measuring window; checks every response's error code at its fixed offset."""
    _out(_run(_capacity(a)))


async def _capacity(a) -> dict:
    from collections import deque

    from kafkette.protocol.messages import ProduceRequest
    from kafkette.protocol.records import build_batch
    topic, part, batch_bytes = a["topic"], a["partition"], a["batch_bytes"]
    value = b"v" * 1000 if batch_bytes >= 100_000 else b"v" * 100
    per = len(value) + 12  # rough encoded record size, to hit the batch size
    n_rec = max(1, (batch_bytes - 61) // per)
    batch = build_batch([(None, value, [])] * n_rec)
    TD, PD = ProduceRequest.TopicProduceData, ProduceRequest.TopicProduceData.PartitionProduceData
    req = ProduceRequest(transactional_id=None, acks=1, timeout_ms=30000,
                         topic_data=[TD(name=topic, partition_data=[PD(index=part,
                                                                      records=batch)])])
    body = req.encode(7)
    # Response v7: corr(4) count(4) name(2+len) count(4) index(4) error_code(2)
    err_at = 4 + 4 + 2 + len(topic.encode()) + 4 + 4
    conn = await _connect(a["bootstrap"])
    depth, seconds = a["depth"], a["seconds"]

    def check(frame) -> None:
        err = struct.unpack_from(">h", frame, err_at)[0]
        if err:
            raise RuntimeError(f"produce error {err}")
    # One warm-up round trip (also checks that the topic takes our batch).
    check(await conn.send_encoded(0, 7, body))
    _wait_go()   # blocks the loop, which has nothing in flight
    inflight: deque = deque()
    acked = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    while True:
        while len(inflight) < depth:
            inflight.append(conn.send_encoded(0, 7, body))
        check(await inflight.popleft())
        now = time.perf_counter()
        if now >= t_end:
            break
        acked += 1
    dt = now - t0
    while inflight:
        check(await inflight.popleft())
    conn.close()
    return {"seconds": dt, "batches": acked, "bytes": acked * len(batch),
            "batch_bytes": len(batch)}


def sink(a) -> None:
    """Loopback bandwidth: accept `connections` sockets and read everything."""
    import selectors
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    sel = selectors.DefaultSelector()
    for _ in range(a["connections"]):
        c, _addr = srv.accept()
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    open_ = a["connections"]
    while open_:
        for key, _ in sel.select():
            try:
                k = key.fileobj.recv_into(view)
            except BlockingIOError:
                continue
            if k == 0:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_ -= 1
    _out({"done": True})


def source(a) -> None:
    sock = socket.create_connection(("127.0.0.1", a["port"]))
    chunk = b"\0" * (1 << 20)
    _wait_go()
    sent = 0
    t0 = time.perf_counter()
    t_end = t0 + a["seconds"]
    while True:
        sock.sendall(chunk)
        sent += len(chunk)
        now = time.perf_counter()
        if now >= t_end:
            break
    sock.close()
    _out({"seconds": now - t0, "bytes": sent})


# ----------------------------------------------------------------------- latency

def lat_consume(a) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from kafkette.bench.histogram import LogHistogram
    c = Consumer({"bootstrap.servers": a["bootstrap"], "group.id": "bench-lat",
                  "enable.auto.commit": False, "log_level": 0,
                  "fetch.wait.max.ms": 100})
    topic, n = a["topic"], a["records"]
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    # Steady state first: "ready" once a warm-up record (key "w") has come through,
    # so connection set-up and offset look-ups are not in the figures.
    deadline = time.monotonic() + a["timeout"]
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None and m.key() == b"w":
            break
    print("ready", flush=True)
    h = LogHistogram()
    got = 0
    mono = time.monotonic_ns
    while got < n and time.monotonic() < deadline:
        # poll(), not consume(n): consume waits until it has n messages, which at
        # 10,000 rec/s would add up to n/10 ms of latency.
        m = c.poll(0.5)
        if m is None or m.error() is not None or m.key() == b"w":
            continue
        h.record((mono() - int.from_bytes(m.value()[:8], "big")) // 1000)  # µs
        got += 1
    c.close()
    _out({"records": got, "p50_us": h.percentile(50), "p99_us": h.percentile(99),
          "p999_us": h.percentile(99.9), "max_us": h.max})


def lat_produce(a) -> None:
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": a["bootstrap"], "linger.ms": 0, "acks": "1",
                  "log_level": 0})
    topic, rate, n = a["topic"], a["rate"], a["records"]
    pad = b"x" * 92
    # Warm-up records (key "w", ignored by lat_consume) until the harness says go.
    import select
    while not select.select([sys.stdin], [], [], 0.01)[0]:
        p.produce(topic, b"\0" * 100, key=b"w")
        p.poll(0)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")
    mono = time.monotonic_ns
    t0 = time.monotonic()
    sent = 0
    while sent < n:
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        while sent < due:
            p.produce(topic, mono().to_bytes(8, "big") + pad)
            sent += 1
        p.poll(0)
        # Pace to the target rate: sleep until the next record is due.
        ahead = t0 + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    left = p.flush(60)
    _out({"sent": sent, "undelivered": left, "seconds": time.monotonic() - t0})


# ----------------------------------------------------------------------- failover

def failover_produce(a) -> None:
    """Protocol with the harness: "ready" once acks have flowed for `warmup` s; then the
    harness kills the partition's leader and writes "killed <monotonic ns>". Records
    produced after that line was read can only be acknowledged by a new leader; the
    worker stops `tail` s after the first such ack (or at `deadline`) and flushes."""
    import select

    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": a["bootstrap"], "linger.ms": 5, "acks": "all",
                  "enable.idempotence": True, "message.timeout.ms": 120_000,
                  "log_level": 0})
    topic, part, rate = a["topic"], a["partition"], a["rate"]
    pad = b"x" * 92
    acks: list = []
    errors: list = []
    mono = time.monotonic_ns

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acks.append((int.from_bytes(msg.value()[:8], "big"), msg.offset(), mono()))
    p.list_topics(topic, timeout=30)
    t0 = time.monotonic()
    deadline = t0 + a.get("deadline", 120)
    seq = 0
    ready_at = kill_seq = None
    killed_ns = None
    stop_at = None
    while time.monotonic() < deadline:
        due = int((time.monotonic() - t0) * rate) + 1
        while seq < due:
            try:
                p.produce(topic, seq.to_bytes(8, "big") + pad, partition=part, on_delivery=cb)
            except BufferError:
                break
            seq += 1
        p.poll(0.002)
        now = time.monotonic()
        if ready_at is None and acks:
            ready_at = now + a.get("warmup", 0.5)
        elif ready_at is not None and kill_seq is None and now >= ready_at:
            print("ready", flush=True)
            ready_at = float("inf")
        if ready_at == float("inf") and kill_seq is None and \
                select.select([sys.stdin], [], [], 0)[0]:
            word, _, ns = sys.stdin.readline().strip().partition(" ")
            if word != "killed":
                raise SystemExit(f"expected 'killed <ns>', got {word!r}")
            killed_ns, kill_seq = int(ns), seq
        if kill_seq is not None and stop_at is None and acks and acks[-1][0] >= kill_seq:
            stop_at = now + a.get("tail", 1.0)
        if stop_at is not None and now >= stop_at:
            break
    left = p.flush(120)
    _out({"acks": acks, "errors": len(errors), "first_error": errors[:1],
          "undelivered": left, "produced": seq, "kill_seq": kill_seq, "killed_ns": killed_ns})


def readback(a) -> None:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": a["bootstrap"], "group.id": "bench-readback",
                  "enable.auto.commit": False, "log_level": 0,
                  "auto.offset.reset": "earliest"})
    topic, part = a["topic"], a["partition"]
    tp = TopicPartition(topic, part, 0)
    _low, high = c.get_watermark_offsets(tp, timeout=30)
    c.assign([tp])
    out = []
    pos = 0
    deadline = time.monotonic() + a.get("timeout", 120)
    while pos < high and time.monotonic() < deadline:
        for m in c.consume(10000, 0.5):
            if m.error() is None:
                out.append((m.offset(), int.from_bytes(m.value()[:8], "big"),
                            m.leader_epoch()))
                pos = m.offset() + 1
    c.close()
    _out({"high_watermark": high, "records": out})


ROLES = {f.__name__: f for f in (produce, txn_produce, consume, fetch, capacity, sink, source,
                                 lat_consume, lat_produce, failover_produce, readback)}

if __name__ == "__main__":
    # stdout carries the result line: kafkette's client logs go to stderr.
    from kafkette.logging import configure_logging
    configure_logging("WARNING", stream=sys.stderr)
    ROLES[sys.argv[1]](json.loads(sys.argv[2]))
