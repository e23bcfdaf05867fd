"""The JSON Schemas: valid draft 2020-12, strict about what the crawler writes, and the fast
runtime validator (jsonschema-rs) agreeing with the reference one (jsonschema)."""

import copy
import json
import re
import shutil

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler.apis.normalize import InvalidModel, hf_id, normalize_model
from manifest_crawler.output import schemas
from manifest_crawler.output.changes import FilterOutcome, build_changes
from manifest_crawler.output.manifests import (
    SourceManifest,
    build_manifest,
    encode_json,
    merge_all_models,
)
from manifest_crawler.output.runreport import build_report
from manifest_crawler.output.schemas import (
    ALL_MODELS_SCHEMA,
    CHANGES_SCHEMA,
    JSON_SCHEMAS,
    MANIFEST_SCHEMA,
    RUN_REPORT_SCHEMA,
    SCHEMA_DIR,
    SchemaError,
    Validators,
    load_schema,
)
from manifest_crawler.spiders.civitai import CivitaiSpider
from tests.crawl import ROOT, crawl, files_in, project_settings_dict, read_json, write_filters
from tests.scripted import Reply

TS = "2026-11-24T10:00:00Z"
CIVITAI = {"id": "civitai-4201", "slug": "civitai-4201", "name": "Realistic Vision"}
HF = {
    "id": "meta-llama/Llama-3.1-8B",
    "slug": "meta-llama--Llama-3.1-8B",
    "name": "meta-llama/Llama-3.1-8B",
}
VALIDATORS = Validators()


def _ecma_pattern(validator, pattern, instance, schema):
    """JSON Schema patterns are ECMA-262, whose $ ends the string; Python's also matches before
    a final newline, so the reference validator reads a final $ as \\Z."""
    if not validator.is_type(instance, "string"):
        return
    python_pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if not re.search(python_pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


ReferenceValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)
REFERENCE = {name: ReferenceValidator(load_schema(name)) for name in JSON_SCHEMAS}


def _examples():
    manifest = build_manifest("filter/x", [CIVITAI, HF], TS, "https://civitai.com/api/v1/models")
    all_models = merge_all_models(
        [SourceManifest("civitai", [CIVITAI]), SourceManifest("huggingface", [HF])],
        TS,
        {"civitai": "emulator", "huggingface": "emulator"},
    )
    row = {
        "source": "civitai",
        "filter": "filter/x",
        "status": "fresh",
        "pages": 1,
        "max_pages": 10,
        "items_read": 3,
        "kept_share": 0.6667,
        "models": 2,
        "max_items": 100,
        "retries": 0,
        "duplicates": 0,
        "excluded": 0,
        "mismatched": 0,
        "dropped": {"invalid_id": 1},
        "errors": [],
        "end_reason": "last_page",
        "duration": 0.5,
        "reason": "last_page",
        "file": "civitai-filter-x.json",
        "manifest_models": 2,
        "empty": False,
    }
    report = build_report(
        spider="all",
        started=TS,
        finished=TS,
        exit_code=0,
        wrote_manifests=True,
        synthetic=True,
        origins={"civitai": "emulator", "huggingface": "emulator"},
        filters=[row],
    )
    outcome = FilterOutcome(
        "civitai", "filter/x", "civitai-filter-x.json", "fresh", None, ["civitai-4201"]
    )
    changes = build_changes(
        outcomes=[outcome],
        previous_models=None,
        previous_timestamp=None,
        models=all_models["models"],
        timestamp=TS,
    )
    # As written: the crawler's documents stream their model lists (jsonstream).
    return {
        MANIFEST_SCHEMA: orjson.loads(encode_json(manifest)),
        ALL_MODELS_SCHEMA: orjson.loads(encode_json(all_models)),
        RUN_REPORT_SCHEMA: report,
        CHANGES_SCHEMA: orjson.loads(encode_json(changes)),
    }


EXAMPLES = _examples()


def _valid(name, document):
    """Both validators' verdict, which must agree."""
    reference = REFERENCE[name].is_valid(document)
    try:
        VALIDATORS.check(name, document, "doc.json")
        runtime = True
    except SchemaError:
        runtime = False
    assert reference == runtime, (name, document)
    return reference


