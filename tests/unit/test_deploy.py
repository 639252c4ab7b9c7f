"""The production deployment (docker-compose.yml and deploy/) agrees with the code it runs.

No Docker engine is needed: the compose file is read as YAML, its commands are parsed by the real `ccs` CLI,
its environment is checked against what the code reads, and nginx's routing is checked against the
routes each service declares (shared/service.py), from which `ccs deploy nginx` writes it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml

from shared import cli, config, frontdoor
from shared.config import SERVICES
from shared.service import routes

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
SERVICE_PREFIXES = tuple(f"{name.upper()}_" for name in SERVICES)
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def read(path: Path) -> str:
    """A file's text."""
    return path.read_text(encoding="utf-8")


# --- reading the files --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    """docker-compose.yml as compose reads it (anchors and merge keys resolved)."""
    return yaml.safe_load(read(COMPOSE_FILE))


@pytest.fixture(scope="module")
def project(compose) -> dict[str, dict]:
    """The compose services that run the project's own image, built from deploy/Dockerfile."""
    return {name: spec for name, spec in compose["services"].items()
            if isinstance(spec.get("build"), dict) and spec["build"].get("dockerfile") == "deploy/Dockerfile"}


def interpolate(value: str) -> str:
    """A compose value with `${VAR:-default}` as its default and any other variable as a stand-in value."""
    def replace(match: re.Match) -> str:
        name, operator, argument = match.groups()
        if operator in ("-", ":-"):
            return argument
        return f"test-{name.lower().replace('_', '-')}"

    return VARIABLE.sub(replace, value).replace("$$", "$")


def environment(spec: dict) -> dict[str, str]:
    """A compose service's environment as a dict, interpolated."""
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: interpolate(str(value)) for name, value in env.items()}


def ccs_invocations(command: str | list[str]) -> list[list[str]]:
    """The argv (after `ccs`) of each `ccs` command in a compose command, including `sh -c "a && exec b"` forms."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv = list(lexer)
    segments, current = [], []
    for token in argv + [";"]:
        if token in ("&&", "||", ";", "&", "|"):
            if current:
                segments.append(current)
            current = []
        elif token == "exec" and not current:
            continue
        else:
            current.append(interpolate(token))
    for segment in segments:
        assert segment[0] == "ccs", f"{' '.join(segment)!r} is not a ccs command"
    return [segment[1:] for segment in segments]


def parse_ccs(argv: list[str]) -> tuple[list[str], dict]:
    """Parse argv with the real `ccs` CLI, without running anything: the command path and its parameters."""
    context = cli.main.make_context("ccs", list(argv))
    command, args, path = cli.main, list(argv), []
    while isinstance(command, click.Group):
        if not args:
            raise click.UsageError(f"ccs {' '.join(path)} needs a command")
        name, *args = args
        found = command.get_command(context, name)
        if found is None:
            raise click.UsageError(f"ccs has no command {' '.join(path + [name])}")
        path.append(name)
        command = found
    leaf = command.make_context(path[-1], args, parent=context)
    return path, leaf.params


def listening_port(spec: dict) -> int:
    """The port a web or front door container's `ccs` command listens on."""
    for argv in ccs_invocations(spec["command"]):
        path, params = parse_ccs(argv)
        if path in (["web"], ["frontdoor"]):
            return params["port"]
    raise AssertionError(f"{spec['command']} serves nothing")


def owner_of(container: str, project: dict[str, dict]) -> str | None:
    """The service a compose service is the web process of, or None for the front door (which serves the rest)."""
    paths = [parse_ccs(argv) for argv in ccs_invocations(project[container]["command"])]
    for path, params in paths:
        if path == ["web"]:
            return params["service"]
        if path == ["frontdoor"]:
            return None
    raise AssertionError(f"{container} is neither a service's web process nor the front door")


# --- the CLI commands ---------------------------------------------------------------------------------------------

def test_every_service_package_has_a_web_and_a_worker_from_the_project_image(project):
    """Each package under services/ is a configured service with a `<svc>-web` and a `<svc>-worker` container."""
    packages = {path.parent.name for path in (ROOT / "services").glob("*/bootstrap.py")}
    assert packages == set(SERVICES)
    for name in SERVICES:
        assert f"{name}-web" in project and f"{name}-worker" in project


