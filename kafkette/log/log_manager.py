"""All partition logs under one data directory (Kafka's LogManager, for one log dir).

Layout: `<data_dir>/<topic>-<partition>/`. A `.lock` file held with flock keeps a second
broker process off the same directory, as Kafka's `.lock` does.

Deleting a partition renames its directory to `<topic>-<partition>.<uuid>-delete` and
then removes it; a directory left with that suffix by a crash is removed on the next
`load_all()`. Kafka does the removal asynchronously after file.delete.delay.ms; we do it
at once (an rmtree of a closed directory), which no reader can observe since the log is
already gone from the manager.

Clean shutdown, as Kafka's `.kafka_cleanshutdown`: one marker file per log dir, written
(fsynced) by `close_all()` after every log is flushed and closed, and removed (one fsync)
by the next `load_all()` before anything is written. Ours also carries a summary line per
log (log start offset, log end offset, latest leader epoch), so that `load_all()` after a
clean shutdown only scans the directory: each log opens on its first use
(PartitionLog.unopened), and a broker with 10,000 partitions answers in well under a
second instead of opening 10,000 logs first. Without the marker (kill -9, power loss)
every log is opened and recovered at start, as before: segments below a log's recovery
point are trusted, the ones above are validated batch by batch and torn tails cut off.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from typing import Callable, Iterator

from kafkette.clock import SystemClock
from kafkette.errors import InvalidTopicError, KafkaStorageError
from kafkette.log.fsutil import fsync_path, write_file_atomically
from kafkette.log.partition_log import LogConfig, PartitionLog
from kafkette.log.segment import segment_file_name

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
CLEAN_SHUTDOWN_FILE = ".kafkette_cleanshutdown"
_SUMMARY_HEADER = "kafkette-clean-shutdown 2"
# The KRaft metadata log lives in the data dir too but belongs to the controller, which
# opens it itself; Kafka's LogManager skips it in the same way.
METADATA_TOPIC = "__cluster_metadata"
DELETE_SUFFIX = "-delete"
_PARTITION_DIR = re.compile(r"(.+)-(\d+)")
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]+")
MAX_TOPIC_LENGTH = 249


def validate_topic_name(topic: str) -> None:
    """Kafka's rules (Topic.validate); they also keep directory names safe."""
    if not topic or topic in (".", ".."):
        raise InvalidTopicError(f"invalid topic name {topic!r}")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(f"topic name longer than {MAX_TOPIC_LENGTH} characters")
    if not _LEGAL_TOPIC.fullmatch(topic):
        raise InvalidTopicError(f"topic name {topic!r} has characters other than ASCII alphanumerics, '.', '_' and '-'")


def _active_segment_as_left(path: str, base: int, size: int) -> bool:
    """The active segment is there with the size the clean shutdown recorded (one stat:
    a torn or extended tail written after the marker makes the log open at start)."""
    try:
        return os.stat(os.path.join(path, segment_file_name(base))).st_size == size
    except OSError:
        return False


