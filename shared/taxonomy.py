"""The kinds of help people ask for, the volunteer skill each one needs, and the checks a volunteer must hold.

Intake offers these kinds; matching applies the rule: a volunteer is asked only with the skill and every check
in date on the day of the task."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of help: what it is called, its group, the skill a volunteer needs and the checks they must hold."""

    label: str
    category: str
    skill: str
    checks: tuple[str, ...] = ("safeguarding",)
    offered: bool = True  # False: never offered to volunteers automatically; a coordinator triages it first


# Checks and training a volunteer holds, with dates. The criminal record check is a DBS check in the UK and a
# vulnerable sector check in Ontario; only that it was done and when it expires is kept, never the certificate.
CHECKS: dict[str, str] = {
    "safeguarding": "Safeguarding training",
    "criminal_record": "Criminal record check (DBS, or vulnerable sector check in Ontario)",
    "bereavement_training": "Bereavement-support training",
    "driving": "Driving licence and insurance seen",
    "future_planning_training": "Future life planning training",
}
HOME = ("safeguarding", "criminal_record")  # help given in someone's home, or alone with them


KINDS: dict[str, Kind] = {
    "shopping": Kind("Shopping", "practical", "practical"),
    "prescription_collection": Kind("Prescription collection", "practical", "practical"),
    "transport": Kind("Transport to an appointment", "practical", "driving", (*HOME, "driving")),
    "meals": Kind("Meals", "practical", "cooking"),
    "household_tasks": Kind("Household tasks", "practical", "practical", HOME),
    "home_visit": Kind("Companionship visit", "companionship", "companionship", HOME),
    "phone_check_in": Kind("Phone check-in", "companionship", "companionship"),
    "carer_respite": Kind("Carer respite", "carer_respite", "respite", HOME),
    "bereavement_visit": Kind("Bereavement support visit", "bereavement", "bereavement",
                              (*HOME, "bereavement_training")),
    "bereavement_group": Kind("Introduction to a bereavement group", "bereavement", "bereavement",
                              ("safeguarding", "bereavement_training")),
    "planning_conversation": Kind("Future life planning conversation", "future_planning", "future_planning",
                                  ("safeguarding", "future_planning_training")),
    "planning_session": Kind("Place at a future life planning session", "future_planning", "future_planning",
                             ("safeguarding",)),
    # Help a referral asked for in words, or by a code no table here maps (services/intake/fhir.py): intake keeps
    # the words and never asks matching to offer it; a coordinator triages it (chooses a kind, or helps another way).
    "other": Kind("Other (a coordinator triages it)", "other", "", (), offered=False),
}

SKILLS: tuple[str, ...] = tuple(sorted({kind.skill for kind in KINDS.values() if kind.offered}))


# --- the value lists that travel in events: producer and consumer both read them from here -------------------

SOURCES: tuple[str, ...] = ("coordinator", "pcn", "social_prescriber", "partner", "health_system")
REFERRER_SOURCES: tuple[str, ...] = SOURCES[1:]  # who may send a referral (everyone but a coordinator)
# The kinds of organisation in a programme's register (intake's organisations): each with its name and the
# source a referral from it has.
ORGANISATION_TYPES: dict[str, tuple[str, str]] = {
    "pcn": ("Primary care network", "pcn"),
    "gp_practice": ("GP practice", "pcn"),
    "hospice": ("Hospice", "partner"),
    "social_prescribing": ("Social prescribing service", "social_prescriber"),
    "vcfse": ("Voluntary, community or faith group or social enterprise (VCFSE)", "partner"),
    "faith_group": ("Faith group", "partner"),
    "local_authority": ("Local authority", "partner"),
    "business": ("Business", "partner"),
    "health_system": ("NHS trust or Ontario Health service", "health_system"),
}
URGENCIES: tuple[str, ...] = ("routine", "soon", "urgent")
# Where a request is, as intake shows it. A late or repeated event never moves it back; the last three are final
# (signposted: a coordinator pointed the person to a service in the directory instead).
REQUEST_STATUSES: tuple[str, ...] = ("submitted", "offered", "unmatched", "matched", "completed", "cancelled",
                                     "signposted")
