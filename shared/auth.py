"""Who is acting: the roles, and the actor a use case is given (read from a token or a signed-in session)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

ROLES = ("admin", "coordinator", "referrer", "manager")
# Where each role's pages start: where signing in with nowhere else to go lands, and where the site's name leads.
# A manager's is the dashboard (the board would refuse them); a referrer's the API's documentation (their referrals
# arrive through the API or FHIR).
HOMES = {"admin": "/board", "coordinator": "/board", "referrer": "/docs", "manager": "/dashboard"}


@dataclass(frozen=True)
class Actor:
    """The person (or system) a use case acts for: who, in what role, for which communities."""

    subject: str
    role: str
    communities: tuple[str, ...]
    organisation: str | None = None

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> "Actor":
        """The actor a token's or session's claims describe."""
        return cls(subject=claims["sub"], role=claims["role"], communities=tuple(claims["communities"]),
                   organisation=claims.get("organisation"))

    @property
    def community(self) -> str:
        """The community new records are made in: the first of the actor's."""
        return self.communities[0]

    def may_see(self, community: str) -> bool:
        """True when a record of `community` is within this actor's scope."""
        return community in self.communities


SYSTEM = Actor(subject="system", role="admin", communities=())


def subject_digest(secret_key: str, subject: str) -> str:
    """A token holder's subject as a revocation names it (`token.revoked`): a keyed digest, never the address."""
    return hmac.new(secret_key.encode(), b"token subject:" + subject.encode(), hashlib.sha256).hexdigest()
