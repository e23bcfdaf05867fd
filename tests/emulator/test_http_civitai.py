"""CivitAI ``/api/v1/models`` over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.emulator import Emulator
from manifest_crawler.emulator.vocabulary import CIVITAI_SORTS
from tests.api_notes import CIVITAI_METRIC_ORDER

from .helpers import civitai_page, crawl_civitai, fetch, query_of, request, url_with


def sort_columns(emulator: Emulator, sort: str, model_id: int) -> str:
    """A model's ORDER BY columns joined by "|", as the server's cursors carry them (api-notes):
    two metrics then the id; or the latest publication (timestamp(3)) then the id."""
    record = emulator.catalogue.civitai.record_for_id(model_id)
    if sort in CIVITAI_METRIC_ORDER:
        values = [record.stats[name] or 0 for name in CIVITAI_METRIC_ORDER[sort]]
    else:
        assert record.published_at is not None
        moment = datetime.fromtimestamp(record.published_at, UTC)
        values = [moment.strftime("%Y-%m-%d %H:%M:%S.000")]
    return "|".join(map(str, [*values, model_id]))


def civitai_page_ids(emulator: Emulator, slots: list[int]) -> list[int]:
    """The ids a page cut from these slots shows: hidden models are dropped after the LIMIT."""
    cat = emulator.catalogue.civitai
    return [i for i in slots if not cat.hidden[cat.index_of_id[i]]]


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
    params = {"types": ["Checkpoint", "VAE"], "nsfw": "true", "sort": "Oldest", "limit": 100}
    ids, metas = await crawl_civitai(url_with(emulator.civitai_url, params))
    # Oldest serves again the rows tied on the cursor's date: duplicates, nothing lost.
    assert list(dict.fromkeys(ids)) == emulator.query_civitai(params)
    assert metas[-1] == {}
    for meta in metas[:-1]:
        pairs = query_of(meta["nextPage"])
        assert pairs[-1] == ("cursor", meta["nextCursor"])
        assert [p for p in pairs if p[0] == "types"] == [("types", "Checkpoint"), ("types", "VAE")]
        assert ("sort", "Oldest") in pairs and ("nsfw", "true") in pairs


@pytest.mark.parametrize("sort", CIVITAI_SORTS)
@deferred_f_from_coro_f
async def test_next_cursor_is_the_sort_columns_of_the_next_pages_first_row(
    emulator: Emulator, sort: str
) -> None:
    # api-notes: the server reads limit + 1 rows and hands back the ORDER BY columns of the
    # extra one, joined by "|": metric, metric, id; or date (timestamp(3)) and id.
    params = {"sort": sort, "nsfw": "true", "limit": 20}
    data = (await fetch(url_with(emulator.civitai_url, params))).json()
    following = emulator.catalogue.civitai.slots(params)[20]
    assert data["metadata"]["nextCursor"] == sort_columns(emulator, sort, following)


@deferred_f_from_coro_f
async def test_newest_loses_the_cursors_own_row_unless_its_id_is_raised(emulator: Emulator):
    # api-notes: Newest compares modelId DESC with "<": the cursor's row (the next page's
    # first) is never served; a|id+1 asks for exactly the rows the cursor meant.
    params = {"sort": "Newest", "nsfw": "true", "limit": 10}
    first = (await fetch(url_with(emulator.civitai_url, params))).json()
    cursor = first["metadata"]["nextCursor"]
    date, _, model_id = cursor.rpartition("|")
    slots = emulator.catalogue.civitai.slots(params)
    assert int(model_id) == slots[10]
    naive = (await fetch(url_with(emulator.civitai_url, {**params, "cursor": cursor}))).json()
    raised = f"{date}|{int(model_id) + 1}"
    fixed = (await fetch(url_with(emulator.civitai_url, {**params, "cursor": raised}))).json()
    assert civitai_page_ids(emulator, slots[11:21]) == [i["id"] for i in naive["items"]]
    assert civitai_page_ids(emulator, slots[10:20]) == [i["id"] for i in fixed["items"]]


@deferred_f_from_coro_f
async def test_newest_null_tail_cursor_is_refused(emulator: Emulator) -> None:
    # Models without a published version sort last (NULLS LAST); a first page that reaches
    # them hands back "|id" (CONCAT drops the NULL), which the server refuses: 400.
    cat = emulator.catalogue.civitai
    dated = emulator.query_civitai({"nsfw": "true", "sort": "Newest"})[:2]
    undated = [cat.ids[i] for i in range(len(cat)) if not cat.has_version(i)][:3]
    params = {"ids": ",".join(map(str, dated + undated)), "sort": "Newest", "nsfw": "true"}
    page = (await fetch(url_with(emulator.civitai_url, {**params, "limit": 2}))).json()
    assert [i["id"] for i in page["items"]] == dated
    cursor = page["metadata"]["nextCursor"]
    assert cursor.startswith("|") and int(cursor[1:]) in undated
    reply = await fetch(url_with(emulator.civitai_url, {**params, "limit": 2, "cursor": cursor}))
    assert reply.status == 400
    assert reply.json() == {"message": 'Invalid cursor: unparseable numeric value ""'}


@pytest.mark.parametrize(
    ("cursor", "sort"),
    [
        ("not-a-cursor", "Highest Rated"),
        ("123", "Most Downloaded"),
        ("1|2", "Most Downloaded"),
        ("1|2|3|4", "Most Downloaded"),
        ("1||3", "Highest Rated"),
        ("|5", "Newest"),
        ("12|5", "Newest"),
        ("2025-01-01 00:00:00.000|5|6", "Oldest"),
        ("2025-01-01 00:00:00.000|1|2", "Most Images"),
    ],
)
@deferred_f_from_coro_f
async def test_invalid_cursors_are_400_with_a_message(
    emulator: Emulator, cursor: str, sort: str
) -> None:
    # api-notes: the wrong number of tokens or an empty one → 400 "Invalid cursor", a plain
    # {"message"} (endpoint-helpers.ts handleEndpointError).
    reply = await fetch(url_with(emulator.civitai_url, {"sort": sort, "cursor": cursor}))
    assert reply.status == 400
    assert reply.json()["message"].startswith("Invalid cursor")


@deferred_f_from_coro_f
async def test_ties_follow_the_real_order_by(emulator: Emulator) -> None:
    # Metric sorts break ties by modelId ascending, Newest by modelId descending; a page
    # boundary inside a tie loses nothing for a client that raises Newest's last token.
    cat = emulator.catalogue.civitai
    for sort, ascending in (("Most Downloaded", True), ("Newest", False)):
        params = {"sort": sort, "nsfw": "true"}
        slots = cat.slots(params)
        key = cat.sort_key(sort)
        tied = [
            (a, b)
            for a, b in pairwise(slots)
            if key(cat.index_of_id[a])[:-1] == key(cat.index_of_id[b])[:-1]
        ]
        assert tied, sort
        assert all((a < b) is ascending for a, b in tied), sort
        # A page of 10 ending just inside the first tie, asked with the cursor of its first
        # row, then the page after it.
        _, b = tied[0]
        start = slots.index(b) - 10
        page_params = {**params, "limit": 10}
        if start > 0:
            cursor = sort_columns(emulator, sort, slots[start])
            page_params["cursor"] = raise_newest(sort, cursor)
        else:
            start = 0
        page = (await fetch(url_with(emulator.civitai_url, page_params))).json()
        assert [i["id"] for i in page["items"]] == civitai_page_ids(
            emulator, slots[start : start + 10]
        )
        cursor = page["metadata"]["nextCursor"]
        assert cursor == sort_columns(emulator, sort, slots[start + 10])
        after = {**params, "limit": 10, "cursor": raise_newest(sort, cursor)}
        following = (await fetch(url_with(emulator.civitai_url, after))).json()
        assert [i["id"] for i in following["items"]] == civitai_page_ids(
            emulator, slots[start + 10 : start + 20]
        )


def raise_newest(sort: str, cursor: str) -> str:
    """Newest's cursor as a client must send it: its last token (modelId DESC) raised by one."""
    if sort != "Newest":
        return cursor
    head, _, last = cursor.rpartition("|")
    return f"{head}|{int(last) + 1}"


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
    ids = ",".join(map(str, archived + taken + nulls))
    # Archived models are left out unless archived=true (api-notes).
    params = {"ids": ids, "nsfw": "true", "archived": "true"}
    listed = (await fetch(url_with(emulator.civitai_url, {"ids": ids, "nsfw": "true"}))).json()
    assert not {i["id"] for i in listed["items"]} & set(archived)
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
