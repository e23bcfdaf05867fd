"""Per-item and per-process overhead cut from Scrapy's defaults: the behaviour stays."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from types import SimpleNamespace

import pytest
from itemadapter import ItemAdapter
from itemadapter.adapter import DataclassAdapter
from pydispatch.dispatcher import getAllReceivers
from scrapy import signals
from scrapy.http import Request
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.commands import crawl as crawl_command
from manifest_crawler.emulator import Emulator
from manifest_crawler.filters import Filter
from manifest_crawler.itemproc import CoreStats, ItemPipelines
from manifest_crawler.items import ModelEntry, ModelEntryAdapter
from manifest_crawler.ledger import FilterState
from manifest_crawler.pqueues import RESERVE_META, _ApiCeilings
from manifest_crawler.spiders.civitai import CivitaiAPI, CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import ROOT, crawl, crawl_settings, write_filters

SCRAPY_CORE_STATS = "scrapy.extensions.corestats.CoreStats"
OUR_CORE_STATS = "manifest_crawler.itemproc.CoreStats"


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


@pytest.mark.parametrize(
    ("extensions", "processor"),
    [
        ({}, None),  # the project's: ours and ours
        ({SCRAPY_CORE_STATS: 0, OUR_CORE_STATS: None}, None),  # Scrapy's CoreStats alone
        ({}, "scrapy.pipelines.ItemPipelineManager"),  # Scrapy's item processor alone
    ],
)
@deferred_f_from_coro_f
async def test_items_are_counted_once_whichever_half_is_enabled(
    emulator, tmp_path, extensions, processor
):
    settings = _settings(emulator, tmp_path)
    settings["EXTENSIONS"] = {**settings["EXTENSIONS"], **extensions}
    if processor is not None:
        settings["ITEM_PROCESSOR"] = processor
    crawler = await crawl(HuggingFaceSpider, settings)
    stats = crawler.stats.get_stats()
    assert stats["item_scraped_count"] == stats["manifest/huggingface/models"] == 50


@deferred_f_from_coro_f
async def test_item_scraped_has_no_receiver_of_ours_but_still_reaches_others(emulator, tmp_path):
    from scrapy.utils.test import get_crawler

    crawler = get_crawler(HuggingFaceSpider, _settings(emulator, tmp_path))
    received: list[object] = []
    crawler.signals.connect(lambda item: received.append(item), signals.item_scraped, weak=False)
    await crawler.crawl_async()
    assert len(received) == crawler.stats.get_value("item_scraped_count") == 50
    assert all(isinstance(item, ModelEntry) for item in received)
    assert isinstance(crawler.get_extension(CoreStats), CoreStats)
    assert isinstance(crawler.engine.scraper.itemproc, ItemPipelines)


@deferred_f_from_coro_f
async def test_by_default_nothing_receives_every_item(emulator, tmp_path):
    from scrapy.utils.test import get_crawler

    crawler = get_crawler(HuggingFaceSpider, _settings(emulator, tmp_path))
    await crawler.crawl_async()
    assert list(getAllReceivers(crawler.signals.sender, signals.item_scraped)) == []
    # Scrapy's stats besides the item count are all there.
    stats = crawler.stats.get_stats()
    for key in ("start_time", "finish_time", "elapsed_time_seconds", "response_received_count"):
        assert key in stats


@deferred_f_from_coro_f
async def test_spider_middlewares_an_api_crawl_does_not_need_are_off(emulator, tmp_path):
    from scrapy.utils.test import get_crawler

    crawler = get_crawler(HuggingFaceSpider, _settings(emulator, tmp_path))
    await crawler.crawl_async()
    names = {type(mw).__name__ for mw in crawler.engine.scraper.spidermw.middlewares}
    assert not names & {"DepthMiddleware", "UrlLengthMiddleware"}
    assert {"RefererMiddleware", "HttpErrorMiddleware", "StartSpiderMiddleware"} <= names
    assert "request_depth_max" not in crawler.stats.get_stats()


def test_startup_imports_no_module_of_a_disabled_component(tmp_path):
    """remote_control (aiohttp), telnet (twisted.conch) and cookies (tldextract, requests) are
    off by setting; left out of the component lists their modules are not even imported."""
    code = (
        "import sys\n"
        "from scrapy.crawler import AsyncCrawlerProcess\n"
        "from scrapy.utils.project import get_project_settings\n"
        "settings = get_project_settings()\n"
        f"settings.set('MANIFEST_DIR', {str(tmp_path)!r})\n"
        "settings.set('MANIFEST_OFFLINE', True)\n"
        "settings.set('MANIFEST_MAX_ITEMS', 1)\n"
        "settings.set('LOG_LEVEL', 'WARNING')\n"
        "process = AsyncCrawlerProcess(settings)\n"
        "process.crawl('huggingface', filters='trending')\n"
        "process.start()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'tldextract', 'requests', 'twisted') and "
        "(m.startswith('twisted.conch') or not m.startswith('twisted'))))\n"
        "print(sorted(m for m in sys.modules if m in ("
        "'scrapy.extensions.remote_control', 'scrapy.extensions.telnet', "
        "'scrapy.downloadermiddlewares.cookies')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines()[-2:] == ["[]", "[]"], out.stderr[-3000:]
    assert (tmp_path / "hf-trending.json").exists()


def test_model_entries_adapt_as_the_dataclass_adapter_would():
    entry = ModelEntry("huggingface", "f", 3, "a/b", "a/b")
    adapter = ItemAdapter(entry)
    assert isinstance(adapter.adapter, ModelEntryAdapter)
    plain = DataclassAdapter(entry)
    assert list(adapter.field_names()) == list(plain.field_names())
    assert dict(adapter) == dict(plain) == dataclasses.asdict(entry)
    assert adapter.get_field_meta("id") == plain.get_field_meta("id")
    adapter["slug"] = "a--b"
    assert entry.slug == "a--b"
    with pytest.raises(KeyError):
        adapter["nope"]
    with pytest.raises(KeyError):
        adapter["nope"] = 1
    assert ItemAdapter.is_item(entry) and ItemAdapter.is_item_class(ModelEntry)
    assert ItemAdapter.get_field_names_from_class(ModelEntry) == [
        f.name for f in dataclasses.fields(ModelEntry)
    ]

    # Anything else is left to the adapters that handled it before.
    @dataclasses.dataclass
    class Other:
        x: int = 1

    assert type(ItemAdapter(Other()).adapter) is DataclassAdapter
    assert type(ItemAdapter({"x": 1}).adapter).__name__ == "DictAdapter"


@pytest.mark.parametrize(
    ("max_items", "rating_mask", "reserves"),
    [(100, 0b100, True), (None, 0b1000, True), (None, None, False), (5000, None, False)],
)
def test_only_the_longest_chains_keep_their_place(max_items, rating_mask, reserves):
    """Filters kept client-side (by rating) need the most pages, one after another."""
    filter_ = Filter("civitai", "f", "F", (("sort", "Newest"),), max_items, rating_mask)
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
    response = SimpleNamespace(meta=meta)
    assert list(spider.parse_page(response)) == ["item", "next page"]  # type: ignore[arg-type]
    assert seen == [True] and RESERVE_META not in meta


def test_a_page_being_parsed_holds_its_place_while_it_asked_to():
    def request(slot: str, **meta: object) -> Request:
        return Request("http://x/", meta={"download_slot": slot, **meta})

    downloader = SimpleNamespace(
        active={request("civitai")},
        slots={"civitai": SimpleNamespace(concurrency=3)},
        per_slot_settings={},
        ip_concurrency=0,
        domain_concurrency=8,
        get_slot_key=lambda r: r.meta["download_slot"],
    )
    parsing = request("civitai", **{RESERVE_META: True})
    queued = request("civitai", **{RESERVE_META: True})
    ceilings = _ApiCeilings.__new__(_ApiCeilings)
    ceilings.downloader = downloader  # type: ignore[assignment]
    ceilings.scraper = SimpleNamespace(  # type: ignore[assignment]
        slot=SimpleNamespace(
            active={parsing, request("civitai")},  # the second kept no place
            queue=[(None, queued, None)],
        )
    )
    assert ceilings.stats(["civitai"]) == []  # 1 downloading + 2 keeping their place = 3
    queued.meta.pop(RESERVE_META)
    assert ceilings.stats(["civitai"]) == [(2, "civitai")]


def test_fast_exit_does_what_the_interpreter_teardown_would_have_needed(monkeypatch):
    calls: list[object] = []

    class Exited(Exception):
        pass

    def fake_exit(code: int) -> None:
        calls.append(("exit", code))
        raise Exited

    monkeypatch.setattr(crawl_command.gc, "collect", lambda: calls.append("gc"))
    monkeypatch.setattr(crawl_command.atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    monkeypatch.setattr(crawl_command.os, "_exit", fake_exit)
    with pytest.raises(Exited):
        crawl_command.exit_now(3)
    assert calls == ["gc", "atexit", ("exit", 3)]


def test_no_fast_exit_under_a_profiler_or_tracer():
    if sys.gettrace() is None and sys.getprofile() is None:  # pytest under coverage: traced
        assert not crawl_command.observed()
    previous = sys.getprofile()
    sys.setprofile(lambda *args: None)
    try:
        assert crawl_command.observed()
    finally:
        sys.setprofile(previous)
