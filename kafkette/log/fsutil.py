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


def write_file_atomically(path, data, tmp_suffix: str = ".tmp") -> None:
    """Replace the file at `path` with `data` crash-safely: write `path + tmp_suffix`,
    fsync it, rename it over `path`, fsync the directory. A crash leaves the old file or
    the new one, never a mix (the temporary file may be left behind: callers delete it
    on start)."""
    path = os.fspath(path)
    tmp = path + tmp_suffix
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        # A full disk (or a failing one): the old file stays, the half-written one goes.
        os.close(fd)
        remove_quietly(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_path(os.path.dirname(path) or ".")


def remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
