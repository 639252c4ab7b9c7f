"""Surveys by SMS (issue 17): after a task is done, the person is texted the ONS4 questions and their community's
own, one at a time, under their `sms_contact` consent only, never once their death is recorded, never in quiet
hours; answers by number or word are kept once, counted in metrics tied to no one, and the next question follows;
one reminder; STOP ends it; a volunteer's replies are read as they always were. Intake, matching and notify on both
backends, the bus played through their real handlers (`system`, from test_withdrawals)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from services.intake import service_layer as intake_service
from services.intake.adapters import survey_answers, surveys
from services.notify.entrypoints import handlers as notify_handlers
from shared.contracts import load_event
from tests.integration.test_matching import register
from tests.integration.test_security import csrf_of, signed_in
from tests.integration.test_withdrawals import system  # noqa: F401 (the fixture)

PERSON = "+447911123555"
ASKED = "Reply 0 (not at all) to 10 (completely)."


def helped(s, volunteer_phone: str, **changes) -> str:
    """A request for a person with a mobile phone, accepted and done by the volunteer by SMS: its id."""
    person = {"name": "Pat Example", "phone": "07911 123555", "address": "1 Promenade, Blackpool",
              "postcode": "FY1 4AB"}
    request_id = s.request(person={**person, **changes.pop("person", {})}, **changes)
    s.carry()
    code = s.offers(request_id)[volunteer_phone].code
    s.text(volunteer_phone, f"YES {code}")
    s.carry()
    s.text(volunteer_phone, f"DONE {code} 1.5")
    s.carry()
    return request_id


def survey_of(s, request_id: str):
    with s.apps["intake"].extensions["ccs"].sessions() as session:
        row = session.execute(sa.select(surveys).where(surveys.c.request_id == uuid.UUID(request_id))).one_or_none()
        answers = dict(session.execute(sa.select(survey_answers.c.question_id, survey_answers.c.answer)).all())
    return row, answers


def timeline(s, request_id: str) -> list[str]:
    return [t["detail"] for t in s.seen_by_intake(request_id)["timeline"] if t["what"] == "survey"]


def test_a_person_helped_is_asked_each_question_answers_in_words_and_metrics_counts_tied_to_no_one(system):  # noqa: F811
    s = system(batch=1)
    ann = s.volunteer("Ann", "07911 123471")["phone"]
    request_id = helped(s, ann)
    s.send()
    [first] = s.gateway.to(PERSON)
    assert first.startswith("A short survey about the support you had (4 questions). Reply STOP to end it. "
                            "Overall, how satisfied are you with your life nowadays?") and first.endswith(ASKED)
    assert "Pat" not in first
    assert timeline(s, request_id) == ["Survey sent by SMS (4 questions)"]

    s.text(PERSON, "I'd say seven")
    s.carry()
    s.send()
    assert s.gateway.to(PERSON)[1].startswith("Overall, to what extent do you feel that the things you do")
    answered = [row for row in s.outbox("notify") if row.event_type == "survey.answered"]
    s.dispatch["intake"](load_event(answered[0].body))  # redelivered: kept once, counted once
    s.text(PERSON, "maybe")  # not an answer: asked again, not the volunteers' "not understood", not the inbox
    assert s.messages(PERSON)[-1].body.startswith("Sorry, we did not understand your answer. Please reply with a "
                                                  "number from 0 to 10")
    for reply in ("8/10", "10 thanks", "2"):
        s.text(PERSON, reply)
        s.carry()
        s.send()
    assert s.messages(PERSON)[-1].body.startswith("Thank you for answering our survey.")
    row, answers = survey_of(s, request_id)
    assert (row.status, row.respondent) == ("done", "service_user")
    assert answers == {"ons4_life_satisfaction": 7, "ons4_worthwhile": 8, "ons4_happiness": 10, "ons4_anxiety": 2}
    counted = s.events("intake", "survey.answer_recorded")
    assert [(e["respondent"], e["question_id"], e["answer"]) for e in counted] == [
        ("service_user", "ons4_life_satisfaction", 7), ("service_user", "ons4_worthwhile", 8),
        ("service_user", "ons4_happiness", 10), ("service_user", "ons4_anxiety", 2)]
    assert all(set(e) == {"community", "respondent", "question_id", "answer", "answered_at", "completes"}
               for e in counted)  # no phone, no survey, no request: nothing ties an answer to anyone
    assert [e["completes"] for e in counted] == [False, False, False, True]
    with s.apps["notify"].extensions["ccs"].sessions() as session:
        from services.notify.domain import InboundMessage
        inbox = session.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone == PERSON)).all()
    assert {m.keyword for m in inbox} == {"ANSWER"} and not any(m.attention for m in inbox)
    assert s.events("notify", "sms.received") and all(e["from_phone"] != PERSON
                                                      for e in s.events("notify", "sms.received"))
    assert timeline(s, request_id)[-1] == "Survey answered (4 questions)"


def test_never_without_sms_consent_and_never_after_a_death(system):  # noqa: F811
    s = system(batch=1)
    ann = s.volunteer("Ann", "07911 123472")["phone"]
    refused = helped(s, ann, consent={"share_contact": True, "sms_contact": False})
    s.send()
    assert s.gateway.to(PERSON) == [] and s.events("intake", "survey.question") == []
    assert timeline(s, refused) == ["Survey not sent: no consent to contact by SMS"]

    request_id = helped(s, ann, person={"phone": "07911 123556"})
    s.send()
    other = "+447911123556"
    assert len(s.gateway.to(other)) == 1
    coordinator = s.client("intake")
    person_id = s.seen_by_intake(request_id)["person_id"]
    died = coordinator.post(f"/people/records/{person_id}/death", headers=s.headers,
                            json={"died_on": datetime.now(timezone.utc).date().isoformat()})
    assert died.status_code == 200, died.json
    s.carry()
    s.text(other, "6")  # an answer after the death is recorded: kept, and nothing more is asked
    s.carry()
    s.send(datetime.now(timezone.utc) + timedelta(days=3))  # nor any reminder
    assert len(s.gateway.to(other)) == 1
    row, _ = survey_of(s, request_id)
    assert (row.status, row.ended_reason) == ("stopped", "their death was recorded")


def test_quiet_hours_hold_a_question_and_one_reminder_goes_if_it_is_unanswered(system, monkeypatch):  # noqa: F811
    s = system(batch=1, quiet_hours=True)
    ann = s.volunteer("Ann", "07911 123473")["phone"]
    night = datetime.now(timezone.utc).replace(hour=23, minute=30, second=0, microsecond=0)  # quiet in Blackpool
    monkeypatch.setattr(notify_handlers, "utcnow", lambda: night)
    morning = night + timedelta(hours=9)
    request_id = s.request(person={"name": "Pat Example", "phone": "07911 123557", "address": "1 Promenade",
                                   "postcode": "FY1 4AB"})
    s.carry()
    s.send(morning)
    code = s.offers(request_id)[ann].code
    s.text(ann, f"YES {code}")
    s.carry()
    s.text(ann, f"DONE {code} 1")
    s.carry()
    person = "+447911123557"
    [question] = [m for m in s.messages(person) if m.purpose == "survey"]
    assert question.status == "queued" and question.next_attempt_at > night
    s.send(night)
    assert s.gateway.to(person) == []
    s.send(morning)
    assert len(s.gateway.to(person)) == 1
    s.send(night + timedelta(hours=49))  # unanswered 48 hours, but at night: held for the morning
    assert len(s.gateway.to(person)) == 1
    s.send(morning + timedelta(days=2))  # the one reminder
    assert s.gateway.to(person)[1].startswith("A reminder of our short survey: A short survey")
    s.send(night + timedelta(days=10))
    assert len(s.gateway.to(person)) == 2  # only one
    s.text(person, "5")
    s.carry()
    s.send(night + timedelta(days=10))
    assert len(s.gateway.to(person)) == 3  # the next question; no reminder of it
    s.send(night + timedelta(days=20))
    assert len(s.gateway.to(person)) == 3


def test_stop_ends_the_survey_and_its_reminder_and_volunteers_replies_work_as_before(system):  # noqa: F811
    s = system(batch=1)
    ann = s.volunteer("Ann", "07911 123474")["phone"]
    request_id = helped(s, ann, person={"phone": "07911 123558"})
    person = "+447911123558"
    s.send()
    s.text(person, "STOP")
    s.carry()
    row, answers = survey_of(s, request_id)
    assert (row.status, row.ended_reason, answers) == ("stopped", "they replied STOP", {})
    reminder = next(m for m in s.messages(person) if m.purpose == "survey_reminder")
    assert reminder.status == "cancelled"
    s.send(datetime.now(timezone.utc) + timedelta(days=5))
    assert len(s.gateway.to(person)) == 1
    assert timeline(s, request_id)[-1] == "Survey stopped: they replied STOP"

    # A volunteer's "7" is not a survey answer: they have no question out, so it is read as always (not understood)
    s.text(ann, "7")
    assert "Sorry, we did not understand" in s.messages(ann)[-1].body
    assert s.events("notify", "survey.answered") == []


def test_a_bereaved_person_is_asked_weeks_after_support_and_a_communitys_own_question_follows_ons4(system):  # noqa: F811
    s = system(batch=1)
    coordinator = signed_in(s.apps["intake"], "coordinator")
    page = coordinator.get("/board/surveys").get_data(as_text=True)
    refused = coordinator.post("/board/surveys", data={"respondent": "bereaved", "text": "Hi",
                                                       "csrf_token": csrf_of(page)})
    assert refused.status_code == 422 and 'id="text-error"' in refused.get_data(as_text=True)
    added = coordinator.post("/board/surveys", data={
        "respondent": "bereaved", "text": "How well did our volunteers listen to you?",
        "text_fr": "Nos bénévoles vous ont-ils bien écouté(e) ?", "csrf_token": csrf_of(page)})
    assert added.status_code == 303
    assert "How well did our volunteers listen to you?" in coordinator.get("/board/surveys").get_data(as_text=True)

    trained = [{"check": check, "done_on": "2026-01-05", "expires_on": "2035-01-05"}
               for check in ("safeguarding", "bereavement_training")]
    ann = register(s.client("matching"), s.headers, "Ann", "07911 123475", skills=["bereavement"],
                   checks=trained)["phone"]
    request_id = helped(s, ann, support_type="bereavement_group", person={"phone": "07911 123559"})
    person = "+447911123559"
    s.send()
    assert s.gateway.to(person) == []  # not yet: six weeks after (the community's bereavement_survey_weeks)
    intake = s.apps["intake"].extensions["ccs"]
    assert intake_service.send_due_surveys(intake.uow, datetime.now(timezone.utc) + timedelta(weeks=5)) == 0
    assert intake_service.send_due_surveys(intake.uow, datetime.now(timezone.utc) + timedelta(weeks=6, hours=1)) == 1
    s.carry()
    s.send()
    assert "(5 questions)" in s.gateway.to(person)[0]
    for reply in ("sept", "huit", "9", "one"):
        s.text(person, reply)
        s.carry()
        s.send()
    assert s.gateway.to(person)[-1].startswith("How well did our volunteers listen to you?")
    s.text(person, "10")
    s.carry()
    row, answers = survey_of(s, request_id)
    assert row.respondent == "bereaved" and row.status == "done"
    assert answers["ons4_life_satisfaction"] == 7 and [a for q, a in answers.items() if q.startswith("own_")] == [10]


def test_erasing_the_person_removes_their_surveys_phone_and_answers_but_not_the_counts(system):  # noqa: F811
    from shared.auth import Actor

    s = system(batch=1)
    ann = s.volunteer("Ann", "07911 123476")["phone"]
    request_id = helped(s, ann, person={"phone": "07911 123560"})
    s.send()
    s.text("+447911123560", "4")
    s.carry()
    assert survey_of(s, request_id)[1] == {"ons4_life_satisfaction": 4}
    intake = s.apps["intake"].extensions["ccs"]
    intake_service.erase_person(intake.uow(), Actor(subject="admin@example.org", role="admin",
                                                    communities=("fylde-coast",)),
                                uuid.UUID(s.seen_by_intake(request_id)["person_id"]), datetime.now(timezone.utc))
    row, answers = survey_of(s, request_id)
    assert (row.phone, row.status, answers) == (None, "stopped", {})
    question = next(r for r in s.outbox("intake") if r.event_type == "survey.question")
    assert "+447911123560" not in str(question.body)
    assert len(s.events("intake", "survey.answer_recorded")) == 1  # counted, tied to no one: it stays
