"""The run's state, made once and handed on: the filters file (read once per run), the filters
the crawl selected with their Ledger, and what the writer collected.

The spider says which filters it crawls as settings (``MANIFEST_SOURCES`` from its SourceAPIs,
``MANIFEST_FILTERS`` from ``-a filters=…``), as Scrapy's docs show for spider arguments. This
extension, built while the crawl is set up, reads FILTERS_FILE once, selects, and sends
``signals.run_opened`` before Scrapy's scheduler opens its queue (JobResume clears or resumes
JOBDIR then). The spider, the writer, the progress line and the JSON-RPC service get it with
``crawler.get_extension(RunState)``. A broken file or an unknown filter name raises
FiltersError here, before any request (``scrapy crawl`` exits 2 with one line).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Self

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.python.failure import Failure

from manifest_crawler import signals as manifest_signals
from manifest_crawler.files import FolderLock
from manifest_crawler.filters import FiltersError, FilterSet, item_limit, load_filters
from manifest_crawler.ledger import Ledger
from manifest_crawler.output.changes import Baseline
from manifest_crawler.output.manifests import CollectedModels

logger = logging.getLogger(__name__)


#: The filters file as ``scrapy crawl`` read it when it checked its input (a FilterSet): the run
#: uses it instead of reading the file again. Without it (a crawler made in code), RunState
#: reads FILTERS_FILE itself.
FILTER_SET_SETTING = "MANIFEST_FILTER_SET"
#: The lock on MANIFEST_DIR ``scrapy crawl`` took when it checked its output folder (a
#: files.FolderLock). Without it (a crawler made in code), the writer pipeline checks and
#: locks the folder when the spider opens, before any request.
FOLDER_LOCK_SETTING = "MANIFEST_FOLDER_LOCK"


class RunState:
    """The extension; see the module docstring."""

    def __init__(
        self,
        filter_set: FilterSet,
        ledger: Ledger,
        sources: tuple[str, ...],
        folder_lock: FolderLock | None,
    ) -> None:
        self.filter_set = filter_set
        #: The run's lock on MANIFEST_DIR, held until the engine stops: only its holder
        #: removes temporaries left in the folder, and the JSON-RPC service records its
        #: address in it. A crawler made in code gets it when its spider opens.
        self.folder_lock = folder_lock
        self.ledger = ledger
        #: The sources the spider crawls, in its order.
        self.sources = sources
        #: The spider's name, for the run report and JSON-RPC (from spider_opened).
        self.spider_name: str | None = None
        #: Each filter's collected models, by (source, filter name): the writer adds to them.
        self.models: defaultdict[tuple[str, str], CollectedModels] = defaultdict(CollectedModels)
        #: What the site had before the run; a resumed job keeps its first process's.
        self.baseline: Baseline | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        sources = tuple(settings.getlist("MANIFEST_SOURCES"))
        if not sources:
            raise NotConfigured("no MANIFEST_SOURCES: not a manifest spider")
        filter_set = settings.get(FILTER_SET_SETTING)
        if filter_set is None:
            filter_set = load_filters(settings["FILTERS_FILE"])
        for warning in filter_set.warnings:
            logger.warning("%s", warning)
        wanted = settings.get("MANIFEST_FILTERS")
        names = None if wanted is None else settings.getlist("MANIFEST_FILTERS")
        selected = filter_set.select(sources, names)
        if not selected:
            raise FiltersError(f"{filter_set.path}: no filters for source(s) {', '.join(sources)}")
        default_max = settings.getint("MANIFEST_MAX_ITEMS")
        ledger = Ledger((f, item_limit(f.max_items, default_max)) for f in selected)
        run = cls(filter_set, ledger, sources, settings.get(FOLDER_LOCK_SETTING))
        crawler.signals.connect(run.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(run.engine_stopped, signal=signals.engine_stopped)
        for _, result in crawler.signals.send_catch_log(manifest_signals.run_opened, run=run):
            if isinstance(result, Failure):
                # A JOBDIR that cannot be used must not be ignored: the crawl does not start.
                result.raiseException()
        return run

    def spider_opened(self, spider: Spider) -> None:
        self.spider_name = spider.name

    def engine_stopped(self) -> None:
        if self.folder_lock is not None:
            self.folder_lock.release()

    def restore(
        self, models: Mapping[tuple[str, str], Iterable[tuple[int, Any]]], baseline: Baseline
    ) -> None:
        """Take over what the interrupted processes of a resumed job collected and saw."""
        for key, entries in models.items():
            self.models[key] = CollectedModels([*entries, *self.models.get(key, ())])
        self.baseline = baseline