OPEN_REQUEST_STATUSES: tuple[str, ...] = REQUEST_STATUSES[:4]
VOLUNTEER_STATUSES: tuple[str, ...] = ("active", "paused", "left")
# The languages the forms offer (ISO 639-1 code, name); the API takes any two-letter code.
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("en", "English"), ("fr", "French"), ("cy", "Welsh"), ("pl", "Polish"), ("ur", "Urdu"), ("pa", "Punjabi"),
    ("gu", "Gujarati"), ("ar", "Arabic"))
GENDERS: tuple[str, ...] = ("female", "male", "non-binary")
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PARTS_OF_DAY: tuple[str, ...] = ("morning", "afternoon", "evening")
ACCEPTED_BY: tuple[str, ...] = ("volunteer", "coordinator")
# Why an open offer was taken back: another volunteer said yes first, the request was cancelled, or the volunteer
# opted out of SMS (STOP, or Twilio's error 21610).
WITHDRAWN_BECAUSE: tuple[str, ...] = ("taken", "cancelled", "opted_out", "died")
OPTED_VIA: tuple[str, ...] = ("keyword", "provider")
UNRESOLVED_BECAUSE: tuple[str, ...] = ("unknown_sender", "several_open", "no_such_offer", "nothing_open")
# Befriending: a long-term match between one volunteer and a person, visited at a rhythm until it ends. It is a
# request of one of these kinds (a companionship or bereavement visit, or a phone check-in) with a rhythm; the days
# each rhythm allows between visits, and why a match ended.
BEFRIENDING_KINDS: tuple[str, ...] = ("home_visit", "phone_check_in", "bereavement_visit")
RHYTHMS: tuple[str, ...] = ("weekly", "fortnightly", "monthly")
BEFRIENDING_END_REASONS: dict[str, str] = {
    "person_moved": "The person moved away",
    "died": "The person died",
    "volunteer_left": "The volunteer left",
    "ended_by_person": "The person ended the match",
    "ended_by_volunteer": "The volunteer ended the match",
}
# What matching answers a volunteer who asks about themselves by SMS (MY, AWAY, HOURS, a concern), and anyone
# texting JOIN.
VIEW_ANSWERS: tuple[str, ...] = ("tasks", "away", "away_unclear", "hours", "concern_received", "concern_which",
                                  "concern_no_task", "join", "wellbeing_thanks", "wellbeing_low")
# The group activities a coordinator logs (metrics), in the words the dashboard uses.
ACTIVITY_LABELS: dict[str, str] = {
    "dying_matters_event": "Dying Matters events",
    "future_planning_session": "Future Life Planning sessions",
    "death_cafe": "Death cafés",
    "grief_cafe": "Grief cafés",
    "bereavement_group": "Bereavement groups",
    "public_training": "Training for the public",
    "volunteer_training": "Training delivered to volunteers",  # by volunteer trainers: their hours count as given
    "other": "Other group activities",
}
# What volunteers' hours are given to beyond tasks and visits: group activities they ran, and training they delivered
# (activity.logged's `source`).
CONTRIBUTION_SOURCES: tuple[str, ...] = ("activity", "training")
# A wellbeing check-in's answer: a score from 1 (struggling) to 5 (going well).
WELLBEING_SCORES: tuple[int, ...] = (1, 2, 3, 4, 5)
# What a coordinator did about a volunteer's concern (the safeguarding log's actions), as the page words them.
CONCERN_ACTIONS: dict[str, str] = {
    "noted": "Noted",
    "called_person": "Called the person",
    "referred_safeguarding": "Referred to the local authority safeguarding team",
    "referred_gp": "Referred to their GP",
    "referred_hospice": "Referred to the hospice",
    "emergency_services": "Emergency services called",
}
