"""Client of the crawl's JSON-RPC service (see extensions/jsonrpc.py).

    python -m manifest_crawler.rpc status|stats|report|pause|unpause|stop
                                   [--dir MANIFEST_DIR] [--url URL] [--token T] [--json] [--all]

It talks to the address the running crawl recorded in its lock file (``--dir``, default
$MANIFEST_DIR or public/manifests; files.FolderLock), never to a port guessed: a port another
process holds would get the token. ``--url`` names another address, but the token (``--token``
or the JSONRPC_TOKEN environment variable, the one the crawl reads too) goes only to the address
the crawl records. Every answer is bounded (MAX_ANSWER_BYTES, ``--timeout`` for the whole
exchange) and checked for its shape; anything else is one error line, the server's text with
its control characters escaped. Exit status: 0 done, 1 the service refused or answered an error
or something that is no answer, 2 usage, 3 no service at that address.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import socket
import sys
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import msgspec

from manifest_crawler.extensions.progress import format_duration
from manifest_crawler.files import read_lock_record

CRAWLER_PATH = "/crawler"
STATS_PATH = "/crawler/stats"
#: No answer of the service comes near this (the stats of a big crawl are a few KB).
MAX_ANSWER_BYTES = 1 << 20

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_ids = itertools.count(1)


class RpcError(Exception):
    """The service answered with a JSON-RPC error, refused the request over HTTP, or answered
    something that is no JSON-RPC answer."""

    def __init__(self, code: int, message: str, data: Any = None, http_status: int = 200) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status


class ServiceUnreachable(Exception):
    """Nothing answered HTTP at the URL, or not within the time allowed."""


# --- what an answer must look like -------------------------------------------------------------


class _Error(msgspec.Struct):
    code: int
    message: str
    data: Any = None


class _Answer(msgspec.Struct):
    jsonrpc: Literal["2.0"]
    id: int | str | None = None
    result: Any = msgspec.UNSET
    error: _Error | msgspec.UnsetType | None = msgspec.UNSET


class _Progress(msgspec.Struct):
    filters_total: int
    filters_finished: int
    done: int
    failed: int
    running: int
    pending: int
    pages: int
    models: int
    errors: int
    elapsed: float | None = None
    eta: float | None = None


class _FilterRow(msgspec.Struct):
    source: str
    filter: str
    status: str
    pages: int
    models: int
    errors: int = 0


class _Status(msgspec.Struct):
    spider: str | None = None
    state: str = "?"
    progress: _Progress | None = None
    filters: list[_FilterRow] | None = None


class _Steered(msgspec.Struct):
    changed: bool = False
    state: str = "?"


#: What each method's result must be (checked before it is shown).
_RESULT_SHAPES: dict[str, Any] = {
    "status": _Status,
    "get_stats": dict[str, Any],
    "report": dict[str, Any],
    "pause": _Steered,
    "unpause": _Steered,
    "stop": _Steered,
}


def _decode(raw: bytes) -> Any:
    """JSON, or RpcError -32700 (msgspec refuses NaN, Infinity and too deep nesting alike)."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError, ValueError):
        raise RpcError(-32700, "the service answered something other than JSON") from None


def call(
    url: str,
    method: str,
    params: list[Any] | dict[str, Any] | None = None,
    *,
    path: str = CRAWLER_PATH,
    token: str | None = None,
    timeout: float = 10.0,
) -> Any:
    """Call ``method`` at ``url + path`` and return its result; RpcError on an error answer or
    one that is not a JSON-RPC 2.0 answer to this call (of the method's shape, when known)."""
    call_id = next(_ids)
    document = {"jsonrpc": "2.0", "method": method, "params": params or [], "id": call_id}
    body = json.dumps(document).encode("utf-8")
    answer = _request(url, path, body, token, timeout)
    try:
        checked = msgspec.convert(answer, _Answer)
    except msgspec.ValidationError as exc:
        raise RpcError(-32603, f"the service answered no JSON-RPC 2.0 answer ({exc})") from None
    if isinstance(checked.error, _Error):
        error = checked.error
        raise RpcError(error.code, error.message, error.data)
    if (
        checked.id != call_id
        or checked.result is msgspec.UNSET
        or checked.error is not msgspec.UNSET
    ):
        raise RpcError(-32603, "the service's answer is not the answer to this call")
    shape = _RESULT_SHAPES.get(method)
    if shape is not None:
        try:
            msgspec.convert(checked.result, shape)
        except msgspec.ValidationError as exc:
            raise RpcError(
                -32603, f"the service's {method} result is not of its shape ({exc})"
            ) from None
    return checked.result


