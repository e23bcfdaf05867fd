"""A hostile server and a careless editor, against real ``scrapy crawl`` processes.

Each attack is one crawl of four filters, two per source: one of each source is attacked, the
other is healthy. The servers are the tests' own (tests/scripted.py) on loopback: the CivitAI
and Hub endpoints, and a witness on another loopback host (127.0.0.2) that no request may
reach. Every crawl runs with both tokens set, the dev cache, a JOBDIR and a DEBUG log file, and
each attack asserts what stays on disk, what the run report says and what the other filters
got; every crawl also asserts that no token and no local file reached any file it left, that
the cache is private, and that no exception escaped a callback. A bad filters file, or a bad
number given as a setting, exits 2 in one line before any request.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from tests.crawl import read_json, setting_args, start_crawl
from tests.scripted import Reply, ScriptedAPI

TOKENS = {"CIVITAI_API_TOKEN": "civitai-SECRET-7f3a9c", "HF_TOKEN": "hf_SECRET_91bd2e"}
#: What the local file a Link or a redirect points at holds: must never reach an output file.
SECRET_FILE = b'{"items": [{"id": 777, "name": "LEAKED"}], "0": [{"id": "leak/secretfile"}]}'

RATED = {"nsfw": "true"}  # every CivitAI filter names its rule (see the brief's filters.json)
FILTERS = {
    "civitai": [
        {"name": "good", "label": "Good", "params": {**RATED, "sort": "Most Downloaded"},
         "rated_at_most": "XXX"},
        {"name": "attacked", "label": "Attacked", "params": {**RATED, "sort": "Newest"},
         "rated_at_most": "XXX"},
    ],
    "huggingface": [
        {"name": "likes", "label": "Likes", "params": {"sort": "likes"}},
        {"name": "attacked", "label": "Attacked", "params": {"sort": "downloads"}},
    ],
}  # fmt: skip
GOOD_CIVITAI = [f"civitai-{n}" for n in range(1, 6)]
GOOD_HUB = ["good/one", "good/two", "good/three"]
PREVIOUS_CIVITAI = ["civitai-900"]
PREVIOUS_HUB = ["old/model"]


def civitai_items(*ids: Any, name: str = "Model") -> list[dict[str, Any]]:
    return [{"id": i, "name": f"{name} {n}", "nsfwLevel": 1} for n, i in enumerate(ids, 1)]


def healthy_pages(hub_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    civitai = {
        "Most Downloaded|": Reply(
            {"items": civitai_items(1, 2, 3, name="Good"), "metadata": {"nextCursor": "c2"}}
        ),
        "Most Downloaded|c2": Reply({"items": civitai_items(4, 5, name="Good"), "metadata": {}}),
    }
    hub = {
        "likes|": Reply(
            [{"id": "good/one"}, {"id": "good/two"}],
            headers={"Link": f'<{hub_url}?sort=likes&cursor=P2>; rel="next"'},
        ),
        "likes|P2": Reply([{"id": "good/three"}]),
    }
    return civitai, hub


@dataclass
class Servers:
    civitai: ScriptedAPI
    civitai_url: str
    hub: ScriptedAPI
    hub_url: str
    #: On another loopback host: every request it gets left the APIs.
    witness: ScriptedAPI
    witness_url: str


@pytest.fixture
def servers(scripted) -> Servers:
    civitai, civitai_url = scripted({}, by="sort")
    hub, hub_url = scripted({}, by="sort")
    witness, witness_url = scripted({"": Reply([{"id": "elsewhere/model"}])}, by=None,
                                    interface="127.0.0.2")  # fmt: skip
    good_civitai, good_hub = healthy_pages(hub_url)
    civitai.pages.update(good_civitai)
    hub.pages.update(good_hub)
    return Servers(civitai, civitai_url, hub, hub_url, witness, witness_url)


@dataclass
class Outcome:
    code: int
    log: str
    folder: Path
    report: dict[str, Any]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def models(self, name: str) -> list[str]:
        return [model["id"] for model in read_json(self.folder / name)["models"]]


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


async def attack(
    tmp_path: Path,
    servers: Servers,
    civitai: dict[str, Any] | None = None,
    hub: dict[str, Any] | None = None,
    *,
    previous: bool = True,
) -> Outcome:
    """Serve the attacked filters' pages (``sort|cursor`` keys without the sort: the attacked
    CivitAI filter sorts by Newest, the Hub's by downloads), crawl, and check what every
    crawl must hold whatever it met."""
    servers.civitai.pages.update({f"Newest|{k}": v for k, v in (civitai or {}).items()})
    servers.hub.pages.update({f"downloads|{k}": v for k, v in (hub or {}).items()})
    (tmp_path / "secret.json").write_bytes(SECRET_FILE)
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps(FILTERS))
    folder = tmp_path / "out"
    if previous:
        folder.mkdir()
        for name, url, ids in (
            ("civitai-attacked.json", servers.civitai_url, PREVIOUS_CIVITAI),
            ("hf-attacked.json", servers.hub_url, PREVIOUS_HUB),
        ):
            models = [{"id": i, "slug": i.replace("/", "--"), "name": i} for i in ids]
            document = {"filter": "attacked", "origin": url, "models": models,
                        "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
            (folder / name).write_bytes(orjson.dumps(document))
    log_file = tmp_path / "crawl.log"
    args = setting_args(
        FILTERS_FILE=filters,
        CIVITAI_API_URL=servers.civitai_url,
        HF_API_URL=servers.hub_url,
        MANIFEST_DIR=folder,
        MANIFEST_RETRY_TIMES=1,
        MANIFEST_BACKOFF_INITIAL=0.01,
        MANIFEST_DEV_CACHE=True,
        MANIFEST_DEV_CACHE_DIR=tmp_path / "cache",
        JOBDIR=tmp_path / "job",
        LOG_LEVEL="DEBUG",
        LOG_FILE=log_file,
        AUTOTHROTTLE_ENABLED=False,
    )
    process = await start_crawl(
        "all", *args, env=TOKENS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    log = (log_file.read_text(errors="replace") if log_file.exists() else "") + (out + err).decode(
        errors="replace"
    )
    report = read_json(folder / "run-report.json")
    outcome = Outcome(process.returncode, log, folder, report)
    outcome.rows = {f"{row['source']}:{row['filter']}": row for row in report["filters"]}
    _assert_contained(outcome, servers, tmp_path)
    return outcome


def _assert_contained(outcome: Outcome, servers: Servers, tmp_path: Path) -> None:
    log = outcome.log
    # No exception escaped a callback, an errback or the writer.
    for broken in ("Spider error processing", "Scraper close failure", "Error caught on signal"):
        assert broken not in log, log[-4000:]
    # The healthy filters got what they always get.
    assert outcome.rows["civitai:good"]["status"] == "fresh", outcome.rows
    assert outcome.rows["huggingface:likes"]["status"] == "fresh", outcome.rows
    assert outcome.models("civitai-good.json") == GOOD_CIVITAI
    assert outcome.models("hf-likes.json") == GOOD_HUB
    # No request left the APIs.
    assert servers.witness.requests == []
    # Each API's token went to that API, and no further: no file the run left holds one, nor
    # what the local file holds; every JSON file is valid UTF-8 JSON.
    for api, env in ((servers.civitai, "CIVITAI_API_TOKEN"), (servers.hub, "HF_TOKEN")):
        sent = [headers.get(b"Authorization") for headers in api.headers]
        assert sent and all(value == [f"Bearer {TOKENS[env]}".encode()] for value in sent)
    left = list(_files(tmp_path))
    assert any(tmp_path / "cache" in path.parents for path in left), "nothing was cached"
    for path in left:
        data = path.read_bytes()
        for token in TOKENS.values():
            assert token.encode() not in data, path
        if path.name != "secret.json":
            assert b"LEAKED" not in data and b"leak/secretfile" not in data, path
        if path.suffix == ".json" and outcome.folder in path.parents:
            orjson.loads(data)
    # The dev cache is its user's only.
    for path in (tmp_path / "cache").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700


def _assert_kept(outcome: Outcome, source: str, reason: str, *fragments: str) -> dict[str, Any]:
    """The attacked filter of ``source`` is stale: its previous manifest kept, its error in
    the report and in one error line of the log."""
    row = outcome.rows[f"{source}:attacked"]
    assert row["status"] == "stale", row
    assert row["end_reason"] == reason, row
    assert row["errors"], row
    for fragment in fragments:
        assert fragment in row["errors"][-1], row["errors"]
        assert any(fragment in line and "ERROR" in line for line in outcome.log.splitlines())
    name = "civitai-attacked.json" if source == "civitai" else "hf-attacked.json"
    expected = PREVIOUS_CIVITAI if source == "civitai" else PREVIOUS_HUB
    assert outcome.models(name) == expected
    return row


# --- Next pages and redirects --------------------------------------------------------------


@deferred_f_from_coro_f
async def test_a_link_to_another_loopback_host_is_refused(tmp_path, servers):
    elsewhere = f"{servers.witness_url}?sort=downloads&cursor=X"
    outcome = await attack(
        tmp_path,
        servers,
        hub={"": Reply([{"id": "a/first"}], headers={"Link": f'<{elsewhere}>; rel="next"'})},
    )
    assert outcome.code == 0, outcome.log[-3000:]
    row = _assert_kept(outcome, "huggingface", "off_api_link", "the next page", elsewhere)
    assert "not on the API's origin" in row["errors"][-1]


@deferred_f_from_coro_f
async def test_a_link_to_a_local_file_is_refused(tmp_path, servers):
    secret = f"file://{tmp_path / 'secret.json'}"
    outcome = await attack(
        tmp_path,
        servers,
        hub={"": Reply([{"id": "a/first"}], headers={"Link": f'<{secret}>; rel="next"'})},
        previous=False,
    )
    # Nothing to fall back on: the filter failed, the run says so.
    assert outcome.code == 1, outcome.log[-3000:]
    row = outcome.rows["huggingface:attacked"]
    assert row["status"] == "failed" and secret in row["errors"][-1]
    assert not (outcome.folder / "hf-attacked.json").exists()
    assert outcome.report["exit_code"] == 1


@deferred_f_from_coro_f
async def test_a_redirect_elsewhere_is_refused_and_never_carries_the_token(tmp_path, servers):
    elsewhere = f"{servers.witness_url}?sort=Newest"
    secret = f"file://{tmp_path / 'secret.json'}"
    outcome = await attack(
        tmp_path,
        servers,
        civitai={"": Reply(b"", status=302, headers={"Location": elsewhere})},
        hub={"": Reply(b"", status=307, headers={"Location": secret})},
    )
    assert outcome.code == 0, outcome.log[-3000:]
    _assert_kept(outcome, "civitai", "request_failed", f"a request to {elsewhere}: only the API")
    # Scrapy does not follow a redirect to another scheme: the 307 itself fails the page.
    _assert_kept(outcome, "huggingface", "request_failed", "HTTP 307")


@deferred_f_from_coro_f
async def test_a_redirect_within_the_api_is_followed_with_the_token(tmp_path, servers):
    moved = f"{servers.civitai_url}?sort=Newest&cursor=moved"
    outcome = await attack(
        tmp_path,
        servers,
        civitai={
            "": Reply(b"", status=301, headers={"Location": moved}),
            "moved": Reply({"items": civitai_items(31, 32), "metadata": {}}),
        },
    )
    assert outcome.code == 0, outcome.log[-3000:]
    assert outcome.rows["civitai:attacked"]["status"] == "fresh"
    assert outcome.models("civitai-attacked.json") == ["civitai-31", "civitai-32"]
    moved_at = servers.civitai.keys.index("Newest|moved")
    assert servers.civitai.headers[moved_at][b"Authorization"] == [
        f"Bearer {TOKENS['CIVITAI_API_TOKEN']}".encode()
    ]


@pytest.mark.parametrize("length", [15_000, 60_000])
@deferred_f_from_coro_f
async def test_a_long_link_header_costs_its_filter_at_most(tmp_path, servers, length):
    header = "<>;" * (length // 3)
    outcome = await attack(
        tmp_path, servers, hub={"": Reply([{"id": "a/first"}], headers={"Link": header})}
    )
    assert outcome.code == 0, outcome.log[-3000:]
    row = outcome.rows["huggingface:attacked"]
    if length < 16_384:
        # Read link by link, at once (the regular expression it replaced took seconds): no
        # next page in it, so the filter's list ends there.
        assert row["status"] == "fresh", row
        assert outcome.models("hf-attacked.json") == ["a/first"]
    else:
        # Twisted's client closes a connection whose header line passes 16 KB: the page
        # fails like any broken answer.
        _assert_kept(outcome, "huggingface", "request_failed", "DownloadFailedError")


# --- What one item holds ---------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_a_lone_surrogate_is_written_as_a_replacement_character(tmp_path, servers):
    body = (
        b'{"items": [{"id": 11, "name": "Cat \\ud83d", "nsfwLevel": 1},'
        b' {"id": 12, "name": "\\ud800", "nsfwLevel": 1}, {"id": 13, "name": "Plain",'
        b' "nsfwLevel": 1}], "metadata": {}}'
    )
    outcome = await attack(
        tmp_path,
        servers,
        civitai={"": Reply(body)},
        hub={"": Reply(b'[{"id": "a/b\\ud800"}, {"id": "a/fine"}]')},
    )
    assert outcome.code == 0, outcome.log[-3000:]
    manifest = read_json(outcome.folder / "civitai-attacked.json")
    assert [(m["id"], m["name"]) for m in manifest["models"]] == [
        ("civitai-11", "Cat \ufffd"),
        ("civitai-12", "\ufffd"),
        ("civitai-13", "Plain"),
    ]
    assert outcome.models("hf-attacked.json") == ["a/fine"]
    assert outcome.rows["huggingface:attacked"]["dropped"] == {"invalid_id": 1}
    all_models = read_json(outcome.folder / "all-models.json")
    assert {
        "id": "civitai-11",
        "slug": "civitai-11",
        "name": "Cat \ufffd",
        "source": "civitai",
    } in (all_models["models"])


@deferred_f_from_coro_f
async def test_a_5000_digit_id_drops_that_item_only(tmp_path, servers):
    huge = "9" * 5000
    body = (
        b'{"items": [{"id": 21, "name": "Before", "nsfwLevel": 1},'
        b' {"id": %s, "name": "Huge", "nsfwLevel": 1},'
        b' {"id": "%s", "name": "Huge text", "nsfwLevel": 1},'
        b' {"id": 22, "name": "After", "nsfwLevel": 1}], "metadata": {}}'
    ) % (huge.encode(), huge.encode())
    outcome = await attack(tmp_path, servers, civitai={"": Reply(body)})
    assert outcome.code == 0, outcome.log[-3000:]
    row = outcome.rows["civitai:attacked"]
    assert row["status"] == "fresh" and row["dropped"] == {"invalid_id": 2}
    assert outcome.models("civitai-attacked.json") == ["civitai-21", "civitai-22"]
    assert "Dropped 2 model(s) of civitai:attacked (invalid_id 2)" in outcome.log
    assert huge not in outcome.log


@deferred_f_from_coro_f
async def test_assorted_bad_items_each_cost_their_item(tmp_path, servers):
    items = [
        {"id": 41, "name": "Kept", "nsfwLevel": 1},
        {"id": -41, "name": "Negative", "nsfwLevel": 1},
        {"id": 1.5, "name": "Float", "nsfwLevel": 1},
        {"id": [41], "name": "List", "nsfwLevel": 1},
        {"id": 42, "name": "x" * 100_000, "nsfwLevel": 1},
        {"id": 43, "name": ["not", "text"], "nsfwLevel": 1},
        {"id": 44, "name": "Tab\tand\x1b[31mescape\x00", "nsfwLevel": 1},
        {"id": 45, "name": "No level"},
        {"id": 46, "name": "Bad level", "nsfwLevel": -1},
        "a string",
        None,
        {"id": 47, "name": "Deep", "nsfwLevel": 1, "modelVersions": [[[[[[[]]]]]]]},
    ]
    hub = [
        {"id": 5},
        {"id": "x" * 10_000},
        {"id": "a/ok", "tags": [{"unhashable": []}, "gguf"]},
        {"modelId": "b/ok"},
        [],
    ]
    outcome = await attack(tmp_path, servers, civitai={"": Reply({"items": items})},
                           hub={"": Reply(hub)})  # fmt: skip
    assert outcome.code == 0, outcome.log[-3000:]
    manifest = read_json(outcome.folder / "civitai-attacked.json")
    assert [(m["id"], m["name"]) for m in manifest["models"]] == [
        ("civitai-41", "Kept"),
        ("civitai-44", "Tab and [31mescape"),
        ("civitai-47", "Deep"),
    ]
    assert outcome.rows["civitai:attacked"]["dropped"] == {
        "invalid_id": 3,
        "name_too_long": 1,
        "missing_name": 1,
        "invalid_nsfw_level": 2,
        "not_an_object": 2,
    }
    assert outcome.models("hf-attacked.json") == ["a/ok", "b/ok"]
    assert outcome.rows["huggingface:attacked"]["dropped"] == {"invalid_id": 2, "not_an_object": 1}


# --- What one page holds ---------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_a_page_nested_200000_deep_fails_its_filter_after_a_retry(tmp_path, servers):
    deep = b"[" * 200_000 + b"]" * 200_000
    outcome = await attack(tmp_path, servers, civitai={"": Reply(deep)}, hub={"": Reply(deep)})
    assert outcome.code == 0, outcome.log[-3000:]
    for source in ("civitai", "huggingface"):
        row = _assert_kept(outcome, source, "too_deep", "nested too deep")
        assert row["retries"] == 1
    # Retried from the API, not from the dev cache that stored the first answer.
    assert servers.civitai.keys.count("Newest|") == 2


@deferred_f_from_coro_f
async def test_pages_that_are_not_pages_fail_their_filter_with_the_reason(tmp_path, servers):
    outcome = await attack(
        tmp_path,
        servers,
        civitai={"": Reply({"items": civitai_items(51), "metadata": {"nextCursor": {"a": [1]}}})},
        hub={"": Reply({"not": "a list"})},
    )
    assert outcome.code == 0, outcome.log[-3000:]
    _assert_kept(outcome, "civitai", "invalid_cursor", "the next-page cursor a JSON object")
    _assert_kept(outcome, "huggingface", "unexpected_shape", "not a Hugging Face model list")


# --- Error bodies ----------------------------------------------------------------------------

ZOD_400 = {
    "error": {
        "issues": [
            {
                "code": "invalid_enum_value",
                "received": "Newest",
                "options": ["Highest Rated"],
                "path": ["sort"],
                "message": "Invalid enum value. Expected 'Highest Rated', received 'Newest'",
            }
        ],
        "name": "ZodError",
    }
}


@deferred_f_from_coro_f
async def test_error_bodies_show_their_message(tmp_path, servers):
    outcome = await attack(
        tmp_path,
        servers,
        civitai={"": Reply(ZOD_400, status=400)},
        hub={"": Reply({"error": "Invalid sort parameter: downloads"}, status=400)},
    )
    assert outcome.code == 0, outcome.log[-3000:]
    _assert_kept(
        outcome,
        "civitai",
        "request_failed",
        "HTTP 400 (sort: Invalid enum value. Expected 'Highest Rated', received 'Newest')",
    )
    _assert_kept(outcome, "huggingface", "request_failed", "HTTP 400 (Invalid sort parameter")
    # A 400 is never retried.
    assert servers.civitai.keys.count("Newest|") == 1


@deferred_f_from_coro_f
async def test_a_bad_cursor_message_is_shown(tmp_path, servers):
    outcome = await attack(
        tmp_path,
        servers,
        civitai={
            "": Reply({"items": civitai_items(61), "metadata": {"nextCursor": "61|0"}}),
            # The filters read Newest, which the crawler resumes from the cursor's id + 1.
            "61|1": Reply({"message": "Invalid cursor"}, status=400),
        },
    )
    assert outcome.code == 0, outcome.log[-3000:]
    _assert_kept(outcome, "civitai", "request_failed", "HTTP 400 (Invalid cursor)")


# --- Bad input: one line, exit 2, no request --------------------------------------------------


def _hub_filter(**fields: Any) -> str:
    return json.dumps({"huggingface": [{"name": "a", "label": "A", "params": {}, **fields}]})


BAD_FILTERS = {
    "nested-100000-deep": "[" * 100_000 + "]" * 100_000,
    "max-items-5000-digits": _hub_filter(max_items=0).replace(": 0", ": " + "9" * 5000),
    "max-items-10e30": _hub_filter(max_items=10**30),
    "max-items-float": _hub_filter(max_items=1e30),
    "max-items-past-maximum": _hub_filter(max_items=10**7 + 1),
    "max-items-nan": _hub_filter(max_items=0).replace('"max_items": 0', '"max_items": NaN'),
    "lone-surrogate-label": _hub_filter(label="?").replace('"label": "?"', '"label": "\\ud800"'),
    "control-character-in-params": _hub_filter(params={"search": "a\u0000b"}),
    "duplicate-key": _hub_filter().replace('"name": "a"', '"name": "a", "name": "b"'),
    "token-in-params": _hub_filter(params={"token": "hf_x"}),
    "huge-file": json.dumps(
        {"huggingface": [{"name": f"f{n}", "label": "L", "params": {}, "description": "x" * 9000}
                         for n in range(200)]}
    ),
    "not-utf8": b'{"huggingface": [{"name": "\xff"}]}',
    "huge-name": _hub_filter(name="x" * 500_000),
}  # fmt: skip


@pytest.mark.parametrize("content", BAD_FILTERS.values(), ids=list(BAD_FILTERS))
@deferred_f_from_coro_f
async def test_a_bad_filters_file_exits_2_in_one_line_before_any_request(
    tmp_path, servers, content
):
    filters = tmp_path / "filters.json"
    filters.write_bytes(content if isinstance(content, bytes) else content.encode())
    await _refused(tmp_path, servers, f"error: {filters}: ", FILTERS_FILE=filters)


@pytest.mark.parametrize("value", [str(10**30), "9" * 5000, "10000001"])
@deferred_f_from_coro_f
async def test_a_max_items_setting_past_its_maximum_exits_2(tmp_path, servers, value):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps(FILTERS))
    await _refused(
        tmp_path,
        servers,
        "error: MANIFEST_MAX_ITEMS=",
        FILTERS_FILE=filters,
        MANIFEST_MAX_ITEMS=value,
    )


async def _refused(tmp_path: Path, servers: Servers, start: str, **settings: Any) -> None:
    process = await start_crawl(
        "all",
        *setting_args(
            CIVITAI_API_URL=servers.civitai_url,
            HF_API_URL=servers.hub_url,
            MANIFEST_DIR=tmp_path / "out",
            **settings,
        ),
        env=TOKENS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    log = (out + err).decode(errors="replace")
    assert process.returncode == 2, log[-3000:]
    assert log.startswith(start), log[:500]
    assert len(log.splitlines()) == 1 and len(log) < 1200, log[:2000]
    assert "Traceback" not in log
    assert servers.civitai.requests == servers.hub.requests == []
    assert not (tmp_path / "out").exists()
