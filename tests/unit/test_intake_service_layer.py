"""Intake's use cases with in-memory repositories: no database, no bus, no Flask app."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.intake import service_layer
from services.intake.domain import (AuditEntry, NotFound, NotOpen, SupportRequest, User, UserExists, board_rank,
                                    name_key, referred_by, within_reach)
from services.intake.domain import (SIGN_IN_LIMIT, InvalidRevocation, TooManySignIns, WeakPassword,
                                    locked_for)
from shared.auth import SYSTEM, Actor, subject_digest
from shared.config import Settings
from shared.idempotency import (Idempotency, IdempotencyKey, IdempotencyKeyInUse, IdempotencyKeyReused,
                                InvalidIdempotencyKey)
from shared.contracts import load_event, make_event
from shared.contracts.intake import (RequestCancelled, RequestSubmitted, RequestUpdated, TaskDetailsShared,
                                    TokenRevoked)
from shared.taxonomy import SOURCES
from tests.unit.fakes import FakeAnswers, FakeUnitOfWork, Table

SETTINGS = Settings(service="intake", var_dir=Path("."), database_url="", broker_url="", secret_key="a secret",
                    public_url="", twilio_account_sid=None, twilio_auth_token=None, twilio_from_number=None,
                    twilio_base_url=None, twilio_messaging_service_sid=None, default_region="GB", max_attempts=5,
                    poll_interval=0.1)
KIM = Actor(subject="kim@fylde.org", role="coordinator", communities=("fylde-coast",))
OTTAWA = Actor(subject="lou@ottawa.example", role="coordinator", communities=("ottawa-west",))
GP = Actor(subject="asha@pcn.nhs.uk", role="referrer", communities=("fylde-coast",), organisation="Fylde Coast PCN")
PARTNER = Actor(subject="sam@ageuk.example", role="referrer", communities=("fylde-coast",),
                organisation="Age UK Blackpool")
EHR = Actor(subject="ehr@fylde-pcn.nhs.uk", role="referrer", communities=("fylde-coast",))
START = datetime(2030, 1, 7, 14, 0, tzinfo=timezone.utc)
SHOPPING = {
    "person": {"name": "Pat Example", "phone": "+441253477000", "address": "1 Promenade, Blackpool",
               "postcode": "FY1 4AB", "area": "FY1", "latitude": 53.8175, "longitude": -3.0357,
               "preferred_language": "en", "date_of_birth": None, "is_carer": False},
    "support_type": "shopping", "urgency": "routine", "when": {"start": START, "end": START + timedelta(hours=2)},
    "repeat": None, "preferences": {}, "consent": {"share_contact": True, "sms_contact": True},
    "coordinator_notes": "Lives alone",
}
REFERRAL = {**{k: v for k, v in SHOPPING.items() if k != "coordinator_notes"}, "support_type": "bereavement_visit",
            "referrer": {"organisation": "Age UK Blackpool", "organisation_type": "partner", "name": "Sam Lee",
                         "contact": "01253 000222"},
            "reason": "Recently bereaved.", "external_id": None}


class FakeRequests(Table):
    def add(self, request):
        self.put(request.id, request)

    def get(self, request_id, actor):
        request = self.find(request_id)
        return request if request is not None and within_reach(request, actor) else None

    def get_referral(self, request_id, actor):
        request = self.find(request_id)
        return request if request is not None and referred_by(request, actor) else None

    def list(self, actor, filters, page, search="", now=None):
        rows = sorted((r for r in self.all() if within_reach(r, actor)
                       and all(getattr(r, name) == value for name, value in filters.items())
                       and search.lower() in r.person_name.lower()), key=lambda r: board_rank(r, now))
        page.item_count = len(rows)
        return rows[page.first_item:page.first_item + page.page_size]

    def list_referrals(self, actor, page):
        rows = sorted((r for r in self.all() if referred_by(r, actor)), key=lambda r: r.created_at, reverse=True)
        page.item_count = len(rows)
        return rows[page.first_item:page.first_item + page.page_size]


class FakePeople(Table):
    def add(self, person):
        self.put(person.id, person)

    def get(self, person_id, actor):
        person = self.find(person_id)
        return person if person is not None and (actor == SYSTEM or actor.may_see(person.community)) else None

    def like(self, community, phone, name):
        return [p for p in self.all() if p.community == community and p.merged_into is None
                and ((phone and p.phone == phone) or p.name_key == name_key(name))]


class FakeAudit(Table):
    def add(self, entry):
        self.put(len(self.rows) + len(self.pending), entry)


class FakeUsers(Table):
    def add(self, user):
        self.put(user.email, user)

    def by_email(self, email):
        return self.find(email)

    def active(self, email):
        user = self.find(email)
        return user if user is not None and user.active else None


class FakeSignIns(Table):
    def failures(self, account, address, since):
        recent = [f for f in self.all() if f.at > since]
        return [f.at for f in recent if f.account == account], [f.at for f in recent if f.address == address]

    def add(self, failure):
        self.put(len(self.rows) + len(self.pending), failure)

    def forget(self, account):
        self.rows = {k: f for k, f in self.rows.items() if f.account != account}
        self.pending = {k: f for k, f in self.pending.items() if f.account != account}


class FakeRevokedTokens(Table):
    def add(self, revoked):
        self.put(len(self.rows) + len(self.pending), revoked)


class FakeIntakeAnswers(FakeAnswers):
    def add(self, answer):
        self.put((answer.subject, answer.key), answer)


class FakeSurveys(Table):
    """Surveys by SMS (services/intake/adapters.py SqlSurveys): no community questions here."""

    def questions(self, actor, community=None):
        return []

    def of_request(self, request_id):
        return next((s for s in self.all() if s.request_id == request_id), None)

    def add(self, survey):
        self.put(survey.id, survey)


class FakeIntakeUnitOfWork(FakeUnitOfWork):
    """Intake's unit of work in memory: what was added is kept only if the use case commits; a new answer under an
    Idempotency-Key that is taken fails the commit, as the table's primary key does."""

    def __init__(self):
        super().__init__()
        self.requests, self.audit, self.users = FakeRequests(), FakeAudit(), FakeUsers()
        self.answers, self.people = FakeIntakeAnswers(), FakePeople()
        self.sign_ins, self.revoked_tokens = FakeSignIns(), FakeRevokedTokens()
        self.surveys = FakeSurveys()
        self.tables = (self.requests, self.audit, self.answers, self.users, self.sign_ins, self.revoked_tokens,
                       self.people, self.surveys)

    def commit(self):
        if any(key in self.answers.rows or key in self.answers.in_flight for key in self.answers.pending):
            raise IdempotencyKeyInUse("A create with this Idempotency-Key was made; retry it.")
        super().commit()
        for table in self.tables:
            table.rows.update(table.pending)
            table.pending.clear()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        for table in self.tables:
            table.pending.clear()

    def entries(self) -> list[tuple[str, str, list[str]]]:
        """The committed audit log as (actor, action, fields)."""
        return [(e.actor, e.action, e.fields) for e in self.audit.rows.values()]


