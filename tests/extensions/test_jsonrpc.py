"""The JSON-RPC service: protocol, security and steering of real crawls over loopback HTTP.

Protocol and security cases run against a spider that idles until stopped (fast, no API);
the steering cases crawl the emulator slowed by latency, as an operator would meet it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, ClassVar

import pytest
import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy.utils.defer import deferred_f_from_coro_f, deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.test import get_crawler

from manifest_crawler import rpc as rpc_client
from manifest_crawler.addon import JSONRPC_EXTENSION
from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.extensions.jsonrpc import MAX_BODY_BYTES, JsonRpcService, _port_range
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.ledger import FilterStatus
from manifest_crawler.output.manifests import build_manifest, encode_json
from manifest_crawler.spiders.all import AllSpider
from tests.crawl import ROOT, project_settings_dict, read_json, write_filters

# --- a spider that stays open until told to stop ----------------------------------------------


IDLE_FILTERS = Path(__file__).with_name("idle-filters.json")
RUN_STATE = "manifest_crawler.extensions.runstate.RunState"


class IdleSpider(scrapy.Spider):
    """Sends nothing and never finishes on its own; its run (RunState) has two filters, the
    first one finished, as a ManifestSpider's would."""

    name = "idle"
    custom_settings: ClassVar[dict[str, Any]] = {
        "MANIFEST_SOURCES": ["civitai", "huggingface"],
        "FILTERS_FILE": str(IDLE_FILTERS),
        "MANIFEST_MAX_ITEMS": 0,
    }

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> IdleSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.keep_open, signal=signals.spider_idle)
        crawler.signals.connect(spider.opened, signal=signals.spider_opened)
        return spider

    def opened(self) -> None:
        idle_run(self.crawler)

    async def start(self):  # type: ignore[override]
        return
        yield

    def keep_open(self) -> None:
        raise DontCloseSpider


def idle_run(crawler: Crawler) -> RunState:
    """The idle crawl's RunState, its first filter finished after two pages."""
    run = crawler.get_extension(RunState)
    assert run is not None
    first = next(iter(run.ledger))
    if not first.finished:
        first.start()
        first.pages, first.seen_ids = 2, {"1", "2", "3"}
        first.finish(FilterStatus.DONE, "last_page")
    return run


def idle_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "EXTENSIONS": {RUN_STATE: -10, JSONRPC_EXTENSION: 500},
        "JSONRPC_ENABLED": True,
        "JSONRPC_PORT": 0,
        "LOG_LEVEL": "INFO",
        **overrides,
    }


# --- plumbing: start a crawl in the test reactor, talk HTTP from a thread -----------------------


@dataclass
class Running:
    crawler: Crawler
    done: Any
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def finished(self, timeout: float = 20.0) -> None:
        await asyncio.wait_for(asyncio.shield(maybe_deferred_to_future(self.done)), timeout)

    async def ensure_stopped(self) -> None:
        if not self.done.called:
            engine = self.crawler.engine
            if engine is not None and engine.spider is not None:
                await engine.close_spider_async(reason="test_cleanup")
            await self.finished()


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 15.0, step: float = 0.05
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


