"""What kind of file a mode is, and opening a path for reading without opening a device or a FIFO.

Stdlib only. Shared by the config and market-data readers (execution.config), the diagnostics
reader (execution.state_v7) and the state-dir writers (execution.state_dir); each words its own messages.
"""
from __future__ import annotations

import os
import stat
from typing import Callable

KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
# Never blocks on a FIFO, never becomes the controlling terminal, never inherited by a child.
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def file_kind(mode: int) -> str:
    """What a ``st_mode`` that is not a regular file is, e.g. "a FIFO"; "a special file" for a kind not in KINDS."""
    return next((name for test, name in KINDS if test(mode)), "a special file")


def open_for_reading(path: str, check: Callable[[os.stat_result], None]) -> int:
    """An fd open for reading on ``path`` (symlinks followed). ``check`` raises to refuse; it sees the ``stat``
    first, so a refused device is never even opened (opening some has effects), then the ``fstat`` of what
    was opened (the path may have been swapped meanwhile)."""
    check(os.stat(path))
    fd = os.open(path, READ_FLAGS)
    try:
        check(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd
