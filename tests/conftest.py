"""Fixtures shared by every layer: backends (embedded, and PostgreSQL + RabbitMQ), apps, tokens, the system."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest

from shared.config import SERVICES

PG_ADMIN = os.environ.get("CCS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
REQUIRE_REAL = os.environ.get("CCS_REQUIRE_REAL_BACKENDS") == "1"
# Routine SMS wait out each community's night-time quiet hours; tests run at any hour, so only the tests of
# quiet hours themselves have them (they remove this).
os.environ["CCS_QUIET_HOURS"] = "off"
# A failed message waits on the broker before it is tried again: tenths of a second here, not seconds to minutes.
os.environ.setdefault("CCS_RETRY_DELAYS", "0.1,0.2,0.4,0.8")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _pg_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@dataclass
class Backend:
    """Where a test's services keep their data and exchange their events."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    cleanups: list = field(default_factory=list)

    @property
    def is_real(self) -> bool:
        return self.name == "postgres+rabbitmq"


def _real_backend(tmp_path) -> Backend:
    if not (_pg_reachable() and _reachable(RABBIT_HOST, RABBIT_PORT)):
        message = "PostgreSQL or RabbitMQ is not running on 127.0.0.1"
        if REQUIRE_REAL:
            pytest.fail(message + " (CCS_REQUIRE_REAL_BACKENDS=1)")
        pytest.skip(message)
    run = uuid.uuid4().hex[:10]
    backend = Backend("postgres+rabbitmq", {"CCS_VAR_DIR": str(tmp_path / "var")})
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in SERVICES:
            conn.execute(f'CREATE DATABASE "ccs_{run}_{name}"')
            backend.env[f"{name.upper()}_DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + f"/ccs_{run}_{name}"

    def drop_databases():
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in SERVICES:
                conn.execute(f'DROP DATABASE IF EXISTS "ccs_{run}_{name}" WITH (FORCE)')

    backend.cleanups.append(drop_databases)
    vhost = f"ccs-{run}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    backend.cleanups.append(lambda: subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost],
                                                   capture_output=True))
    backend.env["BROKER_URL"] = f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{vhost}"
    return backend


@pytest.fixture(params=["embedded", pytest.param("postgres+rabbitmq", marks=pytest.mark.real_backends)])
def backend(request, tmp_path, monkeypatch):
    """Each test that takes this runs twice: SQLite + filesystem bus, and PostgreSQL + RabbitMQ."""
    if request.param == "embedded":
        chosen = Backend("embedded", {"CCS_VAR_DIR": str(tmp_path / "var")})
    else:
        chosen = _real_backend(tmp_path)
    for name in SERVICES:
        monkeypatch.delenv(f"{name.upper()}_DATABASE_URL", raising=False)
    for name in ("BROKER_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    for key, value in chosen.env.items():
        monkeypatch.setenv(key, value)
    yield chosen
    for cleanup in reversed(chosen.cleanups):
        cleanup()


@pytest.fixture
def migrated(backend):
    """Every service's database at the newest schema, on the test's backend."""
    from shared.config import database_url
    from shared.db import upgrade

    for name in SERVICES:
        upgrade(name, database_url(name))
    return backend


@pytest.fixture
def app_for(migrated):
    """Build a service's app on the test's backend: `app_for("intake")`; engines are disposed afterwards."""
    from shared.service import get

    made = []

    def build(name: str):
        app = get(name).create_app({"TESTING": True})
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["ccs"].engine.dispose()


@pytest.fixture
def token():
    """Make a bearer header for a role: `token("coordinator")`."""
    from shared import config
    from shared.web import issue_token

    def make(role: str, communities=("fylde-coast",), subject: str = "test", organisation=None) -> dict[str, str]:
        secret = config.load("cli").secret_key
        return {"Authorization": f"Bearer {issue_token(secret, subject, role, communities, organisation)}"}

    return make
