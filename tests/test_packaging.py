"""The project as it ships: requirements.txt generated from pyproject.toml, a wheel installed
in a fresh virtual environment and run outside the repository, a Scrapyd deployment.

The wheel and Scrapyd tests are marked ``packaging``: each builds the project and installs or
deploys it, about a minute each (``-m "not packaging"`` leaves them out while developing). They
need the package index, as the install command does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest
import requests

from manifest_crawler.files import LOCK_FILE
from manifest_crawler.filters import load_filters
from manifest_crawler.output.changes import CHANGES_FILE
from manifest_crawler.output.manifests import ALL_MODELS_FILE, manifest_filename
from manifest_crawler.output.runreport import RUN_REPORT_FILE
from manifest_crawler.output.schemas import (
    ALL_MODELS_SCHEMA,
    CHANGES_SCHEMA,
    MANIFEST_SCHEMA,
    RUN_REPORT_SCHEMA,
    SCHEMA_DIR,
)
from tests.crawl import REPO_FILTERS, ROOT, files_in, read_json
from tests.subprocesses import run_checked

#: The command in requirements.txt's header, run again by the test below.
COMPILE_COMMAND = (
    "uv pip compile pyproject.toml --universal --python-version 3.11 -o requirements.txt"
)
#: Distributions of the test extra that must not come with the wheel (nor through its deps).
TEST_TOOLS = {
    "pytest",
    "pytest-twisted",
    "hypothesis",
    "huggingface-hub",
    "jsonschema",
    "ruff",
    "mypy",
    "scrapyd",
    "scrapyd-client",
    "build",
    "uv",
}
#: Long enough for a cold package cache; a deadline against a hang, not a speed check.
INSTALL_TIMEOUT = 600
CRAWL_TIMEOUT = 300


def run(args: list[str | Path], cwd: Path = ROOT, **kwargs) -> str:
    return run_checked(args, cwd, **{"timeout": INSTALL_TIMEOUT, **kwargs})


def copy_project(target: Path) -> Path:
    """The checkout's files (tracked, and new ones not ignored), as a clean clone would have
    them: builds then write their build/ and egg-info there, not in the checkout."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would lead a child to the checkout or this venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("CIVITAI_API_TOKEN", None)
    env.pop("HF_TOKEN", None)
    return {**env, **extra}


def check_site_files(manifest_dir: Path, filters_file: Path) -> dict:
    """Every file a full run writes is there and valid against its schema; every filter is
    fresh. Returns the run report."""
    validators = {
        name: jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / name).read_text()))
        for name in (MANIFEST_SCHEMA, ALL_MODELS_SCHEMA, CHANGES_SCHEMA, RUN_REPORT_SCHEMA)
    }
    filters = list(load_filters(filters_file))
    expected = {manifest_filename(*f.key): MANIFEST_SCHEMA for f in filters}
    expected |= {
        ALL_MODELS_FILE: ALL_MODELS_SCHEMA,
        CHANGES_FILE: CHANGES_SCHEMA,
        RUN_REPORT_FILE: RUN_REPORT_SCHEMA,
    }
    # And the run's lock file, never a manifest.
    assert sorted(files_in(manifest_dir)) == sorted(expected)
    assert (manifest_dir / LOCK_FILE).is_file()
    for name, schema in expected.items():
        validators[schema].validate(read_json(manifest_dir / name))
    report = read_json(manifest_dir / RUN_REPORT_FILE)
    assert report["exit_code"] == 0
    assert report["totals"] == {"fresh": len(filters), "short": 0, "stale": 0, "failed": 0}
    assert read_json(manifest_dir / ALL_MODELS_FILE)["totalModels"] > 0
    return report


def test_requirements_txt_is_generated_from_pyproject(tmp_path):
    """Compiled again from pyproject.toml, with the committed pins as the preferred versions
    (uv keeps an output file's pins that still satisfy the ranges): the same file, so every
    pin comes from pyproject's ranges and the list is complete."""
    header = (ROOT / "requirements.txt").read_text().splitlines()[:2]
    assert header[1] == f"#    {COMPILE_COMMAND}"
    compiled = tmp_path / "requirements.txt"
    shutil.copy(ROOT / "requirements.txt", compiled)
    args = COMPILE_COMMAND.split()[1:-1]  # the command, but its output file
    run(
        [
            sys.executable,
            "-m",
            "uv",
            *args,
            compiled,
            "--quiet",
            "--custom-compile-command",
            COMPILE_COMMAND,
        ]
    )
    assert compiled.read_text() == (ROOT / "requirements.txt").read_text(), (
        f"requirements.txt is out of date with pyproject.toml: run {COMPILE_COMMAND}"
    )


