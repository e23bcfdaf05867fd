"""What a hostile or broken answer can hold, read without harm by the pure parts: next-page
links, cursors, bodies, error bodies, and one page's items for one filter."""

from __future__ import annotations

import math
import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scrapy.http import TextResponse

from manifest_crawler.apis.base import (
    PageError,
    api_error_message,
    cursor_text,
    link_target,
    load_json,
    off_the_api,
    redact_url,
    url_origin,
)
from manifest_crawler.apis.civitai import CivitaiAPI
from manifest_crawler.apis.huggingface import HuggingFaceAPI
from manifest_crawler.apis.selection import UNREADABLE, select_items
from manifest_crawler.filters import ContentRule, Filter
from manifest_crawler.text import described, shown

HUB = "http://127.0.0.1:8000/api/models"


def _hub_page(link: str) -> TextResponse:
    return TextResponse(
        f"{HUB}?sort=likes", body=b'[{"id": "a/b"}]', headers={"Link": link}, encoding="utf-8"
    )


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:8000/api/models?cursor=x",  # another loopback host
        "http://127.0.0.1:8001/api/models?cursor=x",  # another port
        "https://127.0.0.1:8000/api/models?cursor=x",  # another scheme
        "file:///etc/passwd",
        "http://127.0.0.1:8000/api/other?cursor=x",  # another path
        "http://user:pw@127.0.0.1:8000/api/models?cursor=x",  # credentials
        "//127.0.0.2:8000/api/models?cursor=x",  # scheme-relative
        "http://127.0.0.1:99999/api/models",  # no port at all
    ],
)
def test_a_next_page_off_the_listing_is_refused_naming_it(target):
    with pytest.raises(PageError) as refused:
        HuggingFaceAPI(HUB).parse(_hub_page(f'<{target}>; rel="next"'))
    assert refused.value.reason == "off_api_link"
    assert "the next page" in str(refused.value)
    assert "pw" not in str(refused.value)


def test_a_next_page_of_the_listing_is_followed():
    for target in (f"{HUB}?sort=likes&cursor=Q1", "/api/models?sort=likes&cursor=Q1"):
        page = HuggingFaceAPI(HUB).parse(_hub_page(f'<{target}>; rel="next"'))
        assert page.next_cursor == "Q1"
        assert page.next_url == f"{HUB}?sort=likes&cursor=Q1"
    # The default port is the same origin.
    assert off_the_api("https://hub.test/api/models?c=1", "https://hub.test:443/api/models") is None


def test_link_headers_are_read_link_by_link():
    assert link_target('<a>; rel="prev", <b>; rel="next"', "next") == "b"
    assert link_target("<a>; rel=next", "next") == "a"
    assert link_target('<a>; rel="prev next"', "next") == "a"
    assert link_target("<a,b>; title=x; REL=Next", "next") == "a,b"
    assert link_target('<a>; rel="nextish"', "next") is None
    assert link_target("<a; rel=next", "next") is None


@pytest.mark.parametrize(
    "header", ["<" * 60_000, "<>;" * 20_000, ("<a>;" + "y" * 10) * 5_000, "; rel=" * 10_000]
)
def test_a_hostile_link_header_is_read_in_linear_time(header):
    # The regular expression this replaced took 11-18 s on the first two.
    started = time.process_time()
    for _ in range(10):
        link_target(header, "next")
    assert time.process_time() - started < 5


def test_origins_and_redaction():
    assert url_origin("HTTP://Hub.Test/api") == ("http", "hub.test", 80)
    assert url_origin("ftp://hub.test/") is None
    assert url_origin("http://u:p@hub.test/") is None
    assert redact_url("http://u:p@h/x?token=s&a=1") == "http://REDACTED@h/x?token=REDACTED&a=1"
    assert redact_url("http://[::1/x") == "<an invalid URL>"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "too_deep"),
        (b'{"items": [' * 100_000, "too_deep"),
        (b"<html>", "invalid_json"),
        (b"", "invalid_json"),
    ],
)
def test_a_body_that_is_not_a_page_is_a_page_error(body, reason):
    with pytest.raises(PageError) as refused:
        load_json(body)
    assert refused.value.reason == reason


