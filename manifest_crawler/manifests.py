"""Pure manifest logic: file names, document shapes, the all-models merge and atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


class ManifestModel(Mapping[str, str]):
    """One model as a manifest lists it: a read-only mapping of ``id``, ``slug`` and ``name``.

    The writer keeps one per distinct model, shared by every filter that lists it, and
    interns its strings: at a million models a dict per entry and per filter cost about three
    times the memory.
    """

    __slots__ = ("id", "name", "slug")
    _KEYS = ("id", "slug", "name")

    def __init__(self, id: str, slug: str, name: str) -> None:
        self.id = id
        self.slug = slug
        self.name = name

    def __getitem__(self, key: str) -> str:
        if key == "id":
            return self.id
        if key == "slug":
            return self.slug
        if key == "name":
            return self.name
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return 3

    def __repr__(self) -> str:
        return f"ManifestModel(id={self.id!r}, slug={self.slug!r}, name={self.name!r})"


class CollectedModels:
    """One filter's models as the writer collects them: ``(rank, model)`` pairs, compactly.

    Iterating yields the pairs (as the list it replaces did); the ranks live in an array and
    the models are shared, so an entry costs two machine words.
    """

    __slots__ = ("_in_order", "_models", "_ranks")

    def __init__(self, pairs: Iterable[tuple[int, Mapping[str, str]]] = ()) -> None:
        self._ranks = array("q")
        self._models: list[Mapping[str, str]] = []
        self._in_order = True
        for rank, model in pairs:
            self.add(rank, model)

    def add(self, rank: int, model: Mapping[str, str]) -> None:
        if self._ranks and rank < self._ranks[-1]:
            self._in_order = False
        self._ranks.append(rank)
        self._models.append(model)

    def append(self, pair: tuple[int, Mapping[str, str]]) -> None:
        self.add(*pair)

    def __iter__(self) -> Iterator[tuple[int, Mapping[str, str]]]:
        return zip(self._ranks, self._models, strict=True)

    def __len__(self) -> int:
        return len(self._models)

    def ranked(self) -> list[Mapping[str, str]]:
        """The models in rank order (ties in arrival order)."""
        if self._in_order:
            return list(self._models)
        order = sorted(range(len(self._ranks)), key=self._ranks.__getitem__)
        return [self._models[i] for i in order]


def build_manifest(
    filter_name: str, models: Sequence[Mapping[str, str]], timestamp: str
) -> dict[str, Any]:
    return {
        "filter": filter_name,
        "models": [
            {"id": m.id, "slug": m.slug, "name": m.name}
            if isinstance(m, ManifestModel)
            else {"id": m["id"], "slug": m["slug"], "name": m["name"]}
            for m in models
        ],
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


#: Stands in for the model list while the rest of a document is encoded (a NUL cannot occur
#: unescaped in JSON, so the encoded marker cannot collide with any value).
_MARKER = "\x00models\x00"
_CHUNK_MODELS = 10_000


def encode_json_chunks(document: Any) -> Iterator[bytes]:
    """encode_json's exact bytes, in pieces: a document's ``models`` list (a manifest's or
    all-models.json's) is encoded some thousands at a time, so that the whole encoding of a
    million models (over 100 MB) is never held at once.
    """
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list) or not models:
        yield encode_json(document)
        return
    head, _, tail = encode_json({**document, "models": _MARKER}).partition(orjson.dumps(_MARKER))
    yield head + b"[\n"
    for start in range(0, len(models), _CHUNK_MODELS):
        chunk = orjson.dumps(models[start : start + _CHUNK_MODELS], option=orjson.OPT_INDENT_2)
        # The chunk is a list at depth 0; in the document it sits at depth 1 (two more spaces)
        # and joins its neighbours with a comma. Strings hold no raw newline in JSON.
        body = chunk[2:-2].replace(b"\n", b"\n  ")
        yield (b",\n  " if start else b"  ") + body
    yield b"\n  ]" + tail


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) sees old or new, never half.

    The temporary file lives in the same folder (a rename is atomic only within one file
    system) and is fsynced before the rename; the folder is fsynced after it so the rename
    itself survives a power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            if isinstance(data, bytes):
                tmp.write(data)
            else:
                tmp.writelines(data)
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
    manifest_dir: Path,
    filters: Iterable[Filter],
    written: Mapping[tuple[str, str], Sequence[Mapping[str, str]]] | None = None,
) -> tuple[list[SourceManifest], list[str]]:
    """The readable manifests of ``filters`` in order, and the problems with the rest.

    ``written`` holds the models of manifests this process has just written, by filter key:
    those are taken as they are rather than read back (the same models, without holding a
    second copy of every manifest at once).
    """
    found: list[SourceManifest] = []
    problems: list[str] = []
    for filter_ in filters:
        if written is not None and filter_.key in written:
            found.append(SourceManifest(filter_.source, written[filter_.key]))
            continue
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
