"""`scrapy crawl` as a site build runs it: a real process whose exit status means something."""

import json

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.filters import load_filters
from manifest_crawler.output.manifests import manifest_filename
from tests.crawl import REPO_FILTERS, read_json, scrapy_crawl, setting_args, write_filters
from tests.scripted import Reply


def _filters(tmp_path):
    return write_filters(
        tmp_path / "filters.json",
        civitai=[
            {
                "name": "good",
                "label": "Good",
                "params": {"sort": "good"},
                "browsing_levels": ["PG"],
            },
            {"name": "bad", "label": "Bad", "params": {"sort": "bad"}, "browsing_levels": ["PG"]},
        ],
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "label": "X"}, "civitai[0] ('x'): missing 'params'"),
        # Nothing silently unfiltered: a CivitAI filter names its rule.
        (
            {"name": "x", "label": "X", "params": {"nsfw": "true"}},
            "civitai[0] ('x'): say which models the filter keeps: give 'browsing_levels'",
        ),
    ],
)
@deferred_f_from_coro_f
async def test_invalid_filters_file_is_one_clear_line_and_exit_2(tmp_path, entry, message):
    broken = tmp_path / "filters.json"
    broken.write_text(json.dumps({"civitai": [entry]}))
    _, err, code = await scrapy_crawl("civitai", "-s", f"FILTERS_FILE={broken}")
    assert code == 2
    (line,) = err.decode().splitlines()
    assert line.startswith(f"error: {broken}: {message}")
    assert b"Traceback" not in err


@deferred_f_from_coro_f
async def test_unknown_filter_argument_exits_2(tmp_path):
    _, err, code = await scrapy_crawl(
        "civitai", "-a", "filters=good,nope", "-s", f"FILTERS_FILE={_filters(tmp_path)}"
    )
    assert code == 2
    assert "unknown filter name(s)" in err.decode() and "nope" in err.decode()


@deferred_f_from_coro_f
async def test_sources_other_than_the_spiders_exit_2(tmp_path):
    _, err, code = await scrapy_crawl(
        "civitai",
        "-s",
        "MANIFEST_SOURCES=huggingface",
        "-s",
        f"FILTERS_FILE={_filters(tmp_path)}",
        # The check takes the output folder's lock before the crawl is set up: not the checkout's.
        "-s",
        f"MANIFEST_DIR={tmp_path / 'out'}",
    )
    assert code == 2
    assert "error: MANIFEST_SOURCES is set by the spider 'civitai'" in err.decode()
    assert b"Traceback" not in err


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
        MANIFEST_BACKOFF_INITIAL=0.01,
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
    assert (
        "[manifest_crawler.pipelines.writer] INFO: Manifest run summary (synthetic" in last_record
    )
    report = read_json(tmp_path / "run-report.json")
    assert report["synthetic"] is True
    assert report["origins"] == {"civitai": "emulator", "huggingface": "emulator"}


@deferred_f_from_coro_f
async def test_a_listing_nobody_is_in_is_written_named_and_fails_a_strict_build(tmp_path, emulator):
    # baseModels is free text upstream (api-notes): a name no model carries lists nothing.
    filters = write_filters(
        tmp_path / "filters.json",
        civitai=[
            {
                "name": name,
                "label": name,
                "params": {"baseModels": [base]},
                "browsing_levels": ["PG"],
            }
            for name, base in (
                ("sdxl", "SDXL 1.0"),
                ("nobody", "SD 9 Ultra"),
                ("again", "SD 9 Ultra"),
            )
        ],
    )
    common = setting_args(
        FILTERS_FILE=filters,
        CIVITAI_API_URL=emulator.civitai_url,
        MANIFEST_DIR=tmp_path / "out",
        MANIFEST_MAX_ITEMS=20,
    )
    _, err, code = await scrapy_crawl("civitai", *common)
    assert code == 0, err.decode()[-2000:]
    assert (
        "2 filter(s) hold no model:\n  civitai:nobody: the API listed no model "
        "(a retired or misspelled value?)" in err.decode()
    )
    assert read_json(tmp_path / "out" / "civitai-nobody.json")["models"] == []
    # The loader's warnings reach the log: two of these filters make one list.
    assert "civitai filters 'nobody' and 'again' make the same list" in err.decode()
    rows = {
        row["filter"]: row for row in read_json(tmp_path / "out" / "run-report.json")["filters"]
    }
    assert (rows["nobody"]["empty"], rows["sdxl"]["empty"]) == (True, False)
    assert (rows["nobody"]["status"], rows["sdxl"]["manifest_models"]) == ("fresh", 20)

    _, err, code = await scrapy_crawl("civitai", *common, "-s", "MANIFEST_STRICT=true")
    assert code == 1, err.decode()[-2000:]
    assert "civitai:nobody: the API listed no model" in err.decode()
