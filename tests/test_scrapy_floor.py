"""The oldest Scrapy the project declares (pyproject.toml) runs the offline quickstart and the
crawl tests: that Scrapy alone is installed into a folder put first on PYTHONPATH, shadowing
the installed one for child processes of this interpreter (in a virtual environment or not:
the rest of the environment is the one the tests run in)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import scrapy
from packaging.requirements import Requirement
from packaging.version import Version

from tests.crawl import ROOT


def declared_scrapy_range() -> tuple[str, str]:
    """(floor, requirement) of the scrapy line of pyproject's [project] dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirement = next(
        dep for dep in project["dependencies"] if re.match(r"scrapy\b", dep, re.IGNORECASE)
    )
    floor = re.search(r">=\s*([\d.]+)", requirement)
    assert floor is not None, f"{requirement!r} has no floor"
    return floor.group(1), requirement


def test_scrapy_is_a_range_and_requirements_txt_pins_a_version_inside_it() -> None:
    floor, requirement = declared_scrapy_range()
    assert "<" in requirement and "==" not in requirement
    allowed = Requirement(requirement).specifier
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    (pinned,) = [line for line in lines if re.match(r"scrapy==", line, re.IGNORECASE)]
    assert Version(pinned.split("==", 1)[1].split(";")[0].strip()) in allowed
    # The installed Scrapy is inside the range.
    assert Version(scrapy.__version__) in allowed
    assert Version(scrapy.__version__) >= Version(floor)


def _floor_path(tmp_path: Path, floor: str) -> Path:
    target = tmp_path / "floor"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
    subprocess.run([*install, str(target), f"scrapy=={floor}"], check=True, capture_output=True)
    return target


def test_the_floor_runs_the_offline_quickstart_and_the_crawl_tests(tmp_path: Path) -> None:
    floor, _ = declared_scrapy_range()
    python = sys.executable
    path = os.pathsep.join((str(_floor_path(tmp_path, floor)), str(ROOT)))
    env = {**os.environ, "PYTHONPATH": path}
    version = subprocess.run(
        [python, "-c", "import scrapy; print(scrapy.__version__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Version(version) == Version(floor)
    # tests/commands runs the README's offline quickstart (`scrapy crawl all -s
    # MANIFEST_OFFLINE=true`) as a real process, with this interpreter, and checks its files.
    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-x", "tests/spiders", "tests/commands"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert re.search(r"\d+ passed", tests.stdout)
    assert (
        "test_offline_quickstart_writes_every_manifest"
        in subprocess.run(
            [python, "-m", "pytest", "-q", "--collect-only", "tests/commands"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
    )
