"""Befriending (issue 15): a weekly befriending match runs three months on the rehearsal clock (shared/clock.py),
through intake, matching, notify and metrics with their databases on both backends; the bus is played in order
through their real handlers (`System`, from test_withdrawals) and SMS go through a recording gateway. The offer is
texted once, DONE logs each visit, a skipped week brings exactly one gentle reminder, the review falls due, and
the coordinator ends the match with a reason: the volunteer is thanked, the request completes and metrics counts
the match and its visits."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.matching.entrypoints import timers
from shared import clock
from shared.web import claims_for
from tests.helpers import all_at_once
from tests.integration.test_bus import SAFEGUARDING
from tests.integration.test_matching import register
from tests.integration.test_withdrawals import System

HOME_CHECKS = SAFEGUARDING + [{"check": "criminal_record", "done_on": "2026-01-05", "expires_on": "2035-01-05"}]
BEFRIENDING = {
    "person": {"name": "Pat Example", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
               "postcode": "FY1 4AB"},
    "support_type": "home_visit",
    "when": {"days": ["mon", "tue", "wed", "thu", "fri"], "part_of_day": "afternoon"},
    "consent": {"share_contact": True, "sms_contact": True},
    "befriending": {"rhythm": "weekly"},
}


class Rehearsal(System):
    """The three services of `System` and metrics, on a clock the test moves forward."""

    def __init__(self, app_for, token, clock_file):
        super().__init__(app_for, token, metrics=True)
        self.clock_file = clock_file

    def at(self, moment: datetime) -> None:
        """Move every service's clock on to `moment` (only ever forward)."""
        assert moment >= clock.utcnow() - timedelta(seconds=1)
        clock.set_forward(self.clock_file, moment)

    def timers(self) -> int:
        """Matching's daily job for overdue visits, as its timer leader runs it; then the bus and the sender."""
        matching = self.apps["matching"].extensions["ccs"]
        reminded = timers.remind_overdue_visits(matching.uow, matching.settings)
        self.carry()
        self.send(at=clock.utcnow())
        return reminded

    def page(self, request_id: str) -> str:
        """The request's volunteers section, as intake's request page takes it in, for a signed-in coordinator."""
        client = self.client("matching")
        with client.session_transaction() as session:
            session["user"] = claims_for("test", "coordinator", ["fylde-coast"])
        answer = client.get(f"/offers/{request_id}?part=1")
        assert answer.status_code == 200
        return answer.get_data(as_text=True)

    def befriending(self, request_id: str) -> list[dict]:
        answer = self.client("matching").get(f"/befriending?request_id={request_id}", headers=self.headers)
        assert answer.status_code == 200, answer.json
        return answer.json


@pytest.fixture
def rehearsal(app_for, token, monkeypatch, tmp_path):
    monkeypatch.setenv("CCS_CLOCK_FILE", str(tmp_path / "clock"))
    monkeypatch.setenv("CCS_SUPPRESS_BELOW", "0")  # the counts as they are (suppression is metrics' own, shared)
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    return Rehearsal(app_for, token, tmp_path / "clock")


