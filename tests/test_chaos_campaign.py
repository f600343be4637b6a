"""The campaign's seeded choices and its command line (no cluster: kafkette.chaos's
real-process run is integration/test_chaos.py)."""
from __future__ import annotations

import random
import shlex

import pytest

pytest.importorskip("confluent_kafka")

from kafkette.chaos.__main__ import options_from_args, parser  # noqa: E402
from kafkette.chaos.campaign import FAULT_KINDS, FaultPlanner, Options  # noqa: E402


def plans(seed: int, n: int, kinds=FAULT_KINDS):
    planner = FaultPlanner(kinds, 3, 3000, random.Random(seed))
    return [planner.next() for _ in range(n)]


def test_a_seed_fixes_every_choice_and_another_seed_changes_them():
    assert plans(7, 12) == plans(7, 12)
    assert plans(7, 12) != plans(8, 12)


def test_every_kind_comes_once_per_cycle():
    for seed in range(20):
        ps = plans(seed, 3 * len(FAULT_KINDS))
        for c in range(3):
            cycle = ps[c * len(FAULT_KINDS):(c + 1) * len(FAULT_KINDS)]
            assert sorted(p.kind for p in cycle) == sorted(FAULT_KINDS)


def test_pauses_and_partitions_outlast_the_replica_lag_time():
    for p in plans(3, 200):
        assert 0 <= p.partition < 3 and 0 <= p.pick < 1
        if p.kind in ("pause", "partition"):
            assert p.seconds > 3.0, p


def test_every_kind_draws_alike_so_the_kinds_do_not_shift_the_other_choices():
    # Two campaigns with different kinds (as many of them) make the same choices of
    # partition, pick, isolation and settle time round by round.
    a = plans(5, 8, ("kill", "pause"))
    b = plans(5, 8, ("kill_controller", "partition"))
    assert [p.kind for p in a] != [p.kind for p in b]
    assert [(p.partition, p.pick, p.isolate, p.settle) for p in a] == \
        [(p.partition, p.pick, p.isolate, p.settle) for p in b]


def test_the_reproduce_line_parses_back_to_the_same_options(monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    o = Options(seed=42, rounds=7, partitions=5, faults=("kill", "partition"), rate=12.5,
                network="netns", sets={"log.segment.bytes": "1048576"},
                transactional_producers=2, txn_rate=2.5, txn_abort_ratio=0.4,
                transaction_timeout_ms=20000, lso_timeout=12.0)
    argv = shlex.split(o.command_line())
    assert argv[1:3] == ["-m", "kafkette.chaos"]
    back = options_from_args(parser().parse_args(argv[3:]))
    assert back == o
    assert "--transactional-producers 2" in o.command_line()
    assert "--transactional-producers" not in Options(seed=1).command_line()


def test_the_reproduce_line_names_the_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/some/tree")
    assert Options(seed=1).command_line().startswith("PYTHONPATH=/some/tree ")


def test_an_unknown_fault_kind_is_refused():
    from kafkette.chaos.campaign import Campaign
    with pytest.raises(ValueError, match="unknown fault kind 'flood'"):
        Campaign(Options(faults=("kill", "flood")))
