"""Where a postcode is: UK postcode districts and Canadian forward sortation areas to latitude/longitude.

The data is in GeoNames' postal-code format (tab-separated: country, postal code, place, admin names and
codes, latitude, longitude, accuracy). A small file ships with the project; full files are loaded with
`ccs gazetteer load FILE`.
"""

from __future__ import annotations

import csv
import os
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


def current_file() -> Path:
    """The gazetteer in use: `CCS_GAZETTEER_FILE`, else what `ccs gazetteer load` wrote under var/, else shipped."""
    if named := os.environ.get("CCS_GAZETTEER_FILE"):
        return Path(named)
    loaded = Path(os.environ.get("CCS_VAR_DIR", "var")).resolve() / "gazetteer" / "postal_districts.txt"
    return loaded if loaded.exists() else SHIPPED


def read(path: Path) -> dict[str, Place]:
    """Every district in a GeoNames postal-code file, by district code (full postcodes are averaged into theirs)."""
    sums: dict[str, list] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not row[0].strip():
                continue
            if len(row) < 11:
                raise ValueError(f"{path.name} line {number}: expected GeoNames' 12 tab-separated columns")
            try:
                country, district = district_of(row[1])
                latitude, longitude = float(row[9]), float(row[10])
            except (UnknownPostcode, ValueError) as err:
                raise ValueError(f"{path.name} line {number}: {err}") from err
            entry = sums.setdefault(district, [country, row[2], 0.0, 0.0, 0])
            entry[2] += latitude
            entry[3] += longitude
            entry[4] += 1
    return {district: Place(district, country, name, round(lat / n, 5), round(lon / n, 5))
            for district, (country, name, lat, lon, n) in sums.items()}


@lru_cache(maxsize=4)
def _cached(path: Path, mtime: float) -> dict[str, Place]:
    return read(path)


def places() -> dict[str, Place]:
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
    _, district = district_of(postcode)
    place = places().get(district)
    if place is None:
        raise UnknownPostcode(f"postcode district {district} is not in the gazetteer")
    return place
