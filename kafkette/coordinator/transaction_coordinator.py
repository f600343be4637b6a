"""The transaction coordinator (KIP-98, KIP-360, KIP-447, KIP-890), sans-IO.

Serves, through the wire handlers: InitProducerId (with a transactional id),
AddPartitionsToTxn (v4+ verify_only too, KIP-890 part 1), AddOffsetsToTxn, EndTxn
(v5+: epoch bump on every commit/abort, KIP-890 part 2), DescribeTransactions,
ListTransactions. It follows Apache Kafka's TransactionCoordinator /
TransactionMetadata / TransactionStateManager / TransactionMarkerChannelManager
(4.x), rule for rule; where it differs a comment says so.

States of a transactional id (Kafka's TransactionState; ids are the status byte of
the `__transaction_state` record, names are what DescribeTransactions shows), and the
states each may be entered from. `VALID_PREVIOUS_STATES` below is this table, and
every transition is checked against it:

  Empty              <- Empty, CompleteCommit, CompleteAbort
        InitProducerId: epoch bump (or a new producer id once the epoch is exhausted)
  Ongoing            <- Ongoing, Empty, CompleteCommit, CompleteAbort
        AddPartitionsToTxn / AddOffsetsToTxn
  PrepareCommit      <- Ongoing
        EndTxn(commit); markers are sent once this record is in the log
  PrepareAbort       <- Ongoing, PrepareEpochFence, Empty, CompleteCommit, CompleteAbort
        EndTxn(abort); the coordinator's own abort after PrepareEpochFence; with
        transaction version 2 an abort without any partition (the client may not know
        whether the broker added partitions for it) from Empty or Complete*
  CompleteCommit     <- PrepareCommit          every marker written
  CompleteAbort      <- PrepareAbort           every marker written
  Dead               <- Empty, CompleteCommit, CompleteAbort
        transactional.id.expiration.ms passed; written as a tombstone, then dropped
  PrepareEpochFence  <- Ongoing
        InitProducerId or the timeout sweep fences an ongoing transaction: the epoch is
        bumped and the transaction aborted. Only ever a pending state: it is replaced
        by PrepareAbort before anything is written, so no record carries it.

A state change is two steps, as in Kafka: `prepare_*` computes the new metadata (a
`TxnTransit`) and sets `pending_state`; the record is appended to the store; only the
append callback with error 0 applies it (`complete_transition_to`). While a change
is pending, requests that would change the state get CONCURRENT_TRANSACTIONS. A failed
append clears the pending state and answers Kafka's mapped error. EndTxn writes
Prepare*, answers, has every partition leader write the marker (`MarkerSender`), then
writes Complete* (retried until written, as Kafka's marker channel manager does).

Transaction version (TV): EndTxn v0-v4 clients are "classic" (TV 0/1): the epoch is
bumped only by InitProducerId. EndTxn v5+ clients (TV 2) have the epoch bumped by every
commit and abort; the Prepare* record holds the bumped epoch, the markers carry it, and
the EndTxn answer returns it (a new producer id with epoch 0 when the epoch would pass
32766, KIP-890's overflow rule).

Sans-IO: no asyncio. The broker calls methods; answers arrive through callbacks, now
or later (an append or marker callback, a producer id allocation), queued in an outbox
and delivered once the coordinator's state is consistent (as group_coordinator.py
does). Timers are Scheduler callbacks. Record formats are in transaction_log.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Protocol

from kafkette.coordinator.outbox import Outbox
from kafkette.coordinator.partitioning import offsets_partition_for as _offsets_partition_for
from kafkette.coordinator.scheduler import Scheduler
from kafkette.coordinator.transaction_log import (
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TxnLogValue, TxnState, decode_txn_key, decode_txn_value,
    encode_txn_key, encode_txn_value)
from kafkette.coordinator.wire import CoordinatorRecordError
from kafkette.errors import ErrorCode, KafkaError
from kafkette.logging import get_logger

__all__ = [
    "TxnState", "VALID_PREVIOUS_STATES", "IllegalTxnTransition", "TransactionMetadata",
    "TxnTransit", "TxnStateStore", "MarkerSender", "ProducerIdSource", "TxnConfig",
    "TransactionCoordinator", "InitPidResult", "EndTxnResult", "TxnDescription",
    "TxnListing", "TxnListings", "transaction_error_for_append",
]

EMPTY = TxnState.EMPTY
ONGOING = TxnState.ONGOING
PREPARE_COMMIT = TxnState.PREPARE_COMMIT
PREPARE_ABORT = TxnState.PREPARE_ABORT
COMPLETE_COMMIT = TxnState.COMPLETE_COMMIT
COMPLETE_ABORT = TxnState.COMPLETE_ABORT
DEAD = TxnState.DEAD
PREPARE_EPOCH_FENCE = TxnState.PREPARE_EPOCH_FENCE

VALID_PREVIOUS_STATES: dict[TxnState, frozenset[TxnState]] = {
    EMPTY: frozenset({EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT}),
    ONGOING: frozenset({ONGOING, EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT}),
    PREPARE_COMMIT: frozenset({ONGOING}),
    PREPARE_ABORT: frozenset({ONGOING, PREPARE_EPOCH_FENCE, EMPTY, COMPLETE_COMMIT,
                              COMPLETE_ABORT}),
    COMPLETE_COMMIT: frozenset({PREPARE_COMMIT}),
    COMPLETE_ABORT: frozenset({PREPARE_ABORT}),
    DEAD: frozenset({EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT}),
    PREPARE_EPOCH_FENCE: frozenset({ONGOING}),
}

# States in which an idle transactional id may expire (Kafka's isExpirationAllowed).
EXPIRATION_ALLOWED = frozenset({EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT})

SHORT_MAX = 32767


def is_epoch_exhausted(epoch: int) -> bool:
    """Kafka never hands a client epoch 32767, so that it can always fence once more."""
    return epoch >= SHORT_MAX - 1


# Writing Complete* after the markers is retried (Kafka's marker channel manager
# retries on its next poll); this is the pause between attempts.
COMPLETE_RETRY_BACKOFF_MS = 100

TopicPartition = tuple[str, int]
OFFSETS_TOPIC = "__consumer_offsets"


class IllegalTxnTransition(RuntimeError):
    """A transition the state table (or the metadata checks) forbids: a bug, never a
    client error. Kafka throws IllegalStateException in the same places."""


# ================================================================ collaborators

class TxnStateStore(Protocol):
    def partition_for(self, transactional_id: str) -> int: ...

    def append(self, transactional_id: str, key: bytes, value: bytes | None,
               callback: Callable[[int], None]) -> None:
        """Append one record to the id's __transaction_state partition. Raises
        KafkaError at once if it cannot be written (coordinator answers with Kafka's
        mapping); otherwise calls callback(error_code) later, once the record is
        replicated to the ISR (0) or failed (NOT_COORDINATOR, etc.)."""


class MarkerSender(Protocol):
    def send_markers(self, producer_id: int, producer_epoch: int,
                     coordinator_epoch: int, commit: bool,
                     partitions: list[tuple[str, int]],
                     callback: Callable[[], None]) -> None:
        """Have every partition's leader write the marker (WriteTxnMarkers), retrying
        until each has it (or its topic is gone); then callback()."""


class ProducerIdSource(Protocol):
    def next_producer_id(self, callback: Callable[[int, int], None]) -> None:
        """callback(error_code, producer_id): a fresh producer id (0 = ok)."""


def _setting(config: Any, name: str, default: int) -> int:
    return config[name] if name in config else default


@dataclass
class TxnConfig:
    """Kafka's property names and defaults (in comments)."""
    transaction_max_timeout_ms: int = 900000          # transaction.max.timeout.ms
    transactional_id_expiration_ms: int = 604800000   # transactional.id.expiration.ms
    # transaction.abort.timed.out.transaction.cleanup.interval.ms
    abort_timed_out_interval_ms: int = 10000
    # transaction.remove.expired.transaction.cleanup.interval.ms
    remove_expired_interval_ms: int = 3600000
    # The cluster's finalized `transaction.version` feature (a feature level in Kafka,
    # not a broker property). Kafka uses it for the aborts the coordinator starts
    # itself (timeouts, fencing); 2 is what a new Kafka 4.x cluster finalizes.
    transaction_version: int = 2

    @classmethod
    def from_config(cls, config: Any) -> "TxnConfig":
        """From anything indexable by Kafka property names; a property the config does
        not know keeps Kafka's default."""
        d = cls()
        return cls(
            transaction_max_timeout_ms=_setting(
                config, "transaction.max.timeout.ms", d.transaction_max_timeout_ms),
            transactional_id_expiration_ms=_setting(
                config, "transactional.id.expiration.ms", d.transactional_id_expiration_ms),
            abort_timed_out_interval_ms=_setting(
                config, "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                d.abort_timed_out_interval_ms),
            remove_expired_interval_ms=_setting(
                config, "transaction.remove.expired.transaction.cleanup.interval.ms",
                d.remove_expired_interval_ms),
            # kafkette's ApiVersions finalizes no `transaction.version` feature, so
            # clients run transactions version 0/1 and the coordinator's own aborts
            # follow them (one epoch bump for a fence, none for the abort).
            transaction_version=0,
        )


# ================================================================ results

class InitPidResult(NamedTuple):
    error: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


class EndTxnResult(NamedTuple):
    """producer_id / producer_epoch: what EndTxn v5+ returns (the bumped epoch for
    TV2 clients); -1 on error."""
    error: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass
class TxnDescription:
    """One DescribeTransactions entry. On error only the error is set; the other
    fields keep the wire defaults, as Kafka leaves them."""
    transactional_id: str
    error: int
    state: str = ""
    producer_id: int = 0
    producer_epoch: int = 0
    transaction_timeout_ms: int = 0
    transaction_start_time_ms: int = 0
    topics: list[tuple[str, list[int]]] = field(default_factory=list)


class TxnListing(NamedTuple):
    transactional_id: str
    producer_id: int
    state: str


class TxnListings(list):
    """ListTransactions' answer: the listings, plus the response's `error_code`
    (COORDINATOR_LOAD_IN_PROGRESS while a partition loads, as Kafka) and the state
    filters that name no state (`unknown_state_filters`)."""

    def __init__(self, items: Iterable[TxnListing] = (), error_code: int = ErrorCode.NONE,
                 unknown_state_filters: list[str] | None = None):
        super().__init__(items)
        self.error_code = error_code
        self.unknown_state_filters = unknown_state_filters or []


def transaction_error_for_append(code: int) -> int:
    """The error a client gets when a __transaction_state append failed
    (TransactionStateManager.appendTransactionToLog's table)."""
    if code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return code


def _code_name(code: int) -> str:
    try:
        return ErrorCode(int(code)).name
    except ValueError:
        return str(int(code))


# ================================================================ metadata

@dataclass(frozen=True)
class TxnTransit:
    """The metadata a transition leads to (Kafka's TxnTransitMetadata); it is what
    the record holds. `previous_producer_id` is the producer id at the time the
    transition was prepared, as Kafka records it."""
    producer_id: int
    previous_producer_id: int
    next_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    txn_timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    txn_start_timestamp: int
    txn_last_update_timestamp: int
    client_transaction_version: int

    def to_log_value(self) -> TxnLogValue:
        parts = () if self.state == EMPTY else tuple(sorted(self.partitions))
        return TxnLogValue(
            self.producer_id, self.producer_epoch, self.txn_timeout_ms, self.state, parts,
            self.txn_last_update_timestamp, self.txn_start_timestamp,
            self.previous_producer_id, self.next_producer_id, self.client_transaction_version)


@dataclass(eq=False)
class TransactionMetadata:
    """One transactional id's committed state plus the transition in flight."""
    transactional_id: str
    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    txn_timeout_ms: int = 60000
    state: TxnState = EMPTY
    partitions: set[TopicPartition] = field(default_factory=set)
    txn_start_timestamp: int = -1
    txn_last_update_timestamp: int = -1
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    client_transaction_version: int = 0
    pending_state: TxnState | None = None
    # A fence whose record could not be written already bumped the in-memory epoch;
    # the next fence does not bump again (KAFKA-9666), so repeated failures cannot
    # exhaust the epochs.
    has_failed_epoch_fence: bool = False

    @classmethod
    def from_log_value(cls, transactional_id: str, v: TxnLogValue) -> "TransactionMetadata":
        # The last epoch is not in the record (Kafka loads it as -1 too).
        return cls(transactional_id, v.producer_id, v.producer_epoch, v.transaction_timeout_ms,
                   v.state, set(v.partitions), v.start_timestamp_ms,
                   v.last_update_timestamp_ms, v.previous_producer_id, v.next_producer_id,
                   NO_PRODUCER_EPOCH, v.client_transaction_version)

    @property
    def is_epoch_exhausted(self) -> bool:
        return is_epoch_exhausted(self.producer_epoch)

    @property
    def pending_transition_in_progress(self) -> bool:
        return self.pending_state is not None

    # ------------------------------------------------------------ prepare

    def prepare_transition_to(self, state: TxnState, **changes: Any) -> TxnTransit:
        """The new metadata: the current fields with `changes` applied; sets
        pending_state. Raises IllegalTxnTransition if a change is already pending or
        the table forbids it."""
        if self.pending_state is not None:
            raise IllegalTxnTransition(
                f"{self.transactional_id}: preparing {state} while {self.pending_state} "
                "is pending")
        if self.state not in VALID_PREVIOUS_STATES[state]:
            raise IllegalTxnTransition(
                f"{self.transactional_id}: {self.state} -> {state} is not a valid transition")
        values = dict(
            producer_id=self.producer_id, previous_producer_id=self.producer_id,
            next_producer_id=self.next_producer_id, producer_epoch=self.producer_epoch,
            last_producer_epoch=self.last_producer_epoch, txn_timeout_ms=self.txn_timeout_ms,
            state=state, partitions=frozenset(self.partitions),
            txn_start_timestamp=self.txn_start_timestamp,
            txn_last_update_timestamp=self.txn_last_update_timestamp,
            client_transaction_version=self.client_transaction_version)
        values.update(changes)
        values["partitions"] = frozenset(values["partitions"])
        transit = TxnTransit(**values)
        if transit.producer_id < 0:
            raise IllegalTxnTransition(f"illegal producer id {transit.producer_id}")
        if state != DEAD and transit.producer_epoch < 0:
            raise IllegalTxnTransition(f"illegal producer epoch {transit.producer_epoch}")
        self.pending_state = state
        return transit

    def prepare_fence_producer_epoch(self) -> TxnTransit:
        bumped = (self.producer_epoch if self.has_failed_epoch_fence
                  or self.producer_epoch >= SHORT_MAX else self.producer_epoch + 1)
        return self.prepare_transition_to(PREPARE_EPOCH_FENCE, producer_epoch=bumped)

    def prepare_increment_producer_epoch(self, timeout_ms: int, expected_epoch: int | None,
                                         now_ms: int) -> TxnTransit | int:
        """InitProducerId's bump; PRODUCER_FENCED (an int) if `expected_epoch`
        (KIP-360) is neither the current nor the last epoch."""
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            # The producer recovers from an error and nobody else initialized since.
            epoch, last = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            # A retry of a bump that succeeded: answer the current epoch again.
            epoch, last = self.producer_epoch, self.last_producer_epoch
        else:
            return ErrorCode.PRODUCER_FENCED
        if epoch > SHORT_MAX - 1:
            # Kafka checks exhaustion before the cases above and so answers a stale or
            # retried epoch against an exhausted one with UNKNOWN_SERVER_ERROR (an
            # IllegalStateException); only a bump needs an epoch, so only it fails here.
            raise IllegalTxnTransition(f"no epochs left for producer id {self.producer_id}")
        return self.prepare_transition_to(
            EMPTY, producer_epoch=epoch, last_producer_epoch=last, txn_timeout_ms=timeout_ms,
            partitions=frozenset(), txn_start_timestamp=-1, txn_last_update_timestamp=now_ms)

    def prepare_producer_id_rotation(self, new_producer_id: int, timeout_ms: int, now_ms: int,
                                     record_last_epoch: bool) -> TxnTransit:
        if self.state in (ONGOING, PREPARE_COMMIT, PREPARE_ABORT):
            raise IllegalTxnTransition("cannot rotate producer ids during a transaction")
        return self.prepare_transition_to(
            EMPTY, producer_id=new_producer_id, producer_epoch=0,
            last_producer_epoch=self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
            txn_timeout_ms=timeout_ms, partitions=frozenset(), txn_start_timestamp=-1,
            txn_last_update_timestamp=now_ms)

    def prepare_add_partitions(self, added: Iterable[TopicPartition], now_ms: int,
                               client_transaction_version: int) -> TxnTransit:
        start = now_ms if self.state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT) \
            else self.txn_start_timestamp
        return self.prepare_transition_to(
            ONGOING, partitions=self.partitions | set(added), txn_start_timestamp=start,
            txn_last_update_timestamp=now_ms,
            client_transaction_version=client_transaction_version)

    def prepare_abort_or_commit(self, state: TxnState, client_transaction_version: int,
                                next_producer_id: int, now_ms: int,
                                no_partition_added: bool) -> TxnTransit:
        if client_transaction_version >= 2:
            # KIP-890 part 2: every commit/abort bumps the epoch, so a late write of
            # this transaction (a zombie, or a retry the broker could not tell from a
            # new one) is fenced by the markers. An epoch already at 32767 can only be a
            # fence that got there; let the abort through without overflowing.
            epoch = self.producer_epoch
            if not (epoch >= SHORT_MAX and state == PREPARE_ABORT):
                epoch += 1
            last = self.producer_epoch
        else:
            epoch, last = self.producer_epoch, self.last_producer_epoch
        # TV2 may abort with no partition added: there is no start time; use now.
        start = now_ms if no_partition_added else self.txn_start_timestamp
        return self.prepare_transition_to(
            state, producer_epoch=epoch, last_producer_epoch=last, txn_start_timestamp=start,
            next_producer_id=next_producer_id, txn_last_update_timestamp=now_ms,
            client_transaction_version=client_transaction_version)

    def prepare_complete(self, now_ms: int) -> TxnTransit:
        self.has_failed_epoch_fence = False  # the Prepare* record is in the log
        state = COMPLETE_COMMIT if self.state == PREPARE_COMMIT else COMPLETE_ABORT
        if self.client_transaction_version >= 2 and self.next_producer_id != NO_PRODUCER_ID:
            # The epoch overflowed: the client continues with the new producer id.
            pid, epoch = self.next_producer_id, 0
        else:
            pid, epoch = self.producer_id, self.producer_epoch
        return self.prepare_transition_to(
            state, producer_id=pid, producer_epoch=epoch, next_producer_id=NO_PRODUCER_ID,
            partitions=frozenset(), txn_last_update_timestamp=now_ms)

    def prepare_dead(self) -> TxnTransit:
        return self.prepare_transition_to(DEAD, partitions=frozenset())

    # ------------------------------------------------------------ complete

    def complete_transition_to(self, t: TxnTransit) -> None:
        """Apply a transition whose record is in the log. Raises IllegalTxnTransition
        when it does not match the pending state or breaks Kafka's consistency checks
        (same producer, epoch the same or bumped by one, partitions only growing while
        Ongoing, ...)."""
        if self.pending_state is None or self.pending_state != t.state:
            raise IllegalTxnTransition(
                f"{self.transactional_id}: completing {t.state} while pending is "
                f"{self.pending_state}")
        ok = True
        if t.state == EMPTY:
            ok = ((self.producer_epoch == t.producer_epoch or self._valid_epoch_bump(t))
                  and not t.partitions and t.txn_start_timestamp == -1)
        elif t.state == ONGOING:
            ok = (self._valid_producer_epoch(t) and self.partitions <= t.partitions
                  and self.txn_timeout_ms == t.txn_timeout_ms)
        elif t.state in (PREPARE_COMMIT, PREPARE_ABORT):
            empty_abort = (t.state == PREPARE_ABORT and t.client_transaction_version >= 2
                           and self.state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT))
            ok = (self._valid_producer_epoch(t) and set(t.partitions) == self.partitions
                  and self.txn_timeout_ms == t.txn_timeout_ms
                  and (self.txn_start_timestamp == t.txn_start_timestamp or empty_abort))
        elif t.state in (COMPLETE_COMMIT, COMPLETE_ABORT):
            ok = (self._valid_producer_epoch(t) and self.txn_timeout_ms == t.txn_timeout_ms
                  and t.txn_start_timestamp != -1)
        else:  # PrepareEpochFence and Dead are never completed
            ok = False
        if not ok:
            raise IllegalTxnTransition(
                f"{self.transactional_id}: unexpected metadata for {t.state}: {t}")
        self.producer_id = t.producer_id
        self.previous_producer_id = t.previous_producer_id
        self.next_producer_id = t.next_producer_id
        self.producer_epoch = t.producer_epoch
        self.last_producer_epoch = t.last_producer_epoch
        self.txn_timeout_ms = t.txn_timeout_ms
        self.partitions = set(t.partitions)
        self.txn_start_timestamp = t.txn_start_timestamp
        self.txn_last_update_timestamp = t.txn_last_update_timestamp
        self.client_transaction_version = t.client_transaction_version
        self.pending_state = None
        self.state = t.state

    def _valid_producer_epoch(self, t: TxnTransit) -> bool:
        tv2 = t.client_transaction_version >= 2
        if tv2 and t.state in (COMPLETE_COMMIT, COMPLETE_ABORT) and t.producer_epoch == 0 \
                and t.producer_id != self.producer_id:
            # Overflow: the producer id changed with the Complete* record.
            return (t.last_producer_epoch == self.last_producer_epoch
                    and t.previous_producer_id == self.producer_id)
        if tv2 and t.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return (t.last_producer_epoch == self.producer_epoch
                    and t.producer_id == self.producer_id)
        return t.producer_epoch == self.producer_epoch and t.producer_id == self.producer_id

    def _valid_epoch_bump(self, t: TxnTransit) -> bool:
        return (t.producer_epoch == self.producer_epoch + 1
                or (t.producer_epoch == 0 and t.producer_id != self.producer_id))


