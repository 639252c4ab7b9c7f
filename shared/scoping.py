"""Scoping by construction: the one way a repository narrows a query to what its caller may see.

Every repository method that reads records a person could see takes the caller's scope as a required argument (the
`Actor`, or a scope value a service builds from it that has `communities`) and puts `in_scope(column, scope)` in its
WHERE clause, so a use case cannot list or get anything without one. The system, acting on events and timers, passes
`shared.auth.SYSTEM`, which sees every community. `tests/integration/test_scoping.py` calls every route of every
service as another community's users and checks that nothing of the first community comes back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import sqlalchemy as sa

from shared.auth import SYSTEM, Actor


class OutOfScope(ValueError):
    """A community named that is not one of the caller's."""


def communities_of(scope: Any) -> tuple[str, ...] | None:
    """The communities a scope sees; None for the system, which sees every community. A TypeError for anything
    that is not a scope (a forgotten argument must not read everything)."""
    if scope == SYSTEM:
        return None
    communities = getattr(scope, "communities", None)
    if communities is None or isinstance(communities, str):
        raise TypeError(f"a scope (an Actor, or a value with `communities`) is required, not {scope!r}")
    return tuple(communities)


def sees(scope: Any, community: str | None) -> bool:
    """True when a record of `community` is within the scope (the in-memory twin of `in_scope`, for fakes and
    checks of one record)."""
    communities = communities_of(scope)
    return communities is None or community in communities


def in_scope(column: sa.ColumnElement, scope: Any) -> sa.ColumnElement[bool]:
    """A WHERE condition keeping the rows whose community (`column`) the scope sees: none for an empty scope, all
    for the system."""
    communities = communities_of(scope)
    if communities is None:
        return sa.true()
    return column.in_(list(communities)) if communities else sa.false()


def narrowed(actor: Actor, communities: Iterable[str]) -> Actor:
    """The actor seeing only these of their communities (a manager asking about one); OutOfScope for a community
    that is not theirs."""
    chosen = tuple(communities)
    outside = [c for c in chosen if not actor.may_see(c)]
    if outside:
        raise OutOfScope(f"not one of your communities: {', '.join(outside)}")
    return dataclasses.replace(actor, communities=chosen)