class LogManager:
    def __init__(self, data_dir, clock=None, default_config: LogConfig | None = None):
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        self.default_config = default_config or LogConfig()
        self._clock = clock or SystemClock()
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        os.makedirs(self.data_dir, exist_ok=True)
        self._lock_fd: int | None = None
        self._lock()

    def _lock(self) -> None:
        fd = os.open(os.path.join(self.data_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise KafkaStorageError(f"data directory {self.data_dir} is in use by another process") from None
        self._lock_fd = fd

    def _dir_for(self, topic: str, partition: int) -> str:
        return os.path.join(self.data_dir, f"{topic}-{partition}")

    def load_all(self, config_for: Callable[[str], LogConfig | None] | None = None) -> list[tuple[str, int]]:
        """Open (and recover) every partition directory under the data dir. `config_for`
        maps a topic to its LogConfig (default: the manager's default config). Returns
        the (topic, partition) pairs loaded."""
        loaded = []
        summary = self._take_clean_shutdown_summary()
        unopened = 0
        for name in sorted(os.listdir(self.data_dir)):
            path = os.path.join(self.data_dir, name)
            if not os.path.isdir(path):
                continue
            if name.endswith(DELETE_SUFFIX):
                log.info("removing %s, left by an interrupted delete", path)
                shutil.rmtree(path, ignore_errors=True)
                continue
            m = _PARTITION_DIR.fullmatch(name)
            if not m or not _LEGAL_TOPIC.fullmatch(m.group(1)):
                continue  # not ours (Kafka's -future / -stray dirs, stray files...)
            topic, partition = m.group(1), int(m.group(2))
            if topic == METADATA_TOPIC or (topic, partition) in self._logs:
                continue
            config = (config_for(topic) if config_for is not None else None) or self.default_config
            known = summary.get(name)
            if known is not None and not _active_segment_as_left(path, known[3], known[4]):
                # Its active segment changed since the clean shutdown (truncated, grown):
                # open it now, so the partition starts from what the files hold.
                known = None
            if known is not None:
                unopened += 1
                plog = PartitionLog.unopened(path, config, self._clock, topic=topic,
                                             partition=partition, log_start_offset=known[0],
                                             log_end_offset=known[1], latest_epoch=known[2],
                                             active_segment=(known[3], known[4]),
                                             size_bytes=known[5])
            else:
                plog = PartitionLog(path, config, clock=self._clock, topic=topic, partition=partition)
            self._logs[(topic, partition)] = plog
            loaded.append((topic, partition))
        if loaded:
            # One line for the directory, not one per log (10,000 logs after kill -9).
            log.info("loaded %d log(s) from %s: %s", len(loaded), self.data_dir,
                     f"{len(loaded) - unopened} opened and recovered, {unopened} open on "
                     "first use (clean shutdown)" if summary else
                     "all opened and recovered (no clean-shutdown marker)")
        return loaded

    def _take_clean_shutdown_summary(self) -> dict[str, tuple[int, ...]]:
        """The marker's summary (directory name -> (log start, log end, latest epoch,
        active segment's base offset, its size, the log's size)),
        or {} after an unclean shutdown. The marker is removed durably before any log is
        touched: a crash from here on must read as unclean."""
        path = os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE)
        try:
            os.unlink(path + ".tmp")  # left by a crash while it was being written
        except FileNotFoundError:
            pass
        try:
            with open(path, encoding="ascii") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError):
            lines = []
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fsync_path(self.data_dir)
        summary: dict[str, tuple[int, ...]] = {}
        if not lines or lines[0] != _SUMMARY_HEADER or lines[-1] != "end":
            log.warning("clean-shutdown marker %s is unreadable; recovering every log", path)
            return {}
        try:
            for line in lines[1:-1]:
                name, *values = line.rsplit(" ", 6)
                summary[name] = tuple(map(int, values))
                if len(values) != 6:
                    raise ValueError(line)
        except ValueError:
            log.warning("clean-shutdown marker %s is unreadable; recovering every log", path)
            return {}
        return summary

    def _write_clean_shutdown_summary(self, logs: list[PartitionLog]) -> None:
        lines = [_SUMMARY_HEADER]
        for plog in logs:
            base, size = plog.active_segment_extent
            lines.append(f"{os.path.basename(plog.dir)} {plog.log_start_offset} "
                         f"{plog.log_end_offset} {plog.latest_epoch} {base} {size} "
                         f"{plog.size_bytes}")
        lines.append("end")
        write_file_atomically(os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE),
                              ("\n".join(lines) + "\n").encode("ascii"))

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig | None = None) -> PartitionLog:
        """Open the log of a partition, creating its directory if needed. Idempotent: an
        already open log is returned (with its config replaced when one is given)."""
        existing = self._logs.get((topic, partition))
        if existing is not None:
            if config is not None:
                existing.config = config
            return existing
        validate_topic_name(topic)
        if partition < 0:
            raise ValueError(f"invalid partition {partition}")
        plog = PartitionLog(self._dir_for(topic, partition), config or self.default_config,
                            clock=self._clock, topic=topic, partition=partition)
        self._logs[(topic, partition)] = plog
        return plog

    def delete(self, topic: str, partition: int) -> bool:
        """Close and remove a partition's log. Returns False if there was none."""
        plog = self._logs.pop((topic, partition), None)
        path = self._dir_for(topic, partition)
        if plog is not None:
            plog.close(clean=False)
        if not os.path.isdir(path):
            return plog is not None
        doomed = os.path.join(self.data_dir, f"{topic}-{partition}.{uuid.uuid4().hex}{DELETE_SUFFIX}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def set_config(self, topic: str, config: LogConfig) -> None:
        """Apply a topic's new config to all its open partitions."""
        for (t, _p), plog in self._logs.items():
            if t == topic:
                plog.config = config

    def partitions(self, topic: str | None = None) -> list[tuple[str, int]]:
        return sorted(k for k in self._logs if topic is None or k[0] == topic)

    def __iter__(self) -> Iterator[PartitionLog]:
        return iter(list(self._logs.values()))

    def __len__(self) -> int:
        return len(self._logs)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._logs

    def flush_all(self) -> None:
        for plog in list(self._logs.values()):
            plog.flush()

    def maybe_flush_all(self, now_ms: int) -> None:
        """flush.ms for idle logs; call periodically (Kafka: log.flush.scheduler.interval.ms)."""
        for plog in list(self._logs.values()):
            plog.maybe_flush(now_ms)

    def close_all(self, *, clean: bool = True) -> None:
        """Close every log and release the directory lock. clean=False closes the files
        as a killed process leaves them: nothing flushed or snapshotted, no clean-shutdown
        markers, so the next open recovers (the replication simulation's crash)."""
        errors = []
        logs = list(self._logs.values())
        for plog in logs:
            try:
                plog.close(clean=clean, marker=False)
            except Exception as exc:  # keep closing the others
                errors.append(exc)
                log.exception("closing %s failed", plog.dir)
        if clean and not errors:
            try:
                self._write_clean_shutdown_summary(logs)
            except OSError as exc:
                errors.append(exc)
                log.exception("writing the clean-shutdown marker of %s failed", self.data_dir)
        self._logs.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        if errors:
            raise errors[0]
