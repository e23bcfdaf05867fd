"""JSONRPC_ENABLED: a JSON-RPC 2.0 web service to watch and steer a running crawl.

The URL layout follows scrapy-jsonrpc (``GET /`` lists the resources, ``/crawler/stats``
answers ``GET`` with the stats and a JSON-RPC ``get_stats`` call), so its example client keeps
working. Unlike scrapy-jsonrpc, nothing is reached by attribute traversal: each endpoint
publishes a fixed list of methods, everything else is an error.

The endpoints are txjsonrpc-ng ``JSONRPC`` resources (``jsonrpc_<name>`` publishing and its
``Fault`` type) whose request handling is replaced, because txjsonrpc-ng 0.9.2 answers
malformed JSON with -32600 in a pre-1.0 ``fault`` envelope, reports wrong arguments as its own
code 8002 with the exception's repr, refuses batches, answers notifications and publishes an
unlisted ``__dir__`` method.
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
import os
from collections.abc import Callable
from datetime import date, datetime, timedelta
from io import BytesIO
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from scrapy import Spider, signals
from scrapy.core.engine import ExecutionEngine
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.log import failure_to_exc_info
from scrapy.utils.reactor import listen_tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from txjsonrpc_ng import jsonrpclib
from txjsonrpc_ng.web.jsonrpc import JSONRPC

from manifest_crawler import signals as manifest_signals

# Pure, in a module of their own so that the settings check reads them without importing
# twisted.web (which would install a reactor before Scrapy chooses one).
from manifest_crawler.extensions.jsonrpc_settings import is_loopback as _is_loopback
from manifest_crawler.extensions.jsonrpc_settings import port_range as _port_range
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.files import FolderLock

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Transport-level refusals, in the range JSON-RPC 2.0 leaves to implementations.
UNAUTHORIZED = -32001
FORBIDDEN = -32003
NOT_FOUND = -32004
METHOD_NOT_ALLOWED = -32005

#: Nothing the service accepts comes near this; a bigger body is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024
MAX_BATCH = 32
STOP_REASON = "jsonrpc_stop"

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class _CappedRequest(server.Request):
    """Keeps at most MAX_BODY_BYTES of a request body in memory and flags the rest.

    Twisted buffers whole bodies (in a temporary file past 100 kB) before any resource sees
    them; refusing in ``render`` alone would still let a client fill the disk.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_too_large = False
        self._body_bytes = 0

    def gotLength(self, length: int | None) -> None:
        self.body_too_large = length is not None and length > MAX_BODY_BYTES
        self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes += len(data)
        if self._body_bytes > MAX_BODY_BYTES:
            self.body_too_large = True
        if not self.body_too_large and self.content is not None:
            self.content.write(data)


