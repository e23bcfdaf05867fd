"""What the spiders hand to the pipelines; always handled through itemadapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ModelEntry:
    """One model of one filter, at position ``rank`` (0-based) of the API's order.

    The spider fills ``id`` and ``name`` with the API's raw values; NormalizePipeline replaces
    them with the site's ``id``/``slug``/``name`` or drops the entry.
    """

    source: str
    filter: str
    rank: int
    id: Any
    name: Any
    slug: str = ""
