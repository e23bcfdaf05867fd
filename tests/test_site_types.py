"""The site's TypeScript types (site-types/): generated from the schemas, committed, and the
example consumer type-checked against them and run on a real crawl's files.

The npm packages come from site-types/package-lock.json, installed by the README's install
command (``npm ci --prefix site-types``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from manifest_crawler.filters import load_filters
from tests.crawl import REPO_FILTERS, ROOT, read_json, setting_args
from tests.subprocesses import run_checked

SITE_TYPES = ROOT / "site-types"
TSC = SITE_TYPES / "node_modules" / ".bin" / "tsc"


def run(args: list[str | Path], cwd: Path = SITE_TYPES, **kwargs) -> str:
    return run_checked(args, cwd, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def npm_packages():
    assert TSC.exists(), "site-types/node_modules is missing: npm ci --prefix site-types"


def test_the_committed_types_are_generated_from_the_schemas(tmp_path, npm_packages):
    run(["node", "generate.mjs", tmp_path])
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in (SITE_TYPES / "types").iterdir()}
    assert sorted(fresh) == [
        "all-models.d.ts",
        "changes.d.ts",
        "filters.d.ts",
        "index.d.ts",
        "manifest.d.ts",
        "run-report.d.ts",
    ]
    assert fresh == committed, "site-types/types/ is out of date: cd site-types && npm run types"


def tsconfigs() -> list[Path]:
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    return sorted(ROOT / name for name in listed.split("\0") if Path(name).name == "tsconfig.json")


def test_every_typescript_project_type_checks(npm_packages):
    projects = tsconfigs()
    assert SITE_TYPES / "tsconfig.json" in projects
    # The example site needs its own npm packages (Next.js, React), which the README's install
    # leaves out: `next build` type-checks it in examples/site/check.sh, which CI runs.
    projects.remove(ROOT / "examples" / "site" / "tsconfig.json")
    for tsconfig in projects:
        run([TSC, "--noEmit", "-p", tsconfig], tsconfig.parent)


def test_the_example_site_reads_a_crawl(tmp_path, npm_packages):
    """The example's functions, compiled and run by node on an offline crawl's files, give
    the routes and lists those files hold."""
    out = tmp_path / "manifests"
    run(
        [
            sys.executable,
            *("-m", "scrapy", "crawl", "all"),
            *setting_args(MANIFEST_OFFLINE="true", MANIFEST_DIR=out),
        ],
        ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    js = tmp_path / "js"
    run([TSC, "-p", SITE_TYPES, "--noEmit", "false", "--rootDir", SITE_TYPES, "--outDir", js])
    (js / "package.json").write_text('{"type": "module"}')
    [civitai, *_] = load_filters(REPO_FILTERS).for_source("civitai")
    driver = js / "driver.mjs"
    driver.write_text(
        "import * as site from './example/site.js';\n"
        "console.log(JSON.stringify({\n"
        "  params: await site.generateStaticParams(),\n"
        f"  page: await site.filterPage('civitai', {json.dumps(civitai.name)}),\n"
        "  stale: await site.staleFilters(),\n"
        "  gone: await site.gonePaths(),\n"
        "}));\n"
    )
    seen = json.loads(run(["node", driver], js, env={**os.environ, "MANIFEST_DIR": str(out)}))

    all_models = read_json(out / "all-models.json")["models"]
    assert seen["params"] == [{"source": m["source"], "slug": m["slug"]} for m in all_models]
    manifest = read_json(out / f"civitai-{civitai.name.replace('/', '-')}.json")
    assert (seen["page"]["filter"], seen["page"]["label"]) == (civitai.name, civitai.label)
    assert seen["page"]["models"] == [
        {"href": f"/models/civitai/{m['slug']}", "name": m["name"]} for m in manifest["models"]
    ]
    assert seen["stale"] == []
    assert seen["gone"] == []
