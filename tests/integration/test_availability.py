"""Availability while a dependency is down, on both backends: a call that fails on an unreachable database answers
503 with Retry-After (problem details; a page for a browser) and leaves nothing half-written; /healthz says the
process is alive, /readyz whether the database answers at the newest migration and the broker can be reached; a
worker answers both beside its metrics."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests
import sqlalchemy as sa
from alembic import command
from flask import Flask
from kombu.exceptions import OperationalError as KombuOperationalError

from shared import frontdoor
from shared.config import SERVICES, database_url
from shared.db import make_engine, make_sessions, migrations_config
from shared.telemetry import WORKER_READY, WorkerReadiness, check_broker, mark_ready, serve_worker_metrics
from shared.web import Pages, claims_for, unavailable_dependency
from tests.integration.test_bus import SHOPPING
from tests.proxy import TcpProxy

PROBLEM = "application/problem+json"


def requests_logged(app) -> int:
    """How many requests for support intake holds."""
    from services.intake.adapters import requests as table

    with app.extensions["ccs"].sessions() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(table))


def events_staged(app) -> int:
    """How many events intake's outbox holds."""
    from services.intake.adapters import outbox

    with app.extensions["ccs"].sessions() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(outbox.table))


def signed_in(app, role: str = "coordinator"):
    """A test client with a signed-in session (for the pages)."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["user"] = claims_for(f"{role}@example.org", role, ("fylde-coast",))
    return client


def assert_unavailable(answer, *, page: bool = False) -> None:
    """503 with a Retry-After of a few seconds, saying the service is briefly unavailable."""
    assert answer.status_code == 503, answer.get_data(as_text=True)[:500]
    assert 1 <= int(answer.headers["Retry-After"]) <= 30
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Content-Security-Policy"]  # the security headers, as on every answer
    if page:
        assert answer.mimetype == "text/html"
        assert "briefly unavailable" in answer.get_data(as_text=True)
    else:
        assert answer.mimetype == PROBLEM
        body = answer.json
        assert body["status"] == 503 and body["title"] == "Service Unavailable" and body["type"] == "about:blank"
        assert "briefly unavailable" in body["detail"] and "database" in body["detail"]
        assert "SELECT" not in body["detail"] and "INSERT" not in body["detail"]  # no SQL, no values


def readyz(client, name: str = "intake"):
    return client.get(f"/readyz/{name}")


# --- an outage of the database -------------------------------------------------------------------------------------

@dataclass
class Outage:
    """Intake's app on a database the test can take away and give back."""

    app: Flask
    cut: Callable[[], None]
    restore: Callable[[], None]


def through_proxy(url: str, proxy: TcpProxy) -> str:
    """The same database URL, reached through the proxy."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
def outage(backend, app_for, monkeypatch):
    """PostgreSQL: intake reaches its database through a TCP proxy that `cut()` drops. SQLite: another connection
    takes the write lock, and intake's busy timeout is cut short, so intake meets "database is locked"."""
    if backend.is_real:
        direct = urlsplit(backend.env["INTAKE_DATABASE_URL"])
        proxy = TcpProxy(direct.hostname, direct.port or 5432)
        monkeypatch.setenv("INTAKE_DATABASE_URL", through_proxy(backend.env["INTAKE_DATABASE_URL"], proxy))
        try:
            yield Outage(app_for("intake"), proxy.cut, proxy.restore)
        finally:
            proxy.close()
        return
    app = app_for("intake")
    engine = app.extensions["ccs"].engine
    sa.event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=200"))
    engine.dispose()
    locker = sqlite3.connect(database_url("intake").split("///", 1)[1], isolation_level=None, timeout=5)
    try:
        yield Outage(app, lambda: locker.execute("BEGIN IMMEDIATE"), lambda: locker.execute("ROLLBACK"))
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()