def test_the_cli_parser_refuses_what_ccs_would_refuse():
    """The parsing helper really checks commands, arguments and options against the CLI."""
    assert parse_ccs(["web", "intake", "--port", "8000"]) == (
        ["web"], {"service": "intake", "port": 8000, "host": "0.0.0.0", "workers": 2})
    for argv in (["web", "intake", "--no-such-option"], ["web", "nowhere"], ["serve", "intake"], ["worker"]):
        with pytest.raises(click.UsageError):
            parse_ccs(argv)
    assert ccs_invocations(["sh", "-c", "ccs migrate x&&exec ccs web x --port 1"]) == [
        ["migrate", "x"], ["web", "x", "--port", "1"]]


def test_every_project_container_runs_ccs_commands_the_cli_accepts(project):
    """Each command line in the compose file parses with the real click CLI."""
    for container, spec in project.items():
        invocations = ccs_invocations(spec["command"])
        assert invocations, f"{container} runs no ccs command"
        for argv in invocations:
            parse_ccs(argv)


@pytest.mark.parametrize("name", SERVICES)
def test_web_migrates_its_own_database_then_serves_it_and_worker_consumes_for_it(project, name):
    """`<svc>-web` runs `ccs migrate <svc>` and then `ccs web <svc>`; `<svc>-worker` runs `ccs worker <svc>`."""
    web = [parse_ccs(argv) for argv in ccs_invocations(project[f"{name}-web"]["command"])]
    assert [path for path, _ in web] == [["migrate"], ["web"]]
    assert web[0][1]["services"] == (name,)
    assert web[1][1]["service"] == name and web[1][1]["host"] == "0.0.0.0"
    worker = [parse_ccs(argv) for argv in ccs_invocations(project[f"{name}-worker"]["command"])]
    assert worker == [(["worker"], {"service": name})]


# --- environment --------------------------------------------------------------------------------------------------

class RecordingEnviron(dict):
    """An os.environ stand-in that remembers every name the code looks up."""

    def __init__(self, values: dict[str, str]):
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def names_read(monkeypatch, tmp_path, call) -> set[str]:
    """The environment variables `call()` looks up."""
    recorder = RecordingEnviron({"CCS_VAR_DIR": str(tmp_path), "CCS_SECRET_KEY": "test"})
    with monkeypatch.context() as patch:
        patch.setattr(os, "environ", recorder)
        call()
    return recorder.read


def test_environment_names_are_ones_the_code_reads(project, monkeypatch, tmp_path):
    """Service-prefixed names, BROKER_URL and the other settings are names shared/config.py reads; a typo fails."""
    read_by_config = names_read(monkeypatch, tmp_path, lambda: [config.load(n) for n in SERVICES + ("cli",)])
    read_by_frontdoor = names_read(monkeypatch, tmp_path, frontdoor.create_app_from_env)
    assert {f"{name.upper()}_DATABASE_URL" for name in SERVICES} | {"BROKER_URL"} <= read_by_config
    source = "\n".join(read(path) for folder in ("shared", "services") for path in (ROOT / folder).rglob("*.py"))
    for container, spec in project.items():
        for name in environment(spec):
            if name.startswith(SERVICE_PREFIXES) or name == "BROKER_URL":
                assert name in read_by_config, f"{container} sets {name}, which shared/config.py does not read"
            elif container == "frontdoor":
                assert name in read_by_frontdoor, f"the front door does not read {name}"
            else:
                assert name in read_by_config or f'"{name}"' in source, f"{container} sets {name}, read by nothing"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_and_its_worker_get_a_postgres_database_the_init_script_creates(project, compose, name,
                                                                                    monkeypatch):
    """`<SVC>_DATABASE_URL` reaches config as a psycopg URL for a database deploy/postgres-init.sql creates."""
    created = set(re.findall(r"CREATE DATABASE\s+\"?(\w+)\"?", read(DEPLOY / "postgres-init.sql"), re.I))
    assert created == set(SERVICES)
    for container in (f"{name}-web", f"{name}-worker"):
        url = environment(project[container])[f"{name.upper()}_DATABASE_URL"]
        monkeypatch.setenv(f"{name.upper()}_DATABASE_URL", url)
        parts = urlsplit(config.database_url(name))
        assert parts.scheme == "postgresql+psycopg"
        assert parts.hostname == "postgres" and parts.path.lstrip("/") == name
        assert parts.username == environment(compose["services"]["postgres"])["POSTGRES_USER"]
    mounts = compose["services"]["postgres"]["volumes"]
    assert any(m.startswith("./deploy/postgres-init.sql:/docker-entrypoint-initdb.d/") for m in mounts)


