"""A small scenario driven through the real services (requests, SMS offers and replies, a cancellation, a group
activity), keeping its own record; the manager's dashboard and CSV must show exactly what that record says."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
from playwright.sync_api import expect

from services.metrics.counts import MEASURES
from shared.demo import text_in, wait_for
from tests.e2e.conftest import api, matches_screenshot, sign_in
from tests.integration.test_bus import SAFEGUARDING, SHOPPING

LABELS = {m.key: m.label for m in MEASURES}
VOLUNTEERS = {"Vera Metrics": "+447911126001", "Walt Metrics": "+447911126002"}


def shown(count: int) -> str:
    """A count as a manager sees it: 1 to 4 read "<5"."""
    return "<5" if 0 < count < 5 else str(count)


def offer_code(client, phone: str, request_id: str, seen: set[str]) -> str:
    """The code of the newest offer texted to `phone` that we have not used yet."""
    def fresh():
        for message in client.call("GET", "/sms/messages", params={"to": phone}):
            found = re.search(r"YES (\d{4})", message["body"])
            if message["purpose"] == "offer" and found and found.group(1) not in seen:
                return found.group(1)
        return None

    code = wait_for(f"an offer for {request_id} to {phone}", fresh, timeout=60)
    seen.add(code)
    return code


def test_the_dashboard_and_csv_show_what_the_scenario_did(page, site, tmp_path):
    client = api(site)
    ids = {}
    for name, phone in VOLUNTEERS.items():
        ids[name] = client.call("POST", "/volunteers", 201, json={
            "name": name, "phone": phone, "skills": ["practical"], "checks": SAFEGUARDING, "postcode": "FY1",
            "max_distance_km": 10, "weekly_cap": 10})["id"]
    record = {"received": 0, "matched": 0, "cancelled": 0, "completed": 0, "hours": 0.0, "people": set(),
              "volunteers": set(), "attendance": 0, "activities": 0}
    seen: set[str] = set()
    # who says yes, and the hours they report when done ("held": not done yet; no one: the request is cancelled)
    plan = [("Vera Metrics", 1.5), ("Vera Metrics", 2), ("Walt Metrics", 1), ("Walt Metrics", None),
            ("Vera Metrics", "held"), (None, None)]
    for n, (who, outcome) in enumerate(plan):
        person = {**SHOPPING["person"], "name": f"Person {n} Metrics"}
        request = client.call("POST", "/requests", 201, json={**SHOPPING, "person": person})
        record["received"] += 1
        record["people"].add(person["name"])
        if who is None:
            client.call("POST", f"/requests/{request['id']}/cancel", 200, json={"reason": "family helping"})
            record["cancelled"] += 1
            continue
        phone = VOLUNTEERS[who]
        code = offer_code(client, phone, request["id"], seen)
        other = next(p for name, p in VOLUNTEERS.items() if name != who)
        offer_code(client, other, request["id"], seen)  # both were asked; the other's offer is withdrawn
        text_in(site.url, phone, f"YES {code}", var_dir=site.var_dir)
        wait_for("the request to be matched", timeout=60, probe=
                 lambda: client.call("GET", f"/requests/{request['id']}")["status"] == "matched")
        record["matched"] += 1
        record["volunteers"].add(ids[who])
        if outcome == "held":
            continue
        text_in(site.url, phone, f"DONE {code} {outcome}" if outcome else f"DONE {code}", var_dir=site.var_dir)
        wait_for("the task to be completed", timeout=60, probe=
                 lambda: client.call("GET", f"/requests/{request['id']}")["status"] == "completed")
        record["completed"] += 1
        record["hours"] += outcome or 0
    client.call("POST", "/activities", 201, json={"kind": "death_cafe", "held_on": date.today().isoformat(),
                                                  "organisation": "St Anne's Church", "organisation_type": "faith",
                                                  "volunteer_ids": [ids["Walt Metrics"]], "attendance": 12})
    record["activities"] += 1
    record["attendance"] += 12

    expected = {
        "requests_received": shown(record["received"]), "requests_matched": shown(record["matched"]),
        "requests_cancelled": shown(record["cancelled"]), "tasks_completed": shown(record["completed"]),
        "volunteer_hours": f"{record['hours']:g}", "people_reached": shown(len(record["people"])),
        "active_volunteers": shown(len(record["volunteers"])), "group_activities": shown(record["activities"]),
        "group_attendance": shown(record["attendance"]),
        "volunteers_registered": shown(len(VOLUNTEERS)), "new_volunteers": shown(len(VOLUNTEERS)),
    }
    manager = api(site, "manager")

    def today():
        measures = manager.call("GET", "/activity", params={"period": "day"})["periods"][-1]["measures"]
        return {key: f"{measures[key]:g}" if isinstance(measures[key], float) else str(measures[key])
                for key in expected}

    try:  # metrics hears the services' events a moment after they happen
        wait_for("metrics to count everything the scenario did", lambda: today() == expected, timeout=60)
    except TimeoutError:
        assert today() == expected  # shows what differs
        raise

    sheet = manager.call("GET", "/activity.csv", params={"period": "day"})
    rows = {(row[2]): row[3] for row in csv.reader(io.StringIO(sheet)) if row[0] == date.today().isoformat()}
    assert rows["Requests received"] == expected["requests_received"]
    assert rows["Requests cancelled"] == expected["requests_cancelled"]

    sign_in(page, "manager")
    page.goto("/dashboard?period=day")
    for key, value in expected.items():
        card = page.locator(f'.headline li[data-measure="{key}"] .value')
        expect(card).to_have_text(value if key != "volunteer_hours" else re.compile(rf"^{value}(\.0)?$"))
    table = page.locator("table.activity")
    expect(table).to_contain_text("Requests received")
    expect(page.get_by_role("link", name="Download the CSV")).to_have_attribute("href", re.compile("activity.csv"))
    timing = page.locator('.headline li[data-measure^="hours_to_acceptance"] .value')  # seconds, as the machine is
    matches_screenshot(page.locator(".headline").screenshot(animations="disabled", mask=[timing]),
                       "dashboard-headline", tmp_path)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    chart = page.get_by_role("img", name=re.compile("^Requests received: "))
    expect(chart).to_have_attribute("aria-label", re.compile(r"Requests received: .* 6$"))
    chart.screenshot(path=str(tmp_path / "chart-phone.png"))

    # The one-page report for the day: the same numbers, each beside the day before's, and it prints on one page.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/report?period=day&to={date.today().isoformat()}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Volunteer-led activity: Fylde Coast")

    def table(within):
        rows = within.locator("tbody tr").evaluate_all(
            "rows => rows.map(row => [...row.children].map(cell => cell.textContent.trim()))")
        return {row[0]: row[1:] for row in rows}

    measures = table(page.locator("article.report"))
    assert {key: measures[LABELS[key]][0] for key in expected} == expected
    assert measures["Requests received"][1:] == ["0", "+6"]  # nothing the day before
    by_kind = page.locator("section", has=page.get_by_role("heading", name="Requests received for"))
    assert table(by_kind) == {"Shopping": ["6", "0"]}
    pdf = page.pdf(format="A4", print_background=False)
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1, "the report prints on one page"


@pytest.mark.parametrize("path", ["/dashboard", "/report"])
def test_coordinators_cannot_open_the_managers_pages(page, path):
    sign_in(page, "coordinator")
    page.goto(path)
    expect(page.get_by_role("heading", name="This page is not for your role")).to_be_visible()
