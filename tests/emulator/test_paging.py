"""Cursors and paging, without HTTP: the API classes answer parameter lists directly."""

from __future__ import annotations

import contextlib
import json
import re
from bisect import bisect_right
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifest_crawler.emulator.catalogue import (
    Catalogue,
    CivitaiCatalogue,
    CivitaiQuery,
    parse_civitai_params,
)
from manifest_crawler.emulator.civitai import CivitaiApi, EncodedItems, raw_control_chars
from manifest_crawler.emulator.faults import FaultConfig
from manifest_crawler.emulator.huggingface import HuggingFaceApi
from manifest_crawler.emulator.paging import (
    INT4_MAX,
    CursorToken,
    InvalidCursor,
    KeyCursor,
    QueryResult,
    civitai_date,
    decode_civitai_cursor,
    decode_hf_cursor,
    encode_civitai_cursor,
    encode_hf_cursor,
    resume_position,
)
from manifest_crawler.emulator.payloads import civitai_item
from manifest_crawler.emulator.vocabulary import BASE_MODELS, CIVITAI_SORTS, HF_SORTS

from .helpers import Reply, link_next, query_of

BASE = "http://127.0.0.1:1"
SMALL = Catalogue(seed=5, civitai_models=400, hf_models=600)

ints = st.integers(-(2**62), 2**62)
naturals = st.integers(0, 2**40)


int4 = st.integers(0, INT4_MAX)


@given(values=st.lists(int4, min_size=1, max_size=4))
def test_civitai_cursor_of_numbers_roundtrips(values: list[int]) -> None:
    text = encode_civitai_cursor(values)
    assert text == "|".join(map(str, values))
    assert decode_civitai_cursor(text, len(values)) == tuple(CursorToken(v) for v in values)


@given(seconds=st.integers(0, 2**34), model_id=int4)
def test_civitai_date_cursor_roundtrips_to_milliseconds(seconds: int, model_id: int) -> None:
    # pagination-helpers.ts: a token holding "-" is a date (timestamp(3)), printed by Postgres.
    date = civitai_date(seconds)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.000", date), date
    tokens = decode_civitai_cursor(encode_civitai_cursor([date, model_id]), 2)
    assert tokens == (CursorToken(seconds * 1000, is_date=True), CursorToken(model_id))


@pytest.mark.parametrize(
    ("raw", "fields", "message"),
    [
        ("", 3, "expected 3 value(s) for this sort, received 1"),
        ("1|2", 3, "expected 3 value(s) for this sort, received 2"),
        ("1|2|3|4", 3, "received 4"),
        ("a|b|c", 3, 'unparseable numeric value "a"'),
        ("|2|3", 3, 'unparseable numeric value ""'),
        ("1||3", 3, 'unparseable numeric value ""'),
        # The NULL tail of Newest: Postgres' CONCAT leaves the date token empty.
        ("|123", 2, 'unparseable numeric value ""'),
        ("2025-13-01 00:00:00.000|5", 2, "unparseable date value"),
        ("2025-01-01 nonsense|5", 2, "unparseable date value"),
        (f"1|2|{INT4_MAX + 1}", 3, "numeric value out of range"),
        ("75363", 3, "received 1"),
    ],
)
def test_civitai_cursors_the_server_refuses(raw: str, fields: int, message: str) -> None:
    with pytest.raises(InvalidCursor, match=re.escape(message)):
        decode_civitai_cursor(raw, fields)


def test_civitai_tokens_parse_as_the_server_does() -> None:
    # parseInt reads the leading digits; dates in any ISO form dayjs reads, to milliseconds.
    assert decode_civitai_cursor("12abc| 7|+3", 3) == tuple(map(CursorToken, (12, 7, 3)))
    millis = 1741083051 * 1000
    for date, extra in (
        ("2025-03-04 10:10:51.123", 123),
        ("2025-03-04T10:10:51.1Z", 100),
        ("2025-03-04 10:10:51", 0),
    ):
        assert decode_civitai_cursor(f"{date}|5", 2)[0] == CursorToken(millis + extra, True)


@given(sort=st.sampled_from(HF_SORTS), value=ints, index=naturals, offset=naturals)
def test_hf_cursor_roundtrip_and_is_url_safe(
    sort: str, value: int, index: int, offset: int
) -> None:
    cursor = KeyCursor(value, index, offset)
    token = encode_hf_cursor(sort, cursor)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_hf_cursor(token, sort) == cursor
    other = "likes" if sort != "likes" else "downloads"
    with pytest.raises(ValueError):
        decode_hf_cursor(token, other)


