"""Matching's bus handlers: each event it consumes, passed to one use case. Each handler is
`handler(uow, event, settings)`; bootstrap.worker gives it the service's settings."""

from __future__ import annotations

from services.matching import service_layer
from services.matching.adapters import revocations
from shared import clock
from shared.contracts import Event


def on_request_submitted(uow, event: Event, settings) -> None:
    """Take a new request into matching and make the first offers; one already closed when it was made (signposted
    at once, or ended while held) is not matching's: nothing is written and no one is asked."""
    if event.payload.closed:
        return
    service_layer.take_request(uow, event.payload, settings.policy, clock.utcnow(), event.correlation_id)


def on_request_updated(uow, event: Event, settings) -> None:
    """Keep matching's copy of an open request current."""
    service_layer.update_request(uow, event.payload, settings.policy, clock.utcnow(), event.correlation_id)


def on_request_cancelled(uow, event: Event, settings) -> None:
    """Stop matching a cancelled request, and withdraw its offers."""
    service_layer.cancel_request(uow, event.payload.request_id, clock.utcnow())


def on_request_signposted(uow, event: Event, settings) -> None:
    """A request a coordinator signposted elsewhere is no longer matched: as for a cancellation, its offers are
    withdrawn. One matching never heard of (closed before volunteers were asked) leaves nothing to stop."""
    if not event.payload.asked_matching:
        return
    service_layer.cancel_request(uow, event.payload.request_id, clock.utcnow())


def on_person_died(uow, event: Event, settings) -> None:
    """A person died: their open requests stop, their offers are withdrawn quietly."""
    service_layer.person_died(uow, event.payload.request_ids, clock.utcnow())


def on_sms_received(uow, event: Event, settings) -> None:
    """Act on what a volunteer texted (and answer JOIN from anyone with the link to the page for applying)."""
    service_layer.reply(uow, event.payload, settings.policy, clock.utcnow(), event.correlation_id,
                        public_url=settings.public_url)


def on_sms_sent(uow, event: Event, settings) -> None:
    """An offer's SMS went when the event says: its time to answer starts then."""
    service_layer.offer_sent(uow, event.payload, event.occurred_at, settings.policy)


def on_sms_failed(uow, event: Event, settings) -> None:
    """An offer that could not be delivered counts as declined."""
    service_layer.offer_failed(uow, event.payload, settings.policy, clock.utcnow())


def on_opted_out(uow, event: Event, settings) -> None:
    """A phone opted out of SMS: it is offered nothing more by SMS, and its open offers are withdrawn."""
    service_layer.opted_out(uow, event.payload.phone, event.payload.at, settings.policy, clock.utcnow())


def on_invalid(uow, event: Event, settings) -> None:
    """A phone cannot take texts: it is not offered tasks by SMS (its queued offers fail as they are sent)."""
    service_layer.contact_changed(uow, event.payload.phone, opted_out_at=event.payload.at)


def on_opted_in(uow, event: Event, settings) -> None:
    """A phone opted back in: it may be offered tasks again."""
    service_layer.contact_changed(uow, event.payload.phone, opted_out_at=None)


def on_person_erased(uow, event: Event, settings) -> None:
    """A person was erased: the pseudonym linking their requests goes."""
    service_layer.forget_person(uow, event.payload)


def on_activity_logged(uow, event: Event, settings) -> None:
    """The hours volunteers gave to a group activity (or training delivered) count toward their own."""
    service_layer.add_contributions(uow, event.payload)


HANDLERS = {"request.submitted": on_request_submitted, "request.updated": on_request_updated,
            "request.cancelled": on_request_cancelled, "person.died": on_person_died,
            "request.signposted": on_request_signposted, "sms.received": on_sms_received, "sms.sent": on_sms_sent,
            "sms.failed": on_sms_failed, "contact.opted_out": on_opted_out, "contact.opted_in": on_opted_in,
            "contact.invalid": on_invalid, "token.revoked": revocations.handle, "person.erased": on_person_erased,
            "activity.logged": on_activity_logged}
