"""What the spiders hand to the pipelines; always handled through itemadapter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ModelEntry:
    """One model of one filter, at position ``rank`` (0-based) of the API's order, with the
    site's ``id``/``slug``/``name`` (normalize.py): the spider normalises each model where it
    reads it, and drops, counting why, what cannot be."""

    source: str
    filter: str
    rank: int
    id: str
    slug: str
    name: str
