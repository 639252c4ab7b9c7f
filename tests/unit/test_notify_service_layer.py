"""Notify's use cases with in-memory repositories, a fake gateway and a fixed clock: what each event queues (when,
from which number, in which language), what an SMS from a phone does, how sending goes (once, retried, refused),
what the provider's status callbacks record, and the conversations a coordinator reads."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import pytest

from services.notify import domain, service_layer
from services.notify.domain import Contact, InboundMessage, InboundSms, OutgoingMessage, Retry, SendFailed
from shared.auth import Actor
from shared.communities import Community, all_communities
from shared.contracts import EXAMPLES, load_event, make_event
from shared.contracts.notify import (ContactInvalid, ContactOptedIn, ContactOptedOut, SmsFailed, SmsReceived, SmsSent,
                                     SmsWaiting)
from tests.unit.fakes import FakeUnitOfWork

VOLUNTEER = "+447911123456"
OTTAWA_VOLUNTEER = "+16135550123"
FYLDE_NUMBER, CHESHIRE_NUMBER, OTTAWA_NUMBER = "+447700900100", "+447700900200", "+16135550100"
MORNING = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)  # 10:00 in Blackpool, 05:00 in Ottawa
EVENING_IN_OTTAWA = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)  # 17:00 there: not quiet
NIGHT_IN_OTTAWA = datetime(2026, 11, 26, 3, 30, tzinfo=timezone.utc)  # 22:30 there; 03:30 in Blackpool
COORDINATOR = Actor(subject="co@example.org", role="coordinator", communities=("fylde-coast",))


@dataclass(frozen=True)
class Settings:
    """What notify's use cases read of bootstrap.NotifySettings (which reads them from the environment)."""

    retry: Retry = Retry()
    quiet_hours: str | None = None  # each community's own
    communities: dict[str, Community] = field(default_factory=all_communities)

    def community(self, slug: str | None) -> Community | None:
        return self.communities.get(slug or "")


SETTINGS = Settings()


def settings(**changes) -> Settings:
    """The settings with some changed."""
    return replace(SETTINGS, **changes)


def payload(event_type: str, **changes):
    """An event's typed payload: the contract's example with some fields changed, as a consumer gets it."""
    return load_event(make_event(event_type, {**EXAMPLES[(event_type, 1)], **changes})).payload


# --- fakes ---------------------------------------------------------------------------------------------------------

class FakeContacts:
    def __init__(self):
        self.rows: dict[str, Contact] = {}

    def get(self, phone):
        return self.rows.get(phone)

    def of(self, phone):
        return self.rows.setdefault(phone, Contact(phone))


class FakeMessages:
    """The messages we send, in memory, answering what adapters.MessageRepository's queries answer."""

    def __init__(self):
        self.rows: list[OutgoingMessage] = []
        self.holds: list[tuple[str, datetime]] = []  # (key, until in the community's time) of each held message
        self._written = (MORNING - timedelta(days=1) + timedelta(seconds=n) for n in itertools.count())

    def add(self, message):
        message.created_at = message.created_at or next(self._written)
        self.rows.append(message)

    def held(self, message, until):
        self.holds.append((message.key, until))

    def get(self, message_id):
        return next((m for m in self.rows if m.id == message_id), None)

    def has_key(self, key):
        return any(m.key == key for m in self.rows)

    def with_key(self, key, lock=False):
        return next((m for m in self.rows if m.key == key), None)

    def by_provider_sid(self, sid):
        return next((m for m in self.rows if m.provider_sid == sid), None)

    def queued_with_keys(self, keys):
        return [m for m in self.rows if m.key in keys and m.status == "queued"]

    def next_due(self, now):
        due = [m for m in self.rows if m.status == "queued" and (m.next_attempt_at is None or m.next_attempt_at <= now)]
        return min(due, key=lambda m: m.created_at, default=None)

    def left_sending(self, now):
        return [m for m in self.rows if m.status == "sending" and m.next_attempt_at <= now]

    def texted_before(self, phone):
        return any(m.to_phone == phone and m.purpose != "answer" for m in self.rows)

    def last_request_texted(self, phone, community):
        about = [m for m in self.rows if m.to_phone == phone and m.request_id and m.community == community]
        return max(about, key=lambda m: m.created_at).request_id if about else None

    def newest_first(self, scope, to_phone, pagination_parameters):
        return sorted((m for m in self.rows if scope.sees_sent(m) and to_phone in (None, m.to_phone)),
                      key=lambda m: m.created_at, reverse=True)

    def keyed(self, key) -> OutgoingMessage:
        return next(m for m in self.rows if m.key == key)


class FakeInbound:
    def __init__(self):
        self.rows: dict[str, InboundMessage] = {}

    def get(self, sid):
        return self.rows.get(sid)

    def add(self, message):
        self.rows[message.message_sid] = message

    def waiting_about(self, request_id):
        return sum(1 for m in self.rows.values() if m.request_id == request_id and m.attention and not m.dealt_with_at)

    def latest_from(self, phone):
        return max((m for m in self.rows.values() if m.from_phone == phone), key=lambda m: m.received_at,
                   default=None)


class FakeConversations:
    """The conversations, worked out from the other fakes as adapters.ConversationRepository's queries do."""

    def __init__(self, contacts: FakeContacts, messages: FakeMessages, inbound: FakeInbound):
        self._contacts, self._messages, self._inbound = contacts, messages, inbound

    def _phones(self, scope):
        return ({m.to_phone for m in self._messages.rows if scope.sees_sent(m)}
                | {m.from_phone for m in self._inbound.rows.values() if scope.sees_received(m)})

    def latest_sent(self, scope):
        latest = {}
        for m in sorted(self._messages.rows, key=lambda m: m.sent_at or m.created_at):
            if scope.sees_sent(m):
                latest[m.to_phone] = m
        return latest

    def latest_received(self, scope):
        latest = {}
        for m in sorted(self._inbound.rows.values(), key=lambda m: m.received_at):
            if scope.sees_received(m):
                latest[m.from_phone] = m
        return latest

    def texted(self, scope):
        return {m.to_phone for m in self._messages.rows if scope.sees_sent(m) and m.purpose != "answer"}

    def contacts(self, scope):
        return {p: c for p, c in self._contacts.rows.items() if p in self._phones(scope)}

    def in_scope(self, scope, phone):
        return phone in self._phones(scope)

    def with_phone(self, scope, phone):
        return ([m for m in self._messages.rows if m.to_phone == phone and scope.sees_sent(m)],
                [m for m in self._inbound.rows.values() if m.from_phone == phone and scope.sees_received(m)],
                self._contacts.get(phone))

    def received(self, scope, message_sid):
        message = self._inbound.rows.get(message_sid)
        return message if message is not None and scope.sees_received(message) else None

    def received_by_phones(self, scope, statuses):
        received = [m for m in self._messages.rows if m.status in statuses and scope.sees_sent(m)]
        numbers = {m.to_phone for m in received}
        return received, [m for m in self._inbound.rows.values() if m.from_phone in numbers and scope.sees_received(m)]


