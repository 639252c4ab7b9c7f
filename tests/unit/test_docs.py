"""The architecture notes name every event and every queue there is, so they cannot quietly fall behind."""

from pathlib import Path

import pytest

from shared import topology
from shared.contracts import EVENTS

ARCHITECTURE = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("event_type", sorted({t for t, _ in EVENTS}))
def test_every_event_is_in_the_events_table(event_type):
    assert f"| `{event_type}` |" in ARCHITECTURE


@pytest.mark.parametrize("queue", sorted(q.name for qs in topology.QUEUES.values() for q in qs))
def test_every_queue_is_in_the_queues_table(queue):
    assert f"`{queue}`" in ARCHITECTURE
