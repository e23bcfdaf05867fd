import json
import os

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifest_crawler.apis.normalize import normalize_model
from manifest_crawler.filters import parse_filters
from manifest_crawler.output import jsonstream
from manifest_crawler.output.manifests import (
    AtomicFiles,
    ManifestError,
    ManifestModel,
    SiteModels,
    SourceManifest,
    build_manifest,
    compact_entry,
    encode_json,
    entry_id,
    expand_entry,
    manifest_filename,
    manifests_on_disk,
    merge_all_models,
    read_manifest_ids,
    read_manifest_models,
    read_previous_site_models,
    remove_stale_temporaries,
    write_atomic,
)
from manifest_crawler.output.schemas import MANIFEST_SCHEMA, SchemaError, Validators

ORIGINS = {"civitai": "O", "huggingface": "O"}


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
        ORIGINS,
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
    assert list(merged) == [
        "totalModels",
        "civitai",
        "huggingface",
        "origins",
        "models",
        "timestamp",
    ]


_ids = st.lists(st.sampled_from([f"civitai-{i}" for i in range(30)]), max_size=40)


@given(st.lists(_ids, max_size=6))
def test_merge_is_the_ordered_union(lists):
    merged = merge_all_models(
        [SourceManifest("civitai", [_m(i) for i in ids]) for ids in lists], "T", ORIGINS
    )
    expected = list(dict.fromkeys(i for ids in lists for i in ids))
    assert [m["id"] for m in merged["models"]] == expected
    assert merged["totalModels"] == merged["civitai"] == len(expected)
    # Same input, same bytes.
    again = merge_all_models(
        [SourceManifest("civitai", [_m(i) for i in ids]) for ids in lists], "T", ORIGINS
    )
    assert encode_json(merged) == encode_json(again)


def test_build_manifest_shape_and_stable_bytes():
    doc = build_manifest("filter/sdxl", [_m("civitai-5", "Zeta é")], "2026-11-24T10:00:00Z", "O")
    data = encode_json(doc)
    assert json.loads(data) == {
        "filter": "filter/sdxl",
        "origin": "O",
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


def test_atomic_files_replace_together_after_every_fsync(tmp_path, monkeypatch):
    targets = [tmp_path / "a.json", tmp_path / "sub" / "b.json", tmp_path / "c.json"]
    targets[0].write_bytes(b"old a")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with AtomicFiles() as files:
        files.write(targets[0], b"new a")
        files.write(targets[1], [b"new ", b"b"])
        files.write(targets[2], iter([b"new c"]))
        assert targets[0].read_bytes() == b"old a" and not targets[2].exists()
    assert [path.read_bytes() for path in targets] == [b"new a", b"new b", b"new c"]
    assert sorted(os.listdir(tmp_path)) == ["a.json", "c.json", "sub"]
    assert os.listdir(tmp_path / "sub") == ["b.json"]
    kinds = [kind for kind, _ in events]
    # Every temporary on disk before the first rename, renames in the order written, then
    # each folder once.
    assert kinds == ["fsync"] * 3 + ["replace"] * 3 + ["fsync"] * 2
    assert all(name.endswith(".tmp") for _, name in events[:3])
    assert [name for _, name in events[3:6]] == [str(path) for path in targets]
    assert sorted(name for _, name in events[6:]) == sorted([str(tmp_path), str(tmp_path / "sub")])


def test_atomic_files_replace_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), AtomicFiles() as files:
        files.write(target, b"new")
        files.write(tmp_path / "b.json", b"new")
        raise RuntimeError
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_files_drop_only_the_file_whose_data_failed(tmp_path):
    def checked_then_invalid():
        yield b"{"
        raise ValueError("invalid document")

    with AtomicFiles() as files:
        files.write(tmp_path / "good.json", b"{}")
        with pytest.raises(ValueError, match="invalid document"):
            files.write(tmp_path / "bad.json", checked_then_invalid())
    assert os.listdir(tmp_path) == ["good.json"]


def test_atomic_files_replace_nothing_when_an_fsync_fails(tmp_path, monkeypatch):
    targets = [tmp_path / f"{name}.json" for name in "abc"]
    for path in targets:
        path.write_bytes(b"old")
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / ".b.json")):
            raise OSError("I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="I/O error"), AtomicFiles() as files:
        for path in targets:
            files.write(path, b"new")
    assert [path.read_bytes() for path in targets] == [b"old"] * 3
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json", "c.json"]


def test_atomic_files_keep_what_was_renamed_when_a_later_rename_fails(tmp_path, monkeypatch):
    targets = [tmp_path / f"{name}.json" for name in "abc"]
    for path in targets:
        path.write_bytes(b"old")
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("b.json"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"), AtomicFiles() as files:
        for path in targets:
            files.write(path, b"new")
    assert [path.read_bytes() for path in targets] == [b"new", b"old", b"old"]
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json", "c.json"]


def test_reading_manifests_from_disk(tmp_path):
    fs = parse_filters(
        json.dumps(
            {
                "civitai": [
                    {"name": n, "label": "L", "params": {}, "browsing_levels": ["PG"]}
                    for n in ("ok", "bad", "absent")
                ],
                "huggingface": [],
            }
        ),
        "f",
    )
    (tmp_path / "civitai-ok.json").write_bytes(
        encode_json(build_manifest("ok", [_m("civitai-1")], "T", "O"))
    )
    (tmp_path / "civitai-bad.json").write_text('{"origin": "O", "models": [{"id": 1}]}')
    found, problems = manifests_on_disk(tmp_path, fs, origins=ORIGINS)
    assert [(f.source, [dict(expand_entry(e)) for e in f.models]) for f in found] == [
        ("civitai", [_m("civitai-1")])
    ]
    assert "civitai-bad.json: not a manifest" in problems[0]
    assert "civitai-absent.json: missing" in problems[1]
    assert read_manifest_models(tmp_path / "nothing.json", "O") is None
    (tmp_path / "torn.json").write_text('{"models": [')
    with pytest.raises(ManifestError, match=r"torn\.json: not valid JSON"):
        read_manifest_models(tmp_path / "torn.json", "O")


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".civitai-a.json.x1y2.tmp").write_text("half")
    (tmp_path / "civitai-a.json").write_text("{}")
    (tmp_path / ".gitkeep").write_text("")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".civitai-a.json.x1y2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitkeep", "civitai-a.json"]


