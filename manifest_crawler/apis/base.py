"""What the crawler knows of an API's shape, common to every source: a SourceAPI builds page
URLs, parses a page into raw items and the next page, and says which items a filter's own rules
keep. Pure: no reactor, no spider; the spider (spiders/base.py) drives them.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import orjson
from scrapy.http import Response

from manifest_crawler.filters import Filter

_SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key"})
_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;[^,]*?\brel="?next"?', re.IGNORECASE)


class PageError(ValueError):
    """A response body that is not the page shape the API promises (retried, then fatal)."""

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
    """The URL with every credential-like query parameter's value hidden, for logs and errors."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [
        (key, "REDACTED" if key.lower() in _SECRET_PARAMS else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(pairs)))


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
        match = _LINK_NEXT_RE.search(header.decode("latin-1"))
        if match:
            return response.urljoin(match.group(1))
    return None


def query_value(url: str, key: str) -> str | None:
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == key:
            return value
    return None


def load_json(body: bytes) -> Any:
    """Parse a JSON body, accepting raw control characters inside strings.

    orjson is strict (RFC 8259) and several times faster; pages with raw control characters
    (which CivitAI sometimes sends) fall back to the tolerant standard parser.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body.decode("utf-8", errors="replace"), strict=False)
        except ValueError as exc:
            raise PageError("invalid_json", f"body is not JSON ({exc})") from None


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

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.headers: dict[str, str] = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

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
