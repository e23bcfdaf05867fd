"""Both sources in one crawl: one dedup and one all-models.json."""

from __future__ import annotations

from typing import ClassVar

from manifest_crawler.apis.base import SourceAPI
from manifest_crawler.apis.civitai import CivitaiAPI
from manifest_crawler.apis.huggingface import HuggingFaceAPI
from manifest_crawler.spiders.base import ManifestSpider


class AllSpider(ManifestSpider):
    name = "all"
    source_apis: ClassVar[tuple[type[SourceAPI], ...]] = (CivitaiAPI, HuggingFaceAPI)
