import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifest_crawler.filters import parse_filters
from manifest_crawler.manifests import (
    ManifestError,
    SourceManifest,
    build_manifest,
    encode_json,
    manifest_filename,
    manifests_on_disk,
    merge_all_models,
    read_manifest_models,
    remove_stale_temporaries,
    write_atomic,
)


def _m(model_id, name=None):
    return {"id": model_id, "slug": model_id.replace("/", "--"), "name": name or model_id}


def test_file_names_follow_the_original_script():
    assert manifest_filename("civitai", "AllTime/All/All/downloads/Soft") == (
        "civitai-AllTime-All-All-downloads-Soft.json"
    )
    assert manifest_filename("huggingface", "text-generation/apache-2.0") == (
        "hf-text-generation-apache-2.0.json"
    )


def test_merge_dedupes_by_first_appearance_and_counts_sources():
    merged = merge_all_models(
        [
            SourceManifest("civitai", [_m("civitai-1"), _m("civitai-2")]),
            SourceManifest("civitai", [_m("civitai-2"), _m("civitai-3")]),
            SourceManifest("huggingface", [_m("a/b"), _m("a/c"), _m("a/b")]),
        ],
        "T",
    )
    assert [m["id"] for m in merged["models"]] == [
        "civitai-1",
        "civitai-2",
        "civitai-3",
        "a/b",
        "a/c",
    ]
    assert merged["models"][3] == {
        "id": "a/b",
        "slug": "a--b",
        "name": "a/b",
        "source": "huggingface",
    }
    assert (merged["totalModels"], merged["civitai"], merged["huggingface"]) == (5, 3, 2)
    assert list(merged) == ["totalModels", "civitai", "huggingface", "models", "timestamp"]


_ids = st.lists(st.sampled_from([f"civitai-{i}" for i in range(30)]), max_size=40)


@given(st.lists(_ids, max_size=6))
def test_merge_is_the_ordered_union(lists):
    merged = merge_all_models(
        [SourceManifest("civitai", [_m(i) for i in ids]) for ids in lists], "T"
    )
    expected = list(dict.fromkeys(i for ids in lists for i in ids))
    assert [m["id"] for m in merged["models"]] == expected
    assert merged["totalModels"] == merged["civitai"] == len(expected)
    # Same input, same bytes.
    again = merge_all_models(
        [SourceManifest("civitai", [_m(i) for i in ids]) for ids in lists], "T"
    )
    assert encode_json(merged) == encode_json(again)


def test_build_manifest_shape_and_stable_bytes():
    doc = build_manifest("filter/sdxl", [_m("civitai-5", "Zeta é")], "2026-11-24T10:00:00Z")
    data = encode_json(doc)
    assert json.loads(data) == {
        "filter": "filter/sdxl",
        "models": [{"id": "civitai-5", "slug": "civitai-5", "name": "Zeta é"}],
        "timestamp": "2026-11-24T10:00:00Z",
    }
    assert data.endswith(b"\n") and "é".encode() in data


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "m.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["m.json"]


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    target.write_bytes(b"old")

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.json"]


def test_reading_manifests_from_disk(tmp_path):
    fs = parse_filters(
        json.dumps(
            {
                "civitai": [
                    {"name": "ok", "label": "L", "params": {}},
                    {"name": "bad", "label": "L", "params": {}},
                    {"name": "absent", "label": "L", "params": {}},
                ],
                "huggingface": [],
            }
        ),
        "f",
    )
    (tmp_path / "civitai-ok.json").write_bytes(
        encode_json(build_manifest("ok", [_m("civitai-1")], "T"))
    )
    (tmp_path / "civitai-bad.json").write_text('{"models": [{"id": 1}]}')
    found, problems = manifests_on_disk(tmp_path, fs)
    assert found == [SourceManifest("civitai", [_m("civitai-1")])]
    assert "civitai-bad.json: not a manifest" in problems[0]
    assert "civitai-absent.json: missing" in problems[1]
    assert read_manifest_models(tmp_path / "nothing.json") is None
    (tmp_path / "torn.json").write_text('{"models": [')
    with pytest.raises(ManifestError, match=r"torn\.json: not valid JSON"):
        read_manifest_models(tmp_path / "torn.json")


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".civitai-a.json.x1y2.tmp").write_text("half")
    (tmp_path / "civitai-a.json").write_text("{}")
    (tmp_path / ".gitkeep").write_text("")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".civitai-a.json.x1y2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitkeep", "civitai-a.json"]
