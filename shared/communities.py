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
CURRENCIES = {"GB": "GBP", "CA": "CAD", "US": "USD", "IE": "EUR", "FR": "EUR"}
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
    retention: how long the community keeps personal data, in days, each one overriding `Retention`'s default
    (e.g. {"closed_request_days": 1095, "audit_log_days": 3650}).
    applicant_wait_days: an applicant to volunteer waiting longer than this at one stage is marked "waiting too
    long" on the coordinators' board of applicants.
    checks: the community's own check types, and its wording of the default ones, by key (lowercase letters,
    digits and _): {"name", "evidence", "lasts_months" (none: it does not expire), "retired"} (matching applies
    them; its administrators can change them in the browser, and their changes win).
    requirements: the checks each kind of help needs here, by kind, in place of the taxonomy's (e.g.
    {"bereavement_visit": ["safeguarding", "criminal_record", "bereavement_training"]}).
    hourly_value, currency: what an hour of volunteer time is worth, in the valuation the community uses (e.g. a UK
    or an Ontario volunteer-hour value), and its ISO 4217 currency (by default its country's); metrics reports the
    value of volunteer time beside the hours (a manager may set another, kept with who set it, in metrics).
    wellbeing_interval_days: how often each active volunteer is asked by SMS how they are finding volunteering;
    wellbeing_low_score: an answer at or below it (of 1 to 5) is put before a coordinator.
    bereavement_survey_weeks: how many weeks after bereavement support a bereaved person is sent its survey by SMS.
    survey_reminder_hours: a survey's first question unanswered this long is sent once more (0: no reminder).
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
    retention: dict = field(default_factory=dict, hash=False, compare=False)
    applicant_wait_days: int = 14
    checks: dict = field(default_factory=dict, hash=False, compare=False)
    requirements: dict = field(default_factory=dict, hash=False, compare=False)
    hourly_value: float = 0.0
    currency: str = ""
    wellbeing_interval_days: int = 91
    wellbeing_low_score: int = 2

    @property
    def money(self) -> str:
        """The currency the community's volunteer time is valued in: its own, else its country's."""
        return self.currency or CURRENCIES.get(self.country, "GBP")
    bereavement_survey_weeks: int = 6
    survey_reminder_hours: int = 48

    @property
    def emergency(self) -> str:
        """The number to call when someone is in danger now: the community's own, else its country's."""
        return self.emergency_number or EMERGENCY_NUMBERS.get(self.country, "112")

    @property
    def keeps(self) -> "Retention":
        """How long the community keeps personal data (its `retention`, over the defaults)."""
        return Retention.of(self.retention)

    @property
    def zone(self) -> ZoneInfo:
        """The community's time zone."""
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class Retention:
    """How long personal data is kept, in days (each service's nightly retention job applies it).

    closed_request_days: a closed request (completed, cancelled, signposted) with nothing happening to it for this
    long has its person's details pseudonymised (intake).
    sms_body_days: an SMS's text, sent or received, is blanked this long after it was sent or received; the record
    that it was (who, why, when, how it went) stays (notify).
    audit_log_days: entries of the audit log (who saw or changed whose details) are kept this long (intake).
    safeguarding_log_days: safeguarding concerns are kept this long (intake's concerns log, when it has one).
    """

    closed_request_days: int = 730
    sms_body_days: int = 365
    audit_log_days: int = 2920
    safeguarding_log_days: int = 2920

    @classmethod
    def of(cls, given: dict) -> "Retention":
        """The periods a community's `retention` gives, the defaults for the rest; ValueError for a name that is
        not a period or a period that is not a whole number of days from 1."""
        known = {name for name in cls.__dataclass_fields__}
        for name, days in given.items():
            if name not in known:
                raise ValueError(f"retention: {name!r} is not one of {', '.join(sorted(known))}")
            if not isinstance(days, int) or isinstance(days, bool) or days < 1:
                raise ValueError(f"retention: {name} must be a whole number of days from 1, not {days!r}")
        return cls(**given)


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Community]:
    with open(path, encoding="utf-8") as handle:
        communities = {entry["slug"]: Community(**entry) for entry in json.load(handle)}
    for community in communities.values():
        community.keeps  # a retention period that cannot be used stops the service here, saying which
    return communities


def all_communities() -> dict[str, Community]:
    """Every community, by slug."""
    return _load(os.environ.get("CCS_COMMUNITIES_FILE", str(SHIPPED)))


def get(slug: str) -> Community:
    """One community; KeyError if there is no such community."""
    return all_communities()[slug]


def default_slug() -> str:
    """The first community listed: what a token is for when none is named."""
    return next(iter(all_communities()))