# ================================================================ the coordinator

@dataclass
class _TxnPartition:
    """The loaded ids of one __transaction_state partition this coordinator leads."""
    coordinator_epoch: int
    metadata: dict[str, TransactionMetadata] = field(default_factory=dict)


class _Fresh:
    """A producer id fetched for a request, used at most once when it is re-run."""
    __slots__ = ("pid",)

    def __init__(self, pid: int):
        self.pid: int | None = pid

    def take(self) -> int | None:
        pid, self.pid = self.pid, None
        return pid


InitCallback = Callable[[InitPidResult], None]
EndCallback = Callable[[EndTxnResult], None]


class TransactionCoordinator:
    def __init__(self, scheduler: Scheduler, store: TxnStateStore,
                 markers: MarkerSender, producer_ids: ProducerIdSource,
                 config: TxnConfig | None = None,
                 offsets_partition_for: Callable[[str], int] = (
                     lambda group_id: _offsets_partition_for(group_id, 50)),
                 log: Any = None):
        """`offsets_partition_for(group_id)`: the __consumer_offsets partition of a
        group (the default assumes offsets.topic.num.partitions = 50)."""
        self._scheduler = scheduler
        self._store = store
        self._markers = markers
        self._producer_ids = producer_ids
        self.config = config or TxnConfig()
        self._offsets_partition_for = offsets_partition_for
        self._log = log if log is not None else get_logger("kafkette.coordinator.transaction")
        self._partitions: dict[int, _TxnPartition] = {}
        self._loading: dict[int, int] = {}   # partition -> coordinator epoch being loaded
        self._answers = Outbox(self._log, "txn_respond_failed")
        self._closed = False
        self._retry_timers: set[Any] = set()
        self._abort_timer: Any = None
        self._expire_timer: Any = None
        self._schedule_abort_sweep()
        self._schedule_expire_sweep()

    # ================================================================ introspection

    def metadata(self, transactional_id: str) -> TransactionMetadata | None:
        entry = self._partitions.get(self._store.partition_for(transactional_id))
        return entry.metadata.get(transactional_id) if entry else None

    def coordinator_epoch(self, partition: int) -> int | None:
        entry = self._partitions.get(partition)
        return entry.coordinator_epoch if entry else None

    def owns(self, transactional_id: str) -> int:
        """NONE if this coordinator serves the id's partition, COORDINATOR_LOAD_IN_PROGRESS
        while it loads, NOT_COORDINATOR otherwise."""
        partition = self._store.partition_for(transactional_id)
        if partition in self._loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        if partition in self._partitions:
            return ErrorCode.NONE
        return ErrorCode.NOT_COORDINATOR

    def close(self) -> None:
        """Cancel every timer (broker shutdown). Callbacks still in flight are not
        answered by anyone else; their connections are closing."""
        self._closed = True
        for handle in [self._abort_timer, self._expire_timer, *self._retry_timers]:
            if handle is not None:
                self._scheduler.cancel(handle)
        self._abort_timer = self._expire_timer = None
        self._retry_timers.clear()

    # ================================================================ InitProducerId

    def init_producer_id(self, transactional_id: str | None, transaction_timeout_ms: int,
                         producer_id: int, producer_epoch: int,
                         callback: InitCallback) -> None:
        """InitProducerId. `producer_id`/`producer_epoch`: v3+ (KIP-360), -1/-1 when the
        client has none. A None id (an idempotent producer) just gets a fresh producer
        id with epoch 0, as Kafka answers it."""
        with self._answering():
            if transactional_id is None:
                self._producer_ids.next_producer_id(
                    self._entry(lambda err, pid: self._send(callback, (
                        InitPidResult(ErrorCode.NONE, pid, 0) if err == ErrorCode.NONE
                        else InitPidResult(err)))))
                return
            if not transactional_id:
                # The Java producer refuses an empty id too; Kafka answers this.
                self._send(callback, InitPidResult(ErrorCode.INVALID_REQUEST))
                return
            if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_PRODUCER_EPOCH):
                # KafkaApis: an id without an epoch (or the reverse) is malformed.
                self._send(callback, InitPidResult(ErrorCode.INVALID_REQUEST))
                return
            if not 0 < transaction_timeout_ms <= self.config.transaction_max_timeout_ms:
                self._send(callback, InitPidResult(ErrorCode.INVALID_TRANSACTION_TIMEOUT))
                return
            expected = None if producer_id == NO_PRODUCER_ID else (producer_id, producer_epoch)
            self._init_pid(transactional_id, transaction_timeout_ms, expected, callback, None)

    def _init_pid(self, txn_id: str, timeout_ms: int, expected: tuple[int, int] | None,
                  callback: InitCallback, fresh: _Fresh | None) -> None:
        """Run (or re-run, once a producer id arrived) InitProducerId's checks. A
        producer id is fetched only when needed (a new id, an exhausted epoch); the
        checks run again when it arrives, since the state may have moved meanwhile."""
        def reply(error: int) -> None:
            self._send(callback, InitPidResult(error))

        def with_fresh_pid() -> None:
            def got(err: int, pid: int) -> None:
                if err != ErrorCode.NONE:
                    reply(err)
                else:
                    self._init_pid(txn_id, timeout_ms, expected, callback, _Fresh(pid))
            self._producer_ids.next_producer_id(self._entry(got))

        error = self.owns(txn_id)
        if error != ErrorCode.NONE:
            reply(error)
            return
        entry = self._partitions[self._store.partition_for(txn_id)]
        md = entry.metadata.get(txn_id)
        if md is None:
            pid = fresh.take() if fresh else None
            if pid is None:
                with_fresh_pid()
                return
            # Cached before its first record is written, as Kafka does; a failed write
            # leaves it at epoch -1 and the client's retry bumps it to 0.
            md = TransactionMetadata(txn_id, pid, NO_PRODUCER_EPOCH, timeout_ms, EMPTY,
                                     txn_last_update_timestamp=self._now())
            entry.metadata[txn_id] = md

        def valid_producer_id(pid: int, epoch: int) -> bool:
            # KIP-360: a producer recovering with its old id is accepted when the id is
            # new (epoch -1), is the current one, or is the previous one and its epoch
            # was exhausted (a retry of a rotation whose answer was lost).
            return (md.producer_epoch == NO_PRODUCER_EPOCH or pid == md.producer_id
                    or (pid == md.previous_producer_id and is_epoch_exhausted(epoch)))

        if md.pending_transition_in_progress:
            reply(ErrorCode.CONCURRENT_TRANSACTIONS)
        elif expected is not None and not valid_producer_id(*expected):
            reply(ErrorCode.PRODUCER_FENCED)
        elif md.state in (PREPARE_COMMIT, PREPARE_ABORT):
            reply(ErrorCode.CONCURRENT_TRANSACTIONS)
        elif md.state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT):
            if md.is_epoch_exhausted and (expected is None or expected[1] == md.producer_epoch):
                pid = fresh.take() if fresh else None
                if pid is None:
                    with_fresh_pid()
                    return
                transit: TxnTransit | int = md.prepare_producer_id_rotation(
                    pid, timeout_ms, self._now(), expected is not None)
            else:
                transit = md.prepare_increment_producer_epoch(
                    timeout_ms, None if expected is None else expected[1], self._now())
            if isinstance(transit, int):
                reply(transit)
                return
            t = transit

            def appended(err: int) -> None:
                if err == ErrorCode.NONE:
                    self._log.info("txn_producer_initialized", transactional_id=txn_id,
                                   producer_id=t.producer_id, producer_epoch=t.producer_epoch,
                                   partition=self._store.partition_for(txn_id))
                    self._send(callback, InitPidResult(ErrorCode.NONE, t.producer_id,
                                                       t.producer_epoch))
                else:
                    self._log.info("txn_init_producer_id_failed", transactional_id=txn_id,
                                   error=_code_name(err))
                    reply(err)
            self._append_transit(md, entry.coordinator_epoch, t, appended)
        elif md.state == ONGOING:
            # Fence the ongoing transaction: bump the epoch and abort it, then answer
            # CONCURRENT_TRANSACTIONS so the client retries; the retry bumps the epoch
            # again (or rotates the producer id if the fence used the last epoch).
            fence = md.prepare_fence_producer_epoch()
            self._log.info("txn_fencing_ongoing", transactional_id=txn_id,
                           producer_id=md.producer_id, producer_epoch=md.producer_epoch,
                           fence_epoch=fence.producer_epoch)

            def aborted(result: EndTxnResult) -> None:
                reply(ErrorCode.CONCURRENT_TRANSACTIONS if result.error == ErrorCode.NONE
                      else result.error)
            self._end_txn(txn_id, fence.producer_id, fence.producer_epoch, False, False,
                          self.config.transaction_version, aborted, None)
        else:  # Dead / PrepareEpochFence are never resting states
            self._log.error("txn_illegal_state", transactional_id=txn_id, state=str(md.state))
            reply(ErrorCode.UNKNOWN_SERVER_ERROR)

    # ================================================================ AddPartitionsToTxn

    def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                       partitions: list[tuple[str, int]], callback: Callable[[int], None],
                       client_transaction_version: int = 0) -> None:
        """AddPartitionsToTxn: one error for all the partitions.
        `client_transaction_version`: 2 when the broker adds the partitions on a TV2
        producer's behalf (KIP-890 part 2); it is recorded with the transaction."""
        with self._answering():
            self._add_partitions(transactional_id, producer_id, producer_epoch,
                                 [(str(t), int(p)) for t, p in partitions], callback,
                                 client_transaction_version)

    def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                    group_id: str, callback: Callable[[int], None],
                    client_transaction_version: int = 0) -> None:
        """AddOffsetsToTxn: adds the group's __consumer_offsets partition, as Kafka's
        handler does, so the offsets commit or abort with the transaction (KIP-98)."""
        with self._answering():
            partition = (OFFSETS_TOPIC, self._offsets_partition_for(group_id))
            self._add_partitions(transactional_id, producer_id, producer_epoch, [partition],
                                 callback, client_transaction_version)

    def _add_partitions(self, txn_id: str, pid: int, epoch: int,
                        partitions: list[TopicPartition], callback: Callable[[int], None],
                        client_tv: int) -> None:
        if not txn_id:
            self._send(callback, ErrorCode.INVALID_REQUEST)
            return
        error = self.owns(txn_id)
        if error != ErrorCode.NONE:
            self._send(callback, error)
            return
        entry = self._partitions[self._store.partition_for(txn_id)]
        md = entry.metadata.get(txn_id)
        if md is None:
            error = ErrorCode.INVALID_PRODUCER_ID_MAPPING
        elif md.pending_transition_in_progress:
            # Checked first (KAFKA-18660): after a TV2 overflow the client already uses
            # the new producer id while Complete* is still being written; it must retry,
            # not be told its id is unknown.
            error = ErrorCode.CONCURRENT_TRANSACTIONS
        elif md.producer_id != pid:
            error = ErrorCode.INVALID_PRODUCER_ID_MAPPING
        elif md.producer_epoch != epoch:
            error = ErrorCode.PRODUCER_FENCED
        elif md.state in (PREPARE_COMMIT, PREPARE_ABORT):
            error = ErrorCode.CONCURRENT_TRANSACTIONS
        elif md.state == ONGOING and set(partitions) <= md.partitions:
            error = ErrorCode.NONE  # nothing new: no record to write
        else:
            transit = md.prepare_add_partitions(partitions, self._now(), client_tv)
            self._append_transit(md, entry.coordinator_epoch, transit,
                                 lambda err: self._send(callback, err))
            return
        self._send(callback, error)

    def verify_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """AddPartitionsToTxn v4+ verify_only (KIP-890 part 1): NONE for each partition
        in the ongoing transaction, TRANSACTION_ABORTABLE for one that is not (the
        broker turns that into INVALID_TXN_STATE for old produce versions). The pending
        state is not checked: the append that follows is validated again."""
        parts = [(str(t), int(p)) for t, p in partitions]
        if not transactional_id:
            return dict.fromkeys(parts, ErrorCode.INVALID_REQUEST)
        error = self.owns(transactional_id)
        if error != ErrorCode.NONE:
            return dict.fromkeys(parts, error)
        md = self.metadata(transactional_id)
        if md is None or md.producer_id != producer_id:
            return dict.fromkeys(parts, ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        if md.producer_epoch != producer_epoch:
            return dict.fromkeys(parts, ErrorCode.PRODUCER_FENCED)
        if md.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return dict.fromkeys(parts, ErrorCode.CONCURRENT_TRANSACTIONS)
        return {tp: ErrorCode.NONE if tp in md.partitions else ErrorCode.TRANSACTION_ABORTABLE
                for tp in parts}

    # ================================================================ EndTxn

    def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                commit: bool, client_transaction_version: int,
                callback: EndCallback) -> None:
        """EndTxn. `client_transaction_version`: 2 for EndTxn v5+ (KIP-890 part 2),
        else 0 (or 1). Answers once the Prepare* record is in the log; the markers and
        Complete* follow."""
        with self._answering():
            self._end_txn(transactional_id, producer_id, producer_epoch, bool(commit), True,
                          client_transaction_version, callback, None)

    def _end_txn(self, txn_id: str, pid: int, epoch: int, commit: bool, from_client: bool,
                 client_tv: int, callback: EndCallback, fresh: _Fresh | None) -> None:
        def reply(error: int, rpid: int = NO_PRODUCER_ID,
                  repoch: int = NO_PRODUCER_EPOCH) -> None:
            self._send(callback, EndTxnResult(error, rpid, repoch))

        if not txn_id:
            reply(ErrorCode.INVALID_REQUEST)
            return
        error = self.owns(txn_id)
        if error != ErrorCode.NONE:
            reply(error)
            return
        entry = self._partitions[self._store.partition_for(txn_id)]
        md = entry.metadata.get(txn_id)
        if md is None:
            reply(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
            return
        is_fence = md.pending_state == PREPARE_EPOCH_FENCE
        want_prepare = PREPARE_COMMIT if commit else PREPARE_ABORT
        want_complete = COMPLETE_COMMIT if commit else COMPLETE_ABORT
        want_abort = not commit
        # What to do: an int is an error to answer (NONE answers the current id/epoch),
        # a (state, no_partition_added) pair starts the commit/abort.
        if client_tv >= 2:
            retry_on_overflow = (not is_fence and md.previous_producer_id == pid
                                 and epoch == SHORT_MAX - 1 and md.producer_epoch == 0)
            retry_on_bump = not is_fence and md.producer_epoch == epoch + 1
            if is_fence:
                valid_epoch = ((not from_client or epoch == md.producer_epoch)
                               and epoch >= md.producer_epoch)
            elif md.state in (PREPARE_COMMIT, PREPARE_ABORT):
                # With TV2 the same epoch in Prepare* means the *next* transaction.
                valid_epoch = retry_on_bump
            elif md.state in (COMPLETE_COMMIT, COMPLETE_ABORT):
                valid_epoch = retry_on_bump or retry_on_overflow or epoch == md.producer_epoch
            else:
                valid_epoch = epoch == md.producer_epoch
            is_retry = retry_on_bump or retry_on_overflow
            if md.producer_id != pid and not retry_on_overflow:
                action: int | tuple[TxnState, bool] = ErrorCode.INVALID_PRODUCER_ID_MAPPING
            elif not valid_epoch:
                action = ErrorCode.PRODUCER_FENCED
            elif md.pending_transition_in_progress and not is_fence:
                action = ErrorCode.CONCURRENT_TRANSACTIONS
            elif md.state == ONGOING:
                action = (want_prepare, False)
            elif md.state == want_complete and is_retry:
                action = ErrorCode.NONE
            elif md.state in (COMPLETE_COMMIT, COMPLETE_ABORT, EMPTY) and want_abort \
                    and not is_retry:
                # An abort with nothing to abort still bumps the epoch (KIP-890).
                action = (PREPARE_ABORT, True)
            elif md.state == want_prepare:
                action = ErrorCode.CONCURRENT_TRANSACTIONS
            elif md.state in (DEAD, PREPARE_EPOCH_FENCE):
                action = ErrorCode.UNKNOWN_SERVER_ERROR
            else:
                action = ErrorCode.INVALID_TXN_STATE
        else:
            if md.producer_id != pid:
                action = ErrorCode.INVALID_PRODUCER_ID_MAPPING
            elif (from_client and epoch != md.producer_epoch) or epoch < md.producer_epoch:
                # A classic client never bumps its epoch itself: strict equality.
                action = ErrorCode.PRODUCER_FENCED
            elif md.pending_transition_in_progress and not is_fence:
                action = ErrorCode.CONCURRENT_TRANSACTIONS
            elif md.state == ONGOING:
                action = (want_prepare, False)
            elif md.state == want_complete:
                action = ErrorCode.NONE   # a retry of a completed EndTxn
            elif md.state == want_prepare:
                action = ErrorCode.CONCURRENT_TRANSACTIONS
            elif md.state in (DEAD, PREPARE_EPOCH_FENCE):
                action = ErrorCode.UNKNOWN_SERVER_ERROR
            else:
                action = ErrorCode.INVALID_TXN_STATE

        if isinstance(action, int):
            if action == ErrorCode.NONE:
                reply(ErrorCode.NONE, md.producer_id, md.producer_epoch)
            else:
                if action == ErrorCode.UNKNOWN_SERVER_ERROR:
                    self._log.error("txn_illegal_state", transactional_id=txn_id,
                                    state=str(md.state))
                elif action == ErrorCode.INVALID_TXN_STATE:
                    self._log.info("txn_end_invalid_state", transactional_id=txn_id,
                                   state=str(md.state), commit=commit)
                if is_fence:
                    md.pending_state = None  # the fence is not going anywhere
                reply(action)
            return

        next_state, no_partition_added = action
        next_pid = NO_PRODUCER_ID
        if client_tv >= 2 and not is_fence and md.is_epoch_exhausted:
            # The bump would reach 32767: the Complete* record switches to a new
            # producer id with epoch 0 (KIP-890's overflow).
            next_pid = fresh.take() if fresh else None
            if next_pid is None:
                def got(err: int, new_pid: int) -> None:
                    if err != ErrorCode.NONE:
                        reply(err)
                    else:
                        self._end_txn(txn_id, pid, epoch, commit, from_client, client_tv,
                                      callback, _Fresh(new_pid))
                self._producer_ids.next_producer_id(self._entry(got))
                return
        if is_fence:
            # The fence's epoch goes straight into the abort record (Kafka applies it to
            # the in-memory metadata here, before the write; a failed write leaves it,
            # and has_failed_epoch_fence stops the next fence from bumping again).
            md.pending_state = None
            md.producer_epoch = epoch
            md.last_producer_epoch = NO_PRODUCER_EPOCH
        transit = md.prepare_abort_or_commit(next_state, client_tv, next_pid, self._now(),
                                             no_partition_added)
        coordinator_epoch = entry.coordinator_epoch

        def prepared(err: int) -> None:
            if err != ErrorCode.NONE:
                self._log.info("txn_prepare_failed", transactional_id=txn_id,
                               state=str(next_state), error=_code_name(err))
                if is_fence and self._current(txn_id, md, coordinator_epoch):
                    md.has_failed_epoch_fence = True
                reply(err)
                return
            if not self._current(txn_id, md, coordinator_epoch):
                reply(ErrorCode.NOT_COORDINATOR)
                return
            if md.producer_id != pid:
                reply(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
            elif md.producer_epoch != epoch and not (client_tv >= 2
                                                     and md.producer_epoch == epoch + 1):
                reply(ErrorCode.PRODUCER_FENCED)
            elif md.pending_transition_in_progress:
                reply(ErrorCode.CONCURRENT_TRANSACTIONS)
            elif md.state != next_state:
                reply(ErrorCode.INVALID_TXN_STATE)
            else:
                complete = md.prepare_complete(self._now())
                self._log.debug("txn_prepared", transactional_id=txn_id, state=str(md.state),
                               producer_id=md.producer_id, producer_epoch=md.producer_epoch,
                               partitions=len(md.partitions), fenced=is_fence)
                # The decision is in the log: answer now, the markers follow.
                reply(ErrorCode.NONE, complete.producer_id, complete.producer_epoch)
                self._send_markers(txn_id, md, coordinator_epoch, complete)
        self._append_transit(md, coordinator_epoch, transit, prepared)

    # --- markers and Complete*

    def _send_markers(self, txn_id: str, md: TransactionMetadata, coordinator_epoch: int,
                      complete: TxnTransit) -> None:
        commit = md.state == PREPARE_COMMIT
        partitions = sorted(md.partitions)

        def written() -> None:
            if not self._current(txn_id, md, coordinator_epoch):
                # Unloaded (or reloaded at a newer epoch) meanwhile: whoever loads the
                # partition resends the markers from the Prepare* record.
                self._log.info("txn_markers_done_not_current", transactional_id=txn_id)
                return
            md.partitions.clear()  # Kafka drops each partition as its marker lands
            self._append_complete(txn_id, md, coordinator_epoch, complete)

        if not partitions:
            written()   # a TV2 abort with no partition: nothing to mark
            return
        self._markers.send_markers(md.producer_id, md.producer_epoch, coordinator_epoch,
                                   commit, partitions, self._entry(written))

    def _append_complete(self, txn_id: str, md: TransactionMetadata, coordinator_epoch: int,
                         complete: TxnTransit) -> None:
        def retryable(err: int) -> bool:
            # Kafka retries COORDINATOR_NOT_AVAILABLE and treats anything but
            # NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS as fatal; kafkette keeps
            # retrying those too rather than leave the transaction hanging in Prepare*.
            return err not in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)

        def appended(err: int) -> None:
            if err == ErrorCode.NONE:
                self._log.debug("txn_completed", transactional_id=txn_id, state=str(md.state),
                               producer_id=md.producer_id, producer_epoch=md.producer_epoch)
            elif retryable(err) and self._current(txn_id, md, coordinator_epoch):
                self._log.info("txn_complete_append_retry", transactional_id=txn_id,
                               error=_code_name(err))
                self._retry_later(lambda: self._append_complete_again(
                    txn_id, md, coordinator_epoch, complete))
            else:
                self._log.info("txn_complete_append_abandoned", transactional_id=txn_id,
                               error=_code_name(err))
        self._append_transit(md, coordinator_epoch, complete, appended, retryable)

    def _append_complete_again(self, txn_id: str, md: TransactionMetadata,
                               coordinator_epoch: int, complete: TxnTransit) -> None:
        if self._current(txn_id, md, coordinator_epoch) and md.pending_state == complete.state:
            self._append_complete(txn_id, md, coordinator_epoch, complete)

    def _retry_later(self, fn: Callable[[], None]) -> None:
        if self._closed:
            return
        holder: list[Any] = []

        def run() -> None:
            self._retry_timers.discard(holder[0])
            self._entry(fn)()
        handle = self._scheduler.call_at(self._now() + COMPLETE_RETRY_BACKOFF_MS, run)
        holder.append(handle)
        self._retry_timers.add(handle)

    # ================================================================ describe / list

    def describe(self, transactional_ids: list[str]) -> list[TxnDescription]:
        out = []
        for txn_id in transactional_ids:
            if not txn_id:
                out.append(TxnDescription(txn_id, ErrorCode.INVALID_REQUEST))
                continue
            error = self.owns(txn_id)
            md = self.metadata(txn_id) if error == ErrorCode.NONE else None
            if error != ErrorCode.NONE:
                out.append(TxnDescription(txn_id, error))
            elif md is None or md.state == DEAD:
                out.append(TxnDescription(txn_id, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND))
            else:
                topics: dict[str, list[int]] = {}
                for topic, partition in sorted(md.partitions):
                    topics.setdefault(topic, []).append(partition)
                out.append(TxnDescription(
                    txn_id, ErrorCode.NONE, md.state.kafka_name, md.producer_id,
                    md.producer_epoch, md.txn_timeout_ms, md.txn_start_timestamp,
                    list(topics.items())))
        return out

    def list_transactions(self, states: list[str], producer_ids: list[int],
                          duration_filter_ms: int = -1) -> TxnListings:
        """ListTransactions: every id matching all the filters (an empty filter matches
        all; `duration_filter_ms` >= 0 keeps transactions running longer than that,
        KIP-994). While any partition loads Kafka answers COORDINATOR_LOAD_IN_PROGRESS
        and no listing."""
        if self._loading:
            return TxnListings(error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        wanted: set[TxnState] = set()
        unknown = []
        for name in states:
            state = TxnState.from_name(name)
            if state is None:
                unknown.append(name)
            else:
                wanted.add(state)
        pids = set(producer_ids)
        now = self._now()
        out = []
        for entry in self._partitions.values():
            for md in entry.metadata.values():
                if md.state == DEAD:
                    continue
                if pids and md.producer_id not in pids:
                    continue
                if states and md.state not in wanted:
                    continue
                if duration_filter_ms >= 0 and now - md.txn_start_timestamp <= duration_filter_ms:
                    continue
                out.append(TxnListing(md.transactional_id, md.producer_id, md.state.kafka_name))
        return TxnListings(out, ErrorCode.NONE, unknown)

    # ================================================================ load / unload

    def begin_load(self, partition: int, coordinator_epoch: int) -> None:
        """Mark a partition as loading (its ids answer COORDINATOR_LOAD_IN_PROGRESS)
        while the broker reads it; `load_partition` ends it."""
        self._loading[partition] = coordinator_epoch
        self._log.debug("txn_partition_loading", partition=partition,
                        coordinator_epoch=coordinator_epoch)

    def load_partition(self, partition: int, coordinator_epoch: int,
                       records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Become the coordinator of a __transaction_state partition (Kafka's
        onElection): replay its records in log order (the last value per id wins; a
        tombstone removes the id), then finish what the log shows in flight
        (onTransactionStateLoaded): PrepareCommit / PrepareAbort resend the markers and
        write Complete*. A record in PrepareEpochFence (Kafka never writes one) is
        taken as the Ongoing transaction it was fencing, and is fenced and aborted now.
        Undecodable records are skipped with a warning (Kafka's loader logs the error
        and stops reading the partition)."""
        with self._answering():
            if self._loading.get(partition, coordinator_epoch) != coordinator_epoch:
                self._log.info("txn_partition_load_superseded", partition=partition,
                               coordinator_epoch=coordinator_epoch)
                return
            loaded: dict[str, TxnLogValue] = {}
            for key, value in records:
                try:
                    txn_id = decode_txn_key(key)
                    decoded = decode_txn_value(value)
                except CoordinatorRecordError as e:
                    self._log.warning("txn_record_skipped", partition=partition, error=str(e))
                    continue
                if decoded is None:
                    loaded.pop(txn_id, None)
                else:
                    loaded[txn_id] = decoded
            self._loading.pop(partition, None)
            if partition in self._partitions:
                self._log.warning("txn_partition_replaced", partition=partition,
                                  old_epoch=self._partitions[partition].coordinator_epoch,
                                  coordinator_epoch=coordinator_epoch)
            entry = _TxnPartition(coordinator_epoch, {
                txn_id: TransactionMetadata.from_log_value(txn_id, v)
                for txn_id, v in loaded.items()})
            self._partitions[partition] = entry
            # A broker loads every partition it leads at once (50 by default): only the
            # ones with state are worth a line at info.
            (self._log.info if entry.metadata else self._log.debug)(
                "txn_partition_loaded", partition=partition,
                coordinator_epoch=coordinator_epoch, transactional_ids=len(entry.metadata))
            for txn_id, md in entry.metadata.items():
                if md.state in (PREPARE_COMMIT, PREPARE_ABORT):
                    self._log.info("txn_resuming_markers", transactional_id=txn_id,
                                   state=str(md.state), partition=partition)
                    complete = md.prepare_complete(self._now())
                    self._send_markers(txn_id, md, coordinator_epoch, complete)
                elif md.state == PREPARE_EPOCH_FENCE:
                    md.state = ONGOING
                    self._fence_and_abort(txn_id, md, "loaded in PrepareEpochFence")

    def unload_partition(self, partition: int) -> None:
        """Stop coordinating a partition (Kafka's onResignation): forget its ids.
        Appends and markers still in flight find their metadata gone and answer
        NOT_COORDINATOR; nothing is written (the new coordinator has the log)."""
        with self._answering():
            self._loading.pop(partition, None)
            entry = self._partitions.pop(partition, None)
            self._log.info("txn_partition_unloaded", partition=partition,
                           transactional_ids=len(entry.metadata) if entry else 0)

    # ================================================================ timers

    def _schedule_abort_sweep(self) -> None:
        if not self._closed:
            self._abort_timer = self._scheduler.call_at(
                self._now() + self.config.abort_timed_out_interval_ms, self._on_abort_timer)

    def _on_abort_timer(self) -> None:
        self._abort_timer = None
        try:
            self.abort_timed_out_transactions()
        finally:
            self._schedule_abort_sweep()

    def abort_timed_out_transactions(self) -> int:
        """Abort every Ongoing transaction older than its timeout, fencing its producer
        with an epoch bump (Kafka's abortTimedOutTransactions). Returns how many."""
        with self._answering():
            now = self._now()
            timed_out = [(txn_id, md) for entry in self._partitions.values()
                         for txn_id, md in entry.metadata.items()
                         if md.state == ONGOING and not md.pending_transition_in_progress
                         and md.txn_start_timestamp + md.txn_timeout_ms < now]
            for txn_id, md in timed_out:
                self._fence_and_abort(txn_id, md, "transaction timed out")
            return len(timed_out)

    def _fence_and_abort(self, txn_id: str, md: TransactionMetadata, reason: str) -> None:
        fence = md.prepare_fence_producer_epoch()
        self._log.info("txn_aborting", transactional_id=txn_id, reason=reason,
                       producer_id=md.producer_id, fence_epoch=fence.producer_epoch)

        def done(result: EndTxnResult) -> None:
            if result.error not in (ErrorCode.NONE, ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                                    ErrorCode.PRODUCER_FENCED,
                                    ErrorCode.CONCURRENT_TRANSACTIONS):
                self._log.warning("txn_abort_failed", transactional_id=txn_id,
                                  error=_code_name(result.error))
        self._end_txn(txn_id, fence.producer_id, fence.producer_epoch, False, False,
                      self.config.transaction_version, done, None)

    def _schedule_expire_sweep(self) -> None:
        if not self._closed:
            self._expire_timer = self._scheduler.call_at(
                self._now() + self.config.remove_expired_interval_ms, self._on_expire_timer)

    def _on_expire_timer(self) -> None:
        self._expire_timer = None
        try:
            self.remove_expired_transactional_ids()
        finally:
            self._schedule_expire_sweep()

    def remove_expired_transactional_ids(self) -> int:
        """Write a tombstone for every id idle for transactional.id.expiration.ms in
        Empty / CompleteCommit / CompleteAbort, and drop it once the tombstone is in the
        log (Kafka's removeExpiredTransactionalIds; Kafka batches the tombstones of a
        partition, kafkette appends one per id). Returns how many were started."""
        with self._answering():
            cutoff = self._now() - self.config.transactional_id_expiration_ms
            expired = [(entry, txn_id, md) for entry in self._partitions.values()
                       for txn_id, md in entry.metadata.items()
                       if not md.pending_transition_in_progress
                       and md.state in EXPIRATION_ALLOWED
                       and md.txn_last_update_timestamp <= cutoff]
            for entry, txn_id, md in expired:
                transit = md.prepare_dead()
                self._append_transit(
                    md, entry.coordinator_epoch, transit,
                    lambda err, txn_id=txn_id: self._log.info(
                        "txn_id_expired" if err == ErrorCode.NONE else "txn_id_expiry_failed",
                        transactional_id=txn_id, error=_code_name(err)))
            return len(expired)

    # ================================================================ plumbing

    def _now(self) -> int:
        return self._scheduler.now_ms()

    def _current(self, txn_id: str, md: TransactionMetadata, coordinator_epoch: int) -> bool:
        """Is `md` still the cached metadata of `txn_id`, under the same coordinator
        epoch (no unload / reload since)?"""
        entry = self._partitions.get(self._store.partition_for(txn_id))
        return (entry is not None and entry.coordinator_epoch == coordinator_epoch
                and entry.metadata.get(txn_id) is md)

    def _append_transit(self, md: TransactionMetadata, coordinator_epoch: int,
                        transit: TxnTransit, on_done: Callable[[int], None],
                        keep_pending_on: Callable[[int], bool] = lambda err: False) -> None:
        """Write `transit` (a tombstone for Dead) and, once it is in the log, apply it;
        then on_done(error) with Kafka's client-facing error. On failure the pending
        state is cleared, unless `keep_pending_on(error)` (the caller retries)."""
        txn_id = md.transactional_id
        done = [False]

        def appended(code: int) -> None:
            if done[0]:
                self._log.warning("txn_append_callback_repeated", transactional_id=txn_id)
                return
            done[0] = True
            error = transaction_error_for_append(int(code))
            current = self._current(txn_id, md, coordinator_epoch)
            if error == ErrorCode.NONE:
                if not current:
                    # Emigrated (and maybe immigrated) meanwhile: let the client find
                    # the coordinator again.
                    error = ErrorCode.NOT_COORDINATOR
                elif transit.state == DEAD:
                    if md.pending_state == DEAD:
                        entry = self._partitions[self._store.partition_for(txn_id)]
                        del entry.metadata[txn_id]
                else:
                    try:
                        md.complete_transition_to(transit)
                    except IllegalTxnTransition:
                        self._log.exception("txn_transition_failed", transactional_id=txn_id)
                        md.pending_state = None
                        error = ErrorCode.UNKNOWN_SERVER_ERROR
            elif current and not keep_pending_on(error):
                md.pending_state = None
            on_done(error)

        if not self._current(txn_id, md, coordinator_epoch):
            appended(ErrorCode.NOT_COORDINATOR)
            return
        value = None if transit.state == DEAD else encode_txn_value(transit.to_log_value())
        try:
            self._store.append(txn_id, encode_txn_key(txn_id), value, self._entry(appended))
        except KafkaError as e:
            appended(int(e.code))
        except Exception:  # noqa: BLE001 - a store bug must not wedge the id
            self._log.exception("txn_store_append_failed", transactional_id=txn_id)
            appended(ErrorCode.UNKNOWN_SERVER_ERROR)

    def _entry(self, fn: Callable[..., None]) -> Callable[..., None]:
        """Wrap a callback handed to a collaborator so that what it answers is
        delivered once the coordinator's state is consistent."""
        def wrapped(*args: Any) -> None:
            with self._answering():
                fn(*args)
        return wrapped

    def _answering(self):
        """Every entry point (public method, timer, collaborator callback) runs inside
        this (coordinator/outbox.py)."""
        return self._answers.answering()

    def _send(self, callback: Callable[[Any], None], result: Any) -> None:
        self._answers.send(callback, result)
