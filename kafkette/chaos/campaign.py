"""One fault campaign: start a cluster of real processes, run the workload, inject one
fault per round (chosen by ``random.Random(seed)``), heal, drain, stop, check.

The seed fixes every choice the campaign makes: the kind of each round's fault, which
partition's leader it aims at, the other side of a network partition, every duration,
the producers' keys, the transactional producers' transactions (size, partitions,
which ones abort on purpose). What it cannot fix is the cluster's own timing (which broker wins
an election, where a batch boundary falls), so a failing seed reproduces the same
sequence of faults, not the same interleaving; run it a few times.
"""
from __future__ import annotations

import os
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from kafkette.chaos import checker, netns, replica_logs, txn_checker, workload
from kafkette.logging import get_logger

log = get_logger("kafkette.chaos")

FAULT_KINDS = ("kill", "pause", "kill_controller", "partition")
TOPIC = "chaos"
TXN_TOPIC = "chaos-txn"    # the transactional workload's own topic (--transactional-producers)

#: Broker settings the campaign asks for that a broker may not know yet (replication
#: is landing): a node refusing one of them at start is retried without it.
OPTIONAL_SETTINGS = ("replica.lag.time.max.ms",)


@dataclass
class Options:
    seed: int = 1
    rounds: int = 10
    brokers: int = 3
    partitions: int = 3
    replication_factor: int = 3
    min_insync_replicas: int = 2
    producers: int = 3
    consumers: int = 2
    keys: int = 100
    rate: float = 50.0                       # messages per second per producer
    faults: tuple[str, ...] = FAULT_KINDS
    network: str = "auto"                     # auto | netns | loopback
    replica_lag_time_max_ms: int = 3000
    message_timeout_ms: int = 15000
    max_seconds: float = 900.0                # bound on the fault phase
    recovery_timeout: float = 30.0            # per heal: nodes listed, leaders elected
    isr_timeout: float = 15.0                 # at the end: every replica back in the ISR
    drain_timeout: float = 60.0
    #: The transactional workload (txn_workload): producers with a transactional.id
    #: each on their own topic, a read_committed consumer, the checks of txn_checker.
    transactional_producers: int = 0
    txn_rate: float = 4.0                     # transactions per second per producer
    txn_abort_ratio: float = 0.25             # transactions aborted on purpose
    transaction_timeout_ms: int = 30000
    lso_timeout: float = 30.0                 # at the end: every LSO up to its high watermark
    sets: dict[str, str] = field(default_factory=dict)
    keep: str | None = None                   # keep data dirs and node logs here
    json: str | None = None

    def command_line(self) -> str:
        """The command that runs this campaign again (every option that differs from
        its default, plus the seed and rounds)."""
        default = Options()
        env = os.environ.get("PYTHONPATH")
        args = ([f"PYTHONPATH={env}"] if env else []) + [sys.executable, "-m", "kafkette.chaos"]
        for f in fields(self):
            value, base = getattr(self, f.name), getattr(default, f.name)
            if f.name in ("json", "keep"):
                continue
            if f.name not in ("seed", "rounds", "brokers") and value == base:
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "faults":
                args += [flag, ",".join(value)]
            elif f.name == "sets":
                for k, v in value.items():
                    args += ["--set", f"{k}={v}"]
            else:
                args += [flag, str(value)]
        return " ".join(shlex.quote(a) for a in args)


@dataclass
class Fault:
    round: int
    kind: str
    targets: tuple[int, ...]
    seconds: float
    recovered_seconds: float | None = None
    note: str = ""


@dataclass(frozen=True)
class RoundPlan:
    """What the seed decides about one round; the target nodes are resolved from it
    against the cluster as it is then (the leader of `partition`, or the active
    controller; `pick` chooses among the others when needed)."""
    kind: str
    partition: int
    pick: float        # in [0, 1)
    isolate: bool      # a network partition cuts one node off from all, or one pair
    seconds: float     # how long the fault lasts
    settle: float      # quiet time after healing


