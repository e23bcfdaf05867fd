"""``scrapy shell``: Scrapy's own, as in any project; it makes no manifest run."""

from __future__ import annotations

import argparse

from scrapy.commands.shell import Command as ScrapyShellCommand

from manifest_crawler.commands import not_a_manifest_run


class Command(ScrapyShellCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        not_a_manifest_run(self.settings)