class FakeSurveyAsks:
    """Survey questions out to phones (services/notify/adapters.py SurveyAskRepository)."""

    def __init__(self):
        self.rows: list[domain.SurveyAsk] = []

    def add(self, ask):
        if any((a.survey_id, a.question_id) == (ask.survey_id, ask.question_id) for a in self.rows):
            return False
        for earlier in self.open_to(ask.phone):
            earlier.closed_at = ask.asked_at
        self.rows.append(ask)
        return True

    def open_to(self, phone):
        return [a for a in reversed(self.rows) if a.phone == phone and a.answered_at is None and a.closed_at is None]


class FakeNotifyUnitOfWork(FakeUnitOfWork):
    def __init__(self):
        super().__init__()
        self.survey_asks = FakeSurveyAsks()
        self.contacts, self.messages, self.inbound = FakeContacts(), FakeMessages(), FakeInbound()
        self.conversations = FakeConversations(self.contacts, self.messages, self.inbound)


class FakeGateway:
    """Takes every message (with a SID) unless told to fail the next sends: `script = [SendFailed(...), ...]`."""

    def __init__(self, *script: BaseException):
        self.script, self.sent = list(script), []

    def send(self, to, body, from_=None):
        if self.script:
            raise self.script.pop(0)
        self.sent.append((to, body, from_))
        return f"SM{len(self.sent):032d}"


@pytest.fixture
def uow():
    return FakeNotifyUnitOfWork()


def handled(uow, use_case, *args):
    """Run a queueing use case as the bus handler does: in the handler's unit of work, committed after."""
    with uow:
        use_case(uow, *args)
        uow.commit()


# --- queueing --------------------------------------------------------------------------------------------------------

def test_an_offer_is_queued_once_from_the_communitys_number_in_the_volunteers_language(uow):
    offer = payload("offer.made", phone=VOLUNTEER, code="4821", window_start="2026-11-27T14:00:00+00:00",
                    window_end="2026-11-27T16:00:00+00:00", window_days=None, window_part=None, language="fr-CA")
    handled(uow, service_layer.queue_offer, offer, "corr-1", MORNING, SETTINGS)
    handled(uow, service_layer.queue_offer, offer, "corr-1", MORNING, SETTINGS)  # redelivered
    [message] = uow.messages.rows
    assert (message.key, message.purpose, message.to_phone, message.from_phone, message.correlation_id) == (
        f"offer:{offer.offer_id}", "offer", VOLUNTEER, FYLDE_NUMBER, "corr-1")
    assert message.body.startswith("Pouvez-vous aider? Courses près de FY1, ven 27 nov 14:00-16:00.")
    assert message.next_attempt_at is None and message.offer_id == offer.offer_id
    assert uow.contacts.get(VOLUNTEER).language == "fr"  # answers to their own texts use it too
    assert uow.published == []


def test_a_routine_offer_waits_out_the_quiet_hours_and_an_urgent_one_does_not(uow):
    night = datetime(2026, 11, 25, 22, 30, tzinfo=timezone.utc)
    routine, urgent = payload("offer.made", phone=VOLUNTEER), payload("offer.made", phone=VOLUNTEER, urgency="urgent",
                                                                     offer_id=str(uuid.uuid4()))
    handled(uow, service_layer.queue_offer, routine, "c", night, SETTINGS)
    handled(uow, service_layer.queue_offer, urgent, "c", night, SETTINGS)
    handled(uow, service_layer.queue_offer, payload("offer.made", offer_id=str(uuid.uuid4()), code="1111"), "c",
            night, settings(quiet_hours="off"))
    assert [m.next_attempt_at for m in uow.messages.rows] == [datetime(2026, 11, 26, 8, tzinfo=timezone.utc), None,
                                                              None]
    # the `make run` window is told of the routine one alone, until 08:00 in Blackpool's time
    [(key, until)] = uow.messages.holds
    assert key == uow.messages.rows[0].key and until.isoformat() == "2026-11-26T08:00:00+00:00"
    assert str(until.tzinfo) == "Europe/London"


def test_a_reminder_due_in_the_day_is_not_held_and_one_due_in_the_night_is_held_till_morning(uow):
    start = datetime(2026, 11, 27, 14, tzinfo=timezone.utc)
    accepted = payload("offer.accepted", phone=VOLUNTEER, window_start=start.isoformat(),
                       window_end=(start + timedelta(hours=9)).isoformat())  # its DONE prompt falls at 02:00
    handled(uow, service_layer.queue_reminders, accepted, "c", start - timedelta(hours=12), SETTINGS)
    assert [(key.split(":")[0], until.hour) for key, until in uow.messages.holds] == [("prompt_done", 8)]


def test_an_accepted_task_gets_the_reminders_still_to_come_from_its_communitys_number(uow):
    start = datetime(2026, 11, 27, 14, tzinfo=timezone.utc)
    accepted = payload("offer.accepted", phone=VOLUNTEER, window_start=start.isoformat(),
                       window_end=(start + timedelta(hours=2)).isoformat())
    handled(uow, service_layer.queue_reminders, accepted, "c", start - timedelta(hours=12), SETTINGS)
    assert [(m.key.split(":")[0], m.next_attempt_at, m.from_phone) for m in uow.messages.rows] == [
        ("reminder_soon", start - timedelta(hours=2), FYLDE_NUMBER),
        ("prompt_done", start + timedelta(hours=3), FYLDE_NUMBER)]  # the day before has passed
    assert uow.messages.rows[0].body == "Reminder: task 4821 starts in 2 hours, Fri 27 Nov 14:00-16:00. Thank you!"
    handled(uow, service_layer.queue_reminders, payload("offer.accepted", offer_id=str(uuid.uuid4()),
                                                        window_start=None, window_end=None), "c", MORNING, SETTINGS)
    assert len(uow.messages.rows) == 2  # no fixed time, no reminders


