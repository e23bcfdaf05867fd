"""JOBDIR: a crawl stopped gracefully (what Ctrl-C does) and resumed gives the manifests of an
uninterrupted crawl, requesting no page twice and skipping none."""

import asyncio
import re
import signal
import time
from collections import Counter

import pytest
from scrapy import Request
from scrapy import signals as scrapy_signals
from scrapy.utils.defer import deferred_f_from_coro_f, deferred_from_coro
from scrapy.utils.test import get_crawler

from manifest_crawler.emulator import FaultConfig
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.filters import load_filters
from manifest_crawler.ledger import FilterStatus, Ledger
from manifest_crawler.middlewares.backoff import NOT_BEFORE_META, BackoffRetryMiddleware
from manifest_crawler.output.changes import Baseline
from manifest_crawler.output.jobstate import (
    JOB_FILE,
    RUNNING_MARKER,
    JobState,
    JobStateError,
    decode_job,
    encode_job,
    job_fingerprint,
)
from manifest_crawler.spiders.all import AllSpider
from manifest_crawler.spiders.civitai import CivitaiSpider
from tests.crawl import (
    REPO_FILTERS,
    crawl,
    project_settings_dict,
    read_json,
    setting_args,
    start_crawl,
    write_filters,
)
from tests.scripted import Reply

# Not both Highest Rated and Most Liked: one ORDER BY upstream, the same list.
CIVITAI_SORTS = ["Most Downloaded", "Highest Rated", "Oldest", "Newest", "Most Collected"]


def _job_filters(path):
    # Deep enough to need several pages each: 3 or 4 CivitAI pages of 100 (a page is short of
    # its models with no visible version), 2 Hub pages (1000 + 500).
    return write_filters(
        path,
        civitai=[
            {
                "name": f"deep/{n}",
                "label": sort,
                "params": {"sort": sort, "period": "AllTime", "nsfw": "true"},
                "browsing_levels": ["PG", "PG13", "R", "X", "XXX"],
                "max_items": 300,
            }
            for n, sort in enumerate(CIVITAI_SORTS)
        ],
        huggingface=[
            {"name": f"deep/{sort}", "label": sort, "params": {"sort": sort}, "max_items": 1500}
            for sort in ("likes", "downloads")
        ],
    )


def _settings(emulator, tmp_path, out, **extra):
    return project_settings_dict(
        CIVITAI_API_URL=emulator.civitai_url,
        HF_API_URL=emulator.hf_url,
        FILTERS_FILE=str(_job_filters(tmp_path / "filters.json")),
        MANIFEST_DIR=str(out),
        CONCURRENT_REQUESTS_PER_DOMAIN=2,
        **extra,
    )


def _without_timestamps(data):
    return re.sub(rb'"(timestamp|previousTimestamp)": "[^"]*"', rb'"\1": "T"', data)


def _outputs(folder):
    """Every output file but the run report (it holds durations and per-process counts)."""
    return {
        p.name: _without_timestamps(p.read_bytes())
        for p in folder.iterdir()
        if p.name != "run-report.json"
    }


def _pages(emulator):
    return Counter(record.uri for record in emulator.log if record.api)


async def _interrupted_crawl(settings, after_responses):
    """Crawl until ``after_responses`` pages arrived, then stop as Ctrl-C does."""
    crawler = get_crawler(AllSpider, settings)
    seen = 0

    def count(response, request, spider):
        nonlocal seen
        seen += 1
        if seen == after_responses:
            # SIGINT's handler ends in Crawler.stop_async() (CrawlerProcess._graceful_stop_reactor).
            deferred_from_coro(crawler.stop_async())

    crawler.signals.connect(count, signal=scrapy_signals.response_received)
    await crawler.crawl_async()
    return crawler