@given(st.text(max_size=40))
def test_hf_cursor_garbage_is_rejected_cleanly(raw: str) -> None:
    with contextlib.suppress(ValueError):
        decode_hf_cursor(raw, "likes")


@given(
    keys=st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 50)), unique=True, max_size=60),
    probe=st.tuples(st.integers(-60, 60), st.integers(-5, 60)),
    hint=st.integers(-5, 70),
)
def test_resume_position_is_the_first_key_after_the_cursor(keys, probe, hint) -> None:
    keys.sort()
    result = list(range(len(keys)))
    expected = bisect_right(keys, probe)
    assert resume_position(result, keys.__getitem__, probe, hint) == expected


@given(
    keys=st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 50)), unique=True, max_size=90),
    kept=st.sets(st.integers(0, 89)),
    probe=st.tuples(st.integers(-60, 60), st.integers(-5, 60)),
    hint=st.integers(-5, 100),
    asks=st.lists(st.integers(0, 100), max_size=4),
)
def test_a_lazy_answer_pages_like_the_whole_one(keys, kept, probe, hint, asks) -> None:
    # QueryResult finds matches only as far as asked, in any order of questions, and every
    # answer is the one the whole list gives; what it holds never exceeds what was needed.
    keys.sort()
    whole = [i for i in range(len(keys)) if i in kept]
    lazy = QueryResult(i for i in range(len(keys)) if i in kept)
    for limit in asks:
        assert lazy.count_up_to(limit) == min(len(whole), limit)
        assert lazy.found <= max(limit, 0) or lazy.found == len(whole)
    assert lazy.position_after(keys.__getitem__, probe, hint) == resume_position(
        whole, keys.__getitem__, probe, hint
    )
    start = lazy.count_up_to(3)
    assert list(lazy[start : start + 5]) == whole[start : start + 5]
    assert list(lazy) == whole and len(lazy) == len(whole)
    if whole:
        assert lazy[-1] == whole[-1] and lazy[len(whole) - 1] == whole[-1]


def _visible(catalogue: CivitaiCatalogue, ids: list[int]) -> list[int]:
    return [i for i in ids if not catalogue.hidden[catalogue.index_of_id[i]]]


def test_a_first_page_finds_only_what_it_shows() -> None:
    # The first page of a broad listing does not scan the whole catalogue: it finds its
    # items and one more (to know that a next page exists), the next page as many again.
    catalogue = Catalogue(seed=7, civitai_models=400, hf_models=10).civitai
    api = CivitaiApi(catalogue)
    pairs = [("nsfw", "true"), ("limit", "10")]
    first = json.loads(api.respond(pairs, f"{BASE}/api/v1/models").body)
    query, _ = parse_civitai_params(pairs)
    assert catalogue.result(query).found == 11
    cursor = first["metadata"]["nextCursor"]
    second = json.loads(api.respond([*pairs, ("cursor", cursor)], f"{BASE}/api/v1/models").body)
    assert catalogue.result(query).found == 21
    slots = catalogue.slots(pairs)
    assert [i["id"] for i in first["items"]] == _visible(catalogue, slots[:10])
    assert [i["id"] for i in second["items"]] == _visible(catalogue, slots[10:20])
    assert len(catalogue.result(query)) == len(slots) > 21


@pytest.mark.parametrize("control_chars", [False, True])
@pytest.mark.parametrize("primary", [False, True])
def test_pages_from_kept_items_are_the_bytes_of_the_whole_page(
    control_chars: bool, primary: bool
) -> None:
    # Items are encoded once and kept (EncodedItems); a page joined from them must be byte
    # for byte the page encoded whole, on first and on repeated requests, at any cache size.
    catalogue = SMALL.civitai
    tiny = CivitaiApi(catalogue, FaultConfig(control_chars=control_chars))
    tiny.items = EncodedItems(catalogue, max_bytes=1)  # keeps only the newest item
    roomy = CivitaiApi(catalogue, FaultConfig(control_chars=control_chars))
    pairs = [("nsfw", "true"), ("limit", "7"), ("primaryFileOnly", str(primary).lower())]
    for _ in range(2):
        for api in (tiny, roomy):
            body = api.respond(pairs, f"{BASE}/api/v1/models").body
            data = json.loads(body, strict=False)
            indices = [catalogue.index_of_id[item["id"]] for item in data["items"]]
            items = [
                civitai_item(catalogue, i, primary_file_only=primary, control_chars=control_chars)
                for i in indices
            ]
            whole = orjson.dumps({"items": items, "metadata": data["metadata"]})
            assert body == (raw_control_chars(whole) if control_chars else whole)
            first_slots = catalogue.slots({"nsfw": "true"})[:7]
            assert [catalogue.ids[i] for i in indices] == _visible(catalogue, first_slots)