def test_the_accepting_volunteer_gets_the_details_at_once_only_where_the_person_consented(uow):
    night = datetime(2026, 11, 25, 23, tzinfo=timezone.utc)
    handled(uow, service_layer.queue_details, payload("task.details_shared", phone=VOLUNTEER), "c", night, SETTINGS)
    handled(uow, service_layer.queue_details, payload(
        "task.details_shared", phone=VOLUNTEER, offer_id=str(uuid.uuid4()), code="5532", shared=False, first_name=None,
        address=None, person_phone=None), "c", night, SETTINGS)
    told, not_told = uow.messages.rows
    assert told.body == ("Thank you! Task 4821 is yours: Margaret, 12 Dickson Road, Blackpool FY1 2AB, "
                         "tel +441253000111. Reply DONE 4821 <hours> when done.")
    assert not_told.body.startswith("Thank you! Task 5532 is yours: your coordinator will call you")
    assert {m.next_attempt_at for m in (told, not_told)} == {None} and told.purpose == "confirmation"


def test_a_task_that_ended_has_its_waiting_reminders_cancelled_and_no_others(uow):
    start = datetime(2026, 11, 27, 14, tzinfo=timezone.utc)
    accepted = payload("offer.accepted", window_start=start.isoformat(),
                       window_end=(start + timedelta(hours=2)).isoformat())
    handled(uow, service_layer.queue_reminders, accepted, "c", MORNING, SETTINGS)
    uow.messages.rows[0].status = "sent"
    handled(uow, service_layer.queue_offer, payload("offer.made"), "c", MORNING, SETTINGS)
    handled(uow, service_layer.cancel_reminders, accepted.offer_id)
    assert [m.status for m in uow.messages.rows] == ["sent", "cancelled", "cancelled", "queued"]


def offer_went(uow, offer_id, status: str = "sent") -> OutgoingMessage:
    """An offer's SMS that went (or became `status`), as the sender leaves it."""
    message = OutgoingMessage(key=f"offer:{offer_id}", purpose="offer", to_phone=VOLUNTEER, body="Can you help?",
                              correlation_id="c", from_phone=FYLDE_NUMBER)
    message.sent(f"SM{uuid.uuid4().hex}", MORNING - timedelta(hours=1))
    message.status = status
    uow.messages.add(message)
    return message


def test_a_withdrawn_offer_is_texted_from_its_communitys_number_after_its_quiet_hours_in_its_language(uow):
    """The drift of issue 11: offer.withdrawn's community (and language) were not in its contract, so the text
    went from the deployment's number, at night, in English. It now keeps to the offer's community."""
    withdrawn = payload("offer.withdrawn", phone=OTTAWA_VOLUNTEER, community="ottawa-west", language="fr",
                        reason="taken")
    offer_went(uow, withdrawn.offer_id)
    handled(uow, service_layer.queue_withdrawn, withdrawn, "corr-9", NIGHT_IN_OTTAWA, SETTINGS)
    _, message = uow.messages.rows
    assert message.from_phone == OTTAWA_NUMBER
    assert message.next_attempt_at == datetime(2026, 11, 26, 13, tzinfo=timezone.utc)  # 08:00 in Ottawa
    assert message.body == "Merci: l'offre 4821 est close, une autre personne l'a prise. Inutile de répondre."
    assert (message.key, message.purpose, message.correlation_id) == (f"withdrawn:{withdrawn.offer_id}",
                                                                       "withdrawn", "corr-9")


def test_a_withdrawn_offer_goes_at_once_where_it_is_day_and_cancels_the_tasks_reminders(uow):
    start = datetime(2026, 11, 27, 14, tzinfo=timezone.utc)
    accepted = payload("offer.accepted", window_start=start.isoformat(),
                       window_end=(start + timedelta(hours=2)).isoformat())
    handled(uow, service_layer.queue_reminders, accepted, "c", MORNING, SETTINGS)
    offer_went(uow, accepted.offer_id, "delivered")
    withdrawn = payload("offer.withdrawn", offer_id=str(accepted.offer_id), reason="cancelled", language=None)
    handled(uow, service_layer.queue_withdrawn, withdrawn, "c", MORNING, SETTINGS)
    *reminders, offer, message = uow.messages.rows
    assert {m.status for m in reminders} == {"cancelled"} and offer.status == "delivered"
    assert message.status == "queued"
    assert (message.from_phone, message.next_attempt_at) == (FYLDE_NUMBER, None)
    assert message.body == "Thank you: offer 4821 is closed, it is no longer needed. No need to reply."
    ottawa = payload("offer.withdrawn", offer_id=str(uuid.uuid4()), phone=OTTAWA_VOLUNTEER, community="ottawa-west")
    offer_went(uow, ottawa.offer_id)
    handled(uow, service_layer.queue_withdrawn, ottawa, "c", EVENING_IN_OTTAWA, SETTINGS)
    assert (uow.messages.rows[-1].from_phone, uow.messages.rows[-1].next_attempt_at) == (OTTAWA_NUMBER, None)


NIGHT = datetime(2026, 11, 25, 22, 30, tzinfo=timezone.utc)  # quiet hours in Blackpool until 08:00
EIGHT = datetime(2026, 11, 26, 8, tzinfo=timezone.utc)


@pytest.mark.parametrize("reason", ["taken", "cancelled", "opted_out"])
def test_an_offer_held_by_quiet_hours_is_cancelled_when_withdrawn_and_nothing_goes_at_eight(uow, reason):
    """Issue 12: an offer held by quiet hours went out at 08:00 after its request was matched or cancelled."""
    offer = payload("offer.made", phone=VOLUNTEER)
    handled(uow, service_layer.queue_offer, offer, "c", NIGHT, SETTINGS)
    assert uow.messages.keyed(f"offer:{offer.offer_id}").next_attempt_at == EIGHT
    withdrawn = payload("offer.withdrawn", offer_id=str(offer.offer_id), phone=VOLUNTEER, reason=reason)
    handled(uow, service_layer.queue_withdrawn, withdrawn, "c", NIGHT + timedelta(minutes=5), SETTINGS)
    gateway = FakeGateway()
    assert service_layer.send_due(uow, gateway, EIGHT, SETTINGS) == 0
    assert gateway.sent == [] and uow.events(SmsSent) == [] and uow.events(SmsFailed) == []
    held, closed = uow.messages.rows
    assert (held.status, held.error, held.next_attempt_at) == (
        "cancelled", "not sent: the offer was withdrawn before its text went", None)
    assert (closed.key, closed.status) == (f"withdrawn:{offer.offer_id}", "cancelled")  # they never had the offer
    # both stay in the conversation, as not sent
    thread = service_layer.conversation(uow, COORDINATOR, VOLUNTEER, SETTINGS)["thread"]
    assert [(e.message.purpose, e.message.status) for e in thread] == [("offer", "cancelled"),
                                                                       ("withdrawn", "cancelled")]


