"""Reach and equity monitoring: the categories a person may be described by (only with their consent, each with
"prefer not to say"), the age band their date of birth gives, and the deprivation decile of where they live.

Intake asks and keeps the answers; metrics counts the people supported by each (suppressed like every count). The
categories are a country's national ones: the Office for National Statistics' 2021 census ethnic groups (19, in 5
groups) for Great Britain, and the Ontario Anti-Racism Data Standards' race categories for Canada. Metrics is sent
the group, never the postcode: the decile stands for where the person lives.
"""

from __future__ import annotations

import csv
from datetime import date
from functools import lru_cache
from pathlib import Path

from shared.gazetteer import UK_POSTCODE
from shared.taxonomy import LANGUAGES

PREFER_NOT = "prefer_not_to_say"
NOT_RECORDED = "not_recorded"  # no consent to monitoring, or not asked: how metrics counts a person without answers
UNKNOWN = "unknown"  # a decile where the index does not cover the postcode

AGE_BANDS: tuple[str, ...] = ("0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75-84", "85+")
SEXES: dict[str, str] = {"female": "Female", "male": "Male"}
DISABILITY: dict[str, str] = {"yes": "Disabled", "no": "Not disabled"}
FIRST_LANGUAGES: dict[str, str] = {code: name for code, name in LANGUAGES} | {"other": "Another language"}

# Each country's ethnicity categories: code -> (label, group). The group is what metrics counts.
ETHNIC_GROUPS: dict[str, str] = {
    "asian": "Asian, Asian British or Asian Welsh",
    "black": "Black, Black British, Black Welsh, Caribbean or African",
    "mixed": "Mixed or Multiple ethnic groups",
    "white": "White",
    "other": "Other ethnic group",
    # Ontario's race categories (each its own group)
    "ca_black": "Black",
    "ca_east_southeast_asian": "East/Southeast Asian",
    "ca_indigenous": "Indigenous (First Nations, Inuk/Inuit, Métis)",
    "ca_latino": "Latino",
    "ca_middle_eastern": "Middle Eastern",
    "ca_south_asian": "South Asian",
    "ca_white": "White",
    "ca_another": "Another race category",
}
ETHNICITIES: dict[str, dict[str, tuple[str, str]]] = {
    "GB": {
        "asian_bangladeshi": ("Bangladeshi", "asian"),
        "asian_chinese": ("Chinese", "asian"),
        "asian_indian": ("Indian", "asian"),
        "asian_pakistani": ("Pakistani", "asian"),
        "asian_other": ("Any other Asian background", "asian"),
        "black_african": ("African", "black"),
        "black_caribbean": ("Caribbean", "black"),
        "black_other": ("Any other Black, Black British or Caribbean background", "black"),
        "mixed_white_asian": ("White and Asian", "mixed"),
        "mixed_white_black_african": ("White and Black African", "mixed"),
        "mixed_white_black_caribbean": ("White and Black Caribbean", "mixed"),
        "mixed_other": ("Any other Mixed or Multiple background", "mixed"),
        "white_british": ("English, Welsh, Scottish, Northern Irish or British", "white"),
        "white_irish": ("Irish", "white"),
        "white_gypsy_traveller": ("Gypsy or Irish Traveller", "white"),
        "white_roma": ("Roma", "white"),
        "white_other": ("Any other White background", "white"),
        "other_arab": ("Arab", "other"),
        "other_any": ("Any other ethnic group", "other"),
    },
    "CA": {code: (ETHNIC_GROUPS[code], code) for code in ETHNIC_GROUPS if code.startswith("ca_")},
}
GROUP_NAMES: dict[str, str] = {"asian": "Asian", "black": "Black", "mixed": "Mixed", "white": "White",
                               "other": "Other"}

DEPRIVATION = Path(__file__).with_name("data") / "deprivation.csv"
DECILES: tuple[str, ...] = tuple(str(n) for n in range(1, 11))

# The distributions metrics reports: (key, label), in the order the pages show them.
DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("age_band", "Age band"), ("sex", "Sex"), ("ethnic_group", "Ethnic group"),
    ("first_language", "First language"), ("disability", "Disability"),
    ("deprivation_decile", "Deprivation decile (1: most deprived tenth)"))


def ethnicities(country: str) -> dict[str, tuple[str, str]]:
    """The ethnicity categories asked in a community of this country (code -> (label, group)); none for a country
    with no national standard here."""
    return ETHNICITIES.get(country, {})


def group_of(ethnicity: str | None, country: str) -> str | None:
    """The group an ethnicity category is counted in ("prefer not to say" is itself; None for no answer)."""
    if ethnicity in (None, PREFER_NOT):
        return ethnicity
    return ethnicities(country)[ethnicity][1]


def age_band(born: date, on: date) -> str:
    """The age band of someone born on `born`, on the day `on`."""
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    for band in reversed(AGE_BANDS):
        if age >= int(band.split("-")[0].rstrip("+")):
            return band
    return AGE_BANDS[0]


@lru_cache(maxsize=1)
def _deciles() -> dict[str, str]:
    """Postcode district -> IMD 2019 decile, from the shipped file (shared/data/deprivation.csv)."""
    with DEPRIVATION.open(newline="", encoding="utf-8") as handle:
        return {row["district"]: row["imd_decile"] for row in csv.DictReader(handle)}


def deprivation_decile(postcode: str | None, country: str) -> str:
    """The deprivation decile ("1" the most deprived tenth to "10") of a postcode (a full one or its district), or
    "unknown": outside England, for Canada (no Ontario Marginalization Index is shipped), or a postcode not found."""
    found = UK_POSTCODE.match(" ".join((postcode or "").upper().split()))
    if found is None or country != "GB":
        return UNKNOWN
    return _deciles().get(found.group(1), UNKNOWN)


def label(dimension: str, value: str) -> str:
    """A distribution's part in words."""
    words = {PREFER_NOT: "Prefer not to say", NOT_RECORDED: "Not recorded", UNKNOWN: "Unknown"}
    if value in words:
        return words[value]
    if dimension == "sex":
        return SEXES.get(value, value)
    if dimension == "disability":
        return DISABILITY.get(value, value)
    if dimension == "first_language":
        return FIRST_LANGUAGES.get(value, value)
    if dimension == "ethnic_group":
        return GROUP_NAMES.get(value, ETHNIC_GROUPS.get(value, value))
    return value
