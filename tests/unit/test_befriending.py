"""Befriending with in-memory repositories: the overdue rule (a pure function of the rhythm, the last visit and the
day), a request offered once and kept as a long-term match, DONE logging visits (a text handled twice is one
visit), the overdue reminder once per spell, and ending a match with a reason. No database, bus or Flask app."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from services.matching import service_layer
from services.matching.domain import BefriendingMatch, Conflict, VolunteerCheck, overdue_on, visit_due_on
from shared.contracts.matching import (BefriendingEnded, BefriendingStarted, BefriendingVisitLogged,
                                       BefriendingVisitOverdue, OfferMade, TaskCompleted)
from shared.contracts.notify import SmsReceived
from shared.scoping import sees
from tests.unit.test_matching_service_layer import (COORDINATOR, ELSEWHERE, NOW, POLICY, FakeMatchingUnitOfWork,
                                                    safeguarding, submit, volunteer)

START = date(2030, 1, 7)  # a Monday


# --- the overdue rule ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rhythm, since, due, overdue", [
    ("weekly", date(2030, 1, 7), date(2030, 1, 14), date(2030, 1, 17)),
    ("fortnightly", date(2030, 1, 7), date(2030, 1, 21), date(2030, 1, 24)),
    ("monthly", date(2030, 1, 7), date(2030, 2, 7), date(2030, 2, 10)),
    ("monthly", date(2030, 1, 31), date(2030, 2, 28), date(2030, 3, 3)),  # a shorter month: its last day
    ("monthly", date(2031, 12, 20), date(2032, 1, 20), date(2032, 1, 23)),
])
def test_a_visit_is_due_a_rhythm_after_the_last_and_overdue_three_days_later(rhythm, since, due, overdue):
    assert visit_due_on(rhythm, since) == due
    assert overdue_on(rhythm, since) == overdue


def test_a_rhythm_not_known_is_refused():
    with pytest.raises(ValueError):
        visit_due_on("daily", START)


def match(**changes) -> BefriendingMatch:
    fields = dict(request_id=uuid.uuid4(), offer_id=uuid.uuid4(), volunteer_id=uuid.uuid4(), community="fylde-coast",
                  support_type="home_visit", rhythm="weekly", started_on=START, review_on=date(2030, 4, 7))
    return BefriendingMatch(**{**fields, **changes})


def test_a_match_is_overdue_from_its_start_until_a_visit_and_reminded_once_per_spell():
    m = match()
    assert not m.overdue(date(2030, 1, 16)) and m.overdue(date(2030, 1, 17))
    assert m.needs_reminder(date(2030, 1, 17))
    m.reminded_for = m.since  # the reminder went
    assert m.overdue(date(2030, 1, 20)) and not m.needs_reminder(date(2030, 1, 20))  # not every day
    m.log_visit(date(2030, 1, 21), 1.0)
    assert not m.overdue(date(2030, 1, 30)) and m.overdue(date(2030, 1, 31))  # a new spell, from the visit
    assert m.needs_reminder(date(2030, 1, 31))


def test_review_is_due_on_its_date_and_an_ended_match_is_never_overdue():
    m = match()
    assert not m.review_due(date(2030, 4, 6)) and m.review_due(date(2030, 4, 7))
    m.end(date(2030, 3, 1), "person_moved")
    assert not m.overdue(date(2030, 6, 1)) and not m.review_due(date(2030, 6, 1))
    with pytest.raises(Conflict):
        m.end(date(2030, 3, 2), "died")


def test_a_match_ends_only_with_a_known_reason():
    with pytest.raises(ValueError):
        match().end(START, "bored")


# --- through the use cases ----------------------------------------------------------------------------------------

class FakeBefriending:
    """Befriending matches in memory, answering what adapters.BefriendingRepository's queries answer."""

    def __init__(self):
        self.rows: dict[uuid.UUID, BefriendingMatch] = {}

    def add(self, m):
        self.rows[m.id] = m

    def get(self, match_id, scope, lock=False):
        found = self.rows.get(match_id)
        return found if found is not None and sees(scope, found.community) else None

    def request_of(self, match_id, scope):
        found = self.get(match_id, scope)
        return found.request_id if found else None

    def of_offer(self, offer_id):
        return next((m for m in self.rows.values() if m.offer_id == offer_id), None)

    def of_request(self, request_id, scope, limit=500):
        return [m for m in self.rows.values() if (m.request_id == request_id if request_id else m.open)
                and sees(scope, m.community)]

    def claim_open(self, today):
        return [m for m in self.rows.values() if m.open]


def befriending_uow():
    uow = FakeMatchingUnitOfWork()
    uow.befriending = FakeBefriending()
    sam = volunteer("Sam", "+447911123401", skills=["companionship"],
                    checks=[safeguarding(), VolunteerCheck(check="criminal_record", done_on=date(2029, 1, 1),
                                                           expires_on=date(2035, 1, 1))])
    uow.volunteers.add(sam)
    return uow, sam


