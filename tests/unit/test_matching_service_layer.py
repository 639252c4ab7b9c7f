"""Matching's use cases with in-memory repositories and a fixed clock: who is asked for a request and what each
answer does, what notify's reports of SMS do, the timers, volunteers as coordinators register, import and change
them, and a coordinator's view, assignment and rerun of a match. No database, bus or Flask app."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from services.matching import service_layer
from services.matching.domain import (HOLDING, RESERVING, CheckRuleChange, CheckRules, CheckType, Conflict, HeldTask,
                                      KindRequirement, MatchRequest, NotFound, Policy, TimeAway, Volunteer,
                                      VolunteerCheck, distance_km, judge_profiles, next_check_in)
from services.matching.service_layer import VolunteerSheet
from shared.auth import SYSTEM, Actor
from shared.communities import all_communities
from shared.contracts.intake import RequestSubmitted
from shared.contracts.matching import (CheckExpiring, OfferAccepted, OfferMade, OfferWithdrawn, ReplyAnswered,
                                       ReplyUnresolved,
                                       RequestMatched, RequestUnmatched, TaskCompleted, TaskGivenBack,
                                       TaskVolunteerOptedOut, VolunteerRegistered, VolunteerStatusChanged,
                                       WellbeingAnswered, WellbeingPrompted)
from shared.contracts.metrics import ActivityLogged, VolunteerHours
from shared.contracts.notify import SmsFailed, SmsReceived, SmsSent
from shared.gazetteer import locate
from shared.scoping import sees
from shared.taxonomy import CHECKS
from tests.unit.fakes import FakeAnswers, FakeUnitOfWork

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)  # a Monday morning
TASK = datetime(2030, 1, 8, 14, 0, tzinfo=timezone.utc)  # Tuesday afternoon
TODAY = NOW.date()
PLACE = (53.8175, -3.0357)  # where the requests are (FY1)
POLICY = Policy()
COORDINATOR = Actor(subject="co@example.org", role="coordinator", communities=("fylde-coast",))
ELSEWHERE = Actor(subject="ce@example.org", role="coordinator", communities=("cheshire-east",))


def safeguarding() -> VolunteerCheck:
    """A safeguarding check in date for years (made fresh: a domain object is a row once mapped)."""
    return VolunteerCheck(check="safeguarding", done_on=date(2029, 1, 1), expires_on=date(2035, 1, 1))


# --- fakes ---------------------------------------------------------------------------------------------------------

class FakeCheckRules:
    """Communities' check types, requirements and changes in memory, answering what adapters.CheckRuleRepository's
    queries answer."""

    def __init__(self):
        self.types: list[CheckType] = []
        self.requirements: list[KindRequirement] = []
        self.changed: list[CheckRuleChange] = []
        self.versions: Counter = Counter()

    def rules(self, community):
        configured = all_communities()[community]
        return CheckRules.of(community, configured.checks, configured.requirements,
                             [t for t in self.types if t.community == community],
                             [r for r in self.requirements if r.community == community])

    def own_type(self, community, key):
        return next((t for t in self.types if (t.community, t.key) == (community, key)), None)

    def own_requirement(self, community, kind):
        return next((r for r in self.requirements if (r.community, r.kind) == (community, kind)), None)

    def changing(self, community):
        self.versions[community] += 1

    def add(self, thing):
        {CheckType: self.types, KindRequirement: self.requirements, CheckRuleChange: self.changed}[type(thing)] \
            .append(thing)

    def changes(self, community, limit=200):
        return sorted((c for c in self.changed if c.community == community), key=lambda c: c.at, reverse=True)


class FakeVolunteers:
    """Volunteers in memory, answering what adapters.VolunteerRepository's queries answer."""

    def __init__(self, checks: FakeCheckRules | None = None):
        self.rows: dict[uuid.UUID, Volunteer] = {}
        self.checks = checks or FakeCheckRules()

    def add(self, volunteer):
        self.rows[volunteer.id] = volunteer

    def get(self, volunteer_id, scope):
        found = self.rows.get(volunteer_id)
        return found if found is not None and sees(scope, found.community) else None

    def by_phone(self, phone):
        return next((v for v in self.rows.values() if v.phone == phone), None)

    def phones_taken(self, phones, other_than=None):
        return {v.phone for v in self.rows.values() if v.phone in set(phones) and v.id != other_than}

    def suited(self, request, slots, policy, everyone=False):
        found = [(v, distance_km(request.latitude, request.longitude, v.latitude, v.longitude))
                 for v in self.rows.values() if v.community == request.community]
        return judge_profiles([(v, d) for v, d in found if everyone or d <= policy.request_radius_km], request,
                              slots, policy, self.checks.rules(request.community))

    def loaded(self, candidates):
        return [replace(c, volunteer=self.rows[c.volunteer.id]) for c in candidates]

    def roster(self, scope, status=None):
        return sorted((v for v in self.rows.values() if sees(scope, v.community) and status in (None, v.status)),
                      key=lambda v: v.name)

    def listing(self, scope, page, status=None, expiring_by=None):
        chosen = [v for v in self.roster(scope, status)
                  if expiring_by is None or any(c.expires_on and c.expires_on <= expiring_by for c in v.checks)]
        page.item_count = len(chosen)
        return chosen[page.first_item:page.first_item + page.page_size]

    def claim_checks_to_remind(self, first, last):
        return [(c, v) for v in self.rows.values() if v.status != "left" for c in v.checks
                if c.expires_on and first <= c.expires_on <= last and c.reminded_for != c.expires_on]


class FakeRequests:
    """Requests in memory; `log` records each lock (shared with the offers, to check the lock order)."""

    def __init__(self, log):
        self.rows: dict[uuid.UUID, MatchRequest] = {}
        self.early: set[uuid.UUID] = set()
        self.log = log

    def add(self, request):
        self.rows[request.request_id] = request

    def get(self, request_id, scope):
        found = self.rows.get(request_id)
        return found if found is not None and sees(scope, found.community) else None

    def lock(self, request_id, scope):
        self.log.append(("lock", request_id))
        return self.get(request_id, scope)

    def claim(self, request_id):
        self.log.append(("lock", request_id))  # one process: never held by another
        return self.rows.get(request_id)

    def lock_new(self, request_id):
        pass

    def cancelled_early(self, request_id):
        return request_id in self.early

    def note_cancelled_early(self, request_id):
        self.early.add(request_id)

    def with_offers_due(self, now):
        return [r.request_id for r in self.rows.values()
                if any(o.status == "open" and o.expires_at and o.expires_at <= now for o in r.offers)]


class FakeTraining:
    """Training sessions and their invitations in memory."""

    def __init__(self):
        self.rows = {}

    def add(self, training):
        self.rows[training.id] = training

    def get(self, session_id, scope, lock=False):
        found = self.rows.get(session_id)
        return found if found is not None and sees(scope, found.community) else None

    def listing(self, scope, since=None):
        return sorted((t for t in self.rows.values() if sees(scope, t.community)), key=lambda t: t.starts_at)

    def _invitations(self):
        return [i for t in self.rows.values() for i in t.invitations]

    def answerable(self, phone, statuses, code=None):
        return sorted((i for i in self._invitations() if i.phone == phone and i.status in statuses
                       and i.attended_on is None and code in (None, i.code)), key=lambda i: i.invited_at)

    def public_by_code(self, code):
        return next((t for t in self.rows.values() if t.code == code), None)

    def codes(self):
        return {i.code for i in self._invitations() if i.status in RESERVING and i.attended_on is None} | {
            t.code for t in self.rows.values() if t.code}