@pytest.mark.parametrize("name", JSON_SCHEMAS)
def test_schemas_are_valid_draft_2020_12_with_ids(name):
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:manifest-crawler:schema:")
    assert schema["additionalProperties"] is False


def test_shared_definitions_are_the_same_in_every_schema():
    seen = {}
    for name in JSON_SCHEMAS:
        for key, definition in load_schema(name)["$defs"].items():
            if key in ("model", "civitaiModel", "huggingFaceModel"):
                continue  # all-models' variants add "source"
            assert seen.setdefault(key, definition) == definition, (name, key)


def test_the_schemas_are_the_package_data_of_the_checkout():
    # tests/test_packaging.py checks that an installed wheel carries them.
    assert SCHEMA_DIR == ROOT / "manifest_crawler" / "data" / "schemas"
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json")) == sorted(JSON_SCHEMAS)


@pytest.mark.parametrize("name", JSON_SCHEMAS)
def test_what_the_crawler_builds_is_valid(name):
    assert _valid(name, EXAMPLES[name])


@pytest.mark.parametrize("name", JSON_SCHEMAS)
def test_a_missing_or_mistyped_top_level_field_is_rejected(name):
    document = EXAMPLES[name]
    for key in document:
        missing = {k: v for k, v in document.items() if k != key}
        assert not _valid(name, missing), f"{name} without {key}"
        wrong = {**document, key: {"not": "this type"}}
        assert not _valid(name, wrong), f"{name} with a wrong {key}"
    assert not _valid(name, {**document, "unexpected": 1})


MODEL_BREAKAGES = [
    ("missing id", lambda m: m.pop("id")),
    ("missing slug", lambda m: m.pop("slug")),
    ("missing name", lambda m: m.pop("name")),
    ("numeric id", lambda m: m.update(id=4201)),
    ("null name", lambda m: m.update(name=None)),
    ("blank name", lambda m: m.update(name="  ")),
    ("extra field", lambda m: m.update(url="https://x")),
]


@pytest.mark.parametrize("model", [CIVITAI, HF], ids=["civitai", "hf"])
@pytest.mark.parametrize(("what", "breakage"), MODEL_BREAKAGES, ids=[b[0] for b in MODEL_BREAKAGES])
def test_a_broken_model_is_rejected_in_a_manifest_and_in_all_models(model, what, breakage):
    broken = dict(model)
    breakage(broken)
    manifest = copy.deepcopy(EXAMPLES[MANIFEST_SCHEMA])
    manifest["models"][0] = broken
    assert not _valid(MANIFEST_SCHEMA, manifest), what
    all_models = copy.deepcopy(EXAMPLES[ALL_MODELS_SCHEMA])
    all_models["models"][0] = {**broken, "source": "civitai" if model is CIVITAI else "huggingface"}
    assert not _valid(ALL_MODELS_SCHEMA, all_models), what


@pytest.mark.parametrize(
    ("model_id", "slug"),
    [
        ("civitai-0", "civitai-0"),
        ("civitai-01", "civitai-01"),
        ("civitai-1\n", "civitai-1\n"),  # Python's $ would match before it; ECMA's does not
        ("civitai-\u0661", "civitai-\u0661"),  # an Arabic-Indic digit is a \d in Python
        ("a/b", "a--b"),  # an HF id in a CivitAI-sourced entry (all-models) or valid (manifest)
        ("a--b/c", "a----b--c"),
        ("a/b..c", "a--b..c"),
        ("-a/b", "-a--b"),
        ("a/b", "a-b"),
        ("a/b/c", "a--b--c"),
    ],
)
def test_ids_and_slugs_follow_the_normalisation_rules(model_id, slug):
    # (That a slug is its id's slug, e.g. civitai-1 for civitai-1, no JSON Schema can say.)
    all_models = copy.deepcopy(EXAMPLES[ALL_MODELS_SCHEMA])
    all_models["models"][0] = {"id": model_id, "slug": slug, "name": "X", "source": "civitai"}
    assert not _valid(ALL_MODELS_SCHEMA, all_models)


