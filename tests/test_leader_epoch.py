"""Leader-epoch cache (kafkette.log.leader_epoch, Kafka's LeaderEpochFileCache, KIP-101 /
KIP-279): assign rules, every end_offset_for case, truncation from both ends, the
`leader-epoch-checkpoint` file (round trip, torn or garbled files)."""
from __future__ import annotations

import os

import pytest
from structlog.testing import capture_logs

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