def test_the_tolerant_parser_bounds_numbers_and_keeps_lone_surrogates():
    body = (
        b'{"items": [{"id": '
        + b"9" * 5000
        + b', "name": "a\\ud800\x01"}, {"id": -1'
        + (b"0" * 200)
        + b"}]}"
    )
    first, second = load_json(body)["items"]
    assert first["id"] == math.inf and second["id"] == -math.inf
    # Repaired where it is written (normalize.display_name), not here.
    assert first["name"] == "a\ud800\x01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("75363|932023|257749", "75363|932023|257749"), (12, "12"), (2**64 - 1, str(2**64 - 1))],
)
def test_usable_cursors(value, expected):
    assert cursor_text(value) == expected


@pytest.mark.parametrize(
    "value", [True, 2**64, math.inf, 1.5, ["a"], {"a": 1}, "x" * 1001, "a\nb", "a\ud800"]
)
def test_unusable_cursors_end_the_chain_with_a_reason(value):
    with pytest.raises(PageError) as refused:
        cursor_text(value)
    assert refused.value.reason == "invalid_cursor"
    assert len(str(refused.value)) < 200


def test_a_civitai_page_with_a_hostile_cursor_is_a_page_error():
    body = orjson.dumps({"items": [], "metadata": {"nextCursor": {"a": [1, 2]}}})
    response = TextResponse("http://c.test/api/v1/models", body=body, encoding="utf-8")
    with pytest.raises(PageError, match="not usable"):
        CivitaiAPI("http://c.test/api/v1/models").parse(response)


ZOD = {
    "error": {
        "issues": [
            {
                "code": "invalid_enum_value",
                "received": "LoRA",
                "path": ["types", 0],
                "message": "Invalid enum value. Expected 'LORA', received 'LoRA'",
            }
        ],
        "name": "ZodError",
    }
}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (ZOD, "types.0: Invalid enum value. Expected 'LORA', received 'LoRA'"),
        ({"error": {"issues": [{"path": [], "message": "Bad request"}]}}, "Bad request"),
        ({"message": "Invalid cursor"}, "Invalid cursor"),
        ({"error": "Invalid sort parameter: trending"}, "Invalid sort parameter: trending"),
        # A ZodError's message is its issues as JSON text.
        ({"error": orjson.dumps(ZOD["error"]["issues"]).decode()}, "types.0: Invalid enum"),
        ({"error": {"message": "nested"}}, "nested"),
        (
            {"error": {"issues": [{"path": ["a"], "message": "m"}] * 5}},
            "a: m; a: m; a: m (and 2 more)",
        ),
        (b'{"error": "line\\nbreak \\ud800"}', "line\\x0abreak \\ud800"),
        ({"error": 5}, None),
        ([1, 2], None),
    ],
)
def test_error_bodies_show_the_message_inside(body, message):
    found = api_error_message(body if isinstance(body, bytes) else orjson.dumps(body))
    if message is None:
        assert found is None
    else:
        assert found is not None and found.startswith(message)


def test_error_bodies_are_bounded():
    assert len(api_error_message(orjson.dumps({"message": "x" * 100_000})) or "") < 400
    assert api_error_message(b"{" * 10_000) is None


def _filter(rated_at_most: int | None = None) -> Filter:
    """A LoRA filter; with ``rated_at_most`` (a mask of ratings) read from the nsfw listing."""
    if rated_at_most is None:
        return Filter("civitai", "f", "F", (("types", "LORA"),))
    rule = ContentRule("rated_at_most", rated_at_most)
    return Filter("civitai", "f", "F", (("types", "LORA"), ("nsfw", "true")), rule=rule)


