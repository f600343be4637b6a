"""`make bench` / `python -m kafkette.bench`: producer throughput and footprint,
kafkette side by side with librdkafka's mock cluster in the same run.

This is the first slice of the benchmark harness (the benchmarks issue adds the
broker-capacity load generator, consume, latency and more). Each target gets a fresh
process: kafkette on a free port with its own data dir; the peer is the mock cluster
that ships inside the confluent-kafka wheel (`test.mock.num.brokers`), started by a
tiny launcher process that keeps it alive and prints its bootstrap address. The same
producer script runs in a separate process against each. Figures are medians over
`--repeat` runs; ratios within one run are what counts on a noisy machine.

    python -m kafkette.bench [--records N] [--repeat R] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PY = sys.executable

# Producer run in its own process: confluent-kafka, 100-byte values, 6 partitions.
PRODUCER = r"""
import sys, time, json
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bs, n, acks, topic, create = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
if create == "1":
    admin = AdminClient({"bootstrap.servers": bs})  # keep a reference until the result
    for f in admin.create_topics([NewTopic(topic, 6, 1)]).values():
        f.result(timeout=30)
p = Producer({"bootstrap.servers": bs, "linger.ms": 5, "acks": acks,
              "queue.buffering.max.messages": 2000000, "batch.size": 1000000})
v = b"x" * 100
errors = []
def cb(err, msg):
    if err is not None:
        errors.append(err)
t0 = time.perf_counter()
for i in range(n):
    while True:
        try:
            p.produce(topic, v, on_delivery=cb)
            break
        except BufferError:
            p.poll(0.005)
    if i % 20000 == 0:
        p.poll(0)
left = p.flush(120)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "errors": len(errors), "undelivered": left}))
"""

# Keeps a librdkafka mock cluster alive and prints its bootstrap servers.
MOCK_LAUNCHER = r"""
import sys, time
from confluent_kafka import Producer
p = Producer({"test.mock.num.brokers": 1, "bootstrap.servers": "", "log_level": 0})
# The mock cluster's address is in the client's metadata.
md = p.list_topics(timeout=10)
b = next(iter(md.brokers.values()))
print(f"{b.host}:{b.port}", flush=True)
sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, deadline_s: float = 20.0) -> float:
    from kafkette.cli import api_versions_probe
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        try:
            if api_versions_probe("127.0.0.1", port, timeout=1.0) == 0:
                return time.monotonic()
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"broker on port {port} did not answer within {deadline_s}s")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Kafkette:
    name = "kafkette"
    create_topics = True

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="kafkette-bench-")
        self.port = free_port()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [PY, "-m", "kafkette", "serve", "--set",
             f"listeners=PLAINTEXT://127.0.0.1:{self.port}", "--set", f"log.dirs={self.dir}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.startup_s = wait_ready(self.port) - t0
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.pid = self.proc.pid
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


class MockPeer:
    name = "librdkafka mock"
    # The mock cluster does not serve CreateTopics; it auto-creates the topic on
    # first produce with its default partition count (not 6: a known difference).
    create_topics = False

    def __enter__(self):
        t0 = time.monotonic()
        self.proc = subprocess.Popen([PY, "-c", MOCK_LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        if not self.bootstrap:
            raise RuntimeError("mock cluster launcher failed")
        self.startup_s = time.monotonic() - t0
        self.pid = self.proc.pid
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(30)


def produce_run(target, records: int, acks: str) -> float:
    topic = f"bench-{acks}-{time.time_ns()}"
    out = subprocess.run([PY, "-c", PRODUCER, target.bootstrap, str(records), acks, topic,
                          "1" if target.create_topics else "0"],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"producer failed against {target.name}: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["errors"] or res["undelivered"]:
        raise RuntimeError(f"{target.name}: {res['errors']} delivery errors, "
                           f"{res['undelivered']} undelivered")
    return records / res["seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kafkette bench")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default="bench-results.json")
    args = ap.parse_args(argv)
    rows: dict[str, dict[str, float]] = {}
    for cls in (Kafkette, MockPeer):
        with cls() as target:
            res = rows.setdefault(target.name, {})
            res["startup_ms"] = target.startup_s * 1000
            res["idle_rss_mb"] = rss_kb(target.pid) / 1024
            for acks in ("1", "all"):
                rates = []
                for i in range(args.repeat):
                    print(f"[{target.name}] produce acks={acks} run {i + 1}/{args.repeat} "
                          f"({args.records:,} x 100 B)...", file=sys.stderr, flush=True)
                    rates.append(produce_run(target, args.records, acks))
                res[f"produce_acks{acks}_rec_s"] = statistics.median(rates)
                res[f"produce_acks{acks}_mb_s"] = statistics.median(rates) * 100 / 1e6
            res["peak_rss_mb"] = hwm_kb(target.pid) / 1024
    names = list(rows)
    metrics = list(rows[names[0]])
    print(f"\n{'metric':<26}" + "".join(f"{n:>18}" for n in names) + f"{'ratio':>10}")
    for m in metrics:
        a, b = rows[names[0]][m], rows[names[1]][m]
        print(f"{m:<26}{a:>18,.1f}{b:>18,.1f}{(a / b if b else float('nan')):>10.2f}")
    print("\nstartup/RSS of the peer are of the launcher process (Python + librdkafka), "
          "not comparable to a broker's; the produce rows are.")
    with open(args.json, "w") as f:
        json.dump({"records": args.records, "repeat": args.repeat, "results": rows,
                   "cpu_count": os.cpu_count()}, f, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
