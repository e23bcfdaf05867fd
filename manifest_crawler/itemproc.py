"""The item processor (ITEM_PROCESSOR) and core stats (EXTENSIONS) without Scrapy's per-item
overhead that this crawler does not use.

A crawl yields one item per model, a hundred thousand and more, and around the project's two
pipelines Scrapy's own per-item machinery cost more CPU than the pipelines themselves
(``python -m bench throughput --profile``, Hugging Face, 100k models):

- Scrapy's ``CoreStats`` counts ``item_scraped_count`` from the ``item_scraped`` signal. Under
  the asyncio reactor a signal with a receiver costs an asyncio task and a ``gather`` per
  item; with no receiver it is a plain call. Here ``ItemPipelines`` counts the stat where the
  signal is sent from (an item that came through every pipeline) and ``CoreStats`` leaves the
  signal alone: about 20 µs of the 50 µs a Hugging Face model cost.
- ``ItemPipelineManager.process_item_async`` wraps every pipeline's return value in a new
  coroutine (``ensure_awaitable``) and names the pipeline (``global_object_name``) in case it
  returned a Deferred, per item and per pipeline. ``ItemPipelines`` awaits only what is
  awaitable and names a pipeline only when it did return a Deferred.

Each class checks the other is there, so enabling one without the other neither loses nor
doubles the count. Anything else connected to ``item_scraped`` still receives every item.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy.extensions.corestats import CoreStats as ScrapyCoreStats
from scrapy.pipelines import ItemPipelineManager
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.misc import load_object
from scrapy.utils.python import global_object_name
from twisted.internet.defer import Deferred

#: The stat Scrapy's CoreStats keeps from the item_scraped signal.
ITEM_SCRAPED_COUNT = "item_scraped_count"


class CoreStats(ScrapyCoreStats):
    """Scrapy's CoreStats; with ITEM_PROCESSOR = ItemPipelines it leaves ``item_scraped``
    without a receiver, as ItemPipelines counts ``item_scraped_count``."""

    counts_items: bool = True

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        o = super().from_crawler(crawler)
        if issubclass(load_object(crawler.settings["ITEM_PROCESSOR"]), ItemPipelines):
            crawler.signals.disconnect(o.item_scraped, signal=signals.item_scraped)
            o.counts_items = False
        return o


class ItemPipelines(ItemPipelineManager):
    """ITEM_PROCESSOR: Scrapy's pipeline manager with a lighter per-item chain; counts
    ``item_scraped_count`` when this module's CoreStats left that to it."""

    def __init__(self, *middlewares: Any, crawler: Crawler | None = None) -> None:
        super().__init__(*middlewares, crawler=crawler)
        self._inc_stat = None
        if crawler is not None:
            core_stats = crawler.get_extension(CoreStats)
            if core_stats is not None and not core_stats.counts_items:
                # Bound once: the stats collector's attribute lookups are not free.
                self._inc_stat = crawler.stats.inc_value

    async def process_item_async(self, item: Any) -> Any:
        requiring_spider = self._mw_methods_requiring_spider
        for method in self.methods["process_item"]:
            if requiring_spider and method in requiring_spider:
                item = method(item, self._spider)
            else:
                item = method(item)
            if isinstance(item, Deferred):
                warnings.warn(
                    f"{global_object_name(method)} returned a Deferred, this is deprecated."
                    f" Please refactor this function to return a coroutine.",
                    ScrapyDeprecationWarning,
                    stacklevel=2,
                )
                item = await maybe_deferred_to_future(item)
            elif inspect.isawaitable(item):
                item = await item
        if self._inc_stat is not None:
            self._inc_stat(ITEM_SCRAPED_COUNT)
        return item
