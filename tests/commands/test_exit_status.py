"""What a site build can trust: real `scrapy crawl` processes whose writes fail, that are
interrupted, or that are given bad input; the exit status and what stays on disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler import settings as project_settings
from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.files import LOCK_FILE
from tests.crawl import ROOT, crawl_env, read_json, setting_args, start_crawl

#: Two filters, one per source: a run of them takes about a second offline.
TWO = "filter/loras,likes"


async def run_crawl(*args: str, umask: int = 0o022) -> tuple[int, str]:
    """``scrapy crawl *args`` as a build runs it, under ``umask``: (exit status, stderr)."""
    process = await start_crawl(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=lambda: os.umask(umask),
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


def offline(folder: Path, *extra: str) -> list[str]:
    return [
        "all",
        "-a",
        f"filters={TWO}",
        *setting_args(MANIFEST_OFFLINE=True, MANIFEST_DIR=folder),
        *extra,
    ]


def against(emulator, folder: Path, *extra: str) -> list[str]:
    """``offline()``'s two filters, crawled from ``emulator`` (whose log shows every request)."""
    return [
        "all",
        "-a",
        f"filters={TWO}",
        *setting_args(
            CIVITAI_API_URL=emulator.civitai_url, HF_API_URL=emulator.hf_url, MANIFEST_DIR=folder
        ),
        *extra,
    ]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` but the lock file (each run writes its pid there)."""
    return {
        path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.name != LOCK_FILE
    }


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def assert_one_error_line(log: str, *fragments: str) -> None:
    assert "Traceback" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if all(f in line for f in fragments)]
    assert len(lines) == 1, log[-3000:]


# --- Failed writes ------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_a_read_only_folder_exits_2_before_any_request_and_keeps_every_file(
    make_emulator, tmp_path
):
    with tmpfs(tmp_path / "ro", "8m") as folder:
        code, log = await run_crawl(*offline(folder))
        assert code == 0, log[-3000:]
        before = snapshot(folder)
        remount_read_only(folder)
        emulator = make_emulator(EmulatorConfig(civitai_models=100, hf_models=100))
        code, log = await run_crawl(*against(emulator, folder))
        assert code == 2, log[-3000:]
        assert log == f"error: MANIFEST_DIR={folder}: not writable (a read-only file system)\n"
        assert emulator.log == []
        assert snapshot(folder) == before


@deferred_f_from_coro_f
async def test_a_regular_file_as_the_folder_exits_2_naming_it_before_any_request(
    make_emulator, tmp_path
):
    emulator = make_emulator(EmulatorConfig(civitai_models=100, hf_models=100))
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("a file")
    for folder in (not_a_folder, not_a_folder / "manifests"):
        code, log = await run_crawl(*against(emulator, folder))
        assert code == 2, log[-3000:]
        assert log == (
            f"error: MANIFEST_DIR={folder}: {not_a_folder} is a regular file, not a folder\n"
        )
    assert emulator.log == []
    assert not_a_folder.read_text() == "a file"


@deferred_f_from_coro_f
async def test_a_full_disk_leaves_the_previous_set_whole_and_exits_1(tmp_path):
    with tmpfs(tmp_path / "small", "4m") as folder:
        code, log = await run_crawl(*offline(folder, "-s", "MANIFEST_MAX_ITEMS=20"))
        assert code == 0, log[-3000:]
        before = snapshot(folder)
        # Room for a few of the next run's files, not for all of them.
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
        with (folder / "filler").open("wb") as filler:
            filler.write(b"\0" * (free - 64 * 1024))
        before["filler"] = (folder / "filler").read_bytes()
        code, log = await run_crawl(*offline(folder, "-s", "MANIFEST_MAX_ITEMS=300"))
        assert code == 1, log[-3000:]
        assert_one_error_line(log, "cannot write", "No space left on device")
        # No mixed set: every previous file byte for byte, no temporary left.
        assert snapshot(folder) == before


@deferred_f_from_coro_f
async def test_a_failing_close_handler_exits_1_in_one_line(tmp_path):
    extensions = {**project_settings.EXTENSIONS, f"{__name__}.FailingClose": 999}
    code, log = await run_crawl(
        *offline(tmp_path, *setting_args(EXTENSIONS=json.dumps(extensions)))
    )
    assert code == 1, log[-3000:]
    assert_one_error_line(log, "Error caught on signal handler", "OSError: close went wrong")


class FailingClose:
    @classmethod
    def from_crawler(cls, crawler):
        from scrapy import signals

        extension = cls()
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_closed(self) -> None:
        raise OSError("close went wrong")


# --- Modes --------------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_files_and_folders_get_the_modes_of_the_umask(tmp_path):
    folder = tmp_path / "new" / "manifests"
    jobdir = tmp_path / "job"
    code, log = await run_crawl(*offline(folder, *setting_args(JOBDIR=jobdir)), umask=0o022)
    assert code == 0, log[-3000:]
    files = sorted(folder.iterdir())
    # Four documents, run-report.json and the run's lock file.
    assert len(files) == 6 and (folder / LOCK_FILE) in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(jobdir.stat().st_mode) == 0o700

    code, log = await run_crawl(
        *offline(tmp_path / "group", "-s", "MANIFEST_MAX_ITEMS=5"), umask=0o002
    )
    assert code == 0, log[-3000:]
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "group").iterdir()} == {0o664}


# --- Interrupted runs ---------------------------------------------------------------------


async def _interrupted(make_emulator, tmp_path, *signals: int) -> tuple[int, str, Path]:
    emulator = make_emulator(EmulatorConfig(faults=FaultConfig(latency=0.4)))
    out = tmp_path / "out"
    log_path = tmp_path / "crawl.log"
    args = setting_args(
        CIVITAI_API_URL=emulator.civitai_url,
        HF_API_URL=emulator.hf_url,
        MANIFEST_DIR=out,
        MANIFEST_MAX_ITEMS=400,
        AUTOTHROTTLE_ENABLED=False,
    )
    with log_path.open("wb") as log_file:
        process = await start_crawl("all", *args, stdout=log_file, stderr=log_file)
    try:
        # Some pages answered: some filters are under way.
        for _ in range(300):
            if sum(1 for record in emulator.log if record.finished) >= 20:
                break
            await asyncio.sleep(0.05)
        for number in signals:
            process.send_signal(number)
            await asyncio.sleep(0.05)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, log_path.read_text(), out


@pytest.mark.parametrize(
    "signals", [(signal.SIGTERM,), (signal.SIGINT,)], ids=["SIGTERM", "SIGINT"]
)
@deferred_f_from_coro_f
async def test_a_signal_stops_the_run_writes_what_finished_and_exits_1(
    make_emulator, tmp_path, signals
):
    code, log, out = await _interrupted(make_emulator, tmp_path, *signals)
    assert code == 1, log[-3000:]
    report = read_json(out / "run-report.json")
    assert report["exit_code"] == 1
    assert report["totals"]["failed"] > 0
    # The summary is the end of the log.
    assert "NOT refreshed" in log.rsplit("Manifest run summary", 1)[1]


@deferred_f_from_coro_f
async def test_sigint_twice_changes_nothing_and_exits_non_zero(make_emulator, tmp_path):
    code, log, out = await _interrupted(make_emulator, tmp_path, signal.SIGINT, signal.SIGINT)
    assert code != 0, log[-3000:]
    assert "forcing unclean shutdown" in log
    assert not out.exists() or snapshot(out) == {}


# --- Bad input ----------------------------------------------------------------------------

BAD_INPUT = {
    "max-items-negative": (
        ["-s", "MANIFEST_MAX_ITEMS=-5"],
        "MANIFEST_MAX_ITEMS=-5: must be an integer",
    ),
    "max-items-text": (["-s", "MANIFEST_MAX_ITEMS=abc"], "MANIFEST_MAX_ITEMS=abc"),
    "shrink-above-1": (
        ["-s", "MANIFEST_MAX_SHRINK=2"],
        "MANIFEST_MAX_SHRINK=2: must be a number from 0 to 1",
    ),
    "shrink-negative": (["-s", "MANIFEST_MAX_SHRINK=-1"], "MANIFEST_MAX_SHRINK=-1"),
    "retry-times-float": (["-s", "MANIFEST_RETRY_TIMES=1.5"], "MANIFEST_RETRY_TIMES=1.5"),
    "boolean": (["-s", "MANIFEST_STRICT=maybe"], "MANIFEST_STRICT=maybe: must be a boolean"),
    "offline-boolean": (["-s", "MANIFEST_OFFLINE=yes please"], "MANIFEST_OFFLINE=yes please"),
    "backoff": (["-s", "MANIFEST_BACKOFF_INITIAL=abc"], "MANIFEST_BACKOFF_INITIAL=abc"),
    "url-no-scheme": (
        ["-s", "CIVITAI_API_URL=notaurl"],
        "CIVITAI_API_URL=notaurl: must be an http",
    ),
    "url-ftp": (["-s", "HF_API_URL=ftp://example.com/x"], "HF_API_URL=ftp://example.com/x"),
    "sitemap-pattern": (
        ["-s", "MANIFEST_SITEMAP_URL=https://x.org/{nope}"],
        "MANIFEST_SITEMAP_URL",
    ),
    "progress-bar": (["-s", "MANIFEST_PROGRESS_BAR=sometimes"], "MANIFEST_PROGRESS_BAR=sometimes"),
    "maxsize": (["-s", "DOWNLOAD_MAXSIZE=-1"], "DOWNLOAD_MAXSIZE=-1"),
    "scan-factor": (["-s", "MANIFEST_SCAN_FACTOR=0"], "MANIFEST_SCAN_FACTOR=0: must be an integer"),
    "max-pages": (["-s", "MANIFEST_MAX_PAGES=1.5"], "MANIFEST_MAX_PAGES=1.5: must be an integer"),
    "closespider-timeout": (
        ["-s", "CLOSESPIDER_TIMEOUT=soon"],
        "CLOSESPIDER_TIMEOUT=soon: must be a number of at least 0",
    ),
    "jsonrpc-port": (
        ["-s", "JSONRPC_ENABLED=true", "-s", "JSONRPC_PORT=abc"],
        "JSONRPC_PORT='abc': ports must be integers",
    ),
    "jsonrpc-host-without-token": (
        ["-s", "JSONRPC_ENABLED=true", "-s", "JSONRPC_HOST=0.0.0.0"],
        "JSONRPC_HOST=0.0.0.0: a host other than loopback needs JSONRPC_TOKEN",
    ),
    "typo-argument": (["-a", "filter=likes"], "-a filter"),
    "unknown-argument": (["-a", "bogus=1"], "-a bogus"),
    "empty-selection": (["-a", "filters="], "-a filters=: names no filter"),
    "commas-selection": (["-a", "filters=,,,"], "-a filters=,,,: names no filter"),
    "unknown-filter": (["-a", "filters=nope"], "unknown filter name(s)"),
}


@pytest.mark.parametrize(("args", "message"), BAD_INPUT.values(), ids=list(BAD_INPUT))
@deferred_f_from_coro_f
async def test_bad_input_exits_2_in_one_line_before_any_request(tmp_path, args, message):
    code, log = await run_crawl("all", *args, "-s", f"MANIFEST_DIR={tmp_path / 'out'}")
    assert code == 2, log[-3000:]
    assert log.splitlines() == [next(line for line in log.splitlines() if message in line)]
    assert log.startswith("error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["{}", '{"civitai": [], "huggingface": []}'])
@deferred_f_from_coro_f
async def test_a_filters_file_without_filters_exits_2_in_one_line(tmp_path, text):
    empty = tmp_path / "filters.json"
    empty.write_text(text)
    code, log = await run_crawl("all", "-s", f"FILTERS_FILE={empty}")
    assert code == 2
    assert log == f"error: {empty}: no filters for source(s) civitai, huggingface\n"


# --- Bounded downloads --------------------------------------------------------------------

_PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.run([sys.executable, "-m", "scrapy", "crawl", *sys.argv[1:]]).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@deferred_f_from_coro_f
async def test_an_endless_body_fails_its_page_with_bounded_memory(make_emulator, tmp_path):
    healthy = make_emulator()
    out = tmp_path / "out"
    common = setting_args(
        CIVITAI_API_URL=healthy.civitai_url, HF_API_URL=healthy.hf_url, MANIFEST_DIR=out
    )
    code, log = await run_crawl("all", "-a", f"filters={TWO}", *common)
    assert code == 0, log[-3000:]
    before = snapshot(out)

    port = healthy.port.getHost().port
    await healthy.stop()
    endless = make_emulator(
        EmulatorConfig(faults=FaultConfig(endless_body_apis=("civitai",))), port=port
    )
    # A child of its own measures the crawl: Linux gives a child its parent's peak RSS.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PEAK_RSS,
        "all",
        "-a",
        f"filters={TWO}",
        *common,
        "-s",
        "MANIFEST_RETRY_TIMES=1",
        "-s",
        "MANIFEST_BACKOFF_INITIAL=0.01",
        cwd=ROOT,
        env=crawl_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    log = stderr.decode()
    code, peak_kib = map(int, stdout.split())
    assert any(record.fault == "endless-body" for record in endless.log)
    # Stale: the previous manifest stays, the run passes loudly.
    assert code == 0, log[-3000:]
    assert "DOWNLOAD_MAXSIZE (33554432 bytes)" in log and endless.civitai_url in log
    assert (out / "civitai-filter-loras.json").read_bytes() == before["civitai-filter-loras.json"]
    rows = read_json(out / "run-report.json")["filters"]
    assert [row["status"] for row in rows] == ["stale", "fresh"]
    # Far under 1 GiB: a page is dropped at 32 MiB, however long the server goes on.
    assert peak_kib < 256 * 1024, peak_kib


# --- Provenance ---------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_emulator_data_is_never_a_fallback_for_a_real_run(make_emulator, tmp_path):
    out = tmp_path / "out"
    code, log = await run_crawl(*offline(out))
    assert code == 0, log[-3000:]
    assert "synthetic" in log
    offline_lora = read_json(out / "civitai-filter-loras.json")
    assert offline_lora["origin"] == "emulator"
    assert read_json(out / "run-report.json")["synthetic"] is True

    # Now an API that is not the emulator, where the LoRA filter fails.
    api = make_emulator(
        EmulatorConfig(seed=5, faults=FaultConfig(fail_matching=({"types": "LORA"},)))
    )
    code, log = await run_crawl(
        "all",
        "-a",
        f"filters={TWO}",
        *setting_args(
            CIVITAI_API_URL=api.civitai_url,
            HF_API_URL=api.hf_url,
            MANIFEST_DIR=out,
            MANIFEST_RETRY_TIMES=0,
        ),
    )
    # The emulator's manifest is no fallback: the filter has nothing usable, the run fails ...
    assert code == 1, log[-3000:]
    assert "FAILED civitai:filter/loras" in log
    report = read_json(out / "run-report.json")
    assert report["synthetic"] is False
    assert report["origins"] == {"civitai": api.civitai_url, "huggingface": api.hf_url}
    # ... and none of its made-up models reach all-models.json.
    all_models = read_json(out / "all-models.json")
    assert all_models["origins"] == report["origins"]
    site_ids = {model["id"] for model in all_models["models"]}
    assert not site_ids & {model["id"] for model in offline_lora["models"]}
    assert read_json(out / "hf-likes.json")["origin"] == api.hf_url


def test_generated_files_are_ignored_by_git():
    tracked = subprocess.run(
        ["git", "ls-files", "public"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == ["public/manifests/README.md"]
    generated = [
        "public/manifests/all-models.json",
        "public/manifests/civitai-filter-loras.json",
        "public/manifests/run-report.json",
        "public/manifests/changes.json",
        "public/manifests/.all-models.json.x1y2.tmp",
        "public/sitemap.xml",
        "public/sitemap-1.xml",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *generated],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert ignored == generated
