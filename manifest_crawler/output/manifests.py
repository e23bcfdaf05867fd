"""Pure manifest logic: file names, document shapes, the all-models merge and atomic writes."""

from __future__ import annotations

import contextlib
import operator
import os
import sys
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import ijson
import msgspec

from manifest_crawler.apis.normalize import id_slug, is_site_id
from manifest_crawler.files import NotARegularFile, open_regular
from manifest_crawler.filters import Filter, filter_file_stem
from manifest_crawler.output.jsonstream import StreamedArray
from manifest_crawler.output.jsonstream import (
    encode_json as encode_json,  # the writers' one encoding
)

ALL_MODELS_FILE = "all-models.json"

#: The file-name prefix of each source's manifests (the names the site already reads).
SOURCE_PREFIXES: Mapping[str, str] = {"civitai": "civitai", "huggingface": "hf"}
#: The setting holding each source's API endpoint.
SOURCE_URL_SETTINGS: Mapping[str, str] = {"civitai": "CIVITAI_API_URL", "huggingface": "HF_API_URL"}
#: A manifest's ``origin`` when its models came from the bundled emulator (MANIFEST_OFFLINE).
EMULATOR_ORIGIN = "emulator"


class ManifestError(ValueError):
    """A manifest on disk is unreadable or not of the expected shape."""


class OtherOrigin(ManifestError):
    """A file on disk holds models of another origin than this run's (the emulator's, or
    another endpoint's): it is no fallback and no baseline for this run."""

    def __init__(self, path: Path, found: str | None, wanted: str | None) -> None:
        super().__init__(f"{path}: from {found or 'an unknown origin'}, not {wanted}")
        self.path = path
        self.found = found


class FilesNotWritten(OSError):
    """A file of a run could not be staged or put in place; nothing of the run was replaced.

    ``str()`` is one line naming the file (or folder) and the OS error."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error) or type(error).__name__
        # The OS names the temporary or a folder on the way when that is what failed.
        where = error.filename
        detail = f" ({where})" if where is not None and str(where) != str(path) else ""
        super().__init__(f"cannot write {path}: {reason}{detail}")
        self.path = path
        self.error = error


def manifest_filename(source: str, filter_name: str) -> str:
    """``civitai-<name with / as ->.json`` or ``hf-<name with / as ->.json``."""
    return f"{SOURCE_PREFIXES[source]}-{filter_file_stem(filter_name)}.json"


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with a ``Z`` and second precision, e.g. ``2026-11-24T10:00:00Z``."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _FieldMapping(Mapping[str, str]):
    """A slotted dataclass of strings read as a mapping of its fields, in order (a dataclass's
    ``__match_args__`` are its field names): orjson encodes the dataclass as that object."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]]

    def __getitem__(self, key: str) -> str:
        if key in self.__match_args__:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__match_args__)

    def __len__(self) -> int:
        return len(self.__match_args__)


@dataclass(slots=True, eq=False)
class ManifestModel(_FieldMapping):
    """One model as a manifest lists it: a read-only mapping of ``id``, ``slug`` and ``name``.

    The writer keeps one per distinct model not kept as its id alone (see Entry), shared by
    every filter that lists it, with its strings interned. orjson encodes it as the manifest's
    ``{"id", "slug", "name"}`` object directly.
    """

    id: str
    slug: str
    name: str


@dataclass(slots=True, eq=False)
class SiteModel(_FieldMapping):
    """One model of all-models.json: a manifest's model and its source."""

    id: str
    slug: str
    name: str
    source: str


@dataclass(slots=True, eq=False)
class PreviousModel(_FieldMapping):
    """What the run diff needs of a model in the all-models.json a run replaces."""

    id: str
    slug: str
    source: str


#: A model as the writer keeps it: its id alone when its slug and name follow from the id
#: (``slug`` = ``id_slug(id)``, ``name`` = the id: every Hugging Face model),
#: else a ManifestModel (or a mapping of the three, as a resumed job reads them back). At a
#: million models, the slug strings and objects that the first form saves are 150 MB.
Entry = str | Mapping[str, str]