def test_a_befriending_match_runs_three_months_with_an_overdue_reminder_and_ends_with_a_reason(rehearsal):
    s = rehearsal
    today = datetime.now(timezone.utc).date()
    start_day = today + timedelta(days=7 - today.weekday())  # next Monday
    s.at(datetime.combine(start_day, time(10), tzinfo=timezone.utc))
    sam = register(s.client("matching"), s.headers, "Sam Patel", "07911 123481", skills=["companionship"],
                   checks=HOME_CHECKS)["phone"]
    request_id = s.request(**BEFRIENDING)
    assert s.seen_by_intake(request_id)["befriending"] == {
        "rhythm": "weekly", "review_on": clock.months_after(start_day, 3).isoformat()}
    s.carry()
    s.send(at=clock.utcnow())
    [offer_sms] = s.gateway.to(sam)
    assert offer_sms.startswith("Befriending: an ongoing match, visits weekly. Companionship visit near FY1")
    assert "Pat" not in offer_sms and "Promenade" not in offer_sms
    code = s.offers(request_id)[sam].code
    s.text(sam, f"YES {code}")
    s.carry()
    s.send(at=clock.utcnow())
    assert s.seen_by_intake(request_id)["status"] == "matched"
    [match] = s.befriending(request_id)
    assert (match["started_on"], match["visits"], match["visit_overdue"]) == (start_day.isoformat(), 0, False)

    visits, skipped = 0, 6  # a visit each week but the sixth
    for week in range(1, 13):
        day = start_day + timedelta(weeks=week)
        if week == skipped:  # the last visit was a week ago: overdue three days on, and reminded that day only
            reminded_on = []
            for later in range(7):
                s.at(datetime.combine(day + timedelta(days=later), time(15), tzinfo=timezone.utc))
                if s.timers():
                    reminded_on.append(day + timedelta(days=later))
            assert reminded_on == [day + timedelta(days=3)]
            assert s.befriending(request_id)[0]["visit_overdue"] is True
            assert "Visit overdue" in s.page(request_id)
            s.carry()
            since = day - timedelta(weeks=1)
            assert _needs_you(s, request_id) == [("visit_overdue", since)]  # first on the coordinator's board
            continue
        s.at(datetime.combine(day, time(15), tzinfo=timezone.utc))
        assert s.timers() == 0  # a visit a week is never overdue, and the overdue spell was reminded once
        s.text(sam, f"DONE {code} 1.5")
        s.carry()
        visits += 1
        assert _needs_you(s, request_id) == []  # a visit logged ends an overdue spell
    reminders = [m for m in s.messages(sam) if m.key.startswith("visit_overdue:")]
    assert len(reminders) == 1, [m.body for m in reminders]
    assert reminders[0].status == "sent" and "gentle reminder" in reminders[0].body and code in reminders[0].body
    assert "Pat" not in reminders[0].body

    [match] = s.befriending(request_id)
    assert (match["visits"], match["visit_overdue"], match["end_reason"]) == (visits, False, None)
    before = len(s.gateway.to(sam))
    s.text(sam, "HOURS")
    s.carry()
    s.send(at=clock.utcnow())
    [hours] = s.gateway.to(sam)[before:]
    this_year = sum(1 for week in range(1, 13) if week != skipped
                    and (start_day + timedelta(weeks=week)).year == clock.today().year)
    assert hours.startswith(f"You have given {1.5 * this_year:g} hours in {clock.today().year}"), hours
    s.at(datetime.combine(clock.months_after(start_day, 3), time(11), tzinfo=timezone.utc))
    [match] = s.befriending(request_id)
    assert match["review_due"] is True
    page = s.page(request_id)
    assert "Review due" in page and "Befriending, weekly" in page and "End the match" in page
    assert "Visit overdue" not in page

    bad = s.client("matching").post(f"/befriending/{match['id']}/end", json={"reason": "bored"}, headers=s.headers)
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert [e["field"] for e in bad.json["errors"]] == ["reason"]
    ended = s.client("matching").post(f"/befriending/{match['id']}/end", json={"reason": "person_moved"},
                                      headers=s.headers)
    assert ended.status_code == 200, ended.json
    assert (ended.json["end_reason"], ended.json["visits"]) == ("person_moved", visits)
    s.carry()
    s.send(at=clock.utcnow())

    seen = s.seen_by_intake(request_id)
    assert seen["status"] == "completed"
    lines = [(t["what"], t["detail"]) for t in seen["timeline"]]
    assert ("befriending", f"Befriending started, weekly: review on {clock.months_after(start_day, 3)}") in lines
    assert [what for what, _ in lines].count("visit overdue") == 1
    weeks = (clock.months_after(start_day, 3) - start_day).days // 7  # whole weeks: 12 or 13
    assert lines[-1] == ("completed", f"Befriending ended: the person moved away ({visits} visits over {weeks} weeks)")
    thanks = [m for m in s.messages(sam) if m.key.startswith("befriending_ended:")]
    assert [m.status for m in thanks] == ["sent"] and f"{visits} visits" in thanks[0].body
    assert len([m for m in s.messages(sam) if m.purpose == "offer"]) == 1  # offered once, not per visit
    assert s.events("matching", "task.completed") == []

    manager = s.client("metrics").get(
        f"/activity?period=month&from={start_day.replace(day=1).isoformat()}&to={clock.today().isoformat()}",
        headers=_manager(s))
    assert manager.status_code == 200, manager.json
    periods = manager.json["periods"]
    total = {key: sum(p["measures"][key] for p in periods)
             for key in ("befriending_started", "befriending_ended", "befriending_visits", "tasks_completed")}
    assert total == {"befriending_started": 1, "befriending_ended": 1, "befriending_visits": visits,
                     "tasks_completed": visits}
    assert sum(p["measures"]["volunteer_hours"] for p in periods) == pytest.approx(1.5 * visits)


def _needs_you(s, request_id: str) -> list:
    """Why intake's board puts the request first, as intake holds it now."""
    from services.intake.domain import SupportRequest

    with s.apps["intake"].extensions["ccs"].sessions() as session:
        return session.get(SupportRequest, uuid.UUID(request_id)).needs_you(clock.utcnow())


def _manager(s) -> dict:
    from shared import config
    from shared.web import issue_token

    return {"Authorization": f"Bearer {issue_token(config.load('cli').secret_key, 'm', 'manager', ('fylde-coast',))}"}


@pytest.mark.parametrize("backend", [pytest.param("postgres+rabbitmq", marks=pytest.mark.real_backends)],
                         indirect=True)
