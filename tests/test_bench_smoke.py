"""Smoke run of the benchmark harness (`make bench`) with tiny sizes, so that it keeps
working: every row must come back for kafkette and for librdkafka's mock cluster with
a positive figure. Benchmarks themselves are not tests; this checks the harness only.
Plus the latency histogram's percentiles, which the harness reports."""
import json
import math
import random
import subprocess
import sys

import pytest

from kafkette.bench.__main__ import ROWS
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
         "--rate", "2000", "--json", str(out)],
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

    def handle(self, frame, peer, listener):
        kind, n = bytes(frame[:1]), bytes(frame[1:])
        if kind == b"S":
            return [b"r" + n]

        async def later():
            await self.gate
            return [b"r" + n]
        return later()


class _Server:
    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.max_request_bytes = 1 << 20
        self.connections = set()


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
        def handle(self, frame, peer, listener):
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
