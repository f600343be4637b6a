"""`make bench` / `python -m kafkette.bench`: kafkette side by side with librdkafka's
mock cluster, in the same run and with the same clients.

Sub-benchmarks (each starts a fresh broker process per target: kafkette on a free
port with its own temp data dir, and the mock in kafkette.bench.mock_launcher):

- produce:  confluent-kafka producer process, --records x 100 B, 6 partitions,
            linger.ms=5, acks=1 and acks=all;
- capacity: --connections load-generator processes (kafkette.bench.workers.capacity)
            each re-sending one pre-built RecordBatch v2 (16 KB and 1 MB) with Produce
            v7, pipelined --depth deep, for --seconds; next to the loopback TCP
            bandwidth of the same number of connections, measured in the same run;
- consume:  confluent-kafka consumer reading --records from the start, and a raw
            fetcher (Fetch v11 on one socket); the topic is filled first, untimed;
- latency:  --rate records/s for --latency-seconds with linger.ms=0, p50/p99/p99.9
            from the produce call to consumer receipt (log-bucketed histogram);
- footprint: start-up (process start to the first ApiVersions answer, every start
            counted), idle RSS right after start-up, peak RSS of the produce brokers;
- transactions: one kafkette broker: confluent-kafka transactional produce (100
            records per transaction, each committed) next to the same client
            idempotent, runs alternating; flush / commit_transaction latencies; broker
            CPU per record; read_committed next to read_uncommitted consume (client and
            raw fetcher) over the transactional data; the transactional runs on the
            mock too, for context (own tables; rows in kafkette.bench.transactions);
- replication: a real 3-node kafkette cluster: produce to RF 3 acks=all next to RF 1
            acks=1, follower lag under that load, and failover after kill -9 of a
            leader with lost/duplicated acknowledged records (its own table; rows
            defined in kafkette.bench.replication);
- security: one kafkette broker: produce (acks=1) over a SASL_SSL listener with
            SCRAM-SHA-512 next to its PLAINTEXT listener, runs alternating; ratio =
            SASL_SSL / PLAINTEXT (rows in kafkette.bench.security);
- registry: one broker with the built-in Schema Registry on next to one without it:
            start-up, idle RSS; with it on, register / GET latest latency for 200
            Avro schemas and the RSS after them (rows in kafkette.bench.registry);
- base:     single-node no-regression: the produce (acks=1, acks=all) and consume runs
            above against a broker started from --base-rev (default 3dc167e, the last
            commit before replication; exported with `git archive` into a temp dir,
            PYTHONPATH pointing there), next to this checkout's broker, runs
            alternating; ratio = current / base. Skipped with a message when git or
            the revision is missing, or with --base-rev none.

- scale:    kafkette.bench.scale (10,000 partitions started clean and after kill -9,
            Metadata and 1,000-partition Fetch latency, 1,000 consumer groups, 5,000
            idle connections) for this checkout and for --scale-base-rev, once each.

Figures are medians over --repeat runs. Tables on stdout (one per comparison), JSON to
--json, progress on stderr. The machine is noisy: the ratios within one run are what
counts.

    python -m kafkette.bench [--records N] [--repeat R] [--json FILE] [--only produce,...]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time

from kafkette.bench.harness import Results, progress, run_group, run_worker, topic_name
from kafkette.bench.registry import OFF, ON, REGISTRY_ROWS, suite_registry
from kafkette.bench.replication import RF1, RF3, suite_replication
from kafkette.bench.security import PLAINTEXT, SASL_SSL, SEC_ROWS, suite_security
from kafkette.bench.transactions import (IDEM, MAXED, RC, RU, TXN, TXN_MOCK_ROWS,
                                         TXN_READ_ROWS, TXN_ROWS, suite_transactions)
from kafkette.bench.targets import (PY, Kafkette, MockPeer, RevisionUnavailable,
                                    compile_bytecode, export_revision, use_own_source)
from kafkette.logging import configure_logging

SUITES = ("produce", "capacity", "consume", "latency", "transactions", "replication",
          "security", "base", "scale", "registry")
SCALE_BASE_REV = "04404cf"  # the last commit before lazy log opening and fetch sessions
SCALE = "kafkette scale base"
DEFAULT_BASE_REV = "3dc167e"  # the last commit before the replication work
BASE = "kafkette base"        # the base revision's target name in Results


def started(target, res: Results) -> None:
    res.add("startup_ms", target.name, target.startup_s * 1000)
    res.add("idle_rss_mb", target.name, target.rss_mb())


# --------------------------------------------------------------------------- suites

def produce_run(t, args, acks: str) -> float:
    """One timed produce suite run on target `t` (a fresh topic); records/s."""
    topic = topic_name("produce")
    t.create_topic(topic, 6)
    r = run_worker("produce", {"bootstrap": t.bootstrap, "topic": topic,
                               "records": args.records, "acks": acks})
    if r["errors"] or r["undelivered"]:
        raise RuntimeError(f"{t.name}: {r['errors']} delivery errors "
                           f"{r['first_error']}, {r['undelivered']} undelivered")
    return args.records / r["seconds"]


def suite_produce(args, res: Results) -> None:
    for acks in ("1", "all"):
        for cls in (Kafkette, MockPeer):
            with cls() as t:
                started(t, res)
                for i in range(args.repeat):
                    progress(f"{t.name}: produce acks={acks} run {i + 1}/{args.repeat} "
                             f"({args.records:,} x 100 B, 6 partitions)")
                    rate = produce_run(t, args, acks)
                    res.add(f"produce_acks{acks}_rec_s", t.name, rate)
                    res.add(f"produce_acks{acks}_mb_s", t.name, rate * 100 / 1e6)
                res.add("peak_rss_mb", t.name, t.peak_rss_mb())


def loopback(args) -> float:
    """MB/s over loopback TCP with the same number of connections as the generators."""
    sink = subprocess.Popen([PY, "-m", "kafkette.bench.workers", "sink",
                             json.dumps({"connections": args.connections})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        rs = run_group("source", [{"port": port, "seconds": args.seconds}] * args.connections)
        sink.wait(60)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    return sum(r["bytes"] / r["seconds"] for r in rs) / 1e6


def suite_capacity(args, res: Results) -> None:
    for i in range(args.repeat):
        progress(f"loopback TCP bandwidth run {i + 1}/{args.repeat} "
                 f"({args.connections} connections, {args.seconds}s)")
        mb = loopback(args)
        for name in (Kafkette.name, MockPeer.name):  # one physical limit for both
            res.add("loopback_tcp_mb_s", name, mb)
    lo = res.median("loopback_tcp_mb_s", Kafkette.name)
    for label, size in (("16kb", 16 * 1024), ("1mb", 1_000_000)):
        for cls in (Kafkette, MockPeer):
            with cls() as t:
                started(t, res)
                for i in range(args.repeat):
                    progress(f"{t.name}: capacity {label} batches run {i + 1}/{args.repeat} "
                             f"({args.connections} connections x depth {args.depth}, "
                             f"{args.seconds}s)")
                    topic = topic_name("capacity")
                    t.create_topic(topic, args.connections)
                    rs = run_group("capacity", [
                        {"bootstrap": t.bootstrap, "topic": topic, "partition": p,
                         "batch_bytes": size, "depth": args.depth, "seconds": args.seconds}
                        for p in range(args.connections)])
                    mb = sum(r["bytes"] / r["seconds"] for r in rs) / 1e6
                    res.add(f"capacity_{label}_mb_s", t.name, mb)
                    res.add(f"capacity_{label}_batches_s", t.name,
                            sum(r["batches"] / r["seconds"] for r in rs))
                    res.add(f"capacity_{label}_pct_loopback", t.name, 100 * mb / lo)


def consume_partitions(records: int) -> int:
    # The mock keeps ~5 MB per partition and drops older batches; 30,000 records of
    # 100 B per partition stay under that, so the mock still has all of them.
    return max(6, math.ceil(records / 30_000))


def fill_consume_topic(t, args) -> tuple[str, int]:
    """The consume suite's topic on target `t`, filled (untimed)."""
    parts = consume_partitions(args.records)
    topic = topic_name("consume")
    t.create_topic(topic, parts)
    progress(f"{t.name}: filling {topic} with {args.records:,} records ({parts} partitions)")
    r = run_worker("produce", {"bootstrap": t.bootstrap, "topic": topic,
                               "records": args.records, "acks": "1", "spread": parts})
    if r["errors"] or r["undelivered"]:
        raise RuntimeError(f"{t.name}: fill failed {r}")
    return topic, parts


