"""kafkette.chaos.txn_workload's bookkeeping without a cluster: a scripted stand-in for
confluent-kafka's Producer raises the errors librdkafka raises (retriable, abortable,
fatal), and each transaction must be recorded with the outcome the client was told —
the checker's verdicts rest on it. The real clients run in integration/test_chaos.py."""
from __future__ import annotations

import random

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaError, KafkaException  # noqa: E402

from kafkette.chaos.txn_workload import TransactionalProducerWorker  # noqa: E402


def error(code, *, retriable=False, fatal=False, abortable=False) -> KafkaException:
    return KafkaException(KafkaError(code, "scripted", fatal=fatal, retriable=retriable,
                                     txn_requires_abort=abortable))


class ScriptedProducer:
    """Answers commit/abort from a script (an exception to raise, or None: success);
    delivers every produced record at once."""

    def __init__(self, commit=(), abort=(), produce_error=None, fail_after=0):
        self.commit_script, self.abort_script = list(commit), list(abort)
        self.produce_error, self.fail_after = produce_error, fail_after
        self.calls: list[str] = []
        self.offset = 0

    def _next(self, script, what):
        self.calls.append(what)
        if script:
            e = script.pop(0)
            if e is not None:
                raise e

    def begin_transaction(self):
        self.calls.append("begin")

    def produce(self, topic, value, key, partition, on_delivery):
        if self.produce_error is not None and self.offset >= self.fail_after:
            raise self.produce_error
        msg = type("Msg", (), {"partition": lambda s: partition,
                               "offset": lambda s, o=self.offset: o})()
        self.offset += 1
        on_delivery(None, msg)

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=None):
        self.calls.append("flush")
        return 0

    def commit_transaction(self, timeout):
        self._next(self.commit_script, "commit")

    def abort_transaction(self, timeout):
        self._next(self.abort_script, "abort")


def worker(abort_ratio=0.0) -> TransactionalProducerWorker:
    return TransactionalProducerWorker("t1", "localhost:1", "x", [0, 1, 2],
                                       rng=random.Random(3), abort_ratio=abort_ratio,
                                       op_timeout=5.0)


def one(p: ScriptedProducer, abort_ratio=0.0):
    w = worker(abort_ratio)
    kept = w._one_transaction(p)
    assert len(w.txns) == 1
    return w, w.txns[0], kept


def test_a_commit_that_returns_is_committed():
    w, t, kept = one(ScriptedProducer())
    assert (t.outcome, t.intent, t.commit_called, kept) == ("committed", "commit", True, True)
    assert 2 <= len(t.values) == len(t.partitions) and len(set(t.partitions)) >= 2
    assert [m.value for m in w.produced] == list(t.values)
    assert all(v.startswith("t1/0/") and v.endswith("/c") for v in t.values)


def test_a_planned_abort_flushes_first_so_the_aborted_records_are_written():
    p = ScriptedProducer()
    w, t, kept = one(p, abort_ratio=1.0)
    assert (t.outcome, t.intent, t.commit_called, kept) == ("aborted", "abort", False, True)
    assert p.calls == ["begin", "flush", "abort"]
    assert all(v.endswith("/a") for v in t.values)


def test_a_retriable_commit_error_is_retried_and_still_commits():
    p = ScriptedProducer(commit=[error(KafkaError._TIMED_OUT, retriable=True), None])
    w, t, kept = one(p)
    assert (t.outcome, kept, w.retries) == ("committed", True, 1)
    assert p.calls.count("commit") == 2


def test_an_abortable_commit_error_then_an_abort_that_returns_is_aborted():
    p = ScriptedProducer(commit=[error(KafkaError._TIMED_OUT, abortable=True)])
    w, t, kept = one(p)
    assert (t.outcome, t.commit_called, kept) == ("aborted", True, True)
    assert "commit" in t.error and p.calls[-1] == "abort"


@pytest.mark.parametrize("commit,abort", [
    ([error(KafkaError._FENCED, fatal=True)], []),
    ([error(KafkaError._TIMED_OUT, abortable=True)], [error(KafkaError.INVALID_TXN_STATE)]),
])
def test_any_other_error_after_commit_is_unknown_and_the_producer_replaced(commit, abort):
    w, t, kept = one(ScriptedProducer(commit=commit, abort=abort))
    assert (t.outcome, t.commit_called, kept) == ("unknown", True, False)


def test_a_failure_before_commit_is_unknown_but_never_committed():
    # The second produce() fails: one record was handed over, commit never asked for.
    p = ScriptedProducer(produce_error=error(KafkaError._STATE), fail_after=1)
    w, t, kept = one(p)
    assert (t.outcome, t.commit_called, len(t.values), kept) == ("unknown", False, 1, False)
    assert t.cannot_commit and "commit" not in p.calls


def test_a_failure_before_any_record_leaves_nothing_to_check():
    w = worker()
    assert w._one_transaction(ScriptedProducer(produce_error=error(KafkaError._STATE))) \
        is False
    assert w.txns == []


def test_a_transaction_in_progress_shows_in_the_snapshot():
    w = worker()
    w._current = {"number": 4, "intent": "commit", "values": ["t1/4/0/c"], "partitions": [1],
                  "commit_called": False, "ending": False, "t0": 0.0}
    assert [t.outcome for t in w.snapshot()] == ["open"]
    w._current["ending"] = True
    assert [t.outcome for t in w.snapshot()] == ["unknown"]
