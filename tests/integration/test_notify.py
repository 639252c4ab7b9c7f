"""Notify with its database, on both backends: the signed webhook, replies, opt-outs, what each message says,
quiet hours and reminders with a controllable clock; and the replies matching cannot act on."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from services.notify.adapters import signature_for
from services.notify.entrypoints import handlers
from shared.contracts import EXAMPLES, load_event, make_event
from tests.helpers import dispatcher
from tests.integration.test_matching import Matching, register

VOLUNTEER = "+447911123456"
NEXT_WEEK = (datetime.now(timezone.utc) + timedelta(days=7)).replace(hour=14, minute=0, second=0, microsecond=0)


class Notify:
    """Notify's app, with helpers to text it as Twilio would, deliver events and read what it queued."""

    def __init__(self, app):
        self.app, self.client = app, app.test_client()
        self.dispatch = dispatcher(app, "notify")
        self.sessions = app.extensions["ccs"].sessions
        self.settings = app.extensions["ccs"].settings
        self.uow = app.extensions["ccs"].uow

    def text(self, body: str, phone: str = VOLUNTEER, sid: str | None = None, signature: str | None = None,
             **client_options):
        form = {"From": phone, "To": "+447700900100", "Body": body, "MessageSid": sid or "SM" + uuid.uuid4().hex,
                "AccountSid": "AC" + "0" * 32, "NumMedia": "0"}
        if signature is None:
            signature = signature_for(self.settings, "/sms/inbound", form)
        return self.client.post("/sms/inbound", data=form, headers={"X-Twilio-Signature": signature},
                                **client_options)

    def deliver(self, event_type: str, payload: dict) -> None:
        self.dispatch(load_event(make_event(event_type, payload)))

    def messages(self, purpose: str | None = None) -> list:
        from services.notify.domain import OutgoingMessage

        with self.sessions() as session:
            rows = session.scalars(sa.select(OutgoingMessage).order_by(OutgoingMessage.created_at)).all()
        return [row for row in rows if purpose in (None, row.purpose)]

    def events(self, event_type: str) -> list[dict]:
        from services.notify.adapters import outbox

        with self.sessions() as session:
            rows = session.scalars(sa.select(outbox.table).order_by(outbox.table.id)).all()
        return [row.body["payload"] for row in rows if row.event_type == event_type]


def answer_of(response) -> str:
    """The text of a TwiML answer, or '' when there is none."""
    import xml.etree.ElementTree as ET

    message = ET.fromstring(response.data).find("Message")
    return "" if message is None else message.text


@pytest.fixture
def notify(app_for):
    return Notify(app_for("notify"))


@pytest.fixture
def clock(monkeypatch):
    """Set notify's clock: `clock(datetime)`."""
    def set_to(moment: datetime):
        monkeypatch.setattr(handlers, "utcnow", lambda: moment)
    return set_to


# --- the webhook ---------------------------------------------------------------------------------------------


def test_only_a_correctly_signed_webhook_is_accepted(notify):
    assert notify.text("YES 4821").status_code == 200
    assert notify.text("YES 4821", signature="").status_code == 403
    assert notify.text("YES 4821", signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    form = {"From": VOLUNTEER, "To": "+447700900100", "Body": "YES 4821", "MessageSid": "SM" + uuid.uuid4().hex}
    signed = signature_for(notify.settings, "/sms/inbound", form)
    tampered = notify.client.post("/sms/inbound", data={**form, "Body": "NO 4821"},
                                  headers={"X-Twilio-Signature": signed})
    assert tampered.status_code == 403
    assert tampered.headers["Content-Type"] == "application/problem+json"
    assert len(notify.events("sms.received")) == 1


def test_behind_a_proxy_the_signature_is_checked_against_the_public_url(app_for, monkeypatch):
    monkeypatch.setenv("PUBLIC_URL", "https://ccs.example.org")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "12345678901234567890123456789012")
    notify = Notify(app_for("notify"))
    form = {"From": VOLUNTEER, "To": "+447700900100", "Body": "HELP", "MessageSid": "SM" + uuid.uuid4().hex}
    twilio_signs = RequestValidator("12345678901234567890123456789012").compute_signature(
        "https://ccs.example.org/sms/inbound", form)
    # the request reaches us as http://10.0.0.7:5003 from the proxy, with Twilio's signature for the public URL
    inside = notify.client.post("/sms/inbound", data=form, base_url="http://10.0.0.7:5003",
                                headers={"X-Twilio-Signature": twilio_signs})
    assert inside.status_code == 200 and "Reply YES <code>" in answer_of(inside)
    signed_for_inside = RequestValidator("12345678901234567890123456789012").compute_signature(
        "http://10.0.0.7:5003/sms/inbound", form)
    assert notify.client.post("/sms/inbound", data=form, base_url="http://10.0.0.7:5003",
                              headers={"X-Twilio-Signature": signed_for_inside}).status_code == 403


