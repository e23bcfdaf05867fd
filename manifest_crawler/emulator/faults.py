"""Which fault, if any, each request gets: configuration and per-request decisions.

Everything is deterministic given ``FaultConfig.seed``: transient failures and probabilistic
faults are a function of (seed, URL, attempt number), not of arrival order, so concurrent
crawls see the same faults run after run. Only latency jitter draws from a seeded stream.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

import orjson

CIVITAI = "civitai"
HUGGINGFACE = "huggingface"
APIS: tuple[str, ...] = (CIVITAI, HUGGINGFACE)

TRANSIENT_KINDS: tuple[str, ...] = (
    "429-retry-after",  # 429 with Retry-After: <retry_after>
    "429",  # CDN 429, HTML body, no Retry-After
    "503",  # 503 with Retry-After: 2 (search overloaded)
    "500",  # 500 {"message": ...}
    "502",  # CDN pages: HTML body, no Retry-After
    "504",
    "524",
    "html-200",  # a CDN challenge page served with status 200
    "truncated",  # status 200, the real JSON body cut mid-way
)

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=UTF-8"


Matcher = Mapping[str, str | Sequence[str]] | tuple[tuple[str, tuple[str, ...]], ...]


def _freeze_matcher(matcher: Matcher) -> tuple[tuple[str, tuple[str, ...]], ...]:
    items = matcher.items() if isinstance(matcher, Mapping) else matcher
    return tuple(
        sorted(
            (key, (wanted,) if isinstance(wanted, str) else tuple(wanted)) for key, wanted in items
        )
    )


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


@dataclass(frozen=True)
class FaultConfig:
    """Faults to inject; every one is off by default.

    ``*_apis`` restrict a fault family to some of ``("civitai", "huggingface")``.
    """

    seed: int = 0
    # Latency: every response waits latency ± jitter (uniform) seconds, without blocking.
    latency: float = 0.0
    jitter: float = 0.0
    latency_apis: tuple[str, ...] = APIS
    # Per-API latency, (api, latency, jitter) triples (a mapping api -> (latency, jitter) is
    # accepted too): the real APIs differ (CivitAI 1-3 s, the Hub 0.2-0.5 s). An API listed here
    # waits its own latency ± jitter instead of the two above.
    api_latency: tuple[tuple[str, float, float], ...] = ()
    # Transient errors: each distinct URL fails its first ``transient_failures`` attempts,
    # cycling through ``fault_kinds``; beyond those, each attempt fails with ``fault_rate``.
    transient_failures: int = 0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = TRANSIENT_KINDS
    retry_after: int = 1
    transient_apis: tuple[str, ...] = APIS
    # Permanent failure of requests carrying every key=value of one matcher.
    fail_matching: tuple[Matcher, ...] = ()
    fail_status: int = 500
    fail_apis: tuple[str, ...] = APIS
    # CivitAI cursor quirks (pages are numbered from 1 along a cursor chain).
    cursor_loop_page: int = 0  # page N answers with the cursor it was asked with
    # These pages (>= 2) come back empty once, with a cursor naming the row before them.
    empty_pages: tuple[int, ...] = ()
    # Issue #1111: the cursor names the row after the next page's first, which is lost.
    skip_at_boundary: bool = False
    # Raw control characters inside CivitAI descriptions (strict JSON parsers fail).
    control_chars: bool = False
    # Hub rate limit: ``hf_rate_limit`` calls per fixed window of ``hf_rate_window`` s.
    hf_rate_limit: int = 0
    hf_rate_window: float = 300.0
    # Every answer of these APIs is a 200 whose JSON body never ends, sent without a
    # Content-Length: what a broken proxy or a hostile server can send.
    endless_body_apis: tuple[str, ...] = ()
    # Every answer of these APIs is the first page of its listing (the cursor asked with is
    # ignored) pointing on to a cursor never sent before: a chain that never ends by itself.
    endless_cursor_apis: tuple[str, ...] = ()
    # Literal RateLimit / RateLimit-Policy values every Hub answer carries instead of the
    # budget's, e.g. '"api";r=0;t=999999999' or '"fixed window";"api";q=0;w=0': what a
    # hostile or broken server can announce.
    hf_ratelimit_header: str = ""
    hf_ratelimit_policy_header: str = ""

    def __post_init__(self) -> None:
        # Frozen, yet lists/strings are handy for callers: normalise them to tuples.
        for name in (
            "latency_apis",
            "transient_apis",
            "fail_apis",
            "fault_kinds",
            "endless_body_apis",
            "endless_cursor_apis",
        ):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        object.__setattr__(self, "empty_pages", tuple(int(p) for p in self.empty_pages))
        per_api = self.api_latency
        if isinstance(per_api, Mapping):
            per_api = tuple((api, *pair) for api, pair in per_api.items())
        per_api = tuple(sorted((str(a), float(m), float(j)) for a, m, j in per_api))
        object.__setattr__(self, "api_latency", per_api)
        unknown = {api for api, _mean, _jitter in per_api} - set(APIS)
        if unknown:
            raise ValueError(f"api_latency: unknown API(s) {sorted(unknown)}; use {APIS}")
        if any(mean < 0 or jitter < 0 for _api, mean, jitter in per_api):
            raise ValueError("api_latency: latency and jitter must be >= 0")
        # Matchers become sorted (key, values) tuples: the config stays hashable and two
        # configs naming the same matchers compare equal.
        object.__setattr__(
            self, "fail_matching", tuple(_freeze_matcher(m) for m in self.fail_matching)
        )
        for name in (
            "latency_apis",
            "transient_apis",
            "fail_apis",
            "endless_body_apis",
            "endless_cursor_apis",
        ):
            unknown = set(getattr(self, name)) - set(APIS)
            if unknown:
                raise ValueError(f"{name}: unknown API(s) {sorted(unknown)}; use {APIS}")
        unknown = set(self.fault_kinds) - set(TRANSIENT_KINDS)
        if unknown:
            raise ValueError(f"fault_kinds: unknown {sorted(unknown)}; use {TRANSIENT_KINDS}")
        if not self.fault_kinds and (self.transient_failures or self.fault_rate):
            raise ValueError("fault_kinds must not be empty when transient faults are on")
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        if self.transient_failures < 0:
            raise ValueError("transient_failures must be >= 0")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        if not 400 <= self.fail_status <= 599:
            raise ValueError("fail_status must be a 4xx or 5xx status")
        if self.cursor_loop_page == 1 or self.cursor_loop_page < 0:
            raise ValueError("cursor_loop_page must be 0 (off) or >= 2")
        if any(p < 2 for p in self.empty_pages):
            # Upstream the bug shows mid-chain; page 1 has no cursor to be "empty but carry".
            raise ValueError("empty_pages are page numbers >= 2")
        if self.hf_rate_limit < 0 or self.hf_rate_window <= 0:
            raise ValueError("hf_rate_limit must be >= 0 and hf_rate_window > 0")
        for name in ("hf_ratelimit_header", "hf_ratelimit_policy_header"):
            if any(ord(char) < 32 or ord(char) > 126 for char in getattr(self, name)):
                raise ValueError(f"{name} must be printable ASCII (it is sent as a header)")


@dataclass(frozen=True, slots=True)
class Fault:
    """A response to send instead of (or, for "truncated", derived from) the real one."""

    kind: str
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RateLimitVerdict:
    allowed: bool
    remaining: int  # calls left in the window after this one
    reset_in: float  # seconds until the window resets
    exhausted_on_arrival: bool  # the budget was already 0 when the request came
    headers: tuple[tuple[str, str], ...]


class FixedWindowLimiter:
    """The Hub's fixed-window budget; the first call opens the first window."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._origin: float | None = None
        self._window_index = -1
        self._used = 0

    def hit(self) -> RateLimitVerdict:
        now = self._clock()
        if self._origin is None:
            self._origin = now
        index = math.floor((now - self._origin) / self.window)
        if index != self._window_index:
            self._window_index = index
            self._used = 0
        reset_in = self._origin + (index + 1) * self.window - now
        exhausted = self._used >= self.limit
        if not exhausted:
            self._used += 1
        remaining = self.limit - self._used
        # The reset in whole seconds, rounded down as the Hub sends it: a client that retries
        # at exactly t can come up to a second early (huggingface_hub waits t + 1).
        headers = (
            ("RateLimit", f'"api";r={remaining};t={math.floor(reset_in)}'),
            (
                "RateLimit-Policy",
                f'"fixed window";"api";q={self.limit};w={max(1, math.ceil(self.window))}',
            ),
        )
        return RateLimitVerdict(not exhausted, remaining, reset_in, exhausted, headers)


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj)


