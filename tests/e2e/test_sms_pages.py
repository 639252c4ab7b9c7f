"""The SMS pages in a real browser: a coordinator accepts an offer as the volunteer from the SMS simulator, and
reads the conversation both ways; other roles are refused. The simulator exists only without Twilio."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from services.notify.domain import InboundMessage, OutgoingMessage
from tests.helpers import wait_for
from shared.clock import utcnow
from shared.web import claims_for
from shared.demo import text_in
from tests.e2e.conftest import accessible, api, matches_screenshot, sign_in
from tests.integration.test_bus import SAFEGUARDING

# Urgent requests: their offers go at once, even in the quiet hours these tests may run in.
TOMORROW = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()


def volunteer(site, skill: str, phone: str | None = None) -> str:
    """Register a volunteer with `skill` near Blackpool (each test its own skill, so offers do not cross)."""
    phone = phone or f"+447911124{secrets.randbelow(1000):03d}"
    api(site).call("POST", "/volunteers", 201, json={
        "name": "Robin Simulator", "phone": phone, "skills": [skill], "checks": SAFEGUARDING,
        "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10})
    return phone


def urgent_request(site, kind: str, when: dict) -> dict:
    """Log an urgent request in FY1 through the API."""
    return api(site).call("POST", "/requests", 201, json={
        "person": {"name": "Pat Simulated", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
                   "postcode": "FY1 4AB"},
        "support_type": kind, "urgency": "urgent", "when": when,
        "consent": {"share_contact": True, "sms_contact": True}})


def sent_offer(site, phone: str) -> dict:
    """The offer texted to `phone`, once the development gateway has sent it."""
    client = api(site)
    return wait_for("the SMS offer to be sent", lambda: next(
        (m for m in client.call("GET", "/sms/messages", params={"to": phone})
         if m["purpose"] == "offer" and m["status"] == "sent"), None))


def reload_until(page, locator, text: str) -> None:
    """Reload the page until `locator` shows `text` (a text the system sends arrives without the page asking)."""
    def shown():
        page.reload()
        return text in locator.inner_text()

    wait_for(f"{text!r} to show", shown)


def test_a_coordinator_accepts_an_offer_as_the_volunteer_from_the_simulator(page, site):
    phone = volunteer(site, "practical")
    request = urgent_request(site, "shopping", {"start": f"{TOMORROW}T14:00:00+00:00",
                                                "end": f"{TOMORROW}T16:00:00+00:00"})
    offer = sent_offer(site, phone)
    code = re.search(r"YES (\d{4})", offer["body"]).group(1)

    sign_in(page)
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Messages", exact=True).click()
    nav.get_by_role("link", name="SMS simulator").click()
    card = page.get_by_role("region", name=phone)
    expect(card.locator(".bubble.received")).to_have_text([re.compile(re.escape(offer["body"]))])
    card.get_by_label(f"Reply as {phone}").fill(f"YES {code}")
    card.get_by_role("button", name="Send").click()

    expect(card.get_by_role("status")).to_contain_text(f"“YES {code}” was received")
    expect(card.locator(".bubble.sent")).to_contain_text([f"YES {code}"])
    client = api(site)
    wait_for("the request to be matched",
             lambda: client.call("GET", f"/requests/{request['id']}")["status"] == "matched")
    reload_until(page, card.locator(".thread"), f"Thank you! Task {code} is yours")

    card.get_by_label(f"Reply as {phone}").fill("gibberish")
    card.get_by_label(f"Reply as {phone}").press("Enter")
    expect(card.get_by_role("status")).to_contain_text("Answered at once: Sorry, we did not understand your message.")

    page.get_by_role("link", name="Messages", exact=True).click()
    row = page.locator("table.conversations tr", has_text=phone)
    expect(row).to_contain_text("We: Sorry, we did not understand your message.")  # the answer, kept, is the last
    expect(row).not_to_contain_text("unknown sender")
    row.get_by_role("link", name=phone).click()
    expect(page.get_by_role("heading", name=f"Messages with {phone}")).to_be_visible()
    bubbles = [text.split("\n")[0] for text in page.locator("ol.thread li").all_inner_texts()]
    order = [next(i for i, body in enumerate(bubbles) if body.startswith(start))
             for start in (offer["body"], f"YES {code}", f"Thank you! Task {code} is yours", "gibberish")]
    assert order == sorted(order), bubbles
    theirs, ours = page.locator("ol.thread li.received"), page.locator("ol.thread li.sent")
    expect(theirs.filter(has_text=f"YES {code}")).to_contain_text("They sent · received")
    expect(theirs.filter(has_text=f"YES {code}")).to_contain_text(f"read as YES {code}")
    expect(ours.filter(has_text=offer["body"])).to_contain_text("We sent · offer · sent")
    expect(ours.filter(has_text="Reminder: task").first).to_contain_text("queued · written")
    expect(ours.filter(has_text="Reminder: task").first).to_contain_text("waits until")
    expect(page.locator("ol.thread li").last).to_contain_text("waits until")  # what is still to go comes last


def test_a_text_from_a_number_we_never_texted_is_an_unknown_sender_to_follow_up(page, site):
    stranger = f"+447911125{secrets.randbelow(1000):03d}"
    sign_in(page)
    page.goto("/simulator")
    page.get_by_label("Phone", exact=True).fill("12")
    page.get_by_label("Message", exact=True).fill("hello?")
    page.get_by_role("button", name="Send").last.click()
    expect(page.get_by_role("alert")).to_contain_text("Phone is not")
    expect(page.get_by_label("Message", exact=True)).to_have_value("hello?")

    page.get_by_label("Phone", exact=True).fill(stranger)
    page.get_by_label("Message", exact=True).fill("YES 1234")  # a volunteer's old number, perhaps
    page.get_by_role("button", name="Send").last.click()
    expect(page.get_by_role("status")).to_contain_text("“YES 1234” was received")
    reload_until(page, page.locator("main"), "Sorry, we don't recognise this number.")
    expect(page.get_by_role("region", name=stranger).locator(".bubble")).to_have_text(
        [re.compile("YES 1234"), re.compile("we don't recognise this number")])
    page.goto("/sms/conversations")
    row = page.locator("table.conversations tr", has_text=stranger)
    expect(row).to_contain_text("unknown sender — follow up")
    expect(row).to_have_class(re.compile("unknown"))


def test_the_simulator_card_looks_as_reviewed(page, site, tmp_path):
    phone = volunteer(site, "cooking", "+447911126000")
    urgent_request(site, "meals", {"days": ["mon", "tue", "wed", "thu", "fri"], "part_of_day": "afternoon"})
    sent_offer(site, phone)
    sign_in(page)
    page.goto("/simulator")
    card = page.get_by_role("region", name=phone)
    expect(card.locator(".bubble")).to_have_count(1)
    matches_screenshot(card.screenshot(mask=[card.locator(".meta")], animations="disabled"), "simulator-card",
                       tmp_path)


def test_a_referrer_and_a_manager_cannot_open_the_sms_pages(page, site):
    for role in ("referrer", "manager"):
        page.context.clear_cookies()
        sign_in(page, role)
        for path in ("/simulator", "/sms/conversations", "/sms/conversations/" + quote("+447911124000")):
            response = page.goto(path)
            assert response.status == 403, (role, path)
            expect(page.get_by_role("heading", name="This page is not for your role")).to_be_visible()
            assert "+4479" not in page.content()


def test_without_a_sign_in_the_pages_send_you_to_it(page):
    page.goto("/sms/conversations")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fsms%2Fconversations$"))
    expect(page.get_by_label("Email", exact=True)).to_be_visible()


# --- on both backends, through the app itself -----------------------------------------------------------------------

def signed_in(app, role: str = "coordinator", communities=("fylde-coast",)):
    """A test client with a signed-in session."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["user"] = claims_for(f"{role}@example.org", role, communities)
    return client


