"""The campaign's transactional workload: stock confluent-kafka (librdkafka) producers,
each with its own ``transactional.id``, in threads.

Each ``TransactionalProducerWorker`` runs transactions one after the other: a few
records (the seed chooses how many, on which partitions — always at least two when the
topic has two — and whether the transaction is meant to commit or abort), each value
naming its producer, transaction, index and intent (`txn_checker.txn_value`). Each
transaction is recorded as the client saw it (`txn_checker.Txn`):

- committed: commit_transaction() returned;
- aborted: abort_transaction() returned — after the planned abort, or after commit
  raised an error that librdkafka marks "requires abort" (the transaction failed, the
  client says so, and the abort that follows is acknowledged);
- unknown: anything else once commit or abort was asked for (a fatal error such as
  PRODUCER_FENCED, retriable errors until the deadline): the producer is then dropped
  and a new one made with the same transactional.id, whose init_transactions fences the
  old epoch and has the coordinator finish what the old one left (KIP-98);
- open: the worker was stopped (or hung) inside it.

Retriable errors (timeouts, a coordinator moving) are retried within `op_timeout`, as
librdkafka asks. Before a planned abort the producer flushes: librdkafka purges what is
still queued when it aborts, and the checker wants aborted records in the log.

Every loop is bounded by a stop event and deadlines; a worker never raises into the
campaign (errors are counted and kept).
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from kafkette.chaos.checker import Produced
from kafkette.chaos.txn_checker import Txn, txn_value
from kafkette.chaos.workload import _CLIENT_COMMON
from kafkette.logging import get_logger

log = get_logger("kafkette.chaos.txn_workload")


class _Failed(Exception):
    """A transactional call failed for good (not retriable, or out of time)."""

    def __init__(self, err: KafkaError | None, what: str):
        super().__init__(what)
        self.err = err


class TransactionalProducerWorker(threading.Thread):
    def __init__(self, name: str, bootstrap: str, topic: str, partitions: Sequence[int], *,
                 rng: random.Random, rate: float = 4.0, records: tuple[int, int] = (2, 6),
                 abort_ratio: float = 0.25, transaction_timeout_ms: int = 30000,
                 message_timeout_ms: int = 15000, op_timeout: float = 45.0,
                 extra_config: Mapping | None = None):
        super().__init__(name=f"chaos-{name}", daemon=True)
        self.producer_name = name
        self.transactional_id = f"chaos-{name}"
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = list(partitions)
        self.rng = rng
        self.rate = rate                   # transactions per second
        self.records = records
        self.abort_ratio = abort_ratio
        self.transaction_timeout_ms = transaction_timeout_ms
        # librdkafka refuses message.timeout.ms above transaction.timeout.ms.
        self.message_timeout_ms = min(message_timeout_ms, transaction_timeout_ms)
        self.op_timeout = op_timeout
        self.extra_config = dict(extra_config or {})
        self.stop_event = threading.Event()
        self.ready = threading.Event()     # a first init_transactions() returned
        self.lock = threading.Lock()
        self.txns: list[Txn] = []
        self.produced: list[Produced] = []
        self._pending: dict[int, str] = {}  # record seq -> value, no delivery report yet
        self._current: dict | None = None   # the transaction in progress
        self._seq = 0
        self._number = 0
        self.incarnations = 0
        self.fatal_errors: list[str] = []
        self.errors: list[str] = []
        self.error_counts: Counter = Counter()   # error name -> times seen
        self.retries = 0

    # ------------------------------------------------------------------ client

    def _config(self) -> dict:
        return {"bootstrap.servers": self.bootstrap,
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": self.transaction_timeout_ms,
                "message.timeout.ms": self.message_timeout_ms, "linger.ms": 5,
                "client.id": f"chaos-{self.producer_name}.{self.incarnations}",
                "error_cb": self._on_error, **_CLIENT_COMMON,
                # librdkafka refuses a socket timeout above the transaction timeout.
                "socket.timeout.ms": min(_CLIENT_COMMON["socket.timeout.ms"],
                                         self.transaction_timeout_ms),
                **self.extra_config}

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal_errors.append(str(err))

    def _on_delivery(self, err, msg, value: str, seq: int) -> None:
        if err is None:
            out = Produced(self.producer_name, seq, value, True, msg.partition(), msg.offset())
        else:
            part = msg.partition() if msg is not None and msg.partition() >= 0 else None
            out = Produced(self.producer_name, seq, value, False, part, None, str(err))
        with self.lock:
            self.produced.append(out)
            self._pending.pop(seq, None)

    def _call(self, fn, what: str, deadline: float) -> None:
        """One transactional call, retried while librdkafka says the error is
        retriable and the deadline allows (its documented contract for
        init/commit/abort)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Failed(None, f"{what}: no success before the deadline")
            try:
                fn(min(left, 10.0))
                return
            except KafkaException as e:
                err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
                name = err.name() if err is not None else repr(e)
                self.error_counts[f"{what}:{name}"] += 1
                if err is not None and err.retriable() and not err.fatal():
                    self.retries += 1
                    continue
                raise _Failed(err, f"{what}: {name}: {err.str() if err else e}") from None

    def _new_producer(self, must: bool = False) -> Producer | None:
        """A producer with our transactional.id and init_transactions() done; None when
        stopped first (unless `must`: at the end, to fence and abort what an old
        instance left open, so that no transaction of ours hangs)."""
        deadline = time.monotonic() + self.op_timeout
        while must or not self.stop_event.is_set():
            if must and time.monotonic() >= deadline:
                return None
            self.incarnations += 1
            p = Producer(self._config())
            try:
                until = time.monotonic() + self.op_timeout
                self._call(p.init_transactions, "init", min(deadline, until) if must else until)
                self.ready.set()
                return p
            except _Failed as e:
                self.errors.append(str(e))
                log.warning("init_transactions failed, new producer", producer=self.producer_name,
                            error=str(e))
                self._drop(p)
                self.stop_event.wait(0.5)
        return None

    def _drop(self, p: Producer) -> None:
        try:
            p.purge()
        except Exception:  # noqa: BLE001 - a fatal state refuses even this
            pass
        try:
            p.flush(0)
        except Exception:  # noqa: BLE001
            pass
        with self.lock:
            self.produced += [Produced(self.producer_name, seq, value, False, None, None,
                                       "no delivery report before the producer was dropped")
                              for seq, value in sorted(self._pending.items())]
            self._pending.clear()
        del p

    # ------------------------------------------------------------------ run

    def run(self) -> None:
        p = None
        clean = True
        try:
            interval = 1.0 / self.rate if self.rate > 0 else 0.0
            while not self.stop_event.is_set():
                if p is None:
                    p = self._new_producer()
                    if p is None:
                        break
                t0 = time.monotonic()
                clean = self._one_transaction(p)
                if not clean:
                    self._drop(p)
                    p = None
                    continue
                self.stop_event.wait(max(0.0, interval - (time.monotonic() - t0)))
        except Exception as e:  # noqa: BLE001 - reported by the campaign
            self.errors.append(repr(e))
            log.error("transactional producer worker failed", producer=self.producer_name,
                      error=repr(e))
            self._finish_current("unknown", repr(e))
            clean = False
        finally:
            if p is not None and clean:
                p.flush(5)   # no transaction is open: nothing else to wait for
            elif not clean:
                if p is not None:
                    self._drop(p)
                # Fence the last instance, which aborts its open transaction now rather
                # than after transaction.timeout.ms.
                try:
                    p2 = self._new_producer(must=True)
                    if p2 is not None:
                        p2.flush(5)
                except Exception as e:  # noqa: BLE001 - e.g. a config librdkafka refuses
                    self.errors.append(repr(e))

    def _plan(self) -> tuple[str, list[int]]:
        """The seeded shape of the next transaction: intent and partitions. It draws
        the same number of values whatever the topic's size and whatever happens in the
        cluster (random() only: randrange's rejection sampling would not)."""
        rng, n_parts = self.rng, len(self.partitions)
        low, high = self.records
        n = low + int(rng.random() * (high - low + 1))
        intent = "abort" if rng.random() < self.abort_ratio else "commit"
        parts = [int(rng.random() * n_parts) for _ in range(high)][:n]
        if n_parts > 1 and n > 1:   # at least two partitions in every transaction
            parts[1] = (parts[0] + 1 + int(rng.random() * (n_parts - 1))) % n_parts
        else:
            rng.random()
        return intent, [self.partitions[i] for i in parts]

    def _one_transaction(self, p: Producer) -> bool:
        """Run one transaction; False when the producer must be replaced."""
        intent, parts = self._plan()
        number = self._number
        self._number += 1
        cur = {"number": number, "intent": intent, "values": [], "partitions": [],
               "commit_called": False, "ending": False, "t0": time.monotonic()}
        self._current = cur
        deadline = time.monotonic() + self.op_timeout
        try:
            try:
                p.begin_transaction()
            except KafkaException as e:
                raise _Failed(e.args[0] if e.args else None, f"begin: {e}") from None
            for i, part in enumerate(parts):
                self._produce(p, part, txn_value(self.producer_name, number, i, intent), cur)
            p.poll(0)
            cur["ending"] = True
            if intent == "abort":
                p.flush(max(0.0, deadline - time.monotonic()))
                self._call(p.abort_transaction, "abort", deadline)
                self._finish_current("aborted")
            else:
                cur["commit_called"] = True
                self._call(p.commit_transaction, "commit", deadline)
                self._finish_current("committed")
            p.poll(0)
            return True
        except _Failed as e:
            err = e.err
            if err is not None and err.txn_requires_abort() and not err.fatal():
                # librdkafka: the transaction failed and must be aborted; once the abort
                # is acknowledged, it is aborted.
                try:
                    cur["ending"] = True
                    self._call(p.abort_transaction, "abort", time.monotonic() + self.op_timeout)
                    self._finish_current("aborted", str(e))
                    return True
                except _Failed as e2:
                    e = _Failed(e2.err, f"{e}; then {e2}")
            if err is not None and err.fatal() and str(e) not in self.fatal_errors:
                self.fatal_errors.append(str(e))   # error_cb does not see every one
            log.warning("transaction outcome unknown, new producer", producer=self.producer_name,
                        transaction=number, error=str(e))
            # Not open: this producer is dropped, and the next one's init_transactions
            # aborts the transaction if the coordinator still has it open.
            self._finish_current("unknown", str(e))
            return False

    def _produce(self, p: Producer, partition: int, value: str, cur: dict) -> None:
        seq = self._seq
        self._seq += 1
        for _ in range(200):
            try:
                with self.lock:
                    self._pending[seq] = value
                cur["values"].append(value)
                cur["partitions"].append(partition)
                p.produce(self.topic, value=value.encode(), key=value.encode(),
                          partition=partition,
                          on_delivery=lambda err, msg, v=value, s=seq:
                          self._on_delivery(err, msg, v, s))
                return
            except BufferError:   # local queue full: serve callbacks, try again
                self._unproduce(seq, cur)
                p.poll(0.05)
            except KafkaException as e:   # the transaction is in an error state
                self._unproduce(seq, cur)
                raise _Failed(e.args[0] if e.args else None, f"produce: {e}") from None
        raise RuntimeError("producer queue stayed full for 10 s")

    def _unproduce(self, seq: int, cur: dict) -> None:
        with self.lock:
            self._pending.pop(seq, None)
        cur["values"].pop()
        cur["partitions"].pop()

    def _finish_current(self, outcome: str, error: str | None = None) -> None:
        cur, self._current = self._current, None
        if cur is None or not cur["values"]:
            return   # nothing was handed to the client: nothing to check
        t = Txn(self.producer_name, cur["number"], cur["intent"], outcome,
                tuple(cur["values"]), tuple(cur["partitions"]), cur["commit_called"], error,
                round(time.monotonic() - cur["t0"], 3))
        with self.lock:
            self.txns.append(t)

    def snapshot(self) -> list[Txn]:
        """Every transaction so far, and the one in progress (if the worker is stuck in
        it): open before commit or abort was asked for, unknown after."""
        with self.lock:
            out = list(self.txns)
        cur = self._current
        if cur is not None:
            out.append(Txn(self.producer_name, cur["number"], cur["intent"],
                           "unknown" if cur["ending"] else "open", tuple(cur["values"]),
                           tuple(cur["partitions"]), cur["commit_called"],
                           "in progress when the workload stopped",
                           round(time.monotonic() - cur["t0"], 3)))
        return out

    def stop(self) -> None:
        self.stop_event.set()
