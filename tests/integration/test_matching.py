"""Matching with its database and the bus, on both backends: volunteers, the cascade, explanations, the race."""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.matching import service_layer
from shared import gazetteer
from shared.contracts import EXAMPLES, load_event, make_event
from tests.helpers import wait_for
from shared.clock import utcnow
from tests.helpers import dispatcher
from tests.integration.test_bus import SAFEGUARDING, publish, running_worker

TOMORROW = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
SHOPPING = {**EXAMPLES[("request.submitted", 1)], "community": "fylde-coast", "window_start": TOMORROW.isoformat(),
            "window_end": (TOMORROW + timedelta(hours=2)).isoformat(), "person_ref": "",
            "repeat_every_weeks": None, "repeat_occurrences": 1}


def register(client, headers, name: str, phone: str, **changes) -> dict:
    body = {"name": name, "phone": phone, "skills": ["practical"], "checks": SAFEGUARDING, "postcode": "FY1",
            "max_distance_km": 10, **changes}
    answer = client.post("/volunteers", json=body, headers=headers)
    assert answer.status_code == 201, answer.json
    return answer.json


class Matching:
    """Matching's app, with helpers to deliver events and read what it did."""

    def __init__(self, app):
        self.app, self.dispatch = app, dispatcher(app, "matching")
        self.sessions, self.uow = app.extensions["ccs"].sessions, app.extensions["ccs"].uow
        self.policy = app.extensions["ccs"].settings.policy

    def deliver(self, event_type: str, payload: dict) -> None:
        self.dispatch(load_event(make_event(event_type, payload)))

    def submit(self, **changes) -> str:
        request_id = str(uuid.uuid4())
        self.deliver("request.submitted", {**SHOPPING, "request_id": request_id, **changes})
        return request_id

    def reply(self, phone: str, keyword: str, code: str | None = None, hours=None) -> None:
        self.deliver("sms.received", {"message_sid": "SM" + uuid.uuid4().hex, "from_phone": phone,
                                      "to_phone": "+447700900000", "body": f"{keyword} {code or ''}",
                                      "keyword": keyword, "code": code, "hours": hours})

    def offers(self, request_id: str) -> list:
        from services.matching.domain import Offer

        with self.sessions() as session:
            return session.scalars(sa.select(Offer).where(Offer.request_id == uuid.UUID(request_id))
                                   .order_by(Offer.created_at, Offer.distance_km)).all()

    def request(self, request_id: str):
        from services.matching.domain import MatchRequest

        with self.sessions() as session:
            return session.get(MatchRequest, uuid.UUID(request_id))

    def events(self, event_type: str | None = None) -> list[dict]:
        from services.matching.adapters import outbox

        with self.sessions() as session:
            rows = session.scalars(sa.select(outbox.table).order_by(outbox.table.id)).all()
        return [row.body["payload"] | {"type": row.event_type} for row in rows if event_type in (None, row.event_type)]


def test_a_volunteer_registered_by_postcode_with_checks_windows_and_time_away_reads_back(app_for, token):
    client = app_for("matching").test_client()
    made = register(client, token("coordinator"), "Ana Lopez", "07911 123450", languages=["en", "es"],
                    gender="female", weekly_cap=2, availability=[{"days": ["mon", "wed"], "part_of_day": "morning"}],
                    time_away=[{"starts_on": (date.today() + timedelta(days=60)).isoformat(),
                                "ends_on": (date.today() + timedelta(days=73)).isoformat()}],
                    checks=[*SAFEGUARDING, {"check": "criminal_record", "done_on": "2026-01-01",
                                            "expires_on": (date.today() + timedelta(days=10)).isoformat()}])
    assert (made["area"], made["phone"], made["status"]) == ("FY1", "+447911123450", "active")
    assert made["latitude"] == gazetteer.locate("FY1").latitude
    assert made["availability"] == [{"days": ["mon", "wed"], "part_of_day": "morning"}]
    assert {c["check"]: c["expires_soon"] for c in made["checks"]} == {"safeguarding": False, "criminal_record": True}

    soon = client.get("/volunteers?expiring_within_days=30", headers=token("coordinator")).json
    assert [v["name"] for v in soon] == ["Ana Lopez"]
    changed = client.patch(f"/volunteers/{made['id']}", headers=token("coordinator"), json={
        "status": "paused", "checks": [{"check": "criminal_record", "done_on": "2026-11-01",
                                        "expires_on": "2029-11-01"}]}).json
    assert changed["status"] == "paused" and changed["active"] is False
    assert {c["check"]: c["expires_on"] for c in changed["checks"]} == {
        "safeguarding": "2035-01-05", "criminal_record": "2029-11-01"}
    assert client.get("/volunteers?expiring_within_days=30", headers=token("coordinator")).json == []
    assert client.get(f"/volunteers/{made['id']}", headers=token("coordinator", ("cheshire-east",))).status_code == 404
    assert client.get(f"/volunteers/{made['id']}", headers=token("manager")).status_code == 403


