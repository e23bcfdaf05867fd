"""CivitAI ``/api/v1/models``: cursor pagination, ``{"items", "metadata"}`` pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from scrapy.http import Response

from manifest_crawler.filters import Filter
from manifest_crawler.spiders.base import (
    ManifestSpider,
    Page,
    PageError,
    SourceAPI,
    load_json,
    query_value,
)


class CivitaiAPI(SourceAPI):
    name = "civitai"
    url_setting = "CIVITAI_API_URL"
    default_url = "https://civitai.com/api/v1/models"
    token_env = "CIVITAI_API_TOKEN"
    max_page_size = 100

    def parse(self, response: Response) -> Page:
        document = load_json(response.body)
        if not isinstance(document, dict) or not isinstance(document.get("items"), list):
            raise PageError("unexpected_shape", "body is not a CivitAI page ({items, metadata})")
        metadata = document.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        return Page(items=document["items"], next_cursor=_next_cursor(metadata))

    def raw_id(self, item: Mapping[str, Any]) -> Any:
        return item.get("id")

    def raw_name(self, item: Mapping[str, Any]) -> Any:
        return item.get("name")

    def keep(self, filter_: Filter, item: Mapping[str, Any]) -> bool:
        if filter_.nsfw_mask is None:
            return True
        level = item.get("nsfwLevel")
        return isinstance(level, int) and bool(level & filter_.nsfw_mask)

    def mismatch(self, filter_: Filter, item: Mapping[str, Any]) -> str | None:
        types = filter_.param_values("types")
        item_type = item.get("type")
        if types and isinstance(item_type, str) and item_type not in types:
            return f"model {item.get('id')} has type {item_type!r}, not {'/'.join(types)}"
        base_models = filter_.param_values("baseModels")
        versions = item.get("modelVersions")
        if base_models and isinstance(versions, list) and versions:
            found = {v.get("baseModel") for v in versions if isinstance(v, dict)}
            if found and not found & set(base_models):
                return (
                    f"model {item.get('id')} has base models {sorted(map(str, found))}, "
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
        return str(cursor)
    next_page = metadata.get("nextPage")
    if isinstance(next_page, str) and next_page:
        return query_value(next_page, "cursor")
    return None


class CivitaiSpider(ManifestSpider):
    name = "civitai"
    source_apis: ClassVar[tuple[type[SourceAPI], ...]] = (CivitaiAPI,)
