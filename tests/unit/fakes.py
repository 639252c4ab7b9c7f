"""Fakes for unit tests of the service layer: a unit of work that keeps what it was given in memory."""

from __future__ import annotations

import uuid

from shared.contracts import EventPayload
from shared.idempotency import IdempotencyKey, IdempotencyKeyInUse


class FakeUnitOfWork:
    """The shape of shared.unit_of_work.SqlUnitOfWork with no database: a service's fake subclasses it and sets
    in-memory repositories in `__init__`. `published` holds the events in the order they were published;
    `committed` says whether the use case committed."""

    def __init__(self):
        self.published: list[EventPayload] = []
        self.correlations: list[str | None] = []
        self.processed: set[tuple[str, uuid.UUID]] = set()
        self.committed = False
        self._pending: list[EventPayload] = []

    def __enter__(self):
        self._pending = []
        return self

    def __exit__(self, *exc):
        self._pending = []  # whatever was not committed is gone

    def publish(self, event: EventPayload, *, correlation_id: str | None = None) -> None:
        event.schema().load(event.schema().dump(event))  # the contract's rules hold, as make_event checks
        self._pending.append(event)
        self.correlations.append(correlation_id)

    def first_time(self, consumer: str, event_id: uuid.UUID) -> bool:
        if (consumer, event_id) in self.processed:
            return False
        self.processed.add((consumer, event_id))
        return True

    def flush(self) -> None:
        pass

    def commit(self) -> None:
        self.published.extend(self._pending)
        self._pending = []
        self.committed = True

    def rollback(self) -> None:
        self._pending = []

    def events(self, cls: type[EventPayload]) -> list:
        """The published events of one type."""
        return [e for e in self.published if isinstance(e, cls)]


class Table:
    """Rows of one in-memory repository: what is committed, and what this unit of work added."""

    def __init__(self):
        self.rows: dict = {}
        self.pending: dict = {}

    def put(self, key, row) -> None:
        self.pending[key] = row

    def find(self, key):
        return self.pending.get(key, self.rows.get(key))

    def all(self) -> list:
        return [*self.rows.values(), *self.pending.values()]


class FakeAnswers(Table):
    """shared.idempotency.Answers in memory."""

    def __init__(self):
        super().__init__()
        self.in_flight: set = set()  # keys another create has taken but not yet committed

    def get(self, actor, key):
        return self.rows.get((IdempotencyKey.owner(actor), key))

    def reserve(self, answer):
        if (answer.subject, answer.key) in self.in_flight or (answer.subject, answer.key) in self.rows:
            raise IdempotencyKeyInUse("A create with this Idempotency-Key is being made; retry it.")
        self.put((answer.subject, answer.key), answer)

    def fill(self, answer):
        self.put((answer.subject, answer.key), answer)
