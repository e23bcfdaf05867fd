"""What the pipelines write and refuse to write, through real crawls of scripted APIs."""

import json
import re

from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler import settings as project_settings
from manifest_crawler.output.manifests import SOURCE_URL_SETTINGS, build_manifest, encode_json
from manifest_crawler.pipelines.writer import not_refreshed_text
from manifest_crawler.spiders.all import AllSpider
from manifest_crawler.spiders.civitai import CivitaiSpider
from tests.crawl import crawl, files_in, project_settings_dict, read_json, write_filters
from tests.scripted import Reply


def _page(*ids):
    return {"items": [{"id": i, "name": f"Model {i}"} for i in ids], "metadata": {}}


def _previous(out, name, ids, source="civitai", origin=None):
    """A previous run's manifest, from ``origin`` (by default the source's real API)."""
    prefix = "civitai" if source == "civitai" else "hf"
    models = [
        {"id": f"civitai-{i}", "slug": f"civitai-{i}", "name": f"Old {i}"}
        if source == "civitai"
        else {"id": i, "slug": i.replace("/", "--"), "name": i}
        for i in ids
    ]
    path = out / f"{prefix}-{name}.json"
    out.mkdir(exist_ok=True)
    origin = origin or getattr(project_settings, SOURCE_URL_SETTINGS[source])
    path.write_bytes(encode_json(build_manifest(name, models, "2026-01-01T00:00:00Z", origin)))
    return path


def _settings(tmp_path, civitai=None, huggingface=None, **extra):
    # CivitAI filters read browsing level PG: the API's own nsfw=false listing.
    civitai = [{**entry, "browsing_levels": ["PG"]} for entry in civitai or []]
    return project_settings_dict(
        FILTERS_FILE=str(write_filters(tmp_path / "filters.json", civitai, huggingface)),
        MANIFEST_DIR=str(tmp_path / "out"),
        **{"MANIFEST_BACKOFF_INITIAL": 0.01, "MANIFEST_RETRY_TIMES": 1, **extra},
    )


def _filters(*names, **extra):
    return [{"name": n, "label": n, "params": {"sort": n}, **extra} for n in names]


@deferred_f_from_coro_f
async def test_a_suspicious_shrink_keeps_the_previous_manifest(tmp_path, scripted):
    out = tmp_path / "out"
    _, url = scripted({"shrunk|": Reply(_page(1, 2, 3)), "steady|": Reply(_page(50))}, by="sort")
    previous = _previous(out, "shrunk", range(1, 11), origin=url)
    before = previous.read_bytes()
    crawler = await crawl(
        CivitaiSpider, _settings(tmp_path, _filters("shrunk", "steady"), CIVITAI_API_URL=url)
    )
    assert previous.read_bytes() == before
    report = read_json(out / "run-report.json")
    row = next(f for f in report["filters"] if f["filter"] == "shrunk")
    assert row["status"] == "stale"
    assert "shrank from 10 to 3 models" in row["reason"]
    assert row["manifest_models"] == 10
    assert report["totals"] == {"fresh": 1, "short": 0, "stale": 1, "failed": 0}
    # Stale but covered: the run succeeds, loudly.
    assert crawler.stats.get_value("manifest/exit_code") == 0
    all_ids = [m["id"] for m in read_json(out / "all-models.json")["models"]]
    assert all_ids == [f"civitai-{i}" for i in range(1, 11)] + ["civitai-50"]


@deferred_f_from_coro_f
async def test_shrink_allowed_by_setting_and_lowered_max_items_is_no_shrink(tmp_path, scripted):
    out = tmp_path / "out"
    _, url = scripted(
        {"shrunk|": Reply(_page(1, 2, 3)), "capped|": Reply(_page(*range(20, 30)))}, by="sort"
    )
    _previous(out, "shrunk", range(1, 11), origin=url)
    _previous(out, "capped", range(1, 11), origin=url)
    filters = [*_filters("shrunk"), *_filters("capped", max_items=4)]
    await crawl(
        CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url, MANIFEST_MAX_SHRINK=1.0)
    )
    assert len(read_json(out / "civitai-shrunk.json")["models"]) == 3
    assert [m["id"] for m in read_json(out / "civitai-capped.json")["models"]] == [
        "civitai-20",
        "civitai-21",
        "civitai-22",
        "civitai-23",
    ]


@deferred_f_from_coro_f
async def test_failed_filter_keeps_its_file_and_strict_mode_fails_the_run(tmp_path, scripted):
    out = tmp_path / "out"
    _, url = scripted(
        {"broken|": Reply({"message": "x"}, status=500), "fine|": Reply(_page(1))}, by="sort"
    )
    kept = _previous(out, "broken", [7, 8], origin=url)
    before = kept.read_bytes()
    filters = _filters("broken", "fine")
    crawler = await crawl(CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url))
    assert kept.read_bytes() == before
    assert crawler.stats.get_value("manifest/exit_code") == 0
    ids = [m["id"] for m in read_json(out / "all-models.json")["models"]]
    assert ids == ["civitai-7", "civitai-8", "civitai-1"]

    strict = await crawl(
        CivitaiSpider, _settings(tmp_path, filters, CIVITAI_API_URL=url, MANIFEST_STRICT=True)
    )
    assert strict.stats.get_value("manifest/exit_code") == 1
    assert kept.read_bytes() == before


@deferred_f_from_coro_f
async def test_when_nothing_is_fetched_nothing_is_rewritten(tmp_path, scripted):
    out = tmp_path / "out"
    _previous(out, "a", [1])
    (out / "all-models.json").write_text("old all-models")
    snapshot = files_in(out)
    _, url = scripted({"": Reply({"message": "down"}, status=503)})
    crawler = await crawl(
        CivitaiSpider, _settings(tmp_path, _filters("a", "b"), CIVITAI_API_URL=url)
    )
    assert files_in(out) == snapshot
    assert crawler.stats.get_value("manifest/exit_code") == 1


