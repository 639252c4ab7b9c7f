"""/readyz's broker check: a success is remembered for a few seconds, a failure never, and callers arriving together
share one look."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.telemetry import BrokerCheck

RABBIT = SimpleNamespace(broker_is_filesystem=False, broker_url="amqp://rabbit/ccs", var_dir=Path("/nowhere"))
OTHER_RABBIT = SimpleNamespace(broker_is_filesystem=False, broker_url="amqp://other/ccs", var_dir=Path("/nowhere"))


class Clock:
    """time.monotonic, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_success_is_remembered_for_a_few_seconds_per_broker(clock):
    looks = []
    check = BrokerCheck(looks.append, clock)
    for _ in range(50):  # a storm of probes
        check(RABBIT)
    assert len(looks) == 1
    clock.now += check.FRESH - 0.1
    check(RABBIT)
    assert len(looks) == 1
    check(OTHER_RABBIT)  # another broker is looked at for itself
    assert len(looks) == 2
    clock.now += 0.2
    check(RABBIT)
    assert looks == [RABBIT, OTHER_RABBIT, RABBIT]


def test_a_failure_is_not_remembered_so_a_broker_back_up_is_seen_at_once(clock):
    down = True
    looks = []

    def look(settings):
        looks.append(settings)
        if down:
            raise ConnectionRefusedError("refused")

    check = BrokerCheck(look, clock)
    for _ in range(3):
        clock.now += 0.01
        with pytest.raises(ConnectionRefusedError):
            check(RABBIT)
    assert len(looks) == 3
    down = False
    clock.now += 0.01
    check(RABBIT)
    check(RABBIT)
    assert len(looks) == 4


def test_a_broker_that_goes_down_is_reported_once_its_success_is_no_longer_fresh(clock):
    down = False

    def look(settings):
        if down:
            raise ConnectionRefusedError("refused")

    check = BrokerCheck(look, clock)
    check(RABBIT)
    down = True
    check(RABBIT)  # remembered
    clock.now += check.FRESH
    with pytest.raises(ConnectionRefusedError):
        check(RABBIT)


def test_callers_arriving_while_a_look_is_under_way_share_its_outcome():
    started, release = threading.Event(), threading.Event()
    looks = []

    def slow_refusal(settings):
        looks.append(settings)
        started.set()
        release.wait(5)
        raise ConnectionRefusedError("refused")

    check = BrokerCheck(slow_refusal)
    outcomes = []

    def probe():
        try:
            check(RABBIT)
            outcomes.append("ok")
        except ConnectionRefusedError:
            outcomes.append("refused")

    first = threading.Thread(target=probe)
    first.start()
    started.wait(5)
    others = [threading.Thread(target=probe) for _ in range(5)]
    for thread in others:
        thread.start()
    time.sleep(0.3)  # time for the others to queue behind the look under way
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert outcomes == ["refused"] * 6 and len(looks) == 1
