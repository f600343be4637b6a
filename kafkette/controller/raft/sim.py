"""Deterministic simulation of the Raft core (kafkette.controller.raft.core).

One seed fixes everything: the number of voters (3 or 5), the network's drops, delays
(and so reorderings), duplicates and partitions, node crashes and restarts, client
proposals and each node's election-timeout randomness. The simulation is a single
event heap over a virtual millisecond clock; nothing reads the wall clock, so a seed
replays exactly:

    python -m kafkette.controller.raft.sim --seeds 10000            # seeds 0..9999
    python -m kafkette.controller.raft.sim --seed 1234 --trace      # one seed, every event

A crash throws the RaftNode away and calls MemoryLog.crash(): entries appended but not
yet flushed are lost (a flush is an event of its own, scheduled a little after the
append, so crashes land between the two); the quorum state, truncations and snapshots
are written durably and survive. The state machine (a list of applied values) is
rebuilt from the snapshot and the log, as a real controller would.

Invariants, checked after every event:
1. at most one leader per epoch (over the whole run, across restarts);
2. committed entries are never lost or changed: whenever a node's high watermark
   passes an entry, that entry must equal the one recorded when any node first saw
   it committed; a new leader's log must hold every committed entry above its log start
   (Raft's leader completeness);
3. every node applies exactly the committed sequence, in order, each entry once
   (control entries skipped), and a loaded snapshot equals the committed prefix;
4. a node's high watermark never goes backwards within one process lifetime. It is not
   persisted: after a restart it starts at the node's snapshot end and is relearned
   from the leader (so across restarts it may be lower for a while, but committed
   entries themselves never change: invariant 2).
5. observers (non-voting replicas, KRaft's broker-only nodes: 0-2 per seed, ids 101..)
   never send Vote, BeginQuorumEpoch or EndQuorumEpoch, are never sent anything but
   fetch answers, and never take a Prospective, Candidate or Leader role; invariants
   2-4 hold for them as for voters.
Observers have their own random stream (their network, flushes, crashes and
isolation), and `steps` counts voters' events only, so that adding observers draws
nothing from the voters' stream (a seed's voter trajectory still shifts a little: a
leader that answers observers ticks at other times).
Liveness: after `steps` events the network heals (no drops, partitions or duplicates;
crashed nodes restart); within `heal_ms` of virtual time a leader must be ready and a
fresh proposal must be applied on every node, observers included.
"""
from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from dataclasses import dataclass, field

from kafkette.controller.raft import messages as m
from kafkette.controller.raft.core import (
    Appended,
    Apply,
    HighWatermark,
    LeaderChanged,
    Candidate,
    Leader,
    LoadSnapshot,
    Prospective,
    RaftConfig,
    RaftNode,
    Send,
    TakeSnapshot,
)
from kafkette.controller.raft.storage import MemoryLog


class InvariantViolation(AssertionError):
    pass


def sim_config() -> RaftConfig:
    # Short timeouts in virtual ms: the ratios matter, not the values, and fewer
    # events per election means more seeds per second.
    return RaftConfig(election_timeout_ms=150, fetch_timeout_ms=300, election_backoff_max_ms=100,
                      fetch_max_wait_ms=60, request_timeout_ms=120, begin_epoch_retry_ms=40,
                      max_fetch_bytes=200, snapshot_chunk_bytes=64, max_bytes_between_snapshots=300)


@dataclass
class SimNode:
    node_id: int
    log: MemoryLog = field(default_factory=MemoryLog)
    raft: RaftNode | None = None
    incarnation: int = 0
    hw: int = 0
    applied: list = field(default_factory=list)      # (offset, values) of applied entries
    applied_end: int = 0
    last_applied_offset: int = -1
    tick_at: int | None = None


