"""The full-crawl benchmark: ``scrapy crawl all`` against the politeness lower bound at
realistic latency per API (CivitAI 1-3 s a response, the Hub 0.2-0.5 s), in two cases:

- ``repo``: the repository's filters.json at 1,000 models a filter (``--variants``);
- ``request-bound``: REQUEST_BOUND_CHAINS, CivitAI chains of similar length whose pages add
  up to about 9 times the longest, in a shuffled order: the request count binds, not a chain,
  and a scheduler that starts a long chain late makes the tail.

Optionally beside the plain client (``plain``: asyncio and aiohttp doing the same work, for
the CPU per model), the sequential baseline and ``huggingface_hub``.

The headline is the crawl's wall time over the politeness bound: per API the larger of its
requests as served over its allowed concurrency and its longest chain of pages, times the
API's mean configured latency; the APIs run side by side, so the crawl's bound is the larger.

Each repetition runs every command once, in turn, each against a fresh emulator process
(same catalogue, same latency draws, a fresh Hub rate-limit window), so the figures are
measured side by side on the same machine at the same moment; repetitions draw latencies from
different seeds (``--jitter-seeds``), and the tables print medians.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.harness import (
    ROOT,
    EmulatorSpec,
    Measured,
    RunningEmulator,
    client_argv,
    crawler_env,
    emulator,
    load_average,
    machine,
    median,
    read_run_report,
    run_measured,
    scrapy_argv,
    scrapy_stats,
    table,
)
from bench.lower_bound import ApiBound, allowed_concurrency, crawl_bound, longest_chains

SOURCES = ("civitai", "huggingface")
#: What the real APIs answer in (docs/PERFORMANCE.md): seconds, low to high.
REALISTIC_LATENCY = {"civitai": (1.0, 3.0), "huggingface": (0.2, 0.5)}
CASES = ("repo", "request-bound")
#: The pages of each chain of the request-bound case: 13 chains of similar length, 262 pages
#: (33 rounds of 8 against a 30-page chain; the emulator's hidden models add a page here and
#: there). Each is a CivitAI listing of its own (a model type and a sort of the emulator's
#: catalogue, each holding thousands of models) asked for pages * 100 models.
REQUEST_BOUND_CHAINS = (30, 28, 26, 24, 22, 20, 19, 18, 17, 16, 15, 14, 13)
_LISTING_TYPES = ("LORA", "Checkpoint", "TextualInversion")
_LISTING_SORTS = ("Highest Rated", "Most Downloaded", "Most Discussed", "Most Collected", "Newest")


def mean_latency(span: tuple[float, float]) -> float:
    return (span[0] + span[1]) / 2


def describe_latency(latency: dict[str, tuple[float, float]]) -> str:
    return ", ".join(
        f"{api} {low:g}-{high:g} s" if low != high else f"{api} {low:g} s"
        for api, (low, high) in latency.items()
    )


@dataclass(slots=True)
class CrawlBenchConfig:
    #: The repo case's filters and its max_items values.
    filters_file: Path = ROOT / "filters.json"
    variants: Sequence[int] = (1000,)
    cases: Sequence[str] = CASES
    repeat: int = 3
    #: Per API, the (low, high) seconds a response takes, drawn uniformly.
    latency: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(REALISTIC_LATENCY))
    #: Seeds of the emulator's latency draws, one per repetition in turn (the catalogue stays
    #: the same); empty: repetition i uses seed i. The draws go to requests in arrival order,
    #: so one seed gives the longest chain about the same draws every repetition, and its
    #: luck in every figure: seed 0 served the 8-page chain in 2.55-2.77 s over 5 runs at
    #: 100 per filter, against 2.40 s at the median latency (measured).
    jitter_seeds: Sequence[int] = ()
    civitai_models: int = 100_000
    hf_models: int = 100_000
    hf_rate_limit: str = "500/300"
    #: The checkout whose crawler is measured (another one gives before/after figures).
    crawler_root: Path = ROOT
    #: Another checkout whose `scrapy crawl all` runs too, in turn with this one's in every
    #: repetition (same emulator settings, same seeds): before/after side by side in one run.
    before_root: Path | None = None
    #: The filters the other checkout crawls in the repo case (its own filters.json when the
    #: format changed); None: the same as this one's.
    before_filters_file: Path | None = None
    #: The sequential baseline and huggingface_hub take many minutes at realistic latency;
    #: the plain client as long as the crawl.
    commands: Sequence[str] = ("crawl",)
    #: Extra ``-s NAME=value`` settings for the crawls (to try a knob without editing files).
    crawl_settings: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None


LABELS = {
    "crawl": "scrapy crawl all",
    "crawl-before": "scrapy crawl all (before)",
    "crawl-hf": "scrapy crawl huggingface",
    "plain": "plain client (asyncio + aiohttp)",
    "baseline": "sequential baseline",
    "hub": "huggingface_hub list_models",
}


def request_bound_filters(path: Path) -> Path:
    """The request-bound case's filters.json (REQUEST_BOUND_CHAINS), written to ``path``.

    Every filter browses at every level, the ``nsfw=true`` listing whole: nothing is kept
    client-side, so a chain's length follows from its max_items (the scheduler knows it; the
    repo case has the chains whose length it must estimate). Listed shuffled (a fixed seed),
    so that file order says nothing of length.
    """
    listings = [(kind, sort) for kind in _LISTING_TYPES for sort in _LISTING_SORTS]
    entries = [
        {
            "name": f"{kind}/{sort.replace(' ', '-')}/{pages}p",
            "label": f"{kind} by {sort}, {pages} pages",
            "params": {"types": kind, "sort": sort, "period": "AllTime", "nsfw": "true"},
            "browsing_levels": ["PG", "PG13", "R", "X", "XXX"],
            "max_items": pages * 100,
        }
        for pages, (kind, sort) in zip(
            REQUEST_BOUND_CHAINS, listings[: len(REQUEST_BOUND_CHAINS)], strict=True
        )
    ]
    random.Random(23).shuffle(entries)
    path.write_text(json.dumps({"civitai": entries, "huggingface": []}, indent=1))
    return path


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    filters_file: Path
    #: MANIFEST_MAX_ITEMS values, one measurement each (the request-bound filters set their
    #: own max_items).
    variants: Sequence[int]
    #: What the other checkout (--before-root) crawls.
    before_filters_file: Path

    def label(self, max_items: int) -> str:
        return f"{self.name}, {max_items:,}/filter" if self.name == "repo" else self.name


def bench_cases(cfg: CrawlBenchConfig, work: Path) -> list[Case]:
    cases = []
    for name in cfg.cases:
        if name == "repo":
            before = cfg.before_filters_file or cfg.filters_file
            cases.append(Case(name, cfg.filters_file, cfg.variants, before))
        elif name == "request-bound":
            filters = request_bound_filters(work / "request-bound-filters.json")
            cases.append(Case(name, filters, (0,), filters))
        else:
            raise ValueError(f"unknown case {name!r} (known: {', '.join(CASES)})")
    return cases


def crawler_settings(root: Path) -> dict[str, Any]:
    """The measured checkout's project settings (its politeness numbers set the bound)."""
    code = (
        "import json, manifest_crawler.settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in dir(s) if k.isupper()}, default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=crawler_env(root),
        capture_output=True,
        check=True,
    ).stdout
    return orjson.loads(out)