def _cdn_page(status: int, title: str) -> bytes:
    return (
        f"<!DOCTYPE html>\n<html><head><title>{status}: {title}</title></head>"
        f'<body><div class="cf-error-details"><h1>{title}</h1>'
        f"<p>Error code {status}</p><p>Ray ID: 8f1c2a3b4c5d6e7f</p>"
        "<p>Performance &amp; security by Cloudflare</p></div></body></html>\n"
    ).encode()


_CHALLENGE_PAGE = (
    b"<!DOCTYPE html><html lang='en-US'><head><title>Just a moment...</title></head>"
    b"<body><noscript>Enable JavaScript and cookies to continue</noscript>"
    b"<div id='cf-challenge'>Checking your browser before accessing the site.</div>"
    b"</body></html>\n"
)


def transient_fault(kind: str, retry_after: int = 1) -> Fault:
    """The response a transient fault ``kind`` sends (for "truncated": an empty marker)."""
    match kind:
        case "429-retry-after":
            body = _json({"error": "Too Many Requests"})
            return Fault(kind, 429, body, headers=(("Retry-After", str(retry_after)),))
        case "429":
            return Fault(kind, 429, _cdn_page(429, "Too Many Requests"), HTML)
        case "503":
            body = _json({"error": "Service Unavailable: search is overloaded"})
            return Fault(kind, 503, body, headers=(("Retry-After", "2"),))
        case "500":
            return Fault(kind, 500, _json({"message": "Internal server error"}))
        case "502":
            return Fault(kind, 502, _cdn_page(502, "Bad gateway"), HTML)
        case "504":
            return Fault(kind, 504, _cdn_page(504, "Gateway time-out"), HTML)
        case "524":
            return Fault(kind, 524, _cdn_page(524, "A timeout occurred"), HTML)
        case "html-200":
            return Fault(kind, 200, _CHALLENGE_PAGE, HTML)
        case "truncated":
            return Fault(kind, 200, b"")
    raise ValueError(f"unknown fault kind {kind!r}")


