"""What the spider asks of Scrapy and of the scheduler's queue: the spider middlewares it runs
through, and which page requests keep their place in their API (pqueues.RESERVE_META)."""

from __future__ import annotations

import pytest
from scrapy.http import Request, Response
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.apis.civitai import CivitaiAPI
from manifest_crawler.emulator import Emulator
from manifest_crawler.filters import ContentRule, Filter
from manifest_crawler.ledger import FilterState
from manifest_crawler.pqueues import RESERVE_META
from manifest_crawler.spiders.civitai import CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import crawl_settings, write_filters


def _settings(emulator: Emulator, tmp_path, **overrides):
    filters = write_filters(
        tmp_path / "filters.json",
        huggingface=[
            {"name": "a", "label": "A", "params": {"sort": "likes"}, "max_items": 30},
            {"name": "b", "label": "B", "params": {"sort": "downloads"}, "max_items": 20},
        ],
    )
    settings = crawl_settings(emulator, tmp_path / "out", **overrides)
    settings["FILTERS_FILE"] = str(filters)
    return settings


@deferred_f_from_coro_f
async def test_spider_middlewares_an_api_crawl_does_not_need_are_off(emulator, tmp_path):
    from scrapy.utils.test import get_crawler

    crawler = get_crawler(HuggingFaceSpider, _settings(emulator, tmp_path))
    await crawler.crawl_async()
    names = {type(mw).__name__ for mw in crawler.engine.scraper.spidermw.middlewares}
    assert not names & {"DepthMiddleware", "UrlLengthMiddleware"}
    assert {"RefererMiddleware", "HttpErrorMiddleware", "StartSpiderMiddleware"} <= names
    assert "request_depth_max" not in crawler.stats.get_stats()


@pytest.mark.parametrize(
    ("max_items", "rule", "reserves"),
    [
        (100, ContentRule("rated", 0b100), True),
        (None, ContentRule("browsing_levels", 0b11), True),
        (None, None, False),
        (5000, None, False),
        # Browsing levels as wide as the listing's drop nothing: not kept client-side.
        (100, ContentRule("browsing_levels", 0b11111), False),
    ],
)
def test_only_the_longest_chains_keep_their_place(max_items, rule, reserves):
    """Filters kept client-side (by their rule) need the most pages, one after another."""
    params = (("sort", "Newest"), ("nsfw", "true"))
    filter_ = Filter("civitai", "f", "F", params, max_items, rule)
    state = FilterState(filter_, max_items)
    state.start()
    spider = CivitaiSpider.__new__(CivitaiSpider)
    spider.apis = {"civitai": CivitaiAPI("http://api.test/api/v1/models")}
    request = spider._page_request([state], after=None)
    assert bool(request.meta.get(RESERVE_META)) is reserves


def test_a_parsed_page_gives_its_place_back_once_it_is_done(monkeypatch):
    spider = HuggingFaceSpider.__new__(HuggingFaceSpider)
    meta = {RESERVE_META: True}
    seen: list[bool] = []

    def fake_parse(response):
        yield "item"
        seen.append(RESERVE_META in response.meta)
        yield "next page"

    monkeypatch.setattr(spider, "_parse_page", fake_parse)
    response = Response("http://x/", request=Request("http://x/", meta=meta))
    assert list(spider.parse_page(response)) == ["item", "next page"]
    assert seen == [True] and RESERVE_META not in response.meta
