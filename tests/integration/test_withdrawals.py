"""STOP withdraws a volunteer's offers, and an SMS that no longer applies is never sent: intake, matching and notify
with their databases, on both backends. Events go from each service's outbox to every service bound to them
(shared/topology.py), through each one's real handlers (`dispatcher`), in the order they were published; notify's
sender sends through a gateway that records what went."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.notify import service_layer as notify_service
from services.notify.entrypoints import handlers as notify_handlers
from shared import topology
from shared.contracts import load_event
from shared.web import claims_for
from tests.helpers import dispatcher
from tests.integration.test_matching import register

SERVICES = ("intake", "matching", "notify")
TOMORROW = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
SHOPPING = {
    "person": {"name": "Pat Example", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
               "postcode": "FY1 4AB"},
    "support_type": "shopping",
    "when": {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(hours=2)).isoformat()},
    "consent": {"share_contact": True, "sms_contact": True},
}


class Gateway:
    """Takes every SMS, in order: `sent` holds (to, body)."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def send(self, to, body, from_=None):
        self.sent.append((to, body))
        return f"SM{uuid.uuid4().hex}"

    def to(self, phone: str) -> list[str]:
        return [body for to, body in self.sent if to == phone]


class System:
    """Intake, matching and notify (and metrics, with `metrics`) on the test's backend, with the bus played in order
    through their handlers."""

    def __init__(self, app_for, token, metrics: bool = False):
        self.apps = {name: app_for(name) for name in SERVICES + (("metrics",) if metrics else ())}
        self.dispatch = {name: dispatcher(app, name) for name, app in self.apps.items()}
        self.carried: set[tuple[str, uuid.UUID]] = set()
        self.gateway = Gateway()
        self.headers = token("coordinator")

    def client(self, name: str):
        return self.apps[name].test_client()

    def outbox(self, name: str) -> list:
        from importlib import import_module

        table = import_module(f"services.{name}.adapters").outbox.table
        with self.apps[name].extensions["ccs"].sessions() as session:
            return session.scalars(sa.select(table).order_by(table.id)).all()

    def events(self, name: str, event_type: str) -> list[dict]:
        return [row.body["payload"] for row in self.outbox(name) if row.event_type == event_type]

    def carry(self) -> None:
        """Deliver every event published so far to each service bound to it, oldest first, until none is left."""
        moved = True
        while moved:
            moved = False
            for producer in self.apps:
                for row in self.outbox(producer):
                    for consumer in self.apps:
                        bound = {t for group_producer, types in topology.SUBSCRIPTIONS[consumer].values()
                                 if group_producer == producer for t in types}
                        if row.event_type in bound and (consumer, row.event_id) not in self.carried:
                            self.carried.add((consumer, row.event_id))
                            self.dispatch[consumer](load_event(row.body))
                            moved = True

    def send(self, at: datetime | None = None, limit: int = 20) -> int:
        """Run notify's sender once, at `at` (now by default)."""
        notify = self.apps["notify"].extensions["ccs"]
        return notify_service.send_due(notify.uow(), self.gateway, at or datetime.now(timezone.utc),
                                       notify.settings, limit=limit)

    def text(self, phone: str, body: str) -> None:
        """A volunteer texts us, through notify's signed webhook as Twilio posts it."""
        from services.notify.adapters import signature_for

        form = {"From": phone, "To": "+447700900100", "Body": body, "MessageSid": "SM" + uuid.uuid4().hex,
                "AccountSid": "AC" + "0" * 32, "NumMedia": "0"}
        signature = signature_for(self.apps["notify"].extensions["ccs"].settings, "/sms/inbound", form)
        answer = self.client("notify").post("/sms/inbound", data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200

    def volunteer(self, name: str, phone: str) -> dict:
        return register(self.client("matching"), self.headers, name, phone)

    def request(self, **changes) -> str:
        answer = self.client("intake").post("/requests", json={**SHOPPING, **changes}, headers=self.headers)
        assert answer.status_code == 201, answer.json
        return answer.json["id"]

    def seen_by_intake(self, request_id: str) -> dict:
        return self.client("intake").get(f"/requests/{request_id}", headers=self.headers).json

    def offers(self, request_id: str) -> dict[str, object]:
        """Matching's offers of a request, by the phone they went to."""
        from services.matching.domain import Offer, Volunteer

        with self.apps["matching"].extensions["ccs"].sessions() as session:
            rows = session.execute(sa.select(Offer, Volunteer.phone).join(Volunteer, Volunteer.id == Offer.volunteer_id)
                                   .where(Offer.request_id == uuid.UUID(request_id))).all()
        return {phone: offer for offer, phone in rows}

    def messages(self, phone: str) -> list:
        """What notify queued for a phone, oldest first."""
        from services.notify.domain import OutgoingMessage

        with self.apps["notify"].extensions["ccs"].sessions() as session:
            return session.scalars(sa.select(OutgoingMessage).where(OutgoingMessage.to_phone == phone)
                                   .order_by(OutgoingMessage.created_at)).all()


@pytest.fixture
def system(app_for, token, monkeypatch):
    def build(batch: int, quiet_hours: bool = False) -> System:
        monkeypatch.setenv("CCS_OFFER_BATCH", str(batch))
        if quiet_hours:
            monkeypatch.delenv("CCS_QUIET_HOURS")
        return System(app_for, token)

    return build


def test_stop_withdraws_the_open_offer_at_once_the_cascade_moves_on_and_a_later_yes_wins_nothing(system):
    """Issue 12: a volunteer who texted STOP kept their open offers, a later YES still won the task, and no
    coordinator was told."""
    s = system(batch=1)
    ann, bob = s.volunteer("Ann", "07911 123461")["phone"], s.volunteer("Bob", "07911 123462")["phone"]
    request_id = s.request()
    s.carry()
    code = s.offers(request_id)[ann].code  # Ann is asked first (the same distance; by name)
    assert s.send() == 1 and s.gateway.to(ann) == [s.messages(ann)[0].body]
    s.carry()

    s.text(ann, "STOP")
    s.carry()
    offers = s.offers(request_id)
    assert (offers[ann].status, offers[bob].status) == ("withdrawn", "open")  # the next batch, at once
    assert [(e["phone"], e["reason"]) for e in s.events("matching", "offer.withdrawn")] == [(ann, "opted_out")]

    s.text(ann, f"YES {code}")
    s.carry()
    assert s.events("matching", "offer.accepted") == []
    assert s.offers(request_id)[ann].status == "withdrawn"
    assert [e["reason"] for e in s.events("matching", "reply.unresolved")] == ["no_such_offer"]

    seen = s.seen_by_intake(request_id)
    assert seen["status"] == "offered"
    assert [(t["what"], t["detail"]) for t in seen["timeline"] if t["what"] == "withdrawn"] == [
        ("withdrawn", f"Offer withdrawn (ref {code}): the volunteer opted out of SMS")]

    s.send()
    assert len(s.gateway.to(ann)) == 1  # after STOP nothing more went to Ann: no closed text, no answer
    closed = next(m for m in s.messages(ann) if m.purpose == "withdrawn")
    assert (closed.status, closed.error) == ("cancelled", "not sent: they opted out of SMS")

    bob_code = s.offers(request_id)[bob].code
    s.text(bob, f"YES {bob_code}")
    s.carry()
    assert s.seen_by_intake(request_id)["status"] == "matched" and s.offers(request_id)[bob].status == "accepted"


def test_a_volunteer_holding_a_task_who_opts_out_keeps_it_and_the_requests_timeline_says_so(system):
    s = system(batch=1)
    ann = s.volunteer("Ann", "07911 123463")["phone"]
    request_id = s.request()
    s.carry()
    s.send()
    s.carry()
    code = s.offers(request_id)[ann].code
    s.text(ann, f"YES {code}")
    s.carry()
    s.text(ann, "STOP")
    s.carry()
    assert s.offers(request_id)[ann].status == "accepted"
    seen = s.seen_by_intake(request_id)
    assert seen["status"] == "matched"
    assert seen["timeline"][-1]["what"] == "volunteer opted out"
    assert seen["timeline"][-1]["detail"].startswith(f"The volunteer with the task (ref {code}) opted out of SMS")


@pytest.mark.parametrize("ending", ["matched", "cancelled"])
def test_offers_held_by_quiet_hours_are_cancelled_when_the_request_is_matched_or_cancelled(system, monkeypatch,
                                                                                             ending):
    """Issue 12: offers held by quiet hours still went out at 08:00 after the request was matched or cancelled."""
    s = system(batch=2, quiet_hours=True)
    ann, bob = s.volunteer("Ann", "07911 123464"), s.volunteer("Bob", "07911 123465")
    night = datetime.now(timezone.utc).replace(hour=23, minute=30, second=0, microsecond=0)  # quiet in Blackpool
    monkeypatch.setattr(notify_handlers, "utcnow", lambda: night)
    request_id = s.request()
    s.carry()
    held = [s.messages(v["phone"])[0] for v in (ann, bob)]
    assert {m.status for m in held} == {"queued"} and all(m.next_attempt_at > night for m in held)
    assert s.send(night) == 0

    if ending == "matched":  # a coordinator gives Ann the task while the offers wait for the morning
        answer = s.client("matching").post(f"/matches/{request_id}/assign", headers=s.headers,
                                           json={"volunteer_id": ann["id"]})
        assert answer.status_code == 200, answer.json
    else:
        answer = s.client("intake").post(f"/requests/{request_id}/cancel", headers=s.headers,
                                         json={"reason": "No longer needed"})
        assert answer.status_code == 200, answer.json
    s.carry()

    morning = night + timedelta(hours=10)
    s.send(morning)
    offers = [m for v in (ann, bob) for m in s.messages(v["phone"]) if m.purpose == "offer"]
    assert [m.status for m in offers] == ["cancelled", "cancelled"]
    assert all(body.startswith("Thank you! Task") for _, body in s.gateway.sent)  # no offer, no closed text went
    assert s.seen_by_intake(request_id)["status"] == ending
    if ending == "matched":
        assert [to for to, _ in s.gateway.sent] == [ann["phone"]]  # only the details of the task she was given
    else:
        assert s.gateway.sent == []
    for v in (ann, bob):  # the coordinator still sees them, as not sent
        with s.client("notify") as client:
            with client.session_transaction() as session:
                session["user"] = claims_for("test", "coordinator", ["fylde-coast"])
            page = client.get(f"/sms/conversations/{v['phone']}").get_data(as_text=True)
        assert "Not sent · offer · <span class=\"status status-cancelled\">cancelled</span>" in page


def test_a_closed_text_goes_only_to_a_volunteer_whose_offer_went_and_after_it(system):
    s = system(batch=3)
    ann, bob, cat = (s.volunteer(n, f"07911 12347{i}")["phone"] for i, n in enumerate(("Ann", "Bob", "Cat")))
    request_id = s.request()
    s.carry()
    assert s.send(limit=2) == 2  # Ann's and Bob's offers went; Cat's waits its turn
    s.carry()
    offers = s.offers(request_id)
    s.text(bob, f"YES {offers[bob].code}")
    s.carry()
    s.send()

    assert s.gateway.to(ann) == [  # the offer, then (never before it) that it is closed
        s.messages(ann)[0].body,
        f"Thank you: offer {offers[ann].code} is closed, another volunteer has taken it. No need to reply."]
    assert s.gateway.to(cat) == []
    assert [(m.purpose, m.status) for m in s.messages(cat)] == [("offer", "cancelled"), ("withdrawn", "cancelled")]
    assert {e["reason"] for e in s.events("matching", "offer.withdrawn")} == {"taken"}
