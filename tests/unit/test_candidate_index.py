"""The candidate index's pure logic: its grid search finds exactly who a scan of every volunteer would, and its
rules over arrays give exactly what domain.judge_profiles gives one volunteer at a time, before and after
volunteers change and the arrays are rebuilt. No database."""

from __future__ import annotations

import math
import random
import uuid
from datetime import date, datetime, time, timedelta, timezone

import pytest

from services.matching.candidates import (CELL_DEGREES, Away, CandidateIndex, Check, Profile, cell_ranges,
                                          grid_cell)
from services.matching.domain import (EARTH_RADIUS_KM, CheckRules, CheckType, KindRequirement, MatchRequest, Policy,
                                      distance_km, judge_profiles, task_slots)
from shared.taxonomy import CHECKS, DAYS, KINDS, PARTS_OF_DAY, SKILLS

BLACKPOOL = (53.8142, -3.0503)
LONDON_ZONE = __import__("zoneinfo").ZoneInfo("Europe/London")
TODAY = date(2030, 1, 7)  # a Monday


def profile(n: int, latitude: float, longitude: float, **changes) -> Profile:
    """A volunteer any shopping request within 15 km may ask: only where they are decides."""
    fields = dict(id=uuid.UUID(int=n + 1), community="fylde-coast", name=f"V{n:04d}", latitude=latitude,
                  longitude=longitude, max_distance_km=1000.0, skills=["practical"], languages=["en"], gender=None,
                  availability=[], weekly_cap=3, status="active", sms_opted_out_at=None,
                  checks=[Check(check, date(2029, 1, 1), None) for check in CHECKS])
    return Profile(**{**fields, **changes})


def request_at(latitude: float, longitude: float, **changes) -> MatchRequest:
    """A shopping request at a place, tomorrow afternoon."""
    start = datetime.combine(TODAY + timedelta(days=1), time(14), tzinfo=timezone.utc)
    fields = dict(community="fylde-coast", support_type="shopping", latitude=latitude, longitude=longitude,
                  window_start=start, window_end=start + timedelta(hours=2))
    return MatchRequest(**{**fields, **changes})


def on_a_cell_edge(rng: random.Random) -> tuple[float, float]:
    """A place exactly on a grid line (or corner) near Blackpool."""
    row, col = round(BLACKPOOL[0] / CELL_DEGREES) + rng.randint(-8, 8), round(BLACKPOOL[1] / CELL_DEGREES)
    latitude, longitude = row * CELL_DEGREES, (col + rng.randint(-12, 12)) * CELL_DEGREES
    return (latitude, longitude + rng.uniform(-0.02, 0.02)) if rng.random() < 0.3 else (
        (latitude + rng.uniform(-0.02, 0.02), longitude) if rng.random() < 0.5 else (latitude, longitude))


def loaded(profiles: list[Profile], rebuild_at: int = 256) -> CandidateIndex:
    """An index holding these volunteers."""
    index = CandidateIndex(rebuild_at=rebuild_at)
    index.load(profiles, mark=1)
    return index


def test_the_grid_search_finds_exactly_who_a_scan_would_at_random_places_edges_and_every_radius():
    rng = random.Random(4)
    places = [(BLACKPOOL[0] + rng.gauss(0, 0.12), BLACKPOOL[1] + rng.gauss(0, 0.2)) for _ in range(300)]
    places += [on_a_cell_edge(rng) for _ in range(150)]
    everyone = [profile(n, *place, community="cheshire-east" if n % 23 == 0 else "fylde-coast")
                for n, place in enumerate(places)]
    index = loaded(everyone)
    centres = [(BLACKPOOL[0] + rng.gauss(0, 0.1), BLACKPOOL[1] + rng.gauss(0, 0.15)) for _ in range(25)]
    centres += [on_a_cell_edge(rng) for _ in range(15)] + places[::40]  # on grid lines, and on a volunteer
    checked = 0
    for latitude, longitude in centres:
        for radius in (0.3, 2.0, 4.45, 9.0, 15.0, 40.0):  # inside a cell, about a cell, many cells
            request, policy = request_at(latitude, longitude), Policy(request_radius_km=radius)
            found, excluded = index.search(request, task_slots(request, LONDON_ZONE, TODAY), policy)
            found = found[:]
            scan = {p.id for p in everyone if p.community == "fylde-coast"
                    and distance_km(latitude, longitude, p.latitude, p.longitude) <= radius}
            assert {s.id for s in found} == scan and not excluded, (latitude, longitude, radius)
            assert [s.distance_km for s in found] == sorted(s.distance_km for s in found)
            checked += len(scan)
    assert checked > 5000  # the comparison was not between empty sets


