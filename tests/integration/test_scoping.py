"""Nothing leaks across communities, on both backends: every route of every service (each OpenAPI document's
operations and each app's URL map, so a new endpoint is swept without anyone listing it) is called by every role of
Ottawa West about Fylde Coast's data, which was made through the public API and the events between the services.

Ottawa West's users have the same subject and organisation as Fylde Coast's (a subject is not unique across
communities). What they get: never a 5xx; never anything of Fylde Coast's (its people's names, phones, address, or
any id) unless they sent it themselves; empty lists and zero counts; for Fylde Coast's ids exactly what an id that
does not exist gets (404, or 403 where the role may not use the route); and Fylde Coast's records, read by its own
users, are the same after every write as before.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from services.notify.adapters import signature_for
from shared.clock import utcnow
from shared.config import SERVICES, database_url
from shared.contracts import load_event
from shared.db import migrations_config
from shared.topology import SUBSCRIPTIONS
from shared.web import claims_for
from tests.helpers import dispatcher

A, B = "fylde-coast", "ottawa-west"
A_NUMBER = "+447700900100"  # Fylde Coast's sender (shared/data/communities.json)
SUBJECT, ORGANISATION = "sam.same@example.org", "Fylde Coast PCN"  # the same person's subject in both communities
ROLES = ("admin", "coordinator", "referrer", "manager", None)  # None: nobody signed in, no token

TOMORROW = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
YESTERDAY = date.today() - timedelta(days=1)
WHEN = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(hours=2)).isoformat()}
CHECKS = [{"check": "safeguarding", "done_on": (date.today() - timedelta(days=30)).isoformat(),
           "expires_on": (date.today() + timedelta(days=700)).isoformat()}]

# Fylde Coast's people, each with a name, phone (and address) that appear nowhere else.
PERSON = {"name": "Wilhelmina Quorrington", "phone": "+447911729104", "address": "17 Marigoldfield Terrace, Blackpool",
          "postcode": "FY1 4AB"}
REFERRED = {"name": "Evangeline Thistlewood", "phone": "+447911729381", "address": "3 Larkspur Mews, Blackpool",
            "postcode": "FY1 4AB"}
VOLUNTEER = {"name": "Barnaby Featherstonehaugh", "phone": "+447911729675", "postcode": "FY1",
             "skills": ["practical", "bereavement"], "checks": CHECKS, "max_distance_km": 15}
ACTIVITY_ORGANISATION = "Thistledown Bereavement Circle"
MARKERS = ["Quorrington", "Marigoldfield", "Thistlewood", "Larkspur", "Featherstonehaugh", "Pemberthwaite",
           "Thistledown", "729104", "729381", "729675", "729562", "Quillfeather", "Brackenridge", "729733"]
ENTRY = {"name": "Quillfeather Befriending Circle", "kinds": ["home_visit", "shopping"], "postcode": "FY1 4AB",
         "area": "FY1", "latitude": 53.8175, "longitude": -3.0357, "phone": "01253 000000"}  # in Fylde's directory

REQUEST = {"person": PERSON, "support_type": "shopping", "when": WHEN,
           "consent": {"share_contact": True, "sms_contact": True}, "coordinator_notes": "Quorrington's notes"}
REFERRAL = {"person": REFERRED, "support_type": "bereavement_visit", "when": WHEN,
            "consent": {"share_contact": True, "sms_contact": True},
            "referrer": {"organisation": ORGANISATION, "organisation_type": "pcn", "name": "Dr Asha Rao"},
            "reason": "Thistlewood was recently bereaved."}
APPLICANT = {"community": A, "name": "Ottoline Brackenridge", "phone": "+447911729733", "postcode": "FY1 4AB",
             "kinds": ["home_visit"], "consent": True}  # applied to volunteer with Fylde Coast, on its public page
IDEMPOTENCY_KEY, REFERRAL_KEY = "fylde-form-1", "fylde-referral-1"


def service_request() -> dict:
    """A FHIR ServiceRequest for Fylde Coast, with its own marked patient and a window tomorrow."""
    from tests.integration.test_fhir import fixture

    resource = fixture("servicerequest-fylde-coast.json")
    patient = resource["contained"][0]
    patient["name"] = [{"use": "official", "family": "Pemberthwaite", "given": ["Cordelia"]}]
    patient["telecom"] = [{"system": "phone", "value": "+447911729562", "use": "mobile"}]
    resource["subject"]["display"] = "Cordelia Pemberthwaite"
    resource["occurrencePeriod"] = {"start": WHEN["start"], "end": WHEN["end"]}
    resource["authoredOn"] = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    return resource


# --- the four services, and the events between them -------------------------------------------------------------

class Gateway:
    """An SMS gateway that takes every message."""

    def send(self, to: str, body: str, from_: str | None = None) -> str:
        return "SM" + uuid.uuid4().hex


@dataclass
class System:
    """The four services' apps, with the events between them relayed as the bus would."""

    apps: dict[str, Any]
    relayed: dict[str, int] = field(default_factory=dict)

    def client(self, service: str):
        return self.apps[service].test_client()

    def outbox(self, service: str):
        return importlib.import_module(f"services.{service}.adapters").outbox

    def relay(self) -> None:
        """Deliver every event published since the last relay to each service bound to it, until none is left."""
        consumers = [(producer, event_type, consumer) for consumer, groups in SUBSCRIPTIONS.items()
                     for producer, types in groups.values() for event_type in types]
        dispatch = {name: dispatcher(app, name) for name, app in self.apps.items()}
        while True:
            moved = False
            for producer, app in self.apps.items():
                table = self.outbox(producer).table
                with app.extensions["ccs"].sessions() as session:
                    rows = session.scalars(sa.select(table).where(table.id > self.relayed.get(producer, 0))
                                           .order_by(table.id)).all()
                for row in rows:
                    self.relayed[producer] = row.id
                    event = load_event(row.body)
                    for source, event_type, consumer in consumers:
                        if (source, event_type) == (producer, event.type):
                            dispatch[consumer](event)
                    moved = True
            if not moved:
                return

    def send_sms(self) -> None:
        """Notify's sender: every due SMS goes."""
        from services.notify import service_layer

        context = self.apps["notify"].extensions["ccs"]
        service_layer.send_due(context.uow(), Gateway(), utcnow(), context.settings)

    def text(self, phone: str, body: str):
        """A phone texts Fylde Coast's number, through Twilio's signed webhook."""
        settings = self.apps["notify"].extensions["ccs"].settings
        form = {"From": phone, "To": A_NUMBER, "Body": body, "MessageSid": "SM" + uuid.uuid4().hex,
                "AccountSid": "AC" + "0" * 32, "NumMedia": "0"}
        answer = self.client("notify").post("/sms/inbound", data=form, headers={
            "X-Twilio-Signature": signature_for(settings, "/sms/inbound", form)})
        assert answer.status_code == 200, answer.data

    def events(self, service: str, event_type: str) -> list[dict]:
        table = self.outbox(service).table
        with self.apps[service].extensions["ccs"].sessions() as session:
            return [row.body["payload"] for row in session.scalars(sa.select(table).order_by(table.id))
                    if row.event_type == event_type]


