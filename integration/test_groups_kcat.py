"""kcat's balanced consumer (-G: librdkafka 2.0.2's KafkaConsumer) against kafkette:
join a group, consume, commit on exit, resume from the commit, split partitions."""
from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import threading
import time

import pytest

from it_clients import admin, create_topic, produce_to_partitions
from itutil import unique_topic, wait_until

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed")

FMT = "%p %o %k %s\\n"


@pytest.fixture(scope="module")
def broker_config():
    return {"group.initial.rebalance.delay.ms": 0}


class KcatGroupConsumer:
    """`kcat -G <group> <topic>` as a subprocess; stdout lines collected by a thread."""

    def __init__(self, b, group, topic, *extra, workdir):
        # -u: unbuffered output (a pipe would otherwise get the lines only at exit)
        self.cmd = [KCAT, "-u", "-b", b.bootstrap, "-X", "socket.timeout.ms=10000",
                    "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000",
                    "-X", "heartbeat.interval.ms=500", "-G", group, "-f", FMT, *extra, topic]
        self.stderr_path = workdir / f"kcat-{group}-{time.monotonic_ns()}.stderr"
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self._err,
                                     stdin=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def rows(self) -> list[tuple[int, int, str, str]]:
        out = []
        for ln in list(self.lines):
            p, o, k, v = ln.split(" ", 3)
            out.append((int(p), int(o), k, v))
        return out

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def check_running(self):
        rc = self.proc.poll()
        if rc is not None:
            e = AssertionError(f"kcat exited early with {rc}: {self.cmd}\n{self.stderr()}")
            e.fatal = True
            raise e

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (kcat then closes the consumer: final commit, LeaveGroup) and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"kcat did not exit {timeout}s after SIGTERM\n"
                                     f"{self.stderr()}")
        self._reader.join(5)
        self._err.close()
        return self.proc.returncode


def _offsets(b, group, topic) -> dict[int, int]:
    with admin(b.bootstrap) as a:
        res = a.list_group_offsets({group: None})[group]
    return {tp.partition: om.offset for tp, om in res.items() if tp.topic == topic}


def _as_rows(acked, parts=None, from_offset=None):
    return sorted((p, o, k.decode(), v.decode()) for p, rows in acked.items()
                  if parts is None or p in parts
                  for o, k, v in rows if from_offset is None or o >= from_offset[p])


@pytest.mark.timeout(90)
def test_kcat_group_consumes_commits_and_resumes(broker, tmp_path):
    t, g = unique_topic("kcg"), unique_topic("kcg-grp")
    create_topic(broker.bootstrap, t, partitions=3)
    acked = produce_to_partitions(broker.bootstrap, t, 60, 3)

    k = KcatGroupConsumer(broker, g, t, workdir=tmp_path)
    try:
        wait_until(lambda: (k.check_running(), len(k.lines) >= 60)[1], timeout=30,
                   message="kcat -G to print 60 records")
        with admin(broker.bootstrap) as a:
            d = a.describe_groups([g])[g]
        assert d["error"] is None and d["group_state"] == "Stable", d
        assert d["protocol_type"] == "consumer" and d["protocol_data"] in ("range", "roundrobin")
        assert len(d["members"]) == 1 and d["members"][0]["client_id"] == "rdkafka", d
    finally:
        rc = k.terminate()
    assert rc == 0, f"kcat exited {rc} after SIGTERM\n{k.stderr()}"
    rows = k.rows()
    assert len(rows) == 60, rows[:5]
    assert sorted(rows) == _as_rows(acked)
    # kcat commits what it consumed when it closes (auto commit, final commit on close)
    assert _offsets(broker, g, t) == {0: 20, 1: 20, 2: 20}

    # kcat -C -G: a second run resumes from the commit and reads only the new records
    acked2 = produce_to_partitions(broker.bootstrap, t, 30, 3, start=60)
    cmd = [KCAT, "-b", broker.bootstrap, "-X", "socket.timeout.ms=10000",
           "-X", "auto.offset.reset=earliest", "-C", "-G", g, "-c", "30", "-f", FMT, t]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=40)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stderr[-3000:]}"
    rows2 = sorted((int(p), int(o), kk, v) for p, o, kk, v in
                   (ln.split(" ", 3) for ln in r.stdout.splitlines()))
    assert rows2 == _as_rows(acked2), (rows2[:5], "expected only offsets 20..29")
    assert _offsets(broker, g, t) == {0: 30, 1: 30, 2: 30}
    with admin(broker.bootstrap) as a:
        d = a.describe_groups([g])[g]
    assert d["group_state"] == "Empty" and d["members"] == [], d


@pytest.mark.timeout(90)
def test_two_kcat_members_split_the_partitions(broker, tmp_path):
    t, g = unique_topic("kcg2"), unique_topic("kcg-grp")
    create_topic(broker.bootstrap, t, partitions=4)
    k1 = KcatGroupConsumer(broker, g, t, workdir=tmp_path)
    k2 = None
    try:
        k2 = KcatGroupConsumer(broker, g, t, workdir=tmp_path)

        def two_stable_members():
            k1.check_running(), k2.check_running()
            with admin(broker.bootstrap) as a:
                d = a.describe_groups([g])[g]
            return d["group_state"] == "Stable" and len(d["members"]) == 2 and d
        wait_until(two_stable_members, timeout=30, interval=0.3,
                   message="two kcat members in a Stable group")
        acked = produce_to_partitions(broker.bootstrap, t, 80, 4)
        wait_until(lambda: (k1.check_running(), k2.check_running(),
                            len(k1.lines) + len(k2.lines) >= 80)[2], timeout=30,
                   message="the two kcats to print 80 records between them")
    finally:
        rcs = [k.terminate() for k in (k1, k2) if k is not None]
    assert rcs == [0, 0], (rcs, k1.stderr(), k2.stderr() if k2 else "")
    r1, r2 = k1.rows(), k2.rows()
    p1, p2 = {p for p, *_ in r1}, {p for p, *_ in r2}
    assert p1 and p2 and not p1 & p2, (p1, p2)
    counts = collections.Counter((p, o) for p, o, *_ in r1 + r2)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:10]
    assert sorted(r1 + r2) == _as_rows(acked)
