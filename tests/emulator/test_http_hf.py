"""Hugging Face ``/api/models`` over real HTTP on 127.0.0.1."""

from __future__ import annotations

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.emulator import Emulator
from manifest_crawler.emulator.vocabulary import HF_SORTS

from .helpers import crawl_hf, fetch, link_next, query_of, url_with

DEFAULT_KEYS = {"_id", "id", "modelId", "likes", "downloads", "trendingScore", "private"}
DEFAULT_KEYS |= {"tags", "createdAt"}
FULL_KEYS = DEFAULT_KEYS | {"siblings", "author", "lastModified", "gated", "sha"}


@deferred_f_from_coro_f
async def test_default_entries(emulator: Emulator) -> None:
    reply = await fetch(url_with(emulator.hf_url, {"limit": 50}))
    assert reply.status == 200
    entries = reply.json()
    assert [e["id"] for e in entries] == emulator.query_hf({})[:50]
    for entry in entries:
        assert DEFAULT_KEYS <= set(entry) <= DEFAULT_KEYS | {"pipeline_tag", "library_name"}
        assert entry["id"] == entry["modelId"] and len(entry["_id"]) == 24
        assert entry["private"] is False
        assert entry.get("pipeline_tag") in (None, *entry["tags"])


@deferred_f_from_coro_f
async def test_missing_pipeline_and_library_are_omitted(emulator: Emulator) -> None:
    entries = (await fetch(emulator.hf_url)).json()
    assert len(entries) == 1000
    assert any("pipeline_tag" not in e for e in entries)
    assert any("library_name" not in e for e in entries)


@deferred_f_from_coro_f
async def test_full_entries_are_larger(emulator: Emulator) -> None:
    small = await fetch(url_with(emulator.hf_url, {"limit": 200}))
    full = await fetch(url_with(emulator.hf_url, {"limit": 200, "full": "true"}))
    assert len(full.body) > 2 * len(small.body)
    for entry in full.json():
        assert set(entry) >= FULL_KEYS
        assert entry["author"] == entry["id"].split("/")[0]
        assert all(set(s) == {"rfilename"} for s in entry["siblings"])
        assert entry["gated"] in (False, "auto", "manual")


@deferred_f_from_coro_f
async def test_expand_returns_only_the_named_fields(emulator: Emulator) -> None:
    params = [
        ("expand", "downloads"),
        ("expand", "likes"),
        ("expand", "safetensors"),
        ("limit", 30),
    ]
    entries = (await fetch(url_with(emulator.hf_url, params))).json()
    for entry in entries:
        assert {"_id", "id", "downloads", "likes"} <= set(entry)
        assert set(entry) <= {"_id", "id", "downloads", "likes", "safetensors"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"expand": "colour"}, "expand"),
        ({"expand": "likes", "full": "true"}, "expand"),
        ({"sort": "trending"}, "Invalid sort parameter: trending"),
        ({"sort": "most_liked"}, "Invalid sort parameter: most_liked"),
        ({"num_parameters": "lots"}, "num_parameters"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "bm9wZQ"}, "cursor"),
    ],
)
@deferred_f_from_coro_f
async def test_errors_are_400(emulator: Emulator, params: dict, message: str) -> None:
    reply = await fetch(url_with(emulator.hf_url, params))
    assert reply.status == 400
    assert message in reply.json()["error"]


@deferred_f_from_coro_f
async def test_invalid_sort_message_is_exact(emulator: Emulator) -> None:
    reply = await fetch(url_with(emulator.hf_url, {"sort": "trending"}))
    assert reply.json() == {"error": "Invalid sort parameter: trending"}


@pytest.mark.parametrize("sort", HF_SORTS)
@deferred_f_from_coro_f
async def test_every_sort_is_descending(emulator: Emulator, sort: str) -> None:
    params = {"sort": sort, "limit": 100}
    reply = await fetch(url_with(emulator.hf_url, {**params, "direction": "1"}))
    assert [e["id"] for e in reply.json()] == emulator.query_hf(params)[:100]


@deferred_f_from_coro_f
async def test_limit_above_1000_is_capped(emulator: Emulator) -> None:
    entries = (await fetch(url_with(emulator.hf_url, {"limit": 5000}))).json()
    assert len(entries) == 1000


@deferred_f_from_coro_f
async def test_link_pagination_carries_every_param(emulator: Emulator) -> None:
    params = [
        ("filter", "transformers"),
        ("filter", "safetensors"),
        ("sort", "likes"),
        ("limit", "100"),
        ("full", "true"),
    ]
    ids, replies = await crawl_hf(url_with(emulator.hf_url, params))
    assert ids == emulator.query_hf(params)
    assert len(replies) > 2
    assert link_next(replies[-1]) is None
    for reply in replies[:-1]:
        pairs = query_of(link_next(reply))
        assert [p for p in pairs if p[0] != "cursor"] == params
        assert pairs[-1][0] == "cursor"


@deferred_f_from_coro_f
async def test_link_uses_the_request_host(emulator: Emulator) -> None:
    reply = await fetch(url_with(emulator.hf_url, {"limit": 5}), {"Host": "hub.test:4321"})
    assert link_next(reply).startswith("http://hub.test:4321/api/models?limit=5&cursor=")


@pytest.mark.parametrize(
    "params",
    [
        {"search": "Qwen"},
        {"author": "meta-llama"},
        {"filter": ["text-generation", "gguf"], "sort": "downloads"},
        {"filter": "license:apache-2.0", "sort": "createdAt"},
        {"filter": "diffusers"},
        {"pipeline_tag": "text-to-image", "sort": "likes"},
        {"num_parameters": "min:0,max:3B", "sort": "likes"},
        {"num_parameters": "min:3B,max:13B", "pipeline_tag": "text-generation"},
        {"num_parameters": "min:13B"},
        {"gated": "true"},
        {"filter": "en", "sort": "lastModified"},
    ],
)
@deferred_f_from_coro_f
async def test_parameter_families(emulator: Emulator, params: dict) -> None:
    ids, _ = await crawl_hf(url_with(emulator.hf_url, {**params, "limit": 500}))
    expected = emulator.query_hf(params)
    assert ids == expected
    assert expected


@deferred_f_from_coro_f
async def test_filter_and_pipeline_reflected_in_entries(emulator: Emulator) -> None:
    params = {"filter": "gguf", "pipeline_tag": "text-generation", "limit": 200}
    for entry in (await fetch(url_with(emulator.hf_url, params))).json():
        assert "gguf" in entry["tags"] and entry["pipeline_tag"] == "text-generation"


@deferred_f_from_coro_f
async def test_empty_result(emulator: Emulator) -> None:
    reply = await fetch(url_with(emulator.hf_url, {"search": "zzz-no-such-model"}))
    assert reply.status == 200 and reply.json() == [] and link_next(reply) is None