class FaultPlanner:
    """The seeded sequence of rounds. Kinds come in shuffled cycles (every kind once
    per len(kinds) rounds, so a short campaign still covers them all), and every round
    draws the same number of values whatever its kind, so the stream of choices never
    depends on the cluster."""

    def __init__(self, kinds, partitions: int, replica_lag_time_max_ms: int,
                 rng: random.Random):
        self.kinds = list(kinds)
        self.partitions = partitions
        self.lag_s = replica_lag_time_max_ms / 1000
        self.rng = rng
        self._cycle: list[str] = []

    def next(self) -> RoundPlan:
        rng = self.rng
        if not self._cycle:
            self._cycle = list(self.kinds)
            rng.shuffle(self._cycle)
        kind = self._cycle.pop()
        partition = rng.randrange(self.partitions)
        pick = rng.random()
        isolate = rng.random() < 0.5
        seconds = {"kill": rng.uniform(1.0, 6.0),
                   "kill_controller": rng.uniform(1.0, 5.0),
                   # Longer than replica.lag.time.max.ms: the ISR must shrink (and the
                   # broker session times out: it is fenced too).
                   "pause": self.lag_s * rng.uniform(1.3, 2.2),
                   "partition": self.lag_s * rng.uniform(1.3, 2.5)}[kind]
        settle = rng.uniform(1.0, 3.0)
        return RoundPlan(kind, partition, pick, isolate, round(seconds, 2), settle)


class CampaignError(RuntimeError):
    """The campaign could not run (not a violation: nothing was checked)."""


