"""The APIs' origins: a request goes to one of them or nowhere, and an API's token goes to that
API's own origin only, and only while the request is in the downloader.

- A request whose scheme, host or port is not an API's (a redirect elsewhere, a ``file://``
  URL, anything a server named) is refused (IgnoreRequest, one error line): no request leaves
  the APIs, whatever their answers say. The spider checks the next pages it is told of
  itself (apis/huggingface.py); this is the transport's own guard, for the rest.
- ``Authorization: Bearer <token>`` (``CIVITAI_API_TOKEN``, ``HF_TOKEN``) is added to a request
  of that API's download slot, to its origin, as it goes out, and taken off again when its
  answer or error comes back, before the redirect, retry and cache middlewares see it: a
  request made from it (a redirect, a retry) carries none, so the token is never in the
  scheduler's queue (JOBDIR), the dev cache or any request sent elsewhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Self

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response

from manifest_crawler.apis.base import Origin, SourceAPI, shown_url, url_origin
from manifest_crawler.apis.civitai import CivitaiAPI
from manifest_crawler.apis.huggingface import HuggingFaceAPI

logger = logging.getLogger(__name__)

#: Between the redirect middleware (600) and the cookies one (700): the token is added after
#: the cache (500) and the backoff (550) let the request go, and taken off before they, and
#: the redirect middleware, see its answer.
ORIGIN_PRIORITY = 650
SOURCE_APIS: tuple[type[SourceAPI], ...] = (CivitaiAPI, HuggingFaceAPI)
_AUTHORIZATION = b"Authorization"


class ApiOriginMiddleware:
    def __init__(
        self, origins: Mapping[str, Origin], tokens: Mapping[str, str], crawler: Crawler
    ) -> None:
        #: source name (a request's download slot) -> its API's origin
        self.origins = dict(origins)
        #: source name -> its token, for the sources that have one
        self.tokens = dict(tokens)
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        origins = {}
        for api in SOURCE_APIS:
            origin = url_origin(crawler.settings[api.url_setting])
            if origin is not None:  # settings_check refuses such a URL before the crawl
                origins[api.name] = origin
        tokens = {
            api.name: token
            for api in SOURCE_APIS
            if (token := os.environ.get(api.token_env, "").strip())
        }
        return cls(origins, tokens, crawler)

    def process_request(self, request: Request) -> None:
        slot = request.meta.get("download_slot")
        source = slot if isinstance(slot, str) else ""
        origin = url_origin(request.url)
        own = self.origins.get(source)
        if origin is None or (origin != own if own else origin not in self.origins.values()):
            self.stats.inc_value("manifest/refused_requests")
            allowed = own or ", ".join(sorted({str(o) for o in self.origins.values()}))
            reason = (
                f"refused a request to {shown_url(request.url)}: only the API's own origin "
                f"({allowed}) is ever asked"
            )
            logger.error("%s", reason[:1].upper() + reason[1:])
            raise IgnoreRequest(reason)
        token = self.tokens.get(source) if own is not None else None
        if token:
            request.headers[_AUTHORIZATION] = f"Bearer {token}"

    def process_response(self, request: Request, response: Response) -> Response:
        request.headers.pop(_AUTHORIZATION, None)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        request.headers.pop(_AUTHORIZATION, None)
