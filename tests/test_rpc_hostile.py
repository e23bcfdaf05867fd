"""The ``rpc`` client stays bounded whatever answers it: a fixed size of answer, a deadline for
the whole exchange, a shape for every answer, one error line, names with their control
characters escaped, and the token only for the address the crawl records. The client runs as
``python -m manifest_crawler.rpc`` against hostile servers on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler import rpc
from manifest_crawler.files import read_lock_record
from tests.crawl import ROOT, crawling, setting_args, write_filters
from tests.extensions.test_jsonrpc import STEER_FILTERS, free_port, slow_config

CHILD_ENV = {
    key: value
    for key, value in os.environ.items()
    if key not in ("JSONRPC_TOKEN", "MANIFEST_DIR", "CIVITAI_API_TOKEN", "HF_TOKEN")
} | {"PYTHONPATH": str(ROOT)}

Body = bytes | Callable[[], AsyncIterator[bytes]]


@dataclass
class Hostile:
    """An HTTP/1.1 server on loopback answering every request with ``head`` and ``body``
    (bytes, or chunks an async generator yields); it keeps every request's raw bytes."""

    head: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    body: Body = b""
    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self, port: int = 0) -> Hostile:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            self.received.append(head + await reader.readexactly(length))
            if isinstance(self.body, bytes):
                writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(self.body))
                writer.write(self.body)
            else:
                writer.write(self.head + b"\r\n")
                async for chunk in self.body():
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def client(*argv: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """``python -m manifest_crawler.rpc *argv``: (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "manifest_crawler.rpc",
        *argv,
        cwd=ROOT,
        env=CHILD_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def answer(result: object, call_id: object = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": call_id}).encode()


STATUS_OK = {
    "spider": "all",
    "state": "running",
    "progress": None,
    "filters": [{"source": "civitai", "filter": "a", "status": "done", "pages": 1, "models": 2}],
}

#: name -> (body, what the one error line says)
HOSTILE_ANSWERS: dict[str, tuple[bytes, str]] = {
    "not-json": (b"<html>hello</html>", "answered something other than JSON"),
    "nan": (b'{"jsonrpc": "2.0", "result": NaN, "id": 1}', "something other than JSON"),
    "deep": (b"[" * 200_000 + b"]" * 200_000, "something other than JSON"),
    "a-list": (b"[1, 2, 3]", "no JSON-RPC 2.0 answer"),
    "no-version": (b'{"result": {}, "id": 1}', "no JSON-RPC 2.0 answer"),
    "wrong-id": (answer(STATUS_OK, call_id=999), "not the answer to this call"),
    "neither": (b'{"jsonrpc": "2.0", "id": 1}', "not the answer to this call"),
    "both": (
        b'{"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}}',
        "JSON-RPC error 1: x",
    ),
    "error-of-no-shape": (b'{"jsonrpc": "2.0", "id": 1, "error": "boom"}', "no JSON-RPC 2.0"),
    "filters-as-text": (answer({**STATUS_OK, "filters": "all of them"}), "not of its shape"),
    "pages-as-text": (
        answer({**STATUS_OK, "filters": [{**STATUS_OK["filters"][0], "pages": "many"}]}),
        "not of its shape",
    ),
    "progress-missing-keys": (answer({**STATUS_OK, "progress": {"pages": 1}}), "not of its shape"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ANSWERS))
@deferred_f_from_coro_f
async def test_an_answer_of_no_expected_shape_is_one_error_line(case):
    body, expected = HOSTILE_ANSWERS[case]
    server = await Hostile(body=body).start()
    try:
        code, out, err = await client("status", "--url", server.url)
    finally:
        await server.stop()
    assert (code, out) == (rpc.EXIT_ERROR, "")
    assert err.startswith("error: JSON-RPC error ") and expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@deferred_f_from_coro_f
async def test_names_are_printed_with_their_control_characters_escaped():
    hostile = "\x1b]0;owned\x07\x1b[2J\u202egnp.exe\r\nforged line"
    status = {**STATUS_OK, "spider": hostile, "filters": [{**STATUS_OK["filters"][0]}]}
    status["filters"][0]["filter"] = hostile
    server = await Hostile(body=answer(status)).start()
    try:
        code, out, err = await client("status", "--url", server.url)
        assert (code, err) == (0, "")
        for shown in out.splitlines():
            assert not any(ord(char) < 32 or char == "\u202e" for char in shown)
        assert out.startswith(
            "Crawl \\x1b]0;owned\\x07\\x1b[2J\\u202egnp.exe\\x0d\\x0aforged line:"
        )
        assert len(out.splitlines()) == 4  # the crawl line, a blank, the header, one filter

        server.body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "\x1b[31mred\nsecond"}}
        ).encode()
        code, out, err = await client("status", "--url", server.url)
        assert (code, out) == (rpc.EXIT_ERROR, "")
        assert err == "error: JSON-RPC error -1: \\x1b[31mred\\x0asecond\n"

        server.body = answer({"a\x1bkey": "va\nlue"})
        code, out, _ = await client("stats", "--url", server.url)
        assert code == 0 and out.startswith("a\\x1bkey") and out.rstrip().endswith("va\\x0alue")
    finally:
        await server.stop()


async def _endless() -> AsyncIterator[bytes]:
    yield b'{"jsonrpc": "2.0", "id": 1, "result": {"filters": ['
    while True:
        yield b'{"filter": "x", "status": "done"}, ' * 1000


async def _trickle() -> AsyncIterator[bytes]:
    while True:
        yield b" "
        await asyncio.sleep(0.2)


@deferred_f_from_coro_f
async def test_an_endless_body_stops_at_the_size_cap_and_a_trickle_at_the_deadline():
    server = await Hostile(body=_endless).start()
    try:
        code, out, err = await client("status", "--url", server.url)
        assert (code, out) == (rpc.EXIT_ERROR, "")
        assert (
            err
            == f"error: JSON-RPC error -32603: the service's answer is larger than {2**20} bytes\n"
        )

        # One byte every 0.2 s: each read is quick, the exchange never ends by itself.
        server.body = _trickle
        code, out, err = await client("status", "--url", server.url, "--timeout", "2")
        assert (code, out) == (rpc.EXIT_UNREACHABLE, "")
        assert err == f"error: no whole answer from {server.url} within 2 s\n"

        # Headers that never end: the same deadline.
        server.head = b"HTTP/1.1 200 OK\r\n"
        server.body = _headers_forever
        code, out, err = await client("status", "--url", server.url, "--timeout", "2")
        assert code in (rpc.EXIT_UNREACHABLE, rpc.EXIT_ERROR) and out == ""
        assert err.count("\n") == 1 and "Traceback" not in err
    finally:
        await server.stop()


async def _headers_forever() -> AsyncIterator[bytes]:
    while True:
        yield b"X-Filler: 1\r\n"
        await asyncio.sleep(0.01)


# --- the token goes only to the address the crawl records ---------------------------------------


def steered(emulator, tmp_path, jsonrpc_port: str | int) -> list[str]:
    """``scrapy crawl all`` of STEER_FILTERS (one runs far longer than any test), JSON-RPC on."""
    return [
        "all",
        *setting_args(
            JSONRPC_ENABLED=True,
            JSONRPC_PORT=jsonrpc_port,
            CIVITAI_API_URL=emulator.civitai_url,
            HF_API_URL=emulator.hf_url,
            MANIFEST_DIR=tmp_path / "out",
            FILTERS_FILE=write_filters(tmp_path / "filters.json", **STEER_FILTERS),
            AUTOTHROTTLE_ENABLED=False,
        ),
    ]


@deferred_f_from_coro_f
async def test_a_squatted_port_never_gets_the_token(make_emulator, tmp_path):
    """A process holds the first port of JSONRPC_PORT: the crawl binds the next one, records it
    in its lock file, and the client (given the crawl's folder) sends its token there; the
    squatter, answering like a service, receives nothing. Named by --url, the squatter is
    refused the token too."""
    port = free_port()
    squatter = await Hostile(body=answer(STATUS_OK)).start(port)
    emulator = make_emulator(slow_config())
    out, log = tmp_path / "out", tmp_path / "crawl.log"
    token = ("--token", "Sq-secret-7")
    crawl_args = steered(emulator, tmp_path, f"{port}-{port + 20}")
    try:
        async with crawling(log, *crawl_args, env={"JSONRPC_TOKEN": token[1]}) as crawl:
            record = None
            for _ in range(200):
                record = read_lock_record(out)
                if record is not None and record["jsonrpc"]:
                    break
                assert crawl.returncode is None, log.read_text()
                await asyncio.sleep(0.05)
            assert record is not None and record["pid"] == crawl.pid
            assert record["jsonrpc"] != squatter.url, log.read_text()

            code, text, err = await client("status", "--dir", str(out), *token)
            assert code == 0, err
            assert text.startswith("Crawl all: running")
            code, text, err = await client(
                "status", "--dir", str(out), "--url", squatter.url, *token
            )
            assert (code, text) == (rpc.EXIT_USAGE, "")
            assert err.startswith(f"error: not sending the token to {squatter.url}")
            code, text, _ = await client("stop", "--dir", str(out), *token)
            assert code == 0
            assert await asyncio.wait_for(crawl.wait(), 60) == 1, log.read_text()
    finally:
        await squatter.stop()
    assert squatter.received == []
    text = log.read_text()
    assert f"port {port} is taken by another process" in text
    assert token[1] not in text


@deferred_f_from_coro_f
async def test_a_single_squatted_port_fails_the_service_loudly_and_the_client_sends_nothing(
    make_emulator, tmp_path
):
    port = free_port()
    squatter = await Hostile(body=answer(STATUS_OK)).start(port)
    emulator = make_emulator(slow_config())
    out, log = tmp_path / "out", tmp_path / "crawl.log"
    try:
        async with crawling(log, *steered(emulator, tmp_path, port)) as crawl:
            for _ in range(200):
                if "JSON-RPC service not started" in log.read_text():
                    break
                assert crawl.returncode is None, log.read_text()
                await asyncio.sleep(0.05)
            assert read_lock_record(out) == {"pid": crawl.pid, "jsonrpc": None}
            code, text, err = await client("status", "--dir", str(out), "--token", "t")
            assert (code, text) == (rpc.EXIT_UNREACHABLE, "")
            assert f"the crawl writing into {out} (pid {crawl.pid}) serves no JSON-RPC" in err
            squatted = f"http://127.0.0.1:{port}"
            code, text, _ = await client(
                "status", "--dir", str(out), "--url", squatted, "--token", "t"
            )
            assert (code, text) == (rpc.EXIT_USAGE, "")
            crawl.terminate()
            await asyncio.wait_for(crawl.wait(), 60)
    finally:
        await squatter.stop()
    assert squatter.received == []
    lines = [line for line in log.read_text().splitlines() if "service not started" in line]
    assert len(lines) == 1 and f"{port}" in lines[0]


def test_the_record_of_a_process_gone_is_no_address(tmp_path):
    """A crawl killed with its lock file in place: its pid is gone, so is its service."""
    import subprocess

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / ".manifest-crawler.lock").write_text(
        json.dumps({"pid": int(gone.stdout), "jsonrpc": "http://127.0.0.1:1"})
    )
    out, err = io.StringIO(), io.StringIO()
    assert rpc.main(["status", "--dir", str(tmp_path), "--token", "t"], out, err) == (
        rpc.EXIT_UNREACHABLE
    )
    assert err.getvalue().startswith(f"error: no crawl is running with MANIFEST_DIR={tmp_path}")
