"""Issue 16's Done-when, with every process real, a coordinator in a browser and SMS through the signed webhook, on
both backends: someone applies on the public page, a coordinator moves them through the pipeline, schedules a
bereavement-support session and invites them; they text YES; the coordinator records their attendance, which
grants the bereavement-support training check; approved (with safeguarding and the criminal record check recorded
on their volunteer page, as the pipeline records them), they are offered a bereavement visit, say YES, and `MY`
lists the task."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from shared.demo import text_in
from tests.e2e.conftest import accessible, api, running_site, sign_in
from tests.e2e.test_sms_pages import TOMORROW, reload_until, sent_offer, urgent_request
from tests.helpers import wait_for

PHONE, E164 = "07911 126480", "+447911126480"
# began an hour ago, in Fylde Coast's clocks: attendance is recorded once a session has begun
STARTS = (datetime.now(ZoneInfo("Europe/London")) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
DONE_ON = (datetime.now(timezone.utc) - timedelta(days=30)).date().isoformat()


@pytest.fixture
def site(backend, tmp_path):
    """The whole system as real processes on the test's backend, with a user of each role."""
    with running_site(tmp_path / "site") as system:
        yield system


def texted(client, purpose: str, starts: str):
    """The SMS to the applicant with this purpose whose body starts so (queued or sent)."""
    return wait_for(f"the {purpose} SMS", lambda: next(
        (m for m in client.call("GET", "/sms/messages", params={"to": E164})
         if m["purpose"] == purpose and m["body"].startswith(starts)), None))


def test_an_applicant_trained_by_invitation_and_sms_becomes_eligible_for_bereavement_visits(browser, site):
    client = api(site)
    public = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, locale="en-GB")
    tab = public.new_page()
    tab.set_default_timeout(15_000)
    try:
        tab.goto("/join/fylde-coast")
        tab.get_by_label("Your name").fill("Bea Bereavement")
        tab.get_by_label("Mobile phone").fill(PHONE)
        tab.get_by_label("Postcode").fill("FY1 1AA")
        tab.get_by_label("Bereavement support visit").check()
        tab.get_by_label(re.compile("I agree that")).check()
        tab.get_by_role("button", name="Apply to volunteer").click()
        expect(tab.get_by_role("heading", name="Thank you for applying")).to_be_visible()
    finally:
        public.close()

    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900}, locale="en-GB",
                                  timezone_id="Europe/London")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Applicants").click()
        page.get_by_role("link", name="Bea Bereavement").click()
        for stage in ("contacted", "checks in progress", "training"):
            page.get_by_role("button", name=f"Move to {stage}").click()
        expect(page.get_by_role("button", name="Move to approved")).to_be_visible()

        page.goto("/applicants/board")
        page.get_by_role("link", name="Training sessions").click()
        page.get_by_role("button", name="Schedule the session").click()  # nothing filled in: each field says why
        expect(page.locator("#topic-error")).to_be_visible()
        accessible(page, "the training sessions page with mistakes")
        page.get_by_label("Topic", exact=True).fill("Bereavement support")
        page.get_by_label("Starts", exact=True).fill(STARTS)
        page.get_by_label("Place", exact=True).fill("Blackpool Library")
        page.get_by_label("Trainer", exact=True).fill("Dr Rivera")
        page.get_by_label("Number of places").fill("8")
        page.get_by_label("Attending grants").select_option(label="Bereavement-support training")
        page.get_by_role("button", name="Schedule the session").click()
        expect(page.get_by_role("heading", name="Bereavement support")).to_be_visible()
        page.get_by_label("Bea Bereavement (training)").check()
        page.get_by_role("button", name="Invite by SMS").click()
        row = page.get_by_role("row", name=re.compile("Bea Bereavement"))
        expect(row).to_contain_text("Invited")
        accessible(page, "a training session's page")

        invitation = texted(client, "invitation", "You're invited: Bereavement support, ")
        assert "Blackpool Library" in invitation["body"] and "Bea" not in invitation["body"]
        code = re.search(r"YES (\d{4})", invitation["body"]).group(1)
        text_in(site.url, E164, f"YES {code}", var_dir=site.var_dir)
        texted(client, "answer", "Thank you, you're booked: Bereavement support")
        reload_until(page, row, "Accepted")
        expect(page.locator("#places")).to_have_text("1 of 8")

        row.get_by_label(re.compile("Attended")).check()
        page.get_by_role("button", name="Record attendance").click()
        expect(row).to_contain_text("Attended ")

        page.goto("/applicants/board")
        page.get_by_role("link", name="Bea Bereavement").click()
        expect(page.locator("dl.facts")).to_contain_text("Attended training on")  # kept for their approval
        page.get_by_role("button", name="Move to approved").click()
        assert re.search(r"/roster/[0-9a-f-]{36}$", page.url), page.url  # a volunteer, on their page
        checks = page.locator("table.checks")
        expect(checks).to_contain_text("Bereavement-support training")
        for key, check in (("safeguarding", "Safeguarding training"), ("criminal_record", "Criminal record check")):
            page.get_by_label("Check", exact=True).select_option(key)
            page.get_by_label("Done on").fill(DONE_ON)
            page.get_by_role("button", name="Record check").click()
            expect(checks).to_contain_text(check)
    finally:
        context.close()

    request = urgent_request(site, "bereavement_visit", {"start": f"{TOMORROW}T14:00:00+00:00",
                                                         "end": f"{TOMORROW}T16:00:00+00:00"})
    offer = sent_offer(site, E164)
    offer_code = re.search(r"YES (\d{4})", offer["body"]).group(1)
    assert offer_code != code
    text_in(site.url, E164, f"YES {offer_code}", var_dir=site.var_dir)
    wait_for("the request to be matched", lambda: client.call("GET", f"/requests/{request['id']}")["status"]
             == "matched")
    text_in(site.url, E164, "MY", var_dir=site.var_dir)
    tasks = texted(client, "answer", "Your tasks: ")
    assert f"{offer_code} Bereavement support visit near FY1" in tasks["body"]
