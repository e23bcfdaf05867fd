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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

RUN_REPORT_FILE = "run-report.json"
#: Stats key where the manifest writer leaves the exit status the run deserves.
EXIT_CODE_STAT = "manifest/exit_code"

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


def empty_listing_note(excluded: int) -> str:
    """Why a filter fetched to its end holds no model, for the warning naming it."""
    if excluded:
        return f"its content rule kept none of the {excluded} models listed"
    # baseModels, tag and username are free text upstream: a retired or misspelled value
    # answers an empty list, not an error (api-notes).
    return "the API listed no model (a retired or misspelled value?)"


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
