"""Pagination, dedup and page handling of the spider shell, against scripted pages over HTTP."""

import inspect
import logging

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.apis.huggingface import HuggingFaceAPI
from manifest_crawler.filters import RULE_KEYS
from manifest_crawler.spiders.civitai import CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import crawl, project_settings_dict, read_json, write_filters
from tests.scripted import Reply


def _civitai_item(model_id, name=None, level=1):
    return {"id": model_id, "name": name or f"Model {model_id}", "nsfwLevel": level}


def _page(items, cursor=None):
    metadata = (
        {} if cursor is None else {"nextCursor": cursor, "nextPage": f"http://x/?cursor={cursor}"}
    )
    return {"items": items, "metadata": metadata}


def _settings(tmp_path, filters, **extra):
    # A CivitAI entry without a rule reads browsing level PG: the API's own nsfw=false.
    civitai = [
        entry if set(entry) & set(RULE_KEYS) else {**entry, "browsing_levels": ["PG"]}
        for entry in filters.get("civitai", [])
    ]
    filters = {**filters, "civitai": civitai}
    return project_settings_dict(
        FILTERS_FILE=str(write_filters(tmp_path / "filters.json", **filters)),
        MANIFEST_DIR=str(tmp_path / "out"),
        **{"MANIFEST_RETRY_TIMES": 1, "MANIFEST_BACKOFF_INITIAL": 0.01, **extra},
    )


def _models(tmp_path, name):
    return [m["id"] for m in read_json(tmp_path / "out" / name)["models"]]


@deferred_f_from_coro_f
async def test_cursor_pagination_dedup_invalid_and_empty_pages(tmp_path, scripted):
    api, url = scripted(
        {
            "": Reply(
                _page([_civitai_item(1), _civitai_item(2), {"id": "x1", "name": "bad"}], "c1")
            ),
            # CivitAI bug #1848: an empty page that still carries a cursor is not the end.
            "c1": Reply(_page([], "c2")),
            # The same model again across a page boundary, and one without a name.
            "c2": Reply(_page([_civitai_item(2), {"id": 7, "name": "  "}, _civitai_item(3)], "c3")),
            "c3": Reply(_page([_civitai_item(4, " Spaced  name ")])),
        }
    )
    filters = {"civitai": [{"name": "filter/all", "label": "All", "params": {"sort": "Newest"}}]}
    crawler = await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    manifest = read_json(tmp_path / "out" / "civitai-filter-all.json")
    assert [m["id"] for m in manifest["models"]] == [
        "civitai-1",
        "civitai-2",
        "civitai-3",
        "civitai-4",
    ]
    assert manifest["models"][3] == {"id": "civitai-4", "slug": "civitai-4", "name": "Spaced  name"}
    assert manifest["filter"] == "filter/all"
    stats = crawler.stats.get_stats()
    assert stats["manifest/dropped/invalid_id"] == 1
    assert stats["manifest/dropped/missing_name"] == 1
    assert stats["manifest/dropped/duplicate"] == 1
    assert stats["manifest/civitai/pages"] == 4
    # Parameters verbatim, a page size, never page=.
    assert all(q["sort"] == ["Newest"] and "page" not in q for q in api.requests)
    assert [q.get("cursor") for q in api.requests] == [None, ["c1"], ["c2"], ["c3"]]


@deferred_f_from_coro_f
async def test_the_page_callback_is_not_read_for_a_return_value(tmp_path, scripted, monkeypatch):
    # Scrapy reads a generator callback's source to warn if it returns a value, and caches
    # the answer by the callback object, a new bound method for each request here: the
    # project turns the check off with Scrapy's own setting.
    read: list[str] = []
    getsource = inspect.getsource

    def counting_getsource(obj):
        read.append(getattr(obj, "__name__", repr(obj)))
        return getsource(obj)

    monkeypatch.setattr(inspect, "getsource", counting_getsource)
    _api, url = scripted(
        {
            "": Reply(_page([_civitai_item(1)], "c1")),
            "c1": Reply(_page([_civitai_item(2)], "c2")),
            "c2": Reply(_page([_civitai_item(3)], "c3")),
            "c3": Reply(_page([_civitai_item(4)])),
        }
    )
    filters = {"civitai": [{"name": "filter/all", "label": "All", "params": {"sort": "Newest"}}]}
    crawler = await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    assert not crawler.settings.getbool("WARN_ON_GENERATOR_RETURN_VALUE")
    assert crawler.stats.get_value("manifest/civitai/pages") == 4
    assert read.count("parse_page") == 0


