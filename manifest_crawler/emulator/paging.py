"""Cursors and page windows of both APIs (pure).

CivitAI cursors are what the real server hands out (api-notes, ``pagination-helpers.ts``):
the ORDER BY columns of the first row of the next page joined by ``|`` (``downloads|thumbsUp|
id``; a date ``YYYY-MM-DD HH:MM:SS.mmm`` then the id for Newest and Oldest; an empty token
where the column is NULL), parsed back strictly: the sort's number of tokens, each a date
(it holds ``-``) or an int4. What a cursor selects is the catalogue's business.

Hub cursors are opaque URL-safe base64 of a small JSON object naming the last item served
(its sort value and tie-break) and the offset where the next page starts: resuming by key is
what makes a cursor stable; the offset is only a fast path, checked against the key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import overload

Key = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class KeyCursor:
    """Resume after the item with this sort value and tie-break (the Hub's cursors)."""

    value: int
    tiebreak: int
    offset: int


#: CivitAI's numeric cursor columns are int4 (pagination-helpers.ts parseCursor).
INT4_MAX = 2**31 - 1
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3})\d*)?)?)?Z?"
)
# JavaScript's parseInt: an optional sign and the leading digits, the rest ignored.
_PARSE_INT_RE = re.compile(r"\s*([+]?\d+)")


class InvalidCursor(ValueError):
    """A CivitAI cursor the real server refuses (400 "Invalid cursor")."""


@dataclass(frozen=True, slots=True)
class CursorToken:
    """One value of a CivitAI cursor: an integer, or a date as epoch milliseconds."""

    value: int
    is_date: bool = False


def civitai_date(epoch_seconds: int) -> str:
    """A timestamp(3) as the server's cursors print it: ``2025-03-04 10:10:51.000``."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def encode_civitai_cursor(values: Sequence[int | str | None]) -> str:
    """The columns of a row joined by ``|``; None (SQL NULL) is an empty token, as Postgres'
    CONCAT leaves it."""
    return "|".join("" if value is None else str(value) for value in values)


def decode_civitai_cursor(raw: str, fields: int) -> tuple[CursorToken, ...]:
    """The ``fields`` values of a CivitAI cursor; InvalidCursor as the server says it."""
    tokens = raw.split("|")
    if len(tokens) != fields:
        raise InvalidCursor(
            f"Invalid cursor: expected {fields} value(s) for this sort, received {len(tokens)}"
        )
    return tuple(_token(token) for token in tokens)


def _token(token: str) -> CursorToken:
    if "-" in token:
        match = _DATE_RE.fullmatch(token.strip())
        if match is None:
            raise InvalidCursor(f'Invalid cursor: unparseable date value "{token}"')
        year, month, day, hour, minute, second, millis = (int(part or 0) for part in match.groups())
        try:
            moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            raise InvalidCursor(f'Invalid cursor: unparseable date value "{token}"') from None
        millis *= 10 ** (3 - len(match.group(7) or "000"))
        return CursorToken(int(moment.timestamp()) * 1000 + millis, is_date=True)
    match = _PARSE_INT_RE.match(token)
    if match is None:
        raise InvalidCursor(f'Invalid cursor: unparseable numeric value "{token}"')
    value = int(match.group(1))
    if value > INT4_MAX:
        raise InvalidCursor(f'Invalid cursor: numeric value out of range "{token}"')
    return CursorToken(value)


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
    :meth:`count_up_to`, :meth:`position_after` and :meth:`position_of` instead.
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

    def position_of(self, key_of: Callable[[int], Key], key: Key, *, strict: bool) -> int:
        """Position of the first item whose key is at or after ``key`` (after it when
        ``strict``) in the whole answer, finding only as far as that item."""
        self._find(1)
        # Found far enough once the last item found is past the key (at it, when not strict).
        while self._rest is not None and (
            key_of(self._found[-1]) <= key if strict else key_of(self._found[-1]) < key
        ):
            self._find(2 * len(self._found))
        search = bisect_right if strict else bisect_left
        return search(self._found, key, key=key_of)

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
