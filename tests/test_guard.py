"""The deploy guard (python -m manifest_crawler.guard) on folders written by real crawls: it
passes a folder of real data and refuses, one line per problem, everything a deploy must not
publish."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.guard import main
from manifest_crawler.spiders.all import AllSpider
from tests.crawl import REPO_FILTERS, ROOT, crawl, crawl_env, crawl_settings, setting_args


def guard(folder, *extra):
    return subprocess.run(
        [sys.executable, "-m", "manifest_crawler.guard", str(folder), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=crawl_env(),
        timeout=120,
        check=False,
    )


async def crawl_live(emulator, tmp_path):
    """A folder written by a crawl of every filter against an API at a URL (the emulator
    standing in for the real APIs: its origin is its URL, not "emulator")."""
    out = tmp_path / "manifests"
    crawler = await crawl(AllSpider, crawl_settings(emulator, out, MANIFEST_MAX_ITEMS=3))
    assert crawler.stats.get_value("manifest/exit_code") == 0
    return out


def _edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@deferred_f_from_coro_f
async def test_a_folder_of_real_data_passes(emulator, tmp_path):
    live_folder = await crawl_live(emulator, tmp_path)
    result = guard(live_folder, "--filters", REPO_FILTERS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {live_folder}: 108 manifests, ")
    assert result.stderr == ""


def test_an_offline_preview_is_refused(tmp_path):
    out = tmp_path / "preview"
    crawl_ = subprocess.run(
        [
            *(sys.executable, "-m", "scrapy", "crawl", "all"),
            *setting_args(MANIFEST_OFFLINE=True, MANIFEST_DIR=out, MANIFEST_MAX_ITEMS=2),
        ],
        capture_output=True,
        cwd=ROOT,
        env=crawl_env(),
        timeout=300,
        check=False,
    )
    assert crawl_.returncode == 0
    result = guard(out, "--filters", REPO_FILTERS)
    assert result.returncode == 1
    [problem, verdict] = result.stderr.splitlines()
    assert problem.startswith(f"{out}: synthetic data: 110 file(s) hold the bundled emulator's")
    assert verdict.startswith(f"refused: {out}: 108 manifests") and verdict.endswith("1 problem(s)")


def _orphan(folder):
    shutil.copy(folder / "hf-likes.json", folder / "hf-likes-renamed.json")
    return [f"{folder / 'hf-likes-renamed.json'}: orphan: no filter of"]


def _failed(folder):
    def fail(report):
        report["filters"][0].update(status="failed", reason="request_failed")
        report["exit_code"] = 1

    _edit(folder / "run-report.json", fail)
    return [
        f"{folder / 'run-report.json'}: civitai:AllTime/All/All/downloads/Soft is failed (run of",
        f"{folder / 'run-report.json'}: the run of ",
    ]


def _unlabelled(folder):
    _edit(folder / "hf-likes.json", lambda manifest: manifest.pop("label"))
    return [f"{folder / 'hf-likes.json'}: hf-likes.json does not match manifest.schema.json"]


def _missing(folder):
    (folder / "civitai-filter-pg.json").unlink()
    (folder / "index.json").unlink()
    return [
        f"{folder / 'index.json'}: missing",
        f"{folder / 'civitai-filter-pg.json'}: missing: filter civitai:filter/pg has no manifest",
    ]


def _emulated(folder):
    _edit(folder / "hf-likes.json", lambda manifest: manifest.update(origin="emulator"))
    return [f"{folder}: synthetic data: 1 file(s) hold the bundled emulator's made-up models"]


def _elsewhere(folder):
    _edit(folder / "hf-likes.json", lambda m: m.update(origin="https://mirror.example/api"))
    return [f"{folder / 'hf-likes.json'}: from https://mirror.example/api, not http://127.0.0.1"]


@pytest.mark.parametrize("damage", [_orphan, _failed, _unlabelled, _missing, _emulated, _elsewhere])
@deferred_f_from_coro_f
async def test_each_problem_is_one_line_and_refuses_the_folder(emulator, tmp_path, damage, capsys):
    live_folder = await crawl_live(emulator, tmp_path)
    expected = damage(live_folder)
    assert main([str(live_folder), "--filters", str(REPO_FILTERS)]) == 1
    *problems, verdict = capsys.readouterr().err.splitlines()
    assert len(problems) == len(expected), problems
    for line, start in zip(sorted(problems), sorted(expected), strict=True):
        assert line.startswith(start), (line, start)
    assert verdict.endswith(f"{len(expected)} problem(s)")


def test_what_cannot_be_looked_at_is_a_usage_error(tmp_path):
    result = guard(tmp_path / "none", "--filters", REPO_FILTERS)
    assert (result.returncode, result.stderr) == (2, f"error: {tmp_path / 'none'}: not a folder\n")
    result = guard(tmp_path, "--filters", tmp_path / "filters.json")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'filters.json'}: file not found")
