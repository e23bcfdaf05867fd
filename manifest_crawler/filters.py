"""Load and validate ``filters.json``, the single source of truth for every filter.

Pure: no Scrapy, no reactor. Every error names the file, the entry and the field at fault;
legal but suspect definitions (two filters making one list) are ``FilterSet.warnings``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from manifest_crawler.files import NotARegularFile, open_regular
from manifest_crawler.text import described, has_control, has_unwritable

DEFAULT_SOURCES: tuple[str, ...] = ("civitai", "huggingface")

#: Query parameters that carry credentials: refused in filters.json (tokens come from the
#: environment), hidden wherever a URL is shown, never followed into the cache.
SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key"})

# The documented maxima of filters.json (README, "filters.json"): checked before the crawl,
# so that whatever an editor writes is refused in one line rather than met mid-run.
MAX_FILE_BYTES = 1 << 20
MAX_FILTERS_PER_SOURCE = 1000
#: max_items: 0 means no limit; past this a filter is a whole catalogue (the Hub's is ~2M).
MAX_ITEMS_LIMIT = 10_000_000
#: max_pages: a thousand times the pages the largest max_items fills on the Hub.
MAX_PAGES_LIMIT = 10_000_000
MAX_LABEL_LENGTH = 300
MAX_DESCRIPTION_LENGTH = 10_000
MAX_PARAMS = 50
MAX_PARAM_VALUES = 100
#: A comma-separated `ids` list of a few hundred models fits in one value.
MAX_PARAM_LENGTH = 4000
#: No number of filters.json needs more digits (max_items has 8): longer ones are refused
#: before they are converted (CPython's int() refuses 4,300 digits, and is slow well before).
_MAX_NUMBER_DIGITS = 19

#: CivitAI's content levels, mildest first, and their bits in a model's ``nsfwLevel`` mask
#: (api-notes: PG=1, PG13=2, R=4, X=8, XXX=16; 32 is Blocked, not a level).
NSFW_LEVEL_BITS: Mapping[str, int] = {"PG": 1, "PG13": 2, "R": 4, "X": 8, "XXX": 16}
_ALL_LEVELS = 31

# CivitAI orders "Highest Rated" and "Most Liked" by the same columns (api-notes): one list.
_SAME_LISTING_VALUES: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "civitai": {"sort": {"Most Liked": "Highest Rated"}},
}
# What the API assumes for a parameter a filter leaves out (api-notes).
_DEFAULT_PARAMS: Mapping[str, Mapping[str, str]] = {
    "civitai": {"sort": "Highest Rated", "period": "AllTime", "nsfw": "false"},
    "huggingface": {"sort": "trendingScore"},
}


def rating(nsfw_level: int) -> str | None:
    """A CivitAI model's rating: the highest content level in its ``nsfwLevel`` mask.

    The mask is the bit-or of every image's level, so a model rated R may also show PG and
    PG-13 images, never X or XXX. The Blocked bit (32) is no level and does not count; a mask
    without any level bit has no rating.
    """
    levels = nsfw_level & _ALL_LEVELS
    if levels <= 0:
        return None
    highest = 1 << (levels.bit_length() - 1)
    return next(name for name, bit in NSFW_LEVEL_BITS.items() if bit == highest)


def keeps_rating(rating_mask: int, nsfw_level: object) -> bool:
    """Whether a filter keeping the ratings of ``rating_mask`` keeps a model of this mask."""
    if not _is_mask(nsfw_level):
        return False
    name = rating(nsfw_level)
    return name is not None and bool(NSFW_LEVEL_BITS[name] & rating_mask)


def shares_browsing_level(browsing_levels: int, nsfw_level: object) -> bool:
    """Whether civitai.com lists a model of this mask to a visitor browsing at these levels:
    when the mask shares a bit with them (api-notes), whatever else the model shows."""
    return _is_mask(nsfw_level) and bool(nsfw_level & browsing_levels & _ALL_LEVELS)


def _is_mask(nsfw_level: object) -> TypeGuard[int]:
    return isinstance(nsfw_level, int) and not isinstance(nsfw_level, bool) and nsfw_level >= 0


#: The keys naming a CivitAI filter's content rule; every CivitAI filter gives exactly one.
RULE_KEYS = ("browsing_levels", "rated", "rated_at_most")


@dataclass(frozen=True, slots=True)
class ContentRule:
    """Which of the models a CivitAI listing returns a filter keeps, by their nsfwLevel mask.

    ``browsing_levels``: what civitai.com lists when a visitor browses at those levels, a
    model sharing a bit with them. ``rated``: the models whose rating (highest level, see
    rating()) is exactly one level; ``rated_at_most``: that level or milder.
    """

    kind: str
    #: A bitmask of NSFW_LEVEL_BITS: the browsing levels, or the ratings kept.
    levels: int

    def keeps(self, nsfw_level: object) -> bool:
        if self.kind == "browsing_levels":
            return shares_browsing_level(self.levels, nsfw_level)
        return keeps_rating(self.levels, nsfw_level)

    def may_drop(self, nsfw: bool) -> bool:
        """Whether the rule may drop models the API lists: a rating may; browsing levels only
        when narrower than the API's own (``nsfw=true`` lists all five levels, else PG)."""
        listed = _ALL_LEVELS if nsfw else NSFW_LEVEL_BITS["PG"]
        return self.kind != "browsing_levels" or bool(listed & ~self.levels)