def test_a_message_twilio_sends_twice_is_kept_and_passed_on_once(notify):
    notify.text("YES 4821", sid="SM" + "1" * 32)
    notify.text("YES 4821", sid="SM" + "1" * 32)
    assert [e["keyword"] for e in notify.events("sms.received")] == ["YES"]


@pytest.mark.parametrize("body, keyword, code, hours, answered", [
    ("yes 4821", "YES", "4821", None, ""),
    ("4821 Y", "YES", "4821", None, ""),
    ("done 4821 1.5h", "DONE", "4821", 1.5, ""),
    ("Fini 4821 2 heures", "DONE", "4821", 2.0, ""),
    ("PAUSE", "PAUSE", None, None, ""),
    ("HELP", "HELP", None, None, "Reply YES <code> to accept an offer"),
    ("yes 482", None, None, None, "did not understand 482: a reference code has 4 digits"),
    ("who is this?", None, None, None, "Sorry, we did not understand your message."),
])
def test_a_reply_is_passed_on_as_understood_and_anything_unclear_is_answered_at_once(notify, body, keyword, code,
                                                                                       hours, answered):
    notify.deliver("offer.made", offer_made(code="4821"))  # we have texted this volunteer before
    response = notify.text(body)
    [received] = notify.events("sms.received")
    assert (received["keyword"], received["code"], received["hours"]) == (keyword, code, hours)
    assert answered in answer_of(response) and bool(answered) == bool(answer_of(response))


def test_a_number_we_never_texted_is_answered_only_for_help_and_by_matching_otherwise(notify):
    assert answer_of(notify.text("who is this?", phone="+447911000999")) == ""
    assert answer_of(notify.text("yes 482", phone="+447911000999")) == ""
    assert "Reply YES <code>" in answer_of(notify.text("HELP", phone="+447911000999"))
    assert len(notify.events("sms.received")) == 3  # all passed on for matching to answer


def test_stop_opts_out_in_our_own_records_and_nothing_more_is_said_until_start(notify):
    from services.notify.domain import Contact

    notify.deliver("offer.made", offer_made())
    assert answer_of(notify.text("Stop")) == ""  # the carrier confirms an opt-out itself
    [opted_out] = notify.events("contact.opted_out")
    assert (opted_out["phone"], opted_out["source"]) == (VOLUNTEER, "keyword")
    with notify.sessions() as session:
        assert session.get(Contact, VOLUNTEER).opted_out_at is not None
    assert answer_of(notify.text("what?")) == ""
    assert answer_of(notify.text("HELP")) == ""
    notify.text("STOP")
    assert len(notify.events("contact.opted_out")) == 1
    notify.text("START")
    assert [e["phone"] for e in notify.events("contact.opted_in")] == [VOLUNTEER]
    with notify.sessions() as session:
        assert session.get(Contact, VOLUNTEER).opted_out_at is None
    assert "Reply YES <code>" in answer_of(notify.text("help"))


# --- what messages say, and when they go ---------------------------------------------------------------------


