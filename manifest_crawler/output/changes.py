"""Pure run diff: what a run changed against the manifests and all-models.json it replaced.

Per filter: the models added, removed and moved (in both, at another rank); for the site as a
whole: the models new to all-models.json and the ones gone from every manifest. Ranks are
1-based positions in a manifest.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ijson

from manifest_crawler.output.jsonstream import StreamedArray
from manifest_crawler.output.manifests import PreviousModel, model_ids

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
    """One filter's manifest across the changes: its status (the run report's, or
    ``removed``), the ids the changes are measured against (``previous``) and the ids of its
    manifest now (``current``); None where there is no manifest."""

    source: str
    filter: str
    file: str
    status: str
    previous: Sequence[str] | None
    current: Sequence[str] | None


#: The status of a manifest removed because its filter is gone from filters.json.
REMOVED = "removed"


def filter_changes(outcome: FilterOutcome) -> dict[str, Any]:
    if outcome.previous is None and outcome.current is None:
        diff = RankingDiff()
    else:
        diff = diff_ranking(outcome.previous, outcome.current or ())
    return {
        "source": outcome.source,
        "filter": outcome.filter,
        "file": outcome.file,
        "status": outcome.status,
        "previousModels": None if outcome.previous is None else len(outcome.previous),
        "models": None if outcome.current is None else len(outcome.current),
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
    runs: int = 1,
) -> dict[str, Any]:
    """The changes document; ``previous_models``/``models`` are all-models.json's models, and
    ``runs`` how many runs the changes accumulate (see PendingChanges).

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
        "runs": runs,
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
    since = (
        "the last build"
        if changes.get("runs", 1) == 1
        else f"{CHANGES_FILE} was last consumed ({changes['runs']} runs)"
    )
    lines = [
        f"Changes since {since}: {totals['filtersChanged']} filter(s) changed, "
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


class ChangesError(ValueError):
    """A changes.json on disk cannot be built on: unreadable, not of its shape, or not the
    changes of the files beside it. The run then measures its changes against those files."""


@dataclass(frozen=True, slots=True)
class PendingFilter:
    """One filter of a pending changes.json, as much as it takes to undo it."""

    status: str
    file: str
    previous_models: int | None
    models: int | None
    #: Rank in the manifest on disk -> id, of the models it added.
    added: Mapping[int, str]
    #: Rank in the manifest on disk -> (id, rank in the manifest measured against), of the
    #: models it moved.
    moved: Mapping[int, tuple[str, int]]
    #: (old rank, id) of the models it removed.
    removed: tuple[tuple[int, str], ...]


@dataclass(slots=True)
class PendingChanges:
    """A changes.json that no site has consumed yet (the site deletes it once it has acted on
    it): the changes from the files on disk when it was last consumed (the *consumed* state)
    to the files on disk now. A run adds its own changes to it: it measures against the
    consumed state, which it rebuilds from the files on disk and these changes."""

    timestamp: str
    previous_timestamp: str | None
    runs: int
    filters: dict[tuple[str, str], PendingFilter] = field(default_factory=dict)
    new_ids: frozenset[str] = frozenset()
    gone: list[PreviousModel] = field(default_factory=list)

    def consumed_ranking(
        self, key: tuple[str, str], on_disk: Sequence[str] | None
    ) -> Sequence[str] | None:
        """The filter's ranking in the consumed state (None: it had no manifest), from its
        manifest on disk (``on_disk``, None when there is none). ChangesError when the two do
        not fit together."""
        entry = self.filters.get(key)
        if entry is None:
            return on_disk
        current = on_disk or ()
        if (entry.models or 0) != len(current):
            raise ChangesError(
                f"{key[0]}:{key[1]} has {len(current)} models on disk, not {entry.models or 0}"
            )
        if entry.previous_models is None:
            return None
        ranking: list[str | None] = [None] * entry.previous_models

        def place(rank: int, model_id: str) -> None:
            if not 1 <= rank <= len(ranking) or ranking[rank - 1] is not None:
                raise ChangesError(f"{key[0]}:{key[1]}: rank {rank} does not fit")
            ranking[rank - 1] = model_id

        for rank, model_id in enumerate(current, 1):
            if rank in entry.added:
                if entry.added[rank] != model_id:
                    raise ChangesError(f"{key[0]}:{key[1]}: rank {rank} does not fit")
                continue
            moved_id, old = entry.moved.get(rank, (model_id, rank))
            if moved_id != model_id:
                raise ChangesError(f"{key[0]}:{key[1]}: rank {rank} does not fit")
            place(old, model_id)
        for rank, model_id in entry.removed:
            place(rank, model_id)
        if None in ranking:
            raise ChangesError(f"{key[0]}:{key[1]}: its earlier ranking has a hole")
        return ranking  # type: ignore[return-value]  # no None left

    def consumed_site_models(self, on_disk: Sequence[PreviousModel]) -> list[PreviousModel]:
        """all-models.json's models in the consumed state, from the ones on disk now."""
        return [m for m in on_disk if m.id not in self.new_ids] + self.gone


def _rank(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ChangesError(f"not a rank: {value!r}")


def _count(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ChangesError(f"not a count: {value!r}")


def _text(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ChangesError(f"{key} is not a string")
    return value


def pending_filter(entry: Any) -> tuple[tuple[str, str], PendingFilter]:
    """One item of a changes.json's ``filters``, checked. ChangesError when it is not one."""
    if not isinstance(entry, dict):
        raise ChangesError("a filter entry is not an object")
    try:
        added = {_rank(m["rank"]): sys.intern(_text(m, "id")) for m in entry["added"]}
        moved = {
            _rank(m["to"]): (sys.intern(_text(m, "id")), _rank(m["from"])) for m in entry["moved"]
        }
        removed = tuple((_rank(m["rank"]), sys.intern(_text(m, "id"))) for m in entry["removed"])
    except (KeyError, TypeError) as exc:
        raise ChangesError(f"a filter entry is not of changes.json's shape ({exc!r})") from None
    key = (_text(entry, "source"), _text(entry, "filter"))
    return key, PendingFilter(
        status=_text(entry, "status"),
        file=_text(entry, "file"),
        previous_models=_count(entry.get("previousModels")),
        models=_count(entry.get("models")),
        added=added,
        moved=moved,
        removed=removed,
    )


def read_pending_changes(path: Path) -> PendingChanges | None:
    """The changes.json at ``path``, read as a stream (a pass per list: one list at a time is
    held as Python objects); None when there is none (consumed). ChangesError naming the file
    when it cannot be built on."""
    try:
        with path.open("rb") as file:
            head: dict[str, Any] = {}
            for key in ("timestamp", "previousTimestamp", "runs"):
                file.seek(0)
                head[key] = next(ijson.items(file, key), None)
            file.seek(0)
            pending = _pending_head(head, ijson.items(file, "filters.item"))
            file.seek(0)
            pending.new_ids = frozenset(_site_ref(m).id for m in ijson.items(file, "new.item"))
            file.seek(0)
            pending.gone = [_site_ref(m) for m in ijson.items(file, "gone.item")]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChangesError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except ijson.JSONError as exc:
        raise ChangesError(f"{path}: not valid JSON: {str(exc).splitlines()[0]}") from None
    except ChangesError as exc:
        raise ChangesError(f"{path}: {exc}") from None
    return pending


def _pending_head(head: Mapping[str, Any], filters: Iterable[Any]) -> PendingChanges:
    timestamp, previous, runs = head["timestamp"], head["previousTimestamp"], head["runs"]
    if not isinstance(timestamp, str) or not (previous is None or isinstance(previous, str)):
        raise ChangesError("not a changes.json (timestamps)")
    # A changes.json written before runs were counted holds one run.
    runs = 1 if runs is None else runs
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
        raise ChangesError("not a changes.json (runs)")
    return PendingChanges(timestamp, previous, runs, dict(map(pending_filter, filters)))


def _site_ref(model: Any) -> PreviousModel:
    if not isinstance(model, dict):
        raise ChangesError("a model of new or gone is not an object")
    return PreviousModel(
        sys.intern(_text(model, "id")), sys.intern(_text(model, "slug")), _text(model, "source")
    )
