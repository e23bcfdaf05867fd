"""The politeness lower bound of a crawl, per API and overall.

Per API, no crawl that respects our politeness settings can beat the larger of

- ``ceil(requests / allowed concurrency) x median latency``: every request costs one latency
  and at most ``allowed concurrency`` of them are in flight at once;
- ``longest cursor chain x median latency``: a filter's pages are sequential by nature (each
  page names the next).

The APIs are crawled side by side (each has its own download slot), so the crawl's bound is
the larger of the per-API bounds. Startup, parsing and writing are not in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiBound:
    api: str
    requests: int
    concurrency: int
    longest_chain: int
    latency: float

    @property
    def by_concurrency(self) -> float:
        return math.ceil(self.requests / self.concurrency) * self.latency

    @property
    def by_chain(self) -> float:
        return self.longest_chain * self.latency

    @property
    def seconds(self) -> float:
        return max(self.by_concurrency, self.by_chain)

    @property
    def binds(self) -> str:
        """What sets the bound: the request count or the longest chain."""
        return "requests" if self.by_concurrency >= self.by_chain else "chain"

    def explain(self) -> str:
        return (
            f"{self.api}: ceil({self.requests} requests / {self.concurrency} concurrent) "
            f"x {self.latency * 1000:.0f} ms = {self.by_concurrency:.2f} s; longest chain "
            f"{self.longest_chain} pages x {self.latency * 1000:.0f} ms = {self.by_chain:.2f} s"
            f" → {self.seconds:.2f} s, set by the {self.binds}"
        )


def crawl_bound(bounds: Mapping[str, ApiBound]) -> float:
    return max((bound.seconds for bound in bounds.values()), default=0.0)


def allowed_concurrency(settings: Mapping[str, Any], api: str) -> int:
    """How many requests our politeness settings let be in flight at once to one API.

    The API's download slot allows ``DOWNLOAD_SLOTS[api]["concurrency"]`` (else
    ``CONCURRENT_REQUESTS_PER_DOMAIN``), never more than ``CONCURRENT_REQUESTS``; AutoThrottle,
    when on, aims at ``AUTOTHROTTLE_TARGET_CONCURRENCY`` on average, so it caps it too.
    """
    slot = (settings.get("DOWNLOAD_SLOTS") or {}).get(api, {})
    concurrency = int(slot.get("concurrency", settings.get("CONCURRENT_REQUESTS_PER_DOMAIN", 8)))
    total = int(settings.get("CONCURRENT_REQUESTS", 16))
    if total > 0:
        concurrency = min(concurrency, total)
    if settings.get("AUTOTHROTTLE_ENABLED"):
        target = float(settings.get("AUTOTHROTTLE_TARGET_CONCURRENCY", 1.0))
        concurrency = min(concurrency, max(1, math.floor(target)))
    return max(1, concurrency)


def longest_chains(report: Mapping[str, Any]) -> dict[str, int]:
    """The most pages any one filter of each source needed, from a run report."""
    chains: dict[str, int] = {}
    for row in report.get("filters", ()):
        source = row["source"]
        chains[source] = max(chains.get(source, 0), int(row.get("pages") or 0))
    return chains
