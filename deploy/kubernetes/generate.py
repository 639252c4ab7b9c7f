"""Write the Kubernetes manifests that follow from the code: each service's web, worker and migrations
(base/<service>.yaml) and the Ingress (base/ingress.yaml), from the services `shared.service` finds and the one
route table the front door and nginx use (`shared.service.routes()`).

    .venv/bin/python deploy/kubernetes/generate.py      # from the repository root, after changing a route

tests/unit/test_kubernetes.py fails while a written file differs from what this would write. The rest of base/
(the database, the broker, the front door, the network policies) is written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from shared.config import SERVICES  # noqa: E402
from shared.service import routes  # noqa: E402

IMAGE = "compassionate-communities"  # the overlays set its registry and tag (`images:` in their kustomization)
WEB_PORT = 8000
WORKER_METRICS_PORT = 9100  # CCS_METRICS_PORT: a worker's /healthz, /readyz and /metrics
UID = 10001  # the `ccs` user of deploy/Dockerfile
POSTGRES = "ccs-postgres"  # the CloudNativePG Cluster (postgres.yaml); its read-write Service is <name>-rw
RABBITMQ = "ccs-rabbitmq"  # the RabbitmqCluster (rabbitmq.yaml); its Service has the same name
VHOST = "ccs"

HEADER = """\
# Written by deploy/kubernetes/generate.py from {source}; do not edit by hand: change the
# generator (or the code it reads) and run `.venv/bin/python deploy/kubernetes/generate.py` again.
# (tests/unit/test_kubernetes.py checks that this file is current.)
"""

RESOURCES = {
    "web": {"requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "768Mi"}},
    "worker": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
    "migrations": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
    "wait": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "250m", "memory": "384Mi"}},
}

CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"}}


def labels(service: str, component: str) -> dict[str, str]:
    """What selects one service's web, worker or migrations pods (the network policies select on component)."""
    return {"app.kubernetes.io/name": service, "app.kubernetes.io/component": component}


def secret(name: str, key: str, optional: bool = False) -> dict:
    """An environment variable's value, by reference to a Secret's key (never the value itself)."""
    reference = {"name": name, "key": key}
    if optional:
        reference["optional"] = True
    return {"valueFrom": {"secretKeyRef": reference}}


def database_env(service: str) -> list[dict]:
    """`<SERVICE>_DATABASE_URL` for the service's own database, its password from CloudNativePG's app Secret.

    Kubernetes expands `$(NAME)` from variables defined earlier in the list; CloudNativePG's generated
    passwords are letters and digits, so they sit in a URL as they are."""
    return [
        {"name": "POSTGRES_USER", **secret(f"{POSTGRES}-app", "username")},
        {"name": "POSTGRES_PASSWORD", **secret(f"{POSTGRES}-app", "password")},
        {"name": f"{service.upper()}_DATABASE_URL",
         "value": f"postgresql+psycopg://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@{POSTGRES}-rw:5432/{service}"},
    ]


def service_env(service: str) -> list[dict]:
    """What docker-compose.yml's `x-ccs-env` gives a service's containers (less the other services' database URLs),
    with every secret by reference. The rest (PUBLIC_URL, CCS_DEFAULT_REGION, LOG_LEVEL, TWILIO_FROM_NUMBER,
    TWILIO_MESSAGING_SERVICE_SID, and in production CCS_QUEUE_TYPE) comes from the `ccs-config` ConfigMap."""
    return [
        *database_env(service),
        # The RabbitMQ Cluster Operator's Secret for the default user; its passwords are URL-safe base64.
        {"name": "RABBITMQ_USER", **secret(f"{RABBITMQ}-default-user", "username")},
        {"name": "RABBITMQ_PASSWORD", **secret(f"{RABBITMQ}-default-user", "password")},
        {"name": "BROKER_URL", "value": f"amqp://$(RABBITMQ_USER):$(RABBITMQ_PASSWORD)@{RABBITMQ}:5672/{VHOST}"},
        {"name": "CCS_SECRET_KEY", **secret("ccs-secrets", "secret-key")},
        # Without both, notify uses the development gateway (nothing is sent), as under docker compose.
        {"name": "TWILIO_ACCOUNT_SID", **secret("ccs-twilio", "account-sid", optional=True)},
        {"name": "TWILIO_AUTH_TOKEN", **secret("ccs-twilio", "auth-token", optional=True)},
    ]


def volumes(scripts: bool) -> list[dict]:
    """Writable folders on a read-only root (CCS_VAR_DIR, and /tmp for gunicorn and Prometheus' multiprocess
    files), and the init container's script."""
    found = [{"name": "var", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    if scripts:
        found.append({"name": "scripts", "configMap": {"name": "ccs-scripts"}})
    return found


MOUNTS = [{"name": "var", "mountPath": "/var/lib/ccs"}, {"name": "tmp", "mountPath": "/tmp"}]


def wait_for_migrations(service: str) -> dict:
    """The init container of each web and worker pod: it waits until the service's database is at the newest
    migration of this image, which the `<service>-migrate` Job brings it to."""
    return {
        "name": "wait-for-migrations",
        "image": IMAGE,
        "command": ["python", "/opt/ccs/wait-for-migrations.py", service],
        "env": database_env(service),
        "resources": RESOURCES["wait"],
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [*MOUNTS, {"name": "scripts", "mountPath": "/opt/ccs", "readOnly": True}],
    }


def spread(selector: dict[str, str]) -> list[dict]:
    """Replicas on different machines where there are several (and still scheduled where there is one)."""
    return [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector}}]


