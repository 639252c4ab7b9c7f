"""The shipped gazetteer: every UK postcode district and Canadian FSA, every real postcode shape, and the script
that builds it."""

from __future__ import annotations

import gzip
import importlib.util
import re
from collections import Counter

import pytest

from shared import gazetteer
from shared.gazetteer import SHIPPED, UnknownPostcode, locate, read

BUILD = SHIPPED.with_name("build_postal_districts.py")


def build_module():
    spec = importlib.util.spec_from_file_location("build_postal_districts", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_uk_district_and_canadian_fsa_ships():
    shipped = read(SHIPPED)
    counts = Counter(country for country, _ in shipped)
    # Code-Point Open places 2,865 GB districts; GeoNames adds Northern Ireland, the Isle of Man, the Channel
    # Islands and a few PO-box and retired districts (3,003). GeoNames lists 1,651 FSAs, less Santa's H0H.
    assert counts == {"GB": 3003, "CA": 1650}
    areas = {re.match("[A-Z]+", district).group() for country, district in shipped if country == "GB"}
    assert {"AB", "B", "BT", "EC", "GY", "IM", "JE", "PR", "W", "ZE"} <= areas and len(areas) == 124
    for place in shipped.values():
        south, north, west, east = (49.0, 61.0, -8.7, 1.8) if place.country == "GB" else (41.6, 83.2, -141.1, -52.6)
        assert south <= place.latitude <= north and west <= place.longitude <= east, place


@pytest.mark.parametrize("postcode, country, district, near", [
    ("PR1 1AA", "GB", "PR1", (53.76, -2.70)), ("W1A 1AA", "GB", "W1A", (51.52, -0.14)),
    ("EC1A 1BB", "GB", "EC1A", (51.52, -0.10)), ("sw1a1aa", "GB", "SW1A", (51.50, -0.13)),
    ("M1 1AE", "GB", "M1", (53.48, -2.24)), ("B33 8TH", "GB", "B33", (52.48, -1.79)),
    ("CR2 6XH", "GB", "CR2", (51.35, -0.08)), ("BT1 1AA", "GB", "BT1", (54.60, -5.93)),
    ("JE2 3AB", "GB", "JE2", (49.19, -2.12)), ("LA9", "GB", "LA9", (54.33, -2.74)),
    ("K1N 5N5", "CA", "K1N", (45.43, -75.68)), ("m5v 3l9", "CA", "M5V", (43.64, -79.40)),
    ("H2X 1Y4", "CA", "H2X", (45.51, -73.57)), ("K0A 1A0", "CA", "K0A", (45.26, -76.28)),
    ("X1A", "CA", "X1A", (62.46, -114.35)),
    ("N1C 4AB", "GB", "N1C", (51.54, -0.13)), ("N1C 2B3", "CA", "N1C", (43.49, -80.23)),  # London or Guelph
    ("N1C", "GB", "N1C", (51.54, -0.13)),  # a bare district both countries have is read as British
])
def test_every_shape_of_outward_code_and_fsa_is_placed_near_where_it_is(postcode, country, district, near):
    place = locate(postcode)
    assert (place.country, place.district) == (country, district)
    assert place.latitude == pytest.approx(near[0], abs=0.03) and place.longitude == pytest.approx(near[1], abs=0.03)


@pytest.mark.parametrize("postcode", ["GIR 0AA", "BX1 1LT", "bx4 7sb", "BFPO 1234", "XM4 5HQ", "H0H 0H0"])
def test_non_geographic_postcodes_are_refused_saying_so(postcode):
    with pytest.raises(UnknownPostcode, match="non-geographic postcode .* names no place"):
        locate(postcode)


@pytest.mark.parametrize("postcode, message", [
    ("QQ1 1AA", "there is no postcode district QQ1"), ("W1A 1A", "not a UK postcode"),
    ("Z1A 1A1", "not a UK postcode or Canadian postal code"), ("K1N5N", "not a UK postcode"),
])
def test_postcodes_that_are_not_real_are_refused(postcode, message):
    with pytest.raises(UnknownPostcode, match=message):
        locate(postcode)


def test_a_loaded_file_says_which_country_a_bare_district_is_in_and_drops_non_geographic_rows(tmp_path):
    canada = tmp_path / "CA.txt"
    canada.write_text("CA\tN1C\tGuelph South\tOntario\tON\t\t\t\t\t43.49\t-80.22\t6\n"
                      "CA\tH0H\tReserved (Santa Claus)\tQuebec\tQC\t\t\t\t\t90.0\t0.0\t\n", encoding="utf-8")
    assert list(read(canada)) == [("CA", "N1C")]


def test_the_build_script_converts_the_national_grid_and_averages_postcodes_into_districts(tmp_path):
    build = build_module()
    latitude, longitude = build.osgb36_to_wgs84(651409.903, 313177.270)  # Ordnance Survey's worked example
    assert (latitude, longitude) == (pytest.approx(52.65798, abs=2e-5), pytest.approx(1.71605, abs=2e-5))

    code_point, geonames = tmp_path / "CSV", tmp_path / "geonames"
    code_point.mkdir(), geonames.mkdir()
    with gzip.open(code_point / "sw.csv.gz", "wt") as handle:
        handle.write("SW1A 1AA,10,529090,179645\nSW1A 2AA,10,530047,179951\nSW1A 0ZZ,90,0,0\n")
    (geonames / "GB.txt").write_text("GB\tSW1A\tWestminster\tEngland\tENG\tGreater London\t\t\t\t51.5\t-0.13\t4\n"
                                     "GB\tBT1\tBelfast\tNorthern Ireland\tNIR\tBelfast\t\t\t\t54.58\t-5.93\t4\n")
    (geonames / "CA.txt").write_text("CA\tK1N\tOttawa (Lower Town)\tOntario\tON\t\t\t\t\t45.4289\t-75.6844\t6\n"
                                     "CA\tH0H\tReserved (Santa Claus)\tQuebec\tQC\t\t\t\t\t90.0\t0.0\t\n")
    for empty in ("IM", "JE", "GG"):
        (geonames / f"{empty}.txt").write_text("")
    rows = build.build(code_point, geonames)
    assert [(r[0], r[1], r[2], r[9], r[10], r[11]) for r in rows] == [
        ("CA", "K1N", "Ottawa (Lower Town)", "45.4289", "-75.6844", "6"),
        ("GB", "BT1", "Belfast", "54.5800", "-5.9300", "4"),
        ("GB", "SW1A", "Westminster", "51.5023", "-0.1346", "6"),  # the two placed postcodes' mean
    ]


def test_lookups_read_the_file_once(monkeypatch):
    locate("PR1 1AA")
    monkeypatch.setattr(gazetteer, "read", lambda path: pytest.fail("read again"))
    assert locate("K1N 5N5").district == "K1N"


def test_the_shipped_file_stays_small_enough_to_ship_with_the_code():
    assert SHIPPED.stat().st_size < 400_000  # districts only: a file of unit postcodes is loaded, never shipped
