"""MANIFEST_OFFLINE: serve the bundled API emulator in-process and point the crawl at it."""

from __future__ import annotations

import logging
from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from manifest_crawler.commands import MANIFEST_RUN

logger = logging.getLogger(__name__)


class OfflineEmulator:
    """Built before the settings freeze, so it can still redirect CIVITAI_API_URL/HF_API_URL."""

    def __init__(self, crawler: Crawler) -> None:
        # Imported here: a live crawl never pays for building the emulator's catalogues.
        from manifest_crawler.emulator import Emulator, EmulatorConfig

        self.emulator = Emulator(EmulatorConfig())
        self.emulator.listen(port=0, interface="127.0.0.1")
        # The offline switch means "no live host", so it outranks any URL given on the command line.
        crawler.settings.set("CIVITAI_API_URL", self.emulator.civitai_url, priority="cmdline")
        crawler.settings.set("HF_API_URL", self.emulator.hf_url, priority="cmdline")
        logger.info(
            "Offline mode: crawling the bundled emulator at %s and %s; its models are "
            'synthetic (manifests say origin "emulator", the run report synthetic: true)',
            self.emulator.civitai_url,
            self.emulator.hf_url,
        )
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("MANIFEST_OFFLINE"):
            raise NotConfigured
        if not crawler.settings.getbool(MANIFEST_RUN, True):
            # scrapy parse, fetch, shell: they name their URL; none could name this one.
            raise NotConfigured("not a manifest run")
        return cls(crawler)

    async def spider_closed(self) -> None:
        await self.emulator.stop()
