"""The ``huggingface`` spider: every Hugging Face filter of filters.json, through HuggingFaceAPI."""

from __future__ import annotations

from typing import ClassVar

from manifest_crawler.apis.base import SourceAPI
from manifest_crawler.apis.huggingface import HuggingFaceAPI
from manifest_crawler.spiders.base import ManifestSpider


class HuggingFaceSpider(ManifestSpider):
    name = "huggingface"
    source_apis: ClassVar[tuple[type[SourceAPI], ...]] = (HuggingFaceAPI,)
