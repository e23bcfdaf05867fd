"""The add-on's optional parts. MANIFEST_DEV_CACHE: a second build sends nothing to the APIs and
writes the same manifests. JSONRPC_ENABLED off: the service is not even imported."""

import re
import subprocess
import sys
import time
from pathlib import Path

from scrapy import Request
from scrapy.downloadermiddlewares.httpcache import HttpCacheMiddleware
from scrapy.http import Response
from scrapy.settings import Settings
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from manifest_crawler.emulator import FaultConfig
from manifest_crawler.extensions.httpcache import ApiAnswersPolicy
from manifest_crawler.spiders.all import AllSpider
from manifest_crawler.spiders.civitai import CivitaiSpider
from tests.crawl import ROOT, crawl, crawl_settings, project_settings_dict, write_filters
from tests.scripted import Reply

FILTERS = "filter/loras,filter/pg,AllTime/All/All/downloads/Soft,likes,trending"


def _manifests(folder):
    return {
        p.name: re.sub(rb'"timestamp": "[^"]*"', b"", p.read_bytes())
        for p in folder.iterdir()
        if p.name not in ("run-report.json", "changes.json")
    }


@deferred_f_from_coro_f
async def test_the_second_run_is_served_from_the_cache(make_emulator, tmp_path):
    # Every page fails once first: only the 200 that follows may be stored.
    emulator = make_emulator(faults=FaultConfig(transient_failures=1, fault_kinds=("500",)))
    cache = tmp_path / "cache"
    settings = crawl_settings(
        emulator,
        tmp_path / "out",
        MANIFEST_MAX_ITEMS=250,
        MANIFEST_BACKOFF_INITIAL=0.01,
        MANIFEST_DEV_CACHE=True,
        MANIFEST_DEV_CACHE_DIR=str(cache),
    )
    first = await crawl(AllSpider, settings, filters=FILTERS)
    assert first.stats.get_value("manifest/exit_code") == 0
    assert first.stats.get_value("httpcache/store") == first.stats.get_value(
        "manifest/civitai/pages"
    ) + first.stats.get_value("manifest/huggingface/pages")
    assert any(r.status == 500 for r in emulator.log)
    written = _manifests(tmp_path / "out")
    assert cache.is_dir()

    emulator.clear_log()
    second = await crawl(AllSpider, settings, filters=FILTERS)
    assert emulator.log == []
    assert second.stats.get_value("httpcache/hit") == first.stats.get_value("httpcache/store")
    assert second.stats.get_value("manifest/exit_code") == 0
    assert _manifests(tmp_path / "out") == written


@deferred_f_from_coro_f
async def test_cached_pages_do_not_wait_for_a_replayed_rate_limit(tmp_path, scripted):
    spent = {"RateLimit": '"api";r=0;t=1'}
    pages = {
        "": Reply(
            {"items": [{"id": 1, "name": "One"}], "metadata": {"nextCursor": "2"}}, 200, spent
        ),
        "2": Reply({"items": [{"id": 2, "name": "Two"}], "metadata": {}}, 200, spent),
    }
    _, url = scripted(pages)
    settings = project_settings_dict(
        FILTERS_FILE=str(
            write_filters(
                tmp_path / "f.json",
                civitai=[{"name": "a", "label": "A", "params": {}, "browsing_levels": ["PG"]}],
            )
        ),
        MANIFEST_DIR=str(tmp_path / "out"),
        CIVITAI_API_URL=url,
        MANIFEST_DEV_CACHE=True,
        MANIFEST_DEV_CACHE_DIR=str(tmp_path / "cache"),
    )
    started = time.monotonic()
    live = await crawl(CivitaiSpider, settings)
    assert time.monotonic() - started >= 1.0  # the API's budget was spent: page 2 waited
    assert live.stats.get_value("manifest/backoff/waits")

    started = time.monotonic()
    cached = await crawl(CivitaiSpider, settings)
    assert time.monotonic() - started < 0.9
    assert cached.stats.get_value("httpcache/hit") == 2
    assert not cached.stats.get_value("manifest/backoff/waits")


def test_only_the_api_endpoints_200_answers_are_stored():
    policy = ApiAnswersPolicy(
        Settings({"CIVITAI_API_URL": "https://civitai.com/api/v1/models", "HF_API_URL": ""})
    )
    page = Request("https://civitai.com/api/v1/models?limit=100&sort=x")
    assert policy.should_cache_request(page)
    assert not policy.should_cache_request(Request("https://civitai.com/api/v1/other"))
    assert not policy.should_cache_request(Request("https://civitai.com/robots.txt"))
    # A URL carrying a credential would be stored with it: never cached.
    for secret in ("token", "Token", "access_token", "api_key"):
        assert not policy.should_cache_request(Request(f"{page.url}&{secret}=s"))
    assert policy.should_cache_response(Response(page.url, status=200), page)
    for status in (301, 404, 429, 500, 503):
        assert not policy.should_cache_response(Response(page.url, status=status), page)


def test_off_by_default_and_in_front_of_the_backoff_when_on(tmp_path):
    off = get_crawler(CivitaiSpider, project_settings_dict()).settings
    assert not off.getbool("HTTPCACHE_ENABLED")
    on = get_crawler(
        CivitaiSpider,
        project_settings_dict(MANIFEST_DEV_CACHE=True, MANIFEST_DEV_CACHE_DIR="rel/cache"),
    ).settings
    assert on.getbool("HTTPCACHE_ENABLED")
    assert on["HTTPCACHE_DIR"] == str(Path("rel/cache").resolve())
    middlewares = on.getdict("DOWNLOADER_MIDDLEWARES")
    assert (
        middlewares[HttpCacheMiddleware]
        < middlewares["manifest_crawler.middlewares.backoff.BackoffRetryMiddleware"]
    )


def test_startup_imports_no_module_of_the_json_rpc_service_unless_enabled(tmp_path):
    """The service (twisted.web's server, txjsonrpc-ng) is added by its add-on only when
    JSONRPC_ENABLED; otherwise its modules are not even imported."""
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
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'txjsonrpc_ng' or "
        "m == 'manifest_crawler.extensions.jsonrpc'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines()[-1:] == ["[]"], out.stderr[-3000:]
    assert (tmp_path / "hf-trending.json").exists()
