"""A fixed-seed protocol fuzz run (kafkette.fuzz; `make fuzz` runs 10^6 frames): 10^4
structure-aware and capture-mutated frames against one combined broker + controller
node, over both its client and its controller listener, while a healthy client
produces and reads back its records. No finding (the node stays up, under the RSS
bound, answers or closes every frame, logs no error; the healthy records are intact).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from itutil import BROKER_PYTHON

pytestmark = pytest.mark.timeout(180)

SEED = 20261207
FRAMES = 10_000


def test_a_fixed_seed_fuzz_run_finds_nothing(tmp_path):
    out = tmp_path / "fuzz.json"
    cmd = [BROKER_PYTHON, "-m", "kafkette.fuzz", "--frames", str(FRAMES), "--seed", str(SEED),
           "--log-dir", str(tmp_path / "logs"), "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170,
                          env=dict(os.environ, KAFKETTE_LOG_FORMAT="json"))
    report = f"exit code {proc.returncode}\n{proc.stdout[-8000:]}{proc.stderr[-4000:]}"
    print(proc.stdout)
    assert out.exists(), report
    summary = json.loads(out.read_text())
    assert summary["findings"] == 0, report
    assert proc.returncode == 0, report
    assert summary["frames"] == FRAMES, summary
    # Both kinds of outcome happen: frames answered, and bad ones closed.
    assert summary["answered"] > 100 and summary["closed"] > 100, summary
    assert summary["healthy_records"] > 0, summary
    assert summary["max_rss_mb"] < 300, summary