def consume_run(t, args, kind: str, topic: str, parts: int) -> dict:
    r = run_worker("consume" if kind == "client" else "fetch",
                   {"bootstrap": t.bootstrap, "topic": topic, "partitions": parts,
                    "records": args.records})
    if r["records"] < args.records:
        raise RuntimeError(f"{t.name}: consume ({kind}) got {r['records']} "
                           f"of {args.records} records")
    return r


def suite_consume(args, res: Results) -> None:
    for kind in ("client", "raw"):
        for cls in (Kafkette, MockPeer):
            with cls() as t:
                started(t, res)
                topic, parts = fill_consume_topic(t, args)
                for i in range(args.repeat):
                    progress(f"{t.name}: consume ({kind}) run {i + 1}/{args.repeat}")
                    r = consume_run(t, args, kind, topic, parts)
                    res.add(f"consume_{kind}_rec_s", t.name, r["records"] / r["seconds"])
                    res.add(f"consume_{kind}_mb_s", t.name, r["bytes"] / r["seconds"] / 1e6)


def suite_base(args, res: Results) -> None:
    """Single-node no-regression: this checkout's broker next to --base-rev's."""
    rev = (args.base_rev or "").strip()
    if not rev or rev.lower() == "none":
        progress("base: skipped (--base-rev none)")
        return
    try:
        src, commit = export_revision(rev, args.tmpdir)
    except RevisionUnavailable as e:
        msg = f"base comparison skipped: {e}"
        progress("WARNING " + msg)
        res.notes.append(msg)
        return
    res.labels[BASE] = f"kafkette@{commit[:7]}"
    res.config["base_commit"] = commit
    progress(f"base: {rev} = {commit[:12]} exported to {src}")
    try:
        compile_bytecode(src)  # as for the current tree: start-up without compiling

        def targets(i):
            pair = [lambda: Kafkette(), lambda: Kafkette(source=src, name=BASE)]
            return pair if i % 2 == 0 else pair[::-1]  # alternate who runs first
        for acks in ("1", "all"):
            for i in range(args.repeat):
                for make in targets(i):
                    with make() as t:
                        progress(f"{res.labels.get(t.name, t.name)}: produce acks={acks} "
                                 f"run {i + 1}/{args.repeat} ({args.records:,} x 100 B)")
                        res.add(f"base_produce_acks{acks}_rec_s", t.name,
                                produce_run(t, args, acks))
        # Both brokers up at once, their consume runs interleaved: drift in the machine's
        # load (it is shared) then hits both alike instead of one broker's whole series.
        with Kafkette() as cur, Kafkette(source=src, name=BASE) as base:
            filled = {t.name: fill_consume_topic(t, args) for t in (cur, base)}
            for i in range(args.repeat):
                for t in ((cur, base) if i % 2 == 0 else (base, cur)):
                    topic, parts = filled[t.name]
                    for kind in ("client", "raw"):
                        progress(f"{res.labels.get(t.name, t.name)}: consume ({kind}) run "
                                 f"{i + 1}/{args.repeat}")
                        r = consume_run(t, args, kind, topic, parts)
                        res.add(f"base_consume_{kind}_rec_s", t.name,
                                r["records"] / r["seconds"])
    finally:
        shutil.rmtree(src, ignore_errors=True)


