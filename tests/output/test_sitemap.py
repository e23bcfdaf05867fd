"""The sitemap follows the sitemaps.org protocol and lists every model once."""

import pytest
from lxml import etree
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.output.schemas import SITEMAP_XSD, schema_bytes
from manifest_crawler.output.sitemap import (
    MAX_URLS,
    SITEMAP_NS,
    SitemapError,
    UrlPattern,
    build_sitemaps,
    model_urls,
    parse_patterns,
)
from manifest_crawler.settings_check import InputError
from manifest_crawler.spiders.all import AllSpider
from manifest_crawler.spiders.civitai import CivitaiSpider
from tests.crawl import (
    crawl,
    crawl_settings,
    files_in,
    project_settings_dict,
    read_json,
    write_filters,
)
from tests.scripted import Reply

NS = {"s": SITEMAP_NS}
XSD = etree.XMLSchema(etree.fromstring(schema_bytes(SITEMAP_XSD)))
PARSER = etree.XMLParser(huge_tree=True, resolve_entities=False)


def _parse(data):
    root = etree.fromstring(data, PARSER)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    assert root.nsmap == {None: SITEMAP_NS}
    assert XSD.validate(root), XSD.error_log
    return root


def _locs(root, element):
    assert [child.tag for child in root] == [f"{{{SITEMAP_NS}}}{element}"] * len(root)
    for child in root:
        assert [c.tag for c in child] == [f"{{{SITEMAP_NS}}}loc"]
    return root.xpath(f"s:{element}/s:loc/text()", namespaces=NS)


def _civitai(n):
    return {"id": f"civitai-{n}", "slug": f"civitai-{n}", "name": f"M{n}", "source": "civitai"}


def test_one_urlset_with_escaped_and_encoded_urls():
    patterns = parse_patterns(
        {
            "civitai": "https://example.com/modèles/{slug}?from={source}&v='1'",
            "huggingface": "https://example.com/hf/{id}",
        },
        ["civitai", "huggingface"],
    )
    models = [
        _civitai(1),
        {"id": "a b/é", "slug": "a b--é", "name": "x", "source": "huggingface"},
        {"id": "owner/name", "slug": "owner--name", "name": "x", "source": "huggingface"},
    ]
    result = build_sitemaps(
        model_urls(models, patterns), file_name="sitemap.xml", base_url="https://example.com/"
    )
    assert list(result.files) == ["sitemap.xml"]
    data = result.files["sitemap.xml"]
    # XML entities in the bytes, the URL itself once parsed.
    assert b"?from=civitai&amp;v=&apos;1&apos;</loc>" in data
    assert _locs(_parse(data), "url") == [
        "https://example.com/mod%C3%A8les/civitai-1?from=civitai&v='1'",
        "https://example.com/hf/a%20b/%C3%A9",
        "https://example.com/hf/owner/name",
    ]


def test_past_50000_urls_an_index_of_full_files():
    urls = [f"https://example.com/m/civitai-{n}" for n in range(1, MAX_URLS + 2)]
    whole = build_sitemaps(urls[:MAX_URLS], file_name="sitemap.xml", base_url="https://e.com")
    assert list(whole.files) == ["sitemap.xml"]
    assert len(_locs(_parse(whole.files["sitemap.xml"]), "url")) == MAX_URLS

    split = build_sitemaps(urls, file_name="sitemap.xml", base_url="https://cdn.example.com/s")
    assert list(split.files) == ["sitemap.xml", "sitemap-1.xml", "sitemap-2.xml"]
    index = _parse(split.files["sitemap.xml"])
    assert etree.QName(index).localname == "sitemapindex"
    assert _locs(index, "sitemap") == [
        "https://cdn.example.com/s/sitemap-1.xml",
        "https://cdn.example.com/s/sitemap-2.xml",
    ]
    first = _locs(_parse(split.files["sitemap-1.xml"]), "url")
    second = _locs(_parse(split.files["sitemap-2.xml"]), "url")
    assert (len(first), second) == (MAX_URLS, [urls[-1]])
    assert first + second == urls
    assert split.urls == MAX_URLS + 1


def test_split_by_size_too():
    urls = [f"https://example.com/m/civitai-{n}" for n in range(1, 101)]
    result = build_sitemaps(urls, file_name="map.xml", base_url="https://e.com/", max_bytes=2000)
    children = [name for name in result.files if name != "map.xml"]
    assert len(children) > 2 and all(len(result.files[c]) <= 2000 for c in children)
    assert [u for c in children for u in _locs(_parse(result.files[c]), "url")] == urls


