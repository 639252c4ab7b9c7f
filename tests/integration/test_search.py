"""The grid search finds exactly who a scan of every volunteer would, through its index, on both backends."""

from __future__ import annotations

import math
import random
import uuid
from datetime import date, datetime, time, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from services.matching.adapters import CELL_DEGREES, VolunteerRepository, grid_cell, near_query
from services.matching.domain import (EARTH_RADIUS_KM, Facts, MatchRequest, Policy, Volunteer, VolunteerCheck,
                                      distance_km, exclusion, task_slots)
from shared.communities import get as community
from shared.config import database_url
from shared.db import UtcDateTime, make_engine, make_sessions, migrations_config
from shared.clock import utcnow
from shared.taxonomy import CHECKS, KINDS, SKILLS
from tests.integration.test_bus import SAFEGUARDING

BLACKPOOL = (53.8142, -3.0503)


def nearby(session, *place_and_radius, **suited_to):
    """The volunteers matching's search finds, through its repository."""
    return VolunteerRepository(session).nearby(*place_and_radius, **suited_to)


def volunteer(n: int, latitude: float, longitude: float, community: str = "fylde-coast", status: str = "active"):
    """A volunteer at a place; only where they are matters here."""
    return Volunteer(community=community, name=f"V{n:04d}", phone=f"+4479111{n:05d}", latitude=latitude,
                     longitude=longitude, max_distance_km=10, skills=["practical"], status=status)


def on_a_cell_edge(rng: random.Random) -> tuple[float, float]:
    """A place exactly on a grid line (or corner) near Blackpool."""
    row, col = round(BLACKPOOL[0] / CELL_DEGREES) + rng.randint(-8, 8), round(BLACKPOOL[1] / CELL_DEGREES)
    latitude, longitude = row * CELL_DEGREES, (col + rng.randint(-12, 12)) * CELL_DEGREES
    return (latitude, longitude + rng.uniform(-0.02, 0.02)) if rng.random() < 0.3 else (
        (latitude + rng.uniform(-0.02, 0.02), longitude) if rng.random() < 0.5 else (latitude, longitude))


@pytest.fixture
def sessions(app_for):
    """Matching's sessions, on the test's backend at the newest schema."""
    return app_for("matching").extensions["ccs"].sessions


def test_the_grid_search_finds_exactly_who_a_scan_would_at_random_places_edges_and_every_radius(sessions):
    rng = random.Random(4)
    places = [(BLACKPOOL[0] + rng.gauss(0, 0.12), BLACKPOOL[1] + rng.gauss(0, 0.2)) for _ in range(300)]
    places += [on_a_cell_edge(rng) for _ in range(150)]
    with sessions.begin() as session:
        for n, (latitude, longitude) in enumerate(places):
            status = "paused" if n % 17 == 0 else "active"
            session.add(volunteer(n, latitude, longitude, "cheshire-east" if n % 23 == 0 else "fylde-coast", status))
    with sessions() as session:
        everyone = session.scalars(sa.select(Volunteer)).all()
        assert all(v.cell == grid_cell(v.latitude, v.longitude) for v in everyone)
        centres = [(BLACKPOOL[0] + rng.gauss(0, 0.1), BLACKPOOL[1] + rng.gauss(0, 0.15)) for _ in range(25)]
        centres += [on_a_cell_edge(rng) for _ in range(15)] + places[::40]  # on grid lines, and on a volunteer
        checked = 0
        for latitude, longitude in centres:
            for radius in (0.3, 2.0, 4.45, 9.0, 15.0, 40.0):  # inside a cell, about a cell, many cells
                found = nearby(session, "fylde-coast", latitude, longitude, radius)
                scan = {v.id for v in everyone if v.community == "fylde-coast" and v.status == "active"
                        and distance_km(latitude, longitude, v.latitude, v.longitude) <= radius}
                assert {v.id for v, _ in found} == scan, (latitude, longitude, radius)
                assert [d for _, d in found] == sorted(d for _, d in found)
                checked += len(scan)
        assert checked > 5000  # the comparison was not between empty sets


def test_a_volunteer_found_at_the_edge_of_the_radius_and_not_beyond_it(sessions):
    east = BLACKPOOL[1] + 15.0 / (111.195 * 0.5902)  # about 15 km east at Blackpool's latitude
    radius = distance_km(*BLACKPOOL, BLACKPOOL[0], east)
    north = BLACKPOOL[0] + math.degrees(radius / EARTH_RADIUS_KM) + 1e-7  # a centimetre further, to the north
    with sessions.begin() as session:
        session.add_all([volunteer(1, BLACKPOOL[0], east), volunteer(2, north, BLACKPOOL[1])])
    with sessions() as session:
        assert [v.name for v, _ in nearby(session, "fylde-coast", *BLACKPOOL, radius)] == ["V0001"]
        assert nearby(session, "fylde-coast", *BLACKPOOL, radius - 1e-6) == []
        assert [v.name for v, _ in nearby(session, "fylde-coast", *BLACKPOOL, radius + 1e-4)] == ["V0001", "V0002"]


