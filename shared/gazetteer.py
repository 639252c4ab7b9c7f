"""Where a postcode is: UK postcode districts and Canadian forward sortation areas to latitude/longitude.

The data is in GeoNames' postal-code format (tab-separated: country, postal code, place, admin names and
codes, latitude, longitude, accuracy). Every UK district and Canadian FSA ships with the project
(data/postal_districts.txt, built from Code-Point Open and GeoNames by data/build_postal_districts.py); full
files are loaded with `ccs gazetteer load FILE`.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

EARTH_RADIUS_KM = 6371.0088  # the mean radius


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points, in kilometres (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))

SHIPPED = Path(__file__).with_name("data") / "postal_districts.txt"

UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][0-9A-Z]?)(?:\s*([0-9][A-Z]{2}))?$")
CA_POSTCODE = re.compile(r"^([ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z])(?:\s*([0-9][ABCEGHJ-NPRSTV-Z][0-9]))?$")
# Codes that route mail but have no place: Girobank, British Forces, the BX business-reply districts, and the
# ones Royal Mail and Canada Post keep for letters to Santa.
NON_GEOGRAPHIC = re.compile(r"^(GIR\s*0AA|BFPO\b.*|BX[0-9].*|XM4\s*5HQ|SAN\s*TA1|H0H(\s*0H0)?)$")


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


def _normal(postcode: str) -> str:
    return " ".join(postcode.upper().split())


def readings(postcode: str) -> list[tuple[str, str]]:
    """Every (country, district) a postcode can be read as, British first; raises UnknownPostcode if none.

    A full postcode has one reading; a bare district such as N1C is both a London district and a Guelph FSA."""
    text = _normal(postcode)
    found = [(country, match.group(1)) for country, pattern in (("GB", UK_POSTCODE), ("CA", CA_POSTCODE))
             if (match := pattern.match(text))]
    if not found:
        raise UnknownPostcode(f"{postcode!r} is not a UK postcode or Canadian postal code; check it (its first part, "
                         "such as PR1 or K1N, is enough)")
    return found


def district_of(postcode: str) -> tuple[str, str]:
    """The (country, district) of a UK postcode or Canadian postal code; raises UnknownPostcode if malformed."""
    return readings(postcode)[0]


def current_file() -> Path:
    """The gazetteer in use: `CCS_GAZETTEER_FILE`, else what `ccs gazetteer load` wrote under var/, else shipped."""
    if named := os.environ.get("CCS_GAZETTEER_FILE"):
        return Path(named)
    loaded = Path(os.environ.get("CCS_VAR_DIR", "var")).resolve() / "gazetteer" / "postal_districts.txt"
    return loaded if loaded.exists() else SHIPPED


def read(path: Path) -> dict[tuple[str, str], Place]:
    """Every district in a GeoNames postal-code file, by (country, district) (full postcodes are averaged into
    theirs); the file's own country column settles a bare district that both countries have."""
    sums: dict[tuple[str, str], list] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not row[0].strip() or (len(row) > 1 and NON_GEOGRAPHIC.match(_normal(row[1]))):
                continue
            if len(row) < 11:
                raise ValueError(f"{path.name} line {number}: expected GeoNames' 12 tab-separated columns")
            try:
                options = readings(row[1])
                country, district = next((r for r in options if r[0] == row[0].strip()), options[0])
                latitude, longitude = float(row[9]), float(row[10])
            except (UnknownPostcode, ValueError) as err:
                raise ValueError(f"{path.name} line {number}: {err}") from err
            entry = sums.setdefault((country, district), [row[2], 0.0, 0.0, 0])
            entry[1] += latitude
            entry[2] += longitude
            entry[3] += 1
    return {(country, district): Place(district, country, name, round(lat / n, 5), round(lon / n, 5))
            for (country, district), (name, lat, lon, n) in sums.items()}


@lru_cache(maxsize=4)
def _cached(path: Path, mtime: float) -> dict[tuple[str, str], Place]:
    return read(path)


def places() -> dict[tuple[str, str], Place]:
    """Every district the gazetteer in use knows."""
    path = current_file()
    return _cached(path, path.stat().st_mtime)


def load(path: Path, var: Path) -> int:
    """Merge a GeoNames file into the gazetteer under var/ (starting from the shipped one); returns its size."""
    merged = {**places(), **read(path)}
    target = var / "gazetteer" / "postal_districts.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        for place in sorted(merged.values(), key=lambda p: (p.country, p.district)):
            handle.write("\t".join([place.country, place.district, place.name, "", "", "", "", "", "",
                                     str(place.latitude), str(place.longitude), "4"]) + "\n")
    os.replace(tmp, target)
    return len(merged)


def locate(postcode: str) -> Place:
    """The district a postcode belongs to, with its centre; raises UnknownPostcode."""
    if NON_GEOGRAPHIC.match(_normal(postcode)):
        raise UnknownPostcode(f"{postcode!r} is a non-geographic postcode (it routes mail but names no place): "
                              "give the postcode of where the person lives")
    options = readings(postcode)
    known = places()
    for key in options:
        if place := known.get(key):
            return place
    raise UnknownPostcode(f"there is no postcode district {options[0][1]}; check the postcode")
