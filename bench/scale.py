"""Scale: how time and memory grow with the number of unique models (100k, 1M).

The emulator serves a Hub catalogue of N models; a few Hugging Face filters (different sorts)
each ask for every model, so the crawl handles ``filters x N`` model entries of which N are
unique, writes one manifest of N models per filter and an all-models.json of N. Zero latency:
this measures the crawler's own cost. Peak RSS is compared with the same crawl fetching one
model per filter, which gives the memory per unique model.

Only the Hub is used: the emulator renders CivitAI's 5-50 KB items too slowly for a
million, and the Hub is where whole-catalogue crawls happen (about 2M public models).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ijson

from bench.harness import (
    HF_SORTS,
    ROOT,
    EmulatorSpec,
    Measured,
    client_argv,
    crawler_env,
    emulator,
    load_average,
    machine,
    median,
    run_measured,
    scrapy_argv,
    scrapy_stats,
    table,
)


@dataclass(slots=True)
class ScaleConfig:
    models: Sequence[int] = (100_000, 1_000_000)
    repeat: int = 1
    filters_per_run: int = 3
    crawler_root: Path = ROOT
    crawl_settings: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None


def write_filters(path: Path, count: int, max_items: int) -> Path:
    entries = [
        {"name": f"all/{sort}", "label": sort, "params": {"sort": sort}, "max_items": max_items}
        for sort in HF_SORTS[:count]
    ]
    path.write_text(json.dumps({"civitai": [], "huggingface": entries}))
    return path


def _crawl(
    cfg: ScaleConfig,
    models: int,
    filters: Path,
    work: Path,
    tag: str,
    out: Path | None = None,
    *,
    plain: bool = False,
) -> Measured:
    """``scrapy crawl huggingface`` over ``filters``, or (``plain``) the plain client."""
    spec = EmulatorSpec(civitai_models=0, hf_models=models)
    out = out or work / f"out-{tag}"
    log = work / f"{tag}.log"
    with emulator(spec) as emu:
        if plain:
            argv = client_argv(
                "bench.plain",
                emu,
                filters_file=filters,
                max_items=0,
                out=out,
                sources="huggingface",
            )
            measured = run_measured(argv, log_path=log)
        else:
            argv = scrapy_argv(
                "huggingface",
                civitai_url=emu.civitai_url,
                hf_url=emu.hf_url,
                manifest_dir=out,
                filters_file=filters,
                max_items=0,
                extra=cfg.crawl_settings,
            )
            measured = run_measured(
                argv, log_path=log, env=crawler_env(cfg.crawler_root), cwd=cfg.crawler_root
            )
    if measured.exit_code != 0:
        raise RuntimeError(f"scale {'plain client' if plain else 'crawl'} exited; see {log}")
    measured.requests = dict(emu.served.get("requests", {}))
    if not plain:
        measured.extra["engine"] = scrapy_stats(log).get("elapsed_time_seconds", float("nan"))
    measured.extra["unique"] = total_models(out / "all-models.json")
    return measured


def total_models(path: Path) -> int:
    """all-models.json's ``totalModels``, read without loading the file: Linux hands a forked
    child its parent's peak RSS (ru_maxrss survives fork and exec), so a harness that once held
    a million parsed models would report that as the next crawl's peak."""
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return int(next(ijson.items(file, "totalModels"), 0))


