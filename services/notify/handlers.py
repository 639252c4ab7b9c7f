"""What notify texts, and when: an offer to each volunteer asked, a confirmation to the one who accepted."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.notify.model import OutgoingMessage
from services.notify.sms import confirmation_text, offer_text, window_text
from shared.contracts import Event
from shared.taxonomy import CHECKS


def queue_message(session: Session, key: str, purpose: str, to: str, body: str, correlation_id: str) -> None:
    """Queue an SMS for the sender, once per key."""
    if session.scalar(sa.select(OutgoingMessage.id).where(OutgoingMessage.key == key)) is None:
        session.add(OutgoingMessage(key=key, purpose=purpose, to_phone=to, body=body,
                                    correlation_id=correlation_id))


def on_offer_made(session: Session, event: Event) -> None:
    """Text the volunteer the offer."""
    p = event.payload
    queue_message(session, f"offer:{p['offer_id']}", "offer", p["phone"],
                  offer_text(p["support_type"], p["area"],
                             window_text(p["window_start"], p["window_end"], p["window_days"], p["window_part"]),
                             p["code"]),
                  event.correlation_id)


def on_offer_accepted(session: Session, event: Event) -> None:
    """Thank the volunteer who accepted."""
    p = event.payload
    queue_message(session, f"accepted:{p['offer_id']}", "confirmation", p["phone"], confirmation_text(p["code"]),
                  event.correlation_id)


def on_offer_withdrawn(session: Session, event: Event) -> None:
    """Tell a volunteer their offer is no longer open, so a late YES is not a surprise."""
    p = event.payload
    why = "another volunteer has taken it" if p["reason"] == "taken" else "it is no longer needed"
    queue_message(session, f"withdrawn:{p['offer_id']}", "withdrawn", p["phone"],
                  f"Thank you: offer {p['code']} is closed, {why}. No need to reply.", event.correlation_id)


def on_check_expiring(session: Session, event: Event) -> None:
    """Remind a volunteer that a check or training runs out soon."""
    p = event.payload
    queue_message(session, f"expiring:{p['volunteer_id']}:{p['check']}:{p['expires_on']}", "reminder", p["phone"],
                  f"A reminder: your {CHECKS[p['check']].lower()} expires on {p['expires_on']:%d %b %Y}. "
                  "Your coordinator can help you renew it.", event.correlation_id)


HANDLERS = {"offer.made": on_offer_made, "offer.accepted": on_offer_accepted,
            "offer.withdrawn": on_offer_withdrawn, "volunteer.check_expiring": on_check_expiring}
