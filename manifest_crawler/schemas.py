"""The JSON Schemas (draft 2020-12) of every JSON file the crawler writes, and their validation.

The schemas live in the repository's ``schemas/`` folder, one level above this package, where
the site's build finds them too (to generate TypeScript types); the project is installed
editable (``-e .`` in requirements.txt), so that path is the checkout's.

Validation runs through jsonschema-rs, a complete draft 2020-12 implementation: for an
all-models.json of 1,000,000 models the pure-Python ``jsonschema`` needs about 84 s,
jsonschema-rs about 0.3 s (the patterns use no lookaround, which keeps its regex engine on the
fast path). The tests check the schemas, and that both libraries agree, with ``jsonschema``.
Pure: no Scrapy.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

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


class SchemaError(ValueError):
    """A document does not match its schema; the message names the file and the first error."""


def schema_path(name: str, directory: Path | None = None) -> Path:
    return (directory or SCHEMA_DIR) / name


def load_schema(name: str, directory: Path | None = None) -> dict[str, Any]:
    path = schema_path(name, directory)
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: schema not found; the crawler reads its schemas from the checkout's "
            f"schemas/ folder (install the project editable: pip install -e .)"
        ) from None


class Validators:
    """One compiled validator per schema, built once per run."""

    def __init__(self, directory: Path | None = None, names: Iterable[str] = JSON_SCHEMAS) -> None:
        # offline: a schema is never a reason to reach the network.
        self._validators: dict[str, Any] = {
            name: jsonschema_rs.validator_for(load_schema(name, directory), offline=True)
            for name in names
        }

    def check(self, schema: str, document: Any, file: str) -> None:
        """Raise SchemaError naming ``file`` unless ``document`` matches ``schema``."""
        validator = self._validators[schema]
        if validator.is_valid(document):
            return
        error = next(iter(validator.iter_errors(document)))
        raise SchemaError(f"{file} does not match {schema}: {describe_error(error)}")


def describe_error(error: Any) -> str:
    """Where and why, short: an ``anyOf`` miss names the failures of its closest branch."""
    where = "/" + "/".join(str(part) for part in error.instance_path)
    message = error.message
    context = getattr(error.kind, "context", None)
    if context:
        # The branch with the fewest errors is the shape the instance was most likely meant to
        # have (a CivitAI model missing its name fails the Hugging Face branch on every field).
        closest = min(context, key=len)
        if closest:
            message = "; ".join(_short(e.message) for e in closest)
            where = "/" + "/".join(str(part) for part in closest[0].instance_path)
    return f"at {where}: {_short(message)}"


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
