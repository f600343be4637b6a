"""Small file-system helpers shared by the log modules."""
from __future__ import annotations

import os


def fsync_path(path) -> None:
    """fsync a file or a directory by path (a directory's fsync makes renames and
    new entries in it durable). Errors are ignored: some file systems refuse it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
