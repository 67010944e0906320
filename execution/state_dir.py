"""The executor's state dir: one executor at a time, nothing written through a link, no history lost.

Usage::

    state = StateDir.acquire("state")   # lock, check the entries, drop leftover temp files, reserve space
    try:
        state.rotate_journal()          # a non-empty journal.jsonl becomes journal.20261130T091500Z.jsonl
        journal = Journal(state.path(JOURNAL_FILE))
        ...
        state.release_reserve()         # on a full disk: room for the last diagnostics.json
    finally:
        state.release()                 # unlocks; the lock file stays (deleting it would race)

What makes the dir unusable at start-up raises :class:`StateDirError`, one line naming the path
and what is wrong (the CLI exits 2): another executor holds the lock (its pid and since when),
or an entry the executor writes is a symbolic link, FIFO, device, socket or directory.
The kernel drops the lock when its holder dies, however it dies.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import os
import stat
from datetime import datetime, timezone
from typing import Callable, Optional, Tuple

from execution.atomic import FILE_MODE, remove_leftover_temp_files
from execution.clock import wall_clock
from execution.diagnostics_document import DIAGNOSTICS_FILE, JOURNAL_FILE, LOCK_FILE, POSITIONS_FILE, to_iso
from execution.files import file_kind

RESERVE_FILE = ".reserve"
RESERVE_BYTES = 1 << 20  # held from start to a failure, then freed for the last diagnostics.json and positions.json
# The journal stops once it leaves less than this free, so the state files (diagnostics.json is 167 KiB at
# its cardinality caps) are still written while it runs: on a filling disk the journal is the first to stop.
HEADROOM_BYTES = 256 * 1024
WRITTEN_ENTRIES = (LOCK_FILE, JOURNAL_FILE, DIAGNOSTICS_FILE, POSITIONS_FILE, RESERVE_FILE)
ROTATED_STAMP = "%Y%m%dT%H%M%SZ"  # journal.20261130T091500Z.jsonl: the UTC start of the run that moved it aside

# What os.open says when O_NOFOLLOW | O_NONBLOCK meets a link, a FIFO without reader, a socket or a folder.
_NOT_A_FILE_ERRNOS = (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EOPNOTSUPP)


class StateDirError(Exception):
    """The state dir cannot be used as it is; the message is one line naming the path and why."""


def _kind(path: str, mode: int) -> str:
    if stat.S_ISLNK(mode):
        try:
            return f"{file_kind(mode)} to {os.readlink(path)!r}"
        except OSError:
            pass
    return file_kind(mode)


def _refused(path: str, mode: int) -> StateDirError:
    return StateDirError(f"{path}: is {_kind(path, mode)}, not a regular file; refusing to write through it")


def check_entry(path: str) -> None:
    """Raise StateDirError when ``path`` exists as anything but a regular file (``lstat``: nothing is opened)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise _refused(path, mode)


