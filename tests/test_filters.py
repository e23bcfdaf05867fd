import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifest_crawler.filters import (
    MAX_FILE_BYTES,
    NSFW_LEVEL_BITS,
    RULE_KEYS,
    ContentRule,
    FiltersError,
    filter_file_stem,
    item_limit,
    keeps_rating,
    load_filters,
    parse_filters,
    rating,
    shares_browsing_level,
)

REPO_FILTERS = Path(__file__).resolve().parent.parent / "filters.json"


def _doc(civitai=None, huggingface=None):
    return json.dumps({"civitai": civitai or [], "huggingface": huggingface or []})


_NSFW = {"nsfw": "true", "sort": "Most Downloaded"}


def _entry(name="x", **extra):
    return {"name": name, "label": "X", "params": {"sort": "likes"}, **extra}


def _civitai(name="x", **extra):
    """A CivitAI entry; browsing level PG (the API's own nsfw=false) unless it gives a rule."""
    rule = {} if set(extra) & set(RULE_KEYS) else {"browsing_levels": ["PG"]}
    return {"name": name, "label": "X", "params": {"sort": "Newest"}, **rule, **extra}


def test_repo_filters_file_is_valid_and_complete():
    filters = load_filters(REPO_FILTERS)
    civitai = {f.name: f for f in filters.for_source("civitai")}
    hf = {f.name: f for f in filters.for_source("huggingface")}
    assert len(civitai) >= 50
    assert len(hf) >= 40
    for name in [
        "AllTime/All/All/downloads/Soft",
        "Week/All/All/downloads/Soft",
        "Month/All/All/downloads/Soft",
        "filter/checkpoints",
        "filter/loras",
        "filter/textual-inversion",
        "filter/sd15",
        "filter/sdxl",
        "filter/flux",
        "filter/pony",
        "filter/illustrious",
        "filter/week/checkpoints/sdxl",
        "filter/month/loras/sdxl",
        "filter/pg",
        "filter/pg13",
        "filter/r",
        "filter/x",
    ]:
        assert name in civitai, name
    for name in [
        "likes",
        "recent",
        "trending",
        "downloads",
        "text-generation",
        "sentence-similarity",
        "question-answering",
        "small",
        "medium",
        "large",
        "apache-2.0",
        "mit",
        "gpl",
        "cc-by-4.0",
        "cc-by-sa-4.0",
        "transformers",
        "pytorch",
        "tensorflow",
        "diffusers",
        "gguf",
    ]:
        assert name in hf, name
    # The real API's values, not the names' guesses.
    assert hf["trending"].param_values("sort") == ("trendingScore",)
    assert hf["gpl"].param_values("filter") == ("license:gpl-3.0",)
    assert civitai["filter/loras"].param_values("types") == ("LORA",)
    assert civitai["filter/week/checkpoints/sdxl"].param_values("period") == ("Week",)
    assert civitai["filter/r"].rule == ContentRule("rated", NSFW_LEVEL_BITS["R"])
    assert civitai["AllTime/All/All/downloads/Soft"].rule == ContentRule("browsing_levels", 3)
    assert civitai["filter/r"].param_values("nsfw") == ("true",)
    for f in filters:
        assert "page" not in dict(f.params)
        assert f.label.strip()


