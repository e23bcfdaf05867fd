"""MANIFEST_DEV_CACHE: replay the APIs' answers from disk, so that site developers can rebuild
the manifests again and again without sending a request.

A Scrapy add-on (``ADDONS``) turns on Scrapy's HttpCacheMiddleware before the crawl starts,
with a policy that stores only the API endpoints' 200 answers (an error or a rate-limit page
replayed forever would be worse than none). The cache sits in front of the backoff middleware,
so a cached page never waits for a backoff or a rate-limit budget.
"""

from __future__ import annotations

import logging
from pathlib import Path

from scrapy.downloadermiddlewares.httpcache import HttpCacheMiddleware
from scrapy.extensions.httpcache import DummyPolicy
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.httpobj import urlparse_cached

logger = logging.getLogger(__name__)

#: Before BackoffRetryMiddleware (550): a cache hit returns before any wait; a miss goes on
#: to be retried there, and only its final answer reaches the cache.
CACHE_PRIORITY = 500
_URL_SETTINGS = ("CIVITAI_API_URL", "HF_API_URL")


class DevCacheAddon:
    def update_settings(self, settings: BaseSettings) -> None:
        if not settings.getbool("MANIFEST_DEV_CACHE"):
            return
        # Resolved here: Scrapy would put a relative HTTPCACHE_DIR inside the project's .scrapy/.
        cache_dir = Path(settings["MANIFEST_DEV_CACHE_DIR"]).expanduser().resolve()
        settings.set("HTTPCACHE_ENABLED", True, priority="addon")
        settings.set("HTTPCACHE_DIR", str(cache_dir), priority="addon")
        settings.set(
            "HTTPCACHE_EXPIRATION_SECS", settings.getint("MANIFEST_DEV_CACHE_TTL"), priority="addon"
        )
        settings.set("HTTPCACHE_POLICY", f"{__name__}.ApiAnswersPolicy", priority="addon")
        settings.set(
            "HTTPCACHE_STORAGE", "scrapy.extensions.httpcache.FilesystemCacheStorage", "addon"
        )
        settings.set_in_component_priority_dict(
            "DOWNLOADER_MIDDLEWARES", HttpCacheMiddleware, CACHE_PRIORITY
        )
        logger.warning(
            "MANIFEST_DEV_CACHE is on: API answers are replayed from %s (expiry: %s); "
            "manifests built this way are not live data",
            cache_dir,
            f"{settings.getint('MANIFEST_DEV_CACHE_TTL')} s"
            if settings.getint("MANIFEST_DEV_CACHE_TTL")
            else "never",
        )


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
        return (parts.scheme, parts.netloc, parts.path) in self.endpoints

    def should_cache_response(self, response: Response, request: Request) -> bool:
        return response.status == 200