def offer_made(**changes) -> dict:
    return {**EXAMPLES[("offer.made", 1)], "offer_id": str(uuid.uuid4()), "phone": VOLUNTEER,
            "window_start": NEXT_WEEK.isoformat(), "window_end": (NEXT_WEEK + timedelta(hours=2)).isoformat(),
            "window_days": None, "window_part": None, **changes}


def test_an_offer_says_only_the_kind_district_window_and_code_in_the_volunteers_language(notify):
    notify.deliver("offer.made", offer_made(code="4821"))
    notify.deliver("offer.made", offer_made(code="5532", phone="+16135550123", community="ottawa-west",
                                            area="K2P", language="fr"))
    english, french = notify.messages("offer")
    local = NEXT_WEEK.astimezone(timezone(timedelta(hours=-5)))  # Ottawa in winter
    assert english.body == (f"Can you help? Shopping near FY1, {NEXT_WEEK:%a %d %b} 14:00-16:00. "
                            "Reply YES 4821 to accept or NO 4821 to decline.")
    assert french.body.startswith("Pouvez-vous aider? Courses près de K2P, ")
    assert f"{local:%H:%M}-" in french.body and "OUI 5532" in french.body


def test_the_accepted_volunteer_alone_gets_the_details_the_person_agreed_to_share(notify):
    shared = {**EXAMPLES[("task.details_shared", 1)], "phone": VOLUNTEER}
    notify.deliver("task.details_shared", shared)
    notify.deliver("task.details_shared", {**shared, "offer_id": str(uuid.uuid4()), "code": "5532", "shared": False,
                                           "first_name": None, "address": None, "person_phone": None})
    told, not_told = notify.messages("confirmation")
    assert told.body == ("Thank you! Task 4821 is yours: Margaret, 12 Dickson Road, Blackpool FY1 2AB, "
                         "tel +441253000111. Reply DONE 4821 <hours> when done.")
    assert not_told.body.startswith("Thank you! Task 5532 is yours: your coordinator will call you")
    assert "Margaret" not in not_told.body
    notify.deliver("task.details_shared", shared)  # redelivered: one message still
    assert len(notify.messages("confirmation")) == 2


def test_non_urgent_messages_wait_out_the_communitys_quiet_hours_and_urgent_offers_do_not(app_for, clock,
                                                                                            monkeypatch):
    monkeypatch.delenv("CCS_QUIET_HOURS")
    notify = Notify(app_for("notify"))  # its settings are read once, when the app is made
    late_in_blackpool = datetime(2026, 11, 25, 22, 30, tzinfo=timezone.utc)
    clock(late_in_blackpool)
    notify.deliver("offer.made", offer_made(code="1111"))
    notify.deliver("offer.made", offer_made(code="2222", urgency="urgent"))
    # 22:30 UTC is 17:30 in Ottawa: not quiet there
    notify.deliver("offer.made", offer_made(code="3333", community="ottawa-west", phone="+16135550123"))
    routine, urgent, ottawa = notify.messages("offer")
    assert routine.next_attempt_at == datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
    assert urgent.next_attempt_at is None and ottawa.next_attempt_at is None
    clock(datetime(2026, 11, 26, 3, 30, tzinfo=timezone.utc))  # 22:30 in Ottawa
    notify.deliver("offer.made", offer_made(code="4444", community="ottawa-west", phone="+16135550123"))
    assert notify.messages("offer")[-1].next_attempt_at == datetime(2026, 11, 26, 13, 0, tzinfo=timezone.utc)