def raise_last_token(cursor: str) -> str | None:
    """What a client must send for the page a Newest cursor names (api-notes): the server
    compares its last field, modelId DESC, with ``<``; None for a cursor the server refuses
    (an empty head token: the NULL tail). The test's own code, not the crawler's."""
    head, _, last = cursor.rpartition("|")
    if not head:
        return None
    return f"{head}|{int(last) + 1}"


def civitai_pages(
    api: CivitaiApi,
    params: list[tuple[str, str]],
    resume: Callable[[str], str | None] = lambda cursor: cursor,
) -> tuple[list[int], int]:
    """Every page from the first, each asked with ``resume`` of the previous page's cursor
    (the cursor as given, by default); stops where ``resume`` gives None."""
    ids: list[int] = []
    pages = 0
    pairs = params
    while True:
        response = api.respond(pairs, f"{BASE}/api/v1/models")
        assert response.status == 200, response.body
        data = json.loads(response.body)
        pages += 1
        ids.extend(item["id"] for item in data["items"])
        meta = data["metadata"]
        if "nextPage" not in meta:
            assert meta == {}
            return ids, pages
        assert meta["nextPage"].startswith(f"{BASE}/api/v1/models?")
        next_pairs = query_of(meta["nextPage"])
        assert dict(next_pairs)["cursor"] == meta["nextCursor"]
        assert [p for p in next_pairs if p[0] != "cursor"] == [
            p for p in params if p[0] != "cursor"
        ]
        cursor = resume(meta["nextCursor"])
        if cursor is None:
            return ids, pages
        pairs = [*params, ("cursor", cursor)]