@pytest.fixture
def uow():
    return FakeIntakeUnitOfWork()


class ReversedPasswords:
    """A stand-in for the password hasher: quick, and a hash is never the password itself. Hashes made the old way
    start `old:`; the common passwords are a short list."""

    COMMON = {"password1234", "qwertyuiop12"}

    def hash(self, password: str) -> str:
        return "hash:" + password[::-1]

    def matches(self, password_hash: str, password: str) -> bool:
        return password_hash in (self.hash(password), "old:" + password)

    def needs_rehash(self, password_hash: str) -> bool:
        return not password_hash.startswith("hash:")

    def is_common(self, password: str) -> bool:
        return password.strip().lower() in self.COMMON


PASSWORDS = ReversedPasswords()


def submitted(uow, actor=KIM, data=SHOPPING, **kwargs) -> SupportRequest:
    """A request submitted through the use case, and the unit of work's record of it reset."""
    request = service_layer.submit_request(uow, actor, data, SETTINGS, **kwargs).made
    uow.published.clear()
    uow.committed = False
    return request


def event(event_type: str, request: SupportRequest, **fields):
    """One of matching's events about `request`, as the worker hands it to a handler."""
    from shared.contracts import EXAMPLES

    return load_event(make_event(event_type, {**EXAMPLES[(event_type, 1)], "request_id": str(request.id), **fields},
                                 correlation_id="corr-1"))


def handled(uow, matching_event) -> None:
    """Handle one of matching's events as the worker does: once, in one unit of work that it commits."""
    with uow:
        if uow.first_time("intake", matching_event.event_id):
            service_layer.follow_matching(uow, matching_event)
            uow.commit()


# --- submitting -------------------------------------------------------------------------------------------------------


def test_a_coordinators_request_is_stored_audited_and_published_without_personal_details(uow):
    result = service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS)
    r = result.made
    assert uow.committed and not result.replayed and result.status_code == 201
    assert uow.requests.rows[r.id] is r
    assert (r.community, r.source, r.status, r.created_by) == ("fylde-coast", "coordinator", "submitted", KIM.subject)
    assert [(c.kind, c.given, c.recorded_by) for c in r.consents] == [
        ("share_contact", True, KIM.subject), ("sms_contact", True, KIM.subject)]
    assert [(t.what, t.detail) for t in r.timeline] == [("submitted", "Shopping, routine")]
    [(actor, action, fields)] = uow.entries()
    assert (actor, action) == (KIM.subject, "create") and fields == sorted(fields)
    assert {"person_name", "person_phone", "coordinator_notes", "source"} <= set(fields)
    [sent] = uow.published
    assert isinstance(sent, RequestSubmitted) and uow.correlations == [str(r.id)]
    assert (sent.request_id, sent.community, sent.source, sent.area) == (r.id, "fylde-coast", "coordinator", "FY1")
    assert sent.window_start == START and sent.person_ref.startswith("p_")
    assert "Pat" not in repr(sent) and "477000" not in repr(sent) and "Lives alone" not in repr(sent)


def test_the_person_ref_is_a_keyed_pseudonym_the_same_for_the_same_person(uow):
    first = service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS).made
    again = service_layer.submit_request(uow, KIM, {**SHOPPING, "urgency": "urgent"}, SETTINGS).made
    other_key = service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS.__class__(
        **{**SETTINGS.__dict__, "secret_key": "another"})).made
    refs = [e.person_ref for e in uow.events(RequestSubmitted)]
    assert refs[0] == refs[1] != refs[2]
    assert len({first.id, again.id, other_key.id}) == 3


@pytest.mark.parametrize("name, phone, born, linked, offered", [
    ("Pat Example", "+441253477000", None, True, False),  # same phone and name: surely them
    ("  PAT   example", "+441253477000", None, True, False),  # any case, spaces
    ("Patricia Example", "+441253477000", None, False, True),  # same phone only: asked
    ("Pat Example", "+441253000111", "1941-05-02", False, True),  # same name and date of birth: asked
    ("Pat Example", "+441253000111", None, False, False),  # same name only: someone else
    ("Sam Other", "+441253000111", "1941-05-02", False, False),  # same date of birth only: someone else
])
def test_a_request_is_linked_to_a_record_only_when_surely_theirs_and_otherwise_offered(uow, name, phone, born,
                                                                                     linked, offered):
    from datetime import date

    first = service_layer.submit_request(uow, KIM, {**SHOPPING, "person": {
        **SHOPPING["person"], "date_of_birth": date(1941, 5, 2)}}, SETTINGS).made
    person = {**SHOPPING["person"], "name": name, "phone": phone,
              "date_of_birth": date.fromisoformat(born) if born else None}
    second = service_layer.submit_request(uow, KIM, {**SHOPPING, "person": person}, SETTINGS).made
    assert (second.person_id == first.person_id) is linked
    assert (second.maybe_person_id == first.person_id) is offered
    assert len(uow.people.rows) == (1 if linked else 2)
    refs = [e.person_ref for e in uow.events(RequestSubmitted)]
    assert (refs[0] == refs[1]) is linked


