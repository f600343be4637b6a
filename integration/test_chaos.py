"""A short fixed-seed replication fault campaign (kafkette.chaos; `make chaos` runs a
longer one): a 3-node cluster of real processes, a replication-factor-3 topic with
min.insync.replicas=2, idempotent acks=all confluent-kafka producers and assign-mode
consumers, and one fault per round (kill -9 of a partition leader, SIGSTOP past
replica.lag.time.max.ms, kill -9 of the active controller, a network partition between
brokers when network namespaces can be made), then healing, a drain of every partition
and the checker. It must find no lost, duplicated or divergent record.

Beside them, two transactional producers (a transactional.id each, on their own topic)
commit and abort (on purpose, seeded) transactions over several partitions while the
faults hit, a read_committed consumer follows, and after healing a read_committed and a
read_uncommitted drain feed kafkette.chaos.txn_checker: no committed record lost, no
aborted record read, no transaction torn, every LSO back at its high watermark.

Before replication (replication factor 1 underneath, kill -9 of a leader moving
leadership to a replica with an empty log) the same run reported thousands of lost
writes: the checker catches them (tests/test_chaos_checker.py shows each kind).
"""
from __future__ import annotations

import pytest

from itutil import chaos_fault_kinds, run_chaos

pytestmark = pytest.mark.timeout(180)

SEED = 20240607
ROUNDS = 4   # one of each fault kind (they come in a shuffled cycle)


def test_a_short_fault_campaign_loses_and_duplicates_nothing(tmp_path):
    summary, report = run_chaos(tmp_path, [
        "--seed", str(SEED), "--rounds", str(ROUNDS), "--brokers", "3", "--partitions", "3",
        "--rate", "40", "--isr-timeout", "10", "--max-seconds", "60",
        "--transactional-producers", "2"], timeout=170)
    assert summary["violations"] == {}, report
    assert summary["exit_code"] == 0, report
    assert summary["rounds"] == ROUNDS, report
    assert sum(summary["faults"].values()) == ROUNDS
    assert set(summary["faults"]) == chaos_fault_kinds(summary), summary["faults"]
    assert summary["acknowledged"] > 500, summary
    assert summary["lost"] == summary["duplicated"] == 0
    assert summary["drained"] >= summary["acknowledged"]
    assert summary["isr_full_at_end"], summary["notes"]
    t = summary["transactions"]
    # Enough of each outcome that the checks are not vacuous: committed records read,
    # aborted ones really written (the read_uncommitted drain has them) and not read.
    assert t["committed"] >= 30 and t["aborted"] >= 5, t
    assert t["drained_uncommitted"] > t["drained"] > 0, t
    assert t["lost"] == t["aborted_read"] == t["duplicated"] == t["torn"] == 0, t
    assert t["lso_seconds"] is not None, t