def setting_values(overrides: dict[str, str]) -> dict[str, Any]:
    """``-s NAME=value`` strings as Scrapy would read them (numbers, booleans, JSON)."""
    values: dict[str, Any] = {}
    for name, raw in overrides.items():
        lowered = raw.strip().lower()
        if lowered in ("true", "false"):
            values[name] = lowered == "true"
            continue
        try:
            values[name] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            values[name] = raw
    return values


def run_command(
    name: str,
    cfg: CrawlBenchConfig,
    emu: RunningEmulator,
    max_items: int,
    work: Path,
    case: Case,
) -> Measured:
    out = work / name
    log = work / f"{name}.log"
    env: dict[str, str] = {}
    cwd = ROOT
    filters_file = case.filters_file
    if name in ("crawl", "crawl-hf", "crawl-before"):
        argv = scrapy_argv(
            "huggingface" if name == "crawl-hf" else "all",
            civitai_url=emu.civitai_url,
            hf_url=emu.hf_url,
            manifest_dir=out,
            filters_file=case.before_filters_file if name == "crawl-before" else filters_file,
            max_items=max_items,
            extra=cfg.crawl_settings,
        )
        root = cfg.before_root if name == "crawl-before" else cfg.crawler_root
        assert root is not None
        env = crawler_env(root)
        cwd = root
    elif name in ("baseline", "plain"):
        argv = client_argv(
            f"bench.{name}", emu, filters_file=filters_file, max_items=max_items, out=out
        )
    else:
        argv = [
            sys.executable,
            "-m",
            "bench.hub",
            f"--endpoint={emu.base_url}",
            f"--filters={filters_file}",
            f"--max-items={max_items}",
        ]
        env = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}
    measured = run_measured(argv, log_path=log, env=env, cwd=cwd)
    if measured.exit_code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{LABELS[name]} exited {measured.exit_code}; log tail:\n{tail}")
    if name in ("baseline", "plain", "hub"):
        # Each prints a JSON summary as its last line.
        last = log.read_bytes().strip().splitlines()[-1]
        measured.extra["models"] = orjson.loads(last)["models"]
    if name.startswith("crawl"):
        stats = scrapy_stats(log)
        measured.extra["engine"] = stats.get("elapsed_time_seconds", float("nan"))
        report = read_run_report(out)
        measured.extra["chains"] = longest_chains(report)
        measured.extra["models"] = sum(row.get("models", 0) for row in report.get("filters", ()))
    return measured


