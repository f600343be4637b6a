"""Transactions in the log layer (KIP-98): control batches, ongoing transactions and the
first unstable offset, the aborted-transaction index (.txnindex), restart, truncation,
retention and follower appends. Real files in tmp dirs, a fake clock."""
from __future__ import annotations

import os

import pytest

from kafkette.clock import ManualClock
from kafkette.errors import ErrorCode, InvalidRecordError
from kafkette.log import LogConfig, PartitionLog
from kafkette.log.producer_state import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)
from kafkette.log.retention import enforce_retention
from kafkette.log.txn_index import ENTRY_SIZE, AbortedTxn, decode_entries
from kafkette.protocol import records as rec
from kafkette.protocol.records import build_batch, decode_records, iter_batches

TS = 1_700_000_000_000


def open_log(path, clock=None, **cfg) -> PartitionLog:
    return PartitionLog(str(path / "t-0"), LogConfig(**cfg), clock=clock or ManualClock(TS))


class Producer:
    """A transactional producer writing to one partition: sequences kept per epoch."""

    def __init__(self, plog: PartitionLog, pid: int, epoch: int = 0):
        self.plog, self.pid, self.epoch, self.seq = plog, pid, epoch, 0

    def send(self, n: int = 1, *, transactional: bool = True, tag: str = "v") -> tuple[int, int]:
        b = bytearray(build_batch([(b"k", f"{tag}-{self.pid}-{self.seq + i}".encode(), [])
                                   for i in range(n)], timestamp_ms=TS, producer_id=self.pid,
                                  producer_epoch=self.epoch, base_sequence=self.seq,
                                  transactional=transactional))
        r = self.plog.append(b, 0, TS)
        self.seq += n
        return r.base_offset, r.last_offset

    def end(self, commit: bool, coordinator_epoch: int = 0, epoch: int | None = None) -> int:
        r = self.plog.append_marker(self.pid, self.epoch if epoch is None else epoch,
                                    coordinator_epoch, commit, 0, TS)
        return r.base_offset

    def commit(self, **kw) -> int:
        return self.end(True, **kw)

    def abort(self, **kw) -> int:
        return self.end(False, **kw)


def txn_index_files(plog: PartitionLog) -> list[str]:
    return sorted(n for n in os.listdir(plog.dir) if n.endswith(".txnindex"))


def all_entries(plog: PartitionLog) -> list[AbortedTxn]:
    return [e for seg in plog.segments for e in seg.txn_index.entries()]


def crash(plog: PartitionLog) -> None:
    """A process death: fds closed, nothing flushed, no clean-shutdown marker."""
    for seg in plog.segments:
        os.close(seg.fd)
        seg._closed = True
    plog._closed = True


# --------------------------------------------------------------------------- control batches

@pytest.mark.parametrize("commit", [True, False])
def test_control_batch_round_trip(commit):
    data = rec.build_control_batch(42, 7, commit, 13, TS)
    [(pos, h)] = list(iter_batches(data))  # CRC and framing valid
    assert h.is_control and h.is_transactional and h.records_count == 1
    assert (h.base_offset, h.producer_id, h.producer_epoch, h.base_sequence) == (0, 42, 7, -1)
    assert (h.base_timestamp, h.max_timestamp) == (TS, TS)
    [r] = decode_records(data)
    marker_type = rec.COMMIT_MARKER if commit else rec.ABORT_MARKER
    assert r.key == b"\x00\x00" + marker_type.to_bytes(2, "big")  # version 0, type
    assert r.value == b"\x00\x00" + (13).to_bytes(4, "big")  # version 0, coordinator epoch
    assert rec.control_record_type(data, pos, h) == marker_type
    assert rec.read_end_txn_marker(data, pos, h) == (marker_type, 13)
    assert (rec.ABORT_MARKER, rec.COMMIT_MARKER) == (0, 1)


def test_control_record_type_of_other_control_batches():
    leader_change = build_batch([(b"\x00\x00\x00\x02", b"whatever", [])], timestamp_ms=TS,
                                control=True)
    assert rec.control_record_type(leader_change, 0, rec.parse_header(leader_change)) == -1
    short_key = build_batch([(b"\x00", b"\x00\x00\x00\x00\x00\x00", [])], timestamp_ms=TS, control=True)
    assert rec.control_record_type(short_key, 0, rec.parse_header(short_key)) == -1
    emptied = rec.empty_batch_like(rec.parse_header(rec.build_control_batch(1, 0, True, 0, TS)))
    assert rec.control_record_type(emptied, 0, rec.parse_header(emptied)) == -1


