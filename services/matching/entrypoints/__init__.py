"""Matching's entry points: the JSON API, the pages, the bus handlers and the timers."""