class Simulation:
    def __init__(self, seed: int, *, voters: int | None = None, steps: int = 400, heal_ms: int = 6000,
                 node_cls=RaftNode, trace: bool = False, config: RaftConfig | None = None,
                 observers: int | None = None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.n = voters if voters is not None else (3 if seed % 2 == 0 else 5)
        self.steps = steps
        self.heal_ms = heal_ms
        self.node_cls = node_cls
        self.trace = trace
        self.config = config or sim_config()
        self.now = 0
        self._seq = 0
        self.heap: list = []
        self.ids = list(range(1, self.n + 1))
        self.nodes = {i: SimNode(i) for i in self.ids}
        # Observers draw from their own stream: the voters' events stay those of the seed.
        self.orng = random.Random(seed * 7919 + 17)
        n_obs = observers if observers is not None else self.orng.choice([0, 1, 2])
        self.obs_ids = [101 + k for k in range(n_obs)]
        for i in self.obs_ids:
            self.nodes[i] = SimNode(i)
        self.obs_blocked: set[int] = set()
        # network
        self.drop = self.rng.choice([0.0, 0.02, 0.1, 0.25])
        self.dup = self.rng.choice([0.0, 0.05, 0.15])
        self.max_delay = self.rng.choice([2, 10, 40])
        # How long an append may stay unflushed (a crash in that window loses it).
        self.flush_delay = self.rng.choice([1, 8, 60])
        self.blocked: set[tuple[int, int]] = set()
        # what the invariants remember
        self.leaders: dict[int, int] = {}                 # epoch -> leader id
        self.committed: dict[int, tuple] = {}             # offset -> (epoch, values, control, end)
        self.committed_end = 0
        self.proposed = 0
        self.events = 0
        self.voter_events = 0     # `steps` counts these: observers do not move the heal
        self._in_observer_event = False
        self.elections = 0
        self.crashes = 0

    # --- plumbing -------------------------------------------------------------------------------
    def _push(self, t: int, kind: str, *data) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, data))

    def _log(self, *args) -> None:
        if self.trace:
            print(f"[{self.now:7d}]", *args)

    def fail(self, what: str) -> None:
        raise InvariantViolation(f"seed {self.seed}: {what} (t={self.now})")

    def _start_node(self, sn: SimNode) -> None:
        sn.incarnation += 1
        sn.raft = self.node_cls(sn.node_id, self.ids, sn.log, self.config,
                                random.Random(self.seed * 1000 + sn.node_id * 97 + sn.incarnation))
        sn.hw = 0
        sn.applied = []
        sn.applied_end = 0
        sn.last_applied_offset = -1
        sn.tick_at = None
        self._handle(sn, sn.raft.start(self.now))

    def _crash(self, sn: SimNode) -> None:
        self._log(f"CRASH node {sn.node_id} (unflushed entries lost: "
                  f"{sn.log.log_end_offset - sn.log.flushed_end_offset} offsets)")
        self.crashes += 1
        sn.raft = None
        sn.log.crash()

    def _schedule_tick(self, sn: SimNode) -> None:
        if sn.raft is None:
            return
        d = max(sn.raft.next_deadline(), self.now + 1)
        if sn.tick_at is None or d < sn.tick_at or sn.tick_at <= self.now:
            sn.tick_at = d
            self._push(d, "tick", sn.node_id, sn.incarnation, d)

    # --- actions ------------------------------------------------------------------------------
    def _handle(self, sn: SimNode, actions: list) -> None:
        raft = sn.raft
        for a in actions:
            if isinstance(a, Send):
                self._send(sn.node_id, a.dst, a.message)
            elif isinstance(a, HighWatermark):
                self._on_hw(sn, a.high_watermark)
            elif isinstance(a, Apply):
                self._on_apply(sn, a.entry)
            elif isinstance(a, LoadSnapshot):
                self._on_load_snapshot(sn, a.snapshot_id, a.data)
            elif isinstance(a, LeaderChanged):
                self._log(f"node {sn.node_id}: leader {a.leader_id} epoch {a.epoch} ({raft.role.name})")
                if a.leader_id == sn.node_id:
                    self._on_new_leader(sn, a.epoch)
            elif isinstance(a, TakeSnapshot):
                data = json.dumps([[o, [v.decode() for v in vs]] for o, vs in sn.applied]).encode()
                self._handle(sn, raft.snapshot(sn.last_applied_offset, data, self.now))
            elif isinstance(a, Appended):
                pass
        if raft is not None and raft.needs_flush:
            if sn.node_id in self.obs_ids:
                self._push(self.now + self.orng.randrange(self.flush_delay), "flush", sn.node_id, sn.incarnation)
            elif not self._in_observer_event:
                # (An observer's fetch never makes a voter append: its flush, if one is
                # pending, was scheduled by the voters' event that appended.)
                self._push(self.now + self.rng.randrange(self.flush_delay), "flush", sn.node_id, sn.incarnation)
        self._schedule_tick(sn)

    def _send(self, src: int, dst: int, msg) -> None:
        rng = self.rng
        if src in self.obs_ids or dst in self.obs_ids:
            if src in self.obs_ids and not isinstance(msg, (m.FetchRequest, m.FetchSnapshotRequest)):
                self.fail(f"observer {src} sent {msg}")
            if dst in self.obs_ids and not isinstance(msg, (m.FetchResponse, m.FetchSnapshotResponse)):
                self.fail(f"node {src} sent {msg} to observer {dst}")
            if src in self.obs_blocked or dst in self.obs_blocked:
                return
            rng = self.orng
        if (src, dst) in self.blocked or rng.random() < self.drop:
            return
        copies = 2 if rng.random() < self.dup else 1
        for _ in range(copies):
            self._push(self.now + 1 + rng.randrange(self.max_delay), "deliver", src, dst, msg)

    # --- invariants ---------------------------------------------------------------------------
    def _check_leader(self, sn: SimNode) -> None:
        r = sn.raft.role if sn.raft else None
        if sn.node_id in self.obs_ids and isinstance(r, (Leader, Candidate, Prospective)):
            self.fail(f"observer {sn.node_id} became {r.name} in epoch {r.epoch}")
        if isinstance(r, Leader):
            other = self.leaders.setdefault(r.epoch, sn.node_id)
            if other != sn.node_id:
                self.fail(f"two leaders in epoch {r.epoch}: {other} and {sn.node_id}")

    def _on_new_leader(self, sn: SimNode, epoch: int) -> None:
        self.elections += 1
        other = self.leaders.setdefault(epoch, sn.node_id)
        if other != sn.node_id:
            self.fail(f"two leaders in epoch {epoch}: {other} and {sn.node_id}")
        log = sn.log
        if self.committed_end > log.log_end_offset:
            self.fail(f"new leader {sn.node_id} (epoch {epoch}) log ends at {log.log_end_offset}, "
                      f"below the committed end {self.committed_end}")
        for off, (ep, vals, ctl, end) in self.committed.items():
            if off < log.log_start_offset:
                continue
            got = log.read(off, 1 << 30, 1)
            if not got or (got[0].epoch, got[0].values, got[0].control) != (ep, vals, ctl):
                self.fail(f"new leader {sn.node_id} (epoch {epoch}) lacks committed entry at {off}: "
                          f"has {got[:1]}, committed {(ep, vals, ctl)}")

    def _on_hw(self, sn: SimNode, hw: int) -> None:
        if hw <= sn.hw:
            self.fail(f"node {sn.node_id} high watermark went from {sn.hw} to {hw}")
        log = sn.log
        off = max(sn.hw, log.log_start_offset)
        sn.hw = hw
        while off < hw:
            got = log.read(off, 1 << 30, 1)
            if not got:
                self.fail(f"node {sn.node_id}: high watermark {hw} but no entry at {off}")
            e = got[0]
            key = (e.epoch, e.values, e.control, e.end_offset)
            prev = self.committed.get(off)
            if prev is None:
                if off > self.committed_end:
                    self.fail(f"node {sn.node_id} commits {off} leaving a gap after {self.committed_end}")
                self.committed[off] = key
                self.committed_end = max(self.committed_end, e.end_offset)
            elif prev != key:
                self.fail(f"committed entry at {off} changed: was {prev}, node {sn.node_id} has {key}")
            off = e.end_offset

    def _on_apply(self, sn: SimNode, e) -> None:
        if e.offset < sn.applied_end:
            self.fail(f"node {sn.node_id} applied {e.offset} again (applied up to {sn.applied_end})")
        off = sn.applied_end
        while off < e.offset:
            c = self.committed.get(off)
            if c is None or not c[2]:
                self.fail(f"node {sn.node_id} skipped committed entry at {off} applying {e.offset}")
            off = c[3]
        c = self.committed.get(e.offset)
        if c is None or c[:3] != (e.epoch, e.values, e.control):
            self.fail(f"node {sn.node_id} applied {e} which is not the committed entry {c}")
        sn.applied.append((e.offset, e.values))
        sn.applied_end = e.end_offset
        sn.last_applied_offset = e.last_offset

    def _on_load_snapshot(self, sn: SimNode, sid: m.SnapshotId, data: bytes) -> None:
        if sid.end_offset < sn.applied_end:
            self.fail(f"node {sn.node_id} loaded snapshot {sid} below its applied end {sn.applied_end}")
        want = [(o, c[1]) for o, c in sorted(self.committed.items()) if o < sid.end_offset and not c[2]]
        got = [(o, tuple(v.encode() for v in vs)) for o, vs in json.loads(data)] if data else []
        if got != want:
            self.fail(f"node {sn.node_id} snapshot {sid} differs from the committed prefix: {got[-3:]} vs {want[-3:]}")
        sn.applied = [(o, vs) for o, vs in got]
        sn.applied_end = sid.end_offset
        sn.last_applied_offset = sid.end_offset - 1 if got else -1

    # --- the run ------------------------------------------------------------------------------
    def _fault(self) -> None:
        rng = self.rng
        up = [sn for sn in self.nodes.values() if sn.raft is not None and sn.node_id in self.ids]
        kind = rng.random()
        if kind < 0.35:
            # Partition: isolate one node, or split into two sides.
            if rng.random() < 0.5:
                side = {rng.choice(self.ids)}
            else:
                side = set(rng.sample(self.ids, rng.randrange(1, self.n)))
            for a in self.ids:
                for b in self.ids:
                    if (a in side) != (b in side):
                        self.blocked.add((a, b))
            self._log(f"PARTITION {sorted(side)} | rest")
            self._push(self.now + rng.randrange(100, 1500), "heal")
        elif kind < 0.55 and up:
            # One-way loss: a link that drops in one direction only.
            a, b = rng.sample(self.ids, 2)
            self.blocked.add((a, b))
            self._log(f"ONE-WAY {a}->{b} blocked")
            self._push(self.now + rng.randrange(100, 800), "heal")
        elif up:
            # Crash; the leader more often than not, as that is where bugs hide (lost
            # unflushed entries, re-elections with stale logs).
            leaders = [x for x in up if x.raft.is_leader]
            sn = rng.choice(leaders) if leaders and rng.random() < 0.6 else rng.choice(up)
            self._crash(sn)
            self._push(self.now + rng.randrange(10, 1200), "restart", sn.node_id)

    def run(self) -> "Simulation":
        rng = self.rng
        for sn in self.nodes.values():
            self._start_node(sn)
        self._push(rng.randrange(50, 400), "fault")
        self._push(rng.randrange(10, 100), "propose")
        if self.obs_ids:
            self._push(self.orng.randrange(50, 600), "obs_fault")
        healed_at = None
        final_value = None
        final_at = 0
        while self.heap:
            t, _, kind, data = heapq.heappop(self.heap)
            self.now = t
            self.events += 1
            self._in_observer_event = self._observer_event(kind, data)
            if not self._in_observer_event:
                self.voter_events += 1
            if healed_at is None and self.voter_events >= self.steps:
                healed_at = self.now
                self._heal_all()
                final_value = None
            if healed_at is not None:
                # The client proposes once a leader is ready, and again (as a real client
                # retries) every 500 ms until the value is committed.
                if (final_value is None or self.now >= final_at + 500) and not self._committed_value(final_value):
                    ready = [sn for sn in self.nodes.values() if sn.raft is not None and sn.raft.leader_ready]
                    if ready:
                        final_value = f"{self.seed}-final".encode()
                        final_at = self.now
                        sn = self.rng.choice(ready)
                        self._log(f"PROPOSE {final_value!r} to {sn.node_id}")
                        self._handle(sn, sn.raft.propose([final_value], self.now))
                if final_value is not None and all(
                        any(final_value in vs for _, vs in sn.applied[-3:]) for sn in self.nodes.values()):
                    return self
                if self.now - healed_at > self.heal_ms:
                    states = {i: (sn.raft.role.name, sn.raft.epoch, sn.hw, sn.log.log_end_offset) if sn.raft else None
                              for i, sn in self.nodes.items()}
                    self.fail(f"no progress {self.heal_ms} ms after the network healed: {states}")
            self._event(kind, data, healed=healed_at is not None)
        self.fail("ran out of events")
        return self

    def _observer_event(self, kind: str, data: tuple) -> bool:
        if kind in ("obs_fault", "obs_heal"):
            return True
        if kind == "deliver":
            return data[0] in self.obs_ids or data[1] in self.obs_ids
        if kind in ("tick", "flush", "restart"):
            return data[0] in self.obs_ids
        return False

    def _committed_value(self, value: bytes | None) -> bool:
        if value is None:
            return False
        return any(value in c[1] for c in self.committed.values())

    def _heal_all(self) -> None:
        self._log("HEAL ALL")
        self.blocked.clear()
        self.obs_blocked.clear()
        self.drop = 0.0
        self.dup = 0.0
        for sn in self.nodes.values():
            if sn.raft is None:
                self._start_node(sn)

    def _propose(self, value: bytes, force: bool = False) -> None:
        leaders = [sn for sn in self.nodes.values() if sn.raft is not None and sn.raft.is_leader]
        if not leaders:
            if force:
                self._push(self.now + 20, "propose_final", value)
            return
        sn = self.rng.choice(leaders)
        self._log(f"PROPOSE {value!r} to {sn.node_id}")
        self._handle(sn, sn.raft.propose([value], self.now))
        self._check_leader(sn)

    def _event(self, kind: str, data: tuple, healed: bool) -> None:
        rng = self.rng
        if kind == "deliver":
            src, dst, msg = data
            sn = self.nodes[dst]
            if sn.raft is None or (src, dst) in self.blocked:
                return
            self._log(f"{src}->{dst} {msg}")
            self._handle(sn, sn.raft.receive(src, msg, self.now))
            self._check_leader(sn)
        elif kind == "tick":
            node_id, inc, at = data
            sn = self.nodes[node_id]
            if sn.raft is None or inc != sn.incarnation or sn.tick_at != at:
                return
            sn.tick_at = None
            self._handle(sn, sn.raft.tick(self.now))
            self._check_leader(sn)
        elif kind == "flush":
            node_id, inc = data
            sn = self.nodes[node_id]
            if sn.raft is None or inc != sn.incarnation:
                return
            self._handle(sn, sn.raft.flush(self.now))
            self._check_leader(sn)
        elif kind == "propose":
            self.proposed += 1
            n = rng.choice([1, 1, 1, 2, 3])
            self._propose_many([f"{self.seed}-{self.proposed}-{k}".encode() for k in range(n)])
            if not healed:
                self._push(self.now + rng.randrange(5, 120), "propose")
        elif kind == "propose_final":
            self._propose(data[0], force=True)
        elif kind == "fault":
            if not healed:
                self._fault()
                self._push(self.now + rng.randrange(50, 800), "fault")
        elif kind == "heal":
            if not healed:
                self.blocked.clear()
        elif kind == "obs_fault":
            if not healed:
                orng = self.orng
                sn = self.nodes[orng.choice(self.obs_ids)]
                if orng.random() < 0.5 and sn.raft is not None:
                    self._crash(sn)
                    self.crashes -= 1   # the figures count voter crashes
                    self._push(self.now + orng.randrange(10, 800), "restart", sn.node_id)
                else:
                    self._log(f"ISOLATE observer {sn.node_id}")
                    self.obs_blocked.add(sn.node_id)
                    self._push(self.now + orng.randrange(100, 1500), "obs_heal", sn.node_id)
                self._push(self.now + orng.randrange(100, 1000), "obs_fault")
        elif kind == "obs_heal":
            self.obs_blocked.discard(data[0])
        elif kind == "crash":
            sn = self.nodes[data[0]]
            if not healed and sn.raft is not None and sn.incarnation == data[1]:
                self._crash(sn)
                self._push(self.now + rng.randrange(10, 400), "restart", sn.node_id)
        elif kind == "restart":
            sn = self.nodes[data[0]]
            if sn.raft is None:
                self._log(f"RESTART node {sn.node_id}")
                self._start_node(sn)

    def _propose_many(self, values: list[bytes]) -> None:
        leaders = [sn for sn in self.nodes.values() if sn.raft is not None and sn.raft.is_leader]
        if leaders:
            sn = self.rng.choice(leaders)
            self._handle(sn, sn.raft.propose(values, self.now))
            self._check_leader(sn)
            if self.rng.random() < 0.05:
                # Crash the leader soon after a proposal, often before its flush: the
                # window where durability bugs live.
                self._push(self.now + self.rng.randrange(self.flush_delay + 3), "crash", sn.node_id,
                           sn.incarnation)


