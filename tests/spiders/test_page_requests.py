"""What the spider asks of Scrapy and of the scheduler's queue: the spider middlewares it runs
through, and the priority of each page request (its chain's pages left)."""

from __future__ import annotations

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.apis.civitai import CivitaiAPI
from manifest_crawler.critical_path import UNBOUNDED_PAGES
from manifest_crawler.emulator import Emulator
from manifest_crawler.filters import ContentRule, Filter
from manifest_crawler.ledger import FilterState
from manifest_crawler.spiders.civitai import CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import crawl, crawl_settings, project_settings_dict, read_json, write_filters
from tests.scripted import Reply


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
    ("max_items", "rule", "priority"),
    [
        # No client-side rule: what the filter still wants, in CivitAI's pages of 100.
        (250, None, 3),
        (100, None, 1),
        # A rule that may drop models, before its first page: the prior share of a quarter.
        (250, ContentRule("rated", 0b100), 10),
        (250, ContentRule("browsing_levels", 0b11), 10),
        # Browsing levels as wide as the listing's drop nothing: as without a rule.
        (250, ContentRule("browsing_levels", 0b11111), 3),
        # No limit: as long as any chain.
        (None, ContentRule("rated", 0b1000), UNBOUNDED_PAGES),
        (None, None, UNBOUNDED_PAGES),
    ],
)
def test_a_page_request_carries_the_pages_its_chain_has_left(max_items, rule, priority):
    """The scheduler sends the chain with the most pages left first (critical_path.py)."""
    params = (("sort", "Newest"), ("nsfw", "true"))
    filter_ = Filter("civitai", "f", "F", params, max_items, rule)
    state = FilterState(filter_, max_items)
    state.start()
    spider = CivitaiSpider.__new__(CivitaiSpider)
    spider.apis = {"civitai": CivitaiAPI("http://api.test/api/v1/models")}
    assert spider._page_request([state], after=None).priority == priority


#: Every browsing level: the nsfw=true listing whole, nothing kept client-side.
ALL_LEVELS = ["PG", "PG13", "R", "X", "XXX"]


def _civitai_listing(prefix: int, pages: int) -> dict[str, Reply]:
    """A scripted listing of ``pages`` full pages of 100 models (ids ``prefix``001…)."""
    replies = {}
    for page in range(pages):
        cursor = "" if page == 0 else f"c{page}"
        items = [
            {"id": prefix * 1000 + page * 100 + n + 1, "name": f"M{n}", "nsfwLevel": 1}
            for n in range(100)
        ]
        metadata = {"nextCursor": f"c{page + 1}"} if page + 1 < pages else {}
        replies[cursor] = Reply({"items": items, "metadata": metadata})
    return replies


@deferred_f_from_coro_f
async def test_the_longest_chain_is_asked_for_first(tmp_path, scripted):
    """Start requests go out as they come, before the rest are queued by priority: the chain
    with the most pages left comes first even when filters.json lists it last."""
    sizes = {"Newest": 1, "Most Downloaded": 2, "Oldest": 3}
    replies = {
        f"{sort}|{cursor}": reply
        for prefix, (sort, pages) in enumerate(sizes.items(), start=1)
        for cursor, reply in _civitai_listing(prefix, pages).items()
    }
    api, url = scripted(replies, by="sort")
    filters = [
        {
            "name": sort.replace(" ", "-"),
            "label": sort,
            "params": {"sort": sort, "nsfw": "true"},
            "browsing_levels": ALL_LEVELS,
            "max_items": n,
        }
        for sort, n in (("Newest", 100), ("Most Downloaded", 200), ("Oldest", 300))
    ]
    settings = project_settings_dict(
        FILTERS_FILE=str(write_filters(tmp_path / "filters.json", civitai=filters)),
        MANIFEST_DIR=str(tmp_path / "out"),
        CIVITAI_API_URL=url,
        CONCURRENT_REQUESTS_PER_DOMAIN=1,
    )
    await crawl(CivitaiSpider, settings)
    assert api.keys[:2] == ["Oldest|", "Oldest|c1"]
    assert api.keys[-1] == "Newest|"
    assert sorted(api.keys) == sorted(replies)


@deferred_f_from_coro_f
async def test_a_feed_export_gets_one_item_a_page_holding_its_models(emulator, tmp_path):
    """`scrapy crawl -O`: an item per filter and page, {source, filter, models}; its models, in
    turn, are the filter's manifest."""
    feed = tmp_path / "items.json"
    settings = _settings(emulator, tmp_path, FEEDS={str(feed): {"format": "json"}})
    crawler = await crawl(HuggingFaceSpider, settings)
    pages = read_json(feed)
    assert {tuple(page) for page in pages} == {("source", "filter", "models")}
    for name in ("a", "b"):
        models = [m for page in pages if page["filter"] == name for m in page["models"]]
        manifest = read_json(tmp_path / "out" / f"hf-{name}.json")["models"]
        assert [m["rank"] for m in models] == list(range(len(manifest)))
        assert [{k: m[k] for k in ("id", "slug", "name")} for m in models] == manifest
        assert {(m["source"], m["filter"]) for m in models} == {("huggingface", name)}
    assert crawler.stats.get_value("item_scraped_count") == len(pages)
    assert crawler.stats.get_value("manifest/huggingface/models") == 50
