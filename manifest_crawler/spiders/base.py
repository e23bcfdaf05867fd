"""The spider shell shared by every source: filter selection, pagination control, dedup.

What an API looks like (query building, page parsing, next-page discovery) lives in the
source's own module of apis/ as a SourceAPI; this module only drives them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import zip_longest
from typing import Any, ClassVar, Self

import orjson
import scrapy
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import CannotResolveHostError, DownloadCancelledError, IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.settings import BaseSettings
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.statscollectors import StatsCollector
from twisted.internet.defer import CancelledError
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure

from manifest_crawler.apis.base import (
    Page,
    PageError,
    SourceAPI,
    query_value,
    redact_url,
)
from manifest_crawler.apis.normalize import InvalidModel, normalize_model
from manifest_crawler.critical_path import chain_pages_left
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.filters import FiltersError
from manifest_crawler.items import ModelEntry, ModelPage
from manifest_crawler.ledger import FilterState, FilterStatus, Ledger
from manifest_crawler.middlewares.backoff import RATELIMIT_PROBE_META

logger = logging.getLogger(__name__)

#: Request.meta key holding the (source, filter name) keys of the filters a page is for: more
#: than one when filters ask the API for the same listing (see chains()).
FILTER_META = "manifest_filters"


def start_order(states: Iterable[FilterState]) -> list[FilterState]:
    """The filters in the order chains() groups them, which is the order their first pages go
    in among chains of equal estimated length (start() sends the longest first): every
    source's filters in turn, and within a source those that keep items client-side (by their
    content rule) first, as they need the most pages. Only the sending order changes;
    manifests and reports keep file order.
    """
    by_source: dict[str, list[FilterState]] = {}
    for state in states:
        by_source.setdefault(state.filter.source, []).append(state)
    queues = [
        sorted(group, key=lambda state: not state.filter.keeps_client_side)
        for group in by_source.values()
    ]
    return [state for turn in zip_longest(*queues) for state in turn if state is not None]


def chains(states: Iterable[FilterState]) -> list[list[FilterState]]:
    """The filters grouped by the listing they ask the API for (source and parameters), in
    ``start_order``: each group is crawled as one chain of pages whose items every member
    takes, by its own rules and up to its own max_items.

    filter/pg, filter/pg13, filter/r and filter/x, for one, all read CivitAI's NSFW listing
    and keep different levels client-side: one chain of pages instead of four identical ones
    is a quarter of the requests on the longest chains of a crawl.
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[FilterState]] = {}
    for state in start_order(states):
        key = (state.filter.source, tuple(sorted(state.filter.query_pairs())))
        groups.setdefault(key, []).append(state)
    return list(groups.values())


def chain_page_size(states: Iterable[FilterState], api: SourceAPI) -> int:
    """The size of a chain's next page: what its filters still want, up to the API's largest
    page; the largest page when a filter keeps items client-side (it cannot know how many a
    page will keep) or has no limit."""
    sizes = []
    for state in states:
        remaining = state.remaining
        if state.filter.keeps_client_side or remaining is None:
            return api.max_page_size
        sizes.append(remaining)
    return min(max(sizes), api.max_page_size)


def take_models(
    state: FilterState, api: SourceAPI, items: list[Any], stats: StatsCollector
) -> Iterator[ModelEntry]:
    """The models a page's raw ``items`` give ``state``'s filter, in order: those its own
    rules keep, normalised (apis/normalize.py), none it already has, at most what it still
    wants. Every item left out is counted (in ``state`` and ``stats``) and the model taken
    noted in ``state``. Plain, so that the per-model rules are the same whoever drives the
    pages (the spider; bench/plain.py)."""
    source, name = state.filter.source, state.filter.name
    for item in items:
        if not isinstance(item, dict):
            stats.inc_value("manifest/dropped/not_an_object")
            continue
        if not api.keep(state.filter, item):
            state.excluded += 1
            continue
        mismatch = api.mismatch(state.filter, item)
        if mismatch is not None:
            state.mismatched += 1
            state.first_mismatch = state.first_mismatch or mismatch
            stats.inc_value(f"manifest/{source}/mismatched")
        try:
            model = normalize_model(source, api.raw_id(item), api.raw_name(item))
        except InvalidModel as exc:
            # It takes no place in the filter.
            stats.inc_value(f"manifest/dropped/{exc.reason}")
            stats.inc_value(f"manifest/{source}/dropped")
            logger.warning("Dropped a model of %s:%s: %s", source, name, exc)
            continue
        # Interned: every filter listing a model then holds one string for its id (the
        # writer interns the same), not a copy per filter (a million models, measured).
        model_id = sys.intern(model.id)
        if model_id in state.seen_ids:
            state.duplicates += 1
            stats.inc_value("manifest/dropped/duplicate")
            continue
        rank = state.models
        state.seen_ids.add(model_id)
        yield ModelEntry(source, name, rank, model_id, model.slug, model.name)
        if state.remaining == 0:
            return


