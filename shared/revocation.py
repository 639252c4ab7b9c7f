"""Revoked API tokens, kept by every service: the table (declared once, here), how a service applies a
`token.revoked` event, and the list a web process checks each bearer token against.

`ccs tokens revoke` asks intake, which records the revocation in its own table and publishes `token.revoked`;
matching, notify and metrics apply the event to theirs. A revocation names one token by its id (`jti`), or every
token of one holder issued before a time; it names the holder only by a keyed digest of their subject, so no email
address travels on the bus. A web process keeps the revocations in memory and reads the table again when its copy is
more than `REFRESH_SECONDS` old, or at once after a handler in the same process applied one: most requests cost no
query, and a revoked token is refused everywhere within a couple of seconds of each service hearing of it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shared.auth import subject_digest
from shared.clock import utcnow
from shared.contracts import Event
from shared.contracts.intake import TokenRevoked
from shared.db import UtcDateTime

REFRESH_SECONDS = 2.0
_changes = 0  # bumped whenever this process applies a revocation, so its lists read the table again at once


def _changed(_session) -> None:
    global _changes
    _changes += 1


class RevokedTokenMixin:
    """Columns of a service's `revoked_tokens` table: one token by its id, or every token of a holder issued before
    a time."""

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    jti: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    subject_digest: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    issued_before: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Revocations:
    """A service's `revoked_tokens` table and what is done with it."""

    def __init__(self, table: type[RevokedTokenMixin]):
        self.table = table

    @classmethod
    def for_base(cls, base) -> "Revocations":
        """The `revoked_tokens` table, declared on a service's declarative base."""
        return cls(type("RevokedToken", (RevokedTokenMixin, base), {"__tablename__": "revoked_tokens"}))

    def add(self, session: Session, revoked: TokenRevoked) -> None:
        """Record a revocation in the caller's transaction; once it commits, this process's lists read again."""
        session.add(self.table(jti=revoked.jti, subject_digest=revoked.subject_digest,
                               issued_before=revoked.issued_before))
        sa.event.listen(session, "after_commit", _changed, once=True)

    def repository(self, session: Session) -> "SqlRevokedTokens":
        """The revocations as a unit of work's repository (intake records them through its use case)."""
        return SqlRevokedTokens(self, session)

    def handle(self, uow, event: Event, settings: Any = None) -> None:
        """The bus handler of `token.revoked` (in every service but intake, which records its own): record it in the
        unit of work that marks the event handled. (`settings` is taken, and not needed, as other handlers take it.)"""
        self.add(uow.session, event.payload)

    def list_for(self, sessions: sessionmaker, secret_key: str, **options: Any) -> "RevocationList":
        """The in-memory list a web process checks tokens against."""
        return RevocationList(self.table, sessions, secret_key, **options)


@dataclass
class SqlRevokedTokens:
    """A unit of work's view of the revoked tokens."""

    revocations: Revocations
    session: Session

    def add(self, revoked: TokenRevoked) -> None:
        """Record a revocation."""
        self.revocations.add(self.session, revoked)


@dataclass(frozen=True)
class _Snapshot:
    jtis: frozenset[str] = frozenset()
    subjects: dict[str, float] = field(default_factory=dict)  # digest -> tokens issued before this (epoch seconds)
    read_at: float = float("-inf")
    changes: int = -1


class RevocationList:
    """The revocations of one service's database, as one web process knows them."""

    def __init__(self, table, sessions: sessionmaker, secret_key: str, refresh: float = REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        self.table, self.sessions, self.secret_key = table, sessions, secret_key
        self.refresh, self.monotonic = refresh, monotonic
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()

    def revokes(self, claims: dict[str, Any]) -> bool:
        """True when a token with these claims has been revoked, by its id or with every token of its holder."""
        known = self._current()
        if claims.get("jti") in known.jtis:
            return True
        before = known.subjects.get(subject_digest(self.secret_key, claims["sub"]))
        return before is not None and float(claims["iat"]) < before

    def _current(self) -> _Snapshot:
        known = self._snapshot
        if known.changes == _changes and self.monotonic() - known.read_at < self.refresh:
            return known
        with self._lock:
            if self._snapshot is known:
                self._snapshot = self._read()
            return self._snapshot

    def _read(self) -> _Snapshot:
        changes, read_at = _changes, self.monotonic()
        jtis, subjects = set(), {}
        with self.sessions() as session:
            for jti, digest, before in session.execute(
                    sa.select(self.table.jti, self.table.subject_digest, self.table.issued_before)):
                if jti:
                    jtis.add(jti)
                if digest and before is not None:
                    subjects[digest] = max(subjects.get(digest, 0.0), before.timestamp())
        return _Snapshot(frozenset(jtis), subjects, read_at, changes)
