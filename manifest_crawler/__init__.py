"""Scrapy project that builds the model manifests of a static AI-model catalogue."""