def command_names(cfg: CrawlBenchConfig) -> list[str]:
    names = list(cfg.commands)
    if cfg.before_root is not None and "crawl-before" not in names:
        names.insert(0, "crawl-before")
    return names


def jitter_seeds(cfg: CrawlBenchConfig) -> Sequence[int]:
    return cfg.jitter_seeds or range(cfg.repeat)


def measure_variant(
    cfg: CrawlBenchConfig,
    case: Case,
    max_items: int,
    work: Path,
    progress: Callable[[str], None],
) -> dict[str, list[Measured]]:
    runs: dict[str, list[Measured]] = {name: [] for name in command_names(cfg)}
    seeds = jitter_seeds(cfg)
    for rep in range(cfg.repeat):
        spec = EmulatorSpec(
            civitai_models=cfg.civitai_models,
            hf_models=cfg.hf_models,
            api_latency=dict(cfg.latency),
            jitter_seed=seeds[rep % len(seeds)],
            hf_rate_limit=cfg.hf_rate_limit,
        )
        for name in command_names(cfg):
            run_dir = work / f"{case.name}-{max_items}-{rep}"
            run_dir.mkdir(parents=True, exist_ok=True)
            with emulator(spec) as emu:
                measured = run_command(name, cfg, emu, max_items, run_dir, case)
            measured.requests = dict(emu.served.get("requests", {}))
            measured.extra["median_delay"] = emu.served.get("median_delay", float("nan"))
            measured.extra["median_service"] = emu.served.get("median_service", {})
            measured.extra["emulator_cpu"] = emu.served.get("cpu_seconds", float("nan"))
            measured.extra["chain_served"] = emu.served.get("longest_chain_served", {})
            measured.extra["spans"] = emu.served.get("spans", {})
            runs[name].append(measured)
            progress(
                f"  [{case.label(max_items)}, run {rep + 1}/{cfg.repeat}] {LABELS[name]}: "
                f"{measured.wall:.2f} s, {measured.total_requests} requests, "
                f"CPU {measured.cpu:.2f} s (load {load_average()})"
            )
    return runs