def run(cfg: ScaleConfig, progress: Callable[[str], None] | None = None) -> str:
    """Per size: a first build into an empty folder, then a rebuild over its output (what a
    site build does every time: the previous manifests are read for the shrink guard and
    the change log), each beside the same crawl at one model per filter."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    rows: list[list[Any]] = []
    plain_rows: list[list[Any]] = []
    per_model: list[tuple[int, float]] = []
    started_load = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=cfg.workdir) as tmp:
        work = Path(tmp)
        for models in cfg.models:
            filters = write_filters(work / f"f-{models}.json", cfg.filters_per_run, models)
            small = write_filters(work / f"f-{models}-1.json", cfg.filters_per_run, 1)
            firsts: list[Measured] = []
            rebuilds: list[Measured] = []
            startups: list[Measured] = []
            plains: list[Measured] = []
            for rep in range(cfg.repeat):
                out = work / f"out-{models}-{rep}"
                startups.append(_crawl(cfg, models, small, work, f"{models}-s{rep}"))
                firsts.append(_crawl(cfg, models, filters, work, f"{models}-{rep}", out))
                # Deployed: the site consumed changes.json (docs/SITE.md), as between builds.
                (out / "changes.json").unlink(missing_ok=True)
                rebuilds.append(_crawl(cfg, models, filters, work, f"{models}-{rep}r", out))
                plains.append(_crawl(cfg, models, filters, work, f"{models}-{rep}p", plain=True))
                say(
                    f"  [{models:,} models, run {rep + 1}/{cfg.repeat}] first build "
                    f"{firsts[-1].wall:.1f} s, peak RSS {firsts[-1].max_rss_mib:.0f} MiB; "
                    f"rebuild {rebuilds[-1].wall:.1f} s, {rebuilds[-1].max_rss_mib:.0f} MiB; "
                    f"plain client {plains[-1].wall:.1f} s (load {load_average()})"
                )
            row = _row(cfg, models, "first build", firsts, startups)
            per_model.append((models, row[4]))
            rows += [row, _row(cfg, models, "rebuild", rebuilds, startups)]
            plain_rows.append(_plain_row(cfg, models, firsts, rebuilds, plains))
    header = [
        "unique models",
        "run",
        "entries",
        "requests",
        "wall s",
        "engine s",
        "CPU s",
        "µs/entry",
        "peak RSS MiB",
        "startup RSS MiB",
        "bytes/unique model",
    ]
    lines = [
        f"Scale benchmark: Hugging Face only, {cfg.filters_per_run} filters each over the whole "
        f"catalogue, zero latency, medians of {cfg.repeat} run(s); crawler: {cfg.crawler_root}; "
        f"{machine()}; load average {started_load} at the start, {load_average()} at the end",
        table(header, rows),
        "  bytes/unique model = (peak RSS - RSS of the same crawl at max_items=1) / unique models",
        "",
        "CPU per entry beside the plain client (the same filters, run in turn with the crawls):",
        table(
            [
                "unique models",
                "plain wall s",
                "plain CPU s",
                "plain µs/entry",
                "first build / plain",
                "rebuild / plain",
                "plain peak RSS MiB",
            ],
            plain_rows,
        ),
    ]
    if len(per_model) > 1:
        (m0, t0), (m1, t1) = per_model[0], per_model[-1]
        lines.append(
            f"  growth (first builds): {m1 / m0:.0f}x the models took {t1 / t0:.1f}x the time "
            f"(linear would be {m1 / m0:.0f}x)"
        )
    return "\n".join(lines)


def _plain_row(
    cfg: ScaleConfig,
    models: int,
    firsts: Sequence[Measured],
    rebuilds: Sequence[Measured],
    plains: Sequence[Measured],
) -> list[Any]:
    entries = cfg.filters_per_run * models
    plain_cpu = median([m.cpu for m in plains])
    return [
        round(median([m.extra["unique"] for m in plains])),
        median([m.wall for m in plains]),
        plain_cpu,
        plain_cpu / entries * 1e6,
        median([m.cpu for m in firsts]) / plain_cpu,
        median([m.cpu for m in rebuilds]) / plain_cpu,
        median([m.max_rss_mib for m in plains]),
    ]


def _row(
    cfg: ScaleConfig,
    models: int,
    label: str,
    runs: Sequence[Measured],
    startups: Sequence[Measured],
) -> list[Any]:
    unique = round(median([m.extra["unique"] for m in runs]))
    entries = cfg.filters_per_run * models
    wall = median([m.wall for m in runs])
    peak = median([m.max_rss_mib for m in runs])
    startup_peak = median([m.max_rss_mib for m in startups])
    return [
        unique,
        label,
        entries,
        round(median([m.total_requests for m in runs])),
        wall,
        median([m.extra["engine"] for m in runs]),
        median([m.cpu for m in runs]),
        median([m.cpu for m in runs]) / entries * 1e6,
        peak,
        startup_peak,
        (peak - startup_peak) * 2**20 / unique if unique else float("nan"),
    ]