def test_while_the_database_is_down_calls_answer_503_with_retry_after_and_nothing_is_made_twice(outage, token):
    app = outage.app
    client, page_client = app.test_client(), signed_in(app)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert readyz(client).status_code == 200

    outage.cut()
    assert_unavailable(client.post("/requests", json=SHOPPING, headers={**token("coordinator"), **key}))
    assert_unavailable(client.get("/requests", headers=token("coordinator")))
    assert_unavailable(page_client.get("/board"), page=True)
    assert client.get("/healthz/intake").status_code == 200  # alive: nothing to restart
    not_ready = readyz(client)
    assert not_ready.status_code == 503 and not_ready.mimetype == PROBLEM
    assert int(not_ready.headers["Retry-After"]) >= 1
    assert not_ready.json["failing"] == ["database"]
    assert not_ready.json["checks"]["database"].startswith("failed: ")
    assert not_ready.json["checks"]["migrations"].startswith("not checked")
    assert "database" in not_ready.json["detail"]

    outage.restore()
    created = client.post("/requests", json=SHOPPING, headers={**token("coordinator"), **key})
    assert created.status_code == 201 and "Idempotent-Replayed" not in created.headers
    again = client.post("/requests", json=SHOPPING, headers={**token("coordinator"), **key})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == created.json["id"]
    assert requests_logged(app) == 1 and events_staged(app) == 1
    assert client.get("/requests", headers=token("coordinator")).status_code == 200
    assert page_client.get("/board").status_code == 200
    ready = readyz(client)
    assert ready.status_code == 200, ready.json
    assert ready.json == {"service": "intake", "status": "ready",
                          "checks": {"database": "ok", "migrations": "ok", "broker": "ok"}}


@pytest.mark.real_backends
@pytest.mark.parametrize("backend", ["postgres+rabbitmq"], indirect=True)
def test_a_create_cut_off_as_it_commits_leaves_nothing_and_its_retry_makes_it_once(backend, outage, token):
    """The line to PostgreSQL drops as the create commits: 503, nothing of it kept (no request, no event, no
    idempotency answer), and the retry with the same key makes it once."""
    app = outage.app
    cut_once = []

    def cut_at_commit(_connection):
        """The create's rows are written (intake sends them in one statement just before COMMIT): cut the line as
        COMMIT goes."""
        if not cut_once:
            cut_once.append(True)
            outage.cut()

    sa.event.listen(app.extensions["ccs"].engine, "commit", cut_at_commit)
    client = app.test_client()
    headers = {**token("coordinator"), "Idempotency-Key": str(uuid.uuid4())}
    assert_unavailable(client.post("/requests", json=SHOPPING, headers=headers))
    assert cut_once

    outage.restore()
    sa.event.remove(app.extensions["ccs"].engine, "commit", cut_at_commit)
    assert requests_logged(app) == 0 and events_staged(app) == 0
    created = client.post("/requests", json=SHOPPING, headers=headers)
    assert created.status_code == 201 and "Idempotent-Replayed" not in created.headers
    assert client.post("/requests", json=SHOPPING, headers=headers).headers["Idempotent-Replayed"] == "true"
    assert requests_logged(app) == 1 and events_staged(app) == 1


# --- which faults are a dependency down ----------------------------------------------------------------------------

def wrapped(kind, driver_error, **options):
    """A driver's error as SQLAlchemy raises it."""
    return kind("SELECT 1", {}, driver_error, **options)


TRANSIENT = {
    "postgres connection refused": wrapped(sa.exc.OperationalError, psycopg.OperationalError("connection refused")),
    "postgres connection closed": wrapped(sa.exc.InterfaceError, psycopg.InterfaceError("the connection is closed")),
    "connection invalidated": wrapped(sa.exc.DBAPIError, psycopg.DatabaseError("server closed the connection"),
                                      connection_invalidated=True),
    "sqlite locked": wrapped(sa.exc.OperationalError, sqlite3.OperationalError("database is locked")),
    "sqlite cannot open": wrapped(sa.exc.OperationalError, sqlite3.OperationalError("unable to open database file")),
    "pool exhausted": sa.exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached"),
    "psycopg unwrapped": psycopg.OperationalError("connection failed"),
    "sqlite unwrapped": sqlite3.OperationalError("database is locked"),
    "broker": KombuOperationalError("[Errno 111] Connection refused"),
}
NOT_TRANSIENT = {
    "sqlite no such table": wrapped(sa.exc.OperationalError, sqlite3.OperationalError("no such table: requests")),
    "sqlite syntax": wrapped(sa.exc.OperationalError, sqlite3.OperationalError('near "SELEC": syntax error')),
    "sqlite binding": wrapped(sa.exc.InterfaceError, sqlite3.InterfaceError("Error binding parameter 1")),
    "programming": wrapped(sa.exc.ProgrammingError, psycopg.ProgrammingError("syntax error")),
    "data": wrapped(sa.exc.DataError, psycopg.DataError("invalid input")),
    "sqlalchemy other": sa.exc.InvalidRequestError("not a dependency"),
    "psycopg integrity unwrapped": psycopg.IntegrityError("duplicate key"),
    "value error": ValueError("a bug"),
}


