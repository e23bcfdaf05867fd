"""What the spiders hand to the pipelines; always handled through itemadapter."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from itemadapter import ItemAdapter
from itemadapter.adapter import DataclassAdapter


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


class ModelEntryAdapter(DataclassAdapter):
    """itemadapter's dataclass adapter for ModelEntry, found first and built without work.

    ``ItemAdapter(item)`` asks each registered adapter in turn whether it handles the item;
    the ones before the dataclass adapter use ABC ``isinstance`` checks, and the dataclass
    adapter then rebuilds the class's field table. With one item per model, twice (two
    pipelines), that was 3 µs of a Hugging Face model's CPU. Behaviour is the dataclass
    adapter's: same fields, same metadata, same errors.
    """

    _FIELDS: ClassVar[dict[str, dataclasses.Field]] = {
        field.name: field for field in dataclasses.fields(ModelEntry)
    }

    def __init__(self, item: Any) -> None:
        self.item = item
        self._fields_dict = self._FIELDS

    @classmethod
    def is_item(cls, item: Any) -> bool:
        return type(item) is ModelEntry

    @classmethod
    def is_item_class(cls, item_class: type) -> bool:
        return item_class is ModelEntry


if ModelEntryAdapter not in ItemAdapter.ADAPTER_CLASSES:
    # itemadapter's documented extension point: adapters are tried in order.
    ItemAdapter.ADAPTER_CLASSES.appendleft(ModelEntryAdapter)  # type: ignore[attr-defined]
