"""The kinds of help people ask for, and the volunteer skill each one needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of help: what it is called, its group, and the skill a volunteer needs for it."""

    label: str
    category: str
    skill: str


KINDS: dict[str, Kind] = {
    "shopping": Kind("Shopping", "practical", "practical"),
    "prescription_collection": Kind("Prescription collection", "practical", "practical"),
    "transport": Kind("Transport to an appointment", "practical", "driving"),
    "meals": Kind("Meals", "practical", "cooking"),
    "household_tasks": Kind("Household tasks", "practical", "practical"),
    "home_visit": Kind("Companionship visit", "companionship", "companionship"),
    "phone_check_in": Kind("Phone check-in", "companionship", "companionship"),
    "carer_respite": Kind("Carer respite", "carer_respite", "respite"),
    "bereavement_visit": Kind("Bereavement support visit", "bereavement", "bereavement"),
    "bereavement_group": Kind("Introduction to a bereavement group", "bereavement", "bereavement"),
    "planning_conversation": Kind("Future life planning conversation", "future_planning", "future_planning"),
    "planning_session": Kind("Place at a future life planning session", "future_planning", "future_planning"),
}

SKILLS: tuple[str, ...] = tuple(sorted({kind.skill for kind in KINDS.values()}))


def skill_for(kind: str) -> str:
    """The volunteer skill a kind of help needs."""
    return KINDS[kind].skill
