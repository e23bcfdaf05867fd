"""Project commands. ``crawl`` replaces Scrapy's so that the exit status reflects the run;
``shell``, ``fetch``, ``view``, ``parse`` and ``check`` are Scrapy's own, told that they make no
manifest run (MANIFEST_RUN=false): no filters file is read, nothing is written.
"""

from __future__ import annotations

from scrapy.settings import BaseSettings

#: The setting that tells the run's components (RunState, the writer, the offline emulator)
#: whether a crawl is a manifest run.
MANIFEST_RUN = "MANIFEST_RUN"


def not_a_manifest_run(settings: BaseSettings) -> None:
    """For Scrapy's tools: the components of a manifest run stay off (NotConfigured)."""
    settings.set(MANIFEST_RUN, False, priority="cmdline")