def test_a_partner_organisations_referral_carries_the_source_partner(uow):
    r = service_layer.submit_request(uow, PARTNER, REFERRAL, SETTINGS, source="partner").made
    [sent] = uow.published
    assert sent.source == r.source == "partner" and sent.referrer_organisation == "Age UK Blackpool"
    assert "partner" in SOURCES and "partner_organisation" not in SOURCES
    assert r.timeline[0].detail == "Bereavement support visit, routine (referred by Age UK Blackpool)"
    assert (r.referrer_name, r.referral_reason) == ("Sam Lee", "Recently bereaved.")


def test_an_account_that_names_its_organisation_refers_under_that_name_whatever_the_body_says(uow):
    r = service_layer.submit_request(uow, GP, REFERRAL, SETTINGS).made
    assert r.referrer_organisation == "Fylde Coast PCN" != REFERRAL["referrer"]["organisation"]


def test_a_fhir_service_request_keeps_its_document_and_the_rendered_answer(uow):
    document = {"resourceType": "ServiceRequest", "status": "active"}
    result = service_layer.submit_request(
        uow, EHR, {**REFERRAL, "referrer": {**REFERRAL["referrer"], "organisation_type": "health_system"}},
        SETTINGS, source="health_system", document=document, idempotency=Idempotency.of("m-1", b"{}", "fhir"),
        render=lambda r: {"id": r.id, "status": r.status})
    assert result.made.source_document == document and result.made.source == "health_system"
    assert result.body == {"id": result.made.id, "status": "submitted"}
    assert uow.answers.rows[(IdempotencyKey.owner(EHR), "m-1")].response == {"id": str(result.made.id),
                                                                              "status": "submitted"}


# --- idempotency ------------------------------------------------------------------------------------------------------


def test_the_same_key_and_body_answer_the_first_result_again_and_publish_nothing_more(uow):
    key = Idempotency.of("form-123", b'{"a": 1}', "requests")
    first = service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS, idempotency=key,
                                         render=lambda r: {"id": r.id})
    again = service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS, idempotency=key,
                                         render=lambda r: {"id": r.id})
    assert again.replayed and again.made is None and again.status_code == 201
    assert again.body == {"id": str(first.made.id)}
    assert len(uow.requests.rows) == 1 and len(uow.published) == 1
    other = service_layer.submit_request(uow, OTTAWA, SHOPPING, SETTINGS, idempotency=key, render=lambda r: {})
    assert not other.replayed and len(uow.requests.rows) == 2  # keys are per subject


def test_a_key_is_the_subjects_in_their_communities_so_another_community_never_gets_the_answer(uow):
    """The same subject in another community (tokens are per community) makes a new request with the same key and
    body, and never sees the first community's answer."""
    key = Idempotency.of("form-123", b'{"a": 1}', "requests")
    first = service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS, idempotency=key,
                                         render=lambda r: {"id": r.id, "community": r.community})
    elsewhere = replace(KIM, communities=("ottawa-west",))
    other = service_layer.submit_request(uow, elsewhere, SHOPPING, SETTINGS, idempotency=key,
                                         render=lambda r: {"id": r.id, "community": r.community})
    assert not other.replayed and other.body["id"] != first.body["id"]
    assert other.body["community"] == "ottawa-west"


@pytest.mark.parametrize("body, endpoint", [(b'{"a": 2}', "requests"), (b'{"a": 1}', "referrals")])
def test_a_key_used_again_with_another_body_or_endpoint_is_refused_and_nothing_is_stored(uow, body, endpoint):
    service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS, idempotency=Idempotency.of(
        "form-123", b'{"a": 1}', "requests"), render=lambda r: {})
    uow.committed = False
    with pytest.raises(IdempotencyKeyReused, match="different request body"):
        service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS,
                                     idempotency=Idempotency.of("form-123", body, endpoint), render=lambda r: {})
    assert not uow.committed and len(uow.requests.rows) == 1 and len(uow.published) == 1


def test_a_key_another_create_is_using_is_refused_and_the_request_is_not_kept(uow):
    uow.answers.in_flight.add((IdempotencyKey.owner(KIM), "form-9"))
    with pytest.raises(IdempotencyKeyInUse):
        service_layer.submit_request(uow, KIM, SHOPPING, SETTINGS,
                                     idempotency=Idempotency.of("form-9", b"{}", "requests"), render=lambda r: {})
    assert not uow.committed and uow.published == [] and uow.requests.all() == [] and uow.entries() == []


def test_an_idempotency_key_is_optional_but_never_longer_than_200_characters():
    assert Idempotency.of(None, b"{}", "requests") is None and Idempotency.of("", b"{}", "requests") is None
    assert Idempotency.of("k" * 200, b"{}", "requests").key == "k" * 200
    with pytest.raises(InvalidIdempotencyKey, match="at most 200"):
        Idempotency.of("k" * 201, b"{}", "requests")


# --- changing and cancelling ------------------------------------------------------------------------------------------


