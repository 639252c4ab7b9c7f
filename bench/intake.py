"""Intake's `POST /requests` beside a bare Flask + marshmallow + one-INSERT app, on PostgreSQL, under the same
gunicorn settings as production (`ccs web intake`: two processes of four threads, the access log on), driven by the
same concurrent client for the same time; prints each one's requests per second and intake's share of the bare
app's, next to the goal (at least half).

Each app gets a fresh database on the PostgreSQL server at CCS_BENCH_PG (127.0.0.1:5432 by default), dropped after.
The client is BENCH_CLIENTS connections (16) over two processes, each connection keeping alive and posting the same
body again and again for BENCH_SECONDS (5) after two seconds of warm-up; the two apps take turns, BENCH_ROUNDS
times (3), and each one's median is taken (this machine is shared: a busy moment falls on both alike). Beside the
rates it prints the CPU its server processes used a request, a figure a busy machine disturbs less. The bare app's INSERT keeps the whole body as
JSON in one row; intake keeps the request, its consents, timeline, audit entry, idempotency answer (every post has an
Idempotency-Key, as a careful client sends) and `request.submitted` in its outbox. Run: `python -m bench.intake`.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg

from shared.config import ACCESS_LOG
from shared.supervisor import free_port, stop_with_parent
from tests.integration.test_bus import SHOPPING as BODY  # a coordinator's request, as the tests send it

PG = os.environ.get("CCS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARM_UP = 2.0
GOAL = 0.5  # intake's throughput at least half the bare app's
SECRET = "bench-" + "k" * 40
BARE_TABLE = "CREATE TABLE requests (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, body jsonb NOT NULL)"


# --- the bare app -----------------------------------------------------------------------------------------------------


def bare_app():
    """Flask, a marshmallow schema of the same body as intake's, and one INSERT per request (what gunicorn serves as
    `bench.intake:bare_app()`, with its database at BARE_DATABASE_URL)."""
    import sqlalchemy as sa
    from flask import Flask, jsonify, request
    from marshmallow import Schema, ValidationError, fields, validate

    class Person(Schema):
        name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
        phone = fields.Str(load_default=None, allow_none=True)
        address = fields.Str(load_default="", validate=validate.Length(max=500))
        postcode = fields.Str(validate=validate.Length(max=10))

    class When(Schema):
        start = fields.AwareDateTime(required=True)
        end = fields.AwareDateTime(required=True)

    class Consent(Schema):
        share_contact = fields.Bool(required=True)
        sms_contact = fields.Bool(required=True)

    class RequestIn(Schema):
        person = fields.Nested(Person, required=True)
        support_type = fields.Str(required=True, validate=validate.Length(max=40))
        urgency = fields.Str(load_default="routine", validate=validate.OneOf(["routine", "soon", "urgent"]))
        when = fields.Nested(When, required=True)
        consent = fields.Nested(Consent, required=True)
        coordinator_notes = fields.Str(load_default="")

    engine = sa.create_engine(os.environ["BARE_DATABASE_URL"], pool_size=5, max_overflow=5)
    table = sa.table("requests", sa.column("id", sa.Uuid), sa.column("created_at", sa.DateTime(timezone=True)),
                     sa.column("body", sa.JSON))
    schema = RequestIn()
    app = Flask("bare")

    @app.post("/requests")
    def create():
        try:
            data = schema.load(request.get_json())
        except ValidationError as err:
            return jsonify(err.messages), 422
        row = {"id": uuid.uuid4(), "created_at": sa.func.now(), "body": schema.dump(data)}
        with engine.begin() as connection:
            connection.execute(sa.insert(table).values(**row))
        return jsonify({"id": str(row["id"]), **row["body"]}), 201

    return app


# --- the servers ------------------------------------------------------------------------------------------------------


@contextmanager
def database(name: str):
    """A fresh PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    database = f"ccs_bench_{uuid.uuid4().hex[:8]}_{name}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield "postgresql+psycopg://" + PG.rsplit("/", 1)[0].split("://", 1)[1] + f"/{database}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextmanager
