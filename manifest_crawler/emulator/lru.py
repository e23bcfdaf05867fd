"""A least-recently-used cache bounded by the total weight of its values (pure)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class WeighedLru(Generic[K, V]):
    """Values by key, least recently used first out, while their weights exceed ``max_weight``.

    A value is weighed again whenever its key is stored or asked for: a value may grow while
    cached (a query's answer, as later pages find more of it). The newest value is always
    kept, however heavy.
    """

    def __init__(self, max_weight: int, weigh: Callable[[V], int]) -> None:
        self.max_weight = max_weight
        self._weigh = weigh
        self._held = 0
        #: Each value with its weight when last weighed.
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        self._data.move_to_end(key)
        self._store(key, entry[0], entry[1])
        return entry[0]

    def put(self, key: K, value: V) -> None:
        previous = self._data.pop(key, None)
        self._store(key, value, 0 if previous is None else previous[1])

    def _store(self, key: K, value: V, counted: int) -> None:
        weight = self._weigh(value)
        self._data[key] = (value, weight)
        self._held += weight - counted
        while self._held > self.max_weight and len(self._data) > 1:
            _, (_, evicted) = self._data.popitem(last=False)
            self._held -= evicted
