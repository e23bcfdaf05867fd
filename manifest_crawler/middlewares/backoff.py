"""Transport concerns only: retries with backoff that slow the whole API, not just one request.

Scrapy's RetryMiddleware retries at once and ignores ``Retry-After`` (scrapy#3849), and
AutoThrottle does not react to 429 (scrapy#4424). This middleware replaces the former:

- retries 408, 429, every 5xx and connection errors, through ``get_retry_request()`` (so
  stats and give-up logging stay Scrapy's), with exponential backoff and jitter;
- honours ``Retry-After`` (seconds or HTTP date) and Hugging Face's
  ``RateLimit: "api";r=<remaining>;t=<reset>``: a "wait" from the API holds back every request
  to that API (its download slot) until then, not only the retried one, plus one second, as
  huggingface_hub waits (the announced reset is rounded down to whole seconds);
- caps every wait: a Retry-After, or a RateLimit budget whose reset is further away than
  MANIFEST_MAX_RETRY_AFTER, fails the requests that would wait, naming the API and the wait; a
  ``RateLimit-Policy`` quota or window of 0 is no budget at all (unknown), not "never";
- never retries a 400;
- gives up on a host whose name does not resolve, or that refuses connections twice, and fails
  every later request to it at once, so an offline build fails in seconds, not minutes;
- lets a graceful stop end the run within a second even while requests wait here: Scrapy's
  graceful close waits for every request in the downloader, and a request waiting out a wait
  is one. A waiting request looks up every STOP_POLL seconds (and at once on the project's
  ``stop_requested`` signal); once the crawl stops (``Crawler.crawling`` false after SIGINT or
  SIGTERM, CLOSESPIDER_TIMEOUT reached, the JSON-RPC stop), it is handed back to the scheduler
  (a Request returned by ``process_request`` is rescheduled: with JOBDIR it is kept for the
  resume) instead of being sent.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Self

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware, get_retry_request
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    IgnoreRequest,
    NotConfigured,
)
from scrapy.extensions.closespider import CloseSpider
from scrapy.http import Response
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError as TxConnectionRefusedError
from twisted.internet.error import DNSLookupError

from manifest_crawler import signals as manifest_signals

logger = logging.getLogger(__name__)

#: Request.meta key: the monotonic time before which the request must not be sent.
NOT_BEFORE_META = "manifest_not_before"
#: Request.meta key set for APIs that announce their budget in RateLimit headers: under
#: MANIFEST_RATELIMIT_PROBE, until the first answer has told the budget, such a request waits
#: for the one already in flight.
RATELIMIT_PROBE_META = "manifest_ratelimit_probe"

UNRESOLVABLE_ERRORS = (CannotResolveHostError, DNSLookupError)
_UNREACHABLE_ERRORS = (
    *UNRESOLVABLE_ERRORS,
    DownloadConnectionRefusedError,
    TxConnectionRefusedError,
)
_POLICY_QUOTA_RE = re.compile(r"\bq\s*=\s*(\d+)")
_UNKNOWN_WINDOW = 1.0
#: Added to every wait an API announces (Retry-After, a RateLimit reset), as huggingface_hub
#: does: the Hub rounds its reset down to whole seconds, so a retry at exactly ``t`` can come
#: before the window has turned.
ANNOUNCED_WAIT_MARGIN = 1.0
#: Seconds between a waiting request's looks at whether the crawl is stopping.
STOP_POLL = 0.5
_POLICY_WINDOW_RE = re.compile(r"\bw\s*=\s*(\d+)")
_RATELIMIT_RE = re.compile(
    r"\br\s*=\s*(\d+)\s*;\s*t\s*=\s*(\d+)|\bt\s*=\s*(\d+)\s*;\s*r\s*=\s*(\d+)"
)


@dataclass(slots=True)
class RateBudget:
    """What an API's RateLimit headers allow us to send before its window resets."""

    #: Requests we may still send in this window; None while unknown.
    remaining: int | None = None
    reset_at: float = 0.0
    #: The window's quota and length (``RateLimit-Policy: …;q=<n>;w=<s>``), so a reset can be
    #: taken before any answer of the new window has arrived.
    quota: int | None = None
    window: float | None = None
    #: The last reset the API announced (``t``), as announced: what a refusal names.
    announced_reset: int = 0
    in_flight: int = 0
    #: Whether any answer has arrived: after one without a RateLimit header there is no budget
    #: to wait for, and probing would make the API's crawl sequential.
    answered: bool = False
    #: Requests holding back until a request in flight lands (woken by ``wake``).
    waiting: list[Deferred[None]] = field(default_factory=list)

    def until_landed(self) -> Deferred[None]:
        landed: Deferred[None] = Deferred()
        self.waiting.append(landed)
        return landed

    def wake(self) -> None:
        waiting, self.waiting = self.waiting, []
        for landed in waiting:
            if not landed.called:  # a wait cancelled with its request (the crawl stopping)
                landed.callback(None)


