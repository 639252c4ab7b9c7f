"""State converges whatever order events arrive in.

Matching numbers every event it publishes about a request (`sequence`); intake's status is the one the highest
numbered event implies (services/intake/domain.py `standing_after`), and metrics counts facts, not arrivals.

The property test generates request histories by driving matching's real service layer (in-memory fakes): a
request submitted through intake (one-off or recurring), offers in rounds, YES, NO, an SMS that failed, an offer
left to expire, a volunteer opting out, a task given back, offered again or unmatched, a coordinator's rerun or
assignment, each occurrence done, a cancellation. It delivers the events the services published to intake's and
metrics' service layers (fakes, no database) in the order they were published and in a shuffled order, and checks
that intake ends where matching is and where in-order delivery ends, and that metrics counts the same.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from services.intake import service_layer as intake
from services.intake.domain import Standing, SupportRequest, columns_from, implied, standing_after
from services.intake.entrypoints.handlers import HANDLERS as INTAKE_HANDLERS
from services.matching import service_layer as matching
from services.matching.domain import Conflict, Policy, Volunteer, VolunteerCheck
from services.metrics import service_layer as metrics
from services.metrics.domain import Filters
from services.metrics.entrypoints.handlers import HANDLERS as METRICS_HANDLERS
from shared.auth import Actor
from shared.contracts import EXAMPLES, Event, EventPayload
from shared.contracts.intake import RequestCancelled, RequestSubmitted
from shared.contracts.matching import (AboutRequest, OfferMade, OfferWithdrawn, RequestMatched, RequestUnmatched,
                                       TaskCompleted, TaskGivenBack)
from shared.contracts.notify import SmsFailed, SmsReceived, SmsSent
from tests.unit.test_intake_service_layer import KIM, SETTINGS, SHOPPING, FakeIntakeUnitOfWork
from tests.unit.test_matching_service_layer import PLACE, FakeMatchingUnitOfWork
from tests.unit.test_metrics_service_layer import FakeMetricsUnitOfWork
from tests.unit.test_metrics_service_layer import Settings as MetricsSettings

# Half past three in the morning, UTC: still the day before in Ottawa, so a fact placed in the wrong day shows.
T0 = datetime.now(timezone.utc).replace(hour=3, minute=30, second=0, microsecond=0) + timedelta(days=1)
WINDOW = (T0 + timedelta(days=2)).replace(hour=14, minute=0)
# What matching's state of a request says intake should show.
MATCHING_SAYS = {"open": "offered", "matched": "matched", "unmatched": "unmatched", "completed": "completed",
                 "cancelled": "cancelled"}
REQUEST_ID = uuid.UUID("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")


def about(event_type: type[AboutRequest], sequence: int, **fields) -> AboutRequest:
    """One of matching's events about REQUEST_ID (its example's other fields), numbered."""
    wire = {**EXAMPLES[(event_type.TYPE, 1)], "request_id": str(REQUEST_ID), **fields, "sequence": sequence}
    return event_type(**event_type.schema().load(wire))


def settle(*events: AboutRequest, start: Standing = Standing("submitted")) -> Standing:
    """Where a request stands after hearing of these events, in this order."""
    for each in events:
        start = standing_after(start, each.TYPE, each)
    return start


# --- the rule, by table ----------------------------------------------------------------------------------------------


def test_each_event_implies_the_state_matching_is_in_once_it_is_the_latest():
    unmatched = about(RequestUnmatched, 1, reason="3 asked, none said yes")
    assert implied("offer.made", about(OfferMade, 1)) == ("offered", "")
    assert implied("request.matched", about(RequestMatched, 1)) == ("matched", "")
    assert implied("request.unmatched", unmatched) == ("unmatched", "3 asked, none said yes")
    assert implied("task.given_back", about(TaskGivenBack, 1)) == ("offered", "")
    assert implied("task.completed", about(TaskCompleted, 1, occurrence=1, occurrences=3)) == ("offered", ""), \
        "an earlier occurrence done: the next one is being asked"
    assert implied("task.completed", about(TaskCompleted, 1, occurrence=3, occurrences=3)) == (
        "completed", "Completed")
    assert implied("offer.withdrawn", about(OfferWithdrawn, 4)) is None, "a withdrawal alone says nothing of it"


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_task_given_back_then_unmatched_ends_unmatched_in_either_order(order):
    events = [about(TaskGivenBack, 4), about(RequestUnmatched, 5, reason="nobody eligible: 1 already asked")]
    after = settle(about(OfferMade, 1), about(RequestMatched, 3), *(events[n] for n in order))
    assert after == Standing("unmatched", "nobody eligible: 1 already asked", 5)


def test_a_lower_numbered_event_changes_nothing_and_cancelled_or_completed_stay_so():
    matched = settle(about(RequestMatched, 3))
    assert settle(about(OfferMade, 2), start=matched) == matched
    cancelled = Standing("cancelled", "No longer needed", 0)
    assert settle(about(OfferMade, 1), about(RequestMatched, 3), start=cancelled) == cancelled
    done = settle(about(TaskCompleted, 9, occurrence=2, occurrences=2))
    assert settle(about(TaskGivenBack, 10), start=done) == done


def test_an_unnumbered_event_moves_only_on_and_only_until_a_numbered_one_was_followed():
    legacy = settle(about(OfferMade, 0), about(RequestMatched, 0), about(OfferMade, 0))
    assert legacy == Standing("matched", "", 0), "before sequences: a late offer does not move a match back"
    numbered = settle(about(OfferMade, 1))
    assert settle(about(RequestMatched, 0), start=numbered) == numbered


def test_a_late_event_is_on_the_timeline_where_it_happened():
    request = SupportRequest.submit(KIM, columns_from(SHOPPING), SHOPPING["consent"])
    earlier, later = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    request.follow("request.unmatched", about(RequestUnmatched, 5, reason="nobody left"), later)
    request.follow("task.given_back", about(TaskGivenBack, 4), earlier)
    assert [t.what for t in request.timeline] == ["submitted", "given back", "unmatched"]
    assert (request.status, request.outcome, request.matching_sequence) == ("unmatched", "nobody left", 5)


# --- matching numbers its events -------------------------------------------------------------------------------------


def test_matching_numbers_each_requests_events_in_the_order_it_published_them():
    history = History(volunteers=3, policy=Policy(batch_size=2, max_rounds=2), occurrences=2)
    first = history.request
    history.reply(next(o for o in first.current_offers() if o.status == "open"), "YES")
    other = History(volunteers=0, policy=Policy(), occurrences=1, uow=history.uow)
    history.reply(next(o for o in first.current_offers() if o.status == "accepted"), "CANCEL")
    numbered = [e for e in history.uow.published if isinstance(e, AboutRequest)]
    mine = [e.sequence for e in numbered if e.request_id == first.request_id]
    assert mine == list(range(1, len(mine) + 1)) and first.sequence == len(mine) >= 6
    theirs = [e.sequence for e in numbered if e.request_id == other.request.request_id]
    assert theirs == list(range(1, len(theirs) + 1)) and other.request.sequence == len(theirs) >= 1, \
        "another request's events are numbered on their own"


# --- the property ----------------------------------------------------------------------------------------------------


def volunteer(n: int, community: str = "fylde-coast") -> Volunteer:
    """A volunteer for shopping, n × 500 m north of the requests' place."""
    return Volunteer(community=community, name=f"V{n}", phone=f"+4479111240{n:02d}", latitude=PLACE[0] + n * 0.0045,
                     longitude=PLACE[1], max_distance_km=10.0, skills=["practical"],
                     checks=[VolunteerCheck(check="safeguarding", done_on=date(2020, 1, 1),
                                            expires_on=date(2099, 1, 1))])