@deferred_f_from_coro_f
async def test_max_items_sizes_pages_and_stops(tmp_path, scripted):
    api, url = scripted(
        {
            "": Reply(_page([_civitai_item(i) for i in range(1, 4)], "c1")),
            "c1": Reply(_page([_civitai_item(i) for i in range(4, 7)], "c2")),
            "c2": Reply(_page([_civitai_item(99)])),
        }
    )
    filters = {
        "civitai": [{"name": "f", "label": "F", "params": {}, "max_items": 5}],
    }
    await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    assert _models(tmp_path, "civitai-f.json") == [f"civitai-{i}" for i in range(1, 6)]
    # min(remaining, 100): 5 then 2; the third page is never asked for.
    assert [q["limit"] for q in api.requests] == [["5"], ["2"]]


@deferred_f_from_coro_f
async def test_repeated_cursor_ends_the_filter(tmp_path, scripted, caplog):
    api, url = scripted(
        {
            "": Reply(_page([_civitai_item(1)], "loop")),
            "loop": Reply(_page([_civitai_item(2)], "loop")),
        }
    )
    filters = {"civitai": [{"name": "f", "label": "F", "params": {}}]}
    crawler = await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    assert _models(tmp_path, "civitai-f.json") == ["civitai-1", "civitai-2"]
    assert len(api.requests) == 2
    assert crawler.stats.get_value("manifest/civitai/repeated_cursor") == 1
    assert "repeated cursor 'loop'" in caplog.text


@deferred_f_from_coro_f
async def test_newest_cursors_go_back_raised_and_an_echo_of_one_ends_the_filter(
    tmp_path, scripted, caplog
):
    # Newest: the crawler asks from the cursor's id + 1 (api-notes); a server answering with
    # the very cursor it was asked with would loop, though that cursor never came from it.
    date = "2025-03-04 10:10:51.123"
    api, url = scripted(
        {
            "": Reply(_page([_civitai_item(1)], f"{date}|7")),
            f"{date}|8": Reply(_page([_civitai_item(7)], f"{date}|8")),
        }
    )
    filters = {"civitai": [{"name": "f", "label": "F", "params": {"sort": "Newest"}}]}
    crawler = await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    assert [q.get("cursor") for q in api.requests] == [None, [f"{date}|8"]]
    assert _models(tmp_path, "civitai-f.json") == ["civitai-1", "civitai-7"]
    assert crawler.stats.get_value("manifest/civitai/repeated_cursor") == 1


@deferred_f_from_coro_f
async def test_rating_rules_keep_items_by_the_highest_level_of_their_mask(tmp_path, scripted):
    levels = [1, 4, 5, 8, None, 7, 3, 60, 12, 2, 32]
    items = [
        _civitai_item(n, level=level) if level is not None else {"id": n, "name": "no level"}
        for n, level in enumerate(levels, 1)
    ]
    api, url = scripted({"": Reply(_page(items))})
    params = {"nsfw": "true"}
    filters = {
        "civitai": [
            {"name": "r", "label": "R", "params": params, "rated": "R"},
            {"name": "safe", "label": "Safe", "params": params, "rated_at_most": "PG13"},
        ]
    }
    await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    # R: masks 4, 5, 7 (no X or XXX bit); at most PG-13: 1, 3, 2. Flagged 60 is XXX, and 32
    # (Blocked alone) has no rating: no rule keeps it.
    assert _models(tmp_path, "civitai-r.json") == ["civitai-2", "civitai-3", "civitai-6"]
    assert _models(tmp_path, "civitai-safe.json") == ["civitai-1", "civitai-7", "civitai-10"]
    # Items are kept client-side, so the crawler asks for full pages, once for both filters.
    assert len(api.requests) == 1
    assert api.requests[0]["limit"] == ["100"] and api.requests[0]["nsfw"] == ["true"]


