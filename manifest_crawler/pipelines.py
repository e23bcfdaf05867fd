"""Item pipelines: normalise each model entry, then collect and write the manifests."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from manifest_crawler.filters import load_filters
from manifest_crawler.ledger import FilterStatus, Ledger
from manifest_crawler.manifests import (
    ALL_MODELS_FILE,
    ManifestError,
    build_manifest,
    encode_json,
    manifest_filename,
    manifests_on_disk,
    merge_all_models,
    read_manifest_models,
    remove_stale_temporaries,
    utc_timestamp,
    write_atomic,
)
from manifest_crawler.normalize import InvalidModel, normalize_model
from manifest_crawler.runreport import (
    EXIT_CODE_STAT,
    RUN_REPORT_FILE,
    Verdict,
    build_report,
    exit_status,
    judge_filter,
)

logger = logging.getLogger(__name__)


class NormalizePipeline:
    """Turn raw ids and names into the site's ``id``/``slug``/``name``; drop what cannot be."""

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
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
    """Collect each filter's models; when the crawl closes, judge every filter, write the fresh
    manifests, rebuild all-models.json from every manifest on disk and write the run report.

    Writing at close (not as filters finish) means a crash or kill leaves the previous files,
    and a graceful stop writes exactly the filters that completed.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.manifest_dir = Path(settings["MANIFEST_DIR"])
        self.filters_file = settings["FILTERS_FILE"]
        self.max_shrink = settings.getfloat("MANIFEST_MAX_SHRINK")
        self.strict = settings.getbool("MANIFEST_STRICT")
        self.models: defaultdict[tuple[str, str], list[tuple[int, dict[str, str]]]] = defaultdict(
            list
        )
        self.started = utc_timestamp()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        self.models[(adapter["source"], adapter["filter"])].append(
            (
                adapter["rank"],
                {"id": adapter["id"], "slug": adapter["slug"], "name": adapter["name"]},
            )
        )
        self.stats.inc_value(f"manifest/{adapter['source']}/models")
        return item

    def close_spider(self) -> None:
        ledger: Ledger = self.crawler.spider.ledger
        timestamp = utc_timestamp()
        fetched_any = any(state.status is FilterStatus.DONE for state in ledger)
        writes: list[tuple[Path, bytes]] = []
        rows: list[dict[str, Any]] = []
        for state in ledger:
            path = self.manifest_dir / manifest_filename(*state.filter.key)
            previous = self._previous_count(path)
            ranked = sorted(self.models.get(state.filter.key, ()), key=lambda pair: pair[0])
            verdict = judge_filter(
                crawled=state.status is FilterStatus.DONE,
                crawl_reason=state.end_reason or "unfinished: the crawl stopped first",
                fresh_models=len(ranked),
                previous_models=previous,
                max_items=state.max_items,
                max_shrink=self.max_shrink,
            )
            if verdict.verdict is Verdict.FRESH:
                document = build_manifest(state.filter.name, [m for _, m in ranked], timestamp)
                writes.append((path, encode_json(document)))
            rows.append(
                {
                    **state.as_dict(),
                    "status": str(verdict.verdict),
                    "reason": verdict.reason,
                    "file": path.name,
                    "manifest_models": len(ranked)
                    if verdict.verdict is Verdict.FRESH
                    else previous,
                }
            )
            self.stats.inc_value(f"manifest/filters/{verdict.verdict}")
        exit_code = exit_status(
            [Verdict(row["status"]) for row in rows], strict=self.strict, fetched_any=fetched_any
        )
        self.stats.set_value(EXIT_CODE_STAT, exit_code)
        report = build_report(
            spider=self.crawler.spider.name,
            started=self.started,
            finished=timestamp,
            exit_code=exit_code,
            wrote_manifests=fetched_any,
            filters=rows,
        )
        if fetched_any:
            for leftover in remove_stale_temporaries(self.manifest_dir):
                logger.info("Removed %s, left by a crawl killed while writing", leftover.name)
            for path, data in writes:
                write_atomic(path, data)
            self._write_all_models(timestamp)
            write_atomic(self.manifest_dir / RUN_REPORT_FILE, encode_json(report))
        else:
            logger.error(
                "No filter could be fetched, so nothing in %s was changed. First error: %s",
                self.manifest_dir,
                next((row["errors"][0] for row in rows if row["errors"]), "none recorded"),
            )
        self._log_summary(ledger, rows)

    def _previous_count(self, path: Path) -> int | None:
        try:
            models = read_manifest_models(path)
        except ManifestError as exc:
            logger.warning("%s; it does not count as a fallback", exc)
            return None
        return None if models is None else len(models)

    def _write_all_models(self, timestamp: str) -> None:
        filter_set = load_filters(self.filters_file)
        manifests, problems = manifests_on_disk(self.manifest_dir, filter_set)
        if problems:
            # One line, not one per filter: a run of some filters on a fresh checkout is normal.
            logger.warning(
                "all-models.json leaves out %d filter(s) with no readable manifest: %s%s",
                len(problems),
                "; ".join(problems[:3]),
                " …" if len(problems) > 3 else "",
            )
        document = merge_all_models(manifests, timestamp)
        write_atomic(self.manifest_dir / ALL_MODELS_FILE, encode_json(document))
        self.stats.set_value("manifest/all_models", document["totalModels"])

    def _log_summary(self, ledger: Ledger, rows: list[dict[str, Any]]) -> None:
        lines = ["Manifest run summary:"]
        for source in ledger.sources():
            states = [state for state in ledger if state.filter.source == source]
            source_rows = [row for row in rows if row["source"] == source]
            starts = [s.started_at for s in states if s.started_at is not None]
            ends = [s.finished_at for s in states if s.finished_at is not None]
            span = max(ends) - min(starts) if starts and ends else 0.0
            fresh = sum(1 for row in source_rows if row["status"] == Verdict.FRESH)
            lines.append(
                f"  {source}: {fresh}/{len(states)} filters fetched, "
                f"{sum(s.pages for s in states)} pages, {sum(s.models for s in states)} models, "
                f"{self.stats.get_value(f'manifest/{source}/dropped', 0)} dropped, "
                f"{sum(s.retries for s in states)} retries, {span:.1f} s"
            )
        logger.info("\n".join(lines))
        not_fresh = [row for row in rows if row["status"] != Verdict.FRESH]
        if not_fresh:
            logger.warning(
                "%d filter(s) NOT refreshed:\n%s",
                len(not_fresh),
                "\n".join(
                    f"  {row['status'].upper()} {row['source']}:{row['filter']}: {row['reason']}"
                    + (f" ({row['errors'][-1]})" if row["errors"] else "")
                    for row in not_fresh
                ),
            )