@deferred_f_from_coro_f
async def test_an_interrupted_then_resumed_crawl_equals_an_uninterrupted_one(
    make_emulator, tmp_path
):
    emulator = make_emulator(faults=FaultConfig(latency=0.02, jitter=0.01))
    whole, resumed, jobdir = tmp_path / "whole", tmp_path / "resumed", tmp_path / "job"

    await crawl(AllSpider, _settings(emulator, tmp_path, whole))
    expected_pages = _pages(emulator)
    pages = [row["pages"] for row in read_json(whole / "run-report.json")["filters"]]
    assert min(pages[:5]) >= 3 and pages[5:] == [2, 2]
    assert len(expected_pages) == sum(pages) and set(expected_pages.values()) == {1}

    emulator.clear_log()
    first = await _interrupted_crawl(
        _settings(emulator, tmp_path, resumed, JOBDIR=str(jobdir)), after_responses=6
    )
    assert first.stats.get_value("finish_reason") == "shutdown"
    # Every request went through the disk queue; none was kept in memory only (and lost).
    assert first.stats.get_value("scheduler/enqueued/disk", 0) > 0
    assert first.stats.get_value("scheduler/unserializable", 0) == 0
    first_pages = _pages(emulator)
    ledger = first.get_extension(RunState).ledger
    unfinished = [s for s in ledger if not s.finished]
    assert unfinished and any(s.finished for s in ledger), "stopped too early or too late"
    assert (jobdir / JOB_FILE).exists() and not (jobdir / RUNNING_MARKER).exists()
    # The first process already wrote what it finished; the rest kept nothing.
    for state in ledger:
        name = f"{'civitai' if state.filter.source == 'civitai' else 'hf'}-deep-"
        name += state.filter.name.split("/")[1] + ".json"
        assert (resumed / name).exists() == (state.status is FilterStatus.DONE)
    assert first.stats.get_value("manifest/exit_code") == 1  # unfinished filters have no file

    emulator.clear_log()
    second = await crawl(AllSpider, _settings(emulator, tmp_path, resumed, JOBDIR=str(jobdir)))
    second_pages = _pages(emulator)

    # Pages in flight at the stop were answered before the first process closed, and their
    # next pages were queued in JOBDIR: no page twice, none skipped.
    assert not set(first_pages) & set(second_pages)
    assert first_pages + second_pages == expected_pages
    assert _outputs(resumed) == _outputs(whole)
    report = read_json(resumed / "run-report.json")
    assert report["totals"] == {"fresh": 7, "short": 0, "stale": 0, "failed": 0}
    assert second.stats.get_value("manifest/exit_code") == 0
    # A finished job leaves nothing to resume: the same command starts the next build afresh.
    assert not (jobdir / JOB_FILE).exists() and not (jobdir / RUNNING_MARKER).exists()
    emulator.clear_log()
    await crawl(AllSpider, _settings(emulator, tmp_path, resumed, JOBDIR=str(jobdir)))
    assert _pages(emulator) == expected_pages


def _scripted_job(tmp_path, url, jobdir):
    return project_settings_dict(
        FILTERS_FILE=str(
            write_filters(
                tmp_path / "filters.json",
                civitai=[
                    {"name": n, "label": n, "params": {"sort": n}, "browsing_levels": ["PG"]}
                    for n in ("a", "b")
                ],
            )
        ),
        MANIFEST_DIR=str(tmp_path / "out"),
        CIVITAI_API_URL=url,
        JOBDIR=str(jobdir),
    )


