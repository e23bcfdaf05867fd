"""Pure sitemap building (the sitemaps.org protocol) from all-models.json's models.

One ``<urlset>`` file while the models fit in one (50,000 URLs, 50 MiB uncompressed); past
that, the main file becomes a ``<sitemapindex>`` of ``<name>-1.xml``, ``<name>-2.xml``, …
Each ``<loc>`` is percent-encoded (RFC 3986) and then entity-escaped for XML. No ``<lastmod>``:
the APIs give no date that says when a model's page last changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from string import Formatter
from typing import Any
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
MAX_URLS = 50_000
MAX_BYTES = 50 * 1024 * 1024
#: The protocol's longest ``<loc>``.
MAX_LOC = 2048
PLACEHOLDERS = ("slug", "id", "source")

_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
_URLSET_OPEN = f'{_XML_DECLARATION}<urlset xmlns="{SITEMAP_NS}">\n'.encode()
_URLSET_CLOSE = b"</urlset>\n"
_INDEX_OPEN = f'{_XML_DECLARATION}<sitemapindex xmlns="{SITEMAP_NS}">\n'.encode()
_INDEX_CLOSE = b"</sitemapindex>\n"
# RFC 3986 reserved and unreserved characters, plus "%" (a pattern may be encoded already).
_URI_SAFE = ":/?#[]@!$&'()*+,;=-._~%"
_XML_ENTITIES = {"'": "&apos;", '"': "&quot;"}


class SitemapError(ValueError):
    """A sitemap setting or input the protocol cannot express."""


@dataclass(frozen=True, slots=True)
class UrlPattern:
    """``https://example.com/models/{slug}``, parsed once: literal parts are percent-encoded
    where RFC 3986 requires it; placeholders are filled with percent-encoded values."""

    text: str
    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str) -> UrlPattern:
        if not isinstance(text, str) or not text:
            raise SitemapError(f"URL pattern must be a non-empty string, got {text!r}")
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(Formatter().parse(text))
        except ValueError as exc:
            raise SitemapError(f"URL pattern {text!r}: {exc}") from None
        for literal, name, spec, conversion in parsed:
            if name is not None and (name not in PLACEHOLDERS or spec or conversion):
                raise SitemapError(
                    f"URL pattern {text!r}: unknown placeholder {{{name}}} "
                    f"(use {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
            parts.append((quote(literal, safe=_URI_SAFE), name))
        names = {name for _, name in parts}
        if not names & {"slug", "id"}:
            raise SitemapError(
                f"URL pattern {text!r} needs {{slug}} or {{id}}: every model needs its own URL"
            )
        split = urlsplit("".join(literal + ("x" if name else "") for literal, name, _, _ in parsed))
        if split.scheme not in ("http", "https") or not split.hostname:
            raise SitemapError(f"URL pattern {text!r} must be an absolute http(s) URL")
        if not split.netloc.isascii():
            raise SitemapError(f"URL pattern {text!r}: write the host in ASCII (punycode)")
        return cls(text, tuple(parts))

    def url(self, model: Mapping[str, Any]) -> str:
        pieces: list[str] = []
        for literal, name in self.parts:
            pieces.append(literal)
            if name is not None:
                # A Hugging Face id keeps its "/" (owner/name is a path); anything else that
                # is not unreserved is percent-encoded.
                pieces.append(quote(str(model[name]), safe="/" if name == "id" else ""))
        return "".join(pieces)

    @property
    def origin(self) -> str:
        split = urlsplit(self.url({"slug": "x", "id": "x", "source": "x"}))
        return f"{split.scheme}://{split.netloc}/"


def parse_patterns(value: Any, sources: Iterable[str]) -> dict[str, UrlPattern]:
    """MANIFEST_SITEMAP_URL: one pattern for every source, or a mapping source → pattern
    (a source left out gets no URLs)."""
    sources = tuple(sources)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(sources))
        if unknown:
            raise SitemapError(
                f"URL patterns for unknown source(s) {', '.join(unknown)} "
                f"(known: {', '.join(sources)})"
            )
        return {source: UrlPattern.parse(value[source]) for source in sources if source in value}
    return dict.fromkeys(sources, UrlPattern.parse(value))


def model_urls(
    models: Iterable[Mapping[str, Any]], patterns: Mapping[str, UrlPattern]
) -> Iterator[str]:
    """One URL per model whose source has a pattern, each URL once, in the models' order."""
    seen: set[str] = set()
    for model in models:
        pattern = patterns.get(model["source"])
        if pattern is None:
            continue
        url = pattern.url(model)
        if url not in seen:
            seen.add(url)
            yield url


def child_name(file_name: str, number: int) -> str:
    """``sitemap.xml`` → ``sitemap-1.xml``."""
    path = PurePosixPath(file_name)
    return f"{path.stem}-{number}{path.suffix}"


@dataclass(slots=True)
class Sitemaps:
    """The files to write, by name (the main file first), and what went into them."""

    files: dict[str, bytes] = field(default_factory=dict)
    urls: int = 0
    #: URLs longer than the protocol's 2,048 characters, left out.
    too_long: int = 0


def build_sitemaps(
    urls: Iterable[str],
    *,
    file_name: str,
    base_url: str,
    max_urls: int = MAX_URLS,
    max_bytes: int = MAX_BYTES,
) -> Sitemaps:
    """``file_name`` as one ``<urlset>``, or as a ``<sitemapindex>`` of numbered children
    (``base_url`` + child name) when the URLs do not fit in one file."""
    result = Sitemaps()
    chunks: list[list[bytes]] = [[]]
    size = len(_URLSET_OPEN) + len(_URLSET_CLOSE)
    for url in urls:
        if len(url) > MAX_LOC:
            result.too_long += 1
            continue
        entry = f"<url><loc>{escape(url, _XML_ENTITIES)}</loc></url>\n".encode()
        if chunks[-1] and (len(chunks[-1]) >= max_urls or size + len(entry) > max_bytes):
            chunks.append([])
            size = len(_URLSET_OPEN) + len(_URLSET_CLOSE)
        if size + len(entry) > max_bytes:
            raise SitemapError(f"one <url> entry alone exceeds {max_bytes} bytes")
        chunks[-1].append(entry)
        size += len(entry)
        result.urls += 1
    if not result.urls:
        # The protocol's schema wants at least one <url> in a <urlset>.
        raise SitemapError("no model has a URL: nothing to put in a sitemap")
    if len(chunks) == 1:
        result.files[file_name] = b"".join([_URLSET_OPEN, *chunks[0], _URLSET_CLOSE])
        return result
    if len(chunks) > max_urls:
        raise SitemapError(f"{len(chunks)} sitemap files exceed the index's {max_urls} entries")
    base = base_url if base_url.endswith("/") else base_url + "/"
    index = [_INDEX_OPEN]
    children: dict[str, bytes] = {}
    for number, chunk in enumerate(chunks, 1):
        name = child_name(file_name, number)
        loc = escape(base + quote(name, safe=_URI_SAFE), _XML_ENTITIES)
        index.append(f"<sitemap><loc>{loc}</loc></sitemap>\n".encode())
        children[name] = b"".join([_URLSET_OPEN, *chunk, _URLSET_CLOSE])
    index.append(_INDEX_CLOSE)
    result.files[file_name] = b"".join(index)
    result.files.update(children)
    return result
