"""Follower fetchers: a follower copies its leader's log with the real Fetch API, as
Kafka's ReplicaFetcherThread does (one fetcher per source broker,
`num.replica.fetchers` = 1).

Each fetcher loops: one Fetch (replica id = this node, v12: topic names,
last_fetched_epoch) for every partition it follows from that leader, long-polled on
the leader (replica.fetch.wait.max.ms, replica.fetch.min.bytes); the answer's batches
are appended as bytes (PartitionLog.append_as_follower: CRC checked, offsets and
epochs as the leader stamped them), and the follower's high watermark follows the
leader's. Its next fetch offset is its new log end offset, which tells the leader how
far it has got: that is how the leader's ISR and high watermark move.

Truncation, as Kafka's AbstractFetcherThread with KIP-279: when the leader answers
DivergingEpoch (epoch, end offset), the follower truncates to the smaller of the
leader's end offset and its own end of that epoch, then fetches again; when the
follower does not have the leader's epoch, it truncates to the end of its own largest
epoch below it and asks again. OFFSET_OUT_OF_RANGE below the leader's log start
offset restarts the follower's log at that offset (truncate fully).

The follower's rules (what to ask for, what to do with each partition's answer) are
sans-IO functions at the top of this module, shared with the replication simulation
(broker/replication_sim.py); the fetcher classes only add the requests and the loop.

Errors (the leader moved, is fenced, its metadata is behind ours, a connection
dropped) back off for replica.fetch.backoff.ms; a leadership change reaches us through
the metadata image and moves the partition to another fetcher.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kafkette.errors import ErrorCode, KafkaError
from kafkette.logging import get_logger
from kafkette.protocol.messages import FetchRequest, ListOffsetsRequest

log = get_logger("kafkette.replica_fetcher")

FETCH_VERSION = 12
LIST_OFFSETS_VERSION = 4


# -- the follower's side of a fetch, sans-IO ------------------------------------------
# What a follower asks for and what it does with the leader's answer, as plain
# functions of the Partition: the fetcher below wraps them in Fetch requests over a
# connection, and the replication simulation (broker/replication_sim.py) calls them
# with answers its simulated network delivers, so both run the same rules.

# Outcomes of handle_fetch_answer.
APPENDED = "appended"            # records (maybe none) appended, high watermark followed
TRUNCATED = "truncated"          # DivergingEpoch: truncated, fetch again at once
RESTARTED = "restarted"          # below the leader's log start: log restarted there
AHEAD_OF_LEADER = "ahead"        # OFFSET_OUT_OF_RANGE above the leader's log end: look up
                                 # the leader's log end offset, then truncate_to_leader_end
BACK_OFF = "back_off"            # an error: wait replica.fetch.backoff.ms


@dataclass(frozen=True)
class FollowerFetchPosition:
    """One partition of a follower's Fetch (v12+: last_fetched_epoch, KIP-320)."""
    current_leader_epoch: int
    fetch_offset: int
    last_fetched_epoch: int
    log_start_offset: int


def follower_fetch_position(part) -> FollowerFetchPosition:
    """Where a follower fetches from: its log end offset, with the epoch of its last
    batch so that the leader can tell a diverged log (KIP-279 through Fetch)."""
    return FollowerFetchPosition(part.leader_epoch, part.log_end_offset,
                                 part.log.leader_epoch_cache.latest_epoch,
                                 part.log_start_offset)


def handle_fetch_answer(part, error_code: int, high_watermark: int, log_start_offset: int,
                        records, diverging_epoch: tuple[int, int] | None, now_ms: int,
                        source_id: int = -1) -> str:
    """Apply the leader's answer for one partition to the follower's Partition; returns
    one of the outcomes above. The caller has checked that the answer is for the
    partition's current leader epoch (a re-election while the fetch was in flight makes
    it stale)."""
    if error_code == ErrorCode.NONE:
        if diverging_epoch is not None:
            truncate_on_divergence(part, diverging_epoch[0], diverging_epoch[1], source_id)
            return TRUNCATED
        part.append_as_follower(records, high_watermark, log_start_offset, now_ms)
        return APPENDED
    if error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
        if log_start_offset >= 0 and part.log_end_offset < log_start_offset:
            log.warning("follower log below the leader's log start: restarting it",
                        topic=part.topic, partition=part.index,
                        log_end_offset=part.log_end_offset,
                        leader_log_start_offset=log_start_offset)
            part.truncate_fully_and_start_at(log_start_offset)
            return RESTARTED
        # Ahead of the leader (it lost a tail we have): the leader's log end offset is
        # where we must go back to.
        return AHEAD_OF_LEADER
    if error_code not in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH,
                          ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                          ErrorCode.UNKNOWN_TOPIC_ID):
        # (Those are the metadata moving; the next image tells us where to go.)
        log.warning("replica fetch error", topic=part.topic, partition=part.index,
                    source=source_id, error=ErrorCode(error_code).name)
    return BACK_OFF


