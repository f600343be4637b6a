"""Start-up of many partitions: the log manager's clean-shutdown marker and summary,
logs left unopened until first use after a clean shutdown, full recovery (of what lies
above the recovery point) after an unclean one."""
from __future__ import annotations

import os

from kafkette.clock import ManualClock
from kafkette.log import LogConfig, LogManager
from kafkette.log.log_manager import CLEAN_SHUTDOWN_FILE
from kafkette.log.partition_log import CLEAN_SHUTDOWN_FILE as PARTITION_MARKER
from kafkette.protocol.records import build_batch, iter_batches

TS = 1_700_000_000_000


def batch(n: int = 2, tag: int = 0) -> bytearray:
    return bytearray(build_batch([(b"k", b"v%d" % tag * 5, [])] * n, timestamp_ms=TS))


def fill(lm: LogManager, parts: int = 3, batches: int = 2) -> None:
    for p in range(parts):
        plog = lm.create("t", p)
        for i in range(batches):
            plog.append(batch(tag=i), 0, TS)
        plog.assign_epoch_start_offset(3)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_clean_restart_leaves_logs_unopened_until_first_use(tmp_path):
    clock = ManualClock(TS)
    lm = LogManager(tmp_path, clock)
    fill(lm)
    lm.close_all()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert not (tmp_path / "t-0" / PARTITION_MARKER).exists()  # one marker per log dir

    fds = open_fds()
    lm = LogManager(tmp_path, clock)
    assert sorted(lm.load_all()) == [("t", 0), ("t", 1), ("t", 2)]
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()  # a crash from now on is unclean
    plog = lm.get("t", 1)
    assert not plog.opened
    assert (plog.log_start_offset, plog.log_end_offset, plog.latest_epoch) == (0, 4, 3)
    assert plog.size_bytes == (tmp_path / "t-1" / f"{0:020d}.log").stat().st_size
    assert open_fds() == fds + 1  # the directory lock only, no segment files
    plog.maybe_flush(TS + 10**9)
    plog.flush()
    assert not plog.opened

    data = plog.read(0, 1 << 20)  # first use opens it
    assert plog.opened
    assert [h.base_offset for _pos, h in iter_batches(data)] == [0, 2]
    assert plog.append(batch(), 0, TS).base_offset == 4
    assert not lm.get("t", 0).opened
    lm.close_all()

    lm = LogManager(tmp_path, clock)
    lm.load_all()
    # The unopened ones kept their summary line; the used one has its new end.
    assert [lm.get("t", p).log_end_offset for p in range(3)] == [4, 6, 4]
    assert lm.get("t", 1).read(4, 1 << 20)
    lm.close_all()


def test_config_change_does_not_open(tmp_path):
    lm = LogManager(tmp_path, ManualClock(TS))
    fill(lm, parts=1)
    lm.close_all()
    lm = LogManager(tmp_path, ManualClock(TS))
    lm.load_all()
    lm.set_config("t", LogConfig(segment_bytes=1000))
    plog = lm.get("t", 0)
    assert not plog.opened and plog.config.segment_bytes == 1000
    plog.append(batch(), 0, TS)
    assert plog.opened and plog.config.segment_bytes == 1000
    lm.close_all()


def test_active_segment_changed_after_the_marker_opens_at_start(tmp_path):
    """A tail torn or extended while the broker was stopped: the log opens (and cuts
    it) at start, so its owner never starts from offsets the files do not hold."""
    lm = LogManager(tmp_path, ManualClock(TS))
    fill(lm, parts=2)
    lm.close_all()
    seg = tmp_path / "t-0" / f"{0:020d}.log"
    good = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(bytes(batch())[:30])  # half a batch
    torn = tmp_path / "t-1" / f"{0:020d}.log"
    os.truncate(torn, torn.stat().st_size - 5)  # the last batch cut short
    lm = LogManager(tmp_path, ManualClock(TS))
    lm.load_all()
    plog, cut = lm.get("t", 0), lm.get("t", 1)
    assert plog.opened and cut.opened
    assert seg.stat().st_size == good and plog.log_end_offset == 4
    assert cut.log_end_offset == 2
    lm.close_all()


def test_torn_tail_inside_a_lazily_opened_log_is_cut_on_first_use(tmp_path):
    """Same size, damaged bytes after the last index entry (bit rot while stopped):
    found when the log opens on first use, as Kafka finds it only when read."""
    lm = LogManager(tmp_path, ManualClock(TS))
    fill(lm, parts=1)
    lm.close_all()
    seg = tmp_path / "t-0" / f"{0:020d}.log"
    raw = bytearray(seg.read_bytes())
    raw[-3] ^= 0xFF  # the CRC of the last batch no longer matches
    seg.write_bytes(raw)
    lm = LogManager(tmp_path, ManualClock(TS))
    lm.load_all()
    plog = lm.get("t", 0)
    assert not plog.opened
    plog.read(0, 1 << 20)
    assert plog.opened and plog.log_end_offset == 2  # the damaged last batch is cut
    lm.close_all()


