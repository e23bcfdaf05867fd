"""The item pipeline: collect each filter's models, then write the manifests."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from twisted.python.failure import Failure

from manifest_crawler import signals
from manifest_crawler.changes import (
    CHANGES_FILE,
    Baseline,
    FilterOutcome,
    build_changes,
    summarize,
)
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.ledger import FilterState, FilterStatus, Ledger
from manifest_crawler.manifests import (
    ALL_MODELS_FILE,
    AtomicFiles,
    Entry,
    ManifestError,
    ManifestModel,
    build_manifest,
    compact_entry,
    entry_id,
    manifest_filename,
    manifests_on_disk,
    merge_all_models,
    read_manifest_ids,
    read_previous_site_models,
    remove_stale_temporaries,
    utc_timestamp,
    write_atomic,
)
from manifest_crawler.runreport import (
    EXIT_CODE_STAT,
    EXIT_FAILED,
    RUN_REPORT_FILE,
    FilterVerdict,
    Verdict,
    build_report,
    empty_listing_note,
    exit_status,
    judge_filter,
)
from manifest_crawler.schemas import (
    ALL_MODELS_SCHEMA,
    CHANGES_SCHEMA,
    MANIFEST_SCHEMA,
    RUN_REPORT_SCHEMA,
    SchemaError,
    Validators,
)

logger = logging.getLogger(__name__)


class ManifestWriterPipeline:
    """Collect each filter's models; when the crawl closes, judge every filter, write the fresh
    manifests, rebuild all-models.json from every manifest on disk and write the run report.

    Writing at close (not as filters finish) means a crash or kill leaves the previous files,
    and a graceful stop writes exactly the filters that completed.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        run = crawler.get_extension(RunState)
        if run is None:
            raise RuntimeError("ManifestWriterPipeline needs the RunState extension")
        #: The run's state (extensions/runstate.py): its filters, its Ledger, and the models
        #: collected here.
        self.run = run
        self.crawler = crawler
        self.stats = crawler.stats
        self.manifest_dir = Path(settings["MANIFEST_DIR"])
        self.max_shrink = settings.getfloat("MANIFEST_MAX_SHRINK")
        self.strict = settings.getbool("MANIFEST_STRICT")
        # Scrapyd keeps no exit status: the report names the job, so that its outcome can be
        # read back from the files.
        self.job: str | None = settings.get("MANIFEST_JOB") or None
        self.models = run.models
        #: One model object per distinct model not kept as its id alone, shared by the filters
        #: that list it.
        self._shared: dict[str, ManifestModel] = {}
        # Bound once: every attribute of Scrapy's stats collector goes through a Python-level
        # __getattribute__, which showed in profiles at one call per model.
        self._inc_stat = crawler.stats.inc_value
        self._model_stats: dict[str, str] = {}
        self.started = utc_timestamp()
        # Built once per run: compiling a schema costs more than checking a small document.
        self.validators = Validators()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        source = adapter["source"]
        model_id, slug, name = adapter["id"], adapter["slug"], adapter["name"]
        entry: Entry
        if compact_entry(model_id, slug, name) is not None:
            # Interned: the spider's dedup sets, and every filter listing it, share the string.
            entry = sys.intern(model_id)
        else:
            model = self._shared.get(model_id)
            if model is None or model.slug != slug or model.name != name:
                model = ManifestModel(sys.intern(model_id), sys.intern(slug), sys.intern(name))
                self._shared.setdefault(model.id, model)
            entry = model
        self.models[(source, adapter["filter"])].add(adapter["rank"], entry)
        stat = self._model_stats.get(source)
        if stat is None:
            stat = self._model_stats[source] = f"manifest/{source}/models"
        self._inc_stat(stat)
        return item

    def close_spider(self) -> None:
        ledger = self.run.ledger
        timestamp = utc_timestamp()
        fetched_any = any(state.status is FilterStatus.DONE for state in ledger)
        baseline = self.run.baseline or self._read_baseline(ledger)
        self.run.baseline = baseline
        rows: list[dict[str, Any]] = []
        outcomes: list[FilterOutcome] = []
        #: The models of the manifests written below, for all-models.json.
        written: dict[tuple[str, str], list[Entry]] = {}
        if fetched_any:
            for leftover in remove_stale_temporaries(self.manifest_dir):
                logger.info("Removed %s, left by a crawl killed while writing", leftover.name)
        # Staged, then replaced together once all are written (manifests.AtomicFiles): one
        # round of fsyncs for every manifest instead of two fsyncs each.
        with AtomicFiles() as files:
            for state in ledger:
                row, outcome = self._judge_and_stage(state, baseline, timestamp, files, written)
                rows.append(row)
                outcomes.append(outcome)
        empty = [(row, state) for row, state in zip(rows, ledger, strict=True) if row["empty"]]
        if empty:
            # Written all the same (an empty week is legitimate), but never silently.
            logger.warning(
                "%d filter(s) hold no model:\n%s",
                len(empty),
                "\n".join(
                    f"  {state.filter.source}:{state.filter.name}: "
                    f"{empty_listing_note(state.excluded)}"
                    for _, state in empty
                ),
            )
            self.stats.set_value("manifest/filters/empty", len(empty))
        exit_code = exit_status(
            [Verdict(row["status"]) for row in rows],
            strict=self.strict,
            fetched_any=fetched_any,
            empty=len(empty),
        )
        if fetched_any and not self._write_all_models(timestamp, outcomes, baseline, written):
            exit_code = EXIT_FAILED
        self.stats.set_value(EXIT_CODE_STAT, exit_code)
        report = build_report(
            spider=self.run.spider_name or "",
            started=self.started,
            finished=timestamp,
            exit_code=exit_code,
            wrote_manifests=fetched_any,
            filters=rows,
            job=self.job,
        )
        if fetched_any:
            if not self._write_checked(RUN_REPORT_SCHEMA, RUN_REPORT_FILE, report):
                self.stats.set_value(EXIT_CODE_STAT, EXIT_FAILED)
        else:
            logger.error(
                "No filter could be fetched, so nothing in %s was changed. First error: %s",
                self.manifest_dir,
                next((row["errors"][0] for row in rows if row["errors"]), "none recorded"),
            )
        self._log_summary(ledger, rows)

    def _judge_and_stage(
        self,
        state: FilterState,
        baseline: Baseline,
        timestamp: str,
        files: AtomicFiles,
        written: dict[tuple[str, str], list[Entry]],
    ) -> tuple[dict[str, Any], FilterOutcome]:
        """Judge one filter; when fresh, stage its manifest in ``files`` and note its models in
        ``written``. Returns its run-report row and its changes.json outcome."""
        path = self.manifest_dir / manifest_filename(*state.filter.key)
        previous_ids = baseline.manifests.get(state.filter.key)
        previous = None if previous_ids is None else len(previous_ids)
        collected = self.models.get(state.filter.key)
        ranked = collected.ranked() if collected is not None else []
        verdict = judge_filter(
            crawled=state.status is FilterStatus.DONE,
            crawl_reason=state.end_reason or "unfinished: the crawl stopped first",
            fresh_models=len(ranked),
            previous_models=previous,
            max_items=state.max_items,
            max_shrink=self.max_shrink,
        )
        errors = list(state.errors)
        if verdict.verdict is Verdict.FRESH:
            document = build_manifest(state.filter.name, ranked, timestamp)
            try:
                # Fresh means fetched_any. Checked as it is written and in pieces, so that
                # no whole manifest is held, as objects or encoded (a million models
                # encode to 140 MB); an invalid one leaves the previous file in place.
                files.write(
                    path,
                    self.validators.encode_checked(MANIFEST_SCHEMA, document, path.name),
                )
            except SchemaError as exc:
                verdict = self._invalid_manifest(state.filter.key, exc, previous)
                errors.append(str(exc))
            else:
                written[state.filter.key] = ranked
            del document
        row = {
            **state.as_dict(),
            "errors": errors,
            "status": str(verdict.verdict),
            "reason": verdict.reason,
            "file": path.name,
            "manifest_models": len(ranked) if verdict.verdict is Verdict.FRESH else previous,
            "empty": state.status is FilterStatus.DONE and not ranked,
        }
        outcome = FilterOutcome(
            source=state.filter.source,
            filter=state.filter.name,
            file=path.name,
            status=str(verdict.verdict),
            previous=previous_ids,
            current=[entry_id(entry) for entry in ranked],
        )
        self.stats.inc_value(f"manifest/filters/{verdict.verdict}")
        return row, outcome

    def _read_baseline(self, ledger: Ledger) -> Baseline:
        # Each previous file is read once: its ids serve both the shrink guard and the diff.
        baseline = Baseline()
        for state in ledger:
            path = self.manifest_dir / manifest_filename(*state.filter.key)
            try:
                ids = read_manifest_ids(path)
            except ManifestError as exc:
                logger.warning("%s; it does not count as a fallback", exc)
                ids = None
            baseline.manifests[state.filter.key] = ids
        path = self.manifest_dir / ALL_MODELS_FILE
        try:
            previous = read_previous_site_models(path)
        except ManifestError as exc:
            logger.warning("%s; diffing against none", exc)
            previous = None
        if previous is not None:
            baseline.all_models, baseline.all_models_timestamp = previous
        return baseline

    def _invalid_manifest(
        self, key: tuple[str, str], exc: SchemaError, previous: int | None
    ) -> FilterVerdict:
        # As for any filter not refreshed: stale while its previous manifest stays on disk,
        # failed when there is none (runreport's definitions), the schema error as the reason.
        logger.error("%s:%s: manifest not written: %s", *key, exc)
        self.stats.inc_value("manifest/schema/invalid")
        verdict = Verdict.FAILED if previous is None else Verdict.STALE
        return FilterVerdict(verdict, f"manifest failed schema validation: {exc}")

    def _write_checked(self, schema: str, name: str, document: Any) -> bool:
        """Write ``document`` as ``name`` if it matches ``schema``; else log a bug, keep the old
        file and return False (the run's exit status becomes 1)."""
        try:
            # In pieces: all-models.json of a million models encodes to about 190 MB.
            write_atomic(
                self.manifest_dir / name, self.validators.encode_checked(schema, document, name)
            )
        except SchemaError as exc:
            logger.error("Not written, the crawler produced an invalid document (a bug): %s", exc)
            self.stats.inc_value("manifest/schema/invalid")
            return False
        return True

    def _write_all_models(
        self,
        timestamp: str,
        outcomes: list[FilterOutcome],
        baseline: Baseline,
        written: Mapping[tuple[str, str], Sequence[Entry]] | None = None,
    ) -> bool:
        """all-models.json, what is built from it, and changes.json; False if one is not
        written for a reason that should fail the run."""
        # The manifests written this run are the models in memory: not read back.
        manifests, problems = manifests_on_disk(self.manifest_dir, self.run.filter_set, written)
        if problems:
            # One line, not one per filter: a run of some filters on a fresh checkout is normal.
            logger.warning(
                "all-models.json leaves out %d filter(s) with no readable manifest: %s%s",
                len(problems),
                "; ".join(problems[:3]),
                " …" if len(problems) > 3 else "",
            )
        document = merge_all_models(manifests, timestamp)
        ok = self._write_checked(ALL_MODELS_SCHEMA, ALL_MODELS_FILE, document)
        if ok:
            self.stats.set_value("manifest/all_models", document["totalModels"])
            results = self.crawler.signals.send_catch_log(
                signal=signals.all_models_written,
                document=document,
                path=self.manifest_dir / ALL_MODELS_FILE,
            )
            # send_catch_log has logged an exception's traceback; False was logged by its handler.
            ok = not any(isinstance(result, Failure) or result is False for _, result in results)
        now = document["models"] if ok else baseline.all_models or []
        changes = build_changes(
            outcomes=outcomes,
            previous_models=baseline.all_models,
            previous_timestamp=baseline.all_models_timestamp,
            models=now,
            timestamp=timestamp,
        )
        if not self._write_checked(CHANGES_SCHEMA, CHANGES_FILE, changes):
            return False
        logger.info(summarize(changes))
        return ok

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