def truncate_on_divergence(part, leader_epoch: int, leader_end: int, source_id: int = -1) -> None:
    """KIP-279: where our log and the leader's part, from the leader's answer."""
    leo = part.log_end_offset
    if leader_end < 0:
        # The leader has no entry for our epoch (its history starts later): keep
        # only what was committed (Kafka truncates to the high watermark here).
        target = part.high_watermark
    elif leader_epoch < 0:
        target = min(leader_end, leo)
    else:
        f_epoch, f_end = part.log.end_offset_for_epoch(leader_epoch)
        if f_epoch < 0:
            target = min(leader_end, leo)
        elif f_epoch != leader_epoch:
            # We never had the leader's epoch: go back to the end of our last epoch
            # below it; the next fetch names that epoch and may truncate further.
            target = f_end
        else:
            target = min(leader_end, f_end)
    if target < leo:
        log.info("follower truncating", topic=part.topic, partition=part.index,
                 from_offset=leo, to_offset=target, leader=source_id,
                 leader_epoch=leader_epoch, leader_end_offset=leader_end)
    part.truncate_to(target)


def truncate_to_leader_end(part, leader_end: int) -> bool:
    """After AHEAD_OF_LEADER: the leader's log end offset (ListOffsets latest with our
    replica id) is below ours; cut our log back to it. True when it truncated."""
    if 0 <= leader_end < part.log_end_offset:
        log.warning("follower ahead of its leader: truncating", topic=part.topic,
                    partition=part.index, from_offset=part.log_end_offset,
                    to_offset=leader_end)
        part.truncate_to(leader_end)
        return True
    return False


class ReplicaFetcherManager:
    def __init__(self, replica_manager, config, channel_factory):
        """`channel_factory(host, port)` -> an object with `await send(request,
        version)` and `await close()` (a Kafka client connection)."""
        self.rm = replica_manager
        self.node_id = replica_manager.node_id
        self.config = config
        self.channel_factory = channel_factory
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self._closing = False

    def add(self, part, leader_id: int) -> None:
        for sid, f in self.fetchers.items():
            if sid != leader_id:
                f.remove(part)
        if self._closing:
            return
        f = self.fetchers.get(leader_id)
        if f is None:
            f = self.fetchers[leader_id] = ReplicaFetcher(self, leader_id)
            f.start()
        f.add(part)

    def remove(self, part) -> None:
        for f in self.fetchers.values():
            f.remove(part)

    def lag(self) -> dict[tuple[str, int], int]:
        """Follower partitions -> records behind the leader's high watermark as last
        seen (for metrics and tests)."""
        out = {}
        for f in self.fetchers.values():
            for key, part in f.partitions.items():
                out[key] = max(0, f.leader_hw.get(key, 0) - part.log_end_offset)
        return out

    async def close(self) -> None:
        self._closing = True
        for f in list(self.fetchers.values()):
            await f.close()
        self.fetchers.clear()


