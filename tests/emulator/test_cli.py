"""``python -m manifest_crawler.emulator``: argument parsing and a real standalone run."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import urllib.request

import pytest

from manifest_crawler.emulator import EmulatorConfig, FaultConfig
from manifest_crawler.emulator.__main__ import build_parser, config_from_args, main


def parse(*argv: str) -> EmulatorConfig:
    return config_from_args(build_parser().parse_args(argv))


def test_defaults() -> None:
    assert parse() == EmulatorConfig()


def test_every_flag() -> None:
    config = parse(
        "--seed=3",
        "--civitai-models=10",
        "--hf-models=20",
        "--revision=2",
        "--latency=0.5",
        "--jitter=0.1",
        "--transient-failures=2",
        "--fault-kinds=429,503",
        "--fault-rate=0.25",
        "--retry-after=4",
        "--fail-matching",
        "types=LORA",
        "nsfw=true",
        "--fail-matching",
        "filter=gguf",
        "--fail-status=503",
        "--empty-pages=2,5",
        "--cursor-loop=3",
        "--skip-at-boundary",
        "--control-chars",
        "--hf-rate-limit=100/60",
        "--fault-seed=9",
        "--latency-apis=huggingface",
        "--endless-body=civitai",
        "--endless-cursor=civitai,huggingface",
        '--hf-ratelimit-header="api";r=0;t=999999999',
        '--hf-ratelimit-policy-header="fixed window";"api";q=0;w=0',
        "--civitai-levels=31,1",
    )
    assert config == EmulatorConfig(
        seed=3,
        civitai_models=10,
        hf_models=20,
        revision=2,
        faults=FaultConfig(
            seed=9,
            latency=0.5,
            jitter=0.1,
            latency_apis=("huggingface",),
            transient_failures=2,
            fault_kinds=("429", "503"),
            fault_rate=0.25,
            retry_after=4,
            fail_matching=({"types": "LORA", "nsfw": "true"}, {"filter": "gguf"}),
            fail_status=503,
            empty_pages=(2, 5),
            cursor_loop_page=3,
            skip_at_boundary=True,
            control_chars=True,
            hf_rate_limit=100,
            hf_rate_window=60.0,
            endless_body_apis=("civitai",),
            endless_cursor_apis=("civitai", "huggingface"),
            hf_ratelimit_header='"api";r=0;t=999999999',
            hf_ratelimit_policy_header='"fixed window";"api";q=0;w=0',
        ),
        civitai_levels=(31, 1),
    )


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--fault-kinds=418"], "fault_kinds"),
        (["--hf-rate-limit=lots"], "N/W"),
        (["--fail-matching", "LORA"], "key=value"),
        (["--cursor-loop=1"], "cursor_loop_page"),
        (["--empty-pages=1"], "empty_pages"),
        (["--latency-apis=github"], "latency_apis"),
        (["--endless-body=github"], "endless_body_apis"),
    ],
)
def test_bad_flags_exit_with_usage_error(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # main() validates everything before it would touch a reactor.
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert complaint in capsys.readouterr().err


def read_line(proc: subprocess.Popen, timeout: float = 20) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the emulator printed nothing"
    return proc.stdout.readline().decode()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_standalone_server(stop_signal: signal.Signals) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "manifest_crawler.emulator",
            "--port=0",
            "--civitai-models=50",
            "--hf-models=50",
            "--verbose",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,  # unbuffered, so select() sees every line still to be read
    )
    try:
        civitai = read_line(proc).split()[-1]
        hub = read_line(proc).split()[-1]
        assert civitai.startswith("http://127.0.0.1:") and civitai.endswith("/api/v1/models")
        assert hub.endswith("/api/models")
        with urllib.request.urlopen(f"{civitai}?limit=3", timeout=10) as reply:
            assert len(json.load(reply)["items"]) == 3
        with urllib.request.urlopen(hub, timeout=10) as reply:
            assert len(json.load(reply)) == 50
        assert read_line(proc).startswith("200 GET /api/v1/models?limit=3")
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