def test_every_project_container_reaches_rabbitmq_as_the_user_and_vhost_it_creates(project, compose):
    """BROKER_URL names the rabbitmq service, its default user and its default vhost."""
    rabbit = environment(compose["services"]["rabbitmq"])
    for container, spec in project.items():
        if container == "frontdoor":
            continue
        parts = urlsplit(environment(spec)["BROKER_URL"])
        assert parts.scheme == "amqp" and parts.hostname == "rabbitmq" and parts.port == 5672
        assert parts.username == rabbit["RABBITMQ_DEFAULT_USER"] and parts.password == rabbit["RABBITMQ_DEFAULT_PASS"]
        assert parts.path.lstrip("/") == rabbit["RABBITMQ_DEFAULT_VHOST"]


def test_every_project_container_shares_one_secret_key(project):
    """Tokens signed by one service are checked by another, so CCS_SECRET_KEY is the same everywhere."""
    keys = {environment(spec).get("CCS_SECRET_KEY") for name, spec in project.items() if name != "frontdoor"}
    assert len(keys) == 1 and None not in keys


def test_the_front_door_reaches_each_service_web_container(project, monkeypatch, tmp_path):
    """CCS_<SERVICE>_URL on the front door points at `<svc>-web` on the port it listens on."""
    env = environment(project["frontdoor"])
    for name in SERVICES:
        parts = urlsplit(env[f"CCS_{name.upper()}_URL"])
        assert parts.hostname == f"{name}-web"
        assert parts.port == listening_port(project[f"{name}-web"])


def test_every_required_variable_is_explained_in_the_deploy_readme():
    """Each `${VAR:?...}` the compose file needs is named in deploy/README.md."""
    required = {name for name, operator, _ in VARIABLE.findall(read(COMPOSE_FILE)) if "?" in operator}
    assert required
    readme = read(DEPLOY / "README.md")
    assert not [name for name in required if name not in readme]


# --- start-up order and health ------------------------------------------------------------------------------------

def test_depends_on_names_services_and_waits_only_on_ones_with_healthchecks(compose):
    """Every depends_on target exists, and a `service_healthy` condition has a healthcheck to wait for."""
    services = compose["services"]
    for name, spec in services.items():
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, condition in depends.items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            if condition["condition"] == "service_healthy":
                assert "test" in services[target].get("healthcheck", {}), f"{target} has no healthcheck"


def test_workers_start_after_their_web_has_migrated_and_the_broker_is_up(compose):
    """A worker waits for its web container (healthy means migrated) and for RabbitMQ."""
    for name in SERVICES:
        depends = compose["services"][f"{name}-worker"]["depends_on"]
        assert depends[f"{name}-web"]["condition"] == "service_healthy"
        assert depends["rabbitmq"]["condition"] == "service_healthy"


def test_postgres_and_rabbitmq_have_healthchecks(compose):
    """The backing services report health, so the others can wait for them."""
    assert "pg_isready" in compose["services"]["postgres"]["healthcheck"]["test"]
    assert "rabbitmq-diagnostics" in compose["services"]["rabbitmq"]["healthcheck"]["test"]


def healthcheck_url(spec: dict):
    """The parts of the address a container's healthcheck asks."""
    return urlsplit(re.search(r"https?://[^'\"\s]+", " ".join(spec["healthcheck"]["test"])).group(0))


