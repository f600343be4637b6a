"""Smoke run of the benchmark harness (`make bench`) with tiny sizes, so that it keeps
working: every row must come back for kafkette and for librdkafka's mock cluster with
a positive figure; the replication suite's rows (3-node cluster, failover with no
acknowledged record lost), the transactions suite's (transactional next to idempotent
produce, commit latencies, read_committed next to read_uncommitted) and the
base-revision comparison likewise. Benchmarks
themselves are not tests; this checks the harness only, never a speed.
Plus the latency histogram's percentiles, which the harness reports."""
import json
import math
import random
import shutil
import subprocess
import sys

import pytest

from kafkette.bench.__main__ import BASE_ROWS, REPLICATION_ROWS, ROWS
from kafkette.bench.security import SEC_ROWS
from kafkette.bench.transactions import TXN_MOCK_ROWS, TXN_READ_ROWS, TXN_ROWS
from kafkette.bench.histogram import LogHistogram


def test_histogram_percentiles_within_bucket_precision():
    h = LogHistogram()
    rng = random.Random(7)
    values = [rng.randint(1, 5_000_000) for _ in range(20_000)]
    for v in values:
        h.record(v)
    values.sort()
    for p in (50, 99, 99.9):
        exact = values[max(0, math.ceil(len(values) * p / 100) - 1)]
        # 8 significant bits: a bucket is at most 1/128 of its value wide.
        assert abs(h.percentile(p) - exact) <= exact / 128 + 1, p
    assert h.percentile(100) == max(values)
    assert LogHistogram().percentile(99) == 0


def test_small_values_are_exact():
    h = LogHistogram()
    for v in (3, 3, 7, 200):
        h.record(v)
    assert [h.percentile(p) for p in (25, 50, 75, 100)] == [3, 3, 7, 200]


def test_bench_smoke(tmp_path):
    pytest.importorskip("confluent_kafka")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "kafkette.bench", "--records", "2000", "--repeat", "1",
         "--seconds", "0.5", "--connections", "2", "--latency-seconds", "1",
         "--rate", "2000", "--only", "produce,capacity,consume,latency",
         "--json", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "[bench" in proc.stderr  # progress lines while it runs
    doc = json.loads(out.read_text())
    assert doc["targets"] == ["kafkette", "librdkafka mock"]
    rows = {r["metric"]: r for r in doc["rows"]}
    assert set(rows) == {m[0] for m in ROWS}
    for name, row in rows.items():
        for target in ("kafkette", "peer"):
            assert row[target] is not None and row[target] > 0, (name, target, row)
        assert row["ratio"] > 0, name
    # Each row with a target says whether kafkette met it.
    assert all("met" in r for r in doc["rows"] if r["target"])
    assert "| produce_acks1_rec_s" in proc.stdout


def _bench(tmp_path, *args, timeout=240):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "kafkette.bench", "--repeat", "1",
                           "--json", str(out), *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, json.loads(out.read_text())


def test_bench_replication_smoke(tmp_path):
    """A 3-node cluster: throughput RF3 acks=all vs RF1 acks=1, sampled follower lag, and
    one kill -9 failover (with the `kafkette cluster` session timeout, ~10 s)."""
    pytest.importorskip("confluent_kafka")
    # 30,000 records and 5 ms samples: the timed produce lasts long enough for the
    # sampler to see it on this machine, or the lag rows would be missing (and fail).
    proc, doc = _bench(tmp_path, "--only", "replication", "--records", "30000",
                       "--lag-interval-ms", "5", "--failover-rate", "500")
    rows = {r["metric"]: r for r in doc["rows"]}
    assert set(rows) == {m[0] for m in REPLICATION_ROWS}
    assert all(r["table"] == "replication" for r in rows.values())
    tput = rows["repl_produce_rec_s"]
    assert tput["kafkette"] > 0 and tput["peer"] > 0 and tput["ratio"] > 0
    assert "met" in tput
    assert rows["repl_lag_samples"]["kafkette"] > 0
    for kind in ("records", "ms"):
        vals = [rows[f"repl_lag_{kind}_{p}"]["kafkette"] for p in ("p50", "p99", "max")]
        assert all(v is not None and v >= 0 for v in vals) and vals == sorted(vals), vals
    assert rows["failover_ms"]["kafkette"] > 0
    assert rows["failover_lost"]["kafkette"] == 0, rows["failover_lost"]
    assert rows["failover_dup"]["kafkette"] == 0, rows["failover_dup"]
    assert rows["failover_lost"]["met"] and rows["failover_dup"]["met"]
    assert doc["config"]["broker.session.timeout.ms"] > 0
    assert "| repl_produce_rec_s" in proc.stdout and "RF3 acks=all" in proc.stdout