class HostUnreachable(IgnoreRequest):
    """A host that could not be resolved or connected to; later requests fail fast."""


class BudgetTooFar(IgnoreRequest):
    """An API's RateLimit budget is spent until a reset further away than
    MANIFEST_MAX_RETRY_AFTER: the request fails rather than wait for it."""


def backoff_delay(
    attempt: int, base: float, cap: float, jitter: float, rng: random.Random
) -> float:
    """``base * 2**(attempt-1)``, stretched by up to ``jitter`` (a fraction), capped at ``cap``.

    The jitter only lengthens the wait, so the documented schedule (1 s, 2 s, 4 s, …) is a floor,
    while concurrent retries still spread out instead of arriving together.
    """
    delay = base * 2 ** max(attempt - 1, 0)
    return min(cap, delay * (1.0 + rng.uniform(0.0, jitter)))


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def parse_ratelimit(value: str) -> tuple[int, int] | None:
    """``(remaining, seconds to reset)`` from ``"api";r=<remaining>;t=<seconds>``."""
    match = _RATELIMIT_RE.search(value)
    if not match:
        return None
    if match.group(1) is not None:
        return int(match.group(1)), int(match.group(2))
    return int(match.group(4)), int(match.group(3))


class BackoffRetryMiddleware(RetryMiddleware):
    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        if not settings.getbool("RETRY_ENABLED"):
            raise NotConfigured
        super().__init__(settings)
        self.crawler = crawler
        self.stats = crawler.stats
        self.max_retry_times = settings.getint("MANIFEST_RETRY_TIMES")
        self.base = settings.getfloat("MANIFEST_BACKOFF_INITIAL")
        self.cap = settings.getfloat("MANIFEST_BACKOFF_MAX")
        self.jitter = settings.getfloat("MANIFEST_BACKOFF_JITTER")
        self.max_wait = settings.getfloat("MANIFEST_MAX_RETRY_AFTER")
        self.probe_budget = settings.getbool("MANIFEST_RATELIMIT_PROBE")
        self.longest_wait = max(self.cap, self.max_wait + ANNOUNCED_WAIT_MARGIN)
        self.rng = random.Random()
        #: Download slot → monotonic time until which the API asked us to wait.
        self.blocked_until: dict[str, float] = {}
        #: Download slot → why its host is unreachable.
        self.unreachable: dict[str, str] = {}
        #: Download slot → its announced rate-limit budget (made at the slot's first request).
        self.budgets: defaultdict[str, RateBudget] = defaultdict(RateBudget)
        #: Download slots whose requests fail for a budget reset too far away (logged once,
        #: until a request goes out again).
        self.refusing: set[str] = set()
        #: Why the crawl is stopping, once it is (see the module docstring).
        self.stopping: str | None = None
        #: CLOSESPIDER_TIMEOUT's moment, when Scrapy's CloseSpider extension will close then.
        self.deadline: float | None = None
        #: Requests waiting here, each woken by a stop.
        self.sleepers: set[Deferred[None]] = set()
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.stop_requested, signal=manifest_signals.stop_requested)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def spider_opened(self) -> None:
        timeout = self.crawler.settings.getfloat("CLOSESPIDER_TIMEOUT")
        if timeout > 0 and self.crawler.get_extension(CloseSpider) is not None:
            # Scrapy's CloseSpider closes the spider then; no request may be waiting here.
            self.deadline = time.monotonic() + timeout

    def stop_requested(self, reason: str) -> None:
        """The project's ``stop_requested`` signal: a component is closing the spider."""
        self.stopping = self.stopping or reason
        sleepers, self.sleepers = self.sleepers, set()
        for sleeper in sleepers:
            if not sleeper.called:
                sleeper.callback(None)

    def _stop_reason(self) -> str | None:
        if self.stopping is None:
            if not self.crawler.crawling:
                # Crawler.stop_async(): SIGINT or SIGTERM (Scrapy's shutdown handlers).
                self.stopping = "shutdown"
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self.stopping = "closespider_timeout"
        return self.stopping

    async def _pause(self, seconds: float, landed: Deferred[None] | None = None) -> None:
        """Sleep ``seconds`` at most STOP_POLL, or until ``landed`` fires, or until a stop."""
        woken: Deferred[None] = Deferred()

        def wake(_: object = None) -> None:
            if not woken.called:
                woken.callback(None)

        self.sleepers.add(woken)
        timer = call_later(min(seconds, STOP_POLL), wake)
        if landed is not None:
            landed.addBoth(wake)
        try:
            await maybe_deferred_to_future(woken)
        finally:
            timer.cancel()
            self.sleepers.discard(woken)

    def _slot(self, request: Request) -> str:
        return self.crawler.engine.downloader.get_slot_key(request)

    async def process_request(self, request: Request) -> Request | None:
        slot = self._slot(request)
        if slot in self.unreachable:
            raise HostUnreachable(self.unreachable[slot])
        if request.meta.get("retry_times") and NOT_BEFORE_META not in request.meta:
            # Retried elsewhere (the spider retries bodies that are not pages): same backoff.
            delay = backoff_delay(
                request.meta["retry_times"], self.base, self.cap, self.jitter, self.rng
            )
            request.meta[NOT_BEFORE_META] = time.monotonic() + delay
        not_before = request.meta.get(NOT_BEFORE_META)
        if not_before is not None and not_before - time.monotonic() > self.longest_wait:
            # A request resumed from JOBDIR carries an earlier process's monotonic clock,
            # meaningless after a reboot: no wait is ever longer than the longest we set.
            request.meta[NOT_BEFORE_META] = time.monotonic() + self.longest_wait
        budget = self.budgets[slot]
        probe = self.probe_budget and bool(request.meta.get(RATELIMIT_PROBE_META))
        waited = False
        # Re-checked after every pause: another response may have extended the slot's wait.
        while True:
            if self._stop_reason() is not None:
                # Not sent: back to the scheduler, so that the graceful close does not wait
                # for it (with JOBDIR the resumed job sends it).
                self.stats.inc_value("manifest/backoff/handed_back")
                return request
            now = time.monotonic()
            if budget.remaining is not None and now >= budget.reset_at:
                budget.remaining = budget.quota
                # Until an answer of the new window says otherwise, it ends a window later.
                budget.reset_at += budget.window or _UNKNOWN_WINDOW
            wait = max(
                request.meta.get(NOT_BEFORE_META, 0.0) - now,
                self.blocked_until.get(slot, 0.0) - now,
            )
            if budget.remaining is not None and budget.remaining <= 0:
                if budget.reset_at - now > self.max_wait + ANNOUNCED_WAIT_MARGIN:
                    raise self._budget_too_far(slot, budget)
                wait = max(wait, budget.reset_at - now)
            if wait > 0:
                pause = self._pause(wait)
            elif budget.remaining is None and probe and budget.in_flight and not budget.answered:
                # The budget is still unknown: held back until the request in flight lands,
                # and sent the moment it does, its answer read.
                pause = self._pause(STOP_POLL, budget.until_landed())
            else:
                break
            if not waited:
                waited = True
                self.stats.inc_value("manifest/backoff/waits")
            await pause
        self.refusing.discard(slot)
        budget.in_flight += 1
        if budget.remaining is not None:
            budget.remaining -= 1
        return None

    def _budget_too_far(self, slot: str, budget: RateBudget) -> BudgetTooFar:
        message = (
            f"{slot}: the API's RateLimit budget is spent and resets in "
            f"{budget.announced_reset} s, more than MANIFEST_MAX_RETRY_AFTER="
            f"{self.max_wait:.0f}: its requests fail instead of waiting"
        )
        if slot not in self.refusing:
            self.refusing.add(slot)
            logger.error(message)
        self.stats.inc_value("manifest/ratelimit/too_far")
        return BudgetTooFar(message)

    # Scrapy calls these without the spider argument its RetryMiddleware still declares.
    def process_response(  # type: ignore[override]
        self, request: Request, response: Response
    ) -> Request | Response:
        if "cached" in response.flags:
            # MANIFEST_DEV_CACHE answered before this middleware (and any wait) was reached:
            # nothing went to the API, and its rate-limit headers are from another day.
            return response
        slot = self._slot(request)
        self._landed(slot, response)
        api_wait = self._api_wait(slot, response)
        if request.meta.get("dont_retry", False) or not self._retryable(response.status):
            return response
        if api_wait is not None and api_wait > self.max_wait:
            logger.error(
                "Not retrying %s: %s asks to wait %.0f s, more than MANIFEST_MAX_RETRY_AFTER=%.0f",
                request.url,
                slot,
                api_wait,
                self.max_wait,
            )
            return response
        retry = self._retry_after(request, f"http_{response.status}", api_wait)
        if retry is not None and response.status in (429, 503) and api_wait is None:
            # A rate limit without a hint (the CDN's 429s) still concerns the whole API.
            self._block(slot, retry.meta[NOT_BEFORE_META])
        return retry or response

    def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception
    ) -> Request | None:
        self._landed(self._slot(request))
        if request.meta.get("dont_retry", False) or isinstance(exception, IgnoreRequest):
            return None
        if not isinstance(exception, self.exceptions_to_retry):
            return None
        # A name that does not resolve will not resolve a second later; a refused connection
        # gets one more chance (a server restarting).
        if isinstance(exception, UNRESOLVABLE_ERRORS) or (
            isinstance(exception, _UNREACHABLE_ERRORS) and request.meta.get("retry_times", 0) >= 1
        ):
            self._mark_unreachable(request, exception)
            return None
        return self._retry_after(request, type(exception).__name__, None)

    def _landed(self, slot: str, response: Response | None = None) -> None:
        """A request to ``slot`` is back: one fewer in flight, the budget its answer announces
        read, then the requests held back until now woken, to find that budget."""
        budget = self.budgets[slot]
        if budget.in_flight:
            budget.in_flight -= 1
        if response is not None:
            self._read_budget(budget, response)
        budget.wake()

    def _read_budget(self, budget: RateBudget, response: Response) -> None:
        budget.answered = True
        header = response.headers.get(b"RateLimit")
        parsed = None if header is None else parse_ratelimit(header.decode("latin-1"))
        if parsed is None:
            return
        remaining, reset = parsed
        # Requests still in flight may not have been counted by the server yet: assume they
        # were not, so the budget for new requests errs on the side of fewer.
        budget.remaining = max(0, remaining - budget.in_flight)
        budget.reset_at = time.monotonic() + reset + ANNOUNCED_WAIT_MARGIN
        budget.announced_reset = reset
        policy = response.headers.get(b"RateLimit-Policy")
        if policy is not None:
            text = policy.decode("latin-1")
            # A quota or a window of 0 describes no budget that could ever be waited for:
            # unknown, so that a new window is not taken to be as empty as the last.
            if quota := _POLICY_QUOTA_RE.search(text):
                budget.quota = int(quota.group(1)) or None
            if window := _POLICY_WINDOW_RE.search(text):
                budget.window = float(window.group(1)) or None

    def _retryable(self, status: int) -> bool:
        return status in (408, 429) or 500 <= status <= 599

    def _api_wait(self, slot: str, response: Response) -> float | None:
        """How long the API asked to wait (Retry-After, or RateLimit with r=0), as announced;
        blocks the slot that long and ANNOUNCED_WAIT_MARGIN more, unless it is too long."""
        wait = None
        retry_after = response.headers.get(b"Retry-After")
        if retry_after is not None:
            wait = parse_retry_after(retry_after.decode("latin-1"))
        ratelimit = response.headers.get(b"RateLimit")
        if ratelimit is not None:
            parsed = parse_ratelimit(ratelimit.decode("latin-1"))
            if parsed is not None and parsed[0] == 0:
                wait = max(wait or 0.0, float(parsed[1]))
        if wait is not None and wait <= self.max_wait:
            self._block(slot, time.monotonic() + wait + ANNOUNCED_WAIT_MARGIN)
            self.stats.inc_value("manifest/ratelimit/waits")
        return wait

    def _block(self, slot: str, until: float) -> None:
        if until > self.blocked_until.get(slot, 0.0):
            self.blocked_until[slot] = until

    def _retry_after(self, request: Request, reason: str, api_wait: float | None) -> Request | None:
        spider = self.crawler.spider
        assert spider is not None  # requests are downloaded while the spider is open
        retry = get_retry_request(
            request,
            spider=spider,
            reason=reason,
            max_retry_times=request.meta.get("max_retry_times", self.max_retry_times),
            stats_base_key="manifest/retry",
        )
        if retry is None:
            return None
        delay = backoff_delay(retry.meta["retry_times"], self.base, self.cap, self.jitter, self.rng)
        if api_wait is not None:
            delay = max(delay, api_wait + ANNOUNCED_WAIT_MARGIN)
        retry.meta[NOT_BEFORE_META] = time.monotonic() + delay
        return retry

    def _mark_unreachable(self, request: Request, exception: Exception) -> None:
        host = urlparse_cached(request).hostname or request.url
        message = (
            f"cannot reach {host} ({type(exception).__name__}: {exception}); is there a network? "
            f"For an offline build, run: scrapy crawl all -s MANIFEST_OFFLINE=true"
        )
        slot = self._slot(request)
        if slot not in self.unreachable:
            self.unreachable[slot] = message
            logger.error(message)
        self.stats.inc_value("manifest/unreachable")