def bounds_for(
    runs: Sequence[Measured],
    settings: dict[str, Any],
    latency: dict[str, tuple[float, float]] | None,
    sources: Sequence[str],
) -> dict[str, ApiBound]:
    """The lower bound per API from the crawl's own page requests and longest chains, at the
    API's mean configured latency, or (None) at the median the emulator measured for it."""
    bounds: dict[str, ApiBound] = {}
    for api in sources:
        requests = round(median([run.requests.get(api, 0) for run in runs]))
        chain = round(median([run.extra["chains"].get(api, 0) for run in runs]))
        if latency is not None:
            api_latency = mean_latency(latency[api])
        else:
            api_latency = median([run.extra["median_service"].get(api, 0.0) for run in runs])
        if requests:
            concurrency = allowed_concurrency(settings, api)
            bounds[api] = ApiBound(api, requests, concurrency, chain, api_latency)
    return bounds


def cpu_per_model(runs: Sequence[Measured]) -> float:
    """Median CPU µs per model kept (CPU of the whole process: startup, crawl, writing)."""
    values = [m.cpu / m.extra["models"] * 1e6 for m in runs if m.extra.get("models")]
    return median(values)


def _row(name: str, measured: Sequence[Measured]) -> list[Any]:
    engine = [m.extra["engine"] for m in measured if "engine" in m.extra]
    models = [m.extra["models"] for m in measured if "models" in m.extra]
    return [
        LABELS[name],
        median([m.wall for m in measured]),
        median(engine) if engine else float("nan"),
        round(median([m.total_requests for m in measured])),
        median([m.cpu for m in measured]),
        cpu_per_model(measured),
        median([m.max_rss_mib for m in measured]),
        round(median(models)) if models else "-",
    ]


def report_variant(
    cfg: CrawlBenchConfig,
    case: Case,
    max_items: int,
    runs: dict[str, list[Measured]],
    settings: dict[str, Any],
) -> str:
    rows = [_row(name, runs[name]) for name in command_names(cfg)]
    explain: list[str] = []
    bounds: dict[tuple[str, str], float] = {}
    for name, label, sources in (
        ("crawl", "all filters", SOURCES),
        ("crawl-before", "all filters, before", SOURCES),
        ("crawl-hf", "HF filters", ("huggingface",)),
    ):
        if name not in runs:
            continue
        for kind, latency in (("configured", cfg.latency), ("measured", None)):
            per_api = bounds_for(runs[name], settings, latency, sources)
            bounds[(name, kind)] = crawl_bound(per_api)
            nan = float("nan")
            rows.append([f"lower bound ({label}, {kind})", bounds[(name, kind)], nan, "", ""])
            rows[-1] += ["", "", ""]
            if name == "crawl":
                explain += [f"    {kind}: {bound.explain()}" for bound in per_api.values()]
    header = [
        "command",
        "wall s",
        "engine s",
        "requests",
        "CPU s",
        "CPU µs/model",
        "peak RSS MiB",
        "models",
    ]
    text = [f"case {case.label(max_items)} (filters: {case.filters_file})", table(header, rows)]
    text += [
        "  lower bound = per API max(ceil(requests / allowed concurrency), longest chain)",
        "  x latency (configured: the mean of the API's range; measured: the emulator's median",
        "  time from a request's arrival to its last byte written); APIs run side by side:",
        *explain,
    ]
    spans = _api_spans(runs.get("crawl", ()), settings, cfg.latency)
    if spans:
        text.append(spans)
    served = _chain_served(runs.get("crawl", ()))
    if served:
        text.append(served)
    ratios = _ratios(runs, bounds)
    if ratios:
        text.append("  ratios (medians of wall times; engine = the crawl without process startup):")
        text += [f"    {line}" for line in ratios]
    return "\n".join(text)


