"""Intake's use cases: each takes a unit of work, the actor it acts for and the settings it needs, and returns a
result or raises a domain error (domain.IntakeError). None reads Flask's request or the environment."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

from services.intake.domain import (MATCHING_FIELDS, AuditEntry, Idempotency, IdempotencyKey, NotFound, Passwords,
                                    SupportRequest, User, UserExists, columns_from)
from shared.auth import SYSTEM, Actor
from shared.config import Settings
from shared.contracts import Event
from shared.contracts.intake import RequestCancelled, RequestSubmitted, RequestUpdated


@dataclass(frozen=True)
class Submitted:
    """What a create answers: the new request (None for a replay), the body and status kept for its
    Idempotency-Key, and whether this is the first answer given again."""

    request: SupportRequest | None
    body: dict[str, Any]
    status_code: int = 201
    replayed: bool = False


@dataclass
class Page:
    """Which rows of a list to give: from `first_item`, at most `page_size`; `item_count` is set to the total.
    (flask-smorest's pagination parameters have the same shape.)"""

    first_item: int = 0
    page_size: int = 200
    item_count: int | None = None


# --- requests for support ---------------------------------------------------------------------------------------------


def submit_request(uow, actor: Actor, data: dict[str, Any], settings: Settings, *, source: str = "coordinator",
                   idempotency: Idempotency | None = None,
                   render: Callable[[SupportRequest], dict[str, Any]] | None = None,
                   document: dict[str, Any] | None = None) -> Submitted:
    """Store a new request (a coordinator's, a referral, or a FHIR ServiceRequest as `document`) with its
    consents, timeline, audit entry and `request.submitted`; with an Idempotency-Key, once: a retry with the same
    body gets the first answer again. `render` makes the answer kept for the key, in the same transaction."""
    with uow:
        if idempotency is not None and (earlier := uow.answers.get(actor.subject, idempotency.key)) is not None:
            earlier.check(idempotency)
            return Submitted(request=None, body=earlier.response, status_code=earlier.status_code, replayed=True)
        columns = columns_from(data)
        columns.setdefault("source", source)
        request = SupportRequest.submit(actor, columns, data["consent"], document)
        uow.requests.add(request)
        uow.audit.add(AuditEntry.of(actor, "create", request.id, columns))
        uow.publish(request.for_matching(RequestSubmitted, settings.secret_key), correlation_id=str(request.id))
        uow.flush()  # the request is stored before its answer is kept, so a clash below is the key's alone
        body = render(request) if render else {}
        if idempotency is not None:
            uow.answers.add(IdempotencyKey.remember(actor, idempotency, 201, body))
        uow.commit()
    return Submitted(request=request, body=body)


def update_request(uow, actor: Actor, request_id: uuid.UUID, data: dict[str, Any],
                   settings: Settings) -> SupportRequest:
    """Change an open request; matching hears (`request.updated`) only of changes that matter to it."""
    with uow:
        request = _get(uow, request_id, actor)
        changed = request.edit(columns_from(data), data.get("consent"), actor.subject)
        if changed:
            uow.audit.add(AuditEntry.of(actor, "update", request.id, changed))
        if any(name in MATCHING_FIELDS for name in changed):
            uow.publish(request.for_matching(RequestUpdated, settings.secret_key), correlation_id=str(request.id))
        uow.commit()
    return request


def cancel_request(uow, actor: Actor, request_id: uuid.UUID, reason: str) -> SupportRequest:
    """Cancel an open request and tell matching (`request.cancelled`); NotOpen if it had ended."""
    with uow:
        request = _get(uow, request_id, actor)
        request.cancel(reason, actor.subject)
        uow.audit.add(AuditEntry.of(actor, "cancel", request.id, ["status"]))
        uow.publish(RequestCancelled(request_id=request.id, reason=reason), correlation_id=str(request.id))
        uow.commit()
    return request


def get_request(uow, actor: Actor, request_id: uuid.UUID) -> SupportRequest:
    """One request in the actor's communities, with its consents and timeline; the view is audited."""
    with uow:
        request = _get(uow, request_id, actor)
        uow.audit.add(AuditEntry.of(actor, "view", request.id))
        uow.commit()
    return request


def list_requests(uow, actor: Actor, filters: dict[str, Any], page) -> list[SupportRequest]:
    """One page of the requests in the actor's communities, unmatched and urgent first; the listing is audited.
    `page` has `first_item` and `page_size`, and is given `item_count`."""
    with uow:
        rows = uow.requests.list(actor, filters, page)
        uow.audit.add(AuditEntry.of(actor, "list", None, ["person_name", "area"]))
        uow.commit()
    return rows


def _get(uow, request_id: uuid.UUID, actor: Actor) -> SupportRequest:
    """A request within the actor's reach, or NotFound."""
    request = uow.requests.get(request_id, actor)
    if request is None:
        raise NotFound("No such request.")
    return request


# --- referrers and health systems -------------------------------------------------------------------------------------


def list_referrals(uow, actor: Actor, page) -> list[SupportRequest]:
    """One page of the referrals the actor made, newest first."""
    with uow:
        rows = uow.requests.list_referrals(actor, page)
        uow.commit()  # a read ends with a commit: a rollback would expire what it read
    return rows


def get_referral(uow, actor: Actor, request_id: uuid.UUID) -> SupportRequest:
    """A referral the actor made, as it stands now; NotFound otherwise."""
    with uow:
        request = uow.requests.get_referral(request_id, actor)
        uow.commit()
    if request is None:
        raise NotFound("No such referral.")
    return request


def get_service_request(uow, actor: Actor, request_id: uuid.UUID) -> SupportRequest:
    """A FHIR ServiceRequest the actor sent, as it stands now; NotFound otherwise (other referrals too)."""
    with uow:
        request = uow.requests.get_referral(request_id, actor)
        uow.commit()
    if request is None or request.source != "health_system":
        raise NotFound("No such ServiceRequest.")
    return request


# --- matching's events ------------------------------------------------------------------------------------------------


def follow_matching(uow, event: Event) -> None:
    """Note what matching did on the request's timeline and move its status on; after an acceptance, share the
    person's details with that volunteer. Runs in the handler's unit of work, which the caller commits."""
    request = uow.requests.get(event.payload.request_id, SYSTEM)
    if request is None:
        return
    request.follow(event.type, event.payload, event.occurred_at)
    if event.type == "offer.accepted":
        share_details(uow, request, event)


def share_details(uow, request: SupportRequest, event: Event) -> None:
    """Tell notify (`task.details_shared`) what the volunteer who accepted may know of the person."""
    uow.publish(request.details_for(event.payload), correlation_id=event.correlation_id)


# --- people who sign in -----------------------------------------------------------------------------------------------


def create_user(uow, passwords: Passwords, email: str, name: str, role: str, communities: list[str],
                organisation: str | None, password: str) -> User:
    """A new user who can sign in and be issued tokens; UserExists if the email address is taken."""
    with uow:
        if uow.users.by_email(email) is not None:
            raise UserExists(f"a user {email} already exists")
        user = User(email=email, name=name, role=role, communities=communities, organisation=organisation,
                    password_hash=passwords.hash(password))
        uow.users.add(user)
        uow.commit()
    return user


def active_user(uow, email: str) -> User | None:
    """The active user with this email address (any case), or None."""
    with uow:
        user = uow.users.active(email.strip().lower())
        uow.commit()
    return user


def sign_in(uow, passwords: Passwords, email: str, password: str) -> User | None:
    """The active user whose email and password these are, or None."""
    user = active_user(uow, email)
    return user if user is not None and passwords.matches(user.password_hash, password) else None