@deferred_f_from_coro_f
async def test_control_characters_and_numeric_usernames_parse(tmp_path, scripted):
    body = (
        b'{"items": [{"id": 10, "name": "Tab\there", "description": "raw \x01 ctl",'
        b' "creator": {"username": 12345}, "stats": null}], "metadata": {}}'
    )
    _, url = scripted({"": Reply(body)})
    filters = {"civitai": [{"name": "f", "label": "F", "params": {}}]}
    await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    # The name's tab is a space in the manifest (names are one line: normalize.display_name).
    assert read_json(tmp_path / "out" / "civitai-f.json")["models"] == [
        {"id": "civitai-10", "slug": "civitai-10", "name": "Tab here"}
    ]


@deferred_f_from_coro_f
async def test_hf_follows_the_link_header_and_sends_the_token(
    tmp_path, scripted, monkeypatch, caplog
):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    api, url = scripted({})
    api.pages.update(
        {
            "": Reply(
                [{"id": "a/one"}, {"id": "b/two"}, {"id": "bad id"}],
                headers={"Link": f'<{url}?sort=likes&limit=3&cursor=Q1>; rel="next"'},
            ),
            "Q1": Reply([{"id": "a/one"}, {"modelId": "c/three"}]),
        }
    )
    filters = {"huggingface": [{"name": "likes", "label": "Likes", "params": {"sort": "likes"}}]}
    await crawl(HuggingFaceSpider, _settings(tmp_path, filters, HF_API_URL=url, LOG_LEVEL="DEBUG"))
    manifest = read_json(tmp_path / "out" / "hf-likes.json")
    assert manifest["models"] == [
        {"id": "a/one", "slug": "a--one", "name": "a/one"},
        {"id": "b/two", "slug": "b--two", "name": "b/two"},
        {"id": "c/three", "slug": "c--three", "name": "c/three"},
    ]
    assert [q["limit"] for q in api.requests] == [["100"], ["98"]]
    assert all("full" not in q for q in api.requests)
    assert all(h[b"Authorization"] == [b"Bearer hf_secret_value"] for h in api.headers)
    assert "hf_secret_value" not in caplog.text


@deferred_f_from_coro_f
async def test_api_error_fails_the_filter_and_keeps_its_previous_manifest(
    tmp_path, scripted, caplog
):
    _, url = scripted(
        {
            "trending|": Reply({"error": "Invalid sort parameter: trending"}, status=400),
            "likes|": Reply([{"id": "c/d"}]),
        },
        by="sort",
    )
    filters = {
        "huggingface": [
            {"name": "trending", "label": "T", "params": {"sort": "trending"}},
            {"name": "likes", "label": "L", "params": {"sort": "likes"}},
        ]
    }
    out = tmp_path / "out"
    out.mkdir()
    previous = (
        b'{"filter": "trending", "origin": "%s", '
        b'"models": [{"id": "a/b", "slug": "a--b", "name": "a/b"}], "timestamp": "T"}\n'
    ) % url.encode()
    (out / "hf-trending.json").write_bytes(previous)
    with caplog.at_level(logging.ERROR):
        await crawl(HuggingFaceSpider, _settings(tmp_path, filters, HF_API_URL=url))
    assert (out / "hf-trending.json").read_bytes() == previous
    assert "HTTP 400 (Invalid sort parameter: trending)" in caplog.text
    assert read_json(out / "all-models.json")["models"] == [
        {"id": "a/b", "slug": "a--b", "name": "a/b", "source": "huggingface"},
        {"id": "c/d", "slug": "c--d", "name": "c/d", "source": "huggingface"},
    ]


@deferred_f_from_coro_f
async def test_a_body_that_is_not_json_is_retried_then_fails_naming_the_url(
    tmp_path, scripted, caplog
):
    api, url = scripted({"": Reply(b"<html>502 Bad Gateway</html>")})
    filters = {"civitai": [{"name": "f", "label": "F", "params": {}}]}
    await crawl(
        CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url, MANIFEST_RETRY_TIMES=2)
    )
    assert len(api.requests) == 3
    assert not (tmp_path / "out" / "civitai-f.json").exists()
    assert "body is not JSON" in caplog.text
    assert f"{url}?limit=100" in caplog.text


@deferred_f_from_coro_f
async def test_unknown_filter_name_is_a_clear_error(tmp_path):
    filters = {"civitai": [{"name": "f", "label": "F", "params": {}}]}
    from manifest_crawler.filters import FiltersError

    with pytest.raises(FiltersError, match=r"unknown filter name.*nope"):
        await crawl(CivitaiSpider, _settings(tmp_path, filters), filters="f,nope")


