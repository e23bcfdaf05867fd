"""Every run ends: real ``scrapy crawl all`` processes against an emulator that stalls, loops,
starves a rating, or is slow; a folder holding a FIFO or shared by two builds; a deadline; a
signal while requests wait for a budget. Each ends within a bounded time, sends a bounded
number of requests, writes what finished and exits as the README says. (The ``rpc`` client's
situations are in tests/test_rpc_hostile.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.files import LOCK_FILE
from manifest_crawler.filters import load_filters, page_budget
from manifest_crawler.ledger import Ledger
from manifest_crawler.output.manifests import manifest_filename
from manifest_crawler.spiders.base import chains
from tests.crawl import (
    REPO_FILTERS,
    crawling,
    files_in,
    read_json,
    setting_args,
    start_crawl,
)

#: Two filters, one per source.
TWO = "filters=filter/loras,likes"
#: A bound no situation here comes near: a run past it hangs (the test fails, not waits).
HANG = 120.0
#: 49 models rated above PG for each one rated PG: PG as rare as on the real top pages.
RARE_PG = (31, 15, 7, 15, 31, 23, 15, 31, 7, 31) * 4 + (31, 15, 7, 23, 15, 31, 7, 15, 31) + (1,)


@dataclass
class Run:
    code: int
    log: str
    out: Path
    requests: dict[str, int]

    def report(self) -> dict:
        return read_json(self.out / "run-report.json")

    def rows(self) -> dict[str, dict]:
        return {f"{r['source']}:{r['filter']}": r for r in self.report()["filters"]}


def args_for(emulator, out: Path, *extra: str, **settings: object) -> list[str]:
    return [
        "all",
        *setting_args(
            CIVITAI_API_URL=emulator.civitai_url,
            HF_API_URL=emulator.hf_url,
            MANIFEST_DIR=out,
            AUTOTHROTTLE_ENABLED=False,
            **settings,
        ),
        *extra,
    ]


async def run(emulator, tmp_path: Path, *extra: str, name: str = "out", **settings) -> Run:
    out = tmp_path / name
    log = tmp_path / f"{name}.log"
    async with crawling(log, *args_for(emulator, out, *extra, **settings)) as process:
        code = await asyncio.wait_for(process.wait(), HANG)
    return Run(code, log.read_text(), out, count_requests(emulator))


def count_requests(emulator) -> dict[str, int]:
    return {api: len(emulator.requests(api)) for api in ("civitai", "huggingface")}


def repo_page_budgets(max_items: int) -> int:
    """The most requests the repository's filters may send under their page budgets: per
    chain (filters sharing a listing), its deepest member's budget."""
    filter_set = load_filters(REPO_FILTERS)
    ledger = Ledger((f, f.max_items or max_items) for f in filter_set)
    sizes = {"civitai": 100, "huggingface": 1000}
    return sum(
        max(
            page_budget(s.filter.max_pages, s.max_items, sizes[s.filter.source], 10, 10_000)
            for s in chain
        )
        for chain in chains(ledger)
    )


# --- 1. Every wait is capped and cancellable --------------------------------------------------


@deferred_f_from_coro_f
async def test_a_ratelimit_reset_years_away_fails_the_hub_at_once(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(faults=FaultConfig(hf_ratelimit_header='"api";r=0;t=999999999'))
    )
    result = await run(emulator, tmp_path)
    # Filters with no previous manifest failed: exit 1, as the README says.
    assert result.code == 1, result.log[-3000:]
    rows = result.rows()
    hub = [row for key, row in rows.items() if key.startswith("huggingface:")]
    fresh_hub = [row for row in hub if row["status"] == "fresh"]
    failed_hub = [row for row in hub if row["status"] == "failed"]
    # The first round (at most the API's 8 places) was answered; nothing more went out.
    assert result.requests["huggingface"] == len(fresh_hub) <= 8
    assert len(failed_hub) == len(hub) - len(fresh_hub) > 0
    assert all("resets in 999999999 s" in row["errors"][0] for row in failed_hub)
    assert all(row["status"] == "fresh" for key, row in rows.items() if key.startswith("civitai"))
    errors = [line for line in result.log.splitlines() if "ERROR" in line and "RateLimit" in line]
    assert len(errors) == 1 and "huggingface: the API's RateLimit budget is spent" in errors[0]


