"""The project's API emulator in its own process, reporting what it served when stopped.

``python -m bench.emulator_proc --latency 0.3 --jitter 0.1`` prints one JSON line
``{"base_url": ...}`` once listening; on SIGTERM or SIGINT it prints one JSON line of request
counts per API, the latencies it applied and its own CPU time and peak RSS, then exits.
Running it apart from the measured command keeps the emulator's CPU and memory out of the
measurement (the machine has two cores: one for each).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from manifest_crawler.emulator import Emulator, EmulatorConfig, FaultConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_proc")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--civitai-models", type=int, default=3000)
    parser.add_argument("--hf-models", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument(
        "--api-latency",
        action="append",
        default=[],
        metavar="API=LOW-HIGH",
        help="this API's responses take LOW to HIGH seconds (uniform), not --latency ± --jitter",
    )
    parser.add_argument(
        "--jitter-seed", type=int, default=0, help="seed of the latency draws (not the catalogue)"
    )
    parser.add_argument(
        "--hf-rate-limit",
        default="",
        help="N/W: the Hub's budget of N calls per W-second window (off when empty)",
    )
    return parser


def parse_span(value: str) -> tuple[float, float]:
    """``"1-3"`` → (1.0, 3.0); a single number is a fixed latency."""
    low, _, high = value.partition("-")
    bounds = (float(low), float(high or low))
    if not 0 <= bounds[0] <= bounds[1]:
        raise ValueError(f"latency span {value!r}: want LOW-HIGH seconds, 0 <= LOW <= HIGH")
    return bounds


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    limit, window = 0, 300.0
    if args.hf_rate_limit:
        calls, _, seconds = args.hf_rate_limit.partition("/")
        limit, window = int(calls), float(seconds or 300)
    per_api = {}
    for value in args.api_latency:
        api, _, span = value.partition("=")
        low, high = parse_span(span)
        per_api[api] = ((low + high) / 2, (high - low) / 2)
    faults = FaultConfig(
        seed=args.jitter_seed,
        latency=args.latency,
        jitter=args.jitter,
        api_latency=per_api,
        hf_rate_limit=limit,
        hf_rate_window=window,
    )
    return EmulatorConfig(
        seed=args.seed,
        civitai_models=args.civitai_models,
        hf_models=args.hf_models,
        faults=faults,
    )


def longest_chain_served(listings: dict[tuple[Any, ...], list[float]]) -> dict[str, Any]:
    """The listing with the most pages (then the slowest): its pages and the sum of their
    service times, the least a client could have spent on it in this run (its pages are
    sequential), whatever latencies the jitter happened to draw for them."""
    times = max(listings.values(), key=lambda taken: (len(taken), sum(taken)), default=[])
    return {"pages": len(times), "seconds": sum(times)}


def summary(emulator: Emulator, build_seconds: float) -> dict[str, Any]:
    """What the emulator served: requests per API and status, latencies, its own cost."""
    per_api: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    delays: list[float] = []
    # Arrival to the last byte handed to the socket: the latency the emulator injected plus
    # its own time to build and write the page (CivitAI pages weigh megabytes).
    service: dict[str, list[float]] = {}
    # Per listing (the request without its cursor, and without its limit, which a client may
    # shrink on later pages, in any order: a chain's later pages may be built from another
    # member's parameters): the service times of its pages, asked one after another.
    listings: dict[tuple[Any, ...], list[float]] = {}
    # Per API, its first request's arrival and its last answer's end.
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for record in emulator.log:
        per_api[record.api or "other"] += 1
        statuses[str(record.status)] += 1
        delays.append(record.delay)
        api = record.api or "other"
        first[api] = min(first.get(api, record.time), record.time)
        if record.finished is not None:
            last[api] = max(last.get(api, record.finished), record.finished)
            took = record.finished - record.time
            service.setdefault(api, []).append(took)
            listing = (
                record.api,
                *sorted(p for p in record.pairs if p[0] not in ("cursor", "limit")),
            )
            listings.setdefault(listing, []).append(took)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "requests": dict(per_api),
        "statuses": dict(statuses),
        "median_delay": statistics.median(delays) if delays else 0.0,
        "median_service": {api: statistics.median(times) for api, times in service.items()},
        "longest_chain_served": longest_chain_served(listings),
        "spans": {api: last[api] - first[api] for api in last},
        "build_seconds": round(build_seconds, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_kib": usage.ru_maxrss,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import reactor

    started = time.perf_counter()
    emulator = Emulator(config_from(args))
    build_seconds = time.perf_counter() - started
    emulator.listen(args.port, "127.0.0.1")
    sys.stdout.write(orjson.dumps({"base_url": emulator.base_url}).decode() + "\n")
    sys.stdout.flush()
    # The reactor's own SIGTERM/SIGINT handlers stop it; then the summary is printed.
    reactor.run()  # type: ignore[attr-defined]
    sys.stdout.write(orjson.dumps(summary(emulator, build_seconds)).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
