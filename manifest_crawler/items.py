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


@dataclass(slots=True)
class ModelPage:
    """The Scrapy item: the models one page of a listing gave one filter, in rank order (a
    page the filter kept nothing of gives none). One item a page, not a model, because
    Scrapy's per-item path costs more than the pipeline's work on a model; with
    ``scrapy crawl -O``, each item is ``{"source", "filter", "models": [ModelEntry, …]}``."""

    source: str
    filter: str
    models: list[ModelEntry]
