"""The scheduler's priority queue: Scrapy's downloader-aware one, with a ceiling per API.

Scrapy's DownloaderAwarePriorityQueue hands the downloader a request of the download slot
(here: the API) with the fewest active requests, however many that slot already has queued.
Two things go wrong with that for this crawler:

- A slot's own queue is first-in first-out. Once the downloader holds more requests for an
  API than it may send at once, the next page of a filter in progress, which the spider gives
  the highest priority (deeper pages first), waits behind every request queued before it: a
  whole latency per page. Over CivitAI's longest cursor chains (80 pages at 1,000 models per
  filter, measured) that made the chain, not the APIs' concurrency, the crawl's length.
- Requests waiting out a backoff or a rate limit in the retry middleware are in the
  downloader but not yet in their slot, so they did not count: an API told to wait could
  take all of CONCURRENT_REQUESTS with waiting requests and starve the other API.

- A filter's next page exists only once its current page is parsed, but the page's place
  in its API was given away the moment the page was downloaded, to a queued first page of
  another filter: the next page then waited for another request to finish, about
  latency / concurrency, on every page of the longest chains (measured at 100 models per
  filter: the 8 pages of CivitAI's filter/x took 4.0 s, 3.4 s with the place kept).

This queue hands out a request of an API only while that API has fewer requests anywhere in
the downloader, plus responses being parsed whose request asked to keep its place
(RESERVE_META, set by the spider when a next page is likely, cleared when the parse ends),
than its slot's concurrency. Everything else (priorities, start requests, JOBDIR persistence)
is Scrapy's.

It is the one Scrapy class the project replaces, and the one place that reads Scrapy's
internals (DownloaderAwarePriorityQueue's ``_downloader_interface``, the downloader's
``active`` and ``slots``, the scraper's ``slot``), because it pays at realistic latency
(``python -m bench crawl``: CivitAI 1-3 s, the Hub 0.2-0.5 s a response, medians of 3, the
repository's filters.json; docs/PERFORMANCE.md): at the default 100 models a filter, where
the longest chains bound the crawl, 64.7 s with it and 74.7 s with Scrapy's
DownloaderAwarePriorityQueue against a politeness bound of 62.0 s (1.04x and 1.20x). At 1,000
a filter the crawl is bound by CivitAI's request count instead, and the two queues are alike
(315.1 s and 310.6 s against 292.0 s). tests/test_pqueues.py checks what it relies on, in
real crawls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from scrapy.core.scraper import Scraper
from scrapy.crawler import Crawler
from scrapy.pqueues import DownloaderAwarePriorityQueue, DownloaderInterface

#: Request.meta key: while the response to this request is being parsed, its place among the
#: API's requests stays taken (the parse will yield the filter's next page).
RESERVE_META = "manifest_reserve_slot"


class _ApiCeilings(DownloaderInterface):
    """Activity per slot, counting every request the downloader holds and every response the
    scraper holds whose request keeps its place (RESERVE_META), and only for the slots still
    under their concurrency."""

    scraper: Scraper | None = None

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.scraper = crawler.engine.scraper

    def stats(self, possible_slots: Iterable[str]) -> list[tuple[int, str]]:
        downloader = self.downloader
        requests = set(downloader.active)
        scraper_slot = self.scraper.slot if self.scraper is not None else None
        if scraper_slot is not None:
            for request in (*scraper_slot.active, *(entry[1] for entry in scraper_slot.queue)):
                if request.meta.get(RESERVE_META):
                    requests.add(request)
        held = Counter(downloader.get_slot_key(request) for request in requests)
        return [(held[slot], slot) for slot in possible_slots if held[slot] < self._ceiling(slot)]

    def _ceiling(self, slot: str) -> int:
        downloader = self.downloader
        existing = downloader.slots.get(slot)
        if existing is not None:
            return existing.concurrency
        default = downloader.ip_concurrency or downloader.domain_concurrency
        return int(downloader.per_slot_settings.get(slot, {}).get("concurrency", default))


class ApiCeilingPriorityQueue(DownloaderAwarePriorityQueue):
    """SCHEDULER_PRIORITY_QUEUE: see the module docstring."""

    def __init__(self, crawler: Crawler, *args: Any, **kwargs: Any) -> None:
        super().__init__(crawler, *args, **kwargs)
        # Scrapy's private attribute: replacing one that is no longer read would silently
        # fall back to Scrapy's scheduling, so a Scrapy that changed it stops the crawl.
        if not isinstance(vars(self).get("_downloader_interface"), DownloaderInterface):
            raise RuntimeError(
                "scrapy.pqueues.DownloaderAwarePriorityQueue no longer keeps its downloader "
                "interface in _downloader_interface: manifest_crawler/pqueues.py needs porting"
            )
        self._downloader_interface = _ApiCeilings(crawler)