def first_seen(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


civitai_params = st.fixed_dictionaries(
    {},
    optional={
        "sort": st.sampled_from(CIVITAI_SORTS),
        "nsfw": st.sampled_from(["true", "false"]),
        "types": st.lists(st.sampled_from(["LORA", "Checkpoint", "TextualInversion"]), max_size=2),
        "baseModels": st.lists(st.sampled_from(BASE_MODELS), max_size=2),
        "period": st.sampled_from(["AllTime", "Year", "Month"]),
    },
)


def as_pairs(params: dict) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            pairs.append((key, v))
    return pairs


def _resume_for(params: dict) -> Callable[[str], str | None]:
    return raise_last_token if params.get("sort") == "Newest" else lambda cursor: cursor


@settings(max_examples=60, deadline=None)
@given(params=civitai_params, limit=st.integers(1, 100))
def test_civitai_paging_yields_exactly_the_query_result(params: dict, limit: int) -> None:
    # Every sort, followed as the real cursors mean it (Newest's last token raised by one):
    # the whole ordered listing, no model lost at any boundary. Oldest serves again the rows
    # tied on the cursor's date (its head field compares with >=): duplicates, nothing lost.
    api = CivitaiApi(SMALL.civitai)
    pairs = [*as_pairs(params), ("limit", str(limit))]
    ids, pages = civitai_pages(api, pairs, _resume_for(params))
    assert first_seen(ids) == SMALL.query_civitai(params)
    if params.get("sort") == "Oldest":
        return
    assert len(ids) == len(set(ids))
    # Pages are cut from every model the SQL sees, hidden ones included (api-notes); Newest's
    # NULL tail (models without a published version, all hidden) is out of a cursor's reach.
    cat = SMALL.civitai
    slots = cat.slots(params)
    if params.get("sort") == "Newest":
        slots = [i for i in slots if cat.has_version(cat.index_of_id[i])]
    assert pages == max(1, -(-len(slots) // limit))


@pytest.mark.parametrize("sort", CIVITAI_SORTS)
@pytest.mark.parametrize("limit", [1, 3, 10, 100])
def test_every_sort_pages_to_the_full_ordered_listing(sort: str, limit: int) -> None:
    api = CivitaiApi(SMALL.civitai)
    params = {"sort": sort, "nsfw": "true"}
    pairs = [*as_pairs(params), ("limit", str(limit))]
    ids, _ = civitai_pages(api, pairs, _resume_for(params))
    assert first_seen(ids) == SMALL.query_civitai(params)


@pytest.mark.parametrize("limit", [1, 7, 50])
def test_newest_followed_naively_loses_the_first_row_of_every_next_page(limit: int) -> None:
    # api-notes: the cursor is the next page's first row, and Newest's WHERE leaves it out.
    api = CivitaiApi(SMALL.civitai)
    params = [("sort", "Newest"), ("nsfw", "true"), ("limit", str(limit))]
    ids, _ = civitai_pages(api, params)
    cat = SMALL.civitai
    slots = [i for i in cat.slots(dict(params[:2])) if cat.has_version(cat.index_of_id[i])]
    # Each page starts one row past the end of the last: rows 0..limit-1, limit+1..2*limit...
    reached = [i for n, i in enumerate(slots) if n % (limit + 1) != limit]
    assert ids == _visible(cat, reached)
    assert len(ids) < len(SMALL.query_civitai(dict(params[:2])))


@settings(max_examples=20, deadline=None)
@given(limit=st.integers(2, 60))
def test_skip_at_boundary_loses_one_item_per_boundary(limit: int) -> None:
    api = CivitaiApi(SMALL.civitai, FaultConfig(skip_at_boundary=True))
    ids, pages = civitai_pages(api, [("nsfw", "true"), ("limit", str(limit))])
    slots = SMALL.civitai.slots({"nsfw": "true"})
    expected = _visible(SMALL.civitai, slots)
    assert set(ids) <= set(expected)
    assert ids == [i for i in expected if i in set(ids)]
    # One slot lost per boundary (and the last one); it shows unless it was a hidden model's.
    hidden = len(slots) - len(expected)
    assert pages - hidden <= len(expected) - len(ids) <= pages


def test_a_cursor_naming_a_removed_model_resumes_where_it_stood() -> None:
    # A cursor carries values, not a position: the row it names may be gone (the catalogue
    # changed); the next page starts with the first row at or after its values.
    cat = SMALL.civitai
    order = list(cat.result(CivitaiQuery(nsfw=True)))
    gone = order[10]
    tokens = decode_civitai_cursor(cat.cursor("Highest Rated", gone), 3)
    key, strict = cat.cursor_bound("Highest Rated", tokens)
    shorter = QueryResult(iter([i for i in order if i != gone]))
    assert shorter.position_of(cat.sort_key("Highest Rated"), key, strict=strict) == 10


hf_params = st.fixed_dictionaries(
    {},
    optional={
        "sort": st.sampled_from(HF_SORTS),
        "filter": st.lists(st.sampled_from(["transformers", "safetensors", "en"]), max_size=2),
        "pipeline_tag": st.sampled_from(["text-generation", "text-to-image"]),
        "num_parameters": st.sampled_from(["min:0,max:3B", "min:3B", "max:13B"]),
        "full": st.sampled_from(["true", "false"]),
    },
)


@settings(max_examples=40, deadline=None)
@given(params=hf_params, limit=st.integers(1, 1200))
def test_hf_paging_yields_exactly_the_query_result(params: dict, limit: int) -> None:
    api = HuggingFaceApi(SMALL.hf)
    pairs = [*as_pairs(params), ("limit", str(limit))]
    ids: list[str] = []
    pages = 0
    while True:
        response = api.respond(pairs, f"{BASE}/api/models")
        assert response.status == 200, response.body
        pages += 1
        page = json.loads(response.body)
        assert len(page) <= min(limit, 1000)
        ids.extend(entry["id"] for entry in page)
        link = response.header("Link")
        if link is None:
            break
        next_url = link_next(Reply(200, {"link": [link]}, b""))
        assert next_url is not None and next_url.startswith(f"{BASE}/api/models?")
        pairs = query_of(next_url)
    expected = SMALL.query_hf(params)
    assert ids == expected
    assert pages == max(1, -(-len(expected) // min(limit, 1000)))
