"""Starts the whole system on one machine: each service's web process and worker, and the front door.

Used by `ccs run`, `ccs demo` and the end-to-end tests. Every process gets the same environment, so the
same code runs on the embedded default (SQLite and the filesystem bus under var/) or on PostgreSQL and
RabbitMQ when their URLs are set.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from shared.config import ACCESS_LOG, SERVICES, secret_key
from shared.service import registry


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel SIGTERM the child when this process dies, even by SIGKILL (Linux's
    parent-death signal), so nothing `ccs run` started outlives it; None elsewhere. A gunicorn master stops its
    workers on SIGTERM. The kernel signals when the thread that started the child exits: start from the main one."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child should do as little as it can
    parent, pr_set_pdeathsig, sigterm = os.getpid(), 1, int(signal.SIGTERM)

    def preexec() -> None:
        if prctl(pr_set_pdeathsig, sigterm, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the prctl took effect: it will not signal us now
            os._exit(1)

    return preexec


# A process that exits on its own is started again after 1 s, then 2 s, 4 s ... up to a minute if it keeps exiting;
# once it has stayed up a minute, from 1 s again.
FIRST_BACKOFF, MAX_BACKOFF, STEADY = 1.0, 60.0, 60.0


def ended(code: int) -> str:
    """How a process with this return code ended: "exited with code 1", "was killed by SIGKILL"."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def gunicorn(app: str, port: int, workers: int = 1) -> list[str]:
    """The command that serves a WSGI app factory with gunicorn."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--threads", "8", "--graceful-timeout", "5", *ACCESS_LOG, app]


RUNNING = "running.json"  # in var/: the address of the system running from that folder, while it runs


class NotRunning(RuntimeError):
    """Nothing runs from this var/ folder (no running.json, or the process that wrote it has gone)."""


def alive(pid: int) -> bool:
    """True when a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: it runs
        return True
    return True


def running(var_dir: Path) -> dict:
    """What the system running from `var_dir` wrote of itself when it was ready: its `url` (the address a person
    opens), `public_url` (the one Twilio's webhooks are signed against), each service's own address, its `pid`.
    NotRunning says why when nothing runs from there."""
    path = var_dir / RUNNING
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotRunning(f"Nothing is running from {var_dir} (it has no {RUNNING}): start it with make run.") from None
    except (OSError, ValueError) as exc:
        raise NotRunning(f"{path} cannot be read ({exc}): start the system again with make run.") from None
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not alive(pid):
        raise NotRunning(f"The system that ran from {var_dir} at {record.get('url')} has stopped (process "
                         f"{record.get('pid')} is gone): start it with make run.")
    return record


