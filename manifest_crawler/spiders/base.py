"""The spider shell shared by every source: filter selection, pagination control, dedup.

What an API looks like (query building, page parsing, next-page discovery) lives in the
source's own module of apis/ as a SourceAPI; this module only drives them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import zip_longest
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import CannotResolveHostError, DownloadCancelledError, IgnoreRequest
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.defer import CancelledError
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure

from manifest_crawler.apis.base import (
    Page,
    PageError,
    SourceAPI,
    api_error_message,
    query_value,
    redact_url,
    with_query_param,
)
from manifest_crawler.apis.selection import Selection, select_items
from manifest_crawler.critical_path import chain_pages_left
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.filters import Filter, FiltersError, load_filters, page_budget
from manifest_crawler.items import ModelEntry, ModelPage
from manifest_crawler.ledger import PAGE_BUDGET_REASON, FilterState, FilterStatus, Ledger
from manifest_crawler.middlewares.backoff import RATELIMIT_PROBE_META
from manifest_crawler.text import shown

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


class ManifestSpider(scrapy.Spider):
    """Crawl every selected filter of ``source_apis`` to max_items or its last page."""

    source_apis: ClassVar[tuple[type[SourceAPI], ...]] = ()

    ledger: Ledger
    apis: dict[str, SourceAPI]
    max_empty_pages: int
    max_retry_times: int
    scan_factor: int
    unlimited_pages: int

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
        spider.scan_factor = crawler.settings.getint("MANIFEST_SCAN_FACTOR")
        spider.unlimited_pages = crawler.settings.getint("MANIFEST_MAX_PAGES")
        return spider

    async def start(self) -> AsyncIterator[Any]:
        run = self.crawler.get_extension(RunState)
        if run is None:
            raise RuntimeError(f"{type(self).__name__} needs the RunState extension")
        self.ledger = run.ledger
        self.crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        self.apis = {
            api_cls.name: api_cls(self.settings[api_cls.url_setting])
            for api_cls in self.source_apis
        }
        for state in self.ledger:
            state.max_pages = page_budget(
                state.filter.max_pages,
                state.max_items,
                self.apis[state.filter.source].max_page_size,
                self.scan_factor,
                self.unlimited_pages,
            )
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

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """The callback of ``scrapy parse --spider=<name> <API listing URL>``: the entries
        this spider keeps of the page, as items, and the request of the next page.

        Each filter of filters.json whose parameters the URL carries takes the page's items
        by its own rules (a rating, say), as in a run; a URL of no filter shows every entry
        with a valid id. A manifest run does not use it (its pages go to parse_page).
        """
        api = self._api_for(response.url)
        if api is None:
            endpoints = [self.settings[cls.url_setting] for cls in self.source_apis]
            logger.error(
                "%s is not a listing URL of %s (give --spider=<source>)",
                redact_url(response.url),
                " or ".join(endpoints),
            )
            return
        try:
            page = api.parse(response)
        except PageError as exc:
            logger.error("%s: not a page of %s: %s", redact_url(response.url), api.name, exc)
            return
        for filter_ in self._filters_for(api, response.url):
            selection = select_items(api, filter_, page.items, (), None)
            yield from self._entries(FilterState(filter_, max_items=None), api, selection)
        if page.next_cursor is not None:
            next_url = page.next_url or with_query_param(response.url, "cursor", page.next_cursor)
            yield scrapy.Request(next_url, headers=api.headers, callback=self.parse)

    def _api_for(self, url: str) -> SourceAPI | None:
        """This spider's API that serves ``url``: the one whose endpoint setting the URL
        starts with, else, for a spider of one source, that source's API at the URL's own
        endpoint (a person named it: an emulator, say), whose next pages it then follows."""
        for cls in self.source_apis:
            if url.startswith(self.settings[cls.url_setting]):
                return cls(self.settings[cls.url_setting])
        if len(self.source_apis) == 1:
            return self.source_apis[0](urlunsplit(urlsplit(url)._replace(query="", fragment="")))
        return None

    def _filters_for(self, api: SourceAPI, url: str) -> list[Filter]:
        """The filters of FILTERS_FILE whose parameters ``url`` carries (those the crawler
        owns, such as the cursor, aside), else one of no rule named after none."""
        owned = {"limit", "cursor", "expand"}
        query = sorted(
            (key, value)
            for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)
            if key not in owned
        )
        try:
            filters = load_filters(self.settings["FILTERS_FILE"]).for_source(api.name)
        except FiltersError as exc:
            logger.warning("%s: no filter rule applies", exc)
            filters = ()
        found = [f for f in filters if sorted(f.query_pairs()) == query]
        if found:
            logger.info(
                "%s is the page of filter(s) %s",
                redact_url(url),
                ", ".join(f"{f.source}:{f.name}" for f in found),
            )
            return found
        params: dict[str, list[str]] = {}
        for key, value in query:
            params.setdefault(key, []).append(value)
        values = tuple((key, tuple(values)) for key, values in params.items())
        return [Filter(source=api.name, name="(no filter)", label="", params=values)]

    def parse_page(self, response: Response) -> list[Any]:
        """What a page yields (its models, then the chain's next page, or a retry of it).

        Whatever the page holds or our handling of it raises costs this chain's filters at
        most, never the crawl's other filters: the page is read and every filter's items are
        selected before any state changes, so a page that fails there is retried like any
        bad answer, then fails its filters with the reason; a failure after that (a bug of
        ours) fails them at once. Built whole before the first yield, so that no filter is
        left half-way with none of its page's output.
        """
        request = response.request
        assert request is not None  # a response handed to a callback has its request
        states = self._unfinished(request)
        if not states:
            return []
        api = self.apis[states[0].filter.source]
        try:
            page = api.parse(response)
            selections = [
                select_items(api, state.filter, page.items, state.seen_ids, state.remaining)
                for state in states
            ]
        except PageError as exc:
            return list(self._retry_or_fail(states, response, exc))
        except Exception as exc:  # see the docstring
            logger.debug("Reading %s raised", redact_url(request.url), exc_info=True)
            error = PageError("unreadable_page", f"reading the page raised {_exception(exc)}")
            return list(self._retry_or_fail(states, response, error))
        try:
            return self._commit(states, api, page, selections, response)
        except Exception as exc:  # see the docstring
            logger.debug("Handling %s raised", redact_url(request.url), exc_info=True)
            detail = f"handling the page raised {_exception(exc)} (a crawler bug)"
            self._fail_chain(states, request, detail, "internal_error")
            return []

    def _commit(
        self,
        states: list[FilterState],
        api: SourceAPI,
        page: Page,
        selections: list[Selection],
        response: Response,
    ) -> list[Any]:
        request = response.request
        assert request is not None
        self.crawler.stats.inc_value(f"manifest/{api.name}/pages")
        self.ledger.page_fetched(api.name)
        outputs: list[Any] = []
        going_on = []
        for state, selection in zip(states, selections, strict=True):
            state.pages += 1
            state.items_read += len(page.items)
            # The page's final response carries how many times it was retried.
            state.retries += response.meta.get("retry_times", 0)
            # One item per filter and page, not per model: Scrapy's per-item path (spider
            # middlewares, the item pipeline, signals, a log record) then runs once a page.
            models = self._entries(state, api, selection)
            if models:
                outputs.append(ModelPage(state.filter.source, state.filter.name, models))
            if self._goes_on(state, api, page, request):
                going_on.append(state)
        if going_on:
            assert page.next_cursor is not None
            for state in going_on:
                state.cursors.add(page.next_cursor)
            outputs.append(self._page_request(going_on, after=page))
        return outputs

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
        elif state.max_pages is not None and state.pages >= state.max_pages:
            self._stop_short(state, api)
        else:
            return True
        return False

    def _stop_short(self, state: FilterState, api: SourceAPI) -> None:
        """The filter read its page budget: it ends with the models it has, reported short."""
        own = state.filter.max_pages is not None
        budget = (
            f"its max_pages={state.max_pages}"
            if own
            else f"its page budget of {state.max_pages} (MANIFEST_SCAN_FACTOR, MANIFEST_MAX_PAGES)"
        )
        share = state.kept_share
        logger.warning(
            "%s:%s: stopped by %s with %d of %s models (it kept %s of the %d items read); "
            "written short",
            state.filter.source,
            state.filter.name,
            budget,
            state.models,
            "no limit of" if state.max_items is None else state.max_items,
            "none" if not share else f"{share:.1%}",
            state.items_read,
        )
        self.crawler.stats.inc_value(f"manifest/{api.name}/short")
        self._finish(state, FilterStatus.DONE, PAGE_BUDGET_REASON)

    def _entries(
        self, state: FilterState, api: SourceAPI, selection: Selection
    ) -> list[ModelEntry]:
        """The filter takes what was selected for it from a page, and counts what it left."""
        source, name = state.filter.source, state.filter.name
        stats = self.crawler.stats
        state.excluded += selection.excluded
        if selection.mismatched:
            state.mismatched += selection.mismatched
            state.first_mismatch = state.first_mismatch or selection.first_mismatch
            stats.inc_value(f"manifest/{source}/mismatched", selection.mismatched)
        if selection.duplicates:
            state.duplicates += selection.duplicates
            stats.inc_value("manifest/dropped/duplicate", selection.duplicates)
        if selection.dropped:
            # They take no place in the filter.
            total = selection.dropped.total()
            for reason, count in selection.dropped.items():
                state.dropped[reason] = state.dropped.get(reason, 0) + count
                stats.inc_value(f"manifest/dropped/{reason}", count)
            stats.inc_value(f"manifest/{source}/dropped", total)
            logger.warning(
                "Dropped %d model(s) of %s:%s (%s): %s%s",
                total,
                source,
                name,
                ", ".join(f"{reason} {count}" for reason, count in selection.dropped.items()),
                "; ".join(selection.drop_notes),
                " …" if total > len(selection.drop_notes) else "",
            )
        entries = []
        for model in selection.models:
            rank = state.models
            state.seen_ids.add(model.id)
            entries.append(ModelEntry(source, name, rank, model.id, model.slug, model.name))
        return entries

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
            # From the API itself: the dev cache (MANIFEST_DEV_CACHE) may hold the bad answer.
            retry.meta["dont_cache"] = True
            yield retry
        else:
            self._fail_chain(states, request, str(exc), exc.reason)

    def page_failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        states = self._unfinished(request)
        if not states:
            return
        try:
            detail, quiet = self._failure_detail(failure, request)
        except Exception as exc:  # the filters fail all the same
            error = failure.value if failure.value is not None else exc
            detail = f"{_exception(error)} (telling more raised {_exception(exc)})"
            quiet = False
        self._fail_chain(states, request, detail, "request_failed", quiet=quiet)

    def _failure_detail(self, failure: Failure, request: scrapy.Request) -> tuple[str, bool]:
        """What a failed request's failure says, and whether it was already logged loudly."""
        error = failure.value
        if isinstance(error, HttpError):
            response = error.response
            message = api_error_message(response.body)
            detail = f"HTTP {response.status}" + (f" ({message})" if message else "")
            quiet = False
        elif failure.check(DownloadCancelledError, CancelledError):
            # The only downloads cancelled before the crawl closes are those past the cap.
            maxsize = request.meta.get("download_maxsize", self.settings.getint("DOWNLOAD_MAXSIZE"))
            detail = f"the answer passed DOWNLOAD_MAXSIZE ({maxsize} bytes) and was dropped"
            quiet = False
        else:
            detail = _exception(error) if error is not None else failure.getErrorMessage()
            # A name that does not resolve, or a request the transport ignored (it ignores
            # every later request to a host it found unreachable, and middlewares/origin.py
            # every request off the APIs' origins): the transport said so once, loudly; no
            # need for one error line per filter.
            quiet = failure.check(IgnoreRequest, CannotResolveHostError, DNSLookupError) is not None
        return detail, quiet

    def spider_idle(self) -> None:
        """Nothing is left to request or parse: a filter still running has lost its chain of
        pages (a request some component dropped without a word, a bug). It fails saying so,
        rather than being reported unfinished with no error."""
        for state in self.ledger:
            if state.status is FilterStatus.RUNNING:
                self.crawler.stats.inc_value("manifest/lost_chains")
                self._fail(
                    state,
                    None,
                    "its next page was lost: nothing was left to fetch or parse while the "
                    "filter was still running (a crawler bug)",
                    "lost",
                )

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
        request: scrapy.Request | None,
        detail: str,
        reason: str,
        *,
        quiet: bool = False,
    ) -> None:
        # What a server said is in the detail: one line, bounded, valid UTF-8, in the log as
        # in the run report.
        detail = shown(detail, 1000)
        error = detail if request is None else f"{detail} at {shown(redact_url(request.url), 500)}"
        state.errors.append(error)
        logger.log(
            logging.DEBUG if quiet else logging.ERROR,
            "%s:%s failed: %s",
            state.filter.source,
            state.filter.name,
            error,
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


def _exception(error: BaseException) -> str:
    """An exception as an error message names it: its type and its message, bounded."""
    message = shown(str(error), 300)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
