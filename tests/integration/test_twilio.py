"""Sending through the real `twilio` client against a local server that speaks Twilio's Messages API, on both
backends: retries with back-off, opt-outs and invalid numbers, no duplicates, and Twilio's status callbacks."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from services.notify import service_layer
from services.notify.adapters import TwilioGateway, gateway_for, signature_for
from services.notify.domain import Retry
from shared import bus
from shared.config import development_webhook_token
from tests.helpers import wait_for
from tests.integration.test_bus import running_worker
from tests.integration.test_matching import Matching, register
from tests.integration.test_notify import VOLUNTEER, Notify, offer_made
from tests.twilio_server import TwilioServer

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def twilio(monkeypatch):
    with TwilioServer() as server:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", server.account_sid)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", server.auth_token)
        monkeypatch.setenv("TWILIO_FROM_NUMBER", "+447700900999")
        monkeypatch.setenv("TWILIO_API_BASE_URL", server.url)
        monkeypatch.delenv("TWILIO_REGION", raising=False)
        monkeypatch.delenv("TWILIO_EDGE", raising=False)
        yield server


def with_twilio(app) -> Notify:
    """Notify with the gateway its settings choose: Twilio's."""
    notify = Notify(app)
    notify.gateway = gateway_for(notify.settings)
    assert isinstance(notify.gateway, TwilioGateway)
    return notify


@pytest.fixture
def notify(app_for, twilio):
    return with_twilio(app_for("notify"))


def send(notify: Notify, at: datetime = NOW) -> int:
    settings = replace(notify.settings, retry=Retry(max_attempts=3, base_seconds=2))
    return service_layer.send_due(notify.uow(), notify.gateway, at, settings)


def test_an_offer_goes_once_from_the_communitys_number_with_a_status_callback(notify, twilio):
    event = offer_made(code="4821")
    notify.deliver("offer.made", event)
    notify.deliver("offer.made", event)  # redelivered: still one message
    assert send(notify) == 1 and send(notify) == 0
    [created] = twilio.created
    assert (created["To"], created["From"]) == (VOLUNTEER, "+447700900100")  # Fylde Coast's own sender
    assert created["StatusCallback"] == "http://localhost:8000/sms/status"
    assert "Reply YES 4821" in created["Body"]
    [message] = notify.messages("offer")
    assert (message.status, message.provider_sid, message.attempts) == ("sent", created["Sid"], 1)
    [sent] = notify.events("sms.sent")
    assert sent["offer_id"] == event["offer_id"] and sent["provider_sid"] == created["Sid"]


def test_with_a_messaging_service_twilio_picks_the_sender(app_for, twilio, monkeypatch):
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "c3" * 16)
    notify = with_twilio(app_for("notify"))
    notify.deliver("offer.made", offer_made())
    assert send(notify) == 1
    [created] = twilio.created
    assert created["MessagingServiceSid"] == "MG" + "c3" * 16 and "From" not in created
    assert [call.account for call in twilio.calls] == [twilio.account_sid]


@pytest.mark.parametrize("trouble", [20429, 20500, 20503, "drop"])
def test_a_busy_or_unreachable_twilio_is_retried_after_a_back_off_and_the_message_goes_once(notify, twilio,
                                                                                           trouble):
    notify.deliver("offer.made", offer_made())
    twilio.script = [trouble]
    assert send(notify) == 0
    [message] = notify.messages()
    assert message.status == "queued" and message.attempts == 1
    assert NOW + timedelta(seconds=1) <= message.next_attempt_at <= NOW + timedelta(seconds=2)
    assert send(notify, NOW + timedelta(milliseconds=900)) == 0  # not yet due: nothing is tried
    assert len(twilio.calls) == 1
    assert send(notify, message.next_attempt_at) == 1
    assert len(twilio.created) == 1 and notify.messages()[0].status == "sent"
    assert notify.events("sms.failed") == []


def test_after_the_last_attempt_the_message_fails_and_an_event_says_so(notify, twilio):
    notify.deliver("offer.made", offer_made())
    twilio.script = [20500, 20503, 20500, 20500]
    at = NOW
    for _ in range(3):
        send(notify, at)
        at += timedelta(minutes=5)
    [message] = notify.messages()
    assert (message.status, message.attempts, message.error) == ("failed", 3, "500 20500")
    assert len(twilio.calls) == 3
    [failed] = notify.events("sms.failed")
    assert failed["reason"] == "500 20500" and failed["offer_id"] is not None
    assert send(notify, at + timedelta(hours=1)) == 0 and len(twilio.calls) == 3


def test_21610_records_the_opt_out_tells_matching_and_nothing_more_is_sent_to_that_number(notify, twilio):
    from services.notify.domain import Contact

    notify.deliver("offer.made", offer_made(code="1111"))
    twilio.script = [21610]
    send(notify)
    [failed] = notify.events("sms.failed")
    assert failed["reason"] == "opted_out"
    [opted_out] = notify.events("contact.opted_out")
    assert (opted_out["phone"], opted_out["source"]) == (VOLUNTEER, "provider")
    with notify.sessions() as session:
        assert session.get(Contact, VOLUNTEER).opted_out_at == NOW
    notify.deliver("offer.made", offer_made(code="2222"))
    send(notify)
    assert len(twilio.calls) == 1  # never tried
    assert [e["reason"] for e in notify.events("sms.failed")] == ["opted_out", "opted_out"]