def test_matching_hears_of_an_edit_only_when_it_touches_what_matching_knows(uow):
    r = submitted(uow)
    service_layer.update_request(uow, KIM, r.id, {"coordinator_notes": "Daughter visits Sundays"}, SETTINGS)
    assert uow.committed and uow.published == [] and r.coordinator_notes == "Daughter visits Sundays"
    service_layer.update_request(uow, KIM, r.id, {"urgency": "urgent", "person": {"postcode": "FY8 1AA",
                                                                                   "area": "FY8"}}, SETTINGS)
    [sent] = uow.published
    assert isinstance(sent, RequestUpdated) and (sent.urgency, sent.area) == ("urgent", "FY8")
    assert [(t.what, t.detail) for t in r.timeline][1:] == [
        ("edited", "notes for coordinators"), ("edited", "postcode, urgency")]
    assert uow.entries()[1:] == [(KIM.subject, "update", ["coordinator_notes"]),
                                 (KIM.subject, "update", ["area", "postcode", "urgency"])]


def test_a_volunteer_a_coordinator_assigned_is_noted_as_assigned_not_as_accepted(uow):
    r = submitted(uow)
    handled(uow, event("offer.accepted", r, by="coordinator", code="4821"))
    assert [(t.what, t.detail) for t in r.timeline][-1] == ("assigned", "A coordinator assigned a volunteer (ref 4821)")


def test_an_edit_that_gives_the_same_consent_answers_changes_nothing_and_notes_nothing(uow):
    r = submitted(uow)
    service_layer.update_request(uow, KIM, r.id, {"consent": dict(SHOPPING["consent"])}, SETTINGS)
    assert len(r.timeline) == 1 and len(r.consents) == 2 and len(uow.entries()) == 1


def test_the_timeline_says_what_was_edited_in_plain_words(uow):
    r = submitted(uow)
    service_layer.update_request(uow, KIM, r.id, {"person": {"phone": "01253 477999", "name": "Pat Changed"},
                                                  "repeat": {"every_weeks": 2, "occurrences": 3}}, SETTINGS)
    assert [(t.what, t.detail) for t in r.timeline][1:] == [("edited", "name, phone number, how often")]
    assert uow.entries()[-1] == (KIM.subject, "update", ["person_name", "person_phone", "repeat_every_weeks",
                                                          "repeat_occurrences"])  # the audit keeps the names


def test_an_edit_that_changes_nothing_is_not_noted_and_a_new_consent_is_recorded(uow):
    r = submitted(uow)
    service_layer.update_request(uow, KIM, r.id, {"urgency": "routine"}, SETTINGS)
    assert len(r.timeline) == 1 and len(uow.entries()) == 1 and uow.published == []
    service_layer.update_request(uow, KIM, r.id, {"consent": {"share_contact": False, "sms_contact": True}},
                                 SETTINGS)
    assert r.consent("share_contact") is False and len(r.consents) == 3
    assert uow.entries()[-1] == (KIM.subject, "update", ["consent"]) and uow.published == []


def test_cancelling_tells_matching_and_an_ended_request_can_neither_change_nor_be_cancelled(uow):
    r = submitted(uow)
    cancelled = service_layer.cancel_request(uow, KIM, r.id, "Family arranged help", SETTINGS)
    assert (cancelled.status, cancelled.outcome, cancelled.timeline[-1].what) == (
        "cancelled", "Family arranged help", "cancelled")
    assert uow.published == [RequestCancelled(request_id=r.id, reason="Family arranged help")]
    assert uow.entries()[-1] == (KIM.subject, "cancel", ["status"])
    uow.committed = False
    with pytest.raises(NotOpen, match="A cancelled request cannot be cancelled."):
        service_layer.cancel_request(uow, KIM, r.id, "again", SETTINGS)
    with pytest.raises(NotOpen, match="A cancelled request cannot be changed."):
        service_layer.update_request(uow, KIM, r.id, {"urgency": "soon"}, SETTINGS)
    assert not uow.committed and len(uow.published) == 1 and r.urgency == "routine"


def test_another_communitys_request_is_not_found_for_any_use_case(uow):
    r = submitted(uow)
    for attempt in (lambda: service_layer.get_request(uow, OTTAWA, r.id),
                    lambda: service_layer.update_request(uow, OTTAWA, r.id, {"urgency": "soon"}, SETTINGS),
                    lambda: service_layer.cancel_request(uow, OTTAWA, r.id, "no", SETTINGS),
                    lambda: service_layer.get_request(uow, KIM, uuid.uuid4())):
        with pytest.raises(NotFound, match="No such request."):
            attempt()
    assert not uow.committed and uow.published == [] and r.status == "submitted"


# --- reading ----------------------------------------------------------------------------------------------------------


def test_viewing_a_request_is_audited(uow):
    r = submitted(uow)
    assert service_layer.get_request(uow, KIM, r.id) is r
    assert uow.committed and uow.entries()[-1] == (KIM.subject, "view", [])


def test_the_list_is_the_actors_communities_unmatched_and_urgent_first_in_pages_and_audited(uow):
    made = {name: submitted(uow, data={**SHOPPING, "urgency": urgency}) for name, urgency in (
        ("routine", "routine"), ("urgent", "urgent"), ("soon", "soon"), ("stuck", "routine"))}
    made["stuck"].status = "unmatched"
    submitted(uow, actor=OTTAWA)
    page = service_layer.Page(page_size=3)
    rows = service_layer.list_requests(uow, KIM, {}, page)
    assert rows == [made["stuck"], made["urgent"], made["soon"]] and page.item_count == 4
    assert uow.committed and uow.entries()[-1] == (KIM.subject, "list", ["area", "person_name"])
    assert service_layer.list_requests(uow, KIM, {"urgency": "urgent"}, service_layer.Page()) == [made["urgent"]]
    assert service_layer.list_requests(uow, OTTAWA, {"urgency": "urgent"}, service_layer.Page()) == []