def test_list_params_repeat_their_key_in_order():
    fs = parse_filters(
        _doc(civitai=[_civitai(params={"baseModels": ["Flux.1 D", "Flux.1 S"], "sort": "Newest"})]),
        "f.json",
    )
    (f,) = fs.for_source("civitai")
    assert f.query_pairs() == [
        ("baseModels", "Flux.1 D"),
        ("baseModels", "Flux.1 S"),
        ("sort", "Newest"),
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"civitai": [', "invalid JSON at line 1"),
        ('["x"]', "top level must be an object"),
        (_doc(civitai=[{"label": "L", "params": {}}]), "civitai[0]: missing 'name'"),
        (_doc(civitai=[{"name": "a", "label": "L"}]), "civitai[0] ('a'): missing 'params'"),
        (_doc(huggingface=[{"name": "a", "params": {}}]), "huggingface[0] ('a'): missing 'label'"),
        (
            _doc(civitai=[_civitai("a"), _civitai("b"), _civitai("a")]),
            "civitai[2] ('a'): duplicate name",
        ),
        (_doc(civitai=[_civitai("a/b"), _civitai("a-b")]), "would collide with filter 'a/b'"),
        (json.dumps({"civitai": [], "replicate": []}), "unknown source 'replicate'"),
        (_doc(civitai=[_civitai("../etc/passwd")]), "cannot make a safe file name"),
        (_doc(civitai=[_civitai(".hidden")]), "cannot make a safe file name"),
        (_doc(civitai=[_civitai("a//b")]), "cannot make a safe file name"),
        (_doc(civitai=[_civitai("/abs")]), "cannot make a safe file name"),
        (_doc(civitai=[_civitai("sp ace")]), "cannot make a safe file name"),
        (_doc(civitai=[_civitai(params={"page": "2"})]), "params.page is not allowed"),
        (_doc(huggingface=[_entry(params={"limit": "5"})]), "params.limit is not allowed"),
        (_doc(civitai=[_civitai(params={"nsfw": True})]), "params.nsfw must be a string"),
        (_doc(civitai=[_civitai(params={"types": []})]), "params.types must be a string"),
        (_doc(civitai=[_civitai(max_items=-1)]), "'max_items' must be an integer from 0 to"),
        (_doc(civitai=[_civitai(max_items=True)]), "'max_items' must be an integer from 0 to"),
        (_doc(civitai=[_civitai(max_items=10**7 + 1)]), "from 0 to 10000000 (0: no limit), got"),
        (_doc(civitai=[_civitai(max_items=10**30)]), "a number of 31 digits"),
        (_doc(civitai=[_civitai(max_items=1e30)]), "'max_items' must be an integer"),
        ('{"civitai": [{"max_items": ' + "9" * 5000 + "}]}", "a number of 5000 digits"),
        ('{"civitai": [{"max_items": NaN}]}', "NaN is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deep"),
        ('{"civitai": [], "civitai": []}', "the key 'civitai' appears twice"),
        (_doc(civitai=[_civitai(params={"types": ["LORA"] * 101})]), "a list of 1 to 100 strings"),
        (_doc(civitai=[_civitai(params={"query": "x" * 4001})]), "4001 characters long"),
        (_doc(civitai=[_civitai(params={"query": "a\nb"})]), "params.query' holds a control"),
        (_doc(civitai=[_civitai(label="x" * 301)]), "'label' is 301 characters long"),
        ('{"civitai": [{"name": "a", "label": "\\ud800", "params": {}}]}', "lone surrogate"),
        (_doc(civitai=[_civitai(params={"token": "t"})]), "in the CIVITAI_API_TOKEN environment"),
        (_doc(huggingface=[_entry(params={"access_token": "t"})]), "HF_TOKEN environment"),
        (_doc(civitai=[_civitai(name="x" * 100_000)]), "('xxxxxxxxxx"),
        (_doc(civitai=[_civitai(rated="NC17", params=_NSFW)]), "'rated' must be one of PG, PG13"),
        (_doc(civitai=[_civitai(rated_at_most=["PG"], params=_NSFW)]), "'rated_at_most' must be"),
        (_doc(civitai=[_civitai(max_pages=0)]), "'max_pages' must be an integer from 1 to"),
        (_doc(civitai=[_civitai(max_pages=2.5)]), "'max_pages' must be an integer from 1 to"),
        (_doc(huggingface=[_entry(max_pages="9")]), "'max_pages' must be an integer from 1 to"),
        (_doc(huggingface=[_entry(max_pages=10**7 + 1)]), "from 1 to 10000000"),
        (_doc(huggingface=[_entry(rated="PG")]), "'rated' applies to CivitAI filters only"),
        (_doc(huggingface=[_entry(browsing_levels=["PG"])]), "applies to CivitAI filters only"),
        (_doc(civitai=[_civitai(rated="R", rated_at_most="X", params=_NSFW)]), "not several"),
        (
            _doc(civitai=[_civitai(rated="R", browsing_levels=["PG"], params=_NSFW)]),
            "give one of 'browsing_levels', 'rated', not several",
        ),
        (_doc(civitai=[_civitai(rated_at_most="PG13")]), 'needs params.nsfw "true"'),
        (
            _doc(civitai=[_civitai(browsing_levels=["PG", "PG13"])]),
            'browsing levels other than ["PG"] need params.nsfw "true"',
        ),
        (_doc(civitai=[_civitai(browsing_levels=[], params=_NSFW)]), "a non-empty list of levels"),
        (
            _doc(civitai=[_civitai(browsing_levels="PG", params=_NSFW)]),
            "a non-empty list of levels",
        ),
        (_doc(civitai=[_civitai(browsing_levels=["PG-13"], params=_NSFW)]), "got 'PG-13'"),
        (
            _doc(civitai=[{"name": "x", "label": "X", "params": _NSFW}]),
            "civitai[0] ('x'): say which models the filter keeps: give 'browsing_levels' (the "
            "models civitai.com lists at those levels), 'rated' (the model's highest level is "
            "exactly that one) or 'rated_at_most' (that one or milder)",
        ),
        (_doc(civitai=[_civitai(nsfw_levels=["PG"])]), "'nsfw_levels' is gone: give 'browsing"),
        (_doc(civitai=[_civitai(parms={})]), "unknown key 'parms'"),
        (_doc(civitai=[_civitai(label=" ")]), "'label' must be a non-empty string"),
    ],
)
def test_invalid_files_name_the_culprit(document, message):
    with pytest.raises(FiltersError) as excinfo:
        parse_filters(document, "filters.json")
    assert str(excinfo.value).startswith("filters.json")
    assert message in str(excinfo.value)
    # One line, short whatever the file holds.
    assert "\n" not in str(excinfo.value) and len(str(excinfo.value)) < 400


