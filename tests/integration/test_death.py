"""When someone dies, on both backends: intake, matching and notify with the bus played in order through their real
handlers. A person with a carer and open requests (one recurring, one whose offer waits for the quiet hours, one a
health system's referral) is recorded as died: no SMS about them leaves but the volunteers' message, the volunteers
who helped get it by first name, the carer has a bereavement request waiting for consent, and the referrer's Task
shows the reason."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from services.notify.entrypoints import handlers as notify_handlers
from shared.web import claims_for
from tests.integration.test_bus import SHOPPING
from tests.integration.test_fhir import EHR, fixture, post
from tests.integration.test_withdrawals import system  # noqa: F401 (the fixture)

PAT = {"name": "Pat Example", "phone": "01253 477000", "address": "1 Promenade, Blackpool", "postcode": "FY1 4AB"}


def open_offer(s, request_id: str) -> tuple[str, str]:
    """The phone and code of a request's open offer."""
    [(phone, offer)] = [(p, o) for p, o in s.offers(request_id).items() if o.status == "open"]
    return phone, offer.code


def test_recording_a_death_closes_everything_tells_the_volunteers_and_offers_the_carer_support(system, monkeypatch,
                                                                                             token):
    s = system(batch=1, quiet_hours=True)
    today = datetime.now(timezone.utc)
    day, night = today.replace(hour=12, minute=0), today.replace(hour=23, minute=30)  # in Blackpool's time
    now = {"at": day}
    monkeypatch.setattr(notify_handlers, "utcnow", lambda: now["at"])
    ann, bob = s.volunteer("Ann", "07911 123491")["phone"], s.volunteer("Bob", "07911 123492")["phone"]
    coordinator = s.client("intake")

    first = s.request(person=PAT)
    s.carry()
    s.send(day)
    phone, code = open_offer(s, first)
    s.text(phone, f"YES {code}")
    s.carry()
    recurring = s.request(person=PAT, repeat={"every_weeks": 1, "occurrences": 3})
    s.carry()
    s.send(day)
    s.carry()
    phone, code = open_offer(s, recurring)
    if phone == ann:  # Ann has the first: Bob takes the recurring one
        s.text(ann, f"NO {code}")
        s.carry()
        s.send(day)
        s.carry()
        phone, code = open_offer(s, recurring)
    assert phone == bob
    s.text(bob, f"YES {code}")
    s.carry()
    s.send(day)
    assert [s.seen_by_intake(r)["status"] for r in (first, recurring)] == ["matched", "matched"]
    helpers = {ann, bob}
    assert all(any(b.startswith("Thank you! Task") for b in s.gateway.to(v)) for v in helpers)

    referral = post(coordinator, fixture("servicerequest-fylde-coast.json"),
                    token("referrer", subject=EHR, organisation="Fylde Coast PCN"))
    assert referral.status_code == 201, referral.json
    referred = s.seen_by_intake(referral.json["id"])
    person_id = s.seen_by_intake(first)["person_id"]
    merged = coordinator.post(f"/people/records/{person_id}/merge", json={"other": referred["person_id"]},
                              headers=s.headers)  # another phone and a date of birth: the same Pat, a coordinator says
    assert merged.status_code == 200, merged.json
    s.carry()

    now["at"] = night
    s.send(night)  # what was due by then (the day-before reminders) has gone
    waiting = s.request(person=PAT)
    s.carry()
    held_to, _ = open_offer(s, waiting)
    [held] = [m for m in s.messages(held_to) if m.purpose == "offer" and str(m.request_id) == waiting]
    assert held.status == "queued" and held.next_attempt_at > night and s.send(night) == 0

    jo = s.request(person={**PAT, "name": "Jo Carer", "phone": "01253 000444"}, support_type="other")
    carer_id = s.seen_by_intake(jo)["person_id"]
    assert coordinator.post(f"/people/records/{person_id}/carers", json={"carer": carer_id},
                            headers=s.headers).status_code == 200
    s.carry()
    sent_before = len(s.gateway.sent)

    died = coordinator.post(f"/people/records/{person_id}/death", json={"died_on": today.date().isoformat()},
                            headers=s.headers)
    assert died.status_code == 200, died.json
    mine = {first, recurring, referral.json["id"], waiting}
    assert set(died.json["closed"]) == mine and died.json["died_on"] == today.date().isoformat()
    [bereavement] = died.json["bereavement_requests"]
    again = coordinator.post(f"/people/records/{person_id}/death", json={"died_on": today.date().isoformat()},
                             headers=s.headers)
    assert again.status_code == 409
    s.carry()

    reason = f"The person died on {today:%d %B %Y}"
    for request_id in mine:
        seen = s.seen_by_intake(request_id)
        assert (seen["status"], seen["outcome"]) == ("cancelled", reason)
    assert {o.status for r in (first, recurring, waiting) for o in s.offers(r).values()} <= {"withdrawn", "declined"}
    withdrawn = s.events("matching", "offer.withdrawn")
    assert withdrawn and {e["reason"] for e in withdrawn} == {"died"}
    [event] = s.events("intake", "person.died")
    assert set(event["request_ids"]) == mine and event["person_ref"].startswith("p_") and event["carers_offered"] == 1
    assert "Pat" not in str(event)

    assert held.id in {m.id for m in s.messages(held_to) if m.status == "cancelled"}
    morning = night + timedelta(hours=10)
    s.send(morning)
    s.send(morning + timedelta(days=8))  # a week on: the recurring task's reminders would be due
    after = s.gateway.sent[sent_before:]
    assert sorted(to for to, _ in after) == sorted(helpers)  # the volunteers who helped, once each, and nothing else
    for to, body in after:
        assert body == ("We're sorry to tell you that Pat has died. Thank you for the help and kindness you gave. "
                        "Reply TALK if you would like someone to call you.")
    assert all(m.status != "queued" for v in (ann, bob) for m in s.messages(v))

    s.text(ann, "Talk please")  # Ann would like someone to call her: a debrief for the coordinators
    s.carry()
    from services.notify.domain import InboundMessage

    with s.apps["notify"].extensions["ccs"].sessions() as session:
        [talk] = session.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone == ann,
                                                                 InboundMessage.body == "Talk please")).all()
    assert talk.attention == "debrief" and talk.dealt_with_at is None and str(talk.request_id) in mine
    [answer] = [m for m in s.messages(ann) if m.purpose == "answer"]
    assert answer.body == "Thank you. A coordinator will call you soon."
    from services.intake.domain import SupportRequest

    with s.apps["intake"].extensions["ccs"].sessions() as session:  # on the board, under Needs you
        assert session.get(SupportRequest, talk.request_id).sms_waiting == 1
    with s.client("notify") as client:
        with client.session_transaction() as session:
            session["user"] = claims_for("test", "coordinator", ["fylde-coast"])
        inbox = client.get("/sms/conversations").get_data(as_text=True)
    assert "Asked for someone to call them (TALK)" in inbox

    task = coordinator.get(f"/fhir/Task/{referral.json['id']}",
                           headers=token("referrer", subject=EHR, organisation="Fylde Coast PCN")).json
    assert task["status"] == "cancelled" and task["statusReason"]["text"] == reason

    offered = s.seen_by_intake(bereavement)
    assert (offered["support_type"], offered["status"], offered["person_id"]) == ("bereavement_visit", "submitted",
                                                                                   carer_id)
    assert offered["cares_for_id"] == person_id and offered["consent"] == {"share_contact": False,
                                                                            "sms_contact": False}
    assert [c["field"] for c in offered["to_check"]] == ["bereavement.consent"]
    from services.matching.domain import MatchRequest

    with s.apps["matching"].extensions["ccs"].sessions() as session:  # not offered until the carer consents
        assert session.get(MatchRequest, uuid.UUID(bereavement)) is None
    released = coordinator.patch(f"/requests/{bereavement}", headers=s.headers,
                                 json={"consent": {"share_contact": True, "sms_contact": True}})
    assert released.status_code == 200 and released.json["to_check"] == []
    taken_up = s.events("intake", "request.submitted")[-1]
    assert (taken_up["request_id"], taken_up["follows_a_death"]) == (bereavement, True)  # metrics counts it taken up
    assert not any(e["follows_a_death"] for e in s.events("intake", "request.submitted")[:-1])

    record = coordinator.get(f"/people/records/{person_id}", headers=s.headers).json
    assert record["died_on"] == today.date().isoformat()
    with s.apps["intake"].extensions["ccs"].sessions() as session:
        from services.intake.adapters import audit_log

        actions = session.scalars(sa.select(audit_log.c.action).where(
            audit_log.c.person_id == uuid.UUID(person_id))).all()
    assert "record death" in actions


