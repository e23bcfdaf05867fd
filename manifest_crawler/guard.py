"""The deploy guard: ``python -m manifest_crawler.guard DIR [--filters FILE]``.

A site's build runs it after the crawl and before it publishes DIR: it exits 1, printing one
line per problem, when the folder is not fit to deploy as the real site:

- synthetic data (a run against the bundled emulator, MANIFEST_OFFLINE: a preview);
- an orphan (a manifest whose filter is not in filters.json);
- a filter of filters.json without its manifest, or failed or short in the run report;
- a file that fails its JSON Schema (or a file the crawler writes that is missing);
- a manifest of another origin than all-models.json's (left out of the site).

It exits 0 with one line saying what the folder holds, and 2 (one line) when it cannot look.
It reads only the files a run writes; each is read whole, so it costs about what the crawl's
own write of the folder did.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from manifest_crawler.filters import FiltersError, FilterSet, load_filters
from manifest_crawler.output.changes import CHANGES_FILE
from manifest_crawler.output.manifests import (
    ALL_MODELS_FILE,
    EMULATOR_ORIGIN,
    INDEX_FILE,
    find_orphans,
    manifest_filename,
    manifest_source,
)
from manifest_crawler.output.runreport import RUN_REPORT_FILE
from manifest_crawler.output.schemas import (
    ALL_MODELS_SCHEMA,
    CHANGES_SCHEMA,
    INDEX_SCHEMA,
    MANIFEST_SCHEMA,
    RUN_REPORT_SCHEMA,
    SchemaError,
    Validators,
)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

#: The files every run writes beside the manifests, and their schemas (changes.json may have
#: been consumed by the site: it is checked when it is there).
_REQUIRED = {
    ALL_MODELS_FILE: ALL_MODELS_SCHEMA,
    INDEX_FILE: INDEX_SCHEMA,
    RUN_REPORT_FILE: RUN_REPORT_SCHEMA,
}
_OPTIONAL = {CHANGES_FILE: CHANGES_SCHEMA}
#: Run-report statuses that a deploy must not accept.
_REFUSED_STATUSES = ("failed", "short")
_SHOWN = 3


def _listed(names: Sequence[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


class _Folder:
    """The folder's files, each read and checked against its schema once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.validators = Validators()
        self.problems: list[str] = []
        self.documents: dict[str, Any] = {}

    def read(self, name: str, schema: str, required: bool) -> Any:
        path = self.folder / name
        try:
            document = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            if required:
                self.problems.append(f"{path}: missing (no complete run wrote this folder)")
            return None
        except OSError as exc:
            self.problems.append(f"{path}: cannot be read: {exc.strerror or exc}")
            return None
        except orjson.JSONDecodeError as exc:
            self.problems.append(f"{path}: not valid JSON: {exc}")
            return None
        try:
            self.validators.check(schema, document, name)
        except SchemaError as exc:
            self.problems.append(f"{path}: {exc}")
            return None
        self.documents[name] = document
        return document


def check_folder(folder: Path, filter_set: FilterSet) -> tuple[list[str], str]:
    """The problems that forbid deploying ``folder`` (one line each), and a line saying what
    it holds."""
    files = _Folder(folder)
    for name, schema in _REQUIRED.items():
        files.read(name, schema, required=True)
    for name, schema in _OPTIONAL.items():
        files.read(name, schema, required=False)
    all_models = files.documents.get(ALL_MODELS_FILE)
    report = files.documents.get(RUN_REPORT_FILE)
    manifests: dict[str, Any] = {}
    for filter_ in filter_set:
        name = manifest_filename(filter_.source, filter_.name)
        if (folder / name).exists():
            manifests[name] = files.read(name, MANIFEST_SCHEMA, required=True)
        else:
            files.problems.append(
                f"{folder / name}: missing: filter {filter_.source}:{filter_.name} has no "
                f"manifest (a run that never fetched it, or that failed)"
            )
    problems = files.problems
    problems += [
        f"{path}: orphan: no filter of {filter_set.path} writes it (a filter removed or "
        f"renamed; the next run removes it unless MANIFEST_KEEP_ORPHANS)"
        for path in find_orphans(folder, filter_set)
    ]
    problems += _synthetic(folder, report, all_models, manifests)
    problems += _left_out(folder, all_models, manifests)
    if report is not None:
        problems += _refused_rows(report, folder)
    total = all_models["totalModels"] if all_models is not None else 0
    origins = ", ".join(sorted(set(all_models["origins"].values()))) if all_models else "?"
    summary = f"{folder}: {len(manifests)} manifests, {total} models, from {origins}"
    return problems, summary


def _synthetic(
    folder: Path,
    report: Mapping[str, Any] | None,
    all_models: Mapping[str, Any] | None,
    manifests: Mapping[str, Any],
) -> Iterator[str]:
    emulated = [
        name
        for name, document in manifests.items()
        if document is not None and document["origin"] == EMULATOR_ORIGIN
    ]
    if all_models is not None and EMULATOR_ORIGIN in all_models["origins"].values():
        emulated.insert(0, ALL_MODELS_FILE)
    if report is not None and report["synthetic"]:
        emulated.insert(0, RUN_REPORT_FILE)
    if emulated:
        yield (
            f"{folder}: synthetic data: {len(emulated)} file(s) hold the bundled emulator's "
            f"made-up models (a MANIFEST_OFFLINE preview, never to deploy): {_listed(emulated)}"
        )


def _left_out(
    folder: Path, all_models: Mapping[str, Any] | None, manifests: Mapping[str, Any]
) -> Iterator[str]:
    if all_models is None:
        return
    for name, document in manifests.items():
        if document is None or document["origin"] == EMULATOR_ORIGIN:
            continue
        source = manifest_source(name)
        wanted = all_models["origins"].get(source)
        if document["origin"] != wanted:
            yield (
                f"{folder / name}: from {document['origin']}, not {wanted}: all-models.json "
                f"leaves its models out"
            )


def _refused_rows(report: Mapping[str, Any], folder: Path) -> Iterator[str]:
    for row in report["filters"]:
        if row["status"] in _REFUSED_STATUSES:
            when = (
                row["carried_from"]["finished"] if row.get("carried_from") else report["finished"]
            )
            yield (
                f"{folder / RUN_REPORT_FILE}: {row['source']}:{row['filter']} is "
                f"{row['status']} (run of {when}): {row['reason']}"
            )
    if report["exit_code"] != 0:
        yield (
            f"{folder / RUN_REPORT_FILE}: the run of {report['finished']} exited "
            f"{report['exit_code']}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m manifest_crawler.guard",
        description="Exit 1, one line per problem, unless the manifest folder DIR is fit to "
        "deploy: real data, no orphan, no failed or short filter, every file of its schema.",
    )
    parser.add_argument("folder", metavar="DIR", help="the manifest folder (MANIFEST_DIR)")
    parser.add_argument(
        "--filters",
        default=os.environ.get("FILTERS_FILE", "filters.json"),
        help="the site's filters.json (default: $FILTERS_FILE, else filters.json)",
    )
    options = parser.parse_args(argv)
    folder = Path(options.folder)
    if not folder.is_dir():
        print(f"error: {folder}: not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        filter_set = load_filters(options.filters)
    except FiltersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problems, summary = check_folder(folder, filter_set)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"refused: {summary}: {len(problems)} problem(s)", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"ok: {summary}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
