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
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
