"""The replica manager: the partitions this broker hosts, and every append and read
of their data (Kafka's ReplicaManager).

- It follows the metadata image: a partition assigned here gets a `Partition`
  (broker/partition.py) over its log; a leadership change makes it leader or
  follower (followers fetch from their leader: broker/replica_fetcher.py); a removed
  topic's logs are deleted.
- `append_records(entries, acks, timeout_ms)`: the Produce path. acks=0/1 answer once
  appended; acks=all waits in the produce purgatory until the high watermark covers
  the batch (REQUEST_TIMED_OUT at the timeout), as Kafka's DelayedProduce.
- `fetch_messages(params, partitions)`: the Fetch path for consumers and followers,
  with the KIP-74 byte budget, leader-epoch fencing (KIP-320), divergence answers for
  followers (KIP-279) and the long poll in the fetch purgatory (DelayedFetch).
- The high watermark of every partition is checkpointed in
  `replication-offset-checkpoint` in the data directory (Kafka's file and format), so a
  restarted broker does not expose more than was committed before it stopped.
- Log directory failures (KIP-112): when a log dir goes offline
  (kafkette.log.log_dirs), its partitions leave the follower fetchers and every
  request for them answers KAFKA_STORAGE_ERROR; Metadata lists this broker in their
  offline replicas. A partition that cannot be created because no directory is
  online answers the same.
- ISR upkeep (leader side): followers that fall behind for replica.lag.time.max.ms are
  proposed out of the ISR, caught-up ones back in, through `alter_isr` (the cluster
  member sends AlterPartition to the active controller; on a single node every
  partition has one replica and the ISR never changes).

- Big metadata changes are applied in slices: when one change assigns more than
  HOST_SLICE partitions whose logs do not exist yet (a CreateTopics or CreatePartitions
  of thousands), their logs are created by a task that yields to the event loop
  between slices (HOST_SLICE_MS to HOST_SLICE_MAX_MS long), so that no other
  connection stalls for the seconds the file system takes. Until a partition's turn comes it answers
  NOT_LEADER_OR_FOLLOWER (its leader is known), which clients retry. Kafka applies
  metadata deltas on its own publisher thread, off the request path, with the same
  effect: a client may see a new topic in Metadata before its leader serves it.

Everything here runs on the broker's one event loop; handlers call these methods and
never reach into logs.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from kafkette.broker.partition import LEADER, NotLeaderError, Partition
from kafkette.broker.purgatory import Purgatory, wait_until
from kafkette.controller.metadata_image import MetadataImage
from kafkette.errors import ErrorCode, KafkaError, KafkaStorageError, UnknownTopicOrPartitionError
from kafkette.log.log_manager import LogManager
from kafkette.log.partition_log import AppendResult, LogConfig
from kafkette.logging import get_logger

log = get_logger("kafkette.replica_manager")

HW_CHECKPOINT_FILE = "replication-offset-checkpoint"

__all__ = ["ReplicaManager", "NotLeaderError", "FetchParams", "FetchPartition",
           "FetchResult", "ProduceResult", "log_config_from_topic_configs"]


def log_config_from_topic_configs(cfg: dict[str, str]) -> LogConfig:
    """Effective topic configs (strings, as DescribeConfigs shows them) → LogConfig."""
    return LogConfig.from_properties(cfg)


@dataclass
class FetchParams:
    """The request-level part of a Fetch (Kafka's FetchParams)."""
    replica_id: int = -1          # >= 0: a follower's fetch
    max_wait_ms: int = 0
    min_bytes: int = 1
    max_bytes: int = 1 << 30
    isolation_level: int = 0      # 0 read_uncommitted, 1 read_committed
    # The consumer's client.rack (Fetch v11+; "" when unset). None: a pre-v11 fetch,
    # which Kafka serves from the leader only.
    rack_id: str | None = None

    @property
    def from_follower(self) -> bool:
        return self.replica_id >= 0


@dataclass
class FetchPartition:
    topic: str | None             # None: an unknown topic id
    partition: int
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1
    # A follower's own log start offset (Fetch v5+), which DeleteRecords waits for.
    log_start_offset: int = -1


@dataclass
class FetchResult:
    error: int = 0
    message: str | None = None
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: object = b""
    diverging_epoch: tuple[int, int] | None = None
    current_leader: tuple[int, int] | None = None  # NOT_LEADER_OR_FOLLOWER: (id, epoch)
    preferred_read_replica: int = -1  # KIP-392: fetch from this replica instead
    # read_committed: (producer id, first offset) of the aborted transactions in the
    # range read, for the consumer to skip (None for read_uncommitted, as Kafka).
    aborted_transactions: list[tuple[int, int]] | None = None


@dataclass
class ProduceResult:
    error: int = 0
    message: str | None = None
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    current_leader: tuple[int, int] | None = None
    appended: AppendResult | None = field(default=None, repr=False)
    # KIP-467: (index of the record in its batch, message) per refused record.
    record_errors: list[tuple[int, str]] | None = None


def read_hw_checkpoint(path: str) -> dict[tuple[str, int], int]:
    """Kafka's checkpoint format: a version line (0), a count line, then one
    `topic partition offset` line per partition. A torn or foreign file reads as
    empty: the high watermarks then start at the log start offsets and move up again
    as soon as the ISR confirms them."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
        if not lines or lines[0].strip() != "0":
            return {}
        count = int(lines[1])
        out = {}
        for line in lines[2:2 + count]:
            topic, p, off = line.rsplit(" ", 2)
            out[(topic, int(p))] = int(off)
        return out if len(out) == count else {}
    except (OSError, ValueError, IndexError):
        return {}


def write_hw_checkpoint(path: str, hws: dict[tuple[str, int], int]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"0\n{len(hws)}\n")
        for (topic, p), off in sorted(hws.items()):
            f.write(f"{topic} {p} {off}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: A metadata change creating more new logs than this creates them in slices.
HOST_SLICE = 200
#: How long one slice of log creation holds the event loop at least, and at most: a
#: slice lasts as long as the loop spent on everything else since the previous one,
#: within these bounds, so that log creation gets about half the loop when the broker
#: is busy (a client retrying its produce to the new partitions keeps it busy) and the
#: longest stall another connection sees stays about HOST_SLICE_MAX_MS.
HOST_SLICE_MS = 20
HOST_SLICE_MAX_MS = 100


class ReplicaManager:
    def __init__(self, node_id: int, log_manager: LogManager, topic_configs, clock, *,
                 lag_time_max_ms: int = 30000):
        self.node_id = node_id
        self.log_manager = log_manager
        self._held: list | None = None   # see hold_metadata
        self._topic_configs = topic_configs  # name -> effective config dict
        self.clock = clock
        self.lag_time_max_ms = lag_time_max_ms
        self.fetch_purgatory = Purgatory("fetch")
        self.produce_purgatory = Purgatory("produce")
        self.partitions: dict[tuple[str, int], Partition] = {}
        # Every partition of the cluster -> (leader, leader epoch), hosted here or not:
        # a request for a partition led elsewhere is NOT_LEADER_OR_FOLLOWER, not
        # UNKNOWN_TOPIC_OR_PARTITION.
        self.leaders: dict[tuple[str, int], tuple[int, int]] = {}
        self._checkpoint_path = os.path.join(str(log_manager.data_dir), HW_CHECKPOINT_FILE)
        self._checkpointed = read_hw_checkpoint(self._checkpoint_path)
        self._checkpoint_failing = False
        # Set by the cluster member: follower fetchers, and the AlterPartition sender.
        self.fetchers = None
        self.alter_isr: Callable[[Partition, tuple[int, ...]], None] | None = None
        self.closing = False
        self.image: MetadataImage | None = None
        self._tasks: list[asyncio.Task] = []
        # replica.selector.class is RackAwareReplicaSelector (KIP-392).
        self.rack_aware = False
        # Partitions assigned here whose log could not be created (no online log dir).
        self._unhosted_offline: set[tuple[str, int]] = set()
        # Partitions assigned here whose logs the hosting task creates in slices (see
        # the module docstring), in the order they were assigned; and that task.
        self._pending_host: dict[tuple[str, int], None] = {}
        self._host_task: asyncio.Task | None = None
        log_manager.failure_channel.add_listener(self._on_log_dir_offline)

    # -- metadata --------------------------------------------------------------
    def hold_metadata(self) -> None:
        """Until `release_metadata`, metadata changes are collected, not applied: a
        broker replaying its local metadata log at start-up would otherwise take every
        leadership the log ever recorded for a moment, in order (Kafka's broker publishes
        to its ReplicaManager only once it has caught up)."""
        self._held = [None, None]   # [image before the first held change, latest image]

    def release_metadata(self) -> None:
        held, self._held = self._held, None
        if held is not None and held[0] is not None:
            self.on_metadata_update(held[0], held[1])

    def on_metadata_update(self, old: MetadataImage, new: MetadataImage) -> None:
        held = self._held
        if held is not None:
            if held[0] is None:
                held[0] = old
            held[1] = new
            return
        self.image = new
        now = self.clock.monotonic_ms()
        pending = self._pending_host
        for name, t in old.topics.items():
            nt = new.topics.get(name)
            if nt is None or nt.topic_id != t.topic_id:
                for p in t.partitions:
                    self.leaders.pop((name, p), None)
                    self._unhosted_offline.discard((name, p))
                    pending.pop((name, p), None)
                    part = self.partitions.pop((name, p), None)
                    if part is not None:
                        if self.fetchers is not None:
                            self.fetchers.remove(part)
                        self.log_manager.delete(name, p)
                        self._wake((name, p))
        new_logs: list[tuple[str, int]] = []   # assigned here, with no log yet
        roles: list[Partition] = []
        for name, t in new.topics.items():
            ot = old.topics.get(name)
            if ot is not None and ot.topic_id == t.topic_id and ot.partitions == t.partitions \
                    and ot.configs == t.configs:
                continue
            lc = None
            for p, pi in t.partitions.items():
                key = (name, p)
                self.leaders[key] = (pi.leader, pi.leader_epoch)
                part = self.partitions.get(key)
                if self.node_id not in pi.replicas:
                    pending.pop(key, None)
                    if part is not None:
                        # Reassigned away from us: stop serving it (the log stays
                        # until the topic goes; reassignment is not implemented).
                        if self.fetchers is not None:
                            self.fetchers.remove(part)
                        del self.partitions[key]
                        self._wake(key)
                    continue
                if part is None:
                    if key not in pending:   # pending: hosted from the latest image
                        new_logs.append(key)
                    continue
                if lc is None:
                    lc = log_config_from_topic_configs(self._topic_configs(name, new))
                part.log.config = lc
                changed = part.apply_metadata(pi.leader, pi.leader_epoch, pi.partition_epoch,
                                              pi.replicas, pi.isr, now,
                                              pi.leader_recovery_state)
                if changed is not None:
                    self._on_role_change(part, quiet=True)
                    roles.append(part)
                elif part.is_leader and part.maybe_increment_high_watermark():
                    self._wake(key)
        if new_logs:
            # A log already on disk (opened at start) costs nothing to host; only new
            # logs cost file creation, and only many of them are worth deferring.
            # Internal topics are always hosted at once: the coordinators' listeners,
            # which run next, look for their partitions.
            fresh = [k for k in new_logs
                     if self.log_manager.get(*k) is None and not k[0].startswith("__")]
            if len(fresh) > HOST_SLICE and _loop_running():
                fresh_set = set(fresh)
                now_keys = [k for k in new_logs if k not in fresh_set]
                pending.update(dict.fromkeys(fresh))
            else:
                now_keys = new_logs
            configs: dict[str, LogConfig] = {}
            for name, p in now_keys:
                lc = configs.get(name)
                if lc is None:
                    lc = configs[name] = log_config_from_topic_configs(
                        self._topic_configs(name, new))
                self._host(name, p, new.topics[name].partitions[p], lc, now, roles=roles)
            if pending and (self._host_task is None or self._host_task.done()):
                self._host_task = asyncio.ensure_future(self._host_pending())
        self._log_role_changes(roles)

    async def _host_pending(self) -> None:
        """Create the logs of `_pending_host` in slices (HOST_SLICE_MS to HOST_SLICE_MAX_MS),
        yielding to the event loop between slices. Each partition is hosted from the image
        as it is when its turn comes (a topic deleted meanwhile is skipped)."""
        pending = self._pending_host
        started, hosted, roles = time.monotonic(), 0, []
        log.info("creating partition logs in slices", partitions=len(pending))
        elsewhere = 0.0
        while pending and not self.closing:
            slice_s = min(max(elsewhere, HOST_SLICE_MS / 1000), HOST_SLICE_MAX_MS / 1000)
            deadline = time.monotonic() + slice_s
            image = self.image
            now = self.clock.monotonic_ms()
            configs: dict[str, LogConfig] = {}
            while pending and time.monotonic() < deadline:
                key = next(iter(pending))
                del pending[key]
                name, p = key
                t = image.topics.get(name)
                pi = t.partitions.get(p) if t is not None else None
                if pi is None or self.node_id not in pi.replicas or key in self.partitions:
                    continue
                lc = configs.get(name)
                if lc is None:
                    lc = configs[name] = log_config_from_topic_configs(
                        self._topic_configs(name, image))
                try:
                    if self._host(name, p, pi, lc, now, roles=roles) is not None:
                        hosted += 1
                except Exception:  # noqa: BLE001 - the other partitions must still come
                    log.exception("hosting a partition failed", topic=name, partition=p)
            yielded = time.monotonic()
            await asyncio.sleep(0)
            elsewhere = time.monotonic() - yielded
        self._log_role_changes(roles)
        log.info("partition logs created", partitions=hosted,
                 seconds=round(time.monotonic() - started, 3))

    def _ensure_hosting(self) -> None:
        """The hosting task died with its event loop (an asyncio.run that ended, as in a
        test or a tool): start another, or without a loop host the rest now."""
        if self._host_task is not None and not self._host_task.done():
            return
        if _loop_running():
            self._host_task = asyncio.ensure_future(self._host_pending())
            return
        image, now = self.image, self.clock.monotonic_ms()
        roles: list[Partition] = []
        while self._pending_host:
            key = next(iter(self._pending_host))
            del self._pending_host[key]
            t = image.topics.get(key[0])
            pi = t.partitions.get(key[1]) if t is not None else None
            if pi is not None and self.node_id in pi.replicas and key not in self.partitions:
                lc = log_config_from_topic_configs(self._topic_configs(key[0], image))
                self._host(key[0], key[1], pi, lc, now, roles=roles)
        self._log_role_changes(roles)

    async def wait_hosted(self, timeout_s: float) -> bool:
        """Wait (without holding the loop) until every pending log is created, at most
        `timeout_s`; True when none is pending. CreateTopics and CreatePartitions answer
        after this on a single node, so that their partitions are writable once answered,
        as they were when the logs were created inline."""
        deadline = time.monotonic() + timeout_s
        while self._pending_host:
            if self.closing or time.monotonic() >= deadline:
                return False
            self._ensure_hosting()
            task = self._host_task
            if task is None or task.done():
                continue   # hosted inline (no loop): the loop test ends it
            await asyncio.wait([task], timeout=max(0.0, deadline - time.monotonic()))
        return True

    @property
    def hosting_pending(self) -> int:
        """Partitions assigned here whose logs are still to be created (see HOST_SLICE)."""
        return len(self._pending_host)

    def _log_role_changes(self, parts: list[Partition]) -> None:
        """One line per role change when a metadata change makes a few; one summary
        line (the details at debug) when it makes many, e.g. a CreateTopics of 5,000
        partitions, which would otherwise write 5,000 lines from the event loop."""
        if not parts:
            return
        if len(parts) <= 10:
            for part in parts:
                self._log_role_change(part)
            return
        for part in parts:
            self._log_role_change(part, log.debug)
        leaders = sum(1 for part in parts if part.is_leader)
        log.info("partition roles changed", partitions=len(parts), leaders=leaders,
                 followers=len(parts) - leaders,
                 topics=sorted({part.topic for part in parts})[:10])

    def _host(self, name: str, p: int, pi, lc: LogConfig, now: int, *,
              roles: list | None = None) -> Partition | None:
        """Start hosting a partition assigned here. None when its log cannot be created
        (no online log dir, or a full disk): it answers KAFKA_STORAGE_ERROR, and each
        request for it tries again (a full disk may have room by then). `roles`: collect
        a role change there for one summary line (_log_role_changes) instead of
        logging it."""
        key = (name, p)
        # create() returns a log already opened at start-up with its config replaced:
        # logs are loaded before the topic configs are known.
        try:
            plog = self.log_manager.create(name, p, lc)
        except KafkaStorageError as e:
            if key not in self._unhosted_offline:
                log.error("partition log cannot be created", topic=name, partition=p,
                          error=e.message)
            self._unhosted_offline.add(key)
            return None
        if key in self._unhosted_offline:
            self._unhosted_offline.discard(key)
            log.info("partition log created", topic=name, partition=p)
        part = self.partitions[key] = Partition(name, p, plog, self.node_id,
                                                self._checkpointed.get(key, 0))
        changed = part.apply_metadata(pi.leader, pi.leader_epoch, pi.partition_epoch,
                                      pi.replicas, pi.isr, now, pi.leader_recovery_state)
        if changed is not None:
            self._on_role_change(part, quiet=roles is not None)
            if roles is not None:
                roles.append(part)
        elif part.is_leader and part.maybe_increment_high_watermark():
            self._wake(key)
        return part

    def _retry_host(self, topic: str, index: int) -> Partition | None:
        t = self.image.topics.get(topic) if self.image is not None else None
        pi = t.partitions.get(index) if t is not None else None
        if pi is None or self.node_id not in pi.replicas:
            return None
        lc = log_config_from_topic_configs(self._topic_configs(topic, self.image))
        return self._host(topic, index, pi, lc, self.clock.monotonic_ms())

    def _on_role_change(self, part: Partition, *, quiet: bool = False) -> None:
        if self.fetchers is not None:
            if part.is_leader or part.leader < 0 or part.log.offline:
                self.fetchers.remove(part)
            else:
                self.fetchers.add(part, part.leader)
        if not quiet:
            self._log_role_change(part)
        self._wake((part.topic, part.index))

    def _log_role_change(self, part: Partition, emit=None) -> None:
        # A single-replica partition has nothing to tell (a node with the 50 partitions
        # of __consumer_offsets would log 50 lines at every start).
        if emit is None:
            emit = log.info if len(part.replicas) > 1 else log.debug
        emit("partition role changed", topic=part.topic, partition=part.index,
             role=part.role, leader=part.leader, leader_epoch=part.leader_epoch,
             isr=list(part.isr), log_end_offset=part.log_end_offset,
             high_watermark=part.high_watermark)

    def _wake(self, key) -> None:
        self.fetch_purgatory.notify(key)
        self.produce_purgatory.notify(key)

    def _on_log_dir_offline(self, log_dir: str) -> None:
        """Kafka's ReplicaManager.handleLogDirFailure: stop fetching for the partitions
        of the dir and wake whatever waits on them (they answer KAFKA_STORAGE_ERROR)."""
        for key, part in self.partitions.items():
            if part.log.log_dir == log_dir:
                if self.fetchers is not None:
                    self.fetchers.remove(part)
                self._wake(key)

    @property
    def offline_partitions(self) -> set[tuple[str, int]]:
        """Partitions assigned here that cannot be served: their log dir is offline."""
        if not self.log_manager.failure_channel.offline:
            return set(self._unhosted_offline)
        out = {key for key, part in self.partitions.items() if part.log.offline}
        return out | self._unhosted_offline if self._unhosted_offline else out

    def remove_stray_logs(self, image: MetadataImage) -> None:
        """Logs on disk for topics the metadata no longer has (deleted while down)."""
        for topic, p in list(self.log_manager.partitions()):
            if (topic, p) not in self.partitions and (topic, p) not in self._pending_host:
                log.info("deleting stray log", topic=topic, partition=p)
                self.log_manager.delete(topic, p)

    # -- lookups -----------------------------------------------------------------
    def get_partition(self, topic: str, index: int) -> Partition:
        """The hosted partition, leader or follower (UNKNOWN_TOPIC_OR_PARTITION, or
        NOT_LEADER_OR_FOLLOWER when it exists but is not hosted here;
        KAFKA_STORAGE_ERROR when its log dir is offline or its log cannot be created)."""
        part = self.partitions.get((topic, index))
        if part is None and self._pending_host and (topic, index) in self._pending_host:
            self._ensure_hosting()
            part = self.partitions.get((topic, index))
        if part is None and (topic, index) in self._unhosted_offline:
            part = self._retry_host(topic, index)
            if part is None:
                raise KafkaStorageError(f"the log of {topic}-{index} cannot be created")
        if part is None:
            known = self.leaders.get((topic, index))
            if known is None:
                raise UnknownTopicOrPartitionError()
            raise NotLeaderError(None, *known)
        if part.log.offline:
            raise KafkaStorageError(f"the log dir of {topic}-{index} is offline")
        return part

    def partition(self, topic: str, index: int) -> Partition:
        """The partition if this broker leads it (NOT_LEADER_OR_FOLLOWER otherwise)."""
        part = self.get_partition(topic, index)
        part.check_leader()
        return part

    # -- produce -----------------------------------------------------------------
    def append_records(self, entries, required_acks: int, timeout_ms: int = 30000, *,
                       origin: str = "client"):
        """Append `entries` ((topic, partition, records) triples) as leader. Returns a
        list of ProduceResult, in order, or (acks=all, some not yet replicated) an
        awaitable of it. origin "coordinator": a coordinator's own write (Kafka's
        AppendOrigin.COORDINATOR), see PartitionLog.append."""
        now = self.clock.time_ms()
        results = []
        delayed = []
        for i, (topic, index, records) in enumerate(entries):
            try:
                part = self.partition(topic, index)
                res = part.append_as_leader(records, required_acks, now, origin=origin)
            except KafkaError as e:
                r = ProduceResult(error=int(e.code), message=e.message,
                                  record_errors=getattr(e, "record_errors", None))
                if isinstance(e, NotLeaderError):
                    r.current_leader = (e.leader, e.leader_epoch)
                results.append(r)
                continue
            results.append(ProduceResult(base_offset=res.base_offset,
                                         log_append_time_ms=res.log_append_time_ms,
                                         log_start_offset=res.log_start_offset, appended=res))
            key = (topic, index)
            self.fetch_purgatory.notify(key)  # followers and long polls wait for data
            if part.high_watermark > res.last_offset or res.base_offset < 0:
                self.produce_purgatory.notify(key)
            elif required_acks == -1:
                delayed.append((i, part, part.leader_epoch, res.last_offset + 1))
        if not delayed:
            return results
        return self._await_replication(results, delayed, timeout_ms)

    async def _await_replication(self, results, delayed, timeout_ms: int):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        keys = [(part.topic, part.index) for _, part, _, _ in delayed]

        def check():
            for i, part, epoch, required in delayed:
                if results[i].error == 0 and results[i].appended is not None \
                        and part.replication_error(required, epoch) is None:
                    return None
            return True

        await wait_until(self.produce_purgatory, keys, check, deadline, lambda: self.closing)
        for i, part, epoch, required in delayed:
            code = part.replication_error(required, epoch)
            if code is None:
                code = ErrorCode.REQUEST_TIMED_OUT
            if code:
                results[i] = ProduceResult(error=int(code), base_offset=-1,
                                           message=_produce_message(code, part))
        return results

    def await_replication(self, topic: str, index: int, required_offset: int,
                          leader_epoch: int, timeout_ms: int):
        """None when the high watermark already covers `required_offset` (with a
        large enough ISR), else an awaitable of the error code: 0 once it does,
        NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER or REQUEST_TIMED_OUT.
        For internal writers (the group coordinator's commits)."""
        part = self.partitions.get((topic, index))
        if part is None:
            return None
        if part.replication_error(required_offset, leader_epoch) == ErrorCode.NONE:
            return None
        return self._await_one(part, required_offset, leader_epoch, timeout_ms)

    async def _await_one(self, part, required_offset, leader_epoch, timeout_ms) -> int:
        loop = asyncio.get_running_loop()
        code = await wait_until(self.produce_purgatory, [(part.topic, part.index)],
                                lambda: part.replication_error(required_offset, leader_epoch),
                                loop.time() + timeout_ms / 1000, lambda: self.closing)
        return ErrorCode.REQUEST_TIMED_OUT if code is None else code

    # -- transaction markers ----------------------------------------------------
    async def write_txn_markers(self, producer_id: int, producer_epoch: int,
                                coordinator_epoch: int, commit: bool, partitions,
                                timeout_ms: int = 30000) -> dict[tuple[str, int], int]:
        """WriteTxnMarkers on the leaders: append a COMMIT/ABORT marker to each
        partition and wait until the ISR has it (Kafka appends markers with acks=all).
        Returns an error code per partition."""
        now = self.clock.time_ms()
        codes: dict[tuple[str, int], int] = {}
        waiting = []
        for topic, index in partitions:
            key = (topic, index)
            try:
                part = self.partition(topic, index)
                res = part.append_marker(producer_id, producer_epoch, coordinator_epoch,
                                         commit, now)
            except KafkaError as e:
                codes[key] = int(e.code)
                continue
            self.fetch_purgatory.notify(key)   # the LSO may have moved
            self.produce_purgatory.notify(key)
            codes[key] = ErrorCode.NONE
            w = self.await_replication(topic, index, res.last_offset + 1, part.leader_epoch,
                                       timeout_ms)
            if w is not None:
                waiting.append((key, w))
        for key, w in waiting:
            code = await w
            if code:
                codes[key] = int(code)
        return codes

    # -- fetch -------------------------------------------------------------------
    def fetch_messages(self, params: FetchParams, partitions: list[FetchPartition]):
        """Read every requested partition once; if fewer than min_bytes came back
        (and no error), wait in the fetch purgatory for appends (followers) or
        high-watermark moves (consumers) until max_wait_ms. Returns the list of
        FetchResult, or an awaitable of it."""
        results, total = self._read_all(params, partitions)
        if total >= params.min_bytes or params.max_wait_ms <= 0 or not partitions \
                or any(r.error or r.diverging_epoch for r in results):
            return results
        return self._delayed_fetch(params, partitions, [r.high_watermark for r in results])

    async def _delayed_fetch(self, params, partitions, first_hws):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.max_wait_ms / 1000
        keys = [(p.topic, p.partition) for p in partitions if p.topic is not None]
        last = []

        def check():
            results, total = self._read_all(params, partitions)
            last[:] = [results]
            if total >= params.min_bytes or any(r.error or r.diverging_epoch for r in results):
                return results
            if params.from_follower and [r.high_watermark for r in results] != first_hws:
                # A follower learns a new high watermark at once instead of at the end
                # of its long poll: a follower that becomes leader then exposes (and
                # keeps) everything that was acknowledged, even when the ISR left is
                # below min.insync.replicas and its high watermark cannot move (KIP-966).
                return results
            return None

        found = await wait_until(self.fetch_purgatory, keys, check, deadline,
                                 lambda: self.closing)
        return found if found is not None else last[0]

    def _read_all(self, params: FetchParams, partitions: list[FetchPartition]):
        """One pass over the requested partitions: (results, bytes read)."""
        # max_bytes 0 still returns one batch of the first partition with data (KIP-74).
        remaining = params.max_bytes
        total = 0
        out = []
        now = self.clock.monotonic_ms()
        from_follower = params.from_follower
        read_committed = params.isolation_level == 1 and not from_follower
        for p in partitions:
            if p.topic is None:
                out.append(FetchResult(error=ErrorCode.UNKNOWN_TOPIC_ID))
                continue
            try:
                part = self.get_partition(p.topic, p.partition)
                if from_follower or not part.is_leader:
                    # Followers fetch from the leader only. A v11+ consumer may read
                    # from a follower (KIP-392) up to the follower's high watermark.
                    if from_follower or params.rack_id is None or part.role is None:
                        part.check_leader()
                part.check_leader_epoch(p.current_leader_epoch)
                if params.rack_id and part.is_leader and self.rack_aware:
                    preferred = self._preferred_read_replica(part, p.fetch_offset,
                                                             params.rack_id)
                    if preferred >= 0:
                        hw = part.high_watermark
                        out.append(FetchResult(high_watermark=hw,
                                               last_stable_offset=part.last_stable_offset,
                                               log_start_offset=part.log_start_offset,
                                               preferred_read_replica=preferred))
                        continue
                if from_follower:
                    diverging = part.diverging_epoch(p.fetch_offset, p.last_fetched_epoch)
                    if diverging is not None:
                        out.append(FetchResult(high_watermark=part.high_watermark,
                                               last_stable_offset=part.last_stable_offset,
                                               log_start_offset=part.log_start_offset,
                                               diverging_epoch=diverging))
                        continue
                if remaining > 0 or total == 0:
                    limit = min(p.partition_max_bytes, max(remaining, 0))
                    # KIP-74: the first non-empty partition gets at least one batch.
                    data = part.read(p.fetch_offset, limit, from_follower=from_follower,
                                     min_one_batch=(total == 0), read_committed=read_committed)
                else:
                    if not part.log_start_offset <= p.fetch_offset <= part.log_end_offset:
                        part.read(p.fetch_offset, 0, from_follower=from_follower,
                                  min_one_batch=False)  # raises OFFSET_OUT_OF_RANGE
                    data = b""
                if from_follower:
                    if part.update_follower_fetch(params.replica_id, p.fetch_offset, now,
                                                  p.log_start_offset):
                        self._wake((p.topic, p.partition))
                    if params.replica_id not in part.isr and self.alter_isr is not None:
                        # Kafka checks maybeExpandIsr on every follower fetch: a
                        # caught-up replica rejoins without waiting for the timer.
                        new_isr = part.isr_to_expand()
                        if new_isr is not None:
                            part.pending_isr = new_isr
                            self.alter_isr(part, new_isr)
            except KafkaError as e:
                part = self.partitions.get((p.topic, p.partition))
                r = FetchResult(error=int(e.code), message=e.message,
                                high_watermark=part.high_watermark if part else -1,
                                log_start_offset=part.log_start_offset if part else -1)
                if isinstance(e, NotLeaderError):
                    r.current_leader = (e.leader, e.leader_epoch)
                out.append(r)
                continue
            n = len(data)
            total += n
            remaining -= n
            hw = part.high_watermark
            lso = part.last_stable_offset
            aborted = None
            if read_committed:
                # Kafka's collectAbortedTransactions up to the LSO: the consumer drops
                # the batches of these producers from their first offset to the marker.
                aborted = part.log.collect_aborted_transactions(p.fetch_offset, lso) if n else []
            out.append(FetchResult(high_watermark=hw, last_stable_offset=lso,
                                   log_start_offset=part.log_start_offset, records=data,
                                   aborted_transactions=aborted))
        return out, total

    # -- offsets -------------------------------------------------------------------
    def offset_for(self, topic: str, index: int, timestamp: int, current_leader_epoch: int = -1,
                   replica_id: int = -1, isolation_level: int = 0) -> tuple[int, int, int]:
        """ListOffsets: (offset, timestamp, leader epoch) for a timestamp or one of the
        special values (-1 latest, -2 earliest, -3 max timestamp, -4 earliest local,
        -5 latest tiered). A consumer's "latest" is the high watermark (the LSO under
        read_committed), a follower's (replica_id >= 0) the log end offset, as Kafka's
        fetchOffsetForTimestamp."""
        part = self.partition(topic, index)
        part.check_leader_epoch(current_leader_epoch)
        plog = part.log
        offset, ts = -1, -1
        if timestamp == -1:
            if replica_id >= 0:
                offset = plog.log_end_offset
            elif isolation_level == 1:
                offset = part.last_stable_offset
            else:
                offset = part.high_watermark
        elif timestamp in (-2, -4):
            offset = plog.log_start_offset
        elif timestamp == -5:
            offset = -1
        elif timestamp == -3:
            found = plog.max_timestamp()
            if found is not None:
                ts, offset = found
        else:
            found = plog.offset_for_timestamp(
                timestamp, max_offset=part.last_stable_offset if isolation_level == 1
                else part.high_watermark)
            if found is not None:
                offset, ts = found
        return offset, ts, part.leader_epoch

    def end_offset_for_epoch(self, topic: str, index: int, leader_epoch: int,
                             current_leader_epoch: int = -1) -> tuple[int, int]:
        """OffsetForLeaderEpoch on the leader: (epoch, end offset) of `leader_epoch`
        in this log (Kafka's Partition.lastOffsetForLeaderEpoch)."""
        part = self.partition(topic, index)
        part.check_leader_epoch(current_leader_epoch)
        return part.log.end_offset_for_epoch(leader_epoch)

    def delete_records(self, topic: str, index: int, offset: int, timeout_ms: int):
        """DeleteRecords on the leader: move the log start offset to `offset` (-1: the
        high watermark). Returns the low watermark (the smallest log start offset over
        the replicas on live brokers) once it has reached that offset, or an awaitable
        of (error code, low watermark) that waits for the followers, which take the
        leader's log start offset in their next fetch and report theirs in the one
        after (Kafka's DelayedDeleteRecords; REQUEST_TIMED_OUT after `timeout_ms`,
        NOT_LEADER_OR_FOLLOWER when the leadership moves meanwhile)."""
        part = self.partition(topic, index)
        plog = part.log
        if not plog.config.delete:
            raise KafkaError(f"Records of partition {topic}-{index} can not be deleted due to "
                             "the configured policy", ErrorCode.POLICY_VIOLATION)
        hw = part.high_watermark
        required = hw if offset == -1 else offset
        plog.delete_records(required, hw)
        # Wake fetches waiting on this partition: one below the new start gets its
        # OFFSET_OUT_OF_RANGE now rather than at max_wait_ms; followers' long polls
        # answer with the new log start offset.
        self.fetch_purgatory.notify((topic, index))
        low = self.low_watermark(part)
        if low >= required:
            return low
        return self._await_low_watermark(part, required, part.leader_epoch, timeout_ms)

    def low_watermark(self, part: Partition) -> int:
        """Kafka's Partition.lowWatermarkIfLeader: the leader's log start offset, or a
        smaller one of a follower on a live broker (a follower that has not reported
        one yet counts as 0: it may still hold everything)."""
        low = part.log_start_offset
        brokers = self.image.brokers if self.image is not None else {}
        for r, f in part.followers.items():
            b = brokers.get(r)
            if b is not None and not b.fenced:
                low = min(low, max(f.log_start_offset, 0))
        return low

    async def _await_low_watermark(self, part, required, leader_epoch, timeout_ms):
        loop = asyncio.get_running_loop()

        def check():
            if part.role != LEADER or part.leader_epoch != leader_epoch:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER
            return ErrorCode.NONE if self.low_watermark(part) >= required else None
        code = await wait_until(self.produce_purgatory, [(part.topic, part.index)], check,
                                loop.time() + timeout_ms / 1000, lambda: self.closing)
        code = ErrorCode.REQUEST_TIMED_OUT if code is None else code
        return code, (self.low_watermark(part) if code == ErrorCode.NONE else -1)

    def _preferred_read_replica(self, part: Partition, fetch_offset: int, rack: str) -> int:
        """KIP-392, as Kafka's RackAwareReplicaSelector: the leader when it is in the
        consumer's rack; else the in-sync follower in that rack whose log reaches
        furthest and holds `fetch_offset`; -1 (the leader serves) when none does."""
        brokers = self.image.brokers if self.image is not None else {}
        me = brokers.get(self.node_id)
        if me is not None and me.rack == rack:
            return -1
        best, best_leo = -1, -1
        for r, f in part.followers.items():
            b = brokers.get(r)
            if b is None or b.fenced or b.rack != rack or r not in part.isr:
                continue
            if f.log_end_offset >= fetch_offset and f.log_end_offset > best_leo:
                best, best_leo = r, f.log_end_offset
        return best

    # -- ISR upkeep ----------------------------------------------------------------
    def maybe_update_isr(self) -> int:
        """Leader side, every replica.lag.time.max.ms / 2 (Kafka's isr-expiration
        task) and after follower fetches: propose ISR shrinks and expansions to the
        controller. Returns the number of proposals."""
        if self.alter_isr is None:
            return 0
        now = self.clock.monotonic_ms()
        n = 0
        for part in self.partitions.values():
            if part.role != LEADER:
                continue
            new_isr = part.isr_to_shrink(now, self.lag_time_max_ms) or part.isr_to_expand()
            if new_isr is not None:
                part.pending_isr = new_isr
                self.alter_isr(part, new_isr)
                n += 1
        return n

    def on_isr_change(self, part: Partition, leader_epoch: int, partition_epoch: int, isr,
                      proposed=None) -> None:
        """The controller's answer to the AlterPartition that proposed `proposed`."""
        part.isr_change_done(leader_epoch, partition_epoch, isr, proposed)
        self._wake((part.topic, part.index))

    # -- checkpoints and lifecycle --------------------------------------------------
    def start(self, checkpoint_interval_ms: int = 5000) -> None:
        """Periodic work on the event loop: the high-watermark checkpoint
        (replica.high.watermark.checkpoint.interval.ms, 5 s) and the ISR check every
        replica.lag.time.max.ms / 2, as Kafka's isr-expiration task."""
        self._tasks = [asyncio.ensure_future(self._every(checkpoint_interval_ms,
                                                         self.checkpoint_high_watermarks)),
                       asyncio.ensure_future(self._every(max(1, self.lag_time_max_ms // 2),
                                                         self.maybe_update_isr))]

    async def _every(self, interval_ms: int, fn) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                fn()
            except Exception:  # noqa: BLE001 - the next pass must still run
                log.exception("replica manager task failed", task=fn.__name__)

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks = []

    def checkpoint_high_watermarks(self) -> None:
        hws = {key: part.high_watermark for key, part in self.partitions.items()}
        for key in self._pending_host:   # not hosted yet: keep what the file says
            if key in self._checkpointed:
                hws[key] = self._checkpointed[key]
        if hws == self._checkpointed:
            return
        try:
            write_hw_checkpoint(self._checkpoint_path, hws)
            self._checkpointed = hws
        except OSError as e:
            # Once per failure spell (a full disk fails it every interval), not per try.
            if not self._checkpoint_failing:
                log.warning("high watermark checkpoint failed", error=str(e))
            self._checkpoint_failing = True
            try:
                os.unlink(self._checkpoint_path + ".tmp")
            except OSError:
                pass
            return
        if self._checkpoint_failing:
            self._checkpoint_failing = False
            log.info("high watermark checkpoint written again")

    def wake_all(self) -> None:
        self.fetch_purgatory.wake_all()
        self.produce_purgatory.wake_all()

    def close(self) -> None:
        self.closing = True
        if self._host_task is not None:
            self._host_task.cancel()
        self.wake_all()
        self.checkpoint_high_watermarks()

    def flush_all(self) -> None:
        self.log_manager.flush_all()


def _produce_message(code: int, part: Partition) -> str | None:
    if code == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND:
        return (f"The size of the current ISR {set(part.isr)} is insufficient to satisfy the "
                f"min.isr requirement of {part.log.config.min_insync_replicas} for partition "
                f"{part.topic}-{part.index}; the records were appended")
    if code == ErrorCode.REQUEST_TIMED_OUT:
        return (f"Not replicated to the in-sync replicas of {part.topic}-{part.index} "
                "within the request's timeout")
    return None


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
