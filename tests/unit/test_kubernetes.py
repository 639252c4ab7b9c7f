"""The Kubernetes manifests (deploy/kubernetes), the Prometheus alerts (deploy/prometheus) and the Grafana dashboard
(deploy/grafana) are valid and agree with the code they run.

No cluster is needed. `kubectl kustomize` renders each kustomization; kubernetes-validate checks every object of a
Kubernetes API kind against that API's JSON schema, strictly (an unknown field fails). kubernetes-validate has no
schema for the operators' custom resources (CloudNativePG's `Cluster`, the RabbitMQ Cluster Operator's
`RabbitmqCluster`), so those are checked here by hand: apiVersion and kind, the fields their CRDs require, no field
their CRDs do not have (at the levels used), and that they agree with what the services are given.
PromQL is parsed with promql-parser, and every metric it names must be one the code exports (found by reading the
prometheus_client definitions in shared/ and services/) or be one of EXTERNAL_METRICS, by name: RabbitMQ's and
ingress-nginx's.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import click
import kubernetes_validate
import promql_parser
import pytest
import yaml

from shared import cli
from shared.config import SERVICES
from shared.service import routes

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("base", "overlays/production")
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
KUBERNETES_VERSION = "1.32.0"  # the oldest minor version still supported upstream when this was written

POSTGRES, RABBITMQ = "ccs-postgres", "ccs-rabbitmq"
INGRESS_NAMESPACE, MONITORING_NAMESPACE = "ingress-nginx", "monitoring"
# Variables that exist only to be expanded into another one's value (`$(POSTGRES_PASSWORD)`): each from a Secret.
HELPER_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "RABBITMQ_USER", "RABBITMQ_PASSWORD"}
# Set in Kubernetes only: the production overlay's queue type (for shared/topology.py; see deploy/README.md).
KUBERNETES_ONLY_VARIABLES = {"CCS_QUEUE_TYPE"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCOUNT_SID|_KEY$")
EXPANSION = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

# Metrics the alerts and dashboard may use that the services do not export: who exports them, and which.
EXTERNAL_METRICS = {
    # RabbitMQ's Prometheus plugin (rabbitmq_prometheus, port 15692), per queue with return_per_object_metrics.
    "rabbitmq_": {"rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked", "rabbitmq_queue_messages",
                  "rabbitmq_queue_consumers"},
    # The ingress-nginx controller: the services count no HTTP responses themselves.
    "nginx_ingress_controller_": {"nginx_ingress_controller_requests",
                                  "nginx_ingress_controller_request_duration_seconds_bucket"},
}
EXTERNAL_NAMES = set().union(*EXTERNAL_METRICS.values())
# Labels Prometheus adds to every series it scrapes (with the usual Kubernetes relabelling).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container"}


# --- rendering ----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _render(overlay: str) -> tuple[dict, ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render deploy/kubernetes (it is on the project's machines; see deploy/README.md)"
    done = subprocess.run([kubectl, "kustomize", str(KUBERNETES / overlay)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return tuple(document for document in yaml.safe_load_all(done.stdout) if document)


def render(overlay: str) -> list[dict]:
    """The objects an overlay renders to (a fresh copy: a test may change it)."""
    return json.loads(json.dumps(_render(overlay)))


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request) -> list[dict]:
    return render(request.param)


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return render("overlays/production")


def find(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def config_map(objects: list[dict], name: str) -> dict:
    """A ConfigMap by the name the manifests give it (kustomize adds a hash of its contents)."""
    found = [o for o in objects if o["kind"] == "ConfigMap" and re.fullmatch(rf"{name}(-[a-z0-9]+)?",
                                                                              o["metadata"]["name"])]
    assert len(found) == 1, f"expected one ConfigMap {name}"
    return found[0]


def pod_templates(objects: list[dict]) -> list[tuple[dict, dict]]:
    """(owner, pod template) for every Deployment and Job."""
    return [(o, o["spec"]["template"]) for o in objects if o["kind"] in ("Deployment", "Job")]


def containers(template: dict) -> list[dict]:
    return [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]


def environment(objects: list[dict], container: dict) -> dict[str, dict]:
    """A container's variables: each explicit entry, and each key of the ConfigMaps it takes whole."""
    variables = {}
    for source in container.get("envFrom", []):
        data = config_map(objects, source["configMapRef"]["name"].rsplit("-", 1)[0])["data"]
        variables.update({name: {"name": name, "value": value} for name, value in data.items()})
    variables.update({entry["name"]: entry for entry in container.get("env", [])})
    return variables


def parse_ccs(argv: list[str]) -> tuple[list[str], dict]:
    """Parse a `ccs` command line with the real CLI, running nothing: the command path and its parameters."""
    context = cli.main.make_context("ccs", list(argv))
    command, args, path = cli.main, list(argv), []
    while isinstance(command, click.Group):
        name, *args = args
        command = command.get_command(context, name)
        assert command is not None, f"ccs has no command {' '.join(path + [name])}"
        path.append(name)
    return path, command.make_context(path[-1], args, parent=context).params


