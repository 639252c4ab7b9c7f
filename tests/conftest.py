"""Fixtures shared by every layer: backends (embedded, and PostgreSQL + RabbitMQ), apps, tokens, the system."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
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


class Vhosts:
    """Fresh RabbitMQ vhosts for the tests, made ahead of them and deleted after them, in the background.

    Each `rabbitmqctl` call boots an Erlang VM (about a second), and a vhost took three (add, permit, delete) on each
    test's critical path. A thread here makes vhosts a batch at a time (one `import_definitions`) before they are
    needed, and deletes those the tests have finished with a batch at a time (one `eval`). Each test still has a vhost
    of its own that nothing has used; every vhost made is deleted by the end of the session (`close`).
    """

    BATCH = 8  # vhosts made by one call; more are made when fewer than half a batch are ready

    def __init__(self, run: str):
        self.names = (f"ccs-{run}-{n}" for n in itertools.count())
        self.ready: list[str] = []
        self.used: list[str] = []
        self.failure: Exception | None = None
        self.closing = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._make_and_delete, name="test-vhosts", daemon=True)
        self.thread.start()

    def take(self) -> str:
        """A vhost no test has used, on which guest may do everything; waits while the next batch is made."""
        with self.changed:
            self.changed.wait_for(lambda: self.ready or self.failure)
            if not self.ready:
                raise RuntimeError("could not make RabbitMQ vhosts for the tests") from self.failure
            self.changed.notify_all()  # the thread makes more when few are left
            return self.ready.pop(0)

    def give_back(self, vhost: str) -> None:
        """A test has finished with its vhost: delete it soon."""
        with self.changed:
            self.used.append(vhost)
            self.changed.notify_all()

    def close(self) -> None:
        """Stop making vhosts, and delete every one made, used or not."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.thread.join()
        _delete_vhosts(self.used + self.ready)

    def _make_and_delete(self) -> None:
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.closing or self._low() or self.used)
                if self.closing:
                    return
                make = [next(self.names) for _ in range(self.BATCH)] if self._low() else []
                delete, self.used = ([], self.used) if make else (self.used, [])
            try:
                if make:
                    _add_vhosts(make)
            except Exception as error:  # a test waiting in `take` says so
                with self.changed:
                    self.failure = error
                    self.changed.notify_all()
                return
            _delete_vhosts(delete)
            with self.changed:
                self.ready += make
                self.changed.notify_all()

    def _low(self) -> bool:
        return len(self.ready) < self.BATCH // 2


def _add_vhosts(names: list[str]) -> None:
    """Make vhosts on which guest may do everything, with one rabbitmqctl call."""
    definitions = {"vhosts": [{"name": name} for name in names],
                   "permissions": [{"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
                                   for name in names]}
    # from standard input: with no file named (3.10 takes "-" for a file's name)
    subprocess.run(["rabbitmqctl", "-q", "import_definitions", "--format", "json"], input=json.dumps(definitions),
                   text=True, check=True, capture_output=True)


def _delete_vhosts(names: list[str]) -> None:
    """Delete vhosts (and their queues), with one rabbitmqctl call; one call each if the broker refuses that."""
    if not names:
        return
    listed = ", ".join(f'<<"{name}">>' for name in names)
    erlang = f'[rabbit_vhost:delete(V, <<"tests">>) || V <- [{listed}]].'  # the second argument: who did it
    together = subprocess.run(["rabbitmqctl", "-q", "eval", erlang], capture_output=True)
    if together.returncode:
        for name in names:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True)


