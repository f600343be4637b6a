"""TransactionCoordinator, sans-IO: driven with a FakeScheduler, a store whose append
callbacks the test fires, a marker sender whose completions the test fires, and a
producer id source. Expected answers follow Kafka's TransactionCoordinator (4.x)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Callable

import pytest

from kafkette.coordinator import FakeScheduler
from kafkette.coordinator.transaction_coordinator import (
    COMPLETE_RETRY_BACKOFF_MS, VALID_PREVIOUS_STATES, EndTxnResult, IllegalTxnTransition,
    InitPidResult, TransactionCoordinator, TransactionMetadata, TxnConfig)
from kafkette.coordinator.transaction_log import (
    TxnLogValue, TxnState, decode_txn_key, decode_txn_value, encode_txn_key, encode_txn_value)
from kafkette.errors import ErrorCode, KafkaError

E = ErrorCode
S = TxnState
T0 = 1_000_000
COORD_EPOCH = 7


# ------------------------------------------------------------------ fakes

@dataclass
class Append:
    transactional_id: str
    key: bytes
    value: bytes | None
    callback: Callable[[int], None]

    @property
    def record(self) -> TxnLogValue | None:
        return decode_txn_value(self.value)


class FakeStore:
    """Appends wait until the test acks them (`ack`), unless `auto` is set."""

    def __init__(self, partitions: dict[str, int] | None = None):
        self.partitions = partitions or {}
        self.pending: list[Append] = []
        self.written: list[Append] = []
        self.raise_next: KafkaError | None = None

    def partition_for(self, transactional_id: str) -> int:
        return self.partitions.get(transactional_id, 0)

    def append(self, transactional_id, key, value, callback):
        if self.raise_next is not None:
            e, self.raise_next = self.raise_next, None
            raise e
        assert decode_txn_key(key) == transactional_id
        self.pending.append(Append(transactional_id, key, value, callback))

    def ack(self, error: int = 0) -> Append:
        a = self.pending.pop(0)
        if error == 0:
            self.written.append(a)
        a.callback(error)
        return a


@dataclass
class MarkerSend:
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool
    partitions: list
    callback: Callable[[], None]


class FakeMarkers:
    def __init__(self):
        self.pending: list[MarkerSend] = []
        self.sent: list[MarkerSend] = []

    def send_markers(self, producer_id, producer_epoch, coordinator_epoch, commit, partitions,
                     callback):
        m = MarkerSend(producer_id, producer_epoch, coordinator_epoch, commit, list(partitions),
                       callback)
        self.pending.append(m)
        self.sent.append(m)

    def complete(self) -> MarkerSend:
        m = self.pending.pop(0)
        m.callback()
        return m


class FakeIds:
    """Hands out 1000, 1001, ... synchronously unless `hold` (then `release`)."""

    def __init__(self):
        self.ids = itertools.count(1000)
        self.hold = False
        self.error = 0
        self.waiting: list[Callable[[int, int], None]] = []

    def next_producer_id(self, callback):
        if self.hold:
            self.waiting.append(callback)
        elif self.error:
            callback(self.error, -1)
        else:
            callback(0, next(self.ids))

    def release(self):
        for cb in self.waiting:
            cb(0, next(self.ids))
        self.waiting.clear()


class Answers(list):
    def __call__(self, result):
        self.append(result)

    @property
    def last(self):
        assert self, "no answer yet"
        return self[-1]


class Harness:
    def __init__(self, config: TxnConfig | None = None, load: bool = True, **kw):
        self.sched = FakeScheduler(now_ms=T0)
        self.store = FakeStore(kw.pop("partitions", None))
        self.markers = FakeMarkers()
        self.ids = FakeIds()
        self.tc = TransactionCoordinator(self.sched, self.store, self.markers, self.ids,
                                         config or TxnConfig(), **kw)
        if load:
            self.tc.load_partition(0, COORD_EPOCH, [])

    # --- requests, each returning its Answers

    def init(self, txn="t", timeout=60000, pid=-1, epoch=-1) -> Answers:
        a = Answers()
        self.tc.init_producer_id(txn, timeout, pid, epoch, a)
        return a

    def add(self, pid, epoch, parts=(("topic", 0),), txn="t", tv=0) -> Answers:
        a = Answers()
        self.tc.add_partitions(txn, pid, epoch, list(parts), a, client_transaction_version=tv)
        return a

    def end(self, pid, epoch, commit=True, txn="t", tv=0) -> Answers:
        a = Answers()
        self.tc.end_txn(txn, pid, epoch, commit, tv, a)
        return a

    # --- whole steps

    def initialized(self, txn="t", timeout=60000) -> tuple[int, int]:
        a = self.init(txn, timeout)
        self.store.ack()
        assert a.last.error == E.NONE
        return a.last.producer_id, a.last.producer_epoch

    def ongoing(self, txn="t", parts=(("topic", 0),), tv=0, timeout=60000):
        pid, epoch = self.initialized(txn, timeout)
        a = self.add(pid, epoch, parts, txn, tv)
        self.store.ack()
        assert a == [E.NONE]
        return pid, epoch

    def finish(self):
        """Markers written, then Complete* acked."""
        self.markers.complete()
        rec = self.store.ack().record
        assert rec.state in (S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
        return rec

    def md(self, txn="t") -> TransactionMetadata:
        return self.tc.metadata(txn)


# ------------------------------------------------------------------ the state table

KAFKA_TABLE = {  # target: sources, as Kafka's TransactionState.validPreviousStates
    S.EMPTY: {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.ONGOING: {S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.PREPARE_COMMIT: {S.ONGOING},
    S.PREPARE_ABORT: {S.ONGOING, S.PREPARE_EPOCH_FENCE, S.EMPTY, S.COMPLETE_COMMIT,
                      S.COMPLETE_ABORT},
    S.COMPLETE_COMMIT: {S.PREPARE_COMMIT},
    S.COMPLETE_ABORT: {S.PREPARE_ABORT},
    S.DEAD: {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.PREPARE_EPOCH_FENCE: {S.ONGOING},
}


def test_table_is_kafkas():
    assert {k: set(v) for k, v in VALID_PREVIOUS_STATES.items()} == KAFKA_TABLE


@pytest.mark.parametrize("source", list(S))
@pytest.mark.parametrize("target", list(S))
def test_every_transition_is_checked(source, target):
    md = TransactionMetadata("t", 5, 3, state=source)
    if source in KAFKA_TABLE[target]:
        transit = md.prepare_transition_to(target)
        assert transit.state == target and md.pending_state == target
    else:
        with pytest.raises(IllegalTxnTransition):
            md.prepare_transition_to(target)
        assert md.pending_state is None


def test_a_pending_transition_blocks_another_and_must_be_completed_as_prepared():
    md = TransactionMetadata("t", 5, 3, state=S.EMPTY)
    transit = md.prepare_add_partitions([("a", 0)], 10, 0)
    with pytest.raises(IllegalTxnTransition):
        md.prepare_add_partitions([("a", 1)], 10, 0)
    other = TransactionMetadata("t", 5, 3, state=S.ONGOING, txn_start_timestamp=1)
    wrong = other.prepare_abort_or_commit(S.PREPARE_COMMIT, 0, -1, 10, False)
    with pytest.raises(IllegalTxnTransition):
        md.complete_transition_to(wrong)
    md.complete_transition_to(transit)
    assert md.state == S.ONGOING and md.partitions == {("a", 0)} and md.pending_state is None


def test_complete_checks_the_metadata_consistency():
    md = TransactionMetadata("t", 5, 3, state=S.EMPTY)
    transit = md.prepare_add_partitions([("a", 0)], 10, 0)
    with pytest.raises(IllegalTxnTransition):
        md.complete_transition_to(replace(transit, producer_epoch=9))
    assert md.state == S.EMPTY


# ------------------------------------------------------------------ whole transactions

def test_commit_from_start_to_end():
    h = Harness(offsets_partition_for=lambda g: 12)
    init = h.init(timeout=30000)
    assert init == [] and h.store.pending[0].record.state == S.EMPTY
    h.store.ack()
    assert init == [InitPidResult(E.NONE, 1000, 0)]

    add = h.add(1000, 0, [("orders", 1), ("orders", 0)])
    rec = h.store.pending[0].record
    assert (rec.state, rec.partitions) == (S.ONGOING, (("orders", 0), ("orders", 1)))
    assert rec.start_timestamp_ms == T0 and rec.transaction_timeout_ms == 30000
    assert add == []
    h.store.ack()
    assert add == [E.NONE]

    offsets = Answers()
    h.tc.add_offsets("t", 1000, 0, "group-a", offsets)
    h.store.ack()
    assert offsets == [E.NONE]
    assert h.md().partitions == {("orders", 0), ("orders", 1), ("__consumer_offsets", 12)}

    h.sched.advance(5)
    end = h.end(1000, 0, commit=True)
    rec = h.store.pending[0].record
    assert rec.state == S.PREPARE_COMMIT and rec.producer_epoch == 0
    assert rec.last_update_timestamp_ms == T0 + 5 and rec.start_timestamp_ms == T0
    assert end == [] and h.markers.pending == []  # the markers wait for the decision
    h.store.ack()
    assert end == [EndTxnResult(E.NONE, 1000, 0)]

    m = h.markers.pending[0]
    assert (m.producer_id, m.producer_epoch, m.coordinator_epoch, m.commit) == (1000, 0, 7, True)
    assert m.partitions == [("__consumer_offsets", 12), ("orders", 0), ("orders", 1)]
    assert h.md().state == S.PREPARE_COMMIT and h.md().pending_state == S.COMPLETE_COMMIT
    assert h.store.pending == []
    rec = h.finish()
    assert rec.state == S.COMPLETE_COMMIT and rec.partitions == ()
    assert h.md().state == S.COMPLETE_COMMIT and h.md().partitions == set()

    # The next transaction starts from CompleteCommit with the same epoch.
    again = h.add(1000, 0)
    h.store.ack()
    assert again == [E.NONE] and h.md().state == S.ONGOING


def test_abort_from_start_to_end():
    h = Harness()
    pid, epoch = h.ongoing(parts=[("a", 0)])
    end = h.end(pid, epoch, commit=False)
    assert h.store.pending[0].record.state == S.PREPARE_ABORT
    h.store.ack()
    assert end == [EndTxnResult(E.NONE, pid, epoch)]
    assert h.markers.pending[0].commit is False
    assert h.finish().state == S.COMPLETE_ABORT


def test_add_partitions_already_in_the_transaction_writes_nothing():
    h = Harness()
    pid, epoch = h.ongoing(parts=[("a", 0), ("a", 1)])
    again = h.add(pid, epoch, [("a", 1)])
    assert again == [E.NONE] and h.store.pending == []


def test_answers_are_delivered_after_the_state_is_consistent():
    h = Harness()
    seen = []

    def on_answer(result):
        seen.append((result, h.md().state, h.md().pending_state))
    h.tc.init_producer_id("t", 1000, -1, -1, on_answer)
    h.store.ack()
    assert seen == [(InitPidResult(E.NONE, 1000, 0), S.EMPTY, None)]


# ------------------------------------------------------------------ EndTxn answers

def committed(h, commit=True, tv=0):
    pid, epoch = h.ongoing(tv=tv)
    end = h.end(pid, epoch, commit=commit, tv=tv)
    h.store.ack()
    assert end.last.error == E.NONE
    return pid, epoch


def test_end_txn_same_result_while_complete_succeeds():
    for commit in (True, False):
        h = Harness()
        pid, epoch = committed(h, commit)
        h.finish()
        assert h.end(pid, epoch, commit=commit) == [EndTxnResult(E.NONE, pid, epoch)]
        assert h.store.pending == []


def test_end_txn_same_result_while_prepare_is_concurrent_transactions():
    h = Harness()
    pid, epoch = committed(h, True)
    assert h.end(pid, epoch, commit=True).last.error == E.CONCURRENT_TRANSACTIONS


def test_end_txn_opposite_result_while_complete_is_invalid_txn_state():
    for commit in (True, False):
        h = Harness()
        pid, epoch = committed(h, commit)
        h.finish()
        assert h.end(pid, epoch, commit=not commit).last == EndTxnResult(E.INVALID_TXN_STATE)


def test_end_txn_opposite_result_while_markers_are_in_flight_is_concurrent():
    # Kafka: Complete* is already pending while the markers are written, and a pending
    # transition answers CONCURRENT_TRANSACTIONS before the state is looked at.
    h = Harness()
    pid, epoch = committed(h, True)
    assert h.end(pid, epoch, commit=False).last.error == E.CONCURRENT_TRANSACTIONS


def test_end_txn_in_empty_is_invalid_txn_state():
    h = Harness()
    pid, epoch = h.initialized()
    assert h.end(pid, epoch, commit=True).last.error == E.INVALID_TXN_STATE
    assert h.end(pid, epoch, commit=False).last.error == E.INVALID_TXN_STATE


def test_end_txn_errors():
    h = Harness(partitions={"elsewhere": 3})
    pid, epoch = h.ongoing()
    assert h.end(pid, epoch - 1).last == EndTxnResult(E.PRODUCER_FENCED)
    assert h.end(pid, epoch + 1).last == EndTxnResult(E.PRODUCER_FENCED)
    assert h.end(pid + 1, epoch).last == EndTxnResult(E.INVALID_PRODUCER_ID_MAPPING)
    assert h.end(pid, epoch, txn="unknown").last.error == E.INVALID_PRODUCER_ID_MAPPING
    assert h.end(pid, epoch, txn="").last.error == E.INVALID_REQUEST
    assert h.end(pid, epoch, txn="elsewhere").last.error == E.NOT_COORDINATOR
    h.tc.begin_load(3, 1)
    assert h.end(pid, epoch, txn="elsewhere").last.error == E.COORDINATOR_LOAD_IN_PROGRESS
    assert h.store.pending == []


def test_add_partitions_errors():
    h = Harness(partitions={"elsewhere": 3})
    pid, epoch = h.ongoing()
    assert h.add(pid, epoch + 1) == [E.PRODUCER_FENCED]
    assert h.add(pid + 1, epoch) == [E.INVALID_PRODUCER_ID_MAPPING]
    assert h.add(pid, epoch, txn="nobody") == [E.INVALID_PRODUCER_ID_MAPPING]
    assert h.add(pid, epoch, txn="") == [E.INVALID_REQUEST]
    assert h.add(pid, epoch, txn="elsewhere") == [E.NOT_COORDINATOR]
    h.add(pid, epoch, [("b", 0)])                  # pending until acked
    assert h.add(pid, epoch, [("c", 0)]) == [E.CONCURRENT_TRANSACTIONS]
    h.store.ack()
    h.end(pid, epoch)
    h.store.ack()                                  # PrepareCommit
    assert h.add(pid, epoch, [("d", 0)]) == [E.CONCURRENT_TRANSACTIONS]


# ------------------------------------------------------------------ InitProducerId

def test_invalid_transaction_timeout():
    h = Harness(TxnConfig(transaction_max_timeout_ms=5000))
    assert h.init(timeout=5001) == [InitPidResult(E.INVALID_TRANSACTION_TIMEOUT, -1, -1)]
    assert h.init(timeout=0) == [InitPidResult(E.INVALID_TRANSACTION_TIMEOUT, -1, -1)]
    assert h.init(timeout=-1).last.error == E.INVALID_TRANSACTION_TIMEOUT
    assert h.store.pending == []
    h.init(timeout=5000)
    h.store.ack()


def test_init_errors():
    h = Harness()
    assert h.init(txn="").last.error == E.INVALID_REQUEST
    assert h.init(pid=5, epoch=-1).last.error == E.INVALID_REQUEST
    assert h.init(txn="x", pid=-1, epoch=3).last.error == E.INVALID_REQUEST
    h2 = Harness(load=False)
    assert h2.init().last.error == E.NOT_COORDINATOR
    h2.tc.begin_load(0, 1)
    assert h2.init().last.error == E.COORDINATOR_LOAD_IN_PROGRESS
    h3 = Harness()
    h3.ids.error = E.COORDINATOR_LOAD_IN_PROGRESS
    assert h3.init().last == InitPidResult(E.COORDINATOR_LOAD_IN_PROGRESS)


def test_init_without_transactional_id_is_a_fresh_producer_id():
    h = Harness()
    a = Answers()
    h.tc.init_producer_id(None, 0, -1, -1, a)
    assert a == [InitPidResult(E.NONE, 1000, 0)] and h.store.pending == []


def test_init_again_bumps_the_epoch():
    h = Harness()
    assert h.initialized() == (1000, 0)
    assert h.initialized() == (1000, 1)
    assert h.md().last_producer_epoch == -1


def test_init_while_the_first_is_pending_is_concurrent():
    h = Harness()
    h.init()
    assert h.init().last.error == E.CONCURRENT_TRANSACTIONS


def test_init_waits_for_the_producer_id_and_rechecks():
    h = Harness()
    h.ids.hold = True
    a = h.init()
    assert a == [] and h.md() is None
    h.ids.release()
    h.store.ack()
    assert a == [InitPidResult(E.NONE, 1000, 0)]


def test_kip360_resume_with_the_current_epoch_bumps():
    h = Harness()
    h.initialized()
    a = h.init(pid=1000, epoch=0)
    h.store.ack()
    assert a.last == InitPidResult(E.NONE, 1000, 1)
    assert h.md().last_producer_epoch == 0
    # A retry of that call (its answer was lost) gets the same epoch, no bump.
    retry = h.init(pid=1000, epoch=0)
    assert h.store.pending[0].record.producer_epoch == 1
    h.store.ack()
    assert retry.last == InitPidResult(E.NONE, 1000, 1)


def test_kip360_mismatch_is_fenced():
    h = Harness()
    h.initialized()
    h.initialized()  # epoch 1, last epoch -1: a new producer took over
    assert h.init(pid=1000, epoch=0).last.error == E.PRODUCER_FENCED
    assert h.init(pid=77, epoch=1).last.error == E.PRODUCER_FENCED
    assert h.store.pending == []


def test_epoch_exhaustion_rotates_the_producer_id():
    h = Harness(load=False)
    h.tc.load_partition(0, COORD_EPOCH, [(encode_txn_key("t"), encode_txn_value(
        TxnLogValue(500, 32766, 60000, S.COMPLETE_COMMIT, (), T0, T0)))])
    a = h.init()
    rec = h.store.pending[0].record
    assert (rec.producer_id, rec.producer_epoch, rec.previous_producer_id) == (1000, 0, 500)
    h.store.ack()
    assert a.last == InitPidResult(E.NONE, 1000, 0)


def test_second_init_fences_an_ongoing_transaction_classic():
    h = Harness(TxnConfig(transaction_version=0))
    pid, epoch = h.ongoing(parts=[("a", 0)])
    second = h.init()
    rec = h.store.pending[0].record
    assert (rec.state, rec.producer_epoch) == (S.PREPARE_ABORT, epoch + 1)
    h.store.ack()
    assert second == [InitPidResult(E.CONCURRENT_TRANSACTIONS)]
    m = h.markers.pending[0]
    assert (m.commit, m.producer_epoch) == (False, epoch + 1)
    # The old producer is fenced as soon as the abort is decided.
    assert h.end(pid, epoch).last.error == E.PRODUCER_FENCED
    # AddPartitionsToTxn looks at the pending Complete* first (KAFKA-18660).
    assert h.add(pid, epoch) == [E.CONCURRENT_TRANSACTIONS]
    assert h.init().last.error == E.CONCURRENT_TRANSACTIONS  # markers still in flight
    assert h.finish().state == S.COMPLETE_ABORT
    assert h.add(pid, epoch) == [E.PRODUCER_FENCED]
    assert h.initialized() == (pid, epoch + 2)


def test_second_init_fences_an_ongoing_transaction_tv2():
    # With transaction.version 2 the coordinator's abort bumps the epoch as every TV2
    # abort does, on top of the fence's bump (Kafka 4.0).
    h = Harness()
    pid, epoch = h.ongoing(parts=[("a", 0)])
    second = h.init()
    assert h.store.pending[0].record.producer_epoch == epoch + 2
    h.store.ack()
    assert second == [InitPidResult(E.CONCURRENT_TRANSACTIONS)]
    assert h.markers.pending[0].producer_epoch == epoch + 2
    h.finish()
    assert h.end(pid, epoch, tv=2).last.error == E.PRODUCER_FENCED
    assert h.initialized() == (pid, epoch + 3)


def test_a_failed_fence_does_not_bump_twice():
    h = Harness(TxnConfig(transaction_version=0))
    pid, epoch = h.ongoing()
    first = h.init()
    h.store.ack(E.NOT_ENOUGH_REPLICAS)
    assert first == [InitPidResult(E.COORDINATOR_NOT_AVAILABLE)]
    assert h.md().producer_epoch == epoch + 1 and h.md().has_failed_epoch_fence
    retry = h.init()
    assert h.store.pending[0].record.producer_epoch == epoch + 1
    h.store.ack()
    assert retry == [InitPidResult(E.CONCURRENT_TRANSACTIONS)]
    assert h.md().state == S.PREPARE_ABORT and not h.md().has_failed_epoch_fence
    assert h.markers.pending[0].producer_epoch == epoch + 1


# ------------------------------------------------------------------ append failures

def test_append_failure_reverts_and_maps_the_error():
    h = Harness()
    pid, epoch = h.ongoing(parts=[("a", 0)])
    for store_error, answer in [(E.NOT_ENOUGH_REPLICAS, E.COORDINATOR_NOT_AVAILABLE),
                                (E.REQUEST_TIMED_OUT, E.COORDINATOR_NOT_AVAILABLE),
                                (E.NOT_LEADER_OR_FOLLOWER, E.NOT_COORDINATOR),
                                (E.MESSAGE_TOO_LARGE, E.UNKNOWN_SERVER_ERROR)]:
        a = h.add(pid, epoch, [("b", 0)])
        h.store.ack(store_error)
        assert a == [answer]
        assert h.md().pending_state is None and h.md().partitions == {("a", 0)}
    end = h.end(pid, epoch)
    h.store.ack(E.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
    assert end.last == EndTxnResult(E.COORDINATOR_NOT_AVAILABLE)
    assert h.md().state == S.ONGOING and h.markers.pending == []


def test_store_that_raises_answers_at_once():
    h = Harness()
    h.store.raise_next = KafkaError("not leader", E.NOT_LEADER_OR_FOLLOWER)
    a = h.init()
    assert a == [InitPidResult(E.NOT_COORDINATOR)]
    assert h.md().pending_state is None
    assert h.initialized() == (1000, 0)


def test_complete_append_is_retried_until_written():
    h = Harness()
    committed(h)
    h.markers.complete()
    h.store.ack(E.NOT_ENOUGH_REPLICAS)
    assert h.md().pending_state == S.COMPLETE_COMMIT and h.store.pending == []
    h.sched.advance(COMPLETE_RETRY_BACKOFF_MS)
    assert h.store.ack().record.state == S.COMPLETE_COMMIT
    assert h.md().state == S.COMPLETE_COMMIT


def test_unload_while_an_append_is_in_flight_answers_not_coordinator():
    h = Harness()
    pid, epoch = h.ongoing()
    a = h.add(pid, epoch, [("b", 0)])
    h.tc.unload_partition(0)
    h.store.ack()
    assert a == [E.NOT_COORDINATOR]
    assert h.tc.owns("t") == E.NOT_COORDINATOR


# ------------------------------------------------------------------ TV2 (KIP-890 part 2)

def test_tv2_commit_bumps_the_epoch():
    h = Harness()
    pid, epoch = h.ongoing(tv=2)
    end = h.end(pid, epoch, tv=2)
    rec = h.store.pending[0].record
    assert (rec.state, rec.producer_epoch, rec.client_transaction_version) == \
        (S.PREPARE_COMMIT, epoch + 1, 2)
    h.store.ack()
    assert end == [EndTxnResult(E.NONE, pid, epoch + 1)]
    assert h.markers.pending[0].producer_epoch == epoch + 1
    assert h.end(pid, epoch, tv=2).last.error == E.CONCURRENT_TRANSACTIONS  # retry, in flight
    # The same epoch again is the *next* transaction's, not a retry: fenced.
    assert h.end(pid, epoch + 1, tv=2).last.error == E.PRODUCER_FENCED
    h.finish()
    assert h.md().producer_epoch == epoch + 1 and h.md().last_producer_epoch == epoch
    # A retry after completion (the old epoch) succeeds with the bumped epoch.
    assert h.end(pid, epoch, tv=2) == [EndTxnResult(E.NONE, pid, epoch + 1)]
    assert h.end(pid, epoch, commit=False, tv=2).last.error == E.INVALID_TXN_STATE
    # The next transaction runs at the new epoch; the old one is fenced.
    assert h.add(pid, epoch, tv=2) == [E.PRODUCER_FENCED]
    nxt = h.add(pid, epoch + 1, tv=2)
    h.store.ack()
    assert nxt == [E.NONE]


def test_tv2_abort_with_nothing_added_still_bumps():
    h = Harness()
    pid, epoch = h.initialized()
    end = h.end(pid, epoch, commit=False, tv=2)
    rec = h.store.pending[0].record
    assert (rec.state, rec.producer_epoch, rec.partitions) == (S.PREPARE_ABORT, epoch + 1, ())
    assert rec.start_timestamp_ms == T0
    h.store.ack()
    assert end == [EndTxnResult(E.NONE, pid, epoch + 1)]
    assert h.markers.pending == []          # nothing to mark
    assert h.store.ack().record.state == S.COMPLETE_ABORT
    assert h.end(pid, epoch + 1, commit=True, tv=2).last.error == E.INVALID_TXN_STATE


def test_tv2_epoch_overflow_moves_to_a_new_producer_id():
    h = Harness(load=False)
    h.tc.load_partition(0, COORD_EPOCH, [(encode_txn_key("t"), encode_txn_value(
        TxnLogValue(500, 32766, 60000, S.ONGOING, (("a", 0),), T0, T0,
                    client_transaction_version=2)))])
    end = h.end(500, 32766, tv=2)
    rec = h.store.pending[0].record
    assert (rec.producer_id, rec.producer_epoch, rec.next_producer_id) == (500, 32767, 1000)
    h.store.ack()
    assert end == [EndTxnResult(E.NONE, 1000, 0)]
    assert h.markers.pending[0].producer_epoch == 32767
    # The client already uses the new id; Complete* is still being written.
    assert h.add(1000, 0, tv=2) == [E.CONCURRENT_TRANSACTIONS]
    rec = h.finish()
    assert (rec.producer_id, rec.producer_epoch, rec.previous_producer_id) == (1000, 0, 500)
    assert h.end(500, 32766, tv=2) == [EndTxnResult(E.NONE, 1000, 0)]  # retry on overflow
    a = h.add(1000, 0, tv=2)
    h.store.ack()
    assert a == [E.NONE]


# ------------------------------------------------------------------ timers

def test_timed_out_transaction_is_aborted_and_the_producer_fenced():
    h = Harness(TxnConfig(transaction_version=0, abort_timed_out_interval_ms=10000))
    pid, epoch = h.ongoing(parts=[("a", 0)], timeout=15000)
    h.sched.advance(10000)
    assert h.store.pending == []            # 10 s old, timeout 15 s
    h.sched.advance(10000)
    rec = h.store.pending[0].record
    assert (rec.state, rec.producer_epoch) == (S.PREPARE_ABORT, epoch + 1)
    h.store.ack()
    m = h.markers.pending[0]
    assert (m.commit, m.producer_epoch) == (False, epoch + 1)
    assert h.end(pid, epoch).last.error == E.PRODUCER_FENCED
    h.finish()
    assert h.end(pid, epoch).last.error == E.PRODUCER_FENCED
    assert h.add(pid, epoch) == [E.PRODUCER_FENCED]
    assert h.md().state == S.COMPLETE_ABORT
    h.sched.advance(10000)
    assert h.store.pending == []            # nothing left to abort


def test_timeout_sweep_skips_pending_transitions():
    h = Harness(TxnConfig(abort_timed_out_interval_ms=1000))
    pid, epoch = h.ongoing(timeout=500)
    h.add(pid, epoch, [("b", 0)])           # pending
    h.sched.advance(1000)
    assert len(h.store.pending) == 1
    h.store.ack()
    h.sched.advance(1000)
    assert h.store.pending[0].record.state == S.PREPARE_ABORT


def test_idle_ids_expire_with_a_tombstone():
    h = Harness(TxnConfig(transactional_id_expiration_ms=50000, remove_expired_interval_ms=30000))
    pid, epoch = h.ongoing(txn="busy")
    committed_pid = h.initialized(txn="idle")
    h.sched.advance(30000)
    assert h.store.pending == []
    h.sched.advance(30000)                  # 60 s idle > 50 s
    assert [(a.transactional_id, a.value) for a in h.store.pending] == [("idle", None)]
    assert h.tc.describe(["idle"])[0].error == E.NONE   # until the tombstone is written
    h.store.ack()
    assert h.tc.metadata("idle") is None
    assert h.tc.describe(["idle"])[0].error == E.TRANSACTIONAL_ID_NOT_FOUND
    assert h.tc.metadata("busy").state == S.ONGOING     # Ongoing never expires
    assert committed_pid == (1001, 0)


def test_failed_tombstone_keeps_the_id():
    h = Harness(TxnConfig(transactional_id_expiration_ms=1, remove_expired_interval_ms=100))
    h.initialized()
    h.sched.advance(100)
    h.store.ack(E.NOT_ENOUGH_REPLICAS)
    assert h.md() is not None and h.md().pending_state is None
    h.sched.advance(100)
    h.store.ack()
    assert h.md() is None


def test_close_cancels_the_timers():
    h = Harness()
    assert h.sched.pending()
    h.tc.close()
    assert h.sched.pending() == []


# ------------------------------------------------------------------ load / unload

def rec(txn, value):
    return encode_txn_key(txn), None if value is None else encode_txn_value(value)


def test_load_replays_the_last_value_per_id_and_completes_prepared_transactions():
    h = Harness(load=False)
    records = [
        rec("c", TxnLogValue(1, 0, 60000, S.ONGOING, (("x", 0),), 10, 10)),
        rec("c", TxnLogValue(1, 0, 60000, S.PREPARE_COMMIT, (("x", 0), ("y", 1)), 11, 10)),
        rec("a", TxnLogValue(2, 4, 60000, S.PREPARE_ABORT, (("x", 2),), 12, 9)),
        rec("gone", TxnLogValue(3, 0, 60000, S.EMPTY, (), 5, -1)),
        rec("gone", None),
        rec("e", TxnLogValue(4, 1, 60000, S.COMPLETE_COMMIT, (), 5, 4)),
        (b"\x00\x07junk", b"\x00"),          # skipped
    ]
    h.tc.begin_load(0, 9)
    assert h.tc.owns("c") == E.COORDINATOR_LOAD_IN_PROGRESS
    h.tc.load_partition(0, 9, records)
    assert h.tc.owns("c") == E.NONE and h.tc.coordinator_epoch(0) == 9
    assert h.tc.metadata("gone") is None and h.tc.metadata("e").state == S.COMPLETE_COMMIT
    sends = {(m.producer_id, m.producer_epoch, m.coordinator_epoch, m.commit,
              tuple(m.partitions)) for m in h.markers.pending}
    assert sends == {(1, 0, 9, True, (("x", 0), ("y", 1))), (2, 4, 9, False, (("x", 2),))}
    assert h.end(1, 0, txn="c").last.error == E.CONCURRENT_TRANSACTIONS
    h.markers.complete()
    h.markers.complete()
    states = {a.transactional_id: a.record.state for a in h.store.pending}
    assert states == {"c": S.COMPLETE_COMMIT, "a": S.COMPLETE_ABORT}
    h.store.ack()
    h.store.ack()
    assert h.tc.metadata("c").state == S.COMPLETE_COMMIT
    assert h.tc.metadata("a").state == S.COMPLETE_ABORT
    assert h.end(1, 0, txn="c") == [EndTxnResult(E.NONE, 1, 0)]


def test_load_of_prepare_epoch_fence_aborts_with_a_fence():
    h = Harness(TxnConfig(transaction_version=0), load=False)
    h.tc.load_partition(0, 2, [rec("f", TxnLogValue(1, 5, 60000, S.PREPARE_EPOCH_FENCE,
                                                    (("x", 0),), 10, 10))])
    pending = h.store.pending[0].record
    assert (pending.state, pending.producer_epoch) == (S.PREPARE_ABORT, 6)


def test_markers_finishing_after_unload_write_nothing():
    h = Harness()
    committed(h)
    h.tc.unload_partition(0)
    h.markers.complete()
    assert h.store.pending == []


def test_a_stale_load_is_ignored():
    h = Harness(load=False)
    h.tc.begin_load(0, 5)
    h.tc.load_partition(0, 4, [])
    assert h.tc.owns("t") == E.COORDINATOR_LOAD_IN_PROGRESS
    h.tc.load_partition(0, 5, [])
    assert h.tc.owns("t") == E.NONE


# ------------------------------------------------------------------ verify, describe, list

def test_verify_partitions():
    h = Harness(partitions={"other": 4})
    pid, epoch = h.ongoing(parts=[("a", 0)])
    assert h.tc.verify_partitions("t", pid, epoch, [("a", 0), ("a", 1)]) == {
        ("a", 0): E.NONE, ("a", 1): E.TRANSACTION_ABORTABLE}
    assert h.tc.verify_partitions("t", pid, epoch + 1, [("a", 0)]) == {("a", 0): E.PRODUCER_FENCED}
    assert h.tc.verify_partitions("t", pid + 1, epoch, [("a", 0)]) == {
        ("a", 0): E.INVALID_PRODUCER_ID_MAPPING}
    assert h.tc.verify_partitions("zz", pid, epoch, [("a", 0)]) == {
        ("a", 0): E.INVALID_PRODUCER_ID_MAPPING}
    assert h.tc.verify_partitions("", pid, epoch, [("a", 0)]) == {("a", 0): E.INVALID_REQUEST}
    assert h.tc.verify_partitions("other", pid, epoch, [("a", 0)]) == {
        ("a", 0): E.NOT_COORDINATOR}
    h.end(pid, epoch)
    h.store.ack()
    assert h.tc.verify_partitions("t", pid, epoch, [("a", 0)]) == {
        ("a", 0): E.CONCURRENT_TRANSACTIONS}


def test_describe():
    h = Harness(partitions={"other": 4})
    pid, epoch = h.ongoing(parts=[("b", 2), ("a", 1), ("b", 0)], timeout=9000)
    d, missing, empty, other = h.tc.describe(["t", "missing", "", "other"])
    assert (d.error, d.state, d.producer_id, d.producer_epoch, d.transaction_timeout_ms,
            d.transaction_start_time_ms, d.topics) == (
        E.NONE, "Ongoing", pid, epoch, 9000, T0, [("a", [1]), ("b", [0, 2])])
    assert missing.error == E.TRANSACTIONAL_ID_NOT_FOUND
    assert empty.error == E.INVALID_REQUEST
    assert other.error == E.NOT_COORDINATOR


def test_list_transactions_filters():
    h = Harness()
    h.ongoing(txn="old")                               # pid 1000, started at T0
    h.sched.advance(5000)
    h.ongoing(txn="new")                               # pid 1001, started at T0 + 5000
    h.initialized(txn="idle")                          # pid 1002, Empty
    h.sched.advance(1000)

    def listed(**kw):
        result = h.tc.list_transactions(kw.get("states", []), kw.get("pids", []),
                                        kw.get("duration", -1))
        assert result.error_code == E.NONE
        return sorted(item.transactional_id for item in result)
    assert listed() == ["idle", "new", "old"]
    assert listed(states=["Ongoing"]) == ["new", "old"]
    assert listed(states=["Empty", "CompleteAbort"]) == ["idle"]
    assert listed(pids=[1001, 1002]) == ["idle", "new"]
    assert listed(states=["Ongoing"], pids=[1001]) == ["new"]
    assert listed(states=["Ongoing"], duration=3000) == ["old"]   # running > 3 s
    result = h.tc.list_transactions(["Ongoing", "Bogus"], [])
    assert result.unknown_state_filters == ["Bogus"]
    assert {(i.transactional_id, i.producer_id, i.state) for i in result} == {
        ("old", 1000, "Ongoing"), ("new", 1001, "Ongoing")}
    assert list(h.tc.list_transactions(["Bogus"], [])) == []
    h.tc.begin_load(3, 1)
    loading = h.tc.list_transactions([], [])
    assert loading.error_code == E.COORDINATOR_LOAD_IN_PROGRESS and list(loading) == []


def test_config_from_kafka_property_names():
    cfg = TxnConfig.from_config({"transaction.max.timeout.ms": 1000,
                                 "transactional.id.expiration.ms": 2000,
                                 "transaction.abort.timed.out.transaction.cleanup.interval.ms": 3,
                                 "transaction.remove.expired.transaction.cleanup.interval.ms": 4})
    assert (cfg.transaction_max_timeout_ms, cfg.transactional_id_expiration_ms,
            cfg.abort_timed_out_interval_ms, cfg.remove_expired_interval_ms) == (1000, 2000, 3, 4)
    # Kafka's defaults, except the transaction version: kafkette finalizes no
    # transaction.version feature, so a broker's coordinator runs version 0.
    assert TxnConfig.from_config({}) == TxnConfig(transaction_version=0)


def test_collaborators_that_call_back_at_once():
    """A store and marker sender that answer inside the call: every answer still comes
    once, after the state is consistent."""
    h = Harness()
    store_append = h.store.append

    def append_now(txn_id, key, value, callback):
        store_append(txn_id, key, value, callback)
        h.store.ack()
    h.store.append = append_now
    send = h.markers.send_markers

    def send_now(*args):
        send(*args)
        h.markers.complete()
    h.markers.send_markers = send_now
    seen = []

    def on_end(result):
        seen.append((result, h.md().state))
    init = h.init()
    pid, epoch = init.last.producer_id, init.last.producer_epoch
    assert h.add(pid, epoch, tv=2) == [E.NONE]
    h.tc.end_txn("t", pid, epoch, True, 2, on_end)
    assert seen == [(EndTxnResult(E.NONE, pid, epoch + 1), S.COMPLETE_COMMIT)]
    assert [a.record.state for a in h.store.written] == [
        S.EMPTY, S.ONGOING, S.PREPARE_COMMIT, S.COMPLETE_COMMIT]
