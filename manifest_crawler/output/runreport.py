"""Pure judgement of a run: which filters are fresh, short, stale or failed, and the exit
status.

- fresh: fetched completely this run; its manifest was rewritten.
- short: stopped by its page budget before it had max_items; its manifest was rewritten with
  the models it kept (an honest result: exit 0, except under MANIFEST_STRICT).
- stale: not fetched (failed, unfinished, or suspiciously shrunk), but its previous manifest
  is still on disk and stays as it was.
- failed: not fetched and nothing to fall back on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

RUN_REPORT_FILE = "run-report.json"
#: Stats key where the manifest writer leaves the exit status the run deserves.
EXIT_CODE_STAT = "manifest/exit_code"
#: Stats key where it leaves why, in words (the run's last log line says it).
EXIT_CAUSE_STAT = "manifest/exit_cause"

#: Stats key counting the errors raised while the crawl closed (a pipeline's, an extension's
#: or a signal handler's): extensions/closefailures.py.
CLOSE_FAILURES_STAT = "manifest/close_failures"

EXIT_OK = 0
EXIT_FAILED = 1


class Verdict(StrEnum):
    FRESH = "fresh"
    SHORT = "short"
    STALE = "stale"
    FAILED = "failed"


#: The verdicts whose manifest this run rewrote.
WRITTEN = frozenset({Verdict.FRESH, Verdict.SHORT})


@dataclass(frozen=True, slots=True)
class FilterVerdict:
    verdict: Verdict
    reason: str


def judge_filter(
    *,
    crawled: bool,
    crawl_reason: str,
    short: bool = False,
    fresh_models: int,
    previous_models: int | None,
    max_items: int | None,
    max_shrink: float,
) -> FilterVerdict:
    """Decide whether a filter's fresh result may replace its previous manifest.

    A fresh result that lost more than ``max_shrink`` of the previous manifest's models is
    suspect (an API glitch answering 3 models must not wipe 100 from the site). The previous
    count is first capped at ``max_items`` so that lowering a filter's max_items is no shrink.
    A ``short`` result (stopped by its page budget) is judged alike, and is SHORT, not FRESH,
    when written.
    """
    fallback = Verdict.FAILED if previous_models is None else Verdict.STALE
    if not crawled:
        return FilterVerdict(fallback, crawl_reason)
    if previous_models:
        expected = previous_models if max_items is None else min(previous_models, max_items)
        if fresh_models < expected * (1.0 - max_shrink):
            return FilterVerdict(
                fallback,
                f"shrank from {previous_models} to {fresh_models} models "
                f"(more than MANIFEST_MAX_SHRINK={max_shrink:g}); previous manifest kept",
            )
    return FilterVerdict(Verdict.SHORT if short else Verdict.FRESH, crawl_reason)


def exit_status(
    verdicts: Sequence[Verdict],
    *,
    strict: bool,
    fetched_any: bool,
    unfinished: bool = False,
    empty: int = 0,
) -> int:
    """Non-zero when a filter has nothing on disk, when nothing was fetched at all, when the
    crawl stopped before every filter finished (a signal, the JSON-RPC stop, the run's
    deadline), or, under MANIFEST_STRICT, when any filter is not fresh (short included) or
    ``empty`` filters listed no model."""
    if not fetched_any or unfinished:
        return EXIT_FAILED
    if Verdict.FAILED in verdicts:
        return EXIT_FAILED
    if strict and (empty or any(v is not Verdict.FRESH for v in verdicts)):
        return EXIT_FAILED
    return EXIT_OK


def _names(rows: Sequence[Mapping[str, Any]], shown: int = 5) -> str:
    names = [f"{row['source']}:{row['filter']}" for row in rows]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def exit_cause(
    rows: Sequence[Mapping[str, Any]],
    *,
    code: int,
    strict: bool,
    fetched_any: bool,
    unfinished: int = 0,
    empty: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Why a run whose filters got these report ``rows`` exits with ``code`` (exit_status's
    verdict), in words, naming the filters concerned."""
    by_status: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    fresh, short, stale, failed = (by_status.get(str(v), []) for v in Verdict)
    if code == EXIT_OK:
        cut = f", {len(short)} short (stopped by its page budget: {_names(short)})" if short else ""
        kept = f", {len(stale)} stale (previous manifest kept: {_names(stale)})" if stale else ""
        return f"every filter has its manifest: {len(fresh)} fresh{cut}{kept}"
    if not fetched_any:
        return "no filter could be fetched; nothing was changed"
    if unfinished:
        return (
            f"the crawl stopped before {unfinished} filter(s) finished; the "
            f"{len(fresh) + len(short)} that finished were written"
        )
    if failed:
        return f"{len(failed)} filter(s) failed with no manifest to keep: {_names(failed)}"
    causes = []
    if short:
        causes.append(f"{len(short)} filter(s) stopped by their page budget ({_names(short)})")
    if stale:
        causes.append(f"{len(stale)} filter(s) not refreshed ({_names(stale)})")
    if empty:
        causes.append(f"{len(empty)} filter(s) hold no model ({_names(empty)})")
    return "MANIFEST_STRICT and " + "; ".join(causes) if strict and causes else "see above"