@pytest.fixture
def system(app_for):
    return System({name: app_for(name) for name in SERVICES})


def csrf_pair(app) -> tuple[str, str]:
    """A session's CSRF secret and the token a form made with it carries (every service shares the secret key),
    so forms are swept for what they do, not refused for want of a token."""
    from flask import session
    from flask_wtf.csrf import generate_csrf

    with app.test_request_context():
        token = generate_csrf()
        return session["csrf_token"], token


@dataclass
class Seeded:
    """What Fylde Coast has, by the ids the routes take."""

    request: str
    referral: str
    service_request: str
    volunteer: str
    offer: str
    activity: str
    organisation: str
    messages: list[str]
    received: list[str]  # the SMS Fylde Coast's number received, one of them waiting in its inbox
    entry: str = ""  # a service in its signposting directory
    match: str = ""  # a befriending match of its volunteer
    people: list[str] = field(default_factory=list)  # the records of the request's person and the referral's
    concern: str = ""  # a volunteer's concern in its safeguarding log
    applicant: str = ""  # someone who applied to volunteer
    session: str = ""  # a training session, with the volunteer invited
    invitation: str = ""
    check_type: str = ""  # a check of its own, which a kind of help there needs
    question: str = ""  # a question of its own its surveys by SMS ask

    @property
    def ids(self) -> list[str]:
        return [self.request, self.referral, self.service_request, self.volunteer, self.offer, self.activity,
                self.organisation, *self.messages, *self.received, self.entry, self.match, *self.people,
                self.concern, self.applicant, self.session, self.invitation, self.question]


