"""JOBDIR: an interrupted crawl resumes where it stopped, with no duplicate and no gap.

In the manner of Scrapy's SpiderState extension: Scrapy's scheduler keeps its request queue in
JOBDIR (each running filter's next page; our requests have spider-method callbacks and
picklable meta), and this keeps the rest of the run beside it, in ``JOBDIR/manifest-job.json``
(see jobstate.py): the ledger, the models the writer collected and the baseline. It restores
them into the RunState when the run opens (signals.run_opened, before the scheduler reads its
queue, so the spider starts only the filters no process started yet) and saves them when the
spider closes (after the pipelines and the scheduler closed), so the last process writes what
one uninterrupted run would have written.

A JOBDIR that cannot be trusted is cleared (with a warning) and the job starts over: one whose
last process never closed (killed: its queue files are inconsistent), or one made for other
filters, sources or endpoints. A job whose filters all finished is cleared too, so the same
command can run every build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.job import job_dir

from manifest_crawler import signals as manifest_signals
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.output.jobstate import (
    JOB_FILE,
    RUNNING_MARKER,
    JobState,
    JobStateError,
    decode_job,
    encode_job,
    job_fingerprint,
    job_summary,
)
from manifest_crawler.output.manifests import write_atomic

logger = logging.getLogger(__name__)

_URL_SETTINGS = ("CIVITAI_API_URL", "HF_API_URL")
#: Where Scrapy's scheduler keeps its disk queue inside JOBDIR.
_QUEUE_DIR = "requests.queue"


class JobResume:
    def __init__(self, crawler: Crawler, jobdir: Path) -> None:
        self.crawler = crawler
        self.jobdir = jobdir
        self.run: RunState | None = None
        self.fingerprint = ""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        jobdir = job_dir(crawler.settings)
        if not jobdir:
            raise NotConfigured
        extension = cls(crawler, Path(jobdir))
        crawler.signals.connect(extension.run_opened, signal=manifest_signals.run_opened)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def run_opened(self, run: RunState) -> None:
        self.run = run
        urls = {name: self.crawler.settings[name] for name in _URL_SETTINGS}
        self.fingerprint = job_fingerprint(run.sources, run.ledger, urls)
        # Queued requests carry the API token's Authorization header.
        with contextlib.suppress(OSError):
            self.jobdir.chmod(0o700)
        job = self._load_job()
        (self.jobdir / RUNNING_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
        if job is None:
            return
        run.ledger.restore(job.ledger)
        if job.baseline is not None:
            run.restore(job.models, job.baseline)
        counts = job_summary(job.ledger)
        logger.info(
            "Resuming the job in %s: %d filter(s) finished, %d in progress, %d to start",
            self.jobdir,
            counts.get("done", 0) + counts.get("failed", 0),
            counts.get("running", 0),
            counts.get("pending", 0),
        )

    def spider_opened(self) -> None:
        if self.run is None and self.crawler.get_extension(RunState) is not None:
            logger.error(
                "JOBDIR=%s is not used: the JobResume extension must come before RunState in "
                "EXTENSIONS to see the run open",
                self.jobdir,
            )

    def spider_closed(self, reason: str) -> None:
        run = self.run
        if run is None:
            return
        if all(state.finished for state in run.ledger):
            # The writer has written the job's result; nothing is left to resume.
            self._reset(None)
            return
        job = JobState(
            fingerprint=self.fingerprint,
            ledger=run.ledger.snapshot(),
            models=dict(run.models),
            baseline=run.baseline,
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

    def _load_job(self) -> JobState | None:
        """The job to resume, or None after clearing whatever JOBDIR held."""
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
            self._reset("it was made for other filters, sources or endpoints")
            return None
        return job

    def _reset(self, why: str | None) -> None:
        """Forget the job: our files and the request queue (Scrapy's dupefilter file stays,
        our requests never consult it)."""
        for name in (JOB_FILE, RUNNING_MARKER):
            (self.jobdir / name).unlink(missing_ok=True)
        queue = self.jobdir / _QUEUE_DIR
        emptied = False
        for path in queue.iterdir() if queue.is_dir() else ():
            emptied = True
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        if why is not None:
            logger.warning("Starting the job in %s over: %s", self.jobdir, why)
        elif emptied:
            logger.info("Starting a new job in %s", self.jobdir)
