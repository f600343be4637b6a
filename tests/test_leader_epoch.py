"""Leader-epoch cache (kafkette.log.leader_epoch, Kafka's LeaderEpochFileCache, KIP-101 /
KIP-279): assign rules, every end_offset_for case, truncation from both ends, the
`leader-epoch-checkpoint` file (round trip, torn or garbled files), and how PartitionLog
keeps it: leader appends, rebuild from batch headers, restart after a lost tail,
truncation and a moving log start offset."""
from __future__ import annotations

import os

import pytest
from structlog.testing import capture_logs

from kafkette.clock import ManualClock
from kafkette.log import LogConfig, PartitionLog
from kafkette.log.leader_epoch import (
    CHECKPOINT_FILE,
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    CorruptCheckpointError,
    EpochEntry,
    LeaderEpochCache,
    decode_checkpoint,
    encode_checkpoint,
)
from kafkette.protocol import records as rec

TS = 1_700_000_000_000
UNDEFINED = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


def cache_with(tmp_path, *entries) -> LeaderEpochCache:
    cache = LeaderEpochCache(str(tmp_path), "t-0")
    for epoch, start in entries:
        assert cache.assign(epoch, start)
    return cache


def pairs(cache) -> list[tuple[int, int]]:
    return [tuple(e) for e in cache.entries()]


def checkpoint_text(d) -> str:
    with open(os.path.join(d, CHECKPOINT_FILE)) as f:
        return f.read()


def batch(n: int = 1, tag: int = 0) -> bytearray:
    return bytearray(rec.build_batch([(b"k", b"v%d-%d" % (tag, i), []) for i in range(n)], timestamp_ms=TS))


def open_log(path, **cfg) -> PartitionLog:
    return PartitionLog(str(path), LogConfig(**cfg), clock=ManualClock(TS))


def crash(plog: PartitionLog) -> None:
    """A process death: fds closed, nothing flushed, no clean-shutdown marker."""
    for seg in plog.segments:
        os.close(seg.fd)
        seg._closed = True
    plog._closed = True


# --- assign ------------------------------------------------------------------------------

def test_empty_cache(tmp_path):
    cache = LeaderEpochCache(str(tmp_path), "t-0")
    assert cache.latest_epoch == UNDEFINED_EPOCH == -1
    assert cache.latest_entry is None and cache.earliest_entry is None
    assert cache.entries() == [] and len(cache) == 0
    assert cache.end_offset_for(0, 10) == UNDEFINED
    assert cache.end_offset_for(UNDEFINED_EPOCH, 10) == UNDEFINED
    assert cache.epoch_for_offset(5) is None


def test_only_a_new_epoch_adds_an_entry(tmp_path):
    cache = cache_with(tmp_path, (1, 0))
    assert not cache.assign(1, 5)  # same epoch, later offset: nothing changes
    assert not cache.assign(1, 0)
    assert cache.assign(2, 7)
    assert pairs(cache) == [(1, 0), (2, 7)]
    assert cache.latest_epoch == 2
    assert cache.latest_entry == EpochEntry(2, 7) and cache.earliest_entry == EpochEntry(1, 0)


def test_smaller_start_offset_for_the_latest_epoch_moves_it_down(tmp_path):
    # Kafka's isUpdateNeeded: a smaller start offset for the latest epoch is an update;
    # every entry starting at or after it goes first.
    cache = cache_with(tmp_path, (1, 0), (2, 10))
    assert cache.assign(2, 5)
    assert pairs(cache) == [(1, 0), (2, 5)]
    assert cache.assign(2, 0)
    assert pairs(cache) == [(2, 0)]


def test_epoch_below_the_latest_drops_the_later_epochs_with_a_warning(tmp_path):
    cache = cache_with(tmp_path, (1, 0), (3, 10), (5, 20))
    with capture_logs() as logs:
        assert cache.assign(4, 25)
    assert pairs(cache) == [(1, 0), (3, 10), (4, 25)]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["leader_epoch_entries_truncated"]
    assert cache.assign(2, 15)  # removes every entry with epoch >= 2 or start >= 15
    assert pairs(cache) == [(1, 0), (2, 15)]