def test_the_simulator_does_not_exist_where_twilio_sends(app_for, monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "a-real-auth-token")
    client = signed_in(app_for("notify"))
    assert client.get("/simulator").status_code == 404
    page = client.get("/sms/conversations")
    assert page.status_code == 200 and 'href="/simulator"' not in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # the sign-out form's
    assert client.post("/simulator", data={"phone": "+447911123456", "body": "YES 1234",
                                           "csrf_token": token}).status_code == 404


def test_a_coordinator_sees_only_their_communitys_conversations(app_for):
    app = app_for("notify")
    now = utcnow()
    with app.extensions["ccs"].sessions.begin() as db:
        db.add(OutgoingMessage(key="offer:fylde", purpose="offer", to_phone="+447911000101", body="Fylde offer",
                               status="sent", correlation_id="c", from_phone="+447700900100", community="fylde-coast",
                               sent_at=now))
        db.add(OutgoingMessage(key="offer:cheshire", purpose="offer", to_phone="+447911000202",
                               body="Cheshire offer", status="sent", correlation_id="c", from_phone="+447700900200",
                               community="cheshire-east", sent_at=now))
        db.add(InboundMessage(message_sid="SM" + "a" * 32, from_phone="+447911000303", to_phone="+447700900200",
                              body="Cheshire stranger", received_at=now))
    fylde, cheshire = signed_in(app), signed_in(app, communities=("cheshire-east",))
    assert "Fylde offer" in fylde.get("/sms/conversations").text
    assert "Cheshire" not in fylde.get("/sms/conversations").text
    assert fylde.get("/sms/conversations/%2B447911000202").status_code == 404
    assert "Cheshire offer" not in fylde.get("/sms/conversations/%2B447911000202").text
    listed = cheshire.get("/sms/conversations").text
    assert "Cheshire offer" in listed and "Cheshire stranger" in listed and "Fylde" not in listed
    assert "unknown sender" in cheshire.get("/sms/conversations/%2B447911000303").text
    assert "+447911000101" not in cheshire.get("/simulator").text


