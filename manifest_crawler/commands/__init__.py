"""Project commands; ``crawl`` here replaces Scrapy's so the exit status reflects the run."""