# --------------------------------------------------------------------------- ongoing / completed

def test_commit_ends_the_transaction_without_an_index_entry(tmp_path):
    plog = open_log(tmp_path)
    p = Producer(plog, 1)
    assert plog.first_unstable_offset() is None
    assert p.send(2) == (0, 1)
    assert plog.first_unstable_offset() == 0
    entry = plog.producer_state.producers[1]
    assert entry.current_txn_first_offset == 0
    p.send(1)
    assert plog.first_unstable_offset() == 0  # the transaction's FIRST offset
    assert p.commit(coordinator_epoch=4) == 3
    assert plog.first_unstable_offset() is None
    assert entry.current_txn_first_offset is None and entry.coordinator_epoch == 4
    assert txn_index_files(plog) == [] and plog.collect_aborted_transactions(0, 100) == []
    plog.close()


def test_abort_writes_an_index_entry(tmp_path):
    plog = open_log(tmp_path)
    p = Producer(plog, 1)
    p.send(2)
    assert p.abort() == 2
    assert plog.first_unstable_offset() is None
    assert all_entries(plog) == [AbortedTxn(1, 0, 2, 3)]  # LSO: the marker + 1
    assert txn_index_files(plog) == ["%020d.txnindex" % 0]
    with open(os.path.join(plog.dir, "%020d.txnindex" % 0), "rb") as f:
        raw = f.read()
    assert len(raw) == ENTRY_SIZE == 34
    assert raw == (b"\x00\x00" + (1).to_bytes(8, "big") + (0).to_bytes(8, "big")
                   + (2).to_bytes(8, "big") + (3).to_bytes(8, "big"))
    assert plog.collect_aborted_transactions(0, 3) == [(1, 0)]
    plog.close()


def test_first_unstable_offset_with_interleaved_producers(tmp_path):
    plog = open_log(tmp_path)
    a, b, c = Producer(plog, 1), Producer(plog, 2), Producer(plog, 3)
    a.send()             # 0: a starts
    b.send()             # 1: b starts
    c.send(transactional=False)  # 2: plain idempotent write
    a.send()             # 3
    assert plog.first_unstable_offset() == 0
    assert a.abort() == 4
    # b is still open: the aborted transaction's last stable offset is b's first offset
    assert all_entries(plog) == [AbortedTxn(1, 0, 4, 1)]
    assert plog.first_unstable_offset() == 1
    a.send()             # 5: a's next transaction
    assert plog.first_unstable_offset() == 1
    assert b.commit() == 6
    assert plog.first_unstable_offset() == 5
    assert b.send() == (7, 7)
    assert a.abort() == 8
    assert all_entries(plog)[-1] == AbortedTxn(1, 5, 8, 7)
    assert plog.first_unstable_offset() == 7
    assert plog.producer_state.ongoing_transactions() == [(7, 2)]
    b.abort()
    assert plog.first_unstable_offset() is None
    plog.close()


def test_non_transactional_write_during_a_transaction_is_invalid_txn_state(tmp_path):
    plog = open_log(tmp_path)
    p = Producer(plog, 1)
    p.send()
    with pytest.raises(InvalidTxnStateError) as e:
        p.send(transactional=False)
    assert e.value.code == ErrorCode.INVALID_TXN_STATE
    assert "Expected transactional write from producer 1" in str(e.value)
    assert plog.log_end_offset == 1
    p.seq -= 1
    p.commit()
    p.send(transactional=False)  # fine once the transaction is over
    plog.close()


def test_newer_epoch_continues_the_ongoing_transaction(tmp_path):
    # Kafka 3.9's appendDataBatch: only older epochs are refused; the ongoing
    # transaction keeps its first offset.
    plog = open_log(tmp_path)
    p = Producer(plog, 1)
    p.send(2)
    p.epoch, p.seq = 1, 0
    p.send()
    assert plog.first_unstable_offset() == 0
    assert plog.producer_state.producers[1].producer_epoch == 1
    assert p.abort() == 3
    assert all_entries(plog) == [AbortedTxn(1, 0, 3, 4)]
    plog.close()