# One path segment of a filter name: starts with a letter or digit so that no name can make a
# hidden file, a ``..`` traversal or an absolute path once ``/`` becomes ``-``.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*\Z")
_MAX_NAME_LENGTH = 150

_REQUIRED_KEYS = ("name", "label", "params")
_OPTIONAL_KEYS = ("max_items", "max_pages", *RULE_KEYS, "description")

# Parameters the crawler owns: a filter that set them would break pagination or page sizing.
_RESERVED_PARAMS: Mapping[str, Mapping[str, str]] = {
    "civitai": {
        "limit": "page size is derived from max_items",
        "cursor": "the crawler paginates by cursor itself",
        "page": "page-based paging does not move through results on CivitAI; use max_items",
        "browsingLevel": "CivitAI rejects it publicly (400); use nsfw=true and browsing_levels",
    },
    "huggingface": {
        "limit": "page size is derived from max_items",
        "cursor": "the crawler paginates by the Link header itself",
        "full": "full=true multiplies the payload for fields the manifests never use",
    },
}
_TOKEN_ENV = {"civitai": "CIVITAI_API_TOKEN", "huggingface": "HF_TOKEN"}

ParamValue = str | tuple[str, ...]


class FiltersError(ValueError):
    """filters.json is unreadable or invalid; the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class Filter:
    """One listing of the site: a named, labelled set of API query parameters."""

    source: str
    name: str
    label: str
    params: tuple[tuple[str, ParamValue], ...]
    max_items: int | None = None
    #: CivitAI only (and required there): which of the listed models the filter keeps; the
    #: API has no such parameter. None keeps every item.
    rule: ContentRule | None = None
    description: str = ""
    #: Its own page budget (filters.json ``max_pages``); None: derived (see page_budget()).
    max_pages: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.name)

    @property
    def keeps_client_side(self) -> bool:
        """Whether the filter may drop items the API returns: then a page's worth of items
        cannot be known before it is read."""
        return self.rule is not None and self.rule.may_drop(("nsfw", "true") in self.params)

    def query_pairs(self) -> list[tuple[str, str]]:
        """The params as (key, value) pairs, a list value repeating its key, in file order."""
        pairs: list[tuple[str, str]] = []
        for key, value in self.params:
            if isinstance(value, tuple):
                pairs.extend((key, item) for item in value)
            else:
                pairs.append((key, value))
        return pairs

    def param_values(self, key: str) -> tuple[str, ...]:
        for name, value in self.params:
            if name == key:
                return value if isinstance(value, tuple) else (value,)
        return ()


@dataclass(frozen=True)
class FilterSet:
    """Every filter of every source, in file order (the order all-models.json follows)."""

    path: str
    by_source: Mapping[str, tuple[Filter, ...]] = field(default_factory=dict)
    #: Legal but suspect definitions (two filters making one list, ...), one line each.
    warnings: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Filter]:
        for filters in self.by_source.values():
            yield from filters

    def __len__(self) -> int:
        return sum(len(filters) for filters in self.by_source.values())

    def for_source(self, source: str) -> tuple[Filter, ...]:
        return self.by_source.get(source, ())

    def select(self, sources: Iterable[str], names: Collection[str] | None = None) -> list[Filter]:
        """The filters of ``sources`` (in file order), restricted to ``names`` when given.

        A name may be qualified as ``source:name`` when two sources share it.
        """
        sources = tuple(sources)
        candidates = [f for source in sources for f in self.for_source(source)]
        if names is None:
            return candidates
        wanted = {name.strip() for name in names if name.strip()}
        matched = [f for f in candidates if f.name in wanted or f"{f.source}:{f.name}" in wanted]
        known = {f.name for f in matched} | {f"{f.source}:{f.name}" for f in matched}
        unknown = sorted(wanted - known)
        if unknown:
            raise FiltersError(
                f"{self.path}: unknown filter name(s) for source(s) {', '.join(sources)}: "
                f"{', '.join(unknown)}"
            )
        return matched


def load_filters(path: str | Path, sources: Collection[str] = DEFAULT_SOURCES) -> FilterSet:
    """Read and validate a filters file; raise FiltersError naming the culprit."""
    path = Path(path)
    try:
        with open_regular(path) as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise FiltersError(f"{path}: file not found (set FILTERS_FILE to its path)") from None
    except NotARegularFile as exc:
        raise FiltersError(str(exc)) from None
    except OSError as exc:
        raise FiltersError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise FiltersError(f"{path}: larger than {MAX_FILE_BYTES} bytes, the most allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FiltersError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason})") from None
    return parse_filters(text, str(path), sources)


def _json_object(path: str) -> Any:
    def make(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) != len(pairs):
            # JSON parsers keep one of the two silently: which one the editor meant is unknown.
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise FiltersError(
                        f"{path}: the key {described(key)} appears twice in one object"
                    )
                seen.add(key)
        return document

    return make


def _json_integer(path: str) -> Any:
    def make(digits: str) -> int:
        if len(digits.lstrip("-")) > _MAX_NUMBER_DIGITS:
            raise FiltersError(
                f"{path}: a number of {len(digits.lstrip('-'))} digits "
                f"({digits[:12]}…); no value of a filters file is that large"
            )
        return int(digits)

    return make


def _json_constant(path: str) -> Any:
    def refuse(name: str) -> float:
        raise FiltersError(f"{path}: {name} is not a JSON number")

    return refuse


def parse_filters(text: str, path: str, sources: Collection[str] = DEFAULT_SOURCES) -> FilterSet:
    """Validate the text of a filters file (``path`` only names it in errors)."""
    if len(text) > MAX_FILE_BYTES:
        raise FiltersError(f"{path}: larger than {MAX_FILE_BYTES} bytes, the most allowed")
    try:
        document = json.loads(
            text,
            object_pairs_hook=_json_object(path),
            parse_int=_json_integer(path),
            parse_constant=_json_constant(path),
        )
    except json.JSONDecodeError as exc:
        raise FiltersError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise FiltersError(
            f"{path}: nested too deep (a filters file is an object of lists of filter objects)"
        ) from None
    if not isinstance(document, dict):
        raise FiltersError(f"{path}: the top level must be an object keyed by source name")
    unknown_sources = [key for key in document if key not in sources]
    if unknown_sources:
        raise FiltersError(
            f"{path}: unknown source {described(unknown_sources[0])} "
            f"(known sources: {', '.join(sorted(sources))})"
        )
    by_source: dict[str, tuple[Filter, ...]] = {}
    warnings: list[str] = []
    for source in sources:
        entries = document.get(source, [])
        if not isinstance(entries, list):
            raise FiltersError(f"{path}: {source!r} must be a list of filter objects")
        if len(entries) > MAX_FILTERS_PER_SOURCE:
            raise FiltersError(
                f"{path}: {source!r} has {len(entries)} filters, more than the "
                f"{MAX_FILTERS_PER_SOURCE} allowed"
            )
        by_source[source] = _parse_source(entries, source, path)
        warnings.extend(_same_lists(by_source[source], path))
    return FilterSet(path=path, by_source=by_source, warnings=tuple(warnings))


def listing_key(filter_: Filter) -> tuple[tuple[str, str], ...]:
    """The listing the API answers ``filter_`` with, as sorted (parameter, value) pairs, once
    defaults are filled in and values the API treats alike are made one."""
    same = _SAME_LISTING_VALUES.get(filter_.source, {})
    pairs = {(key, same.get(key, {}).get(value, value)) for key, value in filter_.query_pairs()}
    given = {key for key, _ in pairs}
    pairs.update(
        (key, value)
        for key, value in _DEFAULT_PARAMS.get(filter_.source, {}).items()
        if key not in given
    )
    return tuple(sorted(pairs))


def _same_lists(filters: Iterable[Filter], path: str) -> Iterator[str]:
    """One warning per filter that would make the same list as an earlier one."""
    seen: dict[tuple[Any, ...], Filter] = {}
    for filter_ in filters:
        key = (listing_key(filter_), filter_.rule, filter_.max_items, filter_.max_pages)
        first = seen.setdefault(key, filter_)
        if first is not filter_:
            yield (
                f"{path}: {filter_.source} filters {first.name!r} and {filter_.name!r} make "
                f"the same list (same listing upstream, same rules, same max_items)"
            )


def filter_file_stem(name: str) -> str:
    """The part of a manifest's file name that comes from the filter name."""
    return name.replace("/", "-")


