"""The partition owner (broker/partition.py): roles, ISR upkeep and the high watermark,
on real log files and a manual clock. No sockets: follower fetches are calls."""
from __future__ import annotations

import pytest

from kafkette.broker.partition import FOLLOWER, LEADER, NotLeaderError, Partition
from kafkette.errors import ErrorCode, KafkaError
from kafkette.log import LogConfig, PartitionLog
from kafkette.protocol.records import build_batch

NOW = 1_700_000_000_000
LAG = 30_000


def batch(n: int = 1) -> bytearray:
    return bytearray(build_batch([(b"k%d" % i, b"v%d" % i, []) for i in range(n)],
                                 timestamp_ms=NOW))


def leader(tmp_path, replicas=(1, 2, 3), isr=None, min_isr=1, epoch=0) -> Partition:
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig(min_insync_replicas=min_isr))
    part = Partition("t", 0, plog, node_id=1)
    assert part.apply_metadata(1, epoch, 0, replicas, isr or replicas, NOW) == LEADER
    return part


def test_single_replica_high_watermark_follows_each_append(tmp_path):
    part = leader(tmp_path, replicas=(1,))
    res = part.append_as_leader(batch(3), 1, NOW)
    assert (res.base_offset, res.last_offset) == (0, 2)
    assert part.high_watermark == part.log_end_offset == 3


def test_high_watermark_is_the_smallest_isr_log_end_and_never_goes_back(tmp_path):
    part = leader(tmp_path)
    part.append_as_leader(batch(5), 1, NOW)
    assert part.high_watermark == 0  # followers' log ends unknown
    assert part.update_follower_fetch(2, 3, NOW) is False  # follower 3 still unknown
    assert part.update_follower_fetch(3, 5, NOW) is True
    assert part.high_watermark == 3
    assert part.update_follower_fetch(2, 5, NOW) is True and part.high_watermark == 5
    # A follower that reports less (it truncated) does not move the watermark back.
    part.update_follower_fetch(2, 4, NOW)
    assert part.high_watermark == 5


def test_followers_outside_the_isr_are_not_waited_for(tmp_path):
    part = leader(tmp_path, isr=(1, 2))
    part.append_as_leader(batch(2), 1, NOW)
    part.update_follower_fetch(2, 2, NOW)
    assert part.high_watermark == 2


def test_acks_all_refused_below_min_isr_before_appending(tmp_path):
    part = leader(tmp_path, isr=(1,), min_isr=2)
    with pytest.raises(KafkaError) as e:
        part.append_as_leader(batch(), -1, NOW)
    assert e.value.code == ErrorCode.NOT_ENOUGH_REPLICAS
    assert part.log_end_offset == 0
    part.append_as_leader(batch(), 1, NOW)  # acks=1 is not refused
    assert part.log_end_offset == 1


def test_replication_error_answers_for_delayed_produce(tmp_path):
    part = leader(tmp_path, min_isr=2)
    res = part.append_as_leader(batch(2), -1, NOW)
    required = res.last_offset + 1
    assert part.replication_error(required, 0) is None  # still waiting
    part.update_follower_fetch(2, 2, NOW)
    part.update_follower_fetch(3, 2, NOW)
    assert part.replication_error(required, 0) == ErrorCode.NONE
    # The ISR shrank below min.insync.replicas after the append.
    part.isr_change_done(0, 1, (1,))
    assert part.replication_error(required, 0) == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    # A leadership change fails the waiting produce.
    part.apply_metadata(2, 1, 2, (1, 2, 3), (2, 3), NOW)
    assert part.replication_error(required, 0) == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_isr_shrinks_after_lag_time_and_expands_when_caught_up(tmp_path):
    part = leader(tmp_path)
    part.append_as_leader(batch(4), 1, NOW)
    part.update_follower_fetch(2, 4, NOW)
    part.update_follower_fetch(3, 1, NOW)
    assert part.isr_to_shrink(NOW + LAG, LAG) is None  # not yet past the lag time
    assert part.isr_to_shrink(NOW + LAG + 1, LAG) == (1, 2)
    part.isr_change_done(0, 1, (1, 2))
    assert part.isr == (1, 2) and part.high_watermark == 4
    # Follower 3 comes back, below the high watermark: not yet in sync.
    part.update_follower_fetch(3, 3, NOW + LAG + 2)
    assert part.isr_to_expand() is None
    part.update_follower_fetch(3, 4, NOW + LAG + 3)
    assert part.isr_to_expand() == (1, 2, 3)


