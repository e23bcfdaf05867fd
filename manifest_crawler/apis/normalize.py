"""Pure rules that turn an API's raw id and name into the site's ``id``/``slug``/``name``."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

# Hugging Face repo ids are ``owner/name``; neither part contains ``--`` nor starts or ends
# with ``-`` or ``.`` (the Hub's own rule), which is what lets the slug ``owner--name`` map back
# to exactly one repo: ``a-/b`` would otherwise share the slug ``a---b`` with ``a/-b``.
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_HF_ID_RE = re.compile(rf"{_HF_PART}/{_HF_PART}\Z")


class InvalidModel(ValueError):
    """A raw model the site cannot route to; ``reason`` is a short stats-friendly code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class NormalModel(NamedTuple):
    id: str
    slug: str
    name: str


def id_slug(model_id: str) -> str:
    """The slug of a site id whose slug follows from it: every ``/`` as ``--`` (Hugging Face's
    ``owner/name`` becomes ``owner--name``; an id without ``/`` is its own slug)."""
    return model_id.replace("/", "--")


def civitai_id(raw_id: Any) -> str:
    """``civitai-<n>`` for a positive integer id (or all-digit string); else InvalidModel."""
    if isinstance(raw_id, bool):
        raise InvalidModel("invalid_id", f"CivitAI id {raw_id!r} is not an integer")
    if isinstance(raw_id, int):
        number = raw_id
    elif isinstance(raw_id, str) and raw_id.isascii() and raw_id.isdigit():
        number = int(raw_id)
    elif raw_id is None:
        raise InvalidModel("missing_id", "CivitAI item has no id")
    else:
        raise InvalidModel("invalid_id", f"CivitAI id {raw_id!r} is not an integer")
    if number <= 0:
        raise InvalidModel("invalid_id", f"CivitAI id {raw_id!r} is not positive")
    return f"civitai-{number}"


def hf_id(raw_id: Any) -> str:
    """The repo id itself when it is a routable ``owner/name``; else InvalidModel."""
    if raw_id is None:
        raise InvalidModel("missing_id", "Hugging Face entry has no id")
    if (
        not isinstance(raw_id, str)
        or not _HF_ID_RE.match(raw_id)
        or "--" in raw_id
        or ".." in raw_id
    ):
        raise InvalidModel("invalid_id", f"Hugging Face id {raw_id!r} is not owner/name")
    return raw_id


_CIVITAI_SITE_ID_RE = re.compile(r"civitai-[1-9][0-9]*\Z")


def is_site_id(model_id: Any) -> bool:
    """Whether ``model_id`` is a site id as this module makes them (of either source): what a
    file written by an earlier run must hold before it is trusted."""
    if not isinstance(model_id, str):
        return False
    if _CIVITAI_SITE_ID_RE.match(model_id):
        return True
    try:
        return hf_id(model_id) == model_id
    except InvalidModel:
        return False


def canonical_id(source: str, raw_id: Any) -> str:
    """The site id of a raw model of ``source`` (raises InvalidModel)."""
    if source == "civitai":
        return civitai_id(raw_id)
    if source == "huggingface":
        return hf_id(raw_id)
    raise InvalidModel("unknown_source", f"unknown source {source!r}")


def normalize_model(source: str, raw_id: Any, raw_name: Any) -> NormalModel:
    """id, slug and display name of a raw model (raises InvalidModel)."""
    model_id = canonical_id(source, raw_id)
    if source == "huggingface":
        # The site shows the repo id; the API's name-less entries are normal.
        return NormalModel(model_id, id_slug(model_id), model_id)
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise InvalidModel("missing_name", f"{source} model {model_id} has no name")
    return NormalModel(model_id, model_id, raw_name.strip())