def get(url: str, path: str = "/", *, token: str | None = None, timeout: float = 10.0) -> Any:
    """``GET url + path`` as JSON (the index, the stats, the status)."""
    return _request(url, path, None, token, timeout)


def _request(url: str, path: str, body: bytes | None, token: str | None, timeout: float) -> Any:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ServiceUnreachable(f"not an http(s) URL: {url}")
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection = (
        http.client.HTTPSConnection(host, port, timeout=timeout)
        if parts.scheme == "https"
        else http.client.HTTPConnection(host, port, timeout=timeout)
    )
    # The socket timeout bounds each read, not the exchange: a server trickling a byte at a
    # time would keep the client forever. The watchdog ends the whole exchange at `timeout`,
    # shutting down the socket the response reads from (http.client lets go of it, as
    # `connection.sock`, once the response is to be read until the server closes).
    expired = threading.Event()
    opened: list[socket.socket] = []

    def cut() -> None:
        expired.set()
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        opened.append(connection.sock)
        if expired.is_set():
            cut()
        # No proxy and no redirect: nothing but this address gets the token or the answer.
        connection.request(
            "GET" if body is None else "POST",
            parts.path.rstrip("/") + path,
            body=body,
            headers=headers,
        )
        response = connection.getresponse()
        raw = response.read(MAX_ANSWER_BYTES + 1)
        status, reason = response.status, response.reason
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise ServiceUnreachable(f"no answer from {url} within {timeout:g} s") from None
        if isinstance(exc, http.client.HTTPException) and not isinstance(
            exc, http.client.RemoteDisconnected
        ):
            raise RpcError(
                -32603, f"the service's answer is not HTTP ({type(exc).__name__})"
            ) from None
        reason_text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ServiceUnreachable(f"no JSON-RPC service at {url}: {reason_text}") from None
    finally:
        watchdog.cancel()
        connection.close()
    if expired.is_set():
        raise ServiceUnreachable(f"no whole answer from {url} within {timeout:g} s")
    if len(raw) > MAX_ANSWER_BYTES:
        raise RpcError(-32603, f"the service's answer is larger than {MAX_ANSWER_BYTES} bytes")
    if not 200 <= status < 300:
        raise _http_error(status, reason, raw)
    if not raw:
        return None
    return _decode(raw)


def _http_error(status: int, reason: str, raw: bytes) -> RpcError:
    try:
        error = msgspec.convert(_decode(raw), _Answer).error
    except (RpcError, msgspec.ValidationError):
        error = None
    if not isinstance(error, _Error):
        return RpcError(-32603, f"HTTP {status} {reason}", None, status)
    return RpcError(error.code, error.message, error.data, status)