def test_epoch_that_wrote_nothing_is_replaced_silently(tmp_path):
    # Two elections without data in between: both epochs start at offset 10, the newer
    # one wins, and Kafka does not warn about it.
    cache = cache_with(tmp_path, (1, 0), (2, 10))
    with capture_logs() as logs:
        assert cache.assign(3, 10)
    assert pairs(cache) == [(1, 0), (3, 10)]
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_negative_epoch_or_offset_is_refused(tmp_path):
    cache = LeaderEpochCache(str(tmp_path), "t-0")
    with pytest.raises(ValueError):
        cache.assign(-1, 0)
    with pytest.raises(ValueError):
        cache.assign(0, -5)
    assert cache.entries() == []
    assert not os.path.exists(tmp_path / CHECKPOINT_FILE)


# --- end_offset_for (OffsetForLeaderEpoch) ----------------------------------------------

@pytest.mark.parametrize("requested, expected", [
    (UNDEFINED_EPOCH, UNDEFINED),  # undefined asked: undefined
    (6, (6, 130)),                 # the latest epoch: the log end offset
    (4, (4, 120)),                 # a known epoch: the start of the next one
    (2, (2, 110)),                 # the earliest epoch
    (5, (4, 120)),                 # between two known epochs: the one below, next one's start
    (3, (2, 110)),
    (1, (1, 100)),                 # below the earliest: itself and the earliest start (Kafka)
    (0, (0, 100)),
    (7, UNDEFINED),                # above every known epoch
])
def test_end_offset_for(tmp_path, requested, expected):
    cache = cache_with(tmp_path, (2, 100), (4, 110), (6, 120))
    assert cache.end_offset_for(requested, 130) == expected


def test_end_offset_for_a_single_epoch(tmp_path):
    cache = cache_with(tmp_path, (3, 50))
    assert cache.end_offset_for(3, 80) == (3, 80)
    assert cache.end_offset_for(2, 80) == (2, 50)
    assert cache.end_offset_for(4, 80) == UNDEFINED


def test_epoch_for_offset(tmp_path):
    cache = cache_with(tmp_path, (2, 100), (4, 110), (6, 120))
    assert [cache.epoch_for_offset(o) for o in (99, 100, 109, 110, 119, 120, 10**9)] == [None, 2, 2, 4, 4, 6, 6]


# --- truncation ----------------------------------------------------------------------------

@pytest.mark.parametrize("end, expected", [
    (25, [(1, 0), (3, 10), (5, 20)]),  # past the last start: nothing goes
    (20, [(1, 0), (3, 10)]),           # an entry starting exactly there goes
    (15, [(1, 0), (3, 10)]),
    (10, [(1, 0)]),
    (0, []),
    (-1, [(1, 0), (3, 10), (5, 20)]),  # Kafka ignores a negative end offset
])
def test_truncate_from_end(tmp_path, end, expected):
    cache = cache_with(tmp_path, (1, 0), (3, 10), (5, 20))
    cache.truncate_from_end(end)
    assert pairs(cache) == expected
    reloaded = LeaderEpochCache(str(tmp_path), "t-0")
    assert reloaded.load() and pairs(reloaded) == expected  # persisted


@pytest.mark.parametrize("start, expected", [
    (0, [(1, 0), (3, 10), (5, 20)]),   # at the first start: nothing changes
    (5, [(1, 5), (3, 10), (5, 20)]),   # inside the first epoch: its start moves up
    (10, [(3, 10), (5, 20)]),          # at an epoch start: the epochs below go
    (15, [(3, 15), (5, 20)]),
    (20, [(5, 20)]),
    (99, [(5, 99)]),                   # past every start: the latest epoch, moved up
])
def test_truncate_from_start(tmp_path, start, expected):
    cache = cache_with(tmp_path, (1, 0), (3, 10), (5, 20))
    cache.truncate_from_start(start)
    assert pairs(cache) == expected
    reloaded = LeaderEpochCache(str(tmp_path), "t-0")
    assert reloaded.load() and pairs(reloaded) == expected


