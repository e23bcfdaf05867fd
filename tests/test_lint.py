"""The code base stays ruff-clean and mypy-clean (pyproject.toml [tool.mypy]): part of the
test command, so CI enforces it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    ruff = shutil.which("ruff")
    assert ruff, "ruff comes with the test extra (README: install)"
    result = subprocess.run(
        [ruff, *command, "manifest_crawler", "tests", "bench", "scripts", "conftest.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy(tmp_path):
    # The package, at the strictness pyproject.toml's [tool.mypy] states. A cache of its own:
    # a mypy run beside it (an editor, another checkout's tests) must not share its database.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_readme_stays_short():
    # The README is for a newcomer: set-up, the main job, the contract; the rest lives in docs/.
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, len(lines)