def test_bench_transactions_smoke(tmp_path):
    """20 transactions of 100 records each on kafkette (and on the mock), next to the
    idempotent producer; then both isolation levels over the transactional data (the
    suite itself fails when the markers are missing or a reader comes up short)."""
    pytest.importorskip("confluent_kafka")
    proc, doc = _bench(tmp_path, "--only", "transactions", "--records", "2000")
    rows = {r["metric"]: r for r in doc["rows"]}
    assert set(rows) == {m[0] for m in TXN_ROWS + TXN_READ_ROWS + TXN_MOCK_ROWS}
    assert doc["config"]["txn_records"] == 2000
    assert doc["config"]["txn_per_transaction"] == 100
    assert rows["txn_produce_rec_s"]["columns"] == ["transactional", "idempotent"]
    assert rows["txn_consume_client_rec_s"]["columns"] == ["read_committed",
                                                           "read_uncommitted"]
    assert rows["txn_mock_produce_rec_s"]["columns"] == ["kafkette", "librdkafka mock"]
    for name in ("txn_produce_rec_s", "txn_produce_mb_s", "txn_consume_client_rec_s",
                 "txn_consume_raw_rec_s", "txn_mock_produce_rec_s",
                 "txn_mock_commit_ms_p50", "txn_mock_commit_ms_p99"):
        row = rows[name]
        assert row["kafkette"] > 0 and row["peer"] > 0 and row["ratio"] > 0, (name, row)
    # 10 ms CPU ticks: a tiny idempotent run can read 0.
    cpu = rows["txn_broker_cpu_us_per_rec"]
    assert cpu["kafkette"] >= 0 and cpu["peer"] >= 0, cpu
    for kind in ("txn_flush_ms", "txn_commit_ms", "txn_ms"):
        p50, p99 = rows[f"{kind}_p50"]["kafkette"], rows[f"{kind}_p99"]["kafkette"]
        assert 0 < p50 <= p99, (kind, p50, p99)
        assert rows[f"{kind}_p50"]["peer"] is None  # one column: the idempotent has none
    assert rows["txn_commit_ms_p99"]["kafkette"] <= rows["txn_commit_ms_max"]["kafkette"]
    # A transaction's whole time covers its flush and its commit.
    assert rows["txn_ms_p50"]["kafkette"] >= rows["txn_commit_ms_p50"]["kafkette"]
    assert 1 <= rows["txn_partitions_per_txn"]["kafkette"] <= 6
    assert "| txn_produce_rec_s" in proc.stdout and "read_committed" in proc.stdout


def test_bench_security_smoke(tmp_path):
    """Produce over the SASL_SSL (SCRAM-SHA-512) listener next to the PLAINTEXT one of
    the same broker (the suite fails when a record is not delivered)."""
    pytest.importorskip("confluent_kafka")
    pytest.importorskip("trustme")
    proc, doc = _bench(tmp_path, "--only", "security", "--records", "2000")
    rows = {r["metric"]: r for r in doc["rows"]}
    assert set(rows) == {m[0] for m in SEC_ROWS}
    assert rows["sec_produce_rec_s"]["columns"] == ["SASL_SSL (SCRAM-SHA-512)", "PLAINTEXT"]
    for name in ("sec_produce_rec_s", "sec_produce_mb_s"):
        row = rows[name]
        assert row["kafkette"] > 0 and row["peer"] > 0 and row["ratio"] > 0, (name, row)
    assert "| sec_produce_rec_s" in proc.stdout


def test_bench_base_revision_smoke(tmp_path):
    """The single-node comparison against the default base revision: a broker from the
    exported tree next to this checkout's, each row with both figures."""
    pytest.importorskip("confluent_kafka")
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    from kafkette.bench.__main__ import DEFAULT_BASE_REV
    from kafkette.bench.targets import source_root
    if subprocess.run(["git", "-C", source_root(), "rev-parse", "--verify", "--quiet",
                       f"{DEFAULT_BASE_REV}^{{commit}}"], capture_output=True).returncode:
        pytest.skip(f"{DEFAULT_BASE_REV} not in this checkout's history")
    proc, doc = _bench(tmp_path, "--only", "base", "--records", "2000")
    rows = {r["metric"]: r for r in doc["rows"]}
    assert set(rows) == {m[0] for m in BASE_ROWS}
    for name, row in rows.items():
        assert row["kafkette"] > 0 and row["peer"] > 0 and row["ratio"] > 0, (name, row)
        assert row["columns"][1].startswith("kafkette@")
    assert doc["config"]["base_commit"].startswith(DEFAULT_BASE_REV)


def test_bench_base_revision_missing_fails_softly(tmp_path):
    proc, doc = _bench(tmp_path, "--only", "base", "--base-rev", "no-such-rev-x",
                       "--records", "100", timeout=60)
    assert doc["rows"] == []
    assert "base comparison skipped" in proc.stdout
    assert "no-such-rev-x" in proc.stdout


# --- the connection loop the profile led to: responses of one pass go out together,
# in request order, also around a handler that must wait.

class _Transport:
    def __init__(self):
        self.writes = []
        self.paused = False

    def get_extra_info(self, name):
        return ("127.0.0.1", 1)

    def writelines(self, chunks):
        self.writes.append([bytes(c) for c in chunks])

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def abort(self):
        pass

    def close(self):
        pass


class _Metrics:
    def connection_opened(self, listener):
        pass

    def connection_closed(self, listener):
        pass


