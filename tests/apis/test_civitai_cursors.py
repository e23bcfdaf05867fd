"""How the crawler reads CivitAI's cursors (api-notes): Newest's strict boundary undone, the
NULL tail's cursor never sent. Pure: the page requests a spider would make."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scrapy.http import TextResponse

from manifest_crawler.apis.base import Page, query_value
from manifest_crawler.apis.civitai import CivitaiAPI, resume_cursor
from manifest_crawler.filters import Filter
from tests.api_notes import CIVITAI_SORTS as SORTS

URL = "http://api.test/api/v1/models"


def _filter(*pairs: tuple[str, str]) -> Filter:
    return Filter("civitai", "f", "F", pairs)


def _parse(metadata: dict) -> Page:
    body = orjson.dumps({"items": [{"id": 1, "name": "a", "nsfwLevel": 1}], "metadata": metadata})
    return CivitaiAPI(URL).parse(TextResponse(URL, body=body, encoding="utf-8"))


@given(model_id=st.integers(1, 2**31 - 2), millis=st.integers(0, 999))
def test_newest_asks_from_the_cursor_with_its_id_raised_by_one(model_id, millis):
    # Newest orders by lastVersionAt DESC, modelId DESC and compares the id with "<": the
    # cursor's own row (the next page's first) comes back only when asked from id + 1.
    date = f"2025-03-04 10:10:51.{millis:03d}"
    assert resume_cursor(("Newest",), f"{date}|{model_id}") == f"{date}|{model_id + 1}"
    api = CivitaiAPI(URL)
    after = Page([], f"{date}|{model_id}")
    url = api.page_url(_filter(("sort", "Newest"), ("nsfw", "true")), 100, after)
    assert query_value(url, "cursor") == f"{date}|{model_id + 1}"
    assert query_value(url, "sort") == "Newest" and query_value(url, "limit") == "100"


@pytest.mark.parametrize("sort", [s for s in SORTS if s != "Newest"])
def test_every_other_sort_sends_the_cursor_as_given(sort):
    # Their last field is modelId ascending, compared with ">=": the cursor's row is served.
    for cursor in ("75363|932023|257749", "2025-03-04 10:10:51.123|932023"):
        assert resume_cursor((sort,), cursor) == cursor
        url = CivitaiAPI(URL).page_url(_filter(("sort", sort)), 100, Page([], cursor))
        assert query_value(url, "cursor") == cursor
    # Without a sort the API orders as Highest Rated.
    assert resume_cursor((), "1|2|3") == "1|2|3"


@pytest.mark.parametrize("cursor", ["c1", "75363", "2025-03-04|x", "a|b|"])
def test_a_cursor_not_of_the_known_shape_is_sent_as_given(cursor):
    assert resume_cursor(("Newest",), cursor) == cursor


@pytest.mark.parametrize("cursor", ["|123", "|", "2025-03-04 10:10:51.123|", "1||3"])
def test_a_cursor_with_an_empty_value_ends_the_listing(cursor):
    # The NULL tail of Newest or Oldest (CONCAT drops the NULL): the server would answer 400.
    page = _parse({"nextCursor": cursor, "nextPage": f"{URL}?cursor={cursor}"})
    assert page.next_cursor is None and page.end_reason == "null_cursor"
    assert page.items  # the page itself is kept


def test_an_ordinary_cursor_goes_on_and_a_last_page_ends_plainly():
    page = _parse({"nextCursor": "2025-03-04 10:10:51.123|5"})
    assert (page.next_cursor, page.end_reason) == ("2025-03-04 10:10:51.123|5", None)
    page = _parse({})
    assert (page.next_cursor, page.end_reason) == (None, None)
