"""``scrapy crawl`` whose exit status reflects the run, not only whether it started.

Scrapy's own command exits 0 whenever the crawler bootstrapped (see scrapy/commands/crawl.py);
a site build must fail when the manifests could not be made, and must be refused, in one line,
when what it was given cannot be used.
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

from manifest_crawler.extensions.runstate import FILTER_SET_SETTING, FOLDER_LOCK_SETTING
from manifest_crawler.filters import FiltersError
from manifest_crawler.output.runreport import EXIT_CODE_STAT, run_exit_status
from manifest_crawler.settings_check import (
    EXIT_USAGE,
    InputError,
    check_crawl_input,
    claim_output_folder,
)
from manifest_crawler.text import shown

logger = logging.getLogger(__name__)


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        # Checked before Scrapy starts logging or the reactor, so that a bad setting, argument
        # or filters file is the one line printed (Scrapyd runs its jobs through this command).
        try:
            filter_set = check_crawl_input(self.settings, args, opts.spargs)
            # Last: nothing of bad input locks or creates the folder.
            folder_lock = claim_output_folder(self.settings, filter_set)
        except (InputError, FiltersError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        # The run uses the file as read here: filters.json is read once per run; and holds
        # the lock taken here until it ends.
        self.settings.set(FILTER_SET_SETTING, filter_set, priority="cmdline")
        self.settings.set(FOLDER_LOCK_SETTING, folder_lock, priority="cmdline")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl <civitai|huggingface|all>")
        assert self.crawler_process is not None
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
        # What the check above cannot see (MANIFEST_SOURCES set by hand) fails while the crawl
        # is set up, before any request: one clear line, not a traceback.
        if filters_error:
            print(f"error: {one_line(filters_error[0])}", file=sys.stderr)
            self.exitcode = EXIT_USAGE
            return
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        self.exitcode = run_exit_status(crawler.stats.get_stats())
        if crawler.stats.get_value(EXIT_CODE_STAT) is None:
            logger.error(
                "The crawl ended before its files were written (stopped, or the writer failed): "
                "nothing was changed"
            )


def one_line(error: Exception) -> str:
    """An input error as the one line printed: whatever a message quotes (a path given on the
    command line, say), it cannot break the line or the terminal."""
    return shown(str(error), 1000)


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