class History:
    """One request's history, made by matching's real use cases: every event published, in order, as delivered."""

    def __init__(self, volunteers: int, policy: Policy, occurrences: int, uow: FakeMatchingUnitOfWork | None = None,
                 community: str = "fylde-coast"):
        self.uow = uow or FakeMatchingUnitOfWork()
        self.policy, self.now = policy, T0
        self.coordinator = Actor(subject="co@example.org", role="coordinator", communities=(community,))
        self.volunteers = [volunteer(n, community) for n in range(volunteers)]
        for each in self.volunteers:
            self.uow.volunteers.add(each)
        self.data = {**SHOPPING, "when": {"start": WINDOW, "end": WINDOW + timedelta(hours=2)},
                     "repeat": {"every_weeks": 1, "occurrences": occurrences} if occurrences > 1 else None}
        self.request_id = uuid.uuid4()
        self.events: list[Event] = []  # every event either service published, in order
        self.cancelled: Event | None = None  # intake's request.cancelled, if the coordinator cancelled
        submitted = self.intake()[1].for_matching(RequestSubmitted, SETTINGS.secret_key)
        self.record([submitted])
        self.matching(matching.take_request, submitted, policy, self.now, str(self.request_id))

    @property
    def request(self):
        return self.uow.requests.rows[self.request_id]

    def intake(self) -> tuple[FakeIntakeUnitOfWork, SupportRequest]:
        """Intake with the request as it was submitted (the same id every time)."""
        uow = FakeIntakeUnitOfWork()
        request = SupportRequest.submit(self.coordinator, columns_from(self.data), self.data["consent"])
        request.id = self.request_id
        uow.requests.rows[request.id] = request
        return uow, request

    def record(self, published: list[EventPayload]) -> None:
        """Each event published, as its consumers get it (the fakes checked it against its contract), a
        microsecond after the one before."""
        for payload in published:
            self.events.append(Event(
                event_id=uuid.uuid4(), type=payload.TYPE, version=payload.VERSION, producer=payload.PRODUCER,
                occurred_at=self.now + timedelta(microseconds=len(self.events)), correlation_id=str(self.request_id),
                payload=payload))

    def matching(self, use_case, *args) -> None:
        """Run one of matching's use cases, and record what it published."""
        before = len(self.uow.published)
        try:
            use_case(self.uow, *args)
        except Conflict:
            self.uow.rollback()
        self.record(self.uow.published[before:])
        self.now += timedelta(minutes=1)

    def reply(self, offer, keyword: str, hours: float | None = None) -> None:
        sms = SmsReceived(message_sid=f"SM{uuid.uuid4().hex}", from_phone=offer.volunteer.phone,
                          to_phone="+447700900000", body=f"{keyword} {offer.code}", keyword=keyword,
                          code=offer.code, hours=hours)
        self.matching(matching.reply, sms, self.policy, self.now, "sms")

    def choices(self) -> list[tuple]:
        """What can happen next, as (what, offer or volunteer); none once the request is completed or cancelled (a
        coordinator can cancel at any time before: `do("cancel", None)`)."""
        request = self.request
        if request.status in ("completed", "cancelled"):
            return []
        choices = []
        if request.status == "open":
            for offer in (o for o in request.current_offers() if o.status == "open"):
                choices += [(what, offer) for what in ("YES", "YES", "NO", "expire", "fail", "opt out")]
        elif request.status == "matched":
            task = next(o for o in request.current_offers() if o.status == "accepted")
            choices += [("DONE", task), ("DONE", task), ("CANCEL", task), ("opt out", task)]
        else:
            choices.append(("rerun", None))
        if request.status in ("open", "unmatched"):
            choices += [("assign", v) for v in self.volunteers]
        return choices

    def do(self, what: str, subject, hours: float | None = None) -> None:
        """One thing happens: a volunteer texts, an SMS fails, time passes, a coordinator acts."""
        if what in ("YES", "NO", "CANCEL"):
            self.reply(subject, what)
        elif what == "DONE":
            self.reply(subject, what, hours)
        elif what == "expire":
            if subject.sent_at is None:
                self.matching(matching.offer_sent, SmsSent(message_id=uuid.uuid4(), purpose="offer",
                                                           provider_sid="SM1", offer_id=subject.id),
                              self.now, self.policy)
            self.now = max(self.now, subject.expires_at)
            self.matching(matching.expire_offers, self.now, self.policy)
        elif what == "fail":
            self.matching(matching.offer_failed, SmsFailed(message_id=uuid.uuid4(), purpose="offer",
                                                           reason="undelivered", offer_id=subject.id),
                          self.policy, self.now)
        elif what == "opt out":
            self.matching(matching.opted_out, subject.volunteer.phone, self.now, self.policy, self.now)
        elif what == "rerun":
            self.matching(matching.rerun, self.coordinator, self.request_id, self.policy, self.now)
        elif what == "assign":
            self.matching(matching.assign, self.coordinator, self.request_id, subject.id, self.policy, self.now)
        elif what == "cancel":
            self.record([RequestCancelled(request_id=self.request_id, reason="No longer needed")])
            self.cancelled = self.events[-1]
            self.matching(matching.cancel_request, self.request_id)

    # --- delivering what was published ---

    def to_intake(self, order: list[Event]) -> SupportRequest:
        """Intake's request after hearing matching's events in this order; intake's own cancellation, where the
        order has the request.cancelled, is the coordinator cancelling then."""
        uow, request = self.intake()
        for event in order:
            if event is self.cancelled:
                intake.cancel_request(uow, self.coordinator, self.request_id, event.payload.reason, SETTINGS)
            elif event.producer == "matching" and event.type in INTAKE_HANDLERS:
                with uow:
                    if uow.first_time("intake", event.event_id):
                        INTAKE_HANDLERS[event.type](uow, event)
                        uow.commit()
        return request

    def to_metrics(self, order: list[Event]) -> dict:
        """Metrics' counts, by day, after hearing every event in this order."""
        uow = FakeMetricsUnitOfWork()
        for event in order:
            if event.type in METRICS_HANDLERS:
                with uow:
                    if uow.first_time("metrics", event.event_id):
                        METRICS_HANDLERS[event.type](uow, event)
                        uow.commit()
        days = Filters(start=T0.date() - timedelta(days=1), end=self.now.date() + timedelta(days=1))
        manager = Actor(subject="manager@example.org", role="manager", communities=self.coordinator.communities)
        return metrics.activity(uow, manager, "day", days, MetricsSettings(), self.now.date())


