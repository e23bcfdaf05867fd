"""The project's own Scrapy signals."""

from __future__ import annotations

#: Sent by ManifestWriterPipeline right after it staged all-models.json, with ``document``
#: (the schema-valid document staged), ``path`` (where it goes) and ``files`` (the run's
#: manifests.AtomicFiles): a handler stages what it builds from the document in ``files``, so
#: that it is replaced with the run's other files or not at all. A handler that raises or
#: returns False fails the run: nothing is replaced and the exit status is 1.
all_models_written = object()
