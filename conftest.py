"""Shared fixtures that live beside their helpers (tests/conftest.py holds the emulator's)."""

pytest_plugins = ["tests.scripted"]
