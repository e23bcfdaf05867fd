"""For scrapyd-deploy, which builds its egg with ``setup.py bdist_egg`` (and would otherwise
write a setup.py of its own here): the metadata is all in pyproject.toml."""

from setuptools import setup

setup()
