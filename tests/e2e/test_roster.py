"""The volunteer pages in a real browser: import a spreadsheet (and see its mistakes by line), the roster with the
checks running out, and a volunteer's page with the task they took."""

from __future__ import annotations

import csv
import re
from datetime import date, timedelta

from playwright.sync_api import expect

from shared.demo import text_in
from tests.helpers import wait_for
from tests.e2e.conftest import accessible, api, matches_screenshot, sign_in
from tests.integration.test_bus import SHOPPING
from tests.integration.test_import import HEADER

SOON = (date.today() + timedelta(days=10)).isoformat()
LATER = (date.today() + timedelta(days=2500)).isoformat()  # after the request below
ANA = f"Ana Roster,07911125450,FY1 4AB,10,practical,en,,3,2026-01-05,{SOON},,"
BEN = f"Ben Roster,07911125451,FY4,8,practical; driving,en; fr,mon afternoon,2,2026-02-01,{LATER},2026-02-01,{LATER}"


def upload(page, tmp_path, name: str, *rows: str, skip: bool = False) -> None:
    sheet = tmp_path / name
    sheet.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    page.goto("/roster/import")
    page.get_by_label("Spreadsheet (CSV)").set_input_files(str(sheet))
    if skip:
        page.get_by_label("Import the good rows and skip the bad ones").check()
    page.get_by_role("button", name="Import").click()


def test_a_coordinator_imports_a_spreadsheet_sees_the_roster_and_a_volunteers_task(page, site, tmp_path):
    sign_in(page)
    upload(page, tmp_path, "bad.csv", ANA, "Dee Roster,12,FY1,10,practical,en,,2,2026-01-05,2029-01-05,,")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Nothing was imported: 1 of 2 rows have problems.")
    problem = page.locator("table.problems tbody tr")
    expect(problem).to_have_count(1)
    expect(problem.first).to_contain_text("3")
    expect(problem.first).to_contain_text("phone")
    page.goto("/roster")
    expect(page.locator("table.roster tbody")).to_contain_text("No volunteers yet")

    upload(page, tmp_path, "good.csv", ANA, BEN)
    expect(page.get_by_role("status")).to_contain_text("Imported 2 volunteers.")
    page.get_by_role("link", name="See the volunteers").click()
    expect(page.get_by_role("heading", name="Volunteers", exact=True)).to_be_visible()
    attention = page.get_by_role("region", name=re.compile("Checks that have run out"))
    expect(attention).to_contain_text("Ana Roster: Safeguarding training expires")
    expect(attention).not_to_contain_text("Ben Roster")
    expect(page.locator("table.roster tbody tr")).to_have_count(2)
    matches_screenshot(page.locator("main").screenshot(animations="disabled", mask=[attention.locator(
        ".check-expiring")]), "roster", tmp_path)

    # Ben takes a task by SMS; his page shows it
    client = api(site)
    client.call("POST", "/requests", 201, json=SHOPPING)  # in FY1 on 7 January 2030, a Monday afternoon
    offer = wait_for("an offer to Ben", lambda: next(
        (m for m in client.call("GET", "/sms/messages", params={"to": "07911125451"}) if m["purpose"] == "offer"),
        None))
    code = re.search(r"YES (\d{4})", offer["body"]).group(1)
    text_in(site.url, "+447911125451", f"YES {code}", var_dir=site.var_dir)
    page.get_by_role("link", name="Ben Roster").click()
    expect(page.get_by_role("heading", name="Ben Roster")).to_be_visible()

    def task_shown():
        page.reload()
        return code in page.locator("table.tasks").inner_text()

    wait_for("Ben's task on his page", task_shown)
    expect(page.locator("table.tasks tbody tr").first).to_contain_text("Shopping")
    expect(page.locator("table.checks")).to_contain_text("Criminal record check")


