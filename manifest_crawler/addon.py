"""The project's add-on (ADDONS): wires the optional parts that settings turn on, before the
crawl's components are built.

- ``MANIFEST_DEV_CACHE``: replay the APIs' answers from disk, so that site developers can
  rebuild the manifests again and again without sending a request. Scrapy's
  HttpCacheMiddleware goes in front of the backoff middleware, so a cached page never waits for
  a backoff or a rate-limit budget, with a policy that stores only the API endpoints' 200
  answers (``extensions/httpcache.py``).
- ``JSONRPC_ENABLED``: the JSON-RPC service (``extensions/jsonrpc.py``) joins EXTENSIONS only
  when on. Scrapy imports every component listed in EXTENSIONS, enabled or not, and the
  service's module imports twisted.web's server and txjsonrpc-ng.
"""

from __future__ import annotations

import logging
from pathlib import Path

from scrapy.downloadermiddlewares.httpcache import HttpCacheMiddleware
from scrapy.settings import BaseSettings

from manifest_crawler.extensions.httpcache import ApiAnswersPolicy, PrivateFilesystemCacheStorage

logger = logging.getLogger(__name__)

#: Before BackoffRetryMiddleware (550): a cache hit returns before any wait; a miss goes on
#: to be retried there, and only its final answer reaches the cache.
CACHE_PRIORITY = 500
JSONRPC_EXTENSION = "manifest_crawler.extensions.jsonrpc.JsonRpcService"
#: After the project's other extensions, as when the service was listed in EXTENSIONS.
JSONRPC_ORDER = 500


class ManifestAddon:
    def update_settings(self, settings: BaseSettings) -> None:
        if settings.getbool("MANIFEST_DEV_CACHE"):
            _enable_dev_cache(settings)
        if settings.getbool("JSONRPC_ENABLED"):
            _enable_jsonrpc(settings)


def _enable_dev_cache(settings: BaseSettings) -> None:
    # Resolved here: Scrapy would put a relative HTTPCACHE_DIR inside the project's .scrapy/.
    cache_dir = Path(settings["MANIFEST_DEV_CACHE_DIR"]).expanduser().resolve()
    ttl = settings.getint("MANIFEST_DEV_CACHE_TTL")
    settings.set("HTTPCACHE_ENABLED", True, priority="addon")
    settings.set("HTTPCACHE_DIR", str(cache_dir), priority="addon")
    settings.set("HTTPCACHE_EXPIRATION_SECS", ttl, priority="addon")
    settings.set("HTTPCACHE_POLICY", ApiAnswersPolicy, priority="addon")
    settings.set("HTTPCACHE_STORAGE", PrivateFilesystemCacheStorage, priority="addon")
    settings.set_in_component_priority_dict(
        "DOWNLOADER_MIDDLEWARES", HttpCacheMiddleware, CACHE_PRIORITY
    )
    logger.warning(
        "MANIFEST_DEV_CACHE is on: API answers are replayed from %s (expiry: %s); "
        "manifests built this way are not live data",
        cache_dir,
        f"{ttl} s" if ttl else "never",
    )


def _enable_jsonrpc(settings: BaseSettings) -> None:
    from manifest_crawler.extensions.jsonrpc import JsonRpcService

    listed = settings.getdict("EXTENSIONS")
    if JSONRPC_EXTENSION in listed or JsonRpcService in listed:
        return  # listed by hand, in the order given there
    settings.set_in_component_priority_dict("EXTENSIONS", JsonRpcService, JSONRPC_ORDER)