def open_regular(path: str, flags: int, mode: int = FILE_MODE) -> Tuple[int, os.stat_result]:
    """``os.open`` for writing a state file: never through a link, never blocking on a FIFO, never opening a
    device, only a regular file with no second name; made ``mode`` exactly when it is ours. The fd and its ``fstat``."""
    check_entry(path)  # lstat: what is not a regular file is refused before it is opened
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in _NOT_A_FILE_ERRNOS:
            check_entry(path)  # says what it is (swapped in since the lstat)
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refused(path, st.st_mode)
        if st.st_nlink > 1:
            raise StateDirError(f"{path}: has {st.st_nlink} hard links; refusing to write into a file that has another name")
        os.set_blocking(fd, True)
        if st.st_uid == os.geteuid():
            os.fchmod(fd, mode)  # os.open's mode passes through the umask; make it exact
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def fsync_dir(folder: str) -> None:
    """Make renames and new names in ``folder`` durable; best effort (some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _holder(fd: int) -> Tuple[str, str]:
    """The pid and since-when a lock holder wrote, or "unknown" (it may not have written them yet)."""
    try:
        words = os.pread(fd, 200, 0).decode("ascii", "replace").split()
    except OSError:
        words = []
    pid = words[0] if words and words[0].isdigit() else "unknown"
    since = words[1] if len(words) > 1 and words[1].isprintable() else "unknown"
    return pid, since


class StateDir:
    """A state dir this process holds: locked, its entries checked, space reserved for a failure."""

    def __init__(self, folder: str, lock_fd: int, started_at: float) -> None:
        self.folder = folder
        self.started_at = started_at
        self.rotated_journal: Optional[str] = None
        self._lock_fd: Optional[int] = lock_fd

    @classmethod
    def acquire(cls, folder: str, clock: Callable[[], float] = wall_clock,
                reserve_bytes: int = RESERVE_BYTES) -> "StateDir":
        """Lock ``folder`` (an existing folder), check what it holds, clean up and reserve; StateDirError if not."""
        started_at = clock()
        lock_path = os.path.join(folder, LOCK_FILE)
        try:
            fd, _ = open_regular(lock_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise StateDirError(f"{lock_path}: cannot open ({exc.strerror})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, since = _holder(fd)
                raise StateDirError(f"{folder}: another executor is running on this state dir "
                                    f"(pid {pid}, since {since}; it holds {lock_path})") from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {to_iso(started_at)}\n".encode("ascii"), 0)
                for name in WRITTEN_ENTRIES[1:]:
                    check_entry(os.path.join(folder, name))
                remove_leftover_temp_files(folder, (DIAGNOSTICS_FILE, POSITIONS_FILE))
            except OSError as exc:
                raise StateDirError(f"{exc.filename or lock_path}: cannot prepare the state dir ({exc.strerror})") from None
            _reserve(os.path.join(folder, RESERVE_FILE), reserve_bytes)
        except OSError as exc:  # flock itself refused (a file system without locks)
            os.close(fd)
            raise StateDirError(f"{lock_path}: cannot lock ({exc.strerror})") from None
        except BaseException:
            os.close(fd)
            raise
        return cls(folder, fd, started_at)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def rotate_journal(self) -> Optional[str]:
        """Move a non-empty journal.jsonl aside as ``journal.<UTC start>[-n].jsonl``; its new path, or None."""
        path = self.path(JOURNAL_FILE)
        check_entry(path)
        try:
            if os.lstat(path).st_size == 0:
                return None
        except FileNotFoundError:
            return None
        stem, ext = os.path.splitext(JOURNAL_FILE)
        stamp = datetime.fromtimestamp(self.started_at, timezone.utc).strftime(ROTATED_STAMP)
        for n in itertools.count():  # we hold the lock: nobody else names files here meanwhile
            target = self.path(f"{stem}.{stamp}{f'-{n}' if n else ''}{ext}")
            if not os.path.lexists(target):
                break
        try:
            os.rename(path, target)
        except OSError as exc:
            raise StateDirError(f"{path}: cannot move it aside to {target} ({exc.strerror})") from None
        fsync_dir(self.folder)
        self.rotated_journal = target
        return target

    def release_reserve(self) -> None:
        """Free the reserved space (on a full disk, right before the failure write)."""
        try:
            os.unlink(self.path(RESERVE_FILE))
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Free the reserve and unlock; idempotent. The lock file stays: deleting it races a starting executor."""
        if self._lock_fd is None:
            return
        try:
            self.release_reserve()
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None


def _reserve(path: str, size: int) -> None:
    if size <= 0:
        return
    try:
        fd, _ = open_regular(path, os.O_WRONLY | os.O_CREAT)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            os.unlink(path)  # hold nothing on a disk that is already full
        except OSError:
            pass
        raise StateDirError(f"{path}: cannot reserve {size} bytes for the last state write ({exc.strerror})") from None