class FakeOffers:
    """The offers of the requests in memory (as in the database, they are stored with their request)."""

    def __init__(self, requests: FakeRequests):
        self.requests = requests

    def _all(self):
        return [(o, r) for r in self.requests.rows.values() for o in r.offers]

    def get(self, offer_id, fresh=False):
        offer = next((o for o, _ in self._all() if o.id == offer_id), None)
        if fresh and offer is not None:
            self.requests.log.append(("read again", offer.request_id))
        return offer

    def codes_in_use(self):
        return {o.code for o, _ in self._all() if o.status in ("open", "accepted")} | self.requests.training.codes()

    def reserve_codes(self, codes):
        return [code for code in codes if code not in self.codes_in_use()]

    def of_volunteer(self, volunteer_id, statuses, code=None):
        return sorted((o for o, _ in self._all() if o.volunteer_id == volunteer_id and o.status in statuses
                       and code in (None, o.code)), key=lambda o: o.created_at)

    def any_to(self, volunteer_id):
        return any(o.volunteer_id == volunteer_id for o, _ in self._all())

    def latest_to(self, volunteer_id, limit=100):
        return sorted((o for o, _ in self._all() if o.volunteer_id == volunteer_id), key=lambda o: o.created_at,
                      reverse=True)[:limit]

    def recent_load(self, volunteer_ids, since):
        return Counter(o.volunteer_id for o, _ in self._all() if o.volunteer_id in volunteer_ids
                       and o.created_at >= since)

    def held_by(self, volunteer_ids):
        return [HeldTask(o.volunteer_id, o.answered_at, r.window_start, r.person_ref, o.occurrence, r.occurrence,
                         r.repeat_every_weeks) for o, r in self._all()
                if o.volunteer_id in volunteer_ids and o.status in HOLDING]

    def tasks_since(self, volunteer_ids, since):
        return Counter(o.volunteer_id for o, _ in self._all() if o.volunteer_id in volunteer_ids
                       and o.status in HOLDING and o.answered_at >= since)

    def tasks_of(self, volunteer_id):
        return sorted(((o, r) for o, r in self._all() if o.volunteer_id == volunteer_id and o.status in HOLDING),
                      key=lambda pair: pair[0].answered_at, reverse=True)

    def hours_in(self, volunteer_id, year, zone):
        done = [o for o, _ in self._all() if o.volunteer_id == volunteer_id and o.status == "completed"
                and o.completed_at.astimezone(zone).year == year]
        return round(sum(o.hours or 0 for o in done), 2), len(done)


class FakeContributions:
    """Hours given to activities: one per volunteer per activity, as the unique key keeps them."""

    def __init__(self):
        self.rows: dict[tuple, object] = {}

    def add(self, contribution) -> bool:
        key = (contribution.source_id, contribution.volunteer_id)
        if key in self.rows:
            return False
        self.rows[key] = contribution
        return True

    def of_volunteer(self, volunteer_id, limit=50):
        return sorted((c for c in self.rows.values() if c.volunteer_id == volunteer_id),
                      key=lambda c: c.held_on, reverse=True)[:limit]


class FakeCheckIns:
    """Wellbeing check-ins: one per volunteer per due date."""

    def __init__(self, volunteers: FakeVolunteers):
        self.volunteers, self.rows = volunteers, {}

    def due(self, community, interval_days, today):
        found = []
        for v in sorted(self.volunteers.rows.values(), key=lambda v: str(v.id)):
            last = max((c.due_on for c in self.rows.values() if c.volunteer_id == v.id), default=None)
            if v.community == community and v.status == "active" and v.sms_opted_out_at is None:
                found.append((v, last))
        return found

    def claim(self, check_in) -> bool:
        key = (check_in.volunteer_id, check_in.due_on)
        if key in self.rows:
            return False
        self.rows[key] = check_in
        return True

    def latest_of(self, volunteer_id):
        return max((c for c in self.rows.values() if c.volunteer_id == volunteer_id), key=lambda c: c.due_on,
                   default=None)

    def of_volunteer(self, volunteer_id, limit=8):
        return sorted((c for c in self.rows.values() if c.volunteer_id == volunteer_id), key=lambda c: c.due_on,
                      reverse=True)[:limit]


class FakeMatchingUnitOfWork(FakeUnitOfWork):
    """Matching's unit of work with its repositories in memory."""

    def __init__(self):
        super().__init__()
        self.log: list[tuple[str, uuid.UUID]] = []
        self.checks = FakeCheckRules()
        self.volunteers = FakeVolunteers(self.checks)
        self.requests = FakeRequests(self.log)
        self.training = self.requests.training = FakeTraining()
        self.offers = FakeOffers(self.requests)
        self.answers = FakeAnswers()
        self.contributions = FakeContributions()
        self.check_ins = FakeCheckIns(self.volunteers)

    def anew(self):
        """Forget what was committed so far, to see what the next use case does."""
        self.published.clear()
        self.committed = False
        self.log.clear()
        return self


# --- helpers -------------------------------------------------------------------------------------------------------

def volunteer(name: str, phone: str, north_km: float = 0.0, **changes) -> Volunteer:
    """A volunteer who may do shopping, `north_km` north of the requests' place."""
    fields = dict(community="fylde-coast", name=name, phone=phone, latitude=PLACE[0] + north_km / 111.195,
                  longitude=PLACE[1], max_distance_km=10.0, skills=["practical"], checks=[safeguarding()])
    return Volunteer(**{**fields, **changes})


def uow_with(*volunteers: Volunteer) -> FakeMatchingUnitOfWork:
    """A unit of work with these volunteers registered."""
    uow = FakeMatchingUnitOfWork()
    for v in volunteers:
        uow.volunteers.add(v)
    return uow


def details(**changes) -> RequestSubmitted:
    """A request for shopping tomorrow afternoon near PLACE, as intake's event carries it."""
    fields = dict(request_id=uuid.uuid4(), community="fylde-coast", support_type="shopping", latitude=PLACE[0],
                  longitude=PLACE[1], area="FY1", window_start=TASK, window_end=TASK + timedelta(hours=2))
    return RequestSubmitted(**{**fields, **changes})


def submit(uow, policy=POLICY, **changes) -> MatchRequest:
    """Deliver a new request, and return matching's copy of it."""
    request = details(**changes)
    service_layer.take_request(uow, request, policy, NOW, "corr-1")
    return uow.requests.get(request.request_id, SYSTEM)


def text(uow, who: Volunteer | str, keyword: str | None, code: str | None = None, hours: float | None = None,
         policy=POLICY, now=NOW) -> None:
    """Deliver an SMS from a volunteer (or any phone)."""
    phone = who if isinstance(who, str) else who.phone
    service_layer.reply(uow, SmsReceived(message_sid=f"SM{uuid.uuid4().hex}", from_phone=phone,
                                         to_phone="+447700900000", body=f"{keyword} {code or ''}", keyword=keyword,
                                         code=code, hours=hours), policy, now, "corr-2")


def offer_of(request: MatchRequest, who: Volunteer, status: str = "open"):
    """The volunteer's offer for the request's current occurrence, in a status."""
    return next(o for o in request.current_offers() if o.volunteer_id == who.id and o.status == status)


def profile(name: str, phone: str, **changes) -> dict:
    """A volunteer as VolunteerIn loads one."""
    return {"name": name, "phone": phone, "postcode": "FY1", "max_distance_km": 10.0, "skills": ["practical"],
            "languages": ["en"], "gender": None, "availability": [], "weekly_cap": 3,
            "checks": [{"check": "safeguarding", "done_on": date(2029, 1, 1), "expires_on": date(2035, 1, 1)}],
            "time_away": [], **changes}


# --- requests, from intake -----------------------------------------------------------------------------------------