def seed(system: System, token) -> Seeded:
    """Fylde Coast's request, referral, ServiceRequest and volunteer; the volunteer offered the request, saying YES,
    and texted the person's details; a group activity; every event relayed."""
    coordinator = token("coordinator", communities=(A,), subject=SUBJECT, organisation=ORGANISATION)
    referrer = token("referrer", communities=(A,), subject=SUBJECT, organisation=ORGANISATION)
    intake, matching = system.client("intake"), system.client("matching")
    volunteer = matching.post("/volunteers", json=VOLUNTEER, headers=coordinator)
    assert volunteer.status_code == 201, volunteer.json
    applied = matching.post("/applicants", json=APPLICANT)
    assert applied.status_code == 202, applied.json
    [applicant] = matching.get("/applicants", headers=coordinator).json
    training = matching.post("/training/sessions", headers=coordinator, json={
        "topic": "Bereavement support", "starts_at": TOMORROW.isoformat(), "place": "Blackpool Library",
        "trainer": "Dr Rivera", "capacity": 5, "grants": "bereavement_training"})
    assert training.status_code == 201, training.json
    invited = matching.post(f"/training/sessions/{training.json['id']}/invitations", headers=coordinator,
                            json={"volunteers": [volunteer.json["id"]]})
    assert invited.status_code == 200, invited.json
    made = intake.post("/requests", json=REQUEST, headers={**coordinator, "Idempotency-Key": IDEMPOTENCY_KEY})
    assert made.status_code == 201, made.json
    referral = intake.post("/referrals", json=REFERRAL, headers={**referrer, "Idempotency-Key": REFERRAL_KEY})
    assert referral.status_code == 201, referral.json
    sent = intake.post("/fhir/ServiceRequest", data=json.dumps(service_request()), headers=referrer,
                       content_type="application/fhir+json")
    assert sent.status_code == 201, sent.json
    system.relay()
    [offer] = [o for o in system.events("matching", "offer.made") if o["request_id"] == made.json["id"]]
    system.send_sms()
    system.relay()
    system.text(VOLUNTEER["phone"], f"YES {offer['code']}")
    system.relay()
    system.send_sms()
    system.relay()
    system.text(VOLUNTEER["phone"], "Sorry, I'm away that week")  # free text: it waits in the inbox
    system.relay()
    system.text(VOLUNTEER["phone"], f"CONCERN {offer['code']} Mrs Quorrington seemed confused")  # the log's
    system.relay()
    [concern] = system.events("matching", "concern.raised")
    activity = system.client("metrics").post("/activities", headers=coordinator, json={
        "kind": "bereavement_group", "held_on": YESTERDAY.isoformat(), "attendance": 12,
        "organisation": ACTIVITY_ORGANISATION})
    assert activity.status_code == 201, activity.json
    baseline = system.client("metrics").put("/activity/baseline", headers=token("manager", communities=(A,)),
                                            json={"starts_on": YESTERDAY.isoformat()})
    assert baseline.status_code == 200, baseline.json
    from services.intake import service_layer as intake_service
    from services.notify.domain import InboundMessage, OutgoingMessage
    from shared.auth import Actor

    organisation = intake_service.add_organisation(
        system.apps["intake"].extensions["ccs"].uow(), Actor(subject=SUBJECT, role="admin", communities=(A,)),
        {"name": ORGANISATION, "type": "pcn", "adopted_on": None, "webhook_url": "https://pcn.example/hook"})
    entry = intake_service.add_entry(system.apps["intake"].extensions["ccs"].uow(),
                                     Actor(subject=SUBJECT, role="coordinator", communities=(A,)), ENTRY)
    question = intake_service.add_survey_question(
        system.apps["intake"].extensions["ccs"].uow(), Actor(subject=SUBJECT, role="coordinator", communities=(A,)),
        {"respondent": "carer", "text": "How supported do you feel as a carer?"})
    system.relay()  # the register reaches metrics too (organisation.changed)

    from services.matching.domain import BefriendingMatch

    with system.apps["matching"].extensions["ccs"].sessions() as session:  # the task kept as befriending, too
        match = BefriendingMatch(request_id=uuid.UUID(made.json["id"]), offer_id=uuid.UUID(offer["offer_id"]),
                                 volunteer_id=uuid.UUID(volunteer.json["id"]), community=A, support_type="shopping",
                                 rhythm="weekly", started_on=YESTERDAY, review_on=YESTERDAY + timedelta(days=90))
        session.add(match)
        session.commit()
        match_id = str(match.id)
    with system.apps["notify"].extensions["ccs"].sessions() as session:
        messages = session.scalars(sa.select(OutgoingMessage)).all()
        received = session.scalars(sa.select(InboundMessage)).all()
    assert [m.attention for m in received if m.body.startswith("Sorry")] == ["not_understood"]
    assert {m.purpose for m in messages} >= {"offer", "confirmation"}
    [details] = [m for m in messages if m.purpose == "confirmation"]
    assert PERSON["name"].split()[0] in details.body and details.community == A  # the text a leak would show
    people = [intake.get(f"/requests/{made_id}", headers=coordinator).json["person_id"]
              for made_id in (made.json["id"], referral.json["id"])]
    linked = intake.post(f"/people/records/{people[0]}/carers", json={"carer": people[1]}, headers=coordinator)
    assert linked.status_code == 200 and [c["id"] for c in linked.json["carers"]] == [people[1]]
    admin = token("admin", communities=(A,), subject=SUBJECT)  # its own check, needed for meals there
    added = matching.post("/volunteers/checks", headers=admin, json={"key": "larkspur_training",
                                                                     "name": "Larkspur training", "lasts_months": 12})
    assert added.status_code == 201, added.json
    needs = matching.put("/volunteers/checks/requirements/meals", headers=admin,
                         json={"checks": ["safeguarding", "larkspur_training"]})
    assert needs.status_code == 200, needs.json
    return Seeded(request=made.json["id"], referral=referral.json["id"], service_request=sent.json["id"],
                  volunteer=volunteer.json["id"], offer=offer["offer_id"], activity=activity.json["id"],
                  organisation=str(organisation.id),
                  messages=[str(m.id) for m in messages], received=[m.message_sid for m in received],
                  entry=str(entry.id), match=match_id, people=people, concern=concern["concern_id"],
                  applicant=applicant["id"], session=training.json["id"],
                  invitation=invited.json["invitations"][0]["id"], check_type="larkspur_training",
                  question=str(question.id))


