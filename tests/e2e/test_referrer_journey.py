"""A referrer's journey in a real browser (issue 14's "Done when"): they sign in, refer someone by the form, and
watch the referral on My referrals go from received to volunteer found (the volunteer accepts from the SMS
simulator) to help given (the volunteer texts DONE); a second referral nobody can take is signposted by a
coordinator to a service they add to the directory, and the referrer sees it closed as "signposted to" it. At a
laptop's width and a phone's, with axe-core clean on each page."""

from __future__ import annotations

import re
import secrets
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from shared.demo import text_in
from tests.e2e.conftest import accessible, api, sign_in
from tests.e2e.test_metrics import status_is
from tests.helpers import wait_for
from tests.integration.test_bus import SAFEGUARDING

TOMORROW = (date.today() + timedelta(days=1)).isoformat()
# Each width's run refers someone for a kind of help only its own volunteer can give, so the runs do not meet.
# The later run's service is the nearer to FY1, so it comes first when the directory is searched near there.
RUNS = {1280: ("shopping", "practical", "Shopping", "FY8 1AA"), 390: ("meals", "cooking", "Meals", "FY1 4AB")}


def tab_at(browser, site, width: int):
    context = browser.new_context(base_url=site.url, viewport={"width": width, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    return context, tab


def refer(tab, name: str, kind: str, reason: str) -> str:
    """Fill in the referral form as a GP surgery's staff would; the referral's id."""
    tab.get_by_role("navigation", name="Main").get_by_role("link", name="Refer someone").click()
    expect(tab.get_by_role("heading", name="Refer someone for support")).to_be_visible()
    tab.get_by_label("Name", exact=True).fill(name)
    tab.get_by_label("Phone", exact=True).fill("01253 477002")
    tab.get_by_label("Postcode", exact=True).fill("FY1 4AB")
    tab.get_by_label("Kind of help", exact=True).select_option(kind)
    tab.get_by_label("From", exact=True).fill(f"{TOMORROW}T14:00")
    tab.get_by_label("Until", exact=True).fill(f"{TOMORROW}T16:00")
    tab.get_by_label("Agrees their contact details go to the volunteer who accepts", exact=True).check()
    tab.get_by_label("Agrees to be contacted by SMS", exact=True).check()
    tab.get_by_label(re.compile("^Why you are referring them")).fill(reason)
    tab.get_by_label("Your organisation", exact=True).fill("Fylde Coast PCN")
    tab.get_by_label("Type of organisation", exact=True).select_option("pcn")
    tab.get_by_label("Your name", exact=True).fill("Dr Asha Rao")
    tab.get_by_role("button", name="Send the referral").click()
    expect(tab).to_have_url(re.compile(r"/my-referrals/[0-9a-f-]{36}$"))
    return tab.url.rsplit("/", 1)[1]


def stage_on_my_referrals(tab, name: str, stage: str) -> bool:
    """My referrals, loaded afresh, shows the person's referral at this stage."""
    tab.goto("/my-referrals")
    row = tab.get_by_role("row").filter(has=tab.get_by_role("link", name=name, exact=True))
    return stage in row.locator('[data-label="Where it is"]').inner_text()


@pytest.mark.parametrize("width", sorted(RUNS, reverse=True))
def test_a_referrer_follows_a_referral_to_help_given_and_sees_another_signposted(browser, site, width):
    kind, skill, label, where = RUNS[width]
    client = api(site)
    phone = f"+447911125{secrets.randbelow(1000):03d}"
    client.call("POST", "/volunteers", 201, json={
        "name": f"Robin {label}", "phone": phone, "skills": [skill], "checks": SAFEGUARDING,
        "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10})
    referrer_context, referrer = tab_at(browser, site, width)
    coordinator_context, coordinator = tab_at(browser, site, width)
    try:
        sign_in(referrer, "referrer")
        expect(referrer.get_by_role("heading", name="My referrals")).to_be_visible()
        accessible(referrer, f"My referrals at {width} px")
        first = f"Morgan {label} {width}"
        referrer.get_by_role("navigation", name="Main").get_by_role("link", name="Refer someone").click()
        accessible(referrer, f"the referral form at {width} px")
        referrer.goto("/my-referrals")
        first_id = refer(referrer, first, kind, "Lives alone since a stroke; needs help this week.")
        expect(referrer.locator("#stage")).to_have_text(re.compile("Received|Looking for a volunteer"))
        accessible(referrer, f"a referral's page at {width} px")
        referrer.goto("/my-referrals")
        expect(referrer.get_by_role("row").filter(has=referrer.get_by_role("link", name=first, exact=True))) \
            .to_contain_text(re.compile("Received|Looking for a volunteer"))

        offer = wait_for("the SMS offer", lambda: next(
            (m for m in client.call("GET", "/sms/messages", params={"to": phone}) if m["purpose"] == "offer"),
            None))
        code = re.search(r"YES (\d{4})", offer["body"]).group(1)
        sign_in(coordinator)  # the volunteer accepts from the SMS simulator, as the coordinator sees it
        coordinator.goto("/simulator")
        card = coordinator.get_by_role("region", name=phone)
        card.get_by_label(f"Reply as {phone}").fill(f"YES {code}")
        card.get_by_role("button", name="Send").click()
        expect(card.get_by_role("status")).to_contain_text(f"“YES {code}” was received")
        wait_for("the referrer to see a volunteer found",
                 lambda: stage_on_my_referrals(referrer, first, "Volunteer found"))
        accessible(referrer, f"My referrals with a volunteer found at {width} px")
        assert phone not in referrer.content() and "Robin" not in referrer.content()  # nothing of the roster

        text_in(site.url, phone, f"DONE {code}", var_dir=site.var_dir)  # the volunteer texts that it is done
        wait_for("the referrer to see help given", lambda: stage_on_my_referrals(referrer, first, "Help given"))
        referrer.get_by_role("link", name=first, exact=True).click()
        expect(referrer.locator("#stage")).to_have_text("Help given")
        history = referrer.locator(".timeline")
        for stage in ("Received", "Volunteer found", "Help given"):
            expect(history).to_contain_text(stage)
        assert client.call("GET", f"/requests/{first_id}")["status"] == "completed"

        # A second referral no volunteer can take: bereavement visits need trained volunteers, and there are none.
        second = f"Noor Bereaved {width}"
        referrer.goto("/my-referrals")
        second_id = refer(referrer, second, "bereavement_visit", "Her husband died last month; she is isolated.")
        wait_for("nobody to be found", status_is(client, second_id, "unmatched"))

        entry = f"Lytham Bereavement Café {width}"
        coordinator.goto(f"/board/{second_id}")  # the request's page leads to the directory
        coordinator.locator("#signposting").get_by_role("link", name="directory").click()
        expect(coordinator.get_by_role("heading", name="Directory")).to_be_visible()
        accessible(coordinator, f"the directory at {width} px")
        coordinator.get_by_role("link", name="Add a service").click()
        coordinator.get_by_role("button", name="Add the service").click()  # nothing filled in
        expect(coordinator.get_by_role("alert")).to_contain_text("Name")
        expect(coordinator.get_by_role("alert")).to_contain_text("What it offers")
        accessible(coordinator, f"the directory's form with its mistakes at {width} px")
        coordinator.get_by_label("Name", exact=True).fill(entry)
        coordinator.get_by_label("Bereavement support visit", exact=True).check()
        coordinator.get_by_label("Introduction to a bereavement group", exact=True).check()
        coordinator.get_by_label("Run by", exact=True).fill("Trinity Hospice")
        coordinator.get_by_label("Postcode", exact=True).fill(where)
        coordinator.get_by_label("When", exact=True).fill("Fridays 14:00-16:00")
        coordinator.get_by_label("Phone", exact=True).fill("01253 000002")
        coordinator.get_by_role("button", name="Add the service").click()
        expect(coordinator).to_have_url(re.compile("/directory$"))
        coordinator.get_by_label("Kind of help", exact=True).select_option("bereavement_visit")
        coordinator.get_by_label("Near postcode", exact=True).fill("FY1")
        coordinator.get_by_role("button", name="Find").click()
        expect(coordinator.locator("table.directory tbody tr").first).to_contain_text(entry)
        accessible(coordinator, f"the directory found by need and place at {width} px")
        coordinator.goto("/directory/import")
        accessible(coordinator, f"the directory's import page at {width} px")

        coordinator.goto(f"/board/{second_id}")
        section = coordinator.locator("#signposting")
        expect(section.get_by_role("heading", name="Signpost instead")).to_be_visible()
        accessible(coordinator, f"an unmatched request's page with its signposting at {width} px")
        section.get_by_label(re.compile(re.escape(entry))).check()
        section.get_by_role("button", name="Signpost to this service").click()
        expect(coordinator.locator("#status")).to_have_text("signposted")
        expect(coordinator.locator(".timeline")).to_contain_text(f"Signposted to {entry}")
        accessible(coordinator, f"a signposted request's page at {width} px")

        wait_for("the referrer to see it signposted",
                 lambda: stage_on_my_referrals(referrer, second, "Could not be met by a volunteer"))
        row = referrer.get_by_role("row").filter(has=referrer.get_by_role("link", name=second, exact=True))
        expect(row).to_contain_text(f"Signposted to {entry}")
        accessible(referrer, f"My referrals with one signposted at {width} px")
        row.get_by_role("link", name=second, exact=True).click()
        expect(referrer.locator("#stage")).to_have_text("Could not be met by a volunteer")
        expect(referrer.locator("#signposted")).to_contain_text(entry)
        expect(referrer.locator("#signposted")).to_contain_text("01253 000002")
        accessible(referrer, f"a signposted referral's page at {width} px")
        assert client.call("GET", f"/requests/{second_id}")["outcome"] == f"Signposted to {entry}"
    finally:
        referrer_context.close()
        coordinator_context.close()