def test_two_timer_leaders_at_once_remind_each_overdue_match_exactly_once(app_for, token):
    """Two leaders for a moment (one lost its lock during a run): each claims the matches it reminds of with
    FOR UPDATE SKIP LOCKED and judges them again once claimed, so every overdue match is reminded once."""

    from services.matching.adapters import outbox
    from services.matching.domain import BefriendingMatch, MatchRequest, Offer, Volunteer

    apps = [app_for("matching"), app_for("matching")]
    contexts = [app.extensions["ccs"] for app in apps]
    headers = token("coordinator")
    today = clock.today()
    overdue = 12
    with contexts[0].sessions() as session:
        for n in range(overdue + 3):  # three visited lately: not overdue
            volunteer_id = uuid.UUID(register(apps[0].test_client(), headers, f"Friend {n}", f"0791120{n:04d}",
                                              skills=["companionship"], checks=HOME_CHECKS)["id"])
            request = MatchRequest(community="fylde-coast", support_type="home_visit", latitude=53.8175,
                                   longitude=-3.0357, area="FY1", status="matched", correlation_id=f"c{n}",
                                   befriending_rhythm="weekly")
            offer = Offer(request_id=request.request_id, volunteer_id=volunteer_id, code=f"{5000 + n}",
                          status="accepted", volunteer=session.get(Volunteer, volunteer_id))
            session.add_all([request, offer])
            session.flush()
            session.add(BefriendingMatch(
                request_id=request.request_id, offer_id=offer.id, volunteer_id=volunteer_id, community="fylde-coast",
                support_type="home_visit", rhythm="weekly", started_on=today - timedelta(days=30),
                review_on=today + timedelta(days=60),
                last_visit_on=today - timedelta(days=2) if n >= overdue else None))
        session.commit()

    results = all_at_once([lambda c=context: timers.remind_overdue_visits(c.uow, c.settings)
                           for context in contexts for _ in range(2)])
    assert sum(results) == overdue
    with contexts[0].sessions() as session:
        rows = session.scalars(sa.select(outbox.table).where(outbox.table.event_type == "befriending.visit_overdue"))
        reminded = [row.body["payload"]["match_id"] for row in rows]
    assert len(reminded) == len(set(reminded)) == overdue
    assert timers.remind_overdue_visits(contexts[1].uow, contexts[1].settings) == 0  # and never again this spell


def test_a_coordinator_ends_a_match_on_the_requests_page_and_a_bad_befriending_request_is_named(rehearsal):
    """The request form's API refuses befriending that cannot be (the wrong kind, a one-off window, a review date
    past), naming each field; the request page's section ends a match once a reason is chosen, saying why not
    beside the field until then."""
    import re

    s = rehearsal
    s.at(datetime.now(timezone.utc) + timedelta(days=1))
    start = clock.utcnow() + timedelta(days=1)
    one_off = {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()}
    bad = s.client("intake").post("/requests", headers=s.headers, json={
        **BEFRIENDING, "support_type": "shopping", "when": one_off,
        "befriending": {"rhythm": "weekly", "review_on": clock.today().isoformat()}})
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert {e["field"] for e in bad.json["errors"]} == {"support_type", "when", "befriending.review_on"}
    unknown = s.client("intake").post("/requests", headers=s.headers,
                                      json={**BEFRIENDING, "befriending": {"rhythm": "daily"}})
    assert [e["field"] for e in unknown.json["errors"]] == ["befriending.rhythm"]

    sam = register(s.client("matching"), s.headers, "Sam Patel", "07911 123482", skills=["companionship"],
                   checks=HOME_CHECKS)["phone"]
    request_id = s.request(**{**BEFRIENDING, "befriending": {"rhythm": "fortnightly"}})
    s.carry()
    s.send(at=clock.utcnow())
    s.text(sam, f"YES {s.offers(request_id)[sam].code}")
    s.carry()
    [match] = s.befriending(request_id)
    client = s.client("matching")  # one browser: the form's token is its session's
    with client.session_transaction() as session:
        session["user"] = claims_for("test", "coordinator", ["fylde-coast"])
    page = client.get(f"/offers/{request_id}?part=1").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    action = f"/offers/{request_id}/befriending/{match['id']}/end"
    unchosen = client.post(action, data={"csrf_token": token, "reason": ""})
    assert unchosen.status_code == 422
    assert 'id="reason-error"' in unchosen.text and "Choose why the match ends." in unchosen.text
    assert s.befriending(request_id)[0]["ended_on"] is None
    ended = client.post(action, data={"csrf_token": token, "reason": "ended_by_person",
                                      "next": f"/board/{request_id}"})
    assert ended.status_code == 303 and ended.headers["Location"].endswith(f"/board/{request_id}")
    assert s.befriending(request_id)[0]["end_reason"] == "ended_by_person"
    assert "the person ended the match" in s.page(request_id) and "End the match" not in s.page(request_id)
    s.carry()
    assert s.seen_by_intake(request_id)["status"] == "completed"