@dataclass
class RealServers:
    """What the PostgreSQL + RabbitMQ tests of one session share: the vhosts, the migrated template databases
    (made the first time a test asks for `migrated`), and the threads that drop the tests' databases."""

    run: str
    vhosts: Vhosts
    # a test's four databases dropped at once, and the next test's too if it ends first
    dropping: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "test-databases"))
    drops: list = field(default_factory=list)
    templates: dict[str, str] = field(default_factory=dict)
    templates_migrated: bool = False

    def migrated_templates(self) -> dict[str, str]:
        """Each service's template database, migrated to the newest schema once for the session."""
        from shared.db import upgrade

        if not self.templates:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                for name in SERVICES:
                    self.templates[name] = f"ccs_{self.run}_template_{name}"
                    conn.execute(f'CREATE DATABASE "{self.templates[name]}"')
        if not self.templates_migrated:
            for name, template in self.templates.items():
                # the URL as SQLAlchemy takes it; upgrade leaves no connection open (a template must have none)
                upgrade(name, "postgresql+psycopg://" + _pg_url(template).split("://", 1)[1])
            self.templates_migrated = True
        return self.templates

    def drop_later(self, databases) -> None:
        """Drop databases in the background, each in a thread of its own: each DROP DATABASE waits for a
        checkpoint, and drops that wait at the same time share one."""
        self.drops += [self.dropping.submit(_drop_database, name) for name in databases]

    def close(self) -> None:
        """Drop the templates, wait for every drop (raising what any raised), and delete the vhosts."""
        self.drop_later(self.templates.values())
        self.dropping.shutdown(wait=True)
        try:
            for drop in self.drops:
                drop.result()
        finally:
            self.vhosts.close()


def _pg_url(database: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"


def _drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def real_servers():
    """Made the first time a test runs on PostgreSQL + RabbitMQ; everything it made is gone when the session ends."""
    if not (_pg_reachable() and _reachable(RABBIT_HOST, RABBIT_PORT)):
        message = "PostgreSQL or RabbitMQ is not running on 127.0.0.1"
        if REQUIRE_REAL:
            pytest.fail(message + " (CCS_REQUIRE_REAL_BACKENDS=1)")
        pytest.skip(message)
    run = uuid.uuid4().hex[:10]
    servers = RealServers(run, Vhosts(run))
    yield servers
    servers.close()


def _real_backend(tmp_path, servers: RealServers, migrated: bool) -> Backend:
    """Databases of the test's own (copies of the migrated templates if it takes `migrated`, else empty), and a
    vhost of its own; the databases are dropped and the vhost deleted in the background after the test."""
    run = uuid.uuid4().hex[:10]
    backend = Backend("postgres+rabbitmq", {"CCS_VAR_DIR": str(tmp_path / "var")})
    databases = [f"ccs_{run}_{name}" for name in SERVICES]
    vhost = servers.vhosts.take()
    backend.cleanups.append(lambda: servers.vhosts.give_back(vhost))
    backend.cleanups.append(lambda: servers.drop_later(databases))
    try:
        templates = servers.migrated_templates() if migrated else {}
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name, database in zip(SERVICES, databases):
                template = f' TEMPLATE "{templates[name]}"' if migrated else ""
                conn.execute(f'CREATE DATABASE "{database}"{template}')
                backend.env[f"{name.upper()}_DATABASE_URL"] = _pg_url(database)
    except BaseException:  # the fixture will not get to its cleanups
        for cleanup in backend.cleanups:
            cleanup()
        raise
    backend.env["BROKER_URL"] = f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{vhost}"
    return backend


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory):
    """A folder with each service's SQLite database migrated to the newest schema, once for the session."""
    from shared.db import upgrade

    folder = tmp_path_factory.mktemp("migrated-sqlite")
    for name in SERVICES:
        upgrade(name, f"sqlite:///{folder / f'{name}.sqlite3'}")
    return folder


@pytest.fixture(params=["embedded", pytest.param("postgres+rabbitmq", marks=pytest.mark.real_backends)])
def backend(request, tmp_path, monkeypatch):
    """Each test that takes this runs twice: SQLite + filesystem bus, and PostgreSQL + RabbitMQ. A test that takes
    `migrated` starts from copies of databases migrated once per session; any other, from empty ones."""
    migrated = "migrated" in request.fixturenames
    if request.param == "embedded":
        chosen = Backend("embedded", {"CCS_VAR_DIR": str(tmp_path / "var")})
        if migrated:
            shutil.copytree(request.getfixturevalue("sqlite_templates"), tmp_path / "var")
    else:
        chosen = _real_backend(tmp_path, request.getfixturevalue("real_servers"), migrated)
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
    """Every service's database at the newest schema, on the test's backend (`backend` copied them so)."""
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
