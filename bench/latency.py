"""Request → offer SMS: how long from a coordinator's `POST /requests` until the first offer's SMS is handed to the
gateway, through the real services as `ccs run` starts them (intake's web API → intake's outbox relay → matching →
notify → the development SMS gateway), at a steady rate, on PostgreSQL + RabbitMQ (when both answer on 127.0.0.1)
and on the embedded default (SQLite + the filesystem bus).

The clock starts when the POST is sent and stops at the time the development gateway wrote for the SMS in
var/sms/sent.jsonl (the moment notify handed it over); the SMS is tied to its request through notify's record of
it (the provider's id it got back, and the request's correlation id). Requests are sent on a fixed schedule from
a few threads (an open loop: a slow answer does not slow the schedule). Run with `python -m bench.latency`;
LATENCY_RATE (requests per second), LATENCY_SECONDS and LATENCY_BACKENDS ("postgres+rabbitmq,embedded") choose
another run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import psycopg
import requests
import sqlalchemy as sa

from shared import config
from shared.config import SERVICES
from shared.demo import five_free_ports, until
from shared.supervisor import System
from shared.web import issue_token

RATE = float(os.environ.get("LATENCY_RATE", "20"))
SECONDS = float(os.environ.get("LATENCY_SECONDS", "15"))
BACKENDS = os.environ.get("LATENCY_BACKENDS", "postgres+rabbitmq,embedded").split(",")
PG_ADMIN = os.environ.get("CCS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBIT = "127.0.0.1:5672"
VOLUNTEERS = 12  # in reach of every request; a batch of three offers each
GOALS = {"postgres+rabbitmq": {"p50": 30.0, "p99": 100.0}, "embedded": {"p99": 250.0}}
TOMORROW = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
REQUEST = {"person": {"name": "Pat Example", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
                      "postcode": "FY1 4AB"},
           "support_type": "shopping",
           "when": {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(hours=2)).isoformat()},
           "consent": {"share_contact": True, "sms_contact": True}}


def postgres_and_rabbitmq() -> dict[str, str] | None:
    """Four fresh databases and a fresh vhost, as the environment that points the services at them; None when
    PostgreSQL or RabbitMQ does not answer."""
    run = uuid.uuid4().hex[:8]
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            for name in SERVICES:
                conn.execute(f'CREATE DATABASE "ccs_latency_{run}_{name}"')
        vhost = f"ccs-latency-{run}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True)
    except (psycopg.Error, OSError, subprocess.CalledProcessError) as err:
        print(f"PostgreSQL + RabbitMQ skipped: {type(err).__name__}")
        return None
    base = PG_ADMIN.rsplit("/", 1)[0]
    return {**{f"{name.upper()}_DATABASE_URL": f"{base}/ccs_latency_{run}_{name}" for name in SERVICES},
            "BROKER_URL": f"amqp://guest:guest@{RABBIT}/{vhost}"}


def drop(env: dict[str, str]) -> None:
    """Remove what `postgres_and_rabbitmq` made."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in SERVICES:
            conn.execute(f'DROP DATABASE IF EXISTS "{env[f"{name.upper()}_DATABASE_URL"].rsplit("/", 1)[1]}" '
                         "WITH (FORCE)")
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", env["BROKER_URL"].rsplit("/", 1)[1]], capture_output=True)


def database(system: System, service: str) -> sa.Engine:
    """A service's own database, read here to follow each request through it."""
    url = system.env.get(f"{service.upper()}_DATABASE_URL")
    return sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1] if url
                            else f"sqlite:///{system.var_dir / f'{service}.sqlite3'}")


def rows(system: System, service: str, query: str) -> list:
    """What `query` finds in a service's database."""
    engine = database(system, service)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).all()
    finally:
        engine.dispose()


