"""Checks and training as data, per community (issue 16's Done-when), with every process real on both backends:
an administrator adds "Culturally safe practice training" (certificate seen, lasting 24 months) in the browser and
makes bereavement support visits need it; a volunteer without it is no longer offered one, and matching's
explanation names the check; once a coordinator records it on the volunteer's page, they are offered again."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from shared.clock import months_after
from tests.e2e.conftest import accessible, api, running_site, sign_in
from tests.e2e.test_sms_pages import TOMORROW, sent_offer, urgent_request
from tests.helpers import wait_for

PHONE = "+447911125490"
IN_DATE = {"done_on": "2026-01-05", "expires_on": "2035-01-05"}
WHEN = {"start": f"{TOMORROW}T14:00:00+00:00", "end": f"{TOMORROW}T16:00:00+00:00"}


@pytest.fixture
def site(backend, tmp_path):
    """The whole system as real processes on the test's backend, with a user of each role."""
    with running_site(tmp_path / "site") as system:
        yield system


def offers_to(client, phone: str) -> list[dict]:
    """The offers texted to a phone."""
    return [m for m in client.call("GET", "/sms/messages", params={"to": phone}) if m["purpose"] == "offer"]


def match_status(client, request_id: str) -> str | None:
    """Where matching is with a request; None until the request has reached it."""
    answer = client.http.get(f"{client.url}/matches/{request_id}", timeout=10)
    return answer.json()["status"] if answer.status_code == 200 else None


def test_an_administrator_requires_a_new_check_and_only_volunteers_holding_it_are_offered_that_help(browser, site):
    client = api(site)
    bea = client.call("POST", "/volunteers", 201, json={
        "name": "Bea Bereavement", "phone": PHONE, "skills": ["bereavement"], "latitude": 53.8142,
        "longitude": -3.0503, "max_distance_km": 10,
        "checks": [{"check": c, **IN_DATE} for c in ("safeguarding", "criminal_record", "bereavement_training")]})
    urgent_request(site, "bereavement_visit", WHEN)
    sent_offer(site, PHONE)  # offered under the rules the community started with

    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900}, locale="en-GB",
                                  timezone_id="Europe/London")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, "admin")
        page.goto("/roster")
        page.get_by_role("link", name="Checks and training").click()
        expect(page.get_by_role("heading", name="Checks and training in Fylde Coast")).to_be_visible()
        add = page.locator("form[action='/roster/checks']")
        add.get_by_label("Name").fill("Culturally safe practice training")
        add.get_by_label("Key").fill("culturally_safe_practice")
        add.get_by_label("Evidence seen").fill("certificate seen")
        add.get_by_label("Lasts (months)").fill("0")
        add.get_by_role("button", name="Add check").click()
        expect(page.locator("#lasts_months-error")).to_contain_text("from 1 to 120")  # beside its field
        expect(add.get_by_label("Name")).to_have_value("Culturally safe practice training")  # what was right stays
        accessible(page, "the checks page with a mistake")
        add.get_by_label("Lasts (months)").fill("24")
        add.get_by_role("button", name="Add check").click()
        row = page.locator("tr.check-type", has_text="Culturally safe practice training")
        expect(row).to_contain_text("certificate seen")
        expect(row).to_contain_text("24 months")

        visits = page.get_by_role("group", name="Bereavement support visit")
        visits.get_by_label("Culturally safe practice training").check()
        page.get_by_role("button", name="Save which checks are needed").click()
        expect(page.get_by_role("group", name="Bereavement support visit")
               .get_by_label("Culturally safe practice training")).to_be_checked()
        audit = page.locator("table.changes")
        expect(audit).to_contain_text("Checks needed for bereavement support visit")
        expect(audit).to_contain_text("admin@example.org (admin)")
        expect(audit.locator("tr.change").first).to_contain_text(
            "Safeguarding training, Criminal record check (DBS, or vulnerable sector check in Ontario), "
            "Bereavement-support training, Culturally safe practice training")

        # From now on Bea, without it, is not offered a bereavement visit, and the request's page says why
        request = urgent_request(site, "bereavement_visit", WHEN)
        wait_for("the request to be unmatched", lambda: match_status(client, request["id"]) == "unmatched")
        assert len(offers_to(client, PHONE)) == 1
        page.goto(f"/offers/{request['id']}")
        expect(page.locator("p.unmatched")).to_contain_text(
            "nobody eligible: 1 without culturally safe practice training in date")

        # A coordinator records it on her page, without an expiry date: it lasts 24 months
        page.goto(f"/roster/{bea['id']}")
        done_on = date.today() - timedelta(days=1)
        page.get_by_label("Check", exact=True).select_option(label="Culturally safe practice training")
        page.get_by_label("Done on", exact=True).fill(done_on.isoformat())
        page.get_by_role("button", name="Record check").click()
        held = page.locator("tr.check-row", has_text="Culturally safe practice training")
        expect(held).to_contain_text(months_after(done_on, 24).strftime("%d %b %Y"))

        again = urgent_request(site, "bereavement_visit", WHEN)
        wait_for("a second offer to Bea", lambda: len(offers_to(client, PHONE)) == 2)
        assert len(client.call("GET", f"/matches/{again['id']}")["offers"]) == 1  # hers: she is the only one
    finally:
        context.close()
