"""How matching's candidate search scales: 10k, 100k and 1M volunteers, on SQLite and on PostgreSQL.

Run it with `make bench` (sizes from BENCH_SIZES, e.g. `BENCH_SIZES=10k,100k`). For each size and backend it
builds a database at the newest migration, loads synthetic volunteers with skills, checks, time away and a history
of offers, and times, over the same random requests:

- index: the grid query alone (the places of the volunteers in the cells the circle touches);
- nearby(): services.matching.adapters.VolunteerRepository.nearby, as matching calls it (whole volunteers, with
  their checks);
- numpy: a brute-force scan of every volunteer's place in memory (community, status, exact distance);
- assess(): services.matching.service_layer.candidates_for, the whole eligibility and ranking step of an offer;
- prefiltered: nearby() with adapters.prefilter, which has the database rule out those without the skill, checks,
  SMS, language or gender asked for, so fewer volunteers are loaded.

Volunteers are spread the way programmes are: each community is a town's programme of about
VOLUNTEERS_PER_COMMUNITY volunteers living within a few kilometres of one of a few UK and Ontario towns, so a
million volunteers are a thousand programmes, and a request has a few hundred volunteers within reach. Every
request's candidates from nearby() are checked against the scan's.
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import date, datetime, time as clock, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
import sqlalchemy as sa
from psycopg.types.json import Json

from services.matching import adapters, service_layer
from services.matching.adapters import MatchingUnitOfWork, VolunteerRepository, grid_cell, near_query, outbox
from services.matching.domain import EARTH_RADIUS_KM, MatchRequest, Policy, Volunteer, distance_km, task_slots
from shared.communities import get as community
from shared.taxonomy import DAYS, PARTS_OF_DAY
from shared.db import make_engine, make_sessions, upgrade
from shared.clock import utcnow
from shared.taxonomy import CHECKS, KINDS, SKILLS

PG_ADMIN = os.environ.get("BENCH_PG", os.environ.get("CCS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
VOLUNTEERS_PER_COMMUNITY = 1_000
SPREAD_KM = 8.0  # how far volunteers live from their town's centre (one standard deviation, each way)
QUERIES, LOADING = 300, 100  # requests timed; of those, how many for nearby() and assess(), which load more
TOWNS = [  # (country, time zone, latitude, longitude)
    ("GB", "Europe/London", 53.8142, -3.0503),  # Blackpool
    ("GB", "Europe/London", 53.7632, -2.7031),  # Preston
    ("GB", "Europe/London", 54.0466, -2.8007),  # Lancaster
    ("GB", "Europe/London", 54.3280, -2.7463),  # Kendal
    ("GB", "Europe/London", 53.0979, -2.4410),  # Crewe
    ("GB", "Europe/London", 53.2587, -2.1270),  # Macclesfield
    ("CA", "America/Toronto", 45.3088, -75.8987),  # Kanata
    ("CA", "America/Toronto", 45.3876, -75.6960),  # Ottawa
    ("CA", "America/Toronto", 44.2312, -76.4860),  # Kingston
    ("CA", "America/Toronto", 43.2557, -79.8711),  # Hamilton
]
SKILL_SHARE = {"practical": 0.6, "companionship": 0.5, "driving": 0.25, "cooking": 0.2, "respite": 0.15,
               "bereavement": 0.15, "future_planning": 0.1}
CHECK_FOR_SKILL = {"driving": "driving", "bereavement": "bereavement_training",
                   "future_planning": "future_planning_training"}


def sizes_wanted() -> list[int]:
    """BENCH_SIZES (e.g. `10k,100k,1M` or `50000`), else all three."""
    names = os.environ.get("BENCH_SIZES", "10k,100k,1M").lower().replace(" ", "").split(",")
    return [SIZES[name] if name in SIZES else int(name) for name in names if name]


class World:
    """The synthetic volunteers of one size, as columns (numpy) and as rows for the database."""

    def __init__(self, size: int, seed: int = 7):
        rng = np.random.default_rng(seed)
        self.size, self.today = size, date.today()
        communities = max(1, size // VOLUNTEERS_PER_COMMUNITY)
        town = rng.integers(0, len(TOWNS), communities)
        # Each programme is a town or a place near one: up to ~25 km from the town itself.
        self.centres = np.array([(TOWNS[t][2], TOWNS[t][3]) for t in town]) + rng.normal(0, 0.1, (communities, 2))
        self.slugs = [f"bench-{n:04d}" for n in range(communities)]
        self.zones = [TOWNS[t][1] for t in town]
        self.community = rng.integers(0, communities, size)
        self.latitude, self.longitude = self.around(rng, self.centres[self.community], SPREAD_KM)
        self.status = rng.choice(np.array(["active", "paused", "left"]), size, p=[0.9, 0.07, 0.03])
        self.seed = seed + 1

    @staticmethod
    def around(rng, centres: np.ndarray, spread_km: float) -> tuple[np.ndarray, np.ndarray]:
        """Places scattered round centres (latitude, longitude), `spread_km` apart on average each way."""
        dlat = rng.normal(0, spread_km, len(centres)) / 111.195
        dlon = rng.normal(0, spread_km, len(centres)) / (111.195 * np.cos(np.radians(centres[:, 0])))
        return centres[:, 0] + dlat, centres[:, 1] + dlon

    def communities_file(self, folder: Path) -> Path:
        """A communities file naming every synthetic programme."""
        path = folder / f"communities-{self.size}.json"  # a new name: communities are cached by file name
        path.write_text(json.dumps([{"slug": slug, "name": slug, "country": "GB" if "London" in zone else "CA",
                                     "time_zone": zone, "sms_from": "+447700900100"}
                                    for slug, zone in zip(self.slugs, self.zones)]))
        return path

    def rows(self) -> dict[str, list[dict]]:
        """Every table's rows: volunteers, their checks and time away, and past requests with their offers."""
        rng, now, today = np.random.default_rng(self.seed), utcnow(), self.today  # the same rows each time

        bits = random.Random(self.seed).getrandbits

        def new_id():
            return uuid.UUID(int=bits(128), version=4)

        ids, size = [new_id() for _ in range(self.size)], self.size
        has = {skill: rng.random(size) < share for skill, share in SKILL_SHARE.items()}
        max_km, caps = rng.choice([5.0, 10.0, 15.0, 20.0, 25.0], size), rng.integers(1, 6, size)
        gender, french, opted_out = rng.integers(0, 3, size), rng.random(size) < 0.1, rng.random(size) < 0.02
        slots = np.array([f"{day}:{part}" for day in DAYS for part in PARTS_OF_DAY])
        windows = np.sort(np.argpartition(rng.random((size, len(slots))), 6, axis=1)[:, :6], axis=1)
        any_time, draws = rng.random(size) < 0.5, rng.random((size, len(CHECKS)))
        expiry, away_at = rng.integers(-365, 3 * 365, (size, len(CHECKS))), rng.random(size) < 0.05
        away_from, away_days = rng.integers(-10, 20, size), rng.integers(1, 15, size)
        check_share = {"safeguarding": 0.9, "criminal_record": 0.7}
        volunteers, checks, away = [], [], []
        for n, id_ in enumerate(ids):
            skills = [s for s in SKILLS if has[s][n]] or ["practical"]
            lat, lon = float(self.latitude[n]), float(self.longitude[n])
            volunteers.append({
                "id": id_, "community": self.slugs[self.community[n]], "name": f"Volunteer {n}",
                "phone": f"+4479{n:08d}", "postcode": None, "area": "", "latitude": lat, "longitude": lon,
                "cell": grid_cell(lat, lon), "max_distance_km": float(max_km[n]), "skills": skills,
                "languages": ["en", "fr"] if french[n] else ["en"], "gender": ("female", "male", None)[gender[n]],
                "weekly_cap": int(caps[n]), "availability": [] if any_time[n] else slots[windows[n]].tolist(),
                "status": str(self.status[n]), "sms_opted_out_at": now if opted_out[n] else None,
                "created_at": now})
            wanted = {**check_share, **{CHECK_FOR_SKILL[s]: 0.85 for s in skills if s in CHECK_FOR_SKILL}}
            for c, check in enumerate(CHECKS):
                if draws[n, c] < wanted.get(check, 0):
                    expires = today + timedelta(days=int(expiry[n, c]))
                    checks.append({"id": new_id(), "volunteer_id": id_, "check": check,
                                   "done_on": expires - timedelta(days=3 * 365), "expires_on": expires,
                                   "reminded_for": None})
            if away_at[n]:
                starts = today + timedelta(days=int(away_from[n]))
                away.append({"id": new_id(), "volunteer_id": id_, "starts_on": starts,
                             "ends_on": starts + timedelta(days=int(away_days[n]))})
        order = np.argsort(self.community, kind="stable")
        members_of = np.split(order, np.cumsum(np.bincount(self.community, minlength=len(self.slugs)))[:-1])
        requests, offers = [], []
        for _ in range(self.size // 20):  # a history: each past request offered to five volunteers nearby
            community = int(rng.integers(0, len(self.slugs)))
            members = members_of[community]
            if len(members) < 5:
                continue
            request_id, when = new_id(), now - timedelta(days=int(rng.integers(1, 60)))
            requests.append(self.past_request(request_id, community, when, rng))
            for m, member in enumerate(rng.choice(members, 5, replace=False)):
                offers.append({"id": new_id(), "request_id": request_id, "volunteer_id": ids[member],
                               "code": f"{1000 + m}", "status": "completed" if m == 0 else "withdrawn",
                               "round": 1, "occurrence": 1, "distance_km": 3.0, "created_at": when,
                               "sent_at": when, "expires_at": when + timedelta(minutes=30), "answered_at": when,
                               "completed_at": when if m == 0 else None, "hours": 2.0 if m == 0 else None})
        return {"volunteers": volunteers, "volunteer_checks": checks, "time_away": away,
                "match_requests": requests, "offers": offers}

    def past_request(self, request_id, community: int, when: datetime, rng) -> dict:
        """A request matched and done some days ago."""
        lat, lon = self.centres[community]
        return {"request_id": request_id, "community": self.slugs[community], "support_type": "shopping",
                "latitude": float(lat), "longitude": float(lon), "area": "", "urgency": "routine",
                "window_start": when, "window_end": when + timedelta(hours=2), "window_days": None,
                "window_part": None, "volunteer_language": None, "volunteer_gender": None,
                "person_ref": f"p{int(rng.integers(0, 10 ** 6))}", "status": "completed",
                "repeat_every_weeks": None, "repeat_occurrences": 1, "occurrence": 1, "round": 1,
                "given_back": False, "unmatched_reason": None, "correlation_id": str(request_id)}

    def requests(self, count: int, seed: int = 11) -> list[MatchRequest]:
        """Requests for help at random places in random programmes, tomorrow afternoon (not stored)."""
        rng = np.random.default_rng(seed)
        community = rng.integers(0, len(self.slugs), count)
        lat, lon = self.around(rng, self.centres[community], SPREAD_KM / 2)
        start = datetime.combine(self.today + timedelta(days=1), clock(14), tzinfo=timezone.utc)
        kinds = sorted(KINDS)
        return [MatchRequest(request_id=uuid.uuid4(), community=self.slugs[c], support_type=kinds[n % len(kinds)],
                             latitude=float(lat[n]), longitude=float(lon[n]), area="", urgency="routine",
                             window_start=start, window_end=start + timedelta(hours=2), person_ref="",
                             volunteer_language=None, volunteer_gender=None, offers=[])
                for n, c in enumerate(community)]

    def scan(self, request: MatchRequest, radius_km: float) -> int:
        """How many of the request's community's active volunteers are within reach, looking at every one."""
        chosen = (self.community == self.slugs.index(request.community)) & (self.status == "active")
        lat, lon = np.radians(self.latitude[chosen]), np.radians(self.longitude[chosen])
        lat0, lon0 = np.radians(request.latitude), np.radians(request.longitude)
        a = np.sin((lat - lat0) / 2) ** 2 + np.cos(lat0) * np.cos(lat) * np.sin((lon - lon0) / 2) ** 2
        return int(np.count_nonzero(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a)) <= radius_km))