def test_a_new_request_is_offered_to_the_nearest_batch_with_what_the_sms_needs():
    near, middle, far, fourth = (volunteer(n, f"+44791112300{i}", north_km=i + 1, languages=["pl", "en"])
                                 for i, n in enumerate(("Near", "Middle", "Far", "Fourth")))
    uow = uow_with(far, fourth, near, middle)
    request = submit(uow, urgency="soon")
    assert uow.committed and request.status == "open" and request.round == 1
    made = uow.events(OfferMade)
    assert [e.volunteer_id for e in made] == [near.id, middle.id, far.id]  # a batch of three, nearest first
    assert len({e.code for e in made}) == 3 and all(len(e.code) == 4 for e in made)
    first = made[0]
    assert (first.phone, first.community, first.area, first.urgency, first.round, first.occurrence,
            first.occurrences, first.language, first.window_start) == (
        near.phone, "fylde-coast", "FY1", "soon", 1, 1, 1, "pl", TASK)
    assert uow.correlations == ["corr-1"] * 3
    assert [o.volunteer_id for o in request.offers] == [near.id, middle.id, far.id]


def test_with_nobody_eligible_the_request_is_unmatched_saying_which_rule_ruled_out_how_many():
    uow = uow_with(volunteer("Paused", "+447911123001", status="paused"),
                   volunteer("Far", "+447911123002", north_km=40), volunteer("No checks", "+447911123003", checks=[]))
    request = submit(uow)
    assert request.status == "unmatched" and request.offers == []
    [unmatched] = uow.events(RequestUnmatched)
    assert unmatched.reason == request.unmatched_reason == (
        "nobody eligible: 1 paused or left, 1 too far, 1 without safeguarding training in date")


def test_a_request_delivered_twice_is_taken_once_and_one_cancelled_before_it_came_is_never_offered():
    uow = uow_with(volunteer("Sam", "+447911123001"))
    request = details()
    service_layer.take_request(uow, request, POLICY, NOW, "corr-1")
    uow.anew()
    service_layer.take_request(uow, request, POLICY, NOW, "corr-1")
    assert not uow.committed and uow.published == []

    early = uuid.uuid4()
    service_layer.cancel_request(uow, early)
    assert uow.requests.cancelled_early(early) and uow.published == []
    service_layer.take_request(uow, details(request_id=early), POLICY, NOW, "corr-3")
    assert uow.requests.get(early, SYSTEM).status == "cancelled" and uow.requests.get(early, SYSTEM).offers == []
    assert uow.events(OfferMade) == []


def test_an_update_changes_an_open_request_and_one_that_overtook_its_request_takes_it_in():
    uow = uow_with(volunteer("Sam", "+447911123001"))
    request = submit(uow)
    service_layer.update_request(uow.anew(), details(request_id=request.request_id, urgency="urgent", area="FY2"),
                                 POLICY, NOW)
    assert uow.committed and (request.urgency, request.area) == ("urgent", "FY2") and uow.published == []

    overtaking = details(urgency="urgent")
    service_layer.update_request(uow.anew(), overtaking, POLICY, NOW, "corr-9")
    taken = uow.requests.get(overtaking.request_id, SYSTEM)
    assert taken.urgency == "urgent" and taken.correlation_id == "corr-9" and len(uow.events(OfferMade)) == 1

    taken.status = "matched"  # a matched request takes it too: a recurring one's next occurrence is matched by it
    service_layer.update_request(uow.anew(), replace(overtaking, area="FY4"), POLICY, NOW)
    assert taken.area == "FY4" and uow.committed

    for finished in ("completed", "cancelled"):
        taken.status = finished
        service_layer.update_request(uow.anew(), replace(overtaking, area="FY5"), POLICY, NOW)
        assert taken.area == "FY4" and not uow.committed  # a finished request keeps its details


def test_an_update_to_a_recurring_request_keeps_the_window_of_the_occurrence_being_matched():
    uow = uow_with(volunteer("Sam", "+447911123001"))
    request = submit(uow, repeat_every_weeks=2, repeat_occurrences=3)
    logged = (request.window_start, request.window_end)
    request.next_occurrence()
    service_layer.update_request(uow.anew(), details(request_id=request.request_id, repeat_every_weeks=2,
                                                     repeat_occurrences=3, support_type="meals"), POLICY, NOW)
    assert request.support_type == "meals"
    assert (request.window_start, request.window_end) == (logged[0] + timedelta(weeks=2), logged[1] + timedelta(weeks=2))


def test_a_cancellation_withdraws_open_and_accepted_offers_telling_each_volunteer_in_their_language():
    a, b = volunteer("A", "+447911123001", languages=["pl", "en"]), volunteer("B", "+447911123002", north_km=1)
    uow = uow_with(a, b)
    request = submit(uow)
    text(uow, a, "YES", offer_of(request, a).code)
    service_layer.cancel_request(uow.anew(), request.request_id)
    assert uow.committed and request.status == "cancelled"
    assert {o.status for o in request.offers} == {"withdrawn"}
    # b's offer was withdrawn when a said yes; a's accepted one now
    [withdrawn] = uow.events(OfferWithdrawn)
    assert (withdrawn.volunteer_id, withdrawn.reason, withdrawn.community, withdrawn.language) == (
        a.id, "cancelled", "fylde-coast", "pl")
    assert uow.log == [("lock", request.request_id)]


# --- what volunteers text ------------------------------------------------------------------------------------------

def test_the_first_yes_wins_and_the_others_are_withdrawn_with_the_community_and_their_language():
    a, b, c = (volunteer(n, f"+44791112300{i}", north_km=i, languages=[lang])
               for i, (n, lang) in enumerate((("A", "en"), ("B", "fr"), ("C", "pl"))))
    uow = uow_with(a, b, c)
    request = submit(uow)
    offer = offer_of(request, b)
    text(uow.anew(), b, "YES", offer.code)
    assert uow.committed and request.status == "matched" and offer.status == "accepted" and offer.answered_at == NOW
    withdrawn = uow.events(OfferWithdrawn)
    assert {(e.volunteer_id, e.reason, e.community, e.language) for e in withdrawn} == {
        (a.id, "taken", "fylde-coast", "en"), (c.id, "taken", "fylde-coast", "pl")}
    [accepted] = uow.events(OfferAccepted)
    assert (accepted.offer_id, accepted.by, accepted.community, accepted.language, accepted.window_start) == (
        offer.id, "volunteer", "fylde-coast", "fr", TASK)
    assert uow.events(RequestMatched) == [RequestMatched(request_id=request.request_id, offer_id=offer.id,
                                                         volunteer_id=b.id, sequence=7)]  # 3 offers, 2 withdrawn, 1 yes
    assert uow.log == [("lock", request.request_id), ("read again", request.request_id)]  # the lock order

    text(uow.anew(), a, "YES", offer_of(request, a, "withdrawn").code)  # too late
    [unresolved] = uow.events(ReplyUnresolved)
    assert (unresolved.reason, unresolved.code, unresolved.language) == ("no_such_offer", offer_of(
        request, a, "withdrawn").code, "en")


def test_no_asks_the_next_batch_once_the_whole_batch_has_said_no():
    a, b = volunteer("A", "+447911123001"), volunteer("B", "+447911123002", north_km=1)
    uow = uow_with(a, b)
    policy = replace(POLICY, batch_size=1)
    request = submit(uow, policy)
    text(uow.anew(), a, "NO", offer_of(request, a).code, policy=policy)
    assert offer_of(request, a, "declined").answered_at == NOW
    [made] = uow.events(OfferMade)
    assert (made.volunteer_id, made.round) == (b.id, 2)
    text(uow.anew(), b, "NO", offer_of(request, b).code, policy=policy)
    assert request.status == "unmatched"
    assert uow.events(RequestUnmatched)[0].reason == "2 asked, none said yes; of the rest: " \
        "no volunteers are registered in this community"


