import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifest_crawler.apis.normalize import InvalidModel, normalize_model
from manifest_crawler.text import has_control


def test_civitai_model():
    assert normalize_model("civitai", 4201, "  Realistic Vision  ") == (
        "civitai-4201",
        "civitai-4201",
        "Realistic Vision",
    )
    assert normalize_model("civitai", "77", "x").id == "civitai-77"


def test_hf_model():
    assert normalize_model("huggingface", "meta-llama/Llama-3.1-8B", None) == (
        "meta-llama/Llama-3.1-8B",
        "meta-llama--Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B",
    )


@pytest.mark.parametrize(
    ("source", "raw_id", "raw_name", "reason"),
    [
        ("civitai", None, "x", "missing_id"),
        ("civitai", "12a", "x", "invalid_id"),
        ("civitai", 1.5, "x", "invalid_id"),
        ("civitai", True, "x", "invalid_id"),
        ("civitai", -3, "x", "invalid_id"),
        ("civitai", 3, "   ", "missing_name"),
        ("civitai", 3, None, "missing_name"),
        ("huggingface", None, None, "missing_id"),
        ("huggingface", "no-owner", None, "invalid_id"),
        ("huggingface", "a/b/c", None, "invalid_id"),
        ("huggingface", "a--b/c", None, "invalid_id"),
        ("huggingface", "a/..", None, "invalid_id"),
        ("huggingface", "a/b c", None, "invalid_id"),
        ("huggingface", 12, None, "invalid_id"),
        ("huggingface", "a-/b", None, "invalid_id"),
        ("huggingface", "a/-b", None, "invalid_id"),
        ("huggingface", ".a/b", None, "invalid_id"),
        # Hostile values: each costs its item only, with a reason.
        ("civitai", "9" * 5000, "x", "invalid_id"),
        ("civitai", 2**63, "x", "invalid_id"),
        ("civitai", 10**400, "x", "invalid_id"),
        ("civitai", math.inf, "x", "invalid_id"),
        ("civitai", [1], "x", "invalid_id"),
        ("civitai", {"id": 1}, "x", "invalid_id"),
        ("civitai", 0, "x", "invalid_id"),
        ("civitai", 3, "x" * 1001, "name_too_long"),
        ("civitai", 3, "\x00\t\n", "missing_name"),
        ("civitai", 3, ["a"], "missing_name"),
        ("huggingface", "a/" + "b" * 300, None, "invalid_id"),
        ("huggingface", "a/b\ud800", None, "invalid_id"),
    ],
)
def test_invalid_models_are_refused_with_a_reason(source, raw_id, raw_name, reason):
    with pytest.raises(InvalidModel) as excinfo:
        normalize_model(source, raw_id, raw_name)
    assert excinfo.value.reason == reason
    # What the log says of it is one short line.
    assert len(str(excinfo.value)) < 200 and str(excinfo.value).isprintable()


def test_names_are_repaired_as_documented():
    # A lone surrogate (a JavaScript server cutting a string inside an emoji) becomes U+FFFD;
    # each run of control characters one space.
    assert normalize_model("civitai", 1, "Cat \ud83d").name == "Cat \ufffd"
    assert normalize_model("civitai", 1, "Tab\there\r\n\x00x").name == "Tab here x"
    assert normalize_model("civitai", 1, "Caf\u00e9 \U0001f600").name == "Caf\u00e9 \U0001f600"
    assert normalize_model("civitai", 2**63 - 1, "x").id == f"civitai-{2**63 - 1}"


_raw = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@given(st.sampled_from(["civitai", "huggingface"]), _raw, _raw)
def test_any_raw_model_is_refused_with_a_reason_or_written_as_utf8(source, raw_id, raw_name):
    try:
        model = normalize_model(source, raw_id, raw_name)
    except InvalidModel as exc:
        assert exc.reason in {"missing_id", "invalid_id", "missing_name", "name_too_long"}
        str(exc).encode("utf-8")
        return
    # orjson refuses any string that is not valid UTF-8, as the writer would.
    orjson.dumps(model._asdict())
    assert not has_control(model.name) and model.name == model.name.strip()


_part = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)


@given(_part, _part)
def test_hf_slug_maps_back_to_exactly_one_repo(owner, name):
    repo = f"{owner}/{name}"
    try:
        model = normalize_model("huggingface", repo, None)
    except InvalidModel:
        assert (
            "--" in repo
            or ".." in repo
            or any(part[0] in "-." or part[-1] in "-." for part in (owner, name))
        )
        return
    assert model.slug.replace("--", "/", 1) == repo
    assert model.slug.count("--") == 1
