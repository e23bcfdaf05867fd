"""`scrapy crawl` as a site build runs it: a real process whose exit status means something."""

import gc
import json
import logging

from scrapy import signals
from scrapy.utils.defer import deferred_f_from_coro_f
from twisted.internet.defer import Deferred

from manifest_crawler import settings as project_settings
from manifest_crawler.filters import load_filters
from manifest_crawler.manifests import manifest_filename
from tests.crawl import REPO_FILTERS, read_json, scrapy_crawl, setting_args, write_filters
from tests.scripted import Reply


def _filters(tmp_path):
    return write_filters(
        tmp_path / "filters.json",
        civitai=[
            {"name": "good", "label": "Good", "params": {"sort": "good"}},
            {"name": "bad", "label": "Bad", "params": {"sort": "bad"}},
        ],
    )


@deferred_f_from_coro_f
async def test_invalid_filters_file_is_one_clear_line_and_exit_2(tmp_path):
    broken = tmp_path / "filters.json"
    broken.write_text('{"civitai": [{"name": "x", "label": "X"}]}')
    _, err, code = await scrapy_crawl("civitai", "-s", f"FILTERS_FILE={broken}")
    assert code == 2
    assert f"error: {broken}: civitai[0] ('x'): missing 'params'" in err.decode()
    assert b"Traceback" not in err


@deferred_f_from_coro_f
async def test_unknown_filter_argument_exits_2(tmp_path):
    _, err, code = await scrapy_crawl(
        "civitai", "-a", "filters=good,nope", "-s", f"FILTERS_FILE={_filters(tmp_path)}"
    )
    assert code == 2
    assert "unknown filter name(s)" in err.decode() and "nope" in err.decode()


@deferred_f_from_coro_f
async def test_exit_status_follows_the_run(tmp_path, scripted):
    _, url = scripted(
        {
            "good|": Reply({"items": [{"id": 1, "name": "One"}], "metadata": {}}),
            "bad|": Reply({"message": "down"}, status=500),
        },
        by="sort",
    )
    common = setting_args(
        FILTERS_FILE=_filters(tmp_path),
        CIVITAI_API_URL=url,
        MANIFEST_DIR=tmp_path / "out",
        MANIFEST_RETRY_TIMES=1,
        MANIFEST_BACKOFF_BASE=0.01,
    )
    # "bad" has no manifest to fall back on: the build must fail.
    _, err, code = await scrapy_crawl("civitai", *common)
    assert code == 1, err.decode()[-2000:]
    assert "FAILED civitai:bad" in err.decode()
    assert (tmp_path / "out" / "civitai-good.json").exists()

    # With a previous manifest for "bad", the run passes with a loud warning ...
    (tmp_path / "out" / "civitai-bad.json").write_text(
        json.dumps({"filter": "bad", "origin": url, "models": [], "timestamp": "T"})
    )
    _, err, code = await scrapy_crawl("civitai", *common)
    assert code == 0, err.decode()[-2000:]
    assert "STALE civitai:bad" in err.decode()

    # ... unless the build asks for strictness.
    _, _, code = await scrapy_crawl("civitai", *common, "-s", "MANIFEST_STRICT=true")
    assert code == 1


@deferred_f_from_coro_f
async def test_offline_quickstart_writes_every_manifest(tmp_path):
    _, err, code = await scrapy_crawl(
        "all", "-s", "MANIFEST_OFFLINE=true", "-s", f"MANIFEST_DIR={tmp_path}"
    )
    assert code == 0, err.decode()[-3000:]
    union: dict[str, str] = {}
    for filter_ in load_filters(REPO_FILTERS):
        manifest = read_json(tmp_path / manifest_filename(filter_.source, filter_.name))
        assert manifest["filter"] == filter_.name
        assert 0 < len(manifest["models"]) <= (filter_.max_items or 100)
        for model in manifest["models"]:
            union.setdefault(model["id"], filter_.source)
    all_models = read_json(tmp_path / "all-models.json")
    assert [m["id"] for m in all_models["models"]] == list(union)
    assert all_models["totalModels"] == len(union)
    assert all_models["civitai"] + all_models["huggingface"] == len(union)
    assert "Offline mode: crawling the bundled emulator at http://127.0.0.1:" in err.decode()
    assert "synthetic" in err.decode()
    # The run's summary is what a person reads last: Scrapy's stats and close lines come before.
    last_record = err.decode().rsplit("\n20", 1)[1]
    assert "[manifest_crawler.pipelines] INFO: Manifest run summary (synthetic" in last_record
    report = read_json(tmp_path / "run-report.json")
    assert report["synthetic"] is True
    assert report["origins"] == {"civitai": "emulator", "huggingface": "emulator"}


class _GcProbe:
    """Loaded into a real `scrapy crawl` process: logs how many objects were frozen when the
    spider opened, and leaves a failed Deferred in a reference cycle when it closes."""

    @classmethod
    def from_crawler(cls, crawler):
        probe = cls()
        crawler.signals.connect(probe.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(probe.spider_closed, signal=signals.spider_closed)
        return probe

    def spider_opened(self):
        logging.getLogger(__name__).warning("gc probe: %d frozen", gc.get_freeze_count())

    def spider_closed(self):
        failed: Deferred[None] = Deferred()
        cycle: list[object] = [failed]
        cycle.append(cycle)  # only the cyclic collector can free it
        failed.errback(RuntimeError("gc probe: failed, never handled"))


@deferred_f_from_coro_f
async def test_startup_objects_are_frozen_and_crawl_garbage_still_collected(tmp_path, scripted):
    _, url = scripted(
        {"good|": Reply({"items": [{"id": 1, "name": "One"}], "metadata": {}})}, by="sort"
    )
    extensions = {**project_settings.EXTENSIONS, f"{__name__}._GcProbe": 999}
    _, err, code = await scrapy_crawl(
        "civitai",
        "-a",
        "filters=good",
        *setting_args(
            FILTERS_FILE=_filters(tmp_path),
            CIVITAI_API_URL=url,
            MANIFEST_DIR=tmp_path / "out",
            EXTENSIONS=json.dumps(extensions),
        ),
    )
    log = err.decode()
    assert code == 0, log[-2000:]
    frozen = int(log.split("gc probe: ", 1)[1].split(" frozen", 1)[0])
    # Modules, classes, functions and settings: far more than a crawl of one model makes.
    assert frozen > 50_000, frozen
    # The fast exit's collection still finds what the crawl left in a cycle, and says so.
    assert "gc probe: failed, never handled" in log
    assert "Unhandled error in Deferred" in log
