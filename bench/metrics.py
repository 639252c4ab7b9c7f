"""How long a manager waits for the counts: metrics' `GET /activity` (a year of days, weeks and months) and the
dashboard, over a year of one busy community's facts, on SQLite and on PostgreSQL (when one answers on
127.0.0.1:5432, or at CCS_BENCH_PG).

It builds a metrics database at the newest migration, loads METRICS_REQUESTS synthetic requests spread over the
year (each submitted, offered, accepted, matched and completed, a few unmatched), volunteers' registrations and
status changes, and weekly group activities, then times each view through the service layer, as the API calls
it, and counts the SQL statements each one sends. Run with `make bench`.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import sqlalchemy as sa

from services.metrics import service_layer
from services.metrics.adapters import MetricsUnitOfWork
from services.metrics.domain import Activity, Fact, Filters
from shared.auth import Actor
from shared.db import make_engine, make_sessions, upgrade

REQUESTS = int(os.environ.get("METRICS_REQUESTS", "20000"))
COMMUNITY = "fylde-coast"
MANAGER = Actor(subject="bench", role="manager", communities=(COMMUNITY,))
TODAY = date(2026, 11, 30)
SETTINGS = type("Settings", (), {"suppress_below": 5})()
VIEWS = {  # what a manager asks for, as the API and the dashboard do
    "GET /activity?period=day (a year)": lambda uow: service_layer.activity(
        uow, MANAGER, "day", Filters(), SETTINGS, TODAY),
    "GET /activity?period=week (a year)": lambda uow: service_layer.activity(
        uow, MANAGER, "week", Filters(), SETTINGS, TODAY),
    "GET /activity?period=month (a year)": lambda uow: service_layer.activity(
        uow, MANAGER, "month", Filters(), SETTINGS, TODAY),
    "/dashboard?period=week": lambda uow: service_layer.dashboard(
        uow, MANAGER, "week", Filters(), SETTINGS, TODAY),
}


def facts(rng: random.Random) -> list:
    """A year of one community's facts and activities."""
    rows: list = []
    volunteers = [uuid.uuid4() for _ in range(400)]
    start = TODAY - timedelta(days=400)
    for volunteer in volunteers:
        day = start + timedelta(days=rng.randrange(400))
        rows.append(_fact("volunteer.registered", day, volunteer_id=volunteer, status="active"))
        if rng.random() < 0.1:
            rows.append(_fact("volunteer.status_changed", day + timedelta(days=30), volunteer_id=volunteer,
                              status="paused"))
    for _ in range(REQUESTS):
        day = start + timedelta(days=rng.randrange(400))
        request = uuid.uuid4()
        kind = rng.choice(["shopping", "prescription_collection", "transport", "home_visit", "bereavement_visit"])
        rows.append(_fact("request.submitted", day, request_id=request, support_type=kind, source="coordinator",
                          person_ref=f"p_{rng.randrange(REQUESTS // 2):014d}"))
        if rng.random() < 0.08:
            rows.append(_fact("request.unmatched", day, request_id=request, support_type=kind))
            continue
        volunteer = rng.choice(volunteers)
        later = day + timedelta(days=rng.randrange(3))
        rows.append(_fact("offer.accepted", later, request_id=request, volunteer_id=volunteer, support_type=kind))
        rows.append(_fact("request.matched", later, request_id=request, volunteer_id=volunteer, support_type=kind))
        rows.append(_fact("task.completed", later + timedelta(days=1), request_id=request, volunteer_id=volunteer,
                          support_type=kind, hours=rng.choice([1.0, 1.5, 2.0])))
    for week in range(58):
        rows.append(Activity(id=uuid.uuid4(), community=COMMUNITY, kind="death_cafe",
                             held_on=start + timedelta(weeks=week), attendance=rng.randrange(5, 30),
                             created_by="bench", created_at=datetime.now(timezone.utc),
                             volunteer_ids=[str(rng.choice(volunteers))]))
    return rows


def _fact(event_type: str, day: date, **fields) -> Fact:
    return Fact(event_id=uuid.uuid4(), event_type=event_type, community=COMMUNITY, day=day,
                occurred_at=datetime.combine(day, datetime.min.time(), timezone.utc).replace(hour=12), **fields)


def measure(name: str, url: str) -> None:
    upgrade("metrics", url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    with sessions.begin() as session:
        session.add_all(facts(random.Random(7)))
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(1))
    print(f"\n{name}: {REQUESTS:,} requests over a year")
    print(f"{'view':40} {'median ms':>10} {'max ms':>8} {'statements':>11}")
    for view, call in VIEWS.items():
        times = []
        for _ in range(5):
            statements.clear()
            started = time.perf_counter()
            call(MetricsUnitOfWork(sessions))
            times.append((time.perf_counter() - started) * 1000)
        print(f"{view:40} {statistics.median(times):10.1f} {max(times):8.1f} {len(statements):11d}")
    engine.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        measure("SQLite", f"sqlite:///{folder}/metrics.db")
    admin = os.environ.get("CCS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
            database = f"ccs_bench_metrics_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE DATABASE "{database}"')
    except psycopg.Error:
        print("\nPostgreSQL: not reachable, skipped")
        return
    try:
        measure("PostgreSQL", "postgresql+psycopg://" + admin.split("://", 1)[1].rsplit("/", 1)[0] + f"/{database}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
