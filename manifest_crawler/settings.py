"""Every default of the project in one place; each can be overridden with ``-s NAME=value``."""

BOT_NAME = "manifest_crawler"
SPIDER_MODULES = ["manifest_crawler.spiders"]
NEWSPIDER_MODULE = "manifest_crawler.spiders"
# `scrapy crawl` from this package: its exit status reflects the run (see commands/crawl.py).
COMMANDS_MODULE = "manifest_crawler.commands"

# --- What to crawl and where it lands -------------------------------------------------------
# The endpoints (the contract names); MANIFEST_OFFLINE points both at the bundled emulator.
CIVITAI_API_URL = "https://civitai.com/api/v1/models"
HF_API_URL = "https://huggingface.co/api/models"
# The single source of truth for every filter of both sources.
FILTERS_FILE = "filters.json"
# Which of its filters a crawl selects, set by the spider (extensions/runstate.py): its sources,
# and the names given with `-a filters=a,b` (None: every filter of those sources).
MANIFEST_SOURCES: list[str] = []
MANIFEST_FILTERS = None
# A crawl of a manifest spider is a manifest run: it reads FILTERS_FILE and writes MANIFEST_DIR.
# Scrapy's tools (scrapy shell, fetch, view, parse, check) set it to false (commands/): the
# run's components (RunState, the writer, the offline emulator) are then off, as in any project.
MANIFEST_RUN = True
# Where the per-filter manifests and all-models.json are written.
MANIFEST_DIR = "public/manifests"
# Distinct models kept per filter unless the filter sets its own max_items; 0 = no limit.
MANIFEST_MAX_ITEMS = 100
# A filter whose API keeps answering empty pages with a fresh cursor gives up after this many
# in a row (CivitAI's cursor bug #1848 makes a few of them normal; endless ones are not).
MANIFEST_MAX_EMPTY_PAGES = 10
# Every filter's page budget (filters.json's max_pages overrides it): a filter may read this
# many times the pages its max_items fills at the API's largest page (100 models of CivitAI:
# 1 page, so 10), and one without a limit on models (max_items 0) MANIFEST_MAX_PAGES pages.
# Every page counts, those that brought nothing new too. A filter that reaches it is written
# with the models it has and reported "short". 10 is above what any filter of a default crawl
# of the emulator needs (7 pages at most, the rating buckets'; at 1,000 a filter 30 of 100)
# and keeps a rated filter within 10 times the pages of an unrated one of the same size.
MANIFEST_SCAN_FACTOR = 10
MANIFEST_MAX_PAGES = 10_000
# Serve the bundled API emulator in-process on a loopback port and crawl it instead.
MANIFEST_OFFLINE = False
# A name for the run, written as run-report.json's "job"; under Scrapyd, unset, the job's id
# (its _job argument): Scrapyd keeps no exit status, the report says how the job ended.
MANIFEST_JOB = None

# Scrapy's run deadline (its CloseSpider extension), in seconds; 0: none. A run past it stops
# as on SIGTERM: the filters that finished are written, the others reported unfinished, exit 1
# (waits for a rate limit or a backoff do not hold it up: middlewares/backoff.py).
CLOSESPIDER_TIMEOUT = 0

# --- Failure semantics --------------------------------------------------------------------
# A fresh result that lost more than this fraction of the previous manifest's models is
# suspect: the previous manifest is kept and the filter reported stale. 1.0 allows any shrink.
MANIFEST_MAX_SHRINK = 0.5
# A manifest whose filter is gone from filters.json (removed or renamed) is deleted in the run's
# commit and listed in changes.json as removed; true keeps such files (with a warning), and the
# deploy guard (python -m manifest_crawler.guard) still refuses a folder that holds one.
MANIFEST_KEEP_ORPHANS = False
# Exit non-zero when any filter is not fresh or holds no model (by default only when one has
# no manifest at all; an empty one is only warned about).
MANIFEST_STRICT = False
# Attempts after the first one, for HTTP errors, connection errors and unparsable bodies alike.
MANIFEST_RETRY_TIMES = 5
# Exponential backoff between attempts: INITIAL, 2*INITIAL, 4*INITIAL, … seconds, capped at
# MAX, each lengthened by up to JITTER (a fraction) so that concurrent retries spread out (the
# APIs' docs advise 1 s doubling to 30 s).
MANIFEST_BACKOFF_INITIAL = 1.0
MANIFEST_BACKOFF_MAX = 30.0
MANIFEST_BACKOFF_JITTER = 0.25
# A Retry-After or RateLimit reset longer than this is not waited for: the request fails.
MANIFEST_MAX_RETRY_AFTER = 300.0
# Send an API that announces its budget in RateLimit headers (the Hub) one request alone, and the
# rest only once its answer has told the budget. Off by default: the probe costs every run a round
# trip with 7 of the API's 8 places idle (docs/PERFORMANCE.md), and it only matters when a run
# starts with its window's budget nearly spent by someone else on the same IP or token. Without it
# the first round of at most CONCURRENT_REQUESTS_PER_DOMAIN requests goes out at once; those that
# find the budget spent get a 429 saying when it resets, and are sent again then. After the first
# answer, the budget is counted either way.
MANIFEST_RATELIMIT_PROBE = False

