"""The JSON Schemas (draft 2020-12) of every JSON file the crawler writes, and their validation.

The schemas are package data, in ``manifest_crawler/data/schemas/``, read through
importlib.resources: from a checkout, an installed wheel and a zipped Scrapyd egg alike. The
site's TypeScript types are generated from the same files (site-types/).

Validation runs through jsonschema-rs, a complete draft 2020-12 implementation: for an
all-models.json of 1,000,000 models the pure-Python ``jsonschema`` needs about 84 s,
jsonschema-rs about 0.3 s (the patterns use no lookaround, which keeps its regex engine on the
fast path). The tests check the schemas, and that both libraries agree, with ``jsonschema``.
Pure: no Scrapy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema_rs
import orjson

from manifest_crawler.output.jsonstream import (
    JsonPath,
    encode_chunks,
    has_streamed,
    skeleton,
)

#: A folder on disk, or inside a zipped egg (hence Traversable, read as bytes, never by path).
SCHEMA_DIR: Traversable = files("manifest_crawler") / "data" / "schemas"

MANIFEST_SCHEMA = "manifest.schema.json"
ALL_MODELS_SCHEMA = "all-models.schema.json"
RUN_REPORT_SCHEMA = "run-report.schema.json"
CHANGES_SCHEMA = "changes.schema.json"
JSON_SCHEMAS: tuple[str, ...] = (
    MANIFEST_SCHEMA,
    ALL_MODELS_SCHEMA,
    RUN_REPORT_SCHEMA,
    CHANGES_SCHEMA,
)
#: XML Schema of the sitemaps.org protocol, as far as the sitemap writer uses it.
SITEMAP_XSD = "sitemap.xsd"

_MAX_MESSAGE = 300
#: An array schema made only of these is checked chunk by chunk exactly: every other keyword
#: (uniqueItems, maxItems, contains, allOf, …) may be about the whole array.
_CHUNKABLE_KEYWORDS = frozenset({"type", "items", "description", "title", "$comment"})


class SchemaError(ValueError):
    """A document does not match its schema; the message names the file and the first error."""


def schema_path(name: str, directory: Traversable | None = None) -> Traversable:
    return (directory or SCHEMA_DIR) / name


def schema_bytes(name: str, directory: Traversable | None = None) -> bytes:
    path = schema_path(name, directory)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: schema not found; the schemas are the package data of manifest_crawler "
            f"(data/schemas/): reinstall the package"
        ) from None


def load_schema(name: str, directory: Traversable | None = None) -> dict[str, Any]:
    return orjson.loads(schema_bytes(name, directory))


class Validators:
    """One compiled validator per schema, built once per run.

    A document may hold StreamedArrays (output/jsonstream.py): the rest of it is checked
    against the schema as a whole, each streamed array a chunk at a time against the schema of
    that array, so that a million-model document is never held as Python objects.
    """

    def __init__(
        self, directory: Traversable | None = None, names: Iterable[str] = JSON_SCHEMAS
    ) -> None:
        self._schemas: dict[str, dict[str, Any]] = {
            name: load_schema(name, directory) for name in names
        }
        # offline: a schema is never a reason to reach the network.
        self._validators: dict[str, Any] = {
            name: jsonschema_rs.validator_for(schema, offline=True)
            for name, schema in self._schemas.items()
        }
        #: (schema, path with every array index as None) -> validator of that array's chunks,
        #: None when it must be checked whole
        self._array_validators: dict[tuple[str, tuple[str | None, ...]], Any] = {}

    def check(self, schema: str, document: Any, file: str) -> None:
        """Raise SchemaError naming ``file`` unless ``document`` matches ``schema``: checked
        exactly as :meth:`encode_checked` checks it while writing, the bytes discarded."""
        if not has_streamed(document):
            self._check_whole(schema, document, file)
            return
        for _ in self.encode_checked(schema, document, file):
            pass

    def encode_checked(self, schema: str, document: Any, file: str) -> Iterator[bytes]:
        """The document's bytes (jsonstream.encode_chunks), checked as they are produced: the
        generator raises SchemaError before yielding a byte of a document whose non-streamed
        part is invalid, and at the first invalid chunk of a streamed array; with
        manifests.write_atomic, the file on disk is then left as it was."""
        self._check_whole(schema, document, file)

        def check(path: JsonPath, start: int, items: list[Any]) -> None:
            if self.checks_in_chunks(schema, path):
                self._check_chunk(schema, file, path, start, items)

        return _encodable(encode_chunks(document, check), file)

    def _check_whole(self, schema: str, document: Any, file: str) -> None:
        validator = self._validators[schema]
        plain = (
            skeleton(document, lambda path: not self.checks_in_chunks(schema, path))
            if has_streamed(document)
            else document
        )
        try:
            if validator.is_valid(plain):
                return
        except UnicodeEncodeError as exc:
            raise SchemaError(_unencodable(file, exc)) from None
        error = next(iter(validator.iter_errors(plain)))
        raise SchemaError(f"{file} does not match {schema}: {describe_error(error)}")

    def _check_chunk(
        self, schema: str, file: str, path: JsonPath, start: int, items: list[Any]
    ) -> None:
        validator = self._array_validator(schema, path)
        if validator.is_valid(items):
            return
        error = next(iter(validator.iter_errors(items)))
        offset = (*path, int(error.instance_path[0]) + start) if error.instance_path else path
        raise SchemaError(
            f"{file} does not match {schema}: "
            f"{describe_error(error, prefix=offset, skip=1 if error.instance_path else 0)}"
        )

    def checks_in_chunks(self, schema: str, path: JsonPath) -> bool:
        """Whether a streamed array at ``path`` is checked a chunk at a time. Not when its
        schema may have a rule about the whole array (uniqueItems, maxItems, …; any keyword
        but type and items): it is then checked with the rest of the document, materialised,
        since checking chunk by chunk could be wrong. Our schemas' big arrays are plain."""
        return self._array_validator(schema, path) is not None

    def _array_validator(self, schema: str, path: JsonPath) -> Any:
        key = (schema, tuple(None if isinstance(part, int) else part for part in path))
        if key not in self._array_validators:
            root = self._schemas[schema]
            try:
                subschema = subschema_at(root, path)
            except KeyError:
                subschema = None  # not a plain path of properties and items: check it whole
            self._array_validators[key] = (
                None
                if subschema is None or not subschema.keys() <= _CHUNKABLE_KEYWORDS
                else jsonschema_rs.validator_for(
                    {"$defs": root.get("$defs", {}), **subschema}, offline=True
                )
            )
        return self._array_validators[key]