def test_marker_epoch_and_coordinator_epoch_checks(tmp_path):
    plog = open_log(tmp_path)
    p = Producer(plog, 1, epoch=3)
    p.send()
    with pytest.raises(InvalidProducerEpochError) as e:
        p.commit(epoch=2)
    assert e.value.code == ErrorCode.INVALID_PRODUCER_EPOCH  # Kafka >= 2.7, not PRODUCER_FENCED
    p.commit(coordinator_epoch=5)
    p.send()
    with pytest.raises(TransactionCoordinatorFencedError) as e:
        p.abort(coordinator_epoch=4)
    assert e.value.code == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert plog.first_unstable_offset() == 2  # nothing changed
    assert p.abort(coordinator_epoch=6) == 3
    plog.close()


def test_marker_epoch_bump_forgets_batches(tmp_path):
    plog = open_log(tmp_path)
    p = Producer(plog, 1)
    p.send()
    p.commit(epoch=1)  # the coordinator bumped the epoch (KIP-890 writes markers so)
    entry = plog.producer_state.producers[1]
    assert entry.producer_epoch == 1 and entry.batches == []
    with pytest.raises(InvalidProducerEpochError):
        p.send()  # epoch 0 is fenced now
    plog.close()


def test_marker_without_a_transaction_is_written(tmp_path):
    plog = open_log(tmp_path)
    assert plog.append_marker(9, 0, 0, False, 0, TS).base_offset == 0
    assert plog.log_end_offset == 1 and plog.first_unstable_offset() is None
    assert all_entries(plog) == []  # nothing to index: no transaction here
    assert plog.producer_state.producers[9].producer_epoch == 0
    plog.close()


def test_coordinator_origin_skips_sequence_checks_but_tracks_the_transaction(tmp_path):
    # The group coordinator's transactional offset commits: base sequence -1.
    plog = open_log(tmp_path)
    commit = bytearray(build_batch([(b"group-key", b"offset", [])], timestamp_ms=TS, producer_id=5,
                                   producer_epoch=2, base_sequence=-1, transactional=True))
    with pytest.raises(InvalidRecordError):
        plog.append(bytearray(commit), 0, TS)  # a client must send a sequence
    assert plog.append(bytearray(commit), 0, TS, origin="coordinator").base_offset == 0
    assert plog.append(bytearray(commit), 0, TS, origin="coordinator").base_offset == 1  # no dedup
    assert plog.first_unstable_offset() == 0
    assert plog.producer_state.producers[5].last_seq == -1
    older = bytearray(build_batch([(b"g", b"o", [])], timestamp_ms=TS, producer_id=5, producer_epoch=1,
                                  base_sequence=-1, transactional=True))
    with pytest.raises(InvalidProducerEpochError):
        plog.append(older, 0, TS, origin="coordinator")  # the epoch is still checked
    plog.append_marker(5, 2, 0, True, 0, TS)
    assert plog.first_unstable_offset() is None
    plog.close()


def test_transactional_batch_needs_a_producer_id(tmp_path):
    plog = open_log(tmp_path)
    with pytest.raises(InvalidRecordError):
        plog.append(bytearray(build_batch([(b"k", b"v", [])], timestamp_ms=TS, transactional=True)), 0, TS)
    assert plog.log_end_offset == 0
    plog.close()


def test_sequence_checks_still_apply_to_transactional_batches(tmp_path):
    plog = open_log(tmp_path)
    p = Producer(plog, 1)
    p.send()
    p.seq += 1
    with pytest.raises(OutOfOrderSequenceError):
        p.send()
    plog.close()


def test_producer_entries(tmp_path):
    plog = open_log(tmp_path)
    a, b = Producer(plog, 1, epoch=2), Producer(plog, 2)
    a.send(3)
    b.send(transactional=False)
    a.commit(coordinator_epoch=7)
    a.send()
    rows = {e.producer_id: (e.producer_epoch, e.last_seq, e.last_timestamp, e.coordinator_epoch,
                            e.current_txn_first_offset) for e in plog.producer_entries()}
    assert rows == {1: (2, 3, TS, 7, 5), 2: (0, 0, TS, -1, None)}
    plog.close()


def test_expiry_keeps_producers_with_an_ongoing_transaction(tmp_path):
    plog = open_log(tmp_path)
    Producer(plog, 1).send()
    Producer(plog, 2).send(transactional=False)
    assert plog.remove_expired_producers(TS + 10 ** 10, 1000) == 1
    assert set(plog.producer_state.producers) == {1}
    assert plog.first_unstable_offset() == 0
    plog.close()