@pytest.mark.parametrize("code", [21211, 21614])
def test_an_invalid_or_landline_number_is_marked_and_the_coordinator_is_told(notify, twilio, code):
    from services.notify.domain import Contact

    notify.deliver("offer.made", offer_made())
    twilio.script = [code]
    send(notify)
    [invalid] = notify.events("contact.invalid")
    assert invalid["phone"] == VOLUNTEER and invalid["reason"] == f"400 {code}"
    with notify.sessions() as session:
        contact = session.get(Contact, VOLUNTEER)
        assert contact.invalid_at == NOW and contact.invalid_reason == f"400 {code}"
    assert [e["reason"] for e in notify.events("sms.failed")] == ["invalid_number"]
    notify.deliver("offer.made", offer_made())
    send(notify, NOW + timedelta(minutes=1))
    assert len(twilio.calls) == 1  # never tried again
    assert [e["reason"] for e in notify.events("sms.failed")] == ["invalid_number", "invalid_number"]


def test_other_refusals_fail_at_once_without_retrying(notify, twilio, monkeypatch):
    notify.deliver("offer.made", offer_made())
    monkeypatch.setattr(twilio, "auth_token", "not the token")  # Twilio answers 401 20003
    send(notify)
    assert [(m.status, m.attempts) for m in notify.messages()] == [("failed", 1)]
    assert [e["reason"] for e in notify.events("sms.failed")] == ["401 20003"]


@pytest.mark.parametrize("twilio_took_it", [True, False])
def test_a_sender_that_stops_between_claiming_and_recording_never_sends_again(notify, twilio, twilio_took_it):
    """Killed after Twilio took the message (its "sent" commit lost), or before the call: either way it is not
    sent again, and once it is clearly nobody's it counts as sent (no SID) so an offer's clock starts."""
    notify.deliver("offer.made", offer_made())

    class Killed:
        def send(self, to, body, from_=None):
            if twilio_took_it:
                notify.gateway.send(to, body, from_)
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        service_layer.send_due(notify.uow(), Killed(), NOW, notify.settings)
    assert [m.status for m in notify.messages()] == ["sending"]
    assert send(notify, NOW + timedelta(minutes=4)) == 0  # another sender may still be calling Twilio
    assert [m.status for m in notify.messages()] == ["sending"] and notify.events("sms.sent") == []
    assert send(notify, NOW + timedelta(hours=1)) == 0  # after the restart: not sent again
    assert send(notify, NOW + timedelta(hours=2)) == 0
    assert len(twilio.created) == (1 if twilio_took_it else 0)
    assert len(twilio.calls) == (1 if twilio_took_it else 0)
    [message] = notify.messages()
    assert (message.status, message.provider_sid, message.attempts) == ("sent", None, 1)
    assert message.error.startswith("unconfirmed")
    [sent] = notify.events("sms.sent")
    assert sent["provider_sid"] is None and sent["message_id"] == str(message.id) and sent["offer_id"] is not None


# --- status callbacks -----------------------------------------------------------------------------------------


def callback(notify: Notify, sid: str, status: str, error: str | None = None, signature: str | None = None,
             signed: bool = True):
    """Post a status callback as Twilio does (signed with the account's auth token, unless told otherwise)."""
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "a1" * 16, "To": VOLUNTEER,
            "From": "+447700900100", "ApiVersion": "2010-04-01", "SmsSid": sid, "SmsStatus": status}
    if error:
        form["ErrorCode"] = error
    if signature is None:
        signature = signature_for(notify.settings, "/sms/status", form)
    elif signature == "development":  # what the SMS simulator signs with when there is no Twilio
        signature = RequestValidator(development_webhook_token(notify.settings.secret_key)).compute_signature(
            notify.settings.public_url + "/sms/status", form)
    return notify.client.post("/sms/status", data=form, headers={"X-Twilio-Signature": signature} if signed else {})


def test_status_callbacks_must_be_signed_record_delivery_and_never_go_backwards(notify, twilio):
    notify.deliver("offer.made", offer_made())
    send(notify)
    sid = notify.messages()[0].provider_sid
    assert callback(notify, sid, "delivered", signed=False).status_code == 403
    assert callback(notify, sid, "delivered", signature="").status_code == 403
    assert callback(notify, sid, "delivered", signature="d3Jvbmc=").status_code == 403
    assert callback(notify, sid, "delivered", signature="development").status_code == 403  # Twilio's token only
    assert notify.messages()[0].status == "sent"
    assert callback(notify, sid, "delivered").status_code == 204
    assert callback(notify, sid, "sent").status_code == 204  # late and out of order
    assert callback(notify, sid, "delivered").status_code == 204  # again
    [message] = notify.messages()
    assert message.status == "delivered" and message.delivered_at is not None
    assert callback(notify, "SM" + uuid.uuid4().hex, "delivered").status_code == 204  # not ours: ignored
    assert notify.events("sms.failed") == []


