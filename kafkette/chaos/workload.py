"""The campaign's workload: stock confluent-kafka (librdkafka) clients in threads.

- ``ProducerWorker``: an idempotent acks=all producer writing unique values
  ``<name>/<sequence>`` over many keys, recording each delivery report (acknowledged
  with partition and offset, or failed with the error). A fatal error (librdkafka
  raises one when idempotence can no longer be guaranteed, e.g. a sequence gap after
  data loss) ends that producer instance; the worker starts a new one (a new producer
  id) and goes on with the same sequence counter, so values stay unique.
- ``ConsumerWorker``: an assign-mode consumer of every partition from the beginning,
  no group, no commits, isolation level left at librdkafka's default; records every
  (partition, offset, value) in the order it got them.
- ``drain()``: after healing, every partition read from the beginning up to the end
  offsets given.

Every loop is bounded by a stop event and a deadline; a worker never raises into the
campaign (errors are counted and kept in `errors`).
"""
from __future__ import annotations

import random
import threading
import time
from typing import Callable, Iterable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CTopicPartition

from kafkette.chaos.checker import Produced, Read
from kafkette.logging import get_logger

log = get_logger("kafkette.chaos.workload")

#: librdkafka's reconnect and metadata settings, short so that clients follow a
#: failover within the campaign's rounds (its defaults: 5 minutes of metadata age).
_CLIENT_COMMON = {
    "socket.timeout.ms": 10000,
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 2000,
    # librdkafka logs every refused connection at level 3 (error), which a campaign
    # causes by the hundred; what matters reaches the workers through error_cb and
    # delivery reports.
    "log_level": 2,
}


class ProducerWorker(threading.Thread):
    def __init__(self, name: str, bootstrap: str, topic: str, *, rng: random.Random,
                 keys: int = 100, rate: float = 100.0, message_timeout_ms: int = 20000,
                 extra_config: Mapping | None = None,
                 key_for: Callable[[int], str] | None = None):
        super().__init__(name=f"chaos-{name}", daemon=True)
        self.producer_name = name
        # The key of sequence number n; a function of n lets a checker recover each
        # record's key from its value (the soak's compacted-topic check needs it).
        self.key_for = key_for
        self.bootstrap = bootstrap
        self.topic = topic
        self.rng = rng
        self.keys = keys
        self.rate = rate
        self.message_timeout_ms = message_timeout_ms
        self.extra_config = dict(extra_config or {})
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: list[Produced] = []
        self._pending: dict[int, str] = {}   # seq -> value, produced and not reported
        self.sent = 0
        self.incarnations = 0
        self.fatal_errors: list[str] = []
        self.errors: list[str] = []
        self._fatal = threading.Event()

    def _config(self) -> dict:
        return {"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                "acks": "all", "linger.ms": 5,
                "message.timeout.ms": self.message_timeout_ms,
                "client.id": f"chaos-{self.producer_name}.{self.incarnations}",
                "error_cb": self._on_error, **_CLIENT_COMMON, **self.extra_config}

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal_errors.append(str(err))
            self._fatal.set()

    def _on_delivery(self, err, msg, value: str, seq: int) -> None:
        if err is None:
            out = Produced(self.producer_name, seq, value, True, msg.partition(), msg.offset())
        else:
            part = msg.partition() if msg is not None and msg.partition() >= 0 else None
            out = Produced(self.producer_name, seq, value, False, part, None, str(err))
        with self.lock:
            self.outcomes.append(out)
            self._pending.pop(seq, None)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._run_one()
            except KafkaException as e:
                if self._fatal.is_set():
                    continue   # produce() refused after the fatal error: a new instance
                self.errors.append(repr(e))
                log.error("producer worker failed", producer=self.producer_name, error=repr(e))
                return
            except Exception as e:  # noqa: BLE001 - reported by the campaign
                self.errors.append(repr(e))
                log.error("producer worker failed", producer=self.producer_name, error=repr(e))
                return

    def _run_one(self) -> None:
        self.incarnations += 1
        self._fatal.clear()
        p = Producer(self._config())
        # Ticks of 10 ms, longer below 100 records/s: with 10 ms ticks and at least one
        # record per tick, any rate under 100/s came out as 100/s.
        interval = max(0.01, 1.0 / self.rate)
        per_tick = max(1, round(self.rate * interval))
        next_tick = time.monotonic()
        try:
            while not self.stop_event.is_set() and not self._fatal.is_set():
                for _ in range(per_tick):
                    self._produce_one(p)
                p.poll(0)
                next_tick += interval
                delay = next_tick - time.monotonic()
                if delay > 0:
                    self.stop_event.wait(delay)
                else:
                    next_tick = time.monotonic()
        finally:
            # Wait for the reports of what is in flight; message.timeout.ms bounds each.
            left = p.flush(self.message_timeout_ms / 1000 + 5)
            if left:
                self.errors.append(f"{left} messages without a delivery report at close")
            with self.lock:
                # Not acknowledged, as far as the application knows.
                self.outcomes += [Produced(self.producer_name, seq, value, False, None, None,
                                           "no delivery report before close")
                                  for seq, value in sorted(self._pending.items())]
                self._pending.clear()
            if self._fatal.is_set():
                log.warning("producer fatal error, starting a new instance",
                            producer=self.producer_name, error=self.fatal_errors[-1])
                self.stop_event.wait(0.5)

    def _produce_one(self, p: Producer) -> None:
        seq = self.sent
        value = f"{self.producer_name}/{seq}"
        key = (self.key_for(seq) if self.key_for is not None
               else f"k{self.rng.randrange(self.keys)}")
        for _ in range(100):
            try:
                with self.lock:
                    self._pending[seq] = value
                p.produce(self.topic, value=value.encode(), key=key.encode(),
                          on_delivery=lambda err, msg, v=value, s=seq:
                          self._on_delivery(err, msg, v, s))
                self.sent += 1
                return
            except BufferError:  # local queue full: serve callbacks, try again
                with self.lock:
                    self._pending.pop(seq, None)
                p.poll(0.05)
        raise RuntimeError("producer queue stayed full for 5 s")

    def stop(self) -> None:
        self.stop_event.set()