def ccs_argv(container: dict) -> list[str]:
    command = [*container.get("command", []), *container.get("args", [])]
    assert command[0] == "ccs", f"{container['name']} runs {command}, not a ccs command"
    return command[1:]


# --- schemas ------------------------------------------------------------------------------------------------------

# The fields of CloudNativePG's Cluster (postgresql.cnpg.io/v1) and the RabbitMQ Cluster Operator's RabbitmqCluster
# (rabbitmq.com/v1beta1) at the levels the manifests use, from their CRDs.
CLUSTER_SPEC = {
    "affinity", "backup", "bootstrap", "certificates", "description", "enablePDB", "enableSuperuserAccess", "env",
    "envFrom", "ephemeralVolumeSource", "ephemeralVolumesSizeLimit", "externalClusters", "failoverDelay",
    "imageCatalogRef", "imageName", "imagePullPolicy", "imagePullSecrets", "inheritedMetadata", "instances",
    "livenessProbeTimeout", "logLevel", "managed", "maxSyncReplicas", "minSyncReplicas", "monitoring",
    "nodeMaintenanceWindow", "plugins", "podSecurityContext", "postgresGID", "postgresUID", "postgresql",
    "primaryUpdateMethod", "primaryUpdateStrategy", "priorityClassName", "probes", "projectedVolumeTemplate",
    "replica", "replicationSlots", "resources", "schedulerName", "seccompProfile", "securityContext",
    "serviceAccountTemplate", "smartShutdownTimeout", "startDelay", "stopDelay", "storage", "superuserSecret",
    "switchoverDelay", "tablespaces", "topologySpreadConstraints", "walStorage",
}
CLUSTER_INITDB = {
    "builtinLocale", "dataChecksums", "database", "encoding", "icuLocale", "icuRules", "import", "locale",
    "localeCType", "localeCollate", "localeProvider", "options", "owner", "postInitApplicationSQL",
    "postInitApplicationSQLRefs", "postInitSQL", "postInitSQLRefs", "postInitTemplateSQL",
    "postInitTemplateSQLRefs", "secret", "walSegmentSize",
}
CLUSTER_NESTED = {
    "bootstrap": {"initdb", "recovery", "pg_basebackup"},
    "storage": {"pvcTemplate", "resizeInUseVolumes", "size", "storageClass"},
    "postgresql": {"enableAlterSystem", "extensions", "ldap", "parameters", "pg_hba", "pg_ident",
                   "promotionTimeout", "shared_preload_libraries", "syncReplicaElectionConstraint", "synchronous"},
    "monitoring": {"customQueriesConfigMap", "customQueriesSecret", "disableDefaultQueries", "enablePodMonitor",
                   "metricsQueriesTTL", "podMonitorMetricRelabelings", "podMonitorRelabelings", "tls"},
    "resources": {"claims", "limits", "requests"},
}
RABBITMQ_SPEC = {
    "affinity", "autoEnableAllFeatureFlags", "delayStartSeconds", "image", "imagePullSecrets", "override",
    "persistence", "rabbitmq", "replicas", "resources", "secretBackend", "service", "skipPostDeploySteps",
    "terminationGracePeriodSeconds", "tls", "tolerations",
}
RABBITMQ_NESTED = {
    "rabbitmq": {"additionalConfig", "additionalPlugins", "advancedConfig", "envConfig", "erlangInetConfig"},
    "persistence": {"emptyDir", "storage", "storageClassName"},
    "resources": {"claims", "limits", "requests"},
}
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def check_fields(spec: dict, top: set[str], nested: dict[str, set[str]], kind: str) -> None:
    assert set(spec) <= top, f"{kind} has no field {sorted(set(spec) - top)}"
    for field, known in nested.items():
        assert set(spec.get(field) or {}) <= known, f"{kind}.spec.{field} has no {sorted(set(spec[field]) - known)}"


def check_postgres_cluster(cluster: dict) -> None:
    """CloudNativePG's Cluster: `spec.instances` (required) and the fields its CRD has."""
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["kind"] == "Cluster"
    assert cluster["metadata"]["name"] == POSTGRES
    spec = cluster["spec"]
    check_fields(spec, CLUSTER_SPEC, CLUSTER_NESTED, "Cluster")
    assert isinstance(spec["instances"], int) and spec["instances"] >= 1
    assert QUANTITY.match(str(spec["storage"]["size"]))
    initdb = spec["bootstrap"]["initdb"]
    assert set(initdb) <= CLUSTER_INITDB, f"initdb has no {sorted(set(initdb) - CLUSTER_INITDB)}"
    assert all(isinstance(value, str) for value in spec.get("postgresql", {}).get("parameters", {}).values())


