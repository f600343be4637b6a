"""`__transaction_state` and the transaction markers: the glue between the sans-IO
transaction coordinator (kafkette/coordinator/transaction_coordinator.py) and the
broker's logs and network.

- `LogTxnStateStore` appends the coordinator's records to partition
  hash(transactional id) % transaction.state.log.num.partitions — the partition whose
  leader is the id's coordinator, as Kafka's TransactionStateManager — and reports each
  append once the ISR has it (Kafka's coordinator appends with acks=all: a state that
  only the leader holds could be lost with it, and markers are sent only for a
  PrepareCommit that survives a failover).
- `TxnMarkerChannel` has each partition's leader write the COMMIT or ABORT marker:
  partitions this node leads directly, the others with WriteTxnMarkers to their
  leader (Kafka's TransactionMarkerChannelManager), retrying with back-off until every
  partition has it or its topic is gone, so a transaction never hangs half-completed.
- `load_txn_state` / `follow_txn_leadership` move the coordinator with the leadership
  of its partitions: a new leader replays its partitions (and completes transactions
  left in PrepareCommit / PrepareAbort by writing the missing markers), the old one
  unloads them. The coordinator epoch is the partition's leader epoch, as in Kafka.

The topic is created on first use (FindCoordinator with key type 1, InitProducerId)
with Kafka's settings: compacted, `transaction.state.log.segment.bytes` segments,
`transaction.state.log.replication.factor` replicas (capped at the live brokers, with a
warning, where Kafka refuses until enough brokers are up) and
`transaction.state.log.min.isr` (capped at the replication factor).
"""
from __future__ import annotations

import asyncio
import inspect
import weakref
from collections import defaultdict

from kafkette.broker.internal_topics import ensure_internal_topic
from kafkette.coordinator.partitioning import offsets_partition_for
from kafkette.errors import ErrorCode, KafkaError
from kafkette.logging import get_logger
from kafkette.protocol.records import build_batch, decode_records

log = get_logger("kafkette.txn_state")
TXN_TOPIC = "__transaction_state"
OFFSETS_TOPIC = "__consumer_offsets"

# Kafka's TransactionMarkerChannelManager retries a failed marker after the broker's
# retry backoff; these bound how fast a down leader is retried.
MARKER_RETRY_MS = 100
MARKER_RETRY_MAX_MS = 2000
MARKER_REQUEST_TIMEOUT_S = 30.0
# Kafka's coordinator waits request.timeout.ms (30 s) for the ISR to take a state record.
STATE_APPEND_TIMEOUT_MS = 30000


def txn_partition_for(transactional_id: str, partitions: int) -> int:
    """Kafka's partitionFor: abs(transactionalId.hashCode) % partitions, the same
    Java string hash as a group's partition of __consumer_offsets."""
    return offsets_partition_for(transactional_id, partitions)


_capped_warned: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def txn_topic_spec(broker) -> tuple[int, int, dict[str, str]]:
    cfg = broker.config
    wanted = cfg["transaction.state.log.replication.factor"]
    rf = max(min(wanted, len(broker.controller.live_brokers())), 1)
    min_isr = min(cfg["transaction.state.log.min.isr"], rf)
    if rf < wanted and _capped_warned.get(broker) != (wanted, rf):
        _capped_warned[broker] = (wanted, rf)
        log.warning("transaction state topic replication factor capped at the live brokers",
                    topic=TXN_TOPIC, transaction_state_log_replication_factor=wanted,
                    replication_factor=rf, min_insync_replicas=min_isr)
    return (cfg["transaction.state.log.num.partitions"], rf,
            {"cleanup.policy": "compact",
             "segment.bytes": str(cfg["transaction.state.log.segment.bytes"]),
             "min.insync.replicas": str(min_isr),
             "unclean.leader.election.enable": "false",
             "compression.type": "uncompressed"})