@deferred_f_from_coro_f
async def test_filter_effect_check_survives_odd_base_model_values(tmp_path, scripted):
    item = {
        "id": 1,
        "name": "One",
        "type": "LORA",
        "modelVersions": [
            {"baseModel": ["SDXL 1.0"]},
            {"baseModel": {"x": 1}},
            {"baseModel": "Pony"},
        ],
    }
    _, url = scripted({"": Reply(_page([item]))})
    filters = {"civitai": [{"name": "f", "label": "F", "params": {"baseModels": "SDXL 1.0"}}]}
    crawler = await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    assert _models(tmp_path, "civitai-f.json") == ["civitai-1"]
    assert crawler.stats.get_value("manifest/civitai/mismatched") == 1


_SHARED = {"nsfw": "true", "sort": "Most Downloaded"}


def _shared_filters(**max_items):
    return {
        "civitai": [
            {"name": name, "label": name, "params": _SHARED, "rated": level}
            | ({"max_items": max_items[name]} if name in max_items else {})
            for name, level in (("pg", "PG"), ("r", "R"), ("x", "X"))
        ]
    }


@deferred_f_from_coro_f
async def test_filters_reading_one_listing_share_its_pages(tmp_path, scripted):
    levels = [1, 4, 8, 1, 4, 8, 1, 4, 8]  # PG, R, X in turn
    items = [_civitai_item(n + 1, level=level) for n, level in enumerate(levels)]
    api, url = scripted(
        {
            "": Reply(_page(items[:3], cursor="c1")),
            "c1": Reply(_page(items[3:6], cursor="c2")),
            "c2": Reply(_page(items[6:], cursor="c3")),
            "c3": Reply(_page([])),
        }
    )
    # pg is full after the second page, r at the last; x has no cap and reads to the end.
    filters = _shared_filters(pg=2, r=3)
    crawler = await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    assert _models(tmp_path, "civitai-pg.json") == ["civitai-1", "civitai-4"]
    assert _models(tmp_path, "civitai-r.json") == ["civitai-2", "civitai-5", "civitai-8"]
    assert _models(tmp_path, "civitai-x.json") == ["civitai-3", "civitai-6", "civitai-9"]
    # One chain of pages for the three filters, each page asked for once.
    assert [r.get("cursor", [""])[0] for r in api.requests] == ["", "c1", "c2", "c3"]
    assert crawler.stats.get_value("manifest/civitai/pages") == 4
    rows = {
        row["filter"]: row for row in read_json(tmp_path / "out" / "run-report.json")["filters"]
    }
    assert {name: (rows[name]["pages"], rows[name]["end_reason"]) for name in rows} == {
        "pg": (2, "max_items"),
        "r": (3, "max_items"),
        "x": (4, "last_page"),
    }


@deferred_f_from_coro_f
async def test_a_shared_page_that_fails_fails_every_filter_waiting_for_it(tmp_path, scripted):
    first = _page([_civitai_item(1, level=1), _civitai_item(2, level=8)], "c1")
    api, url = scripted(
        {
            "Most Downloaded|": Reply(first),
            "Most Downloaded|c1": Reply({"error": "Internal"}, status=500),
            "Newest|": Reply(_page([_civitai_item(3)])),
        },
        by="sort",
    )
    filters = _shared_filters()
    filters["civitai"].append({"name": "new", "label": "N", "params": {"sort": "Newest"}})
    crawler = await crawl(
        CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url, MANIFEST_RETRY_TIMES=0)
    )
    rows = {
        row["filter"]: row for row in read_json(tmp_path / "out" / "run-report.json")["filters"]
    }
    assert {name: row["status"] for name, row in rows.items()} == {
        "pg": "failed",
        "r": "failed",
        "x": "failed",
        "new": "fresh",
    }
    assert all("HTTP 500" in rows[name]["errors"][0] for name in ("pg", "r", "x"))
    assert sorted(api.keys) == ["Most Downloaded|", "Most Downloaded|c1", "Newest|"]
    assert crawler.stats.get_value("manifest/exit_code") == 1


# --- A bug of ours costs the filters of one chain, never the others' ----------------------

