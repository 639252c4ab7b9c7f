"""A volunteer's concern by SMS, with every process real and a coordinator at the board in a browser, on both
backends (issue 15's Done-when): within two seconds of the text the open board, untouched, flags the request at the
top of "Needs you"; the coordinator opens the concern, records what they did and closes it."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from shared.demo import text_in
from tests.e2e.conftest import accessible, api, running_site, sign_in
from tests.e2e.test_sms_pages import TOMORROW, sent_offer, urgent_request, volunteer
from tests.helpers import wait_for

WORDS = "She seemed confused and had not eaten today."


@pytest.fixture
def site(backend, tmp_path):
    """The whole system as real processes on the test's backend, with a user of each role."""
    with running_site(tmp_path / "site") as system:
        yield system


def test_a_volunteer_texts_a_concern_and_the_coordinator_sees_it_flagged_within_two_seconds_and_closes_it(
        browser, site):
    client = api(site)
    phone = volunteer(site, "practical")
    request = urgent_request(site, "shopping", {"start": f"{TOMORROW}T14:00:00+00:00",
                                                "end": f"{TOMORROW}T16:00:00+00:00"})
    code = re.search(r"YES (\d{4})", sent_offer(site, phone)["body"]).group(1)
    text_in(site.url, phone, f"YES {code}", var_dir=site.var_dir)
    wait_for("the request to be matched", lambda: client.call("GET", f"/requests/{request['id']}")["status"]
             == "matched")

    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900}, locale="en-GB",
                                  timezone_id="Europe/London")
    board = context.new_page()
    board.set_default_timeout(15_000)
    try:
        sign_in(board)
        needs_you = board.get_by_role("region", name=re.compile("^Needs you"))
        the_rest = board.get_by_role("region", name=re.compile("^Everything else"))
        expect(the_rest.get_by_role("row", name=re.compile("Pat Simulated"))).to_have_count(1)
        expect(needs_you.get_by_role("row", name=re.compile("Pat Simulated"))).to_have_count(0)

        texted = time.monotonic()
        answer = text_in(site.url, phone, f"CONCERN {code} {WORDS}", var_dir=site.var_dir)
        assert "<Message>" not in answer.text  # the receipt goes as an SMS of its own, not a reply by return
        flagged = needs_you.get_by_role("row", name=re.compile("Pat Simulated"))
        expect(flagged).to_contain_text("Urgent: A volunteer raised a concern", timeout=2_000)
        assert time.monotonic() - texted < 2.0
        expect(needs_you.locator("tbody tr").first).to_contain_text("Pat Simulated")  # at the top
        receipt = wait_for("the receipt to be sent", lambda: next(
            (m for m in client.call("GET", "/sms/messages", params={"to": phone})
             if m["body"].startswith(f"Thank you: your concern about task {code}")), None))
        assert receipt["body"].endswith("If someone is in danger now, call 999.")
        accessible(board, "the board with a concern")

        flagged.get_by_role("link", name="A volunteer raised a concern").click()
        expect(board.get_by_role("heading", name="Concerns")).to_be_visible()
        concern = board.get_by_role("row", name=re.compile("Pat Simulated"))
        expect(concern).to_contain_text("Open")
        expect(concern).to_contain_text(WORDS)
        concern.get_by_role("link").first.click()
        expect(board.locator("#concern-text")).to_have_text(WORDS)

        board.get_by_role("button", name="Record it").click()  # nothing chosen: the error is beside its field
        expect(board.locator("#action-error")).to_be_visible()
        accessible(board, "a concern's form with a mistake")
        board.get_by_label("What was done").select_option(label="Referred to their GP")
        board.get_by_label("Note").fill("Spoke to her daughter; GP to visit tomorrow.")
        board.get_by_label("Close the concern").check()
        board.get_by_role("button", name="Record it").click()
        expect(board.locator("#concern-actions")).to_contain_text("Referred to their GP")
        expect(board.locator("#concern-actions")).to_contain_text("closed it")
        expect(board.get_by_role("button", name="Record it")).to_have_count(0)
        accessible(board, "a closed concern")

        board.goto("/board")
        expect(needs_you.get_by_role("row", name=re.compile("Pat Simulated"))).to_have_count(0)
        board.goto(f"/board/{request['id']}")
        expect(board.locator("#concerns")).to_contain_text("closed")
        manager = api(site, "manager")
        counts = wait_for("metrics to count the concern raised and closed", lambda: (m := manager.call(
            "GET", "/activity", params={"period": "day"})["periods"][-1]["measures"])["concerns_closed"] != 0 and m)
        assert counts["concerns_raised"] == counts["concerns_closed"] == "<5"  # one each, suppressed
    finally:
        context.close()