def fylde_sees(system: System, token, seeded: Seeded) -> dict[str, Any]:
    """Fylde Coast's records as its own users read them."""
    coordinator = token("coordinator", communities=(A,), subject=SUBJECT, organisation=ORGANISATION)
    referrer = token("referrer", communities=(A,), subject=SUBJECT, organisation=ORGANISATION)
    manager = token("manager", communities=(A,), subject=SUBJECT, organisation=ORGANISATION)
    reads = [("intake", f"/requests/{seeded.request}", coordinator), ("intake", "/requests", coordinator),
             ("intake", f"/referrals/{seeded.referral}", referrer), ("intake", "/referrals", referrer),
             ("intake", f"/fhir/ServiceRequest/{seeded.service_request}", referrer),
             ("intake", f"/fhir/Task/{seeded.service_request}", referrer),
             ("matching", f"/volunteers/{seeded.volunteer}", coordinator), ("matching", "/volunteers", coordinator),
             ("matching", f"/matches/{seeded.request}", coordinator), ("notify", "/sms/messages", coordinator),
             ("metrics", "/activity?period=year", manager), ("intake", "/directory/entries", coordinator),
             ("metrics", "/activity/baseline", manager), ("metrics", "/activity/hourly-value", manager),
             ("intake", f"/people/records/{seeded.people[0]}", coordinator),
             ("intake", f"/concerns/{seeded.concern}", coordinator), ("intake", "/concerns", coordinator),
             ("matching", "/applicants", coordinator),
             ("matching", "/volunteers/checks", token("admin", communities=(A,), subject=SUBJECT))]
    seen = {}
    for service, path, headers in reads:
        answer = system.client(service).get(path, headers=headers)
        assert answer.status_code == 200, (path, answer.json)
        seen[path] = answer.get_data(as_text=True)
    assert PERSON["name"] in seen[f"/requests/{seeded.request}"] and VOLUNTEER["phone"] in seen["/sms/messages"]
    from services.notify.domain import InboundMessage

    with system.apps["notify"].extensions["ccs"].sessions() as session:  # the inbox is a page: read its rows
        seen["inbox"] = sorted((m.message_sid, m.attention, str(m.dealt_with_at))
                               for m in session.scalars(sa.select(InboundMessage)))
    from services.intake.surveys import CommunityQuestion

    with system.apps["intake"].extensions["ccs"].sessions() as session:  # the survey page's questions: its rows
        seen["survey questions"] = sorted((q.text, str(q.retired_at)) for q in session.scalars(
            sa.select(CommunityQuestion).where(CommunityQuestion.community == A)))
    return seen


# --- the routes --------------------------------------------------------------------------------------------------

PATH_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
NOT_SWEPT_METHODS = {"HEAD", "OPTIONS"}


def routes(app, service: str) -> dict[tuple[str, str], set[str]]:
    """(method, path template) -> where it was found ("openapi", "url_map"), for every route of one app."""
    found: dict[tuple[str, str], set[str]] = {}
    document = app.test_client().get(f"/openapi/{service}.json")
    assert document.status_code == 200
    for path, operations in document.json["paths"].items():
        for method in operations:
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                found.setdefault((method.upper(), path), set()).add("openapi")
    for rule in app.url_map.iter_rules():
        template = PATH_PARAMETER.sub(r"{\1}", rule.rule)
        for method in rule.methods - NOT_SWEPT_METHODS:
            found.setdefault((method, template), set()).add("url_map")
    return found