def test_a_bad_volunteer_gets_a_problem_naming_every_bad_field_and_nothing_is_stored(app_for, token):
    client = app_for("matching").test_client()
    answer = client.post("/volunteers", headers=token("coordinator"), json={
        "name": "", "phone": "12", "postcode": "ZZ9", "max_distance_km": 0, "skills": ["juggling"],
        "languages": ["English"], "gender": "x", "weekly_cap": 0,
        "availability": [{"days": ["someday"], "part_of_day": "noon"}],
        "checks": [{"check": "dbs", "done_on": "2026-01-01"}, {"check": "safeguarding", "done_on": "2026-01-01",
                                                               "expires_on": "2025-01-01"}],
        "time_away": [{"starts_on": "2030-08-14", "ends_on": "2030-08-01"}]})
    assert answer.status_code == 422
    assert answer.headers["Content-Type"] == "application/problem+json"
    named = {e["field"] for e in answer.json["errors"]}
    assert {"name", "phone", "postcode", "max_distance_km", "skills.0", "languages.0", "gender", "weekly_cap",
            "availability.0.days.0", "availability.0.part_of_day", "checks.0.check"} <= named
    assert client.get("/volunteers", headers=token("coordinator")).json == []


def test_a_batch_is_offered_at_once_the_first_yes_wins_and_the_others_are_told(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    phones = [register(client, token("coordinator"), f"V{n}", f"0791112346{n}")["phone"] for n in range(4)]
    request_id = matching.submit()
    batch = matching.offers(request_id)
    assert len(batch) == 3 and {o.status for o in batch} == {"open"}
    assert len({o.code for o in batch}) == 3
    phone_of = {e["offer_id"]: e["phone"] for e in matching.events("offer.made")}
    assert set(phone_of.values()) < set(phones)
    first, second = batch[1], batch[2]

    matching.reply(phone_of[str(first.id)], "YES", first.code)
    matching.reply(phone_of[str(second.id)], "YES", second.code)  # too late
    statuses = {str(o.id): o.status for o in matching.offers(request_id)}
    assert statuses[str(first.id)] == "accepted"
    assert sorted(statuses.values()) == ["accepted", "withdrawn", "withdrawn"]
    assert matching.request(request_id).status == "matched"
    withdrawn = matching.events("offer.withdrawn")
    assert {e["reason"] for e in withdrawn} == {"taken"} and len(withdrawn) == 2
    assert [e["type"] for e in matching.events() if e["type"] in ("offer.accepted", "request.matched")] == [
        "offer.accepted", "request.matched"]


def test_silence_expires_a_batch_from_when_the_sms_went_and_the_last_round_leaves_it_unmatched(
        app_for, token, monkeypatch):
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    monkeypatch.setenv("CCS_MAX_ROUNDS", "2")
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    for n in range(3):
        register(client, token("coordinator"), f"V{n}", f"0791112347{n}")
    request_id = matching.submit(urgency="urgent")
    [first] = matching.offers(request_id)
    with matching.uow() as uow:  # not sent yet: no clock running
        assert service_layer.expire_offers(uow, utcnow() + timedelta(days=1), matching.policy) == 0
    sent_at = datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc)
    matching.dispatch(load_event({**make_event("sms.sent", {"message_id": str(uuid.uuid4()), "purpose": "offer",
                                                            "provider_sid": "SM1", "offer_id": str(first.id)}),
                                  "occurred_at": sent_at.isoformat()}))
    assert matching.offers(request_id)[0].expires_at == sent_at + timedelta(minutes=10)  # urgent: 10 minutes

    with matching.uow() as uow:
        assert service_layer.expire_offers(uow, sent_at + timedelta(minutes=9), matching.policy) == 0
    with matching.uow() as uow:
        assert service_layer.expire_offers(uow, sent_at + timedelta(minutes=10), matching.policy) == 1
    first_again, second = matching.offers(request_id)
    assert first_again.status == "expired" and second.status == "open" and second.round == 2
    matching.reply(next(e["phone"] for e in matching.events("offer.made") if e["offer_id"] == str(second.id)),
                   "NO", second.code)
    request = matching.request(request_id)
    assert request.status == "unmatched"
    assert request.unmatched_reason == "2 volunteers asked in 2 rounds; nobody said yes"
    assert matching.events("request.unmatched")[-1]["reason"] == request.unmatched_reason


