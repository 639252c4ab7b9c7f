"""Rebuild deprivation.csv: the English Index of Multiple Deprivation 2019 decile of each postcode district.

Run once when the sources change, never at run time (the services read only the file this writes):

    python shared/data/build_deprivation.py IMD_FILE_1_CSV POPULATION_FILE_6_CSV DISTRICT_AUTHORITIES > \
        shared/data/deprivation.csv

IMD_FILE_1_CSV is the Ministry of Housing, Communities and Local Government's "File 1: Index of Multiple
Deprivation" (2019) as CSV: every English LSOA (2011) with its local authority district and IMD decile (1: the most
deprived tenth of England's LSOAs). POPULATION_FILE_6_CSV is "File 6: population denominators" of the same release
(each LSOA's mid-2015 population). Both are Open Government Licence v3.0. DISTRICT_AUTHORITIES lists which local
authorities each postcode district lies in (`LA: '<name>', Postcode: '<district>'` pairs, as a list of postcode
districts by council publishes them).

No postcode-to-LSOA lookup was at hand offline, so a district's decile is the population-weighted median IMD decile
of the LSOAs of the local authorities it lies in: it says how deprived the place around the district is, not the
street. Districts in Wales, Scotland and Northern Ireland are not in the English index and are left out (their
decile is "unknown").
"""

from __future__ import annotations

import csv
import gzip
import re
import sys
from collections import defaultdict

WORDS = re.compile(r"\b(council|city of|city|metropolitan|borough|district|county|royal|london|of|the|and)\b")


def key(name: str) -> str:
    """A local authority's name as both sources are compared by it ("Blackpool Council" and "Blackpool" are one)."""
    name = name.casefold().replace("&", " and ").replace("-", " ").replace(",", " ").replace(".", "").replace("'", "")
    name = " ".join(WORDS.sub(" ", name).split())
    return RENAMED.get(name, name)


# Authorities the district list names as they were before a merger, or shortened: as the 2019 index names them.
RENAMED = {"castlepoint": "castle point", "hull": "kingston upon hull", "isle scilly": "isles scilly",
           "malvern": "malvern hills", "nw leicestershire": "north west leicestershire",
           "east dorset": "dorset", "north dorset": "dorset", "west dorset": "dorset", "purbeck": "dorset",
           "suffolk coastal": "east suffolk", "waveney": "east suffolk", "st edmundsbury": "west suffolk",
           "forest heath": "west suffolk", "west somerset": "somerset west taunton", "taunton deane":
           "somerset west taunton", "shepway": "folkestone hythe", "adur worthing": "adur",
           "bournemouth": "bournemouth christchurch poole", "poole": "bournemouth christchurch poole",
           "christchurch": "bournemouth christchurch poole"}


def read_csv(path: str) -> list[dict[str, str]]:
    """A CSV's rows (gzipped or not; the release's files start with a byte order mark)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def weighted_median(pairs: list[tuple[int, int]]) -> int:
    """The decile half the population lives at or below: (decile, population) pairs."""
    pairs = sorted(pairs)
    half, running = sum(p for _, p in pairs) / 2, 0
    for decile, population in pairs:
        running += population
        if running >= half:
            return decile
    return pairs[-1][0]


def main(imd_path: str, population_path: str, districts_path: str) -> None:
    population = {row["LSOA code (2011)"]: int(row["Total population: mid 2015 (excluding prisoners)"]
                                               .replace(",", "")) for row in read_csv(population_path)}
    by_authority: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in read_csv(imd_path):
        lsoa = row["LSOA code (2011)"]
        decile = int(row["Index of Multiple Deprivation (IMD) Decile"])
        by_authority[key(row["Local Authority District name (2019)"])].append((decile, population.get(lsoa, 0)))
    text = open(districts_path, encoding="utf-8").read()
    authorities: dict[str, set[str]] = defaultdict(set)
    for authority, district in re.findall(r"LA:\s*'([^']*)',\s*Postcode:\s*'([^']*)'", text):
        if key(authority) in by_authority:
            authorities[district.strip().upper()].add(key(authority))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["district", "imd_decile", "lsoas"])
    for district in sorted(authorities):
        pairs = [pair for authority in sorted(authorities[district]) for pair in by_authority[authority]]
        out.writerow([district, weighted_median(pairs), len(pairs)])


if __name__ == "__main__":
    main(*sys.argv[1:4])
