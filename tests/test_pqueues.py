"""The scheduler's queue, in real crawls over loopback HTTP against real Scrapy objects: if what
pqueues.py relies on in Scrapy changes, these fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import scrapy
from scrapy.http import Response
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from manifest_crawler import settings as project_settings
from manifest_crawler.pqueues import ApiPlaces
from tests.scripted import Reply

SLOT = "api"
STOCK = "scrapy.pqueues.DownloaderAwarePriorityQueue"


class _ScriptSpider(scrapy.Spider):
    """Start requests and, per page, the requests its parse yields, each with a priority (the
    pages its chain has left, as the project's spider sets them)."""

    name = "script"
    url = ""
    start_pages: ClassVar[list[tuple[str, int]]] = []
    next_pages: ClassVar[dict[str, list[tuple[str, int]]]] = {}
    seen: ClassVar[dict[str, Any]] = {}

    def _request(self, key: str, priority: int) -> scrapy.Request:
        return scrapy.Request(
            f"{self.url}?cursor={key}",
            priority=priority,
            dont_filter=True,
            meta={"download_slot": SLOT},
        )

    async def start(self) -> AsyncIterator[Any]:
        for key, priority in self.start_pages:
            yield self._request(key, priority)

    def parse(self, response: Response) -> Any:
        key = response.url.rpartition("cursor=")[2]
        # Built on the running crawler, as the queue builds it.
        self.seen.setdefault("held_while_parsed", []).append(ApiPlaces(self.crawler).held()[SLOT])
        for next_key, priority in self.next_pages.get(key, ()):
            yield self._request(next_key, priority)


async def _served(scripted: Any, queue: str, concurrency: int) -> list[str]:
    keys = [*(key for key, _ in _ScriptSpider.start_pages)]
    keys += [key for pages in _ScriptSpider.next_pages.values() for key, _ in pages]
    api, url = scripted({key: Reply({}) for key in keys})
    settings = {
        "SCHEDULER_PRIORITY_QUEUE": queue,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "AUTOTHROTTLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
    }
    crawler = get_crawler(_ScriptSpider, settings)
    _ScriptSpider.url = url
    _ScriptSpider.seen.clear()
    await crawler.crawl_async()
    return list(api.keys)


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        (project_settings.SCHEDULER_PRIORITY_QUEUE, ["short", "long", "long-2", "short-2"]),
        # Scrapy's own hands the downloader every request while it has room overall, and the
        # API's slot sends them first in, first out: the short chain's queued second page
        # goes before the long chain's, whatever the priorities.
        (STOCK, ["short", "long", "short-2", "long-2"]),
    ],
)
@deferred_f_from_coro_f
async def test_the_chain_with_the_most_pages_left_goes_first_started_or_not(
    scripted: Any, queue: str, expected: list[str]
) -> None:
    _ScriptSpider.start_pages = [("short", 2), ("long", 3)]
    _ScriptSpider.next_pages = {"short": [("short-2", 1)], "long": [("long-2", 2)]}
    assert await _served(scripted, queue, concurrency=1) == expected


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        (project_settings.SCHEDULER_PRIORITY_QUEUE, ["a", "a-2", "b", "c"]),
        (STOCK, ["a", "b", "c", "a-2"]),
    ],
)
@deferred_f_from_coro_f
async def test_an_api_gets_no_more_requests_than_it_has_places(
    scripted: Any, queue: str, expected: list[str]
) -> None:
    """Chain a, the longest, must not wait behind first pages of shorter chains queued in the
    downloader before its next page existed."""
    _ScriptSpider.start_pages = [("a", 5), ("b", 1), ("c", 1)]
    _ScriptSpider.next_pages = {"a": [("a-2", 4)]}
    assert await _served(scripted, queue, concurrency=1) == expected


@deferred_f_from_coro_f
async def test_a_page_keeps_its_place_while_it_is_parsed(scripted: Any) -> None:
    """The page being parsed counts among its API's places: with one place, nothing else is
    sent until its parse has yielded its chain's next page (which then competes by priority
    with every waiting request)."""
    _ScriptSpider.start_pages = [("first", 1), ("other", 0)]
    _ScriptSpider.next_pages = {"first": [("next", 2)]}
    served = await _served(scripted, project_settings.SCHEDULER_PRIORITY_QUEUE, concurrency=1)
    assert served == ["first", "next", "other"]
    assert _ScriptSpider.seen["held_while_parsed"] == [1, 1, 1]
