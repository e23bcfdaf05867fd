"""MANIFEST_SITEMAP_URL: write ``public/sitemap.xml`` from the all-models.json just written.

Off unless MANIFEST_SITEMAP_URL is set. It listens to the writer's ``all_models_written``
signal, so it sees exactly the document the writer validated and wrote, and writes nothing in
a run that changed nothing. Each file is checked against the package's ``sitemap.xsd`` before it
replaces the old one; children are written before the index that names them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Self

import orjson
from lxml import etree
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from manifest_crawler import signals
from manifest_crawler.filters import DEFAULT_SOURCES
from manifest_crawler.output.manifests import AtomicFiles
from manifest_crawler.output.schemas import SITEMAP_XSD, schema_bytes
from manifest_crawler.output.sitemap import (
    SitemapError,
    UrlPattern,
    build_sitemaps,
    model_urls,
    parse_patterns,
)

logger = logging.getLogger(__name__)


class SitemapWriter:
    def __init__(
        self, crawler: Crawler, patterns: dict[str, UrlPattern], file: Path, base_url: str
    ) -> None:
        self.stats = crawler.stats
        self.patterns = patterns
        self.file = file
        self.base_url = base_url
        self.xsd = etree.XMLSchema(etree.fromstring(schema_bytes(SITEMAP_XSD)))
        # A sitemap of 50,000 URLs is far past libxml2's default safety limits.
        self.parser = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
        crawler.signals.connect(self.all_models_written, signal=signals.all_models_written)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        value = settings.get("MANIFEST_SITEMAP_URL")
        if not value:
            raise NotConfigured
        if isinstance(value, str) and value.lstrip().startswith("{"):
            # -s MANIFEST_SITEMAP_URL='{"civitai": "...", "huggingface": "..."}'
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise SitemapError(f"MANIFEST_SITEMAP_URL is not valid JSON: {exc}") from None
        patterns = parse_patterns(value, DEFAULT_SOURCES)
        if not patterns:
            raise SitemapError("MANIFEST_SITEMAP_URL names no source")
        base_url = settings.get("MANIFEST_SITEMAP_BASE_URL") or next(iter(patterns.values())).origin
        if not re.match(r"https?://[^/\s]+", base_url):
            raise SitemapError(
                f"MANIFEST_SITEMAP_BASE_URL={base_url!r} must be an absolute http(s) URL"
            )
        return cls(crawler, patterns, Path(settings["MANIFEST_SITEMAP_FILE"]), base_url)

    def all_models_written(self, document: dict[str, Any], path: Path, files: AtomicFiles) -> bool:
        try:
            sitemaps = build_sitemaps(
                model_urls(document["models"], self.patterns),
                file_name=self.file.name,
                base_url=self.base_url,
            )
        except SitemapError as exc:
            logger.warning("%s not written: %s", self.file, exc)
            return True
        for name, data in sitemaps.files.items():
            root = etree.fromstring(data, self.parser)
            if not self.xsd.validate(root):
                logger.error(
                    "%s not written: %s does not follow the sitemaps.org protocol: %s",
                    self.file,
                    name,
                    self.xsd.error_log.last_error,
                )
                return False
        # Children first: the index must never name a file that is not there yet (AtomicFiles
        # replaces in the order staged, once every file of the run is on disk).
        for name, data in reversed(sitemaps.files.items()):
            files.write(self.file.with_name(name), data)
        self._remove_old_children(set(sitemaps.files), files)
        if sitemaps.too_long:
            logger.warning(
                "%s leaves out %d URL(s) longer than 2,048 characters",
                self.file,
                sitemaps.too_long,
            )
        self.stats.set_value("manifest/sitemap/urls", sitemaps.urls)
        self.stats.set_value("manifest/sitemap/files", len(sitemaps.files))
        logger.info(
            "Staged %s: %d URL(s) in %d file(s)", self.file, sitemaps.urls, len(sitemaps.files)
        )
        return True

    def _remove_old_children(self, current: set[str], files: AtomicFiles) -> None:
        """Children of an earlier, larger sitemap that the new index no longer names: removed
        when the run's files are committed."""
        child = re.compile(rf"{re.escape(self.file.stem)}-[0-9]+{re.escape(self.file.suffix)}\Z")
        for path in self.file.parent.glob(f"{self.file.stem}-*{self.file.suffix}"):
            if child.match(path.name) and path.name not in current:
                files.remove(path)
