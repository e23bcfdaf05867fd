"""Every filter of the repo's filters.json, crawled from the emulator over loopback HTTP, holds
exactly what the API answers for its parameters; all-models.json is their exact union."""

from collections.abc import Mapping

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from manifest_crawler.emulator.vocabulary import CIVITAI_SORTS
from manifest_crawler.filters import Filter, load_filters
from manifest_crawler.output.manifests import manifest_filename
from manifest_crawler.spiders.all import AllSpider
from manifest_crawler.spiders.civitai import CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import REPO_FILTERS, crawl, crawl_settings, read_json, write_filters


def _params(filter_: Filter) -> Mapping[str, str | list[str]]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in filter_.params}


def _mask(emulator, model_id: str) -> int:
    return emulator.catalogue.civitai.record_for_id(int(model_id.split("-")[1])).nsfw_level


def kept(filter_: Filter, mask: int) -> bool:
    """The filter's rule, written again from the notes: browsing levels list a model sharing a
    bit with them; a rating keeps it by the highest of its levels (Blocked, 32, is none)."""
    rule = filter_.rule
    if rule is None:
        return True
    if rule.kind == "browsing_levels":
        return bool(mask & rule.levels)
    levels = mask & 31
    return bool(levels and 1 << (levels.bit_length() - 1) & rule.levels)


def expected_models(emulator, filter_: Filter, max_items: int) -> list[dict[str, str]]:
    """The API's answer for the filter, read from the emulator's catalogue, not over HTTP."""
    if filter_.source == "huggingface":
        ids = emulator.query_hf(_params(filter_))[:max_items]
        return [{"id": i, "slug": i.replace("/", "--"), "name": i} for i in ids]
    catalogue = emulator.catalogue.civitai
    models = []
    for model_id in emulator.query_civitai(_params(filter_)):
        record = catalogue.record_for_id(model_id)
        if not kept(filter_, record.nsfw_level):
            continue
        models.append(
            {
                "id": f"civitai-{model_id}",
                "slug": f"civitai-{model_id}",
                "name": record.name.strip(),
            }
        )
        if len(models) == max_items:
            break
    return models


@deferred_f_from_coro_f
async def test_every_filter_is_exactly_the_api_answer(emulator, tmp_path):
    crawler = await crawl(AllSpider, crawl_settings(emulator, tmp_path))
    filters = list(load_filters(REPO_FILTERS))
    union: dict[str, dict[str, str]] = {}
    for filter_ in filters:
        expected = expected_models(emulator, filter_, filter_.max_items or 100)
        manifest = read_json(tmp_path / manifest_filename(filter_.source, filter_.name))
        assert manifest["filter"] == filter_.name
        assert manifest["models"] == expected, f"{filter_.source}:{filter_.name}"
        masks = [
            _mask(emulator, m["id"]) for m in manifest["models"] if filter_.source == "civitai"
        ]
        if filter_.source == "civitai" and "Rated" not in filter_.label:
            # A list not announced as mature holds what civitai.com lists at PG-13: every
            # model has PG (1) or PG-13 (2) content, whatever else it shows.
            assert all(mask & 3 for mask in masks), filter_.name
        elif filter_.source == "civitai":
            # A rating bucket: the highest level of every model's content is the one named.
            level = filter_.label.removeprefix("Rated ").split(":")[0]
            bit = {"PG": 1, "PG-13": 2, "R": 4, "X": 8, "XXX": 16}[level]
            assert all((mask & 31).bit_length() == bit.bit_length() for mask in masks)
        for model in expected:
            union.setdefault(model["id"], {**model, "source": filter_.source})
    all_models = read_json(tmp_path / "all-models.json")
    assert all_models["models"] == list(union.values())
    assert all_models["totalModels"] == len(union)
    assert all_models["civitai"] == sum(1 for m in union.values() if m["source"] == "civitai")
    assert all_models["huggingface"] == sum(
        1 for m in union.values() if m["source"] == "huggingface"
    )
    assert crawler.stats.get_value("manifest/exit_code") == 0
    # No page asked for twice: filters reading one listing (filter/pg, pg13, r, x) share it.
    for api in ("civitai", "huggingface"):
        uris = [r.uri for r in emulator.requests(api)]
        assert len(uris) == len(set(uris)), api
    # AllTime/All/All/downloads/Soft and filter/pg ... filter/xxx read one listing: one chain.
    listing = {"period": ["AllTime"], "sort": ["Most Downloaded"], "nsfw": ["true"]}
    shared = [
        r.query.get("cursor", [""])[0]
        for r in emulator.requests("civitai")
        if {k: v for k, v in r.query.items() if k not in ("limit", "cursor")} == listing
    ]
    assert shared and len(set(shared)) == len(shared)
    # Never page= on CivitAI, never full= on Hugging Face.
    assert not any("page" in r.query for r in emulator.requests("civitai"))
    assert not any("full" in r.query for r in emulator.requests("huggingface"))


def _filter(names: str, index: int) -> Filter:
    return load_filters(REPO_FILTERS).select(["civitai", "huggingface"], names.split(","))[index]


