"""Fault decisions, without HTTP."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifest_crawler.emulator.faults import (
    TRANSIENT_KINDS,
    FaultConfig,
    FaultInjector,
    FixedWindowLimiter,
    matches,
    transient_fault,
    truncate,
)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_everything_is_off_by_default() -> None:
    injector = FaultInjector(FaultConfig())
    for n in range(50):
        assert injector.decide("civitai", f"/api/v1/models?n={n}", {}) is None
        assert injector.delay("huggingface") == 0.0
    assert injector.rate_limit("huggingface") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fault_kinds": ("418",)},
        {"latency_apis": ("github",)},
        {"fault_rate": 1.5},
        {"latency": -1},
        {"cursor_loop_page": 1},
        {"empty_pages": (1,)},
        {"fail_status": 200},
        {"hf_rate_window": 0},
        {"transient_failures": 1, "fault_kinds": ()},
    ],
)
def test_invalid_configs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**kwargs)


def test_lists_and_strings_are_normalised() -> None:
    config = FaultConfig(fault_kinds="500, 503", latency_apis=["civitai"], empty_pages=[2, 3])
    assert config.fault_kinds == ("500", "503")
    assert config.latency_apis == ("civitai",)
    assert config.empty_pages == (2, 3)


def test_transient_failures_then_success_per_url() -> None:
    injector = FaultInjector(FaultConfig(transient_failures=3))
    url_a, url_b = "/api/v1/models?types=LORA", "/api/v1/models?types=VAE"
    kinds_a = [injector.decide("civitai", url_a, {}) for _ in range(3)]
    assert all(f is not None for f in kinds_a)
    assert [f.kind for f in kinds_a] == injector.expected_kinds(url_a)
    assert len({f.kind for f in kinds_a}) == 3  # consecutive attempts cycle through kinds
    assert injector.decide("civitai", url_a, {}) is None
    assert injector.decide("civitai", url_b, {}) is not None  # counted per URL
    assert injector.attempts == {url_a: 4, url_b: 1}


def test_transient_decisions_are_deterministic() -> None:
    urls = [f"/api/models?search=x{n}" for n in range(30)]

    def run() -> list:
        injector = FaultInjector(FaultConfig(seed=4, transient_failures=1, fault_rate=0.3))
        return [
            (f.kind if (f := injector.decide("huggingface", u, {})) else None)
            for u in urls
            for _ in range(3)
        ]

    assert run() == run()


@settings(max_examples=10, deadline=None)
@given(rate=st.floats(0.05, 0.95), seed=st.integers(0, 1000))
def test_fault_rate_is_roughly_the_probability(rate: float, seed: int) -> None:
    injector = FaultInjector(FaultConfig(seed=seed, fault_rate=rate))
    hits = sum(injector.decide("civitai", f"/u?{n}", {}) is not None for n in range(2000))
    assert abs(hits / 2000 - rate) < 0.06


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_fault_rate_extremes(rate: float) -> None:
    injector = FaultInjector(FaultConfig(fault_rate=rate, fault_kinds=("500",)))
    results = [injector.decide("civitai", f"/u?{n}", {}) for n in range(100)]
    if rate:
        assert all(f is not None and f.status == 500 for f in results)
    else:
        assert all(f is None for f in results)


def test_faults_restricted_to_one_api() -> None:
    injector = FaultInjector(
        FaultConfig(
            transient_failures=5,
            transient_apis=("civitai",),
            latency=1.0,
            latency_apis=("huggingface",),
        )
    )
    assert injector.decide("huggingface", "/api/models", {}) is None
    assert injector.decide("civitai", "/api/v1/models", {}) is not None
    assert injector.delay("civitai") == 0.0
    assert injector.delay("huggingface") == 1.0


def test_latency_jitter_stays_in_bounds() -> None:
    injector = FaultInjector(FaultConfig(latency=0.5, jitter=0.2))
    delays = [injector.delay("civitai") for _ in range(500)]
    assert all(0.3 <= d <= 0.7 for d in delays)
    assert max(delays) - min(delays) > 0.3


def test_permanent_failure_matching() -> None:
    config = FaultConfig(fail_matching=[{"types": "LORA"}, {"sort": "likes", "filter": "gguf"}])
    injector = FaultInjector(config)
    fault = injector.decide("civitai", "/x", {"types": ["Checkpoint", "LORA"]})
    assert fault is not None and (fault.kind, fault.status) == ("permanent", 500)
    assert json.loads(fault.body) == {"message": "Internal server error"}
    assert injector.decide("civitai", "/x", {"types": ["VAE"]}) is None
    assert injector.decide("huggingface", "/y", {"sort": ["likes"]}) is None
    assert injector.decide("huggingface", "/y", {"sort": ["likes"], "filter": ["gguf"]})
    for _ in range(5):  # permanent: never recovers
        assert injector.decide("civitai", "/x", {"types": ["LORA"]}) is not None


def test_permanent_failure_status_and_api() -> None:
    injector = FaultInjector(
        FaultConfig(fail_matching=[{"types": "LORA"}], fail_status=403, fail_apis=("civitai",))
    )
    fault = injector.decide("civitai", "/x", {"types": ["LORA"]})
    assert fault is not None and fault.status == 403 and "error" in json.loads(fault.body)
    assert injector.decide("huggingface", "/x", {"types": ["LORA"]}) is None


def test_a_permanent_400_is_in_each_apis_real_shape() -> None:
    """api-notes: CivitAI refuses a parameter with a Zod error object, the Hub with a string."""
    injector = FaultInjector(FaultConfig(fail_matching=[{"sort": "x"}], fail_status=400))
    civitai = injector.decide("civitai", "/x", {"sort": ["x"]})
    hub = injector.decide("huggingface", "/y", {"sort": ["x"]})
    assert civitai is not None and hub is not None
    assert json.loads(civitai.body) == {
        "error": {
            "issues": [{"code": "custom", "path": [], "message": "Bad request"}],
            "name": "ZodError",
        }
    }
    assert json.loads(hub.body) == {"error": "Bad request"}


def test_matches() -> None:
    assert matches({"a": "1"}, {"a": ["0", "1"]})
    assert not matches({"a": "1"}, {"a": ["0"]})
    assert matches({"a": ["1", "2"]}, {"a": ["2", "1"]})
    assert not matches({"a": "1", "b": "2"}, {"a": ["1"]})


@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
def test_every_transient_kind(kind: str) -> None:
    fault = transient_fault(kind, retry_after=7)
    headers = dict(fault.headers)
    expected_status = {
        "429-retry-after": 429,
        "429": 429,
        "503": 503,
        "500": 500,
        "502": 502,
        "504": 504,
        "524": 524,
        "html-200": 200,
        "truncated": 200,
    }[kind]
    assert fault.status == expected_status
    if kind == "429-retry-after":
        assert headers == {"Retry-After": "7"}
    elif kind == "503":
        assert headers == {"Retry-After": "2"}
    else:
        assert "Retry-After" not in headers
    if kind in ("429", "502", "504", "524", "html-200"):
        assert fault.content_type.startswith("text/html")
        assert fault.body.lstrip().startswith(b"<!DOCTYPE html")
    if kind == "500":
        assert json.loads(fault.body) == {"message": "Internal server error"}


@given(st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=30))
def test_truncated_json_never_parses(obj: dict) -> None:
    body = json.dumps(obj).encode()
    cut = truncate(body)
    assert 0 < len(cut) < len(body)
    with pytest.raises(ValueError):
        json.loads(cut)


def test_fixed_window_limiter() -> None:
    clock = FakeClock()
    limiter = FixedWindowLimiter(3, 10.0, clock)
    verdicts = [limiter.hit() for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True] * 3
    assert [v.remaining for v in verdicts] == [2, 1, 0]
    assert not any(v.exhausted_on_arrival for v in verdicts)
    assert dict(verdicts[0].headers) == {
        "RateLimit": '"api";r=2;t=10',
        "RateLimit-Policy": '"fixed window";"api";q=3;w=10',
    }
    clock.now += 4.2
    blocked = limiter.hit()
    assert not blocked.allowed and blocked.exhausted_on_arrival and blocked.remaining == 0
    # 5.8 s to the reset, rounded down as the Hub does: a retry at exactly t comes 0.8 s early.
    assert dict(blocked.headers)["RateLimit"] == '"api";r=0;t=5'
    clock.now += 5.0
    early = limiter.hit()
    assert not early.allowed and early.exhausted_on_arrival
    assert dict(early.headers)["RateLimit"] == '"api";r=0;t=0'
    clock.now += 0.8  # the window resets exactly now
    fresh = limiter.hit()
    assert fresh.allowed and fresh.remaining == 2 and not fresh.exhausted_on_arrival


def test_rate_limit_only_for_the_hub() -> None:
    injector = FaultInjector(FaultConfig(hf_rate_limit=1, hf_rate_window=60), clock=FakeClock())
    assert injector.rate_limit("civitai") is None
    first, second = injector.rate_limit("huggingface"), injector.rate_limit("huggingface")
    assert first is not None and first.allowed
    assert second is not None and not second.allowed


def test_each_api_can_have_its_own_latency():
    config = FaultConfig(latency=0.1, api_latency={"civitai": (2.0, 1.0)}, latency_apis=())
    assert config.api_latency == (("civitai", 2.0, 1.0),)
    injector = FaultInjector(config)
    delays = [injector.delay("civitai") for _ in range(200)]
    assert all(1.0 <= delay <= 3.0 for delay in delays) and max(delays) - min(delays) > 1.0
    # latency_apis leaves the Hub out of the common latency; its own entry would apply.
    assert injector.delay("huggingface") == 0.0
    with pytest.raises(ValueError, match="api_latency"):
        FaultConfig(api_latency={"nowhere": (1.0, 0.0)})
