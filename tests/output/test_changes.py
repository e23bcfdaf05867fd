"""The run diff: pure rules, then two real crawls over an emulator whose catalogue changed."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.emulator import EmulatorConfig
from manifest_crawler.filters import load_filters
from manifest_crawler.output.changes import (
    CHANGES_FILE,
    ChangesError,
    FilterOutcome,
    PendingChanges,
    build_changes,
    diff_ranking,
    pending_filter,
    read_pending_changes,
    summarize,
)
from manifest_crawler.output.manifests import (
    ManifestModel,
    SiteModels,
    encode_json,
    manifest_filename,
)
from manifest_crawler.output.schemas import (
    ALL_MODELS_SCHEMA,
    CHANGES_SCHEMA,
    INDEX_SCHEMA,
    MANIFEST_SCHEMA,
    RUN_REPORT_SCHEMA,
    Validators,
)
from manifest_crawler.spiders.all import AllSpider
from manifest_crawler.spiders.huggingface import HuggingFaceSpider
from tests.crawl import REPO_FILTERS, crawl, crawl_settings, read_json, successor

rankings = st.lists(st.integers(0, 30).map(lambda n: f"civitai-{n + 1}"), unique=True)


def test_diff_ranking_by_hand():
    diff = diff_ranking(["a", "b", "c", "d"], ["b", "a", "e", "d"])
    assert diff.added == [{"id": "e", "rank": 3}]
    assert diff.removed == [{"id": "c", "rank": 3}]
    assert diff.moved == [{"id": "b", "from": 2, "to": 1}, {"id": "a", "from": 1, "to": 2}]
    assert diff_ranking(None, ["a"]).added == [{"id": "a", "rank": 1}]
    assert not diff_ranking(["a", "b"], ["a", "b"]).changed


@given(before=st.one_of(st.none(), rankings), after=rankings)
def test_diff_ranking_accounts_for_every_id(before, after):
    diff = diff_ranking(before, after)
    before = before or []
    assert {m["id"] for m in diff.added} == set(after) - set(before)
    assert {m["id"] for m in diff.removed} == set(before) - set(after)
    assert {m["id"] for m in diff.moved} == {
        i for i in set(before) & set(after) if before.index(i) != after.index(i)
    }
    # Ranks are 1-based positions in the ranking they describe, listed in that ranking's order.
    assert [m["id"] for m in diff.added] == [i for i in after if i not in before]
    assert all(after[m["rank"] - 1] == m["id"] for m in diff.added)
    assert [m["id"] for m in diff.removed] == [i for i in before if i not in after]
    assert all(before[m["rank"] - 1] == m["id"] for m in diff.removed)
    assert all(before[m["from"] - 1] == m["id"] == after[m["to"] - 1] for m in diff.moved)


def test_each_manifest_is_compared_before_and_after_and_new_and_gone_come_from_all_models():
    # The writer gives a filter that is not fresh its manifest as it was, before and after.
    outcomes = [
        FilterOutcome("civitai", "a", "civitai-a.json", "fresh", ["civitai-1"], ["civitai-2"]),
        FilterOutcome("civitai", "b", "civitai-b.json", "stale", ["civitai-3"], ["civitai-3"]),
        FilterOutcome("civitai", "c", "civitai-c.json", "failed", None, None),
    ]
    before = [
        {"id": "civitai-1", "slug": "civitai-1", "source": "civitai", "name": "One"},
        {"id": "civitai-3", "slug": "civitai-3", "source": "civitai", "name": "Three"},
    ]
    now = [
        {"id": "civitai-2", "slug": "civitai-2", "source": "civitai", "name": "Two"},
        {"id": "civitai-3", "slug": "civitai-3", "source": "civitai", "name": "Three"},
    ]
    changes = build_changes(
        outcomes=outcomes,
        previous_models=before,
        previous_timestamp="2026-01-01T00:00:00Z",
        models=now,
        timestamp="2026-01-02T00:00:00Z",
    )
    Validators().check(CHANGES_SCHEMA, changes, CHANGES_FILE)
    a, b, c = changes["filters"]
    assert a["added"] == [{"id": "civitai-2", "rank": 1}]
    assert a["removed"] == [{"id": "civitai-1", "rank": 1}]
    assert (b["added"], b["removed"], b["models"], b["previousModels"]) == ([], [], 1, 1)
    assert (c["models"], c["previousModels"]) == (None, None)
    assert changes["new"] == [{"id": "civitai-2", "slug": "civitai-2", "source": "civitai"}]
    assert changes["gone"] == [{"id": "civitai-1", "slug": "civitai-1", "source": "civitai"}]
    assert changes["totals"] == {
        "filtersChanged": 1,
        "added": 1,
        "removed": 1,
        "moved": 0,
        "new": 1,
        "gone": 1,
    }
    assert summarize(changes).startswith("Changes since the last build: 1 filter(s) changed")


@given(before=rankings, now=rankings)
def test_new_and_gone_are_the_same_from_compact_site_models(before, now):
    # all-models.json's models as the writer holds them (SiteModels, ids read without making
    # a model of each) give the same new/gone lists as plain model dicts.
    def as_dicts(ids):
        return [{"id": i, "slug": i, "source": "civitai", "name": i} for i in ids]

    def as_site_models(ids):
        models = SiteModels()
        for i in ids:
            models.append(
                i if int(i.split("-")[1]) % 2 else ManifestModel(i, i, f"Name {i}"), "civitai"
            )
        return models

    def site_lists(previous, current):
        changes = build_changes(
            outcomes=[],
            previous_models=previous,
            previous_timestamp=None,
            models=current,
            timestamp="2026-01-02T00:00:00Z",
        )
        return list(changes["new"]), list(changes["gone"]), changes["totals"]

    expected = site_lists(as_dicts(before), as_dicts(now))
    assert site_lists(as_site_models(before), as_site_models(now)) == expected
    assert [entry["id"] for entry in expected[0]] == [i for i in now if i not in set(before)]
    assert [entry["id"] for entry in expected[1]] == [i for i in before if i not in set(now)]


def _ids(path):
    return [m["id"] for m in read_json(path)["models"]] if path.exists() else None


FILTERS = ",".join(
    [
        "AllTime/All/All/downloads/Soft",
        "Month/All/All/downloads/Soft",
        "filter/loras",
        "filter/pg",
        "likes",
        "trending",
        "text-generation",
    ]
)


def _assert_changes(changes, old, new, old_all, new_all, gone_in_order=True):
    """``changes`` lists exactly what differs between the manifests ``old`` and ``new`` (ids
    by filter key) and between the all-models.json documents ``old_all`` and ``new_all``
    (the gone ones in ``old_all``'s order, when a run replaced ``old_all`` itself)."""
    assert changes["previousTimestamp"] == old_all["timestamp"]
    assert changes["timestamp"] == new_all["timestamp"]
    by_filter = {(f["source"], f["filter"]): f for f in changes["filters"]}
    assert list(by_filter) == list(new)
    changed = 0
    for key in new:
        entry, was, now = by_filter[key], old[key], new[key]
        assert (entry["previousModels"], entry["models"]) == (len(was), len(now))
        assert entry["added"] == [
            {"id": i, "rank": now.index(i) + 1} for i in now if i not in was
        ], key
        assert entry["removed"] == [
            {"id": i, "rank": was.index(i) + 1} for i in was if i not in now
        ], key
        assert entry["moved"] == [
            {"id": i, "from": was.index(i) + 1, "to": now.index(i) + 1}
            for i in now
            if i in was and was.index(i) != now.index(i)
        ], key
        changed += bool(entry["added"] or entry["removed"] or entry["moved"])
    # The catalogue really changed: every kind of change shows somewhere.
    assert changed and all(changes["totals"][k] for k in ("added", "removed", "moved"))
    assert changes["totals"]["filtersChanged"] == changed
    old_ids = {m["id"]: m for m in old_all["models"]}
    new_ids = {m["id"] for m in new_all["models"]}
    gone = [
        {"id": m["id"], "slug": m["slug"], "source": m["source"]}
        for m in old_all["models"]
        if m["id"] not in new_ids
    ]
    if gone_in_order:
        assert changes["gone"] == gone
    else:
        assert sorted(changes["gone"], key=str) == sorted(gone, key=str)
    assert changes["new"] == [
        {"id": m["id"], "slug": m["slug"], "source": m["source"]}
        for m in new_all["models"]
        if m["id"] not in old_ids
    ]
    assert changes["gone"] and changes["new"]


@deferred_f_from_coro_f
async def test_two_runs_over_a_changed_catalogue_list_exactly_what_changed(make_emulator, tmp_path):
    selected = load_filters(REPO_FILTERS).select(["civitai", "huggingface"], FILTERS.split(","))
    paths = {f.key: tmp_path / manifest_filename(f.source, f.name) for f in selected}

    before = make_emulator(revision=0)
    await crawl(
        AllSpider, crawl_settings(before, tmp_path, MANIFEST_MAX_ITEMS=150), filters=FILTERS
    )
    first = read_json(tmp_path / CHANGES_FILE)
    assert first["previousTimestamp"] is None and first["gone"] == [] and first["runs"] == 1
    assert first["totals"]["added"] == sum(len(_ids(p)) for p in paths.values())
    old = {key: _ids(path) for key, path in paths.items()}
    old_all = read_json(tmp_path / "all-models.json")
    # The site acted on it (deployed, purged): it deletes it, as docs/SITE.md says.
    (tmp_path / CHANGES_FILE).unlink()

    after = await successor(make_emulator, before, EmulatorConfig(revision=1))
    crawler = await crawl(
        AllSpider, crawl_settings(after, tmp_path, MANIFEST_MAX_ITEMS=150), filters=FILTERS
    )
    new = {key: _ids(path) for key, path in paths.items()}
    changes = read_json(tmp_path / CHANGES_FILE)
    assert changes["runs"] == 1
    assert {f["status"] for f in changes["filters"]} == {"fresh"}
    _assert_changes(changes, old, new, old_all, read_json(tmp_path / "all-models.json"))
    assert crawler.stats.get_value("manifest/exit_code") == 0
    _assert_every_file_valid(tmp_path)


@deferred_f_from_coro_f
async def test_changes_accumulate_over_runs_until_the_site_consumes_them(make_emulator, tmp_path):
    """Two runs between deploys, the second of one source only: changes.json then holds what
    changed since the files the site last acted on, for both sources."""
    selected = load_filters(REPO_FILTERS).select(["civitai", "huggingface"], FILTERS.split(","))
    paths = {f.key: tmp_path / manifest_filename(f.source, f.name) for f in selected}
    settings = {"MANIFEST_MAX_ITEMS": 150}
    emulator = make_emulator(revision=0)
    await crawl(AllSpider, crawl_settings(emulator, tmp_path, **settings), filters=FILTERS)
    deployed = {key: _ids(path) for key, path in paths.items()}
    deployed_all = read_json(tmp_path / "all-models.json")
    (tmp_path / CHANGES_FILE).unlink()

    emulator = await successor(make_emulator, emulator, EmulatorConfig(revision=1))
    await crawl(AllSpider, crawl_settings(emulator, tmp_path, **settings), filters=FILTERS)
    emulator = await successor(make_emulator, emulator, EmulatorConfig(revision=2))
    hub_filters = ",".join(name for source, name in paths if source == "huggingface")
    await crawl(
        HuggingFaceSpider, crawl_settings(emulator, tmp_path, **settings), filters=hub_filters
    )

    changes = read_json(tmp_path / CHANGES_FILE)
    assert changes["runs"] == 2
    now = {key: _ids(path) for key, path in paths.items()}
    now_all = read_json(tmp_path / "all-models.json")
    _assert_changes(changes, deployed, now, deployed_all, now_all, gone_in_order=False)
    _assert_every_file_valid(tmp_path)
    # The run report still has the CivitAI rows, from the run that crawled them.
    report = read_json(tmp_path / "run-report.json")
    rows = {(row["source"], row["filter"]): row for row in report["filters"]}
    assert list(rows) == list(paths)
    for (source, _), row in rows.items():
        carried = row["carried_from"]
        assert (carried is not None) == (source == "civitai")
        assert carried is None or (carried["spider"], carried["exit_code"]) == ("all", 0)


def _assert_every_file_valid(folder):
    validators = Validators()
    for path in folder.glob("*.json"):
        name = {
            "all-models.json": ALL_MODELS_SCHEMA,
            "run-report.json": RUN_REPORT_SCHEMA,
            "index.json": INDEX_SCHEMA,
            CHANGES_FILE: CHANGES_SCHEMA,
        }.get(path.name, MANIFEST_SCHEMA)
        validators.check(name, read_json(path), path.name)


def test_summary_names_the_biggest_changes_and_how_many_more():
    filters = [
        {"source": "civitai", "filter": f"f{n}", "added": [{}] * n, "removed": [], "moved": []}
        for n in range(1, 9)
    ]
    changes = {
        "totals": {"filtersChanged": 8, "added": 36, "removed": 0, "moved": 0, "new": 3, "gone": 1},
        "filters": filters,
    }
    text = summarize(changes)
    assert re.search(r"^  civitai:f8: \+8 -0 ~0$", text, re.M)
    assert "… and 3 more (see changes.json)" in text


# --- Pending changes: the consumed state rebuilt from the files on disk ----------------------


def _pending(*outcomes, timestamp="2026-01-02T00:00:00Z"):
    """What read_pending_changes gives back of a changes.json made of these outcomes."""
    changes = build_changes(
        outcomes=list(outcomes),
        previous_models=None,
        previous_timestamp="2026-01-01T00:00:00Z",
        models=[],
        timestamp=timestamp,
    )
    document = json.loads(encode_json(changes))
    return PendingChanges(
        timestamp=document["timestamp"],
        previous_timestamp=document["previousTimestamp"],
        runs=document["runs"],
        filters=dict(map(pending_filter, document["filters"])),
    )


@given(consumed=st.one_of(st.none(), rankings), on_disk=st.one_of(st.none(), rankings))
def test_the_consumed_ranking_is_rebuilt_exactly_from_the_files_and_the_changes(consumed, on_disk):
    status = "fresh" if on_disk is not None else "removed"
    pending = _pending(FilterOutcome("civitai", "f", "civitai-f.json", status, consumed, on_disk))
    assert pending.consumed_ranking(("civitai", "f"), on_disk) == consumed
    # A filter the changes do not name is as it is on disk.
    assert pending.consumed_ranking(("civitai", "other"), on_disk) == on_disk


def test_changes_that_do_not_fit_the_files_are_refused():
    pending = _pending(
        FilterOutcome("civitai", "f", "civitai-f.json", "fresh", ["civitai-1"], ["civitai-2"])
    )
    with pytest.raises(ChangesError, match="has 2 models on disk, not 1"):
        pending.consumed_ranking(("civitai", "f"), ["civitai-2", "civitai-3"])
    with pytest.raises(ChangesError, match="rank 1 does not fit"):
        pending.consumed_ranking(("civitai", "f"), ["civitai-1"])


def test_a_changes_file_that_is_not_one_is_refused_naming_it(tmp_path):
    path = tmp_path / CHANGES_FILE
    assert read_pending_changes(path) is None
    for text in ("{not json", '{"timestamp": 5}', '{"timestamp": "T", "filters": [{"added": 1}]}'):
        path.write_text(text)
        with pytest.raises(ChangesError, match=re.escape(str(path))):
            read_pending_changes(path)


@deferred_f_from_coro_f
async def test_a_changes_file_that_does_not_fit_its_folder_is_started_over(
    make_emulator, tmp_path, caplog
):
    emulator = make_emulator()
    settings = crawl_settings(emulator, tmp_path, MANIFEST_MAX_ITEMS=5)
    await crawl(AllSpider, settings, filters="likes")
    first = read_json(tmp_path / CHANGES_FILE)
    # Edited by hand: its timestamp no longer the all-models.json's beside it.
    (tmp_path / CHANGES_FILE).write_text(json.dumps({**first, "timestamp": "2020-01-01T00:00:00Z"}))
    await crawl(AllSpider, settings, filters="likes")
    assert "was not consumed, but does not fit the files beside it" in caplog.text
    changes = read_json(tmp_path / CHANGES_FILE)
    assert changes["runs"] == 1
    assert changes["previousTimestamp"] == first["timestamp"]
