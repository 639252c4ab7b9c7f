"""Faults with every process real: a worker down while requests arrive, and restarted."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest

from shared import config
from shared.demo import Client, five_free_ports
from tests.helpers import wait_for
from shared.supervisor import System
from shared.web import issue_token
from tests.integration.test_bus import SHOPPING, VOLUNTEER


@pytest.fixture
def system(backend):
    """The whole system as real processes, on the test's backend."""
    folder = Path(tempfile.mkdtemp(prefix="ccs-e2e-"))
    with System(var_dir=folder, port=five_free_ports()) as running:
        yield running


def test_requests_submitted_while_matching_is_down_each_get_exactly_one_offer_once_it_is_back(system):
    client = Client(system.url, issue_token(config.secret_key(system.var_dir), "e2e", "coordinator"))
    client.call("POST", "/volunteers", 201, json=VOLUNTEER)
    system.stop(["matching-worker"])

    ids = [client.call("POST", "/requests", 201, json=SHOPPING)["id"] for _ in range(20)]
    assert {client.call("GET", f"/requests/{i}")["status"] for i in ids} == {"submitted"}

    system.start(only=["matching-worker"])
    wait_for("every request to be offered", timeout=60, probe=lambda: all(
        client.call("GET", f"/requests/{i}")["status"] == "offered" for i in ids))
    offers = wait_for("20 offer texts", timeout=30, probe=lambda: (m := [
        x for x in client.call("GET", "/sms/messages", params={"page_size": 100}) if x["purpose"] == "offer"
    ]) and len(m) >= 20 and m)
    assert len(offers) == 20
    codes = Counter(message["body"].split("YES ")[1][:4] for message in offers)
    assert len(codes) == 20, "each offer has its own code"
    manager = Client(system.url, issue_token(config.secret_key(system.var_dir), "e2e", "manager"))
    wait_for("metrics to count every request once", timeout=30, probe=lambda: manager.call(
        "GET", "/activity", params={"period": "day"})["periods"][-1]["measures"]["requests_received"] == 20)