@pytest.mark.parametrize("name", SERVICES)
def test_web_healthcheck_asks_readiness_on_the_port_the_service_answers(project, name, monkeypatch, tmp_path):
    """Healthy means ready to serve (workers and nginx wait on it): the healthcheck asks /readyz/<service> on the
    port `ccs web` binds, which answers 200 once the database is migrated and the broker reachable, 503 before."""
    from shared.db import upgrade
    from shared.service import get

    spec = project[f"{name}-web"]
    parts = healthcheck_url(spec)
    assert parts.port == listening_port(spec)
    assert parts.path == f"/readyz/{name}"
    assert spec["depends_on"]["rabbitmq"]["condition"] == "service_healthy"  # ready needs the broker
    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CCS_SECRET_KEY", "test")
    monkeypatch.delenv("BROKER_URL", raising=False)  # the filesystem bus in tmp_path
    monkeypatch.setenv(f"{name.upper()}_DATABASE_URL", f"sqlite:///{tmp_path / name}.sqlite3")
    app = get(name).create_app()
    try:
        assert app.test_client().get(parts.path).status_code == 503  # not migrated yet (`ccs migrate` runs first)
        upgrade(name, f"sqlite:///{tmp_path / name}.sqlite3")
        assert app.test_client().get(parts.path).status_code == 200
        assert app.test_client().get(f"/readyz/not-{name}").status_code == 404
    finally:
        app.extensions["ccs"].engine.dispose()


@pytest.mark.parametrize("name", SERVICES)
def test_worker_healthcheck_asks_readiness_on_its_metrics_port(project, name):
    """A worker is healthy once its consumer is connected and its database answers: its /readyz, on the port its
    CCS_METRICS_PORT names, which a worker with its consumer connected answers 200 and one without 503."""
    from shared.telemetry import WorkerReadiness, worker_app

    spec = project[f"{name}-worker"]
    parts = healthcheck_url(spec)
    assert parts.port == int(spec["environment"]["CCS_METRICS_PORT"]) and parts.path == "/readyz"
    flag = WorkerReadiness()
    app = worker_app(name, None, None, flag)

    def status() -> str:
        answered = []
        app({"PATH_INFO": parts.path, "REQUEST_METHOD": "GET"}, lambda status, headers: answered.append(status))
        return answered[0]

    assert status().startswith("503")
    flag.set(True)
    assert status().startswith("200")


def test_named_volumes_are_declared(compose):
    """Every named volume a service mounts is declared at the top level."""
    declared = set(compose.get("volumes") or {})
    for name, spec in compose["services"].items():
        for mount in spec.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


# --- nginx --------------------------------------------------------------------------------------------------------

def nginx_config() -> str:
    """deploy/nginx.conf without comments."""
    return re.sub(r"#[^\n]*", "", read(DEPLOY / "nginx.conf"))


def nginx_locations() -> list[tuple[str, str, str]]:
    """Each location block as (modifier, pattern, the host or upstream its proxy_pass names)."""
    locations = []
    for modifier, pattern, body in re.findall(r"location\s+(?:(=|~\*|~|\^~)\s+)?(\S+)\s*\{([^{}]*)\}",
                                              nginx_config()):
        target = re.search(r"proxy_pass\s+https?://([^/;\s]+)", body)
        assert target, f"location {pattern} passes to nothing"
        locations.append((modifier, pattern, target.group(1)))
    return locations


def nginx_upstreams() -> dict[str, list[str]]:
    """Each upstream block's name and its servers (host:port)."""
    return {name: re.findall(r"server\s+([^\s;]+)", body)
            for name, body in re.findall(r"upstream\s+(\S+)\s*\{([^{}]*)\}", nginx_config())}


def nginx_choose(locations: list[tuple[str, str, str]], path: str) -> str | None:
    """The proxy_pass target nginx picks for a path: exact, then ^~ longest prefix, then regexes in order."""
    for modifier, pattern, target in locations:
        if modifier == "=" and path == pattern:
            return target
    prefixes = [(pattern, modifier, target) for modifier, pattern, target in locations
                if modifier in ("", "^~") and path.startswith(pattern)]
    longest = max(prefixes, key=lambda item: len(item[0])) if prefixes else None
    if longest and longest[1] == "^~":
        return longest[2]
    for modifier, pattern, target in locations:
        if modifier in ("~", "~*") and re.search(pattern, path, re.I if modifier == "~*" else 0):
            return target
    return longest[2] if longest else None


