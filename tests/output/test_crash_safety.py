"""kill -9 at random moments of real crawls: no manifest is ever truncated or invalid."""

from scripts.kill9 import broken_files, kill_at_random


def test_sigkill_at_random_moments_never_leaves_a_broken_file(tmp_path):
    problems = kill_at_random(runs=6, manifest_dir=tmp_path, seed=7, log=False)
    assert problems == []
    # The crawls did write: a manifest per filter and all-models.json are there and whole.
    assert len(list(tmp_path.glob("*.json"))) > 100
    assert broken_files(tmp_path) == []


def test_broken_files_detects_truncation(tmp_path):
    (tmp_path / "civitai-x.json").write_text('{"filter": "x", "models": [{"id": "civ')
    (tmp_path / "hf-y.json").write_text('{"filter": "y", "models": [{"id": "a/b"}]}')
    assert [p.split(":")[0] for p in broken_files(tmp_path)] == ["civitai-x.json", "hf-y.json"]
