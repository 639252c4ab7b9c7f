"""Where a postcode is: UK postcode districts and Canadian forward sortation areas to latitude/longitude.

The data is in GeoNames' postal-code format (tab-separated: country, postal code, place, admin names and
codes, latitude, longitude, accuracy). A small file ships with the project; full files are loaded with
`ccs gazetteer load FILE`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SHIPPED = Path(__file__).with_name("data") / "postal_districts.txt"

UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][0-9A-Z]?)(?:\s*([0-9][A-Z]{2}))?$")
CA_POSTCODE = re.compile(r"^([ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z])(?:\s*([0-9][ABCEGHJ-NPRSTV-Z][0-9]))?$")


@dataclass(frozen=True)
class Place:
    """A postcode district with its centre."""

    district: str
    country: str
    name: str
    latitude: float
    longitude: float


class UnknownPostcode(ValueError):
    """The postcode is malformed, or its district is not in the gazetteer."""


def district_of(postcode: str) -> tuple[str, str]:
    """The (country, district) of a UK postcode or Canadian postal code; raises UnknownPostcode if malformed."""
    text = " ".join(postcode.upper().split())
    if match := UK_POSTCODE.match(text):
        return "GB", match.group(1)
    if match := CA_POSTCODE.match(text):
        return "CA", match.group(1)
    raise UnknownPostcode(f"{postcode!r} is not a UK postcode or Canadian postal code")


@lru_cache(maxsize=1)
def places(path: Path = SHIPPED) -> dict[str, Place]:
    """Every district in a GeoNames postal-code file, by district code."""
    found = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 11:
                continue
            country, code, name = row[0], row[1].upper(), row[2]
            found[code] = Place(code, country, name, float(row[9]), float(row[10]))
    return found


def locate(postcode: str) -> Place:
    """The district a postcode belongs to, with its centre; raises UnknownPostcode."""
    _, district = district_of(postcode)
    place = places().get(district)
    if place is None:
        raise UnknownPostcode(f"postcode district {district} is not in the gazetteer")
    return place