# --- through the bus: matching offers, notify texts through Twilio, matching hears what became of it --------


def relay(app, outbox) -> None:
    """Publish what a service's outbox holds, as its worker's relay thread does."""
    publisher = bus.Publisher(app.extensions["ccs"].settings)
    try:
        outbox.relay_once(app.extensions["ccs"].sessions, publisher)
    finally:
        publisher.reset()


@pytest.fixture
def offered(app_for, token, twilio, monkeypatch):
    """Matching and notify with their bus workers running, two volunteers, and a request whose offer to the
    nearer one (VOLUNTEER) notify has queued: (matching, notify, request_id)."""
    from services.matching.adapters import outbox as matching_outbox

    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    matching = Matching(app_for("matching"))
    client = matching.app.test_client()
    register(client, token("coordinator"), "Near", "07911 123456", postcode="FY1")
    register(client, token("coordinator"), "Further", "07911 123457", postcode="FY4")
    notify = with_twilio(app_for("notify"))
    with running_worker(matching.app, "matching"), running_worker(notify.app, "notify"):
        request_id = matching.submit()
        relay(matching.app, matching_outbox)
        wait_for("notify to queue the offer", lambda: notify.messages("offer"))
        yield matching, notify, request_id


def test_an_undelivered_offer_is_declined_at_once_and_the_next_volunteer_texted(offered, twilio):
    from services.matching.adapters import outbox as matching_outbox
    from services.notify.adapters import outbox as notify_outbox

    matching, notify, request_id = offered
    assert send(notify) == 1
    relay(notify.app, notify_outbox)
    wait_for("matching to start the offer's clock", lambda: matching.offers(request_id)[0].sent_at)
    assert callback(notify, twilio.created[0]["Sid"], "undelivered", "30003").status_code == 204
    [failed] = notify.events("sms.failed")
    assert failed["reason"] == "undelivered 30003"
    relay(notify.app, notify_outbox)
    wait_for("matching to ask the next volunteer", lambda: len(matching.offers(request_id)) == 2)
    first, second = matching.offers(request_id)
    assert (first.status, second.status) == ("undeliverable", "open")
    assert str(first.id) == failed["offer_id"]

    relay(matching.app, matching_outbox)
    wait_for("notify to queue the second offer", lambda: len(notify.messages("offer")) == 2)
    assert send(notify, NOW + timedelta(minutes=1)) == 1
    assert [c["To"] for c in twilio.created] == [VOLUNTEER, "+447911123457"]
    assert callback(notify, twilio.created[1]["Sid"], "delivered").status_code == 204
    relay(notify.app, notify_outbox)
    wait_for("matching to start the second offer's clock", lambda: matching.offers(request_id)[1].sent_at)
    assert [o.status for o in matching.offers(request_id)] == ["undeliverable", "open"]  # delivered: still asked


# An opted-out number's open offers are withdrawn, as when the volunteer texts STOP; an invalid one's is undeliverable.
# For 21610 notify publishes both contact.opted_out and sms.failed, which reach matching on different queues in
# either order; the offer ends withdrawn either way (tests/integration/test_matching.py plays both orders).
@pytest.mark.parametrize(
    "code, event, first_offer",
    [(21610, "contact.opted_out", {"withdrawn"}), (21614, "contact.invalid", {"undeliverable"})],
)
def test_a_number_twilio_will_not_text_is_no_longer_offered_by_sms(offered, twilio, code, event, first_offer):
    from services.matching.domain import Volunteer
    from services.notify.adapters import outbox as notify_outbox

    matching, notify, request_id = offered
    twilio.script = [code]
    assert send(notify) == 0
    assert len(notify.events(event)) == 1
    relay(notify.app, notify_outbox)
    wait_for("matching to ask the next volunteer", lambda: len(matching.offers(request_id)) == 2)
    first, second = matching.offers(request_id)
    assert first.status in first_offer and second.status == "open"
    with matching.sessions() as session:
        near = session.scalar(sa.select(Volunteer).where(Volunteer.phone == VOLUNTEER))
        assert near.sms_opted_out_at == NOW
    later = matching.submit()
    [offer] = matching.offers(later)
    with matching.sessions() as session:
        assert session.get(Volunteer, offer.volunteer_id).phone == "+447911123457"


def test_quiet_hours_hold_a_routine_message_until_morning_and_then_it_goes(app_for, twilio, monkeypatch):
    from services.notify.entrypoints import handlers

    monkeypatch.delenv("CCS_QUIET_HOURS")
    notify = with_twilio(app_for("notify"))  # its settings are read once, when the app is made
    late = datetime(2026, 11, 25, 22, 30, tzinfo=timezone.utc)
    monkeypatch.setattr(handlers, "utcnow", lambda: late)
    notify.deliver("offer.made", offer_made())
    assert send(notify, late) == 0
    assert send(notify, datetime(2026, 11, 26, 7, 59, tzinfo=timezone.utc)) == 0
    assert send(notify, datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)) == 1
    assert len(twilio.created) == 1