# --- Components ---------------------------------------------------------------------------
DOWNLOADER_MIDDLEWARES = {
    # Replaced: it retries at once and ignores Retry-After (scrapy#3849).
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "manifest_crawler.middlewares.backoff.BackoffRetryMiddleware": 550,
    # Requests go to the APIs' own origins only, each API's token to its origin only, and
    # only while the request is in the downloader (middlewares/origin.py, ORIGIN_PRIORITY).
    "manifest_crawler.middlewares.origin.ApiOriginMiddleware": 650,
}
# Scrapy's spider middlewares wrap every item a callback yields (a filter's page of models,
# items.ModelPage). Two do nothing for an API crawler: DepthMiddleware only counts link depth (no
# DEPTH_LIMIT, no DEPTH_PRIORITY; the spider orders pages itself), and UrlLengthMiddleware would
# silently drop a next page whose URL passed 2,083 characters, leaving its filter unfinished, where
# the API answering 414 fails the filter with a reason. The others stay: Referer (the redirect
# middlewares use it), HttpError and Start (the spider relies on them) and MetaCopyDetection
# (configured below).
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
}
ITEM_PIPELINES = {
    "manifest_crawler.pipelines.writer.ManifestWriterPipeline": 800,
}
# A page's items (one per filter of its chain) go through the pipeline one after another:
# the writer does no I/O while the crawl runs, so nothing is gained in parallel, and Scrapy
# starts CONCURRENT_ITEMS worker tasks for every response (docs/PERFORMANCE.md).
CONCURRENT_ITEMS = 1
EXTENSIONS = {
    # Built in this order: OfflineEmulator sets the endpoints the run is made for; JobResume
    # must be listening when RunState opens the run (signals.run_opened).
    "manifest_crawler.extensions.offline.OfflineEmulator": -30,
    "manifest_crawler.extensions.resume.JobResume": -20,
    "manifest_crawler.extensions.runstate.RunState": -10,
    "manifest_crawler.extensions.closefailures.CloseFailures": 0,
    "manifest_crawler.extensions.progress.ProgressReporter": 510,
    "manifest_crawler.extensions.sitemap.SitemapWriter": 520,
}
# The project's add-on wires the optional parts before the crawl starts (addon.py): the dev
# cache turns Scrapy's HTTP cache on, and JSONRPC_ENABLED adds the JSON-RPC service to EXTENSIONS.
ADDONS = {
    "manifest_crawler.addon.ManifestAddon": 0,
}
# Scrapy's remote_control extension executes code sent to it and the telnet console opens a
# Python shell: neither belongs in a build step.
REMOTE_CONTROL_ENABLED = False
TELNETCONSOLE_ENABLED = False

# --- Watching and steering a crawl (extensions/jsonrpc.py, extensions/progress.py) ------------
# The JSON-RPC service (status, stats, report, pause, unpause, stop); off unless asked for.
JSONRPC_ENABLED = False
# Loopback only by default; any other interface refuses to start without JSONRPC_TOKEN.
JSONRPC_HOST = "127.0.0.1"
# A port or a [first, last] range, as scrapy-jsonrpc documented; the first free one is bound
# (0 = any free port); the bound port is logged and kept in the stat manifest/jsonrpc/port.
JSONRPC_PORT = [6080, 7030]
# File for the service's access log; None keeps access lines out of the crawl log.
JSONRPC_LOGFILE = None
# Bearer token required on every request when set; falls back to the JSONRPC_TOKEN env var.
JSONRPC_TOKEN = None
# Seconds between "Progress: ..." log lines (filters done/total, models, pages, errors, ETA);
# 0 turns progress reporting off.
MANIFEST_PROGRESS_INTERVAL = 10
# Live progress bar on stderr: "auto" (a terminal and no CI variable), "always" or "never".
MANIFEST_PROGRESS_BAR = "auto"