class _Dispatcher:
    """Frames b"S<n>" answer at once, b"A<n>" wait for `gate`."""

    def __init__(self, gate):
        self.gate = gate
        self.metrics = _Metrics()
        self.broker = None

    def handle(self, frame, peer, listener, principal="User:ANONYMOUS", connection=None):
        kind, n = bytes(frame[:1]), bytes(frame[1:])
        if kind == b"S":
            return [b"r" + n]

        async def later():
            await self.gate
            return [b"r" + n]
        return later()


class _Server:
    def __init__(self, dispatcher):
        from kafkette.logging import get_logger
        from kafkette.server.limits import ConnectionQuotas, RequestPool
        from kafkette.server.log_limiter import ClientErrorLog

        self.dispatcher = dispatcher
        self.max_request_bytes = 1 << 20
        self.connections = set()
        self.quotas = ConnectionQuotas()
        self.request_pool = RequestPool(500, 1 << 30)
        self.client_errors = ClientErrorLog(get_logger("test"))
        self.idle_timeout_s = 600.0

    def count_idle_close(self, listener):
        pass


def _feed(conn, *payloads):
    data = b"".join(len(p).to_bytes(4, "big") + p for p in payloads)
    buf = conn.get_buffer(len(data))
    buf[:len(data)] = data
    conn.buffer_updated(len(data))


def test_pipelined_responses_coalesce_and_stay_in_order():
    import asyncio

    from kafkette.server.connection import KafkaConnection

    async def main():
        gate = asyncio.get_running_loop().create_future()
        conn = KafkaConnection(_Server(_Dispatcher(gate)), "PLAINTEXT")
        t = _Transport()
        conn.connection_made(t)
        _feed(conn, b"S1", b"S2", b"A3", b"S4", b"S5")
        # One writelines for both answers before the waiting request, nothing after it.
        assert t.writes == [[b"r1", b"r2"]]
        await asyncio.sleep(0)
        assert t.writes == [[b"r1", b"r2"]]
        gate.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)
        assert t.writes == [[b"r1", b"r2"], [b"r3"], [b"r4", b"r5"]]
    asyncio.run(main())


def test_fetch_read_trims_with_a_view_not_a_copy(tmp_path):
    """PartitionLog.read(view=True), as the Fetch handler calls it: the whole batches
    that fit come back as a memoryview over the one pread, not as a trimmed copy."""
    from kafkette.log.partition_log import LogConfig, PartitionLog
    from kafkette.protocol.records import build_batch

    plog = PartitionLog(tmp_path / "t-0", LogConfig())
    batches = [build_batch([(None, bytes([i]) * 100, [])] * 5, timestamp_ms=1_000)
               for i in range(3)]
    for b in batches:
        plog.append(bytearray(b), 0, 1_000)
    limit = len(batches[0]) + len(batches[1]) + 10  # two whole batches and a bit
    data = plog.read(0, limit, view=True)
    assert isinstance(data, memoryview)
    assert len(data.obj) > len(data)  # the pread's buffer, not a copy of the prefix
    copy = plog.read(0, limit)
    assert isinstance(copy, bytes) and bytes(data) == copy
    assert len(copy) == len(batches[0]) + len(batches[1])
    plog.close()


def test_answers_before_a_bad_request_are_still_sent():
    import asyncio

    from kafkette.errors import ProtocolError
    from kafkette.server.connection import KafkaConnection

    class Bad(_Dispatcher):
        def handle(self, frame, peer, listener, principal="User:ANONYMOUS", connection=None):
            if bytes(frame[:1]) == b"X":
                raise ProtocolError("bad")
            return super().handle(frame, peer, listener)

    async def main():
        conn = KafkaConnection(_Server(Bad(None)), "PLAINTEXT")
        t = _Transport()
        t.aborted = False
        t.abort = lambda: setattr(t, "aborted", True)
        conn.connection_made(t)
        _feed(conn, b"S1", b"S2", b"X3", b"S4")
        assert t.writes == [[b"r1", b"r2"]] and t.aborted
    asyncio.run(main())


def test_scale_suite_runs_small(tmp_path):
    """kafkette.bench.scale with 20 partitions, 5 groups and 20 connections: every
    figure comes back, the fetch reads every partition, every group is listed, and a
    clean restart of this checkout opens no segment file before first use."""
    from kafkette.bench import scale
    args = scale.parse(["--topics", "2", "--partitions-per-topic", "10", "--groups", "5",
                        "--fetch-partitions", "15", "--rounds", "3", "--connections", "20",
                        "--tmpdir", str(tmp_path)])
    r = scale.run(args)
    assert r["partitions"] == 20
    for mode in ("clean", "kill9"):
        t_api, t_meta, t_prod = (r[f"{mode}_start_{k}_s"] for k in ("api_versions", "metadata", "produce"))
        assert 0 < t_api <= t_meta <= t_prod
    assert r["fetch_partitions"] == r["fetch_partitions_with_data"] == 15
    assert r["groups_listed"] == 5
    assert r["connections"] == 20 and r["conn_broker_fds"] >= 20
    # __consumer_offsets and the metadata log are open; the 20 partitions are not.
    assert r["clean_fds"] < r["kill9_fds"] - 15
