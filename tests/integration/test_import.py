"""Importing a coordinator's volunteer spreadsheet, on both backends: all or nothing, each bad row by its line."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest

HEADER = ("name,phone,postcode,max_distance_km,skills,languages,availability,weekly_cap,"
          "safeguarding_done,safeguarding_expires,criminal_record_done,criminal_record_expires")
GOOD = [
    "Ana Lopez,07911 123450,FY1 4AB,10,practical; companionship,en; es,mon morning; wed afternoon,2,"
    "2026-01-05,2029-01-05,05/01/2026,05/01/2029",
    "Ben Okafor,+447911123451,FY4,8,driving,en,,3,2026-02-01,2029-02-01,2026-02-01,2029-02-01",
    "Cara Singh,07911123452,LA9,12,bereavement,en,,1,2026-03-01,,,",
]


def sheet(*rows: str, header: str = HEADER, newline: str = "\n") -> bytes:
    return newline.join([header, *rows]).encode() + newline.encode()


def names(client, headers) -> list[str]:
    return [v["name"] for v in client.get("/volunteers", headers=headers).json]


@pytest.fixture
def client(app_for):
    return app_for("matching").test_client()


def test_a_good_sheet_is_imported_whole_as_csv_or_as_an_upload(client, token):
    coordinator = token("coordinator")
    answer = client.post("/volunteers/import", data=sheet(*GOOD[:2]), headers={**coordinator,
                                                                                "Content-Type": "text/csv"})
    assert answer.status_code == 201, answer.json
    assert answer.json == {"imported": 2, "rows": 2, "errors": []}
    upload = client.post("/volunteers/import", headers=coordinator, content_type="multipart/form-data",
                         data={"file": (io.BytesIO(sheet(GOOD[2])), "volunteers.csv")})
    assert upload.status_code == 201 and upload.json["imported"] == 1
    assert names(client, coordinator) == ["Ana Lopez", "Ben Okafor", "Cara Singh"]
    ana = next(v for v in client.get("/volunteers", headers=coordinator).json if v["name"] == "Ana Lopez")
    assert (ana["phone"], ana["area"], ana["skills"], ana["languages"], ana["weekly_cap"]) == (
        "+447911123450", "FY1", ["practical", "companionship"], ["en", "es"], 2)
    assert ana["availability"] == [{"days": ["mon"], "part_of_day": "morning"},
                                   {"days": ["wed"], "part_of_day": "afternoon"}]
    assert {c["check"]: (c["done_on"], c["expires_on"]) for c in ana["checks"]} == {
        "safeguarding": ("2026-01-05", "2029-01-05"), "criminal_record": ("2026-01-05", "2029-01-05")}


def test_bad_rows_are_each_named_by_line_and_column_and_nothing_is_imported(client, token):
    coordinator = token("coordinator")
    bad = sheet(GOOD[0],
                "Dee,12,FY1,10,practical,en,,2,2026-01-05,2029-01-05,,",  # line 3: phone
                "Eve,07911123454,ZZ9 9ZZ,10,juggling,en,someday noon,2,2026-01-05,2025-01-05,,",  # line 4
                GOOD[1])
    answer = client.post("/volunteers/import", data=bad, headers={**coordinator, "Content-Type": "text/csv"})
    assert answer.status_code == 422
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json["title"] == "Some rows are not valid; nothing was imported"
    found = {(e["line"], e["field"]) for e in answer.json["errors"]}
    assert found == {(3, "phone"), (4, "postcode"), (4, "skills"), (4, "availability"),
                     (4, "safeguarding_expires")}
    assert names(client, coordinator) == []

    skipped = client.post("/volunteers/import?skip_invalid=true", data=bad,
                          headers={**coordinator, "Content-Type": "text/csv"})
    assert skipped.status_code == 201
    assert skipped.json["imported"] == 2 and {e["line"] for e in skipped.json["errors"]} == {3, 4}
    assert names(client, coordinator) == ["Ana Lopez", "Ben Okafor"]


def test_a_phone_twice_in_the_sheet_or_already_registered_is_refused(client, token):
    coordinator = token("coordinator")
    client.post("/volunteers/import", data=sheet(GOOD[0]), headers={**coordinator, "Content-Type": "text/csv"})
    again = sheet(GOOD[1], GOOD[0], GOOD[1].replace("Ben Okafor", "Ben Again"))
    answer = client.post("/volunteers/import", data=again, headers={**coordinator, "Content-Type": "text/csv"})
    assert answer.status_code == 422
    assert [(e["line"], e["field"], e["detail"]) for e in answer.json["errors"]] == [
        (3, "phone", "A volunteer with this phone is registered."),
        (4, "phone", "The same phone as line 2.")]
    assert names(client, coordinator) == ["Ana Lopez"]


def test_an_excel_sheet_with_a_byte_order_mark_crlf_and_quoted_cells_reads_the_same(client, token):
    coordinator = token("coordinator")
    row = GOOD[0].replace("practical; companionship", '"practical, companionship"').replace("Ana Lopez",
                                                                                          '"Lopez, Ana"')
    raw = b"\xef\xbb\xbf" + sheet(row, newline="\r\n")
    answer = client.post("/volunteers/import", data=raw, headers={**coordinator, "Content-Type": "text/csv"})
    assert answer.status_code == 201, answer.json
    assert names(client, coordinator) == ["Lopez, Ana"]
    latin = sheet("Zoë Brontë,07911123459,FY1,10,practical,en,,2,2026-01-05,2029-01-05,,").decode().encode("cp1252")
    assert client.post("/volunteers/import", data=latin,
                       headers={**coordinator, "Content-Type": "text/csv"}).status_code == 201
    assert "Zoë Brontë" in names(client, coordinator)


def test_an_unreadable_file_is_a_clear_problem(client, token):
    coordinator = token("coordinator")
    empty = client.post("/volunteers/import", data=b"", headers={**coordinator, "Content-Type": "text/csv"})
    assert empty.status_code == 422 and empty.json["errors"][0]["field"] == "file"
    wrong = client.post("/volunteers/import", data=b"nom,telephone\nAna,07911123450\n",
                        headers={**coordinator, "Content-Type": "text/csv"})
    assert wrong.status_code == 422 and "Unknown column(s): nom, telephone" in wrong.json["detail"]


@pytest.mark.parametrize("role", ["referrer", "manager"])
def test_only_coordinators_import(client, token, role):
    answer = client.post("/volunteers/import", data=sheet(GOOD[0]), headers={**token(role),
                                                                             "Content-Type": "text/csv"})
    assert answer.status_code == 403
    assert names(client, token("coordinator")) == []


def test_the_imported_volunteers_are_found_by_matching(client, token):
    from tests.integration.test_matching import Matching

    coordinator = token("coordinator")
    soon = (date.today() + timedelta(days=400)).isoformat()
    client.post("/volunteers/import", headers={**coordinator, "Content-Type": "text/csv"},
                data=sheet(f"Fay,07911123460,FY1,10,practical,en,,2,2026-01-05,{soon},,"))
    matching = Matching(client.application)
    request_id = matching.submit()
    assert len(matching.offers(request_id)) == 1
