"""A coordinator's day in a real browser: sign in, log a request, watch it reach matched, filter the board."""

from __future__ import annotations

import re
import secrets
from datetime import date, timedelta

from playwright.sync_api import expect

from shared.demo import text_in
from tests.helpers import wait_for
from tests.e2e.conftest import accessible, api, matches_screenshot, sign_in
from tests.e2e.test_metrics import status_is
from tests.integration.test_bus import SAFEGUARDING

TOMORROW = (date.today() + timedelta(days=1)).isoformat()


def volunteer_in_blackpool(site) -> str:
    """Register a volunteer for practical help near FY1 and return their phone."""
    phone = f"+447911123{secrets.randbelow(1000):03d}"
    api(site).call("POST", "/volunteers", 201, json={
        "name": "Robin Volunteer", "phone": phone, "skills": ["practical"], "checks": SAFEGUARDING,
        "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10})
    return phone


def log_request(site, name: str, kind: str, urgency: str = "routine") -> dict:
    """Log a request through the API, for the board's tests."""
    return api(site).call("POST", "/requests", 201, json={
        "person": {"name": name, "phone": "01253 477000", "postcode": "FY2 0AA"},
        "support_type": kind, "urgency": urgency,
        "when": {"start": f"{TOMORROW}T10:00:00+00:00", "end": f"{TOMORROW}T12:00:00+00:00"},
        "consent": {"share_contact": True, "sms_contact": True}})


def test_a_wrong_password_is_refused_and_the_board_needs_a_sign_in(page):
    page.goto("/board")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fboard$|/login\?next=/board$"))
    sign_in(page, password="not the password")
    expect(page.get_by_text("That email and password do not match.")).to_be_visible()
    expect(page.get_by_label("Email", exact=True)).to_have_value("coordinator@example.org")


def test_the_login_form_works_from_the_keyboard_alone(page):
    page.goto("/login")
    expect(page.get_by_label("Email", exact=True)).to_be_focused()  # it has focus when the page opens
    page.keyboard.type("coordinator@example.org")
    page.keyboard.press("Tab")
    page.keyboard.type("a long enough passphrase")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Requests")).to_be_visible()


def test_a_coordinator_logs_a_request_and_watches_it_reach_matched(page, site):
    phone = volunteer_in_blackpool(site)
    sign_in(page)
    page.get_by_role("link", name="New request").first.click()
    page.get_by_label("Name", exact=True).fill("Alex Browser")
    page.get_by_label("Phone", exact=True).fill("01253 477001")
    page.get_by_label("Address", exact=True).fill("2 Promenade, Blackpool")
    page.get_by_label("Postcode", exact=True).fill("FY1 4AB")
    page.get_by_label("Kind of help", exact=True).select_option("shopping")
    page.get_by_label("Urgency", exact=True).select_option("soon")
    page.get_by_label("From", exact=True).fill(f"{TOMORROW}T14:00")
    page.get_by_label("Until", exact=True).fill(f"{TOMORROW}T16:00")
    page.get_by_label("Agrees their contact details go to the volunteer who accepts", exact=True).check()
    page.get_by_label("Agrees to be contacted by SMS", exact=True).check()
    page.get_by_label("Notes for coordinators only", exact=True).fill("Lives alone.")
    page.get_by_role("button", name=re.compile("Log")).click()

    expect(page.get_by_role("heading", name="Shopping for Alex Browser")).to_be_visible()
    request_id = page.url.rsplit("/", 1)[1]
    client = api(site)
    offer = wait_for("the SMS offer", lambda: next(
        (m for m in client.call("GET", "/sms/messages", params={"to": phone}) if m["purpose"] == "offer"), None))
    assert "Alex" not in offer["body"] and "Promenade" not in offer["body"]
    code = re.search(r"YES (\d{4})", offer["body"]).group(1)
    text_in(site.url, phone, f"YES {code}", var_dir=site.var_dir)

    def matched():  # offer.accepted makes it matched; request.matched, a moment later, adds its timeline entry
        page.reload()
        return page.locator("#status").inner_text() == "matched" and \
            "Matched with a volunteer" in page.locator(".timeline").inner_text()

    wait_for("the page to show matched", matched)
    accepted = page.locator(".accepted")
    expect(accepted).to_contain_text("Accepted by Robin Volunteer")  # named, with the phone to reach them on
    expect(accepted.get_by_role("link", name=phone)).to_have_attribute("href", f"tel:{phone}")
    expect(page.locator("table.offer-list")).to_contain_text(code)
    timeline = page.locator(".timeline li")
    expect(timeline.first).to_contain_text("submitted")
    expect(timeline.filter(has_text="matched")).to_have_count(1)
    assert client.call("GET", f"/requests/{request_id}")["status"] == "matched"


def test_a_form_with_mistakes_names_each_field_and_logs_nothing(page, site):
    before = len(api(site).call("GET", "/requests", params={"page_size": 100}))
    sign_in(page)
    page.goto("/board/new")
    page.get_by_label("Name", exact=True).fill("Casey Mistake")
    page.get_by_label("Phone", exact=True).fill("12")
    page.get_by_label("Postcode", exact=True).fill("ZZ99")
    page.get_by_label("From", exact=True).fill(f"{TOMORROW}T16:00")
    page.get_by_label("Until", exact=True).fill(f"{TOMORROW}T14:00")
    page.get_by_role("button", name=re.compile("Log")).click()

    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("Phone")
    expect(summary).to_contain_text("Postcode")
    expect(summary).not_to_contain_text("gazetteer")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Casey Mistake")
    postcode = page.get_by_label("Postcode", exact=True)
    expect(postcode).to_have_attribute("aria-invalid", "true")  # and its message beside it, read with it
    expect(page.locator("#" + postcode.get_attribute("aria-describedby").split()[-1])).to_contain_text("ZZ99")
    accessible(page, "the request form with its mistakes")
    summary.get_by_role("link", name="Phone").click()
    expect(page.get_by_label("Phone", exact=True)).to_be_focused()
    assert len(api(site).call("GET", "/requests", params={"page_size": 100})) == before


def test_the_board_filters_by_status_kind_and_urgency_and_puts_urgent_first(page, site):
    log_request(site, "Dana Routine", "meals")
    log_request(site, "Eli Urgent", "meals", urgency="urgent")
    log_request(site, "Fran Visit", "home_visit")
    sign_in(page)
    page.get_by_label("Kind of help", exact=True).select_option("meals")
    page.get_by_role("button", name="Filter").click()
    names = page.locator("table.board tbody td:first-child").all_inner_texts()
    assert names[:2] == ["Eli Urgent", "Dana Routine"] and "Fran Visit" not in names
    page.get_by_label("Urgency", exact=True).select_option("urgent")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("table.board tbody td:first-child").all_inner_texts() == ["Eli Urgent"]
    expect(page).to_have_url(re.compile(r"support_type=meals.*urgency=urgent"))
    page.get_by_label("Status", exact=True).select_option("matched")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No requests match.")).to_be_visible()


def test_a_referrer_and_a_manager_cannot_open_the_board(page):
    for role in ("referrer", "manager"):
        page.context.clear_cookies()
        sign_in(page, role)
        page.goto("/board")
        expect(page.get_by_role("heading", name="This page is not for your role")).to_be_visible()
        assert "Dana" not in page.content()


def test_the_board_fits_a_phone_screen(browser, site):
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    sign_in(phone)
    expect(phone.get_by_role("heading", name="Requests")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for label in ("Status", "Kind of help", "Urgency"):
        box = phone.get_by_label(label, exact=True).bounding_box()
        assert box["height"] >= 24, f"{label} is too small to tap"
    context.close()


def test_the_board_looks_as_reviewed(browser, site, tmp_path):
    # Nobody in these tests plans futures, so both requests settle as unmatched whatever ran before.
    ids = [log_request(site, name, "planning_session", urgency)["id"]
           for name, urgency in (("Gale Screenshot", "urgent"), ("Hana Screenshot", "routine"))]
    client = api(site)
    wait_for("both to be unmatched", lambda: all(
        client.call("GET", f"/requests/{i}")["status"] == "unmatched" for i in ids))
    for width, height, label in ((1280, 720, "board-laptop"), (390, 844, "board-phone")):
        context = browser.new_context(base_url=site.url, viewport={"width": width, "height": height},
                                      timezone_id="Europe/London", locale="en-GB")
        tab = context.new_page()
        sign_in(tab)
        tab.goto("/board?support_type=planning_session")
        expect(tab.locator("#needs-you table.board tbody tr")).to_have_count(2)  # both need the coordinator
        # Why unmatched depends on who else the other tests registered: one text for it, so the columns keep their
        # widths.
        tab.locator("li.reason-unmatched").evaluate_all(
            "reasons => reasons.forEach(reason => { reason.firstChild.textContent = 'Nobody found: nobody eligible. '"
            " })")
        changing = [tab.locator("table.board td:nth-child(5)"), tab.locator("table.board td:nth-child(9)")]
        matches_screenshot(tab.screenshot(full_page=True, mask=changing, animations="disabled"), label, tmp_path)
        context.close()


def test_one_openapi_document_covers_every_service_and_the_docs_page_shows_it(page, site):
    document = api(site).call("GET", "/openapi.json")
    assert document["openapi"].startswith("3.")
    for path in ("/requests", "/referrals", "/fhir/ServiceRequest", "/volunteers", "/sms/inbound", "/activity"):
        assert path in document["paths"], path
    invalid = document["paths"]["/requests"]["post"]["responses"]["422"]["$ref"].rsplit("/", 1)[1]
    assert document["components"]["responses"][invalid]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"}
    page.goto("/docs")
    expect(page.locator(".opblock-summary-path", has_text="/fhir/ServiceRequest").first).to_be_visible()
    expect(page.get_by_text("Compassionate Communities", exact=False).first).to_be_visible()


def test_a_weekly_request_on_any_weekday_afternoon_with_preferences_is_logged_from_the_form(page, site):
    sign_in(page)
    page.goto("/board/new")
    page.get_by_label("Name", exact=True).fill("Ira Weekly")
    page.get_by_label("Postcode", exact=True).fill("FY3 9AA")
    page.get_by_label("Kind of help", exact=True).select_option("shopping")
    page.get_by_label("Any time on these days").check()
    for day in ("Mon", "Wed", "Fri"):
        page.get_by_role("group", name="Days").get_by_label(day, exact=True).check()
    page.get_by_label("Part of the day", exact=True).select_option("afternoon")
    page.get_by_label("Repeats", exact=True).select_option("1")
    page.get_by_label("How many times", exact=True).fill("6")
    page.get_by_label("Volunteer's language", exact=True).select_option("pl")
    page.get_by_label("Volunteer's gender", exact=True).select_option("female")
    page.get_by_label("There are pets in the home").check()
    page.get_by_role("button", name="Log request").click()

    expect(page.get_by_role("heading", name="Shopping for Ira Weekly")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Mon, Wed, Fri afternoon, every week, 6 times")
    expect(page.locator("dl.facts")).to_contain_text("volunteer speaks pl; female volunteer; pets in the home")
    stored = api(site).call("GET", f"/requests/{page.url.rsplit('/', 1)[1]}")
    assert stored["when"] == {"days": ["mon", "wed", "fri"], "part_of_day": "afternoon"}
    assert stored["repeat"] == {"every_weeks": 1, "occurrences": 6}
    assert stored["preferences"]["volunteer_gender"] == "female" and stored["preferences"]["pets"] is True


def test_an_unmatched_request_is_rescued_from_its_page_then_done_and_another_cancelled_after_a_confirmation(
        browser, site):
    """Nobody can take a request, so it is unmatched; a volunteer joins; the coordinator assigns them from the
    ranked candidates on the request's page, records it done with their hours when they phone in, and cancels
    another request once they have said why. At a phone's width, with axe-core clean on each page."""
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, locale="en-GB",
                                  timezone_id="Europe/London")
    page = context.new_page()
    page.set_default_timeout(15_000)
    client = api(site)
    try:
        stranded = log_request(site, "Hana Stranded", "carer_respite")
        wait_for("the request to be unmatched", status_is(client, stranded["id"], "unmatched"))
        phone = f"+447911124{secrets.randbelow(1000):03d}"
        helper = client.call("POST", "/volunteers", 201, json={
            "name": "Ivo Respite", "phone": phone, "skills": ["respite"], "max_distance_km": 10,
            "postcode": "FY2 0AA", "checks": SAFEGUARDING + [{"check": "criminal_record", "done_on": "2026-01-05",
                                                             "expires_on": "2029-01-05"}]})
        sign_in(page)
        page.goto(f"/board/{stranded['id']}")
        expect(page.locator(".unmatched")).to_contain_text("Nobody found yet")
        candidates = page.locator("table.candidates")
        expect(candidates).to_contain_text("Ivo Respite")
        accessible(page, "an unmatched request's page at 390 px")
        candidates.get_by_role("button", name="Assign Ivo Respite").click()

        expect(page).to_have_url(re.compile(f"/board/{stranded['id']}$"))
        expect(page.locator(".accepted")).to_contain_text("Accepted by Ivo Respite")
        wait_for("intake to hear of the match", status_is(client, stranded["id"], "matched"))
        page.reload()
        page.get_by_label(re.compile("^Hours they gave")).fill("30")
        page.get_by_role("button", name="Mark as done").click()
        expect(page.get_by_role("alert")).to_contain_text("Hours")
        assert client.call("GET", f"/matches/{stranded['id']}")["status"] == "matched"
        page.goto(f"/board/{stranded['id']}")
        page.get_by_label(re.compile("^Hours they gave")).fill("2.5")
        page.get_by_role("button", name="Mark as done").click()
        wait_for("the task to be completed", status_is(client, stranded["id"], "completed"))
        tasks = client.call("GET", f"/volunteers/{helper['id']}")["tasks"]
        assert [(t["status"], t["hours"]) for t in tasks] == [("completed", 2.5)]

        other = log_request(site, "Jay Cancelled", "meals")
        page.goto(f"/board/{other['id']}")
        page.get_by_role("link", name="Change the request").click()
        expect(page.get_by_label("Name", exact=True)).to_have_value("Jay Cancelled")
        accessible(page, "a request's form, to change it, at 390 px")
        page.get_by_label("Urgency", exact=True).select_option("urgent")
        page.get_by_label("Until", exact=True).fill(f"{TOMORROW}T09:00")  # before it starts
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("alert")).to_contain_text("Until")
        assert client.call("GET", f"/requests/{other['id']}")["urgency"] == "routine"
        page.get_by_label("Until", exact=True).fill(f"{TOMORROW}T13:00")
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator(".urgency")).to_have_text("urgent")
        changed = client.call("GET", f"/requests/{other['id']}")
        assert (changed["urgency"], changed["person"]["name"]) == ("urgent", "Jay Cancelled")
        page.get_by_text("Cancel this request…").click()
        accessible(page, "a request's page with the cancel confirmation open")
        page.get_by_role("button", name="Yes, cancel the request").click()  # no reason given: not cancelled
        assert client.call("GET", f"/requests/{other['id']}")["status"] != "cancelled"
        page.get_by_label(re.compile("^Why is it cancelled")).fill("Family are helping")
        page.get_by_role("button", name="Yes, cancel the request").click()
        wait_for("the request to be cancelled", status_is(client, other["id"], "cancelled"))
    finally:
        context.close()


def test_the_board_finds_a_person_by_name_or_phone_and_shows_new_requests_without_a_reload(page, site):
    client = api(site)
    client.call("POST", "/requests", 201, json={
        "person": {"name": "Kit Searchable", "phone": "01253 470123", "postcode": "FY2 0AA"},
        "support_type": "meals", "when": {"days": ["tue"], "part_of_day": "morning"},
        "consent": {"share_contact": True, "sms_contact": True}})
    log_request(site, "Lou Other", "meals")
    sign_in(page)
    page.get_by_label("Name or phone", exact=True).fill("kit search")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("table.board tbody td:first-child").all_inner_texts() == ["Kit Searchable"]
    page.get_by_label("Name or phone", exact=True).fill("01253 470123")  # as the person says it
    page.get_by_role("button", name="Filter").click()
    assert page.locator("table.board tbody td:first-child").all_inner_texts() == ["Kit Searchable"]
    expect(page.get_by_label("Name or phone", exact=True)).to_have_value("01253 470123")

    page.goto("/board")
    accessible(page, "the board")
    log_request(site, "Mo Arrived", "meals", urgency="urgent")  # while the board is open
    expect(page.locator("#needs-you table.board tbody")).to_contain_text("Mo Arrived", timeout=20_000)
    expect(page.get_by_role("status")).to_contain_text("Updated")

