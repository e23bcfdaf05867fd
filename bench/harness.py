"""Process plumbing shared by the benchmarks: an emulator process, measured child commands.

Every measured command is its own child process, reaped with ``os.wait4``, so its CPU time
and peak RSS are its own (the emulator runs in another process and is not counted).
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parent.parent

#: Every sort the Hub accepts: whole-catalogue filters that differ only by their order.
HF_SORTS = ("likes", "downloads", "createdAt", "trendingScore", "lastModified")


@dataclass(slots=True)
class EmulatorSpec:
    """The emulator each measured command talks to (a fresh one per command)."""

    civitai_models: int = 3000
    hf_models: int = 3000
    latency: float = 0.0
    jitter: float = 0.0
    #: Per API, (low, high) seconds a response takes (uniform), instead of latency ± jitter.
    api_latency: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: The Hub's budget as the real one announces it (N calls per W s), or "" for none.
    hf_rate_limit: str = ""
    seed: int = 0
    #: The seed of the latency draws, apart from the catalogue's.
    jitter_seed: int = 0

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "bench.emulator_proc",
            f"--seed={self.seed}",
            f"--civitai-models={self.civitai_models}",
            f"--hf-models={self.hf_models}",
            f"--latency={self.latency}",
            f"--jitter={self.jitter}",
            f"--jitter-seed={self.jitter_seed}",
        ]
        argv += [
            f"--api-latency={api}={low}-{high}" for api, (low, high) in self.api_latency.items()
        ]
        if self.hf_rate_limit:
            argv.append(f"--hf-rate-limit={self.hf_rate_limit}")
        return argv


@dataclass(slots=True)
class RunningEmulator:
    base_url: str
    process: subprocess.Popen[bytes]
    #: Filled when it stops: requests per API, statuses, median delay, its own cost.
    served: dict[str, Any] = field(default_factory=dict)

    @property
    def civitai_url(self) -> str:
        return f"{self.base_url}/api/v1/models"

    @property
    def hf_url(self) -> str:
        return f"{self.base_url}/api/models"

    def requests(self, api: str | None = None) -> int:
        counts: Mapping[str, int] = self.served.get("requests", {})
        return sum(counts.values()) if api is None else counts.get(api, 0)


@contextmanager
def emulator(spec: EmulatorSpec, timeout: float = 600.0) -> Iterator[RunningEmulator]:
    """A fresh emulator process; what it served is in ``.served`` after the block."""
    process = subprocess.Popen(
        spec.argv(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    line = _readline(process.stdout, process, timeout)
    running = RunningEmulator(orjson.loads(line)["base_url"], process)
    try:
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        lines = [raw for raw in out.splitlines() if raw.startswith(b"{")]
        if lines:
            running.served = orjson.loads(lines[-1])


def _readline(stream: IO[bytes], process: subprocess.Popen[bytes], timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    line = stream.readline()
    if not line or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"the emulator did not start (exit {process.wait()})")
    return line


@dataclass(slots=True)
class Measured:
    """One run of one command: wall time, CPU time (user + system), peak RSS, exit status."""

    wall: float
    cpu: float
    max_rss_mib: float
    exit_code: int
    #: Requests as the emulator counted them, per API.
    requests: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def run_measured(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 3600.0,
) -> Measured:
    """Run ``argv`` as a child and measure it alone (``wait4`` gives that child's rusage).

    Linux starts a child's ru_maxrss at its parent's peak (it survives fork and exec), so the
    harness must stay small; a child's figure not above the harness's own peak is flagged.
    """
    harness_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_env = {**os.environ, **(env or {})}
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=child_env, stdout=log, stderr=log)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
    # Reaped by wait4 already: tell Popen, or it would try again.
    process.returncode = os.waitstatus_to_exitcode(status)
    if usage.ru_maxrss <= harness_peak:
        print(
            f"warning: {' '.join(argv[:4])}: peak RSS {usage.ru_maxrss / 1024:.0f} MiB is not "
            f"above the harness's own {harness_peak / 1024:.0f} MiB: only an upper bound",
            file=sys.stderr,
        )
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / 1024,
        exit_code=process.returncode,
    )


def load_average() -> str:
    """The machine's load averages over 1, 5 and 15 minutes, as ``uptime`` prints them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def machine() -> str:
    """What the figures were measured on: CPUs and Python."""
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table (numbers right-aligned), for terminals and the README."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(header), *(len(row[i]) for row in cells)) if cells else len(header)
        for i, header in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row, raw in zip(cells, rows, strict=True):
        parts = [
            cell.rjust(width) if isinstance(value, int | float) else cell.ljust(width)
            for cell, width, value in zip(row, widths, raw, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: not measured
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def compile_crawler(root: Path) -> str:
    """Compile the crawler package of ``root`` to bytecode, as its first run would have left it.

    Any run after the first imports the project's modules from ``__pycache__``; with
    PYTHONDONTWRITEBYTECODE=1 (set on these machines) none is ever written, and every measured
    run would compile them again: 0.11 s more per 100-per-filter crawl (measured side by side,
    median of 7 seeds). A build from a fresh clone pays that once, on its only run.
    """
    package = root / "manifest_crawler"
    started = time.perf_counter()
    # py_compile writes the files whatever PYTHONDONTWRITEBYTECODE says.
    if not compileall.compile_dir(package, quiet=1):
        raise RuntimeError(f"{package}: a module does not compile")
    return (
        f"bytecode: {package} compiled beforehand ({time.perf_counter() - started:.2f} s), as "
        "any run after a checkout's first has it (--no-compile: as found)"
    )


def crawler_env(root: Path) -> dict[str, str]:
    """The environment of a crawl of the checkout at ``root`` (its package imported first)."""
    env = dict(os.environ)
    if root != ROOT:
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(ROOT)])
    return env


def client_arguments(prog: str, out_help: str) -> argparse.ArgumentParser:
    """The command line of a client doing the crawl's work another way (bench.baseline,
    bench.plain): the endpoints, the filters and their size, the output folder."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--civitai-url", required=True)
    parser.add_argument("--hf-url", required=True)
    parser.add_argument("--filters", required=True)
    parser.add_argument("--max-items", type=int, default=100, help="0 = no limit")
    parser.add_argument("--sources", default="civitai,huggingface")
    parser.add_argument("--out", required=True, help=out_help)
    return parser


def client_argv(
    module: str,
    emu: RunningEmulator,
    *,
    filters_file: Path,
    max_items: int,
    out: Path,
    sources: str = "civitai,huggingface",
) -> list[str]:
    """``python -m <module>`` (see client_arguments) against ``emu``."""
    return [
        sys.executable,
        "-m",
        module,
        f"--civitai-url={emu.civitai_url}",
        f"--hf-url={emu.hf_url}",
        f"--filters={filters_file}",
        f"--max-items={max_items}",
        f"--sources={sources}",
        f"--out={out}",
    ]


def scrapy_argv(
    spider: str,
    *,
    civitai_url: str,
    hf_url: str,
    manifest_dir: Path,
    filters_file: Path,
    max_items: int,
    extra: Mapping[str, str] | None = None,
) -> list[str]:
    """``scrapy crawl <spider>`` against the given endpoints, as a build would run it."""
    settings = {
        "CIVITAI_API_URL": civitai_url,
        "HF_API_URL": hf_url,
        "MANIFEST_DIR": str(manifest_dir),
        "FILTERS_FILE": str(filters_file),
        "MANIFEST_MAX_ITEMS": str(max_items),
        "MANIFEST_PROGRESS_BAR": "never",
        **(extra or {}),
    }
    argv = [sys.executable, "-m", "scrapy", "crawl", spider]
    for name, value in settings.items():
        argv += ["-s", f"{name}={value}"]
    return argv


_STAT_RE = re.compile(r"^\s*[{ ]?'([^']+)': ([0-9][0-9.e+-]*),?\}?$", re.MULTILINE)


def scrapy_stats(log_path: Path) -> dict[str, float]:
    """The numeric stats of the dump Scrapy logs at the end of a crawl."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return {key: float(value) for key, value in _STAT_RE.findall(text)}


def read_run_report(manifest_dir: Path) -> dict[str, Any]:
    path = manifest_dir / "run-report.json"
    return orjson.loads(path.read_bytes()) if path.exists() else {}