def test_done_completes_the_task_with_its_hours_and_a_weekly_request_asks_the_same_volunteer_next():
    regular, nearer = volunteer("Regular", "+447911123001", north_km=2), volunteer("Nearer", "+447911123002")
    uow = uow_with(regular, nearer)
    request = submit(uow, repeat_every_weeks=1, repeat_occurrences=2)
    text(uow, regular, "YES", offer_of(request, regular).code)
    done = offer_of(request, regular, "accepted")
    text(uow.anew(), regular, "DONE", done.code, hours=1.5)
    assert (done.status, done.completed_at, done.hours) == ("completed", NOW, 1.5)
    [completed] = uow.events(TaskCompleted)
    assert (completed.volunteer_id, completed.hours, completed.occurrence, completed.occurrences) == (
        regular.id, 1.5, 1, 2)
    [made] = uow.events(OfferMade)  # only the regular, though the other is nearer
    assert (made.volunteer_id, made.occurrence, made.window_start) == (regular.id, 2, TASK + timedelta(weeks=1))
    assert request.occurrence == 2 and request.status == "open"

    text(uow, regular, "YES", made.code)
    text(uow.anew(), regular, "DONE", made.code)
    assert request.status == "completed" and uow.events(OfferMade) == []


def test_cancel_after_accepting_gives_the_task_back_to_the_front_of_matching():
    a, b = volunteer("A", "+447911123001"), volunteer("B", "+447911123002", north_km=1)
    uow = uow_with(a, b)
    request = submit(uow)
    text(uow, a, "YES", offer_of(request, a).code)
    text(uow.anew(), a, "CANCEL", offer_of(request, a, "accepted").code)
    assert (request.status, request.urgency, request.given_back, request.round) == ("open", "urgent", True, 1)
    assert uow.events(TaskGivenBack)[0].volunteer_id == a.id
    assert [e.volunteer_id for e in uow.events(OfferMade)] == [b.id]  # a gave it back; b, withdrawn before, asked


def test_pause_and_resume_by_sms_change_the_status_once_and_not_for_someone_who_left():
    sam, gone = volunteer("Sam", "+447911123001"), volunteer("Gone", "+447911123002", status="left")
    uow = uow_with(sam, gone)
    text(uow, sam, "PAUSE")
    assert sam.status == "paused"
    assert uow.events(VolunteerStatusChanged) == [VolunteerStatusChanged(
        volunteer_id=sam.id, community="fylde-coast", status="paused", previous="active")]
    text(uow.anew(), sam, "PAUSE")
    text(uow, gone, "RESUME")
    assert uow.published == [] and gone.status == "left"
    text(uow, sam, "RESUME")
    assert sam.status == "active" and uow.events(VolunteerStatusChanged)[0].previous == "paused"


@pytest.mark.parametrize("sender, keyword, code, reason", [
    ("+447700900999", "YES", "1234", "unknown_sender"),
    ("a", "YES", None, "several_open"),
    ("a", "YES", "0000", "no_such_offer"),
    ("a", "DONE", None, "nothing_open"),
    ("b", None, None, "nothing_open"),  # never offered anything: told how to answer
])
def test_a_text_matching_cannot_act_on_is_sent_back_saying_why(sender, keyword, code, reason):
    a, b = volunteer("A", "+447911123001"), volunteer("B", "+447911123002", north_km=30)
    uow = uow_with(a, b)
    first, second = submit(uow), submit(uow)
    text(uow.anew(), {"a": a.phone, "b": b.phone}.get(sender, sender), keyword, code)
    [unresolved] = uow.published
    assert isinstance(unresolved, ReplyUnresolved) and unresolved.reason == reason
    assert uow.correlations[-1] == "corr-2"
    if reason == "several_open":
        assert unresolved.codes == [offer_of(first, a).code, offer_of(second, a).code]
    assert {o.status for o in first.offers + second.offers} == {"open"}


@pytest.mark.parametrize("keyword", ["STOP", "START", "HELP"])
def test_what_notify_answers_itself_is_left_to_it(keyword):
    uow = uow_with()
    text(uow, "+447700900999", keyword)
    assert uow.published == []


# --- what notify says of the texts sent ----------------------------------------------------------------------------

def test_an_offers_time_to_answer_starts_when_its_sms_went_once_by_its_urgency():
    sam = volunteer("Sam", "+447911123001")
    uow = uow_with(sam)
    request = submit(uow, urgency="urgent")
    offer = offer_of(request, sam)
    sent_at = NOW + timedelta(minutes=3)
    service_layer.offer_sent(uow.anew(), SmsSent(message_id=uuid.uuid4(), purpose="offer", provider_sid="SM1",
                                                 offer_id=offer.id), sent_at, POLICY)
    assert uow.committed and (offer.sent_at, offer.expires_at) == (sent_at, sent_at + timedelta(minutes=10))
    assert uow.log == [("lock", request.request_id), ("read again", request.request_id)]
    assert [(e.TYPE, e.due_at) for e in uow.published] == [("offer.answer_due", sent_at + timedelta(minutes=10))]
    service_layer.offer_sent(uow.anew(), SmsSent(message_id=uuid.uuid4(), purpose="offer", provider_sid="SM2",
                                                 offer_id=offer.id), sent_at + timedelta(hours=1), POLICY)
    assert offer.sent_at == sent_at and not uow.committed
    service_layer.offer_sent(uow, SmsSent(message_id=uuid.uuid4(), purpose="task", provider_sid="SM3",
                                          offer_id=uuid.uuid4()), NOW, POLICY)
    assert not uow.committed


def test_an_undeliverable_offer_counts_as_declined_and_the_next_volunteer_is_asked():
    a, b = volunteer("A", "+447911123001"), volunteer("B", "+447911123002", north_km=1)
    uow = uow_with(a, b)
    policy = replace(POLICY, batch_size=1)
    request = submit(uow, policy)
    failed = SmsFailed(message_id=uuid.uuid4(), purpose="offer", reason="undelivered", offer_id=offer_of(request, a).id)
    service_layer.offer_failed(uow.anew(), failed, policy, NOW)
    assert request.offers[0].status == "undeliverable"
    assert [e.volunteer_id for e in uow.events(OfferMade)] == [b.id]
    assert uow.log[0] == ("lock", request.request_id)
    service_layer.offer_failed(uow.anew(), failed, policy, NOW)  # again: nothing more
    assert not uow.committed and uow.published == []


def test_opting_out_or_an_invalid_number_stops_offers_by_sms_until_opting_back_in():
    sam = volunteer("Sam", "+447911123001")
    uow = uow_with(sam)
    service_layer.contact_changed(uow, sam.phone, opted_out_at=NOW)
    assert sam.sms_opted_out_at == NOW and uow.committed
    assert submit(uow).unmatched_reason == "nobody eligible: 1 opted out of SMS"
    service_layer.contact_changed(uow, sam.phone, opted_out_at=None)
    assert sam.sms_opted_out_at is None and submit(uow).status == "open"
    service_layer.contact_changed(uow.anew(), "+447700900999", opted_out_at=NOW)
    assert not uow.committed


