"""Responses as plain values, so the API logic stays testable without a server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

import orjson

JSON = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()

    def with_headers(self, headers: Sequence[tuple[str, str]]) -> ApiResponse:
        if not headers:
            return self
        return replace(self, headers=(*self.headers, *headers))

    def json(self) -> Any:
        """The body parsed (tolerating raw control characters); for tests and tools."""
        import json

        return json.loads(self.body, strict=False)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def json_response(status: int, obj: Any, headers: Sequence[tuple[str, str]] = ()) -> ApiResponse:
    return ApiResponse(status, orjson.dumps(obj), JSON, tuple(headers))


def next_url(base_url: str, pairs: Sequence[tuple[str, str]], key: str, value: str) -> str:
    """``base_url`` with every original parameter, in order, and ``key`` set to ``value``."""
    kept = [(k, v) for k, v in pairs if k != key]
    kept.append((key, value))
    return f"{base_url}?{urlencode(kept, quote_via=quote)}"
