"""Browser tests: the whole system as real processes on the embedded default, driven by headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image, ImageChops

from shared import config
from shared.demo import Client, five_free_ports
from shared.supervisor import System
from shared.web import issue_token

CHROMIUM = os.environ.get("CCS_CHROMIUM", "/usr/bin/chromium")
# Chromium as root in a container, with no network beyond this machine: no sandbox, no background fetches.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--font-render-hinting=none"]
SCREENSHOTS = Path(__file__).with_name("screenshots")
PASSWORD = "a long enough passphrase"


@contextlib.contextmanager
def running_site(folder: Path, **env: str) -> Iterator[System]:
    """All four services and the front door on the embedded default in `folder`, with one user of each role."""
    with System(var_dir=folder, port=five_free_ports(), env=env) as system:
        ccs_each(system, *(["users", "create", "--email", f"{role}@example.org", "--name", f"{role.title()} Person",
                            "--role", role, "--password", PASSWORD]
                           for role in ("coordinator", "referrer", "manager", "admin")))
        yield system


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running system for a test module's browser tests."""
    with running_site(tmp_path_factory.mktemp("site")) as system:
        yield system


def ccs(system: System, *args: str) -> str:
    """Run the `ccs` command against a running system's folder, and return what it printed."""
    done = subprocess.run([sys.executable, "-m", "shared.cli", *args], env=system.environment(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


# `ccs` commands one after another in one process: a process of its own each would spend a second importing the same
# code. A command that fails raises, so the process exits non-zero.
CCS_EACH = """import json, sys
from shared.cli import main
for args in json.loads(sys.argv[1]):
    main(args, standalone_mode=False)
"""


def ccs_each(system: System, *commands: list[str]) -> None:
    """Run several `ccs` commands, in order, against a running system's folder."""
    done = subprocess.run([sys.executable, "-c", CCS_EACH, json.dumps(commands)], env=system.environment(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def api(system: System, role: str = "coordinator") -> Client:
    """An API client for the system with a token for `role` in Fylde Coast."""
    return Client(system.url, issue_token(config.secret_key(system.var_dir), f"{role}@example.org", role))


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, site):
    """A fresh browser tab (its own cookies) on the site, at a laptop's size."""
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 800}, locale="en-GB",
                                  timezone_id="Europe/London")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def sign_in(tab, role: str = "coordinator", password: str = PASSWORD) -> None:
    """Sign in through the login page, as a person would."""
    tab.goto("/login")
    tab.get_by_label("Email", exact=True).fill(f"{role}@example.org")
    tab.get_by_label("Password", exact=True).fill(password)
    tab.get_by_role("button", name="Sign in").click()


def matches_screenshot(actual: bytes, name: str, tmp_path: Path, tolerance: float = 0.01) -> None:
    """Compare a screenshot with the reviewed one in tests/e2e/screenshots/.

    Fails when more than `tolerance` of the pixels differ visibly; the actual image and a difference image are
    left in `tmp_path`. With CCS_UPDATE_SCREENSHOTS=1 the reviewed image is replaced (look at it before committing).
    """
    expected_path = SCREENSHOTS / f"{name}.png"
    actual_path = tmp_path / f"{name}.png"
    actual_path.write_bytes(actual)
    if os.environ.get("CCS_UPDATE_SCREENSHOTS") == "1" or not expected_path.exists():
        SCREENSHOTS.mkdir(exist_ok=True)
        expected_path.write_bytes(actual)
        if os.environ.get("CCS_UPDATE_SCREENSHOTS") != "1":
            pytest.fail(f"no reviewed screenshot yet: wrote {expected_path}; look at it, then commit it")
        return
    expected = Image.open(expected_path).convert("RGB")
    got = Image.open(actual_path).convert("RGB")
    assert got.size == expected.size, f"{name}: {got.size} instead of {expected.size}; see {actual_path}"
    difference = ImageChops.difference(expected, got).convert("L").point(lambda value: 255 if value > 40 else 0)
    changed = difference.histogram()[255] / (got.width * got.height)
    if changed > tolerance:
        difference.save(tmp_path / f"{name}-difference.png")
        pytest.fail(f"{name}: {changed:.1%} of pixels differ from {expected_path}; see {actual_path}")


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def accessible(tab, what: str) -> None:
    """The page as it is now has no serious or critical accessibility problem (axe-core, injected from npm) and,
    however narrow the window, no sideways scrolling."""
    tab.evaluate(AXE.read_text(encoding="utf-8"))  # as the devtools console would: the pages' CSP allows no inline script
    found = tab.evaluate("axe.run(document, {resultTypes: ['violations']})")
    problems = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
                for v in found["violations"] if v["impact"] in ("serious", "critical")]
    assert not problems, f"{what}: " + "; ".join(problems)
    overflow = tab.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{what} scrolls sideways by {overflow}px at {tab.viewport_size['width']}px"

