"""A coordinator's whole day in a real browser, as they do it (clicks, typing, what is on screen), on a desk and on
a phone: sign in; add a volunteer by the form and another by spreadsheet; log three requests by the form, one after
correcting its mistakes; one offered, accepted from the SMS simulator (how a volunteer's phone acts here) and the
volunteer named on its page; one unmatched, then rescued by assigning from the candidates; one changed, then
cancelled after a confirmation; a free-text reply answered at once, then cleared from the inbox. axe-core is clean,
and nothing scrolls sideways, on every page visited.

With CCS_SCREENSHOTS=<folder> set, a full-page picture of each page visited is saved there, named by step and width
(01-login-1280.png): docs/screenshots/ keeps the reviewed ones (see its README)."""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import accessible, running_site, sign_in
from tests.helpers import wait_for
from tests.integration.test_import import HEADER

TOMORROW = (date.today() + timedelta(days=1)).isoformat()
ROBIN = "+447911125470"  # added by the form
IVO = "Ivo Day,07911 125480,FY2 0AA,10,respite,en,,2,2026-01-05,2030-01-05,2026-01-05,2030-01-05"  # by spreadsheet


class Day:
    """One browser tab through the day: each page it shows is checked (axe-core, no sideways scrolling) and, when
    asked for, pictured."""

    def __init__(self, tab, width: int, folder: str | None):
        self.tab, self.width, self.step = tab, width, 0
        self.folder = Path(folder) if folder else None

    def seen(self, name: str) -> None:
        """The page as it is now: accessible and fitting the window; saved as `<step>-<name>-<width>.png`."""
        self.step += 1
        accessible(self.tab, f"step {self.step} ({name}) at {self.width} px")
        unlabelled = self.tab.locator("table.board tbody td:not([data-label]):not([colspan])").evaluate_all(
            "cells => cells.filter(c => c.innerText.trim() && !c.querySelector('button, .flag'))"
            ".map(c => c.innerText.trim().slice(0, 40))")
        assert not unlabelled, f"step {self.step} ({name}): cells that lose their column's name when stacked: " \
                               f"{unlabelled}"
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.step:02d}-{name}-{self.width}.png"
            self.tab.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
            picture = Image.open(path).convert("RGB")  # a palette of 256 colours: a few tens of KB, not hundreds
            picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)

    def reload_until(self, what: str, shown) -> None:
        """Reload until `shown()` (what the other services do arrives without the page asking)."""
        def now_shown():
            self.tab.reload()  # and, on a request's page, its volunteers' section from matching
            expect(self.tab.locator("[data-include][aria-busy]")).to_have_count(0)
            return shown()

        wait_for(what, now_shown, timeout=30)

    def request_page(self, name: str):
        """Open a request's page from the board, by the person's name, and wait for its volunteers' section."""
        self.tab.get_by_role("navigation", name="Main").get_by_role("link", name="Requests").click()
        self.tab.get_by_role("link", name=name, exact=True).first.click()
        expect(self.tab.locator("section.offers")).to_be_visible()


@pytest.fixture
def day(browser, tmp_path, request):
    """A system of its own (nothing from another width's day), and a tab at the width asked for."""
    width = request.param
    with running_site(tmp_path / "site") as site:
        context = browser.new_context(base_url=site.url, viewport={"width": width, "height": 844 if width < 600
                                                                  else 800}, locale="en-GB",
                                      timezone_id="Europe/London", device_scale_factor=1)
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        try:
            yield Day(tab, width, os.environ.get("CCS_SCREENSHOTS"))
        finally:
            context.close()


def fill_request(tab, name: str, kind: str, *, phone: str, postcode: str, start: str, end: str,
                 urgency: str = "routine") -> None:
    """Type a request into the open request form."""
    tab.get_by_label("Name", exact=True).fill(name)
    tab.get_by_label("Phone", exact=True).fill(phone)
    tab.get_by_label("Postcode", exact=True).fill(postcode)
    tab.get_by_label("Kind of help", exact=True).select_option(label=kind)
    tab.get_by_label("Urgency", exact=True).select_option(urgency)
    tab.get_by_label("From", exact=True).fill(f"{TOMORROW}T{start}")
    tab.get_by_label("Until", exact=True).fill(f"{TOMORROW}T{end}")


def consent_and_log(tab) -> None:
    """Tick both consents and log the request."""
    tab.get_by_label("Agrees their contact details go to the volunteer who accepts", exact=True).check()
    tab.get_by_label("Agrees to be contacted by SMS", exact=True).check()
    tab.get_by_role("button", name="Log request").click()


