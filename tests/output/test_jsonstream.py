"""Streamed documents encode to exactly the bytes of the whole document, a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifest_crawler.output.jsonstream import (
    JsonPath,
    StreamedArray,
    encode_chunks,
    encode_json,
    skeleton,
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
)
_plain = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _documents(draw: st.DrawFn, depth: int = 0) -> tuple[Any, Any]:
    """(document with StreamedArrays, the same document as plain JSON)."""
    kind = draw(
        st.sampled_from(["plain", "streamed", "made", "dict", "list"] if depth < 3 else ["plain"])
    )
    if kind == "plain":
        value = draw(_plain)
        return value, value
    if kind in ("streamed", "made"):
        items = draw(st.lists(_plain, max_size=9))
        if kind == "streamed":
            return StreamedArray(items), items
        # Each item made from its source as its chunk is made.
        return StreamedArray(range(len(items)), make=items.__getitem__), items
    children = draw(st.lists(_documents(depth + 1), max_size=4))
    if kind == "list":
        return [c[0] for c in children], [c[1] for c in children]
    keys = draw(
        st.lists(st.text(max_size=4), min_size=len(children), max_size=len(children), unique=True)
    )
    return dict(zip(keys, (c[0] for c in children), strict=True)), dict(
        zip(keys, (c[1] for c in children), strict=True)
    )


def streamed_arrays(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, StreamedArray]]:
    """Every StreamedArray in ``value`` with its path, in document order."""
    if isinstance(value, StreamedArray):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from streamed_arrays(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from streamed_arrays(item, (*path, index))


@given(_documents(), st.integers(1, 4))
def test_streamed_documents_encode_to_the_bytes_of_the_whole(
    pair: tuple[Any, Any], size: int
) -> None:
    document, plain = pair
    expected = orjson.dumps(plain, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    seen: list[tuple[Any, int, list[Any]]] = []
    pieces = list(encode_chunks(document, lambda *chunk: seen.append(chunk), chunk_items=size))
    assert b"".join(pieces) == expected == encode_json(document)
    # Every item of every streamed array went through the check once, in order.
    for path, array in streamed_arrays(document):
        checked = [item for p, _, items in seen if p == path for item in items]
        assert checked == orjson.loads(orjson.dumps(list(array)))
        starts = [start for p, start, _ in seen if p == path]
        assert starts == list(range(0, len(array), size))[: len(starts)]
    assert (
        orjson.loads(expected) == orjson.loads(orjson.dumps(skeleton(document)))
        or seen
        or any(True for _ in streamed_arrays(document))
    )


def test_a_check_stops_the_encoding_at_the_chunk_it_refuses() -> None:
    document = {"models": StreamedArray(list(range(10)))}

    def refuse_seven(path: Any, start: int, items: list[Any]) -> None:
        if 7 in items:
            raise ValueError(f"7 at {path}")

    pieces = encode_chunks(document, refuse_seven, chunk_items=3)
    produced = []
    with pytest.raises(ValueError, match="7 at"):
        for piece in pieces:
            produced.append(piece)
    assert b"7" not in b"".join(produced)


class _ClaimsThree(Sequence[int]):
    """A sequence whose length says 3 while its slices hold 2 items."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: Any) -> Any:
        return [1, 2]


def test_an_array_that_gives_fewer_items_than_it_claims_is_an_error() -> None:
    with pytest.raises(ValueError, match="gave 2 of 3"):
        encode_json({"models": StreamedArray(_ClaimsThree())})


def test_a_streamed_array_is_a_sequence() -> None:
    made = StreamedArray(range(3), make=lambda i: i + 1)
    assert made == [1, 2, 3] and len(made) == 3 and made[1] == 2 and list(made) == [1, 2, 3]
    assert made[1:] == [2, 3]
    assert StreamedArray([4, 5])[-1] == 5
    assert StreamedArray([4, 5], make=str)[-1] == "5"
    with pytest.raises(TypeError):
        StreamedArray()  # type: ignore[call-arg]