def test_caught_up_follower_is_not_shrunk_even_without_new_fetches(tmp_path):
    part = leader(tmp_path)
    part.append_as_leader(batch(2), 1, NOW)
    part.update_follower_fetch(2, 2, NOW)
    part.update_follower_fetch(3, 2, NOW)
    # Nothing appended since: both followers are at the log end, however old.
    assert part.isr_to_shrink(NOW + 10 * LAG, LAG) is None


def test_pending_expansion_counts_for_the_high_watermark(tmp_path):
    part = leader(tmp_path, isr=(1, 2))
    part.append_as_leader(batch(3), 1, NOW)
    part.update_follower_fetch(2, 3, NOW)
    part.update_follower_fetch(3, 3, NOW)
    part.pending_isr = part.isr_to_expand()
    assert part.maximal_isr == (1, 2, 3)
    part.append_as_leader(batch(1), 1, NOW)
    part.update_follower_fetch(2, 4, NOW)
    assert part.high_watermark == 3  # waits for 3, which is joining
    part.update_follower_fetch(3, 4, NOW)
    assert part.high_watermark == 4


def test_follower_refuses_produce_and_says_who_leads(tmp_path):
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    part = Partition("t", 0, plog, node_id=2)
    assert part.apply_metadata(1, 4, 0, (1, 2), (1, 2), NOW) == FOLLOWER
    with pytest.raises(NotLeaderError) as e:
        part.append_as_leader(batch(), 1, NOW)
    assert (e.value.leader, e.value.leader_epoch) == (1, 4)


def test_follower_high_watermark_is_capped_at_its_log_end(tmp_path):
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    part = Partition("t", 0, plog, node_id=2)
    part.apply_metadata(1, 0, 0, (1, 2), (1, 2), NOW)
    assert part.update_follower_high_watermark(10) is False  # empty log
    assert part.high_watermark == 0


def test_leader_epoch_fencing(tmp_path):
    part = leader(tmp_path, epoch=3)
    part.check_leader_epoch(-1)
    part.check_leader_epoch(3)
    with pytest.raises(KafkaError) as e:
        part.check_leader_epoch(2)
    assert e.value.code == ErrorCode.FENCED_LEADER_EPOCH
    with pytest.raises(KafkaError) as e:
        part.check_leader_epoch(4)
    assert e.value.code == ErrorCode.UNKNOWN_LEADER_EPOCH


def test_new_leader_epoch_resets_follower_state(tmp_path):
    part = leader(tmp_path)
    part.append_as_leader(batch(2), 1, NOW)
    part.update_follower_fetch(2, 2, NOW)
    part.update_follower_fetch(3, 2, NOW)
    assert part.high_watermark == 2
    part.apply_metadata(1, 1, 1, (1, 2, 3), (1, 2, 3), NOW)  # re-elected, new epoch
    assert part.leader_epoch_start_offset == 2
    assert all(f.log_end_offset == -1 for f in part.followers.values())
    part.append_as_leader(batch(1), 1, NOW)
    assert part.high_watermark == 2  # kept, and waits for the followers again


def test_high_watermark_holds_while_the_isr_is_below_min_isr(tmp_path):
    # KIP-966: with one in-sync replica and min.insync.replicas 2, an acks=1 write is
    # appended but not committed; it is once a second replica is back in the ISR.
    part = leader(tmp_path, isr=(1,), min_isr=2)
    part.append_as_leader(batch(3), 1, NOW)
    assert part.high_watermark == 0
    part.update_follower_fetch(2, 3, NOW)
    part.isr_change_done(0, 1, (1, 2))
    assert part.high_watermark == 3