def test_clear(tmp_path):
    cache = cache_with(tmp_path, (1, 0), (3, 10))
    cache.clear()
    assert cache.entries() == [] and cache.latest_epoch == UNDEFINED_EPOCH
    assert checkpoint_text(tmp_path) == "0\n0\n"


# --- the checkpoint file ---------------------------------------------------------------------

def test_checkpoint_is_kafkas_text_format_and_round_trips(tmp_path):
    cache = cache_with(tmp_path, (0, 0), (3, 1200), (7, 5000))
    assert checkpoint_text(tmp_path) == "0\n3\n0 0\n3 1200\n7 5000\n"
    assert not os.path.exists(tmp_path / (CHECKPOINT_FILE + ".tmp"))
    reloaded = LeaderEpochCache(str(tmp_path), "t-0")
    assert reloaded.load()
    assert reloaded.entries() == cache.entries()
    entries = [EpochEntry(1, 2), EpochEntry(4, 9)]
    assert decode_checkpoint(encode_checkpoint(entries)) == entries


def test_missing_checkpoint_loads_as_not_found(tmp_path):
    cache = LeaderEpochCache(str(tmp_path), "t-0")
    assert not cache.load()
    assert cache.entries() == []


@pytest.mark.parametrize("content", [
    b"",                                # empty
    b"0\n3\n1 0\n3 1",                  # torn in the middle of the file
    b"0\n3\n1 0\n3 10\n",               # count says 3, two lines
    b"0\n1\n1 0\n3 10\n",               # count says 1, two lines
    b"1\n1\n1 0\n",                     # unknown version
    b"0\nx\n",                          # count not a number
    b"0\n1\n1\n",                       # one field
    b"0\n1\n1 0 7\n",                   # three fields
    b"0\n1\n1 zero\n",
    b"0\n1\n-1 0\n",                    # negative epoch
    b"0\n1\n1 -4\n",                    # negative offset
    b"\xff\xfe\x00garbage",             # not text
])
def test_garbled_checkpoint_is_refused_and_logged(tmp_path, content):
    (tmp_path / CHECKPOINT_FILE).write_bytes(content)
    with pytest.raises(CorruptCheckpointError):
        decode_checkpoint(content)
    cache = LeaderEpochCache(str(tmp_path), "t-0")
    with capture_logs() as logs:
        assert not cache.load()
    assert cache.entries() == []
    assert [e["event"] for e in logs] == ["leader_epoch_checkpoint_unreadable"]


def test_non_monotonic_checkpoint_entries_get_kafkas_repairs(tmp_path):
    # Kafka's constructor feeds the file through assign(): a later entry with a lower
    # epoch drops the entries it conflicts with.
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"0\n3\n1 0\n5 20\n3 10\n")
    cache = LeaderEpochCache(str(tmp_path), "t-0")
    assert cache.load()
    assert pairs(cache) == [(1, 0), (3, 10)]


def test_leftover_tmp_file_is_removed_on_load(tmp_path):
    cache_with(tmp_path, (2, 0))
    (tmp_path / (CHECKPOINT_FILE + ".tmp")).write_bytes(b"0\n1\n9 9")
    cache = LeaderEpochCache(str(tmp_path), "t-0")
    assert cache.load() and pairs(cache) == [(2, 0)]
    assert not os.path.exists(tmp_path / (CHECKPOINT_FILE + ".tmp"))


# --- PartitionLog: the leader append path ------------------------------------------------------

