"""What operations sees: each service's Prometheus metrics, added up across its processes, and not published."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

from shared import bus, config, supervisor, topology
from shared.contracts import EXAMPLES, make_event
from shared.demo import Client, five_free_ports, text_in
from shared.web import issue_token
from tests.helpers import wait_for
from shared.supervisor import System, port_is_free
from tests.e2e.conftest import api, sign_in
from tests.integration.test_bus import SHOPPING, VOLUNTEER


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


def dead_letter_in(site, monkeypatch, queue: str, reason: str) -> dict:
    """A valid event left on `queue`'s dead-letter queue with `reason`, as a worker leaves one whose handler failed
    (here one whose cause is fixed: replayed, it is handled)."""
    monkeypatch.setenv("CCS_VAR_DIR", str(site.var_dir))
    event = make_event("request.submitted", {**EXAMPLES[("request.submitted", 1)], "request_id": str(uuid.uuid4())})
    publisher = bus.Publisher(config.load("cli"))
    try:
        publisher.publish(event, exchange=topology.DEAD_LETTER, routing_key=queue, headers={
            "x-dead-letter-reason": reason, "x-original-queue": queue, "x-dead-lettered-at": time.time() - 7200})
    finally:
        publisher.reset()
    return event


def test_an_admin_sees_a_dead_letter_with_its_reason_and_replays_it_to_be_handled(page, site, monkeypatch):
    queue = "metrics.intake.all"
    event = dead_letter_in(site, monkeypatch, queue, "handler failed 5 times: RuntimeError: a bug, since fixed")
    handled = ("ccs_events_handled_total", (("event_type", "request.submitted"), ("outcome", "handled"),
                                            ("service", "metrics")))
    before = samples(site.service_url("metrics")).get(handled, 0)
    sign_in(page, "admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dead letters").click()
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    page.get_by_label("Queue", exact=True).select_option(queue)
    page.get_by_label("Event type", exact=True).select_option("request.submitted")
    page.get_by_role("button", name="Show").click()
    row = page.locator(f'tr[data-event-id="{event["event_id"]}"]')
    expect(row).to_contain_text(queue)
    expect(row).to_contain_text("request.submitted")
    expect(row).to_contain_text("RuntimeError: a bug, since fixed")
    expect(row).to_contain_text(re.compile(r"2 h( \d+ min)? ago"))  # dead for two hours
    assert event["payload"]["request_id"] not in page.content()  # never the payload

    row.get_by_role("button", name=f"Replay request.submitted {event['event_id']}").click()
    expect(page.get_by_role("status")).to_have_text("Replayed 1 dead letter.")
    expect(page.get_by_label("Queue", exact=True)).to_have_value(queue)  # the list as it was filtered
    expect(page.locator(f'tr[data-event-id="{event["event_id"]}"]')).to_have_count(0)
    wait_for("metrics' worker to handle the replayed event",
             lambda: samples(site.service_url("metrics")).get(handled, 0) == before + 1)


def test_a_coordinator_is_refused_the_dead_letters_page(page):
    sign_in(page, "coordinator")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Dead letters")).to_have_count(0)
    answer = page.goto("/dead-letters")
    assert answer.status == 403
    expect(page.get_by_role("heading", name="This page is not for your role")).to_be_visible()


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


class Crashing(System):
    """A system of one process, "matching-worker", that exits with code 3 as soon as it starts."""

    def commands(self) -> dict[str, list[str]]:
        return {"matching-worker": [sys.executable, "-c", "raise SystemExit(3)"]}


def test_a_process_that_keeps_exiting_is_restarted_after_a_back_off_that_doubles_up_to_a_minute(tmp_path,
                                                                                              monkeypatch):
    """Each exit is said once, with the log to read and the wait; the process starts again when the wait is over
    (1 s, 2 s, 4 s ... at most 60 s), from 1 s again once it stayed up a minute; one we stop is not started again."""
    clock = SimpleNamespace(now=0)
    monkeypatch.setattr(supervisor, "time", SimpleNamespace(monotonic=lambda: clock.now))
    system = Crashing(var_dir=tmp_path)
    exited = f"matching-worker exited with code 3; see {tmp_path / 'log' / 'matching-worker.log'}."
    system.start(only=["matching-worker"])
    try:
        waits = []
        for _ in range(8):
            crashed = system.processes["matching-worker"]
            crashed.wait(timeout=30)
            (said,) = system.restart_exited()
            assert said.startswith(exited)
            waits.append(wait := int(re.fullmatch(r".* Restarting it in (\d+)s\.", said)[1]))
            clock.now += wait - 1
            assert system.restart_exited() == [], "not before its time, and said once"
            clock.now += 1
            said = system.restart_exited()
            assert system.processes["matching-worker"] is not crashed
            assert said == [f"matching-worker restarted (pid {system.processes['matching-worker'].pid})."]
        assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
        system.processes["matching-worker"].wait(timeout=30)
        clock.now += 60
        assert system.restart_exited() == [f"{exited} Restarting it in 1s."], "it had stayed up a minute"
        system.stop()
        clock.now += 1
        assert system.restart_exited() == [] and system.processes == {}
    finally:
        system.stop()


def printed_by(run: subprocess.Popen) -> tuple[list[str], threading.Thread]:
    """What `ccs run` prints from now on, gathered as it comes by a thread that ends when `ccs run` does."""
    lines: list[str] = []

    def gather():
        for line in run.stdout:
            lines.append(line)

    reader = threading.Thread(target=gather, daemon=True)
    reader.start()
    return lines, reader


def says(run: subprocess.Popen, lines: list[str], text: str, times: int = 1):
    """A probe: `ccs run` has printed `text` (in `times` lines); it must not have exited meanwhile."""
    def probe():
        if run.poll() is not None:
            raise AssertionError(f"`ccs run` exited ({run.returncode}); it printed: {''.join(lines[-5:])}")
        return sum(text in line for line in lines) >= times

    return probe


def worker_pid(run: subprocess.Popen, service: str) -> int | None:
    """The pid of the service's worker that `ccs run` started, while it runs."""
    for pid, (state, ppid, _session) in process_table().items():
        if ppid == run.pid and state != "Z":
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            if command[-2:] == [b"worker", service.encode()]:
                return pid
    return None


