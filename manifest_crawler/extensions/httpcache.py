"""MANIFEST_DEV_CACHE's cache policy (the add-on in addon.py turns the cache on): only the
API endpoints' 200 answers are stored, since an error or a rate-limit page replayed forever
would be worse than none."""

from __future__ import annotations

from scrapy.extensions.httpcache import DummyPolicy
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.httpobj import urlparse_cached

_URL_SETTINGS = ("CIVITAI_API_URL", "HF_API_URL")


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
