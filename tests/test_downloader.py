"""The downloader sends a slot's waiting requests by priority, over real loopback HTTP, and
imports Scrapy's HTTP handler without walking the stack (in real `scrapy crawl` processes)."""

from __future__ import annotations

import inspect
import json
import logging
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import scrapy
from scrapy.http import Response
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from manifest_crawler import settings as project_settings
from tests.crawl import scrapy_crawl, setting_args, write_filters
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


#: Scrapy's deprecated TLS names, by the module each must claim (its deprecation warnings
#: name that path).
DEPRECATED_TLS_NAMES = {
    "scrapy.core.downloader.tls": ["ScrapyClientTLSOptions"],
    "scrapy.core.downloader.contextfactory": [
        "ScrapyClientContextFactory",
        "AcceptableProtocolsContextFactory",
    ],
}


class _ImportProbe:
    """Loaded into a real `scrapy crawl` process: logs, as a JSON line, what importing the
    HTTP handler left behind once the engine has started."""

    @classmethod
    def from_crawler(cls, crawler: Any) -> _ImportProbe:
        probe = cls()
        crawler.signals.connect(probe.engine_started, signal=scrapy.signals.engine_started)
        return probe

    def engine_started(self) -> None:
        modules = {}
        for module_name, names in DEPRECATED_TLS_NAMES.items():
            for name in names:
                old = getattr(sys.modules[module_name], name)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    type("Subclass", (old,), {})
                modules[name] = [old.__module__, [str(w.message) for w in caught]]
        report = {
            # Filled by inspect.getmodule()'s walk over every loaded module's path.
            "files_looked_up": len(inspect.modulesbyfile),
            "deprecate_inspect_is_inspect": sys.modules["scrapy.utils.deprecate"].inspect
            is inspect,
            "modules": modules,
        }
        logging.getLogger(__name__).warning("import probe: %s", json.dumps(report))


async def _import_report(tmp_path: Path, url: str, downloader: str) -> dict[str, Any]:
    filters = write_filters(
        tmp_path / f"{downloader}.json",
        civitai=[{"name": "good", "label": "Good", "params": {"sort": "good"}}],
    )
    extensions = {**project_settings.EXTENSIONS, f"{__name__}._ImportProbe": 999}
    _, err, code = await scrapy_crawl(
        "civitai",
        *setting_args(
            FILTERS_FILE=filters,
            CIVITAI_API_URL=url,
            MANIFEST_DIR=tmp_path / downloader,
            EXTENSIONS=json.dumps(extensions),
            DOWNLOADER=downloader,
        ),
    )
    log = err.decode()
    assert code == 0, log[-2000:]
    return json.loads(log.split("import probe: ", 1)[1].splitlines()[0])


@deferred_f_from_coro_f
async def test_the_http_handler_is_imported_without_a_stack_walk(
    tmp_path: Path, scripted: Any
) -> None:
    _, url = scripted({"": Reply({"items": [{"id": 1, "name": "One"}], "metadata": {}})})
    ours = await _import_report(tmp_path, url, project_settings.DOWNLOADER)
    scrapys = await _import_report(tmp_path, url, "scrapy.core.downloader.Downloader")
    # Scrapy's own downloader lets the import walk every module's path; ours does not.
    assert scrapys["files_looked_up"] > 100
    assert ours["files_looked_up"] == 0
    assert ours["deprecate_inspect_is_inspect"]
    # The deprecated names claim the same modules and warn the same way either way.
    assert ours["modules"] == scrapys["modules"]
    for module_name, names in DEPRECATED_TLS_NAMES.items():
        for name in names:
            claimed, messages = ours["modules"][name]
            assert claimed == module_name
            assert len(messages) == 1 and f"{module_name}.{name}" in messages[0]
