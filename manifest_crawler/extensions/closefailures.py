"""Errors raised while the crawl closes (or in any signal handler) count against the run, in
one line each.

Scrapy catches what a pipeline's ``close_spider``, the scheduler's ``close`` or a
``spider_closed`` handler raises, logs ``Scraper close failure`` (or the like) with a
traceback, and goes on: the process would exit 0 with files missing. This extension counts
those records in the ``manifest/close_failures`` stat (any count makes the exit status 1, see
runreport.run_exit_status) and, unless the log level is DEBUG, logs each as one line naming
the error instead of a traceback.
"""

from __future__ import annotations

import logging
from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector

from manifest_crawler.output.runreport import CLOSE_FAILURES_STAT

#: The loggers and messages of Scrapy's catch-and-log at close (scrapy/core/engine.py) and of
#: its signal dispatch (scrapy/utils/signal.py).
WATCHED: dict[str, tuple[str, ...]] = {
    "scrapy.core.engine": (
        "Slot close failure",
        "Downloader close failure",
        "Scraper close failure",
        "Scheduler close failure",
        "Error while sending spider_close signal",
        "Stats close failure",
    ),
    "scrapy.utils.signal": ("Error caught on signal handler",),
}


class _CloseFailureFilter(logging.Filter):
    def __init__(self, stats: StatsCollector, keep_traceback: bool) -> None:
        super().__init__()
        self.stats = stats
        self.keep_traceback = keep_traceback

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        messages = WATCHED.get(record.name, ())
        if not any(str(record.msg).startswith(message) for message in messages):
            return True
        self.stats.inc_value(CLOSE_FAILURES_STAT)
        if record.exc_info and record.exc_info[1] is not None and not self.keep_traceback:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


class CloseFailures:
    def __init__(self, crawler: Crawler) -> None:
        level = crawler.settings.get("LOG_LEVEL")
        numeric = logging.getLevelName(level) if isinstance(level, str) else level
        # A failure's traceback is for DEBUG runs; an unknown level keeps it too.
        keep = not isinstance(numeric, int) or numeric <= logging.DEBUG
        assert crawler.stats is not None
        self.filter = _CloseFailureFilter(crawler.stats, keep)
        for name in WATCHED:
            logging.getLogger(name).addFilter(self.filter)
        crawler.signals.connect(self.engine_stopped, signal=signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def engine_stopped(self) -> None:
        for name in WATCHED:
            logging.getLogger(name).removeFilter(self.filter)
