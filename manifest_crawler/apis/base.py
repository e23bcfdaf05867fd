"""What the crawler knows of an API's shape, common to every source: a SourceAPI builds page
URLs, parses a page into raw items and the next page, and says which items a filter's own rules
keep. Pure: no reactor, no spider; the spider (spiders/base.py) drives them.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import orjson
from scrapy.http import Response

from manifest_crawler.filters import SECRET_PARAMS, Filter
from manifest_crawler.text import described, shown

#: A ``rel`` parameter of one link of a ``Link`` header (RFC 8288), quoted or not.
_REL_RE = re.compile(r';\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))', re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Longer JSON integers are taken as +-infinity: no value a page holds for the crawler (ids,
#: levels, cursors) has more than 20 digits, and converting a long one costs quadratic time
#: (CPython refuses more than 4,300 digits outright).
_MAX_INTEGER_DIGITS = 100
#: Real cursors are tens of characters (CivitAI's ``75363|932023|257749``, the Hub's base64).
_MAX_CURSOR_LENGTH = 1000


class PageError(ValueError):
    """A response body that is not the page shape the API promises (retried, then fatal):
    not JSON, nested too deep, of the wrong shape, or naming a next page off the API."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class Page:
    items: list[Any]
    #: The opaque position of the next page; None on the last page.
    next_cursor: str | None
    #: The next page's URL when the API names it (a Link header); else it is built from
    #: the base URL, the filter's params and the cursor.
    next_url: str | None = None
    #: Why the listing ends here although the API pointed onwards (the ledger's end reason);
    #: None on an ordinary last page.
    end_reason: str | None = None


def redact_url(url: str) -> str:
    """The URL with every credential-like query parameter's value and any user information
    hidden, for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an invalid port or IPv6 literal: no part can be told apart
        return "<an invalid URL>"
    if "@" in parts.netloc:
        parts = parts._replace(netloc="REDACTED@" + parts.netloc.rpartition("@")[2])
    if parts.query:
        pairs = [
            (key, "REDACTED" if key.lower() in SECRET_PARAMS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(pairs))
    return urlunsplit(parts)


def shown_url(url: str) -> str:
    """A URL a server gave, as logs and the run report may show it: redacted, escaped, short."""
    return shown(redact_url(url), 200)


class Origin(NamedTuple):
    """Where requests go: scheme, host (lower case) and port (the scheme's default if none)."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def url_origin(url: str) -> Origin | None:
    """The origin of an http(s) URL; None for any other scheme, no host, user information
    (credentials in a URL are never the API's) or an invalid port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def off_the_api(url: str, base_url: str) -> str | None:
    """Why ``url``, a next page a response named, is not a page of the listing at ``base_url``
    (another scheme, host, port or path: the token must never go there, nor its content into
    a manifest of this origin); None when it is one."""
    origin = url_origin(url)
    if origin is None or origin != url_origin(base_url):
        return f"not on the API's origin {url_origin(base_url)}"
    if urlsplit(url).path != urlsplit(base_url).path:
        return f"not the listing's path {urlsplit(base_url).path}"
    return None


def build_url(base_url: str, pairs: Iterable[tuple[str, str]]) -> str:
    """``base_url`` with ``pairs`` appended to its query (spaces as %20, never +)."""
    parts = urlsplit(base_url)
    query = urlencode(list(pairs), quote_via=quote)
    if parts.query:
        query = f"{parts.query}&{query}" if query else parts.query
    return urlunsplit(parts._replace(query=query))


def with_query_param(url: str, key: str, value: str) -> str:
    """``url`` with every ``key`` parameter replaced by one ``key=value``."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != key]
    pairs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(pairs, quote_via=quote)))


def next_link(response: Response) -> str | None:
    """The absolute target of the ``Link: <…>; rel="next"`` header, if any."""
    for header in response.headers.getlist(b"Link"):
        target = link_target(header.decode("latin-1"), "next")
        if target is not None:
            return response.urljoin(target)
    return None


def link_target(value: str, rel: str) -> str | None:
    """The target of the first link of a ``Link`` header value whose ``rel`` names ``rel``.

    Read in one pass, link by link (a regular expression over the whole value took seconds
    on a hostile header of 60 KB): each link is ``<target>`` and its parameters up to the
    next ``<``.
    """
    position = 0
    while (start := value.find("<", position)) >= 0:
        end = value.find(">", start + 1)
        if end < 0:
            return None
        following = value.find("<", end + 1)
        position = len(value) if following < 0 else following
        for match in _REL_RE.finditer(value, end + 1, position):
            names = (match.group(1) or match.group(2) or "").lower().split()
            if rel in names:
                return value[start + 1 : end]
    return None


def query_value(url: str, key: str) -> str | None:
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == key:
            return value
    return None


def _bounded_integer(digits: str) -> int | float:
    if len(digits) > _MAX_INTEGER_DIGITS:
        return -math.inf if digits.startswith("-") else math.inf
    return int(digits)