@pytest.fixture
def raising_app(app_for):
    """Intake's app with an API route and a page that raise what the test puts in `raising_app.error`."""
    app = app_for("intake")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # what production does: an unexpected error answers 500
    holder = {}

    def fail():
        raise holder["error"]

    app.add_url_rule("/requests-test-fault", "fault", fail)
    pages = Pages("fault-pages", __name__)
    pages.add_url_rule("/board-test-fault", "fault", fail)
    app.register_blueprint(pages)
    app.fault = holder
    return app


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_dependency_down_answers_503_the_api_as_problem_details_and_a_page_as_a_page(backend, raising_app, error):
    raising_app.fault["error"] = error
    assert unavailable_dependency(error) == ("broker" if isinstance(error, KombuOperationalError) else "database")
    api = raising_app.test_client().get("/requests-test-fault")
    assert api.status_code == 503 and api.mimetype == PROBLEM and int(api.headers["Retry-After"]) >= 1
    assert "briefly unavailable" in api.json["detail"]
    assert ("message bus" if isinstance(error, KombuOperationalError) else "database") in api.json["detail"]
    assert_unavailable(signed_in(raising_app).get("/board-test-fault"), page=True)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
@pytest.mark.parametrize("error", NOT_TRANSIENT.values(), ids=NOT_TRANSIENT.keys())
def test_any_other_fault_stays_a_500_without_retry_after(backend, raising_app, error):
    raising_app.fault["error"] = error
    assert unavailable_dependency(error) is None
    answer = raising_app.test_client().get("/requests-test-fault")
    assert answer.status_code == 500 and answer.mimetype == PROBLEM and "Retry-After" not in answer.headers
    assert answer.json["detail"] == "An unexpected error occurred."


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_unique_clash_with_a_change_made_at_the_same_moment_answers_409_not_500(backend, raising_app, caplog):
    """The second of two requests that make the same thing at once loses at the database's unique index: nothing
    of it was kept, so it is a conflict to retry, not a fault; the log names the clash, not the values."""
    raising_app.fault["error"] = wrapped(sa.exc.IntegrityError, psycopg.IntegrityError(
        'duplicate key value violates unique constraint "volunteers_phone_key"\n'
        "DETAIL:  Key (phone)=(+447911123456) already exists."))
    answer = raising_app.test_client().get("/requests-test-fault")
    assert answer.status_code == 409 and answer.mimetype == PROBLEM and "Retry-After" not in answer.headers
    assert "same moment" in answer.json["detail"] and "7911" not in answer.get_data(as_text=True)
    assert "volunteers_phone_key" in caplog.text and "7911" not in caplog.text


def test_the_openapi_documents_say_503_and_why_a_create_takes_an_idempotency_key(backend, app_for):
    """Every operation documents its 503 (with Retry-After); each create that honours an Idempotency-Key says that
    a retry after a timeout or a 502 must not create a duplicate."""
    keyed = set()
    for name in SERVICES:
        document = app_for(name).test_client().get(f"/openapi/{name}.json").json
        unavailable = document["components"]["responses"]["SERVICE_UNAVAILABLE"]
        assert "Retry-After" in unavailable["headers"] and PROBLEM in unavailable["content"]
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                assert operation["responses"]["503"] == {"$ref": "#/components/responses/SERVICE_UNAVAILABLE"}
                parameters = [p for p in operation.get("parameters", []) if p.get("name") == "Idempotency-Key"]
                if parameters:
                    keyed.add((method.upper(), path))
                    assert "a retry after a timeout or a 502 must not create a duplicate" in \
                        parameters[0]["description"].lower()
                    assert "cannot make a duplicate" in operation["description"]
    assert keyed >= {("POST", "/requests"), ("POST", "/referrals"), ("POST", "/fhir/ServiceRequest"),
                     ("POST", "/volunteers"), ("POST", "/activities")}


# --- readiness ----------------------------------------------------------------------------------------------------

def test_each_service_is_ready_and_the_front_door_routes_its_health_and_readiness(app_for):
    for name in SERVICES:
        client = app_for(name).test_client()
        ready = readyz(client, name)
        assert ready.status_code == 200, ready.json
        assert ready.json == {"service": name, "status": "ready",
                              "checks": {"database": "ok", "migrations": "ok", "broker": "ok"}}
        assert ready.headers["Cache-Control"] == "no-store"
        assert client.get(f"/healthz/{name}").json == {"service": name, "status": "ok"}
        assert client.get(f"/readyz/not-{name}").status_code == 404
        assert frontdoor.route(f"/readyz/{name}") == frontdoor.route(f"/healthz/{name}") == name
        assert f"readyz/{name}" in frontdoor.nginx_config()


