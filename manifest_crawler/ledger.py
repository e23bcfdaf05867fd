"""The one owner of per-filter run state.

The spider writes it as pages arrive; the run summary, the progress line, the JSON-RPC
``status`` method and the run report only read it. Pure: no Scrapy.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from manifest_crawler.filters import Filter


class FilterStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class FilterState:
    filter: Filter
    max_items: int | None
    status: FilterStatus = FilterStatus.PENDING
    pages: int = 0
    #: Site ids already taken, to drop duplicates inside the filter (cursor bugs repeat items).
    seen_ids: set[str] = field(default_factory=set)
    cursors: set[str] = field(default_factory=set)
    #: Items the API returned that the filter's own rules (e.g. nsfw_levels) left out.
    excluded: int = 0
    duplicates: int = 0
    #: Consecutive pages that came back empty while still carrying a cursor.
    empty_pages: int = 0
    #: Items that do not satisfy the filter's parameters although the API returned them.
    mismatched: int = 0
    first_mismatch: str = ""
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    end_reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def models(self) -> int:
        return len(self.seen_ids)

    @property
    def remaining(self) -> int | None:
        """How many more distinct models the filter wants; None when unbounded."""
        return None if self.max_items is None else max(self.max_items - self.models, 0)

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

    def as_dict(self) -> dict[str, Any]:
        duration = self.duration
        return {
            "source": self.filter.source,
            "filter": self.filter.name,
            "status": str(self.status),
            "pages": self.pages,
            "models": self.models,
            "max_items": self.max_items,
            "retries": self.retries,
            "duplicates": self.duplicates,
            "excluded": self.excluded,
            "mismatched": self.mismatched,
            "errors": list(self.errors),
            "end_reason": self.end_reason,
            "duration": None if duration is None else round(duration, 3),
        }


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
