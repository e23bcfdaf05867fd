"""The seeded catalogues: determinism, realism of the distributions, revisions, queries."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifest_crawler.emulator.catalogue import (
    ARCHIVED,
    PERIODS,
    REFERENCE_EPOCH,
    Catalogue,
    CivitaiCatalogue,
    HfCatalogue,
    QueryError,
    parse_num_parameters,
)
from manifest_crawler.emulator.vocabulary import (
    BASE_MODELS,
    CIVITAI_SORTS,
    CIVITAI_TYPES,
    HF_LIBRARIES,
    HF_LICENSES,
    HF_PIPELINES,
    HF_SORTS,
)
from tests.api_notes import CIVITAI_FAMILIES as NOTES_FAMILIES
from tests.api_notes import CIVITAI_LEGACY_BASE_MODELS as NOTES_LEGACY
from tests.api_notes import CIVITAI_METRIC_ORDER as NOTES_METRIC_ORDER
from tests.api_notes import CIVITAI_TYPES as NOTES_TYPES
from tests.api_notes import (
    HUB_LIBRARIES,
    HUB_LICENSES,
    HUB_PIPELINE_TAGS,
    HUB_RETIRED_PIPELINE_TAGS,
    HUB_WEIGHT_TAGS,
)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return Catalogue(seed=0)


def test_same_seed_same_catalogue_and_other_seed_differs() -> None:
    a, b, c = Catalogue(seed=7), Catalogue(seed=7), Catalogue(seed=8)
    assert list(a.civitai.ids) == list(b.civitai.ids)
    assert a.civitai.names == b.civitai.names
    assert a.hf.ids == b.hf.ids
    assert [a.civitai.record(i) for i in range(50)] == [b.civitai.record(i) for i in range(50)]
    assert [a.hf.record(i) for i in range(50)] == [b.hf.record(i) for i in range(50)]
    assert list(a.civitai.ids) != list(c.civitai.ids)
    assert a.hf.ids != c.hf.ids


def test_civitai_ids_unique_and_spread(cat: Catalogue) -> None:
    ids = list(cat.civitai.ids)
    assert len(ids) == len(set(ids)) == 3000
    assert min(ids) >= 1 and max(ids) <= 2_000_000
    assert max(ids) - min(ids) > 1_500_000
    assert ids != sorted(ids)


def test_civitai_types_and_base_models(cat: Catalogue) -> None:
    records = [cat.civitai.record(i) for i in range(len(cat.civitai))]
    types = Counter(r.type for r in records)
    assert set(types) == set(CIVITAI_TYPES)
    (first, _), (second, _) = types.most_common(2)
    assert (first, second) == ("LORA", "Checkpoint")
    bases = Counter(b for r in records for b in r.base_models)
    assert set(bases) == set(BASE_MODELS)
    checkpoints = [r for r in records if r.type == "Checkpoint"]
    assert sum(r.versions for r in checkpoints) / len(checkpoints) > 2.5
    assert {r.checkpoint_type for r in checkpoints} == {"Trained", "Merge"}
    assert {r.checkpoint_type for r in records if r.type != "Checkpoint"} == {None}


def test_civitai_names_creators_modes_and_stats_are_varied(cat: Catalogue) -> None:
    records = [cat.civitai.record(i) for i in range(len(cat.civitai))]
    names = [r.name for r in records]
    assert any(n != n.strip() for n in names)
    assert any(not n.isascii() for n in names)
    assert max(Counter(names).values()) > 3
    assert any(r.creator.isdigit() for r in records)
    assert all(not r.creator.startswith("0") for r in records)
    modes = Counter(r.mode for r in records)
    assert modes["Archived"] > 10 and modes["TakenDown"] > 3
    assert any(None in r.stats.values() for r in records)


def test_civitai_nsfw_levels_are_masks_of_several_levels(cat: Catalogue) -> None:
    civitai = cat.civitai
    levels = Counter(civitai.nsfw_level)
    # api-notes: PG=1 ... XXX=16, Blocked=32; a model flagged nsfw gets 60. Every other mask
    # is the bit-or of its images' levels, so it is a non-empty mix of the five levels.
    assert set(levels) <= set(range(1, 32)) | {60}
    assert levels[60] > 0 and civitai.record(civitai.nsfw_level.index(60)).nsfw
    assert sum(n for mask, n in levels.items() if mask.bit_count() > 1) > len(civitai) / 2
    for single in (1, 2, 4, 8, 16):
        assert levels[single] > 0
    # api-notes: the top models mostly carry 7, 15, 23 or 31 (a real top-10 page: 31, 15, 7,
    # 15, 31, 23, 15, 31, 7, 31).
    top = [civitai.nsfw_level[i] for i in civitai.order("Highest Rated")[:50]]
    assert sum(mask in (7, 15, 23, 31) for mask in top) > 25


def test_civitai_nsfw_is_the_any_shared_bit_rule(cat: Catalogue) -> None:
    civitai = cat.civitai
    listed = [
        i
        for i in range(len(civitai))
        if civitai.alive[i] and not civitai.hidden[i] and civitai.mode[i] != ARCHIVED
    ]
    # api-notes: nsfw=false is browsing level PG (1), true is PG|PG13|R|X|XXX (31); a model
    # is listed when nsfwLevel & browsingLevel != 0.
    for flag, browsing in (("false", 1), ("true", 31)):
        expected = {civitai.ids[i] for i in listed if civitai.nsfw_level[i] & browsing}
        assert set(cat.query_civitai({"nsfw": flag})) == expected
    assert set(cat.query_civitai({})) == set(cat.query_civitai({"nsfw": "false"}))
    # So nsfw=false lists mature models (any PG image will do) and misses PG-13-only ones.
    safe_listing = [civitai.record_for_id(i).nsfw_level for i in cat.query_civitai({})]
    assert any(mask & 28 for mask in safe_listing)
    assert 2 in civitai.nsfw_level and 2 not in safe_listing


def test_every_real_type_and_base_model_name_is_listed(cat: Catalogue) -> None:
    # api-notes: the 23 ModelType values; current and hidden legacy base-model names.
    for model_type in NOTES_TYPES:
        assert cat.query_civitai({"types": model_type, "nsfw": "true"}), model_type
    names = [
        *(name for family in NOTES_FAMILIES.values() for name in family),
        *NOTES_LEGACY,
        *("Illustrious", "NoobAI"),
    ]
    counts = {name: len(cat.query_civitai({"baseModels": name, "nsfw": "true"})) for name in names}
    assert all(counts.values()), counts
    # The legacy names are rare: only models made before their successors carry them.
    assert counts["SD 3.5"] < counts["SD 3.5 Large"]
    assert counts["Wan Video"] < sum(n for name, n in counts.items() if name.startswith("Wan"))


def test_the_hub_vocabulary_is_the_real_one(cat: Catalogue) -> None:
    # api-notes: the tasks of pipelines.ts, text2text-generation retired (the Hub serves
    # nothing for it); the libraries' and weight files' tags; the Hub's licence identifiers.
    assert set(HF_PIPELINES) <= set(HUB_PIPELINE_TAGS)
    assert not set(HF_PIPELINES) & set(HUB_RETIRED_PIPELINE_TAGS)
    assert cat.query_hf({"pipeline_tag": "text2text-generation"}) == []
    assert set(HF_LIBRARIES) <= set(HUB_LIBRARIES) | set(HUB_WEIGHT_TAGS)
    assert set(HF_LICENSES) <= set(HUB_LICENSES)
    for tag in ("keras", "tf-keras"):
        assert cat.query_hf({"filter": tag}), tag


def test_archived_models_are_listed_only_with_archived_true(cat: Catalogue) -> None:
    # api-notes (model.service.ts): archived models are left out unless archived=true.
    civitai = cat.civitai
    archived = {
        civitai.ids[i]
        for i in range(len(civitai))
        if civitai.mode[i] == ARCHIVED and civitai.alive[i] and not civitai.hidden[i]
    }
    listed = set(cat.query_civitai({"nsfw": "true"}))
    assert archived and not archived & listed
    assert set(cat.query_civitai({"nsfw": "true", "archived": "true"})) == listed | archived
    assert set(cat.query_civitai({"nsfw": "true", "archived": "false"})) == listed


def test_highest_rated_and_most_liked_are_one_order(cat: Catalogue) -> None:
    # api-notes: both ORDER BY thumbsUp, downloads, id.
    params = {"nsfw": "true", "types": "Checkpoint"}
    assert cat.query_civitai({**params, "sort": "Highest Rated"}) == cat.query_civitai(
        {**params, "sort": "Most Liked"}
    )


@pytest.mark.parametrize("period", ["Day", "Week", "Month", "Year"])
def test_every_period_keeps_a_fair_share(cat: Catalogue, period: str) -> None:
    ids = cat.query_civitai({"period": period, "nsfw": "true"})
    assert len(ids) >= 50
    start = REFERENCE_EPOCH - PERIODS[period]
    assert all(cat.civitai.record_for_id(i).published_at >= start for i in ids)


def test_published_dates_are_within_three_years_of_the_reference(cat: Catalogue) -> None:
    civitai = cat.civitai
    published = [r.published_at for r in map(civitai.record, range(len(civitai)))]
    dates = [date for date in published if date is not None]
    assert max(dates) <= REFERENCE_EPOCH
    assert min(dates) >= REFERENCE_EPOCH - 3 * 365 * 86_400
    # Whole minutes: some models share their latest publication (Newest's tie-break matters).
    assert len(set(dates)) < len(dates)
    # Models without a published version have no lastVersionAt (None): all hidden ones.
    nulls = [i for i, date in enumerate(published) if date is None]
    assert nulls and all(civitai.hidden[i] for i in nulls)


def naive_civitai(cat: CivitaiCatalogue, params: dict) -> list[int]:
    """An independent, slow re-implementation of the filters, for comparison."""
    records = [cat.record(i) for i in range(len(cat)) if cat.alive[i] and not cat.hidden[i]]
    out = []
    for r in records:
        if r.mode == "Archived" and params.get("archived") != "true":
            continue
        if "types" in params and r.type not in params["types"]:
            continue
        if "baseModels" in params and not set(r.base_models) & set(params["baseModels"]):
            continue
        if not r.nsfw_level & (31 if params.get("nsfw") == "true" else 1):
            continue
        span = PERIODS[params.get("period", "AllTime")]
        if span and (r.published_at is None or r.published_at < REFERENCE_EPOCH - span):
            continue
        if "query" in params and params["query"].lower() not in r.name.lower():
            continue
        if "username" in params and r.creator.lower() != params["username"].lower():
            continue
        if "tag" in params and params["tag"] not in r.tags:
            continue
        out.append(r)

    # The ORDER BY of model.service.ts getModelsRaw (api-notes), spelled out again: two
    # metrics DESC then modelId ASC; Newest lastVersionAt DESC NULLS LAST, modelId DESC;
    # Oldest lastVersionAt ASC, modelId ASC. A null stat counts as 0.
    metrics = NOTES_METRIC_ORDER
    sort = params.get("sort", "Highest Rated")
    if sort == "Newest":
        out.sort(key=lambda r: r.id, reverse=True)
        out.sort(key=lambda r: r.published_at or 0, reverse=True)
        out.sort(key=lambda r: r.published_at is None)
    elif sort == "Oldest":
        out.sort(key=lambda r: (r.published_at is None, r.published_at or 0, r.id))
    else:
        first, second = metrics[sort]
        out.sort(key=lambda r: (-(r.stats[first] or 0), -(r.stats[second] or 0), r.id))
    return [r.id for r in out]


@pytest.mark.parametrize("sort", CIVITAI_SORTS)
def test_civitai_sorts_match_a_naive_implementation(cat: Catalogue, sort: str) -> None:
    params = {"sort": sort, "nsfw": "true"}
    assert cat.query_civitai(params) == naive_civitai(cat.civitai, params)


@pytest.mark.parametrize(
    "params",
    [
        {"types": ["LORA", "LoCon"], "baseModels": ["Pony"]},
        {"types": ["Checkpoint"], "period": "Month", "nsfw": "true", "sort": "Newest"},
        {"baseModels": ["Flux.1 D", "SDXL 1.0"], "sort": "Most Downloaded", "period": "Year"},
        {"query": "PORTRAIT", "nsfw": "true"},
        {"tag": "anime", "sort": "Most Images"},
        {"username": "kari", "nsfw": "true"},
    ],
)
def test_civitai_filters_match_a_naive_implementation(cat: Catalogue, params: dict) -> None:
    assert cat.query_civitai(params) == naive_civitai(cat.civitai, params)


def test_civitai_unknown_base_model_matches_nothing(cat: Catalogue) -> None:
    assert cat.query_civitai({"baseModels": "SD 9000"}) == []


def test_civitai_checkpoint_type_constrains_only_checkpoints(cat: Catalogue) -> None:
    ids = cat.query_civitai({"checkpointType": "Merge", "nsfw": "true"})
    records = [cat.civitai.record_for_id(i) for i in ids]
    assert {r.checkpoint_type for r in records if r.type == "Checkpoint"} == {"Merge"}
    assert any(r.type != "Checkpoint" for r in records)


def test_civitai_ids_filter(cat: Catalogue) -> None:
    wanted = list(cat.civitai.ids[:5])
    got = cat.query_civitai({"ids": ",".join(map(str, wanted)), "nsfw": "true"})
    assert sorted(got) == sorted(wanted)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "101"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"sort": "Most Popular"},
        {"period": "Decade"},
        {"types": "Lora"},
        {"browsingLevel": "1"},
        {"nsfw": "maybe"},
        {"page": "2", "query": "anime"},
        {"checkpointType": "Baked"},
    ],
)
def test_civitai_invalid_params_raise_400(cat: Catalogue, params: dict) -> None:
    with pytest.raises(QueryError) as info:
        cat.query_civitai(params)
    assert info.value.status == 400


HF_ID = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")


def test_hf_ids_are_valid_unique_repo_ids(cat: Catalogue) -> None:
    ids = cat.hf.ids
    assert len(set(ids)) == len(ids) == 3000
    for repo_id in ids:
        assert HF_ID.match(repo_id), repo_id
        assert "--" not in repo_id and ".." not in repo_id


def test_hf_fields_are_varied(cat: Catalogue) -> None:
    records = [cat.hf.record(i) for i in range(len(cat.hf))]
    assert any(r.pipeline_tag is None for r in records)
    assert any(r.library_name is None for r in records)
    assert set(HF_PIPELINES) == {r.pipeline_tag for r in records} - {None}
    assert all("region:us" in r.tags for r in records)
    assert sum(any(t.startswith("license:") for t in r.tags) for r in records) > 2000
    for tag in ("gguf", "safetensors", "endpoints_compatible", "en"):
        assert sum(tag in r.tags for r in records) > 50, tag
    for r in records:
        if r.pipeline_tag:
            assert r.pipeline_tag in r.tags
        if r.library_name:
            assert r.library_name in r.tags
    assert Counter(r.gated for r in records).keys() == {False, "auto", "manual"}
    likes = Counter(r.likes for r in records)
    assert likes[0] > 500  # plenty of ties, so the tie-break matters


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [("min:0,max:3B", 0, 3e9), ("min:3B,max:13B", 3e9, 13e9), ("min:13B", 13e9, None)],
)
def test_hf_num_parameters_buckets_all_have_many(
    cat: Catalogue, spec: str, low: float, high: float | None
) -> None:
    ids = cat.query_hf({"num_parameters": spec})
    assert len(ids) > 300
    for repo_id in ids[:200]:
        n = cat.hf.record(cat.hf.ids.index(repo_id)).num_parameters
        assert n is not None and n >= low and (high is None or n <= high)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("min:0,max:3B", (0, 3_000_000_000)),
        ("min:6B,max:128B", (6_000_000_000, 128_000_000_000)),
        ("max:500M", (None, 500_000_000)),
        ("min:1.5k", (1500, None)),
        ("MIN:2T", (2_000_000_000_000, None)),
        ("min:7", (7, None)),
    ],
)
def test_parse_num_parameters(raw: str, expected: tuple) -> None:
    assert parse_num_parameters(raw) == expected


@pytest.mark.parametrize("raw", ["", "min", "min:", "min:3X", "between:1,2", "min:1,min:2", ","])
def test_parse_num_parameters_rejects(raw: str) -> None:
    with pytest.raises(QueryError):
        parse_num_parameters(raw)


@given(
    low=st.one_of(st.none(), st.integers(0, 999)),
    high=st.one_of(st.none(), st.integers(0, 999)),
    low_suffix=st.sampled_from(["", "K", "M", "B", "T", "k", "b"]),
    high_suffix=st.sampled_from(["", "K", "M", "B", "T", "m", "t"]),
    swap=st.booleans(),
)
def test_parse_num_parameters_roundtrip(
    low: int | None, high: int | None, low_suffix: str, high_suffix: str, swap: bool
) -> None:
    scale = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
    parts = []
    if low is not None:
        parts.append(f"min:{low}{low_suffix}")
    if high is not None:
        parts.append(f"max:{high}{high_suffix}")
    if not parts:
        return
    if swap:
        parts.reverse()
    expected = (
        None if low is None else low * scale[low_suffix.lower()],
        None if high is None else high * scale[high_suffix.lower()],
    )
    assert parse_num_parameters(",".join(parts)) == expected


def test_hf_invalid_sort_message(cat: Catalogue) -> None:
    with pytest.raises(QueryError) as info:
        cat.query_hf({"sort": "trending"})
    assert (info.value.status, info.value.message) == (400, "Invalid sort parameter: trending")


@pytest.mark.parametrize("sort", HF_SORTS)
def test_hf_sorts_are_descending_with_index_tiebreak(cat: Catalogue, sort: str) -> None:
    ids = cat.query_hf({"sort": sort})
    assert len(ids) == 3000
    hf = cat.hf
    position = {repo_id: i for i, repo_id in enumerate(hf.ids)}
    if sort == "id":
        assert ids == sorted(hf.ids, reverse=True)
        return
    values = hf.sort_values(sort)
    keys = [(-values[position[r]], position[r]) for r in ids]
    assert keys == sorted(keys)


def test_hf_filters_are_anded_and_match_pipeline_and_library(cat: Catalogue) -> None:
    hf = cat.hf
    both = cat.query_hf({"filter": ["text-generation", "transformers"], "sort": "likes"})
    assert both
    for repo_id in both:
        record = hf.record(hf.ids.index(repo_id))
        assert record.pipeline_tag == "text-generation"
        assert "transformers" in record.tags
    by_param = cat.query_hf({"pipeline_tag": "text-generation", "filter": "transformers"})
    assert sorted(by_param) == sorted(both)
    assert cat.query_hf({"filter": ["no-such-tag"]}) == []
    family = cat.query_hf({"filter": "llama"})
    assert family and all(hf.record(hf.ids.index(r)).family == "llama" for r in family)


def test_hf_search_author_and_gated(cat: Catalogue) -> None:
    hf = cat.hf
    found = cat.query_hf({"search": "LLAMA"})
    assert found and all("llama" in r.lower() for r in found)
    assert len(found) == sum("llama" in r.lower() for r in hf.ids)
    author = hf.ids[0].split("/")[0]
    mine = cat.query_hf({"author": author})
    assert sorted(mine) == sorted(r for r in hf.ids if r.split("/")[0] == author)
    gated = cat.query_hf({"gated": "true"})
    assert gated and all(hf.record(hf.ids.index(r)).gated for r in gated)
    assert len(gated) + len(cat.query_hf({"gated": "false"})) == 3000


def test_revision_removes_adds_and_reorders() -> None:
    base, rev1, rev1b, rev2 = (Catalogue(seed=3, revision=r) for r in (0, 1, 1, 2))
    for api in ("civitai", "hf"):
        query = getattr(Catalogue, f"query_{api}")
        params = {"sort": "Most Downloaded", "nsfw": "true"} if api == "civitai" else {}
        before, after, again, later = (query(c, params) for c in (base, rev1, rev1b, rev2))
        assert after == again  # deterministic
        assert set(before) - set(after), "some models removed"
        assert set(after) - set(before), "some models added"
        common = [m for m in before if m in set(after)]
        assert common != [m for m in after if m in set(before)], "order moved"
        assert later != after


def test_revision_keeps_unchanged_payload_identity() -> None:
    base, rev = Catalogue(seed=3), Catalogue(seed=3, revision=1)
    kept = [i for i in range(len(base.civitai)) if rev.civitai.alive[i]]
    assert all(base.civitai.names[i] == rev.civitai.names[i] for i in kept)


def test_scale_build_is_fast_enough() -> None:
    # The benchmark builds 1M Hub models; a tenth of that keeps this test quick.
    started = time.perf_counter()
    hf = HfCatalogue(seed=1, size=100_000)
    civitai = CivitaiCatalogue(seed=1, size=20_000)
    elapsed = time.perf_counter() - started
    assert len(hf) == 100_000 and len(civitai) == 20_000
    assert elapsed < 10
    assert len(set(hf.ids)) == 100_000


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_any_seed_builds_valid_small_catalogues(seed: int) -> None:
    cat = Catalogue(seed=seed, civitai_models=60, hf_models=60)
    assert len(set(cat.civitai.ids)) == 60
    assert len(set(cat.hf.ids)) == 60
    assert all(HF_ID.match(r) and "--" not in r and ".." not in r for r in cat.hf.ids)


def test_query_cache_is_bounded_by_indices_held() -> None:
    from manifest_crawler.emulator.lru import WeighedLru
    from manifest_crawler.emulator.paging import QueryResult

    def answer(size: int, found: int | None = None) -> QueryResult:
        result = QueryResult(iter(range(size)))
        result.count_up_to(size if found is None else found)
        return result

    cache: WeighedLru[str, QueryResult] = WeighedLru(10, lambda result: result.found)
    a = answer(6, found=2)
    cache.put("a", a)
    cache.put("b", answer(3))
    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.put("c", answer(4))  # 2 + 3 + 4 found: all fit
    assert cache.get("b") is not None
    # "a" grows as later pages find more of it: 6 + 3 + 4 no longer fit, "c" is the oldest.
    assert a.count_up_to(100) == 6
    assert cache.get("a") is a
    assert cache.get("c") is None and cache.get("b") is not None
    cache.put("huge", answer(50))  # the newest answer is always kept
    assert cache.get("huge") is not None and cache.get("a") is None


def test_prepare_sorts_every_order_the_apis_accept_before_serving() -> None:
    # Sorting on first use cost the first request of each sort tens of ms at 100,000 models.
    from manifest_crawler.emulator.catalogue import Catalogue
    from manifest_crawler.emulator.vocabulary import CIVITAI_SORTS, HF_SORTS

    prepared, lazy = Catalogue(seed=3, civitai_models=300, hf_models=300), Catalogue(3, 300, 300)
    prepared.prepare()
    assert set(prepared.civitai._orders) == set(CIVITAI_SORTS)
    assert set(prepared.hf._orders) == set(HF_SORTS)
    for sort in CIVITAI_SORTS:
        assert prepared.civitai.order(sort) == lazy.civitai.order(sort)
    for sort in HF_SORTS:
        assert prepared.hf.order(sort) == lazy.hf.order(sort)
