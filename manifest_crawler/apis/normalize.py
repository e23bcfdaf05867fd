"""Pure rules that turn an API's raw id and name into the site's ``id``/``slug``/``name``."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from manifest_crawler.text import described, one_line_label

# Hugging Face repo ids are ``owner/name``; neither part contains ``--`` nor starts or ends
# with ``-`` or ``.`` (the Hub's own rule), which is what lets the slug ``owner--name`` map back
# to exactly one repo: ``a-/b`` would otherwise share the slug ``a---b`` with ``a/-b``.
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_HF_ID_RE = re.compile(rf"{_HF_PART}/{_HF_PART}\Z")
#: The Hub allows 96 characters for a repo name and fewer for its owner.
MAX_HF_ID_LENGTH = 200
#: CivitAI's ids are database integers; anything past 64 bits is not one.
MAX_CIVITAI_ID = 2**63 - 1
#: A display name longer than this is no name (CivitAI's are at most a few hundred
#: characters): the item is dropped rather than a megabyte written into every manifest.
MAX_NAME_LENGTH = 1000


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
    """``civitai-<n>`` for a positive integer id within 64 bits (or such an all-digit
    string); else InvalidModel."""
    if isinstance(raw_id, bool):
        raise InvalidModel("invalid_id", f"CivitAI id {described(raw_id)} is not an integer")
    if isinstance(raw_id, int):
        number = raw_id
    elif isinstance(raw_id, str) and raw_id.isascii() and raw_id.isdigit():
        # Bounded before int(): thousands of digits are slow to convert, or refused.
        number = int(raw_id) if len(raw_id) <= 19 else MAX_CIVITAI_ID + 1
    elif raw_id is None:
        raise InvalidModel("missing_id", "CivitAI item has no id")
    else:
        raise InvalidModel("invalid_id", f"CivitAI id {described(raw_id)} is not an integer")
    if number <= 0:
        raise InvalidModel("invalid_id", f"CivitAI id {described(raw_id)} is not positive")
    if number > MAX_CIVITAI_ID:
        raise InvalidModel("invalid_id", f"CivitAI id {described(raw_id)} is past 64 bits")
    return f"civitai-{number}"


def hf_id(raw_id: Any) -> str:
    """The repo id itself when it is a routable ``owner/name``; else InvalidModel."""
    if raw_id is None:
        raise InvalidModel("missing_id", "Hugging Face entry has no id")
    if (
        not isinstance(raw_id, str)
        or len(raw_id) > MAX_HF_ID_LENGTH
        or not _HF_ID_RE.match(raw_id)
        or "--" in raw_id
        or ".." in raw_id
    ):
        raise InvalidModel("invalid_id", f"Hugging Face id {described(raw_id)} is not owner/name")
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


def display_name(raw_name: Any, model_id: str) -> str:
    """The name a manifest shows, repaired (a lone surrogate becomes U+FFFD, each run of
    control characters one space) and stripped; InvalidModel when there is none
    (``missing_name``) or it is longer than MAX_NAME_LENGTH (``name_too_long``)."""
    if not isinstance(raw_name, str):
        raise InvalidModel("missing_name", f"model {model_id} has no name")
    if len(raw_name) > MAX_NAME_LENGTH:
        raise InvalidModel(
            "name_too_long",
            f"model {model_id} has a name of {len(raw_name)} characters (at most "
            f"{MAX_NAME_LENGTH})",
        )
    name = one_line_label(raw_name)
    if not name:
        raise InvalidModel("missing_name", f"model {model_id} has no name")
    return name


def normalize_model(source: str, raw_id: Any, raw_name: Any) -> NormalModel:
    """id, slug and display name of a raw model (raises InvalidModel)."""
    model_id = canonical_id(source, raw_id)
    if source == "huggingface":
        # The site shows the repo id; the API's name-less entries are normal.
        return NormalModel(model_id, id_slug(model_id), model_id)
    return NormalModel(model_id, model_id, display_name(raw_name, model_id))
