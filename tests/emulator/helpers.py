"""HTTP helpers for the emulator tests (Twisted's Agent on the test reactor)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self, strict: bool = True) -> Any:
        return json.loads(self.body, strict=strict)


class _Collector(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.chunks: list[bytes] = []
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def read_body(response: IResponse) -> Deferred[bytes]:
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_Collector(done))
    return done


async def request(method: str, url: str, headers: dict[str, str] | None = None) -> Reply:
    from twisted.internet import reactor

    agent = Agent(reactor)
    raw_headers = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    response = await maybe_deferred_to_future(
        agent.request(method.encode(), url.encode(), raw_headers)
    )
    body = await maybe_deferred_to_future(read_body(response))
    return Reply(
        response.code,
        {
            k.decode().lower(): [v.decode() for v in vs]
            for k, vs in response.headers.getAllRawHeaders()
        },
        body,
    )


async def fetch(url: str, headers: dict[str, str] | None = None) -> Reply:
    return await request("GET", url, headers)


def url_with(base: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None) -> str:
    """``base`` with query parameters (lists become repeated parameters)."""
    pairs: list[tuple[str, str]] = []
    items = params.items() if isinstance(params, dict) else (params or [])
    for key, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, _text(v)) for v in values)
    return f"{base}?{urlencode(pairs)}" if pairs else base


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def link_next(reply: Reply) -> str | None:
    """The rel="next" URL of a Link header, if any."""
    link = reply.header("link")
    if not link:
        return None
    url, _, rel = link.partition(";")
    assert rel.strip() == 'rel="next"', link
    return url.strip().removeprefix("<").removesuffix(">")


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


async def crawl_civitai(url: str, max_pages: int = 500) -> tuple[list[int], list[dict]]:
    """Follow metadata.nextPage from ``url``; returns (ids, metadata of every page)."""
    ids: list[int] = []
    metas: list[dict] = []
    next_url: str | None = url
    while next_url is not None:
        assert len(metas) < max_pages, "too many pages"
        reply = await fetch(next_url)
        assert reply.status == 200, reply.body[:200]
        data = reply.json()
        ids.extend(item["id"] for item in data["items"])
        metas.append(data["metadata"])
        next_url = data["metadata"].get("nextPage")
    return ids, metas


async def crawl_hf(url: str, max_pages: int = 500) -> tuple[list[str], list[Reply]]:
    """Follow the Link header from ``url``; returns (ids, every reply)."""
    ids: list[str] = []
    replies: list[Reply] = []
    next_url: str | None = url
    while next_url is not None:
        assert len(replies) < max_pages, "too many pages"
        reply = await fetch(next_url)
        assert reply.status == 200, reply.body[:200]
        ids.extend(entry["id"] for entry in reply.json())
        replies.append(reply)
        next_url = link_next(reply)
    return ids, replies


def civitai_page(emulator: Any, params: dict[str, Any], limit: int) -> list[int]:
    """The ids of a first page: ``limit`` slots of the listing, less the hidden models
    (api-notes: items with no visible version are dropped after the SQL LIMIT)."""
    cat = emulator.catalogue.civitai
    return [i for i in cat.slots(params)[:limit] if not cat.hidden[cat.index_of_id[i]]]
