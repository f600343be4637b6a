"""The two-minute soak (`make soak` runs an hour): one broker process under three
idempotent producers (a plain, a short-retention and a compacted topic), a consumer
group whose members leave and join every 10-15 s, and an admin loop; then the data
checks and the resource checks of kafkette.soak.

Fitted to two minutes: samples every 2 s, the first 30 s are warm-up, and the windowed
growth bounds (RSS: max(30 MB, 25 %); fds: +20; threads: +5) can only catch a fast
leak in 90 s of load. What is exact whatever the length is the idle check: once every
client has gone, the broker has exactly the sockets and other fds it had before the
first client, and no fd open on a deleted segment file (retention and the cleaner
delete segments all through the run).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from itutil import BROKER_PYTHON

pytestmark = pytest.mark.timeout(300)

DURATION = 120


def test_a_two_minute_soak_loses_nothing_and_stays_flat(tmp_path):
    out = tmp_path / "soak"
    cmd = [BROKER_PYTHON, "-m", "kafkette.soak", "--duration", str(DURATION),
           "--sample-interval", "2", "--warmup", "30", "--churn-min", "10",
           "--churn-max", "15", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=280,
                          env=dict(os.environ, KAFKETTE_LOG_FORMAT="json"))
    report = f"exit code {proc.returncode}\n{proc.stdout}{proc.stderr[-4000:]}"
    print(proc.stdout)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == [], report
    assert proc.returncode == 0, report
    # Not vacuous: every part of the load ran, and retention and the cleaner did work.
    for topic, p in summary["produced"].items():
        assert p["acknowledged"] == p["sent"] > 3000, (topic, p)
    keep = summary["keep"]
    assert keep["lost"] == keep["duplicated"] == 0
    assert keep["drained"] == keep["acknowledged"]
    assert summary["retained"]["deleted_by_retention"] > 0
    assert summary["compact"]["compacted_away"] > 0
    assert summary["compact"]["mismatches"] == 0 and summary["compact"]["keys_checked"] > 0
    assert summary["group"]["members"] >= 8, summary["group"]   # 2 + one per churn
    assert summary["group"]["gaps"] == 0
    assert summary["admin"]["errors"] == {} and summary["admin"]["cycles"] >= 5
    assert {f["name"] for f in summary["flatness"]} == {"rss_mb", "fds", "threads"}
    assert all(f["ok"] for f in summary["flatness"]), summary["flatness"]
    assert summary["fds_idle_after"]["deleted"] == 0
    assert summary["fds_idle_after"]["sockets"] == summary["fds_before_load"]["sockets"]
    lines = (out / "samples.csv").read_text().splitlines()
    assert len(lines) > DURATION / 2 * 0.8, "a sample every 2 s"