class ManifestSpider(scrapy.Spider):
    """Crawl every selected filter of ``source_apis`` to max_items or its last page."""

    source_apis: ClassVar[tuple[type[SourceAPI], ...]] = ()

    ledger: Ledger
    apis: dict[str, SourceAPI]
    max_empty_pages: int
    max_retry_times: int

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        # The RunState extension selects this spider's filters (extensions/runstate.py).
        settings.set("MANIFEST_SOURCES", [api.name for api in cls.source_apis], priority="spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        sources = [api.name for api in cls.source_apis]
        if crawler.settings.getlist("MANIFEST_SOURCES") != sources:
            # It selects the filters (RunState): the spider's own sources, never another's.
            raise FiltersError(
                f"MANIFEST_SOURCES is set by the spider {cls.name!r} ({', '.join(sources)})"
            )
        names = kwargs.get("filters")
        if names is not None:
            # `-a filters=a,b`, handed on as a setting (as Scrapy's docs show for spider
            # arguments) to the RunState extension, which selects the filters.
            if crawler.settings.frozen:
                raise RuntimeError(
                    "-a filters needs the spider made before the crawl's components, as "
                    "`scrapy crawl` and CrawlerProcess.crawl() do; set MANIFEST_FILTERS instead"
                )
            crawler.settings.set("MANIFEST_FILTERS", names, priority="spider")
        spider.max_empty_pages = crawler.settings.getint("MANIFEST_MAX_EMPTY_PAGES")
        spider.max_retry_times = crawler.settings.getint("MANIFEST_RETRY_TIMES")
        return spider

    async def start(self) -> AsyncIterator[Any]:
        run = self.crawler.get_extension(RunState)
        if run is None:
            raise RuntimeError(f"{type(self).__name__} needs the RunState extension")
        self.ledger = run.ledger
        self.apis = {}
        for api_cls in self.source_apis:
            token = os.environ.get(api_cls.token_env) or None
            self.apis[api_cls.name] = api_cls(self.settings[api_cls.url_setting], token)
        # A resumed job (JOBDIR): a filter that is not PENDING finished in an earlier
        # process, or its next page waits in the job's request queue.
        pending = [
            [state for state in chain if state.status is FilterStatus.PENDING]
            for chain in chains(self.ledger)
        ]
        # Scrapy sends the first requests as they come, before the rest are queued by
        # priority: the longest chains first from the start too.
        pending = sorted(filter(None, pending), key=self._pages_left, reverse=True)
        for chain in pending:
            for state in chain:
                state.start()
            yield self._page_request(chain, after=None)

    def _pages_left(self, states: list[FilterState]) -> int:
        return chain_pages_left(states, self.apis[states[0].filter.source].max_page_size)

    def _page_request(self, states: list[FilterState], after: Page | None) -> scrapy.Request:
        """The next page of a chain, for the filters of ``states`` (one listing)."""
        lead = states[0]
        api = self.apis[lead.filter.source]
        meta = {
            FILTER_META: tuple(state.filter.key for state in states),
            "download_slot": api.name,
            RATELIMIT_PROBE_META: api.announces_rate_limit,
        }
        return scrapy.Request(
            api.page_url(lead.filter, chain_page_size(states, api), after),
            headers=api.headers,
            callback=self.parse_page,
            errback=self.page_failed,
            # The chain with the most pages left first, started or not: the critical path
            # (critical_path.py; the scheduler's queue, pqueues.py, keeps to it per API).
            priority=self._pages_left(states),
            dont_filter=True,
            meta=meta,
        )

    def parse_page(self, response: Response) -> Iterator[Any]:
        request = response.request
        assert request is not None  # a response handed to a callback has its request
        states = self._unfinished(request)
        if not states:
            return
        api = self.apis[states[0].filter.source]
        try:
            page = api.parse(response)
        except PageError as exc:
            yield from self._retry_or_fail(states, response, exc)
            return
        self.crawler.stats.inc_value(f"manifest/{api.name}/pages")
        going_on = []
        for state in states:
            state.pages += 1
            # The page's final response carries how many times it was retried.
            state.retries += response.meta.get("retry_times", 0)
            # One item per filter and page, not per model: Scrapy's per-item path (spider
            # middlewares, the item pipeline, signals, a log record) then runs once a page.
            models = list(take_models(state, api, page.items, self.crawler.stats))
            if models:
                yield ModelPage(state.filter.source, state.filter.name, models)
            if self._goes_on(state, api, page, request):
                going_on.append(state)
        if going_on:
            assert page.next_cursor is not None
            for state in going_on:
                state.cursors.add(page.next_cursor)
            yield self._page_request(going_on, after=page)

    def _unfinished(self, request: scrapy.Request) -> list[FilterState]:
        return [
            state
            for state in (self.ledger[key] for key in request.meta[FILTER_META])
            if not state.finished
        ]

    def _goes_on(
        self, state: FilterState, api: SourceAPI, page: Page, request: scrapy.Request
    ) -> bool:
        """Whether the filter wants the page after ``page``; if not, it is finished."""
        if page.items:
            state.empty_pages = 0
        else:
            state.empty_pages += 1
        if state.remaining == 0:
            self._finish(state, FilterStatus.DONE, "max_items")
        elif page.next_cursor is None and page.end_reason is not None:
            logger.warning(
                "%s:%s: the API pointed onwards with a cursor it would refuse (%s); ending "
                "the filter at %d models",
                state.filter.source,
                state.filter.name,
                page.end_reason,
                state.models,
            )
            self.crawler.stats.inc_value(f"manifest/{api.name}/{page.end_reason}")
            self._finish(state, FilterStatus.DONE, page.end_reason)
        elif page.next_cursor is None:
            self._finish(state, FilterStatus.DONE, "last_page")
        elif page.next_cursor in state.cursors or page.next_cursor == query_value(
            request.url, "cursor"
        ):
            # The cursor of an earlier page, or the one this page was asked with (which the
            # spider may have adjusted, see CivitaiAPI.page_url): the chain would loop.
            logger.warning(
                "%s:%s: the API repeated cursor %r; ending the filter at %d models",
                state.filter.source,
                state.filter.name,
                page.next_cursor,
                state.models,
            )
            self.crawler.stats.inc_value(f"manifest/{api.name}/repeated_cursor")
            self._finish(state, FilterStatus.DONE, "repeated_cursor")
        elif state.empty_pages > self.max_empty_pages:
            detail = (
                f"{state.empty_pages} empty pages in a row that still carry a cursor "
                f"(MANIFEST_MAX_EMPTY_PAGES={self.max_empty_pages})"
            )
            self._fail(state, request, detail, "empty_pages")
        else:
            return True
        return False

    def _retry_or_fail(
        self, states: list[FilterState], response: Response, exc: PageError
    ) -> Iterator[scrapy.Request]:
        request = response.request
        assert request is not None  # a response handed to a callback has its request
        retry = get_retry_request(
            request,
            spider=self,
            reason=exc.reason,
            max_retry_times=self.max_retry_times,
            stats_base_key="manifest/retry",
        )
        if retry is not None:
            retry.meta.pop("download_latency", None)
            yield retry
        else:
            self._fail_chain(states, request, str(exc), exc.reason)

    def page_failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        states = self._unfinished(request)
        if not states:
            return
        error = failure.value
        if isinstance(error, HttpError):
            response = error.response
            detail = f"HTTP {response.status}{_error_detail(response)}"
            quiet = False
        elif failure.check(DownloadCancelledError, CancelledError):
            # The only downloads cancelled before the crawl closes are those past the cap.
            maxsize = request.meta.get("download_maxsize", self.settings.getint("DOWNLOAD_MAXSIZE"))
            detail = f"the answer passed DOWNLOAD_MAXSIZE ({maxsize} bytes) and was dropped"
            quiet = False
        else:
            detail = f"{type(error).__name__}: {failure.getErrorMessage()}"
            # A name that does not resolve, or a request the transport ignored (it ignores
            # every later request to a host it found unreachable): the transport said so once,
            # loudly; no need for one error line per filter.
            quiet = failure.check(IgnoreRequest, CannotResolveHostError, DNSLookupError) is not None
        self._fail_chain(states, request, detail, "request_failed", quiet=quiet)

    def _fail_chain(
        self,
        states: list[FilterState],
        request: scrapy.Request,
        detail: str,
        reason: str,
        *,
        quiet: bool = False,
    ) -> None:
        """Every filter of a chain fails with its page, counting the page's retries."""
        for state in states:
            state.retries += request.meta.get("retry_times", 0)
            self._fail(state, request, detail, reason, quiet=quiet)

    def _fail(
        self,
        state: FilterState,
        request: scrapy.Request,
        detail: str,
        reason: str,
        *,
        quiet: bool = False,
    ) -> None:
        url = redact_url(request.url)
        state.errors.append(f"{detail} at {url}")
        logger.log(
            logging.DEBUG if quiet else logging.ERROR,
            "%s:%s failed: %s at %s",
            state.filter.source,
            state.filter.name,
            detail,
            url,
        )
        self._finish(state, FilterStatus.FAILED, reason)

    def _finish(self, state: FilterState, status: FilterStatus, reason: str) -> None:
        state.finish(status, reason)
        if state.mismatched:
            logger.warning(
                "%s:%s: %d of the items the API returned do not satisfy the filter's "
                "parameters (first: %s); is a parameter misspelled in %s? APIs ignore "
                "unknown parameters and return an unfiltered list",
                state.filter.source,
                state.filter.name,
                state.mismatched,
                state.first_mismatch,
                self.settings["FILTERS_FILE"],
            )


def _error_detail(response: Response) -> str:
    """The API's own error message, if its body carries one (CivitAI and HF use JSON)."""
    if not isinstance(response, TextResponse):
        return ""
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict):
        message = body.get("error") or body.get("message")
        if isinstance(message, str) and message:
            return f" ({message[:200]})"
    return ""
