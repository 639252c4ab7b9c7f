"""A month of requests, SMS offers and replies, a cancellation, a request nobody could take, volunteers joining and
pausing, and group activities, driven through the real services on a rehearsal clock (shared/clock.py) that steps
from day to day. The scenario keeps its own record; the manager's dashboard, CSV and report must show exactly what
that record says, for the month, for each week and for a day."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import pytest
from playwright.sync_api import expect

from services.metrics.domain import MEASURES, periods_between
from shared.clock import set_forward
from shared.demo import text_in
from tests.helpers import wait_for
from tests.e2e.conftest import api, matches_screenshot, running_site, sign_in
from tests.integration.test_bus import SAFEGUARDING, SHOPPING

LABELS = {m.key: m.label for m in MEASURES}
PHONES = {"Vera": "+447911126001", "Walt": "+447911126002", "Ada": "+447911126003"}
# Next month, so the rehearsal clock only ever moves forward.
MONTH = (date.today().replace(day=1) + timedelta(days=32)).replace(day=1)
MONTH_END = (MONTH + timedelta(days=32)).replace(day=1) - timedelta(days=1)
# Every request asks for help on one Monday after the month: a window each day of the rehearsal takes as plausible
# (from yesterday to a year ahead), whose reminders fall after the rehearsal.
WINDOW_DAY = MONTH_END + timedelta(days=28 + 7 - (MONTH_END + timedelta(days=28)).weekday())
WINDOW = {"start": f"{WINDOW_DAY.isoformat()}T14:00:00+00:00", "end": f"{WINDOW_DAY.isoformat()}T16:00:00+00:00"}

# Day of the month, what happens, and with whom. For a request: who says YES, and the hours they report when done
# ("held": not done by the month's end; None as the hours: done without saying how long). A carer is marked so.
PLAN = [
    (1, "join", "Vera"), (1, "join", "Walt"),
    (1, "request", {"person": "Ann", "yes": "Vera", "hours": 1.5, "carer": True}),
    (2, "request", {"person": "Bob", "yes": "Walt", "hours": 1}),
    (2, "request", {"person": "Cal", "yes": "Vera", "hours": None}),
    (5, "activity", {"kind": "death_cafe", "volunteers": ["Walt"], "attendance": 12, "organisation": "St Anne's"}),
    (8, "request", {"person": "Dee", "cancel": True}),
    (9, "request", {"person": "Eve", "yes": "Vera", "hours": 2, "carer": True}),
    (12, "join", "Ada"),
    (12, "request", {"person": "Fay", "yes": "Ada", "hours": 0.5}),
    (15, "pause", "Walt"),
    (16, "request", {"person": "Gus", "yes": "Vera", "hours": "held"}),
    (19, "request", {"person": "Hal", "kind": "bereavement_visit"}),  # nobody has the skill: unmatched
    (23, "activity", {"kind": "future_planning_session", "volunteers": ["Vera", "Ada"], "attendance": 9,
                      "organisation": "Fylde PCN"}),
    (27, "request", {"person": "Ann", "yes": "Ada", "hours": 3, "carer": True}),  # Ann again: one person, two requests
    (30, "request", {"person": "Ivy", "yes": "Vera", "hours": 1.25}),
]


@dataclass
class Record:
    """What the scenario did, day by day: (day, what, detail)."""

    happened: list[tuple[date, str, object]] = field(default_factory=list)

    def add(self, day: date, what: str, detail: object = None) -> None:
        self.happened.append((day, what, detail))

    def between(self, first: date, last: date, what: str) -> list:
        return [detail for day, kind, detail in self.happened if first <= day <= last and kind == what]

    def expected(self, first: date, last: date) -> dict[str, object]:
        """Every measure for the period, worked out from the record alone, as a manager is shown it."""
        of = lambda what: self.between(first, last, what)  # noqa: E731
        joined = self.between(date.min, last, "join")
        requests = of("received")
        completed = of("completed")
        counts = {
            "requests_received": len(requests), "requests_matched": len(of("matched")),
            "requests_unmatched": len(of("unmatched")), "requests_cancelled": len(of("cancelled")),
            "tasks_completed": len(completed), "volunteers_registered": len(joined),
            "new_volunteers": len(of("join")), "volunteers_paused": len(of("pause")),
            "active_volunteers": len(set(of("accepted") + of("completed_by") +
                                         [v for a in of("activity") for v in a["volunteers"]])),
            "people_reached": len({r["person"] for r in requests}),
            "carers_supported": len({r["person"] for r in requests if r.get("carer")}),
            "bereavement_supports": 0, "volunteers_left": 0,
            "future_planning_reached": sum(a["attendance"] for a in of("activity")
                                           if a["kind"] == "future_planning_session"),
            "group_activities": len(of("activity")),
            "group_attendance": sum(a["attendance"] for a in of("activity")),
            "active_partners": len({a["organisation"] for a in of("activity")}),
        }
        shown = {key: "<5" if 0 < n < 5 else str(n) for key, n in counts.items()}
        shown["volunteer_hours"] = f"{sum(h or 0 for h in completed):g}"
        return shown


def measures_of(period: dict) -> dict[str, str]:
    """A period's measures from the API, as text, for the measures the record can count."""
    return {key: f"{value:g}" if isinstance(value, float) else str(value)
            for key, value in period["measures"].items() if not key.startswith(("hours_to", "requests_by",
                                                                                "tasks_by"))}


