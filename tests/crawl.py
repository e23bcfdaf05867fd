"""Run real crawls of the project's spiders in the test reactor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from scrapy.crawler import Crawler, CrawlerRunner
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.test import get_crawler, get_reactor_settings
from twisted.internet.utils import getProcessOutputAndValue

from manifest_crawler import settings as project_settings
from manifest_crawler.files import LOCK_FILE

ROOT = Path(__file__).resolve().parent.parent
REPO_FILTERS = ROOT / "filters.json"


def project_settings_dict(**overrides: Any) -> dict[str, Any]:
    values = {key: getattr(project_settings, key) for key in dir(project_settings) if key.isupper()}
    # Tests crawl a loopback emulator: no politeness delay needed.
    values.update(AUTOTHROTTLE_ENABLED=False, LOG_LEVEL="INFO")
    values.update(overrides)
    return values


def crawl_settings(emulator: Any, manifest_dir: Path, **overrides: Any) -> dict[str, Any]:
    return project_settings_dict(
        **{
            "CIVITAI_API_URL": emulator.civitai_url,
            "HF_API_URL": emulator.hf_url,
            "MANIFEST_DIR": str(manifest_dir),
            "FILTERS_FILE": str(REPO_FILTERS),
            **overrides,
        }
    )


def make_crawler(spider_cls: type, settings: dict[str, Any]) -> Crawler:
    """A crawler set up in the order of ``scrapy crawl``: the spider first (it hands its
    arguments on as settings), then the components. Scrapy's ``get_crawler`` builds the
    components first."""
    runner = CrawlerRunner({**get_reactor_settings(), **settings})
    return runner.create_crawler(spider_cls)


async def crawl(spider_cls: type, settings: dict[str, Any], **spider_args: Any) -> Crawler:
    crawler = (
        make_crawler(spider_cls, settings) if spider_args else get_crawler(spider_cls, settings)
    )
    await crawler.crawl_async(**spider_args)
    return crawler


async def successor(make_emulator: Any, emulator: Any, config: Any) -> Any:
    """An emulator of ``config`` in the place of ``emulator`` (stopped), at its address: the same
    API later, so that files of a run against the first are of the same origin."""
    port = emulator.port.getHost().port
    await emulator.stop()
    return make_emulator(config, port=port)


def write_filters(
    path: Path, civitai: list[dict] | None = None, huggingface: list[dict] | None = None
) -> Path:
    path.write_text(json.dumps({"civitai": civitai or [], "huggingface": huggingface or []}))
    return path


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` by name, but the run's lock file (it holds the pid)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LOCK_FILE}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def crawl_env() -> dict[str, str]:
    """The environment of a ``scrapy crawl`` child: the project first on the path (before what
    PYTHONPATH already holds, e.g. the floor's Scrapy), and no API token."""
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("CIVITAI_API_TOKEN", None)
    env.pop("HF_TOKEN", None)
    return env


async def start_crawl(
    *args: str, env: dict[str, str] | None = None, **options: Any
) -> asyncio.subprocess.Process:
    """``scrapy crawl *args`` started in a process of its own, in the project, with
    crawl_env() and ``env`` over it; ``options`` go to asyncio.create_subprocess_exec
    (stdout, stderr, …)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        *args,
        cwd=ROOT,
        env={**crawl_env(), **(env or {})},
        **options,
    )


@contextlib.asynccontextmanager
async def crawling(
    log: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``scrapy crawl *args`` (start_crawl) writing its output to ``log``; killed if it is
    still running when the block ends."""
    with log.open("wb") as log_file:
        process = await start_crawl(*args, env=env, stdout=log_file, stderr=log_file)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def scrapy_crawl(*args: str) -> tuple[bytes, bytes, int]:
    """``scrapy crawl *args`` in a process of its own, in the project: (stdout, stderr, code)."""
    env = crawl_env()
    return await maybe_deferred_to_future(
        getProcessOutputAndValue(
            sys.executable, ["-m", "scrapy", "crawl", *args], env=env, path=str(ROOT)
        )
    )


def setting_args(**settings: object) -> list[str]:
    """``-s NAME=VALUE`` arguments of a ``scrapy crawl`` command line."""
    return [arg for name, value in settings.items() for arg in ("-s", f"{name}={value}")]
