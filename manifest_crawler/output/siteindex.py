"""Pure: index.json, the site's table of contents of a manifest folder.

One entry per filter of filters.json, in file order: its source, name and label, the file of
its manifest, how many models that file holds, the status of the run that last crawled it and
where its models came from. A site reads it instead of re-deriving file names from filter
names, and finds there what it needs for its navigation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from manifest_crawler.filters import Filter
from manifest_crawler.output.manifests import EMULATOR_ORIGIN, SourceManifest, manifest_filename


def build_index(
    *,
    filters: Iterable[Filter],
    manifests: Iterable[SourceManifest],
    statuses: Mapping[tuple[str, str], str],
    origins: Mapping[str, str],
    timestamp: str,
) -> dict[str, Any]:
    """The index document.

    ``manifests`` are the usable manifests on disk after the run (of this run's origin for
    their source: the ones all-models.json merges); a filter without one has ``models`` and
    ``origin`` null. ``statuses`` holds each filter's status in the run report (this run's, or
    carried from an earlier one); a filter no run of the report crawled has ``status`` null.
    """
    on_disk = {(m.source, m.filter): len(m.models) for m in manifests}
    entries = []
    for filter_ in filters:
        count = on_disk.get(filter_.key)
        entries.append(
            {
                "source": filter_.source,
                "filter": filter_.name,
                "label": filter_.label,
                "file": manifest_filename(filter_.source, filter_.name),
                "models": count,
                "status": statuses.get(filter_.key),
                "origin": None if count is None else origins[filter_.source],
            }
        )
    return {
        "timestamp": timestamp,
        "synthetic": EMULATOR_ORIGIN in origins.values(),
        "origins": dict(origins),
        "filters": entries,
    }
