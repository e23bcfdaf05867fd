"""Pure: the manifest state a resumable job (JOBDIR) keeps between its processes.

Scrapy's JOBDIR keeps the request queue; this keeps what the crawler itself knows: the ledger
(each filter's status, pages, cursors, seen ids), the models collected so far and the baseline
(what the site had before the job's first process), so that the last process judges, writes and
diffs exactly as one uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from manifest_crawler.ledger import Ledger
from manifest_crawler.output.changes import Baseline
from manifest_crawler.output.manifests import Entry as ModelEntry
from manifest_crawler.output.manifests import expand_entry

JOB_FILE = "manifest-job.json"
#: Present while a process works on the job: found at start, it means the last one never
#: closed (killed), so its JOBDIR cannot be trusted.
RUNNING_MARKER = "manifest-job.running"
FORMAT = 3

#: One collected model: (rank, model), as the RunState keeps them (read back as
#: {"id", "slug", "name"} dicts).
Entry = tuple[int, ModelEntry]


class JobStateError(ValueError):
    """A job file that cannot be read back."""


def job_fingerprint(sources: Sequence[str], ledger: Ledger, urls: Mapping[str, str]) -> str:
    """Identifies what a job crawls: the spider's sources, the endpoints (queued requests carry
    them) and every selected filter with its parameters and size. A different value cannot
    resume it."""
    filters = [
        [
            state.filter.source,
            state.filter.name,
            state.filter.params,
            state.max_items,
            state.filter.rule,  # a dataclass: orjson writes its fields
            state.filter.max_pages,
        ]
        for state in ledger
    ]
    payload = orjson.dumps([FORMAT, list(sources), sorted(urls.items()), filters])
    return hashlib.sha256(payload).hexdigest()


@dataclass(slots=True)
class JobState:
    fingerprint: str
    ledger: list[dict[str, Any]]
    #: Each filter's collected models (the RunState's CollectedModels; lists when read back).
    models: Mapping[tuple[str, str], Iterable[Entry]] = field(default_factory=dict)
    baseline: Baseline | None = None


def encode_job(job: JobState) -> bytes:
    return orjson.dumps(
        {
            "format": FORMAT,
            "fingerprint": job.fingerprint,
            "ledger": job.ledger,
            "models": [
                {
                    "source": source,
                    "filter": name,
                    "entries": [
                        [rank, model.id, model.slug, model.name]
                        for rank, model in ((rank, expand_entry(e)) for rank, e in entries)
                    ],
                }
                for (source, name), entries in job.models.items()
            ],
            "baseline": None if job.baseline is None else job.baseline.to_json(),
        }
    )


def decode_job(data: bytes) -> JobState:
    try:
        document = orjson.loads(data)
        if document.get("format") != FORMAT:
            raise JobStateError(f"job file format {document.get('format')!r}, not {FORMAT}")
        baseline = document["baseline"]
        return JobState(
            fingerprint=document["fingerprint"],
            ledger=document["ledger"],
            models={
                (m["source"], m["filter"]): [
                    (rank, {"id": model_id, "slug": slug, "name": name})
                    for rank, model_id, slug, name in m["entries"]
                ]
                for m in document["models"]
            },
            baseline=None if baseline is None else Baseline.from_json(baseline),
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, JobStateError):
            raise
        raise JobStateError(f"unreadable job file: {exc!r}") from None


def job_summary(ledger: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many filters of a ledger snapshot are in each status."""
    counts: dict[str, int] = {}
    for entry in ledger:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return counts