def query_parameters(app, service: str) -> dict[tuple[str, str], set[str]]:
    """The query parameters each documented operation declares."""
    document = app.test_client().get(f"/openapi/{service}.json").json
    return {(method.upper(), path): {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
            for path, operations in document["paths"].items() for method, operation in operations.items()
            if isinstance(operation, dict)}


def values(seeded: Seeded) -> dict[str, tuple[list[str], str]]:
    """Each path parameter: Fylde Coast's values, and one nobody has (what a stranger's id gets)."""
    return {"request_id": ([seeded.request, seeded.referral, seeded.service_request], str(uuid.uuid4())),
            "volunteer_id": ([seeded.volunteer], str(uuid.uuid4())),
            "offer_id": ([seeded.offer], str(uuid.uuid4())),
            "activity_id": ([seeded.activity], str(uuid.uuid4())),
            "organisation_id": ([seeded.organisation], str(uuid.uuid4())),
            "entry_id": ([seeded.entry], str(uuid.uuid4())),
            "match_id": ([seeded.match], str(uuid.uuid4())),
            "person_id": (seeded.people, str(uuid.uuid4())),
            "carer_id": (seeded.people, str(uuid.uuid4())),
            "applicant_id": ([seeded.applicant], str(uuid.uuid4())),
            "session_id": ([seeded.session], str(uuid.uuid4())),
            "message_id": (seeded.messages, str(uuid.uuid4())),
            "message_sid": (seeded.received, "SM" + "9" * 32),
            "concern_id": ([seeded.concern], str(uuid.uuid4())),
            "key": ([seeded.check_type], "no_such_check"),  # Fylde Coast's own check: unknown elsewhere
            "kind": ([], "no_such_kind"),  # kinds of help are everyone's: each community sets its own needs
            "question_id": ([seeded.question], str(uuid.uuid4())),
            "phone": ([VOLUNTEER["phone"], PERSON["phone"]], "+447911729999")}


def ottawa_request() -> dict:
    return {"person": {"name": "Olive Ottawa", "phone": "+16135550166", "postcode": "K1Y"},
            "support_type": "shopping", "when": WHEN, "consent": {"share_contact": False, "sms_contact": False}}


OTTAWA_VOLUNTEER_CSV = ("name,phone,postcode,max_distance_km,skills,safeguarding_done,safeguarding_expires\n"
                        f"Otto Imported,+16135550177,K2A,10,practical,{CHECKS[0]['done_on']},"
                        f"{CHECKS[0]['expires_on']}\n")


def writes(seeded: Seeded) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """What to send to each write route: Flask test-client options, one call each. The bodies are valid, so that
    a refusal is the scope's, not the schema's; where they can, they probe Fylde Coast (its Idempotency-Key and
    body, its community, its volunteer and phones)."""
    csv = OTTAWA_VOLUNTEER_CSV
    return {
        ("POST", "/requests"): [{"json": REQUEST, "headers": {"Idempotency-Key": IDEMPOTENCY_KEY}}],
        ("PATCH", "/requests/{request_id}"): [{"json": {"coordinator_notes": "changed", "urgency": "urgent"}}],
        ("POST", "/requests/{request_id}/cancel"): [{"json": {"reason": "cancelled by the sweep"}}],
        ("POST", "/referrals"): [{"json": REFERRAL, "headers": {"Idempotency-Key": REFERRAL_KEY}}],
        ("POST", "/fhir/ServiceRequest"): [{"data": json.dumps(service_request()),
                                            "content_type": "application/fhir+json"}],
        ("POST", "/fhir"): [{"data": json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b7e8f9a-1c2d-4e3f-8a9b-0c1d2e3f4a5b", "resource": service_request(),
             "request": {"method": "POST", "url": "ServiceRequest"}}]}), "content_type": "application/fhir+json"}],
        ("POST", "/volunteers"): [{"json": {**VOLUNTEER, "name": "Otto Ottawa", "phone": "+16135550188",
                                            "postcode": "K1Y"}}],
        ("PATCH", "/volunteers/{volunteer_id}"): [{"json": {"status": "paused", "name": "Renamed"}}],
        ("POST", "/volunteers/import"): [{"data": csv, "content_type": "text/csv"}],
        ("POST", "/matches/{request_id}/assign"): [{"json": {"volunteer_id": seeded.volunteer}}],
        ("POST", "/matches/{request_id}/rerun"): [{}],
        ("POST", "/matches/{request_id}/done"): [{"json": {"hours": 2}}],
        ("POST", "/offers/{request_id}/assign"): [{"data": {"volunteer_id": seeded.volunteer}}],
        ("POST", "/offers/{request_id}/rerun"): [{"data": {}}],
        ("POST", "/offers/{request_id}/done"): [{"data": {"hours": "2"}}],
        ("POST", "/befriending/{match_id}/end"): [{"json": {"reason": "person_moved"}}],
        ("POST", "/offers/{request_id}/befriending/{match_id}/end"): [{"data": {"reason": "person_moved"}}],
        ("POST", "/activities"): [{"json": {"kind": "death_cafe", "held_on": YESTERDAY.isoformat(), "attendance": 3,
                                            "community": A}},
                                  {"json": {"kind": "death_cafe", "held_on": YESTERDAY.isoformat(), "attendance": 3,
                                            "volunteers": [{"volunteer_id": seeded.volunteer, "hours": 2}]}}],
        ("PUT", "/activity/hourly-value"): [{"json": {"amount": 99, "currency": "CAD", "community": A}}],
        ("PUT", "/activity/baseline"): [{"json": {"starts_on": "2025-01-15", "community": A}}],
        ("POST", "/dashboard/baseline"): [{"data": {"starts_on": "2025-01-15", "community": A}}],
        ("DELETE", "/activity/baseline"): [{"query_string": {"community": A}}],
        ("POST", "/dashboard/activities"): [{"data": {"kind": "death_cafe", "held_on": YESTERDAY.isoformat(),
                                                      "attendance": "3", "community": A,
                                                      "volunteers.0.volunteer_id": seeded.volunteer,
                                                      "volunteers.0.hours": "2"}}],
        ("POST", "/login"): [{"data": {"email": "nobody@example.org", "password": "not the password at all",
                                       "next": "//evil.example"}}],
        ("POST", "/logout"): [{"data": {"next": "//evil.example"}}],
        ("POST", "/board/new"): [{"data": {"person.name": "Olive Ottawa", "person.postcode": "K1Y",
                                           "support_type": "shopping", "when.kind": "once",
                                           "when.start": TOMORROW.strftime("%Y-%m-%dT%H:%M"),
                                           "when.end": (TOMORROW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}}],
        ("POST", "/my-referrals/new"): [{"data": {"person.name": "Olive Ottawa", "person.postcode": "K1Y",
                                                  "support_type": "shopping", "when.kind": "flexible",
                                                  "when.days": "mon", "when.part_of_day": "morning",
                                                  "reason": "Lives alone", "referrer.organisation": "Fylde Coast PCN",
                                                  "referrer.organisation_type": "pcn",
                                                  "referrer.name": "Dr Sweep"}}],
        ("POST", "/communities"): [{"data": {"community": A}}],
        ("POST", "/organisations/new"): [{"data": {"name": ORGANISATION, "type": "pcn"}}],
        ("POST", "/organisations/{organisation_id}"): [{"data": {"name": "Renamed by the sweep", "type": "pcn",
                                                                 "webhook_url": "https://evil.example/hook"}}],  # an Ottawa administrator choosing Fylde Coast
        ("POST", "/organisations/{organisation_id}/merge"): [{"data": {"duplicate": seeded.organisation,
                                                                       "same": "yes"}}],
        ("POST", "/board/{request_id}/cancel"): [{"data": {"reason": "cancelled by the sweep"}}],
        ("POST", "/board/{request_id}/signpost"): [{"data": {"entry_id": seeded.entry}}],
        ("POST", "/board/{request_id}/same-person"): [{"data": {"answer": "same"}}],
        ("POST", "/people/{person_id}/merge"): [{"data": {"other": seeded.people[1], "confirm": "1"}}],
        ("POST", "/people/records/{person_id}/merge"): [{"json": {"other": seeded.people[1]}}],
        ("POST", "/people/records/{person_id}/carers"): [{"json": {"carer": seeded.people[1]}}],
        ("DELETE", "/people/records/{person_id}/carers/{carer_id}"): [{}],
        ("POST", "/people/{person_id}/carers"): [{"data": {"carer": seeded.people[1]}}],
        ("POST", "/people/{person_id}/carers/{carer_id}/remove"): [{"data": {}}],
        ("POST", "/people/records/{person_id}/death"): [{"json": {"died_on": YESTERDAY.isoformat()}}],
        ("POST", "/people/{person_id}/death"): [{"data": {"died_on": YESTERDAY.isoformat()}}],
        ("PUT", "/people/records/{person_id}/monitoring"): [{"json": {"consent": True, "sex": "female"}}],
        ("POST", "/people/{person_id}/monitoring"): [{"data": {"consent": "1", "sex": "female"}}],
        ("POST", "/directory/new"): [{"data": {"name": "Ottawa Visitors", "kinds": "home_visit", "postcode": "K1Y",
                                               "phone": "+16135550100"}}],
        ("POST", "/directory/{entry_id}"): [{"data": {"name": "Renamed by the sweep", "kinds": "shopping",
                                                      "phone": "+16135550100"}}],
        ("POST", "/directory/{entry_id}/retire"): [{"data": {"retired": "1"}}],
        ("POST", "/directory/import"): [{"data": {"file": (io.BytesIO(
            b"id,name,kinds,postcode,phone\r\nx1,Ottawa Lunch Club,meals,K1Y,+16135550101\r\n"), "directory.csv")},
            "content_type": "multipart/form-data"}],
        ("POST", "/board/{request_id}/edit"): [{"data": {"person.name": "Renamed", "person.postcode": "K1Y",
                                                          "support_type": "shopping", "urgency": "urgent",
                                                          "when.kind": "flexible", "when.days": "mon",
                                                          "when.part_of_day": "morning"}}],
        ("POST", "/roster/import"): [{"data": {"file": (io.BytesIO(csv.encode()), "volunteers.csv")},
                                      "content_type": "multipart/form-data"}],
        ("POST", "/roster/new"): [{"data": {"name": "Otto Form", "phone": "+16135550189", "postcode": "K1Y",
                                            "max_distance_km": "10", "skills": "practical"}}],
        ("POST", "/roster/{volunteer_id}/edit"): [{"data": {"name": "Renamed", "phone": VOLUNTEER["phone"],
                                                            "postcode": "K1Y", "max_distance_km": "10",
                                                            "skills": "practical"}}],
        ("POST", "/roster/{volunteer_id}/status"): [{"data": {"status": "left"}}],
        ("POST", "/roster/{volunteer_id}/checks"): [{"data": {"check": "safeguarding", "done_on": "2026-01-05"}}],
        ("POST", "/simulator"): [{"data": {"phone": VOLUNTEER["phone"], "body": "YES"}},
                                 {"data": {"phone": "+16135550166", "to": A_NUMBER, "body": "HELP"}}],
        ("POST", "/sms/inbound"): [{"data": {"From": VOLUNTEER["phone"], "To": A_NUMBER, "Body": "STOP",
                                             "MessageSid": "SM" + "0" * 32}}],
        ("POST", "/sms/status"): [{"data": {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}}],
        ("POST", "/sms/inbox/{message_sid}/dealt-with"): [{"data": {}}],
        ("POST", "/concerns/{concern_id}/actions"): [{"json": {"action": "noted", "close": True}}],
        ("POST", "/board/concerns/{concern_id}"): [{"data": {"action": "noted", "close": "1"}}],
        ("POST", "/board/surveys"): [{"data": {"respondent": "carer", "text": "Added by the sweep?"}}],
        ("POST", "/board/surveys/{question_id}/retire"): [{"data": {}}],
        # applying is public: anyone may apply to any community (here to Ottawa West, so Fylde Coast's list stays)
        ("POST", "/applicants"): [{"json": {**APPLICANT, "community": B, "phone": "+16135550199",
                                            "postcode": "K1Y"}}],
        ("POST", "/applicants/{applicant_id}/stage"): [{"json": {"stage": "declined", "reason": "by the sweep"}}],
        ("POST", "/applicants/{applicant_id}/move"): [{"data": {"stage": "contacted"}}],
        ("POST", "/training/sessions"): [{"json": {"topic": "Sweep", "starts_at": TOMORROW.isoformat(),
                                                   "online": True, "trainer": "Sweep", "capacity": 3}}],
        ("POST", "/training/sessions/{session_id}/invitations"): [{"json": {"volunteers": [seeded.volunteer]}}],
        ("POST", "/training/sessions/{session_id}/attendance"): [{"json": {"invitations": [seeded.invitation]}}],
        ("POST", "/training"): [{"data": {"topic": "Sweep", "starts_at": TOMORROW.strftime("%Y-%m-%dT%H:%M"),
                                          "online": "yes", "trainer": "Sweep", "capacity": "3"}}],
        ("POST", "/training/{session_id}/invite"): [{"data": {"volunteers": seeded.volunteer}}],
        ("POST", "/training/{session_id}/attendance"): [{"data": {"invitations": seeded.invitation}}],
        ("POST", "/volunteers/checks"): [{"json": {"key": "ottawa_sweep", "name": "Sweep training"}}],
        ("PATCH", "/volunteers/checks/{key}"): [{"json": {"name": "Renamed by the sweep", "retired": True}}],
        ("PUT", "/volunteers/checks/requirements/{kind}"): [{"json": {"checks": []}}],
        ("POST", "/roster/checks"): [{"data": {"key": "ottawa_form", "name": "Form training", "lasts_months": "6"}}],
        ("POST", "/roster/checks/requirements"): [{"data": {"requires.meals": "safeguarding"}}],
        ("POST", "/roster/checks/{key}"): [{"data": {"name": "Renamed by the sweep", "retired": "yes"}}],
        ("POST", "/join/{slug}"): [{"data": {"name": "Sweep", "phone": "+447911729555", "postcode": "FY1",
                                             "kinds": "shopping", "consent": "yes", "website": "honeypot"}}],
    }