TABLES = {table.name: table for table in (adapters.volunteers, adapters.volunteer_checks, adapters.time_away,
                                          adapters.match_requests, adapters.offers)}


def load(engine: sa.Engine, rows: dict[str, list[dict]]) -> None:
    """Bulk-load the rows: COPY on PostgreSQL, batched executemany on SQLite; then gather planner statistics."""
    with engine.begin() as connection:
        for name, table in TABLES.items():
            chunk = 50_000
            if not rows[name]:
                continue
            if connection.dialect.name == "postgresql":
                columns = list(rows[name][0])
                json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
                cursor = connection.connection.driver_connection.cursor()
                quoted = ", ".join(f'"{c}"' for c in columns)
                with cursor.copy(f"COPY {name} ({quoted}) FROM STDIN") as copy:
                    for row in rows[name]:
                        copy.write_row([Json(row[c]) if c in json_columns and row[c] is not None else row[c]
                                        for c in columns])
            else:
                for start in range(0, len(rows[name]), chunk):
                    connection.execute(table.insert(), rows[name][start:start + chunk])
        connection.execute(sa.text("ANALYZE"))


def percentiles(seconds: list[float]) -> str:
    """'p50 / p99' in milliseconds."""
    ms = np.array(seconds) * 1000
    return f"{np.percentile(ms, 50):7.2f} / {np.percentile(ms, 99):7.2f}"