def _encodable(chunks: Iterator[bytes], file: str) -> Iterator[bytes]:
    """``chunks``, a value JSON cannot hold (a string with a lone surrogate: not valid UTF-8)
    raising SchemaError like any other invalid value, so the file is refused, not the run."""
    try:
        yield from chunks
    except (orjson.JSONEncodeError, UnicodeEncodeError) as exc:
        raise SchemaError(_unencodable(file, exc)) from None


def _unencodable(file: str, error: Exception) -> str:
    return f"{file} cannot be encoded as JSON: {error}"


def subschema_at(root: Mapping[str, Any], path: JsonPath) -> Mapping[str, Any]:
    """The schema an instance at ``path`` is checked against, following ``properties``,
    ``items`` and local ``$ref``s: enough for the arrays our own schemas declare."""
    node = _resolve(root, root)
    for part in path:
        # An index goes into an array's items, a key into an object's properties.
        child = node.get("items") if isinstance(part, int) else node.get("properties", {}).get(part)
        if not isinstance(child, Mapping):
            raise KeyError(f"no schema for {'/'.join(map(str, path))} in {root.get('$id')}")
        node = child
        node = _resolve(root, node)
    return node


def _resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise KeyError(f"only local $refs are followed, not {ref}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def describe_error(error: Any, prefix: JsonPath = (), skip: int = 0) -> str:
    """Where and why, short: an ``anyOf`` miss names the failures of its closest branch.

    ``prefix`` replaces the first ``skip`` parts of the error's path (an error in a chunk of a
    streamed array is reported at its place in the whole document).
    """

    def where_of(path: Any) -> str:
        return "/" + "/".join(str(part) for part in (*prefix, *list(path)[skip:]))

    where = where_of(error.instance_path)
    message = error.message
    context = getattr(error.kind, "context", None)
    if context:
        # The branch with the fewest errors is the shape the instance was most likely meant to
        # have (a CivitAI model missing its name fails the Hugging Face branch on every field).
        closest = min(context, key=len)
        if closest:
            message = "; ".join(_short(e.message) for e in closest)
            where = where_of(closest[0].instance_path)
    return f"at {where}: {_short(message)}"


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
