"""Applying to volunteer in a real browser, through the front door: someone applies on their community's public
page (without signing in), is thanked and texted; a coordinator finds them on the board of applicants and moves
them through the stages to approved, and they are in the roster."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import accessible, api, sign_in
from tests.helpers import wait_for


def test_someone_applies_on_the_public_page_and_a_coordinator_approves_them(browser, site):
    public = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, locale="en-GB")
    tab = public.new_page()
    tab.set_default_timeout(15_000)
    try:
        tab.goto("/join/fylde-coast")
        expect(tab.get_by_role("heading", name="Volunteer with Fylde Coast")).to_be_visible()
        tab.get_by_label("Your name").fill("Ivy Applicant")
        tab.get_by_label("Mobile phone").fill("07911 125480")
        tab.get_by_label("Postcode").fill("FY1 1AA")
        tab.get_by_label("Phone check-in").check()
        tab.get_by_role("button", name="Apply to volunteer").click()
        expect(tab.locator("#consent-error")).to_contain_text("Tick to say you agree")  # beside its box
        expect(tab.get_by_label("Your name")).to_have_value("Ivy Applicant")  # what was right is kept
        accessible(tab, "the public page with a mistake, at a phone's width")
        tab.get_by_label(re.compile("I agree that")).check()
        tab.get_by_role("button", name="Apply to volunteer").click()
        expect(tab.get_by_role("heading", name="Thank you for applying")).to_be_visible()
    finally:
        public.close()

    client = api(site)
    acknowledgement = wait_for("the acknowledgement SMS", lambda: next(
        (m for m in client.call("GET", "/sms/messages", params={"to": "07911125480"})
         if m["purpose"] == "acknowledgement"), None))
    assert acknowledgement["body"].startswith("Thank you for applying to volunteer with Fylde Coast.")

    coordinator = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 800}, locale="en-GB",
                                      timezone_id="Europe/London")
    page = coordinator.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Applicants").click()
        expect(page.get_by_role("heading", name="Applied (1)")).to_be_visible()
        page.get_by_role("link", name="Ivy Applicant").click()
        accessible(page, "an applicant's page")
        for stage in ("contacted", "checks in progress", "training", "approved"):
            page.get_by_role("button", name=f"Move to {stage}").click()
        expect(page.get_by_role("heading", name="Ivy Applicant")).to_be_visible()
        assert re.search(r"/roster/[0-9a-f-]{36}$", page.url), page.url  # now a volunteer, on their roster page
        page.goto("/roster")
        expect(page.locator("table.roster")).to_contain_text("Ivy Applicant")
        page.goto("/applicants/board")
        expect(page.get_by_role("heading", name="Approved (1)")).to_be_visible()
    finally:
        coordinator.close()