def test_with_nobody_eligible_the_coordinator_is_told_which_rule_excluded_how_many(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    register(client, token("coordinator"), "Far", "07911123480", postcode="LA9")  # Kendal: too far for FY1
    register(client, token("coordinator"), "No checks", "07911123481", checks=[])
    paused = register(client, token("coordinator"), "Paused", "07911123482")
    client.patch(f"/volunteers/{paused['id']}", json={"status": "paused"}, headers=token("coordinator"))
    request_id = matching.submit()
    request = matching.request(request_id)
    assert request.status == "unmatched"
    assert request.unmatched_reason == ("nobody eligible: 1 paused or left, 1 too far, "
                                        "1 without safeguarding training in date")
    view = client.get(f"/matches/{request_id}", headers=token("coordinator")).json
    assert view["candidates"] == [] and view["excluded"] == {
        "paused or left": 1, "without safeguarding training in date": 1, "too far": 1}


def test_a_coordinator_sees_the_candidates_ranked_with_reasons_and_can_assign_or_rerun(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    near = register(client, token("coordinator"), "Near", "07911123490")
    register(client, token("coordinator"), "Further", "07911123491", postcode="FY3")
    request_id = matching.submit(support_type="bereavement_visit")  # nobody has bereavement training
    assert matching.request(request_id).status == "unmatched"
    view = client.get(f"/matches/{request_id}", headers=token("coordinator")).json
    assert view["excluded"] == {"without the skill": 2}
    assert client.post(f"/matches/{request_id}/assign", json={"volunteer_id": near["id"]},
                       headers=token("coordinator")).status_code == 409

    shopping = matching.submit()
    ranked = client.get(f"/matches/{shopping}", headers=token("coordinator")).json
    # both were offered in the first batch; the view shows who else could be asked
    assert ranked["round"] == 1 and len(ranked["offers"]) == 2
    assigned = client.post(f"/matches/{shopping}/assign", json={"volunteer_id": near["id"]},
                           headers=token("coordinator"))
    assert assigned.status_code == 200 and assigned.json["status"] == "matched"
    assert matching.events("offer.accepted")[-1]["by"] == "coordinator"
    assert client.post(f"/matches/{shopping}/rerun", headers=token("coordinator")).status_code == 409
    assert client.get(f"/matches/{shopping}", headers=token("coordinator", ("ottawa-west",))).status_code == 404


def test_a_kind_corrected_after_nobody_was_found_is_what_a_rerun_looks_for(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    register(client, token("coordinator"), "Shopper", "07911123495")  # practical help only
    request_id = matching.submit(support_type="bereavement_visit")  # logged as the wrong kind: nobody has the skill
    assert matching.request(request_id).status == "unmatched"
    matching.deliver("request.updated", {**SHOPPING, "request_id": request_id, "support_type": "shopping"})
    assert matching.request(request_id).support_type == "shopping"
    rerun = client.post(f"/matches/{request_id}/rerun", headers=token("coordinator"))
    assert rerun.status_code == 200, rerun.json
    assert [o.status for o in matching.offers(request_id)] == ["open"]
    assert matching.events("offer.made")[-1]["support_type"] == "shopping"


def test_done_with_hours_completes_and_cancel_puts_the_task_back_first_in_line(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    a = register(client, token("coordinator"), "A", "07911123500")
    b = register(client, token("coordinator"), "B", "07911123501", postcode="FY2")
    first = matching.submit()
    offer_a = next(o for o in matching.offers(first) if str(o.volunteer_id) == a["id"])
    matching.reply(a["phone"], "YES", offer_a.code)
    matching.reply(a["phone"], "DONE", offer_a.code, hours=1.5)
    assert matching.request(first).status == "completed"
    [done] = matching.events("task.completed")
    assert (done["hours"], done["volunteer_id"], done["support_type"]) == (1.5, a["id"], "shopping")

    second = matching.submit()
    offer_b = next(o for o in matching.offers(second) if str(o.volunteer_id) == b["id"])
    matching.reply(b["phone"], "YES", offer_b.code)
    matching.reply(b["phone"], "CANCEL", offer_b.code)
    request = matching.request(second)
    assert request.status == "open" and request.urgency == "urgent" and request.given_back
    assert matching.events("task.given_back")[-1]["volunteer_id"] == b["id"]
    again = [o for o in matching.offers(second) if o.status == "open"]
    assert [str(o.volunteer_id) for o in again] == [a["id"]]  # B gave it back, so A is asked


def test_pause_resume_by_sms_and_opting_out_and_back_in(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    v = register(client, token("coordinator"), "Texter", "07911123510")
    matching.reply(v["phone"], "PAUSE")
    assert client.get(f"/volunteers/{v['id']}", headers=token("coordinator")).json["status"] == "paused"
    assert matching.request(matching.submit()).status == "unmatched"
    matching.reply(v["phone"], "RESUME")
    at = "2026-11-25T21:00:00+00:00"
    matching.deliver("contact.opted_out", {"phone": v["phone"], "at": at, "source": "keyword"})
    got = client.get(f"/volunteers/{v['id']}", headers=token("coordinator")).json
    assert got["status"] == "active" and got["sms_opted_out_at"] == at
    assert matching.request(matching.submit()).unmatched_reason == "nobody eligible: 1 opted out of SMS"
    matching.deliver("contact.opted_in", {"phone": v["phone"], "at": at, "source": "keyword"})
    assert matching.request(matching.submit()).status == "open"
    matching.deliver("contact.invalid", {"phone": v["phone"], "at": at, "reason": "21614: not a mobile number"})
    assert matching.request(matching.submit()).unmatched_reason == "nobody eligible: 1 opted out of SMS"


@pytest.mark.parametrize("first", ["sms.failed", "contact.opted_out"])
def test_an_offer_twilio_refused_as_opted_out_ends_withdrawn_whichever_event_comes_first(app_for, token, monkeypatch,
                                                                                       first):
    """Twilio's 21610: notify publishes sms.failed (reason opted_out) and contact.opted_out, which reach matching
    on two queues in either order. Either way the offer is withdrawn once, the next volunteer is asked once, and the
    volunteer's opt-out carries the time notify recorded."""
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    near = register(client, token("coordinator"), "Near", "07911123540")
    further = register(client, token("coordinator"), "Further", "07911123541", postcode="FY4")
    request_id = matching.submit()
    [offer] = matching.offers(request_id)
    assert str(offer.volunteer_id) == near["id"]
    at = "2026-11-25T21:14:00+00:00"
    events = {"sms.failed": {"message_id": str(uuid.uuid4()), "purpose": "offer", "reason": "opted_out",
                             "offer_id": str(offer.id)},
              "contact.opted_out": {"phone": near["phone"], "at": at, "source": "provider"}}
    for event_type in sorted(events, key=lambda name: name != first):
        matching.deliver(event_type, events[event_type])
    first_offer, second_offer = matching.offers(request_id)
    assert (first_offer.status, second_offer.status) == ("withdrawn", "open")
    assert str(second_offer.volunteer_id) == further["id"]
    assert [e["reason"] for e in matching.events("offer.withdrawn")] == ["opted_out"]
    assert len(matching.events("offer.made")) == 2
    got = client.get(f"/volunteers/{near['id']}", headers=token("coordinator")).json
    assert got["sms_opted_out_at"] == at


def test_a_coordinator_records_a_task_done_for_the_volunteer_once_it_is_matched(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    kim = register(client, token("coordinator"), "Kim Phones In", "07911123545")
    request_id = matching.submit()
    done = client.post(f"/matches/{request_id}/done", json={"hours": 2}, headers=token("coordinator"))
    assert done.status_code == 409 and "open" in done.json["detail"]  # nobody holds the task yet
    [offer] = matching.offers(request_id)
    matching.reply(kim["phone"], "YES", offer.code)
    refused = client.post(f"/matches/{request_id}/done", json={"hours": 30}, headers=token("coordinator"))
    assert refused.status_code == 422 and refused.json["errors"][0]["field"] == "hours"
    assert client.post(f"/matches/{request_id}/done", json={"hours": 2}, headers=token("manager")).status_code == 403
    assert client.post(f"/matches/{request_id}/done", json={"hours": 2},
                       headers=token("coordinator")).status_code == 204
    assert (matching.request(request_id).status, matching.offers(request_id)[0].hours) == ("completed", 2)
    [completed] = matching.events("task.completed")
    assert (completed["volunteer_id"], completed["hours"]) == (kim["id"], 2)
    again = client.post(f"/matches/{request_id}/done", json={"hours": 2}, headers=token("coordinator"))
    assert again.status_code == 409 and len(matching.events("task.completed")) == 1


def test_an_expiring_check_is_reminded_once(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    expires = date(2030, 3, 1)
    register(client, token("coordinator"), "Soon", "07911123520", checks=[
        {"check": "criminal_record", "done_on": "2026-03-01", "expires_on": expires.isoformat()}])
    for today, reminded in ((expires - timedelta(days=31), 0), (expires - timedelta(days=30), 1),
                            (expires - timedelta(days=29), 0)):
        with matching.uow() as uow:
            assert service_layer.remind_expiring_checks(uow, today) == reminded
    [event] = matching.events("volunteer.check_expiring")
    assert (event["check"], event["expires_on"]) == ("criminal_record", "2030-03-01")


def test_two_yes_replies_at_the_same_moment_on_two_workers_assign_exactly_one_volunteer(app_for, token, backend):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    a = register(client, token("coordinator"), "A", "07911123530")
    b = register(client, token("coordinator"), "B", "07911123531", postcode="FY2")
    request_id = matching.submit()
    codes = {str(o.volunteer_id): o.code for o in matching.offers(request_id)}
    replies = [make_event("sms.received", {"message_sid": f"SM{n}", "from_phone": v["phone"],
                                           "to_phone": "+447700900000", "body": f"YES {codes[v['id']]}",
                                           "keyword": "YES", "code": codes[v["id"]]}) for n, v in enumerate((a, b))]
    second_app = app_for("matching")
    with running_worker(app, "matching"), running_worker(second_app, "matching"):
        start = threading.Barrier(2)

        def send(envelope):
            start.wait()
            publish(envelope, "sms.received")

        senders = [threading.Thread(target=send, args=(r,)) for r in replies]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        wait_for("both replies to be handled", lambda: {o.status for o in matching.offers(request_id)} == {
            "accepted", "withdrawn"}, timeout=30)
    offers = matching.offers(request_id)
    assert sorted(o.status for o in offers) == ["accepted", "withdrawn"]
    assert len(matching.events("offer.accepted")) == 1 and len(matching.events("request.matched")) == 1


def test_only_one_process_holds_the_timer_lock_and_another_takes_over_when_it_goes(app_for):
    from services.matching.entrypoints.timers import TimerLock

    contexts = [app_for("matching").extensions["ccs"] for _ in range(2)]
    first, second = (TimerLock(c.engine, c.settings) for c in contexts)
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        first.release()
        assert second.acquire() is True
    finally:
        first.release()
        second.release()


def test_the_scheduler_expires_offers_that_were_sent_and_not_answered(app_for, token, monkeypatch):
    from services.matching.domain import Offer
    from services.matching.entrypoints.timers import run_timers

    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    register(client, token("coordinator"), "A", "07911123540")
    register(client, token("coordinator"), "B", "07911123541", postcode="FY2")
    request_id = matching.submit()
    with matching.sessions.begin() as session:
        offer = session.scalars(sa.select(Offer)).one()
        offer.sent_at, offer.expires_at = utcnow() - timedelta(hours=1), utcnow() - timedelta(minutes=30)
    context, stop = app.extensions["ccs"], threading.Event()
    timers = threading.Thread(target=run_timers, args=(context.engine, context.uow, context.settings, stop, 0.2))
    timers.start()
    try:
        wait_for("the offer to expire and B to be asked", lambda: [o.status for o in matching.offers(request_id)]
                 == ["expired", "open"])
    finally:
        stop.set()
        timers.join(timeout=10)
    assert not timers.is_alive()


def test_a_weekly_request_is_one_task_per_occurrence_and_the_same_volunteer_is_asked_first(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    regular = register(client, token("coordinator"), "Regular", "07911123550", postcode="FY2")
    nearer = register(client, token("coordinator"), "Nearer", "07911123551")
    request_id = matching.submit(repeat_every_weeks=1, repeat_occurrences=3)

    def open_offers():
        return {str(o.volunteer_id): o for o in matching.offers(request_id) if o.status == "open"}

    assert set(open_offers()) == {regular["id"], nearer["id"]}  # the first occurrence goes to the batch
    matching.reply(regular["phone"], "YES", open_offers()[regular["id"]].code)
    accepted = next(o for o in matching.offers(request_id) if o.status == "accepted")
    matching.reply(regular["phone"], "DONE", accepted.code, hours=2)

    second = open_offers()
    assert list(second) == [regular["id"]]  # only the regular is asked first, though the other is nearer
    assert second[regular["id"]].occurrence == 2
    assert matching.request(request_id).window_start == TOMORROW + timedelta(weeks=1)
    matching.reply(regular["phone"], "NO", second[regular["id"]].code)
    assert list(open_offers()) == [nearer["id"]]  # they said no this time: the next batch
    matching.reply(nearer["phone"], "YES", open_offers()[nearer["id"]].code)
    matching.reply(nearer["phone"], "DONE", next(o for o in matching.offers(request_id) if o.status == "accepted").code)

    third = open_offers()
    assert list(third) == [nearer["id"]] and third[nearer["id"]].occurrence == 3
    matching.reply(nearer["phone"], "YES", third[nearer["id"]].code)
    matching.reply(nearer["phone"], "DONE", third[nearer["id"]].code, hours=1)
    assert matching.request(request_id).status == "completed"
    done = matching.events("task.completed")
    assert [(e["occurrence"], e["occurrences"], e["hours"]) for e in done] == [(1, 3, 2.0), (2, 3, None), (3, 3, 1.0)]


def test_the_weekly_cap_counts_the_tasks_a_volunteer_holds_in_that_week_not_every_occurrence(app_for, token):
    """Each task of a recurring request counts in the week of its own occurrence: a volunteer who did the first
    two weeks of a weekly request holds one task in the third week, not three."""
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    regular = register(client, token("coordinator"), "Regular", "07911123590", weekly_cap=2)
    weekly = matching.submit(repeat_every_weeks=1, repeat_occurrences=3)
    for occurrence in (1, 2):
        [offer] = [o for o in matching.offers(weekly) if o.status == "open"]
        assert (str(offer.volunteer_id), offer.occurrence) == (regular["id"], occurrence)
        matching.reply(regular["phone"], "YES", offer.code)
        matching.reply(regular["phone"], "DONE", offer.code)

    request = matching.request(weekly)  # the third week: two tasks held, in the first and second weeks
    assert (request.status, request.occurrence, request.unmatched_reason) == ("open", 3, None)
    [third] = [o for o in matching.offers(weekly) if o.status == "open"]
    assert (str(third.volunteer_id), third.occurrence) == (regular["id"], 3)
    matching.reply(regular["phone"], "YES", third.code)

    def one_off(weeks: int) -> str:
        start = TOMORROW + timedelta(weeks=weeks)
        return matching.submit(window_start=start.isoformat(), window_end=(start + timedelta(hours=2)).isoformat())

    second_task = one_off(2)  # one task held that week, the cap is two: asked
    [offer] = matching.offers(second_task)
    assert (str(offer.volunteer_id), offer.status) == (regular["id"], "open")
    matching.reply(regular["phone"], "YES", offer.code)
    assert matching.request(one_off(2)).unmatched_reason == "nobody eligible: 1 at their weekly limit"
    assert [str(o.volunteer_id) for o in matching.offers(one_off(1))] == [regular["id"]]  # one task that week


def test_assigning_a_later_occurrence_of_a_weekly_request_offers_that_occurrence(app_for, token):
    """Offers are made in one place: a coordinator's assignment makes the offer for the occurrence being matched,
    as matching's own offers are, and withdraws the offer of that occurrence it replaces."""
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    regular = register(client, token("coordinator"), "Regular", "07911123560", postcode="FY2")
    other = register(client, token("coordinator"), "Other", "07911123561")
    request_id = matching.submit(repeat_every_weeks=1, repeat_occurrences=3)
    first = next(o for o in matching.offers(request_id) if str(o.volunteer_id) == regular["id"])
    matching.reply(regular["phone"], "YES", first.code)
    matching.reply(regular["phone"], "DONE", first.code)
    [asked] = [o for o in matching.offers(request_id) if o.status == "open"]
    assert (str(asked.volunteer_id), asked.occurrence) == (regular["id"], 2)

    answer = client.post(f"/matches/{request_id}/assign", json={"volunteer_id": other["id"]},
                         headers=token("coordinator"))
    assert answer.status_code == 200 and answer.json["status"] == "matched"
    [assigned] = [o for o in matching.offers(request_id) if o.status == "accepted"]
    assert (str(assigned.volunteer_id), assigned.occurrence, assigned.round) == (other["id"], 2, 1)
    assert next(o for o in matching.offers(request_id) if o.id == asked.id).status == "withdrawn"
    accepted = matching.events("offer.accepted")[-1]
    assert (accepted["offer_id"], accepted["volunteer_id"], accepted["by"]) == (
        str(assigned.id), other["id"], "coordinator")
    assert str(assigned.id) not in {e["offer_id"] for e in matching.events("offer.made")}  # accepted at once

    matching.reply(other["phone"], "DONE", assigned.code)  # the assigned task is this occurrence's, done
    assert [(e["occurrence"], e["volunteer_id"]) for e in matching.events("task.completed")] == [
        (1, regular["id"]), (2, other["id"])]
    assert matching.request(request_id).occurrence == 3


def test_every_withdrawn_offer_names_its_community_and_the_volunteers_language(app_for, token):
    """notify keeps a withdrawal's text to the community's quiet hours and sender number, in the volunteer's
    language: whether the offer was taken by another, cancelled while open, or cancelled after acceptance."""
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    polish = register(client, token("coordinator"), "Ola", "07911123570", languages=["pl", "en"])
    english = register(client, token("coordinator"), "Ed", "07911123571", postcode="FY2")
    language = {polish["id"]: "pl", english["id"]: "en"}

    taken = matching.submit()
    matching.reply(polish["phone"], "YES", next(o.code for o in matching.offers(taken)
                                                if str(o.volunteer_id) == polish["id"]))
    cancelled_open = matching.submit()
    matching.deliver("request.cancelled", {"request_id": cancelled_open, "reason": "arranged"})
    cancelled_accepted = matching.submit()
    matching.reply(english["phone"], "YES", next(o.code for o in matching.offers(cancelled_accepted)
                                                 if str(o.volunteer_id) == english["id"]))
    matching.deliver("request.cancelled", {"request_id": cancelled_accepted, "reason": "arranged"})

    withdrawn = matching.events("offer.withdrawn")
    assert sorted((e["request_id"], e["volunteer_id"], e["reason"]) for e in withdrawn) == sorted([
        (taken, english["id"], "taken"), (cancelled_open, polish["id"], "cancelled"),
        (cancelled_open, english["id"], "cancelled"), (cancelled_accepted, polish["id"], "taken"),
        (cancelled_accepted, english["id"], "cancelled")])
    assert all(e["community"] == "fylde-coast" for e in withdrawn)
    assert all(e["language"] == language[e["volunteer_id"]] for e in withdrawn)


def test_the_policy_is_read_from_the_environment_once_and_a_number_it_cannot_use_is_named(tmp_path, monkeypatch):
    from services.matching.bootstrap import MatchingSettings
    from services.matching.domain import Policy
    from shared.config import SettingsError

    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    settings = MatchingSettings.from_env({"CCS_OFFER_BATCH": "1", "CCS_MAX_ROUNDS": "2",
                                          "CCS_REQUEST_RADIUS_KM": "7.5", "CCS_OFFER_MINUTES": "45"})
    assert settings.service == "matching" and settings.policy == Policy(
        batch_size=1, max_rounds=2, request_radius_km=7.5, offer_minutes={"routine": 45, "soon": 30, "urgent": 15})
    assert MatchingSettings.from_env({}).policy == Policy()
    for name, value in (("CCS_OFFER_BATCH", "lots"), ("CCS_MAX_ROUNDS", "0"), ("CCS_REQUEST_RADIUS_KM", "-1"),
                        ("CCS_OFFER_MINUTES", "1.5")):
        with pytest.raises(SettingsError, match=name):
            MatchingSettings.from_env({name: value})


def test_a_volunteer_is_shown_with_their_tasks_in_the_api_and_on_the_roster_pages(app_for, token):
    from shared.web import claims_for

    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    soon = (date.today() + timedelta(days=10)).isoformat()
    ana = register(client, token("coordinator"), "Ana Pages", "07911123580", checks=[
        *SAFEGUARDING, {"check": "criminal_record", "done_on": "2026-01-01", "expires_on": soon}])
    request_id = matching.submit()
    [offer] = matching.offers(request_id)
    matching.reply(ana["phone"], "YES", offer.code)

    detail = client.get(f"/volunteers/{ana['id']}", headers=token("coordinator")).json
    assert (detail["name"], detail["active"]) == ("Ana Pages", True)
    assert [(t["offer_id"], t["code"], t["status"]) for t in detail["tasks"]] == [(str(offer.id), offer.code,
                                                                                  "accepted")]
    with client.session_transaction() as session:
        session["user"] = claims_for("test", "coordinator", ["fylde-coast"])
    roster = client.get("/roster")
    assert roster.status_code == 200
    assert "Ana Pages</a>: Criminal record check" in roster.get_data(as_text=True)
    page = client.get(f"/roster/{ana['id']}")
    assert page.status_code == 200 and offer.code in page.get_data(as_text=True)
    assert "(expiring)" in page.get_data(as_text=True)
    assert client.get(f"/roster/{uuid.uuid4()}").status_code == 404
    assert client.get("/roster/import").status_code == 200


def test_a_new_offers_codes_are_checked_through_the_index_of_codes_in_use_not_every_offer_made(app_for):
    """Checking a batch's codes reads the index of open and accepted offers' codes (its condition is the query's),
    so the check does not grow with every offer ever made."""
    from services.matching.adapters import _codes_in_use

    engine = app_for("matching").extensions["ccs"].engine
    query = _codes_in_use(["1234", "5678"]).compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":  # an empty table is read whole; without that choice, the plan
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {query}").scalars())
        else:
            plan = "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
    assert "ix_offers_code_in_use" in plan, plan
