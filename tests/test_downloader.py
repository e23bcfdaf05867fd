"""The downloader sends a slot's waiting requests by priority, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import scrapy
from scrapy.http import Response
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from manifest_crawler import settings as project_settings
from tests.scripted import Reply

LOW = [f"low{n}" for n in range(4)]


class _OrderSpider(scrapy.Spider):
    """Four low-priority requests wait in one slot; the first answer yields an urgent one."""

    name = "order"
    url = ""

    async def start(self) -> AsyncIterator[Any]:
        for key in ["first", *LOW]:
            yield scrapy.Request(f"{self.url}?cursor={key}", dont_filter=True)

    def parse(self, response: Response) -> Any:
        if response.url.endswith("cursor=first"):
            yield scrapy.Request(f"{self.url}?cursor=urgent", priority=10, dont_filter=True)


@pytest.mark.parametrize(
    ("downloader", "expected"),
    [
        (project_settings.DOWNLOADER, ["first", "urgent", *LOW]),
        # Scrapy's own, first in first out: shows the case is one where the order matters.
        ("scrapy.core.downloader.Downloader", ["first", *LOW, "urgent"]),
    ],
)
@deferred_f_from_coro_f
async def test_a_waiting_urgent_request_goes_before_earlier_ones(
    scripted: Any, downloader: str, expected: list[str]
) -> None:
    api, url = scripted({key: Reply({}) for key in ["first", "urgent", *LOW]})
    settings = {
        "DOWNLOADER": downloader,
        # One request at a time, 0.3 s apart: the low ones wait in the slot while the first
        # answer (milliseconds on loopback) is parsed and yields the urgent one.
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "DOWNLOAD_DELAY": 0.3,
        "DOWNLOAD_DELAY_JITTER": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
    }
    crawler = get_crawler(_OrderSpider, settings)
    _OrderSpider.url = url
    await crawler.crawl_async()
    assert api.keys == expected
    assert crawler.stats.get_value("downloader/response_status_count/200") == 6
