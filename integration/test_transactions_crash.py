"""kill -9 of a single broker while a confluent-kafka producer runs transactions.

A producer commits (and, every third, aborts) transactions of 24 records over three
partitions in a loop; the broker is killed with SIGKILL at a seeded moment, three times,
and restarted each time. The producer's outcome of every transaction is recorded as the
client saw it: committed (commit_transaction returned), aborted (abort returned) or
unknown (it failed mid-way; then a new producer with the same transactional id takes
over, which fences the old one and aborts what it left open). Afterwards a
read_committed reader must see every record of every committed transaction, none of an
aborted one, an unknown one all or not at all (no torn transaction), nothing twice, and
every partition's read_committed end (the LSO) must reach its high watermark: no
transaction left hanging by the crash, whether it fell during produce, between the
EndTxn answer and the markers, or during the markers.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import KafkaException, Producer

from it_clients import create_topic, end_offsets_confluent, read_partitions_confluent
from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(240)
WAIT = 30.0
PARTITIONS = 3
PER_TXN = 24
SEED = 20261204


class TxnLoop(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, txn_id: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.txn_id = bootstrap, topic, txn_id
        self.outcomes: dict[int, str] = {}
        self.stopping = threading.Event()
        self.takeovers = 0
        self.error: BaseException | None = None

    def _producer(self) -> Producer:
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": self.txn_id,
                      "linger.ms": 2, "transaction.timeout.ms": 20000,
                      "message.timeout.ms": 20000, "socket.timeout.ms": 5000})
        deadline = time.monotonic() + 60
        while True:
            try:
                p.init_transactions(10)
                return p
            except KafkaException:
                if time.monotonic() > deadline:
                    raise

    def run(self) -> None:
        try:
            p = self._producer()
            n = 0
            while not self.stopping.is_set():
                n += 1
                commit = n % 3 != 0
                try:
                    p.begin_transaction()
                    for i in range(PER_TXN):
                        p.produce(self.topic, f"{n}:{i}".encode(), partition=i % PARTITIONS)
                    if p.flush(WAIT) != 0:
                        raise KafkaException("records not delivered")
                    if commit:
                        p.commit_transaction(WAIT)
                    else:
                        p.abort_transaction(WAIT)
                    self.outcomes[n] = "committed" if commit else "aborted"
                except KafkaException:
                    self.outcomes[n] = "unknown"
                    # A new producer with the same id: fences this one and aborts what it
                    # left open (the client's fatal or abortable error alike).
                    self.takeovers += 1
                    p = self._producer()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def _read(bootstrap, topic, isolation) -> list[tuple[int, bytes]]:
    return [(p, v) for p, _, v in read_partitions_confluent(bootstrap, topic, PARTITIONS,
                                                            isolation)]


def _ends(bootstrap, topic, isolation) -> list[int]:
    return end_offsets_confluent(bootstrap, topic, range(PARTITIONS), isolation)


def test_kill_9_during_transactions_loses_no_commit_and_tears_none(fresh_broker):
    b = fresh_broker
    topic = unique_topic("txn-crash")
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)
    rng = random.Random(SEED)
    loop = TxnLoop(b.bootstrap, topic, f"crash-{uuid.uuid4().hex[:8]}")
    loop.start()
    for kill in range(3):
        target = len(loop.outcomes) + 3
        wait_until(lambda: len(loop.outcomes) >= target or loop.error, 60,
                   message="transactions to go on")
        time.sleep(rng.uniform(0.0, 0.3))   # a seeded moment inside a transaction's life
        b.kill()
        b.start()
    target = len(loop.outcomes) + 3
    wait_until(lambda: len(loop.outcomes) >= target or loop.error, 90,
               message="transactions after the last restart")
    loop.stopping.set()
    loop.join(90)
    assert loop.error is None, loop.error
    outcomes = dict(loop.outcomes)

    wait_until(lambda: _ends(b.bootstrap, topic, "read_committed") ==
               _ends(b.bootstrap, topic, "read_uncommitted"), 60,
               message="every partition's LSO to reach its high watermark")
    seen = Counter(v for _, v in _read(b.bootstrap, topic, "read_committed"))
    by_txn: dict[int, int] = Counter()
    for v in seen:
        by_txn[int(v.split(b":")[0])] += 1
    dup = [v for v, c in seen.items() if c > 1]
    lost = [n for n, o in outcomes.items() if o == "committed" and by_txn.get(n, 0) != PER_TXN]
    aborted_read = [n for n, o in outcomes.items() if o == "aborted" and by_txn.get(n, 0)]
    torn = [n for n, o in outcomes.items() if o == "unknown" and by_txn.get(n, 0)
            not in (0, PER_TXN)]
    counts = Counter(outcomes.values())
    print(f"\n{len(outcomes)} transactions: {dict(counts)}, {loop.takeovers} takeovers; "
          f"lost {len(lost)}, aborted read {len(aborted_read)}, torn {len(torn)}, "
          f"duplicated {len(dup)}")
    assert not (lost or aborted_read or torn or dup), (lost, aborted_read, torn, dup[:5])
    assert counts["committed"] >= 5
