"""Shared fixtures: the API emulator served from the test reactor on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted

from manifest_crawler.emulator import Emulator, EmulatorConfig


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Factory: ``make_emulator(EmulatorConfig(...))`` or ``make_emulator(seed=..., ...)``.

    Each emulator listens on 127.0.0.1 (a free port, or ``port=``) and is stopped at teardown.
    """
    started: list[Emulator] = []

    def make(config: EmulatorConfig | None = None, *, port: int = 0, **kwargs: Any) -> Emulator:
        emulator = Emulator(config if config is not None else EmulatorConfig(**kwargs))
        emulator.listen(port=port, interface="127.0.0.1")
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        pytest_twisted.blockon(emulator.stop_deferred())


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator with the default configuration (seed 0, 3000 + 3000 models, no faults)."""
    return make_emulator()
