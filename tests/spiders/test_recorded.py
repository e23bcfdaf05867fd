"""Real (and, for the Hub, notes-built) API answers served over loopback HTTP are crawled
exactly: ids, slugs, unicode names, the `|`-joined cursor, the Link header. See
tests/recorded/README.md for where each answer comes from."""

import json
from pathlib import Path

from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.filters import NSFW_LEVEL_BITS as LEVELS
from manifest_crawler.spiders.civitai import CivitaiSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import REPO_FILTERS, crawl, project_settings_dict, read_json, write_filters
from tests.scripted import Reply

RECORDED = Path(__file__).resolve().parent.parent / "recorded"
CIVITAI_PAGE = json.loads((RECORDED / "civitai-checkpoints-highest-rated.json").read_text("utf-8"))
CURSOR = "22138|364671|25494"
TOP_IDS = [43331, 4384, 4468, 4201, 7240, 7371, 6755, 12606, 36520, 47274]


def _settings(tmp_path, filters, **extra):
    return project_settings_dict(
        FILTERS_FILE=str(write_filters(tmp_path / "filters.json", **filters)),
        MANIFEST_DIR=str(tmp_path / "out"),
        MANIFEST_RETRY_TIMES=1,
        **extra,
    )


def _manifest(tmp_path, name):
    return read_json(tmp_path / "out" / name)["models"]


@deferred_f_from_coro_f
async def test_a_real_civitai_page_is_crawled_exactly(tmp_path, scripted, caplog):
    assert CIVITAI_PAGE["metadata"]["nextCursor"] == CURSOR
    api, url = scripted(
        {
            "": Reply(CIVITAI_PAGE),
            # The recorded answer has no second page; the last page carries no cursor.
            CURSOR: Reply({"items": [], "metadata": {}}),
        }
    )
    listing = {"types": ["Checkpoint"], "sort": "Highest Rated", "nsfw": "true"}
    filters = [
        {"name": "top", "label": "Top", "params": listing, "browsing_levels": list(LEVELS)},
        *(
            {"name": name, "label": name, "params": listing, key: level}
            for name, key, level in (
                ("soft", "browsing_levels", ["PG", "PG13"]),
                ("safe", "rated_at_most", "PG13"),
                ("r", "rated", "R"),
                ("x", "rated", "X"),
                ("xxx", "rated", "XXX"),
            )
        ),
    ]
    await crawl(CivitaiSpider, _settings(tmp_path, {"civitai": filters}, CIVITAI_API_URL=url))
    top = _manifest(tmp_path, "civitai-top.json")
    assert [m["id"] for m in top] == [f"civitai-{i}" for i in TOP_IDS]
    assert [m["slug"] for m in top] == [f"civitai-{i}" for i in TOP_IDS]
    assert top[0] == {
        "id": "civitai-43331",
        "slug": "civitai-43331",
        "name": "majicMIX realistic 麦橘写实",
    }
    assert [m["name"] for m in top] == [item["name"].strip() for item in CIVITAI_PAGE["items"]]
    # One chain for the six filters; the cursor goes back exactly as it came.
    assert [r.get("cursor") for r in api.requests] == [None, [CURSOR]]
    # The real page's levels: all ten were listed for nsfw=false, and civitai.com lists all
    # ten at PG-13 (each has PG content), but none is rated PG-13 or milder: a list by that
    # rating is empty, and said to be.
    assert _manifest(tmp_path, "civitai-soft.json") == top
    assert _manifest(tmp_path, "civitai-safe.json") == []
    assert "civitai:safe: its content rule kept none of the 10 models listed" in caplog.text
    assert [m["id"] for m in _manifest(tmp_path, "civitai-r.json")] == [
        "civitai-4468",
        "civitai-36520",
    ]
    assert [m["id"] for m in _manifest(tmp_path, "civitai-x.json")] == [
        "civitai-4384",
        "civitai-4201",
        "civitai-6755",
    ]
    assert [m["id"] for m in _manifest(tmp_path, "civitai-xxx.json")] == [
        f"civitai-{i}" for i in (43331, 7240, 7371, 12606, 47274)
    ]


@deferred_f_from_coro_f
async def test_hub_pages_follow_the_link_header_and_the_tf_tag(tmp_path, scripted, caplog):
    pages = json.loads((RECORDED / "hub-tf-by-downloads.from-notes.json").read_text("utf-8"))
    replies = {"": Reply(pages["first"]), "last": Reply(pages["last"])}
    api, url = scripted(replies)
    next_link = pages["link"].format(base=url)
    cursor = next_link.split("cursor=")[1].split(">")[0]
    replies[""] = Reply(pages["first"], headers={"Link": next_link})
    replies[cursor.replace("%3D", "=")] = replies.pop("last")
    repo = json.loads(REPO_FILTERS.read_text("utf-8"))
    tensorflow = [f for f in repo["huggingface"] if f["name"] == "tensorflow"]
    crawler = await crawl(
        HuggingFaceSpider, _settings(tmp_path, {"huggingface": tensorflow}, HF_API_URL=url)
    )
    models = _manifest(tmp_path, "hf-tensorflow.json")
    assert models == [
        {"id": i, "slug": i.replace("/", "--"), "name": i}
        for i in (
            "google-bert/bert-base-uncased",
            "openai-community/gpt2",
            "sentence-transformers/all-MiniLM-L6-v2",
        )
    ]
    assert api.requests[0]["filter"] == ["tf"] and len(api.requests) == 2
    # Every entry carries the tag the filter asks for: no mismatch warning.
    assert crawler.stats.get_value("manifest/huggingface/mismatched") is None
    assert "lacks tag" not in caplog.text