def test_a_pending_isr_expansion_does_not_lift_the_min_isr_hold(tmp_path):
    # Found by the replication simulation (seed 72): ISR (1,) below min.insync.replicas
    # 2, follower 2 caught up and proposed back in. Until the controller commits that
    # expansion the high watermark must hold: the controller may refuse it, and then
    # the records above the old high watermark are on a replica that is neither in the
    # ISR nor in the ELR, so the leader's crash elects an ELR member without them.
    part = leader(tmp_path, isr=(1,), min_isr=2)
    part.append_as_leader(batch(3), 1, NOW)
    part.update_follower_fetch(2, 3, NOW)
    new_isr = part.isr_to_expand()
    assert new_isr == (1, 2)
    part.pending_isr = new_isr              # what maybe_update_isr does before sending it
    assert part.update_follower_fetch(2, 3, NOW) is False
    assert part.high_watermark == 0
    part.isr_change_done(0, 1, (1, 2))      # committed: now it counts
    assert part.high_watermark == 3


def test_unclean_leader_first_reports_its_recovery(tmp_path):
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    part = Partition("t", 0, plog, node_id=1)
    part.apply_metadata(1, 3, 0, (1, 2, 3), (1,), NOW, leader_recovery_state=1)
    part.update_follower_fetch(2, 0, NOW)
    assert part.isr_to_expand() == (1,)  # recovered, alone, before anyone joins
    part.apply_metadata(1, 3, 1, (1, 2, 3), (1,), NOW, leader_recovery_state=0)
    assert part.isr_to_expand() == (1, 2)


def test_follower_drops_an_empty_epoch_at_its_log_end_on_divergence(tmp_path):
    """A broker that led an epoch for a moment without writing (or replayed the metadata
    through such a leadership at start-up) has that epoch at its log end. Its new leader
    never had it and answers DivergingEpoch(0, end): the follower must drop the empty
    epoch, or it asks with it again and never makes progress."""
    from kafkette.broker.replica_fetcher import truncate_on_divergence
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    part = Partition("t", 0, plog, node_id=2)
    part.apply_metadata(2, 0, 0, (1, 2), (1, 2), NOW)      # led epoch 0, wrote 3 records
    part.append_as_leader(batch(3), 1, NOW)
    part.apply_metadata(2, 1, 1, (1, 2), (1, 2), NOW)      # led epoch 1, wrote nothing
    part.apply_metadata(1, 2, 2, (1, 2), (1, 2), NOW)      # now follows node 1
    assert plog.leader_epoch_cache.latest_epoch == 1
    truncate_on_divergence(part, 0, 3)                      # the leader: epoch 0 ends at 3
    assert plog.leader_epoch_cache.latest_epoch == 0
    assert part.log_end_offset == 3


def test_replayed_old_leadership_does_not_rewrite_the_epoch_history(tmp_path):
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    part = Partition("t", 0, plog, node_id=2)
    part.apply_metadata(2, 1, 0, (1, 2), (1, 2), NOW)
    part.append_as_leader(batch(2), 1, NOW)
    part.apply_metadata(2, 3, 1, (1, 2), (1, 2), NOW)
    part.append_as_leader(batch(2), 1, NOW)
    history = list(plog.leader_epoch_cache.entries())
    # Start-up replay of the metadata log walks through epoch 1 again.
    part.apply_metadata(2, 1, 0, (1, 2), (1, 2), NOW)
    assert list(plog.leader_epoch_cache.entries()) == history


def test_a_late_answer_for_an_earlier_isr_proposal_leaves_the_pending_one(tmp_path):
    # Found by the replication simulation (seed 1300 at 4000 steps): the shrink to
    # (1, 2) commits and the metadata image says so before the AlterPartition answer
    # arrives; the leader then proposes (1, 2, 3) for the caught-up follower 3. The
    # late answer for the shrink must not clear that pending expansion: the high
    # watermark would stop waiting for 3 and move past its log end, and the expansion
    # then commits a replica without the committed records into the ISR. Kafka ignores
    # an answer whose proposal is not the pending one (Partition.handleAlterPartitionUpdate).
    part = leader(tmp_path)
    part.append_as_leader(batch(2), 1, NOW)
    part.update_follower_fetch(2, 2, NOW)
    part.update_follower_fetch(3, 2, NOW)
    assert part.high_watermark == 2
    part.pending_isr = shrink = (1, 2)
    part.apply_metadata(1, 0, 1, (1, 2, 3), shrink, NOW)   # the image is first
    assert part.pending_isr is None
    assert part.isr_to_expand() == (1, 2, 3)
    part.pending_isr = expand = (1, 2, 3)
    part.isr_change_done(0, 1, shrink, proposed=shrink)   # the shrink's late answer
    assert part.pending_isr == expand
    part.append_as_leader(batch(3), 1, NOW)
    part.update_follower_fetch(2, 5, NOW)
    assert part.high_watermark == 2                       # still waits for 3
    part.isr_change_failed(shrink, ErrorCode.INELIGIBLE_REPLICA)  # nor a late refusal
    assert part.pending_isr == expand
    part.isr_change_done(0, 2, expand, proposed=expand)
    assert part.pending_isr is None and part.isr == expand
    part.update_follower_fetch(3, 5, NOW)
    assert part.high_watermark == 5


