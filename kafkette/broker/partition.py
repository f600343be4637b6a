"""One hosted partition and everything this broker knows of its replication: Kafka's
`Partition` (Partition.scala), in miniature.

A `Partition` owns its log and its replication state: the role (leader or follower),
leader and partition epochs, the replica set and the ISR, the leader's view of each
follower (log end offset, last caught-up time) and the high watermark. The high
watermark lives here, not in the log: the log stores bytes, the partition decides how
far they are committed.

Rules, as Kafka's:
- The leader's high watermark is the smallest log end offset over its ISR (the
  "maximal" ISR while an expansion is in flight, so that a joining replica is waited
  for before it counts), and never goes back. It holds while the committed ISR is
  below min.insync.replicas (KIP-966).
- A follower is caught up when a fetch asks for the leader's log end offset (or for
  what the leader's log end was at its previous fetch); a follower that has not been
  caught up for `replica.lag.time.max.ms` is proposed out of the ISR, and one whose log
  end offset reaches the high watermark (and the start of the leader's epoch) is
  proposed back in. Proposals go to the controller (AlterPartition); the ISR changes
  here only when the controller answers or the metadata says so.
- A follower's high watermark is what its leader last said, capped at its own log end.
- A fetch from a follower that names the epoch of its last fetched batch gets the
  end of that epoch on the leader when its log diverges (KIP-320 DivergingEpoch,
  KIP-279), and no records.

Sans-IO: no sockets and no awaits here. The replica manager (broker/replica_manager.py)
drives it with the metadata, appends, fetches and the clock, and sends what it
proposes.
"""
from __future__ import annotations

from dataclasses import dataclass

from kafkette.errors import ErrorCode, KafkaError, KafkaStorageError, OffsetOutOfRangeError
from kafkette.log.partition_log import AppendResult, PartitionLog, UnexpectedAppendOffsetError

LEADER, FOLLOWER = "leader", "follower"

# AlterPartition answers (Kafka's Partition.handleAlterPartitionError): the controller
# did not apply the change; or the request was out of date, and the metadata will tell.
_ISR_CHANGE_NOT_APPLIED = frozenset({ErrorCode.INELIGIBLE_REPLICA,
                                     ErrorCode.OPERATION_NOT_ATTEMPTED})
_ISR_CHANGE_AWAITS_METADATA = frozenset({
    ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.INVALID_UPDATE_VERSION,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.UNKNOWN_TOPIC_ID,
    ErrorCode.INVALID_REQUEST, ErrorCode.NEW_LEADER_ELECTED})


class NotLeaderError(KafkaError):
    """This broker does not lead the partition. `leader`/`leader_epoch` are the
    current leader as this broker's metadata knows it (-1: none), which Produce v10+
    and Fetch v12+ put in the response so that clients re-route without a Metadata
    round trip (KIP-951)."""
    code = ErrorCode.NOT_LEADER_OR_FOLLOWER

    def __init__(self, message: str | None = None, leader: int = -1, leader_epoch: int = -1):
        super().__init__(message)
        self.leader = leader
        self.leader_epoch = leader_epoch


@dataclass
class FollowerState:
    """The leader's view of one follower (Kafka's Replica / ReplicaState)."""
    log_end_offset: int = -1           # -1: not fetched since this broker became leader
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    last_fetch_leader_log_end: int = -1
    log_start_offset: int = -1         # as the follower last reported it (Fetch v5+)


