"""SMS gateways, and the sender that sends each queued message at most once.

What the messages say, and what replies mean, is in services/notify/messages.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import requests
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from services.notify.model import Contact, OutgoingMessage, outbox
from shared.config import Settings
from shared.clock import utcnow
from shared.telemetry import SMS

log = logging.getLogger(__name__)

# --- gateways ---------------------------------------------------------------------------------------------------


class SmsGateway(Protocol):
    """Sends one SMS (from the community's own number, when given) and returns the provider's id for it."""

    def send(self, to: str, body: str, from_: str | None = None) -> str: ...


class DevelopmentGateway:
    """Sends nothing: records each message in var/sms/sent.jsonl and prints it."""

    def __init__(self, folder: Path):
        self.path = folder / "sms" / "sent.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def send(self, to: str, body: str, from_: str | None = None) -> str:
        """Record and print the message."""
        sid = "SMdev" + uuid.uuid4().hex[:27]
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"sid": sid, "to": to, "from": from_, "body": body,
                                     "at": utcnow().isoformat()}) + "\n")
        print(f"[development SMS gateway] to {to}: {body}", flush=True)
        return sid


class TwilioGateway:
    """Sends through Twilio's Messages API with the real `twilio` client.

    From a Messaging Service when one is configured (Twilio then picks the sender from its pool), else from the
    community's own number, else the deployment's TWILIO_FROM_NUMBER. Twilio reports delivery to /sms/status."""

    def __init__(self, settings: Settings):
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        self.client = Client(settings.twilio_account_sid, settings.twilio_auth_token,
                             http_client=TwilioHttpClient(timeout=15))
        if settings.twilio_base_url:
            self.client.api.base_url = settings.twilio_base_url
        self.from_number = settings.twilio_from_number
        self.messaging_service_sid = settings.twilio_messaging_service_sid
        self.status_callback = f"{settings.public_url}/sms/status"

    def send(self, to: str, body: str, from_: str | None = None) -> str:
        """Create the message at Twilio; returns its SID. Twilio's errors raise TwilioRestException."""
        sender = ({"messaging_service_sid": self.messaging_service_sid} if self.messaging_service_sid
                  else {"from_": from_ or self.from_number})
        message = self.client.messages.create(to=to, body=body, status_callback=self.status_callback, **sender)
        return message.sid


def webhook_token(settings: Settings) -> str:
    """What Twilio signs its webhooks with: the account's auth token, or in development (no Twilio) a token
    derived from the deployment's secret key, with which the SMS simulator signs its replies."""
    return settings.twilio_auth_token or development_webhook_token(settings.secret_key)


def development_webhook_token(secret_key: str) -> str:
    """The token the SMS simulator and `ccs text` sign with when there is no Twilio: derived from the secret key."""
    return hmac.new(secret_key.encode(), b"development sms webhook", hashlib.sha256).hexdigest()


def signature_for(settings: Settings, path: str, form: dict[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send with `form` to our public URL + `path` (for the simulator)."""
    from twilio.request_validator import RequestValidator

    return RequestValidator(webhook_token(settings)).compute_signature(settings.public_url + path, form)


def gateway_for(settings: Settings) -> SmsGateway:
    """Twilio when credentials are configured, else the development gateway."""
    if settings.uses_twilio:
        return TwilioGateway(settings)
    return DevelopmentGateway(settings.var_dir)


# --- sending ------------------------------------------------------------------------------------------------------

# Twilio's error codes that say something about the number rather than the message.
OPTED_OUT_CODES = {21610}  # the person texted STOP: Twilio will not deliver to them
INVALID_CODES = {21211, 21217, 21614}  # not a valid number; not a number that can take SMS (a landline)


@dataclass(frozen=True)
class Retry:
    """How failed sends are retried: exponential back-off with jitter, a bounded number of times."""

    max_attempts: int = 5
    base_seconds: float = 2.0
    cap_seconds: float = 300.0

    @classmethod
    def from_env(cls) -> "Retry":
        return cls(max_attempts=int(os.environ.get("CCS_SMS_MAX_ATTEMPTS", 5)),
                   base_seconds=float(os.environ.get("CCS_SMS_RETRY_BASE_SECONDS", 2.0)))

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """The wait after `attempts` failed tries: half the exponential step fixed, half random ("equal jitter")."""
        step = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=step / 2 + (rng or random).uniform(0, step / 2))


def outcome_of(exc: Exception) -> tuple[str, str]:
    """What a failed send means: ("retry" | "opted_out" | "invalid" | "failed", a reason without personal data)."""
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        reason = f"{exc.status} {exc.code}" if exc.code else str(exc.status)
        if exc.code in OPTED_OUT_CODES:
            return "opted_out", reason
        if exc.code in INVALID_CODES:
            return "invalid", reason
        if exc.status == 429 or exc.status >= 500:
            return "retry", reason
        return "failed", reason
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, OSError)):
        return "retry", type(exc).__name__
    return "failed", type(exc).__name__


def offer_of(message: OutgoingMessage) -> str | None:
    """The offer an offer's SMS is for (its key is `offer:<offer id>`), so matching can start its clock."""
    return message.key.split(":", 1)[1] if message.purpose == "offer" else None


def _failed(session, row: OutgoingMessage, reason: str) -> None:
    row.status, row.error, row.next_attempt_at = "failed", reason, None
    outbox.add(session, "sms.failed", {"message_id": row.id, "purpose": row.purpose, "reason": reason,
                                       "offer_id": offer_of(row)}, correlation_id=row.correlation_id)
    SMS.labels("failed").inc()


# How long a message may stay `sending`: far longer than a gateway call takes (its timeout is 15 s), so only a
# sender that stopped between claiming a message and recording Twilio's answer leaves one longer.
UNCONFIRMED_AFTER = timedelta(minutes=5)


def settle_unconfirmed(sessions: sessionmaker, now: datetime) -> int:
    """Count a message a stopped sender left `sending` as sent, without a SID, and never send it again.

    Twilio may well have it (the gateway call is what takes time), so `sms.sent` starts an offer's clock: the
    volunteer can still answer it, and if it never went the offer times out and the cascade moves on."""
    with sessions.begin() as session:
        query = sa.select(OutgoingMessage).where(OutgoingMessage.status == "sending",
                                                 OutgoingMessage.next_attempt_at <= now)
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        stuck = session.scalars(query).all()
        for row in stuck:
            log.warning("SMS %s was left sending; counted as sent, not sent again", row.id)
            row.status, row.sent_at, row.next_attempt_at = "sent", now, None
            row.error = "unconfirmed: the sender stopped before Twilio's answer was recorded"
            outbox.add(session, "sms.sent", {"message_id": row.id, "purpose": row.purpose, "provider_sid": None,
                                             "offer_id": offer_of(row)}, correlation_id=row.correlation_id)
        return len(stuck)


def _claim(sessions: sessionmaker, now: datetime) -> OutgoingMessage | None:
    """Take the oldest message that is due, and mark it `sending` (committed) before the gateway is called;
    one for a number that opted out or cannot take SMS fails at once, so an offer's cascade moves on."""
    while True:
        with sessions.begin() as session:
            query = sa.select(OutgoingMessage).where(
                OutgoingMessage.status == "queued",
                sa.or_(OutgoingMessage.next_attempt_at.is_(None), OutgoingMessage.next_attempt_at <= now),
            ).order_by(OutgoingMessage.created_at).limit(1)
            if session.bind.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            message = session.scalars(query).first()
            if message is None:
                return None
            contact = session.get(Contact, message.to_phone)
            if contact is not None and (contact.opted_out_at or contact.invalid_at):
                _failed(session, message, "opted_out" if contact.opted_out_at else "invalid_number")
                continue
            message.status, message.attempts = "sending", (message.attempts or 0) + 1
            message.next_attempt_at = now + UNCONFIRMED_AFTER  # when settle_unconfirmed may look at it
            session.flush()
            session.expunge(message)
            return message


def send_queued(sessions: sessionmaker, gateway: SmsGateway, limit: int = 20, now: datetime | None = None,
                retry: Retry | None = None) -> int:
    """Send the messages that are due, each at most once; returns how many went.

    A send that fails for a while (429, 5xx, the network) is queued again after a back-off, up to a limit;
    then, or for any other refusal, the message fails and `sms.failed` says so. Twilio's 21610 records the number
    as opted out, and 21211/21614 as unable to take SMS, each with an event for matching and the coordinator."""
    retry = retry or Retry.from_env()
    settle_unconfirmed(sessions, now or utcnow())
    sent = 0
    for _ in range(limit):
        moment = now or utcnow()
        message = _claim(sessions, moment)
        if message is None:
            break
        try:
            sid = gateway.send(message.to_phone, message.body, message.from_phone)
        except Exception as exc:
            outcome, reason = outcome_of(exc)
            log.warning("sending SMS %s failed (attempt %d): %s", message.id, message.attempts, reason)
            with sessions.begin() as session:
                row = session.get(OutgoingMessage, message.id)
                row.error = reason
                if outcome == "retry" and row.attempts < retry.max_attempts:
                    row.status, row.next_attempt_at = "queued", moment + retry.delay(row.attempts)
                    SMS.labels("retried").inc()
                    continue
                if outcome in ("opted_out", "invalid"):
                    contact = Contact.of(session, row.to_phone)
                    if outcome == "opted_out":
                        contact.opted_out_at = moment
                        outbox.add(session, "contact.opted_out", {"phone": row.to_phone, "at": moment,
                                                                  "source": "provider"})
                    else:
                        contact.invalid_at, contact.invalid_reason = moment, reason
                        outbox.add(session, "contact.invalid", {"phone": row.to_phone, "at": moment,
                                                                "reason": reason})
                _failed(session, row, "opted_out" if outcome == "opted_out" else
                        "invalid_number" if outcome == "invalid" else reason)
            continue
        with sessions.begin() as session:
            row = session.get(OutgoingMessage, message.id)
            row.status, row.provider_sid, row.sent_at, row.error = "sent", sid, utcnow(), None
            row.next_attempt_at = None
            outbox.add(session, "sms.sent", {"message_id": row.id, "purpose": row.purpose, "provider_sid": sid,
                                             "offer_id": offer_of(row)}, correlation_id=row.correlation_id)
        SMS.labels("sent").inc()
        sent += 1
    return sent


def run_sender(sessions: sessionmaker, gateway: SmsGateway, stop: threading.Event, interval: float) -> None:
    """Send queued messages until `stop` is set."""
    while not stop.is_set():
        try:
            if not send_queued(sessions, gateway):
                stop.wait(interval)
        except Exception:  # database unreachable: try again shortly
            log.warning("SMS sender failed; retrying", exc_info=True)
            stop.wait(1.0)