@deferred_f_from_coro_f
async def test_one_source_run_keeps_the_other_sources_models(tmp_path, scripted):
    out = tmp_path / "out"
    _previous(out, "likes", ["a/b", "c/d"], source="huggingface")
    _, url = scripted({"": Reply(_page(3, 4))})
    await crawl(
        CivitaiSpider,
        _settings(tmp_path, _filters("new"), _filters("likes"), CIVITAI_API_URL=url),
    )
    document = read_json(out / "all-models.json")
    assert [(m["id"], m["source"]) for m in document["models"]] == [
        ("civitai-3", "civitai"),
        ("civitai-4", "civitai"),
        ("a/b", "huggingface"),
        ("c/d", "huggingface"),
    ]
    assert (document["totalModels"], document["civitai"], document["huggingface"]) == (4, 2, 2)


@deferred_f_from_coro_f
async def test_all_spider_dedupes_across_sources_and_filters_and_is_reproducible(
    tmp_path, scripted
):
    _, civitai_url = scripted({"a|": Reply(_page(1, 2)), "b|": Reply(_page(2, 3))}, by="sort")
    _, hf_url = scripted({"": Reply([{"id": "x/y"}, {"id": "x/z"}])})
    settings = _settings(
        tmp_path, _filters("a", "b"), _filters("h"), CIVITAI_API_URL=civitai_url, HF_API_URL=hf_url
    )
    out = tmp_path / "out"
    await crawl(AllSpider, settings)
    first = {name: _without_timestamps(data) for name, data in files_in(out).items()}
    await crawl(AllSpider, settings)
    second = {name: _without_timestamps(data) for name, data in files_in(out).items()}
    document = read_json(out / "all-models.json")
    assert [m["id"] for m in document["models"]] == [
        "civitai-1",
        "civitai-2",
        "civitai-3",
        "x/y",
        "x/z",
    ]
    assert (
        sorted(first)
        == sorted(second)
        == sorted(
            [
                "all-models.json",
                "changes.json",
                "civitai-a.json",
                "civitai-b.json",
                "hf-h.json",
                "run-report.json",
            ]
        )
    )
    # Same API data, same bytes apart from timestamps (the run report also holds durations;
    # the changes file describes each run against the one before).
    for name in first:
        if name not in ("run-report.json", "changes.json"):
            assert first[name] == second[name], name


def _without_timestamps(data):
    return re.sub(rb'"timestamp": "[^"]*"', b'"timestamp": "T"', data)


@deferred_f_from_coro_f
async def test_previous_files_that_cannot_be_trusted_count_as_absent(tmp_path, scripted, caplog):
    out = tmp_path / "out"
    out.mkdir()
    _, url = scripted({"": Reply(_page(1, 2))})
    untrusted = {
        "truncated": '{"filter": "truncated", "origin": "%s", "models": [{"id": "civ',
        "notjson": "<html>not JSON</html>",
        "invalid": '{"filter": "invalid", "origin": "%s", "models": [{"id": "civitai-1"}]}',
        "badid": '{"filter": "badid", "origin": "%s", "models": '
        '[{"id": "civitai-0", "slug": "civitai-0", "name": "Zero"}], "timestamp": "T"}',
        "badslug": '{"filter": "badslug", "origin": "%s", "models": '
        '[{"id": "civitai-3", "slug": "three", "name": "Three"}], "timestamp": "T"}',
        "blankname": '{"filter": "blankname", "origin": "%s", "models": '
        '[{"id": "civitai-3", "slug": "civitai-3", "name": "  "}], "timestamp": "T"}',
    }
    for name, text in untrusted.items():
        (out / f"civitai-{name}.json").write_text(text.replace("%s", url))
    (out / "all-models.json").write_text(
        json.dumps(
            {
                "origins": {"civitai": url, "huggingface": project_settings.HF_API_URL},
                "models": [{"id": "../etc", "slug": "x", "name": "x", "source": "civitai"}],
            }
        )
    )
    crawler = await crawl(
        CivitaiSpider, _settings(tmp_path, _filters(*untrusted), CIVITAI_API_URL=url)
    )
    # Each is named once, and none makes the run a crawler bug: every filter is fresh.
    for name in [*(f"civitai-{n}.json" for n in untrusted), "all-models.json"]:
        assert len([r for r in caplog.records if name in r.getMessage()]) == 1, name
    assert "a bug" not in caplog.text
    assert crawler.stats.get_value("manifest/exit_code") == 0
    report = read_json(out / "run-report.json")
    assert report["totals"] == {"fresh": 6, "short": 0, "stale": 0, "failed": 0}
    assert read_json(out / "changes.json")["previousTimestamp"] is None


def test_filters_not_refreshed_are_one_line_per_cause():
    rows = [
        {"source": "civitai", "filter": f"f{i}", "status": "stale", "reason": "request_failed",
         "errors": [f"CannotResolveHostError: DNS lookup failed at https://civitai.com/?f={i}"]}
        for i in range(7)
    ] + [
        {"source": "huggingface", "filter": "likes", "status": "failed", "reason": "max_items",
         "errors": []},
    ]  # fmt: skip
    assert not_refreshed_text(rows).splitlines() == [
        "8 filter(s) NOT refreshed:",
        "  STALE civitai:f0, civitai:f1, civitai:f2, civitai:f3, civitai:f4 and 2 more: "
        "request_failed (CannotResolveHostError: DNS lookup failed)",
        "  FAILED huggingface:likes: max_items",
    ]
