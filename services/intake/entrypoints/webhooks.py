"""Telling referrers' organisations: intake's worker sends each webhook delivery, signed, and tries again with
back-off until the organisation's server takes it.

Every change to a referral (made, looking for a volunteer, volunteer found, help given, closed) is kept as a
delivery in the same transaction as the change (IntakeUnitOfWork.tell_referrers), so a crash or an outage loses
none. A delivery is a POST of JSON to the organisation's webhook address, with two headers:

    X-CCS-Timestamp: when it was sent, in whole seconds since the epoch
    X-CCS-Signature: sha256=<hex HMAC-SHA256, keyed with the organisation's webhook secret, of "<timestamp>.<body>">

The receiver recomputes the signature over the exact bytes it received and refuses an old timestamp. A 2xx answer
delivers it; any other answer, or none within TIMEOUT seconds, is tried again after FIRST_RETRY seconds, then twice
as long each time up to LONGEST_WAIT, MAX_ATTEMPTS times in all (about a day); each answer is recorded, and the
organisation's page shows them. Deliveries about one referral go in the order they were made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Callable

import requests

from services.intake.adapters import webhooks_due
from shared.clock import utcnow

log = logging.getLogger(__name__)

TIMEOUT = 5.0
FIRST_RETRY = 10.0
LONGEST_WAIT = 3600.0
MAX_ATTEMPTS = 30
SWEEP = 5.0  # how often the sender looks anyway (for deliveries another process committed, and retries)
BATCH = 20


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-CCS-Signature header of a delivery."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def next_try(attempts: int, now: datetime) -> datetime | None:
    """When to try a delivery again after `attempts` failed ones; None once they are all spent."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return now + timedelta(seconds=min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_WAIT))


def send_due(unit_of_work: Callable, http: requests.Session) -> int:
    """Send the deliveries that are due, and record how each went; how many were tried."""
    with unit_of_work() as uow:
        now = utcnow()
        due = uow.webhook_deliveries.due(now, BATCH)
        for delivery in due:
            body = json.dumps(delivery.body, separators=(",", ":"), sort_keys=True).encode()
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "compassionate-communities-webhook/1",
                       "X-CCS-Timestamp": timestamp,
                       "X-CCS-Signature": signature(delivery.webhook_secret, timestamp, body)}
            try:
                answer = http.post(delivery.webhook_url, data=body, headers=headers, timeout=TIMEOUT,
                                   allow_redirects=False)
                delivered, said = 200 <= answer.status_code < 300, str(answer.status_code)
            except requests.RequestException as exc:
                delivered, said = False, type(exc).__name__
            attempts = delivery.attempts + 1
            if delivered:
                uow.webhook_deliveries.record(delivery.id, attempts=attempts, delivered_at=now, due_at=None,
                                              last_answer=said)
            else:
                uow.webhook_deliveries.record(delivery.id, attempts=attempts, due_at=next_try(attempts, now),
                                              last_answer=said)
                log.info("webhook delivery %s to organisation %s not taken (%s, attempt %d)", delivery.id,
                         delivery.organisation_id, said, attempts)
        uow.commit()
    return len(due)


def webhooks_loop(context) -> Callable[[threading.Event], None]:
    """The worker's loop that sends webhook deliveries: woken when this process commits one, and every SWEEP
    seconds for the rest."""

    def run(stop: threading.Event) -> None:
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    tried = send_due(context.uow, http)
                except Exception:  # the database is away: look again after the sweep
                    log.exception("webhook deliveries could not be sent; trying again in %ss", SWEEP)
                    tried = 0
                if tried < BATCH:
                    webhooks_due.wait(SWEEP, stop)

    return run