# --- Sitemap (extensions/sitemap.py), off unless MANIFEST_SITEMAP_URL is set ------------------
# Each model's page: a pattern with {slug}, {id} and {source}, e.g.
# "https://example.com/models/{slug}", or a dict (JSON on the command line) per source,
# {"civitai": "...", "huggingface": "..."}; a source left out gets no URLs.
MANIFEST_SITEMAP_URL = None
# The sitemap; past 50,000 URLs it is an index of sitemap-1.xml, sitemap-2.xml, … beside it.
MANIFEST_SITEMAP_FILE = "public/sitemap.xml"
# The URL the index gives for those children's folder; None: the pattern's scheme and host.
MANIFEST_SITEMAP_BASE_URL = None

# --- Resuming and replaying (extensions/resume.py, addon.py) -------------------------------
# Scrapy's JOBDIR (unset here): with -s JOBDIR=<folder>, an interrupted crawl (Ctrl-C once, or
# the JSON-RPC stop) resumes where it stopped when run again with the same JOBDIR. Scrapy's
# scheduler keeps the request queue there; the JobResume extension (extensions/resume.py) keeps
# the run's state beside it.
# For site development: replay the APIs' 200 answers from MANIFEST_DEV_CACHE_DIR instead of
# asking again; they expire after MANIFEST_DEV_CACHE_TTL seconds (0: never).
MANIFEST_DEV_CACHE = False
MANIFEST_DEV_CACHE_DIR = ".scrapy/manifest-cache"
MANIFEST_DEV_CACHE_TTL = 0

# --- Politeness and transport -----------------------------------------------------------------
# Both APIs are JSON endpoints, not web pages: robots.txt is not consulted for them.
ROBOTSTXT_OBEY = False
USER_AGENT = "manifest-crawler/0.1 (+https://github.com/manifest-crawler)"
DEFAULT_REQUEST_HEADERS = {"Accept": "application/json"}
# Requests carry meta["download_slot"] = the source name, so each API gets its own slot, and
# CONCURRENT_REQUESTS_PER_DOMAIN is the ceiling per API: at most 8 requests in flight to
# CivitAI and 8 to the Hub. CivitAI publishes no rate but answers in 1-3 s and asks for
# backoff on 429 (middlewares.py backs off for the whole API): 8 in flight is at most 3-8
# requests a second there. The Hub allows about 500 calls per 5 minutes per IP, a budget and
# not a concurrency: the middleware reads its RateLimit headers and stops at r=0, and the
# default crawl spends 53 calls. CONCURRENT_REQUESTS lets both APIs use their 8 at once.
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
# Hands the downloader a request of an API only while it holds (downloading, waiting out a
# backoff, or being parsed) fewer than that API's 8, and then the highest priority: the chain
# with the most pages left (critical_path.py) never waits behind shorter ones, and an API
# waiting out a rate limit cannot take the other API's share (pqueues.py).
SCHEDULER_PRIORITY_QUEUE = "manifest_crawler.pqueues.ApiCeilingPriorityQueue"
DOWNLOAD_TIMEOUT = 60
# An answer is read into memory whole, so its size is capped: a 100-item CivitAI page is about
# 0.5-5 MB (a model with many versions up to 127 KB), a 1,000-entry Hub page with the fields
# asked for about 0.1 MB. 32 MiB is six times the largest real page; a body past it (a broken
# proxy, an endless answer) fails its page, so its filter is stale or failed as for any failed
# page, and memory stays bounded: at most 16 requests in flight, 512 MiB in the very worst
# case. Past 8 MiB, a page is logged as unusual.
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024
DOWNLOAD_WARNSIZE = 8 * 1024 * 1024
# Manifests come from API order; nothing is gained by caching cookies or following redirects
# to HTML pages.
COOKIES_ENABLED = False
# AutoThrottle paces each API by its latency: one request every latency/TARGET seconds. With
# TARGET (32) above the ceiling (8), the ceiling binds on a healthy API and AutoThrottle only
# spreads requests instead of sending them in bursts, and still slows them as latency grows;
# a lower TARGET held each API below its ceiling or left freed places idle. Before the first
# answer the START_DELAY paces the first requests: 0.01 s fills an API's 8 places at once (the
# ceiling of 8 in flight is what keeps the burst polite). What other values cost:
# docs/PERFORMANCE.md, "Settings as measured".
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.01
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 32.0
LOG_LEVEL = "INFO"
# A page whose body is not a page is retried from the callback with get_retry_request(), which
# is meant to carry retry_times over; Scrapy's meta-copy detector would warn about exactly that.
META_COPY_WARN_SKIP_KEYS = ["retry_times"]

# The page callback returns no value; Scrapy's check of that parses the callback's source
# (per callback object, and each request's bound method is a new one).
WARN_ON_GENERATOR_RETURN_VALUE = False

FEED_EXPORT_ENCODING = "utf-8"