# --------------------------------------------------------------------------- the index over segments

def build_aborts_over_segments(tmp_path):
    """Three producers and small segments: aborts and commits over several segments."""
    plog = open_log(tmp_path, segment_bytes=400)
    a, b, c = Producer(plog, 1), Producer(plog, 2), Producer(plog, 3)
    a.send()                 # 0
    b.send()                 # 1
    a.abort()                # 2: (1, 0, 2, lso 1)
    for _ in range(4):
        c.send(transactional=False)  # 3..6
    b.send()                 # 7
    b.abort()                # 8: (2, 1, 8, lso 9)
    a.send()                 # 9
    for _ in range(4):
        c.send(transactional=False)  # 10..13
    a.commit()               # 14
    c.send()                 # 15
    c.abort()                # 16: (3, 15, 16, lso 17)
    return plog


def test_collect_aborted_transactions_over_several_segments(tmp_path):
    plog = build_aborts_over_segments(tmp_path)
    assert len(plog.segments) >= 3
    entries = all_entries(plog)
    assert entries == [AbortedTxn(1, 0, 2, 1), AbortedTxn(2, 1, 8, 9), AbortedTxn(3, 15, 16, 17)]
    # each entry is in the index of the segment holding its marker
    for e in entries:
        seg = plog._segment_for(e.last_offset)
        assert e in seg.txn_index.entries()
    with_index = {plog._segment_for(e.last_offset).base_offset for e in entries}
    assert txn_index_files(plog) == sorted("%020d.txnindex" % b for b in with_index)
    assert plog.collect_aborted_transactions(0, 17) == [(1, 0), (2, 1), (3, 15)]
    assert plog.collect_aborted_transactions(0, 1) == [(1, 0)]
    assert plog.collect_aborted_transactions(3, 9) == [(2, 1)]  # b's txn spans 1..8
    assert plog.collect_aborted_transactions(9, 15) == []
    assert plog.collect_aborted_transactions(9, 16) == [(3, 15)]
    assert plog.collect_aborted_transactions(17, 17) == []
    plog.close()


def test_index_is_flushed_and_survives_a_clean_restart(tmp_path):
    plog = build_aborts_over_segments(tmp_path)
    Producer(plog, 4).send()  # ongoing at 17
    before = all_entries(plog)
    plog.close()
    plog = open_log(tmp_path, segment_bytes=400)
    assert all_entries(plog) == before
    assert plog.first_unstable_offset() == 17
    assert plog.producer_state.producers[4].current_txn_first_offset == 17
    assert plog.collect_aborted_transactions(0, 18) == [(1, 0), (2, 1), (3, 15)]
    plog.append_marker(4, 0, 0, False, 0, TS)
    assert all_entries(plog)[-1] == AbortedTxn(4, 17, 18, 19)
    plog.close()


def test_unclean_restart_rebuilds_the_index_and_the_ongoing_transactions(tmp_path):
    plog = build_aborts_over_segments(tmp_path)
    Producer(plog, 4).send()  # 17, ongoing
    before = all_entries(plog)
    d = plog.dir
    crash(plog)
    for n in os.listdir(d):  # lose the indexes and every producer snapshot
        if n.endswith((".txnindex", ".snapshot")):
            os.unlink(os.path.join(d, n))
    plog = open_log(tmp_path, segment_bytes=400)
    assert all_entries(plog) == before
    assert plog.first_unstable_offset() == 17
    plog.close()


def test_unclean_restart_with_a_torn_tail_drops_the_lost_abort(tmp_path):
    plog = open_log(tmp_path, segment_bytes=400)
    a, b = Producer(plog, 1), Producer(plog, 2)
    a.send()
    a.abort()            # 1
    plog.flush()         # recovery point 2
    b.send()             # 2
    b.abort()            # 3: lost below
    tail = plog.segments[-1]
    assert [e.last_offset for e in all_entries(plog)] == [1, 3]
    d, log_path, size = plog.dir, tail.log_path, tail.size
    crash(plog)
    os.truncate(log_path, size - 10)  # the marker at 3 is torn
    plog = open_log(tmp_path, segment_bytes=400)
    assert plog.log_end_offset == 3
    assert all_entries(plog) == [AbortedTxn(1, 0, 1, 2)]
    assert plog.first_unstable_offset() == 2  # b's transaction is open again
    plog.close()