class Partition:
    def __init__(self, topic: str, index: int, log: PartitionLog, node_id: int,
                 high_watermark: int = 0):
        self.topic = topic
        self.index = index
        self.log = log
        self.node_id = node_id
        self.role: str | None = None
        self.leader = -1
        self.leader_epoch = -1
        self.partition_epoch = -1
        self.replicas: tuple[int, ...] = ()
        self.isr: tuple[int, ...] = ()
        self.followers: dict[int, FollowerState] = {}
        # An ISR change sent to the controller and not yet answered (one at a time,
        # as Kafka's PendingExpandIsr / PendingShrinkIsr).
        self.pending_isr: tuple[int, ...] | None = None
        # Where this leader's epoch starts in its log: a follower joins the ISR only
        # once it has reached it (Kafka: leaderEpochStartOffsetOpt).
        self.leader_epoch_start_offset = -1
        self.high_watermark = max(log.log_start_offset, min(high_watermark, log.log_end_offset))
        # KIP-704: 1 (RECOVERING) after an unclean election, until this leader tells the
        # controller it has recovered.
        self.leader_recovery_state = 0

    def __repr__(self) -> str:
        return (f"Partition({self.topic}-{self.index}, {self.role}, leader={self.leader}, "
                f"epoch={self.leader_epoch}, isr={self.isr}, hw={self.high_watermark}, "
                f"leo={self.log.log_end_offset})")

    @property
    def is_leader(self) -> bool:
        return self.role == LEADER

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The committed ISR plus a pending expansion: the replicas the high watermark
        waits for."""
        if self.pending_isr is None:
            return self.isr
        return self.isr + tuple(r for r in self.pending_isr if r not in self.isr)

    # -- metadata ---------------------------------------------------------------------
    def apply_metadata(self, leader: int, leader_epoch: int, partition_epoch: int,
                       replicas, isr, now_ms: int, leader_recovery_state: int = 0) -> str | None:
        """Take the partition's state from the metadata image. Returns LEADER or
        FOLLOWER when this broker's role (or the leader epoch) changed, else None."""
        replicas, isr = tuple(replicas), tuple(isr)
        self.leader_recovery_state = leader_recovery_state
        new_epoch = leader_epoch != self.leader_epoch
        role = LEADER if leader == self.node_id else FOLLOWER
        changed = new_epoch or role != self.role or leader != self.leader
        if partition_epoch >= self.partition_epoch or new_epoch:
            # A newer partition epoch is the controller's committed state: a pending
            # proposal was either applied (and this is its result, or later) or can no
            # longer be, being based on an older epoch. Either way propose again from
            # here (Kafka's makeLeader resets to the committed state).
            if self.pending_isr is not None and (new_epoch or self.pending_isr == isr
                                                 or partition_epoch > self.partition_epoch):
                self.pending_isr = None
            self.replicas, self.isr, self.partition_epoch = replicas, isr, partition_epoch
        self.leader, self.leader_epoch = leader, leader_epoch
        if not changed:
            self._sync_followers(now_ms)
            return None
        self.role = role
        if role == LEADER:
            self._become_leader(now_ms)
        else:
            self.followers = {}
            self.pending_isr = None
            self.leader_epoch_start_offset = -1
        return role

    def _become_leader(self, now_ms: int) -> None:
        # The new epoch starts at our log end (Kafka: Partition.makeLeader assigns it
        # in the leader-epoch cache), so that followers of older epochs find where
        # their history and ours part.
        leo = self.log.log_end_offset
        # Only an epoch newer than any in the log: a broker replaying the metadata log at
        # start-up passes through old leaderships, whose epochs its log already has (or
        # had) and which must not rewrite its history.
        if self.leader_epoch > self.log.latest_epoch:
            try:
                self.log.assign_epoch_start_offset(self.leader_epoch)
            except KafkaStorageError:
                # A full disk (or an offline log dir, which refuses everything anyway):
                # the first append of this epoch records its start instead, and until
                # then the previous epoch, the latest, ends at our log end all the same.
                pass
        self.leader_epoch_start_offset = leo
        self.pending_isr = None
        # Followers' log ends are unknown until they fetch; those in the ISR count as
        # caught up now, so they are not dropped before they had a chance to fetch.
        self.followers = {r: FollowerState(last_caught_up_ms=now_ms if r in self.isr else 0)
                          for r in self.replicas if r != self.node_id}
        self.maybe_increment_high_watermark()

    def _sync_followers(self, now_ms: int) -> None:
        if self.role != LEADER:
            return
        for r in self.replicas:
            if r != self.node_id and r not in self.followers:
                self.followers[r] = FollowerState()
        for r in list(self.followers):
            if r not in self.replicas:
                del self.followers[r]

    def check_leader(self) -> None:
        if self.role != LEADER:
            raise NotLeaderError(None, self.leader, self.leader_epoch)

    def check_leader_epoch(self, current_leader_epoch: int) -> None:
        """KIP-320: a client behind the leader epoch is fenced (it refreshes its
        metadata); one ahead of ours waits for our metadata to catch up."""
        if current_leader_epoch >= 0 and current_leader_epoch != self.leader_epoch:
            raise KafkaError(None, ErrorCode.FENCED_LEADER_EPOCH
                             if current_leader_epoch < self.leader_epoch
                             else ErrorCode.UNKNOWN_LEADER_EPOCH)

    # -- leader: appends ------------------------------------------------------------
    def append_as_leader(self, records, required_acks: int, now_ms: int, *,
                         origin: str = "client") -> AppendResult:
        self.check_leader()
        min_isr = self.log.config.min_insync_replicas
        if required_acks == -1 and len(self.isr) < min_isr:
            # Kafka refuses acks=all before appending when the ISR is smaller than
            # min.insync.replicas (Partition.appendRecordsToLeader).
            raise KafkaError(
                f"The size of the current ISR {set(self.isr)} is insufficient to satisfy "
                f"the min.isr requirement of {min_isr} for partition {self.topic}-{self.index}",
                ErrorCode.NOT_ENOUGH_REPLICAS)
        result = self.log.append(records, self.leader_epoch, now_ms, origin=origin)
        self.maybe_increment_high_watermark()
        return result

    def append_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                      commit: bool, now_ms: int) -> AppendResult:
        """A COMMIT or ABORT marker from the transaction coordinator (WriteTxnMarkers),
        which Kafka appends as leader with acks=all regardless of min.insync.replicas'
        check before the append (the coordinator retries until it is replicated)."""
        self.check_leader()
        result = self.log.append_marker(producer_id, producer_epoch, coordinator_epoch,
                                        commit, self.leader_epoch, now_ms)
        self.maybe_increment_high_watermark()
        return result

    @property
    def last_stable_offset(self) -> int:
        """The LSO: the high watermark, or the first offset of the oldest transaction
        below it that is still open or whose marker is not yet replicated
        (read_committed consumers read up to here)."""
        hw = self.high_watermark
        first = self.log.first_unstable_offset(hw)
        return hw if first is None or first > hw else first

    def replication_error(self, required_offset: int, leader_epoch: int) -> int | None:
        """For a delayed acks=all produce: None while the high watermark has not reached
        `required_offset`; else the error code to answer (Kafka's
        checkEnoughReplicasReachOffset)."""
        if self.role != LEADER or self.leader_epoch != leader_epoch:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if self.high_watermark < required_offset:
            return None
        if len(self.isr) < self.log.config.min_insync_replicas:
            return ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return ErrorCode.NONE

    def maybe_increment_high_watermark(self) -> bool:
        """Leader: move the high watermark to the smallest log end offset of the
        (maximal) ISR. Returns True when it moved."""
        if self.role != LEADER:
            return False
        # KIP-966 (on by default in Kafka 4.1): the high watermark holds while the ISR
        # is below min.insync.replicas, so that every committed record is on at least
        # min.insync.replicas replicas, which the controller's ELR relies on. The
        # committed ISR, not the maximal one (Kafka's isUnderMinIsr reads
        # partitionState.isr): a pending expansion may yet be refused, and the
        # controller keeps its ELR from the ISR it committed; counting the joining
        # replica would commit records on a replica the controller cannot elect.
        if len(self.isr) < self.log.config.min_insync_replicas:
            return False
        new_hw = self.log.log_end_offset
        for r in self.maximal_isr:
            if r == self.node_id:
                continue
            f = self.followers.get(r)
            leo = f.log_end_offset if f is not None else -1
            if leo < new_hw:
                new_hw = leo
        if new_hw > self.high_watermark:
            self.high_watermark = new_hw
            self.log.on_high_watermark(new_hw)
            return True
        return False

    # -- leader: follower fetches -------------------------------------------------------
    def diverging_epoch(self, fetch_offset: int, last_fetched_epoch: int) -> tuple[int, int] | None:
        """(epoch, end offset) when a follower's log, whose last batch is of
        `last_fetched_epoch` and which ends at `fetch_offset`, has diverged from ours;
        None when it is a prefix of ours (Kafka: validateFetchOffsetAndMaybeGetDivergingEpoch)."""
        if last_fetched_epoch < 0:
            return None
        epoch, end_offset = self.log.end_offset_for_epoch(last_fetched_epoch)
        if epoch < 0 or end_offset < 0:
            # An epoch newer than any of ours (or no history at all): as Kafka, the
            # follower's position is out of range and it asks for our log end.
            raise OffsetOutOfRangeError(
                f"epoch {last_fetched_epoch} of a follower of {self.topic}-{self.index} is "
                f"unknown to its leader")
        if epoch < last_fetched_epoch or end_offset < fetch_offset:
            return epoch, end_offset
        return None

    def update_follower_fetch(self, replica_id: int, fetch_offset: int, now_ms: int,
                              log_start_offset: int = -1) -> bool:
        """Record a follower's fetch at `fetch_offset` (its log end offset) with its log
        start offset. Returns True when the high watermark or the follower's log start
        offset moved (what waiting produces and DeleteRecords depend on)."""
        f = self.followers.get(replica_id)
        if f is None or self.role != LEADER:
            return False
        start_moved = log_start_offset > f.log_start_offset
        if log_start_offset >= 0:
            f.log_start_offset = log_start_offset
        leader_leo = self.log.log_end_offset
        # Kafka's ReplicaState.updateFetchState: caught up when the fetch reaches the
        # leader's log end now, or its log end at the follower's previous fetch.
        if fetch_offset >= leader_leo:
            f.last_caught_up_ms = max(f.last_caught_up_ms, now_ms)
        elif f.last_fetch_leader_log_end >= 0 and fetch_offset >= f.last_fetch_leader_log_end:
            f.last_caught_up_ms = max(f.last_caught_up_ms, f.last_fetch_ms)
        f.log_end_offset = fetch_offset
        f.last_fetch_leader_log_end = leader_leo
        f.last_fetch_ms = now_ms
        return self.maybe_increment_high_watermark() or start_moved

    def isr_to_expand(self) -> tuple[int, ...] | None:
        """The ISR with a caught-up follower added, or None (Kafka's maybeExpandIsr).
        A leader still RECOVERING after an unclean election first proposes its ISR of
        one as recovered (KIP-704)."""
        if self.role != LEADER or self.pending_isr is not None:
            return None
        if self.leader_recovery_state == 1:
            return (self.node_id,)
        for r, f in self.followers.items():
            if r in self.isr or r not in self.replicas:
                continue
            if f.log_end_offset >= self.high_watermark and \
                    f.log_end_offset >= self.leader_epoch_start_offset >= 0:
                return self.isr + (r,)
        return None

    def isr_to_shrink(self, now_ms: int, lag_time_max_ms: int) -> tuple[int, ...] | None:
        """The ISR without the followers that have not caught up for
        `lag_time_max_ms`, or None (Kafka's maybeShrinkIsr / getOutOfSyncReplicas)."""
        if self.role != LEADER or self.pending_isr is not None:
            return None
        leo = self.log.log_end_offset
        out = [r for r in self.isr if r != self.node_id and r in self.followers
               and self.followers[r].log_end_offset != leo
               and now_ms - self.followers[r].last_caught_up_ms > lag_time_max_ms]
        if not out:
            return None
        return tuple(r for r in self.isr if r not in out)

    def isr_change_done(self, leader_epoch: int, partition_epoch: int, isr,
                        proposed=None) -> None:
        """The controller committed an ISR change (its AlterPartition answer).
        `proposed`: the ISR that request proposed. An answer for another proposal than
        the pending one is stale and ignored, as Kafka's handleAlterPartitionUpdate
        does: the metadata image may have brought the change first (clearing it), and a
        new proposal may be in flight whose pending state the high watermark relies on.
        None: an answer not tied to a proposal (tests)."""
        if proposed is not None and tuple(proposed) != self.pending_isr:
            return
        self.pending_isr = None
        if leader_epoch == self.leader_epoch and partition_epoch > self.partition_epoch:
            self.isr, self.partition_epoch = tuple(isr), partition_epoch
            self.maybe_increment_high_watermark()

    def isr_change_failed(self, proposed, error: int | None) -> bool:
        """The AlterPartition for `proposed` got `error`, or no answer at all (None).
        Returns True when it should be sent again. As Kafka's handleAlterPartitionError:
        only an answer that says the change was NOT applied (INELIGIBLE_REPLICA,
        OPERATION_NOT_ATTEMPTED) drops it; an out-of-date request (a stale partition or
        leader epoch, a new leader, an unknown partition...) stays pending until the
        metadata image brings the controller's state (apply_metadata), since a retry
        may be refused because its first attempt WAS applied; no answer, or any other
        error, is retried. Dropping it too early lets the high watermark stop waiting
        for a replica the controller may have put in the ISR."""
        if proposed is None or self.pending_isr != tuple(proposed):
            return False  # not the pending proposal any more
        if error in _ISR_CHANGE_NOT_APPLIED:
            self.pending_isr = None
            return False
        return error not in _ISR_CHANGE_AWAITS_METADATA

    # -- follower ---------------------------------------------------------------------
    def append_as_follower(self, records, leader_high_watermark: int, leader_log_start: int,
                           now_ms: int) -> None:
        if records is not None and len(records):
            try:
                self.log.append_as_follower(records, now_ms, leader_epoch=self.leader_epoch)
            except UnexpectedAppendOffsetError as e:
                # The leader's log start is inside the first batch it sends (DeleteRecords
                # at an offset inside a batch): restart our log at that batch when we hold
                # nothing the leader still has. KAFKA-6975: an empty log at its start
                # offset. Also (Kafka's follower fails the partition here) a log that ends
                # at or below the leader's log start: a divergence answer truncates to
                # the start of the leader's earliest epoch, which after DeleteRecords is
                # its log start, inside that batch, and our next fetch gets the batch.
                leo = self.log.log_end_offset
                if not e.first_offset < leo <= e.last_offset or \
                        not (leo == self.log.log_start_offset or leo <= leader_log_start):
                    raise
                self.truncate_fully_and_start_at(e.first_offset)
                self.log.append_as_follower(records, now_ms, leader_epoch=self.leader_epoch)
        self.update_follower_high_watermark(leader_high_watermark)
        if leader_log_start > self.log.log_start_offset:
            # A follower moves its log start with its leader's (DeleteRecords,
            # retention on the leader), as Kafka's maybeIncrementLogStartOffset.
            bound = min(leader_log_start, self.high_watermark)
            if bound > self.log.log_start_offset:
                self.log.delete_records(bound, self.high_watermark)

    def update_follower_high_watermark(self, leader_high_watermark: int) -> bool:
        new_hw = min(leader_high_watermark, self.log.log_end_offset)
        if new_hw > self.high_watermark:
            self.high_watermark = new_hw
            self.log.on_high_watermark(new_hw)
            return True
        return False

    def truncate_to(self, offset: int) -> None:
        """Follower: drop our log from `offset` on (divergence). The high watermark may
        have to follow (Kafka truncates it too: what a follower believed committed but
        its new leader lacks was never acknowledged to an acks=all producer)."""
        # Inside a batch (the leader's end falls in a batch we have and it lacks): the
        # whole batch goes and the next fetch brings back what the leader has.
        if offset >= self.log.log_end_offset:
            # Nothing to cut from the log, but an epoch that starts at its end and wrote
            # nothing (this broker led it for a moment, or replayed the metadata through
            # such a leadership at start-up) must go, or the next fetch names that epoch
            # again and the leader answers the same divergence forever.
            self.log.leader_epoch_cache.truncate_from_end(offset)
            return
        self.log.truncate_to(offset, allow_inside_batch=True)
        if self.high_watermark > self.log.log_end_offset:
            self.high_watermark = self.log.log_end_offset

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.log.truncate_fully_and_start_at(offset)
        self.high_watermark = offset

    # -- reads ------------------------------------------------------------------------
    def read(self, fetch_offset: int, max_bytes: int, *, from_follower: bool,
             min_one_batch: bool, read_committed: bool = False):
        """Whole batches from `fetch_offset`: a follower reads up to our log end, a
        consumer up to the high watermark, a read_committed consumer up to the LSO."""
        if from_follower:
            max_offset = self.log.log_end_offset
        elif read_committed:
            max_offset = self.last_stable_offset
        else:
            max_offset = self.high_watermark
        return self.log.read(fetch_offset, max_bytes, max_offset=max_offset,
                             min_one_batch=min_one_batch, view=True)
