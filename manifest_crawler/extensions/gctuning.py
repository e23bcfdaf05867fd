"""MANIFEST_GC_THRESHOLD: fewer full garbage collections while a deep crawl holds its models.

A crawl keeps every model it collected until it closes (a million models: millions of live
objects). CPython's cyclic collector runs a full collection, which visits every live object,
whenever enough objects survived the younger generations; Scrapy's per-item asyncio tasks
keep many objects briefly alive, so at the default first-generation threshold (700) a crawl
of 300,000 models x 3 filters spent 17 of its 63 s in 79 full collections. At 50,000 it ran
none, in 45 s, with the same peak memory (measured; the crawl makes few reference cycles, and
those are still collected). The previous thresholds come back when the spider closes.
"""

from __future__ import annotations

import gc
from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured


class GcThreshold:
    def __init__(self, crawler: Crawler, threshold: int) -> None:
        self.threshold = threshold
        self.previous: tuple[int, int, int] | None = None
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        threshold = crawler.settings.getint("MANIFEST_GC_THRESHOLD")
        if threshold <= 0:
            raise NotConfigured
        return cls(crawler, threshold)

    def spider_opened(self) -> None:
        self.previous = gc.get_threshold()
        gc.set_threshold(max(self.threshold, self.previous[0]), *self.previous[1:])

    def spider_closed(self) -> None:
        if self.previous is not None:
            gc.set_threshold(*self.previous)
            self.previous = None