def test_a_file_past_the_size_limit_is_refused_unread(tmp_path):
    big = tmp_path / "filters.json"
    big.write_text(_doc(civitai=[_entry(description="x" * 9000)] * 200))
    assert big.stat().st_size > MAX_FILE_BYTES
    with pytest.raises(FiltersError, match=r"larger than 1048576 bytes"):
        load_filters(big)
    big.write_bytes(b'{"civitai": [], "huggingface": [], "x": "\xff"}')
    with pytest.raises(FiltersError, match=r"not UTF-8 \(byte 41: invalid start byte"):
        load_filters(big)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FiltersError, match=r"nope\.json: file not found"):
        load_filters(tmp_path / "nope.json")


def test_select_by_name_and_unknown_names():
    fs = parse_filters(_doc(civitai=[_civitai("a"), _civitai("b")], huggingface=[_entry("a")]), "f")
    assert [f.key for f in fs.select(["civitai", "huggingface"], ["a"])] == [
        ("civitai", "a"),
        ("huggingface", "a"),
    ]
    assert [f.key for f in fs.select(["civitai", "huggingface"], ["huggingface:a"])] == [
        ("huggingface", "a")
    ]
    assert [f.key for f in fs.select(["civitai"], None)] == [("civitai", "a"), ("civitai", "b")]
    with pytest.raises(FiltersError, match=r"unknown filter name.*: zzz"):
        fs.select(["civitai"], ["a", "zzz"])


_segment = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)


@given(st.lists(_segment, min_size=1, max_size=4))
def test_every_valid_name_makes_a_flat_safe_file_name(segments):
    name = "/".join(segments)
    try:
        fs = parse_filters(_doc(civitai=[_civitai(name)]), "f")
    except FiltersError:
        return  # names the validator refuses never reach the file system
    stem = filter_file_stem(fs.for_source("civitai")[0].name)
    assert "/" not in stem
    assert not stem.startswith(".")
    assert ".." not in stem.split("-")


