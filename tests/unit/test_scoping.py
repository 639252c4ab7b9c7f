"""Scoping by construction (shared/scoping.py): a read needs the caller's scope, and keeps to its communities; and
each service's repositories take that scope as a required argument."""

from __future__ import annotations

import inspect

import pytest
import sqlalchemy as sa

from shared.auth import SYSTEM, Actor
from shared.scoping import OutOfScope, in_scope, narrowed, sees

FYLDE = Actor(subject="kim@fylde.org", role="coordinator", communities=("fylde-coast",))
BOTH = Actor(subject="max@example.org", role="manager", communities=("fylde-coast", "cheshire-east"))
NOBODY = Actor(subject="x@example.org", role="coordinator", communities=())

rows = sa.table("rows", sa.column("id", sa.Integer), sa.column("community", sa.String))


@pytest.fixture
def database():
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE rows (id INTEGER, community TEXT)"))
        connection.execute(rows.insert(), [{"id": 1, "community": "fylde-coast"},
                                           {"id": 2, "community": "cheshire-east"},
                                           {"id": 3, "community": "ottawa-west"}, {"id": 4, "community": None}])
    yield engine
    engine.dispose()


def found(database, scope) -> list[int]:
    with database.connect() as connection:
        return list(connection.scalars(sa.select(rows.c.id).where(in_scope(rows.c.community, scope))
                                       .order_by(rows.c.id)))


@pytest.mark.parametrize("scope, ids", [(FYLDE, [1]), (BOTH, [1, 2]), (NOBODY, []), (SYSTEM, [1, 2, 3, 4])])
def test_a_query_keeps_to_the_scopes_communities_and_the_system_sees_all(database, scope, ids):
    assert found(database, scope) == ids
    assert [i for i, c in ((1, "fylde-coast"), (2, "cheshire-east"), (3, "ottawa-west"), (4, None))
            if sees(scope, c)] == ids


@pytest.mark.parametrize("missing", [None, "fylde-coast", 42, object()])
def test_a_read_without_a_scope_is_an_error_not_everything(missing):
    """A forgotten argument (or a community name where the scope belongs) must never read every community."""
    with pytest.raises(TypeError, match="scope"):
        in_scope(rows.c.community, missing)
    with pytest.raises(TypeError, match="scope"):
        sees(missing, "fylde-coast")


def test_an_actor_narrows_only_to_their_own_communities():
    assert narrowed(BOTH, ["cheshire-east"]).communities == ("cheshire-east",)
    assert narrowed(BOTH, ["cheshire-east"]).subject == BOTH.subject
    with pytest.raises(OutOfScope, match="ottawa-west"):
        narrowed(BOTH, ["fylde-coast", "ottawa-west"])


def reads() -> list:
    """The repository methods that return records a person could see, in every service."""
    from services.intake.adapters import SqlRequests
    from shared.idempotency import Answers
    from services.matching.adapters import OfferRepository, RequestRepository, VolunteerRepository
    from services.metrics.adapters import ActivityRepository, FactRepository
    from services.notify.adapters import ConversationRepository, MessageRepository

    return [SqlRequests.get, SqlRequests.get_referral, SqlRequests.list, SqlRequests.list_referrals, Answers.get,
            VolunteerRepository.get, VolunteerRepository.listing, VolunteerRepository.roster, RequestRepository.get,
            RequestRepository.lock, OfferRepository.assigned, FactRepository.in_span,
            FactRepository.volunteer_changes, ActivityRepository.in_span, MessageRepository.newest_first,
            ConversationRepository.latest_sent, ConversationRepository.latest_received, ConversationRepository.texted,
            ConversationRepository.contacts, ConversationRepository.in_scope, ConversationRepository.with_phone,
            ConversationRepository.received_by_phones]


@pytest.mark.parametrize("method", reads(), ids=lambda m: m.__qualname__)
def test_every_read_a_person_could_see_requires_the_callers_scope(method):
    """The scope is a required parameter (an Actor, or the service's scope value built from one): there is no
    way to call the read without it."""
    parameters = inspect.signature(method).parameters
    scoped = [p for p in parameters.values() if p.name in ("actor", "scope")]
    assert scoped, f"{method.__qualname__} takes no scope"
    assert all(p.default is inspect.Parameter.empty for p in scoped), f"{method.__qualname__}'s scope is optional"