def test_a_withdrawal_that_overtakes_its_offer_keeps_the_offer_and_its_reminders_from_ever_going(uow):
    offer = payload("offer.made", phone=VOLUNTEER)
    withdrawn = payload("offer.withdrawn", offer_id=str(offer.offer_id), phone=VOLUNTEER, reason="cancelled")
    handled(uow, service_layer.queue_withdrawn, withdrawn, "c", MORNING, SETTINGS)
    handled(uow, service_layer.queue_offer, offer, "c", MORNING, SETTINGS)
    start = MORNING + timedelta(days=2)
    accepted = payload("offer.accepted", offer_id=str(offer.offer_id), phone=VOLUNTEER,
                       window_start=start.isoformat(), window_end=(start + timedelta(hours=2)).isoformat())
    handled(uow, service_layer.task_accepted, accepted, "c", MORNING, SETTINGS)
    gateway = FakeGateway()
    assert service_layer.send_due(uow, gateway, MORNING + timedelta(days=3), SETTINGS) == 0
    assert gateway.sent == []
    assert [(m.purpose, m.status) for m in uow.messages.rows] == [("withdrawn", "cancelled"), ("offer", "cancelled")]


def test_a_closed_text_goes_only_after_the_offer_it_closes_went_and_never_if_it_did_not(uow):
    being_sent, went_astray = payload("offer.made", phone=VOLUNTEER), payload(
        "offer.made", phone=VOLUNTEER, offer_id=str(uuid.uuid4()), code="5532")
    for offer in (being_sent, went_astray):
        handled(uow, service_layer.queue_offer, offer, "c", MORNING, SETTINGS)
    first, second = uow.messages.rows
    first.claim(MORNING)  # another sender is calling the gateway with it right now
    second.sent("SM" + "b" * 32, MORNING)
    for offer in (being_sent, went_astray):
        handled(uow, service_layer.queue_withdrawn, payload("offer.withdrawn", offer_id=str(offer.offer_id),
                                                            phone=VOLUNTEER, code=offer.code), "c", MORNING, SETTINGS)
    service_layer.record_status(uow, "SM" + "b" * 32, "undelivered", "30003", MORNING)
    gateway = FakeGateway()
    assert service_layer.send_due(uow, gateway, MORNING, SETTINGS) == 0  # the first's closed text waits for it
    waiting, astray = (uow.messages.keyed(f"withdrawn:{o.offer_id}") for o in (being_sent, went_astray))
    assert (waiting.status, waiting.next_attempt_at) == ("queued", MORNING + domain.WAIT_FOR_OFFER)
    assert (astray.status, astray.error) == ("cancelled", "not sent: the offer it closes never reached them")
    first.sent("SM" + "a" * 32, MORNING + timedelta(seconds=2))
    assert service_layer.send_due(uow, gateway, MORNING + timedelta(seconds=30), SETTINGS) == 1
    assert waiting.status == "sent" and gateway.sent == [(VOLUNTEER, waiting.body, FYLDE_NUMBER)]
    assert waiting.sent_at > first.sent_at


def test_someone_who_opted_out_is_not_told_their_offer_closed(uow):
    offer_went(uow, uuid.UUID(EXAMPLES[("offer.withdrawn", 1)]["offer_id"]))
    handled(uow, service_layer.queue_withdrawn, payload("offer.withdrawn", phone=VOLUNTEER, reason="opted_out"), "c",
            MORNING, SETTINGS)
    offer, closed = uow.messages.rows
    assert (offer.status, closed.status, closed.error) == ("sent", "cancelled", "not sent: they opted out of SMS")


def test_an_offer_accepted_before_its_sms_went_is_cancelled_and_the_tasks_reminders_queued(uow):
    """A coordinator assigned the volunteer while their offer waited out the quiet hours: it must not ask at 08:00."""
    offer = payload("offer.made", phone=VOLUNTEER)
    handled(uow, service_layer.queue_offer, offer, "c", NIGHT, SETTINGS)
    start = EIGHT + timedelta(days=2)
    accepted = payload("offer.accepted", offer_id=str(offer.offer_id), phone=VOLUNTEER, by="coordinator",
                       window_start=start.isoformat(), window_end=(start + timedelta(hours=2)).isoformat())
    handled(uow, service_layer.task_accepted, accepted, "c", NIGHT, SETTINGS)
    held, *reminders = uow.messages.rows
    assert (held.status, held.error) == ("cancelled", "not sent: the offer was accepted before its text went")
    assert [(m.purpose, m.status) for m in reminders] == [("reminder", "queued")] * 3
    gateway = FakeGateway()
    service_layer.send_due(uow, gateway, EIGHT, SETTINGS)
    assert gateway.sent == []


def test_a_reply_matching_could_not_act_on_is_answered_at_once_with_why(uow):
    night = datetime(2026, 11, 25, 23, tzinfo=timezone.utc)
    uow.contacts.of(VOLUNTEER).language = "fr"
    for unresolved in (payload("reply.unresolved", phone=VOLUNTEER, language=None),
                       payload("reply.unresolved", reason="no_such_offer", code="9999", codes=[]),
                       payload("reply.unresolved", reason="unknown_sender", codes=[]),
                       payload("reply.unresolved", reason="nothing_open", codes=[])):
        handled(uow, service_layer.queue_answer, unresolved, uuid.uuid4(), "c", night, SETTINGS)
    which, gone, stranger, nothing = uow.messages.rows
    assert which.body == "Vous avez plusieurs offres (4821, 5532). Répondez OUI avec le code, ex. OUI 4821"
    assert gone.body.startswith("Offer 9999 is no longer open to you")
    assert stranger.body.startswith("Sorry, we don't recognise this number")
    assert nothing.body.startswith("You have no offer open just now. Reply YES <code>")
    assert {(m.purpose, m.next_attempt_at, m.from_phone) for m in uow.messages.rows} == {("answer", None, None)}