def test_a_database_behind_the_newest_migration_is_not_ready_until_migrated(app_for):
    url = database_url("intake")
    config = migrations_config("intake", url)
    command.downgrade(config, "-1")
    client = app_for("intake").test_client()
    behind = readyz(client)
    assert behind.status_code == 503 and behind.mimetype == PROBLEM
    assert behind.json["failing"] == ["migrations"]
    assert behind.json["checks"]["database"] == "ok" and behind.json["checks"]["broker"] == "ok"
    assert "newest migration" in behind.json["checks"]["migrations"] and "migrations" in behind.json["detail"]
    command.upgrade(config, "head")
    assert readyz(client).status_code == 200


def test_a_broker_that_cannot_be_reached_is_named_by_readyz(backend, app_for, monkeypatch):
    """RabbitMQ: the line to it cut. The filesystem transport: its folder cannot take a file."""
    if backend.is_real:
        proxy = TcpProxy("127.0.0.1", 5672)
        direct = backend.env["BROKER_URL"]
        monkeypatch.setenv("BROKER_URL", direct.replace(":5672/", f":{proxy.port}/"))
        cut, restore = proxy.cut, proxy.restore
    else:
        proxy = None
        messages = app_for("intake").extensions["ccs"].settings.var_dir / "broker" / "messages"

        def cut():
            shutil.rmtree(messages, ignore_errors=True)
            messages.parent.mkdir(parents=True, exist_ok=True)
            messages.write_text("not a folder")

        def restore():
            messages.unlink()

    try:
        client = app_for("intake").test_client()
        assert readyz(client).status_code == 200
        cut()
        # A success is remembered for a few seconds (a storm of probes opens no connection each) ...
        assert readyz(client).status_code == 200
        monkeypatch.setattr(check_broker, "FRESH", 0)  # ... and then the broker is looked at again
        down = readyz(client)
        assert down.status_code == 503 and down.json["failing"] == ["broker"]
        assert down.json["checks"]["broker"].startswith("failed: ") and "broker" in down.json["detail"]
        assert down.json["checks"]["database"] == down.json["checks"]["migrations"] == "ok"
        restore()
        assert readyz(client).status_code == 200
    finally:
        if proxy is not None:
            proxy.close()


# --- a worker's /healthz and /readyz ------------------------------------------------------------------------------

@pytest.fixture
def worker_server(monkeypatch):
    """Start a worker's metrics server on a port the system picks (CCS_METRICS_PORT=0); stopped afterwards."""
    started = []

    def start(sessions, readiness_flag=WORKER_READY):
        from services.intake.adapters import outbox

        monkeypatch.setenv("CCS_METRICS_PORT", "0")
        server = serve_worker_metrics("intake", sessions, outbox, readiness_flag=readiness_flag)
        started.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()
    WORKER_READY.set(False, WorkerReadiness.NOT_YET)


def test_a_worker_serves_healthz_and_readyz_beside_its_metrics(app_for, worker_server):
    url = worker_server(app_for("intake").extensions["ccs"].sessions)
    alive = requests.get(f"{url}/healthz", timeout=10)
    assert alive.status_code == 200 and alive.json()["status"] == "ok"
    waiting = requests.get(f"{url}/readyz", timeout=10)
    assert waiting.status_code == 503 and waiting.headers["Content-Type"] == PROBLEM
    assert int(waiting.headers["Retry-After"]) >= 1
    assert waiting.json()["failing"] == ["consumer"]
    assert waiting.json()["checks"] == {"consumer": WorkerReadiness.NOT_YET, "database": "ok"}

    mark_ready(True)  # what the worker does once its consumer is connected
    ready = requests.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"service": "intake", "status": "ready", "checks": {"consumer": "ok", "database": "ok"}}

    mark_ready(False, "the broker connection was lost")
    lost = requests.get(f"{url}/readyz", timeout=10)
    assert lost.status_code == 503 and lost.json()["checks"]["consumer"] == "the broker connection was lost"
    metrics = requests.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "ccs_outbox_backlog" in metrics.text


def test_a_worker_whose_database_cannot_be_reached_is_not_ready(worker_server):
    closed = TcpProxy("127.0.0.1", 9)  # refuses every connection once cut
    closed.cut()
    try:
        engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{closed.port}/nowhere")
        flag = WorkerReadiness()
        flag.set(True)
        url = worker_server(make_sessions(engine), flag)
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
        down = requests.get(f"{url}/readyz", timeout=10)
        assert down.status_code == 503 and down.json()["failing"] == ["database"]
        assert down.json()["checks"] == {"consumer": "ok", "database": "failed: OperationalError"}
        engine.dispose()
    finally:
        closed.close()


def test_a_worker_serves_nothing_without_a_metrics_port(monkeypatch):
    monkeypatch.delenv("CCS_METRICS_PORT", raising=False)
    assert serve_worker_metrics("intake", None, None) is None