def test_leader_appends_record_each_new_epoch_at_its_first_offset(tmp_path):
    d = tmp_path / "t-0"
    plog = open_log(d)
    plog.append(batch(3), 0, TS)          # offsets 0-2
    plog.append(batch(2), 0, TS)          # 3-4: same epoch, nothing new
    plog.append(batch(1), 2, TS)          # 5
    plog.append(batch(2) + batch(1), 5, TS)  # 6-8
    assert pairs(plog.leader_epoch_cache) == [(0, 0), (2, 5), (5, 6)]
    assert checkpoint_text(d) == "0\n3\n0 0\n2 5\n5 6\n"
    assert plog.end_offset_for_epoch(0) == (0, 5)
    assert plog.end_offset_for_epoch(5) == (5, 9)
    plog.close()
    plog = open_log(d)
    assert pairs(plog.leader_epoch_cache) == [(0, 0), (2, 5), (5, 6)]
    plog.close()


def test_append_without_an_epoch_records_nothing(tmp_path):
    plog = open_log(tmp_path / "t-0")
    plog.append(batch(1), rec.NO_PARTITION_LEADER_EPOCH, TS)
    assert plog.leader_epoch_cache.entries() == []
    plog.close()


def test_assign_epoch_start_offset_on_becoming_leader(tmp_path):
    # Kafka's makeLeader records the new epoch at the log end before any data: a
    # follower asking for the end of epoch 1 learns it is 2 at once.
    plog = open_log(tmp_path / "t-0")
    plog.append(batch(2), 1, TS)
    assert plog.assign_epoch_start_offset(3)
    assert not plog.assign_epoch_start_offset(3)
    assert plog.end_offset_for_epoch(1) == (1, 2)
    plog.append(batch(1), 3, TS)
    assert pairs(plog.leader_epoch_cache) == [(1, 0), (3, 2)]
    plog.close()


def test_retention_and_delete_records_move_the_first_epoch_up(tmp_path):
    plog = open_log(tmp_path / "t-0")
    for offset, epoch in enumerate((1, 1, 2, 2, 4, 4)):
        if offset in (2, 4, 5):
            plog.roll()  # segments at 0, 2, 4 and 5
        plog.append(batch(1), epoch, TS)
    assert plog.segment_base_offsets() == [0, 2, 4, 5]
    assert pairs(plog.leader_epoch_cache) == [(1, 0), (2, 2), (4, 4)]
    plog.delete_records(3)  # DeleteRecords; also deletes the segment at 0
    assert plog.segment_base_offsets() == [2, 4, 5]
    assert pairs(plog.leader_epoch_cache) == [(2, 3), (4, 4)]
    plog.delete_segments(plog.deletable_segments(lambda seg, nxt: nxt is not None and nxt.base_offset <= 5))
    assert plog.log_start_offset == 5  # retention moved it to the segment left
    assert pairs(plog.leader_epoch_cache) == [(4, 5)]
    plog.close()
    plog = open_log(tmp_path / "t-0")
    assert pairs(plog.leader_epoch_cache) == [(4, 5)]
    plog.close()


def test_truncate_to_drops_the_epochs_at_or_after_the_offset(tmp_path):
    plog = open_log(tmp_path / "t-0")
    for epoch in (1, 2, 2, 3):
        plog.append(batch(1), epoch, TS)
    plog.truncate_to(3)
    assert pairs(plog.leader_epoch_cache) == [(1, 0), (2, 1)]
    plog.truncate_to(1)
    assert pairs(plog.leader_epoch_cache) == [(1, 0)]
    plog.append(batch(1), 4, TS)
    assert pairs(plog.leader_epoch_cache) == [(1, 0), (4, 1)]
    plog.close()


# --- PartitionLog: opening --------------------------------------------------------------------

def _log_with_epochs(d, segment_bytes=250):
    plog = open_log(d, segment_bytes=segment_bytes)
    for epoch in (0, 0, 1, 1, 1, 3, 3, 6):
        plog.append(batch(2), epoch, TS)
    expected = pairs(plog.leader_epoch_cache)
    assert expected == [(0, 0), (1, 4), (3, 10), (6, 14)]
    assert len(plog.segments) > 2
    plog.close()
    return expected


