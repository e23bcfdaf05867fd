"""``scrapy crawl`` whose exit status reflects the run, not only whether it started.

Scrapy's own command exits 0 whenever the crawler bootstrapped (see scrapy/commands/crawl.py);
a site build must fail when the manifests could not be made.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import logging
import os
import sys
from typing import Any, NoReturn

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
        crawling = self.crawler_process.crawl(crawler, **opts.spargs)
        filters_error = _filters_error(crawling)
        # What exists by now (modules, classes, settings: most of the process's objects) lives
        # as long as the process. Frozen, no collection visits it again: neither the crawl's
        # full collections nor the one in exit_now, 30-65 ms at 100 models per filter and 4 ms
        # frozen (measured). What the crawl creates is collected as before.
        gc.freeze()
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
        if self.settings.getbool("MANIFEST_FAST_EXIT") and not opts.profile and not observed():
            exit_now(self.exitcode)


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


def observed() -> bool:
    """Whether a profiler or tracer (cProfile, pyinstrument, coverage, a debugger) runs this
    process: it writes its results after the command returns, so the process must end the
    usual way."""
    return sys.getprofile() is not None or sys.gettrace() is not None


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` as ``sys.exit`` would, minus the interpreter's teardown.

    Scrapy's ``execute()`` calls ``sys.exit`` right after the command anyway; the teardown
    that follows frees every module and object one by one, 0.2 s of every build (measured)
    for nothing: the manifests, the report and the logs are written by then. What it would
    still do is done here: a collection (a Deferred that failed unhandled says so when it is
    collected, while logging still works), the atexit handlers (logging.shutdown among them)
    and flushing stdout and stderr.
    """
    gc.collect()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
