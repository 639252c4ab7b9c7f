"""The README's walk-through as a newcomer meets it: `make run` (`ccs run`) on a free port in a project folder of its
own, and `ccs` run from other folders, which finds that system's var/ and address, or says where it looked."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared import config
from shared.config import ProjectNotFound, project_dir
from shared.demo import Client, five_free_ports
from shared.supervisor import NotRunning, running
from shared.web import issue_token
from tests.helpers import wait_for

ROOT = Path(__file__).parents[2]
CCS = str(Path(sys.executable).with_name("ccs"))  # the command `make run` installs in .venv/bin
# What a newcomer's shell has none of: `make run` runs on the embedded default, at the address it chooses.
NOT_A_NEWCOMERS = ("CCS_VAR_DIR", "BROKER_URL", "PUBLIC_URL", "URL", "PORT", "CCS_SECRET_KEY", "TWILIO_ACCOUNT_SID",
                   "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID")


def newcomers_environment(**settings: str) -> dict[str, str]:
    """This environment without anything that chooses where the system keeps its data or answers."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_A_NEWCOMERS and not k.endswith("_DATABASE_URL")}
    return {**env, "PYTHONUNBUFFERED": "1", **settings}


def a_project(tmp_path: Path) -> Path:
    """A project folder of its own (the project's pyproject.toml is what `ccs` knows it by), with a folder in it."""
    folder = tmp_path / "project"
    (folder / "docs" / "notes").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", folder)
    return folder