def check_rabbitmq_cluster(cluster: dict) -> None:
    """The RabbitMQ Cluster Operator's RabbitmqCluster: no field is required; only the ones its CRD has."""
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1" and cluster["kind"] == "RabbitmqCluster"
    assert cluster["metadata"]["name"] == RABBITMQ
    spec = cluster["spec"]
    check_fields(spec, RABBITMQ_SPEC, RABBITMQ_NESTED, "RabbitmqCluster")
    assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1
    assert QUANTITY.match(str(spec["persistence"]["storage"]))
    assert isinstance(spec["rabbitmq"]["additionalConfig"], str)


CUSTOM_RESOURCES = {("postgresql.cnpg.io/v1", "Cluster"): check_postgres_cluster,
                    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): check_rabbitmq_cluster}


def validate(document: dict) -> None:
    """Validate one object: a Kubernetes kind against its schema, a custom resource by hand."""
    check = CUSTOM_RESOURCES.get((document["apiVersion"], document["kind"]))
    if check:
        check(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def rabbitmq_config(cluster: dict) -> dict[str, str]:
    lines = cluster["spec"]["rabbitmq"]["additionalConfig"].splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines if "=" in line)


# --- the manifests ------------------------------------------------------------------------------------------------

def load_generator():
    spec = importlib.util.spec_from_file_location("ccs_kubernetes_generate", KUBERNETES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_manifests_are_current():
    """base/<service>.yaml and base/ingress.yaml are what deploy/kubernetes/generate.py writes from the code."""
    for path, text in load_generator().files().items():
        assert path.exists() and path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is out of date: run .venv/bin/python deploy/kubernetes/generate.py")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates(overlay):
    """Each overlay renders, and every object validates: Kubernetes kinds strictly against the API's schema."""
    documents = render(overlay)
    kinds = {document["kind"] for document in documents}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "Ingress",
            "NetworkPolicy", "ConfigMap", "Cluster", "RabbitmqCluster"} <= kinds
    for document in documents:
        try:
            validate(document)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{document['kind']} {document['metadata']['name']}: {'.'.join(map(str, err.path))}: "
                        f"{err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            pytest.fail(f"no schema for {document['apiVersion']} {document['kind']}: {err.message}")
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "ccs", f"{document['kind']} {document['metadata']['name']}"


def test_the_validator_refuses_what_the_api_server_would():
    """The validation above is real: an unknown field, a wrong type and a custom resource's typo all fail."""
    documents = render("overlays/production")
    deployment = find(documents, "Deployment", "intake-web")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    job = find(documents, "Job", "intake-migrate")
    job["spec"]["backoffLimit"] = "ten"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)
    cluster = find(documents, "Cluster", POSTGRES)
    cluster["spec"]["instance"] = cluster["spec"].pop("instances")
    with pytest.raises((AssertionError, KeyError)):
        validate(cluster)
    rabbit = find(documents, "RabbitmqCluster", RABBITMQ)
    rabbit["spec"]["rabbitmq"]["additionalconfig"] = rabbit["spec"]["rabbitmq"].pop("additionalConfig")
    with pytest.raises((AssertionError, KeyError)):
        validate(rabbit)


@pytest.mark.parametrize("name", SERVICES)
def test_each_web_deployment_probes_its_own_paths(objects, name, monkeypatch, tmp_path):
    """`<svc>-web` runs `ccs web <svc>` on the port it exposes, with liveness on /healthz/<svc> and readiness on
    /readyz/<svc>, paths the service's app serves; an autoscaler keeps at least two, a budget one."""
    from shared.service import get

    deployment = find(objects, "Deployment", f"{name}-web")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    path, params = parse_ccs(ccs_argv(container))
    assert path == ["web"] and params["service"] == name
    (port,) = container["ports"]
    assert port["containerPort"] == params["port"]
    for probe, expected in (("startupProbe", f"/healthz/{name}"), ("livenessProbe", f"/healthz/{name}"),
                            ("readinessProbe", f"/readyz/{name}")):
        assert container[probe]["httpGet"] == {"path": expected, "port": port["name"]}, probe
    autoscaler = find(objects, "HorizontalPodAutoscaler", f"{name}-web")
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                    "name": f"{name}-web"}
    assert autoscaler["spec"]["minReplicas"] >= 2 and "replicas" not in deployment["spec"]
    assert_budget(objects, deployment)

    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CCS_SECRET_KEY", "test")
    monkeypatch.setenv(f"{name.upper()}_DATABASE_URL", f"sqlite:///{tmp_path / name}.sqlite3")
    app = get(name).create_app()
    try:
        adapter = app.url_map.bind("localhost")
        for probe in ("livenessProbe", "readinessProbe"):
            assert adapter.match(container[probe]["httpGet"]["path"], method="GET")
        assert app.test_client().get(f"/healthz/{name}").status_code == 200
    finally:
        app.extensions["ccs"].engine.dispose()


