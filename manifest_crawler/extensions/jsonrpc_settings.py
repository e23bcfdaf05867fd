"""The JSON-RPC service's settings read as pure functions: the extension uses them, and so
does the settings check that runs before Scrapy has installed its reactor (importing the
extension's module, which imports twisted.web, would install the default one)."""

from __future__ import annotations

import ipaddress
from typing import Any

from scrapy.exceptions import NotConfigured


def port_range(value: Any) -> list[int]:
    """JSONRPC_PORT as listen_tcp wants it: an int, "6080", "6080,7030" or a 1-2 item list."""
    if value is None or value == "":
        return [0]
    if isinstance(value, int) and not isinstance(value, bool):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [part for part in value.replace("-", ",").split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise NotConfigured(f"JSONRPC_PORT={value!r}: expected a port or a [first, last] range")
    try:
        ports = [int(item) for item in items]
    except (TypeError, ValueError):
        raise NotConfigured(f"JSONRPC_PORT={value!r}: ports must be integers") from None
    if (
        not 1 <= len(ports) <= 2
        or any(not 0 <= p <= 65535 for p in ports)
        or ports != sorted(ports)
    ):
        raise NotConfigured(f"JSONRPC_PORT={value!r}: expected a port or a [first, last] range")
    return ports


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
