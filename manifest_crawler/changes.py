"""Pure run diff: what a run changed against the manifests and all-models.json it replaced.

Per filter: the models added, removed and moved (in both, at another rank); for the site as a
whole: the models new to all-models.json and the ones gone from every manifest. Ranks are
1-based positions in a manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CHANGES_FILE = "changes.json"

#: How many changed filters the log summary names before "and N more".
_SUMMARY_FILTERS = 5


@dataclass(frozen=True, slots=True)
class RankingDiff:
    """JSON-ready: built once per changed model, as changes.json holds it (a catalogue-wide
    shift makes every model of a deep filter "moved")."""

    #: {"id", "rank"} at the new rank
    added: list[dict[str, Any]] = field(default_factory=list)
    #: {"id", "rank"} at the old rank
    removed: list[dict[str, Any]] = field(default_factory=list)
    #: {"id", "from", "to"}
    moved: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.moved)


def diff_ranking(previous: Sequence[str] | None, current: Sequence[str]) -> RankingDiff:
    """Added, removed and moved ids between two rankings (each id at most once per ranking)."""
    if not previous:
        return RankingDiff(added=[{"id": i, "rank": r} for r, i in enumerate(current, 1)])
    if previous == current:
        return RankingDiff()
    before = {model_id: rank for rank, model_id in enumerate(previous, 1)}
    added: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    for rank, model_id in enumerate(current, 1):
        old = before.pop(model_id, None)
        if old is None:
            added.append({"id": model_id, "rank": rank})
        elif old != rank:
            moved.append({"id": model_id, "from": old, "to": rank})
    # What is left of the previous ranking is what the new one lacks (dicts keep rank order).
    removed = [{"id": model_id, "rank": rank} for model_id, rank in before.items()]
    return RankingDiff(added=added, removed=removed, moved=moved)


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    """One filter of the run: its verdict and its ids before and after (None: no manifest)."""

    source: str
    filter: str
    file: str
    status: str
    previous: Sequence[str] | None
    current: Sequence[str] | None


def filter_changes(outcome: FilterOutcome) -> dict[str, Any]:
    # Only a rewritten (fresh) manifest can differ from the one it replaced.
    diff = (
        diff_ranking(outcome.previous, outcome.current or ())
        if outcome.status == "fresh"
        else RankingDiff()
    )
    current = outcome.current if outcome.status == "fresh" else outcome.previous
    return {
        "source": outcome.source,
        "filter": outcome.filter,
        "file": outcome.file,
        "status": outcome.status,
        "previousModels": None if outcome.previous is None else len(outcome.previous),
        "models": None if current is None else len(current),
        "added": diff.added,
        "removed": diff.removed,
        "moved": diff.moved,
    }


def build_changes(
    *,
    outcomes: Iterable[FilterOutcome],
    previous_models: Sequence[Mapping[str, Any]] | None,
    previous_timestamp: str | None,
    models: Sequence[Mapping[str, Any]],
    timestamp: str,
) -> dict[str, Any]:
    """The changes document; ``previous_models``/``models`` are all-models.json's models."""
    filters = [filter_changes(outcome) for outcome in outcomes]
    previous_models = previous_models or ()
    before = {model["id"] for model in previous_models}
    now = {model["id"] for model in models}
    new = [
        {"id": m["id"], "slug": m["slug"], "source": m["source"]}
        for m in models
        if m["id"] not in before
    ]
    gone = [
        {"id": m["id"], "slug": m["slug"], "source": m["source"]}
        for m in previous_models
        if m["id"] not in now
    ]
    return {
        "timestamp": timestamp,
        "previousTimestamp": previous_timestamp,
        "totals": {
            "filtersChanged": sum(1 for f in filters if f["added"] or f["removed"] or f["moved"]),
            "added": sum(len(f["added"]) for f in filters),
            "removed": sum(len(f["removed"]) for f in filters),
            "moved": sum(len(f["moved"]) for f in filters),
            "new": len(new),
            "gone": len(gone),
        },
        "filters": filters,
        "new": new,
        "gone": gone,
    }


def summarize(changes: Mapping[str, Any]) -> str:
    """A few lines for the log: totals, then the filters that changed most."""
    totals = changes["totals"]
    lines = [
        f"Changes since the last build: {totals['filtersChanged']} filter(s) changed, "
        f"+{totals['added']} added, -{totals['removed']} removed, {totals['moved']} moved; "
        f"all-models.json: {totals['new']} new, {totals['gone']} gone"
    ]
    changed = [f for f in changes["filters"] if f["added"] or f["removed"] or f["moved"]]
    changed.sort(key=lambda f: -(len(f["added"]) + len(f["removed"]) + len(f["moved"])))
    for entry in changed[:_SUMMARY_FILTERS]:
        lines.append(
            f"  {entry['source']}:{entry['filter']}: +{len(entry['added'])} "
            f"-{len(entry['removed'])} ~{len(entry['moved'])}"
        )
    if len(changed) > _SUMMARY_FILTERS:
        lines.append(f"  … and {len(changed) - _SUMMARY_FILTERS} more (see {CHANGES_FILE})")
    return "\n".join(lines)


@dataclass(slots=True)
class Baseline:
    """What the site had before the run (or, for a resumed job, before its first process):
    each filter's manifest ids (None: no manifest) and all-models.json's models and timestamp.
    The shrink guard and the diff both compare against it."""

    manifests: dict[tuple[str, str], list[str] | None] = field(default_factory=dict)
    all_models: list[dict[str, Any]] | None = None
    all_models_timestamp: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "manifests": [
                {"source": source, "filter": name, "ids": ids}
                for (source, name), ids in self.manifests.items()
            ],
            "all_models": self.all_models,
            "all_models_timestamp": self.all_models_timestamp,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(
            manifests={(m["source"], m["filter"]): m["ids"] for m in data["manifests"]},
            all_models=data["all_models"],
            all_models_timestamp=data["all_models_timestamp"],
        )
