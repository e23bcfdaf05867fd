"""Checks of what a run is given (settings, spider arguments, the filter selection),
done before any request: a bad value is one line naming it, what was given and what is
allowed, and the exit status 2, rather than a traceback, a silent default or a crawl of
everything."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from scrapy.exceptions import NotConfigured
from scrapy.settings import BaseSettings
from scrapy.spiderloader import get_spider_loader

from manifest_crawler.extensions.jsonrpc_settings import is_loopback, port_range
from manifest_crawler.files import FolderLock, FolderLocked, file_kind, non_regular
from manifest_crawler.filters import (
    MAX_ITEMS_LIMIT,
    MAX_PAGES_LIMIT,
    FiltersError,
    FilterSet,
    load_filters,
)
from manifest_crawler.output.changes import CHANGES_FILE
from manifest_crawler.output.manifests import ALL_MODELS_FILE, manifest_filename
from manifest_crawler.output.runreport import RUN_REPORT_FILE
from manifest_crawler.output.sitemap import SitemapError, parse_patterns
from manifest_crawler.text import shown

#: The exit status of a run refused before it started (bad settings, arguments or filters).
EXIT_USAGE = 2

#: The spider arguments the spiders read; ``_job`` is the one Scrapyd adds to every job.
SPIDER_ARGUMENTS = frozenset({"filters", "_job"})


class InputError(ValueError):
    """A setting, a spider argument or the filter selection cannot be used; ``str()`` is the
    one line to print after ``error: ``."""


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return shown(text)


def _integer(settings: BaseSettings, name: str, minimum: int, maximum: int | None = None) -> None:
    raw = settings.get(name)
    if isinstance(raw, str) and len(raw.strip().lstrip("+-")) > 19:
        value = None  # converting thousands of digits is slow, or refused by int() itself
    else:
        try:
            value = settings.getint(name)
        except (TypeError, ValueError):
            value = None
    if (
        value is None
        or isinstance(raw, float)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        allowed = (
            f"an integer from {minimum} to {maximum}"
            if maximum is not None
            else f"an integer of at least {minimum}"
        )
        raise InputError(f"{name}={_shown(raw)}: must be {allowed}")


def _number(
    settings: BaseSettings, name: str, minimum: float, maximum: float | None = None
) -> None:
    try:
        value = settings.getfloat(name)
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value) or value < minimum or (maximum is not None and value > maximum):
        allowed = (
            f"a number from {minimum:g} to {maximum:g}"
            if maximum is not None
            else f"a number of at least {minimum:g}"
        )
        raise InputError(f"{name}={_shown(settings.get(name))}: must be {allowed}")


#: What Scrapy documents for a boolean setting (its getbool also takes any integer as one).
_BOOLEANS = frozenset({"0", "1", "True", "False", "true", "false"})


def _boolean(settings: BaseSettings, name: str) -> None:
    value = settings.get(name)
    number = isinstance(value, bool | int) and value in (0, 1)
    if not (number or (isinstance(value, str) and value in _BOOLEANS)):
        raise InputError(
            f"{name}={_shown(value)}: must be a boolean (true, false, 1 or 0, as Scrapy reads them)"
        )


def _choice(settings: BaseSettings, name: str, choices: Collection[str]) -> None:
    if settings.get(name) not in choices:
        raise InputError(
            f"{name}={_shown(settings.get(name))}: must be one of {', '.join(choices)}"
        )


def _path(settings: BaseSettings, name: str) -> None:
    value = settings.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name}={_shown(value)}: must be a non-empty path")


def _api_url(settings: BaseSettings, name: str) -> None:
    value = settings.get(name)
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError:  # an invalid port or IPv6 literal
        parts = host = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise InputError(f"{name}={_shown(value)}: must be an http:// or https:// URL with a host")


def _sitemap(settings: BaseSettings) -> None:
    value = settings.get("MANIFEST_SITEMAP_URL")
    if not value:
        return
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"MANIFEST_SITEMAP_URL={value}: not valid JSON: {exc}") from None
    try:
        if not parse_patterns(value, ("civitai", "huggingface")):
            raise SitemapError("names no source")
    except SitemapError as exc:
        raise InputError(f"MANIFEST_SITEMAP_URL={_shown(value)}: {exc}") from None
    _path(settings, "MANIFEST_SITEMAP_FILE")
    base_url = settings.get("MANIFEST_SITEMAP_BASE_URL")
    if base_url is not None:
        _api_url(settings, "MANIFEST_SITEMAP_BASE_URL")


def _jsonrpc(settings: BaseSettings) -> None:
    _boolean(settings, "JSONRPC_ENABLED")
    if not settings.getbool("JSONRPC_ENABLED"):
        return
    try:
        port_range(settings.get("JSONRPC_PORT"))
    except NotConfigured as exc:
        raise InputError(str(exc)) from None
    host = settings.get("JSONRPC_HOST") or "127.0.0.1"
    token = settings.get("JSONRPC_TOKEN") or os.environ.get("JSONRPC_TOKEN")
    if not isinstance(host, str) or (not is_loopback(host) and not str(token or "").strip()):
        raise InputError(
            f"JSONRPC_HOST={_shown(host)}: a host other than loopback needs JSONRPC_TOKEN "
            "(setting or environment variable)"
        )


#: name -> check of every setting the project defines that a run reads, in settings.py order.
CHECKS: Mapping[str, Callable[[BaseSettings], None]] = {
    "CIVITAI_API_URL": lambda s: _api_url(s, "CIVITAI_API_URL"),
    "HF_API_URL": lambda s: _api_url(s, "HF_API_URL"),
    "FILTERS_FILE": lambda s: _path(s, "FILTERS_FILE"),
    "MANIFEST_DIR": lambda s: _path(s, "MANIFEST_DIR"),
    "MANIFEST_MAX_ITEMS": lambda s: _integer(s, "MANIFEST_MAX_ITEMS", 0, MAX_ITEMS_LIMIT),
    "MANIFEST_MAX_EMPTY_PAGES": lambda s: _integer(s, "MANIFEST_MAX_EMPTY_PAGES", 0),
    "MANIFEST_SCAN_FACTOR": lambda s: _integer(s, "MANIFEST_SCAN_FACTOR", 1, 1000),
    "MANIFEST_MAX_PAGES": lambda s: _integer(s, "MANIFEST_MAX_PAGES", 1, MAX_PAGES_LIMIT),
    "MANIFEST_OFFLINE": lambda s: _boolean(s, "MANIFEST_OFFLINE"),
    "MANIFEST_MAX_SHRINK": lambda s: _number(s, "MANIFEST_MAX_SHRINK", 0, 1),
    "MANIFEST_STRICT": lambda s: _boolean(s, "MANIFEST_STRICT"),
    "MANIFEST_RETRY_TIMES": lambda s: _integer(s, "MANIFEST_RETRY_TIMES", 0),
    "MANIFEST_BACKOFF_INITIAL": lambda s: _number(s, "MANIFEST_BACKOFF_INITIAL", 0),
    "MANIFEST_BACKOFF_MAX": lambda s: _number(s, "MANIFEST_BACKOFF_MAX", 0),
    "MANIFEST_BACKOFF_JITTER": lambda s: _number(s, "MANIFEST_BACKOFF_JITTER", 0, 1),
    "MANIFEST_MAX_RETRY_AFTER": lambda s: _number(s, "MANIFEST_MAX_RETRY_AFTER", 0),
    "MANIFEST_RATELIMIT_PROBE": lambda s: _boolean(s, "MANIFEST_RATELIMIT_PROBE"),
    "JSONRPC_ENABLED": _jsonrpc,
    "MANIFEST_PROGRESS_INTERVAL": lambda s: _number(s, "MANIFEST_PROGRESS_INTERVAL", 0),
    "MANIFEST_PROGRESS_BAR": lambda s: _choice(
        s, "MANIFEST_PROGRESS_BAR", ("auto", "always", "never")
    ),
    "MANIFEST_SITEMAP_URL": _sitemap,
    "MANIFEST_DEV_CACHE": lambda s: _boolean(s, "MANIFEST_DEV_CACHE"),
    "MANIFEST_DEV_CACHE_TTL": lambda s: _number(s, "MANIFEST_DEV_CACHE_TTL", 0),
    "DOWNLOAD_MAXSIZE": lambda s: _integer(s, "DOWNLOAD_MAXSIZE", 0),
    "DOWNLOAD_WARNSIZE": lambda s: _integer(s, "DOWNLOAD_WARNSIZE", 0),
    # Scrapy's own run deadline (its CloseSpider extension), the README's way to bound a build.
    "CLOSESPIDER_TIMEOUT": lambda s: _number(s, "CLOSESPIDER_TIMEOUT", 0),
}


def check_settings(settings: BaseSettings) -> None:
    """Raise InputError for the first setting of CHECKS whose value cannot be used."""
    for name, check in CHECKS.items():
        if name in settings:
            check(settings)


def check_spider_arguments(arguments: Iterable[str]) -> None:
    """Raise InputError naming the ``-a`` arguments no spider reads (a typo of ``filters``
    would otherwise crawl everything)."""
    unknown = sorted(set(arguments) - SPIDER_ARGUMENTS)
    if unknown:
        raise InputError(
            f"unknown spider argument(s) {', '.join(f'-a {name}' for name in unknown)} "
            "(the spiders take -a filters=NAME,NAME,…)"
        )


def check_selection(filter_set: FilterSet, sources: Iterable[str], names: str | None) -> None:
    """Raise InputError when ``-a filters=…`` names no filter, and FiltersError (naming the
    file) when the selection is empty or names an unknown filter."""
    sources = tuple(sources)
    if names is not None and not any(name.strip() for name in names.split(",")):
        raise InputError(f"-a filters={names}: names no filter (give NAME,NAME,…)")
    selected = filter_set.select(sources, None if names is None else names.split(","))
    if not selected:
        raise FiltersError(f"{filter_set.path}: no filters for source(s) {', '.join(sources)}")


def check_crawl_input(
    settings: BaseSettings, args: Sequence[str], spargs: Mapping[str, str]
) -> FilterSet:
    """Check the input of ``scrapy crawl <spider>`` (settings, ``-a`` arguments, the filters
    file and the selection) and return the filters file as read, for the run to use (it is
    read once). Raises InputError or FiltersError, whose ``str()`` is the one line to print.
    An unknown spider or a wrong number of arguments is left to the command's usage error."""
    check_settings(settings)
    check_spider_arguments(spargs)
    filter_set = load_filters(settings["FILTERS_FILE"])
    if len(args) == 1:
        try:
            spider_cls = get_spider_loader(settings).load(args[0])
        except KeyError:
            return filter_set
        if hasattr(spider_cls, "source_apis"):
            sources = [api.name for api in spider_cls.source_apis]
            check_selection(filter_set, sources, spargs.get("filters"))
    return filter_set


