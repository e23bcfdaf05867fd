"""The pieces the performance work added: each keeps the behaviour it replaced."""

from __future__ import annotations

import orjson
import pytest
from scrapy.http import TextResponse

from manifest_crawler.apis.base import PageError, load_json
from manifest_crawler.apis.civitai import CivitaiAPI, _next_cursor
from manifest_crawler.apis.huggingface import HuggingFaceAPI
from manifest_crawler.emulator import Catalogue, FaultConfig
from manifest_crawler.emulator.civitai import CivitaiApi
from manifest_crawler.filters import ContentRule, Filter
from manifest_crawler.ledger import FilterState
from manifest_crawler.output.manifests import (
    CollectedModels,
    ManifestModel,
    build_manifest,
    encode_json,
)
from manifest_crawler.spiders.base import chains, start_order

_CIVITAI_FIELDS = ("id", "name", "type", "nsfwLevel")


def _response(body: bytes) -> TextResponse:
    return TextResponse("http://api.test/api/v1/models", body=body, encoding="utf-8")


def _slow_parse(body: bytes) -> tuple[list, str | None]:
    """What CivitaiAPI.parse returned before the fast path: the whole page, by load_json."""
    document = load_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise PageError("unexpected_shape", "")
    metadata = document.get("metadata")
    return document["items"], _next_cursor(metadata if isinstance(metadata, dict) else {})


def _projection(item: object) -> object:
    if not isinstance(item, dict):
        return item
    view = {key: item[key] for key in _CIVITAI_FIELDS if key in item}
    if "modelVersions" in item:
        versions = item["modelVersions"]
        view["modelVersions"] = (
            [v.get("baseModel") if isinstance(v, dict) else v for v in versions]
            if isinstance(versions, list)
            else versions
        )
    return view


def _assert_same_page(body: bytes) -> None:
    api = CivitaiAPI("http://api.test/api/v1/models")
    try:
        items, cursor = _slow_parse(body)
    except PageError as exc:
        with pytest.raises(PageError) as raised:
            api.parse(_response(body))
        assert raised.value.reason == exc.reason
        return
    page = api.parse(_response(body))
    assert page.next_cursor == cursor
    # Same values, same types, same keys present or absent, for every field the spider reads.
    assert [_projection(i) for i in page.items] == [_projection(i) for i in items]
    assert [repr(_projection(i)) for i in page.items] == [repr(_projection(i)) for i in items]


@pytest.mark.parametrize("control_chars", [False, True])
def test_civitai_pages_parse_as_before(control_chars: bool) -> None:
    catalogue = Catalogue(seed=3, civitai_models=400, hf_models=0)
    api = CivitaiApi(catalogue.civitai, FaultConfig(control_chars=control_chars))
    pairs = [("limit", "100"), ("nsfw", "true"), ("sort", "Newest")]
    _assert_same_page(api.respond(pairs, "http://api.test/api/v1/models").body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": [{"id": 1, "name": "a", "modelVersions": [{"baseModel": "SDXL 1.0"}]}],'
        b' "metadata": {"nextCursor": 18446744073709551615}}',
        b'{"items": [{"id": 99999999999999999999999, "name": "huge"}], "metadata": {}}',
        b'{"items": [{"id": -9223372036854775809}], "metadata": null}',
        b'{"items": [1, "x", {"id": 2, "name": "b"}]}',
        b'{"items": [{"id": 3, "name": "c", "modelVersions": null}]}',
        b'{"items": [{"id": 4, "modelVersions": [7, {"baseModel": null}]}]}',
        b'{"items": {"id": 5}}',
        b"[]",
        b'{"items": [{"id": 6, "name": "tab\there"}], "metadata": {"nextPage": "http://x/?cursor=7"}}',
        b'{"items": [{"id": 1e400}]}',
        b"<html>rate limited</html>",
        b'{"items": [{"id": 8, "name": "cut',
    ],
)
def test_civitai_odd_pages_parse_as_before(body: bytes) -> None:
    _assert_same_page(body)


def _filter(source: str, name: str, rated: int | None = None, **params: object) -> Filter:
    pairs = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())
    rule = None if rated is None else ContentRule("rated", rated)
    return Filter(source, name, name, pairs, rule=rule)  # type: ignore[arg-type]


def test_hub_pages_ask_only_for_the_fields_the_crawler_reads() -> None:
    api = HuggingFaceAPI("http://hub.test/api/models")
    assert api.page_url(_filter("huggingface", "a", sort="likes"), 100, None).endswith(
        "sort=likes&limit=100&expand=pipeline_tag"
    )
    tagged = _filter("huggingface", "b", filter=["gguf"], sort="likes")
    assert api.expand(tagged) == ("pipeline_tag", "tags", "library_name")
    # The Hub refuses expand beside full/config/cardData, and a filter's own expand wins.
    assert api.expand(_filter("huggingface", "c", config="true")) == ()
    assert api.expand(_filter("huggingface", "d", expand=["downloads"])) == ()


def test_first_pages_alternate_sources_and_client_side_filters_go_first() -> None:
    states = [
        FilterState(_filter("civitai", "c1"), 10),
        FilterState(_filter("civitai", "c2"), 10),
        FilterState(_filter("civitai", "nsfw", rated=4, nsfw="true"), 10),
        FilterState(_filter("huggingface", "h1"), 10),
    ]
    assert [s.filter.name for s in start_order(states)] == ["nsfw", "h1", "c1", "c2"]


def test_filters_asking_for_one_listing_form_one_chain() -> None:
    def state(source: str, name: str, rated: int | None = None, **params: object) -> FilterState:
        return FilterState(_filter(source, name, rated, **params), 10)

    pg = state("civitai", "pg", 1, nsfw="true", sort="Most Downloaded")
    x = state("civitai", "x", 16, sort="Most Downloaded", nsfw="true")  # order does not matter
    loras = state("civitai", "loras", types="LORA")
    likes = state("huggingface", "likes", sort="likes")
    same_on_hf = state("huggingface", "nsfw", nsfw="true", sort="Most Downloaded")
    groups = chains([loras, pg, likes, x, same_on_hf])
    assert [[s.filter.name for s in group] for group in groups] == [
        ["pg", "x"],
        ["likes"],
        ["nsfw"],
        ["loras"],
    ]


def test_collected_models_keep_pairs_and_rank_order() -> None:
    a, b = ManifestModel("a/x", "a--x", "a/x"), ManifestModel("b/y", "b--y", "b/y")
    assert a == {"id": "a/x", "slug": "a--x", "name": "a/x"} and a["slug"] == "a--x"
    with pytest.raises(KeyError):
        a["source"]
    collected = CollectedModels([(1, b), (0, a)])
    collected.append((2, {"id": "c/z", "slug": "c--z", "name": "c/z"}))
    assert list(collected) == [(1, b), (0, a), (2, {"id": "c/z", "slug": "c--z", "name": "c/z"})]
    assert [m["id"] for m in collected.ranked()] == ["a/x", "b/y", "c/z"]
    document = build_manifest("f", collected.ranked(), "T", "emulator")
    assert encode_json(document) == encode_json(
        build_manifest("f", [dict(m) for m in collected.ranked()], "T", "emulator")
    )
    assert orjson.loads(encode_json(document))["models"][0] == {
        "id": "a/x",
        "slug": "a--x",
        "name": "a/x",
    }