def gunicorn(app: str, env: dict[str, str], log: Path):
    """`app` served as production serves a service (`ccs web`: two processes, four threads each, the access log
    on); yields its port and a function that says how much CPU its processes have used (seconds), once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
               *ACCESS_LOG, app]
    with open(log, "ab") as output:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=stop_with_parent())
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{app} exited with {process.returncode}; see {log}")
            try:  # an answer, not just a connection: the master listens before its workers have loaded the app
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/")
                connection.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{app} did not start; see {log}")
                time.sleep(0.1)
        yield port, lambda: cpu_seconds(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process and its children now running have used, in seconds (Linux)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for process in (pid, *map(int, children)):
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


# --- the client -------------------------------------------------------------------------------------------------------


def post_until(port: int, headers: dict[str, str], until: float, counts: list[int], errors: list[str]) -> None:
    """Post the body on one kept-alive connection until `until`, each time with a new Idempotency-Key; count the
    201s answered after the warm-up (counts[0]) and keep what any other answer said."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps(BODY)
    counting_from = until - SECONDS
    while (now := time.monotonic()) < until:
        connection.request("POST", "/requests", body, {**headers, "Idempotency-Key": str(uuid.uuid4())})
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 201:
            errors.append(f"{answer.status} {data[:200]!r}")
        elif now >= counting_from:
            counts[0] += 1
    connection.close()


def client_process(port: int, headers: dict[str, str], until: float, threads: int, results) -> None:
    """One process of the client: `threads` connections posting until `until`."""
    counts, errors = [[0] for _ in range(threads)], []
    workers = [threading.Thread(target=post_until, args=(port, headers, until, count, errors)) for count in counts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((sum(c[0] for c in counts), errors[:3]))


def drive(port: int, headers: dict[str, str]) -> float:
    """Requests per second answered 201 over SECONDS, after WARM_UP, from CLIENTS connections in two processes."""
    until = time.monotonic() + WARM_UP + SECONDS
    results = multiprocessing.get_context("fork").Queue()
    processes = [multiprocessing.get_context("fork").Process(
        target=client_process, args=(port, headers, until, CLIENTS // 2 + (n < CLIENTS % 2), results))
        for n in range(2)]
    for process in processes:
        process.start()
    answered = [results.get() for _ in processes]
    for process in processes:
        process.join()
    errors = [e for _, found in answered for e in found]
    if errors:
        raise RuntimeError(f"not every post was answered 201: {errors}")
    return sum(count for count, _ in answered) / SECONDS


# --- the run ----------------------------------------------------------------------------------------------------------


def main() -> None:
    from shared.db import upgrade
    from shared.web import issue_token

    token = issue_token(SECRET, "bench", "coordinator", ["fylde-coast"])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    print(f"POST /requests on PostgreSQL, gunicorn --workers 2 --threads 4, {CLIENTS} connections, {SECONDS:g} s "
          f"each, {ROUNDS} rounds taking turns")
    with tempfile.TemporaryDirectory(prefix="ccs-bench-intake-") as var, ExitStack() as stack:
        intake_url, bare_url = stack.enter_context(database("intake")), stack.enter_context(database("bare"))
        upgrade("intake", intake_url)
        with psycopg.connect("postgresql://" + bare_url.split("://", 1)[1]) as conn:
            conn.execute(BARE_TABLE)
        env = {"CCS_VAR_DIR": var, "CCS_SECRET_KEY": SECRET, "INTAKE_DATABASE_URL": intake_url,
               "BARE_DATABASE_URL": bare_url, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=var)}
        servers = {name: stack.enter_context(gunicorn(app, env, Path(var) / f"{name}.log")) for name, app in (
            ("bare", "bench.intake:bare_app()"), ("intake", "services.intake.bootstrap:create_app()"))}
        rates: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(ROUNDS):  # in turns, so a busy moment on the machine falls on both
            for name, (port, used) in servers.items():
                before = used()
                rates[name].append(drive(port, headers))
                cpu[name].append((used() - before) * 1000 / (rates[name][-1] * SECONDS + WARM_UP * rates[name][-1]))
    for name in servers:
        print(f"  {name:<8} {statistics.median(rates[name]):8.0f} req/s  (rounds: "
              f"{', '.join(f'{r:.0f}' for r in rates[name])}); the server's CPU "
              f"{statistics.median(cpu[name]):.1f} ms a request")
    ratio = statistics.median(rates["intake"]) / statistics.median(rates["bare"])
    print(f"  intake / bare = {ratio:.0%}   (goal >= {GOAL:.0%}: {'met' if ratio >= GOAL else 'NOT met'}); "
          f"by the servers' CPU a request: {statistics.median(cpu['bare']) / statistics.median(cpu['intake']):.0%}")


if __name__ == "__main__":
    main()