@given(st.text(max_size=30))
def test_any_name_is_either_refused_or_safe(name):
    try:
        fs = parse_filters(_doc(civitai=[_civitai(name)]), "f")
    except FiltersError as exc:
        assert "civitai[0]" in str(exc)
        return
    stem = filter_file_stem(fs.for_source("civitai")[0].name)
    assert stem and "/" not in stem and "\\" not in stem and not stem.startswith(".")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in stem)


# -- ratings ------------------------------------------------------------------------------

_LEVELS = ("PG", "PG13", "R", "X", "XXX")


@pytest.mark.parametrize("mask", range(1, 32))
def test_rating_is_the_highest_level_of_every_mask(mask):
    expected = next(name for bit, name in reversed(list(enumerate(_LEVELS))) if mask >> bit & 1)
    assert rating(mask) == expected
    # Rated exactly L: the rating's bit only; rated at most L: it and every milder one.
    for index, level in enumerate(_LEVELS):
        assert keeps_rating(1 << index, mask) is (expected == level)
        at_most = (1 << (index + 1)) - 1
        assert keeps_rating(at_most, mask) is (_LEVELS.index(expected) <= index)


def test_rating_of_the_real_top_page_and_of_flagged_and_blocked_masks():
    # api-notes: a real top-10 Checkpoint page; 60 is a model flagged nsfw; 32 is Blocked.
    assert [rating(m) for m in (31, 15, 7, 15, 31, 23, 15, 31, 7, 31)] == [
        "XXX", "X", "R", "X", "XXX", "XXX", "X", "XXX", "R", "XXX"
    ]  # fmt: skip
    assert rating(60) == "XXX"
    assert rating(32) is None
    assert rating(33) == "PG"
    assert not keeps_rating(31, 32)
    assert not keeps_rating(3, "7")
    assert not keeps_rating(3, None)
    assert not keeps_rating(3, True)


@pytest.mark.parametrize("mask", range(1, 64))
def test_browsing_levels_keep_every_mask_sharing_a_bit(mask):
    # Every mask (Blocked, 32, included) against every set of browsing levels: listed exactly
    # when one of the model's levels is one of them, whatever else it shows.
    model_levels = {level for index, level in enumerate(_LEVELS) if mask >> index & 1}
    for levels in range(1, 32):
        browsing = {level for index, level in enumerate(_LEVELS) if levels >> index & 1}
        shared = bool(model_levels & browsing)
        assert shares_browsing_level(levels, mask) is shared, levels
        assert ContentRule("browsing_levels", levels).keeps(mask) is shared, levels


@pytest.mark.parametrize("mask", range(1, 64))
def test_browsing_level_pg13_lists_what_the_rating_rule_left_out(mask):
    # "Soft" as civitai.com lists it at PG-13 (any PG or PG-13 content) against the former
    # rule (nothing above PG-13): the browsing level holds every model the rating kept, and
    # the models with PG or PG-13 content beside mature content too.
    soft = ContentRule("browsing_levels", 3)
    at_most = ContentRule("rated_at_most", 3)
    assert soft.keeps(mask) is bool(mask & 3)
    assert at_most.keeps(mask) is bool(mask & 3 and not mask & 28)
    assert not at_most.keeps(mask) or soft.keeps(mask)


@pytest.mark.parametrize("mask", range(1, 64))
def test_each_rating_bucket_keeps_the_masks_whose_highest_level_it_is(mask):
    highest = max((index for index in range(5) if mask >> index & 1), default=None)
    buckets = [
        level for level in _LEVELS if ContentRule("rated", NSFW_LEVEL_BITS[level]).keeps(mask)
    ]
    assert buckets == ([] if highest is None else [_LEVELS[highest]])
    for index, level in enumerate(_LEVELS):
        rule = ContentRule("rated_at_most", (1 << (index + 1)) - 1)
        assert rule.keeps(mask) is (highest is not None and highest <= index), level