def _parse_source(entries: list[Any], source: str, path: str) -> tuple[Filter, ...]:
    filters: list[Filter] = []
    names: dict[str, int] = {}
    stems: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: {source}[{index}]"
        parsed = _parse_entry(entry, source, where)
        if parsed.name in names:
            raise FiltersError(
                f"{where} ({parsed.name!r}): duplicate name, already used by "
                f"{source}[{names[parsed.name]}]"
            )
        stem = filter_file_stem(parsed.name)
        if stem in stems:
            raise FiltersError(
                f"{where} ({parsed.name!r}): its manifest file name would collide with "
                f"filter {stems[stem]!r}"
            )
        names[parsed.name] = index
        stems[stem] = parsed.name
        filters.append(parsed)
    return tuple(filters)


def _parse_entry(entry: Any, source: str, where: str) -> Filter:
    if not isinstance(entry, dict):
        raise FiltersError(f"{where}: must be an object, got {type(entry).__name__}")
    name = entry.get("name")
    if name is None:
        raise FiltersError(f"{where}: missing 'name'")
    where = f"{where} ({described(name)})"
    for key in _REQUIRED_KEYS:
        if key not in entry:
            raise FiltersError(f"{where}: missing {key!r}")
    unknown = [key for key in entry if key not in _REQUIRED_KEYS + _OPTIONAL_KEYS]
    if "nsfw_levels" in unknown:
        raise FiltersError(
            f"{where}: 'nsfw_levels' is gone: {_RULES_SAID}, with params.nsfw \"true\""
        )
    if unknown:
        raise FiltersError(
            f"{where}: unknown key {described(unknown[0])} "
            f"(allowed: {', '.join(_REQUIRED_KEYS + _OPTIONAL_KEYS)})"
        )
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > _MAX_NAME_LENGTH:
        raise FiltersError(
            f"{where}: 'name' cannot make a safe file name: use segments of letters, digits, "
            f"'.', '_' and '-' separated by '/', each starting with a letter or digit, "
            f"at most {_MAX_NAME_LENGTH} characters"
        )
    label = _text(entry["label"], "label", where, MAX_LABEL_LENGTH)
    if not label.strip():
        raise FiltersError(f"{where}: 'label' must be a non-empty string")
    description = _text(entry.get("description", ""), "description", where, MAX_DESCRIPTION_LENGTH)
    return Filter(
        source=source,
        name=name,
        label=label,
        params=_parse_params(entry["params"], source, where),
        max_items=_parse_max_items(entry.get("max_items"), where),
        rule=_parse_rule(entry, source, where),
        description=description,
        max_pages=_parse_max_pages(entry.get("max_pages"), where),
    )


