"""The deterministic replication simulation (kafkette.broker.replication_sim) in CI: a
few hundred seeds over the real ReplicaManager / Partition / PartitionLog / Controller,
and proof that its invariant checker catches broken variants of the broker code."""
from __future__ import annotations

import os
import subprocess
import sys
import time


from kafkette.broker import partition as partition_mod
from kafkette.broker import replica_fetcher
from kafkette.broker import replication_sim as S
from kafkette.controller import controller as controller_mod

SEEDS = 300
STEPS = 1000  # events per seed before everything heals; then the convergence phase


def test_simulation_300_seeds_hold_every_invariant():
    t0 = time.perf_counter()
    events = elections = crashes = acked = truncations = isr_changes = deletes = 0
    failures = []
    for seed in range(SEEDS):
        try:
            sim = S.run_seed(seed, steps=STEPS)
        except S.InvariantViolation as exc:
            failures.append(str(exc))
            continue
        events += sim.events
        elections += sim.elections
        crashes += sim.crashes
        acked += sim.acked
        truncations += sim.truncations
        isr_changes += sim.isr_changes
        deletes += sim.deletes_done
    elapsed = time.perf_counter() - t0
    print(f"\nreplication sim: {SEEDS} seeds x {STEPS} steps (+ convergence): {events} events, "
          f"{elections} elections, {crashes} crashes, {truncations} truncations, "
          f"{isr_changes} ISR changes, {deletes} DeleteRecords, {acked} acks=all batches "
          f"acknowledged, "
          f"{len(failures)} violations, {elapsed:.1f} s")
    assert not failures, "\n".join(failures[:5]) + \
        "\nreproduce: python -m kafkette.broker.replication_sim --seed N --steps %d --trace" % STEPS
    # The runs did what they are for: leaders died, logs were truncated, ISRs moved and
    # acks=all records were acknowledged (and then checked) in every seed on average.
    assert elections >= SEEDS and crashes >= SEEDS // 3 and truncations >= SEEDS // 5
    assert isr_changes >= SEEDS and acked >= 10 * SEEDS and deletes >= SEEDS // 10


def _digest(seed: int) -> str:
    sim = S.run_seed(seed, steps=STEPS)
    assert sim.acked and any(sim.ledger.values())  # it did something
    return repr((sim.events, sim.now, sim.ledger, sim.acked_batches, sim.elections,
                 sim.truncations, sim.crashes))


def test_a_seed_replays_exactly():
    assert _digest(7) == _digest(7)


def test_a_seed_replays_exactly_in_another_process():
    """`--seed S` on the command line must replay what a test saw: nothing may depend
    on set order under string hash randomisation (PYTHONHASHSEED), addresses or time."""
    code = ("from tests.test_replication_sim import _digest; import sys; "
            "sys.stdout.write('\\n' + _digest(19))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.splitlines()[-1] == _digest(19)  # (after any log lines)


def _first_violation(seeds, steps=STEPS) -> str | None:
    for seed in seeds:
        try:
            S.run_seed(seed, steps=steps)
        except S.InvariantViolation as exc:
            return str(exc)
    return None


def test_checker_catches_a_high_watermark_over_the_largest_isr_log_end(monkeypatch):
    """Broken on purpose: the leader's high watermark is the LARGEST log end offset of
    its ISR, not the smallest, so records count as committed before the followers
    have them."""
    def max_hw(self):
        if self.role != partition_mod.LEADER:
            return False
        ends = [self.log.log_end_offset] + [
            self.followers[r].log_end_offset for r in self.maximal_isr
            if r != self.node_id and r in self.followers]
        new_hw = max(ends)
        if new_hw > self.high_watermark:
            self.high_watermark = new_hw
            return True
        return False
    monkeypatch.setattr(partition_mod.Partition, "maybe_increment_high_watermark", max_hw)
    found = _first_violation(range(100))
    assert found is not None, "a high watermark over the largest log end went unnoticed"
    assert "committed" in found, found


def test_checker_catches_an_election_of_a_replica_outside_the_isr(monkeypatch):
    """Broken on purpose: whenever the controller moves leadership it picks the first
    live replica that is NOT in the ISR (and makes it the ISR, as an unclean election
    does), so a replica that lacks committed records can lead."""
    real = controller_mod.partition_change

    def elect_outside_isr(p, *, acceptable, **kw):
        rec = real(p, acceptable=acceptable, **kw)
        if rec is None or rec.get("leader", -1) < 0:
            return rec
        isr = rec.get("isr", p.isr)
        outside = [r for r in p.replicas if acceptable(r) and r not in isr and r != p.leader]
        if outside:
            rec["leader"], rec["isr"], rec["elr"] = outside[0], [outside[0]], []
        return rec
    monkeypatch.setattr(controller_mod, "partition_change", elect_outside_isr)
    found = _first_violation(range(100))
    assert found is not None, "an election outside the ISR went unnoticed"
    assert "committed" in found, found


def test_checker_catches_a_follower_that_ignores_diverging_epoch(monkeypatch):
    """Broken on purpose: a follower told that its log diverged (KIP-279) keeps its
    tail, and fetches on from its log end: replicas disagree below the high watermark
    (the leader counts the follower's log end, which holds other records)."""
    monkeypatch.setattr(replica_fetcher, "truncate_on_divergence",
                        lambda part, epoch, end, source_id=-1: None)
    found = _first_violation(range(200))
    assert found is not None, "a follower that never truncates went unnoticed"


def test_command_line_prints_the_seed_and_a_command_to_reproduce(capsys, monkeypatch):
    # main() configures logging for the process; not for the rest of the test session.
    import kafkette.logging
    monkeypatch.setattr(kafkette.logging, "configure_logging", lambda *a, **kw: None)
    assert S.main(["--seeds", "3", "--steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "3 seeds" in out and "0 invariant violations" in out
    real = S.run_seed

    def broken(seed, **kw):
        sim = real(seed, **kw)
        sim.fail("planted")
    monkeypatch.setattr(S, "run_seed", broken)
    assert S.main(["--seed", "5", "--steps", "300"]) == 1
    err = capsys.readouterr().err
    assert "seed 5" in err and "planted" in err
    assert "python -m kafkette.broker.replication_sim --seed 5 --steps 300" in err


def test_checker_catches_delete_records_answered_before_the_followers_moved(monkeypatch):
    """Broken on purpose: the low watermark is the leader's log start alone, so
    DeleteRecords is acknowledged before the followers have moved theirs (kafkette
    before DelayedDeleteRecords)."""
    from kafkette.broker.replica_manager import ReplicaManager
    monkeypatch.setattr(ReplicaManager, "low_watermark", lambda self, part: part.log_start_offset)
    found = _first_violation(range(300))
    assert found is not None and "DeleteRecords" in found, found
