"""The ``civitai`` spider: every CivitAI filter of filters.json, through CivitaiAPI."""

from __future__ import annotations

from typing import ClassVar

from manifest_crawler.apis.base import SourceAPI
from manifest_crawler.apis.civitai import CivitaiAPI
from manifest_crawler.spiders.base import ManifestSpider


class CivitaiSpider(ManifestSpider):
    name = "civitai"
    source_apis: ClassVar[tuple[type[SourceAPI], ...]] = (CivitaiAPI,)
