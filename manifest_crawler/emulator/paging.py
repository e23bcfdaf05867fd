"""Cursors and page windows of both APIs (pure).

A cursor names the last item served (its sort value and tie-break), plus the offset where
the next page starts. Resuming by key rather than by offset is what the real APIs do and
what makes a cursor stable; the offset is only a fast path, checked against the key.

CivitAI cursors are plain strings ``"<value>|<id>|<offset>"`` (the site's style); a bare
number is an offset cursor, which the emulator hands out only for the empty-page quirk.
Hub cursors are opaque URL-safe base64 of a small JSON object.
"""

from __future__ import annotations

import base64
import binascii
import json
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import overload

Key = tuple[int, int]


@dataclass(frozen=True, slots=True)
class KeyCursor:
    """Resume after the item with this sort value and tie-break (CivitAI id / Hub index)."""

    value: int
    tiebreak: int
    offset: int


@dataclass(frozen=True, slots=True)
class OffsetCursor:
    """Resume at a plain position in the answer."""

    offset: int


Cursor = KeyCursor | OffsetCursor


def encode_civitai_cursor(cursor: KeyCursor) -> str:
    return f"{cursor.value}|{cursor.tiebreak}|{cursor.offset}"


def decode_civitai_cursor(raw: str) -> Cursor:
    """Parse a CivitAI cursor; raises ValueError when it is not one the emulator issued."""
    text = raw.strip()
    if text.isdigit():
        return OffsetCursor(int(text))
    parts = text.split("|")
    if len(parts) != 3:
        raise ValueError(f"malformed cursor {raw!r}")
    value, tiebreak, offset = (int(part) for part in parts)
    if offset < 0:
        raise ValueError(f"malformed cursor {raw!r}")
    return KeyCursor(value, tiebreak, offset)


def encode_hf_cursor(sort: str, cursor: KeyCursor) -> str:
    payload = json.dumps(
        {"s": sort, "v": cursor.value, "i": cursor.tiebreak, "o": cursor.offset},
        separators=(",", ":"),
    ).encode()
    # URL-safe and unpadded: survives any client's query-string handling untouched.
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_hf_cursor(raw: str, sort: str) -> KeyCursor:
    """Parse a Hub cursor; raises ValueError if malformed or issued for another sort."""
    try:
        padded = raw + "=" * (-len(raw) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        cursor = KeyCursor(int(data["v"]), int(data["i"]), int(data["o"]))
        issued_for = data["s"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed cursor {raw!r}") from exc
    if issued_for != sort or cursor.offset < 0:
        raise ValueError(f"cursor {raw!r} does not belong to this listing")
    return cursor


def resume_position(
    result: Sequence[int], key_of: Callable[[int], Key], cursor_key: Key, hint: int
) -> int:
    """Position of the first item after ``cursor_key`` in ``result`` (ascending by key_of)."""
    if 0 < hint <= len(result) and key_of(result[hint - 1]) == cursor_key:
        return hint
    return bisect_right(result, cursor_key, key=key_of)


def window(total: int, start: int, limit: int) -> tuple[int, int]:
    """The [start, end) slice a page of ``limit`` items starting at ``start`` covers."""
    start = max(0, min(start, total))
    return start, min(total, start + limit)


class QueryResult(Sequence[int]):
    """The catalogue indices answering a query, in order, found only as far as asked.

    A listing's first page needs its first hundred matches, not a scan of the whole
    catalogue: scanning 100,000 models took 10-15 ms per first page, and a crawl starts with
    dozens of first pages at once. What was found is kept for the listing's later pages. It
    is a full Sequence, but ``len`` (and a negative index) finds everything: paging uses
    :meth:`count_up_to` and :meth:`position_after` instead.
    """

    __slots__ = ("_found", "_rest")

    def __init__(self, matches: Iterator[int]) -> None:
        self._found = array("i")
        self._rest: Iterator[int] | None = matches

    @property
    def found(self) -> int:
        """How many indices have been found so far (what the object holds)."""
        return len(self._found)

    def count_up_to(self, limit: int) -> int:
        """``min(len(self), limit)``, finding no more than ``limit`` matches."""
        self._find(limit)
        return min(len(self._found), limit)

    def position_after(self, key_of: Callable[[int], Key], cursor_key: Key, hint: int) -> int:
        """:func:`resume_position` in the whole answer, finding only up to the cursor."""
        self._find(max(hint, 1))
        while self._rest is not None and key_of(self._found[-1]) <= cursor_key:
            self._find(2 * len(self._found))
        return resume_position(self._found, key_of, cursor_key, hint)

    def _find(self, count: int) -> None:
        rest = self._rest
        if rest is None or len(self._found) >= count:
            return
        found = self._found
        found.extend(islice(rest, count - len(found)))
        if len(found) < count:
            self._rest = None

    def _find_all(self) -> array[int]:
        if self._rest is not None:
            self._found.extend(self._rest)
            self._rest = None
        return self._found

    def __len__(self) -> int:
        return len(self._find_all())

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...
    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        if isinstance(index, slice):
            stop = index.stop
            if stop is None or stop < 0 or (index.start or 0) < 0:
                return self._find_all()[index]
            self._find(stop)
            return self._found[index]
        if index < 0:
            return self._find_all()[index]
        self._find(index + 1)
        return self._found[index]

    def __iter__(self) -> Iterator[int]:
        found, position = self._found, 0
        while True:
            if position >= len(found):
                self._find(max(64, 2 * len(found)))
                if position >= len(found):
                    return
            yield found[position]
            position += 1