def test_one_bad_item_costs_that_item_only():
    items = [
        {"id": 1, "name": "One", "nsfwLevel": 1},
        {"id": "9" * 5000, "name": "Huge", "nsfwLevel": 1},
        {"id": math.inf, "name": "Infinite"},
        {"id": 2, "name": "Cat \ud83d", "nsfwLevel": 1},
        "not an object",
        {"id": 3, "name": "x" * 5000},
        {"id": 4},
        {"id": 5, "name": "Five", "type": {"deep": [[[]]]}},
        {"id": 1, "name": "One again"},
        {"id": 6, "name": "Six"},
    ]
    selection = select_items(CivitaiAPI("http://c.test/"), _filter(), items, {"civitai-6"}, None)
    assert [(m.id, m.name) for m in selection.models] == [
        ("civitai-1", "One"),
        ("civitai-2", "Cat \ufffd"),
        ("civitai-5", "Five"),
    ]
    assert selection.dropped == {
        "invalid_id": 2,
        "not_an_object": 1,
        "name_too_long": 1,
        "missing_name": 1,
    }
    assert selection.duplicates == 2
    assert len(selection.drop_notes) == 3


def test_a_rated_filter_drops_an_item_whose_level_cannot_be_read():
    levels = [1, -1, "1", None, True, 2**40, 4]
    items = [{"id": n, "name": "m", "nsfwLevel": level} for n, level in enumerate(levels, 1)]
    selection = select_items(CivitaiAPI("http://c.test/"), _filter(0b11), items, set(), None)
    assert [m.id for m in selection.models] == ["civitai-1"]
    assert selection.dropped == {"invalid_nsfw_level": 5}
    assert selection.excluded == 1


def test_an_item_no_rule_foresaw_is_dropped_as_unreadable(monkeypatch):
    api = CivitaiAPI("http://c.test/")

    def broken(filter_, item):
        if item["id"] == 2:
            raise KeyError("a bug of ours")
        return None

    monkeypatch.setattr(api, "mismatch", broken)
    items = [{"id": n, "name": "m"} for n in (1, 2, 3)]
    selection = select_items(api, _filter(), items, set(), None)
    assert [m.id for m in selection.models] == ["civitai-1", "civitai-3"]
    assert selection.dropped == {UNREADABLE: 1}
    assert "KeyError" in selection.drop_notes[0]


def test_selection_stops_at_what_the_filter_still_wants():
    items = [{"id": n, "name": "m"} for n in range(1, 6)] + ["bad"]
    selection = select_items(CivitaiAPI("http://c.test/"), _filter(), items, set(), 2)
    assert [m.id for m in selection.models] == ["civitai-1", "civitai-2"]
    assert not selection.dropped


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


_fields = st.sampled_from(["id", "name", "type", "nsfwLevel", "modelVersions", "tags"])


@given(st.lists(_json | st.dictionaries(_fields, _json)))
def test_any_items_are_taken_or_counted(items):
    for api, source in ((CivitaiAPI("http://c.test/"), "civitai"), (HuggingFaceAPI(HUB), "hf")):
        filter_ = Filter(api.name, "f", "F", (("filter", "gguf"), ("types", "LORA")))
        selection = select_items(api, filter_, items, set(), None)
        taken = len(selection.models) + selection.duplicates + selection.excluded
        assert taken + selection.dropped.total() == len(items), source
        assert UNREADABLE not in selection.dropped, selection.drop_notes
        orjson.dumps([model._asdict() for model in selection.models])


def test_shown_and_described_are_one_bounded_line():
    assert shown("a\nb\x00\ud800\u2028", 80) == "a\\x0ab\\x00\\ud800\\u2028"
    assert shown("x" * 100, 10) == "x" * 10 + "…"
    assert described([1] * 10**6) == "a JSON array of 1000000"
    assert described(10**400).startswith("an integer of")
    assert described("a\tb") == "'a\\x09b'"