def _text(value: Any, key: str, where: str, limit: int, *, one_line: bool = False) -> str:
    """A string of the file that the site may show or the crawler may send: writable (no lone
    surrogate), at most ``limit`` characters, and with no control character if ``one_line``."""
    if not isinstance(value, str):
        raise FiltersError(f"{where}: {key!r} must be a string, got {described(value)}")
    if len(value) > limit:
        raise FiltersError(f"{where}: {key!r} is {len(value)} characters long, more than {limit}")
    if has_unwritable(value):
        raise FiltersError(f"{where}: {key!r} holds a lone surrogate (not valid Unicode text)")
    if one_line and has_control(value):
        raise FiltersError(f"{where}: {key!r} holds a control character")
    return value


def _parse_params(params: Any, source: str, where: str) -> tuple[tuple[str, ParamValue], ...]:
    if not isinstance(params, dict):
        raise FiltersError(f"{where}: 'params' must be an object of query parameters")
    if len(params) > MAX_PARAMS:
        raise FiltersError(f"{where}: 'params' has {len(params)} keys, more than {MAX_PARAMS}")
    parsed: list[tuple[str, ParamValue]] = []
    reserved = _RESERVED_PARAMS.get(source, {})
    for key, value in params.items():
        if not key:
            raise FiltersError(f"{where}: 'params' has an empty parameter name")
        _text(key, "params key", where, MAX_PARAM_LENGTH, one_line=True)
        if key in reserved:
            raise FiltersError(f"{where}: params.{key} is not allowed: {reserved[key]}")
        if key.lower() in SECRET_PARAMS:
            raise FiltersError(
                f"{where}: params.{key} is not allowed: put API tokens in the "
                f"{_TOKEN_ENV.get(source, 'API token')} environment variable"
            )
        field_name = f"params.{key}"
        if isinstance(value, str):
            parsed.append((key, _text(value, field_name, where, MAX_PARAM_LENGTH, one_line=True)))
        elif (
            isinstance(value, list)
            and 0 < len(value) <= MAX_PARAM_VALUES
            and all(isinstance(item, str) for item in value)
        ):
            parsed.append(
                (
                    key,
                    tuple(
                        _text(item, field_name, where, MAX_PARAM_LENGTH, one_line=True)
                        for item in value
                    ),
                )
            )
        else:
            raise FiltersError(
                f"{where}: {field_name} must be a string or a list of 1 to {MAX_PARAM_VALUES} "
                f"strings (sent verbatim as query parameters), got {described(value)}"
            )
    return tuple(parsed)


