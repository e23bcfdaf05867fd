"""The README's site recipe, run as written in a site folder outside the repository: the crawler
installed from a pinned git URL (this repository at HEAD) with its pins, the virtual
environment reused by the next build, the offline preview refused by the deploy guard and the
live prebuild (against the emulator as the API) passing it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crawl import REPO_FILTERS, ROOT, read_json
from tests.subprocesses import run_checked
from tests.test_packaging import INSTALL_TIMEOUT, clean_env

#: A filter of each source: the crawls take a second.
FILTERS = {"civitai": "filter/loras", "huggingface": "likes"}


def readme_recipe() -> str:
    section = (ROOT / "README.md").read_text().split("## Use it in your site build", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def pinned_here(recipe: str) -> str:
    """The recipe with its two pins pointing at this repository: its HEAD commit as the git
    URL, its requirements.txt as the pins (the README's raw URL of the same file)."""
    head = run_checked(["git", "rev-parse", "HEAD"], ROOT, timeout=60).strip()
    lines = recipe.splitlines()
    [crawler] = [i for i, line in enumerate(lines) if line.startswith("CRAWLER=git+https://")]
    [pins] = [i for i, line in enumerate(lines) if line.startswith("PINS=https://")]
    assert lines[crawler].split("=", 1)[1].split()[0].endswith("@COMMIT")
    lines[crawler] = f"CRAWLER=git+file://{ROOT}@{head}"
    lines[pins] = f"PINS={ROOT / 'requirements.txt'}"
    return "\n".join(lines) + "\n"


@pytest.fixture
def api() -> Iterator[list[str]]:
    """The emulator in a process of its own, as the live APIs: the settings pointing at it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "manifest_crawler.emulator", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    civitai = process.stdout.readline().split()[-1]
    hf = process.stdout.readline().split()[-1]
    yield ["-s", f"CIVITAI_API_URL={civitai}", "-s", f"HF_API_URL={hf}"]
    process.terminate()
    process.wait(timeout=30)


def site_command(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Outside any virtual environment or checkout, as a site's build runs.
    return subprocess.run(
        args,
        cwd=site,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.packaging
def test_the_readme_recipe_builds_a_site_folder_outside_the_repository(tmp_path, api):
    site = tmp_path / "site"
    site.mkdir()
    assert not site.resolve().is_relative_to(ROOT)
    (site / "crawl-manifests.sh").write_text(pinned_here(readme_recipe()))
    repo = read_json(REPO_FILTERS)
    (site / "filters.json").write_text(
        json.dumps(
            {
                source: [f for f in repo[source] if f["name"] == name]
                for source, name in FILTERS.items()
            }
        )
    )
    manifests = site / "public" / "manifests"

    preview = site_command(site, "sh", "crawl-manifests.sh", "--preview")
    assert preview.returncode == 0, preview.stderr[-3000:]
    assert "Exit status 0: every filter has its manifest: 2 fresh" in preview.stderr
    assert read_json(manifests / "index.json")["synthetic"] is True
    assert (site / ".crawler" / "pinned").read_text().startswith(f"git+file://{ROOT}@")
    refused = site_command(
        site, ".crawler/bin/python", "-m", "manifest_crawler.guard", str(manifests)
    )
    assert refused.returncode == 1
    assert "synthetic data: 4 file(s)" in refused.stderr

    # The next build reuses the environment: nothing is installed again.
    installed = {p: p.stat().st_mtime_ns for p in (site / ".crawler").rglob("*.py")}
    live = site_command(site, "sh", "crawl-manifests.sh", *api)
    assert live.returncode == 0, live.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (site / ".crawler").rglob("*.py")} == installed
    assert live.stdout.startswith("ok: public/manifests: 2 manifests, ")
    index = read_json(manifests / "index.json")
    assert index["synthetic"] is False
    assert [(e["source"], e["filter"], e["status"]) for e in index["filters"]] == [
        ("civitai", "filter/loras", "fresh"),
        ("huggingface", "likes", "fresh"),
    ]
