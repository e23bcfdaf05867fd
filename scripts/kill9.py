"""Kill ``scrapy crawl all`` with SIGKILL at random moments and check that every manifest on
disk is still whole: the old file or the new one, never truncated or invalid.

    python -m scripts.kill9 --runs 100

Each run crawls the bundled emulator (offline mode) into one folder, so later runs kill a crawl
that is replacing the files of earlier ones. Exits 1 if any file was ever found broken.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def crawl_command(manifest_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        "all",
        "-s",
        "MANIFEST_OFFLINE=true",
        "-s",
        f"MANIFEST_DIR={manifest_dir}",
        "-s",
        "LOG_LEVEL=ERROR",
        "-s",
        "MANIFEST_PROGRESS_INTERVAL=0",
    ]


def broken_files(manifest_dir: Path) -> list[str]:
    """Every visible JSON file that does not parse as one of the crawler's documents."""
    problems = []
    for path in sorted(manifest_dir.glob("*.json")):
        try:
            document = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if not isinstance(document, dict) or not (
            "models" in document or "filters" in document or "changes" in document
        ):
            problems.append(f"{path.name}: not a crawler document")
        elif "models" in document and not all(
            {"id", "slug", "name"} <= model.keys() for model in document["models"]
        ):
            problems.append(f"{path.name}: a model lacks id, slug or name")
    return problems


def kill_at_random(runs: int, manifest_dir: Path, seed: int, log: bool = True) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(seed)
    started = time.monotonic()
    subprocess.run(crawl_command(manifest_dir), cwd=ROOT, env=env, check=True)
    full_run = time.monotonic() - started
    problems: list[str] = []
    for run in range(runs):
        # Anywhere in a whole run's lifetime, start-up and the final writes included.
        delay = rng.uniform(0.0, full_run * 1.1)
        process = subprocess.Popen(crawl_command(manifest_dir), cwd=ROOT, env=env)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        found = broken_files(manifest_dir)
        if log:
            print(f"run {run + 1}/{runs}: killed after {delay:.2f} s: {found or 'all files whole'}")
        problems.extend(f"run {run + 1} (kill at {delay:.2f} s): {p}" for p in found)
    # A run that completes cleans up what the killed ones left half-written.
    subprocess.run(crawl_command(manifest_dir), cwd=ROOT, env=env, check=True)
    problems.extend(f"left behind: {p.name}" for p in manifest_dir.glob(".*.tmp"))
    problems.extend(f"after a clean run: {p}" for p in broken_files(manifest_dir))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="manifest folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        problems = kill_at_random(args.runs, args.dir or Path(tmp), args.seed)
    print("\n".join(problems) or f"{args.runs} kills, every file whole every time")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
