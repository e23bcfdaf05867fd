"""A scripted stand-in for one API endpoint, for cases a catalogue cannot produce on demand
(invalid ids, duplicates across pages, repeated cursors), served over real loopback HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class ScriptedAPI(Resource):
    """Answers each request by its ``cursor`` parameter ("" for the first page)."""

    isLeaf = True

    def __init__(self, pages: dict[str, Reply]) -> None:
        super().__init__()
        self.pages = pages
        self.requests: list[dict[str, list[str]]] = []
        self.headers: list[dict[bytes, list[bytes]]] = []

    def render_GET(self, request: Request) -> bytes:
        query = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        self.requests.append(query)
        self.headers.append(dict(request.requestHeaders.getAllRawHeaders()))
        reply = self.pages.get(query.get("cursor", [""])[0])
        if reply is None:
            request.setResponseCode(404)
            return b'{"error": "no such page"}'
        request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Type", "application/json")
        body = reply.body
        return body if isinstance(body, bytes) else json.dumps(body).encode()


def serve(resource: Resource) -> tuple[str, Any]:
    """Listen on an ephemeral loopback port; return the endpoint URL and the port."""
    site = Site(resource)
    site.noisy = False
    site.log = lambda _request: None  # type: ignore[method-assign]
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return f"http://127.0.0.1:{port.getHost().port}/api", port