class ConsumerWorker(threading.Thread):
    def __init__(self, name: str, bootstrap: str, topic: str, partitions: Iterable[int],
                 extra_config: Mapping | None = None):
        super().__init__(name=f"chaos-{name}", daemon=True)
        self.reader = name
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = list(partitions)
        self.extra_config = dict(extra_config or {})
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.reads: list[Read] = []
        self.positions: dict[int, int] = {p: 0 for p in self.partitions}
        self.errors: dict[str, int] = {}   # error name -> count

    def run(self) -> None:
        try:
            c = Consumer({"bootstrap.servers": self.bootstrap,
                          "group.id": f"chaos-{self.reader}", "enable.auto.commit": False,
                          "auto.offset.reset": "earliest", "client.id": f"chaos-{self.reader}",
                          **_CLIENT_COMMON, **self.extra_config})
        except Exception as e:  # noqa: BLE001
            self.errors[repr(e)] = 1
            return
        try:
            c.assign([CTopicPartition(self.topic, p, OFFSET_BEGINNING)
                      for p in self.partitions])
            while not self.stop_event.is_set():
                msgs = c.consume(500, 0.2)
                batch = []
                for m in msgs:
                    if m.error():
                        key = m.error().name()
                        self.errors[key] = self.errors.get(key, 0) + 1
                        continue
                    batch.append(Read(self.reader, m.partition(), m.offset(),
                                      m.value().decode(errors="replace")))
                if batch:
                    with self.lock:
                        self.reads.extend(batch)
                        for r in batch:
                            self.positions[r.partition] = r.offset + 1
        except Exception as e:  # noqa: BLE001
            self.errors[repr(e)] = self.errors.get(repr(e), 0) + 1
            log.error("consumer worker failed", consumer=self.reader, error=repr(e))
        finally:
            c.close()

    def stop(self) -> None:
        self.stop_event.set()



def drain(bootstrap: str, topic: str, end_offsets: Mapping[int, int], timeout: float = 60.0,
          extra_config: Mapping | None = None) -> tuple[list[Read], dict[int, int]]:
    """Read every partition of `end_offsets` from the beginning until its position
    reaches the end offset (or `timeout`). Returns the reads and the positions reached
    (the offset after the last record read, or where librdkafka reported the end)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-drain-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True, "client.id": "chaos-drain",
                  **_CLIENT_COMMON, **dict(extra_config or {})})
    reads: list[Read] = []
    positions = {p: 0 for p in end_offsets}
    try:
        c.assign([CTopicPartition(topic, p, OFFSET_BEGINNING) for p in end_offsets])
        deadline = time.monotonic() + timeout
        while any(positions[p] < end for p, end in end_offsets.items()):
            if time.monotonic() >= deadline:
                break
            for m in c.consume(1000, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        positions[m.partition()] = max(positions[m.partition()], m.offset())
                    continue
                reads.append(Read("drain", m.partition(), m.offset(),
                                  m.value().decode(errors="replace")))
                positions[m.partition()] = max(positions[m.partition()], m.offset() + 1)
    finally:
        c.close()
    return reads, positions