def item_limit(filter_max_items: int | None, default: int) -> int | None:
    """A filter's limit on distinct models: its own max_items, else the MANIFEST_MAX_ITEMS
    default; 0 in either place means no limit (None)."""
    limit = default if filter_max_items is None else filter_max_items
    return limit if limit > 0 else None


def page_budget(
    max_pages: int | None,
    max_items: int | None,
    page_size: int,
    scan_factor: int,
    unlimited_pages: int,
) -> int:
    """How many pages a filter may read: its own ``max_pages``, else ``scan_factor`` times the
    pages its ``max_items`` fills at ``page_size`` (the API's largest page), else, for a filter
    without a limit on models, ``unlimited_pages``. Every page counts, those that brought
    nothing new (duplicates, models its rating rule left out, invalid ones) too: a filter that
    keeps models client-side or an API that repeats itself cannot read without end."""
    if max_pages is not None:
        return max_pages
    if max_items is None:
        return unlimited_pages
    return scan_factor * max(1, -(-max_items // page_size))


def _parse_max_pages(value: Any, where: str) -> int | None:
    return _parse_count(
        value, "max_pages", where, 1, MAX_PAGES_LIMIT, "every filter's reading is bounded"
    )


def _parse_max_items(value: Any, where: str) -> int | None:
    return _parse_count(value, "max_items", where, 0, MAX_ITEMS_LIMIT, "0: no limit")


def _parse_count(
    value: Any, key: str, where: str, minimum: int, maximum: int, note: str
) -> int | None:
    """An optional count of filters.json: an integer from ``minimum`` to ``maximum``; None if
    absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise FiltersError(
            f"{where}: {key!r} must be an integer from {minimum} to {maximum} ({note}), "
            f"got {described(value)}"
        )
    return value


_RULES_SAID = (
    "give 'browsing_levels' (the models civitai.com lists at those levels), 'rated' (the "
    "model's highest level is exactly that one) or 'rated_at_most' (that one or milder)"
)


def _parse_rule(entry: Mapping[str, Any], source: str, where: str) -> ContentRule | None:
    """The filter's content rule: exactly one of RULE_KEYS for a CivitAI filter, none for
    another source. Without one a CivitAI filter would list whatever the API does, which
    ``nsfw`` alone cannot make mean a rating or what civitai.com shows (README, Rules)."""
    given = [key for key in RULE_KEYS if key in entry]
    if source != "civitai":
        if given:
            raise FiltersError(f"{where}: {given[0]!r} applies to CivitAI filters only")
        return None
    if not given:
        raise FiltersError(f"{where}: say which models the filter keeps: {_RULES_SAID}")
    if len(given) > 1:
        raise FiltersError(f"{where}: give one of {', '.join(map(repr, given))}, not several")
    key = given[0]
    nsfw = entry["params"].get("nsfw")
    if key == "browsing_levels":
        levels = _parse_levels(entry[key], where)
        if nsfw != "true" and levels != NSFW_LEVEL_BITS["PG"]:
            # nsfw=false (the default) lists browsing level PG only: a PG-13-only model would
            # be missing.
            raise FiltersError(
                f'{where}: browsing levels other than ["PG"] need params.nsfw "true": '
                f"without it the API lists browsing level PG only"
            )
        return ContentRule(key, levels)
    level = entry[key]
    if not isinstance(level, str) or level not in NSFW_LEVEL_BITS:
        raise FiltersError(
            f"{where}: {key!r} must be one of {', '.join(NSFW_LEVEL_BITS)}, got {described(level)}"
        )
    if nsfw != "true":
        # nsfw=false lists only models with a PG bit: a PG-13-only model would be missing.
        raise FiltersError(
            f'{where}: {key!r} needs params.nsfw "true": only the nsfw=true listing holds '
            f"every model, whatever its rating"
        )
    bit = NSFW_LEVEL_BITS[level]
    return ContentRule(key, bit if key == "rated" else (bit << 1) - 1)


def _parse_levels(value: Any, where: str) -> int:
    names = ", ".join(NSFW_LEVEL_BITS)
    if not isinstance(value, list) or not value:
        raise FiltersError(
            f"{where}: 'browsing_levels' must be a non-empty list of levels ({names}), "
            f"got {json.dumps(value)}"
        )
    levels = 0
    for level in value:
        if not isinstance(level, str) or level not in NSFW_LEVEL_BITS:
            raise FiltersError(
                f"{where}: 'browsing_levels' must list levels among {names}, got {level!r}"
            )
        levels |= NSFW_LEVEL_BITS[level]
    return levels
