"""``scrapy crawl`` whose exit status reflects the run, not only whether it started.

Scrapy's own command exits 0 whenever the crawler bootstrapped (see scrapy/commands/crawl.py);
a site build must fail when the manifests could not be made.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from manifest_crawler.filters import FiltersError
from manifest_crawler.runreport import EXIT_CODE_STAT

logger = logging.getLogger(__name__)


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl <civitai|huggingface|all>")
        assert self.crawler_process is not None
        assert self.settings is not None
        try:
            crawler = self._create_crawler(args[0])
        except KeyError as exc:
            raise UsageError(str(exc.args[0]) if exc.args else "unknown spider") from None
        # Scrapyd names the job with a spider argument; the run report reads settings only.
        job = opts.spargs.get("_job")
        if job and not crawler.settings.get("MANIFEST_JOB"):
            crawler.settings.set("MANIFEST_JOB", job, priority="cmdline")
        crawling = self.crawler_process.crawl(crawler, **opts.spargs)
        filters_error = _filters_error(crawling)
        self.crawler_process.start()
        # The RunState extension reads filters.json, once, while the crawl is set up, before
        # any request: a broken file or an unknown filter name is one clear line, not a
        # traceback.
        if filters_error:
            print(f"error: {filters_error[0]}", file=sys.stderr)
            self.exitcode = 2
            return
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        self.exitcode = int(crawler.stats.get_value(EXIT_CODE_STAT, 0))


def _filters_error(crawling: object) -> list[FiltersError]:
    """Filled with the FiltersError that ends the crawl's set-up, if one does (taken from the
    crawl's task or Deferred, so that it is not also logged as an unhandled traceback)."""
    found: list[FiltersError] = []

    def take(outcome: Any) -> Any:
        error = outcome.value if isinstance(outcome, Failure) else outcome
        if isinstance(error, FiltersError):
            found.append(error)
            return None
        return outcome

    def task_done(task: asyncio.Future[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None and take(error) is not None:
            # Taken from the task, it is no longer logged by asyncio: logged here instead.
            logger.error("The crawl could not start", exc_info=error)

    if isinstance(crawling, asyncio.Future):
        crawling.add_done_callback(task_done)
    elif isinstance(crawling, Deferred):
        crawling.addErrback(take)
    return found
