"""Idempotency-Key on every create: a client that retries after a timeout, a 502 or a 503 cannot tell whether its
first attempt was made, so it sends the same key again and gets the first answer (with `Idempotent-Replayed:
true`) rather than a second request, volunteer or activity. The same key with another body is refused (422); a
key whose first create is still being made answers 409 (retry it). Keys belong to the caller: the subject within
their communities, so another community's token with the same subject has keys of its own.

Each service that takes creates keeps the answers in its own `idempotency_keys` table (`table`), written in the
same transaction as what the create made (`Answers`), so a create and its kept answer commit together or not at
all."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Response, jsonify, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.auth import Actor
from shared.clock import utcnow
from shared.db import UtcDateTime

KEY_LENGTH = 200

# The header as the OpenAPI documents describe it (`@blp.doc(parameters=[PARAMETER])` on each create).
PARAMETER = {"in": "header", "name": "Idempotency-Key", "schema": {"type": "string", "maxLength": KEY_LENGTH},
             "required": False,
             "description": "A new unique value (a UUID) for each new create, and the same value to retry it: a "
                            "retry with the same key and body answers as the first time (Idempotent-Replayed: true) "
                            "and creates nothing more; the same key with another body is refused with 422."}


class IdempotencyProblem(Exception):
    """A create's Idempotency-Key cannot be honoured; `status` is the HTTP answer."""

    status = 400


class InvalidIdempotencyKey(IdempotencyProblem):
    """An Idempotency-Key header that cannot be one."""


class IdempotencyKeyReused(IdempotencyProblem):
    """An Idempotency-Key sent again with a different request."""

    status = 422


class IdempotencyKeyInUse(IdempotencyProblem):
    """Another create with the same Idempotency-Key is being made at this moment."""

    status = 409


@dataclass(frozen=True)
class Idempotency:
    """A create sent with an Idempotency-Key: the key, a digest of the body, and the endpoint it was sent to."""

    key: str
    body_hash: str
    endpoint: str

    @classmethod
    def of(cls, key: str | None, body: bytes, endpoint: str) -> "Idempotency | None":
        """The create's idempotency (None without a key); InvalidIdempotencyKey if the key is too long."""
        if not key:
            return None
        if len(key) > KEY_LENGTH:
            raise InvalidIdempotencyKey(f"Idempotency-Key must be at most {KEY_LENGTH} characters.")
        return cls(key=key, body_hash=hashlib.sha256(body).hexdigest(), endpoint=endpoint)

    @classmethod
    def of_request(cls, endpoint: str) -> "Idempotency | None":
        """The Idempotency-Key the current HTTP request came with, if any."""
        return cls.of(request.headers.get("Idempotency-Key"), request.get_data(), endpoint)


@dataclass
class IdempotencyKey:
    """The first answer to a create made with an Idempotency-Key, to give again for the same key and body."""

    subject: str
    key: str
    endpoint: str
    body_hash: str
    status_code: int
    response: dict[str, Any]
    created_at: datetime = field(default_factory=utcnow)

    def __post_init__(self):
        self.response = json.loads(json.dumps(self.response, default=str))  # as it is stored, and answered again

    @staticmethod
    def owner(actor: Actor) -> str:
        """Whose keys these are (kept as `subject`): the subject in its role, organisation and communities, so a
        token of another community, role or organisation with the same subject (`ccs tokens issue` names every
        token "cli") has keys of its own and never gets this one's answers."""
        owner = f"{'+'.join(sorted(actor.communities))}/{actor.role}/{actor.organisation or ''}/{actor.subject}"
        return owner if len(owner) <= 200 else hashlib.sha256(owner.encode()).hexdigest()

    @classmethod
    def remember(cls, actor: Actor, idempotency: Idempotency, status_code: int,
                 response: dict[str, Any]) -> "IdempotencyKey":
        """The answer to keep for the actor's key."""
        return cls(subject=cls.owner(actor), key=idempotency.key, endpoint=idempotency.endpoint,
                   body_hash=idempotency.body_hash, status_code=status_code, response=response)

    def check(self, idempotency: Idempotency) -> None:
        """Raise IdempotencyKeyReused unless the key comes again with the same endpoint and body."""
        if self.endpoint != idempotency.endpoint or self.body_hash != idempotency.body_hash:
            raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body.")


def table(metadata: sa.MetaData) -> sa.Table:
    """A service's `idempotency_keys` table."""
    return sa.Table(
        "idempotency_keys", metadata,
        sa.Column("subject", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    )


class Answers:
    """The answers kept for Idempotency-Keys, in the caller's transaction."""

    def __init__(self, session: Session, keys: sa.Table):
        self.session, self.keys = session, keys

    def get(self, actor: Actor, key: str) -> IdempotencyKey | None:
        """The answer kept for this actor's key, or None."""
        row = self.session.execute(sa.select(self.keys).where(
            self.keys.c.subject == IdempotencyKey.owner(actor), self.keys.c.key == key)).mappings().first()
        return IdempotencyKey(**row) if row else None

    def reserve(self, answer: IdempotencyKey) -> None:
        """Take the key before the create does anything, so that a second create with it waits here until the first
        commits and is then refused with IdempotencyKeyInUse (409) before it has touched anything; the caller's
        rollback undoes the rest."""
        try:
            self.session.execute(sa.insert(self.keys).values(
                subject=answer.subject, key=answer.key, endpoint=answer.endpoint, body_hash=answer.body_hash,
                status_code=answer.status_code, response=answer.response, created_at=answer.created_at))
        except IntegrityError as err:
            raise IdempotencyKeyInUse("A create with this Idempotency-Key is being made; retry it.") from err

    def fill(self, answer: IdempotencyKey) -> None:
        """Keep the answer under the key this create reserved."""
        self.session.execute(sa.update(self.keys).where(
            self.keys.c.subject == answer.subject, self.keys.c.key == answer.key).values(
            status_code=answer.status_code, response=answer.response))


@dataclass(frozen=True)
class Created:
    """What a create answers: what it made (None for a replay), the body and status kept for its key, and whether
    this is the first answer given again."""

    made: Any
    body: dict[str, Any]
    status_code: int = 201
    replayed: bool = False


def replay(answers: Answers, actor: Actor, idempotency: Idempotency | None) -> Created | None:
    """The first answer again, when this create's key came before (IdempotencyKeyReused if with another body);
    else None, with the key reserved for this create (IdempotencyKeyInUse if another has it). Call it first in the
    create's transaction, and `keep` the answer at its end."""
    if idempotency is None:
        return None
    earlier = answers.get(actor, idempotency.key)
    if earlier is None:
        answers.reserve(IdempotencyKey.remember(actor, idempotency, 0, {}))
        return None
    earlier.check(idempotency)
    return Created(made=None, body=earlier.response, status_code=earlier.status_code, replayed=True)


def keep(answers: Answers, actor: Actor, idempotency: Idempotency | None, made: Any, body: dict[str, Any],
         status_code: int = 201) -> Created:
    """Keep a new create's answer under its key (if it has one), in the create's transaction."""
    if idempotency is not None:
        answers.fill(IdempotencyKey.remember(actor, idempotency, status_code, body))
    return Created(made=made, body=body, status_code=status_code)


def answer(body: dict[str, Any], status_code: int, replayed: bool, location: str | None = None,
           mimetype: str = "application/json") -> Response:
    """A create's HTTP answer: the new resource and where it lives; for a retry, the first answer again, saying so."""
    response = jsonify(body)
    response.status_code = status_code
    response.mimetype = mimetype
    if location:
        response.headers["Location"] = location
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