def test_every_model_once_and_overlong_urls_left_out():
    patterns = parse_patterns("https://example.com/{source}/{slug}", ["civitai", "huggingface"])
    models = [_civitai(1), _civitai(2), _civitai(1), {**_civitai(3), "slug": "x" * 3000}]
    result = build_sitemaps(
        model_urls(models, patterns), file_name="sitemap.xml", base_url="https://e.com/"
    )
    assert _locs(_parse(result.files["sitemap.xml"]), "url") == [
        "https://example.com/civitai/civitai-1",
        "https://example.com/civitai/civitai-2",
    ]
    assert result.too_long == 1
    only_hf = parse_patterns({"huggingface": "https://e.com/{id}"}, ["civitai", "huggingface"])
    assert list(model_urls(models, only_hf)) == []
    with pytest.raises(SitemapError, match="no model has a URL"):
        build_sitemaps([], file_name="sitemap.xml", base_url="https://e.com/")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("https://example.com/{name}", "unknown placeholder"),
        ("https://example.com/{slug!r}", "unknown placeholder"),
        ("https://example.com/{source}", "needs {slug} or {id}"),
        ("/models/{slug}", "absolute http"),
        ("ftp://example.com/{slug}", "absolute http"),
        ("https://exämple.com/{slug}", "punycode"),
        ("https://example.com/{slug", "expected '}'"),
    ],
)
def test_bad_patterns_are_refused(pattern, message):
    with pytest.raises(SitemapError, match=message):
        UrlPattern.parse(pattern)
    with pytest.raises(SitemapError, match="unknown source"):
        parse_patterns({"civitai2": "https://e.com/{slug}"}, ["civitai"])


# --- In a crawl ----------------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_a_crawl_writes_the_sitemap_of_all_models(emulator, tmp_path):
    site = tmp_path / "public"
    site.mkdir()
    (site / "sitemap-7.xml").write_text("left by an earlier, larger sitemap")
    settings = crawl_settings(
        emulator,
        tmp_path / "manifests",
        MANIFEST_SITEMAP_URL='{"civitai": "https://example.com/models/{slug}", '
        '"huggingface": "https://example.com/hf/{id}?tab=card&ref=sitemap"}',
        MANIFEST_SITEMAP_FILE=str(site / "sitemap.xml"),
    )
    crawler = await crawl(AllSpider, settings, filters="filter/loras,filter/pg,likes,trending")
    models = read_json(tmp_path / "manifests" / "all-models.json")["models"]
    locs = _locs(_parse((site / "sitemap.xml").read_bytes()), "url")
    assert locs == [
        f"https://example.com/models/{m['slug']}"
        if m["source"] == "civitai"
        else f"https://example.com/hf/{m['id']}?tab=card&ref=sitemap"
        for m in models
    ]
    assert len(set(locs)) == len(models) > 100
    assert not (site / "sitemap-7.xml").exists()
    assert crawler.stats.get_value("manifest/sitemap/urls") == len(models)
    assert crawler.stats.get_value("manifest/exit_code") == 0


@deferred_f_from_coro_f
async def test_no_sitemap_unless_configured_and_none_rewritten_when_nothing_was_fetched(
    tmp_path, scripted
):
    _, url = scripted({"": Reply({"items": [{"id": 1, "name": "One"}], "metadata": {}})})
    sitemap = tmp_path / "sitemap.xml"
    settings = project_settings_dict(
        FILTERS_FILE=str(
            write_filters(
                tmp_path / "filters.json",
                civitai=[{"name": "a", "label": "A", "params": {}, "browsing_levels": ["PG"]}],
            )
        ),
        MANIFEST_DIR=str(tmp_path / "out"),
        CIVITAI_API_URL=url,
        MANIFEST_SITEMAP_FILE=str(sitemap),
    )
    await crawl(CivitaiSpider, settings)
    assert not sitemap.exists()

    settings["MANIFEST_SITEMAP_URL"] = "https://example.com/{slug}"
    await crawl(CivitaiSpider, settings)
    before = sitemap.read_bytes()
    assert _locs(_parse(before), "url") == ["https://example.com/civitai-1"]

    _, down = scripted({"": Reply({"message": "down"}, status=503)})
    settings.update(CIVITAI_API_URL=down, MANIFEST_RETRY_TIMES=0)
    crawler = await crawl(CivitaiSpider, settings)
    assert crawler.stats.get_value("manifest/exit_code") == 1
    assert sitemap.read_bytes() == before


@deferred_f_from_coro_f
async def test_a_sitemap_that_cannot_be_written_is_refused_before_any_request(emulator, tmp_path):
    out = tmp_path / "manifests"
    settings = crawl_settings(emulator, out)
    await crawl(AllSpider, settings, filters="filter/loras,likes")
    before = files_in(out)
    emulator.clear_log()
    blocker = tmp_path / "public"
    blocker.write_text("a file where the sitemap's folder should be")
    settings.update(
        MANIFEST_SITEMAP_URL="https://example.com/{slug}",
        MANIFEST_SITEMAP_FILE=str(blocker / "sitemap.xml"),
        MANIFEST_MAX_ITEMS=50,
    )
    with pytest.raises(InputError) as refused:
        await crawl(AllSpider, settings, filters="filter/loras,likes")
    assert str(refused.value) == (
        f"MANIFEST_SITEMAP_FILE={blocker / 'sitemap.xml'}: its folder: {blocker} is a regular "
        "file, not a folder"
    )
    assert emulator.log == []
    assert files_in(out) == before
