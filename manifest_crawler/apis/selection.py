"""Pure: what one filter takes of one page's items, and what it leaves and why.

The per-model rules (the filter's client-side rule, the parameter check, the id and name
rules of normalize.py, dedup within the filter, max_items) in one function that changes
nothing: the spider commits a Selection to the filter's state only once every filter of the
page has been selected for, so a page that fails half-way can be retried as it came.

Whatever one item holds costs that item at most: a rule that refuses it drops it under its
reason (InvalidModel), and an item no rule foresaw (an exception of ours) is dropped as
``unreadable``; the other items of the page are taken as usual.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from manifest_crawler.apis.base import SourceAPI
from manifest_crawler.apis.normalize import InvalidModel, NormalModel, normalize_model
from manifest_crawler.filters import Filter
from manifest_crawler.text import shown

#: The reason under which an item is dropped when handling it raised something no rule
#: foresaw (a bug of ours, met by that item only).
UNREADABLE = "unreadable"


@dataclass(slots=True)
class Selection:
    #: The models taken, in page order, each new to the filter.
    models: list[NormalModel] = field(default_factory=list)
    #: Items the filter's own rule (a rating) left out.
    excluded: int = 0
    #: Items already taken by the filter (on an earlier page, or earlier on this one).
    duplicates: int = 0
    #: Items that do not satisfy the filter's parameters (taken all the same), and the first.
    mismatched: int = 0
    first_mismatch: str = ""
    #: Items dropped, by reason (``manifest/dropped/<reason>`` in the stats and the report).
    dropped: Counter[str] = field(default_factory=Counter)
    #: Why the first dropped items were dropped, for the log (a few: a page can hold 1,000).
    drop_notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        if len(self.drop_notes) < 3:
            self.drop_notes.append(detail)


def select_items(
    api: SourceAPI,
    filter_: Filter,
    items: Sequence[Any],
    seen_ids: Collection[str],
    remaining: int | None,
) -> Selection:
    """The items of a page ``filter_`` takes, up to ``remaining`` (None: no limit), given the
    ids it already has (``seen_ids``, not changed). Items past the last one needed are not
    looked at."""
    selection = Selection()
    taken: set[str] = set()
    for item in items:
        if remaining is not None and len(selection.models) >= remaining:
            break
        try:
            model = _select(api, filter_, item, selection)
        except InvalidModel as exc:
            selection.drop(exc.reason, str(exc))
            continue
        except Exception as exc:  # see the module docstring
            selection.drop(UNREADABLE, f"{type(exc).__name__}: {shown(str(exc))}")
            continue
        if model is None:
            continue
        # Interned: every filter listing a model then holds one string for its id (the writer
        # interns the same), not a copy per filter (a million models, measured).
        model_id = sys.intern(model.id)
        if model_id in seen_ids or model_id in taken:
            selection.duplicates += 1
            continue
        taken.add(model_id)
        selection.models.append(model._replace(id=model_id))
    return selection


def _select(api: SourceAPI, filter_: Filter, item: Any, selection: Selection) -> NormalModel | None:
    """The item's model, None when the filter's rule excludes it; raises InvalidModel."""
    if not isinstance(item, dict):
        raise InvalidModel("not_an_object", f"an item is a JSON {type(item).__name__}")
    if not api.keep(filter_, item):
        selection.excluded += 1
        return None
    model = normalize_model(filter_.source, api.raw_id(item), api.raw_name(item))
    # Checked once the item is known to be taken: a mismatch is evidence, not a drop.
    mismatch = api.mismatch(filter_, item)
    if mismatch is not None:
        selection.mismatched += 1
        selection.first_mismatch = selection.first_mismatch or mismatch
    return model