def test_torn_txnindex_is_rebuilt_on_a_clean_restart(tmp_path):
    plog = build_aborts_over_segments(tmp_path)
    before = all_entries(plog)
    plog.close()
    name = os.path.join(plog.dir, txn_index_files(plog)[0])
    with open(name, "ab") as f:
        f.write(b"\x00" * 10)  # half an entry
    plog = open_log(tmp_path, segment_bytes=400)
    assert all_entries(plog) == before
    with open(name, "rb") as f:
        assert len(f.read()) % ENTRY_SIZE == 0  # rewritten whole
    plog.close()


def test_truncate_below_a_marker_reopens_the_transaction(tmp_path):
    plog = open_log(tmp_path)
    a, b = Producer(plog, 1), Producer(plog, 2)
    a.send(2)            # 0-1
    b.send()             # 2
    assert a.abort() == 3
    assert b.commit() == 4
    assert plog.first_unstable_offset() is None
    plog.truncate_to(3)  # the follower's history diverged at the abort marker
    assert all_entries(plog) == [] and txn_index_files(plog) == []
    assert plog.first_unstable_offset() == 0
    assert plog.producer_state.ongoing_transactions() == [(0, 1), (2, 2)]
    # the leader's marker comes again through replication
    plog.append_as_follower(_stamped_marker(1, 0, False, 3), TS)
    assert all_entries(plog) == [AbortedTxn(1, 0, 3, 2)]
    assert plog.first_unstable_offset() == 2
    plog.close()


def _stamped_marker(pid: int, epoch: int, commit: bool, offset: int) -> bytes:
    b = bytearray(rec.build_control_batch(pid, epoch, commit, 0, TS))
    rec.stamp_batch(b, 0, offset, 0)
    return bytes(b)


def test_truncate_keeps_entries_below_the_offset(tmp_path):
    plog = open_log(tmp_path)
    a = Producer(plog, 1)
    a.send()
    a.abort()            # 1
    a.send()             # 2
    a.abort()            # 3
    plog.truncate_to(3)
    assert all_entries(plog) == [AbortedTxn(1, 0, 1, 2)]
    assert plog.first_unstable_offset() == 2
    plog.close()
    plog = open_log(tmp_path)
    assert all_entries(plog) == [AbortedTxn(1, 0, 1, 2)]
    plog.close()


def test_retention_deleting_a_segment_deletes_its_txnindex(tmp_path):
    clock = ManualClock(TS)
    plog = open_log(tmp_path, clock=clock, segment_bytes=400, retention_ms=1000)
    a = Producer(plog, 1)
    a.send()
    a.abort()
    plog.roll(TS)
    assert txn_index_files(plog) == ["%020d.txnindex" % 0]
    Producer(plog, 2).send(transactional=False)
    assert enforce_retention(plog, TS + 10_000) >= 1
    assert txn_index_files(plog) == []
    assert not [n for n in os.listdir(plog.dir) if n.endswith(".deleted")]
    plog.close()


def test_delete_records_deletes_the_txnindex_with_its_segment(tmp_path):
    plog = open_log(tmp_path, segment_bytes=400)
    a = Producer(plog, 1)
    a.send()
    a.abort()
    plog.roll(TS)
    Producer(plog, 2).send(transactional=False)
    plog.delete_records(plog.log_end_offset)
    assert txn_index_files(plog) == []
    plog.close()


def test_follower_append_of_control_batches(tmp_path):
    leader = open_log(tmp_path / "leader", segment_bytes=400)
    a, b = Producer(leader, 1), Producer(leader, 2)
    a.send()
    b.send()
    a.abort()
    b.commit()
    a.send()
    data = leader.read(0, 1 << 20)
    follower = open_log(tmp_path / "follower", segment_bytes=400)
    follower.append_as_follower(data, TS)
    assert all_entries(follower) == all_entries(leader) == [AbortedTxn(1, 0, 2, 1)]
    assert follower.first_unstable_offset() == leader.first_unstable_offset() == 4
    assert follower.collect_aborted_transactions(0, 5) == [(1, 0)]
    assert follower.producer_state.producers[1].current_txn_first_offset == 4
    leader.close()
    follower.close()


