"""filters.json against what the real APIs accept and mean (facts from api-notes.md, quoted
here, not read from the emulator: the emulator could share the file's mistakes)."""

import re

import pytest

from manifest_crawler.filters import NSFW_LEVEL_BITS, listing_key, load_filters
from tests.api_notes import CIVITAI_TYPES
from tests.crawl import REPO_FILTERS

FILTERS = load_filters(REPO_FILTERS)
CIVITAI = FILTERS.for_source("civitai")
HUB = FILTERS.for_source("huggingface")

# CivitAI (api-notes: ModelType enum, sort and period values, baseModelRecords).
TYPES = set(CIVITAI_TYPES)
SORTS = {
    "Highest Rated",
    "Most Downloaded",
    "Most Liked",
    "Most Discussed",
    "Most Collected",
    "Most Images",
    "Newest",
    "Oldest",
}
PERIODS = {"AllTime", "Year", "Month", "Week", "Day"}
FAMILIES = {
    "SD 3.5": {"SD 3.5 Large", "SD 3.5 Medium", "SD 3.5 Large Turbo"},
    "Wan Video": {
        "Wan Video 14B t2v",
        "Wan Video 14B i2v 480p",
        "Wan Video 14B i2v 720p",
        "Wan Video 1.3B t2v",
        *(f"Wan Video 2.2 {v}" for v in ("TI2V-5B", "I2V-A14B", "T2V-A14B")),
        *(f"Wan Video 2.5 {v}" for v in ("T2V", "I2V")),
    },
    "Flux": {"Flux.1 D", "Flux.1 S", "Flux.1 Krea", "Flux.1 Kontext"},
    "Pony": {"Pony", "Pony V7"},
    "SD 1.5": {"SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper"},
    "SDXL": {"SDXL 1.0", "SDXL Lightning", "SDXL Hyper", "SDXL Turbo"},
}
#: Hidden legacy names: only old models carry them.
LEGACY = {"SD 3.5", "Wan Video"}
BASE_MODELS = {*LEGACY, *set().union(*FAMILIES.values())}
BASE_MODELS |= {"Illustrious", "NoobAI", "SD 2.1", "Hunyuan Video"}

# Hugging Face (api-notes: sort values, tag names, num_parameters form).
HUB_SORTS = {"downloads", "likes", "lastModified", "createdAt", "trendingScore", "likes30d", "id"}
HUB_LIBRARY_TAGS = set(
    [
        "transformers",
        "pytorch",
        "tf",
        "jax",
        "diffusers",
        "gguf",
        "onnx",
        "sentence-transformers",
        "peft",
        "safetensors",
        "mlx",
        "keras",
        "timm",
    ]
)
WRONG_TAGS = {"tensorflow": "tf", "trending": "trendingScore"}
MATURE_LABEL = re.compile(r"\bRated (R|X|XXX)\b")


@pytest.mark.parametrize("filter_", CIVITAI, ids=lambda f: f.name)
def test_civitai_values_are_the_apis(filter_):
    assert set(filter_.param_values("types")) <= TYPES
    assert set(filter_.param_values("sort")) <= SORTS
    assert set(filter_.param_values("period")) <= PERIODS
    bases = set(filter_.param_values("baseModels"))
    assert bases <= BASE_MODELS
    assert not bases or bases - LEGACY, "a retired name alone lists (nearly) nothing"
    for family in FAMILIES.values():
        if bases & family and len(bases & family) > 1:
            assert family <= bases, f"a family filter lists every name of the family: {family}"


@pytest.mark.parametrize("filter_", CIVITAI, ids=lambda f: f.name)
def test_civitai_filters_say_their_rating(filter_):
    # nsfw=false lists every model with any PG content, R, X and XXX ones too: a rating rule
    # on the nsfw=true listing is the only way to a list of one rating.
    assert filter_.param_values("nsfw") == ("true",)
    assert filter_.rating_mask is not None
    mature = filter_.rating_mask & ~(NSFW_LEVEL_BITS["PG"] | NSFW_LEVEL_BITS["PG13"])
    assert bool(mature) is bool(MATURE_LABEL.search(filter_.label)), filter_.label
    if "Soft" in filter_.name.split("/"):
        assert filter_.rating_mask == NSFW_LEVEL_BITS["PG"] | NSFW_LEVEL_BITS["PG13"]


def test_the_rating_filters_are_one_rating_each():
    by_name = {f.name: f.rating_mask for f in CIVITAI}
    assert {name: by_name[f"filter/{name}"] for name in ("pg", "pg13", "r", "x", "xxx")} == {
        "pg": 1,
        "pg13": 2,
        "r": 4,
        "x": 8,
        "xxx": 16,
    }


@pytest.mark.parametrize("filter_", CIVITAI, ids=lambda f: f.name)
def test_period_labels_say_what_the_period_means(filter_):
    # A period keeps models with a version published in it, ordered by all-time counts.
    period = filter_.param_values("period")
    if period and period != ("AllTime",):
        assert "updated" in filter_.label.lower(), filter_.label
        assert "most downloaded this" not in filter_.label.lower()


@pytest.mark.parametrize("filter_", HUB, ids=lambda f: f.name)
def test_hub_values_are_the_hubs(filter_):
    assert set(filter_.param_values("sort")) <= HUB_SORTS
    for tag in filter_.param_values("filter"):
        assert tag not in WRONG_TAGS, f"the Hub's tag is {WRONG_TAGS.get(tag)!r}"
        assert tag in HUB_LIBRARY_TAGS or tag.startswith("license:"), tag
    for value in filter_.param_values("num_parameters"):
        assert re.fullmatch(r"(min:[0-9]+[KMBT]?)(,max:[0-9]+[KMBT]?)?", value), value


def test_no_two_filters_are_the_same_list():
    for filters in (CIVITAI, HUB):
        keys = [(listing_key(f), f.rating_mask, f.max_items) for f in filters]
        assert len(set(keys)) == len(keys)
    assert FILTERS.warnings == ()