def test_stop_withdraws_every_open_offer_at_once_each_cascade_moves_on_and_a_later_yes_wins_nothing():
    """Issue 12: a volunteer who texted STOP kept their open offers, and a later YES still won the task."""
    stopper, other, third = (volunteer(n, f"+44791112300{i}", north_km=i) for i, n in enumerate(("Stopper", "B", "C")))
    uow = uow_with(stopper, other, third)
    policy = replace(POLICY, batch_size=2)
    first, second = submit(uow, policy), submit(uow, policy)
    codes = {r.request_id: offer_of(r, stopper).code for r in (first, second)}
    service_layer.opted_out(uow.anew(), stopper.phone, NOW, policy, NOW + timedelta(seconds=1))
    assert uow.committed and stopper.sms_opted_out_at == NOW
    withdrawn = uow.events(OfferWithdrawn)
    assert sorted((e.request_id, e.code, e.reason, e.volunteer_id) for e in withdrawn) == sorted(
        (r.request_id, codes[r.request_id], "opted_out", stopper.id) for r in (first, second))
    assert [e.request_id for e in withdrawn] == sorted((first.request_id, second.request_id), key=str)
    ids = sorted((first.request_id, second.request_id), key=str)  # the lock order: every request, then the offers
    assert uow.log == [("lock", rid) for rid in ids] + [("read again", rid) for rid in ids]
    # each request still waits on B; once B says no, the next batch is C alone (the stopper is never asked again)
    assert uow.events(OfferMade) == [] and {r.status for r in (first, second)} == {"open"}
    text(uow.anew(), other, "NO", offer_of(first, other).code, policy=policy)
    assert [(e.volunteer_id, e.round) for e in uow.events(OfferMade)] == [(third.id, 2)]

    text(uow.anew(), stopper, "YES", codes[second.request_id], policy=policy)
    assert uow.events(OfferAccepted) == [] and second.status == "open"
    [unresolved] = uow.events(ReplyUnresolved)
    assert (unresolved.reason, unresolved.code) == ("no_such_offer", codes[second.request_id])


def test_stop_from_the_only_one_asked_moves_the_cascade_on_at_once_to_the_next_batch_or_unmatched():
    stopper, other = volunteer("Stopper", "+447911123001"), volunteer("Other", "+447911123002", north_km=1)
    uow = uow_with(stopper, other)
    policy = replace(POLICY, batch_size=1)
    request = submit(uow, policy)
    service_layer.opted_out(uow.anew(), stopper.phone, NOW, policy, NOW)
    [made] = uow.events(OfferMade)
    assert (made.volunteer_id, made.round) == (other.id, 2)
    service_layer.opted_out(uow.anew(), other.phone, NOW, policy, NOW)
    assert request.status == "unmatched" and [o.status for o in request.offers] == ["withdrawn", "withdrawn"]
    [unmatched] = uow.events(RequestUnmatched)
    assert unmatched.reason == "2 asked, none said yes; of the rest: 2 opted out of SMS"


def test_a_volunteer_holding_a_task_who_opts_out_keeps_it_and_the_coordinator_is_told():
    holder, other = volunteer("Holder", "+447911123001"), volunteer("Other", "+447911123002", north_km=1)
    uow = uow_with(holder, other)
    matched, open_one = submit(uow), submit(uow)
    text(uow, holder, "YES", offer_of(matched, holder).code)
    service_layer.opted_out(uow.anew(), holder.phone, NOW, POLICY, NOW)
    task = offer_of(matched, holder, "accepted")
    assert matched.status == "matched"
    [told] = uow.events(TaskVolunteerOptedOut)
    assert (told.request_id, told.offer_id, told.volunteer_id, told.code, told.community) == (
        matched.request_id, task.id, holder.id, task.code, "fylde-coast")
    [withdrawn] = uow.events(OfferWithdrawn)  # the open offer of the other request, not the task
    assert (withdrawn.request_id, withdrawn.reason) == (open_one.request_id, "opted_out")
    assert uow.events(OfferMade) == []  # the other volunteer still has that one open


def test_an_opt_out_from_a_number_that_is_no_volunteers_changes_nothing():
    uow = uow_with(volunteer("Sam", "+447911123001"))
    service_layer.opted_out(uow, "+447700900999", NOW, POLICY, NOW)
    assert not uow.committed and uow.published == []


# --- timed jobs ------------------------------------------------------------------------------------------------

def test_expiry_expires_unanswered_offers_and_asks_the_next_batch_where_a_whole_batch_went_quiet():
    a, b, c = (volunteer(n, f"+44791112300{i}", north_km=i) for i, n in enumerate("ABC"))
    uow = uow_with(a, b, c)
    policy = replace(POLICY, batch_size=2)
    request = submit(uow, policy)
    for offer in request.offers:
        offer.sent(NOW, 30)
    request.offers[1].decline(NOW)
    assert service_layer.expire_offers(uow.anew(), NOW + timedelta(minutes=29), policy) == 0
    assert service_layer.expire_offers(uow.anew(), NOW + timedelta(minutes=30), policy) == 1
    assert [o.status for o in request.offers] == ["expired", "declined", "open"]
    assert [e.volunteer_id for e in uow.events(OfferMade)] == [c.id]
    assert uow.log[0] == ("lock", request.request_id)
    assert service_layer.expire_offers(uow.anew(), NOW + timedelta(minutes=30), policy) == 0  # twice is harmless


def test_expiry_leaves_a_request_another_transaction_holds_to_its_next_run_and_does_each_in_its_own_commit(
        monkeypatch):
    a, b, c = (volunteer(n, f"+44791112300{i}", north_km=i) for i, n in enumerate("ABC"))
    uow = uow_with(a, b, c)
    policy = replace(POLICY, batch_size=1)
    held, free = submit(uow, policy), submit(uow, policy)
    for request in (held, free):
        request.offers[0].sent(NOW, 30)
    claim = uow.requests.claim
    monkeypatch.setattr(uow.requests, "claim", lambda rid: None if rid == held.request_id else claim(rid))
    commits = []
    monkeypatch.setattr(uow, "commit", lambda: commits.append([o.status for o in free.offers]))
    assert service_layer.expire_offers(uow.anew(), NOW + timedelta(minutes=30), policy) == 1
    assert [o.status for o in held.offers] == ["open"]  # a reply or another run has it: the next run looks again
    assert commits[0] == ["expired", "open"]  # the claimed request's own transaction
    monkeypatch.setattr(uow.requests, "claim", claim)
    assert service_layer.expire_offers(uow.anew(), NOW + timedelta(minutes=30), policy) == 1
    assert [o.status for o in held.offers] == ["expired", "open"]


def test_an_offer_never_takes_a_code_another_transaction_is_giving_now(monkeypatch):
    """Two requests' cascades at the same moment must not draw the same code: the second would wait on the first
    in the unique index of open codes. A code `reserve_codes` refuses (another transaction holds it) is passed over."""
    sam = volunteer("Sam", "+447911123001")
    uow = uow_with(sam)
    draws = iter([1234, 1234, 5678])  # codes 2234 (being given by another transaction), 2234 again, 6678
    monkeypatch.setattr(service_layer.secrets, "randbelow", lambda n: next(draws))
    tried = []
    monkeypatch.setattr(uow.offers, "reserve_codes",
                        lambda codes: tried.extend(codes) or [code for code in codes if code != "2234"])
    request = submit(uow)
    assert [o.code for o in request.offers] == ["6678"] and tried == ["2234", "6678"]