def suite_latency(args, res: Results) -> None:
    n = int(args.rate * args.latency_seconds)
    for cls in (Kafkette, MockPeer):
        with cls() as t:
            started(t, res)
            for i in range(args.repeat):
                progress(f"{t.name}: end-to-end latency run {i + 1}/{args.repeat} "
                         f"({args.rate:,} rec/s for {args.latency_seconds}s, linger.ms=0)")
                topic = topic_name("latency")
                t.create_topic(topic, 1)
                base = {"bootstrap": t.bootstrap, "topic": topic, "records": n}
                cons = subprocess.Popen(
                    [PY, "-m", "kafkette.bench.workers", "lat_consume",
                     json.dumps({**base, "timeout": 3 * args.latency_seconds + 60})],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                prod = subprocess.Popen(
                    [PY, "-m", "kafkette.bench.workers", "lat_produce",
                     json.dumps({**base, "rate": args.rate})],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
                try:
                    line = cons.stdout.readline().strip()
                    if line != "ready":
                        raise RuntimeError(f"latency consumer: {line!r} {cons.stderr.read()}")
                    prod.stdin.write("go\n")
                    prod.stdin.flush()
                    pout, perr = prod.communicate(timeout=args.latency_seconds + 90)
                    if prod.returncode != 0:
                        raise RuntimeError(f"latency producer failed: {perr[-3000:]}")
                    pr = json.loads(pout.strip().splitlines()[-1])
                    out, err = cons.communicate(timeout=2 * args.latency_seconds + 90)
                finally:
                    for proc in (cons, prod):
                        if proc.poll() is None:
                            proc.kill()
                            proc.wait()
                if cons.returncode != 0:
                    raise RuntimeError(f"latency consumer failed: {err[-3000:]}")
                r = json.loads(out.strip().splitlines()[-1])
                if pr["undelivered"]:
                    raise RuntimeError(f"{t.name}: latency run: {pr['undelivered']} undelivered")
                if r["records"] < n:
                    # Percentiles over what arrived understate the latency: say so.
                    note = (f"{t.name}: latency run {i + 1}: only {r['records']:,} of {n:,} "
                            f"records reached the consumer within its deadline")
                    progress("WARNING " + note)
                    res.notes.append(note)
                for p in ("p50", "p99", "p999"):
                    res.add(f"e2e_{p}_ms", t.name, r[f"{p}_us"] / 1000)


def suite_scale(args, res: Results) -> None:
    """kafkette.bench.scale for this checkout and for --scale-base-rev, one after the
    other (each run takes minutes: it creates and fills 10,000 partitions)."""
    from kafkette.bench import scale
    sargs = scale.parse([f"--connections={args.scale_connections}"]
                        + (["--tmpdir", args.tmpdir] if args.tmpdir else []))
    targets = [(Kafkette.name, None)]
    rev = (args.scale_base_rev or "").strip()
    src = None
    if rev and rev.lower() != "none":
        try:
            src, commit = export_revision(rev, args.tmpdir)
            compile_bytecode(src)
            res.labels[SCALE] = f"kafkette@{commit[:7]}"
            targets.append((SCALE, src))
        except RevisionUnavailable as e:
            res.notes.append(f"scale base comparison skipped: {e}")
    try:
        for name, source in targets:
            progress(f"scale: {res.labels.get(name, name)} ({sargs.topics * sargs.partitions_per_topic:,} "
                     f"partitions, {sargs.groups:,} groups, {sargs.connections:,} connections)")
            sargs.source = source
            for k, v in scale.run(sargs).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    res.add(f"scale_{k}", name, float(v))
    finally:
        if src is not None:
            shutil.rmtree(src, ignore_errors=True)


SUITE_RUNS = {"produce": suite_produce, "capacity": suite_capacity, "consume": suite_consume,
              "latency": suite_latency, "transactions": suite_transactions,
              "replication": suite_replication, "security": suite_security,
              "base": suite_base, "scale": suite_scale, "registry": suite_registry}


# --------------------------------------------------------------------------- report

# (metric, unit, higher is better, target description, check(kafkette, peer) -> bool)
ROWS = [
    ("produce_acks1_rec_s", "rec/s", True, ">= 1.0x peer", lambda k, p: k >= p),
    ("produce_acks1_mb_s", "MB/s", True, None, None),
    ("produce_acksall_rec_s", "rec/s", True, ">= 1.0x peer", lambda k, p: k >= p),
    ("produce_acksall_mb_s", "MB/s", True, None, None),
    ("loopback_tcp_mb_s", "MB/s", True, None, None),
    ("capacity_16kb_mb_s", "MB/s", True, None, None),
    ("capacity_16kb_batches_s", "batch/s", True, None, None),
    ("capacity_1mb_mb_s", "MB/s", True, None, None),
    ("capacity_1mb_batches_s", "batch/s", True, None, None),
    ("capacity_1mb_pct_loopback", "%", True, ">= 25% loopback", lambda k, p: k >= 25),
    ("consume_client_rec_s", "rec/s", True, ">= 1.0x peer", lambda k, p: k >= p),
    ("consume_client_mb_s", "MB/s", True, None, None),
    ("consume_raw_rec_s", "rec/s", True, None, None),
    ("consume_raw_mb_s", "MB/s", True, None, None),
    ("e2e_p50_ms", "ms", False, None, None),
    ("e2e_p99_ms", "ms", False, "<= 5 ms", lambda k, p: k <= 5),
    ("e2e_p999_ms", "ms", False, None, None),
    ("startup_ms", "ms", False, "<= 300 ms", lambda k, p: k <= 300),
    ("idle_rss_mb", "MB", False, "<= 50 MB", lambda k, p: k <= 50),
    ("peak_rss_mb", "MB", False, None, None),
]


# Replication: "kafkette" = the RF 3 acks=all figure, "peer" = RF 1 acks=1 on the same
# cluster (throughput only); lag and failover rows have one column.
REPLICATION_ROWS = [
    ("repl_produce_rec_s", "rec/s", True, ">= 0.5x RF1", lambda k, p: k >= 0.5 * p),
    ("repl_produce_mb_s", "MB/s", True, None, None),
    ("repl_lag_records_p50", "records", False, None, None),
    ("repl_lag_records_p99", "records", False, None, None),
    ("repl_lag_records_max", "records", False, None, None),
    ("repl_lag_ms_p50", "ms", False, None, None),
    ("repl_lag_ms_p99", "ms", False, None, None),
    ("repl_lag_ms_max", "ms", False, None, None),
    ("repl_lag_samples", "points", True, None, None),
    ("failover_ms", "ms", False, None, None),
    ("failover_lost", "records", False, "== 0", lambda k, p: k == 0),
    ("failover_dup", "records", False, "== 0", lambda k, p: k == 0),
]

# Single node, this checkout vs --base-rev. 0.9x, not 1.0x: run-to-run spread on the
# shared 2-core machine is about that large; a real regression shows in every run.
BASE_ROWS = [
    ("base_produce_acks1_rec_s", "rec/s", True, ">= 0.9x base", lambda k, p: k >= 0.9 * p),
    ("base_produce_acksall_rec_s", "rec/s", True, ">= 0.9x base", lambda k, p: k >= 0.9 * p),
    ("base_consume_client_rec_s", "rec/s", True, ">= 0.9x base", lambda k, p: k >= 0.9 * p),
    ("base_consume_raw_rec_s", "rec/s", True, ">= 0.9x base", lambda k, p: k >= 0.9 * p),
]

# 10,000 partitions (kafkette.bench.scale): this checkout vs --scale-base-rev.
SCALE_ROWS = [
    ("scale_clean_start_api_versions_s", "s", False, "< 1 s", lambda k, p: k < 1),
    ("scale_clean_start_metadata_s", "s", False, None, None),
    ("scale_clean_start_produce_s", "s", False, None, None),
    ("scale_clean_rss_mb", "MB", False, None, None),
    ("scale_clean_fds", "fds", False, None, None),
    ("scale_kill9_start_api_versions_s", "s", False, None, None),
    ("scale_kill9_start_produce_s", "s", False, None, None),
    ("scale_kill9_fds", "fds", False, None, None),
    ("scale_metadata_p50_ms", "ms", False, None, None),
    ("scale_metadata_p99_ms", "ms", False, None, None),
    ("scale_fetch_p50_ms", "ms", False, None, None),
    ("scale_fetch_p99_ms", "ms", False, None, None),
    ("scale_rss_after_latency_mb", "MB", False, None, None),
    ("scale_create_s", "s", False, None, None),
    ("scale_list_groups_p99_ms", "ms", False, None, None),
    ("scale_describe_group_p99_ms", "ms", False, None, None),
    ("scale_groups_rss_mb", "MB", False, None, None),
    ("scale_rss_per_connection_kb", "KB", False, None, None),
]

# Counts summed over the runs (one lost record in any run is a loss), not medians.
SUMMED = {"failover_lost", "failover_dup"}

# (table, first target, second target, rows)
TABLES = [
    ("main", Kafkette.name, MockPeer.name, ROWS),
    ("transactions", TXN, IDEM, TXN_ROWS),
    ("txn_read", RC, RU, TXN_READ_ROWS),
    ("txn_mock", Kafkette.name, MockPeer.name, TXN_MOCK_ROWS),
    ("replication", RF3, RF1, REPLICATION_ROWS),
    ("security", SASL_SSL, PLAINTEXT, SEC_ROWS),
    ("base", Kafkette.name, BASE, BASE_ROWS),
    ("scale", Kafkette.name, SCALE, SCALE_ROWS),
    ("registry", ON, OFF, REGISTRY_ROWS),
]


def _value(res: Results, metric: str, target: str) -> float | None:
    if metric in SUMMED:
        vals = res.values.get(metric, {}).get(target)
        return float(sum(vals)) if vals else None
    if metric in MAXED:
        vals = res.values.get(metric, {}).get(target)
        return float(max(vals)) if vals else None
    return res.median(metric, target)


def build_rows(res: Results) -> list[dict]:
    rows = []
    for table, first, second, specs in TABLES:
        for metric, unit, higher, target, check in specs:
            k = _value(res, metric, first)
            p = _value(res, metric, second)
            if k is None and p is None:
                continue
            row = {"metric": metric, "unit": unit, "higher_is_better": higher,
                   "kafkette": k, "peer": p,
                   "ratio": (k / p) if (k is not None and p) else None,
                   "runs": {n: res.values.get(metric, {}).get(n, []) for n in (first, second)},
                   "target": target, "table": table,
                   "columns": [res.labels.get(first, first), res.labels.get(second, second)]}
            if check is not None and k is not None and (p is not None or second == RF1):
                row["met"] = bool(check(k, p))
            rows.append(row)
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def format_table(rows: list[dict]) -> str:
    """One markdown table per comparison (main, replication, base), each headed by its
    two columns; a blank line between them."""
    out = []
    for table in dict.fromkeys(r.get("table", "main") for r in rows):
        trows = [r for r in rows if r.get("table", "main") == table]
        first, second = trows[0].get("columns", ["kafkette", "librdkafka mock"])
        head = (f"| {'metric':<27} | {'unit':<7} | {first:>16} | {second:>16} "
                f"| {'ratio':>6} | {'target':<16} | met |")
        lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
        for r in trows:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            met = {True: "yes", False: "NO"}.get(r.get("met"), "")
            lines.append(f"| {r['metric']:<27} | {r['unit']:<7} | {_fmt(r['kafkette']):>16} | "
                         f"{_fmt(r['peer']):>16} | {ratio:>6} | {r['target'] or '':<16} | "
                         f"{met:<3} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kafkette bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000,
                    help="records for produce and consume (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="length of each capacity / loopback run")
    ap.add_argument("--connections", type=int, default=3,
                    help="load-generator processes (one connection each)")
    ap.add_argument("--depth", type=int, default=8, help="requests in flight per connection")
    ap.add_argument("--rate", type=int, default=10_000, help="latency run: records/s")
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--txn-records", type=int, default=None,
                    help="transactions: records per transactional run, in transactions of "
                         "100 (default: --records, at most 200,000; the idempotent runs "
                         "use --records)")
    ap.add_argument("--only", default=",".join(SUITES),
                    help=f"comma-separated subset of {','.join(SUITES)}")
    ap.add_argument("--tmpdir", default=None,
                    help="parent of kafkette's data dirs (default: the system temp dir); "
                         "e.g. /dev/shm to take the disk out of the figures")
    ap.add_argument("--lag-interval-ms", type=int, default=20,
                    help="replication: follower-lag sampling interval (20)")
    ap.add_argument("--failover-rate", type=int, default=2000,
                    help="replication: records/s of the failover producer (2000)")
    ap.add_argument("--session-timeout-ms", type=int, default=None,
                    help="replication: broker.session.timeout.ms of the cluster "
                         "(default: kafkette's default, as `kafkette cluster` runs)")
    ap.add_argument("--base-rev", default=DEFAULT_BASE_REV,
                    help=f"base: git revision to compare the single node against "
                         f"({DEFAULT_BASE_REV}); 'none' skips it")
    ap.add_argument("--scale-base-rev", default=SCALE_BASE_REV,
                    help=f"scale: git revision to compare against ({SCALE_BASE_REV}); 'none' skips it")
    ap.add_argument("--scale-connections", type=int, default=5000,
                    help="scale: idle connections held for the RSS-per-connection figure")
    ap.add_argument("--json", default="bench-results.json")
    args = ap.parse_args(argv)
    suites = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in suites:
        if s not in SUITES:
            ap.error(f"unknown suite {s!r}")
    res = Results()
    t0 = time.monotonic()
    Kafkette.data_parent = args.tmpdir
    # kafkette's own client logs (e.g. the cluster's readiness probes timing out) would
    # go to stdout, unconfigured structlog's default, in the middle of the table.
    configure_logging("WARNING", stream=sys.stderr)
    use_own_source()  # brokers and workers run this checkout, whatever the venv has
    compile_bytecode()
    for s in SUITES:
        if s in suites:
            SUITE_RUNS[s](args, res)
    rows = build_rows(res)
    table = format_table(rows)
    print(table)
    for note in res.notes:
        print(f"NOTE: {note}")
    print("\nratio = first column / second (lower is better for ms and MB rows). The "
          "mock's start-up and RSS are of a Python process hosting librdkafka's in-memory "
          "mock, not a broker-to-broker comparison; kafkette writes every byte to disk, "
          "the mock keeps ~5 MB per partition in memory. Replication rows: see "
          "kafkette.bench.replication; transactions rows: kafkette.bench.transactions; "
          "base rows: current / base revision, single node.")
    import confluent_kafka
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "python": platform.python_version(),
                       "librdkafka": confluent_kafka.libversion()[0]},
           "config": {**{k: v for k, v in vars(args).items() if k != "json"},
                      **res.config},
           "elapsed_s": time.monotonic() - t0,
           "targets": [Kafkette.name, MockPeer.name], "rows": rows, "table": table,
           "notes": res.notes}
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2)
    progress(f"wrote {args.json} ({time.monotonic() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
