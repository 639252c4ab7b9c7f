"""Issue 16's contribution, with every process real and people in a browser, on both backends: a coordinator logs a
group activity run by two volunteers with each one's hours; each volunteer then texts HOURS and is told hours that
include it; the manager's dashboard shows the hours and their value beside them."""

from __future__ import annotations

import re
import uuid
from datetime import date

import pytest
from playwright.sync_api import expect

from shared.demo import text_in
from tests.e2e.conftest import accessible, api, running_site, sign_in
from tests.helpers import wait_for
from tests.integration.test_bus import SAFEGUARDING


@pytest.fixture
def site(backend, tmp_path):
    """The whole system as real processes on the test's backend, with a user of each role."""
    with running_site(tmp_path / "site") as system:
        yield system


def test_an_activity_logged_in_the_browser_with_two_volunteers_reaches_their_hours_and_the_dashboards_value(
        browser, site):
    client = api(site)
    suffix = f"{uuid.uuid4().int % 1000:03d}"
    ran = {name: client.call("POST", "/volunteers", 201, json={
        "name": f"{name} Runner", "phone": f"+44791112{n + 7}{suffix}", "skills": ["practical"], "checks": SAFEGUARDING,
        "postcode": "FY1", "max_distance_km": 10}) for n, name in enumerate(("Rae", "Sol"))}
    hours = {"Rae": "2.5", "Sol": "1,5"}  # as a coordinator types them (a decimal comma too)

    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900}, locale="en-GB",
                                  timezone_id="Europe/London")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page)
        page.goto("/dashboard/activities")
        page.get_by_label("Kind of activity").select_option("death_cafe")
        page.get_by_label("Date").fill(date.today().isoformat())
        page.get_by_label("People attending").fill("11")
        for n, name in enumerate(ran):
            page.get_by_label(f"Volunteer's id {n + 1}", exact=True).fill(ran[name]["id"])
            page.get_by_label(f"Hours {n + 1}", exact=True).fill(hours[name])
        page.get_by_role("button", name="Log activity").click()
        expect(page.get_by_role("status")).to_have_text("The activity is logged.")
        row = page.locator("table.activities tbody tr").first
        expect(row.locator('[data-label="Volunteers"]')).to_have_text("2")
        expect(row.locator('[data-label="Volunteer hours"]')).to_have_text("4")
        accessible(page, "the activities page with an activity's volunteers and hours")

        year = date.today().year
        for name, said in (("Rae", 2.5), ("Sol", 1.5)):
            volunteer = ran[name]
            wait_for(f"matching to add {name}'s hours", lambda v=volunteer, said=said: client.call(
                "GET", f"/volunteers/{v['id']}")["year_hours"] == said, timeout=30)
            text_in(site.url, volunteer["phone"], "HOURS", var_dir=site.var_dir)
            answer = wait_for(f"{name}'s answer", lambda v=volunteer: next(
                (m["body"] for m in client.call("GET", "/sms/messages", params={"to": v["phone"]})
                 if m["body"].startswith("You have given")), None), timeout=30)
            assert answer == f"You have given {said:g} hours in {year} (0 tasks). Thank you!"
        page.goto(f"/roster/{ran['Rae']['id']}")  # their page lists it, with its hours
        expect(page.locator("#year-hours")).to_have_text("2.5")
        expect(page.locator("table.contributions tbody tr").first).to_contain_text("Death cafés")
        accessible(page, "a volunteer's page with the activities they ran and their check-ins")

        manager = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900}, locale="en-GB",
                                      timezone_id="Europe/London").new_page()
        sign_in(manager, "manager")
        manager.goto("/dashboard?period=day")
        expect(manager.locator('.headline li[data-measure="volunteer_hours"] .value')).to_have_text(
            re.compile(r"^4(\.0)?$"))
        value = manager.locator('.headline li[data-measure="volunteer_time_value"]')
        expect(value.locator(".label")).to_have_text("Value of volunteer time")
        expect(value.locator(".value")).to_have_text("£60")  # 4 hours at Fylde Coast's £15
        manager.context.close()
    finally:
        context.close()