def _permanent_body(api: str, status: int) -> dict[str, Any]:
    """A refusal in each API's real shape (api-notes): a 5xx ``{"message": …}``; a 4xx from
    CivitAI a Zod error object, from the Hub ``{"error": "…"}``."""
    if status >= 500:
        return {"message": "Internal server error"}
    if api == CIVITAI:
        issue = {"code": "custom", "path": [], "message": "Bad request"}
        return {"error": {"issues": [issue], "name": "ZodError"}}
    return {"error": "Bad request"}


def truncate(body: bytes) -> bytes:
    """Cut a body mid-way: what a dropped upstream connection leaves a CDN to forward."""
    return body[: max(1, len(body) // 2)]


def _unit(seed: int, *parts: object) -> int:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def matches(matcher: Matcher, query: Mapping[str, list[str]]) -> bool:
    """True if the query carries every key=value of the matcher (any of repeated values)."""
    for key, wanted in _freeze_matcher(matcher):
        values = query.get(key, [])
        if any(value not in values for value in wanted):
            return False
    return True


class FaultInjector:
    """Per-request fault decisions for one emulator (holds the attempt counts)."""

    def __init__(self, config: FaultConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.attempts: dict[str, int] = {}
        self._jitter = Random(config.seed)
        self._api_latency = {api: (mean, jitter) for api, mean, jitter in config.api_latency}
        self.limiter = (
            FixedWindowLimiter(config.hf_rate_limit, config.hf_rate_window, clock)
            if config.hf_rate_limit
            else None
        )

    def delay(self, api: str) -> float:
        cfg = self.config
        latency, jitter = self._api_latency.get(api, (cfg.latency, cfg.jitter))
        if api not in self._api_latency and api not in cfg.latency_apis:
            return 0.0
        if not (latency or jitter):
            return 0.0
        return max(0.0, latency + self._jitter.uniform(-jitter, jitter))

    def rate_limit(self, api: str) -> RateLimitVerdict | None:
        if api != HUGGINGFACE or self.limiter is None:
            return None
        return self.limiter.hit()

    def announced_limits(self, api: str) -> tuple[tuple[str, str], ...]:
        """The literal RateLimit headers configured for ``api``'s answers (the Hub's only)."""
        cfg = self.config
        if api != HUGGINGFACE:
            return ()
        return tuple(
            (name, value)
            for name, value in (
                ("RateLimit", cfg.hf_ratelimit_header),
                ("RateLimit-Policy", cfg.hf_ratelimit_policy_header),
            )
            if value
        )

    def decide(self, api: str, url: str, query: Mapping[str, list[str]]) -> Fault | None:
        """Permanent failures first, then transient ones (which count the attempt)."""
        cfg = self.config
        if api in cfg.fail_apis and any(matches(m, query) for m in cfg.fail_matching):
            return Fault("permanent", cfg.fail_status, _json(_permanent_body(api, cfg.fail_status)))
        if api not in cfg.transient_apis or not (cfg.transient_failures or cfg.fault_rate):
            return None
        attempt = self.attempts.get(url, 0)
        self.attempts[url] = attempt + 1
        kinds = cfg.fault_kinds
        if attempt < cfg.transient_failures:
            kind = kinds[(_unit(cfg.seed, "kind", url) + attempt) % len(kinds)]
            return transient_fault(kind, cfg.retry_after)
        if cfg.fault_rate and _unit(cfg.seed, "rate", url, attempt) / 2**64 < cfg.fault_rate:
            kind = kinds[_unit(cfg.seed, "rate-kind", url, attempt) % len(kinds)]
            return transient_fault(kind, cfg.retry_after)
        return None

    def expected_kinds(self, url: str) -> list[str]:
        """The kinds the first ``transient_failures`` attempts at ``url`` get (for tests)."""
        cfg = self.config
        start = _unit(cfg.seed, "kind", url)
        return [
            cfg.fault_kinds[(start + n) % len(cfg.fault_kinds)]
            for n in range(cfg.transient_failures)
        ]
