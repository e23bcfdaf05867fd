"""filters.json against what the real APIs accept and mean (facts from api-notes.md, quoted
here, not read from the emulator: the emulator could share the file's mistakes)."""

import re

import pytest

from manifest_crawler.filters import NSFW_LEVEL_BITS, ContentRule, listing_key, load_filters
from tests.api_notes import (
    CIVITAI_FAMILIES,
    CIVITAI_LEGACY_BASE_MODELS,
    CIVITAI_SORTS,
    CIVITAI_TYPES,
    HUB_LIBRARIES,
    HUB_LICENSES,
    HUB_PIPELINE_TAGS,
    HUB_RETIRED_PIPELINE_TAGS,
    HUB_WEIGHT_TAGS,
)
from tests.crawl import REPO_FILTERS

FILTERS = load_filters(REPO_FILTERS)
CIVITAI = FILTERS.for_source("civitai")
HUB = FILTERS.for_source("huggingface")

# CivitAI (api-notes: ModelType enum, sort and period values, baseModelRecords).
TYPES = set(CIVITAI_TYPES)
SORTS = set(CIVITAI_SORTS)
PERIODS = {"AllTime", "Year", "Month", "Week", "Day"}
FAMILIES = {name: set(names) for name, names in CIVITAI_FAMILIES.items()}
LEGACY = set(CIVITAI_LEGACY_BASE_MODELS)
BASE_MODELS = {*LEGACY, *set().union(*FAMILIES.values())}
BASE_MODELS |= {"Illustrious", "NoobAI", "SD 2.1", "Hunyuan Video"}

# Hugging Face (api-notes: sort values, tag names, num_parameters form).
HUB_SORTS = {"downloads", "likes", "lastModified", "createdAt", "trendingScore", "likes30d", "id"}
WRONG_TAGS = {"tensorflow": "tf", "trending": "trendingScore"}
MATURE_LABEL = re.compile(r"\bRated (R|X|XXX)\b")
SOFT = ContentRule("browsing_levels", NSFW_LEVEL_BITS["PG"] | NSFW_LEVEL_BITS["PG13"])


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
def test_civitai_filters_say_their_rule(filter_):
    # nsfw=false lists every model with any PG content and misses PG-13-only ones: the rule
    # is kept on the nsfw=true listing, and the label says it in plain words.
    assert filter_.param_values("nsfw") == ("true",)
    assert filter_.rule is not None
    if filter_.rule.kind == "browsing_levels":
        # Every list that does not announce mature content is what civitai.com lists to a
        # visitor browsing at PG-13.
        assert filter_.rule == SOFT
        assert filter_.label.endswith("(as civitai.com lists them at PG-13)"), filter_.label
        assert not MATURE_LABEL.search(filter_.label)
    else:
        # A rating bucket: one level, the highest of the model's content.
        assert filter_.rule.kind == "rated" and filter_.name.startswith("filter/")
        level = next(n for n, bit in NSFW_LEVEL_BITS.items() if bit == filter_.rule.levels)
        shown = level.replace("PG13", "PG-13")
        assert filter_.label.startswith(
            f"Rated {shown}: {shown} is the highest level of its content"
        ), filter_.label
    if "Soft" in filter_.name.split("/"):
        assert filter_.rule == SOFT


@pytest.mark.parametrize("filter_", CIVITAI, ids=lambda f: f.name)
def test_newest_labels_say_it_orders_by_the_latest_published_version(filter_):
    if filter_.param_values("sort") == ("Newest",):
        assert "latest published version" in filter_.label, filter_.label


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
        if tag.startswith("license:"):
            assert tag.removeprefix("license:") in HUB_LICENSES, tag
        else:
            assert tag in HUB_LIBRARIES or tag in HUB_WEIGHT_TAGS, tag
    for task in filter_.param_values("pipeline_tag"):
        assert task not in HUB_RETIRED_PIPELINE_TAGS, f"{task} is retired: it lists nothing"
        assert task in HUB_PIPELINE_TAGS, task
    for value in filter_.param_values("num_parameters"):
        assert re.fullmatch(r"(min:[0-9]+[KMBT]?)(,max:[0-9]+[KMBT]?)?", value), value


@pytest.mark.parametrize("filter_", HUB, ids=lambda f: f.name)
def test_hub_download_labels_say_the_last_30_days(filter_):
    # The Hub's downloads (field and sort) count the last 30 days, not all time.
    if filter_.param_values("sort") == ("downloads",):
        assert "downloads in the last 30 days" in filter_.label, filter_.label


def test_every_keras_library_has_its_filter():
    # keras is Keras 3; the legacy Keras 2 models are tf-keras, a library of their own.
    tags = {tag for f in HUB for tag in f.param_values("filter")}
    assert {"keras", "tf-keras"} <= tags


def test_no_two_filters_are_the_same_list():
    for filters in (CIVITAI, HUB):
        keys = [(listing_key(f), f.rule, f.max_items) for f in filters]
        assert len(set(keys)) == len(keys)
    assert FILTERS.warnings == ()
