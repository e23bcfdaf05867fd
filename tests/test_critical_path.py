"""How many pages a chain has left (critical_path.py): pure, no crawl."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from manifest_crawler.critical_path import (
    PRIOR_SHARE,
    UNBOUNDED_PAGES,
    chain_pages_left,
    pages_left,
)
from manifest_crawler.filters import NSFW_LEVEL_BITS, ContentRule, Filter
from manifest_crawler.ledger import FilterState

PG = ContentRule("rated", NSFW_LEVEL_BITS["PG"])
NSFW = (("nsfw", "true"),)


def _state(max_items: int | None, rule: ContentRule | None = None, *, kept: int = 0, excluded=0):
    state = FilterState(Filter("civitai", "f", "F", NSFW, max_items, rule), max_items)
    state.seen_ids = {f"civitai-{n + 1}" for n in range(kept)}
    state.excluded = excluded
    state.items_read = kept + excluded
    return state


def test_without_a_rule_the_pages_are_what_the_filter_still_wants() -> None:
    assert pages_left(_state(1000), 100) == 10
    assert pages_left(_state(1000, kept=950), 100) == 1
    assert pages_left(_state(1001, kept=0), 100) == 11
    assert pages_left(_state(None), 100) == UNBOUNDED_PAGES


def test_with_a_rule_the_share_kept_so_far_counts_after_a_prior() -> None:
    # Before its first page: the prior share.
    assert pages_left(_state(1000, PG), 100) == round(1000 / (PRIOR_SHARE * 100))
    # Half of 400 items kept: nearly half, the prior weighing a little.
    half = pages_left(_state(1000, PG, kept=200, excluded=200), 100)
    assert 16 <= half <= 17
    # One in a hundred kept: a long chain, however early.
    assert pages_left(_state(1000, PG, kept=3, excluded=297), 100) >= 250


def test_no_estimate_passes_the_page_budget() -> None:
    state = _state(1000, PG, kept=3, excluded=297)
    state.max_pages, state.pages = 100, 3
    assert pages_left(state, 100) == 97
    unlimited = _state(None)
    unlimited.max_pages = 10_000
    assert pages_left(unlimited, 1000) == 10_000


def test_a_chain_is_as_long_as_its_longest_member() -> None:
    members = [_state(100), _state(500, PG, kept=50, excluded=50), _state(300)]
    assert chain_pages_left(members, 100) == max(pages_left(s, 100) for s in members)


@given(
    st.integers(min_value=1, max_value=5_000),
    st.integers(min_value=0, max_value=5_000),
    st.integers(min_value=0, max_value=1_000_000),
    st.sampled_from([100, 1000]),
)
def test_a_rule_never_makes_a_chain_look_shorter(
    max_items: int, kept: int, excluded: int, page_size: int
) -> None:
    """A page keeps at most all its items: a filter with a rule needs at least as many pages
    as one without wanting as many models, and more remaining never means fewer pages."""
    kept = min(kept, max_items)
    ruled = pages_left(_state(max_items, PG, kept=kept, excluded=excluded), page_size)
    assert ruled >= pages_left(_state(max_items, kept=kept), page_size)
    assert 1 <= ruled <= UNBOUNDED_PAGES
    if kept < max_items:
        fewer = pages_left(_state(max_items - 1, PG, kept=kept, excluded=excluded), page_size)
        assert fewer <= ruled