def test_a_volunteer_found_at_the_edge_of_the_radius_and_not_beyond_it():
    east = BLACKPOOL[1] + 15.0 / (111.195 * 0.5902)  # about 15 km east at Blackpool's latitude
    radius = distance_km(*BLACKPOOL, BLACKPOOL[0], east)
    north = BLACKPOOL[0] + math.degrees(radius / EARTH_RADIUS_KM) + 1e-7  # a centimetre further, to the north
    index = loaded([profile(1, BLACKPOOL[0], east), profile(2, north, BLACKPOOL[1])])

    def names(within):
        request = request_at(*BLACKPOOL)
        return [s.name for s in index.search(request, task_slots(request, LONDON_ZONE, TODAY),
                                             Policy(request_radius_km=within))[0][:]]

    assert names(radius) == ["V0001"] and names(radius - 1e-6) == [] and names(radius + 1e-4) == ["V0001", "V0002"]


def test_every_cell_a_circle_touches_is_in_its_ranges():
    rng = random.Random(2)
    for _ in range(200):
        centre = (rng.uniform(-60, 70), rng.uniform(-170, 170))
        radius = rng.choice([0.5, 5, 15, 60])
        cells = {cell for first, last in cell_ranges(*centre, radius) for cell in range(first, last + 1)}
        for _ in range(50):  # points on the circle's edge, just inside it
            bearing, reach = rng.uniform(0, 2 * math.pi), radius * (1 - 1e-9) / EARTH_RADIUS_KM
            lat1, lon1 = map(math.radians, centre)
            lat2 = math.asin(math.sin(lat1) * math.cos(reach) + math.cos(lat1) * math.sin(reach) * math.cos(bearing))
            lon2 = lon1 + math.atan2(math.sin(bearing) * math.sin(reach) * math.cos(lat1),
                                     math.cos(reach) - math.sin(lat1) * math.sin(lat2))
            assert grid_cell(math.degrees(lat2), math.degrees(lon2)) in cells


def random_roster(rng: random.Random, size: int, first: int = 0, today: date = TODAY) -> list[Profile]:
    """Volunteers with every profile rule in play: statuses, opt-outs, skills, checks in and out of date, time
    away, weekly windows, distances, languages and genders (the integration tests store them too)."""
    slots = [f"{day}:{part}" for day in DAYS for part in PARTS_OF_DAY]
    roster = []
    for n in range(first, first + size):
        checks = [Check(check, today - timedelta(days=rng.randint(0, 900)),
                        rng.choice([None, today + timedelta(days=rng.randint(-5, 30))]))
                  for check in CHECKS if rng.random() < 0.7]
        away = [Away(start, start + timedelta(days=rng.randint(0, 6)))
                for start in (today + timedelta(days=rng.randint(-3, 9)) for _ in range(rng.choice([0, 0, 0, 1, 2])))]
        roster.append(profile(
            n, BLACKPOOL[0] + rng.gauss(0, 0.08), BLACKPOOL[1] + rng.gauss(0, 0.12),
            community=rng.choice(["fylde-coast"] * 5 + ["cheshire-east"]),
            status=rng.choice(["active"] * 8 + ["paused", "left"]),
            sms_opted_out_at=datetime(2029, 1, 1, tzinfo=timezone.utc) if rng.random() < 0.1 else None,
            skills=rng.sample(SKILLS, rng.randint(1, 3)), languages=rng.choice([["en"], ["en", "ur"], ["pl"]]),
            gender=rng.choice(["female", "male", None]), max_distance_km=rng.choice([2.0, 5.0, 10.0, 25.0]),
            availability=[] if rng.random() < 0.4 else rng.sample(slots, rng.randint(1, 8)),
            weekly_cap=rng.randint(1, 4), checks=checks, time_away=away))
    return roster


