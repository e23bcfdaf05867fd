"""The sequential baseline: the original script's shape, in Python.

One request at a time with a plain HTTP client: every filter of filters.json in turn, each
filter's pages in turn (CivitAI's ``nextCursor``, the Hub's ``Link`` header), with the same
parameters, page sizes and max_items as the crawl, keeping the same models (each filter's
content rule, dedup within a filter, Newest's cursors as the crawler sends them) and writing
one JSON manifest per filter.

``python -m bench.baseline --civitai-url URL --hf-url URL --filters filters.json
--max-items 100 --out DIR`` prints ``{"requests": N, "models": M}`` as its last line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests

from bench.harness import client_arguments
from manifest_crawler.apis.civitai import resume_cursor
from manifest_crawler.filters import Filter, load_filters

PAGE_SIZE = {"civitai": 100, "huggingface": 1000}


def crawl_filter(
    session: requests.Session, base_url: str, filter_: Filter, max_items: int | None
) -> tuple[list[str], int]:
    """The filter's model ids in API order, and how many requests it took."""
    seen: set[str] = set()
    ids: list[str] = []
    requests_made = 0
    cursor: str | None = None
    next_url: str | None = None
    previous_cursors: set[str] = set()
    while True:
        remaining = None if max_items is None else max_items - len(ids)
        page_size = PAGE_SIZE[filter_.source]
        if remaining is not None and not filter_.keeps_client_side:
            page_size = min(page_size, remaining)
        if next_url is not None:
            url = next_url
        else:
            pairs = [*filter_.query_pairs(), ("limit", str(page_size))]
            if cursor is not None:
                pairs.append(("cursor", cursor))
            url = f"{base_url}?{urlencode(pairs, quote_via=quote)}"
        response = session.get(url, headers={"Accept": "application/json"}, timeout=60)
        requests_made += 1
        response.raise_for_status()
        # The tolerant parser: CivitAI bodies can hold raw control characters.
        document: Any = json.loads(response.content, strict=False)
        items = document["items"] if filter_.source == "civitai" else document
        for item in items:
            rule = filter_.rule if filter_.keeps_client_side else None
            if rule is not None and not rule.keeps(item.get("nsfwLevel")):
                continue
            model_id = str(item.get("id"))
            if model_id in seen:
                continue
            seen.add(model_id)
            ids.append(model_id)
            if max_items is not None and len(ids) >= max_items:
                return ids, requests_made
        if filter_.source == "civitai":
            metadata = document.get("metadata") or {}
            cursor = metadata.get("nextCursor")
            cursor = None if cursor in (None, "") else str(cursor)
            # A cursor with an empty value (Newest's NULL tail) is one the server refuses.
            if cursor is None or cursor in previous_cursors or "" in cursor.split("|"):
                return ids, requests_made
            previous_cursors.add(cursor)
            cursor = resume_cursor(filter_.param_values("sort"), cursor)
        else:
            link = response.links.get("next", {}).get("url")
            if not link:
                return ids, requests_made
            next_url = link


def main(argv: Sequence[str] | None = None) -> int:
    parser = client_arguments("python -m bench.baseline", "folder for the per-filter manifests")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    urls = {"civitai": args.civitai_url, "huggingface": args.hf_url}
    total_requests = total_models = 0
    with requests.Session() as session:
        for filter_ in load_filters(args.filters).select(args.sources.split(",")):
            max_items = filter_.max_items or (args.max_items or None)
            ids, made = crawl_filter(session, urls[filter_.source], filter_, max_items)
            total_requests += made
            total_models += len(ids)
            name = f"{filter_.source}-{filter_.name.replace('/', '-')}.json"
            (out / name).write_text(json.dumps({"filter": filter_.name, "models": ids}))
    print(json.dumps({"requests": total_requests, "models": total_models}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