def pod_spec(service: str, containers: list[dict], init: bool = True) -> dict:
    spec = {"automountServiceAccountToken": False, "securityContext": POD_SECURITY}
    if init:
        spec["initContainers"] = [wait_for_migrations(service)]
    spec["containers"] = containers
    spec["volumes"] = volumes(scripts=init)
    return spec


def migrations_job(service: str) -> dict:
    """`ccs migrate <service>`, as docker compose runs it before each web container (migrations hold an advisory
    lock, so running it again, or beside a web pod that runs it, is harmless)."""
    selector = labels(service, "migrations")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{service}-migrate", "labels": selector},
        "spec": {
            "backoffLimit": 10,  # the database may still be starting: each failure waits longer
            "ttlSecondsAfterFinished": 3600,  # gone an hour after it succeeds; `kubectl apply` runs it again
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    **pod_spec(service, [{
                        "name": "migrate",
                        "image": IMAGE,
                        "command": ["ccs", "migrate", service],
                        "env": database_env(service),
                        "resources": RESOURCES["migrations"],
                        "securityContext": CONTAINER_SECURITY,
                        "volumeMounts": MOUNTS,
                    }], init=False),
                    "restartPolicy": "Never",
                },
            },
        },
    }


def web(service: str) -> list[dict]:
    """The service's HTTP API (`ccs web`), its Service, its autoscaler and its disruption budget."""
    name, selector = f"{service}-web", labels(service, "web")
    probe = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "web",
        "image": IMAGE,
        "command": ["ccs", "web", service, "--port", str(WEB_PORT), "--workers", "2"],
        "ports": [{"name": "http", "containerPort": WEB_PORT}],
        "envFrom": [{"configMapRef": {"name": "ccs-config"}}],
        "env": service_env(service),
        "startupProbe": {"httpGet": {"path": f"/healthz/{service}", "port": "http"},
                         "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 24},
        "livenessProbe": {"httpGet": {"path": f"/healthz/{service}", "port": "http"}, **probe},
        "readinessProbe": {"httpGet": {"path": f"/readyz/{service}", "port": "http"}, **probe},
        "resources": RESOURCES["web"],
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": MOUNTS,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": selector},
        "spec": {  # no `replicas`: its HorizontalPodAutoscaler sets them
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": selector, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(WEB_PORT),
                    "prometheus.io/path": "/metrics"}},
                "spec": {**pod_spec(service, [container]), "topologySpreadConstraints": spread(selector)},
            },
        },
    }
    return [
        deployment,
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": selector},
         "spec": {"selector": selector, "ports": [{"name": "http", "port": WEB_PORT, "targetPort": "http"}]}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                  "minReplicas": 2, "maxReplicas": 5,
                  "metrics": [{"type": "Resource", "resource": {
                      "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}},
    ]


def worker(service: str) -> list[dict]:
    """The service's bus consumer and outbox relay (`ccs worker`): two replicas and a disruption budget."""
    name, selector = f"{service}-worker", labels(service, "worker")
    probe = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "worker",
        "image": IMAGE,
        "command": ["ccs", "worker", service],
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT}],
        "envFrom": [{"configMapRef": {"name": "ccs-config"}}],
        "env": [*service_env(service), {"name": "CCS_METRICS_PORT", "value": str(WORKER_METRICS_PORT)}],
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "metrics"},
                         "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 24},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, **probe},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, **probe},
        "resources": RESOURCES["worker"],
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": MOUNTS,
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": selector},
            "spec": {
                "replicas": 2,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": selector, "annotations": {
                        "prometheus.io/scrape": "true", "prometheus.io/port": str(WORKER_METRICS_PORT),
                        "prometheus.io/path": "/metrics"}},
                    "spec": {**pod_spec(service, [container]), "terminationGracePeriodSeconds": 30,
                             "topologySpreadConstraints": spread(selector)},
                },
            },
        },
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}},
    ]


def service_manifests(service: str) -> list[dict]:
    """Everything base/<service>.yaml holds."""
    return [migrations_job(service), *web(service), *worker(service)]


def ingress(table: dict[str, str] | None = None) -> dict:
    """One Ingress: each prefix of the route table to its service's web pods, everything else to the front door.

    A `Prefix` path matches itself and anything under it, element by element ("/sms" and "/sms/inbound", not
    "/smsx"), as the route table means; the longest matching path wins."""
    table = routes() if table is None else table

    def path(prefix: str, backend: str) -> dict:
        return {"path": prefix, "pathType": "Prefix",
                "backend": {"service": {"name": backend, "port": {"name": "http"}}}}

    paths = [path(prefix, f"{owner}-web") for prefix, owner in table.items()]
    paths.append(path("/", "frontdoor"))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "ccs", "annotations": {
            "nginx.ingress.kubernetes.io/proxy-body-size": "2m"}},  # as deploy/nginx.conf's client_max_body_size
        "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": paths}}]},
    }


class _Dumper(yaml.SafeDumper):
    """Writes a value used twice (the same resources, say) out twice, not as a YAML alias."""

    def ignore_aliases(self, data) -> bool:
        return True


def dump(documents: list[dict], source: str) -> str:
    body = "---\n".join(yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120) for document in documents)
    return HEADER.format(source=source) + body


def files() -> dict[Path, str]:
    """Each file this writes, and what it holds."""
    written = {HERE / "base" / f"{service}.yaml": dump(service_manifests(service),
                                                      f"the `{service}` service's definition")
               for service in SERVICES}
    written[HERE / "base" / "ingress.yaml"] = dump([ingress()], "the route table (shared.service.routes())")
    return written


def main() -> None:
    for path, text in files().items():
        path.write_text(text, encoding="utf-8")
        print(f"{path.relative_to(ROOT)}: written")


if __name__ == "__main__":
    main()