_TWO_HUB_FILTERS = {
    "huggingface": [
        {"name": "broken", "label": "B", "params": {"sort": "downloads"}},
        {"name": "fine", "label": "F", "params": {"sort": "likes"}},
    ]
}


def _two_hub_pages(scripted):
    return scripted(
        {
            "downloads|": Reply([{"id": "a/one"}]),
            "likes|": Reply(
                [{"id": "b/one"}], headers={"Link": '</api?sort=likes&cursor=2>; rel="next"'}
            ),
            "likes|2": Reply([{"id": "b/two"}]),
        },
        by="sort",
    )


def _rows(tmp_path):
    report = read_json(tmp_path / "out" / "run-report.json")
    return {row["filter"]: row for row in report["filters"]}


@deferred_f_from_coro_f
async def test_an_exception_reading_a_page_is_retried_then_fails_its_filter(
    tmp_path, scripted, monkeypatch
):
    api, url = _two_hub_pages(scripted)
    real_parse = HuggingFaceAPI.parse

    def parse(self, response):
        if "downloads" in response.url:
            raise KeyError("a bug of ours")
        return real_parse(self, response)

    monkeypatch.setattr(HuggingFaceAPI, "parse", parse)
    crawler = await crawl(HuggingFaceSpider, _settings(tmp_path, _TWO_HUB_FILTERS, HF_API_URL=url))
    rows = _rows(tmp_path)
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["end_reason"] == "unreadable_page"
    assert "reading the page raised KeyError: 'a bug of ours'" in rows["broken"]["errors"][0]
    assert api.keys.count("downloads|") == 2  # retried once, like a bad answer
    assert rows["fine"]["status"] == "fresh"
    assert _models(tmp_path, "hf-fine.json") == ["b/one", "b/two"]
    assert not crawler.stats.get_value("spider_exceptions/KeyError")


@deferred_f_from_coro_f
async def test_an_exception_once_the_page_is_read_fails_its_filter_at_once(
    tmp_path, scripted, monkeypatch
):
    api, url = _two_hub_pages(scripted)
    real_goes_on = HuggingFaceSpider._goes_on

    def goes_on(self, state, *args):
        if state.filter.name == "broken":
            raise ZeroDivisionError("a bug of ours")
        return real_goes_on(self, state, *args)

    monkeypatch.setattr(HuggingFaceSpider, "_goes_on", goes_on)
    crawler = await crawl(HuggingFaceSpider, _settings(tmp_path, _TWO_HUB_FILTERS, HF_API_URL=url))
    rows = _rows(tmp_path)
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["end_reason"] == "internal_error"
    assert "ZeroDivisionError: a bug of ours (a crawler bug)" in rows["broken"]["errors"][0]
    assert api.keys.count("downloads|") == 1
    assert rows["fine"]["status"] == "fresh"
    assert crawler.stats.get_value("manifest/exit_code") == 1
    assert not crawler.stats.get_value("spider_exceptions/ZeroDivisionError")


class DropsNextPages:
    """A component that loses the ``broken`` filter's next pages without a word (as Scrapy's
    UrlLengthMiddleware once did to a long next-page URL)."""

    async def process_spider_output(self, response, result):
        async for output in result:
            if getattr(output, "url", "").find("sort=downloads") < 0:
                yield output


@deferred_f_from_coro_f
async def test_a_lost_chain_fails_its_filter_saying_so(tmp_path, scripted):
    _, url = scripted(
        {
            "downloads|": Reply(
                [{"id": "a/one"}], headers={"Link": '</api?sort=downloads&cursor=2>; rel="next"'}
            ),
            "likes|": Reply([{"id": "b/one"}]),
        },
        by="sort",
    )
    middlewares = {f"{__name__}.DropsNextPages": 950}
    settings = _settings(tmp_path, _TWO_HUB_FILTERS, HF_API_URL=url, SPIDER_MIDDLEWARES=middlewares)
    crawler = await crawl(HuggingFaceSpider, settings)
    rows = _rows(tmp_path)
    assert rows["broken"]["status"] == "failed" and rows["broken"]["end_reason"] == "lost"
    assert "its next page was lost" in rows["broken"]["errors"][0]
    assert rows["fine"]["status"] == "fresh"
    assert crawler.stats.get_value("manifest/lost_chains") == 1
