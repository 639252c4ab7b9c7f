"""Every page a person opens, at a phone's width: no serious or critical accessibility problem (axe-core) and no
sideways scrolling. The pages the other browser tests walk through are checked there, at the step they reach."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import accessible, sign_in

PAGES = {
    "coordinator": ["/board", "/board/new", "/roster", "/roster/new", "/roster/import", "/sms/conversations",
                    "/simulator", "/directory", "/directory/new", "/directory/import"],
    "manager": ["/dashboard", "/report"],
    "referrer": ["/my-referrals", "/my-referrals/new"],
    "admin": ["/dead-letters", "/organisations", "/organisations/new"],
}


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_is_accessible_and_fits_the_window(browser, site, width):
    context = browser.new_context(base_url=site.url, viewport={"width": width, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        tab.goto("/login")
        accessible(tab, f"/login at {width} px")
        for role, paths in PAGES.items():
            sign_in(tab, role)
            for path in paths:
                answer = tab.goto(path)
                assert answer.ok and urlsplit(tab.url).path == path, f"{role} could not open {path}: {tab.url}"
                accessible(tab, f"{path} as {role} at {width} px")
            tab.context.clear_cookies()
    finally:
        context.close()
