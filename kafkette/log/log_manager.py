"""All partition logs under the log directories (Kafka's LogManager).

Layout: `<log dir>/<topic>-<partition>/`, in one of the directories of `log.dirs`. A
`.lock` file held with flock in each keeps a second broker process off it, as Kafka's
`.lock` does. The first directory is `data_dir`: the metadata log and the broker-wide
files (high-watermark checkpoint, clean-shutdown epoch) live there, as Kafka's
metadata.log.dir defaults to the first of log.dirs.

Several directories (JBOD): a new partition goes to the online directory with the
fewest partitions (Kafka's LogManager.nextLogDirs; ties go to the earlier directory in
log.dirs); at start each existing partition is opened in whichever directory holds it,
and a partition found in two directories refuses the start (Kafka refuses it too: "Duplicate log
directories found"). An I/O error other than a full disk takes a directory offline
(kafkette.log.log_dirs, KIP-112): its logs are closed and refuse every call with
KAFKA_STORAGE_ERROR, no new partition is placed there, and the other directories are
served. A directory that cannot be opened at start is offline from the start.

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
from kafkette.log.log_dirs import LogDirFailureChannel
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
#: The longest file name most file systems take (ext4, xfs, tmpfs).
MAX_FILE_NAME = 255


def delete_dir_name(topic: str, partition: int) -> str:
    """`<topic>-<partition>.<uuid>-delete`, with the topic cut so that the name fits in
    255 bytes, as Kafka's logDirNameWithSuffixCappedLength does: a topic name may have
    249 characters, and the suffix alone takes 42 or more."""
    suffix = f"-{partition}.{uuid.uuid4().hex}{DELETE_SUFFIX}"
    prefix = topic.encode("utf-8")[:MAX_FILE_NAME - len(suffix)].decode("utf-8", "ignore")
    return prefix + suffix


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
    def __init__(self, data_dir, clock=None, default_config: LogConfig | None = None, *,
                 failure_channel: LogDirFailureChannel | None = None):
        """`data_dir`: one directory or a list of them (log.dirs)."""
        dirs = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
        if not dirs:
            raise ValueError("no log directory")
        self.log_dirs = list(dict.fromkeys(os.path.abspath(os.fspath(d)) for d in dirs))
        self.data_dir = self.log_dirs[0]
        self.default_config = default_config or LogConfig()
        self._clock = clock or SystemClock()
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self.failure_channel = failure_channel or LogDirFailureChannel()
        self.failure_channel.add_listener(self._on_dir_offline)
        self._lock_fds: dict[str, int] = {}
        try:
            for d in self.log_dirs:
                try:
                    os.makedirs(d, exist_ok=True)
                except OSError as exc:
                    if d == self.data_dir:
                        raise KafkaStorageError(f"log directory {d} cannot be used: {exc}") from exc
                    self.failure_channel.mark_offline(d, exc, "opening the log dir")
                    continue
                self._lock(d)
        except BaseException:
            self._unlock()
            raise

    def _lock(self, d: str) -> None:
        fd = os.open(os.path.join(d, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise KafkaStorageError(f"data directory {d} is in use by another process") from None
        self._lock_fds[d] = fd

    def _unlock(self) -> None:
        for fd in self._lock_fds.values():
            os.close(fd)  # releases the flock
        self._lock_fds.clear()

    @property
    def offline_dirs(self) -> list[str]:
        return [d for d in self.log_dirs if self.failure_channel.is_offline(d)]

    @property
    def online_dirs(self) -> list[str]:
        return [d for d in self.log_dirs if not self.failure_channel.is_offline(d)]

    def _on_dir_offline(self, log_dir: str) -> None:
        """Close every log in a directory that went offline (Kafka's
        LogManager.handleLogDirFailure); they stay in the manager, refusing calls."""
        for plog in self._logs.values():
            if plog.log_dir == log_dir:
                plog.mark_offline()
        if not self.online_dirs:
            log.error("every log directory is offline: no partition can be served "
                      "(Kafka halts the broker here; kafkette keeps answering "
                      "KAFKA_STORAGE_ERROR)")

    def log_dir_of(self, topic: str, partition: int) -> str | None:
        plog = self._logs.get((topic, partition))
        return plog.log_dir if plog is not None else None

    def _next_log_dir(self) -> str:
        """The online directory with the fewest partitions (Kafka's nextLogDirs)."""
        online = self.online_dirs
        if not online:
            raise KafkaStorageError("every log directory is offline")
        if len(online) == 1:
            return online[0]
        counts = dict.fromkeys(online, 0)
        for plog in self._logs.values():
            if plog.log_dir in counts:
                counts[plog.log_dir] += 1
        return min(online, key=lambda d: counts[d])   # min keeps the first of equals

    def _dir_for(self, topic: str, partition: int) -> str:
        existing = self._logs.get((topic, partition))
        if existing is not None:
            return existing.dir
        return os.path.join(self._next_log_dir(), f"{topic}-{partition}")

    def _path_in(self, topic: str, partition: int) -> str | None:
        """The partition's directory, in whichever log dir holds it (None: nowhere)."""
        plog = self._logs.get((topic, partition))
        if plog is not None:
            return plog.dir
        for d in self.log_dirs:
            path = os.path.join(d, f"{topic}-{partition}")
            if os.path.isdir(path):
                return path
        return None

    def _open_log(self, path: str, config: LogConfig, topic: str, partition: int) -> PartitionLog:
        return PartitionLog(path, config, clock=self._clock, topic=topic, partition=partition,
                            failure_channel=self.failure_channel)

    def load_all(self, config_for: Callable[[str], LogConfig | None] | None = None) -> list[tuple[str, int]]:
        """Open (and recover) every partition directory under the log dirs. `config_for`
        maps a topic to its LogConfig (default: the manager's default config). Returns
        the (topic, partition) pairs loaded. A partition held by two directories raises
        KafkaStorageError: which copy is right cannot be told. A directory that fails
        (an I/O error other than a full disk) goes offline and the others load."""
        found: dict[tuple[str, int], str] = {}
        for d in self.online_dirs:
            try:
                names = sorted(os.listdir(d))
            except OSError as exc:
                self.failure_channel.mark_offline(d, exc, "listing the log dir")
                continue
            for name in names:
                path = os.path.join(d, name)
                if not os.path.isdir(path):
                    continue
                if name.endswith(DELETE_SUFFIX):
                    log.info("removing %s, left by an interrupted delete", path)
                    shutil.rmtree(path, ignore_errors=True)
                    continue
                m = _PARTITION_DIR.fullmatch(name)
                if not m or not _LEGAL_TOPIC.fullmatch(m.group(1)):
                    continue  # not ours (Kafka's -future / -stray dirs, stray files...)
                key = (m.group(1), int(m.group(2)))
                if key[0] == METADATA_TOPIC:
                    continue
                other = found.get(key) or (self._logs[key].dir if key in self._logs else None)
                if other is not None and other != path:
                    raise KafkaStorageError(
                        f"partition {key[0]}-{key[1]} is in two log directories: {other} and "
                        f"{path}; remove the stale copy before starting")
                found[key] = path
        # Each log dir's clean-shutdown marker, taken (removed) before any log is touched.
        summaries: dict[str, dict[str, tuple[int, ...]]] = {}
        for d in self.online_dirs:
            try:
                summaries[d] = self._take_clean_shutdown_summary(d)
            except OSError as exc:
                self.failure_channel.mark_offline(d, exc, "reading the clean-shutdown marker")
        loaded = []
        unopened = 0
        for (topic, partition), path in sorted(found.items()):
            if (topic, partition) in self._logs:
                continue
            log_dir = os.path.dirname(path)
            if self.failure_channel.is_offline(log_dir):
                continue
            config = (config_for(topic) if config_for is not None else None) or self.default_config
            known = summaries.get(log_dir, {}).get(os.path.basename(path))
            try:
                if known is not None and not _active_segment_as_left(path, known[3], known[4]):
                    # Its active segment changed since the clean shutdown (truncated,
                    # grown): open it now, so the partition starts from what the files hold.
                    known = None
                if known is not None:
                    unopened += 1
                    plog = PartitionLog.unopened(
                        path, config, self._clock, topic=topic, partition=partition,
                        log_start_offset=known[0], log_end_offset=known[1],
                        latest_epoch=known[2], active_segment=(known[3], known[4]),
                        size_bytes=known[5], failure_channel=self.failure_channel)
                else:
                    plog = self._open_log(path, config, topic, partition)
            except OSError as exc:
                # Recovery met a failing device: that directory goes, the rest load.
                self.failure_channel.mark_offline(log_dir, exc, f"loading {topic}-{partition}")
                continue
            self._logs[(topic, partition)] = plog
            loaded.append((topic, partition))
        if loaded:
            # One line, not one per log (10,000 logs after kill -9).
            log.info("loaded %d log(s) from %s: %s", len(loaded), ",".join(self.log_dirs),
                     f"{len(loaded) - unopened} opened and recovered, {unopened} open on "
                     "first use (clean shutdown)" if any(summaries.values()) else
                     "all opened and recovered (no clean-shutdown marker)")
        return loaded

    def _take_clean_shutdown_summary(self, log_dir: str) -> dict[str, tuple[int, ...]]:
        """A log dir's marker summary (partition directory name -> (log start, log end,
        latest epoch, active segment's base offset, its size, the log's size)), or {}
        after an unclean shutdown. The marker is removed durably before any log is
        touched: a crash from here on must read as unclean. One marker per log dir, as
        Kafka keeps one .kafka_cleanshutdown per log dir."""
        path = os.path.join(log_dir, CLEAN_SHUTDOWN_FILE)
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
        fsync_path(log_dir)
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

    def _write_clean_shutdown_summaries(self, logs: list[PartitionLog]) -> None:
        """One marker per online log dir, listing the logs closed cleanly in it. A dir
        whose marker cannot be written (full, failing) gets none: its logs recover at
        the next start, which is always safe."""
        by_dir: dict[str, list[PartitionLog]] = {d: [] for d in self.online_dirs}
        for plog in logs:
            if plog.log_dir in by_dir:
                by_dir[plog.log_dir].append(plog)
        for log_dir, dir_logs in by_dir.items():
            lines = [_SUMMARY_HEADER]
            for plog in dir_logs:
                base, size = plog.active_segment_extent
                lines.append(f"{os.path.basename(plog.dir)} {plog.log_start_offset} "
                             f"{plog.log_end_offset} {plog.latest_epoch} {base} {size} "
                             f"{plog.size_bytes}")
            lines.append("end")
            try:
                write_file_atomically(os.path.join(log_dir, CLEAN_SHUTDOWN_FILE),
                                      ("\n".join(lines) + "\n").encode("ascii"))
            except OSError as exc:
                log.warning("no clean-shutdown marker in %s (%s): its logs recover at the "
                            "next start", log_dir, exc)

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
        path = self._dir_for(topic, partition)
        try:
            plog = self._open_log(path, config or self.default_config, topic, partition)
        except OSError as exc:
            raise self.failure_channel.storage_error(os.path.dirname(path), exc,
                                                     f"creating {topic}-{partition}") from exc
        self._logs[(topic, partition)] = plog
        return plog

    def delete(self, topic: str, partition: int) -> bool:
        """Close and remove a partition's log. Returns False if there was none."""
        path = self._path_in(topic, partition)
        plog = self._logs.pop((topic, partition), None)
        if plog is not None:
            plog.close(clean=False)
        if path is None or not os.path.isdir(path):
            return plog is not None
        if self.failure_channel.is_offline(os.path.dirname(path)):
            return True  # not touched again until a restart (which removes it as stray)
        doomed = os.path.join(os.path.dirname(path), delete_dir_name(topic, partition))
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
            if not plog.offline:
                try:
                    plog.flush()
                except KafkaStorageError:
                    pass  # the failure channel has logged it; the other logs still flush

    def maybe_flush_all(self, now_ms: int) -> None:
        """flush.ms for idle logs; call periodically (Kafka: log.flush.scheduler.interval.ms)."""
        for plog in list(self._logs.values()):
            try:
                plog.maybe_flush(now_ms)
            except KafkaStorageError:
                pass  # logged once per log dir by the failure channel

    def close_all(self, *, clean: bool = True) -> None:
        """Close every log and release the directory lock. clean=False closes the files
        as a killed process leaves them: nothing flushed or snapshotted, no clean-shutdown
        markers, so the next open recovers (the replication simulation's crash)."""
        errors = []
        logs = list(self._logs.values())
        unclean = []
        closed = []
        for plog in logs:
            try:
                plog.close(clean=clean, marker=False)
                closed.append(plog)
            except KafkaStorageError:
                # A full or failing disk at shutdown: the files are closed all the same,
                # left out of the clean-shutdown marker, so the next start recovers them.
                unclean.append(f"{plog.topic}-{plog.partition}")
            except Exception as exc:  # keep closing the others
                errors.append(exc)
                log.exception("closing %s failed", plog.dir)
        if unclean:
            log.warning("%d logs could not be closed cleanly (disk full or failing); the next "
                        "start recovers them: %s", len(unclean), ", ".join(unclean[:10]))
        if clean and not errors:
            self._write_clean_shutdown_summaries(closed)
        self._logs.clear()
        self._unlock()
        if errors:
            raise errors[0]