@pytest.mark.parametrize("path", ["/simulator", "/sms/conversations"])
def test_pages_refuse_a_bearer_token_without_a_sign_in(app_for, token, path):
    response = app_for("notify").test_client().get(path, headers=token("coordinator"))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_a_free_text_reply_waits_in_the_inbox_until_a_coordinator_deals_with_it(page, site):
    """"Sorry, I'm away that week" and a text from a number nobody knows reach the coordinator's inbox, saying why
    each is there; marked as dealt with, each leaves it (and stays in its conversation)."""
    phone = volunteer(site, "cooking")
    stranger = f"+447911126{secrets.randbelow(1000):03d}"
    text_in(site.url, phone, "Sorry, I'm away that week", var_dir=site.var_dir)
    text_in(site.url, stranger, "Hello, is this the hospice?", var_dir=site.var_dir)
    sign_in(page)

    def both_waiting():
        page.goto("/sms/conversations")
        inbox = page.get_by_role("region", name=re.compile("Needs you"))
        return "away that week" in inbox.inner_text() and "none of your volunteers has" in inbox.inner_text()

    wait_for("both texts in the inbox", both_waiting)
    inbox = page.get_by_role("region", name=re.compile("Needs you"))
    away = inbox.get_by_role("listitem").filter(has_text="away that week")
    expect(away).to_contain_text("never offered them anything")  # a volunteer, but nothing offered yet
    accessible(page, "the messages page with its inbox")
    away.get_by_role("button", name="Mark as dealt with").click()
    expect(inbox.get_by_role("listitem").filter(has_text="away that week")).to_have_count(0)
    expect(inbox.get_by_role("listitem").filter(has_text="hospice")).to_have_count(1)
    page.goto(f"/sms/conversations/{quote(phone)}")
    expect(page.locator("main")).to_contain_text("Sorry, I'm away that week")