def test_the_death_page_says_what_will_happen_names_a_bad_date_and_records_it_once(app_for, token):
    from tests.integration.test_people import log
    from tests.integration.test_role_homes import signed_in
    from tests.integration.test_webhooks import csrf

    intake = app_for("intake")
    pat = log(intake, token)
    jo = intake.test_client().post("/requests", headers=token("coordinator"), json={
        **{k: v for k, v in SHOPPING.items() if k != "person"},
        "person": {"name": "Jo Carer", "phone": "01253 000444", "postcode": "FY1 4AB"}, "cares_for": pat["person_id"]})
    assert jo.status_code == 201, jo.json
    kim, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    person = kim.get(f"/people/{pat['person_id']}").text
    assert f'href="/people/{pat["person_id"]}/death"' in person and "Record that Pat Example died" in person
    page = kim.get(f"/people/{pat['person_id']}/death").text
    assert "1 open request of theirs closes" in page and "each carer (Jo Carer)" in page

    future = (datetime.now(timezone.utc).date() + timedelta(days=2)).isoformat()
    for given, why in (("", "The day they died must be a date."), (future, "Must not be in the future.")):
        refused = kim.post(f"/people/{pat['person_id']}/death", data={"died_on": given, "csrf_token": csrf(page)})
        assert refused.status_code == 422 and 'id="died_on-error"' in refused.text
        assert why in refused.text
    assert intake.test_client().get(f"/requests/{pat['id']}", headers=token("coordinator")).json["status"] == \
        "submitted"

    done = kim.post(f"/people/{pat['person_id']}/death", data={"died_on": "2026-12-01", "csrf_token": csrf(page)})
    assert done.status_code == 303 and done.headers["Location"] == f"/people/{pat['person_id']}"
    after = kim.get(f"/people/{pat['person_id']}").text
    assert "Died on 01 December 2026" in after and "/death" not in after
    assert kim.get(f"/people/{pat['person_id']}/death").status_code == 303  # nothing more to record
    assert intake.test_client().get(f"/requests/{pat['id']}", headers=token("coordinator")).json["outcome"] == \
        "The person died on 01 December 2026"


def test_a_request_for_someone_recorded_as_died_is_held_for_a_coordinator_and_never_offered(app_for, token):
    from services.intake.adapters import outbox
    from tests.integration.test_people import log

    intake = app_for("intake")
    pat = log(intake, token)
    died = intake.test_client().post(f"/people/records/{pat['person_id']}/death", json={"died_on": "2026-12-01"},
                                     headers=token("coordinator"))
    assert died.status_code == 200
    with intake.extensions["ccs"].sessions() as session:
        before = session.scalar(sa.select(sa.func.count()).select_from(outbox.table))
    again = log(intake, token)  # the same phone and name: surely them
    assert again["person_id"] == pat["person_id"]
    assert [c["field"] for c in again["to_check"]] == ["person.died"]
    assert "recorded as having died on 01 December 2026" in again["to_check"][0]["why"]
    with intake.extensions["ccs"].sessions() as session:  # matching is not asked: no request.submitted
        assert session.scalar(sa.select(sa.func.count()).select_from(outbox.table)) == before
