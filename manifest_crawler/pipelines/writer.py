"""Item pipelines: normalise each model entry, then collect and write the manifests."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy import signals as scrapy_signals
from scrapy.crawler import Crawler
from twisted.python.failure import Failure

from manifest_crawler import signals
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.ledger import UNFINISHED, FilterState, FilterStatus, Ledger
from manifest_crawler.output.changes import (
    CHANGES_FILE,
    Baseline,
    FilterOutcome,
    build_changes,
    summarize,
)
from manifest_crawler.output.manifests import (
    ALL_MODELS_FILE,
    EMULATOR_ORIGIN,
    SOURCE_URL_SETTINGS,
    AtomicFiles,
    Entry,
    FilesNotWritten,
    ManifestError,
    ManifestModel,
    OtherOrigin,
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
)
from manifest_crawler.output.runreport import (
    EXIT_CODE_STAT,
    EXIT_FAILED,
    RUN_REPORT_FILE,
    WRITTEN,
    FilterVerdict,
    Verdict,
    build_report,
    empty_listing_note,
    exit_status,
    judge_filter,
)
from manifest_crawler.output.schemas import (
    ALL_MODELS_SCHEMA,
    CHANGES_SCHEMA,
    MANIFEST_SCHEMA,
    RUN_REPORT_SCHEMA,
    SchemaError,
    Validators,
)
from manifest_crawler.settings_check import claim_output_folder

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
        self._model_stats: dict[str, str] = {}
        self.started = utc_timestamp()
        # Built once per run: compiling a schema costs more than checking a small document.
        self.validators = Validators()
        self.synthetic = settings.getbool("MANIFEST_OFFLINE")
        #: Where each source's models come from: what a previous file must have come from
        #: to count as a fallback or a baseline.
        self.origins = {
            source: EMULATOR_ORIGIN if self.synthetic else settings[setting]
            for source, setting in SOURCE_URL_SETTINGS.items()
        }
        #: (level, line) logged when the engine has stopped: the run's last words.
        self._end_lines: list[tuple[int, str]] = []
        crawler.signals.connect(self.engine_stopped, signal=scrapy_signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def open_spider(self) -> None:
        if self.run.folder_lock is None:
            # A crawler made in code (`scrapy crawl` took the lock when it checked its input):
            # the same check and lock, before any request; InputError stops the crawl.
            self.run.folder_lock = claim_output_folder(self.crawler.settings, self.run.filter_set)

    def process_item(self, item: Any) -> Any:
        """Collect a page of a filter's models (items.ModelPage)."""
        adapter = ItemAdapter(item)
        source = adapter["source"]
        collected = self.models[(source, adapter["filter"])]
        shared = self._shared
        models = adapter["models"]
        for model in models:
            model_id, slug, name = model.id, model.slug, model.name
            entry: Entry
            if compact_entry(model_id, slug, name) is not None:
                # Interned: the spider's dedup sets, and every filter listing it, share the
                # string.
                entry = sys.intern(model_id)
            else:
                known = shared.get(model_id)
                if known is None or known.slug != slug or known.name != name:
                    known = ManifestModel(sys.intern(model_id), sys.intern(slug), sys.intern(name))
                    shared.setdefault(known.id, known)
                entry = known
            collected.add(model.rank, entry)
        stat = self._model_stats.get(source)
        if stat is None:
            stat = self._model_stats[source] = f"manifest/{source}/models"
        self.stats.inc_value(stat, len(models))
        return item

    def close_spider(self) -> None:
        ledger = self.run.ledger
        timestamp = utc_timestamp()
        fetched_any = any(state.status is FilterStatus.DONE for state in ledger)
        baseline = self.run.baseline or self._read_baseline(ledger)
        self.run.baseline = baseline
        rows: list[dict[str, Any]] = []
        failure: str | None = None
        end: list[tuple[int, str]] = []
        lock = self.run.folder_lock
        if fetched_any and lock is not None and lock.held:
            # Only the folder's lock holder: another run's temporaries are no leftovers.
            with contextlib.suppress(OSError):  # a folder that is not there has none
                for leftover in remove_stale_temporaries(self.manifest_dir):
                    logger.info("Removed %s, left by a crawl killed while writing", leftover.name)
        # Every file of the run is staged, then all are replaced together (manifests.
        # AtomicFiles): a failure while staging any of them replaces none.
        files = AtomicFiles()
        try:
            outcomes: list[FilterOutcome] = []
            #: The models of the manifests staged below, for all-models.json.
            written: dict[tuple[str, str], list[Entry]] = {}
            for state in ledger:
                row, outcome = self._judge_and_stage(state, baseline, timestamp, files, written)
                rows.append(row)
                outcomes.append(outcome)
            empty = self._warn_empty(ledger, rows)
            exit_code = exit_status(
                [Verdict(row["status"]) for row in rows],
                strict=self.strict,
                fetched_any=fetched_any,
                unfinished=any(state.status in UNFINISHED for state in ledger),
                empty=empty,
            )
            if fetched_any:
                failure = self._stage_all_models(timestamp, outcomes, baseline, written, files)
                if failure is None:
                    report = self._report(timestamp, exit_code, rows)
                    failure = self._stage_checked(RUN_REPORT_SCHEMA, RUN_REPORT_FILE, report, files)
                if failure is None:
                    files.commit()
        except FilesNotWritten as exc:
            failure = str(exc)
            logger.debug("Nothing of the run was written", exc_info=True)
        finally:
            files.discard()
        if failure is not None:
            exit_code = EXIT_FAILED
            end.append((logging.ERROR, f"{failure}; nothing in {self.manifest_dir} was changed"))
        elif not fetched_any:
            first = next((row["errors"][0] for row in rows if row["errors"]), "none recorded")
            end.append(
                (
                    logging.ERROR,
                    f"No filter could be fetched, so nothing in {self.manifest_dir} was "
                    f"changed. First error: {first}",
                )
            )
        self.stats.set_value(EXIT_CODE_STAT, exit_code)
        self._end_lines = [*self._summary_lines(ledger, rows), *end]

    def _report(self, timestamp: str, exit_code: int, rows: list[dict[str, Any]]) -> Any:
        return build_report(
            spider=self.run.spider_name or "",
            started=self.started,
            finished=timestamp,
            exit_code=exit_code,
            wrote_manifests=True,
            synthetic=self.synthetic,
            origins=self.origins,
            filters=rows,
            job=self.job,
        )

    def _warn_empty(self, ledger: Ledger, rows: list[dict[str, Any]]) -> int:
        """Name the filters whose listing held no model: written all the same (an empty week
        is legitimate), but never silently. How many there are."""
        empty = [state for row, state in zip(rows, ledger, strict=True) if row["empty"]]
        if empty:
            logger.warning(
                "%d filter(s) hold no model:\n%s",
                len(empty),
                "\n".join(
                    f"  {state.filter.source}:{state.filter.name}: "
                    f"{empty_listing_note(state.excluded)}"
                    for state in empty
                ),
            )
            self.stats.set_value("manifest/filters/empty", len(empty))
        return len(empty)

    def engine_stopped(self) -> None:
        """The run's end, logged after everything Scrapy logs at its close (stats, "Spider
        closed"): the summary and what went wrong is what a person reads last."""
        for level, line in self._end_lines:
            logger.log(level, line)
        self._end_lines = []

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
            short=state.short,
            fresh_models=len(ranked),
            previous_models=previous,
            max_items=state.max_items,
            max_shrink=self.max_shrink,
        )
        errors = list(state.errors)
        if verdict.verdict in WRITTEN:
            document = build_manifest(
                state.filter.name, ranked, timestamp, self.origins[state.filter.source]
            )
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
            "manifest_models": len(ranked) if verdict.verdict in WRITTEN else previous,
            # Short is not "to its end": the page budget stopped it (its warning says so).
            "empty": state.status is FilterStatus.DONE and not state.short and not ranked,
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
        other_origin: list[OtherOrigin] = []
        for state in ledger:
            path = self.manifest_dir / manifest_filename(*state.filter.key)
            try:
                ids = read_manifest_ids(path, self.origins[state.filter.source])
            except OtherOrigin as exc:
                other_origin.append(exc)
                ids = None
            except ManifestError as exc:
                logger.warning("%s; treated as absent (no fallback, no baseline)", exc)
                ids = None
            baseline.manifests[state.filter.key] = ids
        if other_origin:
            # One line, not one per filter: every file of an offline run is of another origin.
            logger.warning(
                "%d previous manifest(s) came from %s, not from this run's origin, so none of "
                "them is a fallback or a baseline: %s%s",
                len(other_origin),
                other_origin[0].found or "an unknown origin",
                ", ".join(exc.path.name for exc in other_origin[:3]),
                " …" if len(other_origin) > 3 else "",
            )
        path = self.manifest_dir / ALL_MODELS_FILE
        try:
            previous = read_previous_site_models(path, self.origins)
        except ManifestError as exc:
            logger.warning("%s; changes.json diffs against none", exc)
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

    def _stage_checked(
        self, schema: str, name: str, document: Any, files: AtomicFiles
    ) -> str | None:
        """Stage ``document`` as ``name`` if it matches ``schema``; else log a bug and return
        why (the run then replaces nothing and exits 1)."""
        try:
            # In pieces: all-models.json of a million models encodes to about 190 MB.
            files.write(
                self.manifest_dir / name, self.validators.encode_checked(schema, document, name)
            )
        except SchemaError as exc:
            logger.error("Not written, the crawler produced an invalid document (a bug): %s", exc)
            self.stats.inc_value("manifest/schema/invalid")
            return f"{name} is not valid (a bug)"
        return None

    def _stage_all_models(
        self,
        timestamp: str,
        outcomes: list[FilterOutcome],
        baseline: Baseline,
        written: Mapping[tuple[str, str], Sequence[Entry]],
        files: AtomicFiles,
    ) -> str | None:
        """Stage all-models.json, what is built from it, and changes.json; why not, if one
        cannot be."""
        # The manifests staged this run are the models in memory: not read back.
        manifests, problems = manifests_on_disk(
            self.manifest_dir, self.run.filter_set, written, origins=self.origins
        )
        if problems:
            # One line, not one per filter: a run of some filters on a fresh checkout is normal.
            logger.warning(
                "all-models.json leaves out %d filter(s) with no usable manifest: %s%s",
                len(problems),
                "; ".join(problems[:3]),
                " …" if len(problems) > 3 else "",
            )
        document = merge_all_models(manifests, timestamp, self.origins)
        failure = self._stage_checked(ALL_MODELS_SCHEMA, ALL_MODELS_FILE, document, files)
        if failure is not None:
            return failure
        self.stats.set_value("manifest/all_models", document["totalModels"])
        results = self.crawler.signals.send_catch_log(
            signal=signals.all_models_written,
            document=document,
            path=self.manifest_dir / ALL_MODELS_FILE,
            files=files,
            # Not logged with a traceback: raised again below, it fails the run in one line.
            dont_log=FilesNotWritten,
        )
        for receiver, result in results:
            if isinstance(result, Failure):
                if result.check(FilesNotWritten):
                    result.raiseException()
                return f"{getattr(receiver, '__qualname__', receiver)} failed: {result.value}"
            if result is False:
                # Its handler has logged why.
                return "a file built from all-models.json could not be made"
        changes = build_changes(
            outcomes=outcomes,
            previous_models=baseline.all_models,
            previous_timestamp=baseline.all_models_timestamp,
            models=document["models"],
            timestamp=timestamp,
        )
        failure = self._stage_checked(CHANGES_SCHEMA, CHANGES_FILE, changes, files)
        if failure is None:
            logger.info(summarize(changes))
        return failure

    def _summary_lines(self, ledger: Ledger, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
        synthetic = " (synthetic: the emulator's made-up models)" if self.synthetic else ""
        lines = [f"Manifest run summary{synthetic}:"]
        for source in ledger.sources():
            states = [state for state in ledger if state.filter.source == source]
            source_rows = [row for row in rows if row["source"] == source]
            starts = [s.started_at for s in states if s.started_at is not None]
            ends = [s.finished_at for s in states if s.finished_at is not None]
            span = max(ends) - min(starts) if starts and ends else 0.0
            written = sum(1 for row in source_rows if row["status"] in WRITTEN)
            short = sum(1 for row in source_rows if row["status"] == Verdict.SHORT)
            lines.append(
                f"  {source}: {written}/{len(states)} filters fetched"
                f"{f' ({short} short)' if short else ''}, "
                f"{sum(s.pages for s in states)} pages, {sum(s.models for s in states)} models, "
                f"{self.stats.get_value(f'manifest/{source}/dropped', 0)} dropped, "
                f"{sum(s.retries for s in states)} retries, {span:.1f} s"
            )
        end = [(logging.INFO, "\n".join(lines))]
        not_written = [row for row in rows if row["status"] not in WRITTEN]
        if not_written:
            end.append((logging.WARNING, not_refreshed_text(not_written)))
        return end


def not_refreshed_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The filters not refreshed, one line per status and cause (a run without network fails
    every filter alike), each naming its filters."""
    causes: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        cause = row["reason"] + (f" ({_without_url(row['errors'][-1])})" if row["errors"] else "")
        causes.setdefault((row["status"], cause), []).append(f"{row['source']}:{row['filter']}")
    lines = [f"{len(rows)} filter(s) NOT refreshed:"]
    for (status, cause), names in causes.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        lines.append(f"  {status.upper()} {shown}: {cause}")
    return "\n".join(lines)


def _without_url(error: str) -> str:
    """An error without the page URL the spider appends (``… at <url>``): the URL differs per
    filter, the cause does not."""
    head, sep, _url = error.rpartition(" at http")
    return head if sep else error
