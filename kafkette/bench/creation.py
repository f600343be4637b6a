"""How a big CreateTopics stalls the other clients of a broker
(`python -m kafkette.bench.creation [--partitions 5000]`).

One broker process (`python -m kafkette serve`) on a free port. A "bystander"
connection sends ApiVersions and a one-batch Produce to a topic that existed before,
one pair every 10 ms, and records when each answer came. Meanwhile another connection
creates one topic with --partitions partitions, then produces one batch to every
partition (one Produce naming them all, retried for the partitions that are not yet
writable). Printed as JSON: the create's round trip, the time from sending the create
until every partition took a batch, and the bystander's longest gap between two
answers (the stall every connection of the broker sees).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time

from kafkette.bench.scale import Broker


async def _connect(port: int):
    from kafkette.client import KafkaConnection
    conn = await KafkaConnection.connect("127.0.0.1", port, client_id="bench-creation")
    await conn.api_versions()
    return conn


def _create(name: str, partitions: int):
    from kafkette.protocol.messages import CreateTopicsRequest
    T = CreateTopicsRequest.CreatableTopic
    return CreateTopicsRequest(topics=[T(name=name, num_partitions=partitions,
                                         replication_factor=1, assignments=[], configs=[])],
                               timeout_ms=120000, validate_only=False)


def _produce(topic: str, partitions, batch):
    from kafkette.protocol.messages import ProduceRequest
    TD = ProduceRequest.TopicProduceData
    PD = TD.PartitionProduceData
    return ProduceRequest(transactional_id=None, acks=1, timeout_ms=30000, topic_data=[
        TD(name=topic, partition_data=[PD(index=p, records=batch) for p in partitions])])


async def measure(port: int, partitions: int, interval_s: float = 0.01) -> dict:
    from kafkette.protocol.records import build_batch
    batch = build_batch([(b"k", b"v" * 100, [])])
    admin = await _connect(port)
    resp = await admin.send(_create("bystander", 1), 7, timeout=60)
    assert resp.topics[0].error_code in (0, 36), resp
    by = await _connect(port)
    # The bystander's own topic must be writable before the clock starts.
    deadline = time.monotonic() + 30
    while (await by.send(_produce("bystander", [0], batch), 7, timeout=30)
           ).responses[0].partition_responses[0].error_code:
        if time.monotonic() > deadline:
            raise RuntimeError("bystander topic never became writable")
        await asyncio.sleep(0.05)
    answers: list[float] = []
    stop = asyncio.Event()

    async def bystander() -> None:
        while not stop.is_set():
            await by.api_versions(timeout=60)
            answers.append(time.monotonic())
            await by.send(_produce("bystander", [0], batch), 7, timeout=60)
            answers.append(time.monotonic())
            await asyncio.sleep(interval_s)

    task = asyncio.ensure_future(bystander())
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    resp = await admin.send(_create("big", partitions), 7, timeout=300)
    t_created = time.monotonic()
    if resp.topics[0].error_code:
        raise RuntimeError(f"create failed: {resp.topics[0]}")
    pending = list(range(partitions))
    attempts = 0
    while pending:
        attempts += 1
        r = await admin.send(_produce("big", pending, batch), 7, timeout=300)
        pending = [p.index for td in r.responses for p in td.partition_responses if p.error_code]
        if pending:
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"{len(pending)} partitions never became writable")
            await asyncio.sleep(0.1)   # the Java producer's retry.backoff.ms
    t_writable = time.monotonic()
    await asyncio.sleep(0.3)
    stop.set()
    await task
    window = [a for a in answers if a >= t0 - 0.1]
    gaps = [b - a for a, b in zip(window, window[1:])]
    admin.close()
    by.close()
    return {"partitions": partitions,
            "create_round_trip_s": round(t_created - t0, 3),
            "all_writable_s": round(t_writable - t0, 3),
            "produce_attempts": attempts,
            "bystander_answers": len(window),
            "bystander_max_gap_s": round(max(gaps), 3) if gaps else None}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--partitions", type=int, default=5000)
    p.add_argument("--source", help="run the broker from this kafkette source tree")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="kafkette-creation-")
    broker = Broker(os.path.join(tmp, "data"), source=args.source,
                    extra=["--set", "num.partitions=1"])
    try:
        broker.start()
        result = asyncio.run(measure(broker.port, args.partitions))
    finally:
        broker.stop()
        try:
            with open(os.path.join(tmp, "broker.err"), errors="replace") as f:
                lines = [ln.rstrip() for ln in f if "partition logs created" in ln]
        except OSError:
            lines = []
        shutil.rmtree(tmp, ignore_errors=True)
    for line in lines[-1:]:
        try:
            result["broker_hosting_s"] = json.loads(line).get("seconds")
        except ValueError:
            pass   # not the JSON renderer
    print(json.dumps(result))


if __name__ == "__main__":
    main()
