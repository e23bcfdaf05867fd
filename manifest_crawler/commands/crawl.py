"""``scrapy crawl`` whose exit status reflects the run, not only whether it started.

Scrapy's own command exits 0 whenever the crawler bootstrapped (see scrapy/commands/crawl.py);
a site build must fail when the manifests could not be made.
"""

from __future__ import annotations

import argparse
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from manifest_crawler.filters import FiltersError, load_filters
from manifest_crawler.runreport import EXIT_CODE_STAT


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl <civitai|huggingface|all>")
        assert self.crawler_process is not None
        assert self.settings is not None
        try:
            # Checked before any reactor work so a broken file or an unknown filter name is one
            # clear line, not a traceback.
            filter_set = load_filters(self.settings["FILTERS_FILE"])
            spider_cls = self.crawler_process.spider_loader.load(args[0])
            names = opts.spargs.get("filters")
            if names is not None and hasattr(spider_cls, "source_apis"):
                sources = [api.name for api in spider_cls.source_apis]
                filter_set.select(sources, names.split(","))
        except FiltersError as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = 2
            return
        except KeyError as exc:
            raise UsageError(str(exc.args[0]) if exc.args else "unknown spider") from None
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        self.exitcode = int(crawler.stats.get_value(EXIT_CODE_STAT, 0))