def timed(action, items) -> tuple[list[float], list]:
    """How long `action` took on each item, and what it gave back."""
    times, results = [], []
    for item in items:
        started = time.perf_counter()
        results.append(action(item))
        times.append(time.perf_counter() - started)
    return times, results


def measure(world: World, rows: dict[str, list[dict]], url: str) -> dict:
    """Load the rows into a fresh database at `url` and time the search five ways."""
    upgrade("matching", url)
    engine = make_engine(url)
    started = time.perf_counter()
    load(engine, rows)
    loaded = time.perf_counter() - started
    sessions, policy, radius = make_sessions(engine), Policy(), Policy().request_radius_km
    requests = world.requests(QUERIES)
    now = utcnow()

    def index_only(request):
        query, parameters = near_query(request.community, request.latitude, request.longitude, radius)
        with sessions() as session:
            return session.execute(query.with_only_columns(Volunteer.latitude, Volunteer.longitude), parameters).all()

    def found(request):
        with sessions() as session:
            return len(VolunteerRepository(session).nearby(request.community, request.latitude, request.longitude,
                                                           radius))

    def pushed(request):
        days = [day for day, _ in task_slots(request, community(request.community).zone, now.date())]
        with sessions() as session:
            return len(VolunteerRepository(session).nearby(request.community, request.latitude, request.longitude,
                                                           radius, suited_to=request, days=days))

    def assessed(request):
        with MatchingUnitOfWork(sessions, outbox) as uow:
            return len(service_layer.candidates_for(uow, request, policy, now)[0])

    for request in requests[:10]:  # warm the caches and the statement cache
        index_only(request), found(request), pushed(request), assessed(request)
    gc.collect()
    gc.freeze()  # the load's garbage is gone; do not time collections of the objects still held
    index_times, places = timed(index_only, requests)
    scan_times, scanned = timed(lambda r: world.scan(r, radius), requests)
    within = [sum(distance_km(r.latitude, r.longitude, lat, lon) <= radius for lat, lon in rows)
              for r, rows in zip(requests, places)]
    if within != scanned:
        raise AssertionError("the grid search and the scan disagree about who is within reach")
    pushed_times, prefiltered = timed(pushed, requests)
    nearby_times, counts = timed(found, requests[:LOADING])
    if counts != scanned[:LOADING]:
        raise AssertionError("nearby() and the scan disagree about who is within reach")
    assess_times, eligible = timed(assessed, requests[:LOADING])
    gc.unfreeze()
    engine.dispose()
    return {"load_s": loaded, "index": percentiles(index_times), "nearby": percentiles(nearby_times),
            "numpy": percentiles(scan_times), "assess": percentiles(assess_times),
            "pushed": percentiles(pushed_times), "loaded": statistics.mean(prefiltered),
            "found": statistics.mean(scanned), "eligible": statistics.mean(eligible)}


