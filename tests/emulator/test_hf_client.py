"""The official client, huggingface_hub.HfApi, against the emulator (in a thread)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from twisted.internet import threads

from manifest_crawler.emulator import Emulator

huggingface_hub = pytest.importorskip("huggingface_hub")
hub_constants = pytest.importorskip("huggingface_hub.constants")


@pytest.fixture(autouse=True)
def online_hub_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await maybe_deferred_to_future(threads.deferToThread(fn))


def client(emulator: Emulator) -> Any:
    # token=False: never pick up a local token; the emulator needs none.
    return huggingface_hub.HfApi(endpoint=emulator.base_url, token=False)


@deferred_f_from_coro_f
async def test_list_models_with_limit(emulator: Emulator) -> None:
    api = client(emulator)
    models = await in_thread(
        lambda: list(
            api.list_models(
                filter="transformers", sort="likes", limit=250, pipeline_tag="text-generation"
            )
        )
    )
    params = {"filter": "transformers", "sort": "likes", "pipeline_tag": "text-generation"}
    expected = emulator.query_hf(params)
    assert [m.id for m in models] == expected[:250]
    (request,) = emulator.requests("huggingface")
    assert request.query == {
        "filter": ["transformers"],
        "pipeline_tag": ["text-generation"],
        "sort": ["likes"],
        "limit": ["250"],
    }


@deferred_f_from_coro_f
async def test_list_models_pages_through_the_link_header(make_emulator) -> None:
    emulator = make_emulator(hf_models=4000)
    api = client(emulator)
    models = await in_thread(lambda: list(api.list_models(filter="safetensors", sort="likes")))
    expected = emulator.query_hf({"filter": "safetensors", "sort": "likes"})
    assert len(expected) > 2000
    assert [m.id for m in models] == expected
    pages = emulator.requests("huggingface")
    assert len(pages) == -(-len(expected) // 1000)
    assert all("cursor" in r.query for r in pages[1:])
    assert models[0].likes >= models[-1].likes


@deferred_f_from_coro_f
async def test_list_models_with_limit_pages_small_pages(make_emulator) -> None:
    emulator = make_emulator(hf_models=1500)
    api = client(emulator)
    expected = emulator.query_hf({"pipeline_tag": "text-to-image", "sort": "downloads"})
    models = await in_thread(
        lambda: list(
            api.list_models(pipeline_tag="text-to-image", sort="downloads", limit=len(expected))
        )
    )
    assert [m.id for m in models] == expected


@deferred_f_from_coro_f
async def test_client_parses_full_expand_and_extras(emulator: Emulator) -> None:
    api = client(emulator)
    full = await in_thread(
        lambda: list(
            api.list_models(search="llama", full=True, cardData=True, fetch_config=True, limit=40)
        )
    )
    assert [m.id for m in full] == emulator.query_hf({"search": "llama"})[:40]
    assert all(m.siblings and m.sha and m.last_modified for m in full)
    expanded = await in_thread(
        lambda: list(
            api.list_models(
                sort="trending_score",
                expand=["downloads", "likes", "safetensors", "gguf", "tags", "gated"],
                limit=60,
            )
        )
    )
    assert [m.id for m in expanded] == emulator.query_hf({"sort": "trendingScore"})[:60]
    assert all(m.downloads is not None and m.tags for m in expanded)
    assert any(m.safetensors is not None for m in expanded)
