"""Scrapy's own tools in this project, as real processes against the emulator: they make no
manifest run (no filters file read, nothing written), and `scrapy parse` shows the entries a
spider keeps of a listing page."""

from __future__ import annotations

import ast
import json
from urllib.parse import urlencode

from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.apis.normalize import normalize_model
from manifest_crawler.filters import load_filters
from tests.crawl import REPO_FILTERS, scrapy, setting_args

#: What a manifest run would leave in the log, and must not.
RUN_TRACES = ("RunState extension", "NOT refreshed", "No filter could be fetched", "Traceback")


def _clean(err: bytes, folder) -> str:
    text = err.decode()
    for trace in RUN_TRACES:
        assert trace not in text, text[-3000:]
    assert not folder.exists(), "a tool wrote the manifest folder"
    return text


def _url(base: str, filter_name: str, source: str, limit: int) -> str:
    [filter_] = load_filters(REPO_FILTERS).select([source], [filter_name])
    return f"{base}?{urlencode([*filter_.query_pairs(), ('limit', str(limit))])}"


def _parsed(out: bytes) -> tuple[list[dict], list[str]]:
    """The items and the requests `scrapy parse --nocolour` printed."""
    text = out.decode()
    items = text.split("# Scraped Items", 1)[1].split("\n", 1)[1].split("# Requests")[0]
    requests = text.split("# Requests", 1)[1].split("\n", 1)[1]
    return ast.literal_eval(items.strip()), [r for r in requests.split() if "://" in r]


@deferred_f_from_coro_f
async def test_fetch_and_shell_work_as_in_any_project(emulator, tmp_path):
    folder = tmp_path / "manifests"
    settings = setting_args(MANIFEST_DIR=folder)
    url = f"{emulator.hf_url}?limit=2"
    out, err, code = await scrapy("fetch", *settings, url)
    assert code == 0
    _clean(err, folder)
    assert len(json.loads(out)) == 2
    for spider in ([], ["--spider=huggingface"]):
        out, err, code = await scrapy(
            "shell", *settings, *spider, "-c", "len(response.json())", url
        )
        assert (code, out.decode().strip()) == (0, "2"), err.decode()[-2000:]
        _clean(err, folder)
    out, err, code = await scrapy("fetch", *settings, "--spider=all", url)
    assert code == 0
    assert "Disabled manifest_crawler.extensions.runstate.RunState: not a manifest run" in _clean(
        err, folder
    )


@deferred_f_from_coro_f
async def test_parse_shows_the_entries_a_filter_keeps_and_its_next_page(emulator, tmp_path):
    folder = tmp_path / "manifests"
    settings = setting_args(MANIFEST_DIR=folder)
    url = _url(emulator.hf_url, "likes", "huggingface", 4)
    out, err, code = await scrapy("parse", *settings, "--spider=huggingface", "--nocolour", url)
    assert code == 0
    assert "is the page of filter(s) huggingface:likes" in _clean(err, folder)
    items, requests = _parsed(out)
    expected = emulator.query_hf(
        dict(load_filters(REPO_FILTERS).select(["huggingface"], ["likes"])[0].query_pairs())
    )[:4]
    assert [item["id"] for item in items] == expected
    assert {item["filter"] for item in items} == {"likes"}
    assert [item["rank"] for item in items] == [0, 1, 2, 3]
    [next_page] = requests
    assert next_page.startswith(emulator.hf_url) and "cursor=" in next_page


@deferred_f_from_coro_f
async def test_parse_applies_the_filters_rating_rule(emulator, tmp_path):
    folder = tmp_path / "manifests"
    settings = setting_args(MANIFEST_DIR=folder, CIVITAI_API_URL=emulator.civitai_url)
    url = _url(emulator.civitai_url, "filter/pg13", "civitai", 50)
    page, _, code = await scrapy("fetch", *settings, "--nolog", url)
    assert code == 0
    [filter_] = load_filters(REPO_FILTERS).select(["civitai"], ["filter/pg13"])
    kept = [
        normalize_model("civitai", item["id"], item["name"]).id
        for item in json.loads(page)["items"]
        if filter_.rule.keeps(item["nsfwLevel"])
    ]
    assert 0 < len(kept) < 50
    # The `all` spider tells the API by the URL (CIVITAI_API_URL).
    out, err, code = await scrapy("parse", *settings, "--spider=all", "--nocolour", url)
    assert code == 0
    _clean(err, folder)
    items, [next_page] = _parsed(out)
    # Each filter reading that listing takes the page's items by its own rule, as in a run.
    assert [item["id"] for item in items if item["filter"] == "filter/pg13"] == kept
    assert "cursor=" in next_page


@deferred_f_from_coro_f
async def test_check_runs_and_lists(tmp_path):
    folder = tmp_path / "manifests"
    for args in ([], ["-l"], ["huggingface"]):
        _, err, code = await scrapy("check", *args, *setting_args(MANIFEST_DIR=folder))
        assert code == 0, err.decode()[-2000:]
        _clean(err, folder)