def test_non_transactional_append_reports_no_transactions(tmp_path):
    # The idempotent hot path: apply() has nothing to index.
    plog = open_log(tmp_path)
    pending = {}
    h = rec.parse_header(build_batch([(b"k", b"v", [])], timestamp_ms=TS, producer_id=1,
                                     producer_epoch=0, base_sequence=0))
    assert plog.producer_state.check(h, 0, TS, pending) is None
    assert plog.producer_state.apply(pending) is None
    plog.close()


def test_unclean_restart_rebuilds_from_the_snapshot_at_the_recovery_segment(tmp_path):
    # A transaction that started in a segment since deleted is only known from the
    # producer snapshot at the start of the segment recovery re-reads, which the
    # snapshot pruning keeps for that reason.
    plog = open_log(tmp_path, segment_bytes=400)
    a, c = Producer(plog, 1), Producer(plog, 3)
    a.send()                           # 0: a's transaction starts
    plog.roll(TS)
    base = plog.log_end_offset         # 1
    c.send(transactional=False)
    plog.flush()                       # recovery point 2, in the segment at 1
    for _ in range(12):
        c.send(transactional=False)    # several rolls: newer snapshots
    assert len(plog.segments) >= 4
    marker = a.abort()
    assert base in plog.producer_state.snapshot_offsets()
    plog.delete_records(base)          # the segment holding offset 0 goes
    assert plog.segment_base_offsets()[0] == base
    before = all_entries(plog)
    assert before == [AbortedTxn(1, 0, marker, marker + 1)]
    d = plog.dir
    crash(plog)
    for n in os.listdir(d):
        if n.endswith(".txnindex"):
            os.unlink(os.path.join(d, n))
    plog = open_log(tmp_path, segment_bytes=400)
    assert all_entries(plog) == before
    assert plog.collect_aborted_transactions(base, marker + 1) == [(1, 0)]
    plog.close()


# --------------------------------------------------------------------------- compaction

def compacted_log(tmp_path, **cfg) -> PartitionLog:
    cfg.setdefault("segment_bytes", 10_000)
    return open_log(tmp_path, cleanup_policy=("compact",), min_cleanable_dirty_ratio=0.0,
                    delete_retention_ms=1000, **cfg)


def put(plog: PartitionLog, key: bytes, value: bytes) -> int:
    return plog.append(bytearray(build_batch([(key, value, [])], timestamp_ms=TS)), 0, TS).base_offset


def rows(plog: PartitionLog) -> list[tuple[int, bytes, bytes]]:
    """The data records (control batches left out)."""
    data = plog.read(plog.log_start_offset, 1 << 30)
    return [(r.offset, r.key, r.value) for pos, h in iter_batches(data) if not h.is_control
            for r in decode_records(data[pos:pos + h.size])]


def control_offsets(plog: PartitionLog) -> list[int]:
    return [h.base_offset for _, h in iter_batches(plog.read(plog.log_start_offset, 1 << 30)) if h.is_control]


def test_cleaner_drops_aborted_records_and_later_the_marker(tmp_path):
    from kafkette.log.cleaner import clean_log

    plog = compacted_log(tmp_path)
    put(plog, b"k", b"committed")          # 0
    p = Producer(plog, 1)
    p.send()                                # 1: k, aborted below
    assert p.abort() == 2
    p.send(transactional=False, tag="x")   # 3: the producer goes on (key k too)
    put(plog, b"x", b"1")                   # 4
    plog.roll(TS)
    put(plog, b"y", b"1")                   # 5, active
    assert clean_log(plog, TS) is not None
    # The aborted record is gone, and its key did not hide the committed value... which
    # the producer's later plain write at 3 then replaced.
    assert [(o, k) for o, k, _ in rows(plog)] == [(3, b"k"), (4, b"x"), (5, b"y")]
    assert control_offsets(plog) == [2]  # kept: its transaction had a batch in this pass
    assert plog.collect_aborted_transactions(0, 6) == [(1, 1)]
    assert plog.segments[0].txn_index.entries() == [AbortedTxn(1, 1, 2, 3)]
    assert txn_index_files(plog) == ["%020d.txnindex" % 0]

    put(plog, b"y", b"2")                   # 6
    plog.roll(TS)
    put(plog, b"z", b"1")                   # 7, active
    assert clean_log(plog, TS) is not None
    [marker] = [h for _, h in iter_batches(plog.read(0, 1 << 30)) if h.is_control]
    assert marker.has_delete_horizon and marker.base_timestamp == TS + 1000  # KIP-534
    assert rec.control_record_type(plog.read(2, 1 << 10), 0, marker) == rec.ABORT_MARKER
    assert plog.collect_aborted_transactions(0, 8) == []  # nothing left to abort
    assert txn_index_files(plog) == []

    put(plog, b"z", b"2")                   # 8
    plog.roll(TS)
    put(plog, b"w", b"1")                   # 9
    assert clean_log(plog, TS + 999) is not None
    assert control_offsets(plog) == [2]     # not before the horizon
    put(plog, b"w", b"2")
    plog.roll(TS)
    put(plog, b"q", b"1")
    assert clean_log(plog, TS + 1000) is not None
    assert control_offsets(plog) == []
    plog.close()
    plog = compacted_log(tmp_path)
    assert plog.first_unstable_offset() is None
    plog.close()


