"""Signing in and out leads only to a path on this site: the rule `local_path` (shared.auth), by table."""

from __future__ import annotations

import pytest

from shared.auth import local_path

DEFAULT = "/board"

OFF_SITE = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",  # what `next=/%09/evil.example` arrives as: browsers drop the tab
    "/\t/evil",
    "/\n/evil.example",
    "/\r/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/ /evil.example",
    "/\u00a0/evil.example",
    "/\u200b/evil.example",  # a zero-width space
    "/%09/evil.example",  # sent encoded twice
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "https://evil.example",
    "http:/evil.example",
    "HTTPS://evil.example/board",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "board",
    "?next=//evil.example",
    "#top",
    "/" + "a" * 2001,
    "",
    None,
]

ON_SITE = [
    "/board",
    "/board/8f0c4a52-2f6a-4d1e-9a55-0c3a2b1d4e5f",
    "/board?status=unmatched&urgency=urgent",
    "/roster/import",
    "/sms/conversations/%2B447700900123",
    "/dashboard?period=month#chart",
    "/login?next=/board",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_a_target_that_could_leave_the_site_gives_the_default(target):
    """Anything a browser could read as another site, or would rewrite first, lands on the default page."""
    assert local_path(target, DEFAULT) == DEFAULT


@pytest.mark.parametrize("target", ON_SITE)
def test_a_path_on_this_site_is_kept(target):
    """A plain path on this site (with a query or fragment) is where sign-in leads."""
    assert local_path(target, DEFAULT) == target


def test_the_default_is_the_callers():
    """Sign-out's default is the sign-in page, sign-in's the board."""
    assert local_path("//evil.example", "/login") == "/login"
    assert local_path(None, "/login") == "/login"