def postgres_database():
    """A database of the bench's own on the local PostgreSQL, and how to drop it; None if it is not running."""
    name = f"ccs_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        return None, None

    def drop():
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return "postgresql+psycopg://" + PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    """Print the table, one line per size and backend, as each finishes."""
    header = (f"{'volunteers':>10} {'backend':<10} {'load s':>6} {'in reach':>8} {'index ms':>17} "
              f"{'numpy ms':>17} {'nearby() ms':>17} {'assess() ms':>17} {'eligible':>8} "
              f"{'prefiltered ms':>17} {'loaded':>6}")
    print(f"{QUERIES} requests per line (the first {LOADING} for nearby() and assess()), "
          f"radius {Policy().request_radius_km:g} km, about {VOLUNTEERS_PER_COMMUNITY} volunteers per community")
    print("times are p50 / p99; in reach: active volunteers of the request's community within the radius;\n"
          "prefiltered: nearby() with adapters.prefilter (skill, checks, SMS, language, gender judged in the query)")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="ccs-bench-") as folder:
        for size in sizes_wanted():
            world = World(size)
            rows = world.rows()  # made once, loaded into each backend
            os.environ["CCS_COMMUNITIES_FILE"] = str(world.communities_file(Path(folder)))
            for backend in ("sqlite", "postgresql"):
                url, drop = (f"sqlite:///{folder}/matching-{size}.sqlite3", None) if backend == "sqlite" \
                    else postgres_database()
                if url is None:
                    print(f"{size:>10} {backend:<10} not running at {PG_ADMIN.rsplit('@', 1)[-1]}")
                    continue
                try:
                    r = measure(world, rows, url)
                finally:
                    if drop:
                        drop()
                print(f"{size:>10} {backend:<10} {r['load_s']:>6.1f} {r['found']:>8.0f} {r['index']:>17} "
                      f"{r['numpy']:>17} {r['nearby']:>17} {r['assess']:>17} {r['eligible']:>8.1f} "
                      f"{r['pushed']:>17} {r['loaded']:>6.1f}", flush=True)

if __name__ == "__main__":
    main()
