"""JSONRPC_ENABLED through an add-on: the JSON-RPC service is listed in EXTENSIONS only when on.

Scrapy imports every component listed in EXTENSIONS, enabled or not, and the service's module
imports twisted.web's server and txjsonrpc-ng: 15 ms of every ``scrapy crawl`` (measured) for
a service that is off by default.
"""

from __future__ import annotations

from scrapy.settings import BaseSettings

JSONRPC_EXTENSION = "manifest_crawler.extensions.jsonrpc.JsonRpcService"
#: After the project's other extensions, as when the service was listed in EXTENSIONS.
JSONRPC_ORDER = 500


class JsonRpcAddon:
    def update_settings(self, settings: BaseSettings) -> None:
        if not settings.getbool("JSONRPC_ENABLED"):
            return
        from manifest_crawler.extensions.jsonrpc import JsonRpcService

        listed = settings.getdict("EXTENSIONS")
        if JSONRPC_EXTENSION in listed or JsonRpcService in listed:
            return  # listed by hand, in the order given there
        settings.set_in_component_priority_dict("EXTENSIONS", JsonRpcService, JSONRPC_ORDER)
