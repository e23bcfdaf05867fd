"""Item pipelines: normalise each model entry, then collect and write the manifests."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from manifest_crawler.filters import FilterSet, load_filters
from manifest_crawler.items import FilterOutcome
from manifest_crawler.manifests import (
    ALL_MODELS_FILE,
    build_manifest,
    encode_json,
    manifest_filename,
    manifests_on_disk,
    merge_all_models,
    utc_timestamp,
    write_atomic,
)
from manifest_crawler.normalize import InvalidModel, normalize_model

logger = logging.getLogger(__name__)


class NormalizePipeline:
    """Turn raw ids and names into the site's ``id``/``slug``/``name``; drop what cannot be."""

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, FilterOutcome):
            return item
        adapter = ItemAdapter(item)
        source = adapter["source"]
        try:
            model = normalize_model(source, adapter["id"], adapter["name"])
        except InvalidModel as exc:
            self.stats.inc_value(f"manifest/dropped/{exc.reason}")
            self.stats.inc_value(f"manifest/{source}/dropped")
            raise DropItem(f"{source}:{adapter['filter']}: {exc}") from None
        adapter["id"], adapter["slug"], adapter["name"] = model
        return item


class ManifestWriterPipeline:
    """Collect each filter's models; when the crawl closes, write the manifests of the filters
    whose pagination completed, then rebuild all-models.json from every manifest on disk."""

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.stats = crawler.stats
        self.manifest_dir = Path(settings["MANIFEST_DIR"])
        self.filters_file = settings["FILTERS_FILE"]
        self.models: defaultdict[tuple[str, str], list[tuple[int, dict[str, str]]]] = defaultdict(
            list
        )
        self.outcomes: dict[tuple[str, str], FilterOutcome] = {}
        self.started_at = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, FilterOutcome):
            self.outcomes[(item.source, item.filter)] = item
            return item
        adapter = ItemAdapter(item)
        key = (adapter["source"], adapter["filter"])
        self.models[key].append(
            (
                adapter["rank"],
                {"id": adapter["id"], "slug": adapter["slug"], "name": adapter["name"]},
            )
        )
        self.stats.inc_value(f"manifest/{adapter['source']}/models")
        return item

    def close_spider(self) -> None:
        filter_set = load_filters(self.filters_file)
        timestamp = utc_timestamp()
        for key, outcome in self.outcomes.items():
            if outcome.status != FilterOutcome.COMPLETE:
                logger.warning(
                    "%s:%s failed (%s); its previous manifest is kept: %s",
                    outcome.source,
                    outcome.filter,
                    outcome.reason,
                    "; ".join(outcome.errors) or "no detail",
                )
                continue
            ranked = sorted(self.models.get(key, ()), key=lambda pair: pair[0])
            document = build_manifest(outcome.filter, [model for _, model in ranked], timestamp)
            write_atomic(self.manifest_dir / manifest_filename(*key), encode_json(document))
            self.stats.inc_value(f"manifest/{outcome.source}/filters_written")
        self._write_all_models(filter_set, timestamp)
        self._log_summary()

    def _write_all_models(self, filter_set: FilterSet, timestamp: str) -> None:
        manifests, problems = manifests_on_disk(self.manifest_dir, filter_set)
        for problem in problems:
            logger.warning("all-models.json leaves out a manifest: %s", problem)
        document = merge_all_models(manifests, timestamp)
        write_atomic(self.manifest_dir / ALL_MODELS_FILE, encode_json(document))
        self.stats.set_value("manifest/all_models", document["totalModels"])

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self.started_at
        lines = [f"Manifest run summary ({elapsed:.1f} s):"]
        by_source: defaultdict[str, list[FilterOutcome]] = defaultdict(list)
        for outcome in self.outcomes.values():
            by_source[outcome.source].append(outcome)
        for source, outcomes in by_source.items():
            complete = sum(1 for o in outcomes if o.status == FilterOutcome.COMPLETE)
            lines.append(
                f"  {source}: {complete}/{len(outcomes)} filters fetched, "
                f"{sum(o.pages for o in outcomes)} pages, "
                f"{sum(o.models for o in outcomes)} models, "
                f"{self.stats.get_value(f'manifest/{source}/dropped', 0)} dropped"
            )
        logger.info("\n".join(lines))
