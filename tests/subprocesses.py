"""Commands the packaging and site-types tests run (build, pip, npm, tsc, node, git)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def run_checked(args: list[str | Path], cwd: Path, *, timeout: float, **kwargs: Any) -> str:
    """Run a command with no input and return its stdout; on failure, the assertion carries
    its output. ``timeout`` is a deadline against a hang, not a speed check."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout
