"""The run's state is made once and handed on: filters.json is read once per crawl, and every
component that needs the run gets the same RunState."""

from scrapy.utils.defer import deferred_f_from_coro_f

from manifest_crawler import filters
from manifest_crawler.extensions.runstate import RunState
from manifest_crawler.spiders.all import AllSpider
from tests.crawl import crawl, crawl_settings, read_json


@deferred_f_from_coro_f
async def test_filters_json_is_read_once_and_the_run_is_shared(emulator, tmp_path, monkeypatch):
    parsed = []
    parse = filters.parse_filters

    def counted(*args, **kwargs):
        parsed.append(args[1])
        return parse(*args, **kwargs)

    monkeypatch.setattr(filters, "parse_filters", counted)
    out = tmp_path / "out"
    crawler = await crawl(
        AllSpider, crawl_settings(emulator, out), filters="Week/All/All/downloads/Soft,trending"
    )
    run = crawler.get_extension(RunState)
    assert len(parsed) == 1
    assert run.sources == ("civitai", "huggingface")
    assert [state.filter.key for state in run.ledger] == [
        ("civitai", "Week/All/All/downloads/Soft"),
        ("huggingface", "trending"),
    ]
    assert run.spider_name == "all"
    # The writer collected into the run, and built all-models.json from the same FilterSet.
    assert {key for key, models in run.models.items() if list(models)} == {
        state.filter.key for state in run.ledger
    }
    assert read_json(out / "run-report.json")["spider"] == "all"
    assert crawler.stats.get_value("manifest/exit_code") == 0