@deferred_f_from_coro_f
async def test_a_quota_and_window_of_zero_do_not_stall_the_hub(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(
            faults=FaultConfig(
                hf_ratelimit_header='"api";r=0;t=1',
                hf_ratelimit_policy_header='"fixed window";"api";q=0;w=0',
            )
        )
    )
    result = await run(emulator, tmp_path)
    assert result.code == 0, result.log[-3000:]
    report = result.report()
    assert report["totals"] == {
        "fresh": len(report["filters"]),
        "short": 0,
        "stale": 0,
        "failed": 0,
    }
    hub_filters = sum(1 for row in report["filters"] if row["source"] == "huggingface")
    assert result.requests["huggingface"] == hub_filters


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@deferred_f_from_coro_f
async def test_a_signal_while_requests_wait_for_a_budget_ends_the_run(
    make_emulator, tmp_path, number
):
    """The Hub says its budget resets in 250 s (under the 300 s cap, so requests wait for it):
    one SIGINT (or SIGTERM) and the run ends at once, the finished filters written, exit 1."""
    emulator = make_emulator(
        EmulatorConfig(
            faults=FaultConfig(
                hf_ratelimit_header='"api";r=0;t=250', api_latency={"civitai": (0.3, 0.05)}
            )
        )
    )
    out = tmp_path / "out"
    log = tmp_path / "crawl.log"
    async with crawling(log, *args_for(emulator, out, MANIFEST_MAX_ITEMS=300)) as process:
        # The first round of Hub answers is in: the next Hub requests wait for the reset.
        for _ in range(600):
            hub = [r for r in emulator.requests("huggingface") if r.finished]
            if len(hub) >= 8 and any(r.finished for r in emulator.requests("civitai")):
                break
            assert process.returncode is None, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        process.send_signal(number)
        code = await asyncio.wait_for(process.wait(), HANG)
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "forcing unclean shutdown" not in text
    assert "Closing spider (shutdown)" in text
    report = read_json(out / "run-report.json")
    assert report["exit_code"] == 1
    hub = [row for row in report["filters"] if row["source"] == "huggingface"]
    assert any(row["reason"] == "unfinished: the crawl stopped first" for row in hub)
    assert len(emulator.requests("huggingface")) == sum(1 for row in hub if row["pages"])
    for row in report["filters"]:
        if row["status"] == "fresh":
            assert (out / row["file"]).exists()


# --- 2. A scan budget for every chain ---------------------------------------------------------


@pytest.mark.parametrize("api", ["civitai", "huggingface"])
@deferred_f_from_coro_f
async def test_a_cursor_that_never_repeats_is_cut_by_the_page_budget(make_emulator, tmp_path, api):
    emulator = make_emulator(EmulatorConfig(faults=FaultConfig(endless_cursor_apis=(api,))))
    result = await run(emulator, tmp_path, MANIFEST_MAX_ITEMS=200)
    assert result.code == 0, result.log[-3000:]
    rows = [row for row in result.report()["filters"] if row["source"] == api]
    short = [row for row in rows if row["status"] == "short"]
    assert short and all(row["pages"] == row["max_pages"] for row in short)
    assert all((result.out / row["file"]).exists() for row in short)
    assert result.requests[api] <= repo_page_budgets(200)
    warned = [line for line in result.log.splitlines() if "written short" in line]
    assert len(warned) == len(short)


@deferred_f_from_coro_f
async def test_rated_filters_over_a_rare_rating_read_their_budget_and_no_more(
    make_emulator, tmp_path
):
    emulator = make_emulator(EmulatorConfig(civitai_levels=RARE_PG))
    result = await run(emulator, tmp_path)
    assert result.code == 0, result.log[-3000:]
    rows = result.rows()
    pg = rows["civitai:filter/pg"]
    assert (pg["status"], pg["pages"], pg["max_pages"]) == ("short", 10, 10)
    assert 0 < pg["models"] < 100 and pg["kept_share"] < 0.05
    # Unrated filters of the same listing needed a page or two.
    assert rows["civitai:AllTime/All/All/downloads/Soft"]["pages"] <= 10
    assert result.requests["civitai"] <= repo_page_budgets(100)
    assert result.report()["totals"]["short"] == sum(
        1 for row in rows.values() if row["status"] == "short"
    )


@deferred_f_from_coro_f
async def test_a_short_filter_fails_the_run_under_strict(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(civitai_models=3000, hf_models=50, civitai_levels=RARE_PG)
    )
    result = await run(emulator, tmp_path, "-a", "filters=filter/pg", MANIFEST_STRICT=True)
    assert result.code == 1, result.log[-3000:]
    assert result.rows()["civitai:filter/pg"]["status"] == "short"


