"""The candidate index on both backends: two matching processes sharing one database see each other's changes to
volunteers in their next decision, and decisions through the index are those the rules give volunteer by volunteer
over every volunteer loaded from the database (the path matching took before it had an index)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from services.matching import service_layer
from services.matching.adapters import PROFILE_FIELDS, OfferRepository
from services.matching.candidates import Profile
from services.matching.domain import (MatchRequest, Offer, Policy, TimeAway, Volunteer, VolunteerCheck, distance_km,
                                      exclusion, facts_for, rank, task_slots)
from shared.clock import utcnow
from shared.communities import get as community
from tests.integration.test_matching import TOMORROW, register
from tests.unit.test_candidate_index import random_requests, random_roster

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


def stored(profile: Profile) -> Volunteer:
    """A volunteer to store, from a profile of the unit tests' random roster."""
    fields = {name: getattr(profile, name) for name in PROFILE_FIELDS if name != "id"}
    return Volunteer(**fields, phone=f"+447911{profile.id.int:06d}",
                     checks=[VolunteerCheck(**c._asdict()) for c in profile.checks],
                     time_away=[TimeAway(**t._asdict()) for t in profile.time_away])


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
        volunteers = [stored(p) for p in random_roster(rng, 160, today=today)]
        session.add_all(volunteers)
        for n, volunteer in enumerate(volunteers[::3]):  # a history: tasks held and done, offers made
            past = MatchRequest(community=volunteer.community, support_type="shopping", latitude=PLACE[0],
                                longitude=PLACE[1], person_ref=rng.choice(["p1", "p2"]), status="matched",
                                window_start=TOMORROW + timedelta(days=rng.randint(0, 6)), correlation_id="c")
            session.add(past)
            session.add(Offer(request_id=past.request_id, volunteer_id=volunteer.id, volunteer=volunteer,
                              code=f"{1000 + n}", status=rng.choice(["accepted", "completed", "declined"]),
                              answered_at=now,
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
                fresh = random_roster(rng, 1, today=today)[0]
                volunteer.update({
                    "status": fresh.status, "skills": fresh.skills, "max_distance_km": fresh.max_distance_km,
                    "checks": [{"check": c.check, "done_on": c.done_on, "expires_on": c.expires_on}
                               for c in fresh.checks],
                    "time_away": [{"starts_on": t.starts_on, "ends_on": t.ends_on} for t in fresh.time_away]})
            session.add_all(map(stored, random_roster(rng, 20, first=1000 + round_ * 100, today=today)))
    assert compared == 180 and suited > 100  # some were asked: the lists compared were not all empty


def test_a_matching_worker_reads_its_volunteers_into_the_index_as_it_starts(app_for, token):
    from services.matching.bootstrap import SERVICE
    from services.matching.candidates import index_of

    app = app_for("matching")
    register(app.test_client(), token("coordinator"), "Sam", "07911 123456")
    index = index_of(app.extensions["ccs"].engine)
    assert index.mark is None  # nothing has searched yet
    SERVICE.worker(app).loops["index"](threading.Event())
    assert index.mark is not None
    register(app.test_client(), token("coordinator"), "Ana", "07911 123457")  # after the start: caught up
    assert decide(app, shopping())[0] == ["Ana", "Sam"]