def compact_entry(model_id: str, slug: str, name: str) -> str | None:
    """``model_id`` when it is all an Entry needs to give back this slug and name, else None."""
    if name == model_id and slug == id_slug(model_id):
        return model_id
    return None


def entry_id(entry: Entry) -> str:
    return entry if isinstance(entry, str) else entry["id"]


def expand_entry(entry: Entry) -> ManifestModel:
    if isinstance(entry, str):
        return ManifestModel(entry, id_slug(entry), entry)
    if isinstance(entry, ManifestModel):
        return entry
    return ManifestModel(entry["id"], entry["slug"], entry["name"])


class SiteModels(Sequence[SiteModel]):
    """all-models.json's models: each an Entry and its source, seen as SiteModels made as they
    are read (9 bytes a model kept, rather than an object of four strings)."""

    __slots__ = ("_entries", "_source_names", "_sources")

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._sources = bytearray()
        self._source_names: list[str] = []

    def append(self, entry: Entry, source: str) -> None:
        if source not in self._source_names:
            self._source_names.append(source)
        self._entries.append(entry)
        self._sources.append(self._source_names.index(source))

    def __len__(self) -> int:
        return len(self._entries)

    def _site_model(self, index: int) -> SiteModel:
        # A Hugging Face id becomes a SiteModel directly, without a ManifestModel on the way.
        entry = self._entries[index]
        source = self._source_names[self._sources[index]]
        if type(entry) is str:
            return SiteModel(entry, id_slug(entry), entry, source)
        model = expand_entry(entry)
        return SiteModel(model.id, model.slug, model.name, source)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._site_model(i) for i in range(*index.indices(len(self)))]
        # The list and the bytearray have one length: they agree on any index, negative or
        # out of range (IndexError).
        return self._site_model(operator.index(index))

    def ids(self) -> Iterator[str]:
        """The models' ids, in order, without making a SiteModel of each."""
        return map(entry_id, self._entries)