def ensure_txn_topic(broker) -> bool:
    """True when `__transaction_state` exists; otherwise start creating it (a cluster
    asks the active controller in the background) and answer False: the client is
    told COORDINATOR_NOT_AVAILABLE and retries, as Kafka answers while the topic is
    created."""
    return ensure_internal_topic(broker, TXN_TOPIC, txn_topic_spec)


def txn_coordinator_node(broker, transactional_id: str) -> int | None:
    """The leader of the id's partition of `__transaction_state` (None: no topic yet,
    or the partition has no leader)."""
    t = broker.image.topics.get(TXN_TOPIC)
    if t is None:
        return None
    p = t.partitions.get(txn_partition_for(transactional_id, len(t.partitions)))
    if p is None or p.leader < 0:
        return None
    return p.leader


class LogTxnStateStore:
    """TxnStateStore on the partitions of `__transaction_state`."""

    def __init__(self, broker):
        self.broker = broker
        self.num_partitions = broker.config["transaction.state.log.num.partitions"]
        self._tasks: set[asyncio.Task] = set()

    def partition_for(self, transactional_id: str) -> int:
        return txn_partition_for(transactional_id, self.num_partitions)

    def append(self, transactional_id: str, key: bytes, value: bytes | None, callback) -> None:
        p = self.partition_for(transactional_id)
        batch = bytearray(build_batch([(key, value, [])], timestamp_ms=self.broker.clock.time_ms()))
        rm = self.broker.replica_manager
        results = rm.append_records([(TXN_TOPIC, p, memoryview(batch))], 1)
        r = results[0]
        if r.error:
            raise KafkaError(r.message, r.error)
        a = r.appended
        part = rm.partitions[(TXN_TOPIC, p)]
        waiting = rm.await_replication(TXN_TOPIC, p, a.last_offset + 1, part.leader_epoch,
                                       STATE_APPEND_TIMEOUT_MS)
        if waiting is None:
            # The coordinator expects the answer later, never inside append.
            asyncio.get_running_loop().call_soon(callback, ErrorCode.NONE)
            return
        task = asyncio.ensure_future(self._deliver(waiting, callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _deliver(waiting, callback) -> None:
        code = await waiting
        # Kafka maps a failed replication of the state log: the coordinator moved, or
        # the ISR is too small for now (the client retries either).
        if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
            code = ErrorCode.NOT_COORDINATOR
        elif code in (ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                      ErrorCode.REQUEST_TIMED_OUT):
            code = ErrorCode.COORDINATOR_NOT_AVAILABLE
        callback(code)

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()


class BrokerChannels:
    """One NodeChannel per other broker, by node id, for the coordinator's requests to
    partition leaders and the leaders' verification requests to coordinators."""

    def __init__(self, broker):
        self.broker = broker
        self._channels: dict[tuple[str, int], object] = {}

    def get(self, node_id: int):
        from kafkette.client import NodeChannel
        b = self.broker.image.brokers.get(node_id)
        if b is None or b.fenced:
            raise KafkaError(f"broker {node_id} is not available", ErrorCode.LEADER_NOT_AVAILABLE)
        # The peer's inter-broker listener, with its security (broker/peer_security.py).
        address = b.address(self.broker.inter_broker_listener)
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = NodeChannel(
                *address, client_id=f"kafkette-txn-{self.broker.node_id}",
                security=self.broker.inter_broker_security,
                backoff_max=0.5, request_timeout=MARKER_REQUEST_TIMEOUT_S)
        return ch

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()


class TxnMarkerChannel:
    """MarkerSender: writes markers through the leaders of the partitions."""

    def __init__(self, broker, channels: BrokerChannels):
        self.broker = broker
        self.channels = channels
        self._tasks: set[asyncio.Task] = set()
        self.closing = False

    def send_markers(self, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                     commit: bool, partitions, callback) -> None:
        task = asyncio.ensure_future(self._send(producer_id, producer_epoch, coordinator_epoch,
                                                commit, list(partitions), callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, pid, epoch, coordinator_epoch, commit, partitions, callback) -> None:
        pending = set(partitions)
        backoff = MARKER_RETRY_MS
        attempts = 0
        while pending and not self.closing:
            attempts += 1
            by_leader: dict[int, list[tuple[str, int]]] = defaultdict(list)
            image = self.broker.image
            for tp in list(pending):
                t = image.topics.get(tp[0])
                if t is None or tp[1] not in t.partitions:
                    pending.discard(tp)   # deleted: nothing to mark (Kafka drops it too)
                    continue
                by_leader[t.partitions[tp[1]].leader].append(tp)
            for leader, tps in by_leader.items():
                if leader < 0:
                    continue
                try:
                    if leader == self.broker.node_id:
                        codes = await self.broker.write_txn_markers(
                            pid, epoch, coordinator_epoch, commit, tps)
                    else:
                        codes = await self._remote(leader, pid, epoch, coordinator_epoch,
                                                   commit, tps)
                except (OSError, KafkaError, asyncio.TimeoutError) as e:
                    log.debug("txn_markers_retry", leader=leader, error=str(e))
                    continue
                for tp, code in codes.items():
                    if code in (ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                ErrorCode.UNKNOWN_TOPIC_ID):
                        pending.discard(tp)
                    elif code in (ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.PRODUCER_FENCED,
                                  ErrorCode.TRANSACTION_COORDINATOR_FENCED):
                        # Kafka's marker handler: a newer producer epoch or coordinator has
                        # been here, so this marker is moot; stop sending it.
                        log.warning("txn_marker_fenced", producer_id=pid, topic=tp[0],
                                    partition=tp[1], error=ErrorCode(code).name)
                        pending.discard(tp)
            if pending:
                if attempts in (10, 100, 1000):
                    log.warning("txn_markers_still_pending", producer_id=pid,
                                partitions=sorted(pending)[:10], attempts=attempts)
                await asyncio.sleep(backoff / 1000)
                backoff = min(backoff * 2, MARKER_RETRY_MAX_MS)
        if not self.closing:
            callback()

    async def _remote(self, leader: int, pid, epoch, coordinator_epoch, commit, tps):
        from kafkette.protocol.messages import WriteTxnMarkersRequest
        ch = self.channels.get(leader)
        topics = defaultdict(list)
        for t, p in tps:
            topics[t].append(p)
        M = WriteTxnMarkersRequest.WritableTxnMarker
        T = M.WritableTxnMarkerTopic
        req = WriteTxnMarkersRequest(markers=[M(
            producer_id=pid, producer_epoch=epoch, transaction_result=commit,
            coordinator_epoch=coordinator_epoch,
            topics=[T(name=t, partition_indexes=ps) for t, ps in topics.items()])])
        resp = await ch.send(req, 1)
        codes = {}
        for m in resp.markers:
            for t in m.topics:
                for p in t.partitions:
                    codes[(t.name, p.partition_index)] = p.error_code
        return codes

    def close(self) -> None:
        self.closing = True
        for t in list(self._tasks):
            t.cancel()


def read_partition_records(plog) -> list[tuple[bytes, bytes | None]]:
    """Every keyed record of a log, in order, to its end (a leader loads to its log
    end, as Kafka's coordinators do: what it holds its followers will have)."""
    offset = plog.log_start_offset
    end = plog.log_end_offset
    records = []
    while offset < end:
        data = plog.read(offset, 1 << 20, max_offset=end)
        start = offset
        for r in decode_records(data) if data else ():
            if r.offset < offset:
                continue
            offset = r.offset + 1
            if r.key is not None:
                records.append((r.key, r.value))
        if offset == start:
            break
    return records


def follow_txn_leadership(broker, coordinator, loaded: dict[int, int]) -> None:
    """Load the `__transaction_state` partitions this broker now leads (or leads with a
    new epoch), unload those it no longer leads. `loaded`: partition -> the leader epoch
    it was loaded with (the coordinator epoch)."""
    topic = broker.image.topics.get(TXN_TOPIC)
    rm = broker.replica_manager
    for p in list(loaded):
        part = rm.partitions.get((TXN_TOPIC, p))
        if part is None or not part.is_leader or part.leader_epoch != loaded[p]:
            del loaded[p]
            coordinator.unload_partition(p)
            log.info("transaction coordinator resigned", partition=p)
    if topic is None:
        return
    for p in sorted(topic.partitions):
        part = rm.partitions.get((TXN_TOPIC, p))
        if part is None or not part.is_leader or p in loaded:
            continue
        loaded[p] = part.leader_epoch
        coordinator.begin_load(p, part.leader_epoch)
        records = read_partition_records(part.log)
        coordinator.load_partition(p, part.leader_epoch, records)
        if records:
            log.info("transaction coordinator elected", partition=p,
                     coordinator_epoch=part.leader_epoch, records_loaded=len(records))


# Errors of a verification that the producer cannot fix by retrying the produce: its
# epoch is stale, or the partition is not in its transaction (KIP-890: the hanging
# transaction this guards against is a late batch arriving after its abort marker).
_VERIFY_FATAL = {ErrorCode.PRODUCER_FENCED: ErrorCode.INVALID_PRODUCER_EPOCH,
                 ErrorCode.INVALID_PRODUCER_EPOCH: ErrorCode.INVALID_PRODUCER_EPOCH,
                 ErrorCode.INVALID_PRODUCER_ID_MAPPING: ErrorCode.INVALID_TXN_STATE,
                 ErrorCode.INVALID_TXN_STATE: ErrorCode.INVALID_TXN_STATE,
                 # The coordinator's "not in the transaction": clients that predate
                 # KIP-890 (every Produce version served here) know it as
                 # INVALID_TXN_STATE.
                 ErrorCode.TRANSACTION_ABORTABLE: ErrorCode.INVALID_TXN_STATE}


def verify_transactional_produce(broker, transactional_id: str, entries):
    """KIP-890 part 1 (transaction.partition.verification.enable): before a partition
    takes the first batch of a producer's transaction, its leader asks the transaction
    coordinator whether the partition is in that transaction (AddPartitionsToTxn v4,
    verify_only), so that a batch arriving after its transaction was aborted cannot
    open a transaction no coordinator will ever end. `entries`: (topic, partition,
    records) of one Produce. Returns {index: error code} for the refused entries, or an
    awaitable of it when the coordinator is another node. A partition where the
    producer's transaction is already open (same epoch) needs no question.

    Errors: not in the transaction → INVALID_TXN_STATE, a stale epoch →
    INVALID_PRODUCER_EPOCH (Produce never answers PRODUCER_FENCED, KAFKA-10687), a
    coordinator that cannot answer now → NOT_ENOUGH_REPLICAS, which every client
    retries (Kafka 4's mapping for Produce v11 is TRANSACTION_ABORTABLE, which clients
    older than KIP-890 do not know)."""
    from kafkette.protocol import records as rec
    rm = broker.replica_manager
    need: dict[tuple[int, int], list[tuple[int, tuple[str, int]]]] = defaultdict(list)
    for i, (topic, index, records) in enumerate(entries):
        # Null records are refused before this (INVALID_RECORD); nothing to verify.
        if records is None or len(records) < rec.BATCH_HEADER_SIZE:
            continue
        h = rec.parse_header(records, 0)
        if not h.attributes & rec.TRANSACTIONAL_BIT or h.producer_id < 0:
            continue
        part = rm.partitions.get((topic, index))
        if part is None or not part.is_leader:
            continue  # the append answers NOT_LEADER_OR_FOLLOWER
        entry = part.log.producer_state.producers.get(h.producer_id)
        if entry is not None and entry.producer_epoch == h.producer_epoch and \
                entry.current_txn_first_offset is not None:
            continue
        need[(h.producer_id, h.producer_epoch)].append((i, (topic, index)))
    if not need:
        return {}
    codes = verify_in_transaction(broker, transactional_id, need)
    if inspect.isawaitable(codes):
        return _mapped(codes)
    return _produce_errors(codes)


def _produce_errors(codes: dict) -> dict[int, int]:
    return {i: _VERIFY_FATAL.get(code, ErrorCode.NOT_ENOUGH_REPLICAS)
            for i, code in codes.items() if code != ErrorCode.NONE}


async def _mapped(pending) -> dict[int, int]:
    return _produce_errors(await pending)


def verify_txn_offset_commit(broker, transactional_id: str, producer_id: int,
                             producer_epoch: int, group_id: str):
    """TxnOffsetCommit's check (KIP-890, as Kafka 4's group coordinator asks the
    transaction coordinator): the group's partition of `__consumer_offsets` must be in
    the producer's transaction (AddOffsetsToTxn put it there) with this epoch. An error
    code (0 = fine), or an awaitable of it."""
    topic = broker.image.topics.get(OFFSETS_TOPIC)
    if topic is None:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    tp = (OFFSETS_TOPIC, offsets_partition_for(group_id, len(topic.partitions)))
    codes = verify_in_transaction(broker, transactional_id,
                                  {(producer_id, producer_epoch): [(0, tp)]})
    if inspect.isawaitable(codes):
        return _first(codes)
    return _offset_commit_verdict(codes.get(0, ErrorCode.NONE))


async def _first(pending) -> int:
    return _offset_commit_verdict((await pending).get(0, ErrorCode.NONE))


def _offset_commit_verdict(code: int) -> int:
    # Not in the transaction: INVALID_TXN_STATE for TxnOffsetCommit v0-4 clients.
    return ErrorCode.INVALID_TXN_STATE if code == ErrorCode.TRANSACTION_ABORTABLE else code


def verify_in_transaction(broker, transactional_id: str, need):
    """Ask the coordinator of `transactional_id` whether partitions are in the
    producer's transaction. `need`: {(producer id, epoch): [(key, (topic, partition))]}.
    Returns {key: coordinator error code}, or an awaitable of it when the coordinator is
    another node (AddPartitionsToTxn v4 with verify_only)."""
    node = broker.txn_coordinator_node(transactional_id)
    if node == broker.node_id and broker.txn_coordinator_ready() is not None:
        coordinator = broker.txn_coordinator_ready()
        out = {}
        for (pid, epoch), items in need.items():
            codes = coordinator.verify_partitions(transactional_id, pid, epoch,
                                                  [tp for _, tp in items])
            for key, tp in items:
                out[key] = codes.get(tp, ErrorCode.INVALID_TXN_STATE)
        return out
    return _verify_remote(broker, node, transactional_id, need)


async def _verify_remote(broker, node, transactional_id, need):
    from kafkette.protocol.messages import AddPartitionsToTxnRequest
    Txn = AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction
    Topic = AddPartitionsToTxnRequest.AddPartitionsToTxnTopic
    out = {}
    for (pid, epoch), items in need.items():
        topics = defaultdict(list)
        for _, (t, p) in items:
            topics[t].append(p)
        req = AddPartitionsToTxnRequest(transactions=[Txn(
            transactional_id=transactional_id, producer_id=pid, producer_epoch=epoch,
            verify_only=True, topics=[Topic(name=t, partitions=ps) for t, ps in topics.items()])])
        codes = {}
        try:
            if node is None:
                raise KafkaError("no transaction coordinator", ErrorCode.COORDINATOR_NOT_AVAILABLE)
            resp = await broker.txn_channels.get(node).send(req, 4)
            if resp.error_code:
                raise KafkaError("verification refused", resp.error_code)
            for txn in resp.results_by_transaction:
                for t in txn.topic_results:
                    for p in t.results_by_partition:
                        codes[(t.name, p.partition_index)] = p.partition_error_code
        except (OSError, KafkaError, asyncio.TimeoutError) as e:
            code = getattr(e, "code", ErrorCode.COORDINATOR_NOT_AVAILABLE)
            log.info("txn_verification_failed", transactional_id=transactional_id,
                     coordinator=node, error=str(e))
            codes = {tp: code for _, tp in items}
        for key, tp in items:
            out[key] = codes.get(tp, ErrorCode.COORDINATOR_NOT_AVAILABLE)
    return out