def test_a_check_expiring_within_30_days_is_reminded_once_and_not_for_someone_who_left():
    expires = date(2030, 3, 1)
    soon = volunteer("Soon", "+447911123001", checks=[VolunteerCheck(check="criminal_record",
                                                                      done_on=date(2027, 3, 1), expires_on=expires)])
    gone = volunteer("Gone", "+447911123002", status="left", checks=[VolunteerCheck(
        check="criminal_record", done_on=date(2027, 3, 1), expires_on=expires)])
    uow = uow_with(soon, gone)
    for today, reminded in ((expires - timedelta(days=31), 0), (expires - timedelta(days=30), 1),
                            (expires - timedelta(days=29), 0)):
        assert service_layer.remind_expiring_checks(uow.anew(), today) == reminded
    assert soon.checks[0].reminded_for == expires and gone.checks[0].reminded_for is None
    assert service_layer.remind_expiring_checks(uow.anew(), expires - timedelta(days=30)) == 0
    uow = uow_with(soon := volunteer("Soon", "+447911123003", checks=[VolunteerCheck(
        check="criminal_record", done_on=date(2027, 3, 1), expires_on=expires)]))
    service_layer.remind_expiring_checks(uow, expires - timedelta(days=10))
    assert uow.events(CheckExpiring) == [CheckExpiring(volunteer_id=soon.id, community="fylde-coast",
                                                       phone=soon.phone, check="criminal_record", expires_on=expires,
                                                       check_name=CHECKS["criminal_record"])]


# --- volunteers, for coordinators -----------------------------------------------------------------------------

def test_a_volunteer_registered_by_postcode_is_placed_by_the_gazetteer_and_metrics_told_only_counts():
    uow = uow_with()
    made = service_layer.register_volunteer(uow, COORDINATOR, profile(
        "Ana", "+447911123450", availability=[{"days": ["wed", "mon"], "part_of_day": "morning"}],
        time_away=[{"starts_on": date(2030, 8, 1), "ends_on": date(2030, 8, 14)}])).made
    assert uow.committed and uow.volunteers.get(made.id, SYSTEM) is made
    assert (made.community, made.postcode, made.area, made.latitude) == ("fylde-coast", "FY1", "FY1",
                                                                      locate("FY1").latitude)
    assert made.availability == ["mon:morning", "wed:morning"]
    assert made.windows() == [{"days": ["mon", "wed"], "part_of_day": "morning"}]
    assert [(t.starts_on, t.ends_on) for t in made.time_away] == [(date(2030, 8, 1), date(2030, 8, 14))]
    assert uow.published == [VolunteerRegistered(volunteer_id=made.id, community="fylde-coast", status="active")]

    with pytest.raises(Conflict, match="already registered"):
        service_layer.register_volunteer(uow.anew(), COORDINATOR, profile("Again", "+447911123450"))
    assert not uow.committed and uow.published == [] and len(uow.volunteers.rows) == 1


def test_changing_a_volunteer_replaces_checks_of_a_kind_moves_them_and_tells_metrics_of_a_new_status():
    sam = volunteer("Sam", "+447911123001", postcode="FY1", area="FY1")
    other = volunteer("Other", "+447911123002")
    uow = uow_with(sam, other)
    renewed = {"check": "safeguarding", "done_on": date(2030, 1, 1), "expires_on": date(2033, 1, 1)}
    record = {"check": "criminal_record", "done_on": date(2030, 1, 1), "expires_on": None}
    changed = service_layer.update_volunteer(uow, COORDINATOR, sam.id, {
        "status": "paused", "checks": [renewed, record], "latitude": 54.328, "longitude": -2.7463})
    assert changed is sam and uow.committed
    assert {c.check: c.expires_on for c in sam.checks} == {"safeguarding": date(2033, 1, 1), "criminal_record": None}
    assert (sam.latitude, sam.postcode, sam.area, sam.status) == (54.328, None, "", "paused")
    assert uow.published == [VolunteerStatusChanged(volunteer_id=sam.id, community="fylde-coast", status="paused",
                                                    previous="active")]

    with pytest.raises(Conflict, match="Another volunteer"):
        service_layer.update_volunteer(uow.anew(), COORDINATOR, sam.id, {"phone": other.phone, "name": "X"})
    assert not uow.committed and sam.name == "Sam"
    with pytest.raises(NotFound):
        service_layer.update_volunteer(uow.anew(), ELSEWHERE, sam.id, {"name": "X"})
    assert not uow.committed and sam.name == "Sam"


def test_a_volunteer_is_looked_up_with_their_offers_and_listed_by_status_or_an_expiring_check():
    soon = VolunteerCheck(check="criminal_record", done_on=date(2027, 1, 1), expires_on=TODAY + timedelta(days=10))
    ana = volunteer("Ana", "+447911123001", checks=[safeguarding(), soon])
    ben = volunteer("Ben", "+447911123002")
    uow = uow_with(ben, ana, volunteer("Cy", "+447911123003", community="cheshire-east"))
    request = submit(uow)
    record = service_layer.volunteer_record(uow, COORDINATOR, ana.id)
    assert record.volunteer is ana and record.offers == [offer_of(request, ana)]
    with pytest.raises(NotFound):
        service_layer.volunteer_record(uow, ELSEWHERE, ana.id)

    page = SimpleNamespace(first_item=0, page_size=10, item_count=None)
    assert service_layer.list_volunteers(uow, COORDINATOR, page, TODAY) == [ana, ben] and page.item_count == 2
    assert service_layer.list_volunteers(uow, COORDINATOR, page, TODAY, expiring_within_days=30) == [ana]
    assert service_layer.list_volunteers(uow, COORDINATOR, page, TODAY, expiring_within_days=5) == []
    ben.status = "paused"
    assert service_layer.list_volunteers(uow, COORDINATOR, page, TODAY, status="paused") == [ben]


def test_a_sheet_is_imported_whole_or_not_at_all_and_a_phone_twice_or_registered_is_a_bad_row():
    uow = uow_with(volunteer("Known", "+447911123009"))
    sheet = VolunteerSheet(rows=5, valid=[(2, profile("Ana", "+447911123001")), (3, profile("Ben", "+447911123002")),
                                          (4, profile("Ben again", "+447911123002")),
                                          (6, profile("Known again", "+447911123009"))],
                           problems=[{"line": 5, "field": "postcode", "detail": "Unknown."}])
    outcome = service_layer.import_volunteers(uow.anew(), COORDINATOR, sheet)
    assert outcome == {"imported": 0, "rows": 5, "errors": [
        {"line": 4, "field": "phone", "detail": "The same phone as line 3."},
        {"line": 5, "field": "postcode", "detail": "Unknown."},
        {"line": 6, "field": "phone", "detail": "A volunteer with this phone is registered."}]}
    assert not uow.committed and uow.published == [] and len(uow.volunteers.rows) == 1

    skipped = service_layer.import_volunteers(uow.anew(), COORDINATOR, sheet, skip_invalid=True)
    assert (skipped["imported"], [e["line"] for e in skipped["errors"]]) == (2, [4, 5, 6])
    assert uow.committed and sorted(v.name for v in uow.volunteers.rows.values()) == ["Ana", "Ben", "Known"]
    assert len(uow.events(VolunteerRegistered)) == 2


def test_the_roster_counts_this_months_tasks_and_puts_checks_needing_attention_first():
    expired = VolunteerCheck(check="driving", done_on=date(2027, 1, 1), expires_on=TODAY - timedelta(days=1))
    expiring = VolunteerCheck(check="criminal_record", done_on=date(2027, 1, 1), expires_on=TODAY + timedelta(days=3))
    ana = volunteer("Ana", "+447911123001", checks=[safeguarding(), expiring])
    ben = volunteer("Ben", "+447911123002", north_km=1, checks=[safeguarding(), expired], status="paused")
    uow = uow_with(ben, ana)
    request = submit(uow)
    text(uow, ana, "YES", offer_of(request, ana).code)
    found = service_layer.roster(uow, COORDINATOR, TODAY)
    assert found.volunteers == [ana, ben] and found.tasks == Counter({ana.id: 1})
    assert found.attention == [(ben, expired, "expired"), (ana, expiring, "expiring")]
    assert service_layer.roster(uow, COORDINATOR, TODAY, status="paused").volunteers == [ben]

    volunteer_found, tasks = service_layer.volunteer_tasks(uow, COORDINATOR, ana.id)
    assert volunteer_found is ana and tasks == [(offer_of(request, ana, "accepted"), request)]
    with pytest.raises(NotFound):
        service_layer.volunteer_tasks(uow, ELSEWHERE, ana.id)