def _os_reason(error: OSError) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    where = error.filename
    return f"{reason} ({where})" if where is not None else reason


def _writable_folder(folder: Path) -> str | None:
    """Why the process cannot create or write into ``folder``, or None: it is a folder we may
    write, or the nearest existing folder above it is one we may create it in."""
    for place in (folder, *folder.parents):
        try:
            mode = place.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            if place.is_symlink():
                return f"{place} is a symbolic link to nothing"
            continue  # not there (or under a file, found further up): created on the way
        except OSError as exc:
            return _os_reason(exc)
        if not stat.S_ISDIR(mode):
            return f"{place} is {file_kind(mode)}, not a folder"
        if not os.access(place, os.W_OK | os.X_OK):
            read_only = os.statvfs(place).f_flag & os.ST_RDONLY
            why = "a read-only file system" if read_only else "no write permission"
            return (
                f"not writable ({why})"
                if place == folder
                else f"cannot be created in {place} ({why})"
            )
        return None
    return None


def _read_or_replaced(folder: Path, filter_set: FilterSet) -> Iterator[Path]:
    """The names in MANIFEST_DIR the run reads (previous manifests, all-models.json) or
    replaces (those, changes.json, run-report.json): every filter's, selected or not, since
    all-models.json is rebuilt from every manifest of filters.json."""
    for filter_ in filter_set:
        yield folder / manifest_filename(filter_.source, filter_.name)
    for name in (ALL_MODELS_FILE, CHANGES_FILE, RUN_REPORT_FILE):
        yield folder / name


