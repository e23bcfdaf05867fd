"""The crawler against the emulator on a bad API day: every manifest still exact."""

from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.filters import listing_key, load_filters
from manifest_crawler.output.manifests import manifest_filename
from manifest_crawler.spiders.all import AllSpider
from manifest_crawler.spiders.civitai import CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import REPO_FILTERS, crawl, crawl_settings, read_json, successor
from tests.spiders.test_emulated import expected_models

CIVITAI_FILTERS = "AllTime/All/All/downloads/Soft,filter/loras,filter/sdxl,filter/r"
HF_FILTERS = "likes,text-generation,apache-2.0,gguf"
FAST_BACKOFF = {"MANIFEST_BACKOFF_INITIAL": 0.05, "MANIFEST_BACKOFF_MAX": 0.5}


def _selected(names):
    return load_filters(REPO_FILTERS).select(["civitai", "huggingface"], names.split(","))


def _assert_exact(emulator, out, names, max_items):
    for filter_ in _selected(names):
        manifest = read_json(out / manifest_filename(filter_.source, filter_.name))
        assert manifest["models"] == expected_models(emulator, filter_, max_items), filter_.name


@deferred_f_from_coro_f
async def test_transient_faults_and_quirks_leave_every_manifest_exact(make_emulator, tmp_path):
    faults = FaultConfig(
        transient_failures=3,
        fault_kinds=("429", "500", "502", "504", "524", "html-200", "truncated"),
        control_chars=True,
        empty_pages=(2, 4),
        latency=0.01,
        jitter=0.01,
    )
    emulator = make_emulator(EmulatorConfig(faults=faults))
    names = f"{CIVITAI_FILTERS},{HF_FILTERS}"
    settings = crawl_settings(emulator, tmp_path, MANIFEST_MAX_ITEMS=350, **FAST_BACKOFF)
    crawler = await crawl(AllSpider, settings, filters=names)
    _assert_exact(emulator, tmp_path, names, 350)
    stats = crawler.stats.get_stats()
    assert stats["manifest/exit_code"] == 0
    # Every page failed three times before it answered: each fault kind was met and survived.
    assert stats["manifest/retry/count"] >= 3 * stats["response_received_count"] // 4
    report = read_json(tmp_path / "run-report.json")
    assert all(row["status"] == "fresh" for row in report["filters"])
    # Filters reading one listing share its pages, and each counts the retries of the pages
    # it read: a chain's retries are those of its member that read the most pages.
    chains: dict[tuple, int] = {}
    for filter_, row in zip(_selected(names), report["filters"], strict=True):
        key = listing_key(filter_)
        chains[key] = max(chains.get(key, 0), row["retries"])
    assert sum(chains.values()) == stats["manifest/retry/count"]


@deferred_f_from_coro_f
async def test_503_retry_after_is_honoured(make_emulator, tmp_path):
    faults = FaultConfig(transient_failures=1, fault_kinds=("503",))
    emulator = make_emulator(EmulatorConfig(faults=faults))
    await crawl(
        CivitaiSpider,
        crawl_settings(emulator, tmp_path, **FAST_BACKOFF),
        filters="filter/loras,filter/sdxl",
    )
    by_uri: dict[str, list] = {}
    for record in emulator.log:
        by_uri.setdefault(record.uri, []).append(record)
    report = read_json(tmp_path / "run-report.json")
    assert len(by_uri) == sum(row["pages"] for row in report["filters"])
    for records in by_uri.values():
        first, retry = records
        assert (first.status, retry.status) == (503, 200)
        assert retry.time - first.time >= 2.0


@deferred_f_from_coro_f
async def test_a_permanently_failing_filter_keeps_its_file_and_its_models(make_emulator, tmp_path):
    healthy = make_emulator()
    names = "filter/loras,filter/checkpoints,likes"
    await crawl(AllSpider, crawl_settings(healthy, tmp_path), filters=names)
    loras = tmp_path / "civitai-filter-loras.json"
    before = loras.read_bytes()
    old_lora_ids = {m["id"] for m in read_json(loras)["models"]}

    broken = await successor(
        make_emulator,
        healthy,
        EmulatorConfig(revision=1, faults=FaultConfig(fail_matching=({"types": "LORA"},))),
    )
    crawler = await crawl(
        AllSpider, crawl_settings(broken, tmp_path, **FAST_BACKOFF), filters=names
    )
    assert loras.read_bytes() == before
    _assert_exact(broken, tmp_path, "filter/checkpoints,likes", 100)
    all_ids = {m["id"] for m in read_json(tmp_path / "all-models.json")["models"]}
    assert old_lora_ids <= all_ids
    report = read_json(tmp_path / "run-report.json")
    row = next(r for r in report["filters"] if r["filter"] == "filter/loras")
    assert row["status"] == "stale" and "HTTP 500" in row["errors"][0]
    assert crawler.stats.get_value("manifest/exit_code") == 0