def test_a_referrer_sees_only_the_referrals_they_made(uow):
    mine = submitted(uow, actor=GP, data=REFERRAL)
    theirs = submitted(uow, actor=EHR, data=REFERRAL)
    submitted(uow, actor=GP)  # not a referral
    page = service_layer.Page()
    assert service_layer.list_referrals(uow, GP, page) == [mine] and page.item_count == 1
    assert service_layer.get_referral(uow, GP, mine.id) is mine
    with pytest.raises(NotFound, match="No such referral."):
        service_layer.get_referral(uow, GP, theirs.id)


def test_only_its_sender_reads_a_service_request_and_other_referrals_are_not_service_requests(uow):
    health = {**REFERRAL, "referrer": {**REFERRAL["referrer"], "organisation_type": "health_system"}}
    sent = submitted(uow, actor=EHR, data=health, source="health_system", document={"resourceType": "x"})
    referral = submitted(uow, actor=EHR, data=REFERRAL)
    assert service_layer.get_service_request(uow, EHR, sent.id) is sent
    for actor, request_id in ((GP, sent.id), (EHR, referral.id), (EHR, uuid.uuid4())):
        with pytest.raises(NotFound, match="No such ServiceRequest."):
            service_layer.get_service_request(uow, actor, request_id)


def test_a_referral_is_seen_only_in_its_community_whoever_has_the_same_subject(uow):
    """A token of another community with the same subject (and organisation) reads none of the referrals made in
    this one: not in the list, not by id, not as a ServiceRequest."""
    health = {**REFERRAL, "referrer": {**REFERRAL["referrer"], "organisation_type": "health_system"}}
    referral = submitted(uow, actor=GP, data=REFERRAL)
    sent = submitted(uow, actor=GP, data=health, source="health_system", document={"resourceType": "x"})
    same_person_elsewhere = replace(GP, communities=("ottawa-west",))
    page = service_layer.Page()
    assert service_layer.list_referrals(uow, same_person_elsewhere, page) == [] and page.item_count == 0
    for request_id in (referral.id, sent.id):
        with pytest.raises(NotFound):
            service_layer.get_referral(uow, same_person_elsewhere, request_id)
        with pytest.raises(NotFound):
            service_layer.get_service_request(uow, same_person_elsewhere, request_id)
        assert not referred_by(uow.requests.find(request_id), same_person_elsewhere)
    assert len(service_layer.list_referrals(uow, GP, service_layer.Page())) == 2


# --- matching's events ------------------------------------------------------------------------------------------------


def test_matchings_events_move_the_status_on_and_never_back(uow):
    r = submitted(uow)
    for event_type in ("offer.made", "offer.accepted", "request.matched"):
        handled(uow, event(event_type, r))
    handled(uow, event("offer.made", r, offer_id=str(uuid.uuid4())))
    assert r.status == "matched", "a late offer does not move a matched request back"
    assert [t.what for t in r.timeline] == ["submitted", "offered", "accepted", "matched", "offered"]
    assert r.timeline[1].detail == "Offered to a volunteer (ref 4821)" and r.timeline[1].actor == "matching"


def test_nobody_found_is_the_outcome_and_a_given_back_task_is_offered_again(uow):
    r = submitted(uow)
    handled(uow, event("request.unmatched", r, reason="nobody in range"))
    assert (r.status, r.outcome, r.timeline[-1].detail) == ("unmatched", "nobody in range", "nobody in range")
    handled(uow, event("request.matched", r))
    handled(uow, event("task.given_back", r))
    assert r.status == "offered" and r.timeline[-1].what == "given back"


def test_a_recurring_request_is_completed_by_its_last_occurrence(uow):
    r = submitted(uow, data={**SHOPPING, "repeat": {"every_weeks": 1, "occurrences": 2}})
    handled(uow, event("request.matched", r))
    handled(uow, event("task.completed", r, occurrence=1, occurrences=2, hours=2))
    assert r.status == "matched" and r.timeline[-1].detail == "Occurrence 1 of 2 done (2 hours)"
    handled(uow, event("task.completed", r, occurrence=2, occurrences=2, hours=None))
    ended = [e for e in r.timeline if e.what != "survey"][-1]  # then its survey, after the last occurrence only
    assert (r.status, r.outcome, ended.detail) == ("completed", "Completed", "The volunteer reported it done")
    assert [e.what for e in r.timeline].count("survey") == 1


@pytest.mark.parametrize("reason, why", [
    ("opted_out", "the volunteer opted out of SMS"),
    ("taken", "another volunteer took it"),
    ("cancelled", "the request was cancelled"),
])
def test_a_withdrawn_offer_is_on_the_timeline_with_why_and_moves_no_status(uow, reason, why):
    from services.intake.entrypoints.handlers import HANDLERS

    r = submitted(uow)
    handled(uow, event("offer.made", r))
    withdrawn = event("offer.withdrawn", r, reason=reason)
    with uow:
        HANDLERS[withdrawn.type](uow, withdrawn)
        uow.commit()
    assert r.status == "offered" and uow.published == []
    assert (r.timeline[-1].what, r.timeline[-1].detail, r.timeline[-1].actor) == (
        "withdrawn", f"Offer withdrawn (ref 4821): {why}", "matching")


def test_the_coordinator_is_told_when_the_volunteer_with_the_task_opts_out_and_the_task_stays_matched(uow):
    from services.intake.entrypoints.handlers import HANDLERS

    r = submitted(uow)
    for each in (event("offer.accepted", r), event("request.matched", r), event("task.volunteer_opted_out", r)):
        with uow:
            HANDLERS[each.type](uow, each)
            uow.commit()
    assert r.status == "matched"
    assert (r.timeline[-1].what, r.timeline[-1].detail) == (
        "volunteer opted out", "The volunteer with the task (ref 4821) opted out of SMS: no reminder reaches them by "
                               "text; call them to check it still stands")