# --- 3. A run deadline ------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_closespider_timeout_stops_a_slow_run_like_sigterm(make_emulator, tmp_path):
    """CivitAI answers in 0.5 s and the Hub asks to wait 250 s: at the deadline both stop,
    what finished is written, the rest reported unfinished, exit 1."""
    emulator = make_emulator(
        EmulatorConfig(
            faults=FaultConfig(
                api_latency={"civitai": (0.5, 0.1)}, hf_ratelimit_header='"api";r=0;t=250'
            )
        )
    )
    result = await run(emulator, tmp_path, MANIFEST_MAX_ITEMS=1000, CLOSESPIDER_TIMEOUT=4)
    assert result.code == 1, result.log[-3000:]
    assert "Closing spider (closespider_timeout)" in result.log
    report = result.report()
    statuses = {row["status"] for row in report["filters"]}
    assert "fresh" in statuses and "failed" in statuses
    unfinished = [
        r for r in report["filters"] if r["reason"] == "unfinished: the crawl stopped first"
    ]
    assert unfinished
    for row in report["filters"]:
        assert (result.out / row["file"]).exists() == (row["status"] == "fresh")


# --- 4. The output folder is checked before the first request ---------------------------------


@deferred_f_from_coro_f
async def test_a_fifo_at_a_name_the_run_reads_is_refused_before_any_request(
    make_emulator, tmp_path
):
    emulator = make_emulator(EmulatorConfig(civitai_models=100, hf_models=100))
    out = tmp_path / "out"
    out.mkdir()
    # A selected filter's manifest, all-models.json, and an unselected filter's manifest
    # (all-models.json is rebuilt from every manifest of filters.json).
    unselected = next(
        f for f in load_filters(REPO_FILTERS) if f.name not in ("filter/loras", "likes")
    )
    names = ("civitai-filter-loras.json", "all-models.json", manifest_filename(*unselected.key))
    for name in names:
        fifo = out / name
        os.mkfifo(fifo)
        result = await run(emulator, tmp_path, "-a", TWO)
        assert result.code == 2, result.log[-3000:]
        assert result.log == (
            f"error: {fifo} is a FIFO (named pipe), not a regular file: the run would read or "
            "replace it (remove it or choose another MANIFEST_DIR)\n"
        )
        assert result.requests == {"civitai": 0, "huggingface": 0}
        fifo.unlink()


@deferred_f_from_coro_f
async def test_a_fifo_that_appears_during_the_run_does_not_hang_its_close(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(civitai_models=300, hf_models=300, faults=FaultConfig(latency=0.3))
    )
    out = tmp_path / "out"
    log = tmp_path / "crawl.log"
    async with crawling(log, *args_for(emulator, out, "-a", TWO)) as process:
        while not emulator.log:
            assert process.returncode is None, log.read_text()
            await asyncio.sleep(0.05)
        # After the up-front check: a FIFO where the previous manifest would be read.
        os.mkfifo(out / "civitai-filter-loras.json")
        code = await asyncio.wait_for(process.wait(), HANG)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "is a FIFO (named pipe), not a regular file" in text
    assert read_json(out / "civitai-filter-loras.json")["models"]


# --- 5. One run per folder ----------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_two_runs_into_one_folder_started_together(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(civitai_models=300, hf_models=300, faults=FaultConfig(latency=0.2))
    )
    out = tmp_path / "out"
    for trial in range(4):
        logs = [tmp_path / f"{trial}-{n}.log" for n in (0, 1)]
        processes = []
        for path in logs:
            with path.open("wb") as log_file:
                processes.append(
                    await start_crawl(
                        *args_for(emulator, out, "-a", TWO),
                        stdout=log_file,
                        stderr=log_file,
                    )
                )
        codes = [await asyncio.wait_for(p.wait(), HANG) for p in processes]
        texts = [path.read_text() for path in logs]
        assert sorted(codes) == [0, 2], texts
        loser, winner = (0, 1) if codes[0] == 2 else (1, 0)
        assert texts[loser] == (
            f"error: MANIFEST_DIR={out}: another run (pid {processes[winner].pid}) is writing "
            f"into {out} (one run per folder)\n"
        )
        assert "left by a crawl killed while writing" not in texts[winner]
        assert read_json(out / "run-report.json")["exit_code"] == 0
        assert not [name for name in files_in(out) if name.endswith(".tmp")]
    assert (out / LOCK_FILE).exists()


@deferred_f_from_coro_f
async def test_a_lock_left_by_a_killed_run_does_not_block_the_next(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(civitai_models=300, hf_models=300, faults=FaultConfig(latency=0.3))
    )
    out = tmp_path / "out"
    async with crawling(tmp_path / "killed.log", *args_for(emulator, out, "-a", TWO)) as process:
        while not emulator.log:
            await asyncio.sleep(0.05)
        process.kill()
        await process.wait()
    result = await run(emulator, tmp_path, "-a", TWO, name="out")
    assert result.code == 0, result.log[-3000:]
