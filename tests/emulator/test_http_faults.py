"""Every fault over real HTTP: transient errors, permanent failures, cursor quirks, control
characters, latency and the Hub's rate limit."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.web.client import Agent

from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.emulator.faults import TRANSIENT_KINDS

from .helpers import crawl_civitai, crawl_hf, fetch, url_with


def faulty(**kwargs) -> EmulatorConfig:
    return EmulatorConfig(civitai_models=600, hf_models=600, faults=FaultConfig(**kwargs))


@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
@pytest.mark.parametrize("api", ["civitai", "huggingface"])
@deferred_f_from_coro_f
async def test_transient_kind_then_success(make_emulator, kind: str, api: str) -> None:
    emu = make_emulator(faulty(transient_failures=1, fault_kinds=(kind,), retry_after=3))
    url = url_with(emu.civitai_url if api == "civitai" else emu.hf_url, {"limit": 10})
    failed = await fetch(url)
    ok = await fetch(url)
    assert ok.status == 200 and len(ok.json()) > 0
    expected_status = {"429-retry-after": 429, "429": 429, "503": 503, "500": 500}
    expected_status |= {"502": 502, "504": 504, "524": 524, "html-200": 200, "truncated": 200}
    assert failed.status == expected_status[kind]
    retry_after = {"429-retry-after": "3", "503": "2"}.get(kind)
    assert failed.header("retry-after") == retry_after
    if kind in ("429", "502", "504", "524", "html-200"):
        assert failed.header("content-type").startswith("text/html")
        assert failed.body.startswith(b"<!DOCTYPE html")
    elif kind == "truncated":
        assert failed.header("content-type").startswith("application/json")
        assert 0 < len(failed.body) < len(ok.body)
        assert ok.body.startswith(failed.body)
        with pytest.raises(ValueError):
            json.loads(failed.body, strict=False)
    elif kind == "500":
        assert failed.json() == {"message": "Internal server error"}
    else:
        assert "error" in failed.json()
    first, second = emu.log
    assert (first.fault, second.fault) == (kind, None)
    assert (first.status, second.status) == (failed.status, 200)


@deferred_f_from_coro_f
async def test_k_failures_per_distinct_url(make_emulator) -> None:
    emu = make_emulator(faulty(transient_failures=2, fault_kinds=("500", "503")))
    url_a = url_with(emu.civitai_url, {"limit": 5})
    url_b = url_with(emu.civitai_url, {"limit": 6})
    statuses = [(await fetch(u)).status for u in (url_a, url_b, url_a, url_b, url_a, url_b)]
    assert sorted(statuses[:4]) == [500, 500, 503, 503]
    assert statuses[4:] == [200, 200]


@deferred_f_from_coro_f
async def test_probabilistic_faults(make_emulator) -> None:
    emu = make_emulator(faulty(fault_rate=1.0, fault_kinds=("502",)))
    for n in range(3):
        assert (await fetch(url_with(emu.hf_url, {"limit": n + 1}))).status == 502


@deferred_f_from_coro_f
async def test_transient_faults_restricted_to_one_api(make_emulator) -> None:
    emu = make_emulator(faulty(transient_failures=3, transient_apis=("huggingface",)))
    assert (await fetch(emu.civitai_url)).status == 200
    assert (await fetch(emu.hf_url)).status in {429, 503, 500, 502, 504, 524, 200}
    assert emu.requests("huggingface")[0].fault is not None


@deferred_f_from_coro_f
async def test_permanent_failure(make_emulator) -> None:
    emu = make_emulator(faulty(fail_matching=[{"types": "LORA"}], fail_apis=("civitai",)))
    for _ in range(3):
        reply = await fetch(url_with(emu.civitai_url, [("types", "VAE"), ("types", "LORA")]))
        assert reply.status == 500 and reply.json() == {"message": "Internal server error"}
    assert (await fetch(url_with(emu.civitai_url, {"types": "Checkpoint"}))).status == 200
    assert (await fetch(url_with(emu.hf_url, {"types": "LORA"}))).status == 200
    assert [r.fault for r in emu.log[:3]] == ["permanent"] * 3


@deferred_f_from_coro_f
async def test_permanent_failure_custom_status(make_emulator) -> None:
    emu = make_emulator(faulty(fail_matching=[{"filter": "gguf"}], fail_status=504))
    assert (await fetch(url_with(emu.hf_url, {"filter": "gguf"}))).status == 504
    assert (await fetch(url_with(emu.hf_url, {"filter": "onnx"}))).status == 200


@deferred_f_from_coro_f
async def test_cursor_loop(make_emulator) -> None:
    emu = make_emulator(faulty(cursor_loop_page=3))
    url = url_with(emu.civitai_url, {"limit": 20, "nsfw": "true"})
    seen: list[str] = []
    for _ in range(4):
        data = (await fetch(url)).json()
        seen.append(data["metadata"]["nextCursor"])
        url = data["metadata"]["nextPage"]
    # Page 3 was asked with seen[1] and answers with it again: the chain loops.
    assert seen[2] == seen[1] and seen[3] == seen[1]


@deferred_f_from_coro_f
async def test_empty_pages_still_carry_a_cursor(make_emulator) -> None:
    emu = make_emulator(faulty(empty_pages=(2, 4)))
    params = {"limit": 25, "nsfw": "true", "sort": "Most Downloaded"}
    pages: list[dict] = []
    url: str | None = url_with(emu.civitai_url, params)
    while url is not None:
        pages.append((await fetch(url)).json())
        url = pages[-1]["metadata"].get("nextPage")
    ids = [item["id"] for page in pages for item in page["items"]]
    # Nothing lost once the crawl carries on: the cursor of an empty page names the row
    # before it (a real cursor, not the one asked with), served again then.
    assert list(dict.fromkeys(ids)) == emu.query_civitai(params)
    assert len(ids) - len(set(ids)) <= 2
    empty = [n for n, page in enumerate(pages, 1) if not page["items"]]
    # The listing's pages 2 and 4: requests 2 and 6 (request 3 resumes a row early, so the
    # positions of page 2 come again once, answered).
    assert empty == [2, 6]
    assert all(pages[n - 1]["metadata"]["nextCursor"] for n in empty)
    assert len(emu.requests("civitai")) == len(pages)


@deferred_f_from_coro_f
async def test_skip_at_boundary(make_emulator) -> None:
    emu = make_emulator(faulty(skip_at_boundary=True))
    params = {"limit": 50, "nsfw": "true"}
    ids, metas = await crawl_civitai(url_with(emu.civitai_url, params))
    expected = emu.query_civitai(params)
    assert len(expected) - len(ids) == len(metas) - 1
    assert [i for i in expected if i in set(ids)] == ids


@deferred_f_from_coro_f
async def test_control_characters(make_emulator) -> None:
    emu = make_emulator(faulty(control_chars=True))
    reply = await fetch(url_with(emu.civitai_url, {"limit": 20}))
    assert reply.status == 200
    assert b"\x01" in reply.body and b"\x1f" in reply.body and b"\t" in reply.body
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)
    data = json.loads(reply.body, strict=False)
    described = [i for i in data["items"] if i["description"]]
    assert described and all("\x01\t\x1f" in i["description"] for i in described)
    assert [i["id"] for i in data["items"]] == emu.query_civitai({})[:20]
    clean = (await fetch(url_with(emu.hf_url, {"limit": 20}))).body
    json.loads(clean)  # the Hub is unaffected


@deferred_f_from_coro_f
async def test_latency_is_concurrent(make_emulator) -> None:
    emu = make_emulator(faulty(latency=0.3))
    started = time.monotonic()
    replies = await asyncio.gather(
        *(fetch(url_with(emu.civitai_url, {"limit": n + 1})) for n in range(10))
    )
    elapsed = time.monotonic() - started
    assert [r.status for r in replies] == [200] * 10
    assert 0.28 <= elapsed < 1.5
    assert all(r.delay == pytest.approx(0.3) for r in emu.log)
    assert all(r.finished - r.time >= 0.29 for r in emu.log)


@deferred_f_from_coro_f
async def test_latency_counts_from_arrival_and_includes_building_the_answer(
    make_emulator, monkeypatch
) -> None:
    emu = make_emulator(faulty(latency=0.3))
    resource = emu.civitai_resource
    handler = resource.handler

    def slow_handler(*args):
        time.sleep(0.1)  # a page that takes 100 ms of the emulator's CPU to build
        return handler(*args)

    monkeypatch.setattr(resource, "handler", slow_handler)
    await fetch(emu.civitai_url)
    [record] = emu.log
    assert 0.29 <= record.finished - record.time < 0.38
    assert record.delay == pytest.approx(0.3)


@deferred_f_from_coro_f
async def test_latency_jitter_and_api_restriction(make_emulator) -> None:
    emu = make_emulator(faulty(latency=0.2, jitter=0.1, latency_apis=("huggingface",)))
    await asyncio.gather(*(fetch(url_with(emu.hf_url, {"limit": n + 1})) for n in range(6)))
    await fetch(emu.civitai_url)
    hub = emu.requests("huggingface")
    assert all(0.1 <= r.delay <= 0.3 for r in hub)
    assert len({round(r.delay, 6) for r in hub}) > 1
    assert emu.requests("civitai")[0].delay == 0.0


@deferred_f_from_coro_f
async def test_client_going_away_during_latency(make_emulator) -> None:
    from twisted.internet import reactor

    emu = make_emulator(faulty(latency=5.0))
    pending: Deferred = Agent(reactor).request(b"GET", emu.hf_url.encode())
    await asyncio.sleep(0.1)
    pending.cancel()
    with pytest.raises(Exception):  # noqa: B017 (any cancellation flavour)
        await maybe_deferred_to_future(pending)
    await asyncio.sleep(0.1)
    assert emu.log[0].disconnected
    assert not any(call.active() for call in emu.state.pending)


@deferred_f_from_coro_f
async def test_stop_with_a_response_pending(make_emulator) -> None:
    from twisted.internet import reactor

    emu = make_emulator(faulty(latency=5.0))
    pending: Deferred = Agent(reactor).request(b"GET", emu.civitai_url.encode())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await emu.stop()
    with pytest.raises(Exception):  # noqa: B017 (connection dropped by the stop)
        await maybe_deferred_to_future(pending)
    assert time.monotonic() - started < 2


@deferred_f_from_coro_f
async def test_hub_rate_limit_window(make_emulator) -> None:
    emu = make_emulator(faulty(hf_rate_limit=3, hf_rate_window=1.0))
    replies = [await fetch(url_with(emu.hf_url, {"limit": 2})) for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    headers = [r.header("ratelimit") for r in replies]
    # The first call opens the window (1 s to go); then under a second: t=0, the reset
    # rounded down as the Hub sends it.
    assert headers == ['"api";r=2;t=1', '"api";r=1;t=0', '"api";r=0;t=0'] + ['"api";r=0;t=0'] * 2
    assert {r.header("ratelimit-policy") for r in replies} == {'"fixed window";"api";q=3;w=1'}
    assert "error" in replies[3].json()
    log = emu.requests("huggingface")
    assert [r.arrived_when_exhausted for r in log] == [False, False, False, True, True]
    assert [r.fault for r in log] == [None, None, None, "rate-limit", "rate-limit"]
    # CivitAI has no such budget.
    assert (await fetch(emu.civitai_url)).header("ratelimit") is None
    await asyncio.sleep(1.05)
    again = await fetch(url_with(emu.hf_url, {"limit": 2}))
    assert again.status == 200 and again.header("ratelimit") in ('"api";r=2;t=0', '"api";r=2;t=1')
    assert not emu.requests("huggingface")[-1].arrived_when_exhausted


@deferred_f_from_coro_f
async def test_faults_leave_paging_intact_for_a_retrying_client(make_emulator) -> None:
    emu = make_emulator(faulty(transient_failures=1, fault_kinds=("503", "truncated")))

    async def get(url: str):
        for _ in range(3):
            reply = await fetch(url)
            if reply.status == 200:
                try:
                    reply.json()
                except ValueError:
                    continue
                return reply
        raise AssertionError("no success after retries")

    ids: list[str] = []
    url: str | None = url_with(emu.hf_url, {"limit": 100, "sort": "downloads"})
    while url:
        reply = await get(url)
        ids.extend(e["id"] for e in reply.json())
        link = reply.header("link")
        url = link.split(";")[0].strip("<>") if link else None
    assert ids == emu.query_hf({"sort": "downloads"})
    # Without retries the same crawl cannot succeed.
    with pytest.raises(AssertionError):
        await crawl_hf(url_with(emu.hf_url, {"limit": 99}))


@pytest.mark.parametrize("api", ["civitai", "huggingface"])
@deferred_f_from_coro_f
async def test_endless_cursor_answers_the_first_page_with_a_new_cursor_each_time(
    make_emulator, api: str
) -> None:
    emu = make_emulator(faulty(endless_cursor_apis=(api,)))
    base = emu.civitai_url if api == "civitai" else emu.hf_url
    url = url_with(base, {"limit": 5, "sort": "Newest" if api == "civitai" else "likes"})
    cursors, pages = [], []
    for _ in range(4):
        reply = await fetch(url)
        assert reply.status == 200
        if api == "civitai":
            metadata = reply.json()["metadata"]
            cursors.append(metadata["nextCursor"])
            url = metadata["nextPage"]
            pages.append([item["id"] for item in reply.json()["items"]])
        else:
            url = reply.header("link").split(">")[0].lstrip("<")
            cursors.append(url.rpartition("cursor=")[2])
            pages.append([entry["id"] for entry in reply.json()])
    assert len(set(cursors)) == 4 and all(cursor.startswith("endless-") for cursor in cursors)
    assert all(page == pages[0] for page in pages) and len(pages[0]) == 5
    assert {record.fault for record in emu.log} == {"endless-cursor"}


@deferred_f_from_coro_f
async def test_announced_ratelimit_headers_replace_the_budget_on_every_hub_answer(
    make_emulator,
) -> None:
    emu = make_emulator(
        faulty(
            hf_rate_limit=100,
            hf_ratelimit_header='"api";r=0;t=999999999',
            hf_ratelimit_policy_header='"fixed window";"api";q=0;w=0',
        )
    )
    for _ in range(2):
        reply = await fetch(url_with(emu.hf_url, {"limit": 2}))
        assert reply.status == 200
        assert reply.header("ratelimit") == '"api";r=0;t=999999999'
        assert reply.header("ratelimit-policy") == '"fixed window";"api";q=0;w=0'
    assert (await fetch(emu.civitai_url)).header("ratelimit") is None
    with pytest.raises(ValueError, match="printable ASCII"):
        FaultConfig(hf_ratelimit_header="r=0\r\nX-Injected: 1")


@deferred_f_from_coro_f
async def test_civitai_levels_replace_every_models_level(make_emulator) -> None:
    emu = make_emulator(
        EmulatorConfig(civitai_models=200, hf_models=10, civitai_levels=(31, 14, 1))
    )
    reply = await fetch(url_with(emu.civitai_url, {"limit": 100, "nsfw": "true"}))
    levels = [item["nsfwLevel"] for item in reply.json()["items"]]
    assert set(levels) == {31, 14, 1}
    # Listed as the levels say: nsfw=false lists only models with a PG bit (not 14).
    safe = await fetch(url_with(emu.civitai_url, {"limit": 100, "nsfw": "false"}))
    assert {item["nsfwLevel"] for item in safe.json()["items"]} == {31, 1}
    # The shared catalogue of the same seed and sizes keeps its own levels.
    plain = make_emulator(EmulatorConfig(civitai_models=200, hf_models=10))
    plain_reply = await fetch(url_with(plain.civitai_url, {"limit": 100, "nsfw": "true"}))
    assert {item["nsfwLevel"] for item in plain_reply.json()["items"]} - {31, 14, 1}
    with pytest.raises(ValueError, match="civitai_levels"):
        EmulatorConfig(civitai_levels=(64,))
