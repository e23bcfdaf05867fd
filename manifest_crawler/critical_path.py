"""Pure: how many pages a chain of filters has left, the priority its next page is sent with.

A chain's pages come one after another (each names the next), so a crawl can end no sooner
than its longest chain, and its APIs' places are best given, whenever one frees, to the page
of the chain with the most pages left: the critical path first (Hu's rule, optimal for chains
of equal-length jobs). The spider sets that estimate as each page request's priority, and the
scheduler's queue (pqueues.py) sends the highest one first, whether its chain has started or
not.

The estimate, per filter of the chain (the chain's is the largest):

- without a client-side rule, from what it still wants: ``ceil(remaining / page size)``;
- with one that may drop items (a rating, a browsing level narrower than the listing), a
  page keeps only a share of its items: the share of the items read so far it kept, with a
  prior of PRIOR_SHARE weighing PRIOR_ITEMS items, so that before its first page it counts
  as PRIOR_SHARE and a few pages outweigh it;
- without a max_items, as long as any chain can be (UNBOUNDED_PAGES);
- never more than its page budget still allows (max_pages, MANIFEST_SCAN_FACTOR).

It is an estimate: a listing can end before max_items (its last page), and a share can move.
A chain that ends sooner than estimated only gave its places early; the order among chains,
which is what the queue needs, holds as long as the estimates rank them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from manifest_crawler.ledger import FilterState

#: Before a filter with a client-side rule has read a page, the share of items it is taken to
#: keep: below 1, so that it ranks before a filter without a rule wanting as many models (it
#: cannot need fewer pages), and pessimistic, as a rating bucket can keep few.
PRIOR_SHARE = 0.25
#: How many items the prior weighs: a quarter of a CivitAI page, so the first page read
#: already counts four times as much as the prior.
PRIOR_ITEMS = 25
#: The pages a chain without a limit is taken to have left, also the cap of any estimate
#: (Scrapy keeps one queue per priority value in use).
UNBOUNDED_PAGES = 100_000


def pages_left(state: FilterState, page_size: int) -> int:
    """The pages ``state``'s filter is estimated to need still, at ``page_size`` items a page
    (at least 1: the caller asks for a next page), within its page budget if it has one."""
    remaining = state.remaining
    if remaining is None:
        pages = UNBOUNDED_PAGES
    else:
        per_page = float(page_size)
        if state.filter.keeps_client_side:
            kept = state.models + PRIOR_SHARE * PRIOR_ITEMS
            per_page *= kept / (state.items_read + PRIOR_ITEMS)
        pages = math.ceil(remaining / per_page)
    if state.max_pages is not None:
        pages = min(pages, state.max_pages - state.pages)
    return min(max(1, pages), UNBOUNDED_PAGES)


def chain_pages_left(states: Iterable[FilterState], page_size: int) -> int:
    """The pages the chain of ``states`` (filters reading one listing) is estimated to need
    still: the largest of its members'."""
    return max((pages_left(state, page_size) for state in states), default=1)
