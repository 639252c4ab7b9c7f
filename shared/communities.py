"""The communities a deployment serves: each with its country, time zone and SMS sender number.

Every request, volunteer and user belongs to one. They are deployment configuration shared by all services
(`CCS_COMMUNITIES_FILE`, default the file shipped in shared/data), not rows any one service owns.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

SHIPPED = Path(__file__).with_name("data") / "communities.json"
EMERGENCY_NUMBERS = {"GB": "999", "CA": "911", "US": "911", "IE": "112", "FR": "112"}


@dataclass(frozen=True)
class Community:
    """One Compassionate Communities programme's area.

    quiet_hours: when non-urgent SMS wait ("21:00-08:00", in the community's time zone; notify applies them).
    sms_templates: the community's own wording of any SMS, by language then template name
    (see services/notify/messages.py for the names and the fields each one fills in).
    referral_codes: the community's own codes for kinds of help in FHIR referrals, "<system>|<code>" to a kind
    (e.g. "http://snomed.info/sct|413125004": "home_visit"), added to (and overriding) services/intake/fhir.py's
    REFERRAL_CODES.
    centre: where a referral whose postcode cannot be placed is put until a coordinator places it ([lat, lon]).
    emergency_number: what to call when someone is in danger now (a volunteer's concern is answered with it); by
    default the country's (EMERGENCY_NUMBERS).
    """

    slug: str
    name: str
    country: str
    time_zone: str
    sms_from: str
    language: str = "en"
    quiet_hours: str = "21:00-08:00"
    sms_templates: dict = field(default_factory=dict, hash=False, compare=False)
    referral_codes: dict = field(default_factory=dict, hash=False, compare=False)
    centre: tuple = field(default=(0.0, 0.0), hash=False, compare=False)
    emergency_number: str = ""

    @property
    def emergency(self) -> str:
        """The number to call when someone is in danger now: the community's own, else its country's."""
        return self.emergency_number or EMERGENCY_NUMBERS.get(self.country, "112")

    @property
    def zone(self) -> ZoneInfo:
        """The community's time zone."""
        return ZoneInfo(self.time_zone)


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Community]:
    with open(path, encoding="utf-8") as handle:
        return {entry["slug"]: Community(**entry) for entry in json.load(handle)}


def all_communities() -> dict[str, Community]:
    """Every community, by slug."""
    return _load(os.environ.get("CCS_COMMUNITIES_FILE", str(SHIPPED)))


def get(slug: str) -> Community:
    """One community; KeyError if there is no such community."""
    return all_communities()[slug]


def default_slug() -> str:
    """The first community listed: what a token is for when none is named."""
    return next(iter(all_communities()))