# Public pages (no sign-in): every role gets them, Fylde Coast's among them; they show nothing of its records.
PUBLIC_PAGES = {"/join/{slug}", "/join/{slug}/thanks"}


# Query parameters that ask about Fylde Coast.
PROBES = {"to": [VOLUNTEER["phone"], PERSON["phone"]], "community": [A]}


def fresh(options: dict[str, Any]) -> dict[str, Any]:
    """A copy of a call's options (a file to upload can be read once only)."""
    copied = {k: v for k, v in options.items() if k != "data"}
    data = options.get("data")
    if isinstance(data, dict) and "file" in data:
        stream, name = data["file"]
        stream.seek(0)
        data = {**data, "file": (io.BytesIO(stream.read()), name)}
        stream.seek(0)
    if data is not None:
        copied["data"] = copy.copy(data) if isinstance(data, dict) else data
    return copied


# --- the sweep ---------------------------------------------------------------------------------------------------

@dataclass
class Sweep:
    system: System
    token: Any
    seeded: Seeded
    calls: int = 0
    covered: set = field(default_factory=set)
    csrf: str = ""

    def client(self, service: str, role: str | None):
        """A test client of one service for an Ottawa West user in `role` (signed in for pages; the token is
        sent with each call)."""
        client = self.system.client(service)
        secret, self.csrf = csrf_pair(self.system.apps[service])
        with client.session_transaction() as session:
            session["csrf_token"] = secret
            if role is not None:
                session["user"] = claims_for(SUBJECT, role, [B], ORGANISATION)
        return client

    def headers(self, role: str | None) -> dict[str, str]:
        if role is None:
            return {}
        return self.token(role, communities=(B,), subject=SUBJECT, organisation=ORGANISATION)

    def call(self, client, role, method: str, path: str, options: dict[str, Any]):
        options = fresh(options)
        options["headers"] = {**self.headers(role), "X-CSRFToken": self.csrf, **options.get("headers", {})}
        answer = client.open(path, method=method, **options)
        self.calls += 1
        sent = (path + json.dumps(options.get("json")) + str(options.get("data"))
                + str(options.get("query_string"))).lower()
        # decimals (a process's start time in /metrics, 1.7651729104e+09) may hold a phone's digits by chance
        text = re.sub(r"\d+\.\d+(e[+-]?\d+)?", "#", answer.get_data(as_text=True).lower())
        where = f"{role} {method} {path}"
        assert answer.status_code < 500, f"{where}: {answer.status_code} {text[:500]}"
        for marker in MARKERS + self.seeded.ids:
            if marker.lower() not in sent:
                assert marker.lower() not in text, f"{where} ({answer.status_code}) shows Fylde Coast's {marker}"
        return answer

    def read(self, service, role, method, path, parameters: set[str]) -> None:
        """A read without ids: it says nothing of Fylde Coast (an empty list, zero counts), asked plainly or about
        Fylde Coast's phones and community."""
        client = self.client(service, role)
        queries = [{}] + [{name: value} for name, given in PROBES.items() for value in given
                          if name in parameters]
        for query in queries:
            answer = self.call(client, role, method, path, {"query_string": query})
            if answer.status_code == 200 and answer.is_json:
                assert_nothing_counted(answer.json, f"{role} {path} {query}")

    def by_id(self, service, role, method, template, options: dict[str, Any]) -> None:
        """A read or write of each of Fylde Coast's ids gets what an id nobody has gets."""
        client = self.client(service, role)
        names = re.findall(r"{([^}]+)}", template)
        known = values(self.seeded)
        missing = [name for name in names if name not in known]
        assert not missing, f"{method} {template}: give the sweep Fylde Coast's values for {missing} in values()"
        for name in names:
            theirs, nobodys = known[name]
            others = template
            for other in names:
                if other != name:
                    others = others.replace("{" + other + "}", known[other][0][0])
            stranger = self.call(client, role, method, others.replace("{" + name + "}", nobodys), options)
            for value in theirs:
                answer = self.call(client, role, method, others.replace("{" + name + "}", value), options)
                assert answer.status_code == stranger.status_code, (
                    f"{role} {method} {template} with Fylde Coast's {name}: {answer.status_code}, "
                    f"but {stranger.status_code} for an id nobody has")
                assert answer.status_code in (302, 401, 403, 404), (
                    f"{role} {method} {template}: {answer.status_code} {answer.get_data(as_text=True)[:300]}")