def test_an_offer_held_for_the_quiet_hours_says_so_and_the_request_timeline_says_when_it_goes(app_for, clock, token,
                                                                                              monkeypatch):
    """notify says (`sms.held`) when an offer's text waits for morning; intake notes it on the request's timeline
    once for the batch, in the community's time, so nobody reads "offered" as "texted"."""
    from services.intake.domain import SupportRequest
    from tests.integration.test_bus import SHOPPING

    monkeypatch.delenv("CCS_QUIET_HOURS")
    notify = Notify(app_for("notify"))
    clock(datetime(2026, 11, 25, 22, 30, tzinfo=timezone.utc))
    intake = app_for("intake")
    logged = intake.test_client().post("/requests", json=SHOPPING, headers=token("coordinator"))
    assert logged.status_code == 201
    request_id = logged.json["id"]
    for code in ("1111", "2222"):
        notify.deliver("offer.made", offer_made(code=code, request_id=request_id))
    notify.deliver("offer.made", offer_made(code="3333", request_id=request_id, urgency="urgent"))  # goes now
    held = notify.events("sms.held")
    assert [(h["request_id"], h["until"]) for h in held] == [(request_id, "2026-11-26T08:00:00+00:00")] * 2
    to_intake = dispatcher(intake, "intake")
    for payload in held:
        to_intake(load_event(make_event("sms.held", payload)))
    with intake.extensions["ccs"].sessions() as session:
        timeline = session.get(SupportRequest, uuid.UUID(request_id)).timeline
        noted = [(e.what, e.detail) for e in timeline if e.what == "held"]
    assert noted == [("held", "Texts wait for the quiet hours to end: they go at 08:00 on Thu 26 Nov")]


def test_a_withdrawn_offer_is_texted_in_its_language_from_its_communitys_number_after_its_quiet_hours(
        app_for, clock, monkeypatch):
    """offer.withdrawn now declares the community (and language): the text keeps to them (issue 11's drift)."""
    monkeypatch.delenv("CCS_QUIET_HOURS")
    notify = Notify(app_for("notify"))
    afternoon = datetime(2026, 11, 25, 21, 0, tzinfo=timezone.utc)  # 16:00 in Ottawa: the offer goes at once
    clock(afternoon)
    offer = offer_made(phone="+16135550123", community="ottawa-west", language="fr")
    notify.deliver("offer.made", offer)
    from services.notify import service_layer

    class Gateway:
        def send(self, to, body, from_=None):
            return "SM" + uuid.uuid4().hex

    assert service_layer.send_due(notify.uow(), Gateway(), afternoon, notify.settings) == 1
    clock(datetime(2026, 11, 26, 3, 30, tzinfo=timezone.utc))  # 22:30 in Ottawa
    notify.deliver("offer.withdrawn", {**EXAMPLES[("offer.withdrawn", 1)], "offer_id": offer["offer_id"],
                                       "phone": "+16135550123", "community": "ottawa-west", "language": "fr"})
    [withdrawn] = notify.messages("withdrawn")
    assert withdrawn.status == "queued"  # the offer went, so its closing is texted (issue 12: only then)
    assert withdrawn.from_phone == "+16135550100"  # Ottawa West's own sender
    assert withdrawn.next_attempt_at == datetime(2026, 11, 26, 13, 0, tzinfo=timezone.utc)  # 08:00 in Ottawa
    assert withdrawn.body == "Merci: l'offre 4821 est close, une autre personne l'a prise. Inutile de répondre."


def test_an_accepted_task_gets_reminders_that_stop_when_it_is_done(notify, clock):
    clock(NEXT_WEEK - timedelta(days=3))
    accepted = {**EXAMPLES[("offer.accepted", 1)], "offer_id": str(uuid.uuid4()), "phone": VOLUNTEER,
                "window_start": NEXT_WEEK.isoformat(), "window_end": (NEXT_WEEK + timedelta(hours=2)).isoformat()}
    notify.deliver("offer.accepted", accepted)
    reminders = notify.messages("reminder")
    assert [m.key.split(":")[0] for m in reminders] == ["reminder_day_before", "reminder_soon", "prompt_done"]
    assert [m.next_attempt_at for m in reminders] == [NEXT_WEEK - timedelta(days=1), NEXT_WEEK - timedelta(hours=2),
                                                      NEXT_WEEK + timedelta(hours=3)]
    assert reminders[2].body == "How did task 4821 go? Reply DONE 4821 <hours>, e.g. DONE 4821 2"
    notify.deliver("task.completed", {**EXAMPLES[("task.completed", 1)], "offer_id": accepted["offer_id"]})
    assert {m.status for m in notify.messages("reminder")} == {"cancelled"}