def _api_spans(
    runs: Sequence[Measured], settings: dict[str, Any], latency: dict[str, tuple[float, float]]
) -> str:
    """Per API, the time from its first request's arrival to its last answer's end, over the
    API's own bound: how each API fared, without the process's startup."""
    bounds = bounds_for(runs, settings, latency, SOURCES)
    parts = []
    for api, bound in bounds.items():
        span = median([m.extra.get("spans", {}).get(api, float("nan")) for m in runs])
        if bound.seconds and span == span:
            parts.append(
                f"{api} {span:.1f} s / {bound.seconds:.1f} s ({bound.binds}) = "
                f"{span / bound.seconds:.2f}"
            )
    if not parts:
        return ""
    return "  per API, first request to last answer / its bound (medians): " + "; ".join(parts)


def _chain_served(runs: Sequence[Measured]) -> str:
    """How long the emulator took, summed, to serve the pages of the crawl's longest chain,
    and the crawl's wall time over it, per run: the bound with the latencies each run drew."""
    parts = []
    for run in runs:
        chain = run.extra.get("chain_served") or {}
        if chain.get("seconds"):
            parts.append(
                f"{chain['pages']} pages {chain['seconds']:.2f} s"
                f" (crawl / chain {run.wall / chain['seconds']:.2f})"
            )
    if not parts:
        return ""
    return "  longest chain as served (sum of its pages' service times), per run: " + "; ".join(
        parts
    )


def _ratios(runs: dict[str, list[Measured]], bounds: dict[tuple[str, str], float]) -> list[str]:
    def wall(name: str) -> float:
        return median([m.wall for m in runs[name]])

    def engine(name: str) -> float:
        return median([m.extra["engine"] for m in runs[name]])

    lines = []
    for name, label in (("crawl", "crawl"), ("crawl-before", "before"), ("crawl-hf", "crawl HF")):
        for kind in ("configured", "measured"):
            bound = bounds.get((name, kind))
            if bound:
                lines.append(
                    f"{label} / lower bound ({kind}):".ljust(40)
                    + f"{wall(name) / bound:6.2f}   (engine {engine(name) / bound:.2f})"
                )
    if "crawl" in runs and "crawl-before" in runs:
        lines.append("crawl / before:".ljust(40) + f"{wall('crawl') / wall('crawl-before'):6.2f}")
    for name, label in (("crawl", "crawl"), ("crawl-before", "before")):
        if name in runs and "plain" in runs:
            ratio = cpu_per_model(runs[name]) / cpu_per_model(runs["plain"])
            lines.append(f"{label} / plain client, CPU per model:".ljust(40) + f"{ratio:6.2f}")
    if "crawl" in runs and "baseline" in runs:
        lines.append("baseline / crawl:".ljust(40) + f"{wall('baseline') / wall('crawl'):6.2f}")
    if "crawl-hf" in runs and "hub" in runs:
        lines.append(
            "huggingface_hub / crawl HF:".ljust(40)
            + f"{wall('hub') / wall('crawl-hf'):6.2f}   (same HF filters and limits)"
        )
    return lines