class Campaign:
    def __init__(self, options: Options):
        self.o = options
        bad = [k for k in options.faults if k not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kind {bad[0]!r} (kinds: {', '.join(FAULT_KINDS)})")
        self.rng = random.Random(options.seed)
        self.faults: list[Fault] = []
        self.notes: list[str] = []
        self.lab: netns.NetnsLab | None = None
        self.cluster = None
        self.producers: list[workload.ProducerWorker] = []
        self.consumers: list[workload.ConsumerWorker] = []
        self.txn_producers: list = []          # txn_workload.TransactionalProducerWorker
        self.txn_consumers: list[workload.ConsumerWorker] = []
        self.txn_end: dict = {}                # what the end of the run measured
        self.txn_history: txn_checker.TxnHistory | None = None
        self.txn_states: dict = {}
        self.interrupt = threading.Event()
        self.network = "loopback"
        self.kinds = list(options.faults)
        self.planner: FaultPlanner | None = None   # once the kinds are known

    # ------------------------------------------------------------------ setup

    def _setup_network(self) -> None:
        want = self.o.network
        if want == "loopback":
            return
        reason = netns.unavailable_reason()
        if reason is None:
            netns.remove_stale()
            try:
                self.lab = netns.NetnsLab(self.o.brokers).setup()
                self.network = "netns"
                return
            except netns.NetnsError as e:
                if self.lab is not None:
                    self.lab.close()
                self.lab = None
                reason = str(e)
        if want == "netns":
            raise CampaignError(f"--network netns: {reason}")
        self._drop_partitions(f"no network namespaces ({reason})")

    def _drop_partitions(self, why: str) -> None:
        if "partition" in self.kinds:
            self.kinds.remove("partition")
            self.notes.append(f"network partitions left out: {why}")
            log.warning("network partitions left out", reason=why)
        if not self.kinds:
            raise CampaignError("no fault kind left to inject")

    def _start_cluster(self, workdir: Path) -> None:
        from kafkette.embedded import EmbeddedBrokerError
        from kafkette.embedded_cluster import EmbeddedCluster
        config: dict[str, object] = {"replica.lag.time.max.ms": self.o.replica_lag_time_max_ms,
                                     **self.o.sets}
        for attempt in range(len(OPTIONAL_SETTINGS) + 1):
            kw = {}
            if self.lab is not None:
                kw = {"hosts": self.lab.hosts, "launch_prefix": self.lab.launch_prefix}
            self.cluster = EmbeddedCluster(self.o.brokers, config, data_dir=workdir / "data",
                                           log_dir=workdir / "logs", **kw)
            try:
                self.cluster.start(interrupt=self.interrupt)
                return
            except EmbeddedBrokerError as e:
                self.cluster.close()
                self.cluster = None
                refused = [k for k in OPTIONAL_SETTINGS if k in config and k in str(e)]
                if not refused or attempt == len(OPTIONAL_SETTINGS):
                    raise CampaignError(f"the cluster did not start: {e}") from None
                for k in refused:
                    config.pop(k)
                    self.notes.append(f"the brokers refused {k}: run without it")
                    log.warning("broker refused a setting, retrying without it", key=k)

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        t0 = time.monotonic()
        workdir = Path(self.o.keep) if self.o.keep else Path(tempfile.mkdtemp(prefix="kafkette-chaos-"))
        workdir.mkdir(parents=True, exist_ok=True)
        keep = bool(self.o.keep)
        summary: dict = {}
        try:
            self._setup_network()
            try:
                self._start_cluster(workdir / self.network)
            except CampaignError as e:
                if self.lab is None or self.o.network != "auto":
                    raise
                # e.g. a firewall between bridged namespaces: go on without partitions.
                self.lab.close()
                self.lab = None
                self._drop_partitions(f"the cluster did not start in network namespaces "
                                      f"({str(e).splitlines()[0]})")
                self.network = "loopback"
                self._start_cluster(workdir / self.network)
            summary = self._campaign()
            keep = keep or not summary["ok"]
        except BaseException as e:
            keep = True
            log.error("campaign stopped before its check", error=repr(e), work_dir=str(workdir))
            raise
        finally:
            self._teardown()
            if keep:
                summary["work_dir"] = str(workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
            summary["duration_seconds"] = round(time.monotonic() - t0, 1)
        return summary

    def _campaign(self) -> dict:
        o, kc = self.o, self.cluster
        rf = min(o.replication_factor, o.brokers)
        if rf != o.replication_factor:
            self.notes.append(f"replication factor {rf}: only {o.brokers} brokers")
        kc.create_topic(TOPIC, partitions=o.partitions, replication_factor=rf,
                        config={"min.insync.replicas": min(o.min_insync_replicas, rf)})
        if o.transactional_producers:
            kc.create_topic(TXN_TOPIC, partitions=o.partitions, replication_factor=rf,
                            config={"min.insync.replicas": min(o.min_insync_replicas, rf)})
        self.planner = FaultPlanner(self.kinds, o.partitions, o.replica_lag_time_max_ms,
                                    self.rng)
        log.info("campaign started", seed=o.seed, rounds=o.rounds, brokers=o.brokers,
                 network=self.network, faults=self.kinds, bootstrap=kc.bootstrap_servers)
        bootstrap = kc.bootstrap_servers
        parts = range(o.partitions)
        self.consumers = [workload.ConsumerWorker(f"c{i + 1}", bootstrap, TOPIC, parts)
                          for i in range(o.consumers)]
        self.producers = [workload.ProducerWorker(
            f"p{i + 1}", bootstrap, TOPIC, rng=random.Random(f"{o.seed}/p{i + 1}"),
            keys=o.keys, rate=o.rate, message_timeout_ms=o.message_timeout_ms)
            for i in range(o.producers)]
        self._txn_workers(bootstrap)
        for w in self.consumers + self.producers + self.txn_consumers + self.txn_producers:
            w.start()
        self._wait_txn_ready()
        self._pause(2.0)   # some acknowledged traffic before the first fault

        deadline = time.monotonic() + o.max_seconds
        rounds_run = 0
        for r in range(1, o.rounds + 1):
            if time.monotonic() >= deadline or self.interrupt.is_set():
                self.notes.append(f"stopped after {rounds_run} rounds: --max-seconds")
                break
            self._round(r)
            rounds_run = r

        final_ok = self._heal(final=True)
        isr_full = self._wait_isr_full()
        for p in self.producers + self.txn_producers:
            p.stop()
        for p in self.producers:
            p.join(o.message_timeout_ms / 1000 + 15)
        for p in self.txn_producers:
            p.join(2 * p.op_timeout + 15)   # its last transaction, then fencing its id
        hw = self._high_watermarks()
        log.info("faults over, producers stopped", rounds=rounds_run, healed=final_ok,
                 isr_full=isr_full, high_watermarks=hw)
        self._wait_consumers(hw)
        for c in self.consumers:
            c.stop()
        for c in self.consumers:
            c.join(15)
        states = kc.partition_states(TOPIC)
        ends = {p: v for p, v in hw.items() if v is not None}
        drained, positions = workload.drain(bootstrap, TOPIC, ends, timeout=o.drain_timeout)

        log.info("drained", records=len(drained), positions=positions)
        self.txn_history = self._txn_end() if self.txn_producers else None
        killed = kc.stop_all()
        if killed:
            self.notes.append(f"node(s) {killed} did not stop on SIGTERM and were killed")
        logs = replica_logs.replica_logs({n.node_id: n.data_dir for n in kc.brokers}, TOPIC,
                                         parts, {p: s.replicas for p, s in states.items()})
        history = checker.History(
            produced=[m for p in self.producers for m in p.outcomes],
            live_reads=[r for c in self.consumers for r in c.reads],
            drain=drained, drain_end_offsets=ends, drain_positions=positions,
            high_watermarks=hw, leaders={p: s.leader for p, s in states.items()},
            isr={p: s.isr for p, s in states.items()}, replica_logs=logs)
        report = checker.check(history)
        txn_report = None
        if self.txn_history is not None:
            th = self.txn_history
            th.replica_logs = replica_logs.replica_logs(
                {n.node_id: n.data_dir for n in kc.brokers}, TXN_TOPIC, parts,
                {p: s.replicas for p, s in self.txn_states.items()})
            txn_report = txn_checker.check(th)
        return self._summary(report, txn_report, rounds_run, final_ok, isr_full)

    # ------------------------------------------------------------------ transactions

    def _txn_workers(self, bootstrap: str) -> None:
        from kafkette.chaos import txn_workload   # confluent-kafka's transactional API
        o = self.o
        parts = list(range(o.partitions))
        self.txn_producers = [txn_workload.TransactionalProducerWorker(
            f"t{i + 1}", bootstrap, TXN_TOPIC, parts, rng=random.Random(f"{o.seed}/t{i + 1}"),
            rate=o.txn_rate, abort_ratio=o.txn_abort_ratio,
            transaction_timeout_ms=o.transaction_timeout_ms,
            message_timeout_ms=o.message_timeout_ms)
            for i in range(o.transactional_producers)]
        if self.txn_producers:
            self.txn_consumers = [workload.ConsumerWorker(
                "tc1", bootstrap, TXN_TOPIC, parts,
                extra_config={"isolation.level": "read_committed"})]

    def _wait_txn_ready(self) -> None:
        """Every transactional producer's init_transactions() returned before the first
        fault: the first one creates __transaction_state, which takes its replication
        factor from the brokers alive then (as Kafka caps it), so no broker may be down."""
        if not self.txn_producers:
            return
        from kafkette.embedded import EmbeddedBrokerError
        try:
            self.cluster.wait_for(lambda: all(p.ready.is_set() or not p.is_alive()
                                              for p in self.txn_producers),
                                  60, "every transactional producer to initialize",
                                  interval=0.2, interrupt=self.interrupt)
            failed = [p.producer_name for p in self.txn_producers if not p.ready.is_set()]
            if failed:
                raise EmbeddedBrokerError(f"transactional producer(s) {failed} ended "
                                          "before init_transactions() returned")
        except EmbeddedBrokerError as e:
            errors = [e for p in self.txn_producers for e in p.errors][:3]
            raise CampaignError(f"{str(e).splitlines()[0]}; errors: {errors}") from None
        log.info("transactional producers ready", producers=len(self.txn_producers),
                 coordinators=self._coordinators())

    def _coordinators(self) -> dict[str, int]:
        """transactional id -> the node leading its __transaction_state partition."""
        from kafkette.broker.txn_state import txn_partition_for
        try:
            states = self.cluster.partition_states("__transaction_state")
        except Exception:  # noqa: BLE001 - for the log only
            return {}
        if not states:
            return {}
        return {p.transactional_id: states[txn_partition_for(p.transactional_id,
                                                             len(states))].leader
                for p in self.txn_producers}

    def _txn_end(self) -> txn_checker.TxnHistory:
        """With every producer stopped (each finished or fenced its last transaction):
        wait (bounded) for each partition's last stable offset to reach its high
        watermark, then drain under read_committed and read_uncommitted."""
        from kafkette.embedded import EmbeddedBrokerError
        o, kc = self.o, self.cluster
        for c in self.txn_consumers:
            c.stop()
        for c in self.txn_consumers:
            c.join(15)
        hw = self._high_watermarks(TXN_TOPIC)
        lso: dict[int, int | None] = {}
        t0 = time.monotonic()

        def stable():
            lso.update(self._offsets(TXN_TOPIC, isolation_level=1))
            return all(lso.get(p) is not None and lso[p] >= v
                       for p, v in hw.items() if v is not None)
        try:
            kc.wait_for(stable, o.lso_timeout, "every last stable offset to reach its "
                        "high watermark", interval=0.2, interrupt=self.interrupt)
            self.txn_end["lso_seconds"] = round(time.monotonic() - t0, 2)
        except EmbeddedBrokerError:
            self.txn_end["lso_seconds"] = None
            log.warning("last stable offsets below the high watermarks", high_watermarks=hw,
                        last_stable_offsets=lso, coordinators=self._coordinators())
        self.txn_states = kc.partition_states(TXN_TOPIC)
        ends = {p: v for p, v in hw.items() if v is not None}
        rc, rc_pos = workload.drain(kc.bootstrap_servers, TXN_TOPIC, ends,
                                    timeout=o.drain_timeout,
                                    extra_config={"isolation.level": "read_committed",
                                                  "client.id": "chaos-drain-rc"})
        ru, ru_pos = workload.drain(kc.bootstrap_servers, TXN_TOPIC, ends,
                                    timeout=o.drain_timeout,
                                    extra_config={"isolation.level": "read_uncommitted",
                                                  "client.id": "chaos-drain-ru"})
        log.info("transactional topic drained", read_committed=len(rc), positions=rc_pos,
                 read_uncommitted=len(ru), high_watermarks=hw, last_stable_offsets=lso)
        return txn_checker.TxnHistory(
            txns=[t for p in self.txn_producers for t in p.snapshot()],
            produced=[m for p in self.txn_producers for m in list(p.produced)],
            live_reads=[r for c in self.txn_consumers for r in c.reads],
            drain=rc, drain_end_offsets=ends, drain_positions=rc_pos,
            uncommitted_drain=ru, uncommitted_positions=ru_pos,
            high_watermarks=hw, last_stable_offsets=dict(lso),
            leaders={p: s.leader for p, s in self.txn_states.items()},
            isr={p: s.isr for p, s in self.txn_states.items()})

    def _offsets(self, topic: str, isolation_level: int) -> dict[int, int | None]:
        """partition -> ListOffsets latest under `isolation_level` (1: read_committed,
        which answers the last stable offset), asked of each leader; None when it
        does not answer. (EmbeddedCluster.list_offsets asks read_uncommitted only.)"""
        from kafkette.embedded import EmbeddedBrokerError
        from kafkette.protocol.messages import ListOffsetsRequest
        T = ListOffsetsRequest.ListOffsetsTopic
        P = T.ListOffsetsPartition
        states = self.cluster.partition_states(topic)
        out: dict[int, int | None] = {p: None for p in states}
        by_leader: dict[int, list[int]] = {}
        for p, st in states.items():
            if st.leader >= 0:
                by_leader.setdefault(st.leader, []).append(p)
        for leader, ps in by_leader.items():
            req = ListOffsetsRequest(replica_id=-1, isolation_level=isolation_level, topics=[
                T(name=topic, partitions=[P(partition_index=p, timestamp=-1) for p in ps])])
            try:
                resp = self.cluster.request(req, 7, via=leader, timeout=5.0)
            except EmbeddedBrokerError:
                continue
            for rt in resp.topics:
                for rp in rt.partitions:
                    if rp.error_code == 0 and rp.partition_index in out:
                        out[rp.partition_index] = rp.offset
        return out

    def _round(self, r: int) -> None:
        plan = self.planner.next()
        kind, pi, pick, isolate, seconds, settle = (plan.kind, plan.partition, plan.pick,
                                                    plan.isolate, plan.seconds, plan.settle)
        kc = self.cluster
        running = [n.node_id for n in kc.running()]
        if not running:
            raise CampaignError("no node is running")
        target = self._leader(pi, running)
        if target is None:
            target = running[int(pick * len(running))]
        if kind == "kill_controller":
            try:
                c = kc.controller_id()
            except Exception:  # noqa: BLE001 - no node answered: fall back to the leader
                c = -1
            target = c if c in running else target
        fault = Fault(r, kind, (target,), seconds)
        if kind in ("kill", "kill_controller"):
            kc.node(target).kill()
        elif kind == "pause":
            kc.node(target).pause()
        else:
            others = [n for n in sorted(self.lab.namespaces) if n != target]
            if isolate or not others:
                self.lab.isolate(target)
                fault.note = "isolated from every other node"
            else:
                other = others[int(pick * len(others))]
                self.lab.partition(target, other)
                fault.targets = (target, other)
        log.info("fault injected", round=r, kind=kind, nodes=list(fault.targets),
                 seconds=fault.seconds, note=fault.note or None)
        self._pause(seconds)
        t_heal = time.monotonic()
        ok = self._heal()
        fault.recovered_seconds = round(time.monotonic() - t_heal, 2) if ok else None
        self.faults.append(fault)
        log.info("fault healed", round=r, kind=kind, recovered=ok,
                 recovery_seconds=fault.recovered_seconds)
        self._pause(settle)

    def _leader(self, partition: int, running: list[int]) -> int | None:
        try:
            leader = self.cluster.partition_states(TOPIC)[partition].leader
        except Exception:  # noqa: BLE001 - metadata unavailable: caller falls back
            return None
        return leader if leader in running else None

    def _heal(self, final: bool = False) -> bool:
        """Undo every fault: SIGCONT, restart, flush the partition rules; then wait
        (bounded) for every node to be listed and every partition to have a leader."""
        from kafkette.embedded import EmbeddedBrokerError
        kc = self.cluster
        if self.lab is not None:
            self.lab.heal()
        for e in kc.restore():
            self.notes.append(f"a node did not restart: {e}")
        try:
            kc.wait_ready(timeout=self.o.recovery_timeout, interrupt=self.interrupt)
            kc.wait_for(lambda: all(s.leader >= 0 for s in kc.partition_states(TOPIC).values()),
                        self.o.recovery_timeout, "every partition to have a leader",
                        interval=0.2, interrupt=self.interrupt)
            return True
        except EmbeddedBrokerError as e:
            self.notes.append(f"{'final ' if final else ''}recovery timed out: "
                              f"{str(e).splitlines()[0]}")
            return False

    def _wait_isr_full(self) -> bool:
        from kafkette.embedded import EmbeddedBrokerError
        kc = self.cluster
        topics = [TOPIC] + ([TXN_TOPIC] if self.txn_producers else [])
        try:
            kc.wait_for(lambda: all(set(s.isr) == set(s.replicas) for t in topics for s in
                                    kc.partition_states(t).values()),
                        self.o.isr_timeout, "every replica to be in the ISR", interval=0.2,
                        interrupt=self.interrupt)
            return True
        except EmbeddedBrokerError:
            self.notes.append("ISR not full at the end: " + ", ".join(
                f"{t}-{p} isr={list(s.isr)} of {list(s.replicas)}" for t in topics
                for p, s in kc.partition_states(t).items() if set(s.isr) != set(s.replicas)))
            return False

    def _high_watermarks(self, topic: str = TOPIC) -> dict[int, int | None]:
        from kafkette.embedded import EmbeddedBrokerError
        kc, got = self.cluster, {}

        def all_known():
            got.update(kc.list_offsets(topic))
            return all(v is not None for v in got.values())
        try:
            kc.wait_for(all_known, 15, "ListOffsets from every partition's leader",
                        interval=0.2, interrupt=self.interrupt)
        except EmbeddedBrokerError:
            pass
        return dict(got)

    def _wait_consumers(self, hw: dict[int, int | None]) -> None:
        """Let the live consumers read up to the high watermark (bounded), so that what
        they read before the end is compared with the drain."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.interrupt.is_set():
            if all(c.positions.get(p, 0) >= v for c in self.consumers
                   for p, v in hw.items() if v is not None):
                return
            self.interrupt.wait(0.2)

    def _pause(self, seconds: float) -> None:
        """The fault's (or the quiet period's) duration: the workload runs meanwhile."""
        if self.interrupt.wait(seconds):
            raise KeyboardInterrupt

    def _teardown(self) -> None:
        workers = self.producers + self.consumers + self.txn_producers + self.txn_consumers
        for w in workers:
            w.stop()
        for w in workers:
            w.join(30)
        if self.cluster is not None:
            self.cluster.close()   # SIGCONTs paused nodes, stops all, removes temp dirs
        if self.lab is not None:
            self.lab.close()

    # ------------------------------------------------------------------ summary

    def _summary(self, report: checker.Report, txn_report: txn_checker.TxnReport | None,
                 rounds_run: int, final_ok: bool, isr_full: bool) -> dict:
        o = self.o
        if not final_ok:
            self.notes.append("the cluster did not recover after the last heal")
        recoveries = [f.recovered_seconds for f in self.faults if f.recovered_seconds is not None]
        consumer_errors: Counter = Counter()
        for c in self.consumers:
            consumer_errors.update(c.errors)
        summary = {
            "ok": report.ok and (txn_report is None or txn_report.ok),
            "seed": o.seed,
            "rounds": rounds_run,
            "brokers": o.brokers,
            "network": self.network,
            "faults": dict(Counter(f.kind for f in self.faults)),
            "fault_log": [{"round": f.round, "kind": f.kind, "nodes": list(f.targets),
                           "seconds": f.seconds, "recovered_seconds": f.recovered_seconds,
                           **({"note": f.note} if f.note else {})} for f in self.faults],
            "acknowledged": report.acknowledged,
            "failed": report.failed,
            "lost": report.lost,
            "duplicated": report.duplicated,
            "violations": {**report.counts(), **(txn_report.counts() if txn_report else {})},
            "examples": [v.as_dict() for v in _examples(
                report.violations + (txn_report.violations if txn_report else []))],
            "read_live": report.read_live,
            "drained": report.drained,
            "recovery_seconds_max": max(recoveries) if recoveries else None,
            "recovery_timeouts": sum(1 for f in self.faults if f.recovered_seconds is None),
            "isr_full_at_end": isr_full,
            "producer_instances": sum(p.incarnations for p in self.producers),
            "producer_fatal_errors": [e for p in self.producers for e in p.fatal_errors][:10],
            "worker_errors": [e for p in self.producers for e in p.errors][:10],
            "consumer_errors": dict(consumer_errors),
            "notes": self.notes,
            "reproduce": o.command_line(),
        }
        if txn_report is not None:
            summary["transactions"] = self._txn_summary(txn_report)
        return summary

    def _txn_summary(self, r: txn_checker.TxnReport) -> dict:
        errors: Counter = Counter()
        for p in self.txn_producers:
            errors.update(p.error_counts)
        consumer_errors: Counter = Counter()
        for c in self.txn_consumers:
            consumer_errors.update(c.errors)
        return {
            "producers": len(self.txn_producers),
            **r.outcomes,
            "unknown_resolved": r.unknown_resolved,
            "aborted_after_error": r.aborted_after_error,
            "slowest_seconds": r.slowest_seconds,
            "median_seconds": r.median_seconds,
            "records": r.records, "delivered": r.delivered, "read_live": r.read_live,
            "drained": r.drained, "drained_uncommitted": r.drained_uncommitted,
            "lost": r.count("txn_lost"), "aborted_read": r.count("txn_aborted_read"),
            "open_read": r.count("txn_open_read"), "duplicated": r.count("txn_duplicate"),
            "torn": r.count("txn_torn"), "lso_stuck": r.count("txn_lso_stuck"),
            "lso_seconds": self.txn_end.get("lso_seconds"),
            "producer_instances": sum(p.incarnations for p in self.txn_producers),
            "retries": sum(p.retries for p in self.txn_producers),
            "fatal_errors": [e for p in self.txn_producers for e in p.fatal_errors][:10],
            "worker_errors": [e for p in self.txn_producers for e in p.errors][:10],
            "errors": dict(errors.most_common(12)),
            "consumer_errors": dict(consumer_errors),
        }


def _examples(violations: list[checker.Violation], per_kind: int = 5) -> list[checker.Violation]:
    shown: Counter = Counter()
    out = []
    for v in violations:
        if shown[v.kind] < per_kind:
            shown[v.kind] += 1
            out.append(v)
    return out


def format_summary(s: dict) -> str:
    lines = [f"kafkette chaos: seed {s['seed']}, {s['rounds']} rounds, {s['brokers']} brokers, "
             f"network {s['network']}, {s.get('duration_seconds', '?')} s"]
    lines.append("faults: " + (", ".join(f"{k} {v}" for k, v in sorted(s["faults"].items()))
                               or "none"))
    for f in s["fault_log"]:
        rec = (f"recovered in {f['recovered_seconds']} s" if f["recovered_seconds"] is not None
               else "NOT recovered in time")
        lines.append(f"  round {f['round']}: {f['kind']} of node(s) {f['nodes']} for "
                     f"{f['seconds']} s, {rec}{'; ' + f['note'] if f.get('note') else ''}")
    lines.append(f"records: {s['acknowledged']} acknowledged, {s['failed']} failed (not "
                 f"acknowledged: not a violation), {s['lost']} lost, {s['duplicated']} "
                 f"duplicated; {s['read_live']} read live, {s['drained']} in the final drain")
    lines.append("violations: " + (", ".join(f"{k} {v}" for k, v in s["violations"].items())
                                   or "none"))
    for e in s["examples"]:
        where = "".join(f" {k}={e[k]}" for k in ("partition", "offset", "value") if k in e)
        lines.append(f"  {e['kind']}:{where}: {e['detail']}")
    t = s.get("transactions")
    if t:
        res = t["unknown_resolved"]
        lso = (f"in {t['lso_seconds']} s" if t["lso_seconds"] is not None else "NOT in time")
        lines.append(f"transactions: {t['committed']} committed, {t['aborted']} aborted "
                     f"({t['aborted_after_error']} after a failed commit), {t['unknown']} "
                     f"unknown ({res['visible']} visible, {res['invisible']} invisible, "
                     f"{res['torn']} torn), {t['open']} open; {t['producers']} producers, "
                     f"{t['producer_instances']} instances, {t['retries']} retried calls; "
                     f"median {t['median_seconds']} s, slowest {t['slowest_seconds']} s")
        lines.append(f"transactional records: {t['records']} sent, {t['delivered']} "
                     f"delivered; {t['lost']} lost, {t['aborted_read']} aborted reads, "
                     f"{t['open_read']} open reads, {t['duplicated']} duplicated, "
                     f"{t['torn']} torn; {t['read_live']} read live (read_committed), "
                     f"{t['drained']} drained read_committed, {t['drained_uncommitted']} "
                     f"read_uncommitted; every LSO reached its high watermark {lso}")
    lines.append(f"ISR full at the end: {s['isr_full_at_end']}; producer instances "
                 f"{s['producer_instances']} ({len(s['producer_fatal_errors'])} fatal errors)")
    for n in s["notes"]:
        lines.append(f"note: {n}")
    if s.get("work_dir"):
        lines.append(f"data dirs and node logs kept in {s['work_dir']}")
    lines.append("result: " + ("OK, no violation" if s["ok"] else "VIOLATIONS"))
    if not s["ok"]:
        lines.append(f"reproduce: {s['reproduce']}")
    return "\n".join(lines)
