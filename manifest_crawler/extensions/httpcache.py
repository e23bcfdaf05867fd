"""MANIFEST_DEV_CACHE's cache policy and storage (the add-on in addon.py turns the cache on).

- Only the API endpoints' 200 answers are stored, since an error or a rate-limit page replayed
  forever would be worse than none; and never an answer to a URL that carries a credential
  (``token=`` and the like): the URL is stored with it.
- Nothing of a token at rest: the stored request headers never hold ``Authorization`` (the
  origin middleware takes it off before the cache sees the request; the storage drops it
  again), and the cache is private to its user: files 0600 in folders 0700, whatever the
  umask.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl

from scrapy import Spider
from scrapy.extensions.httpcache import DummyPolicy, FilesystemCacheStorage
from scrapy.http import Headers, Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.httpobj import urlparse_cached

from manifest_crawler.filters import SECRET_PARAMS

_URL_SETTINGS = ("CIVITAI_API_URL", "HF_API_URL")
_PRIVATE_UMASK = 0o077


class ApiAnswersPolicy(DummyPolicy):
    """Store the API endpoints' 200 answers, nothing else; serve them until they expire."""

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.endpoints = {
            (parts.scheme, parts.netloc, parts.path)
            for parts in (
                urlparse_cached(Request(settings[name])) for name in _URL_SETTINGS if settings[name]
            )
        }

    def should_cache_request(self, request: Request) -> bool:
        parts = urlparse_cached(request)
        if (parts.scheme, parts.netloc, parts.path) not in self.endpoints:
            return False
        return not any(
            key.lower() in SECRET_PARAMS
            for key, _ in parse_qsl(parts.query, keep_blank_values=True)
        )

    def should_cache_response(self, response: Response, request: Request) -> bool:
        return response.status == 200


@contextmanager
def _private_files() -> Iterator[None]:
    """Files and folders made inside are private (0600, 0700). The umask is the process's:
    this runs in the reactor's thread, where nothing else runs meanwhile, and the threads of
    Twisted's pool (name resolution) create no file."""
    previous = os.umask(_PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


class PrivateFilesystemCacheStorage(FilesystemCacheStorage):
    """Scrapy's filesystem storage, private to its user and without the Authorization header."""

    def open_spider(self, spider: Spider) -> None:
        super().open_spider(spider)
        root = Path(self.cachedir)
        with _private_files():
            root.mkdir(parents=True, exist_ok=True)
        # A cache made before (by an older crawler, under a looser umask) closes too.
        root.chmod(0o700)

    def store_response(self, spider: Spider, request: Request, response: Response) -> None:
        headers = Headers(request.headers)
        headers.pop(b"Authorization", None)
        # The same URL, method and body: the same fingerprint, so the same entry.
        stored = request.replace(headers=headers)
        with _private_files():
            super().store_response(spider, stored, response)
