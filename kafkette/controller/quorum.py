"""The metadata quorum as the controller sees it: an ordered, replicated log of
proposals, each applied once committed.

Two implementations share this interface:

- `LocalQuorum` (here): no `controller.quorum.voters`, a node alone is the quorum. A
  proposal is committed as soon as it is appended and fsynced to the local metadata
  log, so `append()` never suspends; single-node handlers stay synchronous through
  `run_now()`.
- `RaftQuorum` (kafkette/controller/raft/quorum.py): the KRaft-style quorum of the
  cluster issue; `append()` resolves once a majority has the entry.

Both store proposals as record batches (JSON values) in `__cluster_metadata-0` with the
project's own log store, so a single node's data dir opens under either.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from kafkette.errors import KafkaStorageError
from kafkette.log.partition_log import LogConfig, PartitionLog
from kafkette.logging import get_logger
from kafkette.protocol.records import BATCH_HEADER_SIZE, build_batch, decode_records, parse_header

METADATA_TOPIC = "__cluster_metadata"


class QuorumListener(Protocol):
    def apply(self, last_offset: int, values: list[bytes]) -> None: ...
    def load_snapshot(self, last_offset: int, data: bytes) -> None: ...
    def snapshot(self) -> tuple[int, bytes]: ...
    def leader_changed(self, leader_id: int | None, epoch: int) -> None: ...


def run_now(coro):
    """Run a coroutine that is known not to suspend (LocalQuorum writes) to its end,
    without an event loop; a suspension is a programming error."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("run_now: the coroutine suspended (not a local quorum?)")

log = get_logger("kafkette.quorum")


#: The largest metadata log entry a quorum of one takes.
METADATA_MAX_BATCH_BYTES = 8 << 20


class LocalQuorum:
    """A quorum of one: this node is always the leader, epoch 0."""

    is_local = True

    def __init__(self, node_id: int, data_dir: Path, clock):
        self.node_id = node_id
        self.clock = clock
        # One entry holds one controller change, atomically: a CreateTopics of 10,000
        # partitions (the per-topic limit) is ~1.6 MB of records, over the 1 MiB default
        # of max.message.bytes. Kafka's Raft client takes batches of up to 8 MiB
        # (KafkaRaftClient's MAX_BATCH_SIZE_BYTES).
        self._log = PartitionLog(Path(data_dir) / f"{METADATA_TOPIC}-0",
                                 LogConfig(max_message_bytes=METADATA_MAX_BATCH_BYTES), clock)
        self._listener: QuorumListener | None = None

    @property
    def leader_id(self) -> int:
        return self.node_id

    @property
    def epoch(self) -> int:
        return 0

    def is_leader(self) -> bool:
        return True

    def start_sync(self, listener: QuorumListener) -> None:
        """Replay the whole local log into the listener (small: one node's metadata)."""
        self._listener = listener
        offset = self._log.log_start_offset
        while offset < self._log.log_end_offset:
            data = self._log.read(offset, 1 << 20)
            if not data:
                break
            before = offset
            # Each stored batch is applied as one unit, as append() applied it when it
            # was written: one image per batch, not per record (a record at a time
            # copied the image's topic maps 10,000 times for 10,000 partitions).
            pos = 0
            while len(data) - pos >= BATCH_HEADER_SIZE:
                h = parse_header(data, pos)
                batch = data[pos:pos + h.size]
                pos += h.size
                if len(batch) < h.size:
                    break  # a partial batch at the end of the read
                last = h.base_offset + h.last_offset_delta
                if last < offset:
                    continue
                values = [bytes(r.value) for r in decode_records(batch) if r.offset >= offset]
                if values:
                    listener.apply(last, values)
                offset = last + 1
            if offset == before:
                break  # nothing whole could be read: stop rather than spin
        listener.leader_changed(self.node_id, 0)

    async def start(self, listener: QuorumListener) -> None:
        self.start_sync(listener)

    async def append(self, values: list[bytes]) -> int:
        batch = bytearray(build_batch([(None, v, []) for v in values],
                                      timestamp_ms=self.clock.time_ms()))
        result = self._log.append(memoryview(batch), 0, self.clock.time_ms())
        try:
            self._log.flush()  # metadata is small and precious: always fsync it
        except KafkaStorageError as e:
            # Not durable, so not applied: cut the records back out of the log (a full
            # disk lets the truncation through) so that log and image agree, and fail
            # the change (the caller answers KAFKA_STORAGE_ERROR). Kafka's controller
            # exits on a metadata log write failure; one node's metadata log failing
            # here fails metadata changes and keeps serving the rest.
            log.error("metadata log write failed: the metadata change is refused",
                      error=e.message)
            try:
                self._log.truncate_to(result.base_offset)
            except KafkaStorageError:
                pass
            raise
        assert self._listener is not None
        self._listener.apply(result.last_offset, values)
        return result.last_offset

    def describe(self) -> dict:
        return {"leader_id": self.node_id, "epoch": 0,
                "high_watermark": self._log.log_end_offset,
                "voters": {self.node_id: {"log_end_offset": self._log.log_end_offset}}}

    def close_sync(self) -> None:
        try:
            self._log.close()
        except KafkaStorageError as e:
            # Closed all the same, without the clean-shutdown marker: the next start
            # validates the log.
            log.warning("metadata log not closed cleanly", error=e.message)

    async def close(self) -> None:
        self.close_sync()


def encode_records(records: list[dict]) -> list[bytes]:
    return [json.dumps(r, separators=(",", ":")).encode() for r in records]
