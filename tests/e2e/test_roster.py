"""The volunteer pages in a real browser: import a spreadsheet (and see its mistakes by line), the roster with the
checks running out, and a volunteer's page with the task they took."""

from __future__ import annotations

import re
from datetime import date, timedelta

from playwright.sync_api import expect

from shared.demo import text_in
from tests.helpers import wait_for
from tests.e2e.conftest import api, matches_screenshot, sign_in
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