def test_a_check_about_to_expire_is_a_reminder_once_per_check_and_date(uow):
    expiring = payload("volunteer.check_expiring", phone=VOLUNTEER)
    handled(uow, service_layer.queue_expiry_reminder, expiring, "c", MORNING, SETTINGS)
    handled(uow, service_layer.queue_expiry_reminder, expiring, "c", MORNING, SETTINGS)
    [message] = uow.messages.rows
    assert message.key == f"expiring:{expiring.volunteer_id}:criminal_record:2026-12-20"
    assert message.body.startswith("A reminder: your ") and "expires on 20 Dec 2026" in message.body
    assert (message.purpose, message.from_phone) == ("reminder", FYLDE_NUMBER)


# --- what phones send us ---------------------------------------------------------------------------------------------

def sms(body: str, sender: str = VOLUNTEER, sid: str | None = None) -> InboundSms:
    return InboundSms(message_sid=sid or "SM" + uuid.uuid4().hex, sender=sender, to=FYLDE_NUMBER, body=body)


def test_a_reply_is_kept_once_and_passed_on_as_understood(uow):
    received = sms("done 4821 1.5h", sid="SM" + "1" * 32)
    assert service_layer.receive_sms(uow, received, MORNING, SETTINGS) is None
    assert service_layer.receive_sms(uow, received, MORNING, SETTINGS) is None  # the provider retried the webhook
    [event] = uow.published
    assert isinstance(event, SmsReceived)
    assert (event.from_phone, event.to_phone, event.keyword, event.code, event.hours) == (
        VOLUNTEER, FYLDE_NUMBER, "DONE", "4821", 1.5)
    assert uow.inbound.get(received.message_sid).keyword == "DONE"


def test_an_unclear_reply_is_answered_only_to_a_number_we_texted_and_help_to_anyone(uow):
    assert service_layer.receive_sms(uow, sms("yes 482"), MORNING, SETTINGS) is None  # matching answers a stranger
    assert "Reply YES <code>" in service_layer.receive_sms(uow, sms("HELP"), MORNING, SETTINGS)
    uow.messages.add(OutgoingMessage(key="offer:x", purpose="offer", to_phone=VOLUNTEER, body="b", correlation_id="c"))
    answer = service_layer.receive_sms(uow, sms("yes 482"), MORNING, SETTINGS)
    assert answer.startswith("Sorry, we did not understand 482: a reference code has 4 digits.")
    assert [e.keyword for e in uow.events(SmsReceived)] == [None, "HELP", None]  # "yes 482" says yes to nothing


def test_the_answer_sent_straight_back_is_kept_in_the_conversation_as_sent(uow):
    uow.messages.add(OutgoingMessage(key="offer:x", purpose="offer", to_phone=VOLUNTEER, body="b", correlation_id="c"))
    away = sms("Sorry, I'm away that week", sid="SM" + "2" * 32)
    answer = service_layer.receive_sms(uow, away, MORNING, SETTINGS)
    assert answer.startswith("Sorry, we did not understand")
    [kept] = [m for m in uow.messages.rows if m.purpose == "answer"]
    assert (kept.to_phone, kept.body, kept.status, kept.sent_at) == (VOLUNTEER, answer, "sent", MORNING)
    assert (kept.from_phone, kept.community, kept.key) == (FYLDE_NUMBER, "fylde-coast", f"answer:{away.message_sid}")
    thread = domain.thread([kept], [uow.inbound.get(away.message_sid)])
    assert [e.direction for e in thread] == ["in", "out"]  # the answer follows what it answers
    assert service_layer.receive_sms(uow, away, MORNING, SETTINGS) is None  # a retried webhook: kept once
    assert len([m for m in uow.messages.rows if m.purpose == "answer"]) == 1
    service_layer.receive_sms(uow, sms("YES 4821"), MORNING, SETTINGS)  # clear: matching answers it, not we
    assert len([m for m in uow.messages.rows if m.purpose == "answer"]) == 1


def test_stop_opts_out_once_nothing_is_answered_until_start_opts_back_in(uow):
    uow.messages.add(OutgoingMessage(key="offer:x", purpose="offer", to_phone=VOLUNTEER, body="b", correlation_id="c"))
    assert service_layer.receive_sms(uow, sms("Stop"), MORNING, SETTINGS) is None  # the carrier confirms it
    assert service_layer.receive_sms(uow, sms("STOP"), MORNING, SETTINGS) is None
    assert service_layer.receive_sms(uow, sms("HELP"), MORNING, SETTINGS) is None
    [opted_out] = uow.events(ContactOptedOut)
    assert (opted_out.phone, opted_out.at, opted_out.source) == (VOLUNTEER, MORNING, "keyword")
    later = MORNING + timedelta(days=1)
    assert service_layer.receive_sms(uow, sms("START"), later, SETTINGS) is None
    [opted_in] = uow.events(ContactOptedIn)
    assert (opted_in.phone, opted_in.at, opted_in.source) == (VOLUNTEER, later, "keyword")
    contact = uow.contacts.get(VOLUNTEER)
    assert (contact.opted_out_at, contact.opted_in_at) == (None, later)
    assert "Reply YES <code>" in service_layer.receive_sms(uow, sms("help"), later, SETTINGS)


# --- what the provider says of what we sent --------------------------------------------------------------------------

def sent_offer(uow, sid: str = "SM" + "a" * 32) -> OutgoingMessage:
    message = OutgoingMessage(key=f"offer:{uuid.uuid4()}", purpose="offer", to_phone=VOLUNTEER, body="b",
                              correlation_id="corr-2")
    message.sent(sid, MORNING)
    uow.messages.add(message)
    return message


def test_delivery_is_recorded_and_a_late_or_repeated_callback_changes_nothing(uow):
    message = sent_offer(uow)
    service_layer.record_status(uow, message.provider_sid, "delivered", None, MORNING)
    assert (message.status, message.delivered_at) == ("delivered", MORNING)
    uow.committed = False
    service_layer.record_status(uow, message.provider_sid, "sent", None, MORNING)
    service_layer.record_status(uow, message.provider_sid, "undelivered", "30003", MORNING)
    service_layer.record_status(uow, "SM" + "f" * 32, "delivered", None, MORNING)  # not ours
    assert message.status == "delivered" and uow.published == [] and not uow.committed


