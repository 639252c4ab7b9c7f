"""The coordinator's board in a real browser, at a desk's width and a phone's: what needs them comes first with why,
and when a volunteer says YES in the SMS simulator the open board moves the request on by itself and names the
volunteer with their phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import accessible, api, sign_in
from tests.e2e.test_sms_pages import TOMORROW, sent_offer, urgent_request, volunteer
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def requests(site) -> dict:
    """A request nobody here can take (nobody plans futures), and an urgent one offered to Robin."""
    client = api(site)
    stranded = client.call("POST", "/requests", 201, json={
        "person": {"name": "Ula Stranded", "phone": "01253 477002", "postcode": "FY1 4AB"},
        "support_type": "planning_session", "when": {"days": ["tue"], "part_of_day": "morning"},
        "consent": {"share_contact": True, "sms_contact": True}})
    phone = volunteer(site, "practical")
    offered = urgent_request(site, "shopping", {"start": f"{TOMORROW}T14:00:00+00:00",
                                                "end": f"{TOMORROW}T16:00:00+00:00"})
    code = re.search(r"YES (\d{4})", sent_offer(site, phone)["body"]).group(1)
    wait_for("the stranded request to be unmatched",
             lambda: client.call("GET", f"/requests/{stranded['id']}")["status"] == "unmatched")
    return {"stranded": stranded["id"], "offered": offered["id"], "phone": phone, "code": code}


def above(upper, lower) -> bool:
    return upper.bounding_box()["y"] < lower.bounding_box()["y"]


def test_the_board_updates_itself_when_a_volunteer_accepts_in_the_simulator_and_names_them(browser, site, requests):
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900}, locale="en-GB",
                                  timezone_id="Europe/London")
    board = context.new_page()
    board.set_default_timeout(15_000)
    try:
        sign_in(board)
        needs_you = board.get_by_role("region", name=re.compile("^Needs you"))
        the_rest = board.get_by_role("region", name=re.compile("^Everything else"))
        stranded = needs_you.get_by_role("row", name=re.compile("Ula Stranded"))
        expect(stranded).to_contain_text("Nobody found")
        expect(stranded.get_by_role("link", name="Find a volunteer")).to_have_attribute(
            "href", f"/board/{requests['stranded']}#offers")
        pat = needs_you.get_by_role("row", name=re.compile("Pat Simulated"))
        expect(pat).to_contain_text("Urgent, and no volunteer has it yet.")
        assert above(needs_you, the_rest)
        accessible(board, "the board at 1280 px")

        simulator = context.new_page()  # the same coordinator, in another tab
        simulator.goto("/simulator")
        card = simulator.get_by_role("region", name=requests["phone"])
        card.get_by_label(f"Reply as {requests['phone']}").fill(f"YES {requests['code']}")
        card.get_by_role("button", name="Send").click()
        expect(card.get_by_role("status")).to_contain_text("was received")

        # The open board, untouched, moves Pat out of "Needs you" and names who has it, with their phone.
        row = the_rest.get_by_role("row", name=re.compile("Pat Simulated"))
        expect(row.locator("td.volunteer")).to_contain_text("Robin Simulator", timeout=30_000)
        expect(row.get_by_role("link", name=requests["phone"])).to_have_attribute("href", f"tel:{requests['phone']}")
        expect(needs_you.get_by_role("row", name=re.compile("Pat Simulated"))).to_have_count(0)
        expect(board.get_by_role("status")).to_contain_text("Updated")
        accessible(board, "the board after it updated itself")
    finally:
        context.close()


def test_at_a_phones_width_each_card_keeps_its_labels_and_the_needs_you_group_comes_first(browser, site, requests):
    client = api(site)
    wait_for("the offered request to be matched",
             lambda: client.call("GET", f"/requests/{requests['offered']}")["status"] == "matched")
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, is_mobile=True,
                                  locale="en-GB", timezone_id="Europe/London")
    phone = context.new_page()
    phone.set_default_timeout(15_000)
    try:
        sign_in(phone)
        needs_you = phone.get_by_role("region", name=re.compile("^Needs you"))
        the_rest = phone.get_by_role("region", name=re.compile("^Everything else"))
        expect(needs_you.get_by_role("row", name=re.compile("Ula Stranded"))).to_contain_text("Nobody found")
        assert above(needs_you, the_rest)
        cell = the_rest.get_by_role("row", name=re.compile("Pat Simulated")).locator("td.volunteer")
        expect(cell).to_contain_text("Robin Simulator")
        assert cell.evaluate("cell => getComputedStyle(cell, '::before').content") == '"Volunteer: "'
        reason = needs_you.locator("td", has_text="Nobody found")
        assert "Needs you because" in reason.evaluate("cell => getComputedStyle(cell, '::before').content")
        accessible(phone, "the board at 390 px")
    finally:
        context.close()


def test_without_script_the_board_still_puts_what_needs_you_first_and_links_to_who_has_each_task(browser, site,
                                                                                                  requests):
    client = api(site)
    wait_for("the offered request to be matched",
             lambda: client.call("GET", f"/requests/{requests['offered']}")["status"] == "matched")
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, java_script_enabled=False,
                                  locale="en-GB", timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        sign_in(tab)
        needs_you = tab.get_by_role("region", name=re.compile("^Needs you"))
        the_rest = tab.get_by_role("region", name=re.compile("^Everything else"))
        expect(needs_you.get_by_role("row", name=re.compile("Ula Stranded"))).to_contain_text("Nobody found")
        assert above(needs_you, the_rest)
        the_rest.get_by_role("row", name=re.compile("Pat Simulated")).get_by_role("link", name="See who has it").click()
        expect(tab.locator(".accepted")).to_contain_text("Accepted by Robin Simulator")
    finally:
        context.close()
