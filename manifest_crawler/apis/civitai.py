"""CivitAI ``/api/v1/models``: cursor pagination, ``{"items", "metadata"}`` pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypedDict

from scrapy.http import Response

from manifest_crawler.apis.base import (
    Page,
    PageError,
    SourceAPI,
    cursor_text,
    load_json,
    query_value,
)
from manifest_crawler.apis.normalize import InvalidModel
from manifest_crawler.filters import Filter
from manifest_crawler.text import described

try:
    import msgspec
except ImportError:  # pragma: no cover - the fast path is optional; load_json does it all
    msgspec = None  # type: ignore[assignment]

# A CivitAI page weighs 0.5-5 MB for the handful of fields the crawler reads: decoding only
# those, into plain dicts, is about ten times faster than building every object of the page.
# Any page the narrow schema does not describe exactly (not JSON, raw control characters, an
# unexpected type anywhere below, an integer orjson would turn into a float) falls back to
# load_json, so what the spider sees is the same either way. A field read by a new check must
# be added here.
if msgspec is not None:
    # orjson keeps integers that fit 64 bits; the fast path leaves any other to it.
    _Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    _Raw = _Int | float | str | bool | None | list[Any] | dict[str, Any]

    class _Version(TypedDict, total=False):
        baseModel: _Raw

    class _Item(TypedDict, total=False):
        id: _Raw
        name: _Raw
        type: _Raw
        nsfwLevel: _Raw
        modelVersions: list[_Version]

    class _Document(TypedDict, total=False):
        items: list[_Item]
        metadata: dict[str, _Raw]

    _decode_page = msgspec.json.Decoder(_Document).decode


def _fast_load(body: bytes) -> Any:
    """The page's fields the crawler reads, or None when only load_json can tell."""
    if msgspec is None:
        return None
    try:
        return _decode_page(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class CivitaiAPI(SourceAPI):
    name = "civitai"
    url_setting = "CIVITAI_API_URL"
    default_url = "https://civitai.com/api/v1/models"
    token_env = "CIVITAI_API_TOKEN"
    max_page_size = 100

    def parse(self, response: Response) -> Page:
        document = _fast_load(response.body)
        if document is None:
            document = load_json(response.body)
        if not isinstance(document, dict) or not isinstance(document.get("items"), list):
            raise PageError("unexpected_shape", "body is not a CivitAI page ({items, metadata})")
        metadata = document.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        cursor = _next_cursor(metadata)
        if cursor is not None and "" in cursor.split("|"):
            # The NULL tail of Newest or Oldest (models without a lastVersionAt): the server
            # refuses the cursor it handed out (400), and no cursor ever reaches that tail.
            return Page(document["items"], None, end_reason="null_cursor")
        return Page(items=document["items"], next_cursor=cursor)

    def raw_id(self, item: Mapping[str, Any]) -> Any:
        return item.get("id")

    def raw_name(self, item: Mapping[str, Any]) -> Any:
        return item.get("name")

    def page_url(self, filter_: Filter, page_size: int, page: Page | None) -> str:
        if page is not None and page.next_cursor is not None:
            cursor = resume_cursor(filter_.param_values("sort"), page.next_cursor)
            page = Page(page.items, cursor, page.next_url)
        return super().page_url(filter_, page_size, page)

    def keep(self, filter_: Filter, item: Mapping[str, Any]) -> bool:
        # A rule as wide as the API's own listing has nothing to drop (see Filter).
        if filter_.rule is None or not filter_.keeps_client_side:
            return True
        level = item.get("nsfwLevel")
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level < 2**31:
            # No rating can be told: the model is dropped, counted, rather than guessed.
            raise InvalidModel(
                "invalid_nsfw_level",
                f"model {described(item.get('id'))} has the nsfwLevel {described(level)}",
            )
        return filter_.rule.keeps(level)

    def mismatch(self, filter_: Filter, item: Mapping[str, Any]) -> str | None:
        types = filter_.param_values("types")
        item_type = item.get("type")
        if types and isinstance(item_type, str) and item_type not in types:
            return (
                f"model {described(item.get('id'))} has type {described(item_type)}, "
                f"not {'/'.join(types)}"
            )
        base_models = filter_.param_values("baseModels")
        versions = item.get("modelVersions")
        if base_models and isinstance(versions, list) and versions:
            found = {
                v["baseModel"]
                for v in versions
                if isinstance(v, dict) and isinstance(v.get("baseModel"), str)
            }
            if found and not found & set(base_models):
                return (
                    f"model {described(item.get('id'))} has base models "
                    f"{', '.join(described(name) for name in sorted(found)[:5])}, "
                    f"none of {'/'.join(base_models)}"
                )
        return None


def _next_cursor(metadata: Mapping[str, Any]) -> str | None:
    """``nextCursor`` (a string, a date or a number), else the cursor inside ``nextPage``.

    We build the next URL ourselves from the cursor rather than follow ``nextPage``: that way
    the page size shrinks to what the filter still needs, and a token never rides in a URL.
    """
    cursor = metadata.get("nextCursor")
    if cursor is not None and cursor != "":
        return cursor_text(cursor)
    next_page = metadata.get("nextPage")
    if isinstance(next_page, str) and next_page:
        # Only its cursor is read: the URL itself is never requested.
        cursor = query_value(next_page, "cursor")
        return None if cursor is None else cursor_text(cursor)
    return None


#: The sorts whose last ORDER BY field is descending (api-notes): Newest is
#: ``lastVersionAt DESC NULLS LAST, modelId DESC``; every other ends in ``modelId`` ASC.
_LAST_FIELD_DESCENDING = frozenset({"Newest"})


def resume_cursor(sort: tuple[str, ...], cursor: str) -> str:
    """The cursor to send for the page that ``cursor`` (the API's ``nextCursor``) names.

    The server hands back the sort columns of the next page's first row, then compares the
    last field with ``<`` when it is descending, so that row is never served: Newest loses one
    model at every page boundary (pagination-helpers.ts). Raising the id by one (ids are
    integers) asks for exactly the rows the cursor meant; should the server switch to ``<=``,
    the one extra row is a duplicate, which the spider drops.
    """
    if set(sort) & _LAST_FIELD_DESCENDING:
        head, separator, last = cursor.rpartition("|")
        if separator and last.isdigit():
            return f"{head}|{int(last) + 1}"
    return cursor