def test_an_undelivered_offer_fails_with_an_event_for_matching(uow):
    message = sent_offer(uow)
    service_layer.record_status(uow, message.provider_sid, "undelivered", "30003", MORNING)
    [failed] = uow.published
    assert isinstance(failed, SmsFailed)
    assert (failed.message_id, failed.purpose, failed.reason, failed.offer_id) == (
        message.id, "offer", "undelivered 30003", message.offer_id)
    assert (message.status, message.error, uow.correlations) == ("undelivered", "undelivered 30003", ["corr-2"])


# --- sending ---------------------------------------------------------------------------------------------------------

def queued(uow, to: str = VOLUNTEER, purpose: str = "offer", **changes) -> OutgoingMessage:
    changes = {"community": "fylde-coast", "from_phone": FYLDE_NUMBER, **changes}
    message = OutgoingMessage(key=f"{purpose}:{uuid.uuid4()}", purpose=purpose, to_phone=to, body="Can you help?",
                              correlation_id="corr-3", **changes)
    uow.messages.add(message)
    return message


def test_due_messages_go_once_each_from_their_number_and_matching_hears_each_went(uow):
    offer, later = queued(uow), queued(uow, next_attempt_at=MORNING + timedelta(hours=1))
    reminder = queued(uow, purpose="reminder")
    gateway = FakeGateway()
    assert service_layer.send_due(uow, gateway, MORNING, SETTINGS) == 2
    assert service_layer.send_due(uow, gateway, MORNING, SETTINGS) == 0
    assert gateway.sent == [(VOLUNTEER, "Can you help?", FYLDE_NUMBER)] * 2
    assert [(m.status, m.attempts, m.sent_at) for m in (offer, later, reminder)] == [
        ("sent", 1, MORNING), ("queued", 0, None), ("sent", 1, MORNING)]
    assert [(e.message_id, e.provider_sid, e.offer_id) for e in uow.events(SmsSent)] == [
        (offer.id, offer.provider_sid, offer.offer_id), (reminder.id, reminder.provider_sid, None)]


def test_a_busy_provider_is_retried_after_a_back_off_until_the_last_attempt_then_it_fails(uow):
    message = queued(uow)
    gateway = FakeGateway(*[SendFailed("retry", "503 20503")] * 3)
    few = settings(retry=Retry(max_attempts=3, base_seconds=2))
    assert service_layer.send_due(uow, gateway, MORNING, few) == 0
    assert (message.status, message.attempts, message.error) == ("queued", 1, "503 20503")
    assert MORNING + timedelta(seconds=1) <= message.next_attempt_at <= MORNING + timedelta(seconds=2)
    assert service_layer.send_due(uow, gateway, MORNING + timedelta(milliseconds=900), few) == 0
    assert message.attempts == 1 and uow.published == []  # not due yet: not tried
    at = MORNING
    for _ in range(2):
        at += timedelta(minutes=5)
        service_layer.send_due(uow, gateway, at, few)
    assert (message.status, message.attempts, message.next_attempt_at) == ("failed", 3, None)
    [failed] = uow.published
    assert (failed.reason, failed.offer_id) == ("503 20503", message.offer_id)


def test_a_number_that_opted_out_at_the_provider_is_recorded_and_never_tried_again(uow):
    first = queued(uow)
    gateway = FakeGateway(SendFailed("opted_out", "400 21610"))
    service_layer.send_due(uow, gateway, MORNING, SETTINGS)
    assert uow.contacts.get(VOLUNTEER).opted_out_at == MORNING
    [opted_out] = uow.events(ContactOptedOut)
    assert (opted_out.phone, opted_out.source) == (VOLUNTEER, "provider")
    second = queued(uow)
    service_layer.send_due(uow, gateway, MORNING + timedelta(minutes=1), SETTINGS)
    assert gateway.sent == [] and (first.status, second.status) == ("failed", "failed")
    assert [(e.message_id, e.reason) for e in uow.events(SmsFailed)] == [(first.id, "opted_out"),
                                                                         (second.id, "opted_out")]
    assert second.attempts == 0


def test_a_number_that_cannot_take_sms_is_marked_and_the_coordinator_told(uow):
    message = queued(uow)
    service_layer.send_due(uow, FakeGateway(SendFailed("invalid", "400 21614")), MORNING, SETTINGS)
    contact = uow.contacts.get(VOLUNTEER)
    assert (contact.invalid_at, contact.invalid_reason) == (MORNING, "400 21614")
    [invalid] = uow.events(ContactInvalid)
    assert (invalid.phone, invalid.reason) == (VOLUNTEER, "400 21614")
    assert [(e.message_id, e.reason) for e in uow.events(SmsFailed)] == [(message.id, "invalid_number")]


def test_any_other_refusal_fails_at_once_without_retrying(uow):
    message, other = queued(uow), queued(uow)
    gateway = FakeGateway(SendFailed("failed", "401 20003"), ValueError("a bug in a gateway"))
    assert service_layer.send_due(uow, gateway, MORNING, SETTINGS) == 0
    assert [(m.status, m.attempts, m.error) for m in (message, other)] == [("failed", 1, "401 20003"),
                                                                          ("failed", 1, "ValueError")]


def test_a_sender_stopped_mid_send_never_sends_again_and_later_counts_it_as_sent_without_a_sid(uow):
    message = queued(uow)
    with pytest.raises(SystemExit):
        service_layer.send_due(uow, FakeGateway(SystemExit("killed")), MORNING, SETTINGS)
    assert message.status == "sending" and uow.published == []
    gateway = FakeGateway()
    assert service_layer.send_due(uow, gateway, MORNING + timedelta(minutes=4), SETTINGS) == 0
    assert message.status == "sending" and uow.published == []  # another sender may still be calling
    assert service_layer.settle_unconfirmed(uow, MORNING + timedelta(minutes=5)) == 1
    assert service_layer.send_due(uow, gateway, MORNING + timedelta(hours=1), SETTINGS) == 0
    assert gateway.sent == [] and (message.status, message.provider_sid) == ("sent", None)
    assert message.error.startswith("unconfirmed")
    [sent] = uow.published
    assert (sent.message_id, sent.provider_sid, sent.offer_id) == (message.id, None, message.offer_id)


# --- what coordinators read ------------------------------------------------------------------------------------------

