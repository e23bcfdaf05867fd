"""The downloader: Scrapy's, with each download slot's waiting requests taken by priority.

Scrapy's download slot sends its waiting requests first in, first out. The scheduler's queue
(pqueues.py) lets an API's requests into the downloader up to that API's concurrency, but a
slot sends them no faster than its delay allows (AutoThrottle: START_DELAY apart before the
first answer, latency / TARGET after), so a few can wait in the slot. A filter's next page,
yielded while first pages of other filters waited there, waited behind all of them: 170 ms
on the second page of CivitAI's longest chain at 100 models per filter (measured), a chain
whose length is the crawl's lower bound. Taken by priority (deeper pages first, as the
scheduler orders them), it goes out at the slot's next turn; equal priorities keep their
order.
"""

from __future__ import annotations

from scrapy import Request
from scrapy.core.downloader import Downloader, Slot


def _priority(entry: tuple[Request, object]) -> int:
    return entry[0].priority


class PriorityDownloader(Downloader):
    """DOWNLOADER: see the module docstring."""

    def _process_queue(self, slot: Slot) -> None:
        # Called whenever a request joins the slot, a transfer ends or the delay has passed:
        # the order is settled before the slot picks. Sorting is cheap: the scheduler's queue
        # lets no more requests into the downloader than the API's concurrency (pqueues.py).
        queue = slot.queue
        if len(queue) > 1:
            ordered = sorted(queue, key=_priority, reverse=True)  # stable for equal ones
            queue.clear()
            queue.extend(ordered)
        super()._process_queue(slot)