def test_a_reply_matching_could_not_act_on_is_answered_with_why(notify):
    base = EXAMPLES[("reply.unresolved", 1)]
    notify.deliver("reply.unresolved", base)
    notify.deliver("reply.unresolved", {**base, "reason": "no_such_offer", "code": "9999", "codes": []})
    notify.deliver("reply.unresolved", {**base, "phone": "+447911000999", "reason": "unknown_sender", "codes": []})
    notify.deliver("reply.unresolved", {**base, "reason": "several_open", "language": "fr"})
    which, gone, stranger, lequel = notify.messages("answer")
    assert which.body == "You have more than one offer open (4821, 5532). Reply YES with the code, e.g. YES 4821"
    assert gone.body.startswith("Offer 9999 is no longer open to you")
    assert stranger.body.startswith("Sorry, we don't recognise this number")
    assert "Répondez OUI avec le code, ex. OUI 4821" in lequel.body


# --- intake and matching's side of it ------------------------------------------------------------------------


def test_intake_shares_a_persons_details_with_the_accepting_volunteer_only_with_consent(app_for, token):
    from services.intake.adapters import outbox
    from tests.integration.test_bus import SHOPPING

    app = app_for("intake")
    client = app.test_client()
    dispatch = dispatcher(app, "intake")
    consenting = client.post("/requests", json=SHOPPING, headers=token("coordinator")).json
    private = client.post("/requests", headers=token("coordinator"), json={
        **SHOPPING, "consent": {"share_contact": False, "sms_contact": True}}).json
    for request, code in ((consenting, "4821"), (private, "5532")):
        dispatch(load_event(make_event("offer.accepted", {**EXAMPLES[("offer.accepted", 1)],
                                                          "request_id": request["id"], "code": code})))
    with app.extensions["ccs"].sessions() as session:
        shared = [row.body["payload"] for row in session.scalars(sa.select(outbox.table).order_by(outbox.table.id))
                  if row.event_type == "task.details_shared"]
    assert [(s["code"], s["shared"], s["first_name"], s["address"], s["person_phone"]) for s in shared] == [
        ("4821", True, "Pat", "1 Promenade, Blackpool, FY1 4AB", "+441253477000"),
        ("5532", False, None, None, None)]


def test_a_bare_yes_applies_to_the_one_open_offer_and_with_several_asks_which(app_for, token, monkeypatch):
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    matching = Matching(app_for("matching"))
    client = matching.app.test_client()
    volunteer = register(client, token("coordinator"), "Sam Patel", "07911 123456")
    matching.reply(volunteer["phone"], None)  # something unreadable, before we ever texted them
    assert [e["reason"] for e in matching.events("reply.unresolved")] == ["nothing_open"]
    first = matching.submit()
    [offer] = matching.offers(first)
    matching.reply(volunteer["phone"], "YES")
    assert matching.offers(first)[0].status == "accepted"

    second, third = matching.submit(), matching.submit()
    matching.reply(volunteer["phone"], "YES")
    assert {o.status for o in matching.offers(second) + matching.offers(third)} == {"open"}
    [_, which] = matching.events("reply.unresolved")
    assert which["reason"] == "several_open" and which["keyword"] == "YES"
    assert which["codes"] == [matching.offers(second)[0].code, matching.offers(third)[0].code]
    matching.reply(volunteer["phone"], "YES", "0000" if offer.code != "0000" else "0001")
    matching.reply("+447911000999", "YES", offer.code)
    matching.reply(volunteer["phone"], None)  # unreadable, now that we have texted them: notify answered it
    assert [e["reason"] for e in matching.events("reply.unresolved")] == ["nothing_open", "several_open",
                                                                           "no_such_offer", "unknown_sender"]
    assert matching.offers(first)[0].status == "accepted"