def test_rules_keep_nothing_without_an_integer_mask():
    for rule in (ContentRule("browsing_levels", 31), ContentRule("rated_at_most", 31)):
        for value in (None, "7", True, 7.0, [7]):
            assert not rule.keeps(value)


@given(st.integers(min_value=1, max_value=63), st.integers(min_value=1, max_value=31))
def test_a_model_is_kept_by_exactly_one_exact_rating(mask, rating_mask):
    kept_by = [level for index, level in enumerate(_LEVELS) if keeps_rating(1 << index, mask)]
    assert len(kept_by) == (1 if mask & 31 else 0)
    # A rule keeps a model exactly when it keeps the model's rating: blocked bits never count.
    assert keeps_rating(rating_mask, mask) == keeps_rating(rating_mask, mask & 31)


def test_rule_keys_become_a_rule_of_levels():
    fs = parse_filters(
        _doc(
            civitai=[
                _civitai("exact", rated="R", params=_NSFW),
                _civitai("at-most", rated_at_most="PG13", params=_NSFW),
                _civitai("xxx", rated_at_most="XXX", params=_NSFW),
                _civitai("soft", browsing_levels=["PG13", "PG"], params=_NSFW),
                _civitai("pg", browsing_levels=["PG"]),
            ]
        ),
        "f",
    )
    assert [(f.rule.kind, f.rule.levels) for f in fs.for_source("civitai")] == [
        ("rated", 4),
        ("rated_at_most", 3),
        ("rated_at_most", 31),
        ("browsing_levels", 3),
        ("browsing_levels", 1),
    ]
    # Only browsing level PG without nsfw=true is the API's own listing: nothing to drop.
    assert [f.keeps_client_side for f in fs.for_source("civitai")] == [True] * 4 + [False]


# -- lists that come out the same --------------------------------------------------------


def test_two_filters_making_the_same_list_are_warned_about():
    liked = {"sort": "Most Liked", "nsfw": "true", "period": "AllTime"}
    rated = {"sort": "Highest Rated", "nsfw": "true"}  # period AllTime is the default
    fs = parse_filters(
        _doc(
            civitai=[
                _civitai("liked", params=liked, browsing_levels=["PG", "PG13"]),
                _civitai("rated", params=rated, browsing_levels=["PG13", "PG"]),
                # Not the same list: another rule, or another size.
                _civitai("rated-pg", params=rated, rated_at_most="PG13"),
                _civitai("rated-50", params=rated, browsing_levels=["PG", "PG13"], max_items=50),
            ],
            huggingface=[
                _entry("trending", params={"sort": "trendingScore"}),
                _entry("default", params={}),
            ],
        ),
        "f.json",
    )
    assert list(fs.warnings) == [
        "f.json: civitai filters 'liked' and 'rated' make the same list (same listing "
        "upstream, same rules, same max_items)",
        "f.json: huggingface filters 'trending' and 'default' make the same list (same "
        "listing upstream, same rules, same max_items)",
    ]


def test_repo_filters_file_has_no_warning():
    assert load_filters(REPO_FILTERS).warnings == ()


def test_max_items_0_means_no_limit_in_the_file_as_in_the_setting():
    assert item_limit(None, 100) == 100
    assert item_limit(None, 0) is None
    assert item_limit(0, 100) is None
    assert item_limit(5, 0) == 5
    document = _doc(civitai=[_civitai(max_items=0)])
    assert parse_filters(document, "filters.json").for_source("civitai")[0].max_items == 0


def test_max_pages_is_a_filters_own_page_budget():
    document = _doc(civitai=[_civitai(max_pages=40)], huggingface=[_entry()])
    filter_set = parse_filters(document, "filters.json")
    assert filter_set.for_source("civitai")[0].max_pages == 40
    assert filter_set.for_source("huggingface")[0].max_pages is None
