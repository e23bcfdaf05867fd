"""Progress a person can follow without the service: periodic lines, a bar on terminals only."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import deferred_f_from_coro_f, deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.test import get_crawler

from manifest_crawler.extensions.progress import ProgressReporter, format_duration
from manifest_crawler.ledger import FilterStatus
from tests.extensions.test_jsonrpc import RUN_STATE, IdleSpider, idle_run, wait_until

PROGRESS_EXTENSION = "manifest_crawler.extensions.progress.ProgressReporter"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress_settings(**overrides):
    return {
        "EXTENSIONS": {RUN_STATE: -10, PROGRESS_EXTENSION: 510},
        "MANIFEST_PROGRESS_INTERVAL": 10,
        "MANIFEST_PROGRESS_BAR": "never",
        "LOG_LEVEL": "INFO",
        **overrides,
    }


def reporter_with_ledger(bar: bool = False, stream: io.StringIO | None = None) -> ProgressReporter:
    crawler = get_crawler(IdleSpider, progress_settings())
    reporter = ProgressReporter(crawler, 10.0, bar, stream or io.StringIO())
    reporter.ledger = idle_run(crawler).ledger
    return reporter


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0, "0s"), (59.4, "59s"), (60, "1m00s"), (187, "3m07s"), (7500, "2h05m")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_line_reads_the_ledger():
    reporter = reporter_with_ledger()
    running = list(reporter.ledger)[1]
    running.start()
    running.pages, running.seen_ids = 4, {"a", "b"}
    for _ in range(4):
        reporter.ledger.page_fetched(running.filter.source)
    running.errors.append("HTTP 500 at http://x")
    line = reporter.line()
    assert line.startswith(
        "1/2 filters finished (1 done, 0 failed, 1 running), 5 models, 6 pages, "
    )
    assert "1 errors, elapsed 0s, ETA " in line
    running.finish(FilterStatus.FAILED, "request_failed")
    assert "2/2 filters finished (1 done, 1 failed, 0 running)" in reporter.line()
    assert reporter.line().endswith("ETA 0s")


def test_bar_is_one_rewritten_line():
    stream = io.StringIO()
    reporter = reporter_with_ledger(bar=True, stream=stream)
    reporter.draw_bar()
    reporter.draw_bar()
    text = stream.getvalue()
    assert "\n" not in text
    assert text.count("\r\x1b[K") == 2
    assert "[##########----------] 1/2 filters  3 models  2 pages  0 errors  ETA " in text


def test_bar_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream = io.StringIO()
    reporter_with_ledger(bar=True, stream=stream).draw_bar()
    line = stream.getvalue().removeprefix("\r\x1b[K")
    # One column short of the width, or the terminal would wrap the bar onto a new line.
    assert line == "[##########----------] 1/2 filters  3 m" and len(line) == 39


def test_log_records_clear_the_bar_first():
    stream = io.StringIO()
    reporter = reporter_with_ledger(bar=True, stream=stream)
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        reporter._watch_log_handlers()
        reporter.draw_bar()
        logging.getLogger("somewhere").warning("a record")
        text = stream.getvalue()
        assert text.startswith("\r\x1b[K[##########----------] 1/2 filters")
        assert text.endswith("\r\x1b[Ka record\n")
        reporter._unwatch_log_handlers()
        assert not handler.filters
    finally:
        root.removeHandler(handler)


def test_settings(monkeypatch):
    with pytest.raises(NotConfigured):
        ProgressReporter.from_crawler(get_crawler(IdleSpider, {"MANIFEST_PROGRESS_INTERVAL": 0}))

    def bar(mode, stderr, ci=None):
        monkeypatch.setattr("sys.stderr", stderr)
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        crawler = get_crawler(IdleSpider, progress_settings(MANIFEST_PROGRESS_BAR=mode))
        return crawler.get_extension(ProgressReporter).bar

    assert bar("auto", FakeTTY()) is True
    assert bar("auto", FakeTTY(), ci="true") is False
    assert bar("auto", io.StringIO()) is False
    assert bar("never", FakeTTY()) is False
    assert bar("always", io.StringIO(), ci="true") is True
    assert bar("sometimes", io.StringIO()) is False


@deferred_f_from_coro_f
async def test_periodic_lines_during_a_crawl_and_a_final_one(caplog, monkeypatch):
    stderr = FakeTTY()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.delenv("CI", raising=False)
    caplog.set_level(logging.INFO, logger="manifest_crawler.extensions.progress")
    crawler = get_crawler(
        IdleSpider, progress_settings(MANIFEST_PROGRESS_INTERVAL=0.1, MANIFEST_PROGRESS_BAR="auto")
    )
    done = deferred_from_coro(crawler.crawl_async())
    await wait_until(lambda: caplog.text.count("Progress: ") >= 2, timeout=5)
    crawler.engine.pause()
    await wait_until(lambda: caplog.text.rstrip().endswith(", paused"), timeout=5)
    await crawler.engine.close_spider_async(reason="finished")
    await asyncio.wait_for(maybe_deferred_to_future(done), 10)
    assert "Progress: 1/2 filters finished (1 done, 0 failed, 0 running), 3 models, 2 pages" in (
        caplog.text
    )
    assert "Progress at close (finished): 1/2 filters finished" in caplog.text
    bar = stderr.getvalue()
    assert "\r\x1b[K[##########----------] 1/2 filters" in bar
    assert "1/2 filters PAUSED  3 models" in bar
    assert bar.endswith("\n")