def conversation_world(uow):
    """A Fylde volunteer texted and answering, a Cheshire volunteer, and a stranger texting Fylde's number."""
    fylde = queued(uow, to="+447911000101")
    fylde.sent("SM1", MORNING)
    cheshire = queued(uow, to="+447911000202")
    cheshire.from_phone, cheshire.community = CHESHIRE_NUMBER, "cheshire-east"
    cheshire.sent("SM2", MORNING)
    uow.inbound.add(InboundMessage(message_sid="SMa", from_phone="+447911000101", to_phone=FYLDE_NUMBER, body="YES",
                                   keyword="YES", code=None, received_at=MORNING + timedelta(minutes=1)))
    uow.inbound.add(InboundMessage(message_sid="SMb", from_phone="+447911000303", to_phone=FYLDE_NUMBER,
                                   body="who is this?", keyword=None, code=None,
                                   received_at=MORNING + timedelta(minutes=2)))
    uow.contacts.of("+447911000303").opt_out(MORNING)
    return fylde, cheshire


def test_a_coordinator_sees_their_communitys_conversations_newest_first_with_unknown_senders_flagged(uow):
    conversation_world(uow)
    rows, total = service_layer.conversations(uow, COORDINATOR, SETTINGS)
    assert total == 2
    assert [(r["phone"], r["last"].direction, r["last"].message.body, r["unknown"]) for r in rows] == [
        ("+447911000303", "in", "who is this?", True), ("+447911000101", "in", "YES", False)]
    assert rows[0]["contact"].opted_out_at == MORNING


def test_a_conversation_is_the_phones_thread_and_another_communitys_is_not_shown(uow):
    fylde, _ = conversation_world(uow)
    waiting = queued(uow, to="+447911000101", purpose="reminder", next_attempt_at=MORNING + timedelta(days=1))
    found = service_layer.conversation(uow, COORDINATOR, "+447911000101", SETTINGS)
    assert [(e.direction, e.message.body) for e in found["thread"]] == [
        ("out", "Can you help?"), ("in", "YES"), ("out", "Can you help?")]
    assert found["thread"][-1].message is waiting and found["thread"][0].message is fylde
    assert not found["unknown"]
    assert service_layer.conversation(uow, COORDINATOR, "+447911000303", SETTINGS)["unknown"]
    with pytest.raises(domain.NotInScope):
        service_layer.conversation(uow, COORDINATOR, "+447911000202", SETTINGS)


def test_the_simulator_shows_each_phone_what_it_received_and_replies_to_the_number_that_texted_it(uow):
    conversation_world(uow)
    queued(uow, to="+447911000404")  # not sent yet: no phone has it
    [card] = service_layer.simulator_phones(uow, COORDINATOR, SETTINGS)
    assert (card["phone"], card["to"]) == ("+447911000101", FYLDE_NUMBER)
    assert [e.direction for e in card["thread"]] == ["out", "in"]


def test_the_simulator_texts_as_the_phone_to_the_communitys_number_unless_told(uow):
    class Phone:
        def __init__(self):
            self.texts = []

        def text(self, sender, to, body):
            self.texts.append((sender, to, body))
            return {"answer": None}

    phone = Phone()
    both = replace(COORDINATOR, communities=("fylde-coast", "cheshire-east"))
    assert service_layer.text_as_phone(uow, phone, VOLUNTEER, None, "YES 4821", COORDINATOR, SETTINGS) == {
        "phone": VOLUNTEER, "body": "YES 4821", "answer": None}
    service_layer.text_as_phone(uow, phone, VOLUNTEER, CHESHIRE_NUMBER, "NO", both, SETTINGS)
    assert phone.texts == [(VOLUNTEER, FYLDE_NUMBER, "YES 4821"), (VOLUNTEER, CHESHIRE_NUMBER, "NO")]


def test_the_simulator_acts_for_no_other_community(uow):
    """A coordinator texts only their own communities' numbers, as their own phones or new ones: never as a
    phone only another community texts, which could answer that community's offers."""
    conversation_world(uow)
    sent = []

    class Phone:
        def text(self, sender, to, body):
            sent.append((sender, to, body))
            return {"answer": None}

    with pytest.raises(domain.NotInScope, match="to"):
        service_layer.text_as_phone(uow, Phone(), "+447911000101", CHESHIRE_NUMBER, "YES", COORDINATOR, SETTINGS)
    with pytest.raises(domain.NotInScope, match="phone"):
        service_layer.text_as_phone(uow, Phone(), "+447911000202", None, "YES 4821", COORDINATOR, SETTINGS)
    assert sent == []
    service_layer.text_as_phone(uow, Phone(), "+447911000999", None, "HELP", COORDINATOR, SETTINGS)  # a new phone
    service_layer.text_as_phone(uow, Phone(), "+447911000101", None, "NO", COORDINATOR, SETTINGS)  # one of theirs
    assert sent == [("+447911000999", FYLDE_NUMBER, "HELP"), ("+447911000101", FYLDE_NUMBER, "NO")]


def test_the_messages_list_is_newest_first_and_for_one_phone_when_asked(uow):
    first, second = queued(uow), queued(uow, to="+447911000202")
    assert service_layer.list_messages(uow, COORDINATOR, None, None, SETTINGS) == [second, first]
    assert service_layer.list_messages(uow, COORDINATOR, VOLUNTEER, None, SETTINGS) == [first]


def test_the_messages_list_is_the_callers_communities_only(uow):
    """Another community's messages, even to the same phone, are never listed (the details text above all)."""
    ours = queued(uow)
    theirs = queued(uow, purpose="confirmation", community="ottawa-west", from_phone=OTTAWA_NUMBER)
    ottawa = Actor(subject="ow@example.org", role="coordinator", communities=("ottawa-west",))
    assert service_layer.list_messages(uow, COORDINATOR, None, None, SETTINGS) == [ours]
    assert service_layer.list_messages(uow, COORDINATOR, VOLUNTEER, None, SETTINGS) == [ours]
    assert service_layer.list_messages(uow, ottawa, VOLUNTEER, None, SETTINGS) == [theirs]
    nobody = Actor(subject="x", role="coordinator", communities=())
    assert service_layer.list_messages(uow, nobody, None, None, SETTINGS) == []


