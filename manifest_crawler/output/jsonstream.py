"""Pure: JSON documents whose big arrays are encoded, and checked, some thousands at a time.

At a million models a manifest, all-models.json or changes.json encodes to 100-400 MB and, as
Python dicts, takes several times that. A document marks each such array as a
``StreamedArray``; ``encode_chunks`` then yields the document's exact ``encode_json`` bytes
(two-space indent, trailing newline) while holding one chunk of the array at a time, and hands
every chunk, decoded back from the bytes it wrote, to a check (schema validation) that can stop
the write before the file is replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

import orjson

#: Items per chunk: big enough that orjson's per-call cost vanishes, small enough to not matter.
CHUNK_ITEMS = 10_000

#: A path into a document: keys of objects and indexes of arrays, from the root.
JsonPath = tuple[str | int, ...]
#: Called with each encoded chunk of a streamed array decoded back: the array's path, the index
#: of the chunk's first item in it and the items. Raises to stop the write.
ChunkCheck = Callable[[JsonPath, int, list[Any]], None]

_INDENT = orjson.OPT_INDENT_2


class StreamedArray(Sequence[Any]):
    """A JSON array to encode a chunk at a time, from a sequence; with ``make``, each item is
    made from its source item as its chunk is made (for arrays generated while written).

    Items are anything orjson encodes (dicts, slotted dataclasses, strings, numbers).
    Comparison materialises the items: meant for tests and small arrays.
    """

    __slots__ = ("_items", "_make")

    def __init__(self, items: Sequence[Any], *, make: Callable[[Any], Any] | None = None) -> None:
        self._items = items
        self._make = make

    def chunks(self, size: int | None = None) -> Iterator[Sequence[Any]]:
        size = size or CHUNK_ITEMS
        items, make = self._items, self._make
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            yield chunk if make is None else [make(item) for item in chunk]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.chunks():
            yield from chunk

    def __getitem__(self, index: Any) -> Any:
        if self._make is None:
            return self._items[index]
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StreamedArray({list(islice(self, 3))!r}{' …' if len(self) > 3 else ''})"


def encode_json(document: Any) -> bytes:
    """Stable bytes: two-space indent, UTF-8, key order as built, trailing newline."""
    if has_streamed(document):
        return b"".join(encode_chunks(document))
    return orjson.dumps(document, option=_INDENT | orjson.OPT_APPEND_NEWLINE)


def has_streamed(value: Any) -> bool:
    if isinstance(value, StreamedArray):
        return True
    if isinstance(value, dict):
        return any(has_streamed(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_streamed(item) for item in value)
    return False


def skeleton(value: Any, keep: Callable[[JsonPath], bool] | None = None) -> Any:
    """``value`` as plain JSON with every StreamedArray emptied, but for those at a path that
    ``keep`` accepts, which are materialised: what is left to check as a whole."""
    return _skeleton(value, (), keep)


def _skeleton(value: Any, path: JsonPath, keep: Callable[[JsonPath], bool] | None) -> Any:
    if isinstance(value, StreamedArray):
        if keep is not None and keep(path):
            return orjson.loads(orjson.dumps(list(value)))
        return []
    if isinstance(value, dict):
        return {key: _skeleton(item, (*path, key), keep) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_skeleton(item, (*path, index), keep) for index, item in enumerate(value)]
    return value


def encode_chunks(
    document: Any, check: ChunkCheck | None = None, chunk_items: int | None = None
) -> Iterator[bytes]:
    """``encode_json(document)``'s exact bytes in pieces, each StreamedArray a chunk at a time
    (plain lists and dicts encode as usual); ``check`` sees every chunk as it was written."""
    yield from _encode(document, 0, (), check, chunk_items or CHUNK_ITEMS)
    yield b"\n"


def _pad(depth: int) -> bytes:
    return b"\n" + b"  " * depth


def _encode(
    value: Any, depth: int, path: JsonPath, check: ChunkCheck | None, chunk_items: int
) -> Iterator[bytes]:
    if isinstance(value, StreamedArray):
        yield from _encode_streamed(value, depth, path, check, chunk_items)
    elif isinstance(value, dict) and has_streamed(value):
        for index, (key, item) in enumerate(value.items()):
            yield (b"{" if index == 0 else b",") + _pad(depth + 1) + orjson.dumps(key) + b": "
            yield from _encode(item, depth + 1, (*path, key), check, chunk_items)
        yield _pad(depth) + b"}"
    elif isinstance(value, list | tuple) and has_streamed(value):
        for index, item in enumerate(value):
            yield (b"[" if index == 0 else b",") + _pad(depth + 1)
            yield from _encode(item, depth + 1, (*path, index), check, chunk_items)
        yield _pad(depth) + b"]"
    else:
        encoded = orjson.dumps(value, option=_INDENT)
        yield encoded.replace(b"\n", _pad(depth)) if depth else encoded


def _encode_streamed(
    array: StreamedArray, depth: int, path: JsonPath, check: ChunkCheck | None, chunk_items: int
) -> Iterator[bytes]:
    written = 0
    for chunk in array.chunks(chunk_items):
        if not chunk:
            continue
        encoded = orjson.dumps(list(chunk), option=_INDENT)
        if check is not None:
            check(path, written, orjson.loads(encoded))
        # The chunk encodes as an array at depth 0, "[\n  item,\n  item\n]": its items are
        # what the document holds at depth + 1, once every line moves right by ``depth``.
        body = encoded[2:-2]
        if depth:
            body = b"  " * depth + body.replace(b"\n", _pad(depth))
        yield (b"[\n" if written == 0 else b",\n") + body
        written += len(chunk)
    if written != len(array):
        raise ValueError(f"streamed array at {_pointer(path)} gave {written} of {len(array)} items")
    yield (_pad(depth) + b"]") if written else b"[]"


def _pointer(path: JsonPath) -> str:
    return "/" + "/".join(str(part) for part in path)