def escaped(text: object) -> str:
    """``text`` as one printable line: control, format and separator characters (a terminal's
    escape sequences, a bidi override, a newline) shown as ``\\xNN`` / ``\\uNNNN``."""
    out = []
    for char in str(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


# --- readable output ----------------------------------------------------------------------
# Every text the service sent is shown escaped(): a name holding a terminal's escape sequence
# is printed as characters, not obeyed.


def format_status(status: dict[str, Any], *, show_all: bool = False) -> str:
    lines = [f"Crawl {escaped(status.get('spider') or '?')}: {escaped(status.get('state', '?'))}"]
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
    shown = [
        {
            **f,
            "filter": escaped(f["filter"]),
            "source": escaped(f["source"]),
            "status": escaped(f["status"]),
        }
        for f in filters
        if show_all or f["status"] != "pending"
    ]
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
    return "\n".join(
        f"{escaped(name):<48} {escaped(value)}" for name, value in sorted(stats.items())
    )


def format_pause(result: dict[str, Any]) -> str:
    if result.get("changed"):
        return "Crawl paused: no new requests are sent (those in flight finish)."
    return f"Nothing to pause: the crawl is {escaped(result.get('state', '?'))}."


def format_unpause(result: dict[str, Any]) -> str:
    if result.get("changed"):
        return "Crawl resumed."
    return f"Nothing to resume: the crawl is {escaped(result.get('state', '?'))}."


def format_stop(result: dict[str, Any]) -> str:
    if result.get("changed"):
        return (
            "Graceful stop requested: filters already complete are written, "
            "unfinished filters keep their previous manifests."
        )
    return "The crawl is already stopping."


def format_report(report: dict[str, Any]) -> str:
    # ensure_ascii: every control and non-ASCII character of the report is a JSON escape.
    return json.dumps(report, indent=2, sort_keys=False, ensure_ascii=True)


#: command -> (path, method, formatter)
COMMANDS: dict[str, tuple[str, str, Callable[[Any], str]]] = {
    "status": (CRAWLER_PATH, "status", format_status),
    "stats": (STATS_PATH, "get_stats", format_stats),
    "report": (CRAWLER_PATH, "report", format_report),
    "pause": (CRAWLER_PATH, "pause", format_pause),
    "unpause": (CRAWLER_PATH, "unpause", format_unpause),
    "stop": (CRAWLER_PATH, "stop", format_stop),
}


class _Refused(Exception):
    """The client will not talk to the service (``str()`` is the line); ``exit`` its status."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


def service_address(folder: Path, url: str | None, token: str | None) -> str:
    """The address to call: the one the crawl writing into ``folder`` recorded, or ``url``;
    a token goes only to the recorded one. _Refused otherwise."""
    record = read_lock_record(folder)
    live = record if record is not None and _alive(record["pid"]) else None
    recorded = None if live is None else live["jsonrpc"]
    if url is None:
        if live is None:
            raise _Refused(
                f"no crawl is running with MANIFEST_DIR={folder} (no live lock file there; "
                "give the crawl's folder with --dir)",
                EXIT_UNREACHABLE,
            )
        if recorded is None:
            raise _Refused(
                f"the crawl writing into {folder} (pid {live['pid']}) serves no JSON-RPC "
                "service (is JSONRPC_ENABLED set? its log says why)",
                EXIT_UNREACHABLE,
            )
        return recorded
    if token and (recorded is None or url.rstrip("/") != recorded.rstrip("/")):
        where = (
            f"it records {recorded}"
            if recorded is not None
            else "none is recorded there by a running crawl"
        )
        raise _Refused(
            f"not sending the token to {url}: the crawl writing into {folder} is the only one "
            f"it goes to, and {where} (--dir names the crawl's MANIFEST_DIR)",
            EXIT_USAGE,
        )
    return url


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
        "--dir",
        type=Path,
        default=Path(os.environ.get("MANIFEST_DIR") or "public/manifests"),
        help="the crawl's MANIFEST_DIR, whose lock file records the service's address "
        "(default: $MANIFEST_DIR or public/manifests)",
    )
    parser.add_argument(
        "--url",
        default=None,
        help="the service's base URL instead of the recorded one (with a token: only that one)",
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
        url = service_address(args.dir, args.url, args.token)
        result = call(url, method, path=path, token=args.token, timeout=args.timeout)
        if args.json:
            text = json.dumps(result, indent=2, ensure_ascii=True)
        elif args.command == "status":
            text = format_status(result, show_all=args.all)
        else:
            text = formatter(result)
    except _Refused as exc:
        print(f"error: {escaped(exc)}", file=err)
        return exc.exit_status
    except ServiceUnreachable as exc:
        print(f"error: {escaped(exc)}", file=err)
        return EXIT_UNREACHABLE
    except RpcError as exc:
        print(f"error: {escaped(exc)}", file=err)
        return EXIT_ERROR
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
