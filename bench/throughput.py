"""Zero-latency throughput: models per second and CPU µs per model, per source.

``scrapy crawl civitai`` over a few deep CivitAI filters (pages of 100 items weighing
0.5-5 MB, as upstream) and ``scrapy crawl huggingface`` over a few deep Hub filters (pages of
1,000), against an emulator answering at once. The CPU per model is given gross (the whole
process) and marginal (minus the same command fetching one model per filter: interpreter and
Scrapy startup, writing the run report), which is what grows with the work.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    HF_SORTS,
    ROOT,
    EmulatorSpec,
    Measured,
    crawler_env,
    emulator,
    median,
    read_run_report,
    run_measured,
    scrapy_argv,
    scrapy_stats,
    table,
)

CIVITAI_SORTS = ("Most Downloaded", "Newest", "Highest Rated", "Most Liked")


@dataclass(slots=True)
class ThroughputConfig:
    repeat: int = 3
    civitai_items: int = 10_000
    hf_items: int = 100_000
    catalogue: int = 100_000
    crawler_root: Path = ROOT
    crawl_settings: dict[str, str] = field(default_factory=dict)
    profile_dir: Path | None = None
    workdir: Path | None = None


def filters_document(source: str, total: int) -> dict[str, list[dict[str, Any]]]:
    """Deep filters of one source whose max_items add up to ``total`` models."""
    sorts = CIVITAI_SORTS if source == "civitai" else HF_SORTS
    per_filter = max(1, total // len(sorts))
    entries = []
    for sort in sorts:
        params: dict[str, Any] = {"sort": sort}
        entry: dict[str, Any] = {"name": sort.lower().replace(" ", "-"), "label": sort}
        if source == "civitai":
            params.update(period="AllTime", nsfw="true")
            # Every listed model: browsing levels as wide as nsfw=true's own.
            entry["browsing_levels"] = ["PG", "PG13", "R", "X", "XXX"]
        entries.append({**entry, "params": params, "max_items": per_filter})
    return {"civitai": entries if source == "civitai" else [], "huggingface": entries}


def write_filters(path: Path, source: str, total: int, max_items: int | None = None) -> Path:
    document = filters_document(source, total)
    if max_items is not None:
        for entry in document[source]:
            entry["max_items"] = max_items
    if source == "civitai":
        document["huggingface"] = []
    path.write_text(json.dumps(document))
    return path


def _crawl(
    source: str,
    cfg: ThroughputConfig,
    filters: Path,
    work: Path,
    tag: str,
    profile: Path | None = None,
) -> Measured:
    spec = EmulatorSpec(civitai_models=cfg.catalogue, hf_models=cfg.catalogue)
    out = work / f"out-{tag}"
    log = work / f"{tag}.log"
    with emulator(spec) as emu:
        argv = scrapy_argv(
            source,
            civitai_url=emu.civitai_url,
            hf_url=emu.hf_url,
            manifest_dir=out,
            filters_file=filters,
            max_items=0,
            extra=cfg.crawl_settings,
        )
        if profile is not None:
            # pyinstrument runs the same command in-process and writes a text call tree.
            argv = [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "text",
                "-o",
                str(profile),
                *argv[1:],
            ]
        measured = run_measured(
            argv, log_path=log, env=crawler_env(cfg.crawler_root), cwd=cfg.crawler_root
        )
    if measured.exit_code != 0:
        raise RuntimeError(f"{source} crawl exited {measured.exit_code}; see {log}")
    measured.requests = dict(emu.served.get("requests", {}))
    measured.extra["emulator_cpu"] = emu.served.get("cpu_seconds", float("nan"))
    stats = scrapy_stats(log)
    measured.extra["engine"] = stats.get("elapsed_time_seconds", float("nan"))
    measured.extra["bytes"] = stats.get("downloader/response_bytes", 0.0)
    report = read_run_report(out)
    measured.extra["models"] = sum(row.get("models", 0) for row in report.get("filters", ()))
    measured.extra["pages"] = sum(row.get("pages", 0) for row in report.get("filters", ()))
    return measured


def run(cfg: ThroughputConfig, progress: Callable[[str], None] | None = None) -> str:
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        for source, total in (("civitai", cfg.civitai_items), ("huggingface", cfg.hf_items)):
            filters = write_filters(work / f"{source}.json", source, total)
            startup_filters = write_filters(work / f"{source}-1.json", source, total, 1)
            runs: list[Measured] = []
            startups: list[Measured] = []
            for rep in range(cfg.repeat):
                startups.append(_crawl(source, cfg, startup_filters, work, f"{source}-s{rep}"))
                runs.append(_crawl(source, cfg, filters, work, f"{source}-{rep}"))
                say(
                    f"  [{source} run {rep + 1}/{cfg.repeat}] {runs[-1].extra['models']} models "
                    f"in {runs[-1].wall:.2f} s, CPU {runs[-1].cpu:.2f} s"
                )
            if cfg.profile_dir is not None:
                cfg.profile_dir.mkdir(parents=True, exist_ok=True)
                report = cfg.profile_dir / f"{source}.txt"
                _crawl(source, cfg, filters, work, f"{source}-profile", profile=report)
                say(f"  profile of the {source} crawl: {report}")
            rows.append(_row(source, runs, startups))
    header = [
        "source",
        "models",
        "pages",
        "MB/page",
        "wall s",
        "models/s",
        "CPU s",
        "CPU µs/model",
        "marginal µs/model",
        "startup CPU s",
        "emulator CPU s",
    ]
    return "\n".join(
        [
            f"Throughput benchmark: zero latency, catalogue {cfg.catalogue:,} models per API, "
            f"medians of {cfg.repeat} run(s); crawler: {cfg.crawler_root}",
            table(header, rows),
            "  marginal = (CPU - CPU of the same crawl at max_items=1) / models: the cost that",
            "  grows with the work; gross includes interpreter and Scrapy startup.",
        ]
    )


def _row(source: str, runs: Sequence[Measured], startups: Sequence[Measured]) -> list[Any]:
    models = round(median([m.extra["models"] for m in runs]))
    pages = round(median([m.extra["pages"] for m in runs]))
    cpu = median([m.cpu for m in runs])
    startup_cpu = median([m.cpu for m in startups])
    wall = median([m.wall for m in runs])
    megabytes = median([m.extra["bytes"] for m in runs]) / 1e6
    return [
        source,
        models,
        pages,
        megabytes / pages if pages else float("nan"),
        wall,
        models / wall if wall else float("nan"),
        cpu,
        cpu / models * 1e6 if models else float("nan"),
        (cpu - startup_cpu) / models * 1e6 if models else float("nan"),
        startup_cpu,
        median([m.extra["emulator_cpu"] for m in runs]),
    ]
