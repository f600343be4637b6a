"""Periodic log work, as Kafka's LogManager schedules it: retention every
`log.retention.check.interval.ms`, the log cleaner (compaction) every
`log.cleaner.backoff.ms` (Kafka's cleaner threads back off that long when there is
nothing to clean), and time-based flushes (`flush.ms`).

Each pass is a plain method taking `now_ms`, so tests call them directly with a
fake clock; `start()` runs them on the event loop for a real broker.
"""
from __future__ import annotations

import asyncio

from kafkette.errors import KafkaStorageError
from kafkette.logging import get_logger

log = get_logger("kafkette.log_maintenance")
# Kafka's producer.id.expiration.check.interval.ms default (an internal setting there).
PRODUCER_EXPIRY_CHECK_MS = 600_000


class LogMaintenance:
    def __init__(self, broker):
        self.broker = broker
        self._tasks: list[asyncio.Task] = []
        # (pass, topic, partition) whose last run met a storage error: logged once.
        self._failing: set[tuple[str, str, int]] = set()

    def _storage_failed(self, what: str, topic: str, index: int, exc: Exception) -> None:
        """One partition's pass failed on its disk (full, or its log dir went offline):
        the other partitions still get theirs; one line per partition and failure spell
        (a full disk would otherwise log each pass)."""
        key = (what, topic, index)
        if key not in self._failing:
            self._failing.add(key)
            log.warning("log maintenance skipped a partition: storage error", task=what,
                        topic=topic, partition=index, error=str(exc))

    def _storage_ok(self, what: str, topic: str, index: int) -> None:
        if self._failing:
            self._failing.discard((what, topic, index))

    # -- passes ------------------------------------------------------------------
    def run_retention(self, now_ms: int) -> int:
        """Delete expired segments of every partition; returns segments deleted."""
        from kafkette.log.retention import enforce_retention
        deleted = 0
        for (topic, index), part in list(self.broker.replica_manager.partitions.items()):
            if part.log.closed:
                continue  # its log dir is offline
            try:
                n = enforce_retention(part.log, now_ms, part.high_watermark)
            except (KafkaStorageError, OSError) as e:
                self._storage_failed("retention", topic, index, e)
                continue
            self._storage_ok("retention", topic, index)
            if n:
                deleted += n
                log.info("retention deleted segments", topic=topic, partition=index,
                         segments=n, log_start_offset=part.log.log_start_offset)
        return deleted

    def run_cleaner(self, now_ms: int) -> int:
        """Compact the logs whose cleanup.policy includes compact; returns logs cleaned."""
        if not self.broker.config["log.cleaner.enable"]:
            return 0
        from kafkette.log.cleaner import clean_log
        cleaned = 0
        for (topic, index), part in list(self.broker.replica_manager.partitions.items()):
            if part.log.closed or not part.log.config.compact:
                continue
            try:
                stats = clean_log(part.log, now_ms, part.high_watermark)
            except (KafkaStorageError, OSError) as e:
                self._storage_failed("cleaner", topic, index, e)
                continue
            self._storage_ok("cleaner", topic, index)
            if stats is not None:
                cleaned += 1
                log.info("log cleaned", topic=topic, partition=index, **stats)
        return cleaned

    async def run_cleaner_async(self, now_ms: int) -> int:
        """As run_cleaner, but the heavy part of each pass (reading closed segments,
        building the offset map, writing .cleaned files) runs in a worker thread, so
        a large compacted log does not stall the event loop; only the swap, which
        changes the log's state, runs on the loop. Kafka runs its cleaner in threads
        of its own (log.cleaner.threads) for the same reason."""
        if not self.broker.config["log.cleaner.enable"]:
            return 0
        from kafkette.log.cleaner import build_cleaned_segments, finish_cleaning, plan_cleaning
        cleaned_logs = 0
        for (topic, index), part in list(self.broker.replica_manager.partitions.items()):
            plog = part.log
            if plog.closed or not plog.config.compact:
                continue
            try:
                task = plan_cleaning(plog, now_ms, part.high_watermark)
                if task is None:
                    continue
                cleaned = await asyncio.to_thread(build_cleaned_segments, task)
                stats = finish_cleaning(plog, task, cleaned)
            except (KafkaStorageError, OSError) as e:
                # A full disk while writing the .cleaned files: the log is unchanged
                # (the swap never started) and the next pass tries again.
                self._storage_failed("cleaner", topic, index, e)
                continue
            self._storage_ok("cleaner", topic, index)
            if stats is not None:
                cleaned_logs += 1
                log.info("log cleaned", topic=topic, partition=index, **stats)
        return cleaned_logs

    def run_producer_expiry(self, now_ms: int) -> int:
        """Forget idempotent producers idle for producer.id.expiration.ms (Kafka checks
        every producer.id.expiration.check.interval.ms, 10 minutes)."""
        expiration_ms = self.broker.config["producer.id.expiration.ms"]
        removed = 0
        for part in list(self.broker.replica_manager.partitions.values()):
            if not part.log.closed:
                removed += part.log.remove_expired_producers(now_ms, expiration_ms) or 0
        return removed

    def run_flush(self, now_ms: int) -> None:
        self.broker.log_manager.maybe_flush_all(now_ms)

    # -- scheduling ----------------------------------------------------------------
    def start(self) -> None:
        cfg = self.broker.config
        self._tasks = [
            asyncio.ensure_future(self._every(cfg["log.retention.check.interval.ms"],
                                              self.run_retention)),
            asyncio.ensure_future(self._every(cfg["log.cleaner.backoff.ms"],
                                              self.run_cleaner_async)),
            asyncio.ensure_future(self._every(1000, self.run_flush)),
            asyncio.ensure_future(self._every(PRODUCER_EXPIRY_CHECK_MS, self.run_producer_expiry)),
        ]

    async def _every(self, interval_ms: int, fn) -> None:
        clock = self.broker.clock
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                result = fn(clock.time_ms())
                if asyncio.iscoroutine(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failing pass must not stop the next one, nor the broker.
                log.exception("log maintenance pass failed", task=fn.__name__)

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks = []
