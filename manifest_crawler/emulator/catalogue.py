"""Seeded, deterministic catalogues of CivitAI and Hugging Face models, and their queries.

Both catalogues are columnar: one compact array per field, a model being a position in
them. A Python object per model would cost about three times the memory and build time, and
the scale benchmark builds a million Hugging Face models. Full JSON payloads are rendered
by :mod:`.payloads`, only for the models of the page being served.

A query is parsed and validated like the real API would, then answered by filtering the
catalogue's global order for its sort. The HTTP resources and the tests share this one code
path, so a test can compute the exact expected answer of any query
(:meth:`Catalogue.query_civitai`, :meth:`Catalogue.query_hf`).

Nothing here touches the reactor; every value derives from the seed alone.
"""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import accumulate
from random import Random
from typing import Any, TypeAlias

from .lru import WeighedLru
from .paging import CursorToken, InvalidCursor, QueryResult, civitai_date
from .vocabulary import (
    BASE_MODELS,
    BASE_WEIGHTS,
    BROWSING_ALL,
    BROWSING_SFW,
    CHECKPOINT_TYPES,
    CIVITAI_SORTS,
    CIVITAI_STATS,
    CIVITAI_TAGS,
    CIVITAI_TYPES,
    DUPLICATE_NAMES,
    FLAGGED_NSFW_LEVEL,
    HF_EXPAND_PROPERTIES,
    HF_FAMILIES,
    HF_FAMOUS_OWNERS,
    HF_FLAG_TAGS,
    HF_LANGUAGES,
    HF_LIBRARIES,
    HF_LICENSES,
    HF_PIPELINES,
    HF_SORTS,
    HF_TOKENS,
    HF_VARIANTS,
    LIBRARY_WEIGHTS,
    LICENSE_WEIGHTS,
    MODES,
    NAME_ADJECTIVES,
    NAME_NOUNS,
    NAME_SUFFIXES,
    NAME_UNICODE,
    OWNER_PARTS,
    PIPELINE_WEIGHTS,
    PREFERRED_LIBRARIES,
    SYLLABLES,
    TEXT_PIPELINES,
    TYPE_WEIGHTS,
)

# Every date is relative to this fixed instant, so catalogues (and the period filters
# computed from them) do not drift with the wall clock.
REFERENCE_DATE = datetime(2026, 11, 1, tzinfo=UTC)
REFERENCE_EPOCH = int(REFERENCE_DATE.timestamp())
DAY = 86_400

RawParams: TypeAlias = Mapping[str, Any]
"""Query parameters: each value a string, a sequence of strings (repeated parameter), or a
scalar (int/bool) for convenience in tests."""


class QueryError(ValueError):
    """A request the real API rejects; carries the HTTP status and the message, and for a
    parameter that fails validation, its Zod issue: the path (the parameter, and the index
    of a repeated one's value) and the issue code. CivitAI answers those as a Zod error
    object and anything else as ``{"message": …}`` (emulator/civitai.py); the Hub answers
    ``{"error": …}`` either way."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        path: tuple[str | int, ...] = (),
        code: str = "custom",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.path = path
        self.code = code


def normalize_params(params: RawParams | Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Turn a mapping or (key, value) pairs into ``{key: [values]}`` as a query string parses."""
    out: dict[str, list[str]] = {}
    items = params.items() if isinstance(params, Mapping) else params
    for key, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        out.setdefault(key, []).extend(_scalar_to_str(v) for v in values)
    return out


def _scalar_to_str(value: Any) -> str:
    # Booleans as a client library sends them, not Python's "True".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _first(params: dict[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0] if values else None


def _parse_bool(params: dict[str, list[str]], key: str, default: bool) -> bool:
    raw = _first(params, key)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise QueryError(
        400,
        f"Invalid value for {key}: expected a boolean, got {raw!r}",
        path=(key,),
        code="invalid_type",
    )


def _lenient_bool(params: dict[str, list[str]], key: str) -> bool:
    # Switches (full, config, cardData) are lenient: clients send True, true or 1, and
    # rejecting one of those would fail a crawl over a spelling.
    raw = _first(params, key)
    if raw is None:
        return False
    return raw.strip().lower() not in ("false", "0", "no")


def _cumulative(weights: Sequence[float]) -> tuple[list[float], float]:
    cum = list(accumulate(weights))
    return cum, cum[-1]


def stable_seed(*parts: int) -> int:
    # Python's hash() is salted per process; this mix is not.
    acc = 0x9E3779B97F4A7C15
    for part in parts:
        acc = ((acc ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        acc ^= acc >> 31
    return acc


# --------------------------------------------------------------------------------------
# CivitAI catalogue
# --------------------------------------------------------------------------------------

CHECKPOINT = CIVITAI_TYPES.index("Checkpoint")
ARCHIVED = MODES.index("Archived")
#: The ``published`` of a model with no published version: its lastVersionAt is NULL.
NO_VERSION = -(2**62)
#: The two metrics (positions in CIVITAI_STATS) each metric sort orders by, DESC, before
#: modelId ASC (model.service.ts getModelsRaw, api-notes). Highest Rated and Most Liked are one.
METRIC_ORDER_BY: dict[str, tuple[int, int]] = {
    "Highest Rated": (1, 0),
    "Most Liked": (1, 0),
    "Most Downloaded": (0, 1),
    "Most Discussed": (3, 1),
    "Most Collected": (4, 1),
    "Most Images": (5, 1),
}
DATE_SORTS = ("Newest", "Oldest")
PERIODS: dict[str, int | None] = {
    "AllTime": None,
    "Year": 365 * DAY,
    "Month": 30 * DAY,
    "Week": 7 * DAY,
    "Day": DAY,
}
_TAG_INDEX = {tag: i for i, tag in enumerate(CIVITAI_TAGS)}

_TYPE_CUM, _TYPE_TOTAL = _cumulative(TYPE_WEIGHTS)
_BASE_CUM, _BASE_TOTAL = _cumulative(BASE_WEIGHTS)
# Share of models per version count: checkpoints carry several versions, the rest few.
_CKPT_VERSIONS_CUM, _CKPT_VERSIONS_TOTAL = _cumulative((15, 20, 20, 15, 10, 8, 6, 6))
_OTHER_VERSIONS_CUM, _OTHER_VERSIONS_TOTAL = _cumulative((72, 18, 10))
# Latest publication: skewed recent, so that Day/Week/Month/Year each keep a fair share.
_PUBLISHED_BANDS = (
    (0.04, 0, DAY),
    (0.10, DAY, 7 * DAY),
    (0.22, 7 * DAY, 30 * DAY),
    (0.55, 30 * DAY, 365 * DAY),
    (1.00, 365 * DAY, 3 * 365 * DAY),
)
# A model's nsfwLevel is the bit-or of its versions' (each the bit-or of its images'), so the
# more a model is used, the more levels its images span: a real top-10 page held 31, 15, 7,
# 15, 31, 23, 15, 31, 7, 31 (api-notes). 60 is a model flagged nsfw.
_POPULAR_DOWNLOADS = 20_000
_POPULAR_LEVELS = (31, 15, 7, 23, 3, 1, 11, 27, 13, FLAGGED_NSFW_LEVEL)
_POPULAR_CUM, _POPULAR_TOTAL = _cumulative((25, 22, 20, 8, 8, 5, 3, 3, 2, 4))
_OTHER_LEVELS = (1, 3, 7, 15, 31, 23, 5, 2, 6, 4, 12, 8, 24, 16, 28, FLAGGED_NSFW_LEVEL)
_OTHER_CUM, _OTHER_TOTAL = _cumulative((28, 14, 10, 6, 4, 2, 3, 5, 2, 5, 3, 5, 3, 4, 2, 4))
# Share of models with no visible version: the API drops them after its SQL LIMIT.
_HIDDEN_SHARE = 0.02


def _published_offset(rr: Callable[[], float]) -> int:
    u = rr()
    for edge, low, high in _PUBLISHED_BANDS:
        if u < edge:
            return low + int(rr() * (high - low))
    return 3 * 365 * DAY - 1


def _nsfw_level(rr: Callable[[], float], downloads: int) -> int:
    if downloads >= _POPULAR_DOWNLOADS:
        return _POPULAR_LEVELS[bisect(_POPULAR_CUM, rr() * _POPULAR_TOTAL)]
    return _OTHER_LEVELS[bisect(_OTHER_CUM, rr() * _OTHER_TOTAL)]


# --------------------------------------------------------------------------------------
# CivitAI queries
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CivitaiQuery:
    """The filtering and ordering part of a CivitAI request (hashable: a cache key)."""

    sort: str = "Highest Rated"
    period: str = "AllTime"
    nsfw: bool = False
    types: frozenset[int] | None = None
    base_mask: int | None = None
    query: str | None = None
    tag: str | None = None
    username: str | None = None
    checkpoint_type: int | None = None
    ids: frozenset[int] | None = None
    archived: bool = False


@dataclass(frozen=True, slots=True)
class CivitaiPaging:
    """The paging/rendering part of a CivitAI request."""

    limit: int = 100
    cursor: str | None = None
    page: int | None = None
    primary_file_only: bool = False


def parse_civitai_params(
    params: RawParams | Iterable[tuple[str, str]],
) -> tuple[CivitaiQuery, CivitaiPaging]:
    """Validate CivitAI parameters as the real API does; unknown parameters are ignored."""
    p = normalize_params(params)

    raw_limit = _first(p, "limit")
    limit = 100
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise QueryError(
                400,
                f"Invalid limit: expected a number, got {raw_limit!r}",
                path=("limit",),
                code="invalid_type",
            ) from None
        if limit < 0 or limit > 100:
            raise QueryError(
                400,
                "Invalid limit: must be between 0 and 100",
                path=("limit",),
                code="too_big" if limit > 100 else "too_small",
            )
        # limit=0 would make an endless chain of empty pages; the API's default applies.
        limit = limit or 100

    if "browsingLevel" in p:
        raise QueryError(
            400,
            "browsingLevel is not supported by the public API, use nsfw",
            path=("browsingLevel",),
        )

    sort = _first(p, "sort") or "Highest Rated"
    if sort not in CIVITAI_SORTS:
        raise QueryError(
            400,
            f"Invalid sort: {sort!r}; expected one of {list(CIVITAI_SORTS)}",
            path=("sort",),
            code="invalid_enum_value",
        )
    period = _first(p, "period") or "AllTime"
    if period not in PERIODS:
        raise QueryError(
            400,
            f"Invalid period: {period!r}; expected one of {list(PERIODS)}",
            path=("period",),
            code="invalid_enum_value",
        )

    types: frozenset[int] | None = None
    if p.get("types"):
        wanted = set()
        for position, name in enumerate(p["types"]):
            if name not in CIVITAI_TYPES:
                raise QueryError(
                    400,
                    f"Invalid type: {name!r}",
                    path=("types", position),
                    code="invalid_enum_value",
                )
            wanted.add(CIVITAI_TYPES.index(name))
        types = frozenset(wanted)

    base_mask: int | None = None
    if p.get("baseModels"):
        # Free strings upstream: an unknown name matches nothing rather than failing.
        base_mask = 0
        for name in p["baseModels"]:
            if name in BASE_MODELS:
                base_mask |= 1 << BASE_MODELS.index(name)

    checkpoint_type: int | None = None
    raw_ct = _first(p, "checkpointType")
    if raw_ct is not None:
        if raw_ct not in CHECKPOINT_TYPES[1:]:
            raise QueryError(
                400,
                f"Invalid checkpointType: {raw_ct!r}",
                path=("checkpointType",),
                code="invalid_enum_value",
            )
        checkpoint_type = CHECKPOINT_TYPES.index(raw_ct)

    ids: frozenset[int] | None = None
    if p.get("ids"):
        try:
            ids = frozenset(int(x) for v in p["ids"] for x in v.split(",") if x.strip())
        except ValueError:
            raise QueryError(
                400, "Invalid ids: expected integers", path=("ids",), code="invalid_type"
            ) from None

    query_text = _first(p, "query")
    page: int | None = None
    raw_page = _first(p, "page")
    if raw_page is not None:
        try:
            page = int(raw_page)
        except ValueError:
            raise QueryError(
                400, f"Invalid page: {raw_page!r}", path=("page",), code="invalid_type"
            ) from None
        if page < 1:
            raise QueryError(
                400, "Invalid page: must be at least 1", path=("page",), code="too_small"
            )
        if query_text:
            raise QueryError(
                400, "Cannot use page with a query; use cursor-based pagination", path=("page",)
            )

    query = CivitaiQuery(
        sort=sort,
        period=period,
        nsfw=_parse_bool(p, "nsfw", False),
        types=types,
        base_mask=base_mask,
        query=query_text.lower() if query_text else None,
        tag=(_first(p, "tag") or "").strip().lower() or None,
        username=(_first(p, "username") or "").strip().lower() or None,
        checkpoint_type=checkpoint_type,
        ids=ids,
        archived=_parse_bool(p, "archived", False),
    )
    paging = CivitaiPaging(
        limit=limit,
        cursor=_first(p, "cursor") or None,
        page=page,
        primary_file_only=_parse_bool(p, "primaryFileOnly", False),
    )
    return query, paging


def _answer_cache() -> WeighedLru[Any, QueryResult]:
    """Query answers: a crawl asks one query once per page. Bounded by the number of indices
    held, not of answers: at a million models a few broad answers weigh more than hundreds of
    narrow ones."""
    return WeighedLru(16_000_000, lambda result: result.found)


def _cached_result(
    cache: WeighedLru[Any, QueryResult],
    query: Any,
    order: array[int],
    predicates: Callable[[Any], list[Callable[[int], Any]]],
) -> QueryResult:
    """The indices of ``order`` that pass every predicate of ``query``, cached by query and
    found only as far as pages ask (see QueryResult)."""
    cached = cache.get(query)
    if cached is not None:
        return cached
    selected: Iterator[int] = iter(order)
    for predicate in predicates(query):
        selected = filter(predicate, selected)
    result = QueryResult(selected)
    cache.put(query, result)
    return result


@dataclass(frozen=True, slots=True)
class CivitaiRecord:
    """One model as the catalogue holds it (a row across the columns), for tests and payloads."""

    index: int
    id: int
    name: str
    type: str
    base_models: tuple[str, ...]
    versions: int
    #: Epoch seconds of the latest published version (lastVersionAt); None when there is none.
    published_at: int | None
    stats: dict[str, int | None]
    nsfw_level: int
    tags: tuple[str, ...]
    creator: str
    mode: str | None
    checkpoint_type: str | None

    @property
    def nsfw(self) -> bool:
        """The model's own nsfw flag (a flagged model's level is 60)."""
        return self.nsfw_level == FLAGGED_NSFW_LEVEL


class CivitaiCatalogue:
    """CivitAI models in columns. ``index`` is a model's position; ``id`` its public id."""

    def __init__(self, seed: int, size: int, revision: int = 0) -> None:
        self.seed = seed
        self.revision = revision
        self.id_space = max(2_000_000, 4 * size)
        self.ids: array[int] = array("i")
        self.names: list[str] = []
        self.names_lower: list[str] = []
        self.type: array[int] = array("B")
        self.base_mask: array[int] = array("Q")
        self.versions: array[int] = array("B")
        self.published: array[int] = array("q")
        # Stats in CIVITAI_STATS order; a null stat is stored as 0 (how it sorts) with its
        # bit set in null_mask (how it renders).
        self.stats: tuple[array[int], ...] = tuple(array("q") for _ in CIVITAI_STATS)
        self.null_mask: array[int] = array("B")
        self.nsfw_level: array[int] = array("B")
        self.tag_mask: array[int] = array("Q")
        self.creator: array[int] = array("I")
        self.mode: array[int] = array("B")
        self.checkpoint_type: array[int] = array("B")
        self.alive = bytearray()
        #: 1 for a model with no visible version: counted by a page's LIMIT, then dropped.
        self.hidden = bytearray()
        self.index_of_id: dict[int, int] = {}

        rng = Random(stable_seed(seed, 1))
        self.creators = _make_usernames(rng, max(40, size // 8))
        self._creator_lower: dict[str, list[int]] = {}
        for i, name in enumerate(self.creators):
            self._creator_lower.setdefault(name.lower(), []).append(i)

        for model_id in rng.sample(range(1, self.id_space + 1), size):
            self._append(rng, model_id)
        for rev in range(1, revision + 1):
            self._apply_revision(rev)

        self._orders: dict[str, array[int]] = {}
        self._cache = _answer_cache()

    def set_levels(self, levels: Sequence[int]) -> None:
        """Give model ``i`` the nsfwLevel ``levels[i % len(levels)]`` (before serving)."""
        self.nsfw_level = array("B", (levels[i % len(levels)] for i in range(len(self.ids))))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def alive_count(self) -> int:
        return self.alive.count(1)

    # -- generation -----------------------------------------------------------------------

    def _append(self, rng: Random, model_id: int) -> None:
        rr = rng.random
        index = len(self.ids)
        mtype = bisect(_TYPE_CUM, rr() * _TYPE_TOTAL)
        if mtype == CHECKPOINT:
            versions = 1 + bisect(_CKPT_VERSIONS_CUM, rr() * _CKPT_VERSIONS_TOTAL)
            ckpt = 1 if rr() < 0.4 else 2
        else:
            versions = 1 + bisect(_OTHER_VERSIONS_CUM, rr() * _OTHER_VERSIONS_TOTAL)
            ckpt = 0
        base = 1 << bisect(_BASE_CUM, rr() * _BASE_TOTAL)
        if versions > 1 and rr() < 0.25:
            base |= 1 << bisect(_BASE_CUM, rr() * _BASE_TOTAL)

        downloads = int(rng.lognormvariate(6.5, 2.0)) if rr() > 0.03 else 0
        downloads = min(downloads, 5_000_000)
        thumbs_up = int(downloads * (0.01 + 0.11 * rr()))
        values = (
            downloads,
            thumbs_up,
            int(thumbs_up * 0.05 * rr()),
            int(thumbs_up * 0.1 * rr()),
            int(downloads * (0.02 + 0.18 * rr())),
            min(int(rng.lognormvariate(2.5, 1.5)), 200_000),
            int(rng.paretovariate(1.5)) - 1 if rr() < 0.3 else 0,
        )
        null_mask = 0
        if rr() < 0.03:
            null_mask = 1 + int(rr() * 127)
        for bit, (column, value) in enumerate(zip(self.stats, values, strict=True)):
            column.append(0 if null_mask >> bit & 1 else value)

        tags = 0
        for _ in range(2 + int(rr() * 5)):
            tags |= 1 << int(rr() * len(CIVITAI_TAGS))
        u = rr()
        mode = 1 if u < 0.02 else 2 if u < 0.027 else 0

        self.ids.append(model_id)
        name = _civitai_name(rng)
        self.names.append(name)
        self.names_lower.append(name.lower())
        self.type.append(mtype)
        self.base_mask.append(base)
        self.versions.append(versions)
        # Whole minutes: a few models share their latest publication, as batch uploads do,
        # and Newest orders them by modelId DESC.
        published = REFERENCE_EPOCH - _published_offset(rr) // 60 * 60
        hidden = rr() < _HIDDEN_SHARE
        if hidden and stable_seed(self.seed, 6, model_id) % 2:
            # No published version, so no lastVersionAt: the NULL tail of Newest and Oldest.
            published = NO_VERSION
        self.published.append(published)
        self.null_mask.append(null_mask)
        self.nsfw_level.append(_nsfw_level(rr, downloads))
        self.hidden.append(hidden)
        self.tag_mask.append(tags)
        # Squaring skews authorship: a few prolific creators, a long tail.
        self.creator.append(int(len(self.creators) * rr() * rr()))
        self.mode.append(mode)
        self.checkpoint_type.append(ckpt)
        self.alive.append(1)
        self.index_of_id[model_id] = index

    def _apply_revision(self, rev: int) -> None:
        """Revision k: drop ~2% of the models, add ~2% new ones, move ~5% up the sorts."""
        rng = Random(stable_seed(self.seed, 2, rev))
        alive = [i for i, flag in enumerate(self.alive) if flag]
        for i in rng.sample(alive, min(len(alive), max(1, len(alive) // 50))):
            self.alive[i] = 0
            del self.index_of_id[self.ids[i]]
        for _ in range(max(1, len(alive) // 50)):
            model_id = rng.randrange(1, self.id_space + 1)
            while model_id in self.index_of_id:
                model_id = rng.randrange(1, self.id_space + 1)
            self._append(rng, model_id)
        alive = [i for i, flag in enumerate(self.alive) if flag]
        for i in rng.sample(alive, min(len(alive), max(1, len(alive) // 20))):
            factor = 1.5 + 4.5 * rng.random()
            for column in self.stats[:6]:
                column[i] = int(column[i] * factor) + int(rng.random() * 50)
            # A new version: the model now counts as freshly published.
            if rng.random() < 0.3:
                self.published[i] = REFERENCE_EPOCH - int(rng.random() * 10 * DAY) // 60 * 60

    # -- records --------------------------------------------------------------------------

    def record(self, index: int) -> CivitaiRecord:
        nulls = self.null_mask[index]
        base = self.base_mask[index]
        return CivitaiRecord(
            index=index,
            id=self.ids[index],
            name=self.names[index],
            type=CIVITAI_TYPES[self.type[index]],
            base_models=tuple(b for bit, b in enumerate(BASE_MODELS) if base >> bit & 1),
            versions=self.versions[index],
            published_at=None if self.published[index] == NO_VERSION else self.published[index],
            stats={
                name: None if nulls >> bit & 1 else self.stats[bit][index]
                for bit, name in enumerate(CIVITAI_STATS)
            },
            nsfw_level=self.nsfw_level[index],
            tags=tuple(t for bit, t in enumerate(CIVITAI_TAGS) if self.tag_mask[index] >> bit & 1),
            creator=self.creators[self.creator[index]],
            mode=MODES[self.mode[index]],
            checkpoint_type=CHECKPOINT_TYPES[self.checkpoint_type[index]] or None,
        )

    def record_for_id(self, model_id: int) -> CivitaiRecord:
        return self.record(self.index_of_id[model_id])

    # -- ordering -------------------------------------------------------------------------

    def sort_key(self, sort: str) -> Callable[[int], tuple[int, ...]]:
        """Key under which a sort's order (its ORDER BY, api-notes) is ascending.

        The metric sorts: two metrics DESC (a null stat counts as 0), then modelId ASC.
        Newest: lastVersionAt DESC NULLS LAST, modelId DESC; Oldest: lastVersionAt ASC (NULLS
        LAST, Postgres' default), modelId ASC. Dates in milliseconds, as cursors carry them.
        """
        ids, published = self.ids, self.published
        if sort == "Newest":
            return lambda i: (published[i] == NO_VERSION, -1000 * published[i], -ids[i])
        if sort == "Oldest":
            return lambda i: (published[i] == NO_VERSION, 1000 * published[i], ids[i])
        first, second = (self.stats[column] for column in METRIC_ORDER_BY[sort])
        return lambda i: (-first[i], -second[i], ids[i])

    def cursor(self, sort: str, index: int) -> str:
        """The cursor the server hands out for a row: its ORDER BY columns joined by ``|``,
        an empty token for a NULL lastVersionAt (Postgres' CONCAT)."""
        if sort in DATE_SORTS:
            published = self.published[index]
            date = None if published == NO_VERSION else civitai_date(published)
            return f"{date or ''}|{self.ids[index]}"
        first, second = (self.stats[column][index] for column in METRIC_ORDER_BY[sort])
        return f"{first}|{second}|{self.ids[index]}"

    @staticmethod
    def cursor_bound(sort: str, tokens: tuple[CursorToken, ...]) -> tuple[tuple[int, ...], bool]:
        """Where the rows a cursor selects begin, as a :meth:`sort_key` and whether that key
        itself is left out (strict), as the server's WHERE does it (pagination-helpers.ts
        getCursorClauses, api-notes): each field compares with ``<`` when DESC and ``>=``
        when ASC, the fields before it equal.

        So the metric sorts keep the cursor's own row (modelId ``>=``); Newest leaves it out
        (modelId ``<``: the row lost at every page boundary); Oldest's head field is ``>=``
        whatever the id, so it serves again every row tied on the cursor's date. A date
        comparison is never true for a NULL: no cursor reaches the NULL tail.
        """
        kinds = tuple(token.is_date for token in tokens)
        if sort in DATE_SORTS:
            if kinds != (True, False):
                raise InvalidCursor("Invalid cursor: expected a date and an id for this sort")
            millis, model_id = (token.value for token in tokens)
            if sort == "Newest":
                return (False, -millis, -model_id), True
            return (False, millis, -(2**63)), False
        if any(kinds):
            raise InvalidCursor("Invalid cursor: expected numbers for this sort")
        first, second, model_id = (token.value for token in tokens)
        return (-first, -second, model_id), False

    @staticmethod
    def cursor_fields(sort: str) -> int:
        """How many values a cursor of this sort carries (its ORDER BY columns)."""
        return 2 if sort in DATE_SORTS else 3

    def has_version(self, index: int) -> bool:
        """Whether the model has a lastVersionAt (a published version)."""
        return self.published[index] != NO_VERSION

    def order(self, sort: str) -> array[int]:
        """Every live model in the sort's order."""
        cached = self._orders.get(sort)
        if cached is not None:
            return cached
        alive = [i for i, flag in enumerate(self.alive) if flag]
        result = array("i", sorted(alive, key=self.sort_key(sort)))
        self._orders[sort] = result
        return result

    # -- queries --------------------------------------------------------------------------

    def result(self, query: CivitaiQuery) -> QueryResult:
        """Indices of the models answering ``query``, in order (cached, found lazily)."""
        return _cached_result(self._cache, query, self.order(query.sort), self._predicates)

    def _predicates(self, q: CivitaiQuery) -> list[Callable[[int], Any]]:
        preds: list[Callable[[int], Any]] = []
        if q.ids is not None:
            ids, wanted = self.ids, q.ids
            preds.append(lambda i: ids[i] in wanted)
        if q.types is not None:
            mtype, types = self.type, q.types
            preds.append(lambda i: mtype[i] in types)
        # Any shared bit (api-notes): nsfw=false is browsing level PG, so every model with
        # some PG content is listed, whatever else it shows.
        level, browsing = self.nsfw_level, BROWSING_ALL if q.nsfw else BROWSING_SFW
        preds.append(lambda i: level[i] & browsing)
        if q.base_mask is not None:
            base, mask = self.base_mask, q.base_mask
            preds.append(lambda i: base[i] & mask)
        if not q.archived:
            # Archived models are left out unless archived=true (model.service.ts).
            mode = self.mode
            preds.append(lambda i: mode[i] != ARCHIVED)
        span = PERIODS[q.period]
        if span is not None:
            # A NULL lastVersionAt (NO_VERSION, below any start) is in no period.
            published, start = self.published, REFERENCE_EPOCH - span
            preds.append(lambda i: published[i] >= start)
        if q.checkpoint_type is not None:
            # Upstream semantics: the filter constrains checkpoints and lets other types pass.
            mtype, ckpt, wanted_ct = self.type, self.checkpoint_type, q.checkpoint_type
            preds.append(lambda i: mtype[i] != CHECKPOINT or ckpt[i] == wanted_ct)
        if q.tag is not None:
            bit = _TAG_INDEX.get(q.tag)
            if bit is None:
                preds.append(lambda i: False)
            else:
                tags = self.tag_mask
                preds.append(lambda i: tags[i] >> bit & 1)
        if q.username is not None:
            creators = frozenset(self._creator_lower.get(q.username, ()))
            creator = self.creator
            preds.append(lambda i: creator[i] in creators)
        if q.query is not None:
            names, text = self.names_lower, q.query
            preds.append(lambda i: text in names[i])
        return preds

    def query(self, params: RawParams) -> list[int]:
        """Ids of every model a CivitAI request with ``params`` lists, across all pages."""
        query, _ = parse_civitai_params(params)
        ids, hidden = self.ids, self.hidden
        return [ids[i] for i in self.result(query) if not hidden[i]]

    def slots(self, params: RawParams) -> list[int]:
        """Ids of every model the request's SQL sees, in order, those with no visible version
        included: pages are cut from these, and each hidden one leaves its page an item short."""
        query, _ = parse_civitai_params(params)
        ids = self.ids
        return [ids[i] for i in self.result(query)]


def _civitai_name(rng: Random) -> str:
    rr = rng.random
    u = rr()
    if u < 0.03:
        name = DUPLICATE_NAMES[int(rr() * len(DUPLICATE_NAMES))]
    else:
        parts = [
            NAME_ADJECTIVES[int(rr() * len(NAME_ADJECTIVES))],
            NAME_NOUNS[int(rr() * len(NAME_NOUNS))],
        ]
        if rr() < 0.15:
            parts.insert(int(rr() * 3), NAME_UNICODE[int(rr() * len(NAME_UNICODE))])
        if rr() < 0.5:
            parts.append(NAME_SUFFIXES[int(rr() * len(NAME_SUFFIXES))])
        if rr() < 0.3:
            parts.append(f"{SYLLABLES[int(rr() * 30)].title()}{int(rr() * 100)}")
        name = " ".join(parts)
    v = rr()
    if v < 0.015:
        name = f" {name}"
    elif v < 0.03:
        name = f"{name}  "
    return name


def _make_usernames(rng: Random, count: int) -> list[str]:
    rr = rng.random
    seen: set[str] = set()
    names: list[str] = []
    while len(names) < count:
        u = rr()
        if u < 0.06:
            # All-digit: the API serialises these as JSON numbers. No leading zero, so the
            # number's decimal form is the username.
            name = str(100_000 + int(rr() * 999_900_000))
        else:
            syllables = "".join(SYLLABLES[int(rr() * 30)] for _ in range(2 + int(rr() * 3)))
            sep = ("", "_", "")[int(rr() * 3)]
            tail = str(int(rr() * 1000)) if rr() < 0.4 else ""
            name = f"{syllables}{sep}{tail}" if tail else syllables
            if rr() < 0.3:
                name = name.title().replace("_", "")
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


# --------------------------------------------------------------------------------------
# Hugging Face catalogue
# --------------------------------------------------------------------------------------

HF_MAX_LIMIT = 1000

# One bit per tag of the closed vocabulary, so an ANDed tag filter is one mask test.
_TAG_BIT: dict[str, int] = {}
for _tag in (
    *HF_PIPELINES,
    *HF_LIBRARIES,
    *(f"license:{lic}" for lic in HF_LICENSES),
    *HF_LANGUAGES,
    *HF_FLAG_TAGS,
    "region:us",
):
    _TAG_BIT[_tag] = len(_TAG_BIT)
assert len(_TAG_BIT) <= 64
PIPELINE_BIT0 = _TAG_BIT[HF_PIPELINES[0]]
LIBRARY_BIT0 = _TAG_BIT[HF_LIBRARIES[0]]
LICENSE_BIT0 = _TAG_BIT[f"license:{HF_LICENSES[0]}"]
LANGUAGE_BIT0 = _TAG_BIT[HF_LANGUAGES[0]]
FLAG_BIT0 = _TAG_BIT[HF_FLAG_TAGS[0]]
REGION_BIT = _TAG_BIT["region:us"]

_FAMILY_TAG_INDEX = {family[0]: i for i, family in enumerate(HF_FAMILIES)}
_FAMILIES_BY_PIPELINE: tuple[tuple[int, ...], ...] = tuple(
    tuple(i for i, fam in enumerate(HF_FAMILIES) if pipe in fam[2]) for pipe in HF_PIPELINES
)
_PREFERRED_INDEX: tuple[tuple[int, ...], ...] = tuple(
    tuple(HF_LIBRARIES.index(lib) for lib in PREFERRED_LIBRARIES.get(pipe, ("transformers",)))
    for pipe in HF_PIPELINES
)

_PIPELINE_CUM, _PIPELINE_TOTAL = _cumulative(PIPELINE_WEIGHTS)
_LIBRARY_CUM, _LIBRARY_TOTAL = _cumulative(LIBRARY_WEIGHTS)
_LICENSE_CUM, _LICENSE_TOTAL = _cumulative(LICENSE_WEIGHTS)
_HF_START = int(datetime(2021, 3, 1, tzinfo=UTC).timestamp())
_LOG_1E7, _LOG_3B, _LOG_13B, _LOG_400B = (math.log(x) for x in (1e7, 3e9, 1.3e10, 4e11))

_NUM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_num_parameters(raw: str) -> tuple[int | None, int | None]:
    """Parse ``min:X,max:Y`` (either side optional, suffixes K/M/B/T) into inclusive bounds."""
    low: int | None = None
    high: int | None = None
    parts = [part.strip() for part in raw.split(",")]
    if not raw.strip() or any(not part for part in parts):
        raise QueryError(400, f"Invalid num_parameters: {raw!r}")
    for part in parts:
        side, _, number = part.partition(":")
        match = _NUM_RE.match(number)
        side = side.strip().lower()
        if side not in ("min", "max") or match is None:
            raise QueryError(400, f"Invalid num_parameters: {raw!r}")
        value = round(float(match.group(1)) * _SUFFIX[match.group(2).lower()])
        if side == "min":
            if low is not None:
                raise QueryError(400, f"Invalid num_parameters: {raw!r}")
            low = value
        else:
            if high is not None:
                raise QueryError(400, f"Invalid num_parameters: {raw!r}")
            high = value
    return low, high


@dataclass(frozen=True, slots=True)
class HfQuery:
    """The filtering and ordering part of a Hub listing (hashable: a cache key)."""

    sort: str = "trendingScore"
    search: str | None = None
    author: str | None = None
    filters: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    library: str | None = None
    num_parameters: tuple[int | None, int | None] | None = None
    gated: bool | None = None


@dataclass(frozen=True, slots=True)
class HfPaging:
    """The paging/rendering part of a Hub listing."""

    limit: int = HF_MAX_LIMIT
    cursor: str | None = None
    full: bool = False
    expand: tuple[str, ...] | None = None
    config: bool = False
    card_data: bool = False


def parse_hf_params(params: RawParams | Iterable[tuple[str, str]]) -> tuple[HfQuery, HfPaging]:
    """Validate Hub listing parameters as the Hub does; unknown parameters are ignored."""
    p = normalize_params(params)
    sort = _first(p, "sort") or "trendingScore"
    if sort not in HF_SORTS:
        raise QueryError(400, f"Invalid sort parameter: {sort}")

    limit = HF_MAX_LIMIT
    raw_limit = _first(p, "limit")
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise QueryError(400, f"Invalid limit: {raw_limit!r}") from None
        if limit < 1:
            raise QueryError(400, "Invalid limit: must be positive")
        limit = min(limit, HF_MAX_LIMIT)

    full = _lenient_bool(p, "full")
    config = _lenient_bool(p, "config")
    card_data = _lenient_bool(p, "cardData")
    expand: tuple[str, ...] | None = None
    if p.get("expand"):
        if full or config or card_data:
            raise QueryError(400, "expand cannot be combined with full, config or cardData")
        for value in p["expand"]:
            if value not in HF_EXPAND_PROPERTIES:
                raise QueryError(
                    400, f'"expand" must be one of {sorted(HF_EXPAND_PROPERTIES)}, got {value!r}'
                )
        expand = tuple(dict.fromkeys(p["expand"]))

    gated: bool | None = None
    if _first(p, "gated") is not None:
        gated = _parse_bool(p, "gated", False)
    raw_params = _first(p, "num_parameters")
    query = HfQuery(
        sort=sort,
        search=(_first(p, "search") or "").lower() or None,
        author=(_first(p, "author") or "").lower() or None,
        # AND is commutative: a canonical order makes equal queries equal cache keys.
        filters=tuple(sorted(set(p.get("filter", ())))),
        pipeline_tag=_first(p, "pipeline_tag") or None,
        library=_first(p, "library") or None,
        num_parameters=parse_num_parameters(raw_params) if raw_params is not None else None,
        gated=gated,
    )
    paging = HfPaging(
        limit=limit,
        cursor=_first(p, "cursor") or None,
        full=full,
        expand=expand,
        config=config,
        card_data=card_data,
    )
    return query, paging


@dataclass(frozen=True, slots=True)
class HfRecord:
    """One Hub model as the catalogue holds it, for tests and payloads."""

    index: int
    id: str
    author: str
    likes: int
    likes30d: int
    downloads: int
    trending_score: int
    created_at: int
    last_modified: int
    pipeline_tag: str | None
    library_name: str | None
    tags: tuple[str, ...]
    num_parameters: int | None
    gated: str | bool
    family: str


class HfCatalogue:
    """Hugging Face models in columns; ``index`` is a model's position."""

    def __init__(self, seed: int, size: int, revision: int = 0) -> None:
        self.seed = seed
        self.revision = revision
        self.ids: list[str] = []
        self.owner: array[int] = array("I")
        self.likes: array[int] = array("q")
        self.likes30d: array[int] = array("q")
        self.downloads: array[int] = array("q")
        self.trending: array[int] = array("q")
        self.created: array[int] = array("q")
        self.modified: array[int] = array("q")
        self.pipeline: array[int] = array("b")
        self.library: array[int] = array("b")
        self.family: array[int] = array("B")
        self.tag_bits: array[int] = array("Q")
        self.num_parameters: array[int] = array("q")
        self.gated: array[int] = array("B")
        self.alive = bytearray()

        rng = Random(stable_seed(seed, 3))
        self.owners = _make_owners(rng, max(60, size // 6))
        self._owner_lower: dict[str, list[int]] = {}
        for i, owner in enumerate(self.owners):
            self._owner_lower.setdefault(owner.lower(), []).append(i)
        self._seen: set[str] = set()
        for _ in range(size):
            self._append(rng)
        for rev in range(1, revision + 1):
            self._apply_revision(rev)
        # Only generation needs the uniqueness set; it is the size of the id list.
        del self._seen

        self._orders: dict[str, array[int]] = {}
        self._id_rank: array[int] | None = None
        self._cache = _answer_cache()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def alive_count(self) -> int:
        return self.alive.count(1)

    # -- generation -----------------------------------------------------------------------

    def _append(self, rng: Random) -> None:
        rr = rng.random
        index = len(self.ids)
        famous = len(HF_FAMOUS_OWNERS)
        if rr() < 0.15:
            owner = int(famous * rr())
        else:
            owner = famous + int((len(self.owners) - famous) * rr() * rr())

        bits = 1 << REGION_BIT
        pipeline = -1 if rr() < 0.12 else bisect(_PIPELINE_CUM, rr() * _PIPELINE_TOTAL)
        if pipeline >= 0:
            bits |= 1 << (PIPELINE_BIT0 + pipeline)
            families = _FAMILIES_BY_PIPELINE[pipeline]
            family = families[int(rr() * len(families))]
        else:
            family = int(rr() * len(HF_FAMILIES))

        if rr() < 0.12:
            library = -1
        elif pipeline >= 0 and rr() < 0.65:
            preferred = _PREFERRED_INDEX[pipeline]
            library = preferred[int(rr() * len(preferred))]
        else:
            library = bisect(_LIBRARY_CUM, rr() * _LIBRARY_TOTAL)
        if library >= 0:
            bits |= 1 << (LIBRARY_BIT0 + library)
        if rr() < 0.55:
            bits |= 1 << (LIBRARY_BIT0 + 12)  # safetensors weights
        u = rr()
        if u < 0.05:
            bits |= 1 << (LIBRARY_BIT0 + 5)  # gguf files beside another library
        elif u < 0.08:
            bits |= 1 << (LIBRARY_BIT0 + 6)  # onnx export
        elif u < 0.11 and library == 0:
            bits |= 1 << (LIBRARY_BIT0 + 1)  # pytorch weights

        if rr() >= 0.1:
            bits |= 1 << (LICENSE_BIT0 + bisect(_LICENSE_CUM, rr() * _LICENSE_TOTAL))
        if pipeline in TEXT_PIPELINES:
            u = rr()
            if u < 0.6:
                bits |= 1 << LANGUAGE_BIT0
            if u < 0.2 or u > 0.9:
                bits |= 1 << (LANGUAGE_BIT0 + 1 + int(rr() * (len(HF_LANGUAGES) - 1)))
        if pipeline in (0, 19) and rr() < 0.7:
            bits |= 1 << FLAG_BIT0
        if library == 0:
            if pipeline == 0 and rr() < 0.6:
                bits |= 1 << (FLAG_BIT0 + 1)
            if rr() < 0.4:
                bits |= 1 << (FLAG_BIT0 + 2)
        if rr() < 0.5:
            bits |= 1 << (FLAG_BIT0 + 3)

        stem = HF_FAMILIES[family][1]
        parts = [stem[int(rr() * len(stem))]]
        if rr() < 0.6:
            parts.append(HF_VARIANTS[int(rr() * len(HF_VARIANTS))])
        if rr() < 0.5:
            parts.insert(int(rr() * 2) * len(parts), HF_TOKENS[int(rr() * len(HF_TOKENS))])
        model_id = f"{self.owners[owner]}/{'-'.join(parts)}"
        if model_id in self._seen:
            # The index is unique, so the suffixed id is too.
            model_id = f"{model_id}-{index}"
        self._seen.add(model_id)

        u = rr()
        if u < 0.08:
            params = -1
        elif u < 0.55:
            params = int(math.exp(_LOG_1E7 + (_LOG_3B - _LOG_1E7) * rr()))
        elif u < 0.80:
            params = int(math.exp(_LOG_3B + (_LOG_13B - _LOG_3B) * rr()))
        else:
            params = int(math.exp(_LOG_13B + (_LOG_400B - _LOG_13B) * rr()))

        likes = 0 if rr() < 0.45 else min(int(rng.paretovariate(0.9)), 50_000)
        created = _HF_START + int((REFERENCE_EPOCH - _HF_START) * rr() ** 0.7)
        u = rr()

        self.ids.append(model_id)
        self.owner.append(owner)
        self.likes.append(likes)
        self.likes30d.append(int(likes * 0.5 * rr()))
        self.downloads.append(0 if rr() < 0.15 else min(int(rng.lognormvariate(5, 3)), 10**8))
        self.trending.append(0 if rr() < 0.6 else min(int(rng.paretovariate(1.2)), 5000))
        self.created.append(created)
        self.modified.append(created + int((REFERENCE_EPOCH - created) * rr()))
        self.pipeline.append(pipeline)
        self.library.append(library)
        self.family.append(family)
        self.tag_bits.append(bits)
        self.num_parameters.append(params)
        self.gated.append(1 if u < 0.05 else 2 if u < 0.08 else 0)
        self.alive.append(1)

    def _apply_revision(self, rev: int) -> None:
        """Revision k: drop ~2% of the models, add ~2% new ones, move ~5% up the sorts."""
        rng = Random(stable_seed(self.seed, 4, rev))
        alive = [i for i, flag in enumerate(self.alive) if flag]
        for i in rng.sample(alive, min(len(alive), max(1, len(alive) // 50))):
            self.alive[i] = 0
        for _ in range(max(1, len(alive) // 50)):
            self._append(rng)
        alive = [i for i, flag in enumerate(self.alive) if flag]
        for i in rng.sample(alive, min(len(alive), max(1, len(alive) // 20))):
            factor = 1.5 + 4.5 * rng.random()
            self.likes[i] = int(self.likes[i] * factor) + 1 + int(rng.random() * 20)
            self.likes30d[i] = int(self.likes30d[i] * factor) + int(rng.random() * 10)
            self.downloads[i] = int(self.downloads[i] * factor) + int(rng.random() * 1000)
            self.trending[i] = int(self.trending[i] * factor) + int(rng.random() * 30)
            self.modified[i] = REFERENCE_EPOCH - int(rng.random() * 30 * DAY)

    # -- records --------------------------------------------------------------------------

    def tags(self, index: int) -> list[str]:
        """The model's tags in the Hub's usual order."""
        bits = self.tag_bits[index]
        library = self.library[index]
        out: list[str] = []
        if library >= 0:
            out.append(HF_LIBRARIES[library])
        out.extend(
            lib
            for n, lib in enumerate(HF_LIBRARIES)
            if n != library and bits >> (LIBRARY_BIT0 + n) & 1
        )
        out.append(HF_FAMILIES[self.family[index]][0])
        pipeline = self.pipeline[index]
        if pipeline >= 0:
            out.append(HF_PIPELINES[pipeline])
        if bits >> FLAG_BIT0 & 1:
            out.append(HF_FLAG_TAGS[0])
        out.extend(lang for n, lang in enumerate(HF_LANGUAGES) if bits >> (LANGUAGE_BIT0 + n) & 1)
        out.extend(
            f"license:{lic}" for n, lic in enumerate(HF_LICENSES) if bits >> (LICENSE_BIT0 + n) & 1
        )
        out.extend(
            flag for n, flag in enumerate(HF_FLAG_TAGS[1:], 1) if bits >> (FLAG_BIT0 + n) & 1
        )
        out.append("region:us")
        return out

    def license(self, index: int) -> str | None:
        bits = self.tag_bits[index]
        for n, lic in enumerate(HF_LICENSES):
            if bits >> (LICENSE_BIT0 + n) & 1:
                return lic
        return None

    def record(self, index: int) -> HfRecord:
        pipeline = self.pipeline[index]
        library = self.library[index]
        params = self.num_parameters[index]
        return HfRecord(
            index=index,
            id=self.ids[index],
            author=self.owners[self.owner[index]],
            likes=self.likes[index],
            likes30d=self.likes30d[index],
            downloads=self.downloads[index],
            trending_score=self.trending[index],
            created_at=self.created[index],
            last_modified=self.modified[index],
            pipeline_tag=HF_PIPELINES[pipeline] if pipeline >= 0 else None,
            library_name=HF_LIBRARIES[library] if library >= 0 else None,
            tags=tuple(self.tags(index)),
            num_parameters=params if params >= 0 else None,
            gated=(False, "auto", "manual")[self.gated[index]],
            family=HF_FAMILIES[self.family[index]][0],
        )

    # -- ordering -------------------------------------------------------------------------

    def sort_values(self, sort: str) -> Sequence[int]:
        if sort == "id":
            return self.id_rank()
        return {
            "trendingScore": self.trending,
            "downloads": self.downloads,
            "likes": self.likes,
            "lastModified": self.modified,
            "createdAt": self.created,
            "likes30d": self.likes30d,
        }[sort]

    def id_rank(self) -> array[int]:
        """Each model's rank among all ids in string order (so `sort=id` is an int sort)."""
        if self._id_rank is None:
            rank = array("i", bytes(4 * len(self.ids)))
            for position, index in enumerate(
                sorted(range(len(self.ids)), key=self.ids.__getitem__)
            ):
                rank[index] = position
            self._id_rank = rank
        return self._id_rank

    def sort_key(self, sort: str) -> Callable[[int], tuple[int, int]]:
        """Key under which a sort's order is ascending: value descending, then index."""
        values = self.sort_values(sort)
        return lambda i: (-values[i], i)

    @staticmethod
    def cursor_key(sort: str, value: int, index: int) -> tuple[int, int]:
        """The :meth:`sort_key` of an item known only by its value and index (from a cursor)."""
        return (-value, index)

    def order(self, sort: str) -> array[int]:
        cached = self._orders.get(sort)
        if cached is not None:
            return cached
        alive = [i for i, flag in enumerate(self.alive) if flag]
        values = self.sort_values(sort)
        # Stable descending sort: equal values keep ascending index order.
        result = array("i", sorted(alive, key=values.__getitem__, reverse=True))
        self._orders[sort] = result
        return result

    # -- queries --------------------------------------------------------------------------

    def result(self, query: HfQuery) -> QueryResult:
        """Indices of the models answering ``query``, in order (cached, found lazily)."""
        return _cached_result(self._cache, query, self.order(query.sort), self._predicates)

    def _predicates(self, q: HfQuery) -> list[Callable[[int], Any]]:
        preds: list[Callable[[int], Any]] = []
        required = 0
        families: set[int] = set()
        for tag in q.filters:
            bit = _TAG_BIT.get(tag)
            if bit is not None:
                required |= 1 << bit
            elif tag in _FAMILY_TAG_INDEX:
                families.add(_FAMILY_TAG_INDEX[tag])
            else:
                return [lambda i: False]
        if q.pipeline_tag is not None:
            if q.pipeline_tag not in HF_PIPELINES:
                return [lambda i: False]
            required |= 1 << (PIPELINE_BIT0 + HF_PIPELINES.index(q.pipeline_tag))
        if len(families) > 1:
            return [lambda i: False]
        if required:
            bits = self.tag_bits
            preds.append(lambda i: bits[i] & required == required)
        if families:
            family_column, (wanted_family,) = self.family, families
            preds.append(lambda i: family_column[i] == wanted_family)
        if q.library is not None:
            if q.library not in HF_LIBRARIES:
                return [lambda i: False]
            library_column, wanted_library = self.library, HF_LIBRARIES.index(q.library)
            preds.append(lambda i: library_column[i] == wanted_library)
        if q.author is not None:
            owners = frozenset(self._owner_lower.get(q.author, ()))
            owner = self.owner
            preds.append(lambda i: owner[i] in owners)
        if q.gated is not None:
            gated, want_gated = self.gated, q.gated
            preds.append(lambda i: bool(gated[i]) == want_gated)
        if q.num_parameters is not None:
            low, high = q.num_parameters
            low = 0 if low is None else low
            high = 1 << 62 if high is None else high
            count = self.num_parameters
            # A model without a known parameter count never matches a range.
            preds.append(lambda i: count[i] >= 0 and low <= count[i] <= high)
        if q.search is not None:
            ids, text = self.ids, q.search
            preds.append(lambda i: text in ids[i].lower())
        return preds

    def query(self, params: RawParams) -> list[str]:
        """Ids of every model a Hub listing with ``params`` returns, across all pages."""
        query, _ = parse_hf_params(params)
        ids = self.ids
        return [ids[i] for i in self.result(query)]


def _make_owners(rng: Random, count: int) -> list[str]:
    rr = rng.random
    owners = list(HF_FAMOUS_OWNERS)
    seen = {owner.lower() for owner in owners}
    while len(owners) < count:
        parts = [OWNER_PARTS[int(rr() * len(OWNER_PARTS))] for _ in range(1 + int(rr() * 3))]
        sep = ("", "-", "_", ".")[int(rr() * 4)]
        owner = sep.join(parts)
        if rr() < 0.5:
            owner = f"{owner}{int(rr() * 10_000)}"
        if rr() < 0.3:
            owner = owner.capitalize()
        if owner.lower() not in seen:
            seen.add(owner.lower())
            owners.append(owner)
    return owners


# --------------------------------------------------------------------------------------
# Both catalogues
# --------------------------------------------------------------------------------------


class Catalogue:
    """The CivitAI and Hugging Face catalogues of one emulator."""

    def __init__(
        self,
        seed: int = 0,
        civitai_models: int = 3000,
        hf_models: int = 3000,
        revision: int = 0,
    ) -> None:
        if revision < 0 or civitai_models < 0 or hf_models < 0:
            raise ValueError("sizes and revision must be >= 0")
        self.seed = seed
        self.revision = revision
        self.civitai = CivitaiCatalogue(seed, civitai_models, revision)
        self.hf = HfCatalogue(seed, hf_models, revision)

    def prepare(self) -> None:
        """Sort every order before serving, as an API's indices exist before its first query.

        Sorted on first use, each order cost the request that first asked for it tens of ms
        (100,000 models), and a crawl's first requests ask for most sorts at once: the
        emulator's own CPU then delayed its first answers well past the configured latency.
        """
        for sort in CIVITAI_SORTS:
            self.civitai.order(sort)
        for sort in HF_SORTS:
            self.hf.order(sort)

    def query_civitai(self, params: RawParams) -> list[int]:
        """Ids, in order, that paging through ``GET /api/v1/models?params`` yields.

        Raises :class:`QueryError` for parameters the API rejects.
        """
        return self.civitai.query(params)

    def query_hf(self, params: RawParams) -> list[str]:
        """Repo ids, in order, that paging through ``GET /api/models?params`` yields."""
        return self.hf.query(params)


# Small catalogues are cheap but built per emulator, and tests build hundreds of emulators
# with the same few configurations; big ones are never kept (a benchmark would pin GBs).
_SHARED_MAX_MODELS = 50_000


@lru_cache(maxsize=8)
def _shared(seed: int, civitai_models: int, hf_models: int, revision: int) -> Catalogue:
    return Catalogue(seed, civitai_models, hf_models, revision)


def catalogue_for(seed: int, civitai_models: int, hf_models: int, revision: int) -> Catalogue:
    """A catalogue for these settings, shared between emulators when it is small.

    Sharing is safe: serving only fills deterministic caches, never changes the models.
    """
    if civitai_models + hf_models <= _SHARED_MAX_MODELS:
        return _shared(seed, civitai_models, hf_models, revision)
    return Catalogue(seed, civitai_models, hf_models, revision)
