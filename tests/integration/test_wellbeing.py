"""Issue 16's contribution and wellbeing: the hours volunteers give to group activities count toward their own (HOURS by
SMS) and the managers' volunteer hours, valued at the community's hourly value; every active volunteer is asked
how they are finding volunteering each `wellbeing_interval_days`, once per due date however many timers run, and a
low score or TALK reaches the coordinators' inbox. Intake, matching, notify and metrics with their databases, on both
backends, the bus played through their real handlers (`system`, as in test_withdrawals), texting through notify's
signed webhook and sending through a recording gateway."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.matching.entrypoints import timers
from shared import clock
from shared.contracts import load_event
from tests.helpers import all_at_once
from tests.integration.test_matching import register
from tests.integration.test_withdrawals import System

DAYS_AGO = timedelta(days=100)  # registered this long ago: a check-in is due (every 91 days)


class Everything(System):
    """test_withdrawals' System with metrics too: the four services, the bus played in order."""

    def __init__(self, app_for, token):
        super().__init__(app_for, token, metrics=True)

    def redeliver(self, producer: str, event_type: str, consumer: str) -> None:
        """Deliver the latest event of a type again to one consumer, as a broker does after a lost ack."""
        row = [r for r in self.outbox(producer) if r.event_type == event_type][-1]
        self.dispatch[consumer](load_event(row.body))

    def registered_long_ago(self, name: str, phone: str, language: str = "en") -> dict:
        """A volunteer registered DAYS_AGO (so a check-in is due now)."""
        from services.matching.adapters import volunteers

        made = register(self.client("matching"), self.headers, name, phone, languages=[language])
        with self.apps["matching"].extensions["ccs"].sessions() as session:
            session.execute(sa.update(volunteers).where(volunteers.c.id == uuid.UUID(made["id"]))
                            .values(created_at=datetime.now(timezone.utc) - DAYS_AGO))
            session.commit()
        return made

    def prompt(self) -> int:
        """Matching's check-in job, as its timer leader runs it; then the bus and the sender."""
        matching = self.apps["matching"].extensions["ccs"]
        asked = timers.prompt_check_ins(matching.uow, matching.settings)
        self.carry()
        self.send()
        return asked

    def ask(self, phone: str, body: str) -> list[str]:
        """Text us; the texts the phone then gets."""
        before = len(self.gateway.to(phone))
        self.text(phone, body)
        self.carry()
        self.send()
        return self.gateway.to(phone)[before:]

    def inbox(self, phone: str) -> list:
        """What the phone texted us, with why each waits for a coordinator (None: it does not)."""
        from services.notify.domain import InboundMessage

        with self.apps["notify"].extensions["ccs"].sessions() as session:
            return session.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone == phone)
                                   .order_by(InboundMessage.received_at)).all()

    def counts(self, token) -> dict:
        answer = self.client("metrics").get("/activity?period=day", headers=token("manager"))
        assert answer.status_code == 200, answer.json
        return answer.json["periods"][-1]["measures"]


@pytest.fixture
def everything(app_for, token):
    return Everything(app_for, token)


def test_an_activitys_two_volunteers_hours_reach_their_hours_by_sms_once_and_the_managers_value(everything, token):
    s = everything
    ann, bob = s.volunteer("Ann", "07911 123481"), s.volunteer("Bob", "07911 123482")
    answer = s.client("metrics").post("/activities", headers={**s.headers, "Idempotency-Key": str(uuid.uuid4())},
                                      json={"kind": "death_cafe", "held_on": clock.today().isoformat(),
                                            "attendance": 14, "volunteers": [
                                                {"volunteer_id": ann["id"], "hours": 2.5},
                                                {"volunteer_id": bob["id"], "hours": 3}]})
    assert answer.status_code == 201, answer.json
    assert (answer.json["hours"], sorted(v["hours"] for v in answer.json["volunteers"])) == (5.5, [2.5, 3.0])
    s.carry()
    s.redeliver("metrics", "activity.logged", "matching")  # delivered again: added once
    year = clock.today().year
    assert s.ask(ann["phone"], "HOURS") == [f"You have given 2.5 hours in {year} (0 tasks). Thank you!"]
    assert s.ask(bob["phone"], "hours") == [f"You have given 3 hours in {year} (0 tasks). Thank you!"]
    measures = s.counts(token)
    assert (measures["volunteer_hours"], measures["volunteer_time_value"]) == (5.5, {"GBP": 82.5})  # £15 an hour
    assert measures["active_volunteers"] == "<5"  # two, suppressed as every count is

    # a manager values their community's hour at £20 from today: recalculated, and kept with who set it
    changed = s.client("metrics").put("/activity/hourly-value", headers=token("manager", subject="m@example.org"),
                                      json={"amount": 20, "currency": "GBP"})
    assert changed.status_code == 200, changed.json
    assert (changed.json["amount"], changed.json["changes"][0]["set_by"]) == (20.0, "m@example.org")
    assert s.counts(token)["volunteer_time_value"] == {"GBP": 110.0}
    wrong = s.client("metrics").put("/activity/hourly-value", headers=token("manager"),
                                    json={"amount": -1, "currency": "XYZ"})
    assert wrong.status_code == 422 and {e["field"] for e in wrong.json["errors"]} == {"amount", "currency"}
    refused = s.client("metrics").put("/activity/hourly-value", headers=token("coordinator"),
                                      json={"amount": 20, "currency": "GBP"})
    assert refused.status_code == 403  # managers and administrators only