def _refuse_non_regular(paths: Iterable[Path]) -> None:
    for path in paths:
        kind = non_regular(path)
        if kind is not None:
            raise InputError(
                f"{path} is {kind}, not a regular file: the run would read or replace it "
                "(remove it or choose another MANIFEST_DIR)"
            )


def _sitemap_files(settings: BaseSettings) -> list[Path]:
    if not settings.get("MANIFEST_SITEMAP_URL"):
        return []
    sitemap = Path(settings["MANIFEST_SITEMAP_FILE"])
    problem = _writable_folder(sitemap.parent)
    if problem is not None:
        raise InputError(f"MANIFEST_SITEMAP_FILE={sitemap}: its folder: {problem}")
    # The index and the children (sitemap-1.xml, …) an earlier, larger sitemap left.
    return [sitemap, *sitemap.parent.glob(f"{sitemap.stem}-*{sitemap.suffix}")]


def claim_output_folder(settings: BaseSettings, filter_set: FilterSet) -> FolderLock:
    """Before any request: make MANIFEST_DIR (with its parents), take the run's lock on it
    (files.FolderLock: one run per folder), and refuse anything at a name the run reads or
    replaces, there or at the sitemap, that is not a regular file (a FIFO would hang the run's
    close). Raises InputError naming the folder or the file; the run holds the lock it returns
    until it ends (RunState releases it)."""
    folder = Path(settings["MANIFEST_DIR"])
    shown = f"MANIFEST_DIR={settings['MANIFEST_DIR']}"
    problem = _writable_folder(folder)
    if problem is not None:
        raise InputError(f"{shown}: {problem}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FolderLock.acquire(folder)
    except FolderLocked as exc:
        raise InputError(f"{shown}: {exc} (one run per folder)") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot be written: {_os_reason(exc)}") from None
    try:
        _refuse_non_regular([*_read_or_replaced(folder, filter_set), *_sitemap_files(settings)])
    except BaseException:
        lock.release()
        raise
    return lock