def offer_code(client, phone: str, request_id: str) -> str:
    """The code of this request's offer, once it has been texted to `phone`."""
    def texted():
        match = client.http.get(f"{client.url}/matches/{request_id}", timeout=10)
        codes = {offer["code"] for offer in match.json()["offers"]} if match.status_code == 200 else set()
        for message in client.call("GET", "/sms/messages", params={"to": phone}):
            found = re.search(r"YES (\d{4})", message["body"])
            if message["purpose"] == "offer" and found and found.group(1) in codes:
                return found.group(1)
        return None

    return wait_for(f"an offer for {request_id} to {phone}", texted, timeout=60)


def status_is(client, request_id: str, status: str):
    return lambda: client.call("GET", f"/requests/{request_id}")["status"] == status


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The system on a rehearsal clock: every process reads the time from the folder's `clock` file."""
    folder = tmp_path_factory.mktemp("site")
    with running_site(folder, CCS_CLOCK_FILE=str(folder / "clock")) as system:
        yield system


@pytest.fixture(scope="module")
def month(site) -> Record:
    """Drive the month's plan through the services, a day at a time; return the scenario's record."""
    client, record, volunteers = api(site), Record(), {}
    clock = site.var_dir / "clock"
    for n, action, detail in PLAN:
        day = MONTH.replace(day=n)
        set_forward(clock, datetime.combine(day, time(10), timezone.utc))
        if action == "join":
            volunteers[detail] = client.call("POST", "/volunteers", 201, json={
                "name": f"{detail} Metrics", "phone": PHONES[detail], "skills": ["practical"],
                "checks": SAFEGUARDING, "postcode": "FY1", "max_distance_km": 10, "weekly_cap": 10})["id"]
            record.add(day, "join", volunteers[detail])
        elif action == "pause":
            client.call("PATCH", f"/volunteers/{volunteers[detail]}", 200, json={"status": "paused"})
            record.add(day, "pause", volunteers[detail])
        elif action == "activity":
            client.call("POST", "/activities", 201, json={
                "kind": detail["kind"], "held_on": day.isoformat(), "organisation": detail["organisation"],
                "organisation_type": "community", "attendance": detail["attendance"],
                "volunteer_ids": [volunteers[v] for v in detail["volunteers"]]})
            record.add(day, "activity", {**detail, "volunteers": [volunteers[v] for v in detail["volunteers"]]})
        else:
            request_in(client, site, day, detail, record, volunteers)
    # metrics hears the services' events a moment after they happen: wait until it has counted the whole month
    everything = record.expected(MONTH, MONTH_END)
    try:
        wait_for("metrics to count the month", timeout=60,
                 probe=lambda: measures_of(counted(site, "month", MONTH, MONTH_END)[0]) == everything)
    except TimeoutError:
        pass  # the tests say what differs
    return record


def request_in(client, site, day: date, plan: dict, record: Record, volunteers: dict) -> None:
    """One request through intake, matching and notify, as far as the plan says it goes."""
    person = {**SHOPPING["person"], "name": f"{plan['person']} Metrics", "is_carer": plan.get("carer", False)}
    request = client.call("POST", "/requests", 201, json={**SHOPPING, "person": person, "when": WINDOW,
                                                          "support_type": plan.get("kind", "shopping")})
    record.add(day, "received", plan)
    if plan.get("cancel"):
        client.call("POST", f"/requests/{request['id']}/cancel", 200, json={"reason": "family helping"})
        record.add(day, "cancelled")
        return
    if "yes" not in plan:
        wait_for("the request to be unmatched", status_is(client, request["id"], "unmatched"), timeout=60)
        record.add(day, "unmatched")
        return
    phone = PHONES[plan["yes"]]
    code = offer_code(client, phone, request["id"])
    text_in(site.url, phone, f"YES {code}", var_dir=site.var_dir)
    wait_for("the request to be matched", status_is(client, request["id"], "matched"), timeout=60)
    record.add(day, "matched")
    record.add(day, "accepted", volunteers[plan["yes"]])
    if plan["hours"] == "held":
        return
    hours = plan["hours"]
    text_in(site.url, phone, f"DONE {code} {hours:g}" if hours else f"DONE {code}", var_dir=site.var_dir)
    wait_for("the task to be completed", status_is(client, request["id"], "completed"), timeout=60)
    record.add(day, "completed", hours)
    record.add(day, "completed_by", volunteers[plan["yes"]])


