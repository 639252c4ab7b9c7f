"""Applying to volunteer (issue 16): the public page per community, its acknowledgement by SMS, its honeypot and
hourly limit per address, JOIN by SMS, and the coordinators' pipeline from applied to approved (then a volunteer
who can be offered a task) or declined with a reason. Intake, matching and notify on both backends, the bus played
through their real handlers (`system`, from test_withdrawals)."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from services.matching.domain import Applicant
from shared.contracts import load_event
from tests.integration.test_matching import SAFEGUARDING
from tests.integration.test_security import csrf_of, signed_in
from tests.integration.test_withdrawals import system  # noqa: F401 (the fixture)

PAGE = "/join/fylde-coast"
FORM = {"name": "Ada Applicant", "phone": "07911 123481", "postcode": "FY1 1AA", "kinds": ["shopping", "meals"],
        "consent": "yes"}
PHONE = "+447911123481"
ACKNOWLEDGED = ("Thank you for applying to volunteer with Fylde Coast. A coordinator will be in touch soon.")


def apply(client, form: dict, address: str = "203.0.113.5"):
    """Fill in the public page as someone would (its CSRF token from the page), from one address."""
    token = csrf_of(client.get(PAGE).get_data(as_text=True))
    return client.post(PAGE, data={**form, "csrf_token": token}, headers={"X-Forwarded-For": address})


def stored(s) -> list[Applicant]:
    with s.apps["matching"].extensions["ccs"].sessions() as session:
        return session.scalars(sa.select(Applicant).order_by(Applicant.applied_at)).all()


def move(coordinator, applicant_id, stage: str, reason: str = ""):
    """A coordinator's move on the applicant's page."""
    token = csrf_of(coordinator.get(f"/applicants/{applicant_id}").get_data(as_text=True))
    return coordinator.post(f"/applicants/{applicant_id}/move",
                            data={"stage": stage, "reason": reason, "csrf_token": token})


def test_an_applicant_is_texted_moved_to_approved_by_a_coordinator_then_offered_a_task(system):  # noqa: F811
    s = system(batch=1)
    public = s.client("matching")
    page = public.get(PAGE)
    assert page.status_code == 200 and "Volunteer with Fylde Coast" in page.get_data(as_text=True)
    assert public.get("/join/nowhere").status_code == 404

    wrong = apply(public, {"phone": "12", "postcode": "ZZ99 9ZZ", "website": ""})
    assert wrong.status_code == 422
    text = wrong.get_data(as_text=True)
    for field, says in {"name": "Your name is needed.", "phone": "is not", "postcode": "",
                        "kinds": "Choose at least one.", "consent": "Tick to say you agree"}.items():
        beside = re.search(rf'<span class="error" id="{field}-error">([^<]*)</span>', text)
        assert beside is not None and says in beside.group(1), (field, text[:3000])
    assert stored(s) == []

    done = apply(public, FORM)
    assert (done.status_code, done.headers["Location"]) == (303, "/join/fylde-coast/thanks")
    assert "Thank you for applying" in public.get(done.headers["Location"]).get_data(as_text=True)
    [ada] = stored(s)
    assert (ada.name, ada.phone, ada.stage, ada.kinds, ada.community) == (
        "Ada Applicant", PHONE, "applied", ["shopping", "meals"], "fylde-coast")

    s.carry()
    s.send()
    assert s.gateway.to(PHONE) == [ACKNOWLEDGED]
    applied = [row for row in s.outbox("matching") if row.event_type == "applicant.applied"]
    assert [r.body["payload"] for r in applied] == [{"applicant_id": str(ada.id), "community": "fylde-coast",
                                                    "phone": PHONE, "language": "en"}]  # no name on the bus
    s.dispatch["notify"](load_event(applied[0].body))  # redelivered: texted once
    assert s.send() == 0 and s.gateway.to(PHONE) == [ACKNOWLEDGED]

    coordinator = signed_in(s.apps["matching"], "coordinator")
    board = coordinator.get("/applicants/board").get_data(as_text=True)
    assert "Ada Applicant" in board and "waiting too long" not in board
    assert public.get("/applicants/board").status_code == 302  # the board needs sign-in

    for stage in ("contacted", "checks", "training"):
        moved = move(coordinator, ada.id, stage)
        assert (moved.status_code, moved.headers["Location"]) == (303, f"/applicants/{ada.id}")
    out_of_order = move(coordinator, ada.id, "contacted")
    assert out_of_order.status_code == 409 and "moves on to approved next" in out_of_order.get_data(as_text=True)

    # in training, still an applicant: a request is offered to nobody, for nobody is a volunteer
    before = s.request()
    s.carry()
    assert s.offers(before) == {}

    approved = move(coordinator, ada.id, "approved")
    assert approved.status_code == 303
    volunteer_id = approved.headers["Location"].removeprefix("/roster/")
    volunteer = s.client("matching").get(f"/volunteers/{volunteer_id}", headers=s.headers).json
    assert (volunteer["name"], volunteer["phone"], volunteer["status"], volunteer["skills"]) == (
        "Ada Applicant", PHONE, "active", ["cooking", "practical"])
    roster = coordinator.get("/roster").get_data(as_text=True)
    assert "Ada Applicant" in roster
    [ada] = stored(s)
    assert [(c.previous, c.stage, c.actor) for c in ada.history] == [
        ("applied", "contacted", "coordinator@example.org"), ("contacted", "checks", "coordinator@example.org"),
        ("checks", "training", "coordinator@example.org"), ("training", "approved", "coordinator@example.org")]
    assert move(coordinator, ada.id, "declined", "too late").status_code == 409

    # with the check a coordinator records, the new volunteer is offered a task
    checked = s.client("matching").patch(f"/volunteers/{volunteer_id}", headers=s.headers,
                                         json={"checks": SAFEGUARDING})
    assert checked.status_code == 200, checked.json
    after = s.request()
    s.carry()
    assert list(s.offers(after)) == [PHONE]


def test_a_filled_honeypot_is_thanked_and_nothing_is_kept(system):  # noqa: F811
    s = system(batch=1)
    answer = apply(s.client("matching"), {**FORM, "website": "http://spam.example"})
    assert (answer.status_code, answer.headers["Location"]) == (303, "/join/fylde-coast/thanks")
    api = s.client("matching").post("/applicants", json={"community": "fylde-coast", "name": "Bot", "phone": PHONE,
                                                         "postcode": "FY1", "kinds": ["shopping"], "consent": True,
                                                         "website": "spam"})
    assert api.status_code == 202
    assert stored(s) == [] and s.events("matching", "applicant.applied") == []


def test_the_eleventh_application_from_one_address_in_an_hour_is_refused_and_not_kept(system):  # noqa: F811
    s = system(batch=1)
    public = s.client("matching")
    for n in range(10):
        answer = apply(public, {**FORM, "phone": f"07911 1235{n:02d}"}, address="198.51.100.7")
        assert answer.status_code == 303, n
    refused = apply(public, {**FORM, "phone": "07911 123599"}, address="198.51.100.7")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3600"
    assert "Too many applications" in refused.get_data(as_text=True)
    api = public.post("/applicants", headers={"X-Forwarded-For": "198.51.100.7"},
                      json={"community": "fylde-coast", "name": "Eve", "phone": "07911 123598", "postcode": "FY1",
                            "kinds": ["shopping"], "consent": True})
    assert api.status_code == 429 and api.mimetype == "application/problem+json"
    assert len(stored(s)) == 10 and "+447911123599" not in {a.phone for a in stored(s)}
    assert len(s.events("matching", "applicant.applied")) == 10
    elsewhere = apply(public, {**FORM, "phone": "07911 123597"}, address="198.51.100.8")
    assert elsewhere.status_code == 303 and len(stored(s)) == 11


def test_a_coordinator_declines_with_a_reason_and_other_communities_see_nothing(system, token):  # noqa: F811
    s = system(batch=1)
    matching = s.client("matching")
    applied = matching.post("/applicants", json={"community": "fylde-coast", "name": "Dee", "phone": "07911 123482",
                                                 "postcode": "FY1", "kinds": ["home_visit"], "consent": False})
    assert applied.status_code == 422 and [e["field"] for e in applied.json["errors"]] == ["consent"]
    applied = matching.post("/applicants", json={"community": "fylde-coast", "name": "Dee", "phone": "07911 123482",
                                                 "postcode": "FY1", "kinds": ["home_visit"], "consent": True})
    assert applied.status_code == 202, applied.json
    [dee] = matching.get("/applicants", headers=s.headers).json
    assert dee["stage"] == "applied" and dee["waiting_too_long"] is False

    ottawa = token("coordinator", communities=("ottawa-west",))
    assert matching.get("/applicants", headers=ottawa).json == []
    stranger = matching.post(f"/applicants/{dee['id']}/stage", headers=ottawa, json={"stage": "contacted"})
    assert stranger.status_code == 404
    for role in ("manager", "referrer"):
        assert matching.get("/applicants", headers=token(role)).status_code == 403
        assert matching.post(f"/applicants/{dee['id']}/stage", headers=token(role),
                             json={"stage": "contacted"}).status_code == 403
    other = signed_in(s.apps["matching"], "coordinator", ("ottawa-west",))
    assert other.get(f"/applicants/{dee['id']}").status_code == 404
    assert "Dee" not in other.get("/applicants/board").get_data(as_text=True)

    no_reason = matching.post(f"/applicants/{dee['id']}/stage", headers=s.headers, json={"stage": "declined"})
    assert no_reason.status_code == 422 and [e["field"] for e in no_reason.json["errors"]] == ["reason"]
    skipped = matching.post(f"/applicants/{dee['id']}/stage", headers=s.headers, json={"stage": "training"})
    assert skipped.status_code == 409
    declined = matching.post(f"/applicants/{dee['id']}/stage", headers=s.headers,
                             json={"stage": "declined", "reason": "Not able to commit to regular visits"})
    assert declined.status_code == 200, declined.json
    assert (declined.json["stage"], declined.json["reason"], declined.json["volunteer_id"]) == (
        "declined", "Not able to commit to regular visits", None)
    assert [(h["previous"], h["stage"], h["reason"]) for h in declined.json["history"]] == [
        ("applied", "declined", "Not able to commit to regular visits")]
    assert matching.get("/volunteers", headers=s.headers).json == []
    assert [a["id"] for a in matching.get("/applicants", query_string={"stage": "declined"},
                                          headers=s.headers).json] == [dee["id"]]


def test_an_applicant_waiting_longer_than_the_community_allows_is_marked_on_the_board(system):  # noqa: F811
    s = system(batch=1)
    assert apply(s.client("matching"), FORM).status_code == 303
    [ada] = stored(s)
    with s.apps["matching"].extensions["ccs"].sessions() as session:
        session.execute(sa.update(Applicant).where(Applicant.id == ada.id)
                        .values(stage_since=ada.stage_since - timedelta(days=15)))
        session.commit()
    board = signed_in(s.apps["matching"], "coordinator").get("/applicants/board").get_data(as_text=True)
    assert re.search(r"Ada Applicant.*?15 days <span[^>]*>waiting too long</span>", board, re.S)
    [listed] = s.client("matching").get("/applicants", headers=s.headers).json
    assert listed["waiting_too_long"] is True


def test_join_by_sms_from_an_unknown_number_is_answered_with_the_link_to_the_page(system):  # noqa: F811
    s = system(batch=1)
    stranger = "+447911123483"
    s.text(stranger, "Join")
    s.carry()
    s.send()
    public_url = s.apps["matching"].extensions["ccs"].settings.public_url
    assert s.gateway.to(stranger) == [
        f"Thank you for wanting to volunteer with Fylde Coast! Apply here: {public_url}/join/fylde-coast"]
    assert s.events("matching", "reply.unresolved") == []  # not "we don't recognise this number"


def test_the_coordinators_board_reminds_them_of_applicants_waiting_longer_than_the_community_allows(system):  # noqa: F811
    """Matching's timers count the applicants at their stage longer than `applicant_wait_days` (14 on the Fylde
    Coast) and tell intake when the number changes; the requests board says how many, with a link, until none do."""
    from services.matching.entrypoints import timers

    s = system(batch=1)
    public = s.client("matching")
    for n in range(3):
        assert apply(public, {**FORM, "phone": f"07911 1236{n:02d}"}, address=f"203.0.113.{n}").status_code == 303
    first, second, fresh = stored(s)
    with s.apps["matching"].extensions["ccs"].sessions() as session:  # two of them applied 15 days ago
        for applicant, days in ((first, 15), (second, 15), (fresh, 13)):
            session.execute(sa.update(Applicant.__table__).where(Applicant.id == applicant.id)
                            .values(stage_since=applicant.stage_since - timedelta(days=days)))
        session.commit()
    matching = s.apps["matching"].extensions["ccs"]

    def tell() -> int:
        told = timers.remind_applicants_waiting(matching.uow, matching.settings)
        s.carry()
        return told

    def notice(community: str = "fylde-coast") -> str:
        board = signed_in(s.apps["intake"], "coordinator", communities=(community,)).get("/board")
        found = re.search(r'<p class="notice applicants-waiting">(.*?)</p>', board.get_data(as_text=True), re.S)
        return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split()) if found else ""

    assert notice() == ""
    assert tell() == 1  # the Fylde Coast; the others have none waiting, as they were (never) told
    assert notice() == "2 applicants have waited more than 14 days at their stage. See the applicants"
    assert notice("cheshire-east") == ""  # another community's coordinators are not told of these
    assert tell() == 0 and len(s.events("matching", "applicants.waiting")) == 1  # unchanged: not told again

    coordinator = signed_in(s.apps["matching"], "coordinator")
    assert move(coordinator, first.id, "contacted").status_code == 303  # moved on: waiting afresh
    assert tell() == 1
    assert notice() == "1 applicant has waited more than 14 days at their stage. See the applicants"
    assert move(coordinator, second.id, "withdrawn", "moved away").status_code == 303
    assert tell() == 1 and notice() == ""
    [told] = [e for e in s.events("matching", "applicants.waiting") if e["community"] == "fylde-coast"][-1:]
    assert set(told) == {"community", "waiting_too_long", "wait_days", "as_of"}  # a count: nobody named
