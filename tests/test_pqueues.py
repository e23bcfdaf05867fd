"""The chain-aware priority queue, in real crawls over loopback HTTP against real Scrapy
objects: if what pqueues.py relies on in Scrapy changes, these fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import scrapy
from scrapy.http import Response
from scrapy.pqueues import DownloaderAwarePriorityQueue, DownloaderInterface
from scrapy.squeues import FifoMemoryQueue
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from manifest_crawler import settings as project_settings
from manifest_crawler.pqueues import RESERVE_META, ApiCeilingPriorityQueue, _ApiCeilings
from tests.scripted import Reply

SLOT = "api"


class _ChainSpider(scrapy.Spider):
    """A chain's first page keeps its place while parsed and yields the next page; another
    filter's first page waits. With one place per API, the next page must go first."""

    name = "chain"
    url = ""
    seen: ClassVar[dict[str, Any]] = {}

    def _request(self, key: str, priority: int, **meta: Any) -> scrapy.Request:
        return scrapy.Request(
            f"{self.url}?cursor={key}",
            priority=priority,
            dont_filter=True,
            meta={"download_slot": SLOT, **meta},
        )

    async def start(self) -> AsyncIterator[Any]:
        yield self._request("first", 1, **{RESERVE_META: True})
        yield self._request("other", 0)

    def parse(self, response: Response) -> Any:
        if not response.url.endswith("cursor=first"):
            return
        # Built on the running crawler, as the queue builds it.
        ceilings = _ApiCeilings(self.crawler)
        self.seen["while_kept"] = ceilings.stats([SLOT])
        response.meta.pop(RESERVE_META)
        self.seen["once_given_back"] = ceilings.stats([SLOT])
        stock = DownloaderAwarePriorityQueue.from_crawler(self.crawler, FifoMemoryQueue, "")
        # The attribute pqueues.py replaces is Scrapy's, and the class it subclasses.
        self.seen["stock_interface"] = vars(stock).get("_downloader_interface")
        ours = ApiCeilingPriorityQueue.from_crawler(self.crawler, FifoMemoryQueue, "")
        self.seen["our_interface"] = vars(ours).get("_downloader_interface")
        yield self._request("next", 2)


@pytest.mark.parametrize(
    ("queue", "expected", "given_back"),
    [
        (project_settings.SCHEDULER_PRIORITY_QUEUE, ["first", "next", "other"], [(0, SLOT)]),
        # Scrapy's own gives the place away as soon as the download ends, to the other
        # filter's page, which still holds it: the case is one where the queue matters.
        ("scrapy.pqueues.DownloaderAwarePriorityQueue", ["first", "other", "next"], []),
    ],
)
@deferred_f_from_coro_f
async def test_a_chain_keeps_its_place_while_its_page_is_parsed(
    scripted: Any, queue: str, expected: list[str], given_back: list[tuple[int, str]]
) -> None:
    api, url = scripted({key: Reply({}) for key in ["first", "next", "other"]})
    settings = {
        "SCHEDULER_PRIORITY_QUEUE": queue,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "AUTOTHROTTLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
    }
    crawler = get_crawler(_ChainSpider, settings)
    _ChainSpider.url = url
    _ChainSpider.seen.clear()
    await crawler.crawl_async()
    assert api.keys == expected
    seen = _ChainSpider.seen
    # One place, kept by the page being parsed: none free; given back: one (ours).
    assert seen["while_kept"] == []
    assert seen["once_given_back"] == given_back
    assert isinstance(seen["stock_interface"], DownloaderInterface)
    assert isinstance(seen["our_interface"], _ApiCeilings)
