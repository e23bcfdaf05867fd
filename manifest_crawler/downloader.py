"""The downloader: Scrapy's, with each download slot's waiting requests taken by priority.

Scrapy's download slot sends its waiting requests first in, first out. The scheduler's queue
(pqueues.py) lets an API's requests into the downloader up to that API's concurrency, but a
slot sends them no faster than its delay allows (AutoThrottle: START_DELAY apart before the
first answer, latency / TARGET after), so a few can wait in the slot. A filter's next page,
yielded while first pages of other filters waited there, waited behind all of them: 170 ms
on the second page of CivitAI's longest chain at 100 models per filter (measured), a chain
whose length is the crawl's lower bound. Taken by priority (deeper pages first, as the
scheduler orders them), it goes out at the slot's next turn; equal priorities keep their
order.

It also imports Scrapy's HTTP download handler itself, before Scrapy does (see
``import_http_handler``).
"""

from __future__ import annotations

import inspect
import sys
from importlib import import_module
from types import FrameType, ModuleType
from typing import Any

import scrapy.utils.deprecate
from scrapy import Request
from scrapy.core.downloader import Downloader, Slot
from scrapy.crawler import Crawler

#: Imports Scrapy's TLS modules, whose deprecated class names cost an inspect.stack() each.
HTTP_HANDLER_MODULE = "scrapy.core.downloader.handlers.http11"


class _CallerModuleInspect:
    """The ``inspect`` module as ``scrapy.utils.deprecate`` sees it while Scrapy's TLS modules
    are imported: the same, but for the two calls ``create_deprecated_class`` makes to name
    the module of the class it returns, ``inspect.stack()[1]`` (its caller's frame) and
    ``inspect.getmodule(frame)``. The real ones look up the source file of every frame on the
    stack, and the first lookup takes the real path of every module loaded so far (CPython
    gh-92041): 40-45 ms of every ``scrapy crawl`` for three class names (measured). These
    answer from the frames themselves."""

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    @staticmethod
    def stack(context: int = 1) -> list[tuple[FrameType | None]]:
        caller = sys._getframe(1)
        return [(caller,), (caller.f_back,)]

    @staticmethod
    def getmodule(obj: object, _filename: str | None = None) -> ModuleType | None:
        if isinstance(obj, FrameType):
            return sys.modules.get(obj.f_globals.get("__name__", ""))
        return inspect.getmodule(obj, _filename)


def import_http_handler() -> None:
    """Import Scrapy's HTTP/1.1 download handler (and with it its TLS modules) with
    ``_CallerModuleInspect`` standing in for ``inspect`` in ``scrapy.utils.deprecate``; a
    no-op once it is imported. Their deprecated names end up in the same modules as with the
    real ``inspect``, and still warn when used."""
    if HTTP_HANDLER_MODULE in sys.modules:
        return
    deprecate: Any = scrapy.utils.deprecate
    real = deprecate.inspect
    deprecate.inspect = _CallerModuleInspect()
    try:
        import_module(HTTP_HANDLER_MODULE)
    finally:
        deprecate.inspect = real


def _priority(entry: tuple[Request, object]) -> int:
    return entry[0].priority


class PriorityDownloader(Downloader):
    """DOWNLOADER: see the module docstring."""

    def __init__(self, crawler: Crawler) -> None:
        # Before Downloader.__init__ builds the download handlers, which import it.
        import_http_handler()
        super().__init__(crawler)

    def _process_queue(self, slot: Slot) -> None:
        # Called whenever a request joins the slot, a transfer ends or the delay has passed:
        # the order is settled before the slot picks. Sorting is cheap: the scheduler's queue
        # lets no more requests into the downloader than the API's concurrency (pqueues.py).
        queue = slot.queue
        if len(queue) > 1:
            ordered = sorted(queue, key=_priority, reverse=True)  # stable for equal ones
            queue.clear()
            queue.extend(ordered)
        super()._process_queue(slot)