@pytest.mark.parametrize("day", [1280, 390], indirect=True, ids=["desk-1280", "phone-390"])
def test_a_coordinators_whole_day_in_the_browser(day, tmp_path):
    tab = day.tab
    nav = tab.get_by_role("navigation", name="Main")

    # Morning: sign in to an empty board
    tab.goto("/login")
    day.seen("login")
    sign_in(tab)
    expect(tab.get_by_role("heading", name="Requests")).to_be_visible()
    day.seen("board-empty")

    # A new volunteer, by the form
    nav.get_by_role("link", name="Volunteers").click()
    tab.get_by_role("link", name="Add a volunteer").click()
    tab.get_by_label("Name", exact=True).fill("Robin Day")
    tab.get_by_label(re.compile("^Mobile phone")).fill("07911 125470")
    tab.get_by_label(re.compile("^Postcode")).fill("FY1 4AB")
    tab.get_by_label(re.compile("^Travels up to")).fill("10")
    tab.get_by_role("group", name=re.compile("What they can help with")).get_by_label(re.compile("Practical:")).check()
    tab.get_by_label("Safeguarding training: done on").fill("2026-01-05")
    tab.get_by_label("Safeguarding training: expires on").fill("2030-01-05")
    day.seen("volunteer-form")
    tab.get_by_role("button", name="Add volunteer").click()
    expect(tab.get_by_role("heading", name="Robin Day")).to_be_visible()
    expect(tab.locator("#status")).to_contain_text("active")
    expect(tab.locator("dl.profile")).to_contain_text("English")  # languages in words, not codes
    day.seen("volunteer")

    # The first request, typed with mistakes, corrected, and logged
    nav.get_by_role("link", name="Requests").click()
    tab.get_by_role("link", name="New request").first.click()
    day.seen("request-form")
    fill_request(tab, "Alex Day", "Shopping", phone="12", postcode="ZZ99", start="16:00", end="14:00",
                 urgency="urgent")
    consent_and_log(tab)
    summary = tab.get_by_role("alert")
    for field in ("Phone", "Postcode", "Until"):
        expect(summary.get_by_role("link", name=field)).to_be_visible()
    expect(tab.get_by_label("Name", exact=True)).to_have_value("Alex Day")  # what was typed is kept
    expect(tab.get_by_label("Postcode", exact=True)).to_have_attribute("aria-invalid", "true")
    day.seen("request-form-mistakes")
    summary.get_by_role("link", name="Phone").click()
    expect(tab.get_by_label("Phone", exact=True)).to_be_focused()
    tab.keyboard.press("ControlOrMeta+a")
    tab.keyboard.type("01253 477001")
    tab.get_by_label("Postcode", exact=True).fill("FY1 4AB")
    tab.get_by_label("From", exact=True).fill(f"{TOMORROW}T14:00")
    tab.get_by_label("Until", exact=True).fill(f"{TOMORROW}T16:00")
    tab.get_by_role("button", name="Log request").click()
    expect(tab.get_by_role("heading", name="Shopping for Alex Day")).to_be_visible()
    expect(tab.locator(".urgency")).to_have_text("urgent")
    day.reload_until("Robin to be asked", lambda: "Robin Day" in tab.locator("section.offers").inner_text())
    day.seen("request-offered")

    # Robin answers YES on their phone: the SMS simulator is that phone here
    nav.get_by_role("link", name="Messages", exact=True).click()
    tab.get_by_role("link", name="SMS simulator").click()
    card = tab.get_by_role("region", name=ROBIN)
    day.reload_until("the offer to reach Robin's phone", lambda: card.locator(".bubble.received").count() > 0)
    offer = card.locator(".bubble.received").first.inner_text()
    assert "Alex" not in offer and "Promenade" not in offer  # no name or address in an SMS
    code = re.search(r"YES (\d{4})", offer).group(1)
    card.get_by_label(f"Reply as {ROBIN}").fill(f"YES {code}")
    card.get_by_role("button", name="Send").click()
    expect(card.get_by_role("status")).to_contain_text(f"“YES {code}” was received")
    day.seen("simulator")

    day.request_page("Alex Day")
    day.reload_until("the request to show Robin accepted", lambda: tab.locator(".accepted").count() > 0)
    accepted = tab.locator(".accepted")
    expect(accepted).to_contain_text("Accepted by Robin Day")  # named, with the phone to reach them on
    expect(accepted.get_by_role("link", name=ROBIN)).to_have_attribute("href", f"tel:{ROBIN}")
    day.reload_until("the timeline to say matched", lambda: tab.locator("#status").inner_text() == "matched")
    expect(tab.locator("dl.facts")).to_contain_text("FY1 4AB")
    expect(tab.locator("dl.facts")).to_contain_text("English")
    day.seen("request-matched")

    # The second request: nobody on the roster can give respite, so it is unmatched
    nav.get_by_role("link", name="Requests").click()
    tab.get_by_role("link", name="New request").first.click()
    fill_request(tab, "Bea Day", "Carer respite", phone="01253 477002", postcode="FY2 0AA", start="10:00",
                 end="13:00")
    consent_and_log(tab)
    expect(tab.get_by_role("heading", name="Carer respite for Bea Day")).to_be_visible()
    day.reload_until("the request to be unmatched", lambda: tab.locator(".unmatched").count() > 0)
    expect(tab.locator(".unmatched")).to_contain_text("Nobody found yet")
    day.seen("request-unmatched")

    # A volunteer who gives respite joins, by spreadsheet
    nav.get_by_role("link", name="Volunteers").click()
    tab.get_by_role("link", name=re.compile("Import")).first.click()
    sheet = tmp_path / "new-volunteers.csv"
    sheet.write_text(f"{HEADER}\n{IVO}\n", encoding="utf-8")
    tab.get_by_label("Spreadsheet (CSV)").set_input_files(str(sheet))
    tab.get_by_role("button", name="Import").click()
    expect(tab.get_by_role("status")).to_contain_text("Imported 1 volunteer.")
    day.seen("import")
    tab.get_by_role("link", name="See the volunteers").click()
    expect(tab.get_by_role("link", name="Ivo Day")).to_be_visible()
    expect(tab.get_by_role("link", name="Robin Day")).to_be_visible()
    day.seen("roster")

    # ... and is assigned to Bea's request from the candidates on its page
    day.request_page("Bea Day")
    candidates = tab.locator("table.candidates")
    expect(candidates).to_contain_text("Ivo Day")
    day.seen("request-candidates")
    candidates.get_by_role("button", name="Assign Ivo Day").click()
    expect(tab.locator(".accepted")).to_contain_text("Accepted by Ivo Day")
    day.reload_until("the request to be matched", lambda: tab.locator("#status").inner_text() == "matched")
    expect(tab.locator(".timeline li").filter(has_text="assigned")).to_contain_text("A coordinator assigned")
    day.seen("request-assigned")

    # The third request: logged, changed, then cancelled once the coordinator has confirmed it and said why
    nav.get_by_role("link", name="Requests").click()
    tab.get_by_role("link", name="New request").first.click()
    fill_request(tab, "Cal Day", "Meals", phone="01253 477003", postcode="FY3 9AA", start="12:00", end="13:00")
    consent_and_log(tab)
    expect(tab.get_by_role("heading", name="Meals for Cal Day")).to_be_visible()
    tab.get_by_role("link", name="Change the request").click()
    expect(tab.get_by_label("Name", exact=True)).to_have_value("Cal Day")
    tab.get_by_label("Urgency", exact=True).select_option("soon")
    tab.get_by_label("Phone", exact=True).fill("01253 477033")
    day.seen("request-change")
    tab.get_by_role("button", name="Save changes").click()
    expect(tab.locator(".urgency")).to_have_text("soon")
    edited = tab.locator(".timeline li").filter(has_text="edited")
    expect(edited).to_have_count(1)  # the consents, given again unchanged, are not a change
    expect(edited).to_contain_text("phone number, urgency")
    tab.get_by_text("Cancel this request…").click()
    cancel = tab.get_by_role("button", name="Yes, cancel the request")
    expect(cancel).to_be_visible()
    day.seen("request-cancel-confirm")
    cancel.click()  # no reason yet: the browser asks for one, nothing is cancelled
    expect(tab.locator("#status")).not_to_have_text("cancelled")
    tab.get_by_label(re.compile("^Why is it cancelled")).fill("Family are helping")
    cancel.click()
    expect(tab.locator("#status")).to_have_text("cancelled")
    expect(tab.get_by_role("link", name="Change the request")).to_have_count(0)
    day.seen("request-cancelled")

    # Robin texts words, not a keyword: answered at once (kept in the thread), and waiting in the inbox
    nav.get_by_role("link", name="Messages", exact=True).click()
    tab.get_by_role("link", name="SMS simulator").click()
    card = tab.get_by_role("region", name=ROBIN)
    card.get_by_label(f"Reply as {ROBIN}").fill("Sorry, I'm away next week")
    card.get_by_role("button", name="Send").click()
    expect(card.get_by_role("status")).to_contain_text("Answered at once: Sorry, we did not understand")
    expect(card.locator(".bubble.received").last).to_contain_text("Sorry, we did not understand your message")
    nav.get_by_role("link", name="Messages", exact=True).click()
    inbox = tab.get_by_role("region", name=re.compile("Needs you"))
    away = inbox.get_by_role("listitem").filter(has_text="away next week")
    day.reload_until("the reply in the inbox", lambda: away.count() == 1)
    day.seen("messages-inbox")
    away.get_by_role("link", name=ROBIN).click()
    expect(tab.get_by_role("heading", name=f"Messages with {ROBIN}")).to_be_visible()
    thread = tab.locator("ol.thread li")
    expect(thread.filter(has_text="away next week")).to_have_count(1)
    bubbles = thread.all_inner_texts()  # the answer, kept as sent, straight after what it answers
    away_at = next(n for n, text in enumerate(bubbles) if "away next week" in text)
    assert "Sorry, we did not understand your message" in bubbles[away_at + 1], bubbles
    day.seen("conversation")
    tab.go_back()
    inbox.get_by_role("listitem").filter(has_text="away next week").get_by_role(
        "button", name="Mark as dealt with").click()
    expect(inbox.get_by_role("listitem").filter(has_text="away next week")).to_have_count(0)
    expect(inbox).to_contain_text("Nothing waiting")
    day.seen("messages-cleared")

    # Evening: the board has the day's three requests, each a link to its page
    nav.get_by_role("link", name="Requests").click()
    for name in ("Alex Day", "Bea Day", "Cal Day"):
        expect(tab.get_by_role("link", name=name, exact=True).first).to_be_visible()
    day.seen("board-evening")