class JsonRpcService(server.Site):
    """The extension is the twisted.web site, listening from engine start to engine stop."""

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.host: str = settings.get("JSONRPC_HOST") or "127.0.0.1"
        self.portrange = _port_range(settings.get("JSONRPC_PORT"))
        token = str(settings.get("JSONRPC_TOKEN") or os.environ.get("JSONRPC_TOKEN") or "").strip()
        self.token: bytes | None = token.encode("utf-8") if token else None
        self.loopback = _is_loopback(self.host)
        if not self.loopback and self.token is None:
            raise NotConfigured(
                f"JSONRPC_HOST={self.host!r} is not a loopback address: refusing to serve the "
                "JSON-RPC service without JSONRPC_TOKEN (setting or environment variable)"
            )
        logfile = settings.get("JSONRPC_LOGFILE") or None
        super().__init__(_Root(self), logPath=logfile, requestFactory=_CappedRequest)
        self.access_log = logfile is not None
        self.noisy = False
        self.port: IListeningPort | None = None
        self.url: str | None = None
        self.stop_requested = False
        self.closed = False
        #: The crawl's spider name and RunState, once the spider is open.
        self.spider_name: str | None = None
        self.run: RunState | None = None
        crawler.signals.connect(self.start_listening, signal=signals.engine_started)
        crawler.signals.connect(self.stop_listening, signal=signals.engine_stopped)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("JSONRPC_ENABLED"):
            raise NotConfigured
        return cls(crawler)

    # --- lifetime -------------------------------------------------------------------------

    def start_listening(self) -> None:
        try:
            # Scrapy annotates the factory as ServerFactory[_ProtoWithFactory], which no Site is.
            self.port = listen_tcp(self.portrange, self.host, self)  # type: ignore[arg-type]
        except CannotListenError as exc:
            # The crawl matters more than the window onto it.
            logger.error("JSON-RPC service not started: %s", exc)
            return
        address = self.port.getHost()
        assert isinstance(address, IPv4Address | IPv6Address)
        host = f"[{address.host}]" if ":" in address.host else address.host
        self.url = f"http://{host}:{address.port}"
        self.crawler.stats.set_value("manifest/jsonrpc/port", address.port)
        lock = self._record_address(self.url)
        where = "" if lock is None else f" (recorded for the rpc client in {lock.path})"
        first = self.portrange[0]
        if first and address.port != first:
            logger.warning(
                "JSON-RPC service listening on %s: port %d is taken by another process%s",
                self.url,
                first,
                where,
            )
        else:
            logger.info("JSON-RPC service listening on %s%s", self.url, where)

    def _record_address(self, url: str | None) -> FolderLock | None:
        """The address the rpc client sends its token to, and the only one: recorded in the
        run's lock file (files.FolderLock), never guessed from a port another process may
        hold. A crawler made in code locks its folder when the spider opens: recorded then."""
        run = self.crawler.get_extension(RunState)
        if run is None or run.folder_lock is None:
            return None
        run.folder_lock.record(jsonrpc=url)
        return run.folder_lock

    async def stop_listening(self) -> None:
        self._record_address(None)
        if self.port is not None:
            port, self.port = self.port, None
            stopped = port.stopListening()
            if stopped is not None:
                await maybe_deferred_to_future(stopped)

    def spider_opened(self, spider: Spider) -> None:
        self.spider_name = spider.name
        self.run = self.crawler.get_extension(RunState)
        if self.url is not None:
            self._record_address(self.url)

    def spider_closed(self) -> None:
        self.closed = True

    def log(self, request: http.Request) -> None:
        # Without JSONRPC_LOGFILE Twisted would send every access line to the crawl log.
        if self.access_log:
            super().log(request)

    # --- what the methods do ----------------------------------------------------------------

    @property
    def ledger(self) -> Any:
        return None if self.run is None else self.run.ledger

    def state(self) -> str:
        if self.closed:
            return "closed"
        if self.stop_requested:
            return "stopping"
        return "paused" if self.paused else "running"

    @property
    def engine(self) -> ExecutionEngine | None:
        try:
            return self.crawler.engine
        except RuntimeError:  # no engine before the crawl starts
            return None

    @property
    def paused(self) -> bool:
        engine = self.engine
        return bool(engine is not None and engine.paused)

    def status(self) -> dict[str, Any]:
        ledger = self.ledger
        filters = None
        progress = None
        if ledger is not None:
            progress = ledger.progress()
            filters = [
                {
                    "source": state.filter.source,
                    "filter": state.filter.name,
                    "status": str(state.status),
                    "pages": state.pages,
                    "models": state.models,
                    "max_items": state.max_items,
                    "errors": len(state.errors),
                    "end_reason": state.end_reason,
                }
                for state in ledger
            ]
        return {
            "spider": self.spider_name,
            "state": self.state(),
            "paused": self.paused,
            "stopping": self.stop_requested,
            "progress": progress,
            "filters": filters,
        }

    def report(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "spider": self.spider_name,
            "state": self.state(),
            "filters": None if ledger is None else [state.as_dict() for state in ledger],
            "progress": None if ledger is None else ledger.progress(),
            "stats": self.stats(),
        }

    def stats(self) -> dict[str, Any]:
        return dict(self.crawler.stats.get_stats())

    def pause(self, peer: str) -> dict[str, Any]:
        engine = self.engine
        changed = engine is not None and not engine.paused and not self.stop_requested
        if engine is not None and changed:
            engine.pause()
            logger.info("Crawl paused over JSON-RPC (client %s)", peer)
        return {"paused": self.paused, "changed": changed, "state": self.state()}

    def unpause(self, peer: str) -> dict[str, Any]:
        engine = self.engine
        changed = engine is not None and engine.paused
        if engine is not None and changed:
            engine.unpause()
            # unpause() only clears a flag: the engine would look for work at its next
            # heartbeat, up to 5 s later. Its private slot is reached defensively.
            nextcall = getattr(getattr(engine, "_slot", None), "nextcall", None)
            if nextcall is not None:
                nextcall.schedule()
            logger.info("Crawl resumed over JSON-RPC (client %s)", peer)
        return {"paused": self.paused, "changed": changed, "state": self.state()}

    def stop(self, peer: str) -> dict[str, Any]:
        changed = not self.stop_requested and not self.closed
        if changed:
            self.stop_requested = True
            logger.info(
                "Graceful stop requested over JSON-RPC (client %s): finished filters are "
                "written, unfinished ones keep their previous manifests",
                peer,
            )
            # Requests waiting out a backoff or a rate limit are let go at once.
            self.crawler.signals.send_catch_log(
                signal=manifest_signals.stop_requested, reason=STOP_REASON
            )
            # The answer goes out first; closing waits for the requests in flight.
            call_later(0, self._close_spider)
        return {"stopping": True, "changed": changed, "reason": STOP_REASON}

    def _close_spider(self) -> None:
        engine = self.engine
        if engine is None or engine.spider is None:
            return
        d = deferred_from_coro(engine.close_spider_async(reason=STOP_REASON))
        d.addErrback(
            lambda failure: logger.error(
                "JSON-RPC stop failed: %s",
                failure.getErrorMessage(),
                exc_info=failure_to_exc_info(failure),
            )
        )

    # --- request guards -------------------------------------------------------------------

    def refusal(self, request: server.Request) -> tuple[int, int, str] | None:
        """(HTTP status, JSON-RPC code, message) when the request may go no further."""
        if getattr(request, "body_too_large", False):
            return 413, INVALID_REQUEST, f"Request body larger than {MAX_BODY_BYTES} bytes"
        host = _header(request, b"host")
        # Without a token, the Host check is what stops a DNS-rebinding page from reading or
        # steering the loopback service.
        if self.token is None and not self._host_allowed(host):
            return 403, FORBIDDEN, "Forbidden: unexpected Host header"
        origin = _header(request, b"origin")
        if origin is not None and origin != f"http://{host}":
            return 403, FORBIDDEN, "Forbidden: cross-origin request"
        fetch_site = _header(request, b"sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return 403, FORBIDDEN, "Forbidden: cross-site request"
        if self.token is not None and not self._authorized(request):
            return 401, UNAUTHORIZED, "Unauthorized: a valid bearer token is required"
        return None

    def _host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            name = urlsplit(f"//{host}").hostname
        except ValueError:
            return False
        return name is not None and (name in _LOOPBACK_NAMES or name == self.host.lower())

    def _authorized(self, request: server.Request) -> bool:
        assert self.token is not None
        header = request.getHeader(b"authorization") or b""
        scheme, _, supplied = header.partition(b" ")
        # Compared even when the scheme is wrong, so a bad header costs the same time.
        matches = hmac.compare_digest(supplied.strip(), self.token)
        return matches and scheme.lower() == b"bearer"


class _Root(resource.Resource):
    """Every request enters here: guards first, then a fixed table of paths."""

    isLeaf = True

    def __init__(self, service: JsonRpcService) -> None:
        super().__init__()
        self.service = service
        # path -> (HTTP methods, what GET answers, the JSON-RPC endpoint POST reaches)
        self.routes: dict[bytes, tuple[tuple[bytes, ...], Callable[[], Any], _Endpoint | None]] = {
            b"/": ((b"GET", b"HEAD"), self.index, None),
            b"/crawler": ((b"GET", b"HEAD", b"POST"), service.status, _CrawlerEndpoint(service)),
            b"/crawler/stats": ((b"GET", b"HEAD", b"POST"), service.stats, _StatsEndpoint(service)),
        }

    def render(self, request: server.Request) -> bytes | int:
        try:
            return self._render(request)
        except Exception:
            # Whatever went wrong stays in this request; the crawl goes on.
            logger.exception("JSON-RPC service: unexpected error")
            return _http_error(request, 500, INTERNAL_ERROR, "Internal error")

    def _render(self, request: server.Request) -> bytes | int:
        _security_headers(request)
        refusal = self.service.refusal(request)
        if refusal is not None:
            if refusal[0] == 401:
                self.service.crawler.stats.inc_value("manifest/jsonrpc/unauthorized")
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="manifest-crawler"')
            return _http_error(request, *refusal)
        route = self.routes.get(request.path.rstrip(b"/") or b"/")
        if route is None:
            return _http_error(request, 404, NOT_FOUND, "Not found")
        allowed, getter, endpoint = route
        if request.method not in allowed:
            request.setHeader(b"Allow", b", ".join(allowed))
            return _http_error(request, 405, METHOD_NOT_ALLOWED, "Method not allowed")
        if request.method == b"POST" and endpoint is not None:
            return endpoint.render(request)
        return _encode(request, 200, getter())

    def index(self) -> dict[str, Any]:
        return {
            "resources": ["crawler", "crawler/stats"],
            "methods": {
                "crawler": sorted(_CrawlerEndpoint.methods),
                "crawler/stats": sorted(_StatsEndpoint.methods),
            },
        }


class _Endpoint(JSONRPC):
    """A JSON-RPC 2.0 endpoint publishing exactly ``methods`` (each a ``jsonrpc_<name>``)."""

    methods: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, service: JsonRpcService) -> None:
        super().__init__()
        self.service = service
        self.peer = "?"

    def published(self, name: str) -> Callable[..., Any] | None:
        """The ``jsonrpc_<name>`` method when ``name`` is on the list, else None (txjsonrpc-ng's
        own lookup would also resolve "__dir__" and dotted sub-handler paths)."""
        if name not in self.methods:
            return None
        function: Callable[..., Any] = getattr(self, f"jsonrpc_{name}")
        return function

    def render(self, request: server.Request) -> int:
        content = request.content
        assert content is not None  # every request of a POST has one (gotLength)
        content.seek(0)
        body = content.read()
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _failure: gone.append(True))

        def respond(payload: Any) -> None:
            if gone:
                return
            if payload is None:
                # Only notifications: JSON-RPC 2.0 says nothing is returned.
                request.setResponseCode(204)
                request.finish()
                return
            request.write(_encode(request, 200, payload))
            request.finish()

        def failed(failure: Failure) -> None:
            logger.error(
                "JSON-RPC service: %s",
                failure.getErrorMessage(),
                exc_info=failure_to_exc_info(failure),
            )
            if not gone and not request.finished:
                request.write(_encode(request, 500, _error(None, INTERNAL_ERROR, "Internal error")))
                request.finish()

        self.service.crawler.stats.inc_value("manifest/jsonrpc/requests")
        self.handle(body, _peer(request)).addCallback(respond).addErrback(failed)
        return server.NOT_DONE_YET

    def handle(self, body: bytes, peer: str) -> Deferred[Any]:
        """The response document for a request body: an object, a list, or None."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            # RecursionError: a few kilobytes of "[[[[" nest deeper than the parser recurses.
            return succeed(_error(None, PARSE_ERROR, "Parse error"))
        if not isinstance(payload, list):
            return self._call(payload, peer)
        if not payload:
            return succeed(_error(None, INVALID_REQUEST, "Invalid Request: empty batch"))
        if len(payload) > MAX_BATCH:
            return succeed(
                _error(None, INVALID_REQUEST, f"Invalid Request: more than {MAX_BATCH} calls")
            )
        calls = [self._call(call, peer) for call in payload]
        d = gatherResults(calls)
        d.addCallback(lambda answers: [a for a in answers if a is not None] or None)
        return d

    def _call(self, call: Any, peer: str) -> Deferred[Any]:
        """One call's response object, or None for a notification. Never fails."""
        if not isinstance(call, dict):
            return succeed(_error(None, INVALID_REQUEST, "Invalid Request: expected an object"))
        notification = "id" not in call
        call_id = call.get("id")
        if not _valid_id(call_id):
            return succeed(
                _error(None, INVALID_REQUEST, "Invalid Request: id must be a string or a number")
            )
        if call.get("jsonrpc") != "2.0":
            return succeed(
                _error(call_id, INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"')
            )
        name = call.get("method")
        if not isinstance(name, str):
            return succeed(
                _error(call_id, INVALID_REQUEST, "Invalid Request: method must be a string")
            )
        params = call.get("params", [])
        if not isinstance(params, list | dict):
            return succeed(
                _error(
                    call_id,
                    INVALID_REQUEST,
                    "Invalid Request: params must be an array or an object",
                )
            )
        args, kwargs = (params, {}) if isinstance(params, list) else ([], params)
        function = self.published(name)
        if function is None:
            answer = _error(
                call_id, METHOD_NOT_FOUND, "Method not found", {"methods": sorted(self.methods)}
            )
            return succeed(None if notification else answer)
        try:
            inspect.signature(function).bind(*args, **kwargs)
        except TypeError as exc:
            answer = _error(call_id, INVALID_PARAMS, f"Invalid params: {exc}")
            return succeed(None if notification else answer)
        # Methods run synchronously inside maybeDeferred, so they can read the caller here
        # without taking it as a parameter a client could fill in.
        self.peer = peer
        d = maybeDeferred(function, *args, **kwargs)
        d.addCallbacks(
            lambda result: {"jsonrpc": "2.0", "result": _jsonable(result), "id": call_id},
            lambda failure: self._fault(failure, name, call_id),
        )
        if notification:
            d.addCallback(lambda _answer: None)
        return d

    def _fault(self, failure: Failure, name: str, call_id: Any) -> dict[str, Any]:
        fault = failure.value
        if isinstance(fault, jsonrpclib.Fault):
            return _error(call_id, fault.faultCode, fault.faultString)
        logger.error("JSON-RPC method %s failed", name, exc_info=failure_to_exc_info(failure))
        return _error(call_id, INTERNAL_ERROR, "Internal error")


class _CrawlerEndpoint(_Endpoint):
    """``/crawler``: progress, the run report, and the three steering verbs."""

    methods: ClassVar[frozenset[str]] = frozenset({"status", "report", "pause", "unpause", "stop"})

    def jsonrpc_status(self) -> dict[str, Any]:
        return self.service.status()

    def jsonrpc_report(self) -> dict[str, Any]:
        return self.service.report()

    def jsonrpc_pause(self) -> dict[str, Any]:
        return self.service.pause(self.peer)

    def jsonrpc_unpause(self) -> dict[str, Any]:
        return self.service.unpause(self.peer)

    def jsonrpc_stop(self) -> dict[str, Any]:
        return self.service.stop(self.peer)


class _StatsEndpoint(_Endpoint):
    """``/crawler/stats``: the stats collector's read side, as scrapy-jsonrpc exposed it."""

    methods: ClassVar[frozenset[str]] = frozenset({"get_stats", "get_value"})

    def jsonrpc_get_stats(self, spider: str | None = None) -> dict[str, Any]:
        # scrapy-jsonrpc's client passes a spider name; one crawler runs one spider.
        _check_spider_name(self.service, spider)
        return self.service.stats()

    def jsonrpc_get_value(self, key: str, default: Any = None) -> Any:
        if not isinstance(key, str):
            raise jsonrpclib.Fault(INVALID_PARAMS, "Invalid params: key must be a string")
        return self.service.stats().get(key, default)


def _check_spider_name(service: JsonRpcService, spider: Any) -> None:
    if spider is None:
        return
    if not isinstance(spider, str):
        raise jsonrpclib.Fault(INVALID_PARAMS, "Invalid params: spider must be a string")
    if spider != service.spider_name:
        raise jsonrpclib.Fault(
            INVALID_PARAMS, f"Invalid params: no running spider {spider[:100]!r}"
        )


# --- helpers ----------------------------------------------------------------------------------


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def _peer(request: server.Request) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", address))


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _error(call_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    # "data" is always present: scrapy-jsonrpc's client reads error["data"] unconditionally.
    return {
        "jsonrpc": "2.0",
        "error": {"code": code, "message": message, "data": data},
        "id": call_id,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, so a stat of an odd type cannot fail the response."""
    return json.loads(json.dumps(value, default=_json_default))


def _encode(request: server.Request, status: int, document: Any) -> bytes:
    body = json.dumps(document, default=_json_default).encode("utf-8") + b"\n"
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return body


def _http_error(request: server.Request, status: int, code: int, message: str) -> bytes:
    return _encode(request, status, _error(None, code, message))


def _security_headers(request: server.Request) -> None:
    # No Access-Control-Allow-* at all: browsers keep other origins from reading answers.
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")


__all__ = ["JsonRpcService"]
