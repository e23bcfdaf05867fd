"""``huggingface_hub``'s own listing over the Hugging Face filters, one filter after another.

``python -m bench.hub --endpoint http://127.0.0.1:N --filters filters.json --max-items 100``
calls ``HfApi.list_models`` per filter with the filter's parameters and ``limit=max_items``
(the client paginates by the ``Link`` header itself) and prints ``{"models": M}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from manifest_crawler.filters import Filter, load_filters

#: filters.json parameter → list_models keyword (the client names them the same).
_KEYWORDS = ("filter", "pipeline_tag", "num_parameters", "sort", "search", "author", "gated")


def list_models_kwargs(filter_: Filter) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key, value in filter_.params:
        if key not in _KEYWORDS:
            raise ValueError(f"{filter_.name}: no list_models keyword for parameter {key!r}")
        kwargs[key] = list(value) if isinstance(value, tuple) else value
    return kwargs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hub")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--filters", required=True)
    parser.add_argument("--max-items", type=int, default=100, help="0 = no limit")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Imported after the environment is set: the client reads it at import time.
    from huggingface_hub import HfApi

    api = HfApi(endpoint=args.endpoint, token=False)
    models = 0
    for filter_ in load_filters(args.filters).select(["huggingface"]):
        limit = filter_.max_items or (args.max_items or None)
        models += sum(1 for _ in api.list_models(**list_models_kwargs(filter_), limit=limit))
    print(json.dumps({"models": models}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
