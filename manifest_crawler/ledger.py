"""The one owner of per-filter run state.

The spider writes it as pages arrive; the run summary, the progress line, the JSON-RPC
``status`` method and the run report only read it. Pure: no Scrapy.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from manifest_crawler.filters import Filter


class FilterStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


#: A filter in one of these when the crawl closes did not finish: the run was interrupted.
UNFINISHED = frozenset({FilterStatus.PENDING, FilterStatus.RUNNING})
#: The end_reason of a filter DONE because it read its page budget (filters.page_budget()):
#: its models are written and reported short.
PAGE_BUDGET_REASON = "page_budget"


@dataclass(slots=True)
class FilterState:
    filter: Filter
    max_items: int | None
    status: FilterStatus = FilterStatus.PENDING
    pages: int = 0
    #: How many pages it may read (filters.page_budget(), set when the crawl starts).
    max_pages: int | None = None
    #: Items the API returned to it, kept or not: how much it read for its models.
    items_read: int = 0
    #: Site ids already taken, to drop duplicates inside the filter (cursor bugs repeat items).
    #: Emptied when the filter finishes (no page is read after), with ``cursors``: at a million
    #: models the sets take over 100 MB that writing the manifests then needs.
    seen_ids: set[str] = field(default_factory=set)
    cursors: set[str] = field(default_factory=set)
    #: How many models the filter ended with, once ``seen_ids`` is gone.
    final_models: int | None = None
    #: Items the API returned that the filter's content rule left out.
    excluded: int = 0
    duplicates: int = 0
    #: Consecutive pages that came back empty while still carrying a cursor.
    empty_pages: int = 0
    #: Items that do not satisfy the filter's parameters although the API returned them.
    mismatched: int = 0
    first_mismatch: str = ""
    #: Items dropped, by reason (an invalid id, no name, …): none of them is in the manifest.
    dropped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    end_reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def models(self) -> int:
        return len(self.seen_ids) if self.final_models is None else self.final_models

    @property
    def remaining(self) -> int | None:
        """How many more distinct models the filter wants; None when unbounded."""
        return None if self.max_items is None else max(self.max_items - self.models, 0)

    @property
    def kept_share(self) -> float | None:
        """The share of the items read that the filter kept, or None before any."""
        return None if not self.items_read else round(self.models / self.items_read, 4)

    @property
    def short(self) -> bool:
        """Stopped by its page budget before it had max_items or reached the listing's end."""
        return self.status is FilterStatus.DONE and self.end_reason == PAGE_BUDGET_REASON

    @property
    def finished(self) -> bool:
        return self.status in (FilterStatus.DONE, FilterStatus.FAILED)

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.monotonic()) - self.started_at

    def start(self) -> None:
        if self.status is FilterStatus.PENDING:
            self.status = FilterStatus.RUNNING
            self.started_at = time.monotonic()

    def finish(self, status: FilterStatus, reason: str) -> None:
        self.status = status
        self.end_reason = reason
        self.finished_at = time.monotonic()
        if self.final_models is None:
            self.final_models = len(self.seen_ids)
            self.seen_ids = set()
            self.cursors = set()

    def as_dict(self) -> dict[str, Any]:
        duration = self.duration
        return {
            "source": self.filter.source,
            "filter": self.filter.name,
            "status": str(self.status),
            "pages": self.pages,
            "max_pages": self.max_pages,
            "items_read": self.items_read,
            "kept_share": self.kept_share,
            "models": self.models,
            "max_items": self.max_items,
            "retries": self.retries,
            "duplicates": self.duplicates,
            "excluded": self.excluded,
            "mismatched": self.mismatched,
            "dropped": dict(self.dropped),
            "errors": list(self.errors),
            "end_reason": self.end_reason,
            "duration": None if duration is None else round(duration, 3),
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything a later process needs to go on with this filter (JSON-ready).

        Monotonic times mean nothing in another process, so the time spent is kept instead.
        """
        return {
            "status": str(self.status),
            "pages": self.pages,
            "items_read": self.items_read,
            "models": self.models,
            "seen_ids": sorted(self.seen_ids),
            "cursors": sorted(self.cursors),
            "excluded": self.excluded,
            "duplicates": self.duplicates,
            "empty_pages": self.empty_pages,
            "mismatched": self.mismatched,
            "first_mismatch": self.first_mismatch,
            "dropped": dict(self.dropped),
            "retries": self.retries,
            "errors": list(self.errors),
            "end_reason": self.end_reason,
            "elapsed": self.duration,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Take over a snapshot; time already spent counts towards ``duration``."""
        self.status = FilterStatus(snapshot["status"])
        self.pages = snapshot["pages"]
        self.items_read = snapshot["items_read"]
        self.seen_ids = set(snapshot["seen_ids"])
        self.cursors = set(snapshot["cursors"])
        self.final_models = snapshot["models"] if self.finished else None
        self.excluded = snapshot["excluded"]
        self.duplicates = snapshot["duplicates"]
        self.empty_pages = snapshot["empty_pages"]
        self.mismatched = snapshot["mismatched"]
        self.first_mismatch = snapshot["first_mismatch"]
        self.dropped = dict(snapshot["dropped"])
        self.retries = snapshot["retries"]
        self.errors = list(snapshot["errors"])
        self.end_reason = snapshot["end_reason"]
        elapsed = snapshot["elapsed"]
        now = time.monotonic()
        self.started_at = None if elapsed is None else now - elapsed
        self.finished_at = now if self.finished and elapsed is not None else None


class Ledger:
    """Every selected filter's state, in crawl order."""

    def __init__(self, filters: Iterable[tuple[Filter, int | None]]) -> None:
        self._states: dict[tuple[str, str], FilterState] = {
            f.key: FilterState(filter=f, max_items=max_items) for f, max_items in filters
        }
        self.started_at = time.monotonic()

    def __iter__(self) -> Iterator[FilterState]:
        return iter(self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def __getitem__(self, key: tuple[str, str]) -> FilterState:
        return self._states[key]

    def sources(self) -> list[str]:
        return list(dict.fromkeys(state.filter.source for state in self))

    def snapshot(self) -> list[dict[str, Any]]:
        """Every filter's snapshot, in crawl order, keyed by source and name."""
        return [
            {"source": state.filter.source, "filter": state.filter.name, **state.snapshot()}
            for state in self
        ]

    def restore(self, snapshot: Iterable[Mapping[str, Any]]) -> None:
        """Take over the snapshots of filters this ledger has; others are ignored."""
        for entry in snapshot:
            state = self._states.get((entry["source"], entry["filter"]))
            if state is not None:
                state.restore(entry)

    def counts(self) -> dict[str, int]:
        counts = {str(status): 0 for status in FilterStatus}
        for state in self:
            counts[str(state.status)] += 1
        return counts

    def progress(self) -> dict[str, Any]:
        """Overall progress and a naive ETA from the pace of the filters finished so far."""
        total = len(self)
        finished = sum(1 for state in self if state.finished)
        elapsed = time.monotonic() - self.started_at
        eta = None
        if 0 < finished < total:
            eta = round(elapsed / finished * (total - finished), 1)
        elif finished == total:
            eta = 0.0
        return {
            "filters_total": total,
            "filters_finished": finished,
            **self.counts(),
            "pages": sum(state.pages for state in self),
            "models": sum(state.models for state in self),
            "errors": sum(len(state.errors) for state in self),
            "elapsed": round(elapsed, 1),
            "eta": eta,
        }
