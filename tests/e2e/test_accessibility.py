"""Every page a person opens, at a phone's width: no serious or critical accessibility problem (axe-core) and no
sideways scrolling. The pages the other browser tests walk through are checked there, at the step they reach."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import accessible, sign_in

PAGES = {
    "coordinator": ["/board", "/board/new", "/roster", "/roster/new", "/roster/import", "/applicants/board",
                    "/sms/conversations",
                    "/simulator", "/directory", "/directory/new", "/directory/import", "/dashboard/activities",
                    "/people/{person}", "/people/{person}/death", "/board/concerns", "/training",
                    "/training/{session}", "/training/{public_session}", "/board/surveys"],
    "manager": ["/dashboard", "/report", "/dashboard/communities"],
    "referrer": ["/my-referrals", "/my-referrals/new"],
    "admin": ["/dead-letters", "/organisations", "/organisations/new", "/roster/checks", "/roster/checks/safeguarding"],
}
PUBLIC = ["/join/fylde-coast", "/join/fylde-coast/thanks"]


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_is_accessible_and_fits_the_window(browser, site, width):
    context = browser.new_context(base_url=site.url, viewport={"width": width, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    ids = {"person": made(site)["person_id"], **sessions(site)}  # the pages of records, by the ids made for them
    try:
        tab.goto("/login")
        accessible(tab, f"/login at {width} px")
        for path in PUBLIC:  # nobody signed in
            assert tab.goto(path).ok
            accessible(tab, f"{path} at {width} px")
        for role, paths in PAGES.items():
            sign_in(tab, role)
            for path in paths:
                path = path.format(**ids)
                answer = tab.goto(path)
                assert answer.ok and urlsplit(tab.url).path == path, f"{role} could not open {path}: {tab.url}"
                accessible(tab, f"{path} as {role} at {width} px")
            tab.context.clear_cookies()
    finally:
        context.close()


def sessions(site) -> dict:
    """A training session with a volunteer invited, and a public session with someone signed up, for their pages
    (new ones for each test: the site is the module's)."""
    import secrets
    from datetime import datetime, timedelta, timezone

    from tests.e2e.conftest import api
    from tests.integration.test_bus import SAFEGUARDING

    client = api(site)
    starts = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    volunteer = client.call("POST", "/volunteers", 201, json={
        "name": "Ana Accessible", "phone": f"+447911126{secrets.randbelow(1000):03d}", "skills": ["companionship"],
        "checks": SAFEGUARDING, "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10})
    training = client.call("POST", "/training/sessions", 201, json={
        "topic": "Bereavement support", "starts_at": starts, "place": "Blackpool Library", "trainer": "Dr Rivera",
        "capacity": 8, "grants": "bereavement_training"})
    client.call("POST", f"/training/sessions/{training['id']}/invitations", json={"volunteers": [volunteer["id"]]})
    public = client.call("POST", "/training/sessions", 201, json={
        "topic": "Future Life Planning", "starts_at": starts, "online": True, "trainer": "Sam Trainer",
        "capacity": 20, "public": "future_life_planning"})
    client.call("POST", f"/training/sessions/{public['id']}/invitations", json={
        "people": [{"phone": "+447911123996", "name": "Pat Public"}]})
    return {"session": training["id"], "public_session": public["id"]}


def made(site) -> dict:
    """A request logged by the API, for the pages of its records."""
    from tests.e2e.test_people import log_for

    return log_for(site, "Tamsin Accessible", "+447911123998", "shopping")


def test_a_referral_with_what_to_check_is_accessible_on_the_coordinators_page(browser, site):
    """A health system's referral with a phone number that cannot be used, words for a kind of help and no
    consent: the request's page lists what to check, and stays accessible at a phone's width."""
    import json

    from tests.e2e.conftest import api
    from tests.integration.test_fhir_real_systems import gp_service_request

    resource = gp_service_request({"text": "Help sorting the garden"}, phone="+44 20 7946 09")
    made = api(site, "referrer").call("POST", "/fhir/ServiceRequest", expect=201, data=json.dumps(resource),
                                      headers={"Content-Type": "application/fhir+json"})
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        sign_in(tab, "coordinator")
        tab.goto(f"/board/{made['id']}")
        box = tab.locator("section[aria-labelledby=to-check]")
        assert "Asked for: Help sorting the garden" in box.inner_text()
        assert "+44 20 7946 09" in box.inner_text()
        accessible(tab, "a referral to check, as coordinator at 390 px")
    finally:
        context.close()


def test_a_group_activity_logged_with_mistakes_then_right_is_accessible_at_a_phones_width(browser, site):
    """The activity form names every mistake beside its field and keeps what was right; logged, it is listed."""
    from datetime import date, timedelta

    from playwright.sync_api import expect

    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        sign_in(tab, "coordinator")
        tab.goto("/dashboard/activities")
        tab.get_by_label("Date").fill((date.today() + timedelta(days=20)).isoformat())
        tab.get_by_label("Organised by").fill("Trinity Hospice")
        tab.get_by_role("button", name="Log activity").click()
        expect(tab.get_by_role("heading", name="There are 3 problems")).to_be_visible()
        expect(tab.locator("#kind-error")).to_have_text("Kind of activity is needed.")
        expect(tab.locator("#held_on-error")).to_have_text("Log an activity once it has happened.")
        expect(tab.locator("#attendance-error")).to_have_text("People attending is needed.")
        expect(tab.get_by_label("Organised by")).to_have_value("Trinity Hospice")
        accessible(tab, "the activity form with mistakes, as coordinator at 390 px")
        tab.get_by_label("Kind of activity").select_option("dying_matters_event")
        tab.get_by_label("Date").fill(date.today().isoformat())
        tab.get_by_label("People attending").fill("24")
        tab.get_by_role("button", name="Log activity").click()
        expect(tab.get_by_role("status")).to_have_text("The activity is logged.")
        expect(tab.locator("table.activities tbody tr").first).to_contain_text("Dying Matters events")
        accessible(tab, "the activities logged, as coordinator at 390 px")
    finally:
        context.close()


def test_a_referral_signposted_from_the_form_is_accessible_and_closes_at_once(browser, site):
    """The referral form offers the directory's services instead of volunteers (nearest the postcode first once
    the form comes back with its mistakes); choosing one sends the referral closed, signposted to it."""
    import uuid

    from playwright.sync_api import expect

    name = f"Lytham Grief Café {uuid.uuid4().hex[:6]}"
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        sign_in(tab, "coordinator")
        tab.goto("/directory/new")
        tab.get_by_label("Name", exact=True).fill(name)
        tab.get_by_label("Bereavement support visit").check()
        tab.get_by_label("Postcode", exact=True).fill("FY8 1AA")
        tab.get_by_label("Phone", exact=True).fill("01253 000009")
        tab.get_by_role("button", name="Add the service").click()
        expect(tab).to_have_url(f"{site.url}/directory")
        tab.context.clear_cookies()

        sign_in(tab, "referrer")
        tab.goto("/my-referrals/new")
        tab.get_by_label("Postcode", exact=True).fill("FY8 2AB")
        tab.get_by_role("button", name="Send the referral").click()
        expect(tab.locator("#error-summary")).to_be_visible()
        choice = tab.locator("#signpost_to label", has_text=name)
        expect(choice).to_contain_text("km away")
        accessible(tab, "the referral form with mistakes and services to point to, as referrer at 390 px")
        tab.get_by_label("Name", exact=True).fill("Rose Quayle")
        tab.get_by_label("Kind of help").select_option("bereavement_visit")
        tab.get_by_label("Any time on these days").check()
        tab.get_by_label("Tue").check()
        tab.get_by_label("Part of the day").select_option("afternoon")
        tab.get_by_label("Why you are referring them").fill("Her husband died in March.")
        if not tab.get_by_label("Your organisation").input_value():
            tab.get_by_label("Your organisation").fill("Fylde Coast PCN")
        if tab.get_by_label("Type of organisation").count():
            tab.get_by_label("Type of organisation").select_option("pcn")
        tab.get_by_label("Your name").fill("Dr Asha Rao")
        choice.locator("input").check()
        tab.get_by_role("button", name="Send the referral").click()
        expect(tab.get_by_text(f"Signposted to {name}").first).to_be_visible()
        accessible(tab, "a referral signposted at once, as referrer at 390 px")
    finally:
        context.close()


def test_a_befriending_match_on_the_request_page_and_the_form_that_logs_one_are_accessible(browser, site):
    """The request form's befriending choice, and a befriending request's page once a volunteer took it: its
    rhythm, visits, review date and the form to end the match with a reason, at a phone's width."""
    from shared.demo import text_in
    from tests.e2e.conftest import api
    from tests.e2e.test_metrics import offer_code, status_is
    from tests.helpers import wait_for
    from tests.integration.test_befriending import BEFRIENDING, HOME_CHECKS

    client = api(site)
    phone = "+447911126091"
    client.call("POST", "/volunteers", expect=201, json={
        "name": "Bea Friend", "phone": phone, "skills": ["companionship"], "checks": HOME_CHECKS, "postcode": "FY1",
        "max_distance_km": 10})
    made = client.call("POST", "/requests", expect=201, json={
        **BEFRIENDING, "person": {**BEFRIENDING["person"], "name": "Bef Riended"}})
    text_in(site.url, phone, f"YES {offer_code(client, phone, made['id'])}", var_dir=site.var_dir)
    wait_for("the befriending request to be matched", status_is(client, made["id"], "matched"), timeout=30)
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        sign_in(tab, "coordinator")
        tab.goto("/board/new")
        tab.select_option("#befriending-rhythm", "weekly")
        accessible(tab, "the request form with befriending chosen, as coordinator at 390 px")
        tab.goto(f"/board/{made['id']}")
        section = tab.locator("#offers .befriending")
        section.wait_for()
        assert "Befriending, weekly" in section.inner_text() and "Review on" in section.inner_text()
        assert tab.locator("#offers select[name=reason]").count() == 1
        accessible(tab, "a befriending request's page, as coordinator at 390 px")
    finally:
        context.close()
