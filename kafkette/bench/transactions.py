"""The `transactions` suite: what Kafka's transactions (KIP-98) cost a producer and a
consumer on one kafkette broker, measured in one run with the produce suite's client.

Rows (medians over --repeat unless said otherwise):

- txn_produce_rec_s / _mb_s, first column: confluent-kafka with a transactional.id
  (the produce suite's settings: 100 B records, linger.ms=5, batch.size 1 MB, acks=all,
  default partitioner, 6 partitions) writing --txn-records records in transactions of
  100, each committed before the next begins. Second column: the same client and
  settings with enable.idempotence=true and no transactions, --records records, on the
  same broker process, timed from its first acknowledged record (librdkafka acquires
  the producer id on a timer, 0.5-1 s after start-up; the transactional client has it
  from init_transactions, also untimed). The runs alternate (idempotent first in even repeats,
  transactional first in odd ones), so drift on a shared machine hits both. Ratio =
  transactional / idempotent: the price of one commit per 100 records, which for any
  broker is mostly round trips, not bytes (Kafka's own docs advise large transactions
  for throughput for the same reason).
- txn_broker_cpu_us_per_rec: the broker process's CPU time (user + system, all threads,
  from /proc, 10 ms ticks) during the timed run, per record, for both. Per-transaction
  work (AddPartitionsToTxn, the KIP-890 verification, EndTxn, __transaction_state
  writes, markers) shows here divided by 100.
- txn_flush_ms_*, txn_commit_ms_*, txn_ms_* (p50/p99, commit also max over all runs):
  per transaction, flush() (its records acknowledged: AddPartitionsToTxn and Produce)
  then commit_transaction() (EndTxn: answered once PrepareCommit is in
  __transaction_state; markers follow asynchronously), and begin to commit returned.
  commit_transaction would flush by itself; calling flush() first sends nothing
  different and leaves commit_transaction timing the EndTxn round trip alone.
- txn_partitions_per_txn: partitions a transaction wrote to (mean). With the default
  (sticky) partitioner a 100-record transaction mostly lands in one partition, so one
  marker per transaction; spread over 6 it would be 6.
- txn_consume_client_rec_s / txn_consume_raw_rec_s: the consume suite's confluent-kafka
  consumer and raw Fetch v11 fetcher over all the transactional runs' data (one topic,
  repeat x --txn-records records with their markers), isolation.level read_committed
  next to read_uncommitted; runs alternate. Control batches are not counted as records.
- txn_mock_*: the transactional runs of the same worker against librdkafka's mock
  cluster (which serves transactions from memory and writes no transaction log), next to
  kafkette's figures from the runs above: context for the absolute numbers only.
"""
from __future__ import annotations

import os
import time

from kafkette.bench.harness import Results, progress, run_worker, topic_name
from kafkette.bench.targets import Kafkette, MockPeer

TXN = "transactional"
IDEM = "idempotent"
RC = "read_committed"
RU = "read_uncommitted"
PARTITIONS = 6
PER_TXN = 100
SIZE = 100

# (metric, unit, higher is better, target description, check): no targets yet; the
# first figures are the baseline.
TXN_ROWS = [
    ("txn_produce_rec_s", "rec/s", True, None, None),
    ("txn_produce_mb_s", "MB/s", True, None, None),
    ("txn_broker_cpu_us_per_rec", "µs", False, None, None),
    ("txn_flush_ms_p50", "ms", False, None, None),
    ("txn_flush_ms_p99", "ms", False, None, None),
    ("txn_commit_ms_p50", "ms", False, None, None),
    ("txn_commit_ms_p99", "ms", False, None, None),
    ("txn_commit_ms_max", "ms", False, None, None),
    ("txn_ms_p50", "ms", False, None, None),
    ("txn_ms_p99", "ms", False, None, None),
    ("txn_partitions_per_txn", "parts", False, None, None),
]
TXN_READ_ROWS = [
    ("txn_consume_client_rec_s", "rec/s", True, None, None),
    ("txn_consume_raw_rec_s", "rec/s", True, None, None),
]
TXN_MOCK_ROWS = [
    ("txn_mock_produce_rec_s", "rec/s", True, None, None),
    ("txn_mock_commit_ms_p50", "ms", False, None, None),
    ("txn_mock_commit_ms_p99", "ms", False, None, None),
]
# Reported as the maximum over the runs, not the median of the runs' maxima.
MAXED = {"txn_commit_ms_max"}


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def txn_run(t, topic: str, records: int) -> dict:
    """One transactional produce run on target `t` (a new transactional id)."""
    r = run_worker("txn_produce", {"bootstrap": t.bootstrap, "topic": topic,
                                   "records": records, "per_txn": PER_TXN, "size": SIZE,
                                   "transactional_id": f"bench-txn-{time.time_ns()}"})
    if r["errors"]:
        raise RuntimeError(f"{t.name}: {r['errors']} delivery errors {r['first_error']}")
    return r