class ReplicaFetcher:
    def __init__(self, manager: ReplicaFetcherManager, source_id: int):
        self.manager = manager
        self.source_id = source_id
        self.partitions: dict[tuple[str, int], object] = {}
        self.leader_hw: dict[tuple[str, int], int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._channel = None
        self._address = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def add(self, part) -> None:
        self.partitions[(part.topic, part.index)] = part
        self._wake.set()

    def remove(self, part) -> None:
        self.partitions.pop((part.topic, part.index), None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        await self._drop_channel()

    async def _drop_channel(self) -> None:
        ch, self._channel, self._address = self._channel, None, None
        if ch is not None:
            try:
                await ch.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _connect(self):
        image = self.manager.rm.image
        b = image.brokers.get(self.source_id) if image is not None else None
        if b is None:
            return None
        # The leader's inter-broker listener (Kafka's inter.broker.listener.name).
        address = b.address(self.manager.config.inter_broker_listener_name)
        if self._channel is None or self._address != address:
            self._channel = self.manager.channel_factory(*address)
            self._address = address
        return self._channel

    async def _run(self) -> None:
        cfg = self.manager.config
        backoff = cfg["replica.fetch.backoff.ms"] / 1000
        failures = 0
        while True:
            if not self.partitions:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                ch = self._connect()
                if ch is None:
                    raise ConnectionError(f"broker {self.source_id} is not in the metadata")
                ok = await self._fetch_once(ch)
                if ok:
                    if failures:
                        log.info("replica fetcher recovered", source=self.source_id)
                    failures = 0
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a fetcher must keep running
                failures += 1
                if failures == 1:
                    log.warning("replica fetch failed", source=self.source_id,
                                error=f"{type(e).__name__}: {e}")
                await self._drop_channel()
            await asyncio.sleep(backoff)

    async def _fetch_once(self, ch) -> bool:
        """One Fetch to the leader and its handling; False when some partition needs a
        back-off (an error answer)."""
        cfg = self.manager.config
        rm = self.manager.rm
        snapshot = {key: (part, part.leader_epoch) for key, part in self.partitions.items()}
        by_topic: dict[str, list] = {}
        P = FetchRequest.FetchTopic.FetchPartition
        for (topic, index), (part, epoch) in snapshot.items():
            pos = follower_fetch_position(part)
            by_topic.setdefault(topic, []).append(P(
                partition=index, current_leader_epoch=epoch,
                fetch_offset=pos.fetch_offset,
                last_fetched_epoch=pos.last_fetched_epoch,
                log_start_offset=pos.log_start_offset,
                partition_max_bytes=cfg["replica.fetch.max.bytes"]))
        req = FetchRequest(
            replica_id=self.manager.node_id, max_wait_ms=cfg["replica.fetch.wait.max.ms"],
            min_bytes=cfg["replica.fetch.min.bytes"],
            max_bytes=cfg["replica.fetch.response.max.bytes"], isolation_level=0,
            session_id=0, session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=t, partitions=ps) for t, ps in by_topic.items()],
            forgotten_topics_data=[], rack_id="")
        timeout = cfg["replica.fetch.wait.max.ms"] / 1000 + 30
        resp = await asyncio.wait_for(ch.send(req, FETCH_VERSION), timeout)
        if resp.error_code:
            raise KafkaError("fetch refused", ErrorCode(resp.error_code))
        ok = True
        now = rm.clock.time_ms()
        for t in resp.responses:
            for pd in t.partitions:
                key = (t.topic, pd.partition_index)
                part, epoch = snapshot.get(key, (None, None))
                if part is None or self.partitions.get(key) is not part \
                        or part.leader_epoch != epoch:
                    continue  # moved or re-elected while the fetch was in flight
                if not self._handle_partition(part, pd, now):
                    ok = False
        return ok

    def _handle_partition(self, part, pd, now_ms: int) -> bool:
        rm = self.manager.rm
        key = (part.topic, part.index)
        de = pd.diverging_epoch
        before = part.high_watermark
        outcome = handle_fetch_answer(
            part, pd.error_code, pd.high_watermark, pd.log_start_offset, pd.records,
            (de.epoch, de.end_offset) if de is not None else None, now_ms, self.source_id)
        if outcome == APPENDED:
            self.leader_hw[key] = pd.high_watermark
            if part.high_watermark != before:
                rm.fetch_purgatory.notify(key)  # consumers reading from this follower
            return True
        if outcome == AHEAD_OF_LEADER:
            asyncio.ensure_future(self._truncate_to_leader_end(part))
            return False
        return outcome != BACK_OFF

    async def _truncate_to_leader_end(self, part) -> None:
        ch = self._channel
        if ch is None:
            return
        T = ListOffsetsRequest.ListOffsetsTopic
        req = ListOffsetsRequest(replica_id=self.manager.node_id, isolation_level=0, topics=[
            T(name=part.topic, partitions=[T.ListOffsetsPartition(
                partition_index=part.index, current_leader_epoch=part.leader_epoch,
                timestamp=-1)])])
        try:
            resp = await ch.send(req, LIST_OFFSETS_VERSION)
            p = resp.topics[0].partitions[0]
            if p.error_code == 0:
                truncate_to_leader_end(part, p.offset)
        except Exception as e:  # noqa: BLE001 - retried at the next out-of-range answer
            log.warning("leader end offset lookup failed", topic=part.topic,
                        partition=part.index, error=f"{type(e).__name__}: {e}")