def test_a_timestamp_must_be_utc_to_the_second():
    for bad in ("2026-11-24T10:00:00", "2026-11-24T10:00:00.5Z", "2026-11-24 10:00:00Z", "x"):
        assert not _valid(MANIFEST_SCHEMA, {**EXAMPLES[MANIFEST_SCHEMA], "timestamp": bad})


def test_the_error_names_the_file_and_the_field():
    manifest = copy.deepcopy(EXAMPLES[MANIFEST_SCHEMA])
    del manifest["models"][0]["name"]
    with pytest.raises(SchemaError) as caught:
        VALIDATORS.check(MANIFEST_SCHEMA, manifest, "civitai-x.json")
    message = str(caught.value)
    assert message.startswith("civitai-x.json does not match manifest.schema.json: at /models/0")
    assert '"name" is a required property' in message


def test_a_string_json_cannot_hold_is_refused_like_an_invalid_value():
    """A lone surrogate passes the schema (it is a string) but is not UTF-8: the file is
    refused with a SchemaError, so a manifest is stale, not the run crashed."""
    manifest = copy.deepcopy(EXAMPLES[MANIFEST_SCHEMA])
    manifest["models"][0]["name"] = "Cat \ud83d"
    with pytest.raises(SchemaError, match=r"civitai-x.json cannot be encoded as JSON"):
        b"".join(VALIDATORS.encode_checked(MANIFEST_SCHEMA, manifest, "civitai-x.json"))


hf_parts = st.text(alphabet="aZ09._-/", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(raw=hf_parts)
def test_the_hf_patterns_accept_exactly_what_normalisation_accepts(raw):
    try:
        model = normalize_model("huggingface", hf_id(raw), None)
    except InvalidModel:
        accepted = False
    else:
        accepted = True
    candidate = {"id": raw, "slug": raw.replace("/", "--"), "name": raw}
    manifest = {**EXAMPLES[MANIFEST_SCHEMA], "models": [candidate]}
    assert _valid(MANIFEST_SCHEMA, manifest) == accepted
    if accepted:
        assert model.slug == candidate["slug"]


@settings(max_examples=200, deadline=None)
@given(
    model=st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(st.integers(), st.text(max_size=12), st.just("civitai-7")),
            "slug": st.one_of(st.text(max_size=12), st.just("civitai-7"), st.just("a--b")),
            # Control characters aside: \x1c-\x1f are spaces to Python's \s, not to ECMA's.
            "name": st.one_of(
                st.none(), st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=6)
            ),
            "source": st.sampled_from(["civitai", "huggingface", "x"]),
        },
    )
)
def test_runtime_and_reference_validators_agree(model):
    all_models = {**EXAMPLES[ALL_MODELS_SCHEMA], "models": [model]}
    _valid(ALL_MODELS_SCHEMA, all_models)
    manifest = {
        **EXAMPLES[MANIFEST_SCHEMA],
        "models": [{k: v for k, v in model.items() if k != "source"}],
    }
    _valid(MANIFEST_SCHEMA, manifest)


# --- In a crawl: nothing that fails its schema replaces a file ---------------------------------


def _tightened(tmp_path, name, path, change):
    """A copy of the schemas with one of them made stricter than the crawler's output."""
    folder = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, folder, dirs_exist_ok=True)
    schema = json.loads((folder / name).read_text())
    target = schema
    for key in path:
        target = target[key]
    target.update(change)
    (folder / name).write_text(json.dumps(schema))
    return folder


def _page(*ids):
    return {"items": [{"id": i, "name": f"Model {i}"} for i in ids], "metadata": {}}


def _crawl_settings(tmp_path, url):
    filters = [
        {"name": n, "label": n, "params": {"sort": n}, "browsing_levels": ["PG"]}
        for n in ("big", "new", "ok")
    ]
    return project_settings_dict(
        FILTERS_FILE=str(write_filters(tmp_path / "filters.json", civitai=filters)),
        MANIFEST_DIR=str(tmp_path / "out"),
        CIVITAI_API_URL=url,
    )


# Stricter than the crawler's output: a rule on the whole list (checked with the rest of the
# document) or on each model (checked chunk by chunk while the file is written).
TIGHTENINGS = {
    "whole list": (["properties", "models"], {"maxItems": 2}, "at /models:"),
    "each model": (["$defs", "civitaiId"], {"pattern": "^civitai-(4|7|4201)$"}, "at /models/"),
}


