"""SMS: what our messages say, what volunteers' replies mean, and the gateways that carry them."""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from services.notify.model import OutgoingMessage, outbox
from shared.config import Settings
from shared.outbox import utcnow
from shared.taxonomy import KINDS

log = logging.getLogger(__name__)

# --- what our messages say -------------------------------------------------------------------------------------


WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def window_text(start: datetime | None, end: datetime | None, days: list[str] | None = None,
                part: str | None = None) -> str:
    """A short time window: 'Wed 25 Nov 14:00-16:00', or 'any weekday afternoon', 'Mon or Thu morning'."""
    if start and end:
        return f"{start:%a %d %b %H:%M}-{end:%H:%M}"
    if days == WEEKDAYS:
        named = "any weekday"
    elif days and len(days) == 7:
        named = "any day"
    else:
        named = " or ".join(day.title() for day in days or [])
    return f"{named} {part or ''}".strip()


def offer_text(support_type: str, area: str, when: str, code: str) -> str:
    """An offer: the kind of help, the district, the window and the code; never a name or address."""
    place = f" near {area}" if area else ""
    return (f"Can you help? {KINDS[support_type].label}{place}, {when}. "
            f"Reply YES {code} to accept or NO {code} to decline.")


def confirmation_text(code: str) -> str:
    """What the volunteer who accepted is told."""
    return f"Thank you! Task {code} is yours. Your coordinator will be in touch with the details."


HELP_TEXT = "Reply YES <code> to accept an offer, NO <code> to decline it. Reply STOP to stop messages."

# --- what volunteers' replies mean ---------------------------------------------------------------------------

KEYWORDS = {"YES": "YES", "Y": "YES", "NO": "NO", "N": "NO", "HELP": "HELP"}
_WORD = re.compile(r"[A-Za-z]+|\d+")


@dataclass(frozen=True)
class Reply:
    """What a volunteer's SMS says: a keyword (YES, NO, HELP) and an offer code, either possibly absent."""

    keyword: str | None
    code: str | None


def parse_reply(body: str) -> Reply:
    """Read 'YES 4821', '4821 yes', 'Y 4821', 'no 4821' and the like."""
    words = _WORD.findall(body)
    keyword = next((KEYWORDS[w.upper()] for w in words if w.upper() in KEYWORDS), None)
    code = next((w for w in words if w.isdigit() and len(w) == 4), None)
    return Reply(keyword, code)


# --- gateways ---------------------------------------------------------------------------------------------------


class SmsGateway(Protocol):
    """Sends one SMS and returns the provider's id for it."""

    def send(self, to: str, body: str) -> str: ...


class DevelopmentGateway:
    """Sends nothing: records each message in var/sms/sent.jsonl and prints it."""

    def __init__(self, folder: Path):
        self.path = folder / "sms" / "sent.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def send(self, to: str, body: str) -> str:
        """Record and print the message."""
        sid = "SMdev" + uuid.uuid4().hex[:27]
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"sid": sid, "to": to, "body": body, "at": utcnow().isoformat()}) + "\n")
        print(f"[development SMS gateway] to {to}: {body}", flush=True)
        return sid


class TwilioGateway:
    """Sends through Twilio's Messages API with the real `twilio` client."""

    def __init__(self, settings: Settings):
        from twilio.rest import Client

        self.client = Client(settings.twilio_account_sid, settings.twilio_auth_token)
        if settings.twilio_base_url:
            self.client.api.base_url = settings.twilio_base_url
        self.from_number = settings.twilio_from_number
        self.status_callback = f"{settings.public_url}/sms/status"

    def send(self, to: str, body: str) -> str:
        """Create the message at Twilio; returns its SID."""
        message = self.client.messages.create(to=to, from_=self.from_number, body=body,
                                              status_callback=self.status_callback)
        return message.sid


def gateway_for(settings: Settings) -> SmsGateway:
    """Twilio when credentials are configured, else the development gateway."""
    if settings.twilio_account_sid and settings.twilio_auth_token:
        return TwilioGateway(settings)
    return DevelopmentGateway(settings.var_dir)


# --- sending ------------------------------------------------------------------------------------------------------


def offer_of(message: OutgoingMessage) -> str | None:
    """The offer an offer's SMS is for (its key is `offer:<offer id>`), so matching can start its clock."""
    return message.key.split(":", 1)[1] if message.purpose == "offer" else None


def send_queued(sessions: sessionmaker, gateway: SmsGateway, limit: int = 20) -> int:
    """Send queued messages, each at most once: claimed (committed) before the gateway is called."""
    sent = 0
    for _ in range(limit):
        with sessions.begin() as session:
            query = sa.select(OutgoingMessage).where(OutgoingMessage.status == "queued") \
                .order_by(OutgoingMessage.created_at).limit(1)
            if session.bind.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            message = session.scalars(query).first()
            if message is None:
                return sent
            message.status = "sending"
        try:
            sid = gateway.send(message.to_phone, message.body)
        except Exception as exc:  # the provider refused it; the error is kept for the coordinator
            log.warning("sending SMS %s failed: %s", message.id, type(exc).__name__)
            with sessions.begin() as session:
                row = session.get(OutgoingMessage, message.id)
                row.status, row.error = "failed", str(exc)[:500]
                outbox.add(session, "sms.failed", {"message_id": row.id, "purpose": row.purpose,
                                                   "reason": type(exc).__name__, "offer_id": offer_of(row)},
                           correlation_id=row.correlation_id)
            continue
        with sessions.begin() as session:
            row = session.get(OutgoingMessage, message.id)
            row.status, row.provider_sid, row.sent_at = "sent", sid, utcnow()
            outbox.add(session, "sms.sent", {"message_id": row.id, "purpose": row.purpose, "provider_sid": sid,
                                             "offer_id": offer_of(row)}, correlation_id=row.correlation_id)
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