@pytest.mark.packaging
def test_an_installed_wheel_crawls_outside_the_repository(tmp_path):
    project = copy_project(tmp_path / "project")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", project])
    [wheel] = (tmp_path / "dist").glob("manifest_crawler-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    env = clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    run([python, "-m", "pip", "install", "--quiet", wheel], env=env)
    run([python, "-m", "pip", "check"], env=env)

    installed = {
        entry["name"].lower().replace("_", "-")
        for entry in json.loads(run([python, "-m", "pip", "list", "--format=json"], env=env))
    }
    assert {"manifest-crawler", "scrapy", "orjson", "jsonschema-rs"} <= installed
    assert not installed & TEST_TOOLS

    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(REPO_FILTERS, site / "filters.json")
    where = run([python, "-c", "import manifest_crawler; print(manifest_crawler.__file__)"], site)
    assert Path(where.strip()).is_relative_to(venv)
    run(
        [venv / "bin" / "scrapy", "crawl", "all", "-s", "MANIFEST_OFFLINE=true"],
        site,
        env={**env, "SCRAPY_SETTINGS_MODULE": "manifest_crawler.settings"},
        timeout=CRAWL_TIMEOUT,
    )
    check_site_files(site / "public" / "manifests", site / "filters.json")
    assert sorted(p.name for p in site.iterdir()) == ["filters.json", "public"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def scrapyd(tmp_path):
    """A real Scrapyd on a loopback port, its eggs, logs and databases under tmp_path."""
    home = tmp_path / "scrapyd"
    home.mkdir()
    port = free_port()
    (home / "scrapyd.conf").write_text(
        "[scrapyd]\n"
        "bind_address = 127.0.0.1\n"
        f"http_port = {port}\n"
        f"eggs_dir = {home / 'eggs'}\n"
        f"logs_dir = {home / 'logs'}\n"
        f"dbs_dir = {home / 'dbs'}\n"
        "items_dir =\n"
        "max_proc = 1\n"
        "poll_interval = 0.2\n"
    )
    # Its cwd holds its scrapyd.conf. The checkout is not on its path: a job imports the egg
    # (sys.path comes before an editable install's finder).
    with (home / "scrapyd.err").open("w") as errors:
        server = subprocess.Popen(
            [sys.executable, "-m", "scrapyd"],
            cwd=home,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url + "daemonstatus.json", timeout=5).raise_for_status()
            break
        except requests.ConnectionError:
            assert server.poll() is None, (home / "scrapyd.err").read_text()
            assert time.monotonic() < deadline, "Scrapyd did not start"
            time.sleep(0.2)
    yield url, home
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.packaging
def test_a_scrapyd_job_writes_the_manifests(tmp_path, scrapyd):
    url, home = scrapyd
    project = copy_project(tmp_path / "project")
    # The repository's deploy target, pointed at this Scrapyd.
    config = project / "scrapy.cfg"
    assert "url = http://localhost:6800/" in config.read_text()
    config.write_text(config.read_text().replace("http://localhost:6800/", url))
    deploy = Path(sys.executable).parent / "scrapyd-deploy"

    egg = tmp_path / "manifest-crawler.egg"
    run([deploy, "--build-egg", egg], project)
    with zipfile.ZipFile(egg) as archive:
        names = set(archive.namelist())
        entry_points = archive.read("EGG-INFO/entry_points.txt").decode()
    assert {f"manifest_crawler/data/schemas/{p.name}" for p in SCHEMA_DIR.iterdir()} <= names
    assert "settings = manifest_crawler.settings" in entry_points
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    run([deploy, "--egg", egg, "--version", "1"], project)

    manifest_dir = tmp_path / "site" / "public" / "manifests"
    scheduled = requests.post(
        url + "schedule.json",
        data={
            "project": "manifest-crawler",
            "spider": "all",
            "setting": [
                f"MANIFEST_DIR={manifest_dir}",
                f"FILTERS_FILE={REPO_FILTERS}",
                "MANIFEST_OFFLINE=true",
            ],
        },
        timeout=30,
    ).json()
    assert scheduled["status"] == "ok", scheduled
    job = scheduled["jobid"]

    deadline = time.monotonic() + CRAWL_TIMEOUT
    while True:
        jobs = requests.get(
            url + "listjobs.json", params={"project": "manifest-crawler"}, timeout=30
        ).json()
        if any(entry["id"] == job for entry in jobs["finished"]):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.5)

    [log] = (home / "logs" / "manifest-crawler" / "all").glob(f"{job}.log")
    report = check_site_files(manifest_dir, REPO_FILTERS)
    # Scrapyd keeps no exit status: the run report says how this job ended.
    assert report["job"] == job, log.read_text()[-3000:]


def test_ci_runs_exactly_the_readme_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    documented = [line.split("   #", 1)[0].strip() for line in block.splitlines()]
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = script[script.index('cd "$(dirname "$0")/.."') + 1 :]
    assert documented == [line for line in commands if line.strip()]
    assert documented[0].startswith("python3 -m venv .venv && . .venv/bin/activate && ")
