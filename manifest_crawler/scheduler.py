"""JOBDIR: an interrupted crawl resumes where it stopped, with no duplicate and no gap.

Scrapy's scheduler keeps its request queue in JOBDIR (each running filter's next page; our
requests have spider-method callbacks and picklable meta). This subclass keeps the rest of the
crawl beside it, in ``JOBDIR/manifest-job.json`` (see jobstate.py): the ledger, the models the
writer collected and the baseline. It is the one component that runs at the right moments:
``open`` comes after the spider, the pipelines and the extensions exist but before the queue is
read, and ``close`` after the pipelines closed. So the spider starts only the filters no process
started yet, and the last process writes what one uninterrupted run would have written.

A JOBDIR that cannot be trusted is cleared (with a warning) and the job starts over: one whose
last process never closed (killed: its queue files are inconsistent), or one made for other
filters, another spider or other endpoints. A job whose filters all finished is cleared too,
so the same command can run every build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from scrapy import Spider
from scrapy.core.scheduler import Scheduler
from twisted.internet.defer import Deferred

from manifest_crawler.jobstate import (
    JOB_FILE,
    RUNNING_MARKER,
    JobState,
    JobStateError,
    decode_job,
    encode_job,
    job_fingerprint,
    job_summary,
)
from manifest_crawler.ledger import Ledger
from manifest_crawler.manifests import write_atomic
from manifest_crawler.pipelines import ManifestWriterPipeline

logger = logging.getLogger(__name__)

_URL_SETTINGS = ("CIVITAI_API_URL", "HF_API_URL")


class ResumableScheduler(Scheduler):
    jobdir: Path | None = None
    ledger: Ledger | None = None
    fingerprint: str = ""

    def open(self, spider: Spider) -> Deferred[None] | None:
        ledger = getattr(spider, "ledger", None)
        if self.dqdir is not None and isinstance(ledger, Ledger):
            self.jobdir = Path(self.dqdir).parent
            self.ledger = ledger
            self._take_over_job(spider)
        return super().open(spider)

    def close(self, reason: str) -> Deferred[None] | None:
        result = super().close(reason)
        if self.jobdir is not None:
            self._save_job(reason)
        return result

    def _take_over_job(self, spider: Spider) -> None:
        assert self.jobdir is not None and self.ledger is not None and self.crawler is not None
        urls = {name: self.crawler.settings[name] for name in _URL_SETTINGS}
        self.fingerprint = job_fingerprint(spider.name, self.ledger, urls)
        # Queued requests carry the API token's Authorization header.
        with contextlib.suppress(OSError):
            self.jobdir.chmod(0o700)
        job = self._load_job()
        (self.jobdir / RUNNING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
        if job is None:
            return
        self.ledger.restore(job.ledger)
        writer = self._writer()
        if writer is not None and job.baseline is not None:
            writer.restore_job(job.models, job.baseline)
        counts = job_summary(job.ledger)
        logger.info(
            "Resuming the job in %s: %d filter(s) finished, %d in progress, %d to start",
            self.jobdir,
            counts.get("done", 0) + counts.get("failed", 0),
            counts.get("running", 0),
            counts.get("pending", 0),
        )

    def _load_job(self) -> JobState | None:
        """The job to resume, or None after clearing whatever JOBDIR held."""
        assert self.jobdir is not None
        if (self.jobdir / RUNNING_MARKER).exists():
            self._reset(
                "its last process did not close (killed?), so its request queue cannot be trusted"
            )
            return None
        try:
            job = decode_job((self.jobdir / JOB_FILE).read_bytes())
        except FileNotFoundError:
            self._reset(None)
            return None
        except JobStateError as exc:
            self._reset(str(exc))
            return None
        if job.fingerprint != self.fingerprint:
            self._reset("it was made for other filters, another spider or other endpoints")
            return None
        return job

    def _reset(self, why: str | None) -> None:
        """Forget the job: our files and the request queue (Scrapy's dupefilter file stays,
        our requests never consult it)."""
        assert self.jobdir is not None and self.dqdir is not None
        for name in (JOB_FILE, RUNNING_MARKER):
            (self.jobdir / name).unlink(missing_ok=True)
        queue = Path(self.dqdir)
        emptied = False
        for path in queue.iterdir():
            emptied = True
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        if why is not None:
            logger.warning("Starting the job in %s over: %s", self.jobdir, why)
        elif emptied:
            logger.info("Starting a new job in %s", self.jobdir)
        return None

    def _writer(self) -> ManifestWriterPipeline | None:
        assert self.crawler is not None
        return self.crawler.get_item_pipeline(ManifestWriterPipeline)

    def _save_job(self, reason: str) -> None:
        assert self.jobdir is not None and self.ledger is not None
        if all(state.finished for state in self.ledger):
            # The writer has written the job's result; nothing is left to resume.
            self._reset(None)
            return
        writer = self._writer()
        models: dict[Any, Any] = {} if writer is None else dict(writer.models)
        job = JobState(
            fingerprint=self.fingerprint,
            ledger=self.ledger.snapshot(),
            models=models,
            baseline=None if writer is None else writer.baseline,
        )
        write_atomic(self.jobdir / JOB_FILE, encode_job(job))
        (self.jobdir / RUNNING_MARKER).unlink(missing_ok=True)
        counts = job_summary(job.ledger)
        logger.info(
            "Crawl stopped (%s) with %d filter(s) unfinished; run it again with JOBDIR=%s to "
            "resume it",
            reason,
            counts.get("running", 0) + counts.get("pending", 0),
            self.jobdir,
        )