# --- Compact entries, streamed reading: what keeps a million models under 1 GiB ------------

_texts = st.text(alphabet="ab/-.-c1", max_size=6)


@given(model_id=_texts, slug=_texts, name=_texts)
def test_a_compact_entry_gives_back_exactly_its_model(model_id, slug, name):
    entry = compact_entry(model_id, slug, name)
    kept = entry if entry is not None else ManifestModel(model_id, slug, name)
    assert (entry_id(kept), *expand_entry(kept).values()) == (model_id, model_id, slug, name)
    assert (entry is not None) == (slug == model_id.replace("/", "--") and name == model_id)


def test_every_hf_model_is_kept_as_its_id_and_a_civitai_model_as_a_model():
    hf = normalize_model("huggingface", "meta-llama/Llama-3.1-8B", None)
    assert compact_entry(*hf) == "meta-llama/Llama-3.1-8B"
    assert compact_entry(*normalize_model("civitai", 4201, "Realistic Vision")) is None


def test_site_models_are_a_sequence_made_as_read():
    models = SiteModels()
    models.append("a/b", "huggingface")
    models.append(ManifestModel("civitai-1", "civitai-1", "One"), "civitai")
    models.append({"id": "civitai-2", "slug": "civitai-2", "name": "Two"}, "civitai")
    assert len(models) == 3
    assert models[0] == {"id": "a/b", "slug": "a--b", "name": "a/b", "source": "huggingface"}
    assert models[-1]["name"] == "Two" and [m["id"] for m in models[1:]] == [
        "civitai-1",
        "civitai-2",
    ]
    assert orjson.loads(orjson.dumps(models[:])) == [dict(m) for m in models]
    for outside in (3, -4):
        with pytest.raises(IndexError):
            models[outside]


def test_previous_files_are_read_as_streams_with_clear_errors(tmp_path):
    models = [_m("a/b"), _m("civitai-7", "Seven")]
    manifest = tmp_path / "hf-x.json"
    manifest.write_bytes(encode_json(build_manifest("x", models, "T", "O")))
    assert read_manifest_ids(manifest, "O") == ["a/b", "civitai-7"]
    assert [dict(expand_entry(e)) for e in read_manifest_models(manifest, "O")] == models
    empty = tmp_path / "hf-empty.json"
    empty.write_bytes(encode_json(build_manifest("x", [], "T", "O")))
    assert read_manifest_ids(empty, "O") == []
    site = tmp_path / "all-models.json"
    site.write_bytes(
        encode_json(
            merge_all_models(
                [SourceManifest("huggingface", models)], "2026-01-01T00:00:00Z", ORIGINS
            )
        )
    )
    previous, timestamp = read_previous_site_models(site, ORIGINS)
    assert [dict(m) for m in previous] == [
        {"id": "a/b", "slug": "a--b", "source": "huggingface"},
        {"id": "civitai-7", "slug": "civitai-7", "source": "huggingface"},
    ]
    assert timestamp == "2026-01-01T00:00:00Z"
    assert read_previous_site_models(tmp_path / "none.json", ORIGINS) is None
    for text, error in [
        ('{"models": [{"id": "a/b", "slug": "a--b"}]}', r"bad\.json: not a manifest .* at model 0"),
        ('{"models": [{"id": "a/b", "slug": "a--b", "name": 3}]}', r"not a manifest"),
        ('{"models": {"id": "a/b"}}', r"bad\.json: not a manifest \(no models list\)"),
        ("[]", r"no models list"),
        ('{"models": [{"id": "a/b", "slug": "a--b", "name": "a/b"},', r"not valid JSON"),
        ("", r"not valid JSON"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text.replace('{"models"', '{"origin": "O", "models"'))
        with pytest.raises(ManifestError, match=error):
            read_manifest_ids(bad, "O")
    bad.write_text(
        '{"origins": {"civitai": "O", "huggingface": "O"}, '
        '"models": [{"id": "a/b", "slug": "a--b", "name": "a/b"}]}'
    )
    with pytest.raises(ManifestError, match=r"not an all-models\.json .* at model 0"):
        read_previous_site_models(bad, ORIGINS)


def test_a_document_refused_mid_write_leaves_the_previous_file(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK_ITEMS", 2)
    path = tmp_path / "hf-x.json"
    path.write_text("previous")
    models = [_m(f"a/m{i}") for i in range(5)] + [{"id": "bad id", "slug": "x", "name": "x"}]
    validators = Validators()
    with pytest.raises(SchemaError, match=r"hf-x\.json does not match .* at /models/5"):
        write_atomic(
            path,
            validators.encode_checked(
                MANIFEST_SCHEMA, build_manifest("x", models, "2026-01-01T00:00:00Z", "O"), path.name
            ),
        )
    assert path.read_text() == "previous" and os.listdir(tmp_path) == ["hf-x.json"]
    document = build_manifest("x", models[:5], "2026-01-01T00:00:00Z", "O")
    write_atomic(path, validators.encode_checked(MANIFEST_SCHEMA, document, path.name))
    assert read_manifest_ids(path, "O") == [f"a/m{i}" for i in range(5)]
