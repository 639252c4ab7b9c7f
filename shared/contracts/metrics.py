"""The events metrics publishes: a group activity logged, with the volunteers who ran it and each one's hours (their
ids only), so that matching adds those hours to each volunteer's own."""

from __future__ import annotations

import uuid
from datetime import date

from marshmallow import validate

from shared.contracts import EventPayload, contract, part, rule
from shared.taxonomy import CONTRIBUTION_SOURCES

ACTIVITY = "4b3a2c1d-0e9f-4a8b-8c7d-6e5f4a3b2c1d"
VOLUNTEER = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


@part
class VolunteerHours:
    """A volunteer who ran an activity (by id, never by name) and the hours they gave to it."""

    volunteer_id: uuid.UUID
    hours: float = rule(validate.Range(min=0, max=24, min_inclusive=False))


@contract("activity.logged", 1, example={
    "activity_id": ACTIVITY, "community": "fylde-coast", "kind": "death_cafe", "held_on": "2026-11-20",
    "source": "activity", "volunteers": [{"volunteer_id": VOLUNTEER, "hours": 2.5}]})
class ActivityLogged(EventPayload):
    """A group activity a coordinator logged, once per activity: who ran it and their hours count toward each
    volunteer's hours (matching: HOURS by SMS, the volunteer's page). `source` says what the hours were given to: a
    group activity, or training delivered (another service may publish those hours the same way, with its own id in
    `activity_id`)."""

    activity_id: uuid.UUID
    community: str
    kind: str
    held_on: date
    source: str = rule(validate.OneOf(CONTRIBUTION_SOURCES), default="activity")
    volunteers: list[VolunteerHours] = rule(default_factory=list)
