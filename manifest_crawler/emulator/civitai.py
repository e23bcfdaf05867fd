"""CivitAI ``GET /api/v1/models``: the request-to-response logic and its twisted.web resource."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import takewhile

import orjson

from .catalogue import (
    DATE_SORTS,
    CivitaiCatalogue,
    CivitaiQuery,
    QueryError,
    parse_civitai_params,
)
from .faults import CIVITAI, FaultConfig
from .lru import WeighedLru
from .paging import InvalidCursor, QueryResult, decode_civitai_cursor
from .payloads import civitai_item
from .responses import ApiResponse, json_response, next_url
from .web import ApiResource, ServerState

# Deep offset paging is refused upstream: page * limit beyond this answers 429.
PAGE_CAP_ITEMS = 1000

# orjson's escapes of the control-character markers, and the raw bytes they stand for.
_RAW_CONTROLS = ((b"\\u0001", b"\x01"), (b"\\u001f", b"\x1f"), (b"\\t", b"\t"))


def raw_control_chars(body: bytes) -> bytes:
    """Un-escape the markers: JSON strings now hold raw control characters, as upstream."""
    for escaped, raw in _RAW_CONTROLS:
        body = body.replace(escaped, raw)
    return body


def civitai_error_body(error: QueryError) -> dict[str, object]:
    """CivitAI's error bodies (``endpoint-helpers.ts`` handleEndpointError, api-notes): a
    parameter that fails validation is a Zod error object under ``error``; anything else
    (a bad cursor, the page cap) is ``{"message": …}``."""
    if not error.path:
        return {"message": error.message}
    issue = {"code": error.code, "path": list(error.path), "message": error.message}
    return {"error": {"issues": [issue], "name": "ZodError"}}


class EncodedItems:
    """Each model's ``items[]`` entry as JSON bytes, kept for the next page that lists it.

    Building an entry (versions, files, images: 3-127 KB of JSON) took about 0.2 ms, 20 ms a
    page of 100, and the filters of a crawl list the same popular models again and again. The
    emulator shares the machine with the crawler it serves: its own CPU time delayed answers
    beyond the configured latency. Bounded by bytes, least recently used first out.
    """

    def __init__(self, catalogue: CivitaiCatalogue, max_bytes: int = 64 * 2**20) -> None:
        self.catalogue = catalogue
        self._encoded: WeighedLru[tuple[int, bool, bool], bytes] = WeighedLru(max_bytes, len)

    def get(self, index: int, *, primary_file_only: bool, control_chars: bool) -> bytes:
        key = (index, primary_file_only, control_chars)
        encoded = self._encoded.get(key)
        if encoded is None:
            item = civitai_item(
                self.catalogue,
                index,
                primary_file_only=primary_file_only,
                control_chars=control_chars,
            )
            encoded = orjson.dumps(item)
            self._encoded.put(key, encoded)
        return encoded


class CivitaiApi:
    """Answers CivitAI listing requests from a catalogue, with the cursor quirks configured."""

    def __init__(self, catalogue: CivitaiCatalogue, faults: FaultConfig | None = None) -> None:
        self.catalogue = catalogue
        self.faults = faults or FaultConfig()
        self.items = EncodedItems(catalogue)
        # (query, limit, page number) of the pages served empty once (FaultConfig.empty_pages).
        self._emptied: set[tuple[CivitaiQuery, int, int]] = set()

    def respond(self, pairs: Sequence[tuple[str, str]], base_url: str) -> ApiResponse:
        """The response to ``GET base_url?pairs`` (``base_url`` is used to build nextPage)."""
        try:
            return self._respond(pairs, base_url)
        except InvalidCursor as exc:
            # A bad cursor is answered with a plain message (endpoint-helpers.ts).
            return json_response(400, {"message": str(exc)})
        except QueryError as exc:
            return json_response(exc.status, civitai_error_body(exc))

    def _respond(self, pairs: Sequence[tuple[str, str]], base_url: str) -> ApiResponse:
        query, paging = parse_civitai_params(pairs)
        if paging.page is not None and paging.page * paging.limit > PAGE_CAP_ITEMS:
            raise QueryError(
                429,
                f"Too many items requested: page * limit exceeds {PAGE_CAP_ITEMS}. "
                "Use cursor-based pagination (the cursor parameter) instead.",
            )
        cat = self.catalogue
        cfg = self.faults
        result = cat.result(query)
        start = self._start(result, query.sort, paging.cursor)
        # The server reads limit + 1 rows and hands the extra one back as the cursor; with
        # #1111 (skip_at_boundary) the cursor names the row after it, which is then lost.
        count = paging.limit + 1 + cfg.skip_at_boundary
        rows = self._rows(result, query.sort, start, count, after_cursor=bool(paging.cursor))
        if not rows:
            return self._page([], None, pairs, base_url, primary_only=False)
        page_number = start // paging.limit + 1
        page = (query, paging.limit, page_number)
        if paging.cursor and page_number in cfg.empty_pages and page not in self._emptied:
            # Issue #1848: a page that comes back empty yet points onwards. Its cursor names
            # the row before it (a row is served twice, none is lost), and the page answers
            # normally when asked again.
            self._emptied.add(page)
            before = cat.cursor(query.sort, result[start - 1])
            return self._page([], before, pairs, base_url, primary_only=False)
        next_cursor: str | None = None
        if len(rows) > paging.limit + cfg.skip_at_boundary:
            next_cursor = cat.cursor(query.sort, rows[-1])
            if cfg.cursor_loop_page == page_number and paging.cursor:
                next_cursor = paging.cursor
        page_rows = rows[: paging.limit]
        return self._page(
            page_rows, next_cursor, pairs, base_url, primary_only=paging.primary_file_only
        )

    def _start(self, result: QueryResult, sort: str, raw: str | None) -> int:
        """Where the rows a cursor selects begin in ``result`` (0 without a cursor)."""
        if raw is None:
            return 0
        cat = self.catalogue
        tokens = decode_civitai_cursor(raw, cat.cursor_fields(sort))
        key, strict = cat.cursor_bound(sort, tokens)
        return result.position_of(cat.sort_key(sort), key, strict=strict)

    def _rows(
        self, result: QueryResult, sort: str, start: int, count: int, *, after_cursor: bool
    ) -> list[int]:
        """Up to ``count`` rows of ``result`` from ``start``. After a cursor a date sort stops
        at the NULL tail: no comparison with a NULL lastVersionAt is true."""
        rows = list(result[start : start + count])
        if after_cursor and sort in DATE_SORTS:
            has_version = self.catalogue.has_version
            rows = list(takewhile(has_version, rows))
        return rows

    def _page(
        self,
        indices: Sequence[int],
        next_cursor: str | None,
        pairs: Sequence[tuple[str, str]],
        base_url: str,
        *,
        primary_only: bool,
    ) -> ApiResponse:
        control = self.faults.control_chars
        encoded = self.items.get
        hidden = self.catalogue.hidden
        # Models with no visible version are dropped after the SQL LIMIT (api-notes): a page
        # can be shorter than limit, even empty, and still carry a cursor.
        items = [
            encoded(i, primary_file_only=primary_only, control_chars=control)
            for i in indices
            if not hidden[i]
        ]
        metadata: dict[str, str] = {}
        if next_cursor is not None:
            metadata["nextCursor"] = next_cursor
            metadata["nextPage"] = next_url(base_url, pairs, "cursor", next_cursor)
        # Exactly orjson.dumps({"items": [...], "metadata": metadata}), from encoded items.
        body = b"".join(
            (b'{"items":[', b",".join(items), b'],"metadata":', orjson.dumps(metadata), b"}")
        )
        if control:
            body = raw_control_chars(body)
        return ApiResponse(200, body)


class CivitaiResource(ApiResource):
    """twisted.web resource serving ``GET /api/v1/models``."""

    def __init__(self, api: CivitaiApi, state: ServerState) -> None:
        super().__init__(CIVITAI, api.respond, state)
        self.api = api