def test_an_acceptance_shares_the_persons_details_with_that_volunteer_only_with_consent(uow):
    r = submitted(uow)
    handled(uow, event("offer.accepted", r))
    [details] = uow.published
    assert isinstance(details, TaskDetailsShared) and uow.correlations[-1] == "corr-1"
    assert (details.shared, details.first_name, details.address, details.person_phone, details.code) == (
        True, "Pat", "1 Promenade, Blackpool, FY1 4AB", "+441253477000", "4821")
    private = submitted(uow, data={**SHOPPING, "consent": {"share_contact": False, "sms_contact": True}})
    handled(uow, event("offer.accepted", private))
    [withheld] = uow.published
    assert (withheld.shared, withheld.first_name, withheld.address, withheld.person_phone) == (
        False, None, None, None)
    assert withheld.community == "fylde-coast" and withheld.request_id == private.id


def test_an_event_about_a_request_intake_does_not_have_changes_nothing(uow):
    stranger = SupportRequest(community="x", created_by="y", person_name="Z", latitude=0, longitude=0,
                              support_type="shopping")
    handled(uow, event("offer.accepted", stranger))
    assert uow.published == [] and uow.requests.all() == []


# --- people who sign in -----------------------------------------------------------------------------------------------


def test_a_user_is_created_once_and_signs_in_with_their_password(uow):
    user = service_layer.create_user(uow, PASSWORDS, "mo@example.org", "Mo", "manager", ["fylde-coast"], None,
                                     "correct horse")
    assert uow.committed and user.password_hash == PASSWORDS.hash("correct horse") != "correct horse"
    uow.committed = False
    with pytest.raises(UserExists, match="a user mo@example.org already exists"):
        service_layer.create_user(uow, PASSWORDS, "mo@example.org", "Mo", "coordinator", ["fylde-coast"], None,
                                  "another long passphrase")
    assert not uow.committed and uow.users.rows["mo@example.org"].role == "manager"
    assert service_layer.sign_in(uow, PASSWORDS, " Mo@Example.org ", "correct horse") is user
    assert service_layer.sign_in(uow, PASSWORDS, "mo@example.org", "wrong") is None
    assert service_layer.active_user(uow, "nobody@example.org") is None


def test_a_user_who_left_can_neither_sign_in_nor_be_issued_a_token(uow):
    service_layer.create_user(uow, PASSWORDS, "al@example.org", "Al", "coordinator", ["fylde-coast"], None,
                              "a long enough passphrase")
    uow.users.rows["al@example.org"].active = False
    assert service_layer.sign_in(uow, PASSWORDS, "al@example.org", "a long enough passphrase") is None
    assert service_layer.active_user(uow, "al@example.org") is None
    assert isinstance(uow.users.rows["al@example.org"], User)


@pytest.mark.parametrize("password, why", [
    ("short words", "at least 12 characters long (this one has 11)"),
    ("Password1234", "on a list of commonly used passwords"),
    (" QWERTYUIOP12 ", "on a list of commonly used passwords"),
    ("Mo@Example.org", "must not be the email address"),
    ("x" * 257, "at most 256 characters long"),
])
def test_a_password_that_would_be_easy_to_guess_is_refused_with_the_reason(uow, password, why):
    with pytest.raises(WeakPassword, match=re.escape(why)):
        service_layer.create_user(uow, PASSWORDS, "mo@example.org", "Mo", "manager", ["fylde-coast"], None, password)
    assert not uow.committed and not uow.users.all()


def test_a_password_of_twelve_characters_not_on_the_list_is_taken(uow):
    user = service_layer.create_user(uow, PASSWORDS, "mo@example.org", "Mo", "manager", ["fylde-coast"], None,
                                     "tram lantern")
    assert uow.committed and user.password_hash == PASSWORDS.hash("tram lantern")


def signed_up(uow, email="mo@example.org", password="correct horse battery"):
    return service_layer.create_user(uow, PASSWORDS, email, "Mo", "manager", ["fylde-coast"], None, password)


def test_five_failures_of_an_account_lock_it_for_fifteen_minutes_even_with_the_right_password(uow):
    signed_up(uow)
    start = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
    for n in range(SIGN_IN_LIMIT):
        at = start + timedelta(minutes=n)
        assert service_layer.sign_in(uow, PASSWORDS, "mo@example.org", "wrong", f"10.0.0.{n}", now=at) is None
    with pytest.raises(TooManySignIns, match="Try again in 11 minutes") as locked:
        service_layer.sign_in(uow, PASSWORDS, "mo@example.org", "correct horse battery", "10.0.1.1",
                              now=start + timedelta(minutes=4))
    assert locked.value.retry_after == 11 * 60  # until the first failure is 15 minutes old
    assert len(uow.sign_ins.all()) == SIGN_IN_LIMIT  # refused attempts are not counted: the lock ends on time
    # Another account from another address is not affected.
    signed_up(uow, "al@example.org")
    assert service_layer.sign_in(uow, PASSWORDS, "al@example.org", "correct horse battery", "10.0.1.1",
                                 now=start + timedelta(minutes=4)) is not None
    user = service_layer.sign_in(uow, PASSWORDS, "mo@example.org", "correct horse battery", "10.0.1.1",
                                 now=start + timedelta(minutes=15, seconds=1))
    assert user is not None and user.email == "mo@example.org"
    assert [f.account for f in uow.sign_ins.all()] == []  # a success clears the account's failures


def test_five_failures_from_an_address_lock_it_whatever_the_account(uow):
    signed_up(uow)
    start = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
    for n in range(SIGN_IN_LIMIT):
        assert service_layer.sign_in(uow, PASSWORDS, f"guess{n}@example.org", "wrong", "192.0.2.7",
                                     now=start + timedelta(seconds=n)) is None
    with pytest.raises(TooManySignIns):
        service_layer.sign_in(uow, PASSWORDS, "mo@example.org", "correct horse battery", "192.0.2.7",
                              now=start + timedelta(minutes=1))
    assert service_layer.sign_in(uow, PASSWORDS, "mo@example.org", "correct horse battery", "192.0.2.8",
                                 now=start + timedelta(minutes=1)) is not None