@deferred_f_from_coro_f
async def test_a_jobdir_left_by_a_killed_or_different_crawl_starts_over(tmp_path, scripted, caplog):
    page = {"items": [{"id": 1, "name": "One"}], "metadata": {}}
    api, url = scripted({"a|": Reply(page), "b|": Reply(page)}, by="sort")
    jobdir = tmp_path / "job"
    jobdir.mkdir()
    # What a kill -9 leaves: the marker of a process that never closed, and its queue.
    (jobdir / RUNNING_MARKER).write_text("12345\n")
    (jobdir / "requests.queue").mkdir()
    (jobdir / "requests.queue" / "garbage").write_text("x")
    crawler = await crawl(CivitaiSpider, _scripted_job(tmp_path, url, jobdir))
    assert "its last process did not close (killed?)" in caplog.text
    assert sorted(api.keys) == ["a|", "b|"]
    assert crawler.stats.get_value("manifest/exit_code") == 0
    assert not (jobdir / "requests.queue" / "garbage").exists()

    # A job file made for other filters (or spider, or endpoints) is not resumed either.
    (jobdir / JOB_FILE).write_bytes(
        encode_job(JobState(fingerprint="other", ledger=[], models={}, baseline=None))
    )
    api.keys.clear()
    await crawl(CivitaiSpider, _scripted_job(tmp_path, url, jobdir))
    assert "it was made for other filters" in caplog.text
    assert sorted(api.keys) == ["a|", "b|"]


@deferred_f_from_coro_f
async def test_jobresume_listed_after_runstate_says_jobdir_is_not_used(tmp_path, scripted, caplog):
    page = {"items": [{"id": 1, "name": "One"}], "metadata": {}}
    _, url = scripted({"a|": Reply(page), "b|": Reply(page)}, by="sort")
    settings = _scripted_job(tmp_path, url, tmp_path / "job")
    settings["EXTENSIONS"] = {
        **settings["EXTENSIONS"],
        "manifest_crawler.extensions.resume.JobResume": 10,
    }
    crawler = await crawl(CivitaiSpider, settings)
    assert "the JobResume extension must come before RunState" in caplog.text
    assert crawler.stats.get_value("manifest/exit_code") == 0
    assert not (tmp_path / "job" / RUNNING_MARKER).exists()


@deferred_f_from_coro_f
async def test_a_resumed_retry_does_not_wait_on_another_process_clock(tmp_path):
    """A retry queued in JOBDIR carries a not-before time on an earlier process's monotonic
    clock (meaningless after a reboot): it waits at most the longest wait ever set (here the
    0.3 s Retry-After cap and the second added to an announced wait)."""
    settings = project_settings_dict(MANIFEST_BACKOFF_MAX=0.2, MANIFEST_MAX_RETRY_AFTER=0.3)
    crawler = get_crawler(CivitaiSpider, settings)
    # As while a crawl runs: a crawler that is not crawling is stopping, and nothing waits.
    crawler.crawling = True
    middleware = BackoffRetryMiddleware(crawler)
    middleware._slot = lambda request: "civitai"
    request = Request("http://127.0.0.1:9/api", meta={NOT_BEFORE_META: time.monotonic() + 1e6})
    started = time.monotonic()
    assert await asyncio.wait_for(middleware.process_request(request), 5) is None
    assert 1.3 <= time.monotonic() - started < 2.3


# --- The job file (pure) --------------------------------------------------------------------------


def _ledger(max_items=300):
    return Ledger(
        (f, max_items)
        for f in load_filters(REPO_FILTERS).select(["civitai"], ["filter/pg", "filter/r"])
    )