async def start_crawl(
    spidercls: type[scrapy.Spider], settings: dict[str, Any], **kw: Any
) -> Running:
    crawler = get_crawler(spidercls, settings)
    done = deferred_from_coro(crawler.crawl_async(**kw))
    port = await wait_until(
        lambda: (
            done.called
            or (crawler.stats.get_value("manifest/jsonrpc/port") if crawler.stats else None)
        )
    )
    assert not done.called or isinstance(port, int), "the crawl ended before the service started"
    return Running(crawler, done, f"http://127.0.0.1:{port}")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def _http(url: str, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
    host, port = url.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Reply(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


async def http(
    url: str,
    method: str = "GET",
    path: str = "/",
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    if isinstance(body, str):
        body = body.encode()
    return await asyncio.to_thread(_http, url, method, path, body, headers or {})


async def rpc(url: str, payload: Any, path: str = "/crawler", **headers: str) -> Reply:
    body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
    return await http(url, "POST", path, body, {"Content-Type": "application/json", **headers})


def call(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    document: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        document["params"] = params
    return document


def assert_error(reply: Reply, code: int, id: Any = None, status: int = 200) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body)
    document = reply.json
    assert document["jsonrpc"] == "2.0"
    assert document["id"] == id
    assert "result" not in document
    assert document["error"]["code"] == code, document
    assert isinstance(document["error"]["message"], str)
    return document


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- configuration ------------------------------------------------------------------------------


def test_off_by_default_and_listed_by_its_addon_when_on():
    from manifest_crawler import settings

    assert settings.JSONRPC_ENABLED is False
    assert settings.JSONRPC_HOST == "127.0.0.1"
    assert settings.JSONRPC_PORT == [6080, 7030]
    assert settings.REMOTE_CONTROL_ENABLED is False
    assert settings.TELNETCONSOLE_ENABLED is False
    assert JSONRPC_EXTENSION not in settings.EXTENSIONS
    assert get_crawler(IdleSpider, project_settings_dict()).get_extension(JsonRpcService) is None
    on = get_crawler(IdleSpider, project_settings_dict(JSONRPC_ENABLED=True, JSONRPC_PORT=0))
    assert isinstance(on.get_extension(JsonRpcService), JsonRpcService)
    # Listed by hand, it still needs JSONRPC_ENABLED.
    crawler = get_crawler(IdleSpider, {"EXTENSIONS": {JSONRPC_EXTENSION: 500}})
    assert crawler.get_extension(JsonRpcService) is None


def test_a_crawler_without_the_service_does_not_import_it():
    code = (
        "import sys\n"
        "from scrapy.utils.project import get_project_settings\n"
        "from scrapy.utils.reactor import install_reactor\n"
        "install_reactor('twisted.internet.asyncioreactor.AsyncioSelectorReactor')\n"
        "from scrapy.utils.test import get_crawler\n"
        "from manifest_crawler.spiders.all import AllSpider\n"
        "get_crawler(AllSpider, get_project_settings().copy_to_dict())\n"
        "print('manifest_crawler.extensions.jsonrpc' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_non_loopback_host_refuses_without_token(caplog, monkeypatch):
    monkeypatch.delenv("JSONRPC_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING):
        crawler = get_crawler(IdleSpider, idle_settings(JSONRPC_HOST="0.0.0.0"))
    assert crawler.get_extension(JsonRpcService) is None
    assert "refusing to serve the JSON-RPC service without JSONRPC_TOKEN" in caplog.text
    # With a token the service is built (not started: tests stay on 127.0.0.1).
    crawler = get_crawler(IdleSpider, idle_settings(JSONRPC_HOST="0.0.0.0", JSONRPC_TOKEN="t0k"))
    service = crawler.get_extension(JsonRpcService)
    assert service is not None and service.token == b"t0k" and not service.loopback
    monkeypatch.setenv("JSONRPC_TOKEN", "from-env")
    crawler = get_crawler(IdleSpider, idle_settings(JSONRPC_HOST="10.1.2.3"))
    assert crawler.get_extension(JsonRpcService).token == b"from-env"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([6080, 7030], [6080, 7030]),
        ("6080,7030", [6080, 7030]),
        ("6080-7030", [6080, 7030]),
        (6080, [6080]),
        ("0", [0]),
        (0, [0]),
        (None, [0]),
    ],
)
def test_port_setting_forms(value, expected):
    assert _port_range(value) == expected


@pytest.mark.parametrize("value", ["http", [1, 2, 3], [7030, 6080], 70000, -1, {"a": 1}])
def test_port_setting_rejects_nonsense(value):
    with pytest.raises(NotConfigured):
        _port_range(value)


@deferred_f_from_coro_f
async def test_binds_first_free_port_of_a_range_and_logs_it(caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    first = taken.getsockname()[1]
    try:
        with caplog.at_level(logging.INFO):
            running = await start_crawl(IdleSpider, idle_settings(JSONRPC_PORT=[first, first + 20]))
        try:
            assert first < running.port <= first + 20
            assert f"JSON-RPC service listening on http://127.0.0.1:{running.port}" in caplog.text
        finally:
            await running.ensure_stopped()
    finally:
        taken.close()


# --- what a scrapy-jsonrpc user knows -----------------------------------------------------------


def scrapy_jsonrpc_client_call(url: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """scrapy-jsonrpc's ``jsonrpc_client_call`` (scrapy_jsonrpc/jsonrpc.py), ported to py3 only."""
    req = {"jsonrpc": "2.0", "method": method, "params": args or kwargs, "id": 1}
    data = json.dumps(req).encode()
    body = urllib.request.urlopen(url, data).read()  # form content type, as the original
    res = json.loads(body.decode("utf-8"))
    if "result" in res:
        return res["result"]
    er = res["error"]
    raise RuntimeError(er["code"], er["message"], er["data"])


@deferred_f_from_coro_f
async def test_index_stats_and_the_scrapy_jsonrpc_client():
    running = await start_crawl(IdleSpider, idle_settings())
    try:
        index = await http(running.url, "GET", "/")
        assert index.status == 200
        assert index.headers["content-type"] == "application/json"
        assert index.json["resources"] == ["crawler", "crawler/stats"]
        assert index.json["methods"]["crawler"] == ["pause", "report", "status", "stop", "unpause"]

        stats = await http(running.url, "GET", "/crawler/stats")
        assert stats.status == 200
        assert stats.json["manifest/jsonrpc/port"] == running.port
        assert "start_time" in stats.json  # a datetime, served as ISO text

        status = await http(running.url, "GET", "/crawler")
        assert status.json["state"] == "running"

        url = running.url + "/crawler/stats"
        result = await asyncio.to_thread(scrapy_jsonrpc_client_call, url, "get_stats")
        assert result["manifest/jsonrpc/port"] == running.port
        # The example client's get-spider-stats passes the spider name.
        result = await asyncio.to_thread(scrapy_jsonrpc_client_call, url, "get_stats", "idle")
        assert "start_time" in result
        with pytest.raises(RuntimeError) as raised:
            await asyncio.to_thread(scrapy_jsonrpc_client_call, url, "get_stats", "other")
        assert raised.value.args[0] == -32602
        value = await rpc(
            running.url, call("get_value", ["manifest/jsonrpc/port"]), "/crawler/stats"
        )
        assert value.json == {"jsonrpc": "2.0", "result": running.port, "id": 1}
        value = await rpc(
            running.url, call("get_value", {"key": "nope", "default": 7}), "/crawler/stats"
        )
        assert value.json["result"] == 7

        for reply in (index, stats, status, value):
            assert "access-control-allow-origin" not in reply.headers
            assert reply.headers["x-content-type-options"] == "nosniff"
    finally:
        await running.ensure_stopped()


# --- JSON-RPC 2.0 error handling ----------------------------------------------------------------


@deferred_f_from_coro_f
async def test_protocol_errors_are_answered_and_leave_the_crawl_alone():
    running = await start_crawl(IdleSpider, idle_settings())
    url = running.url
    try:
        # -32700 Parse error
        assert_error(await rpc(url, '{"jsonrpc": "2.0", "method": "status", "id": 1'), -32700)
        assert_error(await rpc(url, b"\xff\xfe{}"), -32700)
        assert_error(await rpc(url, ""), -32700)
        assert_error(await rpc(url, "[" * 60_000), -32700)  # deeper than the parser recurses
        # -32600 Invalid Request
        assert_error(await rpc(url, []), -32600)
        assert_error(await rpc(url, 42), -32600)
        assert_error(await rpc(url, {"method": "status", "id": 1}), -32600, id=1)
        assert_error(await rpc(url, {"jsonrpc": "1.0", "method": "status", "id": 1}), -32600, id=1)
        assert_error(await rpc(url, {"jsonrpc": "2.0", "method": 5, "id": 2}), -32600, id=2)
        assert_error(await rpc(url, call("status", params="x", id=3)), -32600, id=3)
        assert_error(await rpc(url, call("status", id={"a": 1})), -32600)
        assert_error(await rpc(url, call("status", id=True)), -32600)
        assert_error(await rpc(url, [call("status")] * 33), -32600)
        # -32601 Method not found: anything off the list, however it is spelled.
        off_list = [
            "engine",
            "crawler.engine",
            "__dir__",
            "__class__",
            "_getFunction",
            "published",
            "render",
            "jsonrpc_status",
            "rpc.discover",
            "get_stats",  # lives on /crawler/stats, not /crawler
            "status ",
            "",
        ]
        for name in off_list:
            reply = assert_error(await rpc(url, call(name, id=name)), -32601, id=name)
            assert reply["error"]["data"]["methods"] == [
                "pause",
                "report",
                "status",
                "stop",
                "unpause",
            ]
        assert_error(await rpc(url, call("status"), "/crawler/stats"), -32601, id=1)
        # -32602 Invalid params
        assert_error(await rpc(url, call("status", [1])), -32602, id=1)
        assert_error(await rpc(url, call("pause", {"force": True})), -32602, id=1)
        assert_error(await rpc(url, call("get_value", []), "/crawler/stats"), -32602, id=1)
        assert_error(await rpc(url, call("get_value", [5]), "/crawler/stats"), -32602, id=1)
        assert_error(await rpc(url, call("get_stats", {"nope": 1}), "/crawler/stats"), -32602, id=1)
        assert_error(await rpc(url, call("get_stats", [1, 2]), "/crawler/stats"), -32602, id=1)

        # A notification gets no answer at all.
        reply = await rpc(url, {"jsonrpc": "2.0", "method": "status"})
        assert (reply.status, reply.body) == (204, b"")
        # A batch answers each call that has an id, in its own way.
        reply = await rpc(
            url,
            [
                call("status", id="a"),
                {"jsonrpc": "2.0", "method": "status"},
                call("nope", id="b"),
                "x",
                call("status", [1], id="c"),
            ],
        )
        answers = {answer["id"]: answer for answer in reply.json}
        assert answers["a"]["result"]["state"] == "running"
        assert answers["b"]["error"]["code"] == -32601
        assert answers[None]["error"]["code"] == -32600
        assert answers["c"]["error"]["code"] == -32602
        assert len(reply.json) == 4
        only_notifications = [{"jsonrpc": "2.0", "method": "status"}] * 2
        assert (await rpc(url, only_notifications)).status == 204

        # None of it disturbed the crawl.
        assert not running.done.called
        assert running.crawler.stats.get_value("finish_reason") is None
        status = (await rpc(url, call("status"))).json["result"]
        assert status["state"] == "running"
    finally:
        await running.ensure_stopped()


@deferred_f_from_coro_f
async def test_a_failing_method_is_an_internal_error_not_a_crash(caplog):
    running = await start_crawl(IdleSpider, idle_settings())
    service = running.crawler.get_extension(JsonRpcService)

    def broken() -> dict[str, Any]:
        raise RuntimeError("secret detail")

    service.status = broken  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.ERROR):
            reply = await rpc(running.url, call("status"))
        document = assert_error(reply, -32603, id=1)
        assert "secret detail" not in reply.body.decode()
        assert document["error"]["message"] == "Internal error"
        assert "JSON-RPC method status failed" in caplog.text
        assert "RuntimeError: secret detail" in caplog.text  # the traceback is logged
        assert (await rpc(running.url, call("pause"))).json["result"]["changed"] is True
        assert not running.done.called
    finally:
        await running.ensure_stopped()


@deferred_f_from_coro_f
async def test_nothing_off_the_path_list_is_reachable():
    running = await start_crawl(IdleSpider, idle_settings())
    url = running.url
    try:
        for path in [
            "/crawler/engine",
            "/crawler/spiders",
            "/crawler/engine/open_spiders",
            "/crawler/stats/get_stats",
            "/crawler/settings",
            "/stats",
            "/crawler%2Fstats",
            "/../crawler",
            "//crawler",
            "/favicon.ico",
        ]:
            for method in ("GET", "POST"):
                body = json.dumps(call("get_stats")) if method == "POST" else None
                reply = await http(url, method, path, body)
                assert_error(reply, -32004, status=404)
        for method, path in [
            ("PUT", "/crawler"),
            ("DELETE", "/crawler"),
            ("PATCH", "/crawler/stats"),
            ("OPTIONS", "/crawler"),
            ("POST", "/"),
            ("TRACE", "/"),
        ]:
            reply = await http(url, method, path, "{}")
            assert_error(reply, -32005, status=405)
            assert "GET" in reply.headers["allow"]
            assert "access-control-allow-origin" not in reply.headers
        reply = await rpc(url, b" " * (MAX_BODY_BYTES + 1))
        assert_error(reply, -32600, status=413)
        assert (await http(url, "HEAD", "/crawler/stats")).status == 200
        assert not running.done.called
    finally:
        await running.ensure_stopped()


@deferred_f_from_coro_f
async def test_cross_origin_and_rebinding_requests_are_refused():
    running = await start_crawl(IdleSpider, idle_settings())
    url = running.url
    try:
        evil = {"Origin": "http://evil.example"}
        assert_error(await rpc(url, call("stop"), **evil), -32003, status=403)
        assert_error(await http(url, "GET", "/crawler/stats", headers=evil), -32003, status=403)
        # A DNS-rebinding page reaches 127.0.0.1 under its own name.
        rebound = {"Host": f"evil.example:{running.port}"}
        assert_error(await http(url, "GET", "/crawler/stats", headers=rebound), -32003, status=403)
        cross_site = {"Sec-Fetch-Site": "cross-site"}
        assert_error(await rpc(url, call("pause"), **cross_site), -32003, status=403)
        # The service's own origin and a localhost name are fine.
        same = {"Origin": url, "Host": f"127.0.0.1:{running.port}"}
        assert (await rpc(url, call("status"), **same)).json["result"]["paused"] is False
        local = {"Host": f"localhost:{running.port}"}
        assert (await http(url, "GET", "/", headers=local)).status == 200
        assert running.crawler.engine.paused is False
        assert not running.done.called
    finally:
        await running.ensure_stopped()


@deferred_f_from_coro_f
async def test_a_token_is_required_on_every_request(tmp_path, caplog):
    token = "s3cret-token-value"
    log = tmp_path / "access.log"
    running = await start_crawl(
        IdleSpider, idle_settings(JSONRPC_TOKEN=token, JSONRPC_LOGFILE=str(log))
    )
    url = running.url
    try:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {token}x"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": token},
            {"Authorization": "Bearer"},
        ):
            for method, path, body in (
                ("GET", "/", None),
                ("GET", "/crawler/stats", None),
                ("POST", "/crawler", json.dumps(call("stop"))),
                ("POST", "/crawler/stats", json.dumps(call("get_stats"))),
                ("GET", "/nowhere", None),
            ):
                reply = await http(url, method, path, body, headers)
                assert_error(reply, -32001, status=401)
                assert reply.headers["www-authenticate"].startswith("Bearer")
                assert token.encode() not in reply.body
        assert not running.done.called and not running.crawler.engine.paused
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http(url, "GET", "/crawler/stats", headers=auth)).status == 200
        reply = await rpc(url, call("status"), **auth)
        assert reply.json["result"]["state"] == "running"
        assert running.crawler.stats.get_value("manifest/jsonrpc/unauthorized") == 30
    finally:
        await running.ensure_stopped()
    # The access log names requests, never the token.
    text = log.read_text()
    assert '"GET /crawler/stats HTTP/1.1" 401' in text
    assert '"POST /crawler HTTP/1.1" 200' in text
    assert token not in text
    assert token not in caplog.text


@deferred_f_from_coro_f
async def test_without_logfile_no_access_lines_reach_the_crawl_log(caplog):
    with caplog.at_level(logging.DEBUG):
        running = await start_crawl(IdleSpider, idle_settings())
        try:
            await http(running.url, "GET", "/crawler/stats")
        finally:
            await running.ensure_stopped()
    assert "GET /crawler/stats" not in caplog.text


# --- steering an idle crawl ---------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_status_report_pause_unpause_stop(caplog):
    caplog.set_level(logging.INFO)
    running = await start_crawl(IdleSpider, idle_settings())
    url = running.url
    try:
        status = (await rpc(url, call("status"))).json["result"]
        assert status["spider"] == "idle"
        assert (status["state"], status["paused"], status["stopping"]) == ("running", False, False)
        assert status["progress"]["filters_total"] == 2
        assert status["progress"]["filters_finished"] == 1
        assert status["progress"]["models"] == 3
        assert status["filters"][0] == {
            "source": "civitai",
            "filter": "Week/All",
            "status": "done",
            "pages": 2,
            "models": 3,
            "max_items": 100,
            "errors": 0,
            "end_reason": "last_page",
        }
        assert status["filters"][1]["status"] == "pending"

        report = (await rpc(url, call("report"))).json["result"]
        assert report["filters"][0]["end_reason"] == "last_page"
        assert report["progress"]["filters_total"] == 2
        assert report["stats"]["manifest/jsonrpc/port"] == running.port

        paused = (await rpc(url, call("pause"))).json["result"]
        assert paused == {"paused": True, "changed": True, "state": "paused"}
        assert running.crawler.engine.paused
        assert (await rpc(url, call("pause"))).json["result"]["changed"] is False
        assert (await rpc(url, call("status"))).json["result"]["state"] == "paused"
        resumed = (await rpc(url, call("unpause"))).json["result"]
        assert resumed == {"paused": False, "changed": True, "state": "running"}
        assert not running.crawler.engine.paused

        await rpc(url, call("pause"))
        stop = (await rpc(url, call("stop", []))).json["result"]
        assert stop == {"stopping": True, "changed": True, "reason": "jsonrpc_stop"}
        await running.finished()
        assert running.crawler.stats.get_value("finish_reason") == "jsonrpc_stop"
    finally:
        await running.ensure_stopped()
    assert "Crawl paused over JSON-RPC (client 127.0.0.1)" in caplog.text
    assert "Graceful stop requested over JSON-RPC" in caplog.text


# --- steering a real crawl of a slow emulator ----------------------------------------------------

#: Each response waits this long, so the crawl lasts long enough to be watched and steered.
LATENCY = 0.3

STEER_FILTERS = {
    "civitai": [
        {
            "name": "Quick",
            "label": "Quick",
            "params": {"sort": "Newest"},
            "browsing_levels": ["PG"],
            "max_items": 40,
        },
        # 60 pages of 100, one after the other, LATENCY each: far longer than any test.
        {
            "name": "Long",
            "label": "Long",
            "params": {"sort": "Most Downloaded", "nsfw": "true"},
            "browsing_levels": ["PG", "PG13", "R", "X", "XXX"],
            "max_items": 6000,
        },
    ],
    "huggingface": [
        {"name": "Quick", "label": "Quick", "params": {"sort": "likes"}, "max_items": 30},
    ],
}


def slow_config() -> EmulatorConfig:
    return EmulatorConfig(
        seed=3, civitai_models=6000, hf_models=500, faults=FaultConfig(latency=LATENCY, jitter=0.05)
    )


def old_manifest(filter_name: str, origin: str) -> bytes:
    # A CivitAI model (the manifests are CivitAI's), with an id beyond the emulator's.
    model = {"id": "civitai-987654321", "slug": "civitai-987654321", "name": "Old model"}
    return encode_json(build_manifest(filter_name, [model], "2020-01-01T00:00:00Z", origin))


def steer_settings(emulator, tmp_path, **overrides):
    filters = write_filters(tmp_path / "filters.json", **STEER_FILTERS)
    return project_settings_dict(
        CIVITAI_API_URL=emulator.civitai_url,
        HF_API_URL=emulator.hf_url,
        MANIFEST_DIR=str(tmp_path / "out"),
        FILTERS_FILE=str(filters),
        JSONRPC_ENABLED=True,
        JSONRPC_PORT=0,
        MANIFEST_PROGRESS_INTERVAL=0.5,
        **overrides,
    )


def pages_of(status: dict[str, Any]) -> int:
    return sum(f["pages"] for f in status["filters"])


def crawler_pages(crawler: Crawler) -> int:
    return sum(state.pages for state in crawler.get_extension(RunState).ledger)


@deferred_f_from_coro_f
async def test_watch_pause_resume_and_stop_a_slow_crawl(make_emulator, tmp_path, caplog):
    slow_emulator = make_emulator(slow_config())
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    out.mkdir()
    # Unfinished at the stop: its previous manifest must survive byte for byte.
    (out / "civitai-Long.json").write_bytes(old_manifest("Long", slow_emulator.civitai_url))
    # Finished before the stop: its old manifest must be replaced.
    (out / "civitai-Quick.json").write_bytes(old_manifest("Quick", slow_emulator.civitai_url))

    running = await start_crawl(AllSpider, steer_settings(slow_emulator, tmp_path))
    url = running.url
    client = functools.partial(asyncio.to_thread, rpc_client.call, url)
    try:
        # Live status while the crawl runs: per filter, and overall with an ETA.
        async def status() -> dict[str, Any]:
            return await client("status")

        for _ in range(100):
            current = await status()
            states = {(f["source"], f["filter"]): f["status"] for f in current["filters"]}
            if states[("civitai", "Quick")] == states[("huggingface", "Quick")] == "done":
                break
            await asyncio.sleep(0.1)
        assert states[("civitai", "Long")] == "running", current
        assert current["state"] == "running" and current["paused"] is False
        progress = current["progress"]
        assert progress["filters_total"] == 3 and progress["filters_finished"] == 2
        assert progress["models"] >= 70 and isinstance(progress["eta"], float)
        quick = next(f for f in current["filters"] if f["filter"] == "Quick")
        assert (quick["pages"], quick["models"]) == (1, 40)

        # Live stats, through the client and through a raw JSON-RPC post.
        stats = await client("get_stats", path="/crawler/stats")
        assert stats["manifest/civitai/pages"] >= 1
        raw = await rpc(url, call("get_stats", id=7), "/crawler/stats")
        assert raw.json["id"] == 7 and raw.json["result"]["manifest/jsonrpc/port"] == running.port

        # Pause: the requests in flight finish, then nothing more is asked of the API.
        assert (await client("pause"))["changed"] is True
        await wait_until(lambda: not running.crawler.engine.downloader.active, timeout=5)
        await asyncio.sleep(LATENCY)
        frozen = await status()
        asked = len(slow_emulator.log)
        await asyncio.sleep(LATENCY * 4)
        still = await status()
        assert still["state"] == "paused" and still["paused"] is True
        assert pages_of(still) == pages_of(frozen)
        assert len(slow_emulator.log) == asked
        # Resume over a raw post: pages flow again.
        resumed = await rpc(url, call("unpause", id="u"))
        assert resumed.json == {
            "jsonrpc": "2.0",
            "result": {"paused": False, "changed": True, "state": "running"},
            "id": "u",
        }
        # Without a nudge the engine would wait for its 5 s heartbeat to send again.
        await wait_until(lambda: len(slow_emulator.log) > asked, timeout=1)
        more = await wait_until(
            lambda: pages_of(still) < crawler_pages(running.crawler), timeout=LATENCY * 5
        )
        assert more

        # A graceful stop, before the long filter can finish.
        stop = await rpc(url, call("stop", id=9))
        assert stop.json["result"] == {"stopping": True, "changed": True, "reason": "jsonrpc_stop"}
        assert (await client("status"))["state"] in ("stopping", "closed")
        await running.finished()
    finally:
        await running.ensure_stopped()

    crawler = running.crawler
    assert crawler.stats.get_value("finish_reason") == "jsonrpc_stop"
    ledger = crawler.get_extension(RunState).ledger
    assert ledger[("civitai", "Long")].status is FilterStatus.RUNNING
    # No manifest lost: the unfinished filter keeps its previous file untouched ...
    assert (out / "civitai-Long.json").read_bytes() == old_manifest(
        "Long", slow_emulator.civitai_url
    )
    # ... and the finished ones were written with this run's models.
    assert len(read_json(out / "civitai-Quick.json")["models"]) == 40
    assert len(read_json(out / "hf-Quick.json")["models"]) == 30
    all_models = read_json(out / "all-models.json")
    assert all_models["totalModels"] >= 71  # both Quick filters and the old Long manifest
    assert "Progress: " in caplog.text and "Progress at close (jsonrpc_stop)" in caplog.text
