"""files.py: opening what the run reads without blocking, and the folder's lock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from manifest_crawler.files import (
    LOCK_FILE,
    FolderLock,
    FolderLocked,
    NotARegularFile,
    non_regular,
    open_regular,
    read_lock_record,
)


def test_open_regular_refuses_without_blocking_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # a plain open() for reading would wait for a writer forever
    with pytest.raises(NotARegularFile) as refused:
        open_regular(fifo)
    assert str(refused.value) == f"{fifo} is a FIFO (named pipe), not a regular file"
    with pytest.raises(NotARegularFile, match="is a folder"):
        open_regular(tmp_path)
    with pytest.raises(NotARegularFile, match="character device"):
        open_regular("/dev/zero")  # endless
    (tmp_path / "ok.json").write_bytes(b"{}")
    with open_regular(tmp_path / "ok.json") as file:
        assert file.read() == b"{}"
    (tmp_path / "link.json").symlink_to(fifo)
    assert non_regular(tmp_path / "link.json") == "a FIFO (named pipe)"
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nothing")
    assert non_regular(tmp_path / "dangling.json") is None
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing.json")


def test_one_lock_per_folder_naming_its_holder(tmp_path):
    lock = FolderLock.acquire(tmp_path)
    assert read_lock_record(tmp_path) == {"pid": os.getpid(), "jsonrpc": None}
    # Another process (flock is per open file: the same process would conflict alike).
    probe = (
        "import sys; from pathlib import Path; from manifest_crawler.files import *\n"
        "try:\n    FolderLock.acquire(Path(sys.argv[1]))\n"
        "except FolderLocked as exc:\n    print(exc.pid, exc)\n"
    )
    held = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert (
        held.stdout == f"{os.getpid()} another run (pid {os.getpid()}) is writing into {tmp_path}\n"
    )
    with pytest.raises(FolderLocked):
        FolderLock.acquire(tmp_path)
    lock.record(jsonrpc="http://127.0.0.1:6081")
    assert read_lock_record(tmp_path) == {"pid": os.getpid(), "jsonrpc": "http://127.0.0.1:6081"}
    lock.record(jsonrpc=None)
    # Shorter than before: padded, still one JSON object.
    assert read_lock_record(tmp_path) == {"pid": os.getpid(), "jsonrpc": None}
    lock.release()
    assert not lock.held
    again = FolderLock.acquire(tmp_path)
    again.release()


def test_the_lock_file_must_be_a_regular_file(tmp_path):
    (tmp_path / LOCK_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotARegularFile, match="symbolic link"):
        FolderLock.acquire(tmp_path)
    (tmp_path / LOCK_FILE).unlink()
    os.mkfifo(tmp_path / LOCK_FILE)
    with pytest.raises(NotARegularFile, match="FIFO"):
        FolderLock.acquire(tmp_path)
    assert read_lock_record(tmp_path) is None
    (tmp_path / LOCK_FILE).unlink()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / LOCK_FILE))
        with pytest.raises(NotARegularFile, match="socket"):
            FolderLock.acquire(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[1]", b'{"pid": "1"}', b'{"pid": true}', b'{"pid": 1, "jsonrpc": 5}',
     b'{"pid": 1, "jsonrpc": "' + b"x" * 5000 + b'"}'],
)  # fmt: skip
def test_a_lock_record_not_of_this_project_is_no_record(tmp_path, content):
    (tmp_path / LOCK_FILE).write_bytes(content)
    assert read_lock_record(tmp_path) is None
