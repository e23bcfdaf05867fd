"""The project's own Scrapy signals."""

from __future__ import annotations

#: Sent by ManifestWriterPipeline right after it staged all-models.json, with ``document``
#: (the schema-valid document staged), ``path`` (where it goes) and ``files`` (the run's
#: manifests.AtomicFiles): a handler stages what it builds from the document in ``files``, so
#: that it is replaced with the run's other files or not at all. A handler that raises or
#: returns False fails the run: nothing is replaced and the exit status is 1.
all_models_written = object()

#: Sent by the RunState extension while the crawl is set up (before Scrapy's scheduler opens
#: its queue), with ``run`` (the RunState). Receivers connect in from_crawler and are built
#: before it (EXTENSIONS order): JobResume restores or clears JOBDIR here. A handler that raises
#: stops the crawl from starting.
run_opened = object()

#: Sent with ``reason`` by a component of the project that is about to close the spider (the
#: JSON-RPC ``stop``): components holding requests back (the backoff middleware) let them go at
#: once, since Scrapy's graceful close waits for every request in the downloader.
stop_requested = object()