# --- how a request is matched, for coordinators -------------------------------------------------------------

def test_a_coordinator_sees_the_candidates_in_order_with_reasons_and_what_ruled_out_the_rest():
    near, far = volunteer("Near", "+447911123001"), volunteer("Far", "+447911123002", north_km=3)
    uow = uow_with(near, far, volunteer("Away", "+447911123003", time_away=[
        TimeAway(starts_on=TASK.date(), ends_on=TASK.date())]))
    request = submit(uow, support_type="shopping")
    report = service_layer.explain_match(uow.anew(), COORDINATOR, request.request_id, POLICY, NOW)
    assert (report["status"], report["round"]) == ("open", 1) and report["candidates"] == []
    assert report["excluded"] == {"already asked": 2, "away": 1}
    assert report["explanation"] == "2 already asked, 1 away" and len(report["offers"]) == 2
    assert not uow.committed
    candidates, excluded = service_layer.candidates_for(uow, replace(request, offers=[]), POLICY, NOW)
    assert [c.volunteer.name for c in candidates] == ["Near", "Far"] and excluded == Counter({"away": 1})
    assert candidates[0].reasons == ("0.0 km away", "1 offer or tasks in 28 days")
    with pytest.raises(NotFound):
        service_layer.explain_match(uow, ELSEWHERE, request.request_id, POLICY, NOW)


def test_assigning_a_later_occurrence_of_a_weekly_request_makes_the_offer_for_that_occurrence():
    """Drift fix: offers are made in one place, so an assignment's offer has the occurrence being matched."""
    regular, other = volunteer("Regular", "+447911123001", north_km=2), volunteer("Other", "+447911123002")
    uow = uow_with(regular, other)
    request = submit(uow, repeat_every_weeks=1, repeat_occurrences=3)
    text(uow, regular, "YES", offer_of(request, regular).code)
    text(uow, regular, "DONE", offer_of(request, regular, "accepted").code)
    asked = offer_of(request, regular)
    assert asked.occurrence == 2

    report = service_layer.assign(uow.anew(), COORDINATOR, request.request_id, other.id, POLICY, NOW)
    assigned = offer_of(request, other, "accepted")
    assert (assigned.occurrence, assigned.round, assigned.answered_at) == (2, 1, NOW)
    assert assigned in request.current_offers() and asked.status == "withdrawn"
    assert assigned.code not in {asked.code} and len(assigned.code) == 4
    assert report["status"] == "matched" and request.status == "matched" and uow.committed
    [accepted] = uow.events(OfferAccepted)
    assert (accepted.offer_id, accepted.volunteer_id, accepted.by) == (assigned.id, other.id, "coordinator")
    [withdrawn] = uow.events(OfferWithdrawn)
    assert (withdrawn.offer_id, withdrawn.reason, withdrawn.community) == (asked.id, "taken", "fylde-coast")
    assert uow.events(OfferMade) == []  # an assignment is accepted at once, as before
    assert uow.log[0] == ("lock", request.request_id)


def test_an_assignment_is_refused_for_a_volunteer_who_is_not_eligible_or_a_request_already_matched():
    sam, far = volunteer("Sam", "+447911123001"), volunteer("Far", "+447911123002", north_km=40)
    uow = uow_with(sam, far)
    request = submit(uow)
    with pytest.raises(Conflict, match="not eligible"):
        service_layer.assign(uow.anew(), COORDINATOR, request.request_id, far.id, POLICY, NOW)
    assert not uow.committed and uow.published == [] and request.status == "open"
    with pytest.raises(NotFound):
        service_layer.assign(uow.anew(), ELSEWHERE, request.request_id, sam.id, POLICY, NOW)
    service_layer.assign(uow.anew(), COORDINATOR, request.request_id, sam.id, POLICY, NOW)  # already offered
    assert offer_of(request, sam, "accepted") is request.offers[0] and len(request.offers) == 1
    with pytest.raises(Conflict, match="A matched request cannot be assigned"):
        service_layer.assign(uow.anew(), COORDINATOR, request.request_id, sam.id, POLICY, NOW)
    assert not uow.committed


def test_an_unmatched_request_is_matched_again_from_the_first_round_and_only_an_unmatched_one():
    uow = uow_with()
    request = submit(uow)
    assert request.status == "unmatched"
    sam = volunteer("Sam", "+447911123001")
    uow.volunteers.add(sam)
    report = service_layer.rerun(uow.anew(), COORDINATOR, request.request_id, POLICY, NOW)
    assert (request.status, request.round, request.unmatched_reason) == ("open", 1, None)
    assert [e.volunteer_id for e in uow.events(OfferMade)] == [sam.id] and report["round"] == 1
    assert uow.log[0] == ("lock", request.request_id)
    with pytest.raises(Conflict, match="this one is open"):
        service_layer.rerun(uow.anew(), COORDINATOR, request.request_id, POLICY, NOW)
    assert not uow.committed and uow.published == []



# --- a volunteer asking about themselves by SMS ----------------------------------------------------------------------

def ask(uow, who: Volunteer, keyword: str, now=NOW, **fields) -> ReplyAnswered:
    """Deliver MY, AWAY or HOURS from a volunteer, and return matching's one answer."""
    service_layer.reply(uow.anew(), SmsReceived(message_sid="SM1", from_phone=who.phone, to_phone="+447700900000",
                                                body=keyword, keyword=keyword, **fields), POLICY, now, "corr-3")
    [answered] = uow.published
    assert uow.committed and uow.correlations[-1] == "corr-3"
    return answered


def test_my_lists_the_upcoming_tasks_soonest_first_with_no_fixed_time_last_and_never_the_person():
    ann = volunteer("Ann", "+447911123001")
    uow = uow_with(ann)
    later = submit(uow, window_start=TASK + timedelta(days=2), window_end=TASK + timedelta(days=2, hours=2))
    whenever = submit(uow, window_start=None, window_end=None, window_days=["mon", "thu"], window_part="morning")
    sooner = submit(uow)
    done = submit(uow, window_start=TASK - timedelta(days=1), window_end=TASK - timedelta(days=1, hours=-2))
    for request in (later, whenever, sooner, done):
        text(uow, ann, "YES", offer_of(request, ann).code)
    text(uow, ann, "DONE", offer_of(done, ann, "accepted").code, hours=1.5)
    answered = ask(uow, ann, "MY")
    assert (answered.answer, answered.phone, answered.community, answered.language) == (
        "tasks", ann.phone, "fylde-coast", "en")
    assert [(t.code, t.support_type, t.area, t.window_start, t.window_days) for t in answered.tasks] == [
        (offer_of(sooner, ann, "accepted").code, "shopping", "FY1", TASK, None),
        (offer_of(later, ann, "accepted").code, "shopping", "FY1", TASK + timedelta(days=2), None),
        (offer_of(whenever, ann, "accepted").code, "shopping", "FY1", None, ["mon", "thu"])]
    assert "Ann" not in str(answered) and "person_ref" not in str(answered)
    assert ask(uow, ann, "MY", now=TASK + timedelta(days=30)).tasks[0].window_days == ["mon", "thu"]  # the rest over


