"""A scripted stand-in for one API endpoint, for cases a catalogue cannot produce on demand
(invalid ids, duplicates across pages, repeated cursors), served over real loopback HTTP."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class ScriptedAPI(Resource):
    """Answers each request by its ``cursor`` parameter ("" for the first page), prefixed by
    ``<value of the by parameter>|`` when ``by`` is given (to script several filters)."""

    isLeaf = True

    def __init__(self, pages: dict[str, Reply | list[Reply]], by: str | None = None) -> None:
        super().__init__()
        #: A list of replies is served one per request, in turn; its last reply then repeats.
        self.pages = pages
        self.by = by
        self.requests: list[dict[str, list[str]]] = []
        self.headers: list[dict[bytes, list[bytes]]] = []
        self.times: list[float] = []
        self.keys: list[str] = []
        self._served: dict[str, int] = {}

    def render_GET(self, request: Request) -> bytes:
        query = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        key = query.get("cursor", [""])[0]
        if self.by is not None:
            key = f"{query.get(self.by, [''])[0]}|{key}"
        self.requests.append(query)
        self.headers.append(dict(request.requestHeaders.getAllRawHeaders()))
        self.times.append(time.monotonic())
        self.keys.append(key)
        reply = self.pages.get(key)
        if isinstance(reply, list):
            served = self._served.get(key, 0)
            self._served[key] = served + 1
            reply = reply[min(served, len(reply) - 1)]
        if reply is None:
            request.setResponseCode(404)
            return b'{"error": "no such page"}'
        request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Type", "application/json")
        body = reply.body
        return body if isinstance(body, bytes) else json.dumps(body).encode()


def serve(resource: Resource, interface: str = "127.0.0.1") -> tuple[str, Any]:
    """Listen on an ephemeral port of a loopback address; return the endpoint URL and the
    port."""
    # Imported late: importing the reactor at plugin load would install the wrong one.
    from twisted.internet import reactor

    site = Site(resource)
    site.noisy = False
    site.log = lambda _request: None  # type: ignore[method-assign]
    port = reactor.listenTCP(0, site, interface=interface)
    return f"http://{interface}:{port.getHost().port}/api", port


@pytest.fixture
def scripted():
    """Start scripted APIs on loopback ports: ``api, url = scripted(pages, by=None)``
    (``interface="127.0.0.2"``: another loopback host)."""
    ports = []

    def start(
        pages: dict[str, Reply | list[Reply]], by: str | None = None, interface: str = "127.0.0.1"
    ) -> tuple[ScriptedAPI, str]:
        api = ScriptedAPI(pages, by)
        url, port = serve(api, interface)
        ports.append(port)
        return api, url

    yield start
    for port in ports:
        port.stopListening()
