"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the time went.

``python -m bench.profile_summary crawl.raw [--top 25]`` prints the share of samples per
package (self time, by the file of the innermost frame), the functions with the most self time
and the project's functions with the most inclusive time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

# py-spy frames look like "function (path/to/file.py:123)"; idle frames carry no file.
_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PACKAGES = (
    "manifest_crawler",
    "scrapy",
    "twisted",
    "itemadapter",
    "pydispatch",
    "asyncio",
    "logging",
    "orjson",
    "json",
    "urllib",
)


def parse(lines: Iterable[str]) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = []
        for raw in stack.split(";"):
            match = _FRAME_RE.match(raw)
            frames.append((match["func"], match["file"]) if match else (raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def package_of(path: str) -> str:
    for package in _PACKAGES:
        if f"/{package}/" in path or path.startswith(f"{package}/") or path == f"{package}.py":
            return package
    if "site-packages" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.endswith(".py"):
        return "stdlib:" + Path(path).stem
    return "other"


def summarise(stacks: Sequence[tuple[list[tuple[str, str]], int]], top: int) -> str:
    total = sum(count for _, count in stacks) or 1
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        func, path = frames[-1]
        by_package[package_of(path)] += count
        self_time[f"{func} ({_short(path)})"] += count
        for name in {f"{f} ({_short(p)})" for f, p in frames if "manifest_crawler" in p}:
            inclusive[name] += count
    lines = [f"{total} samples", "", "self time by package:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_package.most_common(top)]
    lines += ["", "functions by self time:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    lines += ["", "project functions by inclusive time:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/manifest_crawler/" in path:
        return "manifest_crawler/" + path.split("/manifest_crawler/", 1)[1]
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("raw", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    with args.raw.open(encoding="utf-8") as lines:
        print(summarise(parse(lines), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