def open_offers(client: Client, request_id: str) -> list[str]:
    """The codes of the request's open offers, as matching shows them (none while it has not heard of it)."""
    match = client.http.get(f"{client.url}/matches/{request_id}", timeout=10)
    return [o["code"] for o in match.json()["offers"] if o["status"] == "open"] if match.status_code == 200 else []


def texted(var_dir: Path) -> list[str]:
    """The body of every SMS the development gateway has sent."""
    path = var_dir / "sms" / "sent.jsonl"
    return [json.loads(line)["body"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("service", ["matching", "notify"])
def test_a_worker_killed_under_make_run_is_restarted_and_nothing_is_lost_or_texted_twice(tmp_path, backend, service):
    """SIGKILL a worker twice while requests and replies are on their way: `ccs run` says so and starts it again
    (after 1 s, then 2 s); every request is offered and matched once, and no SMS goes twice."""
    run, port = start_make_run(tmp_path)
    children: set[int] = set()
    reader = None
    try:
        read_until(run, "is running at")
        children, (lines, reader) = descendants(run), printed_by(run)
        client = Client(f"http://localhost:{port}", issue_token(config.secret_key(tmp_path), "e2e", "coordinator"))
        phone = "+447911127001"
        client.call("POST", "/volunteers", 201, json={**VOLUNTEER, "phone": phone})

        def crash(wait: int) -> int:
            """SIGKILL the worker; returns its pid. `ccs run` says it will start it again in `wait` seconds."""
            pid = worker_pid(run, service)
            os.killpg(pid, signal.SIGKILL)
            wait_for("`ccs run` to say the worker was killed", says(
                run, lines, f"{service}-worker was killed by SIGKILL; see {tmp_path / 'log'}/{service}-worker.log. "
                            f"Restarting it in {wait}s."))
            return pid

        def back(killed: int, times: int) -> None:
            """Until `ccs run` has restarted the worker `times` times, and a new one runs."""
            wait_for("`ccs run` to restart the worker", says(run, lines, f"{service}-worker restarted (pid", times))
            wait_for("a new worker", lambda: worker_pid(run, service) not in (None, killed))

        ids = [client.call("POST", "/requests", 201, json=SHOPPING)["id"] for _ in range(4)]
        wait_for("the first offer to be texted", lambda: texted(tmp_path))
        killed = crash(wait=1)
        ids += [client.call("POST", "/requests", 201, json=SHOPPING)["id"] for _ in range(4)]
        back(killed, times=1)
        codes = wait_for("an open offer for every request",
                        lambda: (found := [open_offers(client, i) for i in ids]) and all(found) and found,
                        timeout=60)
        assert all(len(c) == 1 for c in codes), "one volunteer, offered each request once"
        text_in(client.url, phone, f"YES {codes[0][0]}", var_dir=tmp_path)
        killed = crash(wait=2)
        for (code,) in codes[1:]:
            text_in(client.url, phone, f"YES {code}", var_dir=tmp_path)
        back(killed, times=2)

        wait_for("every request to be matched", lambda: all(
            client.call("GET", f"/requests/{i}")["status"] == "matched" for i in ids), timeout=60)
        for request_id, (code,) in zip(ids, codes):
            match = client.call("GET", f"/matches/{request_id}")
            assert match["status"] == "matched"
            assert [(o["code"], o["status"]) for o in match["offers"]] == [(code, "accepted")]
        # every offer and confirmation has gone to the gateway; one being sent as the worker was killed stays
        # `sending`, not sent again (at most once, by design)
        wait_for("every offer and confirmation to be sent", timeout=60, probe=lambda: Counter(
            m["purpose"] for m in client.call("GET", "/sms/messages", params={"page_size": 100})
            if m["status"] != "queued") >= Counter(offer=len(ids), confirmation=len(ids)))
        messages = Counter(m["purpose"] for m in client.call("GET", "/sms/messages", params={"page_size": 100}))
        assert (messages["offer"], messages["confirmation"]) == (len(ids), len(ids))
        twice = [body for body, times in Counter(texted(tmp_path)).items() if times > 1]
        assert twice == [], "no SMS is sent twice"

        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) is not None
    finally:
        run.kill()
        run.wait()
        if reader is not None:
            reader.join(timeout=10)  # it has read to the end
        run.stdout.close()
        kill_leftovers(children)