def counted(site, period: str, first: date, last: date) -> list[dict]:
    """The manager's counts per period, once metrics has heard every event the scenario caused."""
    manager = api(site, "manager")
    return manager.call("GET", "/activity", params={"period": period, "from": first.isoformat(),
                                                    "to": last.isoformat()})["periods"]


def test_the_api_and_csv_count_the_month_each_week_and_each_day_as_the_record_does(site, month):
    last = MONTH_END
    expected = month.expected(MONTH, last)
    assert measures_of(counted(site, "month", MONTH, last)[0]) == expected
    assert expected["requests_received"] == "10" and expected["people_reached"] == "9"  # the plan, as read

    weeks = counted(site, "week", MONTH, last)
    assert [(p["start"], p["end"]) for p in weeks] == [
        (a.isoformat(), b.isoformat()) for a, b in periods_between("week", MONTH, last)]
    for week in weeks:
        first, end = date.fromisoformat(week["start"]), date.fromisoformat(week["end"])
        assert measures_of(week) == month.expected(first, end), week["start"]

    busiest = MONTH.replace(day=2)
    day = counted(site, "day", busiest, busiest)[0]
    assert measures_of(day) == month.expected(busiest, busiest)
    assert day["measures"]["requests_by_kind"] == {"shopping": "<5"}

    manager = api(site, "manager")
    sheet = manager.call("GET", "/activity.csv", params={"period": "week", "from": MONTH.isoformat(),
                                                         "to": last.isoformat()})
    rows = list(csv.reader(io.StringIO(sheet)))
    assert rows[0] == ["period_start", "period_end", "measure", "value", "previous_period_value"]
    for week in weeks:
        in_csv = {row[2]: row[3] for row in rows[1:] if row[0] == week["start"]}
        as_numbers = {key: re.sub(r"^(\d+)\.0$", r"\1", in_csv[LABELS[key]]) for key in measures_of(week)}
        assert as_numbers == measures_of(week)  # hours read "3.0" in the CSV, 3 in JSON


def test_the_dashboard_shows_the_month_and_a_chart_of_each_week(page, site, month, tmp_path):
    last = MONTH_END
    expected = month.expected(MONTH, last)
    sign_in(page, "manager")
    page.goto(f"/dashboard?period=month&from={MONTH.isoformat()}&to={last.isoformat()}")
    for key, value in expected.items():
        card = page.locator(f'.headline li[data-measure="{key}"] .value')
        expect(card).to_have_text(value if key != "volunteer_hours" else re.compile(rf"^{value}(\.0)?$"))
    timing = page.locator('.headline li[data-measure^="hours_to_acceptance"] .value')  # seconds, as the machine is
    matches_screenshot(page.locator(".headline").screenshot(animations="disabled", mask=[timing]),
                       "dashboard-headline", tmp_path)

    page.goto(f"/dashboard?period=week&from={MONTH.isoformat()}&to={last.isoformat()}")
    weeks = periods_between("week", MONTH, last)
    label = ", ".join(f"{first.strftime('%d %b')} {month.expected(first, end)['requests_received']}"
                      for first, end in weeks)
    expect(page.get_by_role("img", name=re.compile("^Requests received: "))).to_have_attribute(
        "aria-label", f"Requests received: {label}")
    table = page.locator("table.activity tbody tr").evaluate_all(
        "rows => rows.map(row => [...row.children].map(cell => cell.textContent.trim()))")
    sheet = api(site, "manager").call("GET", "/activity.csv", params={
        "period": "week", "from": MONTH.isoformat(), "to": last.isoformat()})
    assert table == list(csv.reader(io.StringIO(sheet)))[1:]  # the table is the CSV
    expect(page.get_by_role("link", name="Download the CSV")).to_have_attribute("href", re.compile("activity.csv"))
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390


def test_the_report_shows_the_month_beside_the_one_before_on_one_printed_page(page, site, month):
    last = MONTH_END
    expected = month.expected(MONTH, last)
    sign_in(page, "manager")
    page.goto(f"/report?period=month&to={MONTH.isoformat()}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Volunteer-led activity: Fylde Coast")

    def table(within):
        rows = within.locator("tbody tr").evaluate_all(
            "rows => rows.map(row => [...row.children].map(cell => cell.textContent.trim()))")
        return {row[0]: row[1:] for row in rows}

    measures = table(page.locator("article.report"))
    assert {key: measures[LABELS[key]][0] for key in expected} == expected
    assert measures["Requests received"][1:] == ["0", "+10"]  # nothing the month before
    by_kind = page.locator("section", has=page.get_by_role("heading", name="Requests received for"))
    assert table(by_kind) == {"Bereavement support visit": ["<5", "0"], "Shopping": ["9", "0"]}
    pdf = page.pdf(format="A4")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1, "the report prints on one page"


@pytest.mark.parametrize("path", ["/dashboard", "/report"])
def test_coordinators_cannot_open_the_managers_pages(page, path):
    sign_in(page, "coordinator")
    page.goto(path)
    expect(page.get_by_role("heading", name="This page is not for your role")).to_be_visible()
