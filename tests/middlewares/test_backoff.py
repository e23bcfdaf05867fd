"""Retries, backoff and rate limits, over real loopback HTTP against scripted replies."""

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scrapy.utils.defer import deferred_f_from_coro_f
from twisted.internet.defer import CancelledError

from manifest_crawler import signals as manifest_signals
from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.middlewares.backoff import (
    RateBudget,
    backoff_delay,
    parse_ratelimit,
    parse_retry_after,
)
from manifest_crawler.spiders.civitai import CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import (
    crawl,
    crawl_settings,
    files_in,
    make_crawler,
    project_settings_dict,
    read_json,
    write_filters,
)
from tests.scripted import Reply

OK_PAGE = {"items": [{"id": 1, "name": "One"}], "metadata": {}}


def _settings(tmp_path, civitai=None, huggingface=None, **extra):
    return project_settings_dict(
        FILTERS_FILE=str(write_filters(tmp_path / "filters.json", civitai, huggingface)),
        MANIFEST_DIR=str(tmp_path / "out"),
        **{"MANIFEST_BACKOFF_INITIAL": 0.05, **extra},
    )


def _filters(*names, param="sort"):
    return [{"name": name, "label": name, "params": {param: name}} for name in names]


def _civitai(*names):
    # Browsing level PG: the API's own nsfw=false listing.
    return [{**entry, "browsing_levels": ["PG"]} for entry in _filters(*names)]


@given(st.integers(1, 30), st.floats(0.01, 5), st.floats(1, 60), st.floats(0, 1))
def test_backoff_doubles_from_base_and_never_exceeds_the_cap(attempt, base, cap, jitter):
    delay = backoff_delay(attempt, base, cap, jitter, random.Random(attempt))
    floor = min(cap, base * 2 ** (attempt - 1))
    assert floor <= delay <= cap
    assert delay <= floor * (1 + jitter) + 1e-9


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("2") == 2.0
    now = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(7.0)
    assert (
        parse_retry_after(
            format_datetime(now - timedelta(seconds=9), usegmt=True), now=now.timestamp()
        )
        == 0.0
    )
    assert parse_retry_after("soon") is None


def test_ratelimit_header():
    assert parse_ratelimit('"api";r=0;t=44') == (0, 44)
    assert parse_ratelimit('"api";t=5;r=12') == (12, 5)
    assert parse_ratelimit("garbage") is None


@deferred_f_from_coro_f
async def test_503_with_retry_after_waits_and_holds_back_the_whole_api(tmp_path, scripted):
    api, url = scripted(
        {
            "a|": [
                Reply({"message": "busy"}, status=503, headers={"Retry-After": "2"}),
                Reply(OK_PAGE),
            ],
            "b|": Reply({"items": [{"id": 2, "name": "Two"}], "metadata": {}}),
        },
        by="sort",
    )
    settings = _settings(
        tmp_path, civitai=_civitai("a", "b"), CIVITAI_API_URL=url, CONCURRENT_REQUESTS_PER_DOMAIN=1
    )
    # One request at a time, "a" first: "b" must not be sent while the API said "wait".
    settings["CONCURRENT_REQUESTS"] = 1
    crawler = await crawl(CivitaiSpider, settings)
    first, retry = [t for k, t in zip(api.keys, api.times, strict=True) if k == "a|"]
    assert retry - first >= 2.0
    (b_time,) = [t for k, t in zip(api.keys, api.times, strict=True) if k == "b|"]
    assert b_time - first >= 2.0
    assert read_json(tmp_path / "out" / "civitai-a.json")["models"][0]["id"] == "civitai-1"
    assert crawler.stats.get_value("manifest/retry/reason_count/http_503") == 1


