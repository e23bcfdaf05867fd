"""Checks of what a run is given (settings, spider arguments, the filter selection),
done before any request: a bad value is one line naming it, what was given and what is
allowed, and the exit status 2, rather than a traceback, a silent default or a crawl of
everything."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
from scrapy.exceptions import NotConfigured
from scrapy.settings import BaseSettings
from scrapy.spiderloader import get_spider_loader

from manifest_crawler.extensions.jsonrpc_settings import is_loopback, port_range
from manifest_crawler.filters import FiltersError, FilterSet, load_filters
from manifest_crawler.output.sitemap import SitemapError, parse_patterns

#: The exit status of a run refused before it started (bad settings, arguments or filters).
EXIT_USAGE = 2

#: The spider arguments the spiders read; ``_job`` is the one Scrapyd adds to every job.
SPIDER_ARGUMENTS = frozenset({"filters", "_job"})


class InputError(ValueError):
    """A setting, a spider argument or the filter selection cannot be used; ``str()`` is the
    one line to print after ``error: ``."""


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def _integer(settings: BaseSettings, name: str, minimum: int) -> None:
    try:
        value = settings.getint(name)
    except (TypeError, ValueError):
        value = None
    raw = settings.get(name)
    if value is None or isinstance(raw, float) or value < minimum:
        raise InputError(f"{name}={_shown(raw)}: must be an integer of at least {minimum}")


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


def _manifest_run(settings: BaseSettings) -> None:
    _boolean(settings, "MANIFEST_RUN")
    if not settings.getbool("MANIFEST_RUN"):
        raise InputError(
            "MANIFEST_RUN=false: scrapy crawl always makes a manifest run (Scrapy's tools, "
            "scrapy shell, fetch, view, parse and check, set it to false themselves)"
        )


#: name -> check of every setting the project defines that a run reads, in settings.py order.
CHECKS: Mapping[str, Callable[[BaseSettings], None]] = {
    "CIVITAI_API_URL": lambda s: _api_url(s, "CIVITAI_API_URL"),
    "HF_API_URL": lambda s: _api_url(s, "HF_API_URL"),
    "FILTERS_FILE": lambda s: _path(s, "FILTERS_FILE"),
    "MANIFEST_RUN": _manifest_run,
    "MANIFEST_DIR": lambda s: _path(s, "MANIFEST_DIR"),
    "MANIFEST_MAX_ITEMS": lambda s: _integer(s, "MANIFEST_MAX_ITEMS", 0),
    "MANIFEST_MAX_EMPTY_PAGES": lambda s: _integer(s, "MANIFEST_MAX_EMPTY_PAGES", 0),
    "MANIFEST_OFFLINE": lambda s: _boolean(s, "MANIFEST_OFFLINE"),
    "MANIFEST_MAX_SHRINK": lambda s: _number(s, "MANIFEST_MAX_SHRINK", 0, 1),
    "MANIFEST_KEEP_ORPHANS": lambda s: _boolean(s, "MANIFEST_KEEP_ORPHANS"),
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
