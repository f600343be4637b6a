"""kafkette.soak's end checks on made-up histories: each one fails where it should."""
from __future__ import annotations

import os

from kafkette.chaos.checker import Produced, Read
from kafkette.soak import checks
from kafkette.soak.run import compact_key, fd_audit, idle_fd_failures

KEYS = 3


def key(v: str) -> str:
    return compact_key(v, KEYS)


def acked(seq: int, offset: int) -> Produced:
    return Produced("c", seq, f"c/{seq}", True, 0, offset)


def test_compact_key_is_the_producers_key_of_the_sequence():
    assert key("compact/7") == "k1" and key("compact/9") == "k0"


def test_compacted_topic_holding_each_keys_last_acknowledged_value_passes():
    produced = [acked(s, s) for s in range(9)]
    # After compaction only the latest of each key (sequences 6, 7, 8) is left.
    drain = [Read("drain", 0, o, f"c/{o}") for o in (6, 7, 8)]
    assert checks.check_compacted(produced, drain, key) == []


def test_an_older_value_left_as_a_keys_latest_is_a_mismatch():
    produced = [acked(s, s) for s in range(9)]
    drain = [Read("drain", 0, o, f"c/{o}") for o in (3, 6, 7)]   # key k2's 8 is gone
    got = checks.check_compacted(produced, drain, key)
    assert [m.as_dict() for m in got] == [{"key": "k2", "expected": "c/8", "found": None}]


def test_a_stale_value_at_a_higher_offset_is_a_mismatch():
    produced = [acked(0, 0), acked(3, 1)]      # both key k0
    drain = [Read("drain", 0, 1, "c/0")]       # offset 1 holds the old value
    got = checks.check_compacted(produced, drain, key)
    assert got == [checks.CompactionMismatch("k0", "c/3", "c/0")]


def test_a_key_whose_last_write_failed_is_not_checked():
    produced = [acked(0, 0), Produced("c", 3, "c/3", False, 0, None, "timed out")]
    assert checks.last_acked_by_key(produced, lambda m: key(m.value)) == {}
    assert checks.check_compacted(produced, [], key) == []


def test_window_means_and_flat_bounds():
    assert checks.window_means([1, 1, 2, 2, 2, 2, 2, 2, 4, 4]) == (1, 4)
    flat = checks.check_flat("fds", [40] * 8 + [61, 61], checks.Bound(20))
    assert flat.growth == 21 and not flat.ok
    assert checks.check_flat("fds", [40] * 8 + [60, 60], checks.Bound(20)).ok
    # RSS: the larger of the absolute and the relative allowance.
    assert checks.Bound(30, 0.25).allowed(100) == 30
    assert checks.Bound(30, 0.25).allowed(400) == 100
    rss = checks.check_flat("rss_mb", [100] * 8 + [131, 131], checks.Bound(30, 0.25))
    assert not rss.ok and rss.as_dict()["growth"] == 31


def test_slope_per_hour():
    assert checks.slope_per_hour([0, 1800, 3600], [10, 15, 20]) == 10
    assert checks.slope_per_hour([5], [1]) is None


def test_fd_audit_sees_a_file_left_open_after_it_was_deleted(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    before = fd_audit(os.getpid(), data)
    path = data / "00000000000000000000.log"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        open_seg = fd_audit(os.getpid(), data)
        assert open_seg["segments"] == before["segments"] + 1
        os.unlink(path)
        leaked = fd_audit(os.getpid(), data)
        assert leaked["deleted"] == before["deleted"] + 1
        assert "fds still open on deleted files" in " ".join(idle_fd_failures(before, leaked))
    finally:
        os.close(fd)
    assert idle_fd_failures(before, fd_audit(os.getpid(), data)) == []


def test_a_socket_left_open_is_an_idle_failure():
    start = {"sockets": 4, "segments": 10, "deleted": 0, "other": 9, "segment_files": 9}
    assert idle_fd_failures(start, {**start, "segments": 14, "segment_files": 13}) == []
    assert idle_fd_failures(start, {**start, "sockets": 5}) == [
        "5 sockets fds once every client left, 4 before the first one"]


def test_more_data_file_fds_than_segments_is_an_idle_failure():
    start = {"sockets": 4, "segments": 10, "deleted": 0, "other": 9, "segment_files": 9}
    # Segments opened lazily (fewer fds than files) are fine; one fd too many is not.
    assert idle_fd_failures(start, {**start, "segments": 8, "segment_files": 12}) == []
    got = idle_fd_failures(start, {**start, "segments": 14, "segment_files": 12})
    assert got == ["14 fds on data files for 12 segment files, 10 for 9 before the first "
                   "client"]
