"""`__consumer_offsets`: the internal topic that stores committed offsets and group
metadata, and the glue between it and the group coordinator.

The coordinator (kafkette/coordinator/) knows nothing of topics and logs: it hands
key/value records to an OffsetStore. This store appends them as one record batch to
partition hash(group) % offsets.topic.num.partitions — the same partition whose
leader is the group's coordinator — and on start replays every partition into the
coordinator.

The topic is created on first use, with Kafka's settings for it: compacted,
`offsets.topic.segment.bytes` segments (compaction itself lands with the
durable-log issue; until then the topic only grows, by one small record per commit).

Transactional offset commits (TxnOffsetCommit) are appended as a transactional batch
of the producer (its id and epoch, no sequence), with the coordinator's append origin
(Kafka's AppendOrigin.COORDINATOR); the loader reads the log batch by batch so that
such records stay pending until their producer's COMMIT or ABORT marker.
"""
from __future__ import annotations

import weakref

from kafkette.broker.internal_topics import ensure_internal_topic
from kafkette.coordinator.group_coordinator import offsets_partition_for
from kafkette.errors import KafkaError
from kafkette.logging import get_logger
from kafkette.coordinator.offsets_store import NO_PRODUCER_ID, LoadedRecord, TxnMarker
from kafkette.protocol.records import NO_SEQUENCE, build_batch, decode_records, iter_batches

log = get_logger("kafkette.group_offsets")
OFFSETS_TOPIC = "__consumer_offsets"


class LogOffsetStore:
    """OffsetStore backed by the partitions of `__consumer_offsets`."""

    def __init__(self, broker):
        self.broker = broker
        self.num_partitions = broker.config["offsets.topic.num.partitions"]
        # partition -> (leader epoch, offset after its last append): what an offset
        # commit's answer waits for (ReplicaManager.await_replication), as Kafka's
        # coordinator appends with acks=all.
        self.appended: dict[int, tuple[int, int]] = {}

    def partition_for(self, group_id: str) -> int:
        return offsets_partition_for(group_id, self.num_partitions)

    def append(self, group_id: str, records: list[tuple[bytes, bytes | None]], *,
               producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1) -> int | None:
        """One batch (transactional with a producer id); returns its base offset.
        Kafka's coordinator writes base sequence 0 and skips the sequence check for
        its origin; kafkette writes no sequence (-1), which the log skips likewise."""
        txn = producer_id != NO_PRODUCER_ID
        batch = bytearray(build_batch([(k, v, []) for k, v in records],
                                      timestamp_ms=self.broker.clock.time_ms(),
                                      producer_id=producer_id,
                                      producer_epoch=producer_epoch if txn else -1,
                                      base_sequence=NO_SEQUENCE, transactional=txn))
        p = self.partition_for(group_id)
        rm = self.broker.replica_manager
        results = rm.append_records([(OFFSETS_TOPIC, p, memoryview(batch))], 1,
                                    origin="coordinator")
        if results[0].error:
            raise KafkaError(results[0].message, results[0].error)
        a = results[0].appended
        if a is not None and a.last_offset >= 0:
            self.appended[p] = (rm.partitions[(OFFSETS_TOPIC, p)].leader_epoch,
                                a.last_offset + 1)
            return a.base_offset
        return None

    def await_replication(self, group_id: str, timeout_ms: int):
        """None when the group's last append is already replicated to the ISR, else
        an awaitable of the error code (0 once replicated), for answers that must wait
        (OffsetCommit)."""
        p = self.partition_for(group_id)
        epoch, required = self.appended.get(p, (-1, -1))
        if required < 0:
            return None
        return self.broker.replica_manager.await_replication(OFFSETS_TOPIC, p, required,
                                                             epoch, timeout_ms)


# Broker -> the (wanted, capped) replication factors last warned about, so that the
# FindCoordinator retries of clients while the topic is being created warn once.
_capped_warned: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def offsets_topic_spec(broker) -> tuple[int, int, dict[str, str]]:
    """(partitions, replication factor, configs) of `__consumer_offsets`. The
    replication factor is offsets.topic.replication.factor (Kafka's 3) capped at the
    live brokers, with a warning when capped, so that one node or two work out of the
    box. Kafka refuses instead: the topic is not created (and groups cannot work)
    until that many brokers are up."""
    cfg = broker.config
    wanted = cfg["offsets.topic.replication.factor"]
    rf = max(min(wanted, len(broker.controller.live_brokers())), 1)
    if rf < wanted and _capped_warned.get(broker) != (wanted, rf):
        _capped_warned[broker] = (wanted, rf)
        log.warning("offsets topic replication factor capped at the live brokers",
                    topic=OFFSETS_TOPIC, offsets_topic_replication_factor=wanted,
                    replication_factor=rf)
    return (cfg["offsets.topic.num.partitions"], rf,
            {"cleanup.policy": "compact",
             "segment.bytes": str(cfg["offsets.topic.segment.bytes"])})


