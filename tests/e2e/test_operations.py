"""What operations sees: each service's Prometheus metrics, added up across its processes, and not published."""

from __future__ import annotations

import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families

from shared.demo import wait_for
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
