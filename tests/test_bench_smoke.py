"""The benchmarks (bench/) at a tiny scale, so that they cannot rot; not a measurement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import crawl, scale, throughput
from bench.lower_bound import ApiBound, allowed_concurrency, crawl_bound, longest_chains
from tests.crawl import REPO_FILTERS, ROOT


def _small_filters(path: Path) -> Path:
    filters = json.loads(REPO_FILTERS.read_text(encoding="utf-8"))
    civitai = filters["civitai"][:2] + [f for f in filters["civitai"] if "rated" in f][:1]
    path.write_text(json.dumps({"civitai": civitai, "huggingface": filters["huggingface"][:2]}))
    return path


def test_lower_bound_is_the_larger_of_concurrency_and_chain() -> None:
    bound = ApiBound("civitai", requests=75, concurrency=8, longest_chain=8, latency=0.3)
    assert bound.by_concurrency == pytest.approx(3.0)
    assert bound.by_chain == pytest.approx(2.4)
    chain_bound = ApiBound("huggingface", requests=3, concurrency=8, longest_chain=3, latency=0.5)
    assert crawl_bound({"a": bound, "b": chain_bound}) == pytest.approx(3.0)
    assert longest_chains({"filters": [{"source": "x", "pages": 2}, {"source": "x", "pages": 5}]})
    settings = {
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 4.0,
        "DOWNLOAD_SLOTS": {"huggingface": {"concurrency": 2}},
    }
    assert allowed_concurrency(settings, "civitai") == 4
    assert allowed_concurrency(settings, "huggingface") == 2


def test_the_three_benchmarks_run_at_a_tiny_scale(tmp_path: Path) -> None:
    filters = _small_filters(tmp_path / "filters.json")
    report = crawl.run(
        crawl.CrawlBenchConfig(
            filters_file=filters,
            variants=(30,),
            cases=("repo",),
            repeat=1,
            latency={"civitai": (0.0, 0.0), "huggingface": (0.0, 0.0)},
            commands=("crawl", "plain", "crawl-hf", "baseline", "hub"),
            before_root=ROOT,
            civitai_models=400,
            hf_models=400,
            workdir=tmp_path,
        ),
        progress=lambda line: None,
    )
    rows = {line.split("  ")[0]: line.split() for line in report.splitlines()}
    # Every command fetched the same models: the crawl, the plain client, the baseline and
    # huggingface_hub.
    assert rows["scrapy crawl all"][-1] == rows["sequential baseline"][-1]
    assert rows["scrapy crawl all"][-1] == rows["plain client (asyncio + aiohttp)"][-1]
    assert rows["scrapy crawl huggingface"][-1] == rows["huggingface_hub list_models"][-1]
    # Before and after side by side: the same checkout twice here.
    assert report.startswith(
        "HEADLINE repo, 30/filter (civitai 0 s, huggingface 0 s): scrapy crawl all (before)"
    )
    assert rows["scrapy crawl all (before)"][-1] == rows["scrapy crawl all"][-1]
    assert "crawl / before:" in report
    assert "baseline / crawl:" in report and "huggingface_hub / crawl HF:" in report
    assert "crawl / plain client, CPU per model:" in report
    # The emulator's longest listing is the crawl's longest chain (from its run report).
    served = re.search(r"longest chain as served .*?: (\d+) pages", report)
    chains = re.findall(r"configured: \w+: .*?longest chain (\d+) pages", report)
    assert served is not None and chains
    assert int(served.group(1)) == max(int(pages) for pages in chains)

    report = crawl.run(
        crawl.CrawlBenchConfig(
            cases=("request-bound",),
            repeat=1,
            latency={"civitai": (0.0, 0.0), "huggingface": (0.0, 0.0)},
            commands=("crawl", "plain"),
            civitai_models=2000,
            hf_models=10,
            workdir=tmp_path,
        ),
        progress=lambda line: None,
    )
    rows = {line.split("  ")[0]: line.split() for line in report.splitlines()}
    assert rows["scrapy crawl all"][-1] == rows["plain client (asyncio + aiohttp)"][-1]
    summary = next(line for line in report.splitlines() if line.startswith("request-bound"))
    assert "scrapy crawl all" in summary

    report = throughput.run(
        throughput.ThroughputConfig(
            repeat=1, civitai_items=200, hf_items=400, catalogue=1000, workdir=tmp_path
        ),
        progress=lambda line: None,
    )
    assert "civitai" in report and "huggingface" in report and "µs/model" in report

    report = scale.run(
        scale.ScaleConfig(models=(1000,), repeat=1, filters_per_run=2, workdir=tmp_path),
        progress=lambda line: None,
    )
    first_build = next(line for line in report.splitlines() if "first build" in line)
    assert first_build.split()[0] == "1,000"
    assert "plain µs/entry" in report


def test_each_benchmark_repeats_as_documented():
    from bench.__main__ import parse_args

    realistic = parse_args(["crawl"])
    assert (realistic.civitai_latency, realistic.hf_latency) == ((1.0, 3.0), (0.2, 0.5))
    assert realistic.variants == [1000]
    assert parse_args(["crawl", "--latency", "0.2-0.4"]).latency == (0.2, 0.4)

    assert [parse_args([name]).repeat for name in ("crawl", "throughput", "scale")] == [3, 3, 1]
    assert parse_args(["scale", "--repeat", "2"]).repeat == 2


def test_the_crawler_is_compiled_before_it_is_measured_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.__main__ import parse_args
    from bench.harness import compile_crawler

    assert parse_args(["crawl"]).compile is True
    assert parse_args(["crawl", "--no-compile"]).compile is False
    # These machines set PYTHONDONTWRITEBYTECODE: the bytecode is written all the same.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    package = tmp_path / "manifest_crawler"
    package.mkdir()
    (package / "module.py").write_text("VALUE = 1\n")
    line = compile_crawler(tmp_path)
    assert str(package) in line
    assert [p.name.split(".")[0] for p in (package / "__pycache__").iterdir()] == ["module"]
    (package / "broken.py").write_text("def (:\n")
    with pytest.raises(RuntimeError, match=re.escape(str(package))):
        compile_crawler(tmp_path)