def test_cleaner_keeps_the_marker_while_an_emptied_batch_of_its_transaction_stays(tmp_path):
    # Producer 1's aborted batch is its last data batch: kept as an empty header (its
    # sequence), so the marker must stay too, or a replay would reopen the transaction.
    from kafkette.log.cleaner import clean_log

    plog = compacted_log(tmp_path)
    p = Producer(plog, 1)
    p.send()                                # 0
    p.abort()                               # 1
    for i in range(3):
        put(plog, b"x", b"%d" % i)          # 2..4
        plog.roll(TS)
        put(plog, b"y", b"%d" % i)
        assert clean_log(plog, TS + 10_000 * (i + 1)) is not None
    hs = [h for _, h in iter_batches(plog.read(0, 1 << 30))]
    assert (hs[0].base_offset, hs[0].records_count) == (0, 0)
    assert hs[1].is_control and hs[1].base_offset == 1
    plog.close()
    plog = compacted_log(tmp_path)
    assert plog.first_unstable_offset() is None
    assert plog.collect_aborted_transactions(0, 100) == [(1, 0)]
    plog.close()


def test_cleaner_never_cleans_at_or_after_the_first_unstable_offset(tmp_path):
    from kafkette.log.cleaner import clean_log, plan_cleaning

    plog = compacted_log(tmp_path, segment_bytes=300)
    p = Producer(plog, 1)
    p.send()                                # 0: an open transaction
    for i in range(6):
        put(plog, b"k", b"%d" % i)          # duplicates over several segments
    plog.roll(TS)
    put(plog, b"z", b"1")
    assert len(plog.segments) > 2
    assert plan_cleaning(plog, TS) is None
    assert clean_log(plog, TS) is None
    p.commit()
    put(plog, b"z", b"2")
    plog.roll(TS)
    put(plog, b"z", b"3")
    assert clean_log(plog, TS) is not None
    assert [v for _o, k, v in rows(plog) if k == b"k"] == [b"5"]
    plog.close()


def test_cleaned_txnindex_survives_a_restart_and_an_interrupted_swap(tmp_path, monkeypatch):
    from kafkette.log import cleaner

    plog = compacted_log(tmp_path)
    p = Producer(plog, 1)
    p.send()
    p.abort()
    p.send(transactional=False, tag="x")
    plog.roll(TS)
    put(plog, b"y", b"1")
    plog.flush()  # the cleaned segment is below the recovery point: trusted on open
    real = cleaner.complete_swaps

    class Crash(Exception):
        pass

    def crashing(dir_path):
        assert any(n.endswith(".txnindex.swap") for n in os.listdir(dir_path))
        raise Crash()

    monkeypatch.setattr(cleaner, "complete_swaps", crashing)
    with pytest.raises(Crash):
        cleaner.clean_log(plog, TS)
    crash(plog)
    monkeypatch.setattr(cleaner, "complete_swaps", real)
    plog = compacted_log(tmp_path)  # finishes the committed swap
    assert [(o, k) for o, k, _ in rows(plog)] == [(2, b"k"), (3, b"y")]
    assert plog.segments[0].txn_index.entries() == [AbortedTxn(1, 0, 1, 2)]
    assert not [n for n in os.listdir(plog.dir) if n.endswith((".swap", ".cleaned"))]
    plog.close()
    plog = compacted_log(tmp_path)
    assert plog.collect_aborted_transactions(0, 4) == [(1, 0)]
    plog.close()