@deferred_f_from_coro_f
async def test_transient_errors_back_off_exponentially_then_succeed(tmp_path, scripted):
    api, url = scripted(
        {
            "": [
                Reply({"message": "oops"}, status=500),
                Reply(b"<html>Bad gateway</html>", status=502),
                Reply(b"<html>timeout</html>", status=524),
                Reply(b"rate limited", status=429),
                Reply(OK_PAGE),
            ]
        }
    )
    crawler = await crawl(
        CivitaiSpider,
        _settings(
            tmp_path, civitai=_civitai("f"), CIVITAI_API_URL=url, MANIFEST_BACKOFF_INITIAL=0.1
        ),
    )
    gaps = [b - a for a, b in zip(api.times, api.times[1:], strict=False)]
    assert len(api.times) == 5
    # 0.1, 0.2, 0.4, 0.8 s (jitter only lengthens them).
    for gap, floor in zip(gaps, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert gap >= floor * 0.95
    assert read_json(tmp_path / "out" / "civitai-f.json")["models"][0]["id"] == "civitai-1"
    assert crawler.stats.get_value("manifest/exit_code") == 0


@deferred_f_from_coro_f
async def test_retries_are_bounded_and_the_crawl_goes_on(tmp_path, scripted):
    api, url = scripted(
        {"bad|": Reply({"message": "down"}, status=500), "good|": Reply(OK_PAGE)}, by="sort"
    )
    crawler = await crawl(
        CivitaiSpider,
        _settings(
            tmp_path, civitai=_civitai("bad", "good"), CIVITAI_API_URL=url, MANIFEST_RETRY_TIMES=3
        ),
    )
    assert api.keys.count("bad|") == 4
    assert (tmp_path / "out" / "civitai-good.json").exists()
    assert not (tmp_path / "out" / "civitai-bad.json").exists()
    report = read_json(tmp_path / "out" / "run-report.json")
    bad = next(f for f in report["filters"] if f["filter"] == "bad")
    assert (bad["status"], bad["retries"]) == ("failed", 3)
    assert "HTTP 500 (down)" in bad["errors"][0]
    # A filter with nothing on disk to fall back on makes the run fail.
    assert crawler.stats.get_value("manifest/exit_code") == 1


@deferred_f_from_coro_f
async def test_400_is_never_retried(tmp_path, scripted):
    api, url = scripted({"bad|": Reply({"error": "limit too high"}, status=400)}, by="sort")
    await crawl(CivitaiSpider, _settings(tmp_path, civitai=_civitai("bad"), CIVITAI_API_URL=url))
    assert api.keys.count("bad|") == 1


@deferred_f_from_coro_f
async def test_hf_ratelimit_zero_remaining_pauses_the_api_until_reset(tmp_path, scripted):
    api, url = scripted({})
    api.pages.update(
        {
            "likes|": Reply(
                [{"id": "a/one"}],
                headers={
                    "Link": f'<{url}?sort=likes&cursor=P2>; rel="next"',
                    "RateLimit": '"api";r=0;t=2',
                },
            ),
            "likes|P2": Reply([{"id": "a/two"}], headers={"RateLimit": '"api";r=499;t=300'}),
            "downloads|": Reply([{"id": "b/one"}], headers={"RateLimit": '"api";r=498;t=300'}),
        },
    )
    api.by = "sort"
    settings = _settings(tmp_path, huggingface=_filters("likes", "downloads"), HF_API_URL=url)
    settings["CONCURRENT_REQUESTS"] = 1
    await crawl(HuggingFaceSpider, settings)
    first = api.times[0]
    assert api.keys[0] == "likes|"
    assert all(t - first >= 2.0 for t in api.times[1:])
    assert read_json(tmp_path / "out" / "hf-likes.json")["models"][1]["id"] == "a/two"


@deferred_f_from_coro_f
async def test_unreachable_host_fails_fast_and_names_it(tmp_path, caplog):
    # A loopback port nobody listens on: connection refused, no live host involved.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    out.mkdir()
    (out / "civitai-a.json").write_text("previous")
    crawler = await crawl(
        CivitaiSpider,
        _settings(
            tmp_path,
            civitai=_civitai("a", "b", "c", "d"),
            CIVITAI_API_URL=f"http://127.0.0.1:{port}/api/v1/models",
            MANIFEST_BACKOFF_INITIAL=0.5,
        ),
    )
    assert "cannot reach 127.0.0.1" in caplog.text
    assert "MANIFEST_OFFLINE=true" in caplog.text
    assert crawler.stats.get_value("manifest/exit_code") == 1
    assert list(files_in(out)) == ["civitai-a.json"]
    assert (out / "civitai-a.json").read_text() == "previous"
    elapsed = crawler.stats.get_value("elapsed_time_seconds")
    assert elapsed < 10


def test_a_wait_for_the_budget_cancelled_with_its_request_is_skipped_when_woken():
    budget = RateBudget()
    cancelled, waiting = budget.until_landed(), budget.until_landed()
    cancelled.addErrback(lambda failure: failure.trap(CancelledError))
    cancelled.cancel()
    woken: list[object] = []
    waiting.addCallback(woken.append)
    budget.wake()
    assert woken == [None]
    assert budget.waiting == []


# --- Every wait is capped and cancellable (issue 20) ---------------------------------------


def _hub_filters(count):
    sorts = ("likes", "downloads", "trendingScore", "createdAt", "lastModified")
    return [{"name": sort, "label": sort, "params": {"sort": sort}} for sort in sorts[:count]]


@deferred_f_from_coro_f
async def test_a_ratelimit_reset_past_the_cap_fails_the_requests_at_once(
    make_emulator, tmp_path, caplog
):
    """A 200 saying the budget is spent until a reset years away: the next requests fail at
    once, naming the API and the announced wait, instead of waiting for it."""
    emulator = make_emulator(
        EmulatorConfig(
            hf_models=300, faults=FaultConfig(hf_ratelimit_header='"api";r=0;t=999999999')
        )
    )
    settings = {
        **crawl_settings(emulator, tmp_path / "out"),
        "FILTERS_FILE": str(write_filters(tmp_path / "f.json", huggingface=_hub_filters(3))),
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
    }
    crawler = await asyncio.wait_for(crawl(HuggingFaceSpider, settings), 60)
    # The first answer spent the budget; the two other filters never sent a request.
    assert len(emulator.requests("huggingface")) == 1
    report = {
        row["filter"]: row for row in read_json(tmp_path / "out" / "run-report.json")["filters"]
    }
    failed = [row for row in report.values() if row["status"] == "failed"]
    assert len(failed) == 2
    for row in failed:
        assert (
            "huggingface: the API's RateLimit budget is spent and resets in 999999999 s"
            in (row["errors"][0])
        )
        assert "MANIFEST_MAX_RETRY_AFTER=300" in row["errors"][0]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [f"BudgetTooFar: {r.getMessage()}" for r in errors] == [
        failed[0]["errors"][0].split(" at http")[0]
    ]
    assert crawler.stats.get_value("manifest/exit_code") == 1


@deferred_f_from_coro_f
async def test_a_quota_or_window_of_zero_is_no_budget_to_wait_for(make_emulator, tmp_path):
    """RateLimit r=0;t=0 on every answer, with a policy of q=0;w=0: each window is a second
    (and the added second) long, and the next one is not taken to be empty again."""
    emulator = make_emulator(
        EmulatorConfig(
            hf_models=300,
            faults=FaultConfig(
                hf_ratelimit_header='"api";r=0;t=0',
                hf_ratelimit_policy_header='"fixed window";"api";q=0;w=0',
            ),
        )
    )
    settings = {
        **crawl_settings(emulator, tmp_path / "out"),
        "FILTERS_FILE": str(write_filters(tmp_path / "f.json", huggingface=_hub_filters(3))),
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
    }
    crawler = await asyncio.wait_for(crawl(HuggingFaceSpider, settings), 60)
    times = [record.time for record in emulator.requests("huggingface")]
    assert len(times) == 3
    # Each request after an answer announcing r=0;t=0 waited the added second.
    assert all(later - earlier >= 1.0 for earlier, later in pairwise(times))
    assert crawler.stats.get_value("manifest/exit_code") == 0


@deferred_f_from_coro_f
async def test_an_announced_wait_gets_one_second_more_and_no_retry_comes_early(
    make_emulator, tmp_path
):
    """The emulator rounds its reset down, as the Hub does: a client retrying at exactly t
    would arrive while the budget is still spent."""
    emulator = make_emulator(
        EmulatorConfig(hf_models=300, faults=FaultConfig(hf_rate_limit=2, hf_rate_window=1.5))
    )
    settings = {
        **crawl_settings(emulator, tmp_path / "out"),
        "FILTERS_FILE": str(write_filters(tmp_path / "f.json", huggingface=_hub_filters(5))),
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
    }
    crawler = await asyncio.wait_for(crawl(HuggingFaceSpider, settings), 60)
    records = emulator.requests("huggingface")
    assert len(records) == 5
    assert not [record for record in records if record.arrived_when_exhausted]
    assert crawler.stats.get_value("manifest/exit_code") == 0


@deferred_f_from_coro_f
async def test_the_jsonrpc_stop_signal_hands_waiting_requests_back(tmp_path, scripted):
    """A stop while requests wait out a Retry-After of minutes: they are handed back to the
    scheduler, not sent, and the graceful close does not wait for them."""
    api, url = scripted(
        {
            "a|": Reply({"message": "busy"}, status=503, headers={"Retry-After": "240"}),
            "b|": Reply({"items": [{"id": 2, "name": "Two"}], "metadata": {}}),
        },
        by="sort",
    )
    settings = _settings(tmp_path, civitai=_civitai("a", "b"), CIVITAI_API_URL=url)
    crawler = make_crawler(CivitaiSpider, settings)
    crawling = asyncio.ensure_future(crawler.crawl_async())
    # "b" is fetched; "a"'s retry waits.
    while len(api.keys) < 2:
        await asyncio.sleep(0.05)
    while crawler.stats.get_value("manifest/backoff/waits") is None or not (
        crawler.stats.get_value("manifest/civitai/models")
    ):
        await asyncio.sleep(0.05)
    crawler.signals.send_catch_log(signal=manifest_signals.stop_requested, reason="jsonrpc_stop")
    await crawler.engine.close_spider_async(reason="jsonrpc_stop")
    await asyncio.wait_for(crawling, 30)
    # "a" was asked once (its 503 said: wait four minutes); its retry never went out.
    assert api.keys.count("a|") == 1
    assert crawler.stats.get_value("manifest/backoff/handed_back") >= 1
    assert crawler.stats.get_value("finish_reason") == "jsonrpc_stop"
    report = read_json(tmp_path / "out" / "run-report.json")
    statuses = {row["filter"]: (row["status"], row["reason"]) for row in report["filters"]}
    assert statuses["a"] == ("failed", "unfinished: the crawl stopped first")
    assert statuses["b"][0] == "fresh"
    assert crawler.stats.get_value("manifest/exit_code") == 1
