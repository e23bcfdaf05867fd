"""The plain-client baseline: the crawl's work without Scrapy, for its CPU per model.

asyncio and aiohttp fetch the same pages as ``scrapy crawl`` (the same chains of filters
sharing a listing, the same URLs and page sizes, at most ``--concurrency`` requests in
flight per API, the longest chains first), parse them with the same SourceAPI parsers, keep
models by the same per-model rules (apis/selection.py ``select_items``: client-side rules,
normalisation, dedup, max_items) and write the same manifests and all-models.json, checked
against the same schemas and committed together (output/). What it leaves out is what makes
the crawler a build step rather than a script: the run report, changes.json, a previous
run's fallbacks, JOBDIR, the progress line; its retries are minimal (429 and 5xx, a few
times).

``python -m bench.plain --civitai-url URL --hf-url URL --filters filters.json --max-items 100
--out DIR`` prints ``{"requests": N, "pages": P, "models": M}`` as its last line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from scrapy.http import TextResponse

from bench.harness import client_arguments
from manifest_crawler.apis.base import Page, SourceAPI
from manifest_crawler.apis.civitai import CivitaiAPI
from manifest_crawler.apis.huggingface import HuggingFaceAPI
from manifest_crawler.apis.normalize import NormalModel
from manifest_crawler.apis.selection import select_items
from manifest_crawler.critical_path import chain_pages_left
from manifest_crawler.filters import item_limit, load_filters
from manifest_crawler.ledger import FilterState, FilterStatus, Ledger
from manifest_crawler.middlewares.backoff import parse_ratelimit, parse_retry_after
from manifest_crawler.output.manifests import (
    ALL_MODELS_FILE,
    AtomicFiles,
    CollectedModels,
    Entry,
    ManifestModel,
    SourceManifest,
    build_manifest,
    compact_entry,
    manifest_filename,
    merge_all_models,
    utc_timestamp,
)
from manifest_crawler.output.schemas import ALL_MODELS_SCHEMA, MANIFEST_SCHEMA, Validators
from manifest_crawler.spiders.base import chain_page_size, chains

APIS: dict[str, type[SourceAPI]] = {"civitai": CivitaiAPI, "huggingface": HuggingFaceAPI}
ATTEMPTS = 6
MAX_EMPTY_PAGES = 10


class PlainCrawl:
    def __init__(self, apis: dict[str, SourceAPI], concurrency: int) -> None:
        self.apis = apis
        self.places = {name: asyncio.Semaphore(concurrency) for name in apis}
        self.requests = 0
        self.models: defaultdict[tuple[str, str], CollectedModels] = defaultdict(CollectedModels)
        self._shared: dict[str, ManifestModel] = {}

    async def fetch(self, session: aiohttp.ClientSession, api: SourceAPI, url: str) -> Page:
        for attempt in range(ATTEMPTS):
            async with self.places[api.name]:
                self.requests += 1
                async with session.get(url, headers=api.headers) as answer:
                    body = await answer.read()
                    status, headers = answer.status, answer.headers
            if status == 200:
                # The parsers read a Scrapy response: the body, the Link header.
                fields = {name: headers.getall(name) for name in headers}
                return api.parse(TextResponse(url, status=status, headers=fields, body=body))
            if (status != 429 and status < 500) or attempt + 1 == ATTEMPTS:
                raise RuntimeError(f"HTTP {status} for {url}")
            await asyncio.sleep(_wait(headers, attempt))
        raise AssertionError("unreachable")

    async def crawl_chain(self, session: aiohttp.ClientSession, states: list[FilterState]) -> None:
        api = self.apis[states[0].filter.source]
        page: Page | None = None
        while states:
            url = api.page_url(states[0].filter, chain_page_size(states, api), page)
            page = await self.fetch(session, api, url)
            going_on = []
            for state in states:
                state.pages += 1
                state.items_read += len(page.items)
                state.empty_pages = 0 if page.items else state.empty_pages + 1
                selection = select_items(
                    api, state.filter, page.items, state.seen_ids, state.remaining
                )
                state.excluded += selection.excluded
                self.collect(state, selection.models)
                cursor = page.next_cursor
                if (
                    state.remaining == 0
                    or cursor is None
                    or cursor in state.cursors
                    or state.empty_pages > MAX_EMPTY_PAGES
                ):
                    state.finish(FilterStatus.DONE, "done")
                else:
                    state.cursors.add(cursor)
                    going_on.append(state)
            states = going_on

    def collect(self, state: FilterState, models: list[NormalModel]) -> None:
        """As the spider ranks a page's models and the writer collects them: compact
        entries, shared."""
        collected = self.models[state.filter.key]
        for model in models:
            rank = state.models
            state.seen_ids.add(model.id)
            entry: Entry
            if compact_entry(model.id, model.slug, model.name) is not None:
                entry = sys.intern(model.id)
            else:
                known = self._shared.get(model.id)
                if known is None or known.slug != model.slug or known.name != model.name:
                    known = ManifestModel(
                        sys.intern(model.id), sys.intern(model.slug), sys.intern(model.name)
                    )
                    self._shared.setdefault(known.id, known)
                entry = known
            collected.add(rank, entry)

    def pages_left(self, states: list[FilterState]) -> int:
        return chain_pages_left(states, self.apis[states[0].filter.source].max_page_size)

    async def run(self, ledger: Ledger) -> None:
        groups = chains(ledger)
        # The longest chains first, as the crawl sends them.
        groups.sort(
            key=lambda group: chain_pages_left(
                group, self.apis[group[0].filter.source].max_page_size
            ),
            reverse=True,
        )
        for state in ledger:
            state.start()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(self.crawl_chain(session, group) for group in groups))

    def write(self, ledger: Ledger, out: Path, origins: dict[str, str]) -> None:
        """Every manifest and all-models.json, checked as the writer checks them, committed
        together."""
        timestamp = utc_timestamp()
        validators = Validators()
        manifests = []
        with AtomicFiles() as files:
            for state in ledger:
                ranked = self.models[state.filter.key].ranked()
                path = out / manifest_filename(*state.filter.key)
                document = build_manifest(
                    state.filter.name,
                    ranked,
                    timestamp,
                    origins[state.filter.source],
                    source=state.filter.source,
                    label=state.filter.label,
                )
                files.write(path, validators.encode_checked(MANIFEST_SCHEMA, document, path.name))
                manifests.append(SourceManifest(state.filter.source, ranked))
            document = merge_all_models(manifests, timestamp, origins)
            files.write(
                out / ALL_MODELS_FILE,
                validators.encode_checked(ALL_MODELS_SCHEMA, document, ALL_MODELS_FILE),
            )
            files.commit()


def _wait(headers: Any, attempt: int) -> float:
    """Seconds before trying again: what a spent RateLimit or a Retry-After says, else
    1, 2, 4, … s."""
    budget = parse_ratelimit(headers.get("RateLimit", ""))
    if budget is not None and budget[0] == 0:
        return budget[1] + 1.0
    retry_after = parse_retry_after(headers.get("Retry-After", ""))
    return retry_after if retry_after is not None else float(2**attempt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = client_arguments("python -m bench.plain", "folder for the manifests")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per API")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    urls = {"civitai": args.civitai_url, "huggingface": args.hf_url}
    selected = load_filters(args.filters).select(args.sources.split(","))
    ledger = Ledger((f, item_limit(f.max_items, args.max_items)) for f in selected)
    sources = {state.filter.source for state in ledger}
    crawl = PlainCrawl({name: APIS[name](urls[name]) for name in sources}, args.concurrency)
    asyncio.run(crawl.run(ledger))
    crawl.write(ledger, out, urls)
    pages = sum(state.pages for state in ledger)
    models = sum(state.models for state in ledger)
    print(json.dumps({"requests": crawl.requests, "pages": pages, "models": models}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
