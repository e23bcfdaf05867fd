"""Per-API knowledge: query building, page parsing, next-page discovery, id rules."""
