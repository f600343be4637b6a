"""KIP-966's clean-shutdown file: the broker epoch of a clean stop, taken (and removed)
at the next start, so that a crash afterwards reads as an unclean shutdown (-1)."""
from kafkette.broker.cluster import (
    CLEAN_SHUTDOWN_FILE,
    _take_clean_shutdown_epoch,
    write_clean_shutdown_epoch,
)


def test_round_trip_then_gone(tmp_path):
    write_clean_shutdown_epoch(tmp_path, 42)
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert _take_clean_shutdown_epoch(tmp_path) == 42
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert _take_clean_shutdown_epoch(tmp_path) == -1  # crashed since


def test_garbage_reads_as_unclean(tmp_path):
    (tmp_path / CLEAN_SHUTDOWN_FILE).write_text("{not json")
    assert _take_clean_shutdown_epoch(tmp_path) == -1
