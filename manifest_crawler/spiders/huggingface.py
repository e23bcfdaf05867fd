"""Hugging Face ``/api/models``: a JSON list per page, the next page in the ``Link`` header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from scrapy.http import Response

from manifest_crawler.spiders.base import (
    ManifestSpider,
    Page,
    PageError,
    SourceAPI,
    load_json,
    next_link,
    query_value,
)


class HuggingFaceAPI(SourceAPI):
    name = "huggingface"
    url_setting = "HF_API_URL"
    default_url = "https://huggingface.co/api/models"
    token_env = "HF_TOKEN"
    max_page_size = 1000

    def parse(self, response: Response) -> Page:
        document = load_json(response.body)
        if not isinstance(document, list):
            raise PageError("unexpected_shape", "body is not a Hugging Face model list")
        link = next_link(response)
        if link is None:
            return Page(items=document, next_cursor=None)
        # The Link URL is followed as given (it carries every parameter plus the cursor); the
        # cursor alone identifies the position, for repeated-cursor detection.
        return Page(items=document, next_cursor=query_value(link, "cursor") or link, next_url=link)

    def raw_id(self, item: Mapping[str, Any]) -> Any:
        raw_id = item.get("id")
        return raw_id if raw_id is not None else item.get("modelId")

    def raw_name(self, item: Mapping[str, Any]) -> Any:
        return self.raw_id(item)


class HuggingFaceSpider(ManifestSpider):
    name = "huggingface"
    source_apis: ClassVar[tuple[type[SourceAPI], ...]] = (HuggingFaceAPI,)