def ensure_offsets_topic(broker) -> bool:
    """True when `__consumer_offsets` exists. A single node creates it now; a cluster
    node asks the active controller in the background and answers
    COORDINATOR_NOT_AVAILABLE meanwhile, as Kafka does (clients retry)."""
    return ensure_internal_topic(broker, OFFSETS_TOPIC, offsets_topic_spec)


# A control record's key: int16 version, int16 type (Kafka's ControlRecordType).
_ABORT, _COMMIT = 0, 1


def read_offsets_log(plog) -> list:
    """The records of one `__consumer_offsets` log, in order, as the coordinator loads
    them: LoadedRecord per keyed record of a data batch (with the batch's producer id
    and transactional flag) and TxnMarker per control batch. Only this reader decodes
    records: batch headers say which kind a batch is."""
    items: list = []
    offset = plog.log_start_offset
    end = plog.log_end_offset
    while offset < end:
        data = plog.read(offset, 1 << 20, max_offset=end)
        start = offset
        for pos, h in iter_batches(data) if data else ():
            if h.next_offset <= offset:
                continue
            batch = memoryview(data)[pos:pos + h.size]
            if h.is_control:
                recs = decode_records(batch)
                # A marker the cleaner emptied has no record (Kafka's loader skips it).
                if recs and recs[0].key is not None and len(recs[0].key) >= 4:
                    kind = int.from_bytes(recs[0].key[2:4], "big", signed=True)
                    if kind in (_ABORT, _COMMIT):
                        items.append(TxnMarker(h.producer_id, kind == _COMMIT, h.base_offset))
            else:
                txn = h.is_transactional
                for rec in decode_records(batch):
                    if rec.offset >= offset and rec.key is not None:
                        items.append(LoadedRecord(rec.key, rec.value, rec.offset,
                                                  h.producer_id, txn))
            offset = h.next_offset
        if offset == start:
            break  # nothing readable past here
    return items


def load_offsets(broker, coordinator, loaded: set[int]) -> int:
    """Replay the `__consumer_offsets` partitions this broker leads and has not loaded
    yet into the coordinator (adding them to `loaded`); returns the record count. A
    leader reads its whole log, past the high watermark too: what it holds is what its
    followers will have (a leader never truncates), as Kafka's coordinator loads to the
    log end. Transactional batches are replayed with their markers
    (read_offsets_log)."""
    topic = broker.image.topics.get(OFFSETS_TOPIC)
    if topic is None:
        return 0
    count = 0
    for p in sorted(topic.partitions):
        part = broker.replica_manager.partitions.get((OFFSETS_TOPIC, p))
        if part is None or not part.is_leader or p in loaded:
            continue
        loaded.add(p)
        records = read_offsets_log(part.log)
        try:
            coordinator.load(records)
        except (KafkaError, ValueError) as e:
            log.error("could not load group state", partition=p, error=str(e))
            raise
        count += len(records)
    return count


def follow_offsets_leadership(broker, coordinator, loaded: set[int]) -> None:
    """After a metadata change: load the groups of the `__consumer_offsets`
    partitions this broker now leads, and unload those of partitions it no longer
    leads (Kafka's onElection / onResignation), so a coordinator moves with its
    partition's leadership and a new leader serves the groups from the replicated log."""
    topic = broker.image.topics.get(OFFSETS_TOPIC)
    n = len(topic.partitions) if topic is not None else 0
    rm = broker.replica_manager
    lost = {p for p in loaded
            if not (part := rm.partitions.get((OFFSETS_TOPIC, p))) or not part.is_leader}
    if lost:
        loaded.difference_update(lost)
        groups = coordinator.unload_groups(
            lambda g: n > 0 and offsets_partition_for(g, n) in lost)
        log.info("group coordinator resigned", partitions=sorted(lost), groups=groups)
    gained = load_offsets(broker, coordinator, loaded) if topic is not None else 0
    if gained:
        log.info("group coordinator elected", records_loaded=gained)