def load_json(body: bytes) -> Any:
    """Parse a JSON body, accepting raw control characters inside strings.

    orjson is strict (RFC 8259) and several times faster; pages with raw control characters
    (which CivitAI sometimes sends), lone surrogates or integers past 64 bits fall back to the
    tolerant standard parser. Its strings may then hold lone surrogates (the rules of
    normalize.py repair what is written), and integers of more than 100 digits become
    +-infinity, as orjson makes them. A body nested past the interpreter's recursion limit is
    not a page.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(
                body.decode("utf-8", errors="replace"), strict=False, parse_int=_bounded_integer
            )
        except RecursionError:
            raise PageError("too_deep", "body is nested too deep to be a page") from None
        except ValueError as exc:
            raise PageError("invalid_json", f"body is not JSON ({shown(str(exc), 200)})") from None


def cursor_text(value: Any) -> str:
    """A next-page cursor a page gave, as the next request will send it: a string (at most
    1,000 printable characters) or an integer within 64 bits; PageError for anything else
    (the chain cannot go on from it)."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, str) and len(value) <= _MAX_CURSOR_LENGTH and value.isprintable():
        return value
    raise PageError("invalid_cursor", f"the next-page cursor {described(value)} is not usable")


def api_error_message(body: bytes) -> str | None:
    """The message an API's error body carries, if it is JSON of a known shape: the Hub's
    ``{"error": "…"}``, CivitAI's ``{"message": "…"}`` and its Zod error objects
    ``{"error": {"issues": [{"path": […], "message": "…"}, …]}}`` (one ``path: message`` per
    issue, the first three). Escaped and bounded, for the log and the run report."""
    if len(body) > 1 << 20:
        return None
    try:
        document = load_json(body)
    except PageError:
        return None
    if not isinstance(document, dict):
        return None
    message = _message_of(document.get("error"))
    if message is None:
        message = _message_of(document.get("message"))
    return None if message is None else shown(message, 300)


def _message_of(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        stripped = value.strip()
        if stripped.startswith(("[", "{")):
            # A ZodError's own message is its issues as JSON text.
            try:
                return _message_of(orjson.loads(stripped)) or stripped
            except orjson.JSONDecodeError:
                return stripped
        return stripped
    if isinstance(value, list):
        value = {"issues": value}
    if not isinstance(value, dict):
        return None
    issues = value.get("issues")
    if isinstance(issues, list):
        texts = [_issue_text(issue) for issue in issues[:3]]
        parts = [text for text in texts if text]
        if parts:
            more = len(issues) - 3
            return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
    return _message_of(value.get("message"))


def _issue_text(issue: Any) -> str | None:
    if not isinstance(issue, dict) or not isinstance(issue.get("message"), str):
        return None
    path = issue.get("path")
    where = (
        ".".join(str(part) for part in path[:10] if isinstance(part, str | int))
        if isinstance(path, list)
        else ""
    )
    return f"{where}: {issue['message']}" if where else issue["message"]


class SourceAPI(ABC):
    """Everything the crawler knows about one API's shape."""

    #: The source name, as in filters.json.
    name: ClassVar[str]
    #: The setting holding the endpoint URL, and its default.
    url_setting: ClassVar[str]
    default_url: ClassVar[str]
    #: The environment variable that may hold a token, sent as ``Authorization: Bearer``.
    token_env: ClassVar[str]
    #: The largest page the API serves.
    max_page_size: ClassVar[int]
    #: Whether the API announces its budget in RateLimit headers (see middlewares.py).
    announces_rate_limit: ClassVar[bool] = False

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # No token: middlewares/origin.py adds it in the downloader, for the API's origin
        # only, so that it is never in a request the scheduler keeps (JOBDIR) or the cache.
        self.headers: dict[str, str] = {"Accept": "application/json"}

    def page_url(self, filter_: Filter, page_size: int, page: Page | None) -> str:
        """The first page (``page`` None) or the one after ``page``, ``page_size`` long."""
        if page is not None and page.next_url is not None:
            return with_query_param(page.next_url, "limit", str(page_size))
        pairs = [*filter_.query_pairs(), ("limit", str(page_size))]
        if page is not None and page.next_cursor is not None:
            pairs.append(("cursor", page.next_cursor))
        return build_url(self.base_url, pairs)

    @abstractmethod
    def parse(self, response: Response) -> Page:
        """The page's raw items and next cursor; PageError when the body is not a page."""

    @abstractmethod
    def raw_id(self, item: Mapping[str, Any]) -> Any: ...

    @abstractmethod
    def raw_name(self, item: Mapping[str, Any]) -> Any: ...

    def keep(self, filter_: Filter, item: Mapping[str, Any]) -> bool:
        """Whether the filter's own client-side rules keep an item the API returned."""
        return True

    def mismatch(self, filter_: Filter, item: Mapping[str, Any]) -> str | None:
        """Why an item the API returned does not satisfy the filter's parameters, if the item
        carries the evidence; None when it does (or cannot be told)."""
        return None