def random_requests(rng: random.Random, count: int, today: date = TODAY) -> list[MatchRequest]:
    """One-off and weekly requests of every kind, some for someone helped before, a language or a gender."""
    requests = []
    for n in range(count):
        start = datetime.combine(today + timedelta(days=rng.randint(1, 12)), time(rng.choice([9, 14, 19])),
                                 tzinfo=timezone.utc)
        weekly = n % 3 == 0
        requests.append(request_at(
            BLACKPOOL[0] + rng.gauss(0, 0.05), BLACKPOOL[1] + rng.gauss(0, 0.08),
            support_type=sorted(KINDS)[n % len(KINDS)], person_ref=rng.choice(["", "p1", "p2"]),
            volunteer_gender=rng.choice([None, None, "female"]), volunteer_language=rng.choice([None, None, "ur", "xx"]),
            window_start=None if weekly else start, window_end=None if weekly else start + timedelta(hours=2),
            window_days=rng.sample(DAYS, rng.randint(1, 4)) if weekly else None,
            window_part=rng.choice(PARTS_OF_DAY) if weekly else None))
    return requests


def reference(roster: list[Profile], request: MatchRequest, slots, policy: Policy, everyone: bool):
    """What domain.judge_profiles says of the request's community (within its radius unless `everyone`)."""
    found = [(p, distance_km(request.latitude, request.longitude, p.latitude, p.longitude)) for p in roster
             if p.community == request.community]
    return judge_profiles([(p, d) for p, d in found if everyone or d <= policy.request_radius_km], request, slots,
                          policy)


@pytest.mark.parametrize("rebuild_at", [10_000, 5])
def test_the_arrays_judge_every_profile_rule_as_the_domain_does_before_and_after_changes(rebuild_at):
    rng, policy = random.Random(9), Policy()
    roster = random_roster(rng, 400)
    index = loaded(roster, rebuild_at)
    for round_ in range(3):
        for request in random_requests(rng, 40):
            slots = task_slots(request, LONDON_ZONE, TODAY)
            for everyone in (False, True):
                found, excluded = index.search(request, slots, policy, everyone)
                assert (found[:], excluded) == reference(roster, request, slots, policy, everyone), (round_, request)
                assert [found[n] for n in range(len(found))] == sorted(found[:], key=lambda s: s.distance_km)
        # Some volunteers change (pause, move, new checks...), some are new; the index takes them at the next mark.
        changed = random_roster(rng, 30, first=0) + random_roster(rng, 20, first=1000 + round_ * 100)
        changed = [changed[n] for n in rng.sample(range(30), 15)] + changed[30:]
        by_id = {p.id: p for p in roster} | {p.id: p for p in changed}
        roster = list(by_id.values())
        index.take(changed, mark=round_ + 2)
        assert index.size == len(roster) and index.mark == round_ + 2
    assert sum(len(index.search(r, task_slots(r, LONDON_ZONE, TODAY), policy, True)[0][:])
               for r in random_requests(rng, 20)) > 20  # some were suited


