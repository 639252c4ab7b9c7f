"""The candidate index on both backends: two matching processes sharing one database see each other's changes to
volunteers in their next decision, and decisions through the index are those the rules give volunteer by volunteer
over every volunteer loaded from the database (the path matching took before it had an index)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone

import sqlalchemy as sa

from services.matching import service_layer
from services.matching.adapters import OfferRepository
from services.matching.domain import (MatchRequest, Offer, Policy, TimeAway, Volunteer, VolunteerCheck, distance_km,
                                      exclusion, facts_for, rank, task_slots)
from shared.clock import utcnow
from shared.communities import get as community
from shared.taxonomy import CHECKS, DAYS, KINDS, PARTS_OF_DAY, SKILLS
from tests.integration.test_matching import TOMORROW, register

PLACE = (53.8175, -3.0357)  # FY1, where the volunteers registered by postcode live


def shopping(**changes) -> MatchRequest:
    """A request for shopping tomorrow afternoon at PLACE (not stored: only decided on)."""
    fields = dict(community="fylde-coast", support_type="shopping", latitude=PLACE[0], longitude=PLACE[1],
                  window_start=TOMORROW, window_end=TOMORROW + timedelta(hours=2))
    return MatchRequest(**{**fields, **changes})


def decide(app, request: MatchRequest, everyone: bool = False) -> tuple[list[str], Counter]:
    """Whom a matching process would ask for a request, in order, and what ruled out the others."""
    context = app.extensions["ccs"]
    with context.uow() as uow:
        candidates, excluded = service_layer.candidates_for(uow, request, context.settings.policy, utcnow(), everyone)
    return [c.volunteer.name for c in candidates], excluded


def test_two_matching_processes_see_each_others_changes_to_volunteers_in_their_next_decision(app_for, token):
    one, other = app_for("matching"), app_for("matching")
    assert one.extensions["ccs"].engine is not other.extensions["ccs"].engine  # each its own index
    coordinator, request = token("coordinator"), shopping()
    sam = register(one.test_client(), coordinator, "Sam", "07911 123456")
    assert decide(other, request) == (["Sam"], Counter()) and decide(one, request) == (["Sam"], Counter())

    ana = register(one.test_client(), coordinator, "Ana", "07911 123457")  # a new volunteer
    assert decide(other, request)[0] == ["Ana", "Sam"]

    paused = other.test_client().patch(f"/volunteers/{sam['id']}", headers=coordinator, json={"status": "paused"})
    assert paused.status_code == 200, paused.json
    assert decide(one, request) == (["Ana"], Counter({"status": 1}))

    today = date.today()
    lapsed = [{"check": "safeguarding", "done_on": (today - timedelta(days=900)).isoformat(),
               "expires_on": (today - timedelta(days=1)).isoformat()}]
    assert one.test_client().patch(f"/volunteers/{ana['id']}", headers=coordinator,
                                   json={"checks": lapsed}).status_code == 200
    assert decide(other, request) == ([], Counter({"status": 1, "check:safeguarding": 1}))
    renewed = [{"check": "safeguarding", "done_on": today.isoformat(), "expires_on": "2035-01-01"}]
    assert other.test_client().patch(f"/volunteers/{ana['id']}", headers=coordinator,
                                     json={"checks": renewed}).status_code == 200
    assert decide(one, request) == (["Ana"], Counter({"status": 1}))

    with one.extensions["ccs"].uow() as uow:  # STOP, as notify's contact.opted_out reaches one process
        service_layer.contact_changed(uow, ana["phone"], opted_out_at=utcnow())
    assert decide(other, request) == ([], Counter({"status": 1, "sms": 1}))
    assert decide(other, request, everyone=True) == ([], Counter({"status": 1, "sms": 1}))

    kendal = (54.3280, -2.7463)  # Sam resumes, and moves away: found where they now live, not where they were
    assert one.test_client().patch(f"/volunteers/{sam['id']}", headers=coordinator, json={
        "status": "active", "latitude": kendal[0], "longitude": kendal[1]}).status_code == 200
    assert decide(other, request) == ([], Counter({"sms": 1}))
    assert decide(other, shopping(latitude=kendal[0], longitude=kendal[1])) == (["Sam"], Counter())


def random_volunteer(rng: random.Random, n: int, today: date) -> Volunteer:
    """A volunteer with every profile rule in play."""
    slots = [f"{day}:{part}" for day in DAYS for part in PARTS_OF_DAY]
    volunteer = Volunteer(
        community=rng.choice(["fylde-coast"] * 5 + ["cheshire-east"]), name=f"V{n:04d}", phone=f"+4479111{n:05d}",
        latitude=PLACE[0] + rng.gauss(0, 0.08), longitude=PLACE[1] + rng.gauss(0, 0.12),
        max_distance_km=rng.choice([2.0, 5.0, 10.0, 25.0]), skills=rng.sample(SKILLS, rng.randint(1, 3)),
        languages=rng.choice([["en"], ["en", "ur"], ["pl"]]), gender=rng.choice(["female", "male", None]),
        availability=[] if rng.random() < 0.4 else sorted(rng.sample(slots, rng.randint(1, 8))),
        weekly_cap=rng.randint(1, 3), status=rng.choice(["active"] * 8 + ["paused", "left"]),
        sms_opted_out_at=utcnow() if rng.random() < 0.1 else None)
    volunteer.checks = [VolunteerCheck(check=check, done_on=today - timedelta(days=rng.randint(1, 900)),
                                       expires_on=rng.choice([None, today + timedelta(days=rng.randint(-5, 30))]))
                        for check in CHECKS if rng.random() < 0.7]
    volunteer.time_away = [TimeAway(starts_on=start, ends_on=start + timedelta(days=rng.randint(0, 6)))
                           for start in [today + timedelta(days=rng.randint(-3, 9))] if rng.random() < 0.2]
    return volunteer


def random_requests(rng: random.Random, count: int, today: date) -> list[MatchRequest]:
    """One-off and weekly requests of every kind, some for someone helped before, a language or a gender."""
    requests = []
    for n in range(count):
        start = datetime.combine(today + timedelta(days=rng.randint(1, 12)), time(rng.choice([9, 14, 19])),
                                 tzinfo=timezone.utc)
        weekly = n % 3 == 0
        requests.append(shopping(
            latitude=PLACE[0] + rng.gauss(0, 0.05), longitude=PLACE[1] + rng.gauss(0, 0.08),
            support_type=sorted(KINDS)[n % len(KINDS)], person_ref=rng.choice(["", "p1", "p2"]),
            volunteer_gender=rng.choice([None, None, "female"]), volunteer_language=rng.choice([None, None, "ur"]),
            window_start=None if weekly else start, window_end=None if weekly else start + timedelta(hours=2),
            window_days=rng.sample(DAYS, rng.randint(1, 4)) if weekly else None,
            window_part=rng.choice(PARTS_OF_DAY) if weekly else None))
    return requests


def old_decision(session, request: MatchRequest, policy: Policy, now: datetime, everyone: bool):
    """The decision as matching made it before the index: every volunteer loaded, each judged by domain.exclusion."""
    zone = community(request.community).zone
    slots = task_slots(request, zone, now.astimezone(zone).date())
    found = [(v, distance_km(request.latitude, request.longitude, v.latitude, v.longitude))
             for v in session.scalars(sa.select(Volunteer).where(Volunteer.community == request.community))]
    found = [(v, d) for v, d in found if everyone or d <= policy.request_radius_km]
    offers, ids = OfferRepository(session), [v.id for v, _ in found]
    facts = facts_for(request, found, offers.recent_load(ids, now - timedelta(days=policy.recent_days)),
                      offers.held_by(ids), now)
    excluded, eligible = Counter(), []
    for volunteer, _ in found:
        rule = exclusion(volunteer, request, facts[volunteer.id], slots, policy)
        if rule is None:
            eligible.append((volunteer, facts[volunteer.id]))
        else:
            excluded[rule] += 1
    return rank(eligible, policy), excluded


def test_decisions_through_the_index_are_those_the_rules_give_every_volunteer_loaded(app_for, monkeypatch):
    monkeypatch.setattr(service_layer, "FIRST_LOOK", 2)  # read tasks and offers in short runs, as in a city
    app = app_for("matching")
    context, rng, today, now = app.extensions["ccs"], random.Random(5), date.today(), utcnow()
    with context.sessions.begin() as session:
        volunteers = [random_volunteer(rng, n, today) for n in range(160)]
        session.add_all(volunteers)
        for n, volunteer in enumerate(volunteers[::3]):  # a history: tasks held and done, offers made
            past = MatchRequest(community=volunteer.community, support_type="shopping", latitude=PLACE[0],
                                longitude=PLACE[1], person_ref=rng.choice(["p1", "p2"]), status="matched",
                                window_start=TOMORROW + timedelta(days=rng.randint(0, 6)), correlation_id="c")
            session.add(past)
            session.add(Offer(request_id=past.request_id, volunteer_id=volunteer.id, volunteer=volunteer,
                              code=f"{1000 + n}", status=rng.choice(["accepted", "completed", "declined"]), answered_at=now,
                              created_at=now - timedelta(days=rng.randint(0, 40))))
    compared = suited = 0
    for round_ in range(3):
        for request in random_requests(rng, 30, today):
            for everyone in (False, True):
                with context.uow() as uow:
                    new = service_layer.candidates_for(uow, request, context.settings.policy, now, everyone)
                with context.sessions() as session:
                    old = old_decision(session, request, context.settings.policy, now, everyone)
                # Within the radius, the best batch is certain, and so are the counts of the profile rules.
                shown = None if everyone else context.settings.policy.batch_size
                assert [(c.volunteer.id, c.score, c.distance_km, c.reasons) for c in new[0][:shown]] == [
                    (c.volunteer.id, c.score, c.distance_km, c.reasons) for c in old[0][:shown]], (round_, request)
                loads = () if everyone else ("weekly_cap", "already_asked")
                assert {r: n for r, n in new[1].items() if r not in loads} == {
                    r: n for r, n in old[1].items() if r not in loads}, (round_, request, everyone)
                compared, suited = compared + 1, suited + len(new[0][:shown])
        with context.sessions.begin() as session:  # some volunteers change, and some join, between rounds
            for volunteer in session.scalars(sa.select(Volunteer).order_by(Volunteer.name).limit(40)):
                fresh = random_volunteer(rng, 0, today)
                volunteer.update({
                    "status": fresh.status, "skills": fresh.skills, "max_distance_km": fresh.max_distance_km,
                    "checks": [{"check": c.check, "done_on": c.done_on, "expires_on": c.expires_on}
                               for c in fresh.checks],
                    "time_away": [{"starts_on": t.starts_on, "ends_on": t.ends_on} for t in fresh.time_away]})
            session.add_all(random_volunteer(rng, 1000 + round_ * 100 + n, today) for n in range(20))
    assert compared == 180 and suited > 100  # some were asked: the lists compared were not all empty