def _expanding(tmp_path):
    """Leader 1 with ISR (1, 2), follower 3 caught up and proposed back in; follower 2
    then fetches everything: the high watermark waits for 3 while the expansion is
    pending (3 is at offset 2, the log ends at 5)."""
    part = leader(tmp_path, isr=(1, 2))
    part.append_as_leader(batch(2), 1, NOW)
    part.update_follower_fetch(2, 2, NOW)
    part.update_follower_fetch(3, 2, NOW)
    part.pending_isr = expand = part.isr_to_expand()
    assert expand == (1, 2, 3)
    part.append_as_leader(batch(3), 1, NOW)
    part.update_follower_fetch(2, 5, NOW)
    assert part.high_watermark == 2
    return part, expand


def test_an_unanswered_isr_proposal_stays_pending_and_is_sent_again(tmp_path):
    # Found by the replication simulation (seed 5323 at 5000 steps): the AlterPartition
    # adding 3 timed out, the leader dropped it and moved its high watermark past 3's
    # log end, but the controller HAD committed it: 3 was in the ISR without the
    # committed records. No answer says nothing about what the controller did; Kafka's
    # AlterPartitionManager keeps the change pending and sends it again.
    part, expand = _expanding(tmp_path)
    assert part.isr_change_failed(expand, None) is True      # send it again
    assert part.pending_isr == expand
    part.update_follower_fetch(2, 5, NOW)
    assert part.high_watermark == 2                          # still waits for 3


@pytest.mark.parametrize("code", [ErrorCode.INVALID_UPDATE_VERSION, ErrorCode.FENCED_LEADER_EPOCH,
                                  ErrorCode.NEW_LEADER_ELECTED, ErrorCode.INVALID_REQUEST,
                                  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION])
def test_an_isr_proposal_refused_as_out_of_date_waits_for_the_metadata(tmp_path, code):
    # INVALID_UPDATE_VERSION may answer a retry of a request the controller already
    # applied: the state stays pending until the metadata brings the controller's, as
    # Kafka's handleAlterPartitionError ("awaiting the latest metadata").
    part, expand = _expanding(tmp_path)
    assert part.isr_change_failed(expand, code) is False     # not sent again either
    assert part.pending_isr == expand
    part.apply_metadata(1, 0, 1, (1, 2, 3), (1, 2, 3), NOW)  # it was applied after all
    assert part.pending_isr is None and part.isr == (1, 2, 3)
    assert part.high_watermark == 2


def test_a_newer_partition_epoch_in_the_metadata_ends_a_pending_isr_proposal(tmp_path):
    # The controller committed some other change (here: 2 fenced): our proposal, based
    # on the older partition epoch, can no longer be applied; propose again from the
    # controller's state (Kafka's makeLeader resets the state to the committed one).
    part, expand = _expanding(tmp_path)
    part.apply_metadata(1, 0, 1, (1, 2, 3), (1,), NOW)
    assert part.pending_isr is None and part.isr == (1,)


@pytest.mark.parametrize("code", [ErrorCode.INELIGIBLE_REPLICA, ErrorCode.OPERATION_NOT_ATTEMPTED])
def test_an_isr_proposal_the_controller_did_not_apply_is_dropped(tmp_path, code):
    # The controller says explicitly that it did not apply the change: back to the
    # committed ISR, and the high watermark over it (Kafka resets to lastCommittedState).
    part, expand = _expanding(tmp_path)
    assert part.isr_change_failed(expand, code) is False
    assert part.pending_isr is None
    part.update_follower_fetch(2, 5, NOW)
    assert part.high_watermark == 5


