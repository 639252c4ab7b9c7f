"""Who is acting: the roles, and the actor a use case is given (read from a token or a signed-in session)."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

ROLES = ("admin", "coordinator", "referrer", "manager")
# Where each role's pages start: where signing in with nowhere else to go lands, and where the site's name leads.
# A coordinator's is the board; a manager's the dashboard (the board would refuse them); a referrer's their
# referrals; an administrator's the choice of community to work in (straight on to the board when they have one).
HOMES = {"admin": "/communities", "coordinator": "/board", "referrer": "/my-referrals", "manager": "/dashboard"}


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


# --- where signing in and out (and a page's `next`) lead -------------------------------------------------------

def _leads_off_site(path: str) -> bool:
    """True when a browser could read `path` as another site (`//host`, `/\\host`) or would change it first (tabs,
    newlines and other control characters are dropped by browsers, spaces trimmed)."""
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in path):
        return True
    if not path.startswith("/") or path[1:2] in ("/", "\\"):
        return True
    parts = urlsplit(path)
    return bool(parts.scheme or parts.netloc)


def local_path(target: str | None, default: str) -> str:
    """Where to send someone after signing in or out, or a choice on a page: `target` when it is a path on this
    site, else `default`.

    Refused: anything with a scheme or host (`https://evil.example`, `//evil.example`), a backslash (browsers read
    `/\\evil.example` as `//evil.example`), whitespace or control characters anywhere (`/\\t/evil` becomes
    `//evil`), and the same once percent-decoded (`/%2F/evil.example`)."""
    if not target or len(target) > 2000 or "\\" in target:
        return default
    if _leads_off_site(target) or _leads_off_site(unquote(target).replace(" ", "")):
        return default
    return target
