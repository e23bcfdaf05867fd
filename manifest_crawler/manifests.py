"""Pure manifest logic: file names, document shapes, the all-models merge and atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from manifest_crawler.filters import Filter, filter_file_stem

ALL_MODELS_FILE = "all-models.json"

#: The file-name prefix of each source's manifests (the names the site already reads).
SOURCE_PREFIXES: Mapping[str, str] = {"civitai": "civitai", "huggingface": "hf"}


class ManifestError(ValueError):
    """A manifest on disk is unreadable or not of the expected shape."""


def manifest_filename(source: str, filter_name: str) -> str:
    """``civitai-<name with / as ->.json`` or ``hf-<name with / as ->.json``."""
    return f"{SOURCE_PREFIXES[source]}-{filter_file_stem(filter_name)}.json"


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with a ``Z`` and second precision, e.g. ``2026-11-24T10:00:00Z``."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_manifest(
    filter_name: str, models: Sequence[Mapping[str, str]], timestamp: str
) -> dict[str, Any]:
    return {
        "filter": filter_name,
        "models": [{"id": m["id"], "slug": m["slug"], "name": m["name"]} for m in models],
        "timestamp": timestamp,
    }


@dataclass(frozen=True, slots=True)
class SourceManifest:
    """The models of one filter's manifest, tagged with the filter's source."""

    source: str
    models: Sequence[Mapping[str, Any]]


def merge_all_models(manifests: Iterable[SourceManifest], timestamp: str) -> dict[str, Any]:
    """The deduplicated union of manifests, in first-appearance order.

    Callers pass manifests in filters.json order (CivitAI filters, then Hugging Face), so the
    same inputs always give the same document apart from the timestamp.
    """
    seen: set[str] = set()
    models: list[dict[str, str]] = []
    per_source: dict[str, int] = dict.fromkeys(SOURCE_PREFIXES, 0)
    for manifest in manifests:
        for model in manifest.models:
            model_id = model["id"]
            if model_id in seen:
                continue
            seen.add(model_id)
            models.append(
                {
                    "id": model_id,
                    "slug": model["slug"],
                    "name": model["name"],
                    "source": manifest.source,
                }
            )
            per_source[manifest.source] = per_source.get(manifest.source, 0) + 1
    return {
        "totalModels": len(models),
        **per_source,
        "models": models,
        "timestamp": timestamp,
    }


def encode_json(document: Any) -> bytes:
    """Stable bytes: two-space indent, UTF-8, key order as built, trailing newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) sees old or new, never half.

    The temporary file lives in the same folder (a rename is atomic only within one file
    system) and is fsynced before the rename; the folder is fsynced after it so the rename
    itself survives a power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that ``write_atomic`` left behind when a process was killed
    mid-write; they are invisible to the site (dot files) but would pile up."""
    removed = []
    for path in folder.glob(".*.json.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def read_manifest_models(path: Path) -> list[dict[str, Any]] | None:
    """The models of a per-filter manifest on disk; None when there is no such file.

    Raises ManifestError naming the file when it exists but is not a valid manifest.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from None
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list) or not all(
        isinstance(m, dict) and {"id", "slug", "name"} <= m.keys() for m in models
    ):
        raise ManifestError(f"{path}: not a manifest (expected models of id, slug and name)")
    return models


def manifests_on_disk(
    manifest_dir: Path, filters: Iterable[Filter]
) -> tuple[list[SourceManifest], list[str]]:
    """The readable manifests of ``filters`` in order, and the problems with the rest."""
    found: list[SourceManifest] = []
    problems: list[str] = []
    for filter_ in filters:
        path = manifest_dir / manifest_filename(filter_.source, filter_.name)
        try:
            models = read_manifest_models(path)
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        if models is None:
            problems.append(f"{path}: missing (filter {filter_.source}:{filter_.name})")
            continue
        found.append(SourceManifest(filter_.source, models))
    return found, problems
