"""Client of the crawl's JSON-RPC service (see extensions/jsonrpc.py).

    python -m manifest_crawler.rpc status|stats|report|pause|unpause|stop
                                   [--url URL] [--token T] [--json] [--all]

The token comes from ``--token`` or the JSONRPC_TOKEN environment variable (the one the crawl
reads too), the URL from ``--url`` or JSONRPC_URL. Exit status: 0 done, 1 the service refused
or answered an error, 2 usage, 3 no service at that URL.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

from manifest_crawler.extensions.progress import format_duration

DEFAULT_URL = "http://127.0.0.1:6080"
CRAWLER_PATH = "/crawler"
STATS_PATH = "/crawler/stats"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_ids = itertools.count(1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        # urllib would replay the Authorization header to wherever a redirect points.
        return None


# No proxies either: an http_proxy variable must not receive the token or the crawl's state.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class RpcError(Exception):
    """The service answered with a JSON-RPC error (or refused the request over HTTP)."""

    def __init__(self, code: int, message: str, data: Any = None, http_status: int = 200) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status


class ServiceUnreachable(Exception):
    """Nothing answered HTTP at the URL."""


def call(
    url: str,
    method: str,
    params: list[Any] | dict[str, Any] | None = None,
    *,
    path: str = CRAWLER_PATH,
    token: str | None = None,
    timeout: float = 10.0,
) -> Any:
    """Call ``method`` at ``url + path`` and return its result; RpcError on an error answer."""
    document = {"jsonrpc": "2.0", "method": method, "params": params or [], "id": next(_ids)}
    body = json.dumps(document).encode("utf-8")
    answer = _request(url, path, body, token, timeout)
    if not isinstance(answer, dict):
        raise RpcError(-32603, "the service answered something other than a JSON-RPC response")
    if "error" in answer:
        error = answer["error"] or {}
        raise RpcError(error.get("code", -32603), error.get("message", "?"), error.get("data"))
    return answer.get("result")


def get(url: str, path: str = "/", *, token: str | None = None, timeout: float = 10.0) -> Any:
    """``GET url + path`` as JSON (the index, the stats, the status)."""
    return _request(url, path, None, token, timeout)


def _request(url: str, path: str, body: bytes | None, token: str | None, timeout: float) -> Any:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if urlsplit(url).scheme not in ("http", "https"):
        raise ServiceUnreachable(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url.rstrip("/") + path, data=body, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnreachable(f"no JSON-RPC service at {url}: {reason}") from None
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise RpcError(-32700, "the service answered something other than JSON") from None


def _http_error(exc: urllib.error.HTTPError) -> RpcError:
    try:
        error = json.loads(exc.read())["error"]
        return RpcError(error["code"], error["message"], error.get("data"), exc.code)
    except (ValueError, KeyError, TypeError):
        return RpcError(-32603, f"HTTP {exc.code} {exc.reason}", None, exc.code)


# --- readable output ----------------------------------------------------------------------


def format_status(status: dict[str, Any], *, show_all: bool = False) -> str:
    lines = [f"Crawl {status.get('spider') or '?'}: {status.get('state', '?')}"]
    progress = status.get("progress")
    if progress:
        lines.append(
            f"Filters: {progress['filters_finished']}/{progress['filters_total']} finished "
            f"({progress['done']} done, {progress['failed']} failed, "
            f"{progress['running']} running, {progress['pending']} pending)"
        )
        lines.append(
            f"Models: {progress['models']}   pages: {progress['pages']}   "
            f"errors: {progress['errors']}   elapsed: {format_duration(progress['elapsed'])}   "
            f"ETA: {format_duration(progress['eta'])}"
        )
    filters = status.get("filters") or []
    shown = [f for f in filters if show_all or f["status"] != "pending"]
    if shown:
        width = max(len(f["filter"]) for f in shown)
        lines.append("")
        lines.append(f"{'STATUS':<8} {'SOURCE':<12} {'FILTER':<{width}} {'PAGES':>6} {'MODELS':>7}")
        for f in shown:
            errors = f"  ({f['errors']} errors)" if f.get("errors") else ""
            lines.append(
                f"{f['status']:<8} {f['source']:<12} {f['filter']:<{width}} "
                f"{f['pages']:>6} {f['models']:>7}{errors}"
            )
    hidden = len(filters) - len(shown)
    if hidden:
        lines.append(f"... and {hidden} pending filters (--all lists them)")
    return "\n".join(lines)


def format_stats(stats: dict[str, Any]) -> str:
    return "\n".join(f"{name:<48} {value}" for name, value in sorted(stats.items()))


def format_pause(result: dict[str, Any]) -> str:
    if result.get("changed"):
        return "Crawl paused: no new requests are sent (those in flight finish)."
    return f"Nothing to pause: the crawl is {result.get('state', '?')}."


def format_unpause(result: dict[str, Any]) -> str:
    if result.get("changed"):
        return "Crawl resumed."
    return f"Nothing to resume: the crawl is {result.get('state', '?')}."


def format_stop(result: dict[str, Any]) -> str:
    if result.get("changed"):
        return (
            "Graceful stop requested: filters already complete are written, "
            "unfinished filters keep their previous manifests."
        )
    return "The crawl is already stopping."


def format_report(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False)


#: command -> (path, method, formatter)
COMMANDS: dict[str, tuple[str, str, Callable[[Any], str]]] = {
    "status": (CRAWLER_PATH, "status", format_status),
    "stats": (STATS_PATH, "get_stats", format_stats),
    "report": (CRAWLER_PATH, "report", format_report),
    "pause": (CRAWLER_PATH, "pause", format_pause),
    "unpause": (CRAWLER_PATH, "unpause", format_unpause),
    "stop": (CRAWLER_PATH, "stop", format_stop),
}


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = argparse.ArgumentParser(
        prog="python -m manifest_crawler.rpc",
        description="Watch and steer a crawl that runs with JSONRPC_ENABLED=true.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument(
        "--url",
        default=os.environ.get("JSONRPC_URL") or DEFAULT_URL,
        help=f"the service's base URL (default: $JSONRPC_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("JSONRPC_TOKEN") or None,
        help="bearer token (default: $JSONRPC_TOKEN, which is better: arguments show in ps)",
    )
    parser.add_argument(
        "--timeout", type=_timeout, default=10.0, help="seconds, above 0 (default: 10)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    parser.add_argument("--all", action="store_true", help="status: list pending filters too")
    args = parser.parse_args(argv)

    path, method, formatter = COMMANDS[args.command]
    try:
        result = call(args.url, method, path=path, token=args.token, timeout=args.timeout)
    except ServiceUnreachable as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE
    except RpcError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_ERROR
    if args.json:
        text = json.dumps(result, indent=2)
    elif args.command == "status":
        text = format_status(result, show_all=args.all)
    else:
        text = formatter(result)
    try:
        print(text, file=out)
        out.flush()
    except BrokenPipeError:
        # The reader went away (`rpc report | head`): what it wanted it has; end quietly.
        _silence(out)
    return EXIT_OK


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _silence(out: TextIO) -> None:
    """Point ``out``'s descriptor at /dev/null, so that the interpreter's last flush at exit
    writes into nothing instead of a closed pipe (which would print an error)."""
    try:
        descriptor = out.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
