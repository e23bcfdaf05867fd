"""``scrapy crawl`` whose exit status reflects the run, not only whether it started.

Scrapy's own command exits 0 whenever the crawler bootstrapped (see scrapy/commands/crawl.py);
a site build must fail when the manifests could not be made.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import sys
from typing import NoReturn

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from manifest_crawler.runreport import EXIT_CODE_STAT, run_exit_status
from manifest_crawler.settings_check import EXIT_USAGE, crawl_input_error


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        # Checked before Scrapy starts logging or the reactor, so that a bad setting, argument
        # or filters file is the one line printed (Scrapyd runs its jobs through this command).
        error = crawl_input_error(self.settings, args, opts.spargs)
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl <civitai|huggingface|all>")
        assert self.crawler_process is not None
        try:
            self.crawler_process.spider_loader.load(args[0])
        except KeyError as exc:
            raise UsageError(str(exc.args[0]) if exc.args else "unknown spider") from None
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        # What exists by now (modules, classes, settings: most of the process's objects) lives
        # as long as the process. Frozen, no collection visits it again: neither the crawl's
        # full collections nor the one in exit_now, 30-65 ms at 100 models per filter and 4 ms
        # frozen (measured). What the crawl creates is collected as before.
        gc.freeze()
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        self.exitcode = run_exit_status(crawler.stats.get_stats())
        if crawler.stats.get_value(EXIT_CODE_STAT) is None:
            logging.getLogger(__name__).error(
                "The crawl ended before its files were written (stopped, or the writer failed): "
                "nothing was changed"
            )
        if self.settings.getbool("MANIFEST_FAST_EXIT") and not opts.profile and not observed():
            exit_now(self.exitcode)


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
