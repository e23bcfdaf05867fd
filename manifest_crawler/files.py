"""The files a run reads and the folder it writes: never a blocking open, and one run per folder.

- ``open_regular`` opens a file the run reads (a previous manifest, filters.json) without
  blocking on what is not a regular file: a FIFO at a manifest's name would otherwise hang the
  run's close for good (nothing ever writes into it), a device could be endless.
- ``FolderLock`` is the exclusive ``flock`` a run holds on ``MANIFEST_DIR/LOCK_FILE`` for its
  whole life: a second run into the same folder is refused at once, naming the holder's pid.
  The kernel drops the lock with its process, so a killed run never blocks the next one. The
  file holds the holder's pid and, while its JSON-RPC service listens, that service's address:
  the one place the ``rpc`` client sends its token to.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from pathlib import Path
from typing import Any, BinaryIO

import orjson

#: In MANIFEST_DIR; its leading dot keeps it out of every manifest listing (the site's too).
LOCK_FILE = ".manifest-crawler.lock"
#: A lock file's record is a small JSON object; more is not one this project wrote.
_MAX_RECORD_BYTES = 4096
#: How long a refused run waits for the holder to write its pid (it does so at once).
_HOLDER_WAIT = 1.0


class NotARegularFile(OSError):
    """A name the run reads or replaces holds a FIFO, a socket, a device or a folder."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        self.message = f"{os.fspath(path)} is {kind}, not a regular file"
        super().__init__(self.message)
        self.filename = os.fspath(path)
        self.kind = kind

    def __str__(self) -> str:
        return self.message


class FolderLocked(Exception):
    """Another process holds the folder's lock."""

    def __init__(self, folder: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "a process whose pid it has not written yet"
        super().__init__(f"another run ({holder}) is writing into {folder}")
        self.folder = folder
        self.pid = pid


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, for a message: "a FIFO", "a folder", …"""
    for test, kind in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``open(path, "rb")`` that raises NotARegularFile instead of opening anything else.

    O_NONBLOCK makes the open itself return at once whatever the path is (a FIFO with no
    writer blocks a plain open); the descriptor is then checked with fstat, so a file swapped
    in between a check and the open is still refused. FileNotFoundError and the other OS
    errors are raised as ``open`` raises them.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(path, file_kind(mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def non_regular(path: Path) -> str | None:
    """What is at ``path`` when it is there and not a regular file (a symbolic link is judged
    by what it points to; a dangling one is no file); None otherwise."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


class FolderLock:
    """The run's exclusive lock on its output folder (see the module docstring)."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._fd: int | None = fd
        self._record: dict[str, Any] = {"pid": os.getpid(), "jsonrpc": None}
        self._written = 0

    def __copy__(self) -> FolderLock:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FolderLock:
        # A handle, not a value: Scrapy copies its settings, and the copy must be this lock.
        return self

    @classmethod
    def acquire(cls, folder: Path) -> FolderLock:
        """Lock ``folder`` (which must exist) or raise FolderLocked naming the holder;
        NotARegularFile or another OSError when the lock file cannot be opened for writing."""
        path = folder / LOCK_FILE
        # O_NOFOLLOW: a symbolic link planted at the name is refused, not followed.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as exc:
            # A symbolic link (ELOOP) or a socket (ENXIO) is named as what it is.
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                mode = stat.S_IFREG
            if not stat.S_ISREG(mode):
                raise NotARegularFile(path, file_kind(mode)) from None
            raise exc from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise NotARegularFile(path, file_kind(mode))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderLocked(folder, _holder_pid(fd)) from None
            lock = cls(folder, fd)
            os.ftruncate(fd, 0)
            lock._write()
            return lock
        except BaseException:
            os.close(fd)
            raise

    @property
    def held(self) -> bool:
        return self._fd is not None

    def record(self, **fields: Any) -> None:
        """Write ``fields`` (JSON values) beside the pid, e.g. ``jsonrpc="http://…"``."""
        self._record.update(fields)
        if self._fd is not None:
            self._write()

    def _write(self) -> None:
        assert self._fd is not None
        data = orjson.dumps(self._record)
        # Padded to what was there, never truncated: a reader sees the old record or the new
        # one (JSON allows the trailing spaces), never an empty file.
        os.pwrite(self._fd, data.ljust(self._written), 0)
        self._written = max(self._written, len(data))

    def release(self) -> None:
        """Unlock (the file stays: removing it would race a run opening it now)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                self._record["jsonrpc"] = None
                os.pwrite(fd, orjson.dumps(self._record).ljust(self._written), 0)
            os.close(fd)


def _holder_pid(fd: int) -> int | None:
    """The pid the lock's holder wrote. A holder writes it just after taking the lock, so the
    file may still be empty or hold the previous run's record for an instant: read again,
    for at most _HOLDER_WAIT seconds, until it names a live process."""
    deadline = time.monotonic() + _HOLDER_WAIT
    while True:
        record = _parse_record(os.pread(fd, _MAX_RECORD_BYTES, 0))
        if record is not None and _alive(record["pid"]):
            return int(record["pid"])
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def read_lock_record(folder: Path) -> dict[str, Any] | None:
    """The record of ``folder``'s lock file (``{"pid": int, "jsonrpc": str | None}``), or None
    when there is none or it is not one this project wrote."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(folder / LOCK_FILE, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return _parse_record(os.pread(fd, _MAX_RECORD_BYTES + 1, 0))
    finally:
        os.close(fd)


def _parse_record(data: bytes) -> dict[str, Any] | None:
    if len(data) > _MAX_RECORD_BYTES:
        return None
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    pid, jsonrpc = record.get("pid"), record.get("jsonrpc")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if jsonrpc is not None and not isinstance(jsonrpc, str):
        return None
    return {"pid": pid, "jsonrpc": jsonrpc}