def test_bad_volunteers_on_an_activity_are_refused_naming_the_field(everything):
    s = everything
    ann = s.volunteer("Ann", "07911 123483")
    for volunteers, field in (([{"volunteer_id": ann["id"], "hours": 0}], "volunteers.0.hours"),
                              ([{"volunteer_id": ann["id"], "hours": "2"}], "volunteers.0.hours"),
                              ([{"volunteer_id": "not an id", "hours": 2}], "volunteers.0.volunteer_id"),
                              ([{"volunteer_id": ann["id"], "hours": 1}] * 2, "volunteers")):
        answer = s.client("metrics").post("/activities", headers=s.headers, json={
            "kind": "death_cafe", "held_on": clock.today().isoformat(), "attendance": 4, "volunteers": volunteers})
        assert answer.status_code == 422 and [e["field"] for e in answer.json["errors"]] == [field], answer.json
    assert s.events("metrics", "activity.logged") == []


def test_each_active_volunteer_is_asked_once_and_scores_and_talk_reach_the_coordinator(everything, token):
    s = everything
    ann = s.registered_long_ago("Ann", "07911 123484")["phone"]
    eve = s.registered_long_ago("Eve", "07911 123485", language="fr")["phone"]
    tom = s.registered_long_ago("Tom", "07911 123486")["phone"]
    stopped = s.registered_long_ago("Sid", "07911 123487")["phone"]
    s.volunteer("New", "07911 123488")  # registered today: not yet due
    s.text(stopped, "STOP")
    s.carry()

    assert s.prompt() == 3
    assert s.prompt() == 0  # the same due date: asked once
    assert s.gateway.to(ann) == ["How are you finding volunteering? Reply 1-5 (1 hard, 5 going well), or TALK to "
                                 "speak to someone."]
    assert s.gateway.to(eve)[0].startswith("Comment se passe votre bénévolat?")
    assert s.gateway.to(stopped) == []
    s.redeliver("matching", "wellbeing.prompted", "notify")  # a redelivered prompt texts nothing more
    s.send()
    assert len(s.gateway.to(ann)) == len(s.gateway.to(eve)) == len(s.gateway.to(tom)) == 1

    assert s.ask(ann, "4/5 thanks") == ["Thank you for letting us know. Reply TALK any time if you would like "
                                        "someone to call you."]
    assert s.ask(eve, "deux") == ["Merci de nous l'avoir dit. Une coordinatrice vous appellera bientôt."]
    s.redeliver("notify", "sms.received", "matching")  # Eve's score delivered again: recorded and thanked once
    s.carry()
    s.send()
    assert len(s.gateway.to(eve)) == 2
    assert s.ask(tom, "TALK") == []  # answered by return (in the webhook's answer), and nothing more
    assert s.messages(tom)[-1].body == "Thank you. A coordinator will call you soon."

    assert [m.attention for m in s.inbox(ann)] == [None]
    assert [m.attention for m in s.inbox(eve)] == ["wellbeing_low"]  # in the coordinators' Needs you
    assert [m.attention for m in s.inbox(tom)] == ["debrief"]  # TALK, as after a death
    answered = s.events("matching", "wellbeing.answered")
    assert sorted(((e["score"] or 0), e["talk"], e["low"]) for e in answered) == [
        (0, True, False), (2, False, True), (4, False, False)]  # TALK has no score
    assert all(set(e) == {"checkin_id", "community", "score", "talk", "low"} for e in answered)  # no one named

    measures = s.counts(token)  # small counts: a manager sees "<5", never who struggled
    assert (measures["wellbeing_prompted"], measures["wellbeing_answered"], measures["wellbeing_talk"]) == (
        "<5", "<5", "<5")
    assert set(measures["wellbeing_scores"]) == {"2", "4"}
    assert all(isinstance(v, str) for v in measures["wellbeing_scores"].values())
    from services.metrics.adapters import facts

    with s.apps["metrics"].extensions["ccs"].sessions() as session:  # each counted once, redeliveries too
        kept = session.execute(sa.select(facts.c.event_type, facts.c.score, facts.c.volunteer_id)
                               .where(facts.c.event_type.like("wellbeing.%"))).all()
    assert sorted((t, score or 0) for t, score, _ in kept) == [
        ("wellbeing.answered", 0), ("wellbeing.answered", 2), ("wellbeing.answered", 4)] + [
        ("wellbeing.prompted", 0)] * 3
    assert all(volunteer is None for t, _, volunteer in kept if t == "wellbeing.answered")


