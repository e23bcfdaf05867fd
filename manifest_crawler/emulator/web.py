"""twisted.web plumbing shared by both API resources: request log, faults, latency, writing.

The API classes turn parameters into an :class:`ApiResponse`; this module decides whether a
fault replaces it, when it is written (latency is a ``callLater``, never a sleep, so many
requests are served concurrently) and records every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from .faults import CIVITAI, JSON, FaultInjector, truncate
from .responses import ApiResponse, json_response, next_url

Handler = Callable[[Sequence[tuple[str, str]], str], ApiResponse]

_log = Logger()

# Status lines for codes twisted does not know (Cloudflare's).
_REASONS = {524: b"A Timeout Occurred", 520: b"Unknown Error"}


@dataclass(slots=True)
class RequestRecord:
    """One request as the emulator saw it."""

    time: float  # time.monotonic() at arrival
    method: str
    path: str
    query: dict[str, list[str]]
    status: int = 0  # 0 until a response is decided
    api: str | None = None  # "civitai", "huggingface", or None (index, 404)
    uri: str = ""  # path and raw query string, as received
    fault: str | None = None  # injected fault kind, "rate-limit", or None
    delay: float = 0.0  # latency applied before answering
    rate_limit_remaining: int | None = None  # Hub budget left after this call
    arrived_when_exhausted: bool = False  # the Hub budget was already 0 on arrival
    finished: float | None = None  # time.monotonic() when the response was written
    disconnected: bool = False  # the client went away before the response
    pairs: list[tuple[str, str]] = field(default_factory=list, repr=False)


@dataclass
class ServerState:
    """What the resources of one emulator share."""

    injector: FaultInjector
    reactor: Any
    log: list[RequestRecord] = field(default_factory=list)
    pending: set[IDelayedCall] = field(default_factory=set)
    on_record: Callable[[RequestRecord], None] | None = None
    #: Cursors handed out by the endless-cursor fault so far (each one new).
    endless_cursors: int = 0

    def record(self, request: Request, api: str | None) -> RequestRecord:
        uri = request.uri.decode("utf-8", "replace")
        raw_path, _, raw_query = uri.partition("?")
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        query: dict[str, list[str]] = {}
        for key, value in pairs:
            query.setdefault(key, []).append(value)
        record = RequestRecord(
            time=time.monotonic(),
            method=request.method.decode("ascii", "replace"),
            path=unquote(raw_path),
            query=query,
            api=api,
            uri=uri,
            pairs=pairs,
        )
        self.log.append(record)
        return record

    def send_later(
        self, request: Request, record: RequestRecord, response: ApiResponse, delay: float
    ) -> None:
        record.status = response.status
        record.delay = delay
        # The latency counts from the request's arrival, as a real API's does: the time spent
        # building the answer (tens of ms for a page of CivitAI's big items) is part of it,
        # not added on top.
        wait = delay - (time.monotonic() - record.time)
        if delay <= 0 or wait <= 0:
            self.send(request, record, response)
            return
        call = self.reactor.callLater(wait, self._fire, request, record, response)
        self.pending.add(call)

        def gone(_: Failure) -> None:
            # The client hung up while we were "slow": nothing left to answer.
            record.disconnected = True
            if call.active():
                call.cancel()
            self.pending.discard(call)

        request.notifyFinish().addErrback(gone)

    def _fire(self, request: Request, record: RequestRecord, response: ApiResponse) -> None:
        self.pending = {call for call in self.pending if call.active()}
        self.send(request, record, response)

    def send(self, request: Request, record: RequestRecord, response: ApiResponse) -> None:
        record.status = response.status
        if record.disconnected or request.finished:
            return
        request.setResponseCode(response.status, _REASONS.get(response.status))
        request.setHeader(b"Content-Type", response.content_type.encode())
        request.setHeader(b"Content-Length", str(len(response.body)).encode())
        for name, value in response.headers:
            request.setHeader(name.encode(), value.encode())
        request.write(response.body)
        request.finish()
        record.finished = time.monotonic()
        if self.on_record is not None:
            self.on_record(record)

    def send_endless(self, request: Request, record: RequestRecord) -> None:
        """A 200 whose JSON body never ends, with no Content-Length (chunked under HTTP/1.1),
        written as fast as the client reads it."""
        record.status = 200
        request.setResponseCode(200, _REASONS.get(200))
        request.setHeader(b"Content-Type", JSON.encode())
        request.write(b'{"items": [')
        producer = EndlessBody(request)
        request.registerProducer(producer, True)
        request.notifyFinish().addErrback(lambda _: producer.stopProducing())
        producer.resumeProducing()

    def cancel_pending(self) -> None:
        for call in self.pending:
            if call.active():
                call.cancel()
        self.pending.clear()


class ApiResource(Resource):
    """A leaf resource answering GETs with ``handler``, with faults and latency applied."""

    isLeaf = True

    def __init__(self, api: str, handler: Handler, state: ServerState) -> None:
        super().__init__()
        self.api_name = api
        self.handler = handler
        self.state = state

    def render(self, request: Request) -> int:
        record = self.state.record(request, self.api_name)
        if request.method not in (b"GET", b"HEAD"):
            response = json_response(405, {"error": "Method not allowed"})
            self.state.send(request, record, response.with_headers([("Allow", "GET, HEAD")]))
            return NOT_DONE_YET
        return self.serve(request, record)

    def serve(self, request: Request, record: RequestRecord) -> int:
        injector = self.state.injector
        verdict = injector.rate_limit(self.api_name)
        limit_headers: tuple[tuple[str, str], ...] = ()
        if verdict is not None:
            record.rate_limit_remaining = verdict.remaining
            record.arrived_when_exhausted = verdict.exhausted_on_arrival
            limit_headers = verdict.headers

        announced = injector.announced_limits(self.api_name)
        if announced:
            names = {name.lower() for name, _ in announced}
            limit_headers = (
                *((n, v) for n, v in limit_headers if n.lower() not in names),
                *announced,
            )

        if verdict is not None and not verdict.allowed:
            record.fault = "rate-limit"
            response = json_response(
                429,
                {
                    "error": "You have exceeded our hourly quotas for action: api. "
                    "We invite you to retry later."
                },
            )
        elif self.api_name in injector.config.endless_body_apis:
            record.fault = "endless-body"
            self.state.send_endless(request, record)
            return NOT_DONE_YET
        elif self.api_name in injector.config.endless_cursor_apis:
            record.fault = "endless-cursor"
            response = self._endless_cursor(request, record)
        else:
            fault = injector.decide(self.api_name, record.uri, record.query)
            if fault is not None and fault.kind != "truncated":
                record.fault = fault.kind
                response = ApiResponse(fault.status, fault.body, fault.content_type, fault.headers)
            else:
                response = self._handle(request, record)
                if fault is not None and response.status == 200:
                    record.fault = fault.kind
                    response = replace(response, body=truncate(response.body))

        delay = injector.delay(self.api_name)
        self.state.send_later(request, record, response.with_headers(limit_headers), delay)
        return NOT_DONE_YET

    def _endless_cursor(self, request: Request, record: RequestRecord) -> ApiResponse:
        """The listing's first page, pointing on to a cursor this emulator never sent."""
        pairs = [(key, value) for key, value in record.pairs if key != "cursor"]
        response = self._handle(request, record, pairs)
        if response.status != 200:
            return response
        self.state.endless_cursors += 1
        cursor = f"endless-{self.state.endless_cursors}"
        url = next_url(self._base_url(request, record), pairs, "cursor", cursor)
        if self.api_name == CIVITAI:
            document = orjson.loads(response.body)
            document["metadata"] = {"nextCursor": cursor, "nextPage": url}
            return replace(response, body=orjson.dumps(document))
        headers = tuple((n, v) for n, v in response.headers if n.lower() != "link")
        return replace(response, headers=(*headers, ("Link", f'<{url}>; rel="next"')))

    def _base_url(self, request: Request, record: RequestRecord) -> str:
        host = (request.getHeader(b"host") or b"").decode("ascii", "replace")
        if not host:
            address = request.getHost()
            host = f"{address.host}:{address.port}"
        return f"http://{host}{record.path}"

    def _handle(
        self,
        request: Request,
        record: RequestRecord,
        pairs: Sequence[tuple[str, str]] | None = None,
    ) -> ApiResponse:
        base_url = self._base_url(request, record)
        try:
            return self.handler(record.pairs if pairs is None else pairs, base_url)
        except Exception:
            # A bug in the emulator must not hang the client: answer like upstream's 500.
            _log.failure("emulator handler failed for {uri}", uri=record.uri)
            return json_response(500, {"message": "Internal server error (emulator bug)"})


@implementer(IPushProducer)
class EndlessBody:
    """Writes items of a JSON list, forever, while the transport takes them (it pauses this
    producer when its buffer is full): the client's memory is what it has read."""

    CHUNK = b'{"id": 1, "name": "endless"}, ' * 2048

    def __init__(self, request: Request) -> None:
        self.request = request
        self.paused = False
        self.stopped = False

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.stopped:
            self.request.write(self.CHUNK)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.stopped = True