def messages_are_fylde_coasts_only(system: System, token, seeded: Seeded) -> None:
    """The issue's case by name: another community's coordinator lists none of Fylde Coast's SMS, the details
    text least of all, with or without `to=`; Fylde Coast's own coordinator does."""
    notify = system.client("notify")
    for role in ("coordinator", "admin"):
        ottawa = token(role, communities=(B,), subject=SUBJECT)
        assert notify.get("/sms/messages", headers=ottawa).json == []
        for phone in (VOLUNTEER["phone"], PERSON["phone"]):
            assert notify.get("/sms/messages", query_string={"to": phone}, headers=ottawa).json == []
    fylde = token("coordinator", communities=(A,), subject=SUBJECT)
    listed = notify.get("/sms/messages", query_string={"to": VOLUNTEER["phone"]}, headers=fylde).json
    assert listed and {m["id"] for m in listed} <= set(seeded.messages)
    assert any(PERSON["name"].split()[0] in m["body"] for m in listed)  # the details text, for Fylde Coast only


def assert_nothing_counted(body: Any, where: str) -> None:
    """A list is empty; counts (metrics) are all zero."""
    if isinstance(body, list):
        assert body == [], f"{where} lists {body[:3]}"
    elif isinstance(body, dict) and "periods" in body:
        for period in body["periods"]:
            for key in ("measures", "previous"):
                for name, value in period[key].items():
                    assert value in (0, 0.0, None, {}, "") or (isinstance(value, dict) and not any(value.values())), \
                        f"{where}: {name} is {value!r}"