def test_a_conversation_shows_only_the_callers_communitys_messages_to_a_shared_phone(uow):
    """A phone both communities text: each coordinator's thread has their own community's messages only."""
    ours = queued(uow)
    ours.sent("SM1", MORNING)
    theirs = queued(uow, purpose="confirmation", community="cheshire-east", from_phone=CHESHIRE_NUMBER)
    theirs.sent("SM2", MORNING + timedelta(minutes=1))
    uow.inbound.add(InboundMessage(message_sid="SMc", from_phone=VOLUNTEER, to_phone=CHESHIRE_NUMBER, body="YES",
                                   keyword="YES", code=None, received_at=MORNING + timedelta(minutes=2)))
    found = service_layer.conversation(uow, COORDINATOR, VOLUNTEER, SETTINGS)
    assert [e.message for e in found["thread"]] == [ours]
    [row], _ = service_layer.conversations(uow, COORDINATOR, SETTINGS)
    assert row["last"].message is ours
    [card] = service_layer.simulator_phones(uow, COORDINATOR, SETTINGS)
    assert [e.message for e in card["thread"]] == [ours]


def test_each_message_is_queued_as_its_communitys(uow):
    """Every message names the community it is for: from the event, from the offer for details that do not say,
    and for an answer the community whose number the phone texted."""
    service_layer.queue_offer(uow, payload("offer.made", community="ottawa-west", phone=OTTAWA_VOLUNTEER),
                              "c", MORNING, SETTINGS)
    offer = uow.messages.rows[-1]
    assert (offer.community, offer.from_phone) == ("ottawa-west", OTTAWA_NUMBER)
    details = payload("task.details_shared", community=None, offer_id=str(offer.offer_id), phone=OTTAWA_VOLUNTEER)
    service_layer.queue_details(uow, details, "c", MORNING, SETTINGS)
    assert uow.messages.rows[-1].community == "ottawa-west"
    uow.inbound.add(InboundMessage(message_sid="SMd", from_phone="+447911000777", to_phone=CHESHIRE_NUMBER,
                                   body="hello?", keyword=None, code=None, received_at=MORNING))
    service_layer.queue_answer(uow, payload("reply.unresolved", phone="+447911000777", reason="unknown_sender"),
                               uuid.uuid4(), "c", MORNING, SETTINGS)
    assert (uow.messages.rows[-1].community, uow.messages.rows[-1].from_phone) == ("cheshire-east", CHESHIRE_NUMBER)


# --- the quiet-hours rule --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("slug, utc_hour, until", [
    ("fylde-coast", 20, None),
    ("fylde-coast", 21, datetime(2026, 11, 26, 8, tzinfo=timezone.utc)),
    ("fylde-coast", 2, datetime(2026, 11, 25, 8, tzinfo=timezone.utc)),
    ("fylde-coast", 8, None),
    ("ottawa-west", 21, None),  # 16:00 in Ottawa
    ("ottawa-west", 3, datetime(2026, 11, 25, 13, tzinfo=timezone.utc)),  # 22:00 in Ottawa, until 08:00 there
])
def test_quiet_hours_are_the_communitys_own_night_unless_overridden(slug, utc_hour, until):
    place = SETTINGS.communities[slug]
    now = datetime(2026, 11, 25, utc_hour, 30, tzinfo=timezone.utc)
    assert domain.quiet_until(place.quiet_hours, place.zone, now) == until
    assert domain.send_time(now, place) == until
    assert domain.send_time(now, place, quiet_hours="off") is None
    assert domain.send_time(now, place, urgent=True) is None


# --- the closed-text rule --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offer_status, fate", [
    (None, "cancel"),  # the withdrawal overtook the offer: nothing was offered
    ("queued", "wait"), ("sending", "wait"),  # never before the offer it closes
    ("sent", "send"), ("delivered", "send"),
    ("cancelled", "cancel"), ("failed", "cancel"), ("undelivered", "cancel"),  # it never reached them
])
def test_a_closed_text_is_sent_only_once_the_offer_it_closes_went(offer_status, fate):
    offer = None
    if offer_status is not None:
        offer = OutgoingMessage(key="offer:x", purpose="offer", to_phone=VOLUNTEER, body="b", correlation_id="c",
                                status=offer_status)
    assert domain.closed_text_fate(offer) == fate
    closed = OutgoingMessage(key=f"withdrawn:{uuid.uuid4()}", purpose="withdrawn", to_phone=VOLUNTEER, body="b",
                             correlation_id="c")
    opted_out = Contact(VOLUNTEER, opted_out_at=MORNING)
    assert domain.before_sending(closed, None, offer)[0] == fate
    assert domain.before_sending(closed, opted_out, offer) == (
        ("fail", "opted_out") if fate == "send" else (fate, domain.NOT_SENT["never_offered"] if fate == "cancel"
                                                      else None))


def test_a_free_text_reply_waits_in_the_inbox_about_the_request_its_community_last_texted_it_about(uow):
    """The board puts a request first while an SMS about it waits: notify says how many (`sms.waiting`) when one
    arrives and when a coordinator deals with it; never about another community's request to the same phone."""
    fylde_request, cheshire_request = uuid.uuid4(), uuid.uuid4()
    handled(uow, service_layer.queue_offer, payload("offer.made", phone=VOLUNTEER, request_id=str(fylde_request)),
            "c", MORNING, SETTINGS)
    handled(uow, service_layer.queue_offer, payload("offer.made", phone=VOLUNTEER, request_id=str(cheshire_request),
                                                    offer_id=str(uuid.uuid4()), community="cheshire-east"),
            "c", MORNING, SETTINGS)
    uow.published.clear()
    away = sms("Sorry, I'm away that week")
    service_layer.receive_sms(uow, away, MORNING, SETTINGS)
    service_layer.receive_sms(uow, sms("YES 4821"), MORNING, SETTINGS)  # understood: matching acts on it
    assert uow.inbound.get(away.message_sid).request_id == fylde_request
    [waiting] = uow.events(SmsWaiting)
    assert (waiting.request_id, waiting.waiting, waiting.as_of) == (fylde_request, 1, MORNING)

    service_layer.receive_sms(uow, sms("hello?", sender="+447911000999"), MORNING, SETTINGS)  # texted about nothing
    assert len(uow.events(SmsWaiting)) == 1
    later = MORNING + timedelta(minutes=5)
    service_layer.deal_with(uow, COORDINATOR, away.message_sid, SETTINGS, later)
    assert [(e.request_id, e.waiting, e.as_of) for e in uow.events(SmsWaiting)] == [
        (fylde_request, 1, MORNING), (fylde_request, 0, later)]
