"""Intake's entry points: the JSON API, the coordinators' pages, the bus handlers and the `ccs` commands."""
