"""Metrics' entry points: the JSON API, the managers' pages, the bus handlers and the `ccs metrics` commands."""