def test_a_score_outside_a_check_in_is_not_read_as_one(everything):
    """A "4" a fortnight after the check-in (or from someone never asked) is a text a coordinator reads, as any
    text we do not understand: no score is recorded, no one is thanked for one."""
    from services.matching.adapters import wellbeing_checkins
    from services.notify.adapters import outgoing_messages as messages

    s = everything
    ann = s.registered_long_ago("Ann", "07911 123489")["phone"]
    bob = s.volunteer("Bob", "07911 123490")["phone"]
    assert s.prompt() == 1
    long_ago = datetime.now(timezone.utc) - timedelta(days=15)
    for name, table, column in (("notify", messages, "created_at"), ("matching", wellbeing_checkins, "prompted_at")):
        with s.apps[name].extensions["ccs"].sessions() as session:
            session.execute(sa.update(table).values({column: long_ago}))
            session.commit()
    nothing_open = ("You have no offer open just now. Reply YES <code> to accept an offer, NO <code> to decline, "
                    "DONE <code> <hours> when done, PAUSE or RESUME. STOP to stop texts.")
    for phone in (ann, bob):  # as any text from a volunteer with nothing open: said so, and a coordinator reads it
        assert s.ask(phone, "4") == [nothing_open]
        assert [m.attention for m in s.inbox(phone)] == ["nothing_open"]
        assert not any(m.body.startswith("Thank you for letting us know") for m in s.messages(phone))
    assert s.events("matching", "wellbeing.answered") == [] and s.events("matching", "reply.answered") == []


def test_two_matching_instances_ask_each_volunteer_once(everything, app_for):
    """Two timer runs (as after a lost lock, one per instance), one after the other: the second finds every check-in
    asked. (At the same instant: the PostgreSQL test below.)"""
    s = everything
    for n in range(3):
        s.registered_long_ago(f"Vol {n}", f"07911 12350{n}")
    other = s.apps["matching"], app_for("matching")
    asked = [timers.prompt_check_ins(app.extensions["ccs"].uow, app.extensions["ccs"].settings) for app in other]
    assert asked == [3, 0]
    prompted = s.events("matching", "wellbeing.prompted")
    assert len(prompted) == len({e["volunteer_id"] for e in prompted}) == 3


@pytest.mark.parametrize("backend", [pytest.param("postgres+rabbitmq", marks=pytest.mark.real_backends)],
                         indirect=True)
def test_two_timer_leaders_at_once_ask_each_volunteer_once(app_for, token):
    """Two leaders at the same instant, two runs each: a check-in's unique key (volunteer, due date) lets one insert
    it; the others insert nothing (ON CONFLICT DO NOTHING, waiting for the first) and ask no one."""
    apps = [app_for("matching"), app_for("matching")]
    contexts = [app.extensions["ccs"] for app in apps]
    headers = token("coordinator")
    from services.matching.adapters import volunteers

    due = 12
    for n in range(due):
        register(apps[0].test_client(), headers, f"Vol {n}", f"0791121{n:04d}")
    with contexts[0].sessions() as session:
        session.execute(sa.update(volunteers).values(created_at=datetime.now(timezone.utc) - DAYS_AGO))
        session.commit()
    results = all_at_once([lambda c=context: timers.prompt_check_ins(c.uow, c.settings)
                           for context in contexts for _ in range(2)])
    assert sum(results) == due
    from services.matching.adapters import outbox

    with contexts[0].sessions() as session:
        rows = session.scalars(sa.select(outbox.table).where(outbox.table.event_type == "wellbeing.prompted"))
        asked = [row.body["payload"]["volunteer_id"] for row in rows]
    assert len(asked) == len(set(asked)) == due