def model_ids(models: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """The ids of all-models.json's ``models``: SiteModels give theirs without making a model
    of each: 0.13 µs an id instead of 0.85 (measured over 200,000 models). A rebuild makes
    sets of the run's and the previous run's ids to find the new and the gone models."""
    if isinstance(models, SiteModels):
        return models.ids()
    return (model["id"] for model in models)


class CollectedModels:
    """One filter's models as the writer collects them: ``(rank, entry)`` pairs, compactly.

    Iterating yields the pairs (as the list it replaces did); the ranks live in an array and
    the entries are interned ids or shared models, so a pair costs two machine words.
    """

    __slots__ = ("_in_order", "_models", "_ranks")

    def __init__(self, pairs: Iterable[tuple[int, Entry]] = ()) -> None:
        self._ranks = array("q")
        self._models: list[Entry] = []
        self._in_order = True
        for rank, model in pairs:
            self.add(rank, model)

    def add(self, rank: int, model: Entry) -> None:
        if self._ranks and rank < self._ranks[-1]:
            self._in_order = False
        self._ranks.append(rank)
        self._models.append(model)

    def append(self, pair: tuple[int, Entry]) -> None:
        self.add(*pair)

    def __iter__(self) -> Iterator[tuple[int, Entry]]:
        return zip(self._ranks, self._models, strict=True)

    def __len__(self) -> int:
        return len(self._models)

    def ranked(self) -> list[Entry]:
        """The models in rank order (ties in arrival order)."""
        if self._in_order:
            return list(self._models)
        order = sorted(range(len(self._ranks)), key=self._ranks.__getitem__)
        return [self._models[i] for i in order]


def build_manifest(
    filter_name: str, models: Sequence[Entry], timestamp: str, origin: str
) -> dict[str, Any]:
    """A manifest document; its models stream (jsonstream), each made as it is written.
    ``origin`` says where the models came from: the API endpoint, or ``"emulator"``."""
    return {
        "filter": filter_name,
        "origin": origin,
        "models": StreamedArray(models, make=expand_entry),
        "timestamp": timestamp,
    }


@dataclass(frozen=True, slots=True)
class SourceManifest:
    """The models of one filter's manifest, tagged with the filter's source."""

    source: str
    models: Sequence[Entry]


def merge_all_models(
    manifests: Iterable[SourceManifest], timestamp: str, origins: Mapping[str, str]
) -> dict[str, Any]:
    """The deduplicated union of manifests, in first-appearance order.

    Callers pass manifests in filters.json order (CivitAI filters, then Hugging Face), so the
    same inputs always give the same document apart from the timestamp.
    """
    seen: set[str] = set()
    models = SiteModels()
    per_source: dict[str, int] = dict.fromkeys(SOURCE_PREFIXES, 0)
    for manifest in manifests:
        source = manifest.source
        for entry in manifest.models:
            model_id = entry_id(entry)
            if model_id in seen:
                continue
            seen.add(model_id)
            models.append(entry, source)
            per_source[source] = per_source.get(source, 0) + 1
    return {
        "totalModels": len(models),
        **per_source,
        "origins": dict(origins),
        "models": StreamedArray(models),
        "timestamp": timestamp,
    }


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) sees old or new, never half."""
    with AtomicFiles() as files:
        files.write(path, data)


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicFiles:
    """Files replaced together, each atomically, with the fsyncs done at once.

    ``write`` puts a file's data in a temporary in the target's folder (a rename is atomic
    only within one file system); leaving the ``with`` block commits: every temporary is
    fsynced, all at the same time, then each is renamed over its target in the order written,
    then the files given to ``remove`` are deleted, then each folder is fsynced once so that
    the renames survive a power loss. No rename happens before every temporary is on disk, so
    a crash leaves each target old or new, never half. Leaving the block by an exception, or
    an OS error while staging, removes the temporaries and replaces nothing: every error of
    the file system (ENOSPC, EACCES, EROFS, a file where a folder should be, …) is raised as
    FilesNotWritten naming the file.

    A new file gets the mode any new file gets under the process's umask (0644 under 022):
    ``mkstemp`` makes its temporaries 0600. Folders are made as ``mkdir`` makes them.

    Concurrent fsyncs share the file system's journal commits: 114 small files took 21 ms
    this way and 53 ms written and fsynced one by one, with their folder each time (measured).
    """

    #: Past a few threads, concurrent fsyncs gained nothing more (8 and 32 measured alike).
    FSYNC_THREADS = 8

    def __init__(self) -> None:
        #: (temporary, target) in the order written.
        self._pending: list[tuple[str, Path]] = []
        #: Files deleted once every target is in place.
        self._removals: list[Path] = []
        self._mode = 0o666 & ~current_umask()

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def write(self, path: Path, data: bytes | Iterable[bytes]) -> None:
        """Stage ``data`` for ``path``. If ``data`` raises (an iterable checked as it encodes),
        this file's temporary is removed and the error propagates; the others stay staged.
        An OS error is raised as FilesNotWritten (the others stay staged as well)."""
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as tmp:
                os.fchmod(tmp.fileno(), self._mode)
                if isinstance(data, bytes):
                    tmp.write(data)
                else:
                    tmp.writelines(data)
        except BaseException as exc:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
            if isinstance(exc, OSError):
                raise FilesNotWritten(path, exc) from exc
            raise
        self._pending.append((tmp_name, path))

    def remove(self, path: Path) -> None:
        """Delete ``path`` (if it is there) when the staged files are committed."""
        self._removals.append(path)

    def commit(self) -> None:
        pending, self._pending = self._pending, []
        removals, self._removals = self._removals, []
        renamed = 0
        current: Path | None = None
        try:
            temporaries = [tmp_name for tmp_name, _ in pending]
            if len(temporaries) > 1:
                with ThreadPoolExecutor(min(self.FSYNC_THREADS, len(temporaries))) as pool:
                    # list(): the first error is raised here, not lost in a generator.
                    list(pool.map(_fsync_path, temporaries))
            else:
                for tmp_name in temporaries:
                    _fsync_path(tmp_name)
            for tmp_name, path in pending:
                current = path
                os.replace(tmp_name, path)
                renamed += 1
            for path in removals:
                current = path
                path.unlink(missing_ok=True)
        except BaseException as exc:
            # What was renamed is in place; the temporaries not yet renamed are removed.
            self._pending = pending[renamed:]
            self.discard()
            if isinstance(exc, OSError):
                where = current or (pending[0][1] if pending else Path("."))
                raise FilesNotWritten(where, exc) from exc
            raise
        for folder in dict.fromkeys(path.parent for _, path in pending):
            with contextlib.suppress(OSError):
                # The files are in place; a folder that refuses an fsync loses no data now.
                _fsync_path(folder)

    def discard(self) -> None:
        pending, self._pending = self._pending, []
        self._removals = []
        for tmp_name, _ in pending:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that ``write_atomic`` left behind when a process was killed
    mid-write; they are invisible to the site (dot files) but would pile up."""
    removed = []
    for path in folder.glob(".*.json.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _models_in(
    path: Path,
    kind: type[_FieldMapping],
    what: str,
    origin_key: str | None = None,
    origin: Any = None,
) -> Iterator[dict[str, Any]] | None:
    """The model objects of the ``models`` list of the JSON file at ``path``, parsed as they
    are read (a few KB at a time: a previous all-models.json of a million models is 190 MB,
    and several times that as Python objects), each checked to have ``keys`` as strings and a
    site id. None when there is no such file (or its folder is a file); ManifestError naming
    the file when it cannot be read, and OtherOrigin when its ``origin_key`` is not ``origin``
    (checked first); the iterator raises ManifestError too.
    """
    try:
        file = open_regular(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except NotARegularFile as exc:
        raise ManifestError(str(exc)) from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if origin_key is not None:
        with contextlib.closing(file):
            head = file.read(64).lstrip()
            if not head:
                raise ManifestError(f"{path}: not valid JSON: the file is empty")
            if not head.startswith(b"{"):
                raise ManifestError(f"{path}: not {what} (no models list)")
            file.seek(0)
            found = _top_level_value(path, file, origin_key)
        if found != origin:
            raise OtherOrigin(path, _origin_text(found), _origin_text(origin))
        try:
            file = open_regular(path)
        except OSError as exc:  # replaced since it was opened above
            raise ManifestError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return _checked_models(path, file, kind.__match_args__, what)


def _origin_text(origin: Any) -> str | None:
    if isinstance(origin, str):
        return origin
    if isinstance(origin, dict):
        return ", ".join(f"{source}: {value}" for source, value in origin.items())
    return None


def _model_problem(model: Mapping[str, str]) -> str | None:
    """Why a previous file's model is not one a run writes (the schemas' rules, which this
    run's all-models.json and changes.json must pass with the model in them), or None."""
    model_id = model["id"]
    if not is_site_id(model_id):
        return f"has the id {model_id!r}, which no run makes"
    if model["slug"] != id_slug(model_id):
        return f"has the slug {model['slug']!r}, not {id_slug(model_id)!r}"
    if "name" in model and not model["name"].strip():
        return "has a blank name"
    if "source" in model and model["source"] not in SOURCE_PREFIXES:
        return f"has the unknown source {model['source']!r}"
    return None


def _top_level_value(path: Path, file: BinaryIO, key: str) -> Any:
    try:
        return next(ijson.items(file, key), None)
    except ijson.JSONError as exc:
        raise ManifestError(f"{path}: not valid JSON: {str(exc).splitlines()[0]}") from None


def _checked_models(
    path: Path, file: BinaryIO, keys: tuple[str, ...], what: str
) -> Iterator[dict[str, Any]]:
    expected = f"models of {', '.join(keys)} as strings"
    count = 0
    with file:
        try:
            for model in ijson.items(file, "models.item"):
                if not isinstance(model, dict) or not all(
                    isinstance(model.get(key), str) for key in keys
                ):
                    raise ManifestError(f"{path}: not {what} ({expected}) at model {count}")
                problem = _model_problem(model)
                if problem is not None:
                    raise ManifestError(f"{path}: not {what}: model {count} {problem}")
                count += 1
                yield model
            if count == 0:
                # No model: the file is small; is it an object with a models list at all?
                file.seek(0)
                document = msgspec.json.decode(file.read())
                if not isinstance(document, dict) or not isinstance(document.get("models"), list):
                    raise ManifestError(f"{path}: not {what} (no models list)")
        except (ijson.JSONError, msgspec.DecodeError) as exc:
            raise ManifestError(f"{path}: not valid JSON: {str(exc).splitlines()[0]}") from None


def read_manifest_models(path: Path, origin: str) -> list[Entry] | None:
    """The models of a per-filter manifest on disk, as compact entries; None when there is no
    such file.

    Raises ManifestError naming the file when it exists but is not a valid manifest, and
    OtherOrigin when its models came from another origin than ``origin``.
    """
    models = _models_in(path, ManifestModel, "a manifest", "origin", origin)
    if models is None:
        return None
    return [_entry(sys.intern(m["id"]), m["slug"], m["name"]) for m in models]


def _entry(model_id: str, slug: str, name: str) -> Entry:
    if compact_entry(model_id, slug, name) is not None:
        return model_id
    return ManifestModel(model_id, sys.intern(slug), name)


def read_manifest_ids(path: Path, origin: str) -> list[str] | None:
    """The model ids of a per-filter manifest, in order, interned: a previous run's ids are
    mostly this run's too, and then cost one pointer each. None when there is no such file;
    ManifestError or OtherOrigin as read_manifest_models raises them."""
    models = _models_in(path, ManifestModel, "a manifest", "origin", origin)
    return None if models is None else [sys.intern(m["id"]) for m in models]


def read_previous_site_models(
    path: Path, origins: Mapping[str, str]
) -> tuple[list[PreviousModel], str | None] | None:
    """The models (id, slug, source; strings interned) and timestamp of an all-models.json;
    None when there is no such file; OtherOrigin unless its ``origins`` are ``origins``."""
    models = _models_in(path, PreviousModel, "an all-models.json", "origins", dict(origins))
    if models is None:
        return None
    previous = [
        PreviousModel(sys.intern(m["id"]), sys.intern(m["slug"]), sys.intern(m["source"]))
        for m in models
    ]
    # A second pass for one value, as cheap as the first and without holding the file.
    try:
        with open_regular(path) as file:
            timestamp = next(ijson.items(file, "timestamp"), None)
    except (OSError, ijson.JSONError):
        timestamp = None
    return previous, timestamp if isinstance(timestamp, str) else None


def manifests_on_disk(
    manifest_dir: Path,
    filters: Iterable[Filter],
    written: Mapping[tuple[str, str], Sequence[Entry]] | None = None,
    *,
    origins: Mapping[str, str],
) -> tuple[list[SourceManifest], list[str]]:
    """The readable manifests of ``filters`` in order, and the problems with the rest.
    A manifest whose models came from another origin than ``origins`` gives for its source
    (the emulator's, in a run against the real API) is one of the rest.

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
            models = read_manifest_models(path, origins[filter_.source])
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        if models is None:
            problems.append(f"{path}: missing (filter {filter_.source}:{filter_.name})")
            continue
        found.append(SourceManifest(filter_.source, models))
    return found, problems