def test_failures_spread_wider_than_the_window_never_lock():
    start = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
    every_four_minutes = [start + timedelta(minutes=4 * n) for n in range(10)]
    assert locked_for(every_four_minutes, start + timedelta(minutes=37)) == 0
    assert locked_for(every_four_minutes[:SIGN_IN_LIMIT - 1], every_four_minutes[3]) == 0
    bunched = [start + timedelta(seconds=n) for n in range(SIGN_IN_LIMIT)]
    assert locked_for(bunched, start + timedelta(minutes=1)) == 14 * 60


def test_a_hash_made_the_old_way_is_made_again_at_sign_in(uow):
    user = signed_up(uow)
    user.password_hash = "old:correct horse battery"
    assert service_layer.sign_in(uow, PASSWORDS, "mo@example.org", "correct horse battery") is user
    assert uow.users.rows["mo@example.org"].password_hash == PASSWORDS.hash("correct horse battery")


def test_a_token_is_revoked_by_its_id_in_intake_and_for_every_other_service(uow):
    revoked = service_layer.revoke_tokens(uow, SETTINGS, jti=" 3F2A9C1D5E7B4A608C9D0E1F2A3B4C5D ")
    assert revoked == TokenRevoked(jti="3f2a9c1d5e7b4a608c9d0e1f2a3b4c5d")
    assert uow.committed and uow.published == [revoked] and uow.revoked_tokens.all() == [revoked]


def test_every_token_of_a_user_is_revoked_by_a_digest_of_their_address_never_the_address(uow):
    now = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
    revoked = service_layer.revoke_tokens(uow, SETTINGS, subject="mo@example.org", now=now)
    assert revoked.issued_before == now and revoked.jti is None
    assert revoked.subject_digest == subject_digest(SETTINGS.secret_key, "mo@example.org")
    assert "mo@example.org" not in str(make_event(revoked))
    assert uow.published == [revoked]


@pytest.mark.parametrize("named", [{}, {"jti": "not-a-token-id"}, {"jti": "3f2a9c1d5e7b4a608c9d0e1f2a3b4c5d",
                                                                   "subject": "mo@example.org"}])
def test_a_revocation_that_names_no_token_is_refused_and_publishes_nothing(uow, named):
    with pytest.raises(InvalidRevocation):
        service_layer.revoke_tokens(uow, SETTINGS, now=datetime(2030, 1, 7, tzinfo=timezone.utc), **named)
    assert not uow.committed and not uow.published and not uow.revoked_tokens.all()


def test_an_audit_entry_names_the_actor_and_the_fields_in_order():
    entry = AuditEntry.of(KIM, "update", None, {"urgency", "area"})
    assert (entry.actor, entry.role, entry.action, entry.fields) == (KIM.subject, "coordinator", "update",
                                                                    ["area", "urgency"])


# --- what puts a request first on the board --------------------------------------------------------------------------

BOARD_NOW = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def board_request(status: str = "offered", urgency: str = "routine", **state) -> SupportRequest:
    request = SupportRequest(community="fylde-coast", created_by="kim", person_name="Pat", latitude=53.8,
                             longitude=-3.0, support_type="shopping", urgency=urgency)
    request.status = status
    for name, value in state.items():
        setattr(request, name, value)
    return request


@pytest.mark.parametrize("request_, reasons", [
    (board_request(), []),
    (board_request("matched", "urgent"), []),
    (board_request("unmatched", outcome="no volunteer in range"), [("unmatched", "no volunteer in range")]),
    (board_request("unmatched", "urgent", outcome="x"), [("unmatched", "x")]),  # its badge says urgent
    (board_request(urgency="urgent"), [("urgent", None)]),
    (board_request("submitted", "urgent"), [("urgent", None)]),
    (board_request(given_back_at=BOARD_NOW), [("given_back", BOARD_NOW)]),
    (board_request("matched", given_back_at=BOARD_NOW), []),  # someone took it since
    (board_request(answers_due_at=BOARD_NOW + timedelta(minutes=10)),
     [("answers_due", BOARD_NOW + timedelta(minutes=10))]),
    (board_request(answers_due_at=BOARD_NOW + timedelta(minutes=11)), []),  # not yet about to
    (board_request(answers_due_at=BOARD_NOW), []),  # timed out already: matching moves on
    (board_request("unmatched", answers_due_at=BOARD_NOW + timedelta(minutes=5), outcome="x"), [("unmatched", "x")]),
    (board_request("completed", sms_waiting=2), [("sms_waiting", 2)]),  # a text still waits for someone to read it
])
def test_a_request_needs_a_coordinator_for_each_reason_the_board_gives(request_, reasons):
    assert request_.needs_you(BOARD_NOW) == reasons


def test_a_task_given_back_needs_a_coordinator_until_someone_takes_it_and_counts_of_texts_keep_the_latest():
    request = board_request("matched", matching_sequence=2)
    given_back = load_event(make_event("task.given_back", {
        "request_id": str(request.id), "offer_id": str(uuid.uuid4()), "volunteer_id": str(uuid.uuid4()),
        "sequence": 3})).payload
    request.follow("task.given_back", given_back, BOARD_NOW)
    assert request.status == "offered" and request.needs_you(BOARD_NOW) == [("given_back", BOARD_NOW)]
    matched = load_event(make_event("request.matched", {
        "request_id": str(request.id), "offer_id": str(uuid.uuid4()), "volunteer_id": str(uuid.uuid4()),
        "sequence": 5})).payload
    request.follow("request.matched", matched, BOARD_NOW)
    assert request.given_back_at is None and request.needs_you(BOARD_NOW) == []

    request.messages_waiting(2, BOARD_NOW)
    request.messages_waiting(3, BOARD_NOW - timedelta(seconds=1))  # an older count, arriving late
    assert request.sms_waiting == 2
    request.messages_waiting(0, BOARD_NOW + timedelta(seconds=1))
    assert request.needs_you(BOARD_NOW) == []


