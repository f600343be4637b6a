"""Deterministic simulation of partition replication: the real ReplicaManager,
Partition and PartitionLog of 3 to 5 brokers (each with its own data directory; one
topic of 1 or 2 partitions, replication factor 3, min.insync.replicas 2), the real
Controller (partition_change elections, AlterPartition validation, KIP-966 ELR,
broker registration, heartbeats and session fencing) on an in-memory quorum of one,
and a simulated network between them. One seed fixes everything, and nothing reads
the wall clock, so a seed replays exactly:

    python -m kafkette.broker.replication_sim --seeds 500            # seeds 0..499
    python -m kafkette.broker.replication_sim --seed 42 --trace      # one seed, every event

What is real and what is simulated:
- Brokers: a LogManager over a temporary directory, a ReplicaManager with its
  partitions, purgatories and ISR upkeep (maybe_update_isr on a timer, the HW
  checkpoint on a timer), its alter_isr hook sending AlterPartition to the controller.
  Leaders serve follower fetches with ReplicaManager.fetch_messages (long polls
  included); followers apply the answers with the replica fetcher's own sans-IO rules
  (replica_fetcher.handle_fetch_answer, truncate_to_leader_end), so the fetcher and
  the simulation run the same code. Only the transport is simulated.
- The controller: kafkette.controller.Controller with a quorum that commits at once.
  Brokers register (with the KIP-966 previous broker epoch from the clean-shutdown
  file), heartbeat, are fenced when their session expires and unfenced when they
  come back; the controller's periodic work (session checks, the preferred-leader
  balancer) runs on a timer. Brokers learn the metadata by pulling the controller's
  images in order, each with its own delay (as a broker replays the metadata log).
- Time: one ManualClock (kafkette/clock.py) shared by everything, and an asyncio
  event loop whose time is that clock (VirtualTimeLoop), so acks=all produces waiting
  in the produce purgatory and long-polled fetches run as real coroutines with real
  timeouts, in virtual time.
- The network: every message (fetch, ListOffsets, produce, heartbeat, registration,
  AlterPartition, metadata) is an event delivered after a seeded delay, or dropped;
  links can be cut (a broker isolated from the controller keeps leading until it
  learns otherwise, a zombie).
- Faults: kill -9 of a broker (its in-memory state is gone; it restarts from its data
  directory with replication-offset-checkpoint, leader-epoch-checkpoint and no
  clean-shutdown file, so the controller sees an unclean shutdown); controlled
  shutdown and clean restart; isolation from the controller (fenced by session
  timeout, unfenced when it is back), from the other brokers, or both; a pause of one
  broker, and a jump of the whole clock, past replica.lag.time.max.ms (ISR shrink);
  producers appending with acks=all and acks=1 (min.insync.replicas=2, RF=3) to the
  broker their metadata says leads, which may be stale; in some seeds an admin client's
  DeleteRecords (log start offsets move; a lagging follower restarts its log at the
  leader's log start), which must be acknowledged only once every replica on a live
  broker has moved its log start (Kafka's DelayedDeleteRecords).

A broker crash here is kill -9, not a power loss: written data is in the page cache
and survives (files are written with os.write). Kafka does not promise anything about
acks=all records when every replica loses its unflushed data, so the simulation does
not drop unflushed bytes.

Invariants, checked after every event (a violation raises InvariantViolation with the
seed and the event number):
(a) no acknowledged acks=all record is lost: its batch is in the committed ledger
    (below) with the same CRC, and every broker that leads the partition at the
    controller's current leader epoch has the whole ledger (KIP-101 / KIP-966 leader
    completeness). A new leader's high watermark may lag the old leader's for a while
    (it learns the committed offset from its own followers' fetches, Kafka's
    behaviour too), so the check is that the leader HOLDS every committed batch, not
    that its high watermark already covers it.
(b) the high watermark of a leader never goes back within one leadership (broker,
    process incarnation, leader epoch); the committed ledger, every batch below the
    largest high watermark any replica ever had (a follower's comes from its leader,
    and consumers may read up to it, KIP-392), never changes, and every live
    member of the controller's ISR and ELR holds all of it (that is what lets any of
    them be elected without losing committed data: Kafka's ISR rule, and KIP-966's "the
    high watermark waits while the ISR is below min.insync.replicas", which is what
    makes the replicas that left the ISR meanwhile, the ELR, safe leaders).
(c) replicas agree up to their high watermark: every live broker's batches below its
    own high watermark are the ledger's, batch by batch (base offset, last offset,
    leader epoch, CRC). Batches below the largest log start offset a leader had
    (DeleteRecords) are exempt from (b) and (c): they are deleted, and a follower that
    diverged below its leader's log start keeps its own until its log start follows
    (Kafka's leader-epoch cache starts the earliest epoch at the log start, so the
    divergence answer does not reach below it).
(d) the controller's partitions: ISR and ELR within the replicas and disjoint, the
    leader in the ISR, leader and partition epochs never go back and a new leader
    always comes with a new leader epoch; on the brokers: the ISR a partition holds
    is within its replicas and a leader is in its own ISR, at most one broker leads
    each leader epoch.
Liveness: after `steps` events every fault heals (links, drops, pauses; crashed
brokers restart); within `heal_ms` of virtual time one more acks=all record must be
acknowledged and every replica must converge to the leader's log, batch by batch,
with the whole replica set back in the ISR and the high watermark at the log end.
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import shutil
import sys
import tempfile
import time
from asyncio import events
from dataclasses import dataclass, field

from kafkette.broker import replica_fetcher as follower
from kafkette.broker.cluster import _take_clean_shutdown_epoch, write_clean_shutdown_epoch
from kafkette.broker.replica_manager import FetchParams, FetchPartition, ReplicaManager
from kafkette.clock import ManualClock
from kafkette.config import BrokerConfig
from kafkette.controller.controller import AlterPartitionItem, Controller
from kafkette.controller.metadata_image import MetadataImage
from kafkette.controller.quorum import run_now
from kafkette.errors import ErrorCode, KafkaError
from kafkette.log.log_manager import LogManager
from kafkette.protocol import records as rec

TOPIC = "sim"
CONTROLLER = 0  # the controller's node id on the simulated network
MIN_ISR = 2


class InvariantViolation(AssertionError):
    pass


# -- asyncio in virtual time ------------------------------------------------------------
class _NoSelector:
    """The loop never waits for IO: the simulation advances time itself."""

    def select(self, timeout=None):
        return []

    def close(self):
        pass


class VirtualTimeLoop(asyncio.BaseEventLoop):
    """An asyncio loop whose time is the simulation's ManualClock. `run_due()` runs
    every callback that is ready and every timer that is due, and never sleeps; the
    simulation moves the clock to the next event (its own or `next_timer_ms()`).
    It steps CPython's BaseEventLoop by its internals (_run_once, _ready, _scheduled;
    as of 3.11): the price of running the broker's real coroutines, purgatory and
    asyncio.wait_for timeouts included, in virtual time without a thread or a sleep."""

    def __init__(self, clock: ManualClock):
        super().__init__()
        self._sim_clock = clock
        self._selector = _NoSelector()
        # Timers within half a millisecond of now are due (the clock moves in whole ms).
        self._clock_resolution = 0.0005

    def time(self) -> float:
        return self._sim_clock.monotonic_ms() / 1000

    def _process_events(self, event_list) -> None:
        pass

    def _write_to_self(self) -> None:
        pass

    def run_due(self) -> None:
        events._set_running_loop(self)
        try:
            due = self.time() + self._clock_resolution
            while self._ready or (self._scheduled and self._scheduled[0].when() < due):
                self._run_once()
        finally:
            events._set_running_loop(None)

    def next_timer_ms(self) -> int | None:
        while self._scheduled and self._scheduled[0].cancelled():
            heapq.heappop(self._scheduled)
        if not self._scheduled:
            return None
        # Round up: a timer fires at the first millisecond at or after its time.
        return -int(-self._scheduled[0].when() * 1000 // 1)


class SimQuorum:
    """The metadata quorum as one in-memory voter that commits each proposal at once
    (the Raft quorum has its own simulation: kafkette/controller/raft/sim.py)."""

    is_local = False
    leader_id = CONTROLLER
    epoch = 1

    def __init__(self):
        self._listener = None
        self._end = 0

    def is_leader(self) -> bool:
        return True

    def start_sync(self, listener) -> None:
        self._listener = listener
        listener.leader_changed(CONTROLLER, self.epoch)

    async def append(self, values: list[bytes]) -> int:
        self._end += len(values)
        self._listener.apply(self._end - 1, values)
        return self._end - 1


# -- the brokers ---------------------------------------------------------------------
@dataclass
class SimBroker:
    node_id: int
    data_dir: str
    up: bool = False
    incarnation: int = 0
    lm: LogManager | None = None
    rm: ReplicaManager | None = None
    broker_epoch: int = -1
    image: MetadataImage | None = None
    applied: int = -1                  # index of the last controller image applied
    paused_until: int = -1             # SIGSTOP: events for it wait until then
    tasks: dict = field(default_factory=dict)  # its coroutines on the loop (ordered)
    fetching: dict = field(default_factory=dict)   # partition -> id of the fetch in flight
    fetch_parts: dict = field(default_factory=dict)  # fetch id -> (Partition, leader epoch)
    pending_alter: dict = field(default_factory=dict)  # request id -> (Partition, ISR)
    previous_epoch: int = -1           # from the clean-shutdown file at start


@dataclass(frozen=True)
class BatchInfo:
    base_offset: int
    last_offset: int
    epoch: int
    crc: int


def _batches(plog, start: int, end: int) -> list[BatchInfo]:
    """The batches of `plog` wholly inside [start, end)."""
    if end <= start or start >= plog.log_end_offset:
        return []
    data = plog.read(start, 1 << 30, max_offset=end)
    return [BatchInfo(h.base_offset, h.last_offset, h.partition_leader_epoch, h.crc)
            for _, h in rec.iter_batches(data, validate_crc=False)]


class Simulation:
    def __init__(self, seed: int, *, steps: int = 1500, heal_ms: int = 30000,
                 brokers: int | None = None, partitions: int | None = None,
                 trace: bool = False, base_dir: str | None = None):
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.steps = steps
        self.heal_ms = heal_ms
        self.trace = trace
        # Replication factor 3 on 3 brokers mostly; on 4 or 5 the controller places the
        # replicas and some brokers host no replica of a partition.
        self.n = brokers if brokers is not None else rng.choice([3, 3, 4, 5])
        self.partitions = partitions if partitions is not None else rng.choice([1, 2])
        self.clock = ManualClock(1_700_000_000_000)
        self.t0 = self.clock.now_ms
        self.loop = VirtualTimeLoop(self.clock)
        self._seq = 0
        self.heap: list = []
        self.events = 0
        self.step = 0
        # Timings, in virtual ms (ratios as Kafka's defaults, values shrunk).
        self.lag_time_max_ms = rng.choice([300, 600, 1000])
        self.session_timeout_ms = rng.choice([600, 900, 1500])
        self.heartbeat_ms = self.session_timeout_ms // 4
        self.fetch_wait_ms = rng.choice([0, 20, 100, 250])
        self.fetch_backoff_ms = rng.choice([10, 50])
        self.request_timeout_ms = 400 + self.fetch_wait_ms
        self.checkpoint_ms = rng.choice([50, 200, 1000])
        self.segment_bytes = rng.choice([1 << 30, 2048, 700])
        # An admin client deleting records now and then (DeleteRecords): log start
        # offsets move on the leader, followers follow, a lagging follower restarts its
        # log at the leader's log start.
        self.delete_records = rng.random() < 0.3
        self.deletes_done = 0
        # The network.
        self.drop = rng.choice([0.0, 0.01, 0.05, 0.15])
        self.max_delay = rng.choice([2, 10, 40])
        self.blocked: set[tuple[int, int]] = set()
        # Counters for the report.
        self.crashes = self.restarts = self.elections = self.acked = self.produced = 0
        self.elr_elections = 0  # leaders elected from outside the last ISR (KIP-966 ELR)
        self.truncations = self.isr_changes = 0
        self._base_dir = tempfile.mkdtemp(prefix=f"repsim-{seed}-", dir=base_dir or _tmp_base())
        cfg = BrokerConfig({"min.insync.replicas": MIN_ISR,
                            "leader.imbalance.check.interval.seconds": 2})
        self.controller = Controller(SimQuorum(), CONTROLLER, "repsim", self.clock,
                                     session_timeout_ms=self.session_timeout_ms,
                                     config=lambda: cfg, rng=random.Random(seed))
        self.history: list[MetadataImage] = []
        self.controller.add_listener(lambda old, new: self._on_controller_image(new))
        self.controller.quorum.start_sync(self.controller)
        self.ids = list(range(1, self.n + 1))
        self.brokers = {i: SimBroker(i, os.path.join(self._base_dir, f"broker-{i}"))
                        for i in self.ids}
        # What the invariants remember.
        self.ledger: dict[int, list[BatchInfo]] = {p: [] for p in range(self.partitions)}
        self.ledger_end: dict[int, int] = {p: 0 for p in range(self.partitions)}
        # The largest log start offset any leader had (DeleteRecords): below it records
        # are deleted, and a replica may keep other ones there (see _check_replica).
        self.deleted_below: dict[int, int] = {p: 0 for p in range(self.partitions)}
        self.acked_batches: list[tuple[int, BatchInfo, bytes]] = []
        self._new_acks: list[tuple[int, BatchInfo, bytes]] = []
        self.leader_hw: dict[tuple, int] = {}        # (broker, incarnation, p, epoch) -> hw
        self.epoch_leaders: dict[tuple[int, int], int] = {}  # (p, epoch) -> broker
        self.verified: dict[tuple, tuple[int, int]] = {}  # (broker, inc, p) -> (upto, leo seen)
        self.last_partition_state: dict[int, tuple] = {}
        self.broker_epochs: dict[tuple, int] = {}    # (broker, incarnation, p) -> leader epoch
        self.errors: list[str] = []
        self.healed_at: int | None = None

    # -- plumbing -----------------------------------------------------------------------
    @property
    def now(self) -> int:
        return self.clock.now_ms - self.t0

    def _push(self, delay: int, kind: str, *data) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (self.clock.now_ms + max(0, delay), self._seq, kind, data))

    def _log(self, *args) -> None:
        if self.trace:
            print(f"[{self.now:7d} #{self.step}]", *args)

    def fail(self, what: str) -> None:
        raise InvariantViolation(f"seed {self.seed}, step {self.step}: {what} (t={self.now} ms)")

    def _send(self, src: int, dst: int, kind: str, *data) -> None:
        """A message over the simulated network: dropped, or delivered after a delay
        (so messages reorder). A cut link drops it too."""
        if (src, dst) in self.blocked or (self.healed_at is None and self.rng.random() < self.drop):
            return
        self._push(1 + self.rng.randrange(self.max_delay), kind, src, dst, *data)

    def _spawn(self, b: SimBroker, awaitable, done) -> None:
        """Run a coroutine of broker `b` on the virtual loop; `done(result)` when it
        finishes. A crash of `b` cancels it (the process is gone)."""
        task = self.loop.create_task(awaitable)
        b.tasks[task] = None
        inc = b.incarnation

        def finished(t):
            b.tasks.pop(t, None)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self.errors.append(f"broker {b.node_id} task failed: {type(exc).__name__}: {exc}")
                return
            if b.up and b.incarnation == inc:
                done(t.result())
        task.add_done_callback(finished)

    # -- the controller -------------------------------------------------------------------
    def _on_controller_image(self, image: MetadataImage) -> None:
        self.history.append(image)
        self._check_controller_image(image)

    def _controller_partitions(self):
        t = self.controller.image.topics.get(TOPIC)
        return t.partitions if t is not None else {}

    def _on_controller_tick(self) -> None:
        fenced = run_now(self.controller.check_sessions())
        if fenced:
            self._log(f"CONTROLLER fenced {fenced} (session timeout)")
        run_now(self.controller.check_leader_balance())
        self._push(50, "controller_tick")

    def _controller_receive(self, src: int, kind: str, data: tuple) -> None:
        c = self.controller
        if kind == "register":
            inc, previous_epoch = data
            try:
                epoch = run_now(c.register_broker(src, f"broker-{src}", 9092, None, "repsim",
                                                  previous_broker_epoch=previous_epoch))
            except KafkaError as e:
                self._log(f"CONTROLLER register {src} refused: {e.code.name}")
                return
            self._send(CONTROLLER, src, "registered", inc, epoch)
        elif kind == "heartbeat":
            inc, epoch, offset = data
            try:
                run_now(c.broker_heartbeat(src, epoch, offset, False, False))
                code = 0
            except KafkaError as e:
                code = int(e.code)
            self._send(CONTROLLER, src, "heartbeat_answer", inc, epoch, code)
        elif kind == "alter_partition":
            inc, req_id, epoch, item = data
            try:
                (res,) = run_now(c.alter_partitions(src, epoch, [item]))
            except KafkaError as e:
                res = None
                self._log(f"CONTROLLER alter from {src} refused: {e.code.name}")
            self._send(CONTROLLER, src, "alter_answer", inc, req_id, res)

    # -- broker lifecycle -------------------------------------------------------------------
    def _topic_configs(self, name: str, image: MetadataImage) -> dict:
        cfg = {"min.insync.replicas": str(MIN_ISR), "segment.bytes": str(self.segment_bytes)}
        t = image.topics.get(name)
        if t is not None:
            cfg.update(t.configs)
        return cfg

    def _start_broker(self, b: SimBroker) -> None:
        b.incarnation += 1
        b.up = True
        b.paused_until = -1
        b.fetching = {}
        b.fetch_parts = {}
        b.pending_alter = {}
        b.broker_epoch = -1
        # KIP-966: the broker epoch of the last clean shutdown, -1 after a crash.
        previous = b.previous_epoch = _take_clean_shutdown_epoch(b.data_dir)
        b.lm = LogManager(b.data_dir, self.clock)
        b.lm.load_all()
        b.rm = ReplicaManager(b.node_id, b.lm, self._topic_configs, self.clock,
                              lag_time_max_ms=self.lag_time_max_ms)
        inc = b.incarnation
        b.rm.alter_isr = lambda part, isr: self._send_alter(b, inc, part, isr)
        b.image = MetadataImage(cluster_id="", controller_id=-1)
        # A broker replays the metadata log from its last snapshot: here from a
        # random earlier image, through every later one, so that old leaderships pass by
        # again as they do at start-up.
        b.applied = self.rng.randrange(len(self.history)) - 1 if self.history else -1
        self._log(f"START broker {b.node_id} (incarnation {inc}, previous epoch {previous}, "
                  f"replay from image {b.applied + 1})")
        self._apply_metadata(b, len(self.history) - 1)
        self._push(0, "broker_tick", b.node_id, inc)
        self._push(self.rng.randrange(1, 20), "meta_pull", b.node_id, inc)
        self._push(self.rng.randrange(1, self.checkpoint_ms), "checkpoint", b.node_id, inc)
        self._push(self.lag_time_max_ms // 2, "isr_tick", b.node_id, inc)
        for p in range(self.partitions):
            self._push(self.rng.randrange(1, 10), "fetch_tick", b.node_id, inc, p)

    def _stop_broker(self, b: SimBroker, clean: bool) -> None:
        for task in list(b.tasks):
            task.cancel()
        self.loop.run_due()  # let the cancellations finish
        b.tasks.clear()
        if clean:
            # Broker.close's order: checkpoint, flush, close, then the clean-shutdown file.
            b.rm.close()
            b.lm.flush_all()
            b.lm.close_all()
            if b.broker_epoch >= 0:
                write_clean_shutdown_epoch(b.data_dir, b.broker_epoch)
        else:
            # kill -9: nothing is flushed or checkpointed; written data stays in the page
            # cache (and so in the files).
            b.lm.close_all(clean=False)
        b.up = False
        b.rm = b.lm = None

    def _apply_metadata(self, b: SimBroker, upto: int) -> None:
        while b.applied < upto:
            b.applied += 1
            new = self.history[b.applied]
            old, b.image = b.image, new
            b.rm.on_metadata_update(old, new)

    # -- broker events ----------------------------------------------------------------------
    def _broker_tick(self, b: SimBroker) -> None:
        """Registration, then heartbeats (ClusterMember._lifecycle)."""
        if b.broker_epoch < 0:
            self._send(b.node_id, CONTROLLER, "register", b.incarnation, b.previous_epoch)
        else:
            self._send(b.node_id, CONTROLLER, "heartbeat", b.incarnation, b.broker_epoch,
                       b.image.offset)
        self._push(self.heartbeat_ms, "broker_tick", b.node_id, b.incarnation)

    def _send_alter(self, b: SimBroker, inc: int, part, new_isr) -> None:
        """The alter_isr hook: AlterPartition v3 with each member's broker epoch as this
        broker's metadata has it (ClusterMember._alter_partition)."""
        t = b.image.topics.get(part.topic)
        if t is None:
            part.isr_change_failed(new_isr, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            return
        members = [(r, b.image.brokers[r].epoch if r in b.image.brokers else -1) for r in new_isr]
        item = AlterPartitionItem(t.topic_id, part.index, part.leader_epoch,
                                  part.partition_epoch, members, 0)
        self._seq += 1
        req_id = self._seq
        self._log(f"broker {b.node_id} proposes ISR {list(new_isr)} for p{part.index} "
                  f"(epochs {part.leader_epoch}/{part.partition_epoch})")
        if b.broker_epoch >= 0:  # (not registered: the controller would refuse it)
            self._send(b.node_id, CONTROLLER, "alter_partition", inc, req_id, b.broker_epoch,
                       item)
        # No answer within the request timeout: sent again (ClusterMember._alter_partition).
        self._push(self.request_timeout_ms, "alter_timeout", b.node_id, inc, req_id)
        b.pending_alter[req_id] = (part, tuple(new_isr))

    def _on_alter_answer(self, b: SimBroker, req_id: int, res) -> None:
        part, proposed = b.pending_alter.pop(req_id, (None, None))
        if part is None or b.rm.partitions.get((part.topic, part.index)) is not part:
            return
        if res is not None and res.error == ErrorCode.NONE:
            self.isr_changes += 1
            b.rm.on_isr_change(part, res.leader_epoch, res.partition_epoch, res.isr,
                               proposed=proposed)
        elif part.isr_change_failed(proposed, res.error if res is not None else None):
            self._send_alter(b, b.incarnation, part, proposed)

    def _fetch_tick(self, b: SimBroker, p: int) -> None:
        """One follower fetch of partition p from its leader, if none is in flight."""
        if p in b.fetching:
            return
        part = b.rm.partitions.get((TOPIC, p))
        if part is None or part.is_leader or part.leader < 0:
            self._push(20, "fetch_tick", b.node_id, b.incarnation, p)
            return
        pos = follower.follower_fetch_position(part)
        self._seq += 1
        fid = self._seq
        b.fetching[p] = fid
        self._send(b.node_id, part.leader, "fetch", b.incarnation, fid, p, pos)
        self._push(self.request_timeout_ms, "fetch_timeout", b.node_id, b.incarnation, p, fid,
                   part, pos.current_leader_epoch)
        b.fetch_parts[fid] = (part, pos.current_leader_epoch)

    def _serve_fetch(self, leader: SimBroker, src: int, inc: int, fid: int, p: int, pos) -> None:
        params = FetchParams(replica_id=src, max_wait_ms=self.fetch_wait_ms, min_bytes=1,
                             max_bytes=self.rng.choice([600, 4096, 1 << 20]))
        fp = FetchPartition(TOPIC, p, pos.fetch_offset, params.max_bytes,
                            pos.current_leader_epoch, pos.last_fetched_epoch,
                            log_start_offset=pos.log_start_offset)
        out = leader.rm.fetch_messages(params, [fp])

        def answer(results):
            r = results[0]
            self._send(leader.node_id, src, "fetch_answer", inc, fid, p, r.error, r.high_watermark,
                       r.log_start_offset, bytes(r.records) if r.records else b"",
                       r.diverging_epoch)
        if isinstance(out, list):
            answer(out)
        else:
            self._spawn(leader, out, answer)

    def _next_fetch(self, b: SimBroker, p: int, fid: int, delay: int) -> None:
        if b.fetching.get(p) == fid:
            del b.fetching[p]
            b.fetch_parts.pop(fid, None)
            self._push(delay, "fetch_tick", b.node_id, b.incarnation, p)

    def _on_fetch_answer(self, b: SimBroker, src: int, fid: int, p: int, error: int, hw: int,
                         log_start: int, records: bytes, diverging) -> None:
        if b.fetching.get(p) != fid:
            return  # timed out already
        part, epoch = b.fetch_parts[fid]
        if b.rm.partitions.get((TOPIC, p)) is not part or part.leader_epoch != epoch \
                or part.is_leader:
            self._next_fetch(b, p, fid, 0)  # moved or re-elected while in flight
            return
        leo = part.log_end_offset
        outcome = follower.handle_fetch_answer(part, error, hw, log_start, records, diverging,
                                               self.clock.time_ms(), src)
        if part.log_end_offset < leo:
            self.truncations += 1
            self._log(f"broker {b.node_id} p{p} truncated {leo} -> {part.log_end_offset}")
        if outcome == follower.AHEAD_OF_LEADER:
            # ListOffsets (latest, with our replica id) to the leader, then truncate.
            self._send(b.node_id, src, "list_offsets", b.incarnation, fid, p, epoch)
            return
        self._next_fetch(b, p, fid, self.fetch_backoff_ms if outcome == follower.BACK_OFF else 0)

    def _serve_list_offsets(self, leader: SimBroker, src: int, inc: int, fid: int, p: int,
                            epoch: int) -> None:
        try:
            offset = leader.rm.offset_for(TOPIC, p, -1, epoch, replica_id=src)[0]
        except KafkaError:
            offset = -1
        self._send(leader.node_id, src, "list_offsets_answer", inc, fid, p, offset)

    def _on_list_offsets_answer(self, b: SimBroker, fid: int, p: int, offset: int) -> None:
        if b.fetching.get(p) != fid:
            return
        part, epoch = b.fetch_parts[fid]
        if b.rm.partitions.get((TOPIC, p)) is part and part.leader_epoch == epoch \
                and not part.is_leader and offset >= 0:
            leo = part.log_end_offset
            if follower.truncate_to_leader_end(part, offset):
                self.truncations += 1
                self._log(f"broker {b.node_id} p{p} truncated to the leader's end {leo} -> {offset}")
        self._next_fetch(b, p, fid, self.fetch_backoff_ms)

    # -- producers ----------------------------------------------------------------------------
    def _produce(self, final: bool = False) -> bytes:
        rng = self.rng
        p = rng.randrange(self.partitions)
        acks = -1 if final or rng.random() < 0.8 else 1
        self.produced += 1
        value = f"{self.seed}-{self.produced}".encode()
        n = rng.choice([1, 1, 2, 3])
        batch = rec.build_batch([(None, value + b"/%d" % k, []) for k in range(n)],
                                timestamp_ms=self.clock.time_ms())
        # The producer's metadata: what some live broker last told it.
        live = [b for b in self.brokers.values() if b.up and b.image is not None]
        target = -1
        if live:
            view = rng.choice(live).image.topics.get(TOPIC)
            if view is not None and p in view.partitions:
                target = view.partitions[p].leader
        if target < 0:
            return value
        self._send(-1, target, "produce", p, acks, batch, value)
        return value

    def _serve_produce(self, b: SimBroker, p: int, acks: int, batch: bytes, value: bytes) -> None:
        (_, h), = rec.iter_batches(batch)  # (the CRC does not cover the stamped fields)
        timeout = self.rng.choice([200, 1000, 5000])
        out = b.rm.append_records([(TOPIC, p, bytearray(batch))], acks, timeout)

        def done(results):
            r = results[0]
            if r.error == 0 and acks == -1:
                # (epoch -2: the acked check compares offsets and CRC, not the epoch)
                info = BatchInfo(r.base_offset, r.base_offset + h.last_offset_delta, -2, h.crc)
                self.acked_batches.append((p, info, value))
                self._new_acks.append((p, info, value))
                self.acked += 1
                self._log(f"ACKED {value!r} p{p} at {r.base_offset} by broker {b.node_id}")
        if isinstance(out, list):
            done(out)
        else:
            self._spawn(b, out, done)

    def _delete_records(self) -> None:
        """DeleteRecords from an admin client to the partition's leader as some broker's
        metadata has it, up to an offset it saw committed (or -1: the high watermark)."""
        rng = self.rng
        p = rng.randrange(self.partitions)
        live = [b for b in self.brokers.values() if b.up and b.image is not None]
        if not live:
            return
        view = rng.choice(live).image.topics.get(TOPIC)
        if view is None or p not in view.partitions or view.partitions[p].leader < 0:
            return
        end = self.ledger_end[p]
        offset = -1 if rng.random() < 0.2 else rng.randrange(0, end + 1)
        self._send(-1, view.partitions[p].leader, "delete_records", p, offset)

    def _serve_delete_records(self, b: SimBroker, p: int, offset: int) -> None:
        part = b.rm.partitions.get((TOPIC, p))
        try:
            hw = part.high_watermark if part is not None else -1
            out = b.rm.delete_records(TOPIC, p, offset, self.rng.choice([200, 2000]))
        except KafkaError:
            return  # not the leader, or an offset past its high watermark
        required = hw if offset == -1 else offset

        def done(result):
            code = ErrorCode.NONE if isinstance(result, int) else result[0]
            if code != ErrorCode.NONE:
                return
            self.deletes_done += 1
            self._log(f"DELETE RECORDS p{p} below {required} acknowledged by broker {b.node_id}")
            # Kafka's DelayedDeleteRecords: answered once every replica on a live
            # broker (as the leader's metadata has it) has its log start there.
            for r in part.replicas:
                rb = self.brokers[r]
                bi = b.image.brokers.get(r)
                rpart = rb.rm.partitions.get((TOPIC, p)) if rb.up else None
                if rpart is None or bi is None or bi.fenced or r == b.node_id:
                    continue
                # (A restarted replica keeps its log start: the file survives a kill.)
                if rpart.log_start_offset < required:
                    self.fail(f"DeleteRecords below {required} of p{p} acknowledged by broker "
                              f"{b.node_id} while replica {r} starts at {rpart.log_start_offset}")
        if isinstance(out, int):
            done(out)
        else:
            self._spawn(b, out, done)

    # -- faults -------------------------------------------------------------------------------
    def _fault(self) -> None:
        rng = self.rng
        up = [b for b in self.brokers.values() if b.up]
        leaders = [b for b in up if any(part.is_leader for part in b.rm.partitions.values())]
        kind = rng.random()
        if kind < 0.3 and up:
            b = rng.choice(leaders) if leaders and rng.random() < 0.6 else rng.choice(up)
            clean = rng.random() < 0.25
            self._log(f"{'SHUTDOWN' if clean else 'CRASH'} broker {b.node_id}")
            if clean:
                # Controlled shutdown: the last heartbeat asks to shut down and the
                # controller fences the broker at once (KRaft).
                if b.broker_epoch >= 0:
                    try:
                        run_now(self.controller.broker_heartbeat(
                            b.node_id, b.broker_epoch, b.image.offset, False, True))
                    except KafkaError:
                        pass
            else:
                self.crashes += 1
            self._stop_broker(b, clean)
            self._push(rng.randrange(50, 2000), "restart", b.node_id)
        elif kind < 0.5:
            # Cut a broker off the controller: no heartbeats, metadata or AlterPartition;
            # it is fenced at its session timeout and keeps serving what it believes.
            i = rng.choice(self.ids)
            self._log(f"ISOLATE broker {i} from the controller")
            self._block(i, [CONTROLLER])
        elif kind < 0.65:
            # Cut a broker off the other brokers (fetches, and produces from elsewhere).
            i = rng.choice(self.ids)
            self._log(f"ISOLATE broker {i} from the brokers")
            self._block(i, [j for j in self.ids if j != i] + [-1])
        elif kind < 0.75:
            i = rng.choice(self.ids)
            self._log(f"ISOLATE broker {i} from everyone")
            self._block(i, [j for j in self.ids if j != i] + [-1, CONTROLLER])
        elif kind < 0.88 and up:
            # SIGSTOP: the broker does nothing for longer than replica.lag.time.max.ms.
            b = rng.choice(up)
            d = self.lag_time_max_ms + rng.randrange(1, 2 * self.lag_time_max_ms)
            self._log(f"PAUSE broker {b.node_id} for {d} ms")
            b.paused_until = self.clock.now_ms + d
        else:
            # The clock jumps (a VM suspended, every process at once): every follower
            # looks out of date to its leader at its next ISR check.
            d = self.lag_time_max_ms + rng.randrange(1, self.lag_time_max_ms)
            self._log(f"CLOCK JUMP {d} ms")
            self.clock.advance(d)

    def _block(self, i: int, others: list[int]) -> None:
        for j in others:
            self.blocked.add((i, j))
            self.blocked.add((j, i))
        self._push(self.rng.randrange(100, 3 * self.session_timeout_ms), "unblock", i,
                   tuple(others))

    def _heal(self) -> None:
        self._log("HEAL ALL")
        self.healed_at = self.clock.now_ms
        self.blocked.clear()
        for b in self.brokers.values():
            b.paused_until = -1
            if not b.up:
                self.restarts += 1
                self._start_broker(b)

    # -- invariants ---------------------------------------------------------------------------
    def _check_controller_image(self, image: MetadataImage) -> None:
        t = image.topics.get(TOPIC)
        if t is None:
            return
        for p, pi in t.partitions.items():
            where = f"controller p{p} {pi}"
            if not set(pi.isr) <= set(pi.replicas) or len(set(pi.isr)) != len(pi.isr):
                self.fail(f"{where}: ISR not a set within the replicas")
            if not set(pi.elr) <= set(pi.replicas) or set(pi.elr) & set(pi.isr):
                self.fail(f"{where}: ELR not within the replicas, or overlapping the ISR")
            if pi.leader >= 0 and pi.leader not in pi.isr:
                self.fail(f"{where}: leader {pi.leader} not in the ISR")
            prev = self.last_partition_state.get(p)
            if prev is not None:
                leader, epoch, pepoch, isr = prev
                if pi.leader_epoch < epoch or pi.partition_epoch < pepoch:
                    self.fail(f"{where}: epochs went back from {epoch}/{pepoch}")
                if pi.leader != leader and pi.leader_epoch == epoch:
                    self.fail(f"{where}: leader changed {leader} -> {pi.leader} without a new "
                              f"leader epoch")
                if pi.leader_epoch > epoch and pi.leader >= 0 and pi.leader != leader:
                    self.elections += 1
                    if pi.leader not in isr:
                        self.elr_elections += 1
            self.last_partition_state[p] = (pi.leader, pi.leader_epoch, pi.partition_epoch,
                                            pi.isr)

    def check(self) -> None:
        if self.errors:
            self.fail(self.errors[0])
        cparts = self._controller_partitions()
        for p in range(self.partitions):
            cp = cparts.get(p)
            # Leaders first: they extend the ledger, followers are checked against it.
            order = sorted((b for b in self.brokers.values() if b.up),
                           key=lambda b: not self._leads(b, p))
            for b in order:
                part = b.rm.partitions.get((TOPIC, p))
                if part is None:
                    continue
                self._check_replica(b, p, part, cp)
        # An acknowledged batch is committed from the event that acknowledged it on (the
        # leader's high watermark covered it), and the ledger never changes after: one
        # look at each is enough.
        for p, info, value in self._new_acks:
            led = self._ledger_batch(p, info.base_offset)
            if led is None or led.crc != info.crc or led.last_offset != info.last_offset:
                self.fail(f"acknowledged acks=all batch {value!r} at p{p} offset "
                          f"{info.base_offset} is not committed (ledger has {led}, ends at "
                          f"{self.ledger_end[p]})")
        self._new_acks.clear()

    def _leads(self, b: SimBroker, p: int) -> bool:
        part = b.rm.partitions.get((TOPIC, p))
        return part is not None and part.is_leader

    def _ledger_batch(self, p: int, base: int) -> BatchInfo | None:
        from bisect import bisect_left
        led = self.ledger[p]
        i = bisect_left(led, base, key=lambda x: x.base_offset)
        return led[i] if i < len(led) and led[i].base_offset == base else None

    def _check_replica(self, b: SimBroker, p: int, part, cp) -> None:
        node = b.node_id
        where = f"broker {node} p{p} ({part.role}, epoch {part.leader_epoch})"
        if not set(part.isr) <= set(part.replicas):
            self.fail(f"{where}: ISR {part.isr} not within the replicas {part.replicas}")
        ekey = (node, b.incarnation, p)
        if part.leader_epoch < self.broker_epochs.get(ekey, -1):
            self.fail(f"{where}: leader epoch went back from {self.broker_epochs[ekey]}")
        self.broker_epochs[ekey] = part.leader_epoch
        hw = part.high_watermark
        leo = part.log_end_offset
        if hw > leo:
            self.fail(f"{where}: high watermark {hw} above the log end {leo}")
        if part.is_leader:
            if node not in part.isr:
                self.fail(f"{where}: a leader outside its own ISR {part.isr}")
            self.deleted_below[p] = max(self.deleted_below[p], part.log_start_offset)
            other = self.epoch_leaders.setdefault((p, part.leader_epoch), node)
            if other != node:
                self.fail(f"{where}: two leaders of epoch {part.leader_epoch}: {other} and {node}")
            key = (node, b.incarnation, p, part.leader_epoch)
            prev = self.leader_hw.get(key, -1)
            if hw < prev:
                self.fail(f"{where}: leader high watermark went back from {prev} to {hw}")
            self.leader_hw[key] = hw
        # How far this log must match the ledger: its own high watermark (c); the whole
        # ledger for the controller's current leader and live ISR and ELR members (a, b).
        must = hw
        current_leader = cp is not None and part.is_leader and cp.leader == node \
            and cp.leader_epoch == part.leader_epoch
        # KIP-966: an ELR member left the ISR while it was below min.insync.replicas, so
        # the high watermark has not moved past its log end since: it is a safe leader.
        in_isr = cp is not None and (node in cp.isr or node in cp.elr)
        if current_leader or in_isr:
            must = max(must, self.ledger_end[p])
            if leo < self.ledger_end[p]:
                what = "the current leader" if current_leader else \
                    "an ISR member" if node in cp.isr else "an ELR member"
                self.fail(f"{where}: {what} ends at {leo}, below the committed offset "
                          f"{self.ledger_end[p]} (controller: {cp})")
        vkey = (node, b.incarnation, p)
        upto, seen_leo = self.verified.get(vkey, (part.log_start_offset, leo))
        if leo < seen_leo or leo < upto:
            upto = min(upto, leo)  # truncated: what is left was verified
        upto = max(upto, part.log_start_offset)
        if must > upto:
            ledger_end = self.ledger_end[p]
            for bi in _batches(part.log, upto, must):
                if bi.last_offset < self.deleted_below[p]:
                    # Deleted on the leader: a follower that diverged below its leader's
                    # log start is not truncated there (the leader's earliest epoch
                    # starts at its log start, Kafka's truncateFromStart, so the
                    # divergence answer ends there) and may keep other records until its
                    # own log start follows; Kafka promises nothing about deleted ones.
                    continue
                if bi.base_offset < ledger_end:
                    led = self._ledger_batch(p, bi.base_offset)
                    if led != bi:
                        self.fail(f"{where}: batch {bi} below the committed offset {ledger_end} "
                                  f"differs from the committed {led}")
                else:
                    # A new high watermark: its batches become committed. Followers too: a
                    # leader's high watermark may move and its leadership end within one
                    # event (an ISR shrink applied, then the fencing), and its follower
                    # self keeps that high watermark; the current leader is checked
                    # against what any replica claimed.
                    self.ledger[p].append(bi)
                    self.ledger_end[p] = ledger_end = bi.last_offset + 1
            upto = must
        self.verified[vkey] = (upto, leo)

    def _converged(self) -> str | None:
        """None when every replica matches the leader; else what is still missing."""
        cparts = self._controller_partitions()
        for p in range(self.partitions):
            cp = cparts.get(p)
            if cp is None or cp.leader < 0:
                return f"p{p} has no leader"
            if set(cp.isr) != set(cp.replicas):
                return f"p{p} ISR {cp.isr} is not all replicas"
            lb = self.brokers[cp.leader]
            if not lb.up:
                return f"p{p} leader {cp.leader} is down"
            lpart = lb.rm.partitions.get((TOPIC, p))
            if lpart is None or not lpart.is_leader or lpart.leader_epoch != cp.leader_epoch:
                return f"p{p} leader {cp.leader} has not taken over"
            if lpart.high_watermark != lpart.log_end_offset:
                return f"p{p} leader high watermark {lpart.high_watermark} below {lpart.log_end_offset}"
            for r in cp.replicas:
                b = self.brokers[r]
                part = b.rm.partitions.get((TOPIC, p)) if b.up else None
                if part is None or part.log_end_offset != lpart.log_end_offset:
                    return f"p{p} replica {r} not at the leader's log end"
                if part.high_watermark != lpart.high_watermark:
                    return f"p{p} replica {r} high watermark {part.high_watermark}"
                # Log starts may differ: a follower keeps a log start its old leader moved
                # for a DeleteRecords that was never acknowledged (Kafka's too); what both
                # hold must be the same batches.
                start = max(part.log_start_offset, lpart.log_start_offset)
                if r != cp.leader and _batches(part.log, start, part.log_end_offset) != \
                        _batches(lpart.log, start, lpart.log_end_offset):
                    return f"p{p} replica {r} differs from the leader"
        return None

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> "Simulation":
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> "Simulation":
        rng = self.rng
        c = self.controller
        run_now(c.ensure_cluster_id())
        for b in self.brokers.values():
            self._start_broker(b)
        # Register everyone before the topic exists (placement needs live brokers).
        for b in self.brokers.values():
            b.broker_epoch = run_now(c.register_broker(b.node_id, f"broker-{b.node_id}", 9092,
                                                       None, "repsim", previous_broker_epoch=-1))
            run_now(c.broker_heartbeat(b.node_id, b.broker_epoch, c.image.offset, False, False))
        run_now(c.create_topic(TOPIC, self.partitions, 3, {}))
        self._push(50, "controller_tick")
        self._push(rng.randrange(1, 30), "produce_tick")
        if self.delete_records:
            self._push(rng.randrange(200, 1500), "delete_records_tick")
        self._push(rng.randrange(100, 600), "fault")
        final_value = None
        final_at = 0
        while True:
            t_event = self.heap[0][0] if self.heap else None
            t_timer = self.loop.next_timer_ms()
            if t_timer is not None and (t_event is None or t_timer < t_event):
                self.clock.now_ms = max(self.clock.now_ms, t_timer)
                self.loop.run_due()
            else:
                if t_event is None:
                    self.fail("ran out of events")
                t, _, kind, data = heapq.heappop(self.heap)
                self.clock.now_ms = max(self.clock.now_ms, t)
                self._event(kind, data)
                self.loop.run_due()
            self.events += 1
            self.step += 1
            self.check()
            if self.healed_at is None and self.events >= self.steps:
                self._heal()
            if self.healed_at is not None:
                if final_value is None or (self.clock.now_ms - final_at > 2000
                                           and not self._acked_value(final_value)):
                    final_value = self._produce(final=True)
                    final_at = self.clock.now_ms
                if self._acked_value(final_value):
                    why = self._converged()
                    if why is None:
                        return self
                if self.clock.now_ms - self.healed_at > self.heal_ms:
                    self.fail(f"no convergence {self.heal_ms} ms after healing: "
                              f"{self._converged() or 'final record not acknowledged'}; "
                              f"controller {dict(self._controller_partitions())}")

    def _acked_value(self, value: bytes | None) -> bool:
        return value is not None and any(v == value for _, _, v in self.acked_batches[-20:])

    def _event(self, kind: str, data: tuple) -> None:
        rng = self.rng
        healed = self.healed_at is not None
        if kind == "controller_tick":
            self._on_controller_tick()
            return
        if kind == "delete_records_tick":
            if not healed:
                self._delete_records()
                self._push(rng.randrange(200, 1500), "delete_records_tick")
            return
        if kind == "produce_tick":
            if not healed:
                self._produce()
                self._push(rng.randrange(1, 40), "produce_tick")
            return
        if kind == "fault":
            if not healed:
                self._fault()
                self._push(rng.randrange(100, 1200), "fault")
            return
        if kind == "unblock":
            i, others = data
            for j in others:
                self.blocked.discard((i, j))
                self.blocked.discard((j, i))
            return
        if kind == "restart":
            b = self.brokers[data[0]]
            if not b.up:
                self.restarts += 1
                self._start_broker(b)
            return
        # Messages: (src, dst, ...); timers: (node, incarnation, ...).
        if kind in ("register", "heartbeat", "alter_partition"):
            src, dst, *rest = data
            if (src, dst) in self.blocked:
                return
            self._controller_receive(src, kind, tuple(rest))
            return
        if kind in ("registered", "heartbeat_answer", "alter_answer", "fetch", "fetch_answer",
                    "list_offsets", "list_offsets_answer", "produce", "meta_deliver",
                    "delete_records"):
            src, dst, *rest = data
            b = self.brokers.get(dst)
            if b is None or not b.up or (src, dst) in self.blocked:
                return
            if b.paused_until > self.clock.now_ms:
                heapq.heappush(self.heap, (b.paused_until, self._next_seq(), kind, data))
                return
            self._broker_receive(b, src, kind, rest)
            return
        node, inc, *rest = data
        b = self.brokers[node]
        if not b.up or b.incarnation != inc:
            return
        if b.paused_until > self.clock.now_ms:
            heapq.heappush(self.heap, (b.paused_until, self._next_seq(), kind, data))
            return
        if kind == "broker_tick":
            self._broker_tick(b)
        elif kind == "meta_pull":
            if (CONTROLLER, node) not in self.blocked:
                self._send(CONTROLLER, node, "meta_deliver", inc, len(self.history) - 1)
            self._push(rng.randrange(5, 40), "meta_pull", node, inc)
        elif kind == "checkpoint":
            b.rm.checkpoint_high_watermarks()
            self._push(self.checkpoint_ms, "checkpoint", node, inc)
        elif kind == "isr_tick":
            b.rm.maybe_update_isr()
            self._push(max(1, self.lag_time_max_ms // 2), "isr_tick", node, inc)
        elif kind == "fetch_tick":
            self._fetch_tick(b, rest[0])
        elif kind == "fetch_timeout":
            p, fid, _part, _epoch = rest
            self._next_fetch(b, p, fid, self.fetch_backoff_ms)
        elif kind == "alter_timeout":
            (req_id,) = rest
            part, proposed = b.pending_alter.pop(req_id, (None, None))
            if part is not None and b.rm.partitions.get((part.topic, part.index)) is part \
                    and part.isr_change_failed(proposed, None):
                self._send_alter(b, inc, part, proposed)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _broker_receive(self, b: SimBroker, src: int, kind: str, rest: list) -> None:
        if kind == "produce":
            p, acks, batch, value = rest
            self._serve_produce(b, p, acks, batch, value)
            return
        if kind == "delete_records":
            p, offset = rest
            self._serve_delete_records(b, p, offset)
            return
        inc, *rest = rest
        if kind in ("fetch", "list_offsets"):
            # A request: answered to whichever incarnation asked (a stale one drops it).
            if kind == "fetch":
                self._serve_fetch(b, src, inc, *rest)
            else:
                self._serve_list_offsets(b, src, inc, *rest)
            return
        if inc != b.incarnation:
            return  # an answer for a previous incarnation of this broker
        if kind == "registered":
            (epoch,) = rest
            b.broker_epoch = epoch
            self._log(f"broker {b.node_id} registered, broker epoch {epoch}")
        elif kind == "heartbeat_answer":
            epoch, code = rest
            if code in (ErrorCode.STALE_BROKER_EPOCH, ErrorCode.BROKER_ID_NOT_REGISTERED) \
                    and epoch == b.broker_epoch:
                b.broker_epoch = -1  # register again (ClusterMember._lifecycle)
        elif kind == "alter_answer":
            req_id, res = rest
            self._on_alter_answer(b, req_id, res)
        elif kind == "fetch_answer":
            self._on_fetch_answer(b, src, *rest)
        elif kind == "list_offsets_answer":
            self._on_list_offsets_answer(b, *rest)
        elif kind == "meta_deliver":
            (upto,) = rest
            self._apply_metadata(b, upto)

    def close(self) -> None:
        for b in self.brokers.values():
            if b.up:
                for task in list(b.tasks):
                    task.cancel()
        try:
            self.loop.run_due()
        except Exception:  # noqa: BLE001 - tearing down
            pass
        for b in self.brokers.values():
            if b.up and b.lm is not None:
                b.lm.close_all(clean=False)
                b.up = False
        self.loop.close()
        shutil.rmtree(self._base_dir, ignore_errors=True)


def _tmp_base() -> str | None:
    # tmpfs when there is one: the logs fsync on truncation and epoch changes, which
    # costs nothing there and a lot on a shared disk.
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def run_seed(seed: int, *, steps: int = 1500, trace: bool = False, **kw) -> Simulation:
    return Simulation(seed, steps=steps, trace=trace, **kw).run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kafkette.broker.replication_sim",
                                description="Deterministic simulation of partition replication.")
    p.add_argument("--seeds", type=int, default=200, help="number of seeds to run")
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--seed", type=int, help="run this one seed")
    p.add_argument("--steps", type=int, default=1500, help="events per seed before healing")
    p.add_argument("--brokers", type=int, choices=(3, 4, 5),
                   help="default: chosen by the seed (3, 4 or 5; replication factor 3)")
    p.add_argument("--trace", action="store_true", help="print every fault and decision")
    a = p.parse_args(argv)
    from kafkette.logging import configure_logging
    configure_logging("info" if a.trace else "error", json=False)
    seeds = [a.seed] if a.seed is not None else range(a.start, a.start + a.seeds)
    t0 = time.perf_counter()
    failures = 0
    events = elections = elr = crashes = acked = truncations = deletes = 0
    for s in seeds:
        try:
            sim = run_seed(s, steps=a.steps, trace=a.trace, brokers=a.brokers)
        except Exception as exc:  # an invariant, or the broker code itself blowing up
            failures += 1
            if not isinstance(exc, InvariantViolation):
                exc = f"seed {s}: {type(exc).__name__}: {exc}"
            extra = f" --brokers {a.brokers}" if a.brokers else ""
            print(f"FAIL {exc}\n  reproduce: python -m kafkette.broker.replication_sim "
                  f"--seed {s} --steps {a.steps}{extra} --trace", file=sys.stderr)
            continue
        events += sim.events
        elections += sim.elections
        elr += sim.elr_elections
        crashes += sim.crashes
        acked += sim.acked
        truncations += sim.truncations
        deletes += sim.deletes_done
    dt = time.perf_counter() - t0
    print(f"{len(seeds)} seeds, {a.steps} steps each before healing, {events} events in total, "
          f"{elections} elections ({elr} from the ELR), {crashes} crashes, {truncations} "
          f"truncations, {deletes} DeleteRecords, {acked} acks=all "
          f"records acknowledged; {failures} invariant violations; {dt:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
