"""Item pipelines: normalise each model entry, then collect and write the manifests."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import orjson
from itemadapter import ItemAdapter
from scrapy import signals as scrapy_signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.python.failure import Failure

from manifest_crawler import signals
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.ledger import UNFINISHED, FilterState, FilterStatus, Ledger
from manifest_crawler.output.changes import (
    CHANGES_FILE,
    REMOVED,
    Baseline,
    ChangesError,
    FilterOutcome,
    PendingChanges,
    build_changes,
    read_pending_changes,
    summarize,
)
from manifest_crawler.output.manifests import (
    ALL_MODELS_FILE,
    EMULATOR_ORIGIN,
    INDEX_FILE,
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
    find_orphans,
    manifest_filename,
    manifest_source,
    manifests_on_disk,
    merge_all_models,
    read_manifest_ids,
    read_orphan,
    read_previous_site_models,
    remove_stale_temporaries,
    utc_timestamp,
)
from manifest_crawler.output.runreport import (
    EXIT_CAUSE_STAT,
    EXIT_CODE_STAT,
    EXIT_FAILED,
    RUN_REPORT_FILE,
    WRITTEN,
    FilterVerdict,
    Verdict,
    build_report,
    carried_rows,
    empty_listing_note,
    exit_cause,
    exit_status,
    judge_filter,
)
from manifest_crawler.output.schemas import (
    ALL_MODELS_SCHEMA,
    CHANGES_SCHEMA,
    INDEX_SCHEMA,
    MANIFEST_SCHEMA,
    RUN_REPORT_SCHEMA,
    SchemaError,
    Validators,
)
from manifest_crawler.output.siteindex import build_index
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
            # scrapy shell, fetch, parse, check: no manifest run, nothing to write.
            raise NotConfigured("not a manifest run (no RunState)")
        #: The run's state (extensions/runstate.py): its filters, its Ledger, and the models
        #: collected here.
        self.run = run
        self.crawler = crawler
        self.stats = crawler.stats
        self.manifest_dir = Path(settings["MANIFEST_DIR"])
        self.max_shrink = settings.getfloat("MANIFEST_MAX_SHRINK")
        self.strict = settings.getbool("MANIFEST_STRICT")
        self.keep_orphans = settings.getbool("MANIFEST_KEEP_ORPHANS")
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
        # A resumed job (JOBDIR) keeps the baseline its first process read: the files on
        # disk may since hold what that process wrote.
        resumed = self.run.baseline is not None
        baseline = self.run.baseline or self._read_baseline(state.filter.key for state in ledger)
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
                report_rows = self._report_rows(rows)
                outcomes += self._stage_orphan_removals(files)
                failure = self._stage_site_files(
                    timestamp, outcomes, baseline, written, files, report_rows, resumed
                )
                if failure is None:
                    report = self._report(timestamp, exit_code, report_rows)
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
            cause = "the run's files could not be written (see above); nothing was changed"
        else:
            cause = exit_cause(
                rows,
                code=exit_code,
                strict=self.strict,
                fetched_any=fetched_any,
                unfinished=sum(1 for state in ledger if state.status in UNFINISHED),
                empty=[row for row in rows if row["empty"]],
            )
        if failure is None and not fetched_any:
            first = next((row["errors"][0] for row in rows if row["errors"]), "none recorded")
            end.append(
                (
                    logging.ERROR,
                    f"No filter could be fetched, so nothing in {self.manifest_dir} was "
                    f"changed. First error: {first}",
                )
            )
        self.stats.set_value(EXIT_CODE_STAT, exit_code)
        self.stats.set_value(EXIT_CAUSE_STAT, cause)
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
                state.filter.name,
                ranked,
                timestamp,
                self.origins[state.filter.source],
                source=state.filter.source,
                label=state.filter.label,
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
            # Only a written (fresh or short) filter's manifest is replaced.
            current=(
                [entry_id(entry) for entry in ranked]
                if verdict.verdict in WRITTEN
                else previous_ids
            ),
        )
        self.stats.inc_value(f"manifest/filters/{verdict.verdict}")
        return row, outcome

    def _read_baseline(self, keys: Iterable[tuple[str, str]], quiet: bool = False) -> Baseline:
        """The manifests of the filters of ``keys`` and the all-models.json on disk. Each
        previous file is read once: its ids serve both the shrink guard and the diff."""
        baseline = Baseline()
        other_origin: list[OtherOrigin] = []
        for key in keys:
            path = self.manifest_dir / manifest_filename(*key)
            try:
                ids = read_manifest_ids(path, self.origins[key[0]])
            except OtherOrigin as exc:
                other_origin.append(exc)
                ids = None
            except ManifestError as exc:
                if not quiet:
                    logger.warning("%s; treated as absent (no fallback, no baseline)", exc)
                ids = None
            baseline.manifests[key] = ids
        if other_origin and not quiet:
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
            if not quiet:
                logger.warning("%s; changes.json diffs against none", exc)
            previous = None
        if previous is not None:
            baseline.all_models, baseline.all_models_timestamp = previous
        return baseline

    def _report_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """This run's rows and, for the filters of filters.json it did not crawl (a run of one
        source), the previous report's, in filters.json order."""
        mine = {(row["source"], row["filter"]): row for row in rows}
        carried = carried_rows(
            self._previous_report(),
            crawled=mine.keys(),
            wanted={f.key for f in self.run.filter_set},
            origins=self.origins,
        )
        for row in rows:
            row["carried_from"] = None
        merged = [mine.get(f.key) or carried.get(f.key) for f in self.run.filter_set]
        return [row for row in merged if row is not None]

    def _previous_report(self) -> dict[str, Any] | None:
        """The run report on disk, if it is one this run can carry rows of (one line why not)."""
        path = self.manifest_dir / RUN_REPORT_FILE
        try:
            report = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            logger.warning("%s: not read (%s); no row of it is kept", path, exc)
            return None
        try:
            if not isinstance(report, dict) or not isinstance(report.get("filters"), list):
                raise SchemaError(f"{path.name} is not a run report")
            for row in report["filters"]:
                if isinstance(row, dict):
                    # A report written before rows were carried: each row is its run's own.
                    row.setdefault("carried_from", None)
            self.validators.check(RUN_REPORT_SCHEMA, report, path.name)
        except SchemaError as exc:
            logger.warning("%s; no row of it is kept", exc)
            return None
        return report

    def _stage_orphan_removals(self, files: AtomicFiles) -> list[FilterOutcome]:
        """Remove, with the run's commit, the manifests whose filter is gone from filters.json
        (unless MANIFEST_KEEP_ORPHANS); their changes.json entries (every model removed)."""
        orphans = find_orphans(self.manifest_dir, self.run.filter_set)
        if not orphans:
            return []
        names = ", ".join(path.name for path in orphans)
        if self.keep_orphans:
            logger.warning(
                "%d manifest(s) of filters no longer in %s kept (MANIFEST_KEEP_ORPHANS): %s",
                len(orphans),
                self.run.filter_set.path,
                names,
            )
            return []
        outcomes = []
        for path in orphans:
            source = manifest_source(path.name)
            assert source is not None  # find_orphans found its name as a manifest's
            try:
                name, ids = read_orphan(path, self.origins[source])
            except ManifestError as exc:
                logger.warning("%s; named as a manifest but left in place", exc)
                continue
            files.remove(path)
            outcomes.append(FilterOutcome(source, name, path.name, REMOVED, ids, None))
        if not outcomes:
            return []
        logger.warning(
            "Removing %d manifest(s) of filters no longer in %s: %s",
            len(outcomes),
            self.run.filter_set.path,
            ", ".join(outcome.file for outcome in outcomes),
        )
        self.stats.set_value("manifest/orphans_removed", len(outcomes))
        return outcomes

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

    def _stage_site_files(
        self,
        timestamp: str,
        outcomes: list[FilterOutcome],
        baseline: Baseline,
        written: Mapping[tuple[str, str], Sequence[Entry]],
        files: AtomicFiles,
        report_rows: Sequence[Mapping[str, Any]],
        resumed: bool,
    ) -> str | None:
        """Stage all-models.json, what is built from it, changes.json and index.json; why not,
        if one cannot be."""
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
        changes = self._changes(outcomes, baseline, resumed, document["models"], timestamp)
        failure = self._stage_checked(CHANGES_SCHEMA, CHANGES_FILE, changes, files)
        if failure is not None:
            return failure
        logger.info(summarize(changes))
        index = build_index(
            filters=self.run.filter_set,
            manifests=manifests,
            statuses={(row["source"], row["filter"]): row["status"] for row in report_rows},
            origins=self.origins,
            timestamp=timestamp,
        )
        return self._stage_checked(INDEX_SCHEMA, INDEX_FILE, index, files)

    def _changes(
        self,
        outcomes: list[FilterOutcome],
        baseline: Baseline,
        resumed: bool,
        models: Sequence[Mapping[str, Any]],
        timestamp: str,
    ) -> dict[str, Any]:
        """changes.json: this run's changes, added to those of a changes.json no site has
        consumed yet (PendingChanges), if there is one that fits the files on disk."""
        pending = self._pending_changes()
        if pending is not None:
            # What is on disk before this run's commit: for a resumed job, no longer the
            # baseline its first process read.
            on_disk = (
                self._read_baseline([(o.source, o.filter) for o in outcomes], quiet=True)
                if resumed
                else baseline
            )
            # An earlier process of this resumed job wrote it: the job is still one run.
            own = resumed and pending.timestamp != baseline.all_models_timestamp
            try:
                return self._accumulated_changes(
                    pending, outcomes, on_disk, models, timestamp, runs=pending.runs + (not own)
                )
            except ChangesError as exc:
                logger.warning(
                    "%s was not consumed, but does not fit the files beside it (%s): this "
                    "run's changes.json starts over from them",
                    CHANGES_FILE,
                    exc,
                )
        return build_changes(
            outcomes=outcomes,
            previous_models=baseline.all_models,
            previous_timestamp=baseline.all_models_timestamp,
            models=models,
            timestamp=timestamp,
        )

    def _pending_changes(self) -> PendingChanges | None:
        try:
            return read_pending_changes(self.manifest_dir / CHANGES_FILE)
        except ChangesError as exc:
            logger.warning("%s; this run's changes.json starts over", exc)
            return None

    def _accumulated_changes(
        self,
        pending: PendingChanges,
        outcomes: list[FilterOutcome],
        on_disk: Baseline,
        models: Sequence[Mapping[str, Any]],
        timestamp: str,
        runs: int,
    ) -> dict[str, Any]:
        """The changes from the consumed state to this run's files (``runs`` runs in all).
        ChangesError when ``pending`` is not the changes of the files on disk."""
        if on_disk.all_models is None or pending.timestamp != on_disk.all_models_timestamp:
            raise ChangesError(
                f"it was written at {pending.timestamp}, all-models.json at "
                f"{on_disk.all_models_timestamp or 'no time this run can use'}"
            )
        measured: list[FilterOutcome] = []
        for outcome in outcomes:
            key = (outcome.source, outcome.filter)
            before = outcome.previous if outcome.status == REMOVED else on_disk.manifests.get(key)
            measured.append(
                dataclasses.replace(outcome, previous=pending.consumed_ranking(key, before))
            )
        seen = {(outcome.source, outcome.filter) for outcome in outcomes}
        filters = [f.key for f in self.run.filter_set]
        for key, entry in pending.filters.items():
            if key in seen:
                continue
            # A filter this run did not crawl (or one removed by an earlier run): as on disk.
            current = self._manifest_ids(key) if key in filters else None
            measured.append(
                FilterOutcome(
                    *key, entry.file, entry.status, pending.consumed_ranking(key, current), current
                )
            )
        # In filters.json order, then the manifests removed (stable: in the order found).
        order = {key: position for position, key in enumerate(filters)}
        measured.sort(key=lambda outcome: order.get((outcome.source, outcome.filter), len(order)))
        return build_changes(
            outcomes=measured,
            previous_models=pending.consumed_site_models(on_disk.all_models),
            previous_timestamp=pending.previous_timestamp,
            models=models,
            timestamp=timestamp,
            runs=runs,
        )

    def _manifest_ids(self, key: tuple[str, str]) -> list[str] | None:
        try:
            return read_manifest_ids(
                self.manifest_dir / manifest_filename(*key), self.origins[key[0]]
            )
        except ManifestError:
            return None

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
                f"{ledger.pages.get(source, 0)} pages, {sum(s.models for s in states)} models, "
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
