"""Serve the emulator standalone: ``python -m manifest_crawler.emulator --port 8000``.

Runs on the asyncio reactor, as Scrapy does, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from .faults import APIS, TRANSIENT_KINDS, FaultConfig
from .server import Emulator, EmulatorConfig
from .web import RequestRecord


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int_list(value: str) -> list[int]:
    try:
        return [int(part) for part in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


def _rate_limit(value: str) -> tuple[int, float]:
    calls, sep, window = value.partition("/")
    try:
        return int(calls), float(window) if sep else 300.0
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N/W (calls per seconds), got {value!r}"
        ) from None


def _matcher(value: str) -> tuple[str, str]:
    key, sep, wanted = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {value!r}")
    return key, wanted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m manifest_crawler.emulator",
        description="Serve a local emulator of the CivitAI (/api/v1/models) and Hugging Face "
        "(/api/models) model-listing APIs, with optional faults.",
    )
    serve = parser.add_argument_group("serving")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind")
    serve.add_argument("--verbose", action="store_true", help="print one line per request")

    cat = parser.add_argument_group("catalogue")
    cat.add_argument("--seed", type=int, default=0, help="catalogue seed")
    cat.add_argument("--civitai-models", type=int, default=3000, metavar="N")
    cat.add_argument("--hf-models", type=int, default=3000, metavar="N")
    cat.add_argument(
        "--civitai-levels",
        type=_int_list,
        default=[],
        metavar="L,L",
        help="every CivitAI model's nsfwLevel, cycled by position (e.g. 31,15,7,1: one model "
        "in four rated PG)",
    )
    cat.add_argument(
        "--revision",
        type=int,
        default=0,
        metavar="N",
        help="catalogue revision: N>0 removes, adds and re-ranks some models",
    )

    faults = parser.add_argument_group("faults (all off by default)")
    faults.add_argument("--fault-seed", type=int, default=0, metavar="N")
    faults.add_argument("--latency", type=float, default=0.0, metavar="S", help="mean delay")
    faults.add_argument("--jitter", type=float, default=0.0, metavar="S", help="± uniform jitter")
    faults.add_argument(
        "--transient-failures",
        type=int,
        default=0,
        metavar="K",
        help="every distinct URL fails its first K attempts",
    )
    faults.add_argument(
        "--fault-kinds",
        type=_csv,
        default=TRANSIENT_KINDS,
        metavar="KINDS",
        help=f"comma-separated transient kinds among {','.join(TRANSIENT_KINDS)}",
    )
    faults.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="probability (0..1) that any further attempt fails",
    )
    faults.add_argument("--retry-after", type=int, default=1, metavar="S")
    faults.add_argument(
        "--endless-body",
        type=_csv,
        default=(),
        metavar="APIS",
        help="these APIs (comma-separated: civitai,huggingface) answer a JSON body that never "
        "ends, with no Content-Length",
    )
    faults.add_argument(
        "--endless-cursor",
        type=_csv,
        default=(),
        metavar="APIS",
        help="these APIs answer every request with the first page of its listing and a cursor "
        "never sent before",
    )
    faults.add_argument(
        "--hf-ratelimit-header",
        default="",
        metavar="VALUE",
        help="every Hub answer carries this RateLimit header, e.g. '\"api\";r=0;t=999999999'",
    )
    faults.add_argument(
        "--hf-ratelimit-policy-header",
        default="",
        metavar="VALUE",
        help="every Hub answer carries this RateLimit-Policy header, e.g. "
        '\'"fixed window";"api";q=0;w=0\'',
    )
    faults.add_argument(
        "--fail-matching",
        type=_matcher,
        nargs="+",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="always fail requests carrying all these parameters (repeat for more matchers)",
    )
    faults.add_argument("--fail-status", type=int, default=500, metavar="STATUS")
    faults.add_argument(
        "--empty-pages",
        type=_int_list,
        default=[],
        metavar="N,M",
        help="CivitAI pages (>=2) that come back empty but carry a cursor",
    )
    faults.add_argument(
        "--cursor-loop",
        type=int,
        default=0,
        metavar="N",
        help="CivitAI page N (>=2) returns the cursor it was asked with",
    )
    faults.add_argument(
        "--skip-at-boundary",
        action="store_true",
        help="CivitAI loses one item at every page boundary (issue #1111)",
    )
    faults.add_argument(
        "--control-chars",
        action="store_true",
        help="raw control characters inside CivitAI descriptions",
    )
    faults.add_argument(
        "--hf-rate-limit",
        type=_rate_limit,
        default=None,
        metavar="N/W",
        help="Hub budget: N calls per fixed window of W seconds",
    )
    for family in ("latency", "transient", "fail"):
        faults.add_argument(
            f"--{family}-apis",
            type=_csv,
            default=APIS,
            metavar="APIS",
            help=f"restrict {family} faults to these APIs (default: {','.join(APIS)})",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    rate, window = args.hf_rate_limit or (0, 300.0)
    faults = FaultConfig(
        seed=args.fault_seed,
        latency=args.latency,
        jitter=args.jitter,
        latency_apis=args.latency_apis,
        transient_failures=args.transient_failures,
        fault_rate=args.fault_rate,
        fault_kinds=args.fault_kinds,
        retry_after=args.retry_after,
        transient_apis=args.transient_apis,
        fail_matching=tuple(dict(pairs) for pairs in args.fail_matching),
        fail_status=args.fail_status,
        fail_apis=args.fail_apis,
        cursor_loop_page=args.cursor_loop,
        empty_pages=tuple(args.empty_pages),
        skip_at_boundary=args.skip_at_boundary,
        control_chars=args.control_chars,
        hf_rate_limit=rate,
        hf_rate_window=window,
        endless_body_apis=args.endless_body,
        endless_cursor_apis=args.endless_cursor,
        hf_ratelimit_header=args.hf_ratelimit_header,
        hf_ratelimit_policy_header=args.hf_ratelimit_policy_header,
    )
    return EmulatorConfig(
        seed=args.seed,
        civitai_models=args.civitai_models,
        hf_models=args.hf_models,
        revision=args.revision,
        faults=faults,
        civitai_levels=tuple(args.civitai_levels),
    )


def _print_record(record: RequestRecord) -> None:
    fault = f" [{record.fault}]" if record.fault else ""
    print(f"{record.status} {record.method} {record.uri}{fault}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))

    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import reactor

    emulator = Emulator(config, on_record=_print_record if args.verbose else None)
    emulator.listen(args.port, args.host)
    print(f"CivitAI:      {emulator.civitai_url}", flush=True)
    print(f"Hugging Face: {emulator.hf_url}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
