"""What operations sees: each service's Prometheus metrics, added up across its processes, and not published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared.demo import five_free_ports
from tests.helpers import wait_for
from shared.supervisor import port_is_free
from tests.e2e.conftest import api
from tests.integration.test_bus import SHOPPING


def samples(url: str) -> dict[tuple[str, tuple], float]:
    answer = requests.get(f"{url}/metrics", timeout=10)
    answer.raise_for_status()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def test_each_service_counts_what_its_worker_handled_on_its_own_port_and_the_front_door_hides_it(site):
    assert requests.get(f"{site.url}/metrics", timeout=10).status_code == 404
    handled = ("ccs_events_handled_total", (("event_type", "request.submitted"), ("outcome", "handled"),
                                            ("service", "matching")))
    published = ("ccs_outbox_published_total", (("service", "intake"),))
    before = samples(site.service_url("matching")).get(handled, 0)
    person = {**SHOPPING["person"], "name": f"Ops {uuid.uuid4().hex[:6]}"}
    api(site).call("POST", "/requests", expect=201, json={**SHOPPING, "person": person})
    # the matching worker, a process of its own, handled it; matching's web process adds its count in
    wait_for("matching's worker to count the request",
             lambda: samples(site.service_url("matching")).get(handled, 0) == before + 1)
    intake = samples(site.service_url("intake"))
    assert intake[published] >= 1
    assert intake[("ccs_outbox_backlog", (("service", "intake"),))] >= 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP])
def test_make_run_stopped_by_a_signal_stops_every_service_it_started(tmp_path, stop_signal):
    """When a service manager (SIGTERM) or a closed terminal (SIGHUP) stops `ccs run`, it stops everything it
    started: the next `make run` finds its ports free."""
    port = five_free_ports()
    run = subprocess.Popen([sys.executable, "-m", "shared.cli", "run", "--port", str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "CCS_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"})
    try:
        for line in run.stdout:
            if "is running at" in line:
                break
        assert all(not port_is_free(port + n) for n in range(5)), "the front door and four services listen"
        run.send_signal(stop_signal)
        assert run.wait(timeout=60) is not None
        wait_for("every process to let go of its port", lambda: all(port_is_free(port + n) for n in range(5)))
    finally:
        run.kill()
        run.stdout.close()
