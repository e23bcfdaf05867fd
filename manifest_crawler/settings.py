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
# Where the per-filter manifests and all-models.json are written.
MANIFEST_DIR = "public/manifests"
# Distinct models kept per filter unless the filter sets its own max_items; 0 = no limit.
MANIFEST_MAX_ITEMS = 100
# A filter whose API keeps answering empty pages with a fresh cursor gives up after this many
# in a row (CivitAI's cursor bug #1848 makes a few of them normal; endless ones are not).
MANIFEST_MAX_EMPTY_PAGES = 10
# Serve the bundled API emulator in-process on a loopback port and crawl it instead.
MANIFEST_OFFLINE = False

# --- Failure semantics --------------------------------------------------------------------
# A fresh result that lost more than this fraction of the previous manifest's models is
# suspect: the previous manifest is kept and the filter reported stale. 1.0 allows any shrink.
MANIFEST_MAX_SHRINK = 0.5
# Exit non-zero when any filter is not fresh (by default only when one has no manifest at all).
MANIFEST_STRICT = False
# Attempts after the first one, for HTTP errors, connection errors and unparsable bodies alike.
MANIFEST_RETRY_TIMES = 5
# Exponential backoff between attempts: BASE, 2*BASE, 4*BASE, … seconds, capped at MAX, each
# lengthened by up to JITTER (a fraction) so that concurrent retries spread out (the APIs'
# docs advise 1 s doubling to 30 s).
MANIFEST_BACKOFF_BASE = 1.0
MANIFEST_BACKOFF_MAX = 30.0
MANIFEST_BACKOFF_JITTER = 0.25
# A Retry-After or RateLimit reset longer than this is not waited for: the request fails.
MANIFEST_MAX_RETRY_AFTER = 300.0

# --- Components ---------------------------------------------------------------------------
DOWNLOADER_MIDDLEWARES = {
    # Replaced: it retries at once and ignores Retry-After (scrapy#3849).
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "manifest_crawler.middlewares.BackoffRetryMiddleware": 550,
}
ITEM_PIPELINES = {
    "manifest_crawler.pipelines.NormalizePipeline": 100,
    "manifest_crawler.pipelines.ManifestWriterPipeline": 800,
}
EXTENSIONS = {
    "manifest_crawler.extensions.offline.OfflineEmulator": 0,
    "manifest_crawler.extensions.jsonrpc.JsonRpcService": 500,
    "manifest_crawler.extensions.progress.ProgressReporter": 510,
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

# --- Politeness and transport -----------------------------------------------------------------
# Both APIs are JSON endpoints, not web pages: robots.txt is not consulted for them.
ROBOTSTXT_OBEY = False
USER_AGENT = "manifest-crawler/0.1 (+https://github.com/manifest-crawler)"
DEFAULT_REQUEST_HEADERS = {"Accept": "application/json"}
# Requests carry meta["download_slot"] = the source name, so each API gets its own slot.
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 60
# Manifests come from API order; nothing is gained by caching cookies or following redirects
# to HTML pages.
COOKIES_ENABLED = False
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.5
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 4.0
LOG_LEVEL = "INFO"
# A page whose body is not a page is retried from the callback with get_retry_request(), which
# is meant to carry retry_times over; Scrapy's meta-copy detector would warn about exactly that.
META_COPY_WARN_SKIP_KEYS = ["retry_times"]

FEED_EXPORT_ENCODING = "utf-8"
