"""``python -m manifest_crawler.rpc``: the operator's client of the JSON-RPC service."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler import rpc
from manifest_crawler.files import FolderLock, read_lock_record
from tests.crawl import ROOT, read_json, write_filters
from tests.extensions.test_jsonrpc import (
    STEER_FILTERS,
    IdleSpider,
    free_port,
    idle_settings,
    old_manifest,
    slow_config,
    start_crawl,
)


async def run_client(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(rpc.main, list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


STATUS = {
    "spider": "all",
    "state": "running",
    "paused": False,
    "stopping": False,
    "progress": {
        "filters_total": 3,
        "filters_finished": 1,
        "pending": 1,
        "running": 1,
        "done": 1,
        "failed": 0,
        "pages": 7,
        "models": 250,
        "errors": 0,
        "elapsed": 75.2,
        "eta": 150.4,
    },
    "filters": [
        {"source": "civitai", "filter": "Week/All", "status": "done", "pages": 2, "models": 200,
         "max_items": 200, "errors": 0, "end_reason": "max_items"},
        {"source": "huggingface", "filter": "downloads", "status": "running", "pages": 5,
         "models": 50, "max_items": 1000, "errors": 2, "end_reason": ""},
        {"source": "huggingface", "filter": "likes", "status": "pending", "pages": 0,
         "models": 0, "max_items": 1000, "errors": 0, "end_reason": ""},
    ],
}  # fmt: skip


def test_status_is_readable():
    text = rpc.format_status(STATUS)
    assert text.splitlines()[:3] == [
        "Crawl all: running",
        "Filters: 1/3 finished (1 done, 0 failed, 1 running, 1 pending)",
        "Models: 250   pages: 7   errors: 0   elapsed: 1m15s   ETA: 2m30s",
    ]
    assert "done     civitai      Week/All       2     200" in text
    assert "running  huggingface  downloads      5      50  (2 errors)" in text
    assert "likes" not in text
    assert text.endswith("... and 1 pending filters (--all lists them)")
    assert "pending  huggingface  likes" in rpc.format_status(STATUS, show_all=True)


def test_other_outputs():
    assert rpc.format_stats({"b": 2, "a/x": "y"}).splitlines() == [
        f"{'a/x':<48} y",
        f"{'b':<48} 2",
    ]
    assert rpc.format_pause({"changed": True}).startswith("Crawl paused")
    assert rpc.format_pause({"changed": False, "state": "stopping"}) == (
        "Nothing to pause: the crawl is stopping."
    )
    assert rpc.format_unpause({"changed": True}) == "Crawl resumed."
    assert "unfinished filters keep their previous manifests" in rpc.format_stop({"changed": True})
    assert rpc.format_stop({"changed": False}) == "The crawl is already stopping."


def test_usage_and_unreachable(capsys):
    with pytest.raises(SystemExit) as raised:
        rpc.main(["frobnicate"])
    assert raised.value.code == 2
    out, err = io.StringIO(), io.StringIO()
    url = f"http://127.0.0.1:{free_port()}"
    assert rpc.main(["status", "--url", url], out, err) == rpc.EXIT_UNREACHABLE
    assert err.getvalue().startswith(f"error: no JSON-RPC service at {url}")
    assert rpc.main(["status", "--url", "file:///etc/passwd"], out, err) == rpc.EXIT_UNREACHABLE
    for timeout in ("-1", "0", "abc", "nan", "inf"):
        with pytest.raises(SystemExit) as raised:
            rpc.main(["status", "--timeout", timeout])
        assert raised.value.code == 2
    assert "--timeout: '-1' is not a number of seconds above 0" in capsys.readouterr().err


@deferred_f_from_coro_f
async def test_client_against_a_running_crawl(monkeypatch, tmp_path):
    monkeypatch.delenv("JSONRPC_TOKEN", raising=False)
    # As `scrapy crawl` does: the run's folder locked before the crawl, handed to the run.
    lock = FolderLock.acquire(tmp_path)
    running = await start_crawl(
        IdleSpider, idle_settings(JSONRPC_TOKEN="Zq9-secret", MANIFEST_FOLDER_LOCK=lock)
    )
    url = running.url
    folder = str(tmp_path)
    try:
        assert read_lock_record(tmp_path) == {"pid": os.getpid(), "jsonrpc": url}
        code, out, err = await run_client("status", "--url", url)
        assert (code, out) == (rpc.EXIT_ERROR, "")
        assert "-32001" in err and "Zq9" not in err
        # The token goes to the address the crawl recorded, and nowhere else.
        other = f"http://127.0.0.1:{free_port()}"
        code, out, err = await run_client(
            "status", "--dir", folder, "--url", other, "--token", "Zq9-secret"
        )
        assert (code, out) == (rpc.EXIT_USAGE, "")
        assert err == (
            f"error: not sending the token to {other}: the crawl writing into {folder} is the "
            f"only one it goes to, and it records {url} (--dir names the crawl's MANIFEST_DIR)\n"
        )
        code, out, err = await run_client("status", "--token", "Zq9-secret")
        assert code == rpc.EXIT_UNREACHABLE
        assert err.startswith("error: no crawl is running with MANIFEST_DIR=public/manifests")

        code, out, _ = await run_client("status", "--dir", folder, "--token", "Zq9-secret")
        assert code == 0
        assert out.startswith("Crawl idle: running\nFilters: 1/2 finished (1 done")
        assert "done     civitai      Week/All      2       3" in out

        index = await asyncio.to_thread(rpc.get, url, "/", token="Zq9-secret")
        assert index["resources"] == ["crawler", "crawler/stats"]
        with pytest.raises(rpc.RpcError) as raised:
            await asyncio.to_thread(rpc.call, url, "engine", token="Zq9-secret")
        assert (raised.value.code, raised.value.http_status) == (-32601, 200)
        with pytest.raises(rpc.RpcError) as raised:
            await asyncio.to_thread(rpc.get, url, "/crawler/engine", token="Zq9-secret")
        assert (raised.value.code, raised.value.http_status) == (-32004, 404)

        monkeypatch.setenv("JSONRPC_TOKEN", "Zq9-secret")
        code, out, _ = await run_client("stats", "--dir", folder)
        assert code == 0
        assert f"{'manifest/jsonrpc/port':<48} {running.port}" in out.splitlines()

        code, out, _ = await run_client("report", "--dir", folder)
        assert json.loads(out)["filters"][0]["filter"] == "Week/All"

        code, out, _ = await run_client("pause", "--dir", folder)
        assert (code, out.split(":")[0]) == (0, "Crawl paused")
        assert running.crawler.engine.paused
        code, out, _ = await run_client("status", "--dir", folder, "--json")
        assert json.loads(out)["state"] == "paused"
        code, out, _ = await run_client("unpause", "--dir", folder)
        assert (code, out) == (0, "Crawl resumed.\n")
        assert not running.crawler.engine.paused

        # `rpc stats | head -0`: the reader is gone before the client writes; it ends quietly.
        read_end, write_end = os.pipe()
        os.close(read_end)
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "manifest_crawler.rpc",
            "stats",
            "--dir",
            folder,
            "--token",
            "Zq9-secret",
            cwd=ROOT,
            env=CHILD_ENV,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(write_end)
        _, err = await asyncio.wait_for(client.communicate(), 20)
        assert (client.returncode, err) == (0, b"")

        code, out, _ = await run_client("stop", "--dir", folder)
        assert code == 0 and out.startswith("Graceful stop requested")
        await running.finished()
        assert running.crawler.stats.get_value("finish_reason") == "jsonrpc_stop"
        # The run ended: its lock is free and its record names no service any more.
        assert read_lock_record(tmp_path) == {"pid": os.getpid(), "jsonrpc": None}
        code, out, err = await run_client("status", "--dir", folder)
        assert code == rpc.EXIT_UNREACHABLE
        assert "serves no JSON-RPC service" in err
    finally:
        await running.ensure_stopped()


# --- end to end: `scrapy crawl all` in its own process, steered by the client's command line ---


async def client_process(url: str, *argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "manifest_crawler.rpc",
        *argv,
        "--url",
        url,
        cwd=ROOT,
        env=CHILD_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


CHILD_ENV = {
    key: value
    for key, value in os.environ.items()
    if key not in ("JSONRPC_TOKEN", "JSONRPC_URL", "CIVITAI_API_TOKEN", "HF_TOKEN")
} | {"PYTHONPATH": str(ROOT)}


@deferred_f_from_coro_f
async def test_scrapy_crawl_all_steered_from_the_command_line(make_emulator, tmp_path):
    emulator = make_emulator(slow_config())
    out = tmp_path / "out"
    out.mkdir()
    (out / "civitai-Long.json").write_bytes(old_manifest("Long", emulator.civitai_url))
    filters = write_filters(tmp_path / "filters.json", **STEER_FILTERS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "crawl.log"
    with log.open("wb") as log_file:
        crawl = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scrapy",
            "crawl",
            "all",
            "-s",
            "JSONRPC_ENABLED=true",
            "-s",
            f"JSONRPC_PORT={port}",
            "-s",
            f"CIVITAI_API_URL={emulator.civitai_url}",
            "-s",
            f"HF_API_URL={emulator.hf_url}",
            "-s",
            f"MANIFEST_DIR={out}",
            "-s",
            f"FILTERS_FILE={filters}",
            "-s",
            "AUTOTHROTTLE_ENABLED=false",
            cwd=ROOT,
            env=CHILD_ENV,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        for _ in range(100):
            code, text, _ = await client_process(url, "status")
            if code == 0 and "Filters: 2/3 finished" in text:
                break
            assert crawl.returncode is None, log.read_text()
            await asyncio.sleep(0.1)
        assert code == 0, log.read_text()
        assert text.startswith("Crawl all: running\nFilters: 2/3 finished (2 done, 0 failed, 1")
        assert "running  civitai      Long " in text

        code, text, _ = await client_process(url, "pause")
        assert (code, text.split(":")[0]) == (0, "Crawl paused")
        code, text, _ = await client_process(url, "status", "--json")
        assert json.loads(text)["paused"] is True
        code, text, _ = await client_process(url, "unpause")
        assert (code, text) == (0, "Crawl resumed.\n")
        code, text, _ = await client_process(url, "stats")
        assert code == 0 and f"{'manifest/jsonrpc/port':<48} {port}" in text.splitlines()

        code, text, _ = await client_process(url, "stop")
        assert code == 0 and text.startswith("Graceful stop requested")
        # Stopped with a filter unfinished: what finished is written, and the run fails.
        assert await asyncio.wait_for(crawl.wait(), 30) == 1, log.read_text()
    finally:
        if crawl.returncode is None:
            crawl.kill()
            await crawl.wait()
    text = log.read_text()
    assert f"JSON-RPC service listening on {url}" in text
    assert "Crawl paused over JSON-RPC" in text and "Crawl resumed over JSON-RPC" in text
    assert "Closing spider (jsonrpc_stop)" in text
    assert (out / "civitai-Long.json").read_bytes() == old_manifest("Long", emulator.civitai_url)
    assert len(read_json(out / "civitai-Quick.json")["models"]) == 40
    assert len(read_json(out / "hf-Quick.json")["models"]) == 30