def _add_latencies(res: Results, r: dict) -> None:
    for name, metric in (("flush", "txn_flush_ms"), ("commit", "txn_commit_ms"),
                         ("txn", "txn_ms")):
        for q in ("p50", "p99"):
            res.add(f"{metric}_{q}", TXN, r[f"{name}_{q}_us"] / 1000)
    res.add("txn_commit_ms_max", TXN, r["commit_max_us"] / 1000)


def suite_transactions(args, res: Results) -> None:
    # At ~40,000 rec/s, 200,000 records are 2,000 commits (a p99 from 2,000 samples) in
    # about 5 s per run; --records' 1,000,000 would make the suite several minutes long.
    n_txn = args.txn_records or min(args.records, 200_000)
    res.config["txn_records"] = n_txn
    res.config["txn_per_transaction"] = PER_TXN
    with Kafkette() as k:
        shared = topic_name("txn")  # every transactional run appends here: the read side
        txns = 0
        k.create_topic(shared, PARTITIONS)
        for i in range(args.repeat):
            for mode in ((IDEM, TXN) if i % 2 == 0 else (TXN, IDEM)):
                n = n_txn if mode == TXN else args.records
                progress(f"kafkette: {mode} produce run {i + 1}/{args.repeat} "
                         f"({n:,} x {SIZE} B, {PARTITIONS} partitions"
                         + (f", {PER_TXN} per transaction)" if mode == TXN else ")"))
                if mode == IDEM:
                    topic = topic_name("idem")
                    k.create_topic(topic, PARTITIONS)
                cpu0 = _cpu_s(k.pid)
                if mode == TXN:
                    r = txn_run(k, shared, n)
                    txns += r["transactions"]
                else:
                    r = run_worker("produce", {"bootstrap": k.bootstrap, "topic": topic,
                                               "records": n, "acks": "all", "size": SIZE,
                                               "config": {"enable.idempotence": True},
                                               "warmup": True})
                    if r["errors"] or r["undelivered"]:
                        raise RuntimeError(f"kafkette: idempotent produce: {r['errors']} "
                                           f"errors {r['first_error']}, "
                                           f"{r['undelivered']} undelivered")
                cpu = _cpu_s(k.pid) - cpu0
                rate = n / r["seconds"]
                res.add("txn_produce_rec_s", mode, rate)
                res.add("txn_produce_mb_s", mode, rate * SIZE / 1e6)
                res.add("txn_broker_cpu_us_per_rec", mode, cpu / n * 1e6)
                if mode == TXN:
                    _add_latencies(res, r)
                    res.add("txn_partitions_per_txn", TXN, r["partitions_per_txn"])
                    res.add("txn_mock_produce_rec_s", Kafkette.name, rate)
                    res.add("txn_mock_commit_ms_p50", Kafkette.name, r["commit_p50_us"] / 1000)
                    res.add("txn_mock_commit_ms_p99", Kafkette.name, r["commit_p99_us"] / 1000)
        total = n_txn * args.repeat
        for i in range(args.repeat):
            for iso in ((RC, RU) if i % 2 == 0 else (RU, RC)):
                for kind in ("client", "raw"):
                    progress(f"kafkette: consume ({kind}, {iso}) run {i + 1}/{args.repeat} "
                             f"({total:,} transactional records)")
                    if kind == "client":
                        r = run_worker("consume", {"bootstrap": k.bootstrap, "topic": shared,
                                                   "records": total,
                                                   "config": {"isolation.level": iso}})
                    else:
                        r = run_worker("fetch", {"bootstrap": k.bootstrap, "topic": shared,
                                                 "partitions": PARTITIONS, "records": total,
                                                 "isolation_level": 1 if iso == RC else 0})
                    if r["records"] < total:
                        raise RuntimeError(f"kafkette: consume ({kind}, {iso}) got "
                                           f"{r['records']} of {total} records")
                    # The data is transactional: a marker per transaction and partition
                    # (the fetcher stops at its last record, so it can miss the last
                    # marker of each partition).
                    if kind == "raw" and r["control_batches"] < txns - PARTITIONS:
                        raise RuntimeError(f"kafkette: {r['control_batches']} transaction "
                                           f"markers read for {txns} transactions")
                    res.add(f"txn_consume_{kind}_rec_s", iso, r["records"] / r["seconds"])
    with MockPeer() as m:
        for i in range(args.repeat):
            progress(f"{m.name}: transactional produce run {i + 1}/{args.repeat} "
                     f"({n_txn:,} x {SIZE} B, {PER_TXN} per transaction)")
            topic = topic_name("txn")
            m.create_topic(topic, PARTITIONS)
            r = txn_run(m, topic, n_txn)
            res.add("txn_mock_produce_rec_s", m.name, n_txn / r["seconds"])
            res.add("txn_mock_commit_ms_p50", m.name, r["commit_p50_us"] / 1000)
            res.add("txn_mock_commit_ms_p99", m.name, r["commit_p99_us"] / 1000)