def test_volunteers_the_caller_has_changed_are_judged_as_it_has_them_not_as_the_index_holds_them():
    index = loaded([profile(1, *BLACKPOOL), profile(2, *BLACKPOOL)])
    request = request_at(*BLACKPOOL)
    slots = task_slots(request, LONDON_ZONE, TODAY)
    paused = profile(1, *BLACKPOOL, status="paused")
    found, excluded = index.search(request, slots, Policy(), own=[paused])
    assert [s.name for s in found[:]] == ["V0002"] and excluded == {"status": 1}
    assert [s.name for s in index.search(request, slots, Policy())[0][:]] == ["V0001", "V0002"]


def test_a_language_the_arrays_have_no_bit_for_is_still_judged():
    roster = [profile(n, *BLACKPOOL, languages=[f"{chr(97 + n // 26)}{chr(97 + n % 26)}"]) for n in range(70)]
    index = loaded(roster)
    assert index.size == 70 and len(index.recent) == 6  # past 64 languages, kept as profiles
    for n in (0, 69):
        request = request_at(*BLACKPOOL, volunteer_language=roster[n].languages[0])
        found, excluded = index.search(request, task_slots(request, LONDON_ZONE, TODAY), Policy())
        assert [s.name for s in found[:]] == [roster[n].name] and excluded == {"language": 69}


def random_rules(rng: random.Random, own: list[str]) -> CheckRules:
    """A community's rules with its own checks (`own`, some never held by anyone) and a random set per kind."""
    keys = list(CHECKS) + own
    types = [CheckType(community="fylde-coast", key=key, name=key.title(), lasts_months=12) for key in own]
    if rng.random() < 0.3:
        types.append(CheckType(community="fylde-coast", key="driving", name="Driving", retired=True))
    requirements = [KindRequirement(community="fylde-coast", kind=kind, checks=rng.sample(keys, rng.randint(0, 3)))
                    for kind in KINDS if rng.random() < 0.7]
    return CheckRules.of("fylde-coast", types=types, requirements=requirements)


@pytest.mark.parametrize("rebuild_at", [10_000, 5])
def test_the_arrays_judge_a_communitys_own_checks_as_the_domain_does_as_its_rules_change(rebuild_at):
    rng, policy = random.Random(16), Policy()
    own = ["cultural_safety", "manual_handling", "never_held"]

    def with_own_checks(roster: list[Profile]) -> list[Profile]:
        for p in roster:
            p.checks += [Check(key, TODAY - timedelta(days=rng.randint(0, 400)),
                               rng.choice([None, TODAY + timedelta(days=rng.randint(-5, 30))]))
                         for key in own[:2] if rng.random() < 0.6]
        return roster

    roster = with_own_checks(random_roster(rng, 300))
    index = loaded(roster, rebuild_at)
    for round_ in range(3):
        rules = random_rules(rng, own)
        for request in random_requests(rng, 30):
            slots = task_slots(request, LONDON_ZONE, TODAY)
            for everyone in (False, True):
                found, excluded = index.search(request, slots, policy, everyone, rules=rules)
                expected = judge_profiles(
                    [(p, d) for p, d in ((p, distance_km(request.latitude, request.longitude, p.latitude,
                                                         p.longitude)) for p in roster if p.community == "fylde-coast")
                     if everyone or d <= policy.request_radius_km], request, slots, policy, rules)
                assert (found[:], excluded) == expected, (round_, request, rules.needed(request.support_type))
        changed = with_own_checks(random_roster(rng, 20, first=2000 + round_ * 100))
        roster += changed
        index.take(changed, mark=round_ + 2)
    held_nowhere = CheckRules.of("fylde-coast", types=[CheckType(community="fylde-coast", key="never_held",
                                                                 name="Never held")],
                                 requirements=[KindRequirement(community="fylde-coast", kind="shopping",
                                                               checks=["never_held"])])
    request = request_at(*BLACKPOOL)
    found, excluded = index.search(request, task_slots(request, LONDON_ZONE, TODAY), policy, True, rules=held_nowhere)
    assert len(found) == 0 and excluded["check:never_held"] > 0
