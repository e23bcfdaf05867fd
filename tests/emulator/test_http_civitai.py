"""CivitAI ``/api/v1/models`` over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.emulator import Emulator
from manifest_crawler.emulator.vocabulary import CIVITAI_SORTS

from .helpers import civitai_page, crawl_civitai, fetch, query_of, request, url_with

ITEM_KEYS = {"id", "name", "description", "type", "nsfw", "nsfwLevel", "tags", "creator"}
ITEM_KEYS |= {"stats", "modelVersions"}
VERSION_KEYS = {"id", "name", "baseModel", "baseModelType", "publishedAt", "trainedWords"}
VERSION_KEYS |= {"stats", "files", "images", "downloadUrl"}


@deferred_f_from_coro_f
async def test_first_page_shape_and_order(emulator: Emulator) -> None:
    reply = await fetch(url_with(emulator.civitai_url, {"limit": 20}))
    assert reply.status == 200
    assert reply.header("content-type").startswith("application/json")
    data = reply.json()
    assert set(data) == {"items", "metadata"}
    assert [i["id"] for i in data["items"]] == civitai_page(emulator, {}, 20)
    meta = data["metadata"]
    assert set(meta) == {"nextCursor", "nextPage"}
    assert "totalItems" not in meta and "totalPages" not in meta
    for item in data["items"]:
        assert set(item) >= ITEM_KEYS
        # nsfw=false (the default) lists every model with a PG bit (api-notes).
        assert item["nsfwLevel"] & 1 and item["nsfw"] is False
        assert set(item["stats"]) >= {"downloadCount", "thumbsUpCount", "thumbsDownCount"}
        assert item["modelVersions"]
        for version in item["modelVersions"]:
            assert set(version) >= VERSION_KEYS
            assert len(version["images"]) <= 20


@deferred_f_from_coro_f
async def test_default_limit_is_100(emulator: Emulator) -> None:
    data = (await fetch(url_with(emulator.civitai_url, {"nsfw": "true"}))).json()
    assert [i["id"] for i in data["items"]] == civitai_page(emulator, {"nsfw": "true"}, 100)
    assert 90 < len(data["items"]) <= 100 and data["metadata"]["nextCursor"]


@deferred_f_from_coro_f
async def test_next_page_walks_the_whole_result(emulator: Emulator) -> None:
    params = {"types": ["Checkpoint", "VAE"], "nsfw": "true", "sort": "Newest", "limit": 100}
    ids, metas = await crawl_civitai(url_with(emulator.civitai_url, params))
    assert ids == emulator.query_civitai(params)
    assert metas[-1] == {}
    for meta in metas[:-1]:
        pairs = query_of(meta["nextPage"])
        assert pairs[-1] == ("cursor", meta["nextCursor"])
        assert [p for p in pairs if p[0] == "types"] == [("types", "Checkpoint"), ("types", "VAE")]
        assert ("sort", "Newest") in pairs and ("nsfw", "true") in pairs


@deferred_f_from_coro_f
async def test_next_cursor_can_be_used_directly(emulator: Emulator) -> None:
    params = {"baseModels": "Pony", "limit": 7}
    expected = emulator.query_civitai(params)
    ids: list[int] = []
    cursor = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        data = (await fetch(url_with(emulator.civitai_url, query))).json()
        ids.extend(i["id"] for i in data["items"])
        cursor = data["metadata"].get("nextCursor")
        if cursor is None:
            break
    assert ids == expected
    # The same cursor always gives the same page.
    first = await fetch(url_with(emulator.civitai_url, {**params, "cursor": "0|0|0"}))
    again = await fetch(url_with(emulator.civitai_url, {**params, "cursor": "0|0|0"}))
    assert first.body == again.body


@pytest.mark.parametrize("sort", CIVITAI_SORTS)
@deferred_f_from_coro_f
async def test_every_sort(emulator: Emulator, sort: str) -> None:
    params = {"sort": sort, "nsfw": "true", "limit": 50}
    data = (await fetch(url_with(emulator.civitai_url, params))).json()
    assert [i["id"] for i in data["items"]] == civitai_page(emulator, params, 50)


@pytest.mark.parametrize(
    "params",
    [
        {"types": ["LORA", "LoCon"]},
        {"baseModels": ["Illustrious", "NoobAI"], "nsfw": "true"},
        {"period": "Week", "nsfw": "true"},
        {"period": "Day"},
        {"query": "portrait"},
        {"tag": "anime", "nsfw": "true"},
        {"checkpointType": "Trained", "types": "Checkpoint"},
        {"nsfw": "false", "sort": "Most Liked"},
    ],
)
@deferred_f_from_coro_f
async def test_parameter_families(emulator: Emulator, params: dict) -> None:
    ids, _ = await crawl_civitai(url_with(emulator.civitai_url, {**params, "limit": 100}))
    expected = emulator.query_civitai(params)
    assert ids == expected
    assert expected, "the catalogue should answer every family"


@deferred_f_from_coro_f
async def test_filters_are_reflected_in_items(emulator: Emulator) -> None:
    params = {"types": "LORA", "baseModels": "SDXL 1.0", "nsfw": "true", "limit": 100}
    for item in (await fetch(url_with(emulator.civitai_url, params))).json()["items"]:
        assert item["type"] == "LORA"
        assert "SDXL 1.0" in {v["baseModel"] for v in item["modelVersions"]}
    # Any shared bit (api-notes): nsfw=false lists every model with some PG content, mature
    # ones too; nsfw=true every model with any level, those with no PG content too.
    pg = (await fetch(url_with(emulator.civitai_url, {"limit": 100}))).json()["items"]
    assert all(i["nsfwLevel"] & 1 for i in pg)
    assert any(i["nsfwLevel"] & (4 | 8 | 16) for i in pg)
    everything = (await fetch(url_with(emulator.civitai_url, {"nsfw": "true"}))).json()
    assert any(not i["nsfwLevel"] & 1 for i in everything["items"])


@deferred_f_from_coro_f
async def test_the_real_top_page_levels_all_come_back_for_nsfw_false(emulator: Emulator) -> None:
    # api-notes: a real top-10 Highest Rated Checkpoint page held levels 31, 15, 7, 15, 31,
    # 23, 15, 31, 7, 31, and all of them are returned for nsfw=false.
    cat = emulator.catalogue.civitai
    ids = [cat.ids[cat.nsfw_level.index(level)] for level in (31, 15, 7, 23)]
    for nsfw in ("false", "true"):
        params = {"ids": ",".join(map(str, ids)), "nsfw": nsfw}
        data = (await fetch(url_with(emulator.civitai_url, params))).json()
        assert sorted(i["id"] for i in data["items"]) == sorted(ids)
    # Without a PG bit, only nsfw=true lists a model: PG-13 only (2), flagged nsfw (60).
    ids = [cat.ids[cat.nsfw_level.index(level)] for level in (2, 60)]
    for nsfw, expected in (("false", []), ("true", sorted(ids))):
        params = {"ids": ",".join(map(str, ids)), "nsfw": nsfw}
        data = (await fetch(url_with(emulator.civitai_url, params))).json()
        assert sorted(i["id"] for i in data["items"]) == expected


@deferred_f_from_coro_f
async def test_model_level_is_the_bit_or_of_its_versions_and_images(emulator: Emulator) -> None:
    # api-notes: a model's nsfwLevel is the bit-or of its versions' (each of its images');
    # a flagged model is nsfw: true at 60.
    data = (await fetch(url_with(emulator.civitai_url, {"nsfw": "true"}))).json()
    for item in data["items"]:
        versions = 0
        for version in item["modelVersions"]:
            versions |= version["nsfwLevel"]
            images = 0
            for image in version["images"]:
                images |= image["nsfwLevel"]
            assert images in (0, version["nsfwLevel"])  # 0: a taken-down model's
        assert versions == item["nsfwLevel"] & 31
        assert item["nsfw"] is (item["nsfwLevel"] == 60)


@deferred_f_from_coro_f
async def test_short_and_empty_pages_still_carry_a_cursor(emulator: Emulator) -> None:
    # api-notes: items with no visible version are dropped after the SQL LIMIT, so a page can
    # be shorter than limit, even empty, while nextCursor is set; only its absence ends.
    params = {"nsfw": "true", "types": "LORA", "limit": 5}
    ids, metas = await crawl_civitai(url_with(emulator.civitai_url, params))
    assert ids == emulator.query_civitai(params)
    assert metas[-1] == {} and len(emulator.catalogue.civitai.slots(params)) > len(ids)
    params = {"nsfw": "true", "limit": 1}
    cat = emulator.catalogue.civitai
    first_hidden = next(
        n for n, i in enumerate(cat.slots(params)) if cat.hidden[cat.index_of_id[i]]
    )
    cursor = None
    for _ in range(first_hidden):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        cursor = (await fetch(url_with(emulator.civitai_url, query))).json()["metadata"][
            "nextCursor"
        ]
    page = (await fetch(url_with(emulator.civitai_url, {**params, "cursor": cursor}))).json()
    assert page["items"] == [] and page["metadata"]["nextCursor"]


@deferred_f_from_coro_f
async def test_query_is_case_insensitive_and_unicode(emulator: Emulator) -> None:
    cat = emulator.catalogue.civitai
    unicode_name = next(n for n in cat.names if not n.isascii() and "🔥" not in n)
    word = next(w for w in unicode_name.split() if not w.isascii())
    params = {"query": word.upper(), "nsfw": "true"}
    ids, _ = await crawl_civitai(url_with(emulator.civitai_url, params))
    assert ids == emulator.query_civitai(params)
    assert cat.index_of_id and all(word.lower() in cat.record_for_id(i).name.lower() for i in ids)


@deferred_f_from_coro_f
async def test_username_and_numeric_usernames(emulator: Emulator) -> None:
    cat = emulator.catalogue.civitai
    numeric = next(
        cat.creators[cat.creator[i]]
        for i in range(len(cat))
        if cat.creators[cat.creator[i]].isdigit()
    )
    params = {"username": numeric, "nsfw": "true"}
    data = (await fetch(url_with(emulator.civitai_url, params))).json()
    assert [i["id"] for i in data["items"]] == emulator.query_civitai(params)
    assert data["items"]
    for item in data["items"]:
        assert item["creator"]["username"] == int(numeric)
        assert (
            b'"username":' + numeric.encode()
            in (
                await fetch(url_with(emulator.civitai_url, {"ids": item["id"], "nsfw": "true"}))
            ).body
        )


@deferred_f_from_coro_f
async def test_ids_and_primary_file_only(emulator: Emulator) -> None:
    cat = emulator.catalogue.civitai
    checkpoints = [cat.ids[i] for i in range(len(cat)) if cat.type[i] == 0 and cat.mode[i] == 0][
        :10
    ]
    params = {"ids": ",".join(map(str, checkpoints)), "nsfw": "true"}
    full = (await fetch(url_with(emulator.civitai_url, params))).json()["items"]
    assert sorted(i["id"] for i in full) == sorted(checkpoints)
    assert any(len(v["files"]) > 1 for i in full for v in i["modelVersions"])
    primary = (
        await fetch(url_with(emulator.civitai_url, {**params, "primaryFileOnly": "true"}))
    ).json()["items"]
    for item in primary:
        for version in item["modelVersions"]:
            assert len(version["files"]) == 1 and version["files"][0]["primary"] is True


@deferred_f_from_coro_f
async def test_archived_taken_down_and_null_stats(emulator: Emulator) -> None:
    cat = emulator.catalogue.civitai
    archived = [cat.ids[i] for i in range(len(cat)) if cat.mode[i] == 1][:5]
    taken = [cat.ids[i] for i in range(len(cat)) if cat.mode[i] == 2][:5]
    nulls = [cat.ids[i] for i in range(len(cat)) if cat.null_mask[i]][:5]
    params = {"ids": ",".join(map(str, archived + taken + nulls)), "nsfw": "true"}
    items = {
        i["id"]: i for i in (await fetch(url_with(emulator.civitai_url, params))).json()["items"]
    }
    for model_id in archived:
        assert items[model_id]["mode"] == "Archived"
        assert all(v["files"] == [] for v in items[model_id]["modelVersions"])
    for model_id in taken:
        assert items[model_id]["mode"] == "TakenDown"
        assert all(v["images"] == [] for v in items[model_id]["modelVersions"])
    for model_id in nulls:
        assert None in items[model_id]["stats"].values()
    assert all(
        "mode" not in i
        for i in items.values()
        if i["id"] in nulls and i["id"] not in archived + taken
    )


@deferred_f_from_coro_f
async def test_payload_sizes_are_realistic(emulator: Emulator) -> None:
    cat = emulator.catalogue.civitai
    loras = [cat.ids[i] for i in range(len(cat)) if cat.type[i] == 4 and cat.versions[i] == 1]
    ckpts = [cat.ids[i] for i in range(len(cat)) if cat.type[i] == 0 and cat.versions[i] >= 3]
    for group, low, high in ((loras[:60], 3_000, 10_000), (ckpts[:60], 11_000, 127_000)):
        params = {"ids": ",".join(map(str, group)), "nsfw": "true"}
        items = (await fetch(url_with(emulator.civitai_url, params))).json()["items"]
        sizes = sorted(len(json.dumps(i, ensure_ascii=False).encode()) for i in items)
        median = sizes[len(sizes) // 2]
        assert low <= median <= high, (low, median, high)
    page = await fetch(url_with(emulator.civitai_url, {"nsfw": "true", "limit": 100}))
    assert 500_000 <= len(page.body) <= 5_000_000


@deferred_f_from_coro_f
async def test_page_param_returns_the_first_window(emulator: Emulator) -> None:
    first = (await fetch(url_with(emulator.civitai_url, {"limit": 50}))).json()
    for page in (2, 5, 20):
        data = (await fetch(url_with(emulator.civitai_url, {"limit": 50, "page": page}))).json()
        assert [i["id"] for i in data["items"]] == [i["id"] for i in first["items"]]
    # Following nextPage (which keeps page=) does move on: the cursor wins.
    data = (await fetch(url_with(emulator.civitai_url, {"limit": 50, "page": 2}))).json()
    nxt = (await fetch(data["metadata"]["nextPage"])).json()
    cat = emulator.catalogue.civitai
    slots = cat.slots({})[50:100]
    assert [i["id"] for i in nxt["items"]] == [
        i for i in slots if not cat.hidden[cat.index_of_id[i]]
    ]


@deferred_f_from_coro_f
async def test_page_cap_is_429(emulator: Emulator) -> None:
    reply = await fetch(url_with(emulator.civitai_url, {"limit": 100, "page": 11}))
    assert reply.status == 429
    assert "cursor" in reply.json()["message"]
    assert reply.header("retry-after") is None
    ok = await fetch(url_with(emulator.civitai_url, {"limit": 100, "page": 10}))
    assert ok.status == 200


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": 101}, ["limit"]),
        ({"limit": "many"}, ["limit"]),
        ({"sort": "Trending"}, ["sort"]),
        ({"period": "Forever"}, ["period"]),
        ({"browsingLevel": 31}, ["browsingLevel"]),
        ({"page": 1, "query": "anime"}, ["page"]),
        ({"types": ["LORA", "LoRA"]}, ["types", 1]),
        ({"nsfw": "sometimes"}, ["nsfw"]),
    ],
)
@deferred_f_from_coro_f
async def test_an_invalid_param_is_a_400_with_a_zod_error_object(
    emulator: Emulator, params: dict, path: list
) -> None:
    """handleEndpointError's shape (api-notes): ``{"error": <ZodError>}``, one issue naming
    the parameter."""
    reply = await fetch(url_with(emulator.civitai_url, params))
    assert reply.status == 400
    (issue,) = reply.json()["error"]["issues"]
    assert issue["path"] == path
    assert isinstance(issue["message"], str) and issue["message"]
    assert isinstance(issue["code"], str)


@deferred_f_from_coro_f
async def test_a_bad_cursor_is_a_400_with_a_message(emulator: Emulator) -> None:
    reply = await fetch(url_with(emulator.civitai_url, {"cursor": "not-a-cursor"}))
    assert reply.status == 400
    assert set(reply.json()) == {"message"}
    assert "Invalid cursor" in reply.json()["message"]


@deferred_f_from_coro_f
async def test_unknown_params_are_ignored(emulator: Emulator) -> None:
    plain = await fetch(url_with(emulator.civitai_url, {"limit": 30}))
    typo = await fetch(url_with(emulator.civitai_url, {"limit": 30, "type": "LORA", "x": 1}))
    assert [i["id"] for i in typo.json()["items"]] == [i["id"] for i in plain.json()["items"]]


@deferred_f_from_coro_f
async def test_unknown_base_model_is_empty_last_page(emulator: Emulator) -> None:
    data = (await fetch(url_with(emulator.civitai_url, {"baseModels": "SD 9"}))).json()
    assert data == {"items": [], "metadata": {}}


@deferred_f_from_coro_f
async def test_trailing_slash_index_404_and_405(emulator: Emulator) -> None:
    slash = await fetch(emulator.civitai_url + "/?limit=3")
    assert slash.status == 200 and len(slash.json()["items"]) == 3
    index = await fetch(emulator.base_url + "/")
    assert index.status == 200
    assert index.json()["endpoints"] == {"civitai": "/api/v1/models", "huggingface": "/api/models"}
    missing = await fetch(emulator.base_url + "/api/v1/models/123")
    assert missing.status == 404
    posted = await request("POST", emulator.civitai_url)
    assert posted.status == 405 and posted.header("allow") == "GET, HEAD"


@deferred_f_from_coro_f
async def test_request_log(emulator: Emulator) -> None:
    await fetch(url_with(emulator.civitai_url, [("types", "LORA"), ("types", "VAE"), ("limit", 5)]))
    await fetch(url_with(emulator.civitai_url, {"limit": 500}))
    first, second = emulator.requests("civitai")
    assert (first.method, first.path, first.status, first.api) == (
        "GET",
        "/api/v1/models",
        200,
        "civitai",
    )
    assert first.query == {"types": ["LORA", "VAE"], "limit": ["5"]}
    assert second.status == 400
    assert first.time <= second.time and first.finished is not None