def sms(who, keyword, code, hours=None, sid=None) -> SmsReceived:
    return SmsReceived(message_sid=sid or f"SM{uuid.uuid4().hex}", from_phone=who.phone, to_phone="+447700900000",
                       body=f"{keyword} {code}", keyword=keyword, code=code, hours=hours)


def of_type(uow, kind):
    return [event for event in uow.published if isinstance(event, kind)]


def accepted_befriending(rhythm="weekly"):
    uow, sam = befriending_uow()
    request = submit(uow, support_type="home_visit", window_start=None, window_end=None,
                     window_days=["mon", "tue", "wed", "thu", "fri"], window_part="afternoon",
                     befriending_rhythm=rhythm, review_on=None)
    [offer] = of_type(uow, OfferMade)
    assert offer.rhythm == rhythm  # the offer SMS says it is an ongoing match, and how often
    service_layer.reply(uow, sms(sam, "YES", offer.code), POLICY, NOW)
    return uow, sam, request, offer


def test_a_befriending_request_accepted_starts_a_match_reviewed_in_three_months():
    uow, sam, request, offer = accepted_befriending()
    [started] = of_type(uow, BefriendingStarted)
    assert (started.rhythm, started.started_on, started.review_on) == ("weekly", START, date(2030, 4, 7))
    assert request.status == "matched"


def test_done_logs_a_visit_the_match_stays_open_and_a_redelivered_done_counts_once():
    uow, sam, request, offer = accepted_befriending()
    later = NOW + timedelta(days=6)
    done = sms(sam, "DONE", offer.code, hours=1.5, sid="SM-the-same-text")
    service_layer.reply(uow, done, POLICY, later)
    service_layer.reply(uow, done, POLICY, later)  # the same text handled again
    [m] = uow.befriending.rows.values()
    assert (m.visits, m.last_visit_on, m.open) == (1, START + timedelta(days=6), True)
    assert [(v.visit, v.hours) for v in of_type(uow, BefriendingVisitLogged)] == [(1, 1.5)]
    assert of_type(uow, TaskCompleted) == [] and len(of_type(uow, OfferMade)) == 1  # offered once, not per visit
    assert request.status == "matched" and request.offers[0].status == "accepted"

    service_layer.reply(uow, sms(sam, "DONE", offer.code, hours=1), POLICY, later + timedelta(days=7))
    assert m.visits == 2 and len(of_type(uow, BefriendingVisitLogged)) == 2


def test_an_overdue_visit_is_reminded_once_until_the_next_visit():
    uow, sam, request, offer = accepted_befriending()
    assert service_layer.remind_overdue_visits(uow, START + timedelta(days=9)) == 0
    assert service_layer.remind_overdue_visits(uow, START + timedelta(days=10)) == 1
    assert service_layer.remind_overdue_visits(uow, START + timedelta(days=11)) == 0
    [overdue] = of_type(uow, BefriendingVisitOverdue)
    assert (overdue.phone, overdue.code, overdue.since, overdue.overdue_on) == (
        sam.phone, offer.code, START, START + timedelta(days=10))
    service_layer.reply(uow, sms(sam, "DONE", offer.code), POLICY, NOW + timedelta(days=12))
    assert service_layer.remind_overdue_visits(uow, START + timedelta(days=22)) == 1


def test_a_coordinator_ends_the_match_with_a_reason_and_the_request_completes():
    uow, sam, request, offer = accepted_befriending()
    [m] = uow.befriending.rows.values()
    for week in (1, 2, 3):
        service_layer.reply(uow, sms(sam, "DONE", offer.code, hours=1), POLICY, NOW + timedelta(weeks=week))
    with pytest.raises(ValueError):
        service_layer.end_befriending(uow, COORDINATOR, m.id, "bored", NOW + timedelta(weeks=4))
    with pytest.raises(service_layer.NotFound):
        service_layer.end_befriending(uow, ELSEWHERE, m.id, "person_moved", NOW + timedelta(weeks=4))
    assert m.open
    service_layer.end_befriending(uow, COORDINATOR, m.id, "person_moved", NOW + timedelta(weeks=13))
    [ended] = of_type(uow, BefriendingEnded)
    assert (ended.reason, ended.visits, ended.weeks, ended.phone, ended.code) == (
        "person_moved", 3, 13, sam.phone, offer.code)
    assert request.status == "completed" and request.offers[0].status == "completed"
    assert (m.ended_on, m.end_reason) == (START + timedelta(weeks=13), "person_moved")
    with pytest.raises(Conflict):
        service_layer.end_befriending(uow, COORDINATOR, m.id, "died", NOW + timedelta(weeks=14))


def test_a_handler_ends_every_open_match_of_a_request_as_the_system_with_the_reason():
    uow, sam, request, offer = accepted_befriending("monthly")
    assert service_layer.end_befriending_of_request(uow, request.request_id, "died", NOW + timedelta(days=40)) == 1
    assert [e.reason for e in of_type(uow, BefriendingEnded)] == ["died"]
    assert service_layer.end_befriending_of_request(uow, request.request_id, "died", NOW + timedelta(days=41)) == 0
