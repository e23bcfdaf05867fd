"""The scheduler's priority queue: Scrapy's downloader-aware one, with a ceiling per API.

The spider gives each page request the estimated pages its chain has left as its priority
(critical_path.py), so the critical path goes first, started or not, as long as every free
place of an API goes to the highest-priority request of that API. Scrapy's
DownloaderAwarePriorityQueue pops by priority within a download slot (here: an API), but
hands the downloader a request of the slot with the fewest active requests however many that
slot already holds. Two things then go wrong:

- A slot's own queue in the downloader is first-in first-out. Once the downloader holds more
  requests for an API than it may send at once (CONCURRENT_REQUESTS counts both APIs, so
  when one is done the other's queue fills), the next page of the longest chain waits behind
  every request queued before it: a whole latency per page of the critical path.
- Requests waiting out a backoff or a rate limit in the retry middleware are in the
  downloader but not yet in their slot, so they did not count: an API told to wait could
  take all of CONCURRENT_REQUESTS with waiting requests and starve the other API.

And one more: a chain's next page exists only once its current page is parsed, but the
page's place in its API was given away the moment it was downloaded, to whatever waited
then: the next page then waited for another request to finish, about latency / concurrency,
on every page of the longest chains.

So this queue hands out a request of an API only while that API has fewer requests anywhere
in the downloader, plus responses the scraper holds (being parsed, or queued to be), than
its slot's concurrency: a place is given again only once the page that held it has yielded
its chain's next page, and then to the API's highest-priority request. Everything else
(priorities within a slot, start requests, JOBDIR persistence) is Scrapy's.

It reads only public attributes of Scrapy's objects (the downloader's ``active``,
``slots`` and ``get_slot_key``, the scraper's ``slot``) and overrides only the public
``pop`` and ``peek``. Why it stays, measured against Scrapy's own queue with the same
priorities: docs/PERFORMANCE.md. tests/test_pqueues.py checks what it relies on, in real
crawls.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from scrapy import Request
from scrapy.core.downloader import Downloader
from scrapy.core.scraper import Scraper
from scrapy.crawler import Crawler
from scrapy.pqueues import DownloaderAwarePriorityQueue


class ApiPlaces:
    """How many places each API (download slot) holds: every request the downloader holds
    and every response the scraper holds, against the slot's concurrency."""

    def __init__(self, crawler: Crawler) -> None:
        engine = crawler.engine
        assert engine is not None  # the scheduler's queue is made once the engine is
        self.downloader: Downloader = engine.downloader
        self.scraper: Scraper = engine.scraper

    def held(self) -> Counter[str]:
        requests = set(self.downloader.active)
        scraper_slot = self.scraper.slot
        if scraper_slot is not None:
            requests.update(scraper_slot.active)
            requests.update(entry[1] for entry in scraper_slot.queue)
        slot_key = self.downloader.get_slot_key
        return Counter(slot_key(request) for request in requests)

    def ceiling(self, slot: str) -> int:
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
        self.places = ApiPlaces(crawler)

    def open_slot(self) -> str | None:
        """The API with queued requests and a free place, the one holding fewest first."""
        held = self.places.held()
        open_slots = [
            (held[slot], slot)
            for slot, queue in self.pqueues.items()
            if len(queue) and held[slot] < self.places.ceiling(slot)
        ]
        return min(open_slots)[1] if open_slots else None

    def pop(self) -> Request | None:
        slot = self.open_slot()
        if slot is None:
            return None
        queue = self.pqueues[slot]
        request = queue.pop()
        if not len(queue):
            del self.pqueues[slot]
            queue.close()
        return request

    def peek(self) -> Request | None:
        slot = self.open_slot()
        return None if slot is None else self.pqueues[slot].peek()
