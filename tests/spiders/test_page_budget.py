"""Every chain of pages ends: a filter reads at most its page budget (filters.page_budget()),
pages that brought nothing new included, and one stopped by it is written and reported short.
Real crawls of the emulator over loopback HTTP."""

from __future__ import annotations

import logging

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.filters import page_budget
from manifest_crawler.spiders.all import AllSpider
from tests.crawl import crawl, crawl_settings, read_json, write_filters

#: 49 models rated above PG for each one rated PG: 2 % of a listing, as rare as PG is on the
#: real top pages (api-notes: 0 of a real top-10 page).
RARE_PG = (31, 15, 7, 15, 31, 23, 15, 31, 7, 31) * 4 + (31, 15, 7, 23, 15, 31, 7, 15, 31) + (1,)
LISTING = {"nsfw": "true", "sort": "Most Downloaded", "period": "AllTime"}


def rated_pg(name: str = "pg", **extra: object) -> dict[str, object]:
    return {"name": name, "label": "Rated PG", "params": LISTING, "rated": "PG", **extra}


def unrated(name: str = "all", **extra: object) -> dict[str, object]:
    # Browsing level PG-13: nearly every model of the listing (each shares a bit with PG|PG13).
    return {
        "name": name,
        "label": "Everything",
        "params": LISTING,
        "browsing_levels": ["PG", "PG13"],
        **extra,
    }


def settings_for(emulator, out, filters, **extra):
    return {**crawl_settings(emulator, out, **extra), "FILTERS_FILE": str(filters)}


def rows(out) -> dict[str, dict]:
    return {row["filter"]: row for row in read_json(out / "run-report.json")["filters"]}


def test_page_budget_rules():
    # Its own max_pages first; else the factor times the pages max_items fills; else the cap.
    assert page_budget(3, 100, 100, 10, 10_000) == 3
    assert page_budget(None, 100, 100, 10, 10_000) == 10
    assert page_budget(None, 101, 100, 10, 10_000) == 20
    assert page_budget(None, 1000, 1000, 10, 10_000) == 10
    assert page_budget(None, 1, 1000, 10, 10_000) == 10
    assert page_budget(None, None, 100, 10, 10_000) == 10_000


@deferred_f_from_coro_f
async def test_a_rated_filter_over_a_rare_rating_is_written_short_within_its_budget(
    make_emulator, tmp_path, caplog
):
    emulator = make_emulator(
        EmulatorConfig(civitai_models=3000, hf_models=10, civitai_levels=RARE_PG)
    )
    filters = write_filters(tmp_path / "filters.json", civitai=[rated_pg(), unrated()])
    out = tmp_path / "out"
    settings = settings_for(emulator, out, filters)
    caplog.set_level(logging.WARNING)
    crawler = await crawl(AllSpider, settings)
    report = rows(out)
    pg, everything = report["pg"], report["all"]
    # The unrated filter needs a page of 100 (two: the API drops hidden models after its
    # LIMIT); the rated one reads ten times one page, no more, although its 100 PG models
    # would take about 50 pages.
    assert everything["status"] == "fresh" and everything["pages"] <= 2
    assert (pg["status"], pg["pages"], pg["max_pages"]) == ("short", 10, 10)
    assert pg["end_reason"] == "page_budget"
    assert len(emulator.requests("civitai")) == 10
    manifest = read_json(out / "civitai-pg.json")["models"]
    assert len(manifest) == pg["models"] == pg["manifest_models"] and 0 < len(manifest) < 100
    assert pg["items_read"] >= 900 and pg["kept_share"] == round(
        len(manifest) / pg["items_read"], 4
    )
    warnings = [r.getMessage() for r in caplog.records if "written short" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("civitai:pg: stopped by its page budget")
    assert read_json(out / "run-report.json")["totals"]["short"] == 1
    changes = read_json(out / "changes.json")["filters"]
    assert next(c for c in changes if c["filter"] == "pg")["added"]
    # An honest result: the run succeeds, except under MANIFEST_STRICT.
    assert crawler.stats.get_value("manifest/exit_code") == 0
    assert crawler.stats.get_value("manifest/civitai/short") == 1

    strict = await crawl(AllSpider, {**settings, "MANIFEST_STRICT": True})
    assert strict.stats.get_value("manifest/exit_code") == 1


@deferred_f_from_coro_f
async def test_max_pages_in_filters_json_sets_a_filters_own_budget(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(civitai_models=3000, hf_models=10, civitai_levels=RARE_PG)
    )
    filters = write_filters(
        tmp_path / "filters.json", civitai=[rated_pg(max_pages=3), rated_pg("deep", max_pages=25)]
    )
    out = tmp_path / "out"
    crawler = await crawl(AllSpider, settings_for(emulator, out, filters))
    report = rows(out)
    assert (report["pg"]["pages"], report["pg"]["max_pages"]) == (3, 3)
    assert (report["deep"]["pages"], report["deep"]["max_pages"]) == (25, 25)
    # One listing, one chain: the pages the shorter budget read are the deeper one's first.
    assert len(emulator.requests("civitai")) == 25
    assert crawler.stats.get_value("manifest/exit_code") == 0


@pytest.mark.parametrize("api", ["civitai", "huggingface"])
@deferred_f_from_coro_f
async def test_a_cursor_that_never_repeats_ends_at_the_budget(make_emulator, tmp_path, api):
    """Every answer is the listing's first page with a new cursor: every page after the first
    brings only duplicates, and counts all the same."""
    emulator = make_emulator(
        EmulatorConfig(
            civitai_models=300,
            hf_models=300,
            faults=FaultConfig(endless_cursor_apis=(api,)),
        )
    )
    if api == "civitai":
        entry = {
            "name": "loop",
            "label": "Loop",
            "params": {"sort": "Newest"},
            "browsing_levels": ["PG"],
            "max_items": 150,
        }
        civitai, huggingface, page = [entry], [], 100
    else:
        entry = {"name": "loop", "label": "Loop", "params": {"sort": "likes"}, "max_items": 1500}
        civitai, huggingface, page = [], [entry], 1000
    filters = write_filters(tmp_path / "filters.json", civitai=civitai, huggingface=huggingface)
    out = tmp_path / "out"
    crawler = await crawl(AllSpider, settings_for(emulator, out, filters))
    (row,) = rows(out).values()
    assert (row["status"], row["pages"], row["max_pages"]) == ("short", 20, 20)
    assert len(emulator.requests(api)) == 20
    assert row["duplicates"] == row["items_read"] - row["models"] > 0
    assert 0 < row["models"] <= page
    assert crawler.stats.get_value("manifest/exit_code") == 0


@deferred_f_from_coro_f
async def test_a_filter_without_a_limit_on_models_is_bounded_too(make_emulator, tmp_path):
    emulator = make_emulator(
        EmulatorConfig(
            civitai_models=300,
            hf_models=300,
            faults=FaultConfig(endless_cursor_apis=("huggingface",)),
        )
    )
    entry = {"name": "all", "label": "All", "params": {"sort": "likes"}, "max_items": 0}
    filters = write_filters(tmp_path / "filters.json", huggingface=[entry])
    out = tmp_path / "out"
    crawler = await crawl(
        AllSpider,
        settings_for(emulator, out, filters, MANIFEST_MAX_PAGES=7),
    )
    (row,) = rows(out).values()
    assert (row["status"], row["pages"], row["max_pages"], row["max_items"]) == (
        "short",
        7,
        7,
        None,
    )
    assert len(emulator.requests("huggingface")) == 7
    assert crawler.stats.get_value("manifest/exit_code") == 0
