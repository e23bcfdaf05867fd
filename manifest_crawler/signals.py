"""The project's own Scrapy signals."""

from __future__ import annotations

#: Sent by ManifestWriterPipeline right after it replaced all-models.json, with ``document``
#: (the schema-valid document it wrote) and ``path``. A handler that raises or returns False
#: marks the run failed (exit status 1): what it builds from the document is out of date on disk.
all_models_written = object()
