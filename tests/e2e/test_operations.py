"""What operations sees: each service's Prometheus metrics, added up across its processes, and not published."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

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


def start_make_run(var_dir) -> tuple[subprocess.Popen, int]:
    """`ccs run` on five free ports, as `make run` starts it."""
    port = five_free_ports()
    run = subprocess.Popen([sys.executable, "-m", "shared.cli", "run", "--port", str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "CCS_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"})
    return run, port


def read_until(run: subprocess.Popen, text: str) -> None:
    """Read what `ccs run` prints until a line says `text`."""
    for line in run.stdout:
        if text in line:
            return
    raise AssertionError(f"`ccs run` exited ({run.wait()}) without printing {text!r}")


def process_table() -> dict[int, tuple[str, int, int]]:
    """Every process on this machine: its pid, with its state, parent and session (from /proc/<pid>/stat)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid, _group, session = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, IndexError):
            continue  # it exited as we looked
        table[int(stat.parent.name)] = (state, int(ppid), int(session))
    return table


def descendants(run: subprocess.Popen) -> set[int]:
    """The processes `ccs run` started (each in a session of its own) and theirs, e.g. gunicorn's workers."""
    table = process_table()
    leaders = {pid for pid, (_state, ppid, _session) in table.items() if ppid == run.pid}
    return {pid for pid, (_state, _ppid, session) in table.items() if session in leaders}


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (neither gone nor a zombie waiting to be reaped)."""
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid][0] != "Z"}


def kill_leftovers(pids: set[int]) -> None:
    """SIGKILL whatever a failed test left running, so it does not hold ports for the tests after it."""
    for pid in alive(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP])
def test_make_run_stopped_by_a_signal_stops_every_service_it_started(tmp_path, stop_signal):
    """When a service manager (SIGTERM) or a closed terminal (SIGHUP) stops `ccs run`, it stops everything it
    started: the next `make run` finds its ports free."""
    run, port = start_make_run(tmp_path)
    try:
        read_until(run, "is running at")
        assert all(not port_is_free(port + n) for n in range(5)), "the front door and four services listen"
        run.send_signal(stop_signal)
        assert run.wait(timeout=60) is not None
        wait_for("every process to let go of its port", lambda: all(port_is_free(port + n) for n in range(5)))
    finally:
        run.kill()
        run.stdout.close()


def test_make_run_keeps_stopping_whatever_signals_arrive_while_it_stops(tmp_path):
    """make, a service manager or an impatient person may signal again while `ccs run` stops: it goes on stopping,
    and when it exits every process it started has exited too and the ports are free."""
    run, port = start_make_run(tmp_path)
    children: set[int] = set()
    try:
        read_until(run, "is running at")
        children = descendants(run)
        assert len(children) >= 14, "four services' web processes and the front door, each with its gunicorn worker; " \
                                    "four services' workers"
        run.send_signal(signal.SIGTERM)
        read_until(run, "Stopping")
        # SIGTERM, SIGINT and SIGHUP in turn, from the moment it says it is stopping until it has stopped
        for again in itertools.cycle([signal.SIGTERM, signal.SIGINT, signal.SIGHUP]):
            run.send_signal(again)
            try:
                run.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                continue
        assert alive(children) == set(), "no process outlives `ccs run`"
        assert all(port_is_free(port + n) for n in range(5))
    finally:
        run.kill()
        run.stdout.close()
        kill_leftovers(children)


def test_every_process_make_run_started_exits_when_it_is_killed(tmp_path):
    """Even SIGKILL, which `ccs run` cannot catch, leaves nothing running: each process it started is told to stop
    (SIGTERM, by the kernel) when it dies, and the ports come free."""
    run, port = start_make_run(tmp_path)
    children: set[int] = set()
    try:
        read_until(run, "is running at")
        children = descendants(run)
        assert len(children) >= 14
        run.kill()
        run.wait(timeout=10)
        wait_for("every process `ccs run` started to exit", lambda: not alive(children), timeout=30)
        wait_for("every process to let go of its port", lambda: all(port_is_free(port + n) for n in range(5)))
    finally:
        run.kill()
        run.stdout.close()
        kill_leftovers(children)