def assert_budget(objects: list[dict], deployment: dict) -> None:
    """A PodDisruptionBudget selects the deployment's pods and lets at least one stay."""
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [b for b in objects if b["kind"] == "PodDisruptionBudget" and selects(b["spec"]["selector"], labels)]
    assert len(budgets) == 1, f"{deployment['metadata']['name']} has {len(budgets)} disruption budgets"
    assert budgets[0]["spec"].get("minAvailable", 0) >= 1 or "maxUnavailable" in budgets[0]["spec"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_worker_runs_twice_with_a_budget(objects, name):
    """`<svc>-worker` runs `ccs worker <svc>` in at least two pods, kept by a disruption budget, with probes on
    the /healthz and /readyz of CCS_METRICS_PORT."""
    deployment = find(objects, "Deployment", f"{name}-worker")
    assert deployment["spec"]["replicas"] >= 2
    assert_budget(objects, deployment)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert parse_ccs(ccs_argv(container)) == (["worker"], {"service": name})
    (port,) = container["ports"]
    assert environment(objects, container)["CCS_METRICS_PORT"]["value"] == str(port["containerPort"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}


def test_every_container_has_requests_and_limits(objects):
    """Every container, init containers included, asks for CPU and memory and is held to limits above that."""
    for owner, template in pod_templates(objects):
        for container in containers(template):
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                where = f"{owner['metadata']['name']}/{container['name']} {kind}"
                request, limit = resources["requests"][kind], resources["limits"][kind]
                assert 0 < quantity(request) <= quantity(limit), where


def quantity(text: str | int) -> float:
    match = QUANTITY.match(str(text))
    assert match, text
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
             "Ti": 2**40}[match.group(2)]
    return float(str(text).removesuffix(match.group(2) or "")) * scale


@pytest.mark.parametrize("name", SERVICES)
def test_migrations_run_as_a_job_that_web_and_worker_pods_wait_for(objects, name):
    """`<svc>-migrate` runs `ccs migrate <svc>`; the service's web and worker pods start only when its database
    is at the newest migration (their init container), with the same database settings as the Job."""
    job = find(objects, "Job", f"{name}-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert parse_ccs(ccs_argv(migrate)) == (["migrate"], {"services": (name,)})
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    script = config_map(objects, "ccs-scripts")
    assert script["data"]["wait-for-migrations.py"] == (KUBERNETES / "base" / "wait-for-migrations.py").read_text()
    for component in ("web", "worker"):
        spec = find(objects, "Deployment", f"{name}-{component}")["spec"]["template"]["spec"]
        (wait,) = spec["initContainers"]
        assert wait["command"] == ["python", "/opt/ccs/wait-for-migrations.py", name]
        assert wait["image"] == migrate["image"] == spec["containers"][0]["image"]
        assert wait["env"] == migrate["env"]
        (mount,) = [m for m in wait["volumeMounts"] if m["mountPath"] == "/opt/ccs"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["configMap"]["name"] == script["metadata"]["name"]


def test_the_wait_for_migrations_script_waits_for_the_newest_revision(monkeypatch, tmp_path, capsys):
    """The init container's script gives up on a database without the newest migration, and passes once it has
    it; it never prints the database's URL."""
    from shared.db import upgrade

    spec = importlib.util.spec_from_file_location("wait_for_migrations", KUBERNETES / "base" / "wait-for-migrations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    url = f"sqlite:///{tmp_path / 'intake.sqlite3'}"
    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("INTAKE_DATABASE_URL", url)
    assert module.main(["intake", "--timeout", "0"]) == 1
    assert "no revision" in capsys.readouterr().err
    upgrade("intake", url)
    assert module.main(["intake", "--timeout", "5", "--interval", "0.1"]) == 0
    output = capsys.readouterr()
    assert "database is at" in output.out and str(tmp_path) not in output.out + output.err


def test_the_ingress_paths_are_the_route_table(objects):
    """The Ingress sends each prefix of the route table (shared.service.routes(), from which nginx.conf is written
    too) to its service's web pods, and everything else to the front door."""
    (ingress,) = [o for o in objects if o["kind"] == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    assert all(path["pathType"] == "Prefix" for path in paths)
    sent = {path["path"]: path["backend"]["service"] for path in paths}
    assert len(sent) == len(paths), "a path is listed twice"
    expected = {prefix: f"{owner}-web" for prefix, owner in routes().items()} | {"/": "frontdoor"}
    assert {path: backend["name"] for path, backend in sent.items()} == expected
    for backend in sent.values():
        service = find(objects, "Service", backend["name"])
        assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
        owner = find(objects, "Deployment", backend["name"])
        assert selects({"matchLabels": service["spec"]["selector"]}, owner["spec"]["template"]["metadata"]["labels"])


def test_production_serves_its_public_address_over_tls(production):
    """The production Ingress answers for PUBLIC_URL's host, with TLS."""
    ingress = find(production, "Ingress", "ccs")
    public = config_map(production, "ccs-config")["data"]["PUBLIC_URL"]
    host = re.match(r"https://([^/:]+)", public).group(1)
    assert ingress["spec"]["rules"][0]["host"] == host
    assert any(host in tls["hosts"] and tls["secretName"] for tls in ingress["spec"]["tls"])


# --- secrets and settings -----------------------------------------------------------------------------------------

def test_no_secret_is_written_into_the_manifests(objects):
    """No Secret object, and every secret a container gets is a reference (secretKeyRef); a URL with credentials
    builds them only from such references."""
    assert not [o for o in objects if o["kind"] == "Secret"]
    for owner, template in pod_templates(objects):
        for container in containers(template):
            from_secrets: set[str] = set()
            for entry in container.get("env", []):
                where = f"{owner['metadata']['name']}/{container['name']} {entry['name']}"
                if "secretKeyRef" in entry.get("valueFrom", {}):
                    from_secrets.add(entry["name"])
                    continue
                assert not SECRET_NAME.search(entry["name"]), f"{where} is not from a Secret"
                value = entry.get("value", "")
                if match := re.match(r"^[a-z+]+://([^@/]*)@", value):
                    credentials = match.group(1)
                    assert EXPANSION.sub("", credentials) == ":", f"{where} has credentials in it"
                    assert set(EXPANSION.findall(credentials)) <= from_secrets, f"{where}: not from a Secret"
    for o in objects:
        if o["kind"] == "ConfigMap" and not o["metadata"]["name"].startswith("ccs-scripts"):
            assert not [key for key in o["data"] if SECRET_NAME.search(key)], o["metadata"]["name"]


def compose_environment(spec: dict) -> dict[str, str]:
    """A compose service's environment, with each `${VAR:-default}` as its default."""
    def default(value: str) -> str:
        return re.sub(r"\$\{[A-Za-z_0-9]+(?::?-([^}]*))?(?::?\?[^}]*)?\}", lambda m: m.group(1) or "", value)

    return {name: default(str(value)) for name, value in (spec.get("environment") or {}).items()}


def compose_ccs_commands(spec: dict) -> list[list[str]]:
    """The argv after `ccs` of each ccs command in a compose command (`sh -c "a && exec b"` included)."""
    argv = spec["command"]
    if argv[:2] == ["sh", "-c"]:
        lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv = list(lexer)
    commands, current = [], []
    for token in [*argv, "&&"]:
        if token in ("&&", ";"):
            commands.append(current)
            current = []
        elif token != "exec" or current:
            current.append(token)
    assert all(command[0] == "ccs" for command in commands)
    return [command[1:] for command in commands]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_gets_what_docker_compose_gives_it(objects, compose, name):
    """The same `ccs` commands and the same variables as under docker compose (less the other services' database
    URLs; plus the Kubernetes-only ones named above); the defaults in the base ConfigMap are compose's."""
    base_config = config_map(render("base"), "ccs-config")["data"]
    for component in ("web", "worker"):
        compose_env = compose_environment(compose[f"{name}-{component}"])
        expected = {variable for variable in compose_env
                    if not variable.endswith("_DATABASE_URL") or variable == f"{name.upper()}_DATABASE_URL"}
        container = find(objects, "Deployment", f"{name}-{component}")["spec"]["template"]["spec"]["containers"][0]
        given = environment(objects, container)
        assert set(given) - HELPER_VARIABLES - KUBERNETES_ONLY_VARIABLES == expected, component
        for variable, entry in given.items():
            if variable in base_config:
                assert base_config[variable] == compose_env[variable], variable
            if variable in compose_env and "value" in entry and variable not in base_config:
                assert entry["value"] == compose_env[variable] or "$(" in entry["value"], variable
    theirs = [parse_ccs(argv) for component in ("web", "worker")
              for argv in compose_ccs_commands(compose[f"{name}-{component}"])]
    owners = [find(objects, "Job", f"{name}-migrate"), find(objects, "Deployment", f"{name}-web"),
              find(objects, "Deployment", f"{name}-worker")]
    ours = [parse_ccs(ccs_argv(owner["spec"]["template"]["spec"]["containers"][0])) for owner in owners]
    assert sorted(map(repr, ours)) == sorted(map(repr, theirs))


def test_the_front_door_gets_what_docker_compose_gives_it(objects, compose):
    """`ccs frontdoor` with each service's address (their Services have compose's names), and PUBLIC_URL."""
    container = find(objects, "Deployment", "frontdoor")["spec"]["template"]["spec"]["containers"][0]
    assert parse_ccs(ccs_argv(container)) == parse_ccs(compose_ccs_commands(compose["frontdoor"])[0])
    given = {entry["name"]: entry for entry in container["env"]}
    for variable, value in compose_environment(compose["frontdoor"]).items():
        assert given[variable]["value"] == value
        find(objects, "Service", re.match(r"http://([^:/]+)", value).group(1))
    assert set(given) - set(compose_environment(compose["frontdoor"])) == {"PUBLIC_URL"}


def test_the_services_reach_the_operators_database_and_broker(objects):
    """The database URLs and BROKER_URL name the operators' Services, Secrets, databases and vhost."""
    cluster = find(objects, "Cluster", POSTGRES)
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    created = {initdb["database"]: initdb["owner"]}
    for statement in initdb.get("postInitSQL", []):
        if match := re.fullmatch(r"CREATE DATABASE (\w+) OWNER (\w+)", statement):
            created[match.group(1)] = match.group(2)
    assert created == {name: initdb["owner"] for name in SERVICES}, "a database per service, owned by its user"
    config = rabbitmq_config(find(objects, "RabbitmqCluster", RABBITMQ))
    for owner, template in pod_templates(objects):
        for container in containers(template):
            env = {entry["name"]: entry for entry in container.get("env", [])}
            for variable, entry in env.items():
                if variable.endswith("_DATABASE_URL"):
                    service = variable.removesuffix("_DATABASE_URL").lower()
                    assert entry["value"] == (f"postgresql+psycopg://$(POSTGRES_USER):$(POSTGRES_PASSWORD)"
                                              f"@{POSTGRES}-rw:5432/{service}")
                    for helper, key in (("POSTGRES_USER", "username"), ("POSTGRES_PASSWORD", "password")):
                        assert env[helper]["valueFrom"]["secretKeyRef"] == {"name": f"{POSTGRES}-app", "key": key}
            if "BROKER_URL" in env:
                assert env["BROKER_URL"]["value"] == (f"amqp://$(RABBITMQ_USER):$(RABBITMQ_PASSWORD)@{RABBITMQ}:5672/"
                                                      f"{config['default_vhost']}")
                for helper, key in (("RABBITMQ_USER", "username"), ("RABBITMQ_PASSWORD", "password")):
                    assert env[helper]["valueFrom"]["secretKeyRef"] == {"name": f"{RABBITMQ}-default-user",
                                                                        "key": key}


def test_production_replicates_the_database_and_the_broker_with_quorum_queues(production):
    """Three PostgreSQL instances; an odd number (three or more) of RabbitMQ nodes, and the services told to
    declare quorum queues."""
    assert find(production, "Cluster", POSTGRES)["spec"]["instances"] >= 3
    replicas = find(production, "RabbitmqCluster", RABBITMQ)["spec"]["replicas"]
    assert replicas >= 3 and replicas % 2 == 1
    assert config_map(production, "ccs-config")["data"]["CCS_QUEUE_TYPE"] == "quorum"
    assert "CCS_QUEUE_TYPE" not in config_map(render("base"), "ccs-config")["data"]


# --- network policies ---------------------------------------------------------------------------------------------

def selects(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if ((operator == "In" and labels.get(key) not in values)
                or (operator == "NotIn" and present and labels[key] in values)
                or (operator == "Exists" and not present) or (operator == "DoesNotExist" and present)):
            return False
    return True


def admitted(objects: list[dict], target: dict[str, str], port: int) -> tuple[list[dict[str, str]], set[str]]:
    """Who may connect to a pod with `target` labels on `port`: the namespace's pods (of `pods(objects)`) and the
    other namespaces, by name."""
    policies = [p for p in objects if p["kind"] == "NetworkPolicy" and "Ingress" in p["spec"]["policyTypes"]
                and selects(p["spec"]["podSelector"], target)]
    assert policies, f"no network policy isolates {target}"
    peers = []
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            opens = not rule.get("ports") or any(
                item["port"] <= port <= item.get("endPort", item["port"]) for item in rule["ports"])
            if opens:
                assert rule.get("from"), f"{policy['metadata']['name']} lets anyone in on {port}"
                peers += rule["from"]
    pods, namespaces = [], set()
    for peer in peers:
        assert "ipBlock" not in peer
        if "namespaceSelector" in peer:
            assert "podSelector" not in peer, "keep peers simple: a namespace, or pods of this one"
            names = peer["namespaceSelector"]["matchLabels"]
            assert set(names) == {"kubernetes.io/metadata.name"}
            namespaces.add(names["kubernetes.io/metadata.name"])
        else:
            pods += [labels for labels in pod_labels(objects) if selects(peer["podSelector"], labels)]
    return pods, namespaces


def pod_labels(objects: list[dict]) -> list[dict[str, str]]:
    """The labels of every pod in the namespace: the project's, and the operators' database and broker pods."""
    return [template["metadata"]["labels"] for _, template in pod_templates(objects)] + [
        POSTGRES_POD, RABBITMQ_POD]


POSTGRES_POD = {"cnpg.io/cluster": POSTGRES, "cnpg.io/instanceRole": "primary"}  # as CloudNativePG labels them
RABBITMQ_POD = {"app.kubernetes.io/name": RABBITMQ, "app.kubernetes.io/component": "rabbitmq",
                "app.kubernetes.io/part-of": "rabbitmq"}  # as the RabbitMQ Cluster Operator labels them


def components(pods: list[dict[str, str]]) -> set[str]:
    return {labels.get("app.kubernetes.io/component") for labels in pods
            if labels.get("app.kubernetes.io/part-of") == "compassionate-communities"}


def test_only_the_services_reach_the_database_and_the_broker(objects):
    """PostgreSQL admits the web, worker and migrations pods (and its own instances and operator); RabbitMQ the
    web and worker pods (and its own nodes); the front door neither."""
    pods, namespaces = admitted(objects, POSTGRES_POD, 5432)
    assert components(pods) == {"web", "worker", "migrations"}
    assert [p for p in pods if p.get("app.kubernetes.io/part-of") != "compassionate-communities"] == [POSTGRES_POD]
    assert namespaces == {"cnpg-system"}
    pods, namespaces = admitted(objects, RABBITMQ_POD, 5672)
    assert components(pods) == {"web", "worker"} and not namespaces
    assert all(p.get("app.kubernetes.io/part-of") == "compassionate-communities" for p in pods)


def test_only_the_ingress_reaches_the_web_pods(objects):
    """Web pods admit the ingress controller, the front door (which fetches their OpenAPI documents) and
    Prometheus; the front door only the ingress controller; workers only Prometheus."""
    for name in SERVICES:
        web = find(objects, "Deployment", f"{name}-web")["spec"]["template"]["metadata"]["labels"]
        pods, namespaces = admitted(objects, web, 8000)
        assert components(pods) == {"frontdoor"} and len(pods) == 1
        assert INGRESS_NAMESPACE in namespaces and namespaces <= {INGRESS_NAMESPACE, MONITORING_NAMESPACE}
        worker = find(objects, "Deployment", f"{name}-worker")["spec"]["template"]["metadata"]["labels"]
        pods, namespaces = admitted(objects, worker, 9100)
        assert not pods and namespaces == {MONITORING_NAMESPACE}
    frontdoor = find(objects, "Deployment", "frontdoor")["spec"]["template"]["metadata"]["labels"]
    assert admitted(objects, frontdoor, 8000) == ([], {INGRESS_NAMESPACE})
    deny = [p for p in objects if p["kind"] == "NetworkPolicy" and p["spec"]["podSelector"] == {}]
    assert deny and all(not p["spec"].get("ingress") for p in deny), "a default-deny policy for the namespace"


# --- metrics, alerts and the dashboard ----------------------------------------------------------------------------

PROMETHEUS_CONSTRUCTORS = {
    "Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary", "Info": "info",
    "Enum": "stateset", "CounterMetricFamily": "counter", "GaugeMetricFamily": "gauge",
    "HistogramMetricFamily": "histogram", "SummaryMetricFamily": "summary", "InfoMetricFamily": "info",
    "StateSetMetricFamily": "stateset",
}


def literal_strings(node: ast.AST | None) -> list[str]:
    if isinstance(node, (ast.List, ast.Tuple)):
        return [item.value for item in node.elts if isinstance(item, ast.Constant) and isinstance(item.value, str)]
    return []


@lru_cache(maxsize=None)
def exported_metrics() -> dict[str, frozenset[str]]:
    """Every series name the code exports with prometheus_client, and its labels: a Counter `foo` as `foo_total`,
    a Histogram as `foo_bucket` (with `le`), `foo_sum` and `foo_count`, and so on."""
    exported: dict[str, frozenset[str]] = {}
    for path in sorted([*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constructors = {alias.asname or alias.name: PROMETHEUS_CONSTRUCTORS[alias.name]
                        for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                        and (node.module or "").startswith("prometheus_client")
                        for alias in node.names if alias.name in PROMETHEUS_CONSTRUCTORS}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in constructors
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                continue
            kind, name = constructors[node.func.id], node.args[0].value
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            labels = frozenset(literal_strings(node.args[2] if len(node.args) > 2 else None)
                               or literal_strings(keywords.get("labelnames") or keywords.get("labels")))
            if kind == "counter":
                base = name.removesuffix("_total")
                names = {f"{base}_total": labels, f"{base}_created": labels}
            elif kind == "histogram":
                names = {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels,
                         f"{name}_created": labels}
            elif kind == "summary":
                names = {f"{name}_sum": labels, f"{name}_count": labels, f"{name}_created": labels}
            elif kind == "info":
                names = {f"{name}_info": labels}
            else:
                names = {name: labels}
            exported.update(names)
    return exported


def test_the_exported_metrics_are_found():
    """The reading of the code finds the metrics shared/telemetry.py defines (so the checks below check)."""
    metrics = exported_metrics()
    assert metrics["ccs_events_handled_total"] == {"service", "event_type", "outcome"}
    assert metrics["ccs_event_handler_seconds_bucket"] == {"service", "event_type", "le"}
    assert metrics["ccs_outbox_backlog"] == metrics["ccs_outbox_oldest_age_seconds"] == {"service"}
    assert {"ccs_outbox_published_total", "ccs_messages_dead_lettered_total", "ccs_sms_total"} <= set(metrics)
    assert "ccs_events_handled" not in metrics and not [name for name in metrics if not name.startswith("ccs_")]


def promql_problems(expression: str) -> list[str]:
    """What is wrong with a PromQL expression: it does not parse, or names a metric the code does not export (and
    no exporter of EXTERNAL_METRICS does), or a label such a metric does not have."""
    try:
        tree = promql_parser.parse(expression)
    except Exception as err:  # the parser's own error type is not exported
        return [f"does not parse: {err}"]
    problems: list[str] = []
    metrics = exported_metrics()

    def selectors(node) -> list:
        found = []

        def visit(child):
            if isinstance(child, promql_parser.VectorSelector):
                found.append(child)

        promql_parser.walk(node, visit)
        return found

    def labels_of(selector) -> frozenset[str] | None:
        """The labels a selected metric has, or None when it is someone else's (not checked)."""
        return metrics.get(selector.name) if selector.name else None

    for selector in selectors(tree):
        name = selector.name
        if name is None:
            problems.append("a selector without a metric name")
            continue
        if name not in metrics and name not in EXTERNAL_NAMES:
            problems.append(f"{name} is not exported by the code, nor named in EXTERNAL_METRICS")
            continue
        known = labels_of(selector)
        matchers = [*selector.matchers.matchers, *[m for group in selector.matchers.or_matchers for m in group]]
        for matcher in matchers:
            if known is not None and matcher.name not in known | TARGET_LABELS:
                problems.append(f"{name} has no label {matcher.name}")

    def visit_aggregation(node):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            inner = [labels_of(selector) for selector in selectors(node.expr)]
            if inner and all(labels is not None for labels in inner):
                available = frozenset().union(*inner) | TARGET_LABELS
                missing = set(node.modifier.labels) - available
                if missing and node.modifier.type == promql_parser.AggModifierType.By:
                    problems.append(f"grouped by {sorted(missing)}, which its metrics do not have")

    promql_parser.walk(tree, visit_aggregation)
    return problems


def test_the_promql_check_finds_mistakes():
    """The check above refuses an unknown metric, a counter without `_total`, an unknown label and bad syntax."""
    assert promql_problems('sum by (queue) (rate(ccs_messages_dead_lettered_total{queue=~".+"}[5m]))') == []
    assert promql_problems("rate(rabbitmq_queue_messages_ready[5m])") == []
    assert promql_problems("ccs_no_such_metric > 0")
    assert promql_problems("rabbitmq_queue_messages_readyy > 0")
    assert promql_problems("rate(ccs_sms[5m])")
    assert promql_problems('ccs_sms_total{outcom="failed"}')
    assert promql_problems("sum by (servce) (ccs_outbox_backlog)")
    assert promql_problems("sum(rate(ccs_sms_total[5m])")


def test_the_alert_rules_use_only_exported_metrics():
    """deploy/prometheus/alerts.yml: dead letters, the outbox, consumer lag, SMS failures and 5xx responses, each
    rule well formed and its expression naming only metrics that exist."""
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        assert promql_problems(rule["expr"]) == [], rule["alert"]
    used = " ".join(rule["expr"] for rule in rules)
    for metric in ("ccs_messages_dead_lettered_total", "ccs_outbox_backlog", "ccs_outbox_oldest_age_seconds",
                   "rabbitmq_queue_messages_ready", "ccs_sms_total", "nginx_ingress_controller_requests"):
        assert metric in used, f"no alert on {metric}"


GRAFANA_VARIABLE = re.compile(r"\$(\{)?(\w+)(?::\w+)?(?(1)\})")


def without_grafana_variables(expression: str) -> str:
    """A dashboard query as Prometheus receives it: `$__rate_interval` a duration, `$service` a value."""
    return GRAFANA_VARIABLE.sub(lambda m: "5m" if m.group(2).startswith("__") else "x", expression)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.name for path in DASHBOARDS])
def test_the_dashboard_uses_only_exported_metrics(path):
    """Each Grafana dashboard in deploy/grafana: a panel per query, every query and variable naming only metrics
    that exist."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"] and set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        for target in panel["targets"]:
            assert promql_problems(without_grafana_variables(target["expr"])) == [], panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert match and match.group(2) in exported_metrics()[match.group(1)], variable["name"]


def test_there_is_a_dashboard():
    assert DASHBOARDS, "deploy/grafana holds no dashboard"