def test_a_ledger_and_models_survive_the_job_file():
    ledger = _ledger()
    pg, r = ledger
    pg.start()
    pg.pages, pg.seen_ids, pg.cursors = 2, {"civitai-1", "civitai-2"}, {"c1", "c2"}
    pg.excluded, pg.duplicates, pg.mismatched, pg.first_mismatch = 3, 1, 2, "why"
    pg.retries, pg.errors = 4, ["HTTP 500 at x"]
    r.start()
    r.seen_ids, r.cursors = {"civitai-5", "civitai-6", "civitai-7"}, {"c3"}
    r.finish(FilterStatus.DONE, "last_page")
    # A finished filter reads no more pages: its sets go, its count stays.
    assert (r.models, r.seen_ids, r.cursors, r.as_dict()["models"]) == (3, set(), set(), 3)
    r.finish(FilterStatus.FAILED, "stopped")  # finishing again keeps the count
    assert r.models == 3
    r.finish(FilterStatus.DONE, "last_page")
    models = {pg.filter.key: [(0, {"id": "civitai-1", "slug": "civitai-1", "name": "One"})]}
    baseline = Baseline(
        {pg.filter.key: ["civitai-9"], r.filter.key: None}, [], "2026-01-01T00:00:00Z"
    )
    job = JobState("f" * 64, ledger.snapshot(), models, baseline)

    back = decode_job(encode_job(job))
    assert back == job
    restored = _ledger()
    restored.restore(back.ledger)
    for before, after in zip(ledger, restored, strict=True):
        assert {**before.as_dict(), "duration": 0} == {**after.as_dict(), "duration": 0}
        assert (after.cursors, after.seen_ids) == (before.cursors, before.seen_ids)
        assert after.models == before.models
        assert after.finished == before.finished
        assert abs(after.duration - before.duration) < 0.1


def test_a_job_file_is_refused_when_unreadable_and_a_job_is_identified_by_what_it_crawls():
    for data in (b"", b"[]", b'{"format": 99}', b'{"format": 1}'):
        with pytest.raises(JobStateError):
            decode_job(data)
    urls = {"CIVITAI_API_URL": "http://a/api", "HF_API_URL": "http://b/api"}
    both = ("civitai", "huggingface")
    same = job_fingerprint(both, _ledger(), urls)
    assert same == job_fingerprint(list(both), _ledger(), dict(urls))
    assert same != job_fingerprint(("civitai",), _ledger(), urls)
    assert same != job_fingerprint(both, _ledger(max_items=100), urls)
    assert same != job_fingerprint(both, _ledger(), {**urls, "HF_API_URL": "http://c/api"})


# --- The real thing: `scrapy crawl` and one Ctrl-C ----------------------------------------------


async def _scrapy_crawl(settings, log):
    with log.open("ab") as out:
        return await start_crawl("all", *setting_args(**settings), stdout=out, stderr=out)


@deferred_f_from_coro_f
async def test_ctrl_c_once_then_the_same_command_resumes(make_emulator, tmp_path):
    emulator = make_emulator(faults=FaultConfig(latency=0.05))
    out, log = tmp_path / "out", tmp_path / "crawl.log"
    settings = {
        "CIVITAI_API_URL": emulator.civitai_url,
        "HF_API_URL": emulator.hf_url,
        "FILTERS_FILE": _job_filters(tmp_path / "filters.json"),
        "MANIFEST_DIR": out,
        "JOBDIR": tmp_path / "job",
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "AUTOTHROTTLE_ENABLED": "false",
    }
    process = await _scrapy_crawl(settings, log)
    for _ in range(300):
        if len(emulator.log) >= 6 or process.returncode is not None:
            break
        await asyncio.sleep(0.02)
    process.send_signal(signal.SIGINT)
    # Unfinished filters have no manifest yet: exit status 1, as for any stopped build.
    assert await asyncio.wait_for(process.wait(), 30) == 1, log.read_text()
    text = log.read_text()
    assert "Received SIGINT, shutting down gracefully" in text
    assert "run it again with JOBDIR=" in text
    first = Counter(record.uri for record in emulator.log)

    emulator.clear_log()
    process = await _scrapy_crawl(settings, log)
    assert await asyncio.wait_for(process.wait(), 30) == 0, log.read_text()
    assert "Resuming the job in" in log.read_text()
    second = Counter(record.uri for record in emulator.log)
    assert not set(first) & set(second)
    report = read_json(out / "run-report.json")
    assert sum((first + second).values()) == sum(row["pages"] for row in report["filters"])
    assert set((first + second).values()) == {1}
    assert report["totals"] == {"fresh": 7, "short": 0, "stale": 0, "failed": 0}