def run(cfg: CrawlBenchConfig, progress: Callable[[str], None] | None = None) -> str:
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    # The measured crawls run with the -s overrides: so does the bound.
    settings = {**crawler_settings(cfg.crawler_root), **setting_values(cfg.crawl_settings)}
    concurrency = {api: allowed_concurrency(settings, api) for api in SOURCES}
    header = [
        f"Crawl benchmark: latency per response {describe_latency(cfg.latency)} (uniform); "
        f"catalogue {cfg.civitai_models:,} CivitAI + {cfg.hf_models:,} HF models; "
        f"Hub budget {cfg.hf_rate_limit or 'none'}; medians of {cfg.repeat} run(s); latency "
        f"draws seeded {', '.join(map(str, jitter_seeds(cfg)))}, one seed per run in turn",
        f"crawler: {cfg.crawler_root}"
        + (f"; before: {cfg.before_root}" if cfg.before_root else "")
        + (f" with {cfg.before_filters_file} in the repo case" if cfg.before_filters_file else "")
        + f"; {machine()}; load average at the start {load_average()}",
        "allowed concurrency per API (politeness settings): "
        + ", ".join(f"{api} {n}" for api, n in concurrency.items())
        + f" (CONCURRENT_REQUESTS {settings.get('CONCURRENT_REQUESTS')}, AutoThrottle "
        + (
            f"on, target {settings.get('AUTOTHROTTLE_TARGET_CONCURRENCY')}, start delay "
            f"{settings.get('AUTOTHROTTLE_START_DELAY')} s)"
            if settings.get("AUTOTHROTTLE_ENABLED")
            else "off)"
        ),
    ]
    sections = ["\n".join(header)]
    headlines = []
    summary: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-crawl-", dir=cfg.workdir) as tmp:
        for case in bench_cases(cfg, Path(tmp)):
            for max_items in case.variants:
                runs = measure_variant(cfg, case, max_items, Path(tmp), say)
                sections.append(report_variant(cfg, case, max_items, runs, settings))
                for name in ("crawl-before", "crawl"):
                    if name in runs:
                        headlines.append(headline(cfg, case, max_items, runs[name], settings, name))
                        summary.append(summary_row(cfg, case, max_items, runs, settings, name))
    sections.append(f"load average at the end {load_average()}")
    summary_table = table(
        [
            "case",
            "command",
            "wall s",
            "bound s",
            "bound set by",
            "wall / bound",
            "CPU µs/model",
            "plain µs/model",
            "CPU / plain",
        ],
        summary,
    )
    return "\n\n".join([*headlines, summary_table, *sections])


def summary_row(
    cfg: CrawlBenchConfig,
    case: Case,
    max_items: int,
    runs: dict[str, list[Measured]],
    settings: dict[str, Any],
    name: str,
) -> list[Any]:
    """One row of the table printed first: a case's crawl against its bound, and its CPU per
    model beside the plain client's."""
    per_api = bounds_for(runs[name], settings, cfg.latency, SOURCES)
    bound = crawl_bound(per_api)
    binding = max(per_api.values(), key=lambda api_bound: api_bound.seconds, default=None)
    wall = median([run.wall for run in runs[name]])
    crawl_cpu = cpu_per_model(runs[name])
    plain_cpu = cpu_per_model(runs["plain"]) if "plain" in runs else float("nan")
    return [
        case.label(max_items),
        LABELS[name],
        wall,
        bound,
        f"{binding.api} {binding.binds}" if binding is not None and bound else "-",
        wall / bound if bound else float("nan"),
        crawl_cpu,
        plain_cpu,
        crawl_cpu / plain_cpu if plain_cpu == plain_cpu else float("nan"),
    ]


def headline(
    cfg: CrawlBenchConfig,
    case: Case,
    max_items: int,
    runs: Sequence[Measured],
    settings: dict[str, Any],
    name: str = "crawl",
) -> str:
    """One line: the crawl's median wall time over its politeness bound at these latencies."""
    bound = crawl_bound(bounds_for(runs, settings, cfg.latency, SOURCES))
    wall = median([run.wall for run in runs])
    ratio = f"{wall / bound:.2f}x" if bound else "n/a (no latency)"
    return (
        f"HEADLINE {case.label(max_items)} ({describe_latency(cfg.latency)}): {LABELS[name]} "
        f"{wall:.1f} s / politeness bound {bound:.1f} s = {ratio}"
    )
