"""MANIFEST_PROGRESS_INTERVAL / MANIFEST_PROGRESS_BAR: where a crawl stands, without a service.

A periodic INFO line reads the run's ledger (filters finished / total, models, pages,
errors, ETA); on a terminal a live bar on stderr follows the crawl between those lines. CI
logs get only the plain lines.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Any, Self, TextIO

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import AsyncioLoopingCall, call_later, create_looping_call
from twisted.internet.task import LoopingCall

from manifest_crawler.extensions.runstate import RunState

logger = logging.getLogger(__name__)

BAR_MODES = ("auto", "never", "always")
#: Seconds between bar redraws: smooth enough to look alive, rare enough to cost nothing.
BAR_REFRESH = 0.5
_BAR_CELLS = 20
_CLEAR_LINE = "\r\x1b[K"


class ProgressReporter:
    """Reads the RunState's ledger on a timer; a crawl without one gets no progress."""

    def __init__(self, crawler: Crawler, interval: float, bar: bool, stream: TextIO) -> None:
        self.crawler = crawler
        self.interval = interval
        self.bar = bar
        self.stream = stream
        self.ledger: Any = None
        self.log_task: AsyncioLoopingCall | LoopingCall | None = None
        self.bar_task: AsyncioLoopingCall | LoopingCall | None = None
        self.bar_visible = False
        self._filtered_handlers: list[logging.Handler] = []
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        interval = settings.getfloat("MANIFEST_PROGRESS_INTERVAL")
        if interval <= 0:
            raise NotConfigured
        mode = str(settings.get("MANIFEST_PROGRESS_BAR") or "auto").lower()
        if mode not in BAR_MODES:
            logger.warning(
                "MANIFEST_PROGRESS_BAR=%r is not one of %s; using auto", mode, ", ".join(BAR_MODES)
            )
            mode = "auto"
        stream = sys.stderr
        # CI runners often fake a terminal; a bar redrawn twice a second floods their logs.
        on_terminal = _isatty(stream) and not os.environ.get("CI")
        bar = on_terminal if mode == "auto" else mode == "always"
        return cls(crawler, interval, bar, stream)

    def spider_opened(self) -> None:
        run = self.crawler.get_extension(RunState)
        if run is None:
            return
        self.ledger = run.ledger
        self.log_task = create_looping_call(self.log_progress)
        self.log_task.start(self.interval, now=False)
        if self.bar:
            self._watch_log_handlers()
            self.bar_task = create_looping_call(self.draw_bar)
            self.bar_task.start(BAR_REFRESH, now=True)

    def spider_closed(self, reason: str) -> None:
        for task in (self.log_task, self.bar_task):
            if task is not None and task.running:
                task.stop()
        if self.ledger is None:
            return
        if self.bar:
            self.draw_bar()
            self.stream.write("\n")
            self.stream.flush()
            self.bar_visible = False
            self._unwatch_log_handlers()
        logger.info("Progress at close (%s): %s", reason, self.line())

    # --- the plain line -------------------------------------------------------------------

    def log_progress(self) -> None:
        logger.info("Progress: %s", self.line())

    def line(self) -> str:
        p = self.ledger.progress()
        paused = ", paused" if self._paused() else ""
        return (
            f"{p['filters_finished']}/{p['filters_total']} filters finished "
            f"({p['done']} done, {p['failed']} failed, {p['running']} running), "
            f"{p['models']} models, {p['pages']} pages, {p['errors']} errors, "
            f"elapsed {format_duration(p['elapsed'])}, ETA {format_duration(p['eta'])}{paused}"
        )

    # --- the live bar ---------------------------------------------------------------------

    def draw_bar(self) -> None:
        p = self.ledger.progress()
        total = p["filters_total"] or 1
        filled = round(_BAR_CELLS * p["filters_finished"] / total)
        cells = "#" * filled + "-" * (_BAR_CELLS - filled)
        # PAUSED comes early so that a narrow terminal does not cut it off.
        text = (
            f"[{cells}] {p['filters_finished']}/{p['filters_total']} filters"
            f"{' PAUSED' if self._paused() else ''}  {p['models']} models  {p['pages']} pages  "
            f"{p['errors']} errors  ETA {format_duration(p['eta'])}"
        )
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write(_CLEAR_LINE + text[: max(width - 1, 10)])
        self.stream.flush()
        self.bar_visible = True

    def _watch_log_handlers(self) -> None:
        # A log record written after the bar would start mid-line: the handlers that share the
        # bar's stream clear the line first, and the bar comes back right after the record.
        for handler in logging.getLogger().handlers:
            if getattr(handler, "stream", None) is self.stream:
                handler.addFilter(self._clear_bar_before_record)
                self._filtered_handlers.append(handler)

    def _unwatch_log_handlers(self) -> None:
        for handler in self._filtered_handlers:
            handler.removeFilter(self._clear_bar_before_record)
        self._filtered_handlers.clear()

    def _clear_bar_before_record(self, record: logging.LogRecord) -> bool:
        if self.bar_visible:
            self.stream.write(_CLEAR_LINE)
            self.bar_visible = False
            if self.bar_task is not None and self.bar_task.running:
                call_later(0, self.draw_bar)
        return True

    def _paused(self) -> bool:
        try:
            return self.crawler.engine.paused
        except RuntimeError:  # no engine before the crawl starts
            return False


def format_duration(seconds: float | None) -> str:
    """``?`` when unknown, else ``45s``, ``3m07s`` or ``2h05m``."""
    if seconds is None:
        return "?"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