def test_no_route_of_any_service_shows_or_changes_another_communitys_data(system, token):
    seeded = seed(system, token)
    before = fylde_sees(system, token, seeded)
    messages_are_fylde_coasts_only(system, token, seeded)
    sweep = Sweep(system, token, seeded)
    every = {}
    for service, app in system.apps.items():
        for (method, template), sources in routes(app, service).items():
            every[(service, method, template)] = sources
    documented = {service: query_parameters(app, service) for service, app in system.apps.items()}
    bodies = writes(seeded)

    # Reads first, so that any list is Ottawa West's own (and so empty); then writes.
    for (service, method, template) in sorted(every, key=lambda route: route[1] != "GET"):
        parameters = documented[service].get((method, template), set())
        if method != "GET" and "{" in template and (method, template) not in bodies:
            pytest.fail(f"{method} {template}: give the sweep a valid body in writes(), so a refusal is the scope's")
        calls = bodies.get((method, template), [{}])
        for role in ROLES:
            for options in calls:
                if template in PUBLIC_PAGES:
                    sweep.call(sweep.client(service, role), role, method, template.replace("{slug}", A), options)
                elif "{" in template:
                    sweep.by_id(service, role, method, template, options)
                elif method == "GET":
                    sweep.read(service, role, method, template, parameters)
                else:
                    sweep.call(sweep.client(service, role), role, method, template, options)
        sweep.covered.add((service, method, template))
    system.relay()  # whatever the writes published reaches the other services too
    after = fylde_sees(system, token, seeded)
    assert after == before, "a write by another community changed Fylde Coast's records"
    assert {t for _, m, t in sweep.covered if m == "GET" and "{" in t} >= {
        "/requests/{request_id}", "/referrals/{request_id}", "/fhir/ServiceRequest/{request_id}",
        "/fhir/Task/{request_id}",
        "/volunteers/{volunteer_id}", "/matches/{request_id}", "/board/{request_id}", "/roster/{volunteer_id}",
        "/sms/conversations/{phone}"}
    documented_routes = {(s, m, t) for (s, m, t), sources in every.items() if "openapi" in sources}
    assert len(documented_routes) >= 18 and len(sweep.covered) >= 50, (len(documented_routes), len(sweep.covered))
    assert sweep.calls >= 450, sweep.calls


# --- the notify migration's backfill -------------------------------------------------------------------------------

def test_the_migration_gives_existing_messages_their_community(migrated):
    """Messages kept before 0003 get the community whose number sent them; a task's details and "closed" texts
    that of the offer they follow; an answer that of the number the phone texted."""
    from services.notify.adapters import inbound_messages, outgoing_messages

    url = database_url("notify")
    config = migrations_config("notify", url)
    command.downgrade(config, "0002")
    engine = sa.create_engine(url)
    offer_id = uuid.uuid4()
    old = sa.table("outgoing_messages", *(sa.column(c.name, c.type) for c in outgoing_messages.c
                                         if c.name != "community"))
    now = datetime.now(timezone.utc)

    def message(key, purpose, to, from_phone, at=now):
        return {"id": uuid.uuid4(), "key": key, "purpose": purpose, "to_phone": to, "body": "x", "status": "sent",
                "correlation_id": "c", "created_at": at, "attempts": 1, "from_phone": from_phone}

    rows = [message(f"offer:{offer_id}", "offer", "+447911729675", "+16135550100"),
            message(f"accepted:{offer_id}", "confirmation", "+447911729675", None),
            message(f"withdrawn:{uuid.uuid4()}", "withdrawn", "+447911729675", None),
            message("answer:1", "answer", "+447911729381", None, now + timedelta(minutes=5)),
            message("offer:x", "offer", "+447911729104", "+447700900200")]
    with engine.begin() as connection:
        connection.execute(old.insert(), rows)
        connection.execute(inbound_messages.insert(), [
            {"message_sid": "SMold", "from_phone": "+447911729381", "to_phone": A_NUMBER, "body": "hi",
             "received_at": now}])
    command.upgrade(config, "head")
    with engine.connect() as connection:
        found = dict(connection.execute(sa.select(outgoing_messages.c.key, outgoing_messages.c.community)).all())
    engine.dispose()
    assert found == {f"offer:{offer_id}": B, f"accepted:{offer_id}": B, rows[2]["key"]: None, "answer:1": A,
                     "offer:x": "cheshire-east"}
