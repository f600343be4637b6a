"""A short fixed-seed replication fault campaign (kafkette.chaos; `make chaos` runs a
longer one): a 3-node cluster of real processes, a replication-factor-3 topic with
min.insync.replicas=2, idempotent acks=all confluent-kafka producers and assign-mode
consumers, and one fault per round (kill -9 of a partition leader, SIGSTOP past
replica.lag.time.max.ms, kill -9 of the active controller, a network partition between
brokers when network namespaces can be made), then healing, a drain of every partition
and the checker. It must find no lost, duplicated or divergent record.

Skipped until replication lands: with replication factor 1 underneath, kill -9 of a
leader moves leadership to a replica with an empty log, and the campaign reports the
lost writes (which shows that the checker catches them).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.skip(reason="enabled when replication lands (issue 10)"),
              pytest.mark.timeout(180)]

SEED = 20240607
ROUNDS = 4   # one of each fault kind (they come in a shuffled cycle)


def test_a_short_fault_campaign_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "chaos.json"
    cmd = [sys.executable, "-m", "kafkette.chaos", "--seed", str(SEED), "--rounds",
           str(ROUNDS), "--brokers", "3", "--partitions", "3", "--rate", "40",
           "--isr-timeout", "10", "--max-seconds", "60", "--keep", str(tmp_path / "run"),
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170,
                          env=dict(os.environ, KAFKETTE_LOG_FORMAT="json"))
    report = proc.stdout + proc.stderr[-4000:]
    assert out.exists(), f"no summary (exit code {proc.returncode}):\n{report}"
    summary = json.loads(out.read_text())
    print(proc.stdout)
    assert summary["violations"] == {}, report
    assert proc.returncode == 0, report
    assert summary["rounds"] == ROUNDS, report
    assert sum(summary["faults"].values()) == ROUNDS
    kinds = {"kill", "pause", "kill_controller"} | (
        {"partition"} if summary["network"] == "netns" else set())
    assert set(summary["faults"]) == kinds, summary["faults"]
    assert summary["acknowledged"] > 500, summary
    assert summary["lost"] == summary["duplicated"] == 0
    assert summary["drained"] >= summary["acknowledged"]