def run_seed(seed: int, *, steps: int = 400, voters: int | None = None, node_cls=RaftNode,
             trace: bool = False, observers: int | None = None) -> Simulation:
    return Simulation(seed, voters=voters, steps=steps, node_cls=node_cls, trace=trace,
                      observers=observers).run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kafkette.controller.raft.sim",
                                description="Deterministic simulation of the Raft controller quorum.")
    p.add_argument("--seeds", type=int, default=1000, help="number of seeds to run")
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--seed", type=int, help="run this one seed")
    p.add_argument("--steps", type=int, default=1000, help="events per seed before the network heals")
    p.add_argument("--voters", type=int, choices=(3, 5), help="default: 3 for even seeds, 5 for odd")
    p.add_argument("--observers", type=int, choices=(0, 1, 2, 3),
                   help="non-voting replicas per seed (default: 0-2, chosen by the seed)")
    p.add_argument("--trace", action="store_true", help="print every event")
    a = p.parse_args(argv)
    seeds = [a.seed] if a.seed is not None else range(a.start, a.start + a.seeds)
    t0 = time.perf_counter()
    failures = 0
    events = elections = crashes = commits = 0
    for s in seeds:
        try:
            sim = run_seed(s, steps=a.steps, voters=a.voters, trace=a.trace, observers=a.observers)
        except Exception as exc:  # an invariant, or the core itself blowing up
            failures += 1
            if not isinstance(exc, InvariantViolation):
                exc = f"seed {s}: {type(exc).__name__}: {exc}"
            extra = f" --voters {a.voters}" if a.voters else ""
            extra += f" --observers {a.observers}" if a.observers is not None else ""
            print(f"FAIL {exc}\n  reproduce: python -m kafkette.controller.raft.sim --seed {s} "
                  f"--steps {a.steps}{extra} --trace", file=sys.stderr)
            continue
        events += sim.events
        elections += sim.elections
        crashes += sim.crashes
        commits += sim.committed_end
    dt = time.perf_counter() - t0
    print(f"{len(seeds)} seeds, {a.steps} steps each before healing, {events} events in total, "
          f"{elections} elections, {crashes} crashes, {commits} committed offsets; "
          f"{failures} invariant violations; {dt:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
