"""``python -m bench <crawl|cpu|throughput|scale>``: the performance benchmarks.

- ``crawl``: ``scrapy crawl all`` against the politeness lower bound at realistic latency
  (CivitAI 1-3 s, the Hub 0.2-0.5 s by default; ``--latency 0.2-0.4`` for both at once), in
  two cases (``--cases``: the repository's filters, and a catalogue where the request count
  binds), and with ``--commands`` beside the plain client, the sequential baseline and
  ``huggingface_hub``.
- ``cpu``: the crawl and the plain client (asyncio + aiohttp, the same pages, parsers, rules
  and manifests) in turn at zero latency, 1,000 models a filter: CPU µs per model, side by side.
- ``throughput``: zero latency; models per second and CPU µs per model, per source.
- ``scale``: 100k and 1M unique models; time, peak RSS and bytes per unique model, and the
  plain client's CPU per model beside the crawl's.

Every measured command is a real child process against an emulator in another process.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import crawl, scale, throughput
from bench.emulator_proc import parse_span
from bench.harness import ROOT, compile_crawler


def _ints(value: str) -> list[int]:
    return [int(part.replace("_", "")) for part in value.split(",") if part.strip()]


def _settings(values: Sequence[str]) -> dict[str, str]:
    pairs = dict(value.split("=", 1) for value in values)
    return {name.strip(): setting.strip() for name, setting in pairs.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--repeat", type=int, default=None, help="runs per command (medians; 3, scale 1)"
    )
    common.add_argument(
        "--crawler-root",
        type=Path,
        default=ROOT,
        help="checkout whose crawler is measured (for before/after figures)",
    )
    common.add_argument(
        "-s",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra Scrapy setting for the measured crawls",
    )
    common.add_argument("--workdir", type=Path, default=None, help="parent of the temp folders")
    common.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="leave the crawler's bytecode as found (by default it is compiled first)",
    )

    c = sub.add_parser("crawl", parents=[common], help="full crawl vs baseline and lower bound")
    c.add_argument(
        "--cases",
        default=",".join(crawl.CASES),
        help="subset of repo (filters.json, --variants) and request-bound (default: both)",
    )
    c.add_argument(
        "--civitai-latency",
        type=parse_span,
        default=crawl.REALISTIC_LATENCY["civitai"],
        metavar="LOW-HIGH",
        help="seconds per CivitAI response, uniform (default 1-3)",
    )
    c.add_argument(
        "--hf-latency",
        type=parse_span,
        default=crawl.REALISTIC_LATENCY["huggingface"],
        metavar="LOW-HIGH",
        help="seconds per Hub response, uniform (default 0.2-0.5)",
    )
    c.add_argument(
        "--latency",
        type=parse_span,
        default=None,
        metavar="LOW-HIGH",
        help="the same latency for both APIs (e.g. 0.2-0.4), instead of the two above",
    )
    c.add_argument(
        "--jitter-seeds",
        type=_ints,
        default=[],
        help="seeds of the latency draws, one per run in turn (default: run i, seed i)",
    )
    c.add_argument(
        "--before-root",
        type=Path,
        default=None,
        help="another checkout, crawled in turn with --crawler-root's in every run",
    )
    c.add_argument(
        "--before-filters",
        type=Path,
        default=None,
        help="the filters file of --before-root's crawl (default: --filters)",
    )
    c.add_argument("--variants", type=_ints, default=[1000], help="max_items values")
    c.add_argument("--filters", type=Path, default=ROOT / "filters.json")
    c.add_argument("--civitai-models", type=int, default=100_000)
    c.add_argument("--hf-models", type=int, default=100_000)
    c.add_argument("--hf-rate-limit", default="500/300", help="Hub budget N/W ('' = none)")
    c.add_argument(
        "--commands",
        default="crawl",
        help="subset of crawl,plain,crawl-hf,baseline,hub",
    )

    cpu = sub.add_parser(
        "cpu", parents=[common], help="CPU per model: the crawl beside the plain client"
    )
    cpu.add_argument("--variants", type=_ints, default=[1000], help="max_items values")
    cpu.add_argument("--filters", type=Path, default=ROOT / "filters.json")
    cpu.add_argument(
        "--before-root",
        type=Path,
        default=None,
        help="another checkout, crawled in turn with --crawler-root's in every run",
    )

    t = sub.add_parser("throughput", parents=[common], help="zero-latency CPU per model")
    t.add_argument("--civitai-items", type=int, default=10_000, help="CivitAI models crawled")
    t.add_argument("--hf-items", type=int, default=100_000, help="HF models crawled")
    t.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run each crawl once under pyinstrument, reports in DIR",
    )

    s = sub.add_parser("scale", parents=[common], help="100k and 1M unique models")
    s.add_argument("--models", type=_ints, default=[100_000, 1_000_000])
    s.add_argument("--filters-per-run", type=int, default=3, help="HF filters, each all models")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.repeat is None:
        # A million-model run takes minutes: one repetition unless asked for more. (Not
        # set_defaults on the scale parser: the --repeat action is shared by every
        # subcommand, so that would change theirs too.)
        args.repeat = 1 if args.bench == "scale" else 3
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    extra = _settings(args.settings)
    if args.compile:
        print(compile_crawler(args.crawler_root), flush=True)
        if getattr(args, "before_root", None) is not None:
            print(compile_crawler(args.before_root), flush=True)
    if args.bench == "crawl":
        cfg = crawl.CrawlBenchConfig(
            filters_file=args.filters,
            variants=args.variants,
            cases=[name for name in args.cases.split(",") if name],
            repeat=args.repeat,
            latency={
                "civitai": args.latency or args.civitai_latency,
                "huggingface": args.latency or args.hf_latency,
            },
            jitter_seeds=args.jitter_seeds,
            civitai_models=args.civitai_models,
            hf_models=args.hf_models,
            hf_rate_limit=args.hf_rate_limit,
            crawler_root=args.crawler_root,
            before_root=args.before_root,
            before_filters_file=args.before_filters,
            commands=[name for name in args.commands.split(",") if name],
            crawl_settings=extra,
            workdir=args.workdir,
        )
        print(crawl.run(cfg), flush=True)
    elif args.bench == "cpu":
        ccfg = crawl.CrawlBenchConfig(
            filters_file=args.filters,
            variants=args.variants,
            cases=["repo"],
            repeat=args.repeat,
            latency={"civitai": (0.0, 0.0), "huggingface": (0.0, 0.0)},
            crawler_root=args.crawler_root,
            before_root=args.before_root,
            commands=["crawl", "plain"],
            crawl_settings=extra,
            workdir=args.workdir,
        )
        print(crawl.run(ccfg), flush=True)
    elif args.bench == "throughput":
        tcfg = throughput.ThroughputConfig(
            repeat=args.repeat,
            civitai_items=args.civitai_items,
            hf_items=args.hf_items,
            crawler_root=args.crawler_root,
            crawl_settings=extra,
            profile_dir=args.profile,
            workdir=args.workdir,
        )
        print(throughput.run(tcfg), flush=True)
    else:
        scfg = scale.ScaleConfig(
            models=args.models,
            repeat=args.repeat,
            filters_per_run=args.filters_per_run,
            crawler_root=args.crawler_root,
            crawl_settings=extra,
            workdir=args.workdir,
        )
        print(scale.run(scfg), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