def test_away_records_the_days_once_and_dates_matching_would_refuse_are_answered_as_unclear():
    ann = volunteer("Ann", "+447911123001")
    uow = uow_with(ann)
    first, last = date(2030, 1, 20), date(2030, 1, 24)
    assert ask(uow, ann, "AWAY", away_from=first, away_until=last).answer == "away"
    assert ask(uow, ann, "AWAY", away_from=first, away_until=last).away_until == last
    assert [(t.starts_on, t.ends_on) for t in ann.time_away] == [(first, last)]
    assert ask(uow, ann, "AWAY").answer == "away_unclear"  # notify could not read the dates
    assert ask(uow, ann, "AWAY", away_from=first, away_until=date(2031, 6, 1)).answer == "away_unclear"
    assert len(ann.time_away) == 1
    away = datetime.combine(date(2030, 1, 22), datetime.min.time(), tzinfo=TASK.tzinfo) + timedelta(hours=14)
    submit(uow, window_start=away, window_end=away + timedelta(hours=2))
    assert uow.events(OfferMade) == []  # (offered were it not for the time away)


def test_hours_are_the_years_completed_tasks_and_an_unknown_number_is_told_so():
    ann = volunteer("Ann", "+447911123001", languages=["fr"])
    uow = uow_with(ann)
    request = submit(uow)
    text(uow, ann, "YES", offer_of(request, ann).code)
    assert (ask(uow, ann, "HOURS").year_hours, ask(uow, ann, "HOURS").year_tasks) == (0, 0)
    text(uow, ann, "DONE", offer_of(request, ann, "accepted").code, hours=2.5)
    answered = ask(uow, ann, "HOURS")
    assert (answered.answer, answered.year, answered.year_hours, answered.year_tasks, answered.language) == (
        "hours", 2030, 2.5, 1, "fr")
    text(uow.anew(), "+447700900999", "MY")
    assert [e.reason for e in uow.events(ReplyUnresolved)] == ["unknown_sender"]


# --- wellbeing check-ins, and hours given to group activities ---------------------------------------------------------

def test_a_check_in_is_due_an_interval_after_registration_then_after_the_last_one_was_due():
    assert next_check_in(date(2030, 1, 1), None, 91) == date(2030, 4, 2)
    assert next_check_in(date(2030, 1, 1), date(2030, 4, 2), 91) == date(2030, 7, 2)
    assert next_check_in(date(2030, 1, 1), date(2030, 4, 2), 30) == date(2030, 5, 2)


def test_each_active_volunteer_is_asked_once_per_due_date_in_their_language():
    sam = volunteer("Sam", "+447911123001", created_at=NOW - timedelta(days=91), languages=["fr", "en"])
    new = volunteer("New", "+447911123002", created_at=NOW - timedelta(days=90))
    paused = volunteer("Paused", "+447911123003", created_at=NOW - timedelta(days=200), status="paused")
    stopped = volunteer("Stopped", "+447911123004", created_at=NOW - timedelta(days=200),
                        sms_opted_out_at=NOW - timedelta(days=5))
    uow = uow_with(sam, new, paused, stopped)
    assert service_layer.prompt_check_ins(uow, NOW) == 1
    (asked,) = uow.events(WellbeingPrompted)
    assert (asked.volunteer_id, asked.phone, asked.language, asked.due_on, asked.community) == (
        sam.id, sam.phone, "fr", (NOW - timedelta(days=91)).date() + timedelta(days=91), "fylde-coast")
    assert service_layer.prompt_check_ins(uow.anew(), NOW + timedelta(minutes=1)) == 0  # asked once
    assert service_layer.prompt_check_ins(uow.anew(), NOW + timedelta(days=1)) == 1  # the newcomer's turn
    assert [e.volunteer_id for e in uow.events(WellbeingPrompted)] == [new.id]
    assert service_layer.prompt_check_ins(uow.anew(), NOW + timedelta(days=91)) == 1  # Sam's next, a quarter on
    assert [e.volunteer_id for e in uow.events(WellbeingPrompted)] == [sam.id]


def answer(uow, who: Volunteer, keyword: str, score: int | None = None, now=NOW) -> None:
    """A volunteer's answer to their check-in, as notify passes it on."""
    service_layer.reply(uow, SmsReceived(message_sid=f"SM{uuid.uuid4().hex}", from_phone=who.phone,
                                         to_phone="+447700900000", body=str(score or keyword), keyword=keyword,
                                         score=score), POLICY, now, "corr-3")


def asked_uow(*volunteers: Volunteer) -> FakeMatchingUnitOfWork:
    uow = uow_with(*volunteers)
    service_layer.prompt_check_ins(uow, NOW)
    return uow.anew()


@pytest.mark.parametrize("score, low", [(1, True), (2, True), (3, False), (5, False)])
def test_a_score_is_recorded_once_and_a_low_one_asks_a_coordinator_to_call(score, low):
    sam = volunteer("Sam", "+447911123001", created_at=NOW - timedelta(days=100))
    uow = asked_uow(sam)
    answer(uow, sam, "WELLBEING", score, NOW + timedelta(hours=3))
    (answered,) = uow.events(WellbeingAnswered)
    assert (answered.score, answered.talk, answered.low, answered.community) == (score, False, low, "fylde-coast")
    (thanks,) = uow.events(ReplyAnswered)
    assert thanks.answer == ("wellbeing_low" if low else "wellbeing_thanks")
    assert uow.check_ins.latest_of(sam.id).score == score
    answer(uow.anew(), sam, "WELLBEING", 1, NOW + timedelta(hours=4))  # a second answer changes nothing
    assert uow.events(WellbeingAnswered) == [] and uow.check_ins.latest_of(sam.id).score == score
    assert [e.answer for e in uow.events(ReplyAnswered)] == ["wellbeing_thanks"]


def test_talk_at_a_check_in_is_recorded_as_asking_to_talk_and_notify_alone_answers_it():
    sam = volunteer("Sam", "+447911123001", created_at=NOW - timedelta(days=100))
    uow = asked_uow(sam)
    answer(uow, sam, "TALK")
    (answered,) = uow.events(WellbeingAnswered)
    assert (answered.score, answered.talk) == (None, True)
    assert uow.events(ReplyAnswered) == [] and uow.events(ReplyUnresolved) == []
    answer(uow.anew(), sam, "TALK")  # TALK with no check-in open: notify's (the coordinator's inbox) alone
    assert uow.published == []


def test_a_score_after_the_check_in_window_is_not_recorded():
    sam = volunteer("Sam", "+447911123001", created_at=NOW - timedelta(days=100))
    uow = asked_uow(sam)
    answer(uow, sam, "WELLBEING", 1, NOW + timedelta(days=15))
    assert uow.events(WellbeingAnswered) == []
    assert [e.answer for e in uow.events(ReplyAnswered)] == ["wellbeing_thanks"]  # no coordinator call


def test_an_activitys_hours_are_added_once_to_its_communitys_volunteers_only():
    sam, ana = volunteer("Sam", "+447911123001"), volunteer("Ana", "+447911123002", community="cheshire-east")
    uow = uow_with(sam, ana)
    logged = ActivityLogged(activity_id=uuid.uuid4(), community="fylde-coast", kind="death_cafe",
                            held_on=date(2030, 1, 5), volunteers=[VolunteerHours(volunteer_id=sam.id, hours=2.5),
                                                                  VolunteerHours(volunteer_id=ana.id, hours=1.0),
                                                                  VolunteerHours(volunteer_id=uuid.uuid4(), hours=1)])
    assert service_layer.add_contributions(uow, logged) == 1
    assert service_layer.add_contributions(uow.anew(), logged) == 0  # delivered again: nothing twice
    (kept,) = uow.contributions.of_volunteer(sam.id)
    assert (kept.hours, kept.kind, kept.source, kept.source_id) == (2.5, "death_cafe", "activity", logged.activity_id)
    assert uow.contributions.of_volunteer(ana.id) == []