def test_the_roster_is_for_coordinators_only(page):
    sign_in(page, "manager")
    page.goto("/roster")
    expect(page.get_by_role("heading", name="This page is not for your role")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("Roster")


def test_a_coordinator_adds_changes_pauses_and_retires_a_volunteer_by_the_forms(page, site):
    """Every step of keeping a volunteer's record, in the browser: mistakes shown all at once beside their fields
    (and nothing stored), then added, changed, paused and resumed, a check renewed, and recorded as left after a
    confirmation; each page checked by axe-core and for sideways scrolling."""
    client = api(site)
    sign_in(page)
    page.goto("/roster")
    page.get_by_role("link", name="Add a volunteer").click()
    accessible(page, "the empty volunteer form")
    page.get_by_label("Name", exact=False).first.fill("Gwen Form")
    page.get_by_label(re.compile("^Mobile phone")).fill("12")
    page.get_by_label(re.compile("^Postcode")).fill("ZZ99 9ZZ")
    page.get_by_role("button", name="Add volunteer").click()

    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("There are 3 problems")
    for field in ("Mobile phone", "Postcode", "What they can help with"):
        expect(summary.get_by_role("link", name=field)).to_be_visible()
    expect(summary).not_to_contain_text("Missing data")
    phone = page.get_by_label(re.compile("^Mobile phone"))
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#" + phone.get_attribute("aria-describedby").split()[-1])).to_be_visible()
    expect(page.get_by_label("Name", exact=False).first).to_have_value("Gwen Form")  # what was typed is kept
    accessible(page, "the volunteer form with its mistakes")
    summary.get_by_role("link", name="Mobile phone").click()
    expect(phone).to_be_focused()
    assert not [v for v in client.call("GET", "/volunteers", params={"page_size": 100}) if v["name"] == "Gwen Form"]

    phone.fill("07911 125470")
    page.get_by_label(re.compile("^Postcode")).fill("FY2 0AA")
    page.get_by_role("group", name=re.compile("What they can help with")).get_by_label(
        re.compile("Practical:")).check()
    page.get_by_label("Mon afternoon").check()
    page.get_by_label("Safeguarding training: done on").fill("2026-01-05")
    page.get_by_label("Safeguarding training: expires on").fill("2029-01-05")
    page.get_by_role("button", name="Add volunteer").click()

    expect(page.get_by_role("heading", name="Gwen Form")).to_be_visible()
    accessible(page, "a volunteer's page")
    [gwen] = [v for v in client.call("GET", "/volunteers", params={"page_size": 100}) if v["name"] == "Gwen Form"]
    assert (gwen["phone"], gwen["area"], gwen["skills"], gwen["status"]) == ("+447911125470", "FY2", ["practical"],
                                                                             "active")
    assert gwen["availability"] == [{"days": ["mon"], "part_of_day": "afternoon"}]
    assert [(c["check"], c["expires_on"]) for c in gwen["checks"]] == [("safeguarding", "2029-01-05")]

    page.get_by_role("link", name="Change details").click()
    expect(page.get_by_label(re.compile("^Mobile phone"))).to_have_value("+447911125470")
    page.get_by_label(re.compile("^Travels up to")).fill("4")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("dl.profile")).to_contain_text("travels up to 4 km")

    page.get_by_role("button", name="Pause offers").click()
    expect(page.locator("#status")).to_contain_text("paused")
    assert client.call("GET", f"/volunteers/{gwen['id']}")["status"] == "paused"
    page.get_by_role("button", name="Resume offers").click()
    expect(page.locator("#status")).to_contain_text("active")

    checks = page.get_by_role("form").filter(has=page.get_by_role("heading", name="Record or renew a check"))
    checks.get_by_label(re.compile("^Check")).select_option("safeguarding")
    checks.get_by_label(re.compile("^Done on")).fill("2026-06-01")
    checks.get_by_label(re.compile("^Expires on")).fill("2026-05-01")  # before it was done
    checks.get_by_role("button", name="Record check").click()
    expect(page.get_by_role("alert")).to_contain_text("Expires on")
    assert client.call("GET", f"/volunteers/{gwen['id']}")["checks"][0]["expires_on"] == "2029-01-05"
    checks.get_by_label(re.compile("^Expires on")).fill("2029-06-01")
    checks.get_by_role("button", name="Record check").click()
    expect(page.locator("table.checks")).to_contain_text("01 Jun 2029")

    page.get_by_role("link", name="Record that they left").click()
    accessible(page, "the confirmation that a volunteer left")
    page.get_by_role("link", name="No, go back").click()
    assert client.call("GET", f"/volunteers/{gwen['id']}")["status"] == "active"
    page.get_by_role("link", name="Record that they left").click()
    page.get_by_role("button", name="Yes, they have left").click()
    expect(page.locator("#status")).to_contain_text("left")
    assert client.call("GET", f"/volunteers/{gwen['id']}")["status"] == "left"


def test_the_template_spreadsheet_downloads_and_imports_as_it_is(page, tmp_path):
    """The template a coordinator downloads has every column the import reads, and its example row imports."""
    sign_in(page)
    page.goto("/roster/import")
    accessible(page, "the import page")
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download a template spreadsheet").click()
    saved = tmp_path / downloading.value.suggested_filename
    downloading.value.save_as(saved)
    assert saved.name == "volunteers-template.csv"
    with saved.open(encoding="utf-8", newline="") as sheet:
        rows = list(csv.DictReader(sheet))
    assert [row["name"] for row in rows] == ["Jo Example"]
    page.get_by_label("Spreadsheet (CSV)").set_input_files(str(saved))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_contain_text("Imported 1 volunteer.")