def test_an_overdue_befriending_visit_needs_a_coordinator_until_a_later_visit_whatever_order_events_come_in():
    request = board_request("matched", matching_sequence=2)
    ids = {"match_id": str(uuid.uuid4()), "request_id": str(request.id), "volunteer_id": str(uuid.uuid4()),
           "community": "fylde-coast"}

    def overdue(since: str):
        return load_event(make_event("befriending.visit_overdue", {
            **ids, "phone": "+447911123456", "code": "4821", "rhythm": "weekly", "since": since,
            "overdue_on": since})).payload

    def visit(on: str):
        return load_event(make_event("befriending.visit_logged", {
            **ids, "support_type": "home_visit", "visited_on": on, "hours": 1.0})).payload

    request.visits(overdue("2026-12-01"))
    assert request.needs_you(BOARD_NOW) == [("visit_overdue", date(2026, 12, 1))]
    request.visits(visit("2026-12-01"))  # the visit the spell counts from, heard again: the spell goes on
    assert request.needs_you(BOARD_NOW) == [("visit_overdue", date(2026, 12, 1))]
    request.visits(visit("2026-12-09"))
    assert request.needs_you(BOARD_NOW) == []
    request.visits(overdue("2026-12-01"))  # an older spell arriving late: over already
    assert request.needs_you(BOARD_NOW) == []
    request.visits(overdue("2026-12-09"))
    request.status = "completed"  # ended: nobody need look
    assert request.needs_you(BOARD_NOW) == []


# --- what a coordinator checks first --------------------------------------------------------------------------------

UNPLACED = [{"field": "person.postcode", "why": "No postcode was sent", "value": None},
            {"field": "consent", "why": "No consent came with the referral", "value": None}]


def test_a_referral_to_check_is_noted_and_one_without_a_place_or_a_kind_is_not_offered_until_settled(uow):
    r = service_layer.submit_request(uow, EHR, {**REFERRAL, "consent": {}, "to_check": UNPLACED}, SETTINGS).made
    assert r.held and uow.published == [] and r.to_check == UNPLACED
    assert [t.what for t in r.timeline] == ["submitted", "to check", "to check", "waiting"]
    uow.published.clear()
    service_layer.update_request(uow, KIM, r.id, {"urgency": "urgent"}, SETTINGS)
    assert r.held and uow.published == []  # still no place: matching hears nothing
    service_layer.update_request(uow, KIM, r.id, {"person": {"postcode": "FY8 1AA", "area": "FY8",
                                                             "latitude": 53.75, "longitude": -3.0}}, SETTINGS)
    [sent] = uow.published
    assert isinstance(sent, RequestSubmitted) and sent.area == "FY8" and sent.urgency == "urgent"
    assert not r.held and [c["field"] for c in r.to_check] == ["consent"]
    service_layer.update_request(uow, KIM, r.id, {"consent": {"share_contact": True, "sms_contact": False}}, SETTINGS)
    assert r.to_check == [] and r.consent("share_contact") and [t.what for t in r.timeline][-2:] == ["edited",
                                                                                                     "checked"]


def test_kind_other_waits_for_a_coordinator_and_a_request_already_offered_cannot_become_it(uow):
    from services.intake.domain import NotOffered

    r = service_layer.submit_request(uow, EHR, {**REFERRAL, "support_type": "other"}, SETTINGS).made
    assert r.held and uow.published == []
    service_layer.update_request(uow, KIM, r.id, {"support_type": "home_visit"}, SETTINGS)
    [sent] = uow.published
    assert isinstance(sent, RequestSubmitted) and sent.support_type == "home_visit"
    offered = submitted(uow)
    with pytest.raises(NotOffered):
        service_layer.update_request(uow, KIM, offered.id, {"support_type": "other"}, SETTINGS)
    assert offered.support_type == "shopping" and uow.published == []



def test_a_concern_comes_first_on_the_board_and_closing_is_an_action_after_which_it_takes_none():
    from services.intake.domain import Concern, ConcernClosed

    now = datetime.now(timezone.utc)
    flagged, urgent = (SupportRequest(community="fylde-coast", created_by="c", person_name=name, latitude=53.8,
                                      longitude=-3.0, support_type="shopping", urgency=urgency)
                       for name, urgency in (("Ann", "routine"), ("Bo", "urgent")))
    flagged.status = urgent.status = "offered"
    flagged.concerns_open = 1
    assert flagged.needs_you(now)[0] == ("concern", 1) and urgent.needs_you(now) == [("urgent", None)]
    assert sorted([urgent, flagged], key=lambda r: board_rank(r, now)) == [flagged, urgent]

    concern = Concern(id=uuid.uuid4(), request_id=flagged.id, community="fylde-coast", volunteer_id=uuid.uuid4(),
                      text="She fell", raised_at=now, opened_at=now)
    concern.act("called_person", "", "c", now, close=False)
    assert concern.is_open and concern.closed_at is None
    concern.act("referred_gp", "GP to visit", "c", now + timedelta(minutes=5), close=True)
    assert not concern.is_open and concern.closed_at == now + timedelta(minutes=5)
    with pytest.raises(ConcernClosed):
        concern.act("noted", "", "c", now, close=False)
    assert [a.action for a in concern.actions] == ["called_person", "referred_gp"] and concern.text == "She fell"