@dataclass
class System:
    """The four services and the front door, as child processes."""

    var_dir: Path
    port: int = 8000
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # when each process last started (monotonic)
    backoff: dict[str, float] = field(default_factory=dict)  # each process's last wait before a restart
    restart_at: dict[str, float] = field(default_factory=dict)  # processes that exited: when they start again

    @property
    def url(self) -> str:
        """The front door's address."""
        return f"http://localhost:{self.port}"

    def service_url(self, name: str) -> str:
        """Where a service's own web process listens."""
        return f"http://127.0.0.1:{self.port + 1 + SERVICES.index(name)}"

    def environment(self) -> dict[str, str]:
        """The environment every child process gets."""
        env = {**os.environ, **self.env, "CCS_VAR_DIR": str(self.var_dir), "PYTHONUNBUFFERED": "1"}
        env.setdefault("PUBLIC_URL", self.url)
        for name in SERVICES:
            env[f"CCS_{name.upper()}_URL"] = self.service_url(name)
        return env

    def commands(self) -> dict[str, list[str]]:
        """Every process by name, with the command that runs it."""
        commands = {}
        for name in SERVICES:
            commands[f"{name}-web"] = gunicorn(registry()[name].wsgi, self.port + 1 + SERVICES.index(name))
            commands[f"{name}-worker"] = [sys.executable, "-m", "shared.cli", "worker", name]
        commands["frontdoor"] = gunicorn("shared.frontdoor:create_app_from_env()", self.port)
        return commands

    def metrics_env(self, process: str) -> dict[str, str]:
        """A service's processes share a folder for their Prometheus counts, emptied when the first starts."""
        service = process.split("-")[0]
        if service not in SERVICES:
            return {}
        folder = self.var_dir / "prometheus" / service
        if not any(p.startswith(f"{service}-") for p in self.processes):
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return {"PROMETHEUS_MULTIPROC_DIR": str(folder)}

    def migrate(self) -> None:
        """Bring every service's database to the newest schema, in one process (each would import the same code)."""
        done = subprocess.run([sys.executable, "-m", "shared.cli", "migrate", *SERVICES], env=self.environment(),
                              capture_output=True, text=True)
        if done.returncode:
            # what it printed names each service it brought up to date; the next one failed
            raise RuntimeError(f"migrating failed:\n{done.stdout}{done.stderr}")

    def start(self, only: list[str] | None = None) -> None:
        """Start the processes (all, or those named), logging each to var/log/<name>.log. Each runs in a session of
        its own, so a Ctrl+C in the terminal reaches only us (and we stop each once), and stops when we die."""
        busy = [p for p in range(self.port, self.port + 5) if not port_is_free(p)] if only is None else []
        if busy:
            raise SystemExit(f"Port {busy[0]} is already in use. Stop whatever uses it, or choose another "
                             f"base port: make run PORT=8100")
        log_dir = self.var_dir / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        secret_key(self.var_dir)  # made once, before the processes that share it start
        env = self.environment()
        preexec = stop_with_parent()
        for name, command in self.commands().items():
            if only is not None and name not in only:
                continue
            log = open(log_dir / f"{name}.log", "ab")
            self.processes[name] = subprocess.Popen(command, env={**env, **self.metrics_env(name)}, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True,
                                                    preexec_fn=preexec)
            self.started[name] = time.monotonic()
            log.close()

    def wait_until_ready(self, timeout: float = 60) -> None:
        """Wait until every service answers its health check through the front door."""
        deadline = time.monotonic() + timeout
        pending = list(SERVICES)
        while pending:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {self.var_dir}/log/{name}.log")
            try:
                if requests.get(f"{self.url}/healthz/{pending[0]}", timeout=2).status_code == 200:
                    pending.pop(0)
                    continue
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending[0]} did not become ready within {timeout}s")
            time.sleep(0.1)

    def announce(self) -> None:
        """Write var/running.json, saying where this system answers (`running` reads it), once it is ready."""
        env = self.environment()
        record = {"url": self.url, "public_url": env["PUBLIC_URL"].rstrip("/"), "pid": os.getpid(),
                  "var_dir": str(self.var_dir), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "services": {name: self.service_url(name) for name in SERVICES}}
        path = self.var_dir / RUNNING
        written = path.with_name(f".{RUNNING}.{os.getpid()}")
        written.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(written, path)

    def withdraw(self) -> None:
        """Remove var/running.json if this process wrote it: nothing answers there any more."""
        path = self.var_dir / RUNNING
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    def stop(self, names: list[str] | None = None, kill: bool = False) -> None:
        """Stop processes (all, or those named): SIGTERM, or SIGKILL to simulate a crash. Stopping all of them
        removes var/running.json first."""
        if names is None:
            self.withdraw()
        chosen = [n for n in self.processes if names is None or n in names]
        for name in chosen:
            self.restart_at.pop(name, None)
            process = self.processes[name]
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        for name in chosen:
            process = self.processes.pop(name)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def exited(self) -> list[str]:
        """Names of processes that have stopped on their own."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def restart_exited(self) -> list[str]:
        """Start again, after its back-off, each process that exited on its own (those we stop are no longer ours);
        its Prometheus folder is kept. Never waits: call it often. Returns a line to print for each exit and start."""
        now, said = time.monotonic(), []
        for name in self.exited():
            if name in self.restart_at:
                continue
            steady = now - self.started[name] >= STEADY
            delay = FIRST_BACKOFF if steady or name not in self.backoff else min(2 * self.backoff[name], MAX_BACKOFF)
            self.backoff[name], self.restart_at[name] = delay, now + delay
            said.append(f"{name} {ended(self.processes[name].returncode)}; see {self.var_dir / 'log' / name}.log. "
                        f"Restarting it in {delay:g}s.")
        due = [name for name, at in self.restart_at.items() if at <= now]
        if due:
            self.start(only=due)
        for name in due:
            del self.restart_at[name]
            said.append(f"{name} restarted (pid {self.processes[name].pid}).")
        return said

    def __enter__(self) -> "System":
        self.migrate()
        self.start()
        try:
            self.wait_until_ready()
            self.announce()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
