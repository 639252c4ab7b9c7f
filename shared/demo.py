"""`ccs demo`: the README's walk-through, run by itself against a live system."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from contextlib import nullcontext
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import requests

from shared import config
from shared.web import issue_token


def until(what: str, probe: Callable[[], object], timeout: float = 20.0, interval: float = 0.05):
    """Ask the running system `probe` until it answers something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def text_in(url: str, phone: str, body: str, to: str = "+447700900100",
            var_dir: Path | None = None, public_url: str | None = None) -> requests.Response:
    """Send an SMS to the system at `url` as a volunteer would: Twilio's webhook form, signed as Twilio signs it for
    the system's `public_url` (its PUBLIC_URL, when that is not `url`) with TWILIO_AUTH_TOKEN, or the development
    token of the system whose folder is `var_dir`."""
    from twilio.request_validator import RequestValidator

    token = os.environ.get("TWILIO_AUTH_TOKEN") or config.development_webhook_token(
        config.secret_key(var_dir or config.var_dir()))
    form = {"From": phone, "To": to, "Body": body, "MessageSid": "SM" + secrets.token_hex(16), "NumMedia": "0"}
    signature = RequestValidator(token).compute_signature(f"{public_url or url}/sms/inbound", form)
    response = requests.post(f"{url}/sms/inbound", data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    response.raise_for_status()
    return response


def five_free_ports() -> int:
    """A base port with it and the four after it free."""
    from shared.supervisor import free_port, port_is_free

    while True:
        base = free_port()
        if base < 60000 and all(port_is_free(p) for p in range(base, base + 5)):
            return base


class Client:
    """The API as a coordinator's script sees it, through the front door."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, expect: int = 200, **kwargs) -> dict | list:
        """Make a call and insist on the expected status."""
        response = self.http.request(method, self.url + path, timeout=10, **kwargs)
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
        if not response.content:
            return ""  # 204 No Content
        return response.json() if "json" in response.headers.get("Content-Type", "") else response.text


def walk_through(url: str | None, echo: Callable[[str], None] = print) -> dict:
    """Register a volunteer, log a request, accept the SMS offer, and see the request matched and counted."""
    if url is None:
        from shared.supervisor import System

        folder = Path(tempfile.mkdtemp(prefix="ccs-demo-"))
        # its own system texts at any hour: a routine offer would otherwise wait out the night's quiet hours
        system = System(var_dir=folder, port=five_free_ports(), env={"CCS_QUIET_HOURS": "off"})
        echo(f"Starting the system in {folder} ...")
        context = system
        url = system.url
        secret_dir = folder
    else:
        context = nullcontext()
        secret_dir = config.var_dir()
    with context:
        client = Client(url, issue_token(config.secret_key(secret_dir), "demo", "coordinator"))
        phone = f"+447911123{secrets.randbelow(1000):03d}"
        echo(f"1. Register a volunteer who can do practical tasks in Blackpool (phone {phone})")
        volunteer = client.call("POST", "/volunteers", 201, json={
            "name": "Sam Demo", "phone": phone, "skills": ["practical"],
            "checks": [{"check": "safeguarding", "done_on": date.today().isoformat(),
                        "expires_on": (date.today() + timedelta(days=3 * 365)).isoformat()}],
            "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10})
        start = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
        echo("2. Log a request for shopping in FY1 tomorrow afternoon")
        request = client.call("POST", "/requests", 201, json={
            "person": {"name": "Pat Example", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
                       "postcode": "FY1 4AB"},
            "support_type": "shopping",
            "when": {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()},
            "consent": {"share_contact": True, "sms_contact": True},
            "coordinator_notes": "Lives alone; prefers a morning call."})
        echo(f"   request {request['id']} is {request['status']}")
        offer = until("the SMS offer", lambda: next(
            (m for m in client.call("GET", "/sms/messages", params={"to": phone}) if m["purpose"] == "offer"), None))
        echo(f"3. The volunteer's phone receives: {offer['body']!r}")
        code = re.search(r"YES (\d{4})", offer["body"]).group(1)
        echo(f"4. The volunteer replies 'YES {code}'")
        replied = time.monotonic()
        text_in(url, phone, f"YES {code}", var_dir=secret_dir)
        matched = until("the request to be matched",
                           lambda: (r := client.call("GET", f"/requests/{request['id']}"))["status"] == "matched" and r)
        elapsed = time.monotonic() - replied
        echo(f"5. Request {matched['id']} is {matched['status']} {elapsed:.2f}s after the reply")
        confirmation = until("the confirmation SMS", lambda: next(
            (m for m in client.call("GET", "/sms/messages", params={"to": phone}) if m["purpose"] == "confirmation"),
            None))
        echo(f"   and the volunteer is told: {confirmation['body']!r}")
        manager = Client(url, issue_token(config.secret_key(secret_dir), "demo-manager", "manager"))
        activity = until("the counts", lambda: (a := manager.call("GET", "/activity", params={"period": "day"}))
                            ["periods"][-1]["measures"]["requests_matched"] and a)
        today = activity["periods"][-1]["measures"]
        echo("6. A manager's counts for today (small numbers show as <5): " + ", ".join(
            f"{key.replace('_', ' ')} {today[key]}" for key in ("requests_received", "requests_matched",
                                                                 "active_volunteers", "people_reached")))
        return {"volunteer": volunteer, "request": matched, "seconds_to_matched": elapsed, "activity": activity}