HF_TEN = "likes,downloads,trending,recent,text-generation,apache-2.0,gguf,mit,small,medium"


@deferred_f_from_coro_f
async def test_small_hf_rate_limit_window_with_the_probe_loses_nothing_and_never_overdraws(
    make_emulator, tmp_path
):
    faults = FaultConfig(latency=0.3, hf_rate_limit=4, hf_rate_window=1.0)
    emulator = make_emulator(EmulatorConfig(faults=faults))
    settings = crawl_settings(emulator, tmp_path, MANIFEST_RATELIMIT_PROBE=True)
    await crawl(HuggingFaceSpider, settings, filters=HF_TEN)
    _assert_exact(emulator, tmp_path, HF_TEN, 100)
    records = emulator.requests("huggingface")
    assert len(records) == 10
    assert not [r for r in records if r.arrived_when_exhausted]
    assert all(r.status == 200 for r in records)


@deferred_f_from_coro_f
async def test_small_hf_rate_limit_window_overdraws_only_in_the_first_round_and_loses_nothing(
    make_emulator, tmp_path
):
    # Without the probe the first round goes out before any answer has told the budget (4):
    # the 4 requests beyond it get a 429 saying when the window resets, and go again then.
    faults = FaultConfig(latency=0.3, hf_rate_limit=4, hf_rate_window=1.0)
    emulator = make_emulator(EmulatorConfig(faults=faults))
    crawler = await crawl(HuggingFaceSpider, crawl_settings(emulator, tmp_path), filters=HF_TEN)
    _assert_exact(emulator, tmp_path, HF_TEN, 100)
    records = sorted(emulator.requests("huggingface"), key=lambda r: r.time)
    first_answer = min(r.finished for r in records if r.finished is not None)
    first_round = [r for r in records if r.time < first_answer]
    assert len(first_round) == 8
    overdrawn = [r for r in records if r.arrived_when_exhausted]
    assert len(overdrawn) == 4 and all(r in first_round for r in overdrawn)
    assert all(r.status == 429 for r in overdrawn)
    assert sum(r.status == 200 for r in records) == 10 and len(records) == 14
    assert crawler.stats.get_value("manifest/retry/reason_count/http_429") == 4


@deferred_f_from_coro_f
async def test_the_first_round_to_a_budgeted_api_goes_out_at_once(make_emulator, tmp_path):
    faults = FaultConfig(latency=0.3, hf_rate_limit=500, hf_rate_window=300.0)
    emulator = make_emulator(EmulatorConfig(faults=faults))
    await crawl(HuggingFaceSpider, crawl_settings(emulator, tmp_path), filters=HF_TEN)
    _assert_exact(emulator, tmp_path, HF_TEN, 100)
    records = emulator.requests("huggingface")
    assert len(records) == 10 and all(r.status == 200 for r in records)
    first_answer = min(r.finished for r in records if r.finished is not None)
    # All 8 places filled before any answer; the last 2 requests went as answers freed places.
    assert sum(r.time < first_answer for r in records) == 8


@deferred_f_from_coro_f
async def test_requests_behind_the_budget_probe_go_when_its_answer_lands(make_emulator, tmp_path):
    faults = FaultConfig(latency=0.3, hf_rate_limit=500, hf_rate_window=300.0)
    emulator = make_emulator(EmulatorConfig(faults=faults))
    settings = crawl_settings(emulator, tmp_path, MANIFEST_RATELIMIT_PROBE=True)
    crawler = await crawl(HuggingFaceSpider, settings, filters=HF_TEN)
    _assert_exact(emulator, tmp_path, HF_TEN, 100)
    probe, *others = sorted(emulator.requests("huggingface"), key=lambda r: r.time)
    assert len(others) == 9 and probe.finished is not None
    # The budget was unknown until the first answer: nothing else went before it.
    assert all(record.time >= probe.finished for record in others)
    # Each request held back was woken once, by that answer, not polling while it waited.
    waits = crawler.stats.get_value("manifest/backoff/waits", 0)
    assert 1 <= waits <= len(others)


@deferred_f_from_coro_f
async def test_an_api_without_rate_limit_headers_is_not_probed_one_at_a_time(
    make_emulator, tmp_path
):
    # The offline emulator announces no budget: HF requests must then go out concurrently.
    emulator = make_emulator(EmulatorConfig(faults=FaultConfig(latency=0.3)))
    await crawl(HuggingFaceSpider, crawl_settings(emulator, tmp_path), filters=HF_TEN)
    _assert_exact(emulator, tmp_path, HF_TEN, 100)
    times = sorted(r.time for r in emulator.requests("huggingface"))
    # One at a time would take 10 x 0.3 s; with up to 8 in flight it takes two rounds or so.
    assert times[-1] - times[0] < 1.5