def stamp(value) -> float:
    """A time read from a database (aware, naive UTC or ISO text) in seconds since the epoch."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def outbox_times(system: System, service: str, event_type: str) -> dict[str, tuple[float, float]]:
    """When each request's first `event_type` was written to a service's outbox and when it was published."""
    times: dict[str, tuple[float, float]] = {}
    for body, created, published in rows(system, service, "SELECT body, created_at, published_at FROM outbox "
                                                          f"WHERE event_type = '{event_type}'"):
        body = json.loads(body) if isinstance(body, str) else body
        if published is not None and body["correlation_id"] not in times:
            times[body["correlation_id"]] = (stamp(created), stamp(published))
    return times


def handed_over(system: System) -> dict[str, tuple[float, float]]:
    """Each request's first offer SMS, by request id: when notify queued it, and when it was handed to the
    development gateway."""
    path = system.var_dir / "sms" / "sent.jsonl"
    at_by_sid = {}
    if path.exists():
        for line in path.read_text().splitlines():
            sent = json.loads(line)
            at_by_sid[sent["sid"]] = datetime.fromisoformat(sent["at"]).timestamp()
    first: dict[str, tuple[float, float]] = {}
    for request_id, sid, queued in rows(system, "notify", "SELECT correlation_id, provider_sid, created_at FROM "
                                                          "outgoing_messages WHERE purpose = 'offer' AND "
                                                          "provider_sid IS NOT NULL"):
        if sid in at_by_sid and at_by_sid[sid] < first.get(request_id, (0, float("inf")))[1]:
            first[request_id] = (stamp(queued), at_by_sid[sid])
    return first


def hops(system: System, started: dict[str, float], sms: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    """Where the time went, hop by hop, in milliseconds, for the requests that got their SMS."""
    submitted = outbox_times(system, "intake", "request.submitted")
    offered = outbox_times(system, "matching", "offer.made")
    taken: dict[str, list[float]] = {name: [] for name in HOPS}
    for request_id, at in started.items():
        if not (request_id in submitted and request_id in offered and request_id in sms):
            continue
        marks = [at, *submitted[request_id], *offered[request_id], *sms[request_id]]
        for name, before, after in zip(HOPS, marks, marks[1:]):
            taken[name].append((after - before) * 1000)
    return taken


HOPS = ("POST → request.submitted committed", "intake's outbox → published",
        "published → matching's offer.made committed", "matching's outbox → published",
        "published → notify's SMS queued", "queued → handed to the gateway")


def register_volunteers(http: requests.Session, url: str) -> None:
    """Volunteers in Blackpool who can shop for anyone nearby."""
    today = datetime.now(timezone.utc).date()
    for n in range(VOLUNTEERS):
        answer = http.post(f"{url}/volunteers", timeout=30, json={
            "name": f"Volunteer {n}", "phone": f"+447911123{n:03d}", "skills": ["practical"],
            "checks": [{"check": "safeguarding", "done_on": today.isoformat(),
                        "expires_on": (today + timedelta(days=3 * 365)).isoformat()}],
            "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10})
        if answer.status_code != 201:
            raise RuntimeError(f"registering a volunteer answered {answer.status_code}: {answer.text}")


def drive(url: str, token: str, rate: float, seconds: float) -> dict[str, float]:
    """POST requests at `rate` per second for `seconds`; when each was sent, by the request's id."""
    count = max(int(rate * seconds), 1)
    started: dict[str, float] = {}
    local = threading.local()
    begin = time.monotonic() + 0.2

    def one(n: int) -> None:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = requests.Session()
            http.headers["Authorization"] = f"Bearer {token}"
        pause = begin + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        at = time.time()
        answer = http.post(f"{url}/requests", json=REQUEST, timeout=30)
        answer.raise_for_status()
        started[answer.json()["id"]] = at

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))
    return started


@contextmanager
def started_system(folder: Path, env: dict[str, str]) -> Iterator[System]:
    """The whole system on free ports (tried again on others if something took one meanwhile)."""
    for attempt in range(5):
        system = System(var_dir=folder, port=five_free_ports(), env=env)
        try:
            system.__enter__()
        except SystemExit:  # a port was taken between choosing and starting
            if attempt == 4:
                raise
            continue
        try:
            yield system
        finally:
            system.__exit__(None, None, None)
        return


def measure(name: str, env: dict[str, str], rate: float, seconds: float) -> tuple[list[float], dict] | None:
    """Start the system on one backend, warm it up, drive it; the latencies in milliseconds and the hops."""
    folder = Path(tempfile.mkdtemp(prefix=f"ccs-latency-{name.replace('+', '-')}-"))
    env = {**env, "CCS_QUIET_HOURS": "off"}
    with started_system(folder, env) as system:
        token = issue_token(config.secret_key(folder), "bench", "coordinator", ["fylde-coast"])
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        register_volunteers(http, system.service_url("matching"))
        intake = system.service_url("intake")
        warm = drive(intake, token, 5, 1)  # the first requests open connections and fill caches
        until("the warm-up's SMS", lambda: set(warm) <= set(handed_over(system)), timeout=60)
        began = time.monotonic()
        started = drive(intake, token, rate, seconds)
        took = time.monotonic() - began
        try:
            until("every request's offer SMS", lambda: set(started) <= set(handed_over(system)), timeout=120)
        except TimeoutError:
            pass
        sms = handed_over(system)
        taken = hops(system, started, sms)
    latencies = sorted((sms[r][1] - at) * 1000 for r, at in started.items() if r in sms)
    print(f"{name}: {len(started)} requests sent in {took:.1f} s (at {rate:g}/s), "
          f"{len(started) - len(latencies)} without an SMS within two minutes; logs in {folder}/log")
    return (latencies, taken) if latencies else None


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and the longest."""
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


def report(name: str, latencies: list[float], taken: dict[str, list[float]]) -> None:
    """The percentiles beside their goals, then each hop's."""
    goals = GOALS.get(name, {})
    figures = percentiles(latencies)
    for key in ("p50", "p95", "p99", "max"):
        goal = goals.get(key)
        verdict = "" if goal is None else f"  goal ≤ {goal:g} ms: {'met' if figures[key] <= goal else 'NOT met'}"
        print(f"  request → offer SMS {key:>3}: {figures[key]:8.1f} ms{verdict}")
    print("  hop by hop (p50 / p99 ms):")
    for hop, values in taken.items():
        if values:
            hop_figures = percentiles(values)
            print(f"    {hop:<46} {hop_figures['p50']:7.1f} / {hop_figures['p99']:7.1f}")


def main() -> None:
    print(f"Request → offer SMS handed to the gateway, {RATE:g} requests/s for {SECONDS:g} s "
          f"(LATENCY_RATE, LATENCY_SECONDS), {VOLUNTEERS} volunteers in reach, three offers per request")
    for name in BACKENDS:
        env = {} if name == "embedded" else postgres_and_rabbitmq()
        if env is None:
            continue
        try:
            measured = measure(name, env, RATE, SECONDS)
        finally:
            if env:
                drop(env)
        if measured:
            report(name, *measured)


if __name__ == "__main__":
    main()