def test_nginx_upstreams_are_compose_services_on_the_ports_they_listen_on(project):
    """Every upstream server is a project container, addressed on the port its `ccs` command binds."""
    upstreams = nginx_upstreams()
    assert upstreams
    for name, servers in upstreams.items():
        assert servers, f"upstream {name} has no servers"
        for server in servers:
            host, _, port = server.partition(":")
            assert host in project, f"upstream {name} names {host}, which is not a project container"
            assert int(port) == listening_port(project[host])


def test_nginx_routes_every_path_where_the_development_front_door_does(project):
    """Each ROUTES prefix (itself and below it, not lookalikes) reaches its service; the rest reaches `frontdoor`."""
    upstreams = nginx_upstreams()
    locations = nginx_locations()
    paths = ["/", "/docs", "/docs/static/swagger-ui.css", "/openapi.json", "/no-such-thing"]
    for prefix in routes():
        paths += [prefix, prefix + "/", prefix + "/3f2c/cancel", prefix + "x"]
    for path in paths:
        target = nginx_choose(locations, path)
        assert target is not None, f"nginx has no location for {path}"
        hosts = {server.partition(":")[0] for server in upstreams.get(target, [target])}
        owners = {owner_of(host, project) for host in hosts}
        assert owners == {frontdoor.route(path)}, f"nginx sends {path} to {hosts}"


def test_nginx_conf_is_what_ccs_deploy_nginx_writes_from_the_services_routes():
    """The routes are declared once, by each service; deploy/nginx.conf is generated from them and kept current."""
    assert read(DEPLOY / "nginx.conf") == frontdoor.nginx_config(), "run `ccs deploy nginx` and commit the result"


def test_the_front_door_behind_nginx_serves_the_index_docs_and_merged_openapi(project):
    """What no service owns goes to a container running the Python front door, which serves "/" itself."""
    target = nginx_choose(nginx_locations(), "/")
    hosts = {server.partition(":")[0] for server in nginx_upstreams().get(target, [target])}
    assert hosts == {"frontdoor"}
    assert [path for path, _ in map(parse_ccs, ccs_invocations(project["frontdoor"]["command"]))] == [["frontdoor"]]
    client = frontdoor.create_app({name: "http://127.0.0.1:9" for name in SERVICES}).test_client()
    assert client.get("/").status_code == 200 and client.get("/docs").status_code == 200


def test_nginx_is_published_on_port_8000_with_the_config_mounted(compose):
    """The front door listens where the README says, with deploy/nginx.conf as its server configuration."""
    nginx = compose["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    listen = int(re.search(r"listen\s+(\d+)", nginx_config()).group(1))
    assert any(str(port).split(":")[-2:] == ["8000", str(listen)] for port in nginx["ports"])


# --- the image ----------------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """deploy/Dockerfile as (INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    lines = [line for line in read(DEPLOY / "Dockerfile").splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def test_the_image_is_built_from_the_repository_root_with_deploy_dockerfile(project):
    """Every project container builds the same image from the repository root."""
    builds = {(spec["build"]["context"], spec["build"]["dockerfile"], spec["image"]) for spec in project.values()}
    assert len(builds) == 1
    context, dockerfile, _ = builds.pop()
    assert (COMPOSE_FILE.parent / context).resolve() == ROOT
    assert (ROOT / dockerfile).is_file()


def test_dockerfile_copies_only_paths_that_exist_and_runs_as_a_non_root_user():
    """Each COPY source (from the build context) exists, the base is python:3.11-slim, and the user is not root."""
    instructions = dockerfile_instructions()
    copies = 0
    for instruction, arguments in instructions:
        if instruction not in ("COPY", "ADD"):
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        sources = [word for word in words if not word.startswith("--")][:-1]
        assert sources, f"{instruction} {arguments} copies nothing"
        for source in sources:
            assert (ROOT / source).exists(), f"{instruction} {source}: no such path in the build context"
            copies += 1
    assert copies
    assert all(args.split()[0] == "python:3.11-slim" for instr, args in instructions if instr == "FROM")
    users = [arguments.split(":")[0] for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
