"""Training sessions (issue 16): a coordinator schedules one and invites applicants and volunteers, each texted the
topic, day and place with a code of their own (never an offer's); YES books a place until the session is full
(then the waiting list), NO declines, a bare YES with an offer also open asks which; attendance grants the
session's check (a volunteer at once, an applicant when approved) and tells metrics a keyed digest of the phone,
never the phone; public sessions take sign-ups by SMS. Intake, matching and notify on both backends, the bus played
through their real handlers (`system`, from test_withdrawals)."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from shared.contracts import load_event
from tests.integration.test_withdrawals import system  # noqa: F401 (the fixture)

STARTS = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(second=0, microsecond=0)  # attended: begun
SESSION = {"topic": "Bereavement support", "starts_at": STARTS.isoformat(), "place": "Blackpool Library",
           "trainer": "Dr Rivera", "capacity": 1, "grants": "bereavement_training"}
ADA, VAL = "+447911123581", "+447911123582"


def schedule(s, **changes) -> dict:
    answer = s.client("matching").post("/training/sessions", json={**SESSION, **changes}, headers=s.headers)
    assert answer.status_code == 201, answer.json
    return answer.json


def applicant_at_training(s, name: str, phone: str) -> str:
    """Someone applies on the public API and a coordinator moves them on to training; their id."""
    client = s.client("matching")
    assert client.post("/applicants", json={"community": "fylde-coast", "name": name, "phone": phone,
                                            "postcode": "FY1 1AA", "kinds": ["bereavement_visit"],
                                            "consent": True}).status_code == 202
    [found] = [a for a in client.get("/applicants", headers=s.headers).json if a["phone"] == phone]
    for stage in ("contacted", "checks", "training"):
        assert client.post(f"/applicants/{found['id']}/stage", json={"stage": stage},
                           headers=s.headers).status_code == 200
    return found["id"]


def invite(s, session_id: str, **who) -> dict:
    answer = s.client("matching").post(f"/training/sessions/{session_id}/invitations", json=who, headers=s.headers)
    assert answer.status_code == 200, answer.json
    s.carry()
    s.send()
    return answer.json


def code_in(body: str) -> str:
    return re.search(r"YES (\d{4})", body).group(1)


def test_invited_by_sms_yes_books_until_full_no_declines_and_attendance_grants_the_check(system):  # noqa: F811
    s = system(batch=1)
    client = s.client("matching")
    bad = client.post("/training/sessions", json={**SESSION, "place": None, "capacity": 0, "grants": "Juggling!"},
                      headers=s.headers)
    assert bad.status_code == 422 and bad.content_type == "application/problem+json"
    assert {e["field"] for e in bad.json["errors"]} == {"capacity", "grants"}, bad.json
    unknown = client.post("/training/sessions", json={**SESSION, "grants": "juggling"}, headers=s.headers)
    assert unknown.status_code == 422 and [e["field"] for e in unknown.json["errors"]] == ["grants"], unknown.json
    assert "Not a check of this community" in unknown.json["detail"]
    session = schedule(s)
    ada = applicant_at_training(s, "Ada Applicant", ADA)
    val = s.volunteer("Val Volunteer", VAL)

    invited = invite(s, session["id"], applicants=[ada], volunteers=[val["id"]])
    assert [(i["who"], i["status"]) for i in invited["invitations"]] == [("Applicant", "invited"),
                                                                         ("Volunteer", "invited")]
    [ada_text] = [b for b in s.gateway.to(ADA) if b.startswith("You're invited")]
    [val_text] = s.gateway.to(VAL)
    for body, invitation in zip((ada_text, val_text), invited["invitations"]):
        assert body.startswith("You're invited: Bereavement support, ") and "Blackpool Library" in body
        assert f"YES {invitation['code']}" in body
        assert "Ada" not in body and "Val" not in body  # topic, day and place only
    assert invited["invitations"][0]["code"] != invited["invitations"][1]["code"]
    [event] = [row for row in s.outbox("matching") if row.event_type == "training.invited"][:1]
    s.dispatch["notify"](load_event(event.body))  # redelivered: texted once
    assert s.send() == 0

    s.text(ADA, "yes")  # bare: her only invitation
    s.carry()
    s.send()
    assert s.gateway.to(ADA)[-1].startswith("Thank you, you're booked: Bereavement support")
    s.text(VAL, f"Oui {code_in(val_text)}")  # the one place is taken: the waiting list
    s.carry()
    s.send()
    assert s.gateway.to(VAL)[-1].startswith("Sorry, Bereavement support on ")
    assert "waiting list" in s.gateway.to(VAL)[-1]
    seen = client.get(f"/training/sessions/{session['id']}", headers=s.headers).json
    assert [i["status"] for i in seen["invitations"]] == ["accepted", "waiting"] and seen["taken"] == 1
    s.text(VAL, f"NO {code_in(val_text)}")
    s.carry()
    s.send()
    assert s.gateway.to(VAL)[-1].startswith("Thank you: we've noted you can't come to Bereavement support")

    attended = client.post(f"/training/sessions/{session['id']}/attendance",
                           json={"invitations": [i["id"] for i in seen["invitations"]]}, headers=s.headers)
    assert attended.status_code == 200, attended.json
    day = STARTS.astimezone(ZoneInfo("Europe/London")).date().isoformat()  # the day in Fylde Coast
    assert [i["attended_on"] for i in attended.json["invitations"]] == [day, day]
    checks = {c["check"]: c for c in client.get(f"/volunteers/{val['id']}", headers=s.headers).json["checks"]}
    assert checks["bereavement_training"]["done_on"] == day and checks["bereavement_training"]["expires_on"] is None
    facts = s.events("matching", "training.attended")
    assert len(facts) == 2 and len({f["attendee"] for f in facts}) == 2
    assert not any(ADA in str(f) or VAL in str(f) for f in facts)  # a digest, never the phone
    again = client.post(f"/training/sessions/{session['id']}/attendance",
                        json={"invitations": [i["id"] for i in seen["invitations"]]}, headers=s.headers)
    assert again.status_code == 200 and len(s.events("matching", "training.attended")) == 2  # nothing twice

    approved = client.post(f"/applicants/{ada}/stage", json={"stage": "approved"}, headers=s.headers).json
    volunteer = client.get(f"/volunteers/{approved['volunteer_id']}", headers=s.headers).json
    assert [(c["check"], c["done_on"]) for c in volunteer["checks"]] == [("bereavement_training", day)]
    assert client.post(f"/training/sessions/{session['id']}/attendance", json={"invitations": [ada]},
                       headers=s.headers).status_code == 404  # not an invitation of this session
    later = schedule(s, starts_at=(STARTS + timedelta(days=7)).isoformat())
    invited = invite(s, later["id"], volunteers=[val["id"]])
    early = client.post(f"/training/sessions/{later['id']}/attendance",
                        json={"invitations": [invited["invitations"][0]["id"]]}, headers=s.headers)
    assert early.status_code == 409 and "once the session has begun" in early.json["detail"]


def test_an_invitations_code_never_answers_an_offer_and_a_bare_yes_with_both_open_asks_which(system):  # noqa: F811
    s = system(batch=1)
    val = s.volunteer("Val Volunteer", VAL)
    request_id = s.request()
    s.carry()
    s.send()
    offer_code = code_in(s.gateway.to(VAL)[0])
    session = schedule(s)
    invited = invite(s, session["id"], volunteers=[val["id"]])
    invitation_code = invited["invitations"][0]["code"]
    assert invitation_code != offer_code

    s.text(VAL, "YES")  # an offer and an invitation open: which?
    s.carry()
    s.send()
    assert s.gateway.to(VAL)[-1].startswith("You have more than one offer open")
    assert offer_code in s.gateway.to(VAL)[-1] and invitation_code in s.gateway.to(VAL)[-1]
    s.text(VAL, f"YES {invitation_code}")
    s.carry()
    assert s.offers(request_id)[VAL].status == "open"  # the invitation's code accepted no offer
    seen = s.client("matching").get(f"/training/sessions/{session['id']}", headers=s.headers).json
    assert seen["invitations"][0]["status"] == "accepted"
    s.text(VAL, f"YES {offer_code}")
    s.carry()
    assert s.offers(request_id)[VAL].status == "accepted"
    assert s.client("matching").get(f"/training/sessions/{session['id']}", headers=s.headers).json[
        "invitations"][0]["answered_at"] == seen["invitations"][0]["answered_at"]  # the offer's code left it alone


def test_the_public_sign_up_to_a_future_life_planning_session_by_sms_and_are_counted_once_each(system):  # noqa: F811
    s = system(batch=1)
    client = s.client("matching")
    bad = client.post("/training/sessions", json={**SESSION, "public": "future_life_planning"}, headers=s.headers)
    assert bad.status_code == 422 and [e["field"] for e in bad.json["errors"]] == ["grants"]
    session = schedule(s, topic="Future Life Planning", public="future_life_planning", grants=None, capacity=2)
    code = session["code"]
    public = "+447911123583"
    s.text(public, f"YES {code}")
    s.carry()
    s.send()
    assert s.gateway.to(public)[-1].startswith("Thank you, you're booked: Future Life Planning")
    refused = client.post(f"/training/sessions/{session['id']}/invitations",
                          json={"people": [{"phone": "12"}]}, headers=s.headers)
    assert refused.status_code == 422 and refused.json["errors"][0]["field"].startswith("people")
    added = invite(s, session["id"], people=[{"phone": "07911 123584", "name": "Sam Public"}])
    assert [(i["who"], i["status"], i["name"]) for i in added["invitations"]] == [
        ("Public", "accepted", None), ("Public", "accepted", "Sam Public")]
    s.text("+447911123585", f"YES {code}")  # a third: full
    s.carry()
    s.send()
    assert "waiting list" in s.gateway.to("+447911123585")[-1]
    ids = [i["id"] for i in client.get(f"/training/sessions/{session['id']}", headers=s.headers).json[
        "invitations"]][:2]
    assert client.post(f"/training/sessions/{session['id']}/attendance", json={"invitations": ids},
                       headers=s.headers).status_code == 200
    facts = s.events("matching", "training.attended")
    assert [(f["public"], f["granted"]) for f in facts] == [("future_life_planning", None)] * 2
    assert len({f["attendee"] for f in facts}) == 2
    assert date.fromisoformat(facts[0]["attended_on"]) == STARTS.astimezone(ZoneInfo("Europe/London")).date()


def test_people_accessing_education_are_counted_once_each_small_counts_suppressed_and_no_digest_leaves(
        app_for, token, monkeypatch):
    """Metrics counts distinct attendees of public sessions (by the keyed digest), not headcount: the same person at
    two sessions is one; volunteer training is not public education; 1 to 4 reads "<5" in the API and the CSV."""
    import csv
    import io

    from shared.contracts import EXAMPLES
    from tests.integration.test_metrics import TODAY, Metrics

    monkeypatch.delenv("CCS_SUPPRESS_BELOW", raising=False)
    metrics = Metrics(app_for("metrics"))
    example = EXAMPLES[("training.attended", 1)]

    def attended(person: int, public: str | None = "future_life_planning", times: int = 1) -> None:
        metrics.deliver("training.attended", {**example, "invitation_id": str(uuid.uuid4()), "public": public,
                                              "attendee": f"{person:064x}", "attended_on": TODAY.isoformat()},
                        times=times)

    for person in range(3):
        attended(person)
    attended(0, "dying_matters")  # the same person at a second session
    attended(9, None)  # volunteer training: not public education
    measures = metrics.today(token("manager"))["measures"]
    assert measures["education_reached"] == "<5"
    for person in range(3, 6):
        attended(person, times=2)  # a redelivered event counts once
    assert metrics.today(token("manager"))["measures"]["education_reached"] == 6
    sheet = metrics.client.get("/activity.csv", headers=token("manager"), query_string={"period": "day"})
    rows = list(csv.reader(io.StringIO(sheet.get_data(as_text=True))))
    assert [TODAY.isoformat(), TODAY.isoformat(), "People accessing education (each once, at public sessions)",
            "6", "0"] in rows
    assert f"{0:064x}" not in sheet.get_data(as_text=True)