def for_intake(history: History, shuffled: list[Event], cut: int) -> list[Event]:
    """Matching's events in a shuffled order, with intake's cancellation (if any) at a point no later than the
    first event matching published after hearing of it: `cut` of the way along the places it may go."""
    events = [e for e in shuffled if e.producer == "matching"]
    if history.cancelled is None:
        return events
    after = {e.event_id for e in history.events[history.events.index(history.cancelled) + 1:]}
    latest = next((n for n, e in enumerate(events) if e.event_id in after), len(events))
    at = cut % (latest + 1)
    return [*events[:at], history.cancelled, *events[at:]]


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_order_of_delivery_ends_where_matching_is_and_where_in_order_delivery_ends(data):
    history = History(volunteers=data.draw(st.integers(0, 4), label="volunteers"),
                      policy=Policy(batch_size=data.draw(st.integers(1, 3), label="batch"),
                                    max_rounds=data.draw(st.integers(1, 3), label="rounds")),
                      occurrences=data.draw(st.sampled_from([1, 1, 2, 3]), label="occurrences"),
                      community=data.draw(st.sampled_from(["fylde-coast", "ottawa-west"]), label="community"))
    for _ in range(20):
        choices = history.choices()
        then = data.draw(st.sampled_from(["go on"] * 8 + ["stop", "cancel"]), label="then") if choices else "stop"
        if then == "stop":
            break
        what, subject = ("cancel", None) if then == "cancel" else choices[data.draw(st.integers(0, len(choices) - 1))]
        note(f"then: {what} {getattr(subject, 'code', getattr(subject, 'name', ''))}")
        hours = data.draw(st.sampled_from([None, 1.5]), label="hours") if what == "DONE" else None
        history.do(what, subject, hours)

    in_order = history.to_intake(history.events)
    note("published: " + ", ".join(f"{n}:{e.type}#{getattr(e.payload, 'sequence', '-')}"
                                   for n, e in enumerate(history.events)))
    shuffled = [history.events[n] for n in data.draw(st.permutations(range(len(history.events))),
                                                     label="intake hears (by index)")]
    cut = data.draw(st.integers(0, len(history.events)), label="cancelled at")
    out_of_order = history.to_intake(for_intake(history, shuffled, cut))

    expected = MATCHING_SAYS[history.request.status]
    event(f"matching ends {history.request.status}")
    event(f"{len(history.events) // 10 * 10}+ events")
    for kind in ("task.given_back", "task.completed", "offer.withdrawn", "request.unmatched"):
        if any(e.type == kind for e in history.events):
            event(f"with {kind}")
    assert in_order.status == expected, "in order, intake shows what matching's state implies"
    assert out_of_order.status == expected, "in any order, intake shows what matching's state implies"
    assert out_of_order.outcome == in_order.outcome
    if expected == "unmatched":
        assert out_of_order.outcome == history.request.unmatched_reason

    def heard(request: SupportRequest) -> list[tuple]:
        return [(t.what, t.detail, t.at) for t in request.timeline if t.actor == "matching"]

    assert heard(out_of_order) == heard(in_order) == sorted(heard(in_order), key=lambda entry: entry[2])

    counted = history.to_metrics(history.events)
    order = data.draw(st.permutations(range(len(history.events))), label="metrics hears (by index)")
    assert history.to_metrics([history.events[n] for n in order]) == counted
    totals = {key: sum(p["measures"][key] for p in counted["periods"]) for key in (
        "requests_received", "requests_matched", "occurrences_matched", "requests_rematched", "requests_cancelled",
        "tasks_completed")}
    matches = [e.payload.occurrence for e in history.events if e.type == "request.matched"]
    assert totals == {"requests_received": 1, "requests_matched": int(bool(matches)),
                      "occurrences_matched": len(set(matches) - {1}),
                      "requests_rematched": len(matches) - len(set(matches)),
                      "requests_cancelled": int(history.cancelled is not None),
                      "tasks_completed": sum(e.type == "task.completed" for e in history.events)}
