"""Hugging Face ``GET /api/models``: the request-to-response logic and its resource."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from .catalogue import HfCatalogue, QueryError, parse_hf_params
from .faults import HUGGINGFACE
from .paging import KeyCursor, decode_hf_cursor, encode_hf_cursor, window
from .payloads import hf_entry
from .responses import ApiResponse, json_response, next_url
from .web import ApiResource, ServerState


class HuggingFaceApi:
    """Answers Hub model listings from a catalogue; pages are linked by the Link header."""

    def __init__(self, catalogue: HfCatalogue) -> None:
        self.catalogue = catalogue

    def respond(self, pairs: Sequence[tuple[str, str]], base_url: str) -> ApiResponse:
        """The response to ``GET base_url?pairs`` (``base_url`` is used to build Link)."""
        try:
            return self._respond(pairs, base_url)
        except QueryError as exc:
            return json_response(exc.status, {"error": exc.message})

    def _respond(self, pairs: Sequence[tuple[str, str]], base_url: str) -> ApiResponse:
        query, paging = parse_hf_params(pairs)
        cat = self.catalogue
        result = cat.result(query)
        start = 0
        if paging.cursor is not None:
            try:
                cursor = decode_hf_cursor(paging.cursor, query.sort)
            except ValueError:
                raise QueryError(400, "Invalid cursor") from None
            key = cat.cursor_key(query.sort, cursor.value, cursor.tiebreak)
            start = result.position_after(cat.sort_key(query.sort), key, cursor.offset)
        # As far as this page can tell: one item past it says whether there is a next page.
        total = result.count_up_to(start + paging.limit + 1)
        start, end = window(total, start, paging.limit)
        entries = [
            hf_entry(
                cat,
                i,
                full=paging.full,
                expand=paging.expand,
                config=paging.config,
                card_data=paging.card_data,
            )
            for i in result[start:end]
        ]
        headers: tuple[tuple[str, str], ...] = ()
        if end < total:
            last = result[end - 1]
            value = cat.sort_values(query.sort)[last]
            token = encode_hf_cursor(query.sort, KeyCursor(value, last, end))
            headers = (("Link", f'<{next_url(base_url, pairs, "cursor", token)}>; rel="next"'),)
        return ApiResponse(200, orjson.dumps(entries), headers=headers)


class HuggingFaceResource(ApiResource):
    """twisted.web resource serving ``GET /api/models``."""

    def __init__(self, api: HuggingFaceApi, state: ServerState) -> None:
        super().__init__(HUGGINGFACE, api.respond, state)
        self.api = api