def ccs(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`.venv/bin/ccs ARGS` typed in the folder `cwd`."""
    return subprocess.run([CCS, *args], cwd=cwd, env=env or newcomers_environment(), capture_output=True, text=True,
                          timeout=60, check=False)


class MakeRun:
    """`ccs run` as `make run` starts it, in the project folder, on five free ports; what it prints is gathered."""

    def __init__(self, project: Path, **settings: str):
        self.port = five_free_ports()
        self.lines: list[str] = []
        self.process = subprocess.Popen([CCS, "run"], cwd=project, env=newcomers_environment(
            PORT=str(self.port), **settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def printed(self, pattern: str, timeout: float = 60) -> re.Match:
        """The first line printed that matches `pattern` (waited for; `ccs run` must not exit meanwhile)."""
        def probe():
            found = next((m for line in list(self.lines) if (m := re.search(pattern, line))), None)
            if found is None and self.process.poll() is not None:
                raise AssertionError(f"`ccs run` exited ({self.process.returncode}): {''.join(self.lines[-10:])}")
            return found

        return wait_for(f"`ccs run` to print {pattern!r}", probe, timeout=timeout)

    def stop(self) -> None:
        """Ctrl+C, as in the terminal, and wait for it to have stopped everything."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        self.process.stdout.close()


@pytest.fixture
def make_run(tmp_path):
    """Start `make run` in a project folder of the test's own: `make_run(project, CCS_QUIET_HOURS=...)`."""
    started: list[MakeRun] = []

    def start(project: Path, **settings: str) -> MakeRun:
        started.append(MakeRun(project, **settings))
        return started[-1]

    yield start
    for run in started:
        run.stop()


def coordinator(project: Path, url: str) -> Client:
    """The API as the README's coordinator calls it, with a token signed by that system's secret key."""
    return Client(url, issue_token(config.secret_key(project / "var"), "newcomer", "coordinator"))


def log_a_request_for(client: Client) -> tuple[str, str]:
    """Steps 1 and 2 of the walk-through: a volunteer in Blackpool, and a request for shopping in FY1; the phone
    (one of this test's own) and the request's id."""
    phone = f"+447911123{secrets.randbelow(1000):03d}"
    client.call("POST", "/volunteers", 201, json={
        "name": "Sam Patel", "phone": phone, "skills": ["practical"],
        "checks": [{"check": "safeguarding", "done_on": "2026-09-01", "expires_on": "2031-09-01"}],
        "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10})
    request = client.call("POST", "/requests", 201, json={
        "person": {"name": "Pat Example", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
                   "postcode": "FY1 4AB"},
        "support_type": "shopping", "when": {"days": ["mon", "tue", "wed", "thu", "fri"], "part_of_day": "afternoon"},
        "consent": {"share_contact": True, "sms_contact": True}})
    return phone, request["id"]


def matched(client: Client, request_id: str) -> bool:
    """True once the request is matched."""
    return client.call("GET", f"/requests/{request_id}")["status"] == "matched"


def test_make_run_prints_its_address_and_ccs_finds_it_from_any_folder_of_the_project(tmp_path, make_run):
    project = a_project(tmp_path)
    run = make_run(project)
    url = run.printed(r"is running at (http://\S+)").group(1)
    assert url == f"http://localhost:{run.port}"
    assert json.loads((project / "var" / "running.json").read_text())["url"] == url

    elsewhere = project / "docs" / "notes"
    said = ccs(elsewhere, "url")
    assert (said.returncode, said.stdout.strip()) == (0, url)

    client = coordinator(project, url)
    phone, request_id = log_a_request_for(client)
    code = run.printed(rf"SMS to \{phone}: Can you help\? .* Reply YES (\d{{4}})").group(1)
    replied = ccs(elsewhere, "text", phone, f"YES {code}")
    assert replied.returncode == 0, replied.stderr
    wait_for("the request to be matched", lambda: matched(client, request_id))
    run.printed(rf"SMS to \{phone}: Thank you! Task {code} is yours")

    second = ccs(project, "run", env=newcomers_environment(PORT=str(five_free_ports())))
    assert second.returncode == 1
    assert f"already running from {project / 'var'}, at {url}" in second.stderr  # not a second system on its var/

    run.stop()
    assert not (project / "var" / "running.json").exists()
    said = ccs(elsewhere, "url")
    assert said.returncode == 1
    assert f"Nothing is running from {project / 'var'}" in said.stderr and "make run" in said.stderr


def test_a_text_held_for_the_quiet_hours_is_said_with_until_when_in_the_communitys_time(tmp_path, make_run):
    blackpool = datetime.now(ZoneInfo("Europe/London")).replace(second=0, microsecond=0)
    start, end = blackpool - timedelta(hours=1), blackpool + timedelta(hours=1)  # quiet now, for this test alone
    project = a_project(tmp_path)
    run = make_run(project, CCS_QUIET_HOURS=f"{start:%H:%M}-{end:%H:%M}")
    url = run.printed(r"is running at (http://\S+)").group(1)
    run.printed(rf"Routine SMS wait out the quiet hours {start:%H:%M}-{end:%H:%M}")

    client = coordinator(project, url)
    phone, request_id = log_a_request_for(client)
    held = run.printed(rf"SMS to \{phone} held for the quiet hours until {end:%H:%M on %a %d %b} "
                       rf"\(Europe/London time\): Can you help\? .* Reply YES (\d{{4}})")
    run.printed(r"CCS_QUIET_HOURS=off make run")

    # as the window says, the volunteer may answer with the code all the same; what it tells them goes at once
    replied = ccs(project, "text", phone, f"YES {held.group(1)}")
    assert replied.returncode == 0, replied.stderr
    wait_for("the request to be matched", lambda: matched(client, request_id))
    run.printed(rf"SMS to \{phone}: Thank you! Task {held.group(1)} is yours")
    assert not any(re.search(rf"SMS to \{phone}: Can you help", line) for line in run.lines)


def test_ccs_outside_any_project_says_where_it_looked_and_makes_no_var_folder(tmp_path):
    # ccs installed where no project is (as from a wheel), and typed in a folder of no project
    installed = tmp_path / "site-packages"
    for package in ("shared", "services"):
        shutil.copytree(ROOT / package, installed / package, ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    env = newcomers_environment(PYTHONPATH=str(installed))
    for command in (["url"], ["text", "07911123456", "YES 4821"], ["tokens", "issue", "--role", "coordinator"]):
        said = subprocess.run([sys.executable, "-m", "shared.cli", *command], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert said.returncode == 1, said.stdout
        assert "looked for the project folder" in said.stderr
        assert f"in {elsewhere} and each folder above it" in said.stderr
        assert f"where ccs is installed ({installed})" in said.stderr and "CCS_VAR_DIR" in said.stderr
    assert not list(tmp_path.rglob("var")) and not list(tmp_path.rglob("secret.key"))


def test_the_project_folder_is_found_above_the_working_folder_or_else_where_ccs_is_installed(tmp_path):
    project = a_project(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "another-project"\n')
    assert project_dir(project / "docs" / "notes", installed_in=other) == project
    assert project_dir(other, installed_in=project) == project
    with pytest.raises(ProjectNotFound, match=f"in {other} and each folder above it"):
        project_dir(other, installed_in=other)


def test_a_system_that_was_killed_is_not_taken_for_running(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (tmp_path / "running.json").write_text(json.dumps({"url": "http://localhost:8100", "pid": int(gone.stdout)}))
    with pytest.raises(NotRunning, match=f"ran from {tmp_path} at http://localhost:8100 has stopped"):
        running(tmp_path)
