"""The emulator: both APIs on one twisted.web site, listening on the running reactor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakSet

import orjson
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from .catalogue import Catalogue, RawParams, catalogue_for
from .civitai import CivitaiApi, CivitaiResource
from .faults import FaultConfig, FaultInjector
from .huggingface import HuggingFaceApi, HuggingFaceResource
from .responses import json_response
from .web import RequestRecord, ServerState

CIVITAI_PATH = "/api/v1/models"
HF_PATH = "/api/models"


@dataclass(frozen=True)
class EmulatorConfig:
    """What an emulator serves: seeded catalogues of the given sizes, at a revision (0 is
    the base; each step removes, adds and re-ranks some models), with the given faults."""

    seed: int = 0
    civitai_models: int = 3000
    hf_models: int = 3000
    revision: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: Every CivitAI model's nsfwLevel, cycled by catalogue position, instead of the seeded
    #: ones (e.g. 49 models rated above PG for one rated PG): listings whose ratings are
    #: shared as the test needs, as rare as on the real top pages (api-notes).
    civitai_levels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if min(self.civitai_models, self.hf_models, self.revision) < 0:
            raise ValueError("civitai_models, hf_models and revision must be >= 0")
        object.__setattr__(self, "civitai_levels", tuple(self.civitai_levels))
        if any(not 0 <= level <= 63 for level in self.civitai_levels):
            raise ValueError("civitai_levels are nsfwLevel masks from 0 to 63")


class _QuietSite(Site):
    """A Site without access logs (they slow benchmarks down) that can drop its clients."""

    noisy = False

    def __init__(self, resource: Resource, reactor: Any) -> None:
        super().__init__(resource, reactor=reactor)
        self.protocols: WeakSet[Any] = WeakSet()

    def log(self, request: http.Request) -> None:
        pass

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.protocols.add(protocol)
        return protocol

    def drop_connections(self) -> None:
        for protocol in list(self.protocols):
            # The generic HTTP protocol proxies an HTTPChannel, which owns the transport.
            channel = getattr(protocol, "_channel", protocol)
            transport = getattr(channel, "transport", None)
            if transport is not None:
                transport.abortConnection()


class _Root(Resource):
    """Routes by exact path, so both ``/api/models`` and ``/api/models/`` work."""

    isLeaf = True

    def __init__(self, emulator: Emulator) -> None:
        super().__init__()
        self.emulator = emulator

    def render(self, request: Request) -> int:
        path = request.path.decode("utf-8", "replace").rstrip("/") or "/"
        if path == CIVITAI_PATH:
            return self.emulator.civitai_resource.render(request)
        if path == HF_PATH:
            return self.emulator.hf_resource.render(request)
        state = self.emulator.state
        record = state.record(request, None)
        if path == "/":
            response = json_response(200, self.emulator.describe())
        else:
            response = json_response(404, {"error": "Not Found"})
        state.send(request, record, response)
        return NOT_DONE_YET


def _awaitable(d: Deferred[Any]) -> Any:
    # Inside an asyncio task (asyncio reactor) only futures can be awaited; inside a
    # Deferred-driven coroutine only Deferreds can.
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return d if task is None else d.asFuture(asyncio.get_running_loop())


class Emulator:
    """Both APIs, served from seeded catalogues with configurable faults.

    Usage: ``emu = Emulator(EmulatorConfig(seed=1)); emu.listen()`` (on the installed
    reactor), then ``emu.civitai_url`` / ``emu.hf_url``, and ``await emu.stop()``.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        reactor: Any = None,
        on_record: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        cfg = self.config
        if cfg.civitai_levels:
            # Levels of its own change what its listings hold: never a shared catalogue.
            self.catalogue = Catalogue(cfg.seed, cfg.civitai_models, cfg.hf_models, cfg.revision)
            self.catalogue.civitai.set_levels(cfg.civitai_levels)
        else:
            self.catalogue = catalogue_for(
                cfg.seed, cfg.civitai_models, cfg.hf_models, cfg.revision
            )
        self.catalogue.prepare()
        self._reactor = reactor
        self.injector = FaultInjector(cfg.faults)
        self.state = ServerState(self.injector, reactor=None, on_record=on_record)
        self.civitai_api = CivitaiApi(self.catalogue.civitai, cfg.faults)
        self.hf_api = HuggingFaceApi(self.catalogue.hf)
        self.civitai_resource = CivitaiResource(self.civitai_api, self.state)
        self.hf_resource = HuggingFaceResource(self.hf_api, self.state)
        self.root = _Root(self)
        self.site: _QuietSite | None = None
        self.port: IListeningPort | None = None
        self.interface = "127.0.0.1"

    @property
    def log(self) -> list[RequestRecord]:
        """Every request received, in arrival order."""
        return self.state.log

    def requests(self, api: str | None = None) -> list[RequestRecord]:
        """The log, restricted to one API ("civitai" or "huggingface") if given."""
        return [r for r in self.state.log if api is None or r.api == api]

    def clear_log(self) -> None:
        self.state.log.clear()

    # -- expected answers -----------------------------------------------------------------

    def query_civitai(self, params: RawParams) -> list[int]:
        return self.catalogue.query_civitai(params)

    def query_hf(self, params: RawParams) -> list[str]:
        return self.catalogue.query_hf(params)

    # -- serving --------------------------------------------------------------------------

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> IListeningPort:
        """Start serving on the installed reactor; ``port=0`` picks a free port."""
        if self.port is not None:
            raise RuntimeError("the emulator is already listening")
        reactor = self._reactor
        if reactor is None:
            # Imported late: importing this module must not install a reactor.
            from twisted.internet import reactor
        self.state.reactor = reactor
        self.site = _QuietSite(self.root, reactor)
        self.port = reactor.listenTCP(port, self.site, interface=interface)
        self.interface = interface
        return self.port

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("call listen() first")
        address = self.port.getHost()
        assert isinstance(address, IPv4Address | IPv6Address)
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"http://{host}:{address.port}"

    @property
    def civitai_url(self) -> str:
        return f"{self.base_url}{CIVITAI_PATH}"

    @property
    def hf_url(self) -> str:
        return f"{self.base_url}{HF_PATH}"

    def describe(self) -> Mapping[str, Any]:
        cfg = self.config
        return {
            "emulator": "manifest_crawler",
            "endpoints": {"civitai": CIVITAI_PATH, "huggingface": HF_PATH},
            "seed": cfg.seed,
            "revision": cfg.revision,
            "civitai_models": self.catalogue.civitai.alive_count,
            "hf_models": self.catalogue.hf.alive_count,
            "faults": orjson.loads(orjson.dumps(cfg.faults)),
        }

    def stop_deferred(self) -> Deferred[None]:
        """Stop listening, drop pending responses and open connections."""
        self.state.cancel_pending()
        waits: list[Deferred[Any]] = []
        if self.port is not None:
            waits.append(maybeDeferred(self.port.stopListening))
            self.port = None
        if self.site is not None:
            self.site.drop_connections()
        done: Deferred[None] = DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)
        return done

    async def stop(self) -> None:
        await _awaitable(self.stop_deferred())
