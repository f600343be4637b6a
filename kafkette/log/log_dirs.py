"""What an I/O error on a log directory means (Kafka's LogDirFailureChannel, KIP-112).

Every OSError that a partition log meets while writing, flushing or reading comes here
with the log directory it happened in, and is turned into a KafkaStorageError
(KAFKA_STORAGE_ERROR for the request that met it):

- ENOSPC / EDQUOT (the disk or the quota is full): the directory stays online. The
  failed append was cut back to its last whole batch, so nothing is acknowledged that
  was not written, and the next append simply tries again: writes resume on their own
  once space is freed. One line is logged when a directory fills up and one when an
  append there succeeds with room to spare again (see space_back), not one per
  refused request. Kafka differs: it treats
  every IOException, ENOSPC included, as a failed directory and takes it offline until
  the broker restarts; for a local broker a full disk is an everyday event that
  should not need a restart.
- any other error (EIO on write or fsync, EROFS, ...): the directory goes offline, as in
  Kafka. The listeners (the log manager, the replica manager) stop using its
  partitions, which then answer KAFKA_STORAGE_ERROR; the other directories are served.
  One line is logged per directory going offline. An offline directory stays offline
  until the broker restarts, as in Kafka (a device that returned EIO once is not
  trusted again).
"""
from __future__ import annotations

import errno
import os
from typing import Callable

from kafkette.errors import KafkaStorageError
from kafkette.logging import get_logger

log = get_logger("kafkette.log_dirs")

# Errors that mean "no room", not "broken device".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SPACE_BACK_BYTES = 1 << 20


class LogDirFailureChannel:
    def __init__(self) -> None:
        self.offline: dict[str, str] = {}   # log dir -> the error that took it offline
        self.full: set[str] = set()         # log dirs whose last append found no space
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, fn: Callable[[str], None]) -> None:
        """`fn(log_dir)` is called once when `log_dir` goes offline."""
        self._listeners.append(fn)

    def is_offline(self, log_dir: str) -> bool:
        return log_dir in self.offline

    def storage_error(self, log_dir: str, exc: OSError, what: str) -> KafkaStorageError:
        """The KafkaStorageError to raise for `exc`, met while doing `what` (e.g. "append
        to orders-0") in `log_dir`; takes the directory offline unless the disk is full."""
        if exc.errno in NO_SPACE_ERRNOS and log_dir not in self.offline:
            if log_dir not in self.full:
                self.full.add(log_dir)
                log.warning("log dir full: appends there answer KAFKA_STORAGE_ERROR until "
                            "space is freed", log_dir=log_dir, during=what, error=str(exc))
            return KafkaStorageError(f"no space left in log dir {log_dir} ({what}): {exc}")
        self.mark_offline(log_dir, exc, what)
        return KafkaStorageError(f"log dir {log_dir} is offline after an I/O error ({what}): {exc}")

    def space_back(self, log_dir: str) -> None:
        """An append in `log_dir` succeeded: callers check `self.full` first (one set
        test per append). The directory counts as full until it has room again
        (SPACE_BACK_BYTES, or 1% of a small file system), not merely until a small
        append squeezed into the last page: else a disk at its limit would log a
        full / not full pair for every small write that fits."""
        if log_dir not in self.full:
            return
        try:
            st = os.statvfs(log_dir)
        except OSError:
            return
        if st.f_bavail * st.f_frsize < min(SPACE_BACK_BYTES, st.f_blocks * st.f_frsize // 100):
            return
        self.full.discard(log_dir)
        log.info("log dir has space again: appends resume", log_dir=log_dir,
                 usable_bytes=st.f_bavail * st.f_frsize)

    def mark_offline(self, log_dir: str, exc: BaseException | None, what: str) -> None:
        if log_dir in self.offline:
            return
        self.offline[log_dir] = str(exc) if exc is not None else what
        self.full.discard(log_dir)
        log.error("log dir offline: its partitions answer KAFKA_STORAGE_ERROR until restart",
                  log_dir=log_dir, during=what, error=str(exc))
        for fn in list(self._listeners):
            try:
                fn(log_dir)
            except Exception:  # noqa: BLE001 - every listener must hear of it
                log.exception("log dir offline listener failed", log_dir=log_dir)