def test_unclean_shutdown_opens_and_recovers_every_log_at_start(tmp_path):
    lm = LogManager(tmp_path, ManualClock(TS))
    fill(lm, parts=2)
    lm.close_all()
    lm = LogManager(tmp_path, ManualClock(TS))
    lm.load_all()
    lm.get("t", 0).append(batch(tag=9), 0, TS)
    lm.close_all(clean=False)  # kill -9: no marker left
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    seg = tmp_path / "t-0" / f"{0:020d}.log"
    good = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x01\x00torn")
    lm = LogManager(tmp_path, ManualClock(TS))
    lm.load_all()
    plog = lm.get("t", 0)
    assert plog.opened and lm.get("t", 1).opened
    assert seg.stat().st_size == good and plog.log_end_offset == 6
    lm.close_all()


def test_recovery_point_is_honoured_after_an_unclean_shutdown(tmp_path):
    """Segments below the recovery point are trusted (not validated), the rest is."""
    cfg = LogConfig(segment_bytes=200)
    lm = LogManager(tmp_path, ManualClock(TS), default_config=cfg)
    plog = lm.create("t", 0)
    for i in range(6):
        plog.append(batch(tag=i), 0, TS)
    plog.flush()
    assert len(plog.segment_base_offsets()) >= 3 and plog.recovery_point == 12
    plog.append(batch(tag=7), 0, TS)
    bases = plog.segment_base_offsets()
    lm.close_all(clean=False)
    first = tmp_path / "t-0" / f"{bases[0]:020d}.log"
    raw = bytearray(first.read_bytes())
    raw[-3] ^= 0xFF  # below the recovery point: not looked at
    first.write_bytes(raw)
    active = tmp_path / "t-0" / f"{bases[-1]:020d}.log"
    with open(active, "ab") as f:
        f.write(b"\x01\x02\x03")  # above it: validated, cut off
    size = active.stat().st_size
    lm = LogManager(tmp_path, ManualClock(TS), default_config=cfg)
    lm.load_all()
    plog = lm.get("t", 0)
    assert plog.segment_base_offsets() == bases and plog.log_end_offset == 14
    assert active.stat().st_size == size - 3
    lm.close_all()


def test_unreadable_marker_means_full_recovery(tmp_path):
    lm = LogManager(tmp_path, ManualClock(TS))
    fill(lm, parts=1)
    lm.close_all()
    (tmp_path / CLEAN_SHUTDOWN_FILE).write_text("kafkette-clean-shutdown 2\nt-0 0 4\n")  # cut short
    lm = LogManager(tmp_path, ManualClock(TS))
    lm.load_all()
    assert lm.get("t", 0).opened and lm.get("t", 0).log_end_offset == 4
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    lm.close_all()


def test_old_per_partition_markers_still_count(tmp_path):
    """A data dir written before the per-dir marker: each log's own marker."""
    lm = LogManager(tmp_path, ManualClock(TS))
    fill(lm, parts=1)
    plog = lm.get("t", 0)
    plog.close()  # standalone close: the per-partition marker
    assert (tmp_path / "t-0" / PARTITION_MARKER).exists()
    lm.close_all(clean=False)
    lm = LogManager(tmp_path, ManualClock(TS))
    lm.load_all()
    assert lm.get("t", 0).opened and lm.get("t", 0).log_end_offset == 4
    assert not (tmp_path / "t-0" / PARTITION_MARKER).exists()
    lm.close_all()


def test_several_log_dirs_each_get_their_own_marker_and_open_lazily(tmp_path):
    """log.dirs with two directories: a clean shutdown writes one summary in each, a
    clean restart leaves the logs of both unopened; a failing device met on a log's
    first use takes that directory offline (KIP-112), the other stays served."""
    import errno

    import pytest

    from kafkette.errors import KafkaStorageError
    clock = ManualClock(TS)
    dirs = [tmp_path / "a", tmp_path / "b"]
    lm = LogManager(dirs, clock)
    fill(lm, parts=4)
    held = {p: lm.log_dir_of("t", p) for p in range(4)}
    assert set(held.values()) == {str(d) for d in dirs}   # spread over both
    lm.close_all()
    assert all((d / CLEAN_SHUTDOWN_FILE).exists() for d in dirs)

    lm = LogManager(dirs, clock)
    assert sorted(lm.load_all()) == [("t", p) for p in range(4)]
    assert not any(lm.get("t", p).opened for p in range(4))
    in_a = [p for p in range(4) if held[p] == str(dirs[0])]
    in_b = [p for p in range(4) if held[p] == str(dirs[1])]
    real_open = os.open

    def failing_open(path, *a, **kw):
        if os.fspath(path).startswith(str(dirs[0]) + os.sep):
            raise OSError(errno.EIO, "Input/output error", path)
        return real_open(path, *a, **kw)
    os.open = failing_open
    try:
        with pytest.raises(KafkaStorageError):
            lm.get("t", in_a[0]).read(0, 1 << 20)
    finally:
        os.open = real_open
    assert lm.offline_dirs == [str(dirs[0])]
    other = lm.get("t", in_b[0])
    assert [h.base_offset for _pos, h in iter_batches(other.read(0, 1 << 20))] == [0, 2]
    lm.close_all()
