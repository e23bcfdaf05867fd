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

# --- Components ---------------------------------------------------------------------------
ITEM_PIPELINES = {
    "manifest_crawler.pipelines.NormalizePipeline": 100,
    "manifest_crawler.pipelines.ManifestWriterPipeline": 800,
}
EXTENSIONS = {
    "manifest_crawler.extensions.offline.OfflineEmulator": 0,
}
# Scrapy's remote_control extension executes code sent to it and the telnet console opens a
# Python shell: neither belongs in a build step.
REMOTE_CONTROL_ENABLED = False
TELNETCONSOLE_ENABLED = False

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
RETRY_TIMES = 4
LOG_LEVEL = "INFO"

FEED_EXPORT_ENCODING = "utf-8"