def test_a_volunteer_who_moves_is_found_where_they_now_live_and_not_where_they_were(app_for, token):
    app = app_for("matching")
    client, sessions = app.test_client(), app.extensions["ccs"].sessions
    made = client.post("/volunteers", headers=token("coordinator"), json={
        "name": "Sam Patel", "phone": "07911 123456", "skills": ["practical"], "checks": SAFEGUARDING,
        "postcode": "FY1", "max_distance_km": 10}).json
    kendal = (54.3280, -2.7463)
    with sessions() as session:
        assert [v.name for v, _ in nearby(session, "fylde-coast", *BLACKPOOL, 5)] == ["Sam Patel"]
    moved = client.patch(f"/volunteers/{made['id']}", headers=token("coordinator"),
                         json={"latitude": kendal[0], "longitude": kendal[1]})
    assert moved.status_code == 200, moved.json
    with sessions() as session:
        assert nearby(session, "fylde-coast", *BLACKPOOL, 5) == []
        assert [v.name for v, _ in nearby(session, "fylde-coast", *kendal, 5)] == ["Sam Patel"]
        assert session.get(Volunteer, uuid.UUID(made["id"])).cell == grid_cell(*kendal)
    client.patch(f"/volunteers/{made['id']}", headers=token("coordinator"), json={"postcode": "FY1"})
    with sessions() as session:
        assert [v.name for v, _ in nearby(session, "fylde-coast", *BLACKPOOL, 5)] == ["Sam Patel"]
        assert nearby(session, "fylde-coast", *kendal, 5) == []


def test_the_search_reads_the_cell_index_not_the_whole_table(sessions, backend):
    with sessions.begin() as session:
        session.add_all([volunteer(n, BLACKPOOL[0] + n * 0.001, BLACKPOOL[1]) for n in range(50)])
    query, parameters = near_query("fylde-coast", *BLACKPOOL, 15.0)
    with sessions() as session:
        compiled = query.params(parameters).compile(session.bind, compile_kwargs={"literal_binds": True})
        if backend.is_real:
            session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(session.scalars(sa.text(f"EXPLAIN {compiled}")))
            assert "ix_volunteers_cell" in plan and "Seq Scan" not in plan, plan
        else:
            plan = "\n".join(row[-1] for row in session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")))
            assert "USING INDEX ix_volunteers_cell (community=? AND status=? AND cell>? AND cell<?)" in plan, plan
            assert "SCAN volunteers" not in plan, plan


def test_what_the_database_rules_out_first_changes_nobody_the_rules_would_ask(sessions):
    rng, today, policy = random.Random(9), date.today(), Policy()
    with sessions.begin() as session:
        for n in range(300):
            v = volunteer(n, BLACKPOOL[0] + rng.gauss(0, 0.08), BLACKPOOL[1] + rng.gauss(0, 0.12))
            v.skills = rng.sample(SKILLS, rng.randint(1, 3))
            v.languages, v.gender = rng.choice([["en"], ["en", "ur"], ["pl"]]), rng.choice(["female", "male", None])
            v.sms_opted_out_at = utcnow() if rng.random() < 0.1 else None
            v.checks = [VolunteerCheck(check=check, done_on=today + timedelta(days=rng.randint(-900, 3)),
                                       expires_on=rng.choice([None, today + timedelta(days=rng.randint(-5, 30))]))
                        for check in CHECKS if rng.random() < 0.7]
            session.add(v)
    with sessions() as session:
        asked = pruned = 0
        for n in range(60):
            start = datetime.combine(today + timedelta(days=rng.randint(0, 20)), time(14), tzinfo=timezone.utc)
            request = MatchRequest(support_type=sorted(KINDS)[n % len(KINDS)], volunteer_gender=rng.choice(
                [None, "female"]), volunteer_language=rng.choice([None, "ur"]), window_start=None if n % 3 else start,
                window_end=None if n % 3 else start + timedelta(hours=2), window_days=["mon", "thu"] if n % 3 else None,
                window_part="morning" if n % 3 else None)
            slots = task_slots(request, community("fylde-coast").zone, today)

            def eligible(found):
                return [v.id for v, d in found if exclusion(v, request, Facts(distance_km=d), slots, policy) is None]

            everyone = nearby(session, "fylde-coast", *BLACKPOOL, 15.0)
            first = nearby(session, "fylde-coast", *BLACKPOOL, 15.0, suited_to=request, days=[d for d, _ in slots])
            assert eligible(first) == eligible(everyone)
            asked, pruned = asked + len(eligible(first)), pruned + len(everyone) - len(first)
        assert asked > 50 and pruned > 5000  # some could be asked, and the database ruled many out


def test_the_migration_gives_volunteers_already_registered_their_cells(backend):
    url = database_url("matching")
    config = migrations_config("matching", url)
    command.upgrade(config, "0005")
    engine = make_engine(url)
    old = sa.table("volunteers", *(sa.column(name) for name in (
        "community", "name", "phone", "latitude", "longitude", "max_distance_km")), sa.column("id", sa.Uuid),
        sa.column("skills", sa.JSON), sa.column("created_at", UtcDateTime))
    places = {uuid.uuid4(): (53.8142, -3.0503), uuid.uuid4(): (45.3, -75.9), uuid.uuid4(): (-33.9, 151.2)}
    with engine.begin() as connection:
        connection.execute(old.insert(), [
            {"id": id_, "community": "fylde-coast", "name": "V", "phone": f"+4479111{n:05d}", "latitude": lat,
             "longitude": lon, "max_distance_km": 10, "skills": ["practical"],
             "created_at": utcnow()}
            for n, (id_, (lat, lon)) in enumerate(places.items())])
    command.upgrade(config, "head")
    with make_sessions(engine)() as session:
        cells = {v.id: v.cell for v in session.scalars(sa.select(Volunteer))}
    engine.dispose()
    assert cells == {id_: grid_cell(*place) for id_, place in places.items()}
