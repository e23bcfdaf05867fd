"""The checks `scrapy crawl` makes of its settings before it starts (settings_check.py)."""

import pytest
from scrapy.settings import Settings

from manifest_crawler import settings as project_settings
from manifest_crawler.settings_check import CHECKS, InputError, check_settings


def _settings(**values: object) -> Settings:
    settings = Settings()
    settings.setmodule(project_settings)
    settings.setdict(values, priority="cmdline")
    return settings


def test_the_project_defaults_pass_and_every_checked_setting_exists():
    check_settings(_settings())
    defined = {name for name in dir(project_settings) if name.isupper()}
    assert set(CHECKS) - defined == set()


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("MANIFEST_MAX_ITEMS", ["0", "7", 3, "10000000"],
         ["-1", "1.5", "abc", "", 2.0, "10000001", str(10**30), "9" * 5000]),
        ("MANIFEST_MAX_SHRINK", ["0", "1", "0.25", 1], ["-0.1", "1.01", "nan", "x"]),
        ("MANIFEST_STRICT", ["true", "False", "1", "0", True], ["yes", "2", "on"]),
        ("MANIFEST_BACKOFF_JITTER", ["0", "0.5"], ["1.5", "-1"]),
        ("CIVITAI_API_URL", ["http://127.0.0.1:8000/api", "https://civitai.com/api/v1/models"],
         ["notaurl", "ftp://host/x", "https://", "http://[::1/x", "//host/x"]),
        ("MANIFEST_SITEMAP_URL", [None, "", "https://x.org/m/{slug}",
                                  '{"civitai": "https://x.org/{id}"}'],
         ["https://x.org/", "x.org/{slug}", "{not json", '{"nope": "https://x.org/{id}"}']),
    ],
)  # fmt: skip
def test_each_value_is_judged_by_the_settings_rule(name, good, bad):
    for value in good:
        check_settings(_settings(**{name: value}))
    for value in bad:
        with pytest.raises(InputError) as raised:
            check_settings(_settings(**{name: value}))
        assert str(raised.value).startswith(f"{name}="), value
        assert len(str(raised.value)) < 200, value
