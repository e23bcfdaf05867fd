"""Pure: how text from outside (an API's answer, filters.json, a setting) is shown in a log line,
an error or the run report, and made fit to be written.

A server or an editor can send anything: a lone surrogate (JavaScript servers cut strings
inside an emoji), control characters, megabytes. What we show of it is one line, bounded, and
valid UTF-8; what we write of it is repaired (a lone surrogate becomes U+FFFD) or refused.
"""

from __future__ import annotations

import re
from typing import Any

# Control characters (C0, DEL, C1), line and paragraph separators, and surrogates: what
# would break a log line, or cannot be encoded as UTF-8 at all.
_UNSHOWABLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]+")

REPLACEMENT_CHARACTER = "\ufffd"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str, limit: int = 80) -> str:
    """``text`` as one line of a log or an error message: at most ``limit`` characters of it
    (an ellipsis says when there were more), control characters, separators and surrogates
    escaped as ``\\xNN``/``\\uNNNN``."""
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    text = _UNSHOWABLE_RE.sub(_escape, text)
    return f"{text}…" if cut else text


def described(value: Any, limit: int = 60) -> str:
    """A value of unknown type as an error message may name it: strings quoted (and cut as
    ``shown`` cuts them), containers by their type and length only (a repr could be megabytes,
    or recurse past the interpreter's limit)."""
    if isinstance(value, str):
        return f"'{shown(value, limit)}'"
    if isinstance(value, dict | list | tuple):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'} of {len(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits"
    return shown(repr(value), limit)


def writable_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, so that it encodes as UTF-8 (a
    Python string holding one cannot be written; JSON decoders make them from ``\\ud800``)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub(REPLACEMENT_CHARACTER, text)
    return text


def one_line_label(text: str) -> str:
    """A display name: writable, each run of control characters (tabs, newlines, NULs, escape
    sequences) made one space, and stripped."""
    text = writable_text(text)
    if not text.isprintable():
        text = _CONTROL_RE.sub(" ", text)
    return text.strip()


def has_unwritable(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    return not text.isascii() and _SURROGATE_RE.search(text) is not None


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (C0, DEL or C1)."""
    return not text.isprintable() and _CONTROL_RE.search(text) is not None