def test_a_follower_below_its_leaders_log_start_restarts_at_the_batch_holding_it(tmp_path):
    # Found by the replication simulation (seed 30118 at 5000 steps): DeleteRecords
    # moved the leader's log start to 6, inside its batch [4, 7]; the leader-epoch cache
    # then starts its earliest epoch at 6, so a diverged follower is told "your epoch 3
    # ends at 6" and truncates to 6. Its next fetch at 6 gets the batch from 4, below
    # its log end: the append was refused, and the follower never moved again (Kafka's
    # follower would fail the partition; it restarts only an empty log, KAFKA-6975).
    # Everything the follower holds is below the leader's log start, so it restarts its
    # log at that batch, as for an empty log.
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    part = Partition("t", 0, plog, node_id=2)
    part.apply_metadata(2, 3, 0, (1, 2), (1, 2), NOW)       # its own epoch-3 history
    part.append_as_leader(batch(3), 1, NOW)
    part.append_as_leader(batch(3), 1, NOW)
    part.apply_metadata(1, 7, 1, (1, 2), (1, 2), NOW)       # now follows 1
    assert part.log_end_offset == 6
    leaders = bytearray(build_batch([(b"k", b"v%d" % i, []) for i in range(4)],
                                    base_offset=4, timestamp_ms=NOW, partition_leader_epoch=7))
    part.append_as_follower(leaders, 6, 6, NOW)
    # Restarted at 4 with the leader's batch, then its log start follows the leader's.
    assert (part.log_start_offset, part.log_end_offset) == (6, 8)
    assert part.high_watermark == 6
    assert plog.read(6, 1 << 20) == bytes(leaders)
    assert plog.leader_epoch_cache.latest_epoch == 7


def test_a_follower_refuses_a_batch_below_its_log_end_it_holds_data_for(tmp_path):
    # Not restarted when the follower holds offsets the leader still has (at or above
    # the leader's log start): that is a real ordering error.
    plog = PartitionLog(str(tmp_path / "t-0"), LogConfig())
    part = Partition("t", 0, plog, node_id=2)
    part.apply_metadata(2, 3, 0, (1, 2), (1, 2), NOW)
    part.append_as_leader(batch(6), 1, NOW)
    part.apply_metadata(1, 7, 1, (1, 2), (1, 2), NOW)
    leaders = bytearray(build_batch([(b"k", b"v%d" % i, []) for i in range(4)],
                                    base_offset=4, timestamp_ms=NOW, partition_leader_epoch=7))
    from kafkette.log.partition_log import UnexpectedAppendOffsetError
    with pytest.raises(UnexpectedAppendOffsetError):
        part.append_as_follower(leaders, 6, 2, NOW)
    assert part.log_end_offset == 6


def test_lso_waits_for_the_marker_to_be_replicated(tmp_path):
    """Kafka's rule: a completed transaction stays unstable until its marker is below
    the high watermark, so read_committed readers of the leader never see as committed
    what a new leader (a follower without the marker) would still hold open."""
    part = leader(tmp_path, replicas=(1, 2), isr=(1, 2))
    txn = bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=NOW, producer_id=9,
                                producer_epoch=0, base_sequence=0, transactional=True))
    part.append_as_leader(txn, -1, NOW)                   # offset 0
    part.update_follower_fetch(2, 1, NOW)
    assert (part.high_watermark, part.last_stable_offset) == (1, 0)   # open
    part.append_marker(9, 0, 0, True, NOW)                # marker at offset 1
    assert part.log.first_unstable_offset() is None       # complete on this replica
    assert (part.high_watermark, part.last_stable_offset) == (1, 0)   # not replicated
    part.update_follower_fetch(2, 2, NOW)
    assert (part.high_watermark, part.last_stable_offset) == (2, 2)


def test_truncating_a_marker_away_reopens_its_transaction(tmp_path):
    part = leader(tmp_path, replicas=(1,))
    txn = bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=NOW, producer_id=9,
                                producer_epoch=0, base_sequence=0, transactional=True))
    part.append_as_leader(txn, 1, NOW)
    part.append_marker(9, 0, 0, False, NOW)
    assert part.last_stable_offset == 2
    part.log.truncate_to(1)
    assert part.log.first_unstable_offset(1) == 0
