"""A person's record in a real browser: a coordinator sees that a new request may be for someone already known,
says it is the same person, and finds both requests on the person's page."""

from __future__ import annotations

import re
import secrets
from datetime import date, timedelta

from playwright.sync_api import expect

from tests.e2e.conftest import accessible, api, sign_in

TOMORROW = (date.today() + timedelta(days=1)).isoformat()


def log_for(site, name: str, phone: str, kind: str) -> dict:
    """Log a request for a person through the API; the request as answered."""
    return api(site).call("POST", "/requests", 201, json={
        "person": {"name": name, "phone": phone, "postcode": "FY1 4AB"}, "support_type": kind,
        "when": {"start": f"{TOMORROW}T10:00:00+00:00", "end": f"{TOMORROW}T12:00:00+00:00"},
        "consent": {"share_contact": True, "sms_contact": True}})


def test_a_coordinator_confirms_the_same_person_and_sees_both_requests_on_their_page(page, site):
    phone = f"+447911123{secrets.randbelow(1000):03d}"
    first = log_for(site, "Morwenna Trelawny", phone, "shopping")
    second = log_for(site, "Wenna Trelawny", phone, "prescription_collection")  # the same phone, another name
    assert second["maybe_person_id"] == first["person_id"] != second["person_id"]

    sign_in(page)
    page.goto(f"/board/{second['id']}")
    question = page.get_by_role("region", name="Is this someone already known?")
    expect(question).to_contain_text("This may be the same person as Morwenna Trelawny (the same phone number)")
    accessible(page, "a request that may be someone already known")
    question.get_by_role("button", name="Same person").click()

    expect(page).to_have_url(re.compile(rf"/people/{first['person_id']}$"))
    expect(page.get_by_role("heading", name="Morwenna Trelawny", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Requests (2)")).to_be_visible()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows.filter(has_text="Shopping")).to_have_count(1)
    expect(rows.filter(has_text="Prescription")).to_have_count(1)
    accessible(page, "a person's page")

    page.get_by_role("link", name="Prescription").click()  # and back to the request, which now links here
    expect(page.get_by_role("region", name="Is this someone already known?")).to_have_count(0)
    page.get_by_role("link", name="Everything about Wenna Trelawny").click()
    expect(page).to_have_url(re.compile(rf"/people/{first['person_id']}$"))