@deferred_f_from_coro_f
async def test_deep_filters_page_with_sizes_that_waste_nothing(make_emulator, tmp_path):
    emulator = make_emulator(hf_models=6000)
    names = "AllTime/All/All/downloads/Soft,filter/loras,likes,downloads"
    settings = crawl_settings(emulator, tmp_path, MANIFEST_MAX_ITEMS=2500)
    await crawl(AllSpider, settings, filters=names)
    for filter_ in load_filters(REPO_FILTERS).select(["civitai", "huggingface"], names.split(",")):
        manifest = read_json(tmp_path / manifest_filename(filter_.source, filter_.name))
        assert manifest["models"] == expected_models(emulator, filter_, 2500), filter_.name
    civitai_limits = [
        r.query["limit"][0]
        for r in emulator.requests("civitai")
        if r.query.get("sort") == ["Most Downloaded"] and "types" not in r.query
    ]
    # Fewer models rated at most PG-13 than wanted: full pages of 100 to the end of the
    # nsfw=true listing (hidden models take their place in a page), and no more.
    listing = {"period": "AllTime", "sort": "Most Downloaded", "nsfw": "true"}
    assert len(expected_models(emulator, _filter(names, 0), 2500)) < 2500
    slots = emulator.catalogue.civitai.slots(listing)
    assert civitai_limits == ["100"] * -(-len(slots) // 100)
    hf_limits = [
        r.query["limit"][0]
        for r in emulator.requests("huggingface")
        if r.query["sort"] == ["likes"]
    ]
    assert hf_limits == ["1000", "1000", "500"]


@deferred_f_from_coro_f
async def test_huggingface_hub_client_sees_the_ids_the_crawler_wrote(make_emulator, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    emulator = make_emulator(hf_models=4000)
    settings = crawl_settings(emulator, tmp_path, MANIFEST_MAX_ITEMS=0)
    names = "apache-2.0,text-generation"
    await crawl(HuggingFaceSpider, settings, filters=names)
    api = huggingface_hub.HfApi(endpoint=emulator.base_url)
    for name, kwargs in [
        ("apache-2.0", {"filter": "license:apache-2.0", "sort": "likes"}),
        ("text-generation", {"pipeline_tag": "text-generation", "sort": "downloads"}),
    ]:
        client_ids = await maybe_deferred_to_future(
            deferToThread(lambda kw=kwargs: [m.id for m in api.list_models(**kw)])
        )
        written = [m["id"] for m in read_json(tmp_path / f"hf-{name}.json")["models"]]
        assert len(written) > 100  # several pages, unlimited max_items
        assert written == client_ids, name


@deferred_f_from_coro_f
async def test_every_sort_is_crawled_to_its_full_ordered_listing(emulator, tmp_path):
    # The faithful emulator hands out real cursors (the next page's first row) and serves
    # Newest with the server's strict "<": a crawler following them naively would lose one
    # model at every page boundary there. Every sort, to the end of its listing.
    listing = {"types": ["LORA"], "nsfw": "true"}
    filters = [
        {
            "name": sort.replace(" ", "-").lower(),
            "label": sort,
            "params": {**listing, "sort": sort},
            "browsing_levels": ["PG", "PG13", "R", "X", "XXX"],
            "max_items": 0,
        }
        for sort in CIVITAI_SORTS
    ]
    settings = crawl_settings(
        emulator, tmp_path, FILTERS_FILE=str(write_filters(tmp_path / "f.json", civitai=filters))
    )
    crawler = await crawl(CivitaiSpider, settings)
    assert crawler.stats.get_value("manifest/exit_code") == 0
    for entry in filters:
        expected = emulator.query_civitai(entry["params"])
        assert len(expected) > 500  # several pages of 100
        manifest = read_json(tmp_path / manifest_filename("civitai", entry["name"]))
        assert [m["id"] for m in manifest["models"]] == [f"civitai-{i}" for i in expected]
    newest = [r for r in emulator.requests("civitai") if r.query["sort"] == ["Newest"]]
    assert len(newest) > 5 and all(
        r.query["cursor"][0].rpartition("|")[2] != "" for r in newest[1:]
    )


@deferred_f_from_coro_f
async def test_a_cursor_into_newests_null_tail_ends_the_filter_without_a_request(
    emulator, tmp_path, caplog
):
    # Models without a published version sort last in Newest (NULLS LAST). A first page whose
    # next row is one of them hands back "|<id>", a cursor the server refuses (400): the
    # filter ends there, said so, without that request. (After any cursor the server never
    # serves the tail: no comparison with a NULL is true.)
    cat = emulator.catalogue.civitai
    dated = emulator.query_civitai({"sort": "Newest", "nsfw": "true"})[:80]
    undated = [cat.ids[i] for i in range(len(cat)) if not cat.has_version(i)][:25]
    assert len(undated) > 20
    params = {"ids": ",".join(map(str, dated + undated)), "sort": "Newest", "nsfw": "true"}
    filters = [{"name": "n", "label": "N", "params": params, "browsing_levels": ["PG", "PG13"]}]
    settings = crawl_settings(
        emulator, tmp_path, FILTERS_FILE=str(write_filters(tmp_path / "f.json", civitai=filters))
    )
    crawler = await crawl(CivitaiSpider, settings)
    (request,) = emulator.requests("civitai")
    assert request.status == 200 and "cursor" not in request.query
    assert crawler.stats.get_value("manifest/civitai/null_cursor") == 1
    assert "civitai:n: the API pointed onwards with a cursor it would refuse" in caplog.text
    kept = [i for i in dated if cat.record_for_id(i).nsfw_level & 3]
    manifest = read_json(tmp_path / "civitai-n.json")
    assert [m["id"] for m in manifest["models"]] == [f"civitai-{i}" for i in kept]
    row = read_json(tmp_path / "run-report.json")["filters"][0]
    assert (row["status"], row["end_reason"]) == ("fresh", "null_cursor")
