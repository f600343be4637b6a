"""Fetch sessions (KIP-227) with a client that uses them: kafka-python 3 opens an
incremental fetch session per broker (enable_incremental_fetch_sessions, on by default)
and checks every answer against its session (a full answer that omits a partition, or
an incremental one that names a partition outside the session, makes it drop the
session). A 100-partition topic, written before and while it is read: every record must
arrive, and the client must have stayed in one session, fetching incrementally."""
from __future__ import annotations

import time

import pytest
from kafka import TopicPartition
from kafka.consumer import fetcher as kp_fetcher

from it_clients import consumer, create_topic, producer
from itutil import unique_topic

pytestmark = pytest.mark.timeout(180)

PARTITIONS = 100
PER_PARTITION = 20


def test_kafka_python_consumes_100_partitions_through_one_session(broker, monkeypatch):
    topic = unique_topic("kp-sessions")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    answers = []   # (request was incremental, response session id, partitions answered)
    real = kp_fetcher.FetchSessionHandler.handle_response

    def spy(self, response):
        full = self.next_metadata.is_full
        ok = real(self, response)
        answers.append((not full, response.session_id, ok,
                        len(self._response_partitions(response))))
        return ok
    monkeypatch.setattr(kp_fetcher.FetchSessionHandler, "handle_response", spy)

    def write(tag: str) -> None:
        with producer(broker.bootstrap) as p:
            for part in range(PARTITIONS):
                for i in range(PER_PARTITION // 2):
                    p.send(topic, value=f"{tag}-{part}-{i}".encode(), partition=part)
            p.flush(30)

    write("first")
    want = {f"{tag}-{part}-{i}" for tag in ("first", "second")
            for part in range(PARTITIONS) for i in range(PER_PARTITION // 2)}
    got: set[str] = set()
    with consumer(broker.bootstrap, fetch_max_wait_ms=100) as c:
        c.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        c.seek_to_beginning()
        deadline = time.monotonic() + 90
        second_written = False
        while got != want:
            assert time.monotonic() < deadline, f"{len(got)} of {len(want)} records arrived"
            for records in c.poll(timeout_ms=500).values():
                got.update(r.value.decode() for r in records)
            if not second_written and len(got) >= len(want) // 2:
                write("second")  # new data for a session that already exists
                second_written = True
        # A few more quiet polls: incremental answers with nothing new are empty.
        for _ in range(3):
            c.poll(timeout_ms=300)
    assert got == want
    assert all(ok for _inc, _sid, ok, _n in answers), answers
    sessions = {sid for inc, sid, _ok, _n in answers if sid}
    assert len(sessions) == 1, answers          # one session for the whole read
    incremental = [n for inc, sid, _ok, n in answers if inc]
    assert len(incremental) >= 3, answers
    # Quiet incremental answers name fewer partitions than the session holds.
    assert min(incremental) < PARTITIONS, answers
