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
from typing import Callable, Iterator

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


class MadeAhead:
    """Fresh things the tests take one of each (a RabbitMQ vhost, a set of databases), made a batch at a time ahead of
    them and done away with after them, in a background thread, so neither waits on a test's critical path.

    Each `rabbitmqctl` call boots an Erlang VM (about a second), and a vhost took three (add, permit, delete); each
    CREATE DATABASE copies a template and each DROP waits for a checkpoint. Here `make(n)` makes n at once and
    `discard(things)` does away with many at once. Each test still has its own that nothing has used; everything
    made is done away with by the end of the session (`close`).
    """

    def __init__(self, name: str, make: Callable[[int], list], discard: Callable[[list], None], batch: int):
        self.make, self.discard, self.batch = make, discard, batch
        self.ready: list = []
        self.used: list = []
        self.failure: Exception | None = None
        self.closing = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._make_and_discard, name=f"test-{name}", daemon=True)
        self.thread.start()

    def take(self):
        """One that no test has used; waits while the next batch is made."""
        with self.changed:
            self.changed.wait_for(lambda: self.ready or self.failure)
            if not self.ready:
                raise RuntimeError(f"could not make {self.thread.name} for the tests") from self.failure
            self.changed.notify_all()  # the thread makes more when few are left
            return self.ready.pop(0)

    def give_back(self, thing) -> None:
        """A test has finished with it: do away with it soon."""
        with self.changed:
            self.used.append(thing)
            self.changed.notify_all()

    def close(self) -> None:
        """Stop making, and do away with every one made, used or not."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.thread.join()
        self.discard(self.used + self.ready)

    def _make_and_discard(self) -> None:
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.closing or self._low() or self.used)
                if self.closing:
                    return
                low = self._low()
                discard, self.used = ([], self.used) if low else (self.used, [])
            try:
                made = self.make(self.batch) if low else []
            except Exception as error:  # a test waiting in `take` says so
                with self.changed:
                    self.failure = error
                    self.changed.notify_all()
                return
            self.discard(discard)
            with self.changed:
                self.ready += made
                self.changed.notify_all()

    def _low(self) -> bool:
        return len(self.ready) < (self.batch + 1) // 2


def _add_vhosts(names: list[str]) -> list[str]:
    """Make vhosts on which guest may do everything, with one rabbitmqctl call."""
    definitions = {"vhosts": [{"name": name} for name in names],
                   "permissions": [{"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
                                   for name in names]}
    # from standard input: with no file named (3.10 takes "-" for a file's name)
    subprocess.run(["rabbitmqctl", "-q", "import_definitions", "--format", "json"], input=json.dumps(definitions),
                   text=True, check=True, capture_output=True)
    return names


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
    """What the PostgreSQL + RabbitMQ tests of one session share: vhosts and sets of databases (one per service)
    made ahead of them, the migrated template databases (made the first time a test asks for `migrated`), and the
    threads that drop the tests' databases."""

    run: str
    # a test's four databases dropped at once, and the next test's too if it ends first
    dropping: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "test-databases"))
    drops: list = field(default_factory=list)
    templates: dict[str, str] = field(default_factory=dict)
    pools: dict[bool, MadeAhead] = field(default_factory=dict)  # sets of databases: migrated (True) or empty
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self):
        self.vhosts = MadeAhead("vhosts", lambda n: _add_vhosts([f"ccs-{self.run}-{next(self.numbers)}"
                                                                 for _ in range(n)]), _delete_vhosts, batch=8)
        self.making = threading.Lock()

    def databases(self, migrated: bool) -> dict[str, str]:
        """A database of each service (name by service) that no test has used: migrated to the newest schema, or
        empty. The first time, a thread starts making them a few at a time ahead of the tests."""
        with self.making:
            if migrated not in self.pools:
                self.pools[migrated] = MadeAhead("migrated databases" if migrated else "empty databases",
                                                 lambda n: self._make_databases(n, migrated), self._drop_sets,
                                                 batch=4 if migrated else 2)
        return self.pools[migrated].take()

    def give_back(self, databases: dict[str, str], migrated: bool) -> None:
        self.pools[migrated].give_back(databases)

    def _make_databases(self, sets: int, migrated: bool) -> list[dict[str, str]]:
        templates = self._migrated_templates() if migrated else {}
        made = []
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for _ in range(sets):
                number = next(self.numbers)
                databases = {name: f"ccs_{self.run}_{number}_{name}" for name in SERVICES}
                for name, database in databases.items():
                    template = f' TEMPLATE "{templates[name]}"' if migrated else ""
                    conn.execute(f'CREATE DATABASE "{database}"{template}')
                made.append(databases)
        return made

    def _migrated_templates(self) -> dict[str, str]:
        """Each service's template database, migrated to the newest schema once for the session."""
        from shared.db import upgrade

        if not self.templates:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                for name in SERVICES:
                    conn.execute(f'CREATE DATABASE "ccs_{self.run}_template_{name}"')
                    self.templates[name] = f"ccs_{self.run}_template_{name}"
            for name, template in self.templates.items():
                # the URL as SQLAlchemy takes it; upgrade leaves no connection open (a template must have none)
                upgrade(name, "postgresql+psycopg://" + _pg_url(template).split("://", 1)[1])
        return self.templates

    def _drop_sets(self, sets: list[dict[str, str]]) -> None:
        self.drop_later([database for databases in sets for database in databases.values()])

    def drop_later(self, databases) -> None:
        """Drop databases in the background, each in a thread of its own: each DROP DATABASE waits for a
        checkpoint, and drops that wait at the same time share one."""
        self.drops += [self.dropping.submit(_drop_database, name) for name in databases]

    def close(self) -> None:
        """Drop every database made (the templates last), wait for every drop (raising what any raised), and
        delete the vhosts."""
        try:
            for pool in self.pools.values():
                pool.close()
            self.drop_later(self.templates.values())
            self.dropping.shutdown(wait=True)
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
    servers = RealServers(uuid.uuid4().hex[:10])
    yield servers
    servers.close()


def _real_backend(tmp_path, servers: RealServers, migrated: bool) -> Backend:
    """Databases of the test's own (copies of the migrated templates if it takes `migrated`, else empty), and a
    vhost of its own, each made ahead and done away with in the background after the test."""
    backend = Backend("postgres+rabbitmq", {"CCS_VAR_DIR": str(tmp_path / "var")})
    vhost = servers.vhosts.take()
    backend.cleanups.append(lambda: servers.vhosts.give_back(vhost))
    try:
        databases = servers.databases(migrated)
    except BaseException:  # the fixture will not get to its cleanups
        servers.vhosts.give_back(vhost)
        raise
    backend.cleanups.append(lambda: servers.give_back(databases, migrated))
    for name, database in databases.items():
        backend.env[f"{name.upper()}_DATABASE_URL"] = _pg_url(database)
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