@pytest.mark.parametrize("tightening", TIGHTENINGS, ids=list(TIGHTENINGS))
@deferred_f_from_coro_f
async def test_a_manifest_failing_its_schema_is_not_written(
    tmp_path, scripted, monkeypatch, tightening
):
    path, change, where = TIGHTENINGS[tightening]
    out = tmp_path / "out"
    out.mkdir()
    _, url = scripted(
        {"big|": Reply(_page(1, 2, 3)), "new|": Reply(_page(4, 5, 6)), "ok|": Reply(_page(7))},
        by="sort",
    )
    previous = build_manifest("big", [CIVITAI], "2026-01-01T00:00:00Z", url)
    (out / "civitai-big.json").write_bytes(encode_json(previous))
    before = (out / "civitai-big.json").read_bytes()
    strict = _tightened(tmp_path, MANIFEST_SCHEMA, path, change)
    monkeypatch.setattr(schemas, "SCHEMA_DIR", strict)
    crawler = await crawl(CivitaiSpider, _crawl_settings(tmp_path, url))

    assert (out / "civitai-big.json").read_bytes() == before
    # A model refused mid-write leaves no temporary file behind either.
    assert [name for name in files_in(out) if name.startswith(".")] == []
    assert not (out / "civitai-new.json").exists()
    assert read_json(out / "civitai-ok.json")["models"][0]["id"] == "civitai-7"
    rows = {row["filter"]: row for row in read_json(out / "run-report.json")["filters"]}
    # Not refreshed: stale while the previous manifest stays, failed when there is none.
    assert (rows["big"]["status"], rows["new"]["status"], rows["ok"]["status"]) == (
        "stale",
        "failed",
        "fresh",
    )
    for name in ("big", "new"):
        assert rows[name]["reason"].startswith("manifest failed schema validation: ")
        [error] = rows[name]["errors"]
        assert error.startswith(f"civitai-{name}.json does not match manifest.schema.json: {where}")
    assert crawler.stats.get_value("manifest/exit_code") == 1
    assert crawler.stats.get_value("manifest/schema/invalid") == 2
    # all-models.json is built from what is on disk: the stale manifest, and the fresh one.
    ids = [m["id"] for m in read_json(out / "all-models.json")["models"]]
    assert ids == ["civitai-4201", "civitai-7"]


@deferred_f_from_coro_f
async def test_an_invalid_all_models_is_a_bug_that_fails_the_run(
    tmp_path, scripted, monkeypatch, caplog
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "all-models.json").write_text("previous")
    _, url = scripted({"": Reply(_page(1))})
    strict = _tightened(tmp_path, ALL_MODELS_SCHEMA, ["properties", "models"], {"maxItems": 0})
    monkeypatch.setattr(schemas, "SCHEMA_DIR", strict)
    crawler = await crawl(CivitaiSpider, _crawl_settings(tmp_path, url))
    assert (out / "all-models.json").read_text() == "previous"
    assert "Not written, the crawler produced an invalid document (a bug): all-models.json" in (
        caplog.text
    )
    assert crawler.stats.get_value("manifest/exit_code") == 1
    # All or nothing: neither the fresh manifests nor the run report replace anything.
    assert list(files_in(out)) == ["all-models.json"]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        (MANIFEST_SCHEMA, ("models",)),
        (ALL_MODELS_SCHEMA, ("models",)),
        *((CHANGES_SCHEMA, ("filters", 0, key)) for key in ("added", "removed", "moved")),
        (CHANGES_SCHEMA, ("new",)),
        (CHANGES_SCHEMA, ("gone",)),
    ],
)
def test_every_big_array_is_checked_in_chunks(name, path):
    # A rule about a whole array would make a million-model document be checked whole.
    assert VALIDATORS.checks_in_chunks(name, path)
    whole = Validators()
    whole._schemas[name] = copy.deepcopy(whole._schemas[name])
    schemas.subschema_at(whole._schemas[name], path)["uniqueItems"] = True  # type: ignore[index]
    assert not whole.checks_in_chunks(name, path)
