"""Pure run diff: what a run changed against the manifests and all-models.json it replaced.

Per filter: the models added, removed and moved (in both, at another rank); for the site as a
whole: the models new to all-models.json and the ones gone from every manifest. Ranks are
1-based positions in a manifest.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from manifest_crawler.output.jsonstream import StreamedArray
from manifest_crawler.output.manifests import PreviousModel, model_ids
from manifest_crawler.output.runreport import WRITTEN

CHANGES_FILE = "changes.json"

#: How many changed filters the log summary names before "and N more".
_SUMMARY_FILTERS = 5

_EMPTY: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class RankingDiff:
    """Added, removed and moved ids between two rankings, kept as ranks (8 bytes a change):
    a catalogue-wide shift makes every model of a deep filter "moved", and a first build lists
    every model as added, so the JSON entries are only made a chunk at a time, as changes.json
    is written (``added``, ``removed`` and ``moved`` are StreamedArrays of them)."""

    previous: Sequence[str] = ()
    current: Sequence[str] = ()
    #: 1-based ranks in ``current`` of the ids ``previous`` lacks
    added_ranks: Sequence[int] = _EMPTY
    #: 1-based ranks in ``previous`` of the ids ``current`` lacks
    removed_ranks: Sequence[int] = _EMPTY
    #: ranks in ``current``, and in ``previous``, of the ids in both at another rank
    moved_to: Sequence[int] = _EMPTY
    moved_from: Sequence[int] = _EMPTY

    @property
    def changed(self) -> bool:
        return bool(self.added_ranks or self.removed_ranks or self.moved_to)

    @property
    def added(self) -> StreamedArray:
        """``{"id", "rank"}`` at the new rank."""
        return _ranked(self.current, self.added_ranks)

    @property
    def removed(self) -> StreamedArray:
        """``{"id", "rank"}`` at the old rank."""
        return _ranked(self.previous, self.removed_ranks)

    @property
    def moved(self) -> StreamedArray:
        """``{"id", "from", "to"}``."""
        current, to, old = self.current, self.moved_to, self.moved_from
        return StreamedArray(
            range(len(to)),
            make=lambda i: {"id": current[to[i] - 1], "from": old[i], "to": to[i]},
        )


def _ranked(ids: Sequence[str], ranks: Sequence[int]) -> StreamedArray:
    return StreamedArray(ranks, make=lambda rank: {"id": ids[rank - 1], "rank": rank})


def diff_ranking(previous: Sequence[str] | None, current: Sequence[str]) -> RankingDiff:
    """Added, removed and moved ids between two rankings (each id at most once per ranking)."""
    if not previous:
        return RankingDiff((), current, added_ranks=range(1, len(current) + 1))
    if previous == current:
        return RankingDiff(previous, current)
    before = {model_id: rank for rank, model_id in enumerate(previous, 1)}
    added, moved_to, moved_from = array("q"), array("q"), array("q")
    for rank, model_id in enumerate(current, 1):
        old = before.pop(model_id, None)
        if old is None:
            added.append(rank)
        elif old != rank:
            moved_to.append(rank)
            moved_from.append(old)
    # What is left of the previous ranking is what the new one lacks (dicts keep rank order).
    return RankingDiff(
        previous,
        current,
        added_ranks=added,
        removed_ranks=array("q", before.values()),
        moved_to=moved_to,
        moved_from=moved_from,
    )


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
    # Only a rewritten (fresh or short) manifest can differ from the one it replaced.
    rewritten = outcome.status in WRITTEN
    diff = diff_ranking(outcome.previous, outcome.current or ()) if rewritten else RankingDiff()
    current = outcome.current if rewritten else outcome.previous
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


def _site_entries(
    models: Sequence[Mapping[str, Any]], leave_out: Callable[[], set[str]]
) -> StreamedArray:
    """``{"id", "slug", "source"}`` of the models whose id is not in ``leave_out()`` (a set
    built only while the positions are found)."""
    if not models:
        return StreamedArray([])
    absent = leave_out()
    positions: Sequence[int] = range(len(models))
    if absent:
        ids = model_ids(models)
        positions = array("q", (i for i, model_id in enumerate(ids) if model_id not in absent))
    del absent

    def entry(position: int) -> dict[str, Any]:
        model = models[position]
        return {"id": model["id"], "slug": model["slug"], "source": model["source"]}

    return StreamedArray(positions, make=entry)


def build_changes(
    *,
    outcomes: Iterable[FilterOutcome],
    previous_models: Sequence[Mapping[str, Any]] | None,
    previous_timestamp: str | None,
    models: Sequence[Mapping[str, Any]],
    timestamp: str,
) -> dict[str, Any]:
    """The changes document; ``previous_models``/``models`` are all-models.json's models.

    Its per-model lists are StreamedArrays made as they are written (jsonstream), from the
    rankings and models given, which must not change until then.
    """
    filters = [filter_changes(outcome) for outcome in outcomes]
    previous_models = previous_models or ()
    new = _site_entries(models, lambda: set(model_ids(previous_models)))
    gone = _site_entries(previous_models, lambda: set(model_ids(models)))
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
    all_models: list[PreviousModel] | None = None
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
        all_models = data["all_models"]
        return cls(
            manifests={(m["source"], m["filter"]): m["ids"] for m in data["manifests"]},
            all_models=None
            if all_models is None
            else [PreviousModel(m["id"], m["slug"], m["source"]) for m in all_models],
            all_models_timestamp=data["all_models_timestamp"],
        )