def empty_listing_note(excluded: int) -> str:
    """Why a filter fetched to its end holds no model, for the warning naming it."""
    if excluded:
        return f"its content rule kept none of the {excluded} models listed"
    # baseModels, tag and username are free text upstream: a retired or misspelled value
    # answers an empty list, not an error (api-notes).
    return "the API listed no model (a retired or misspelled value?)"


def run_exit_cause(stats: Mapping[str, Any]) -> str:
    """Why the process exits with run_exit_status(stats), in words."""
    failures = stats.get(CLOSE_FAILURES_STAT)
    if failures:
        return f"{failures} error(s) were raised while the crawl closed (logged above)"
    if stats.get(EXIT_CODE_STAT) is None:
        return (
            "the crawl ended before its files were written (stopped, or the writer failed): "
            "nothing was changed"
        )
    return str(stats.get(EXIT_CAUSE_STAT) or "see above")


def run_exit_status(stats: Mapping[str, Any]) -> int:
    """The process's exit status from the crawl's stats: the writer's verdict, or 1 when the
    writer never gave one (its close raised, or the process was stopped before it ran) or when
    anything else failed while the crawl closed."""
    recorded = stats.get(EXIT_CODE_STAT)
    if recorded is None or stats.get(CLOSE_FAILURES_STAT):
        return EXIT_FAILED
    return int(recorded)


def build_report(
    *,
    spider: str,
    started: str,
    finished: str,
    exit_code: int,
    wrote_manifests: bool,
    synthetic: bool,
    origins: Mapping[str, str],
    filters: Iterable[dict[str, Any]],
    job: str | None = None,
) -> dict[str, Any]:
    filters = list(filters)
    totals = {str(v): 0 for v in Verdict}
    for entry in filters:
        totals[entry["status"]] += 1
    return {
        "spider": spider,
        "job": job,
        "started": started,
        "finished": finished,
        "exit_code": exit_code,
        "wrote_manifests": wrote_manifests,
        "synthetic": synthetic,
        "origins": dict(origins),
        "totals": totals,
        "filters": filters,
    }


#: What a carried row's ``carried_from`` says of the run it comes from.
_RUN_FIELDS = ("spider", "job", "started", "finished", "exit_code")


def carried_rows(
    previous: Mapping[str, Any] | None,
    *,
    crawled: Collection[tuple[str, str]],
    wanted: Collection[tuple[str, str]],
    origins: Mapping[str, str],
) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of the ``previous`` report to keep beside this run's: those of the filters of
    filters.json (``wanted``) this run did not crawl, when their source had this run's origin
    then (a row about the emulator's models says nothing of a live site). Each says in
    ``carried_from`` which run it comes from (a row carried twice keeps its first run)."""
    if previous is None:
        return {}
    run = {key: previous[key] for key in _RUN_FIELDS}
    carried: dict[tuple[str, str], dict[str, Any]] = {}
    for row in previous["filters"]:
        key = (row["source"], row["filter"])
        if key in crawled or key not in wanted:
            continue
        if previous["origins"].get(row["source"]) != origins.get(row["source"]):
            continue
        carried[key] = {**row, "carried_from": row.get("carried_from") or run}
    return carried
