"""The project's own Scrapy signals."""

from __future__ import annotations

#: Sent by ManifestWriterPipeline right after it replaced all-models.json, with ``document``
#: (the schema-valid document it wrote) and ``path``. A handler that raises or returns False
#: marks the run failed (exit status 1): what it builds from the document is out of date on disk.
all_models_written = object()

#: Sent by the RunState extension while the crawl is set up (before Scrapy's scheduler opens
#: its queue), with ``run`` (the RunState). Receivers connect in from_crawler and are built
#: before it (EXTENSIONS order): JobResume restores or clears JOBDIR here. A handler that raises
#: stops the crawl from starting.
run_opened = object()
