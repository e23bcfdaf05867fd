import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifest_crawler.apis.normalize import InvalidModel, normalize_model


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
    ],
)
def test_invalid_models_are_refused_with_a_reason(source, raw_id, raw_name, reason):
    with pytest.raises(InvalidModel) as excinfo:
        normalize_model(source, raw_id, raw_name)
    assert excinfo.value.reason == reason


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