def test_missing_checkpoint_is_rebuilt_from_batch_headers_only(tmp_path, monkeypatch):
    d = tmp_path / "t-0"
    expected = _log_with_epochs(d)
    os.unlink(d / CHECKPOINT_FILE)  # a log written before epochs were kept

    def no_record_decoding(*_a, **_k):
        raise AssertionError("rebuilding leader epochs must not decode records")
    monkeypatch.setattr(rec, "decode_records", no_record_decoding)
    monkeypatch.setattr(rec, "_decode_batch", no_record_decoding)
    with capture_logs() as logs:
        plog = open_log(d, segment_bytes=250)
    assert pairs(plog.leader_epoch_cache) == expected
    assert "leader_epoch_cache_rebuilt" in [e["event"] for e in logs]
    assert checkpoint_text(d) == encode_checkpoint(plog.leader_epoch_cache.entries()).decode()
    plog.close()


@pytest.mark.parametrize("content", [b"0\n4\n0 0\n1 4\n3 1", b"\x00\x00\x00\x00", b"7\n"])
def test_torn_or_garbled_checkpoint_is_rebuilt_from_batch_headers(tmp_path, content):
    d = tmp_path / "t-0"
    expected = _log_with_epochs(d)
    (d / CHECKPOINT_FILE).write_bytes(content)
    plog = open_log(d, segment_bytes=250)
    assert pairs(plog.leader_epoch_cache) == expected
    plog.close()
    assert checkpoint_text(d) == "0\n4\n0 0\n1 4\n3 10\n6 14\n"


def test_rebuild_starts_at_the_log_start_offset(tmp_path):
    d = tmp_path / "t-0"
    _log_with_epochs(d)
    plog = open_log(d, segment_bytes=250)
    plog.delete_records(11)  # inside epoch 3's batch at 10-11
    plog.close()
    os.unlink(d / CHECKPOINT_FILE)
    plog = open_log(d, segment_bytes=250)
    assert pairs(plog.leader_epoch_cache) == [(3, 11), (6, 14)]
    plog.close()


def test_checkpoint_ahead_of_a_log_that_lost_its_tail_is_cut_back_on_open(tmp_path):
    # The epoch is assigned (and fsynced) before its data is written; a crash that
    # loses the unflushed data leaves the checkpoint ahead. Kafka's LogLoader cuts it
    # back to the log end; so does open.
    d = tmp_path / "t-0"
    plog = open_log(d)
    plog.append(batch(2), 1, TS)
    plog.flush()
    flushed = plog.size_bytes
    plog.append(batch(2), 2, TS)
    plog.append(batch(1), 5, TS)
    assert pairs(plog.leader_epoch_cache) == [(1, 0), (2, 2), (5, 4)]
    crash(plog)
    os.truncate(d / ("0" * 20 + ".log"), flushed + 7)  # the tail is lost, a torn batch left
    plog = open_log(d)
    assert plog.log_end_offset == 2
    assert pairs(plog.leader_epoch_cache) == [(1, 0)]
    assert checkpoint_text(d) == "0\n1\n1 0\n"
    plog.close()


def test_metadata_log_epochs_follow_the_raft_log(tmp_path):
    # The Raft log (kafkette.controller.raft.file_log) stamps its own epochs: the cache
    # follows them and its truncations, as KRaft's metadata log cache does.
    from kafkette.controller.raft.file_log import FileLog
    from kafkette.controller.raft.messages import Entry

    flog = FileLog(tmp_path / "__cluster_metadata-0", ManualClock(TS))
    for i, epoch in enumerate((1, 1, 2, 4, 4)):
        flog.append(Entry(i, epoch, (b"v%d" % i,)))
    cache = flog.partition_log.leader_epoch_cache
    assert pairs(cache) == [(1, 0), (2, 2), (4, 3)]
    flog.truncate_to(3)
    assert pairs(cache) == [(1, 0), (2, 2)]
    assert flog.partition_log.end_offset_for_epoch(1) == (1, 2)
    flog.close()
