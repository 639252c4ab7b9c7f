"""The signposting directory, on both backends: imported from Open Referral UK JSON (as ORUK APIs publish it) and
from CSV with each problem named, found by need and by distance from a postcode, and a request signposted to an
entry: its outcome, its event (matching stops, metrics counts it), what its referrer sees; one community never
sees or signposts to another's entries."""

from __future__ import annotations

import copy
import io
import json
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from services.intake import service_layer as intake_service
from services.intake.adapters import organisations, webhook_deliveries
from shared.auth import Actor
from shared.cli import main
from shared.contracts import load_event
from tests.helpers import dispatcher
from tests.integration.test_bus import SHOPPING
from tests.integration.test_intake import REFERRAL, staged_events
from tests.integration.test_role_homes import signed_in
from tests.integration.test_webhooks import csrf

# A page of services as an ORUK (v1) API's GET /services answers: `content` with the paging around it.
ORUK_PAGE = {
    "totalElements": 3, "totalPages": 1, "number": 1, "size": 50, "first": True, "last": True,
    "content": [
        {"id": "svc-befriend", "name": "Fylde Befriending Circle", "description": "Weekly visits to people alone.",
         "url": "https://befriend.example.org", "email": "hello@befriend.example.org", "status": "active",
         "organization": {"id": "org-1", "name": "Fylde Age Concern"},
         "eligibilitys": [{"id": "e1", "eligibility": "Adults over 60"}],
         "contacts": [{"id": "c1", "name": "Jo", "phones": [{"id": "p1", "number": "01253 000001"}]}],
         "regular_schedules": [{"id": "s1", "byday": "TU,TH", "opens_at": "10:00:00", "closes_at": "12:00:00"}],
         "service_taxonomys": [{"id": "t1", "taxonomy": {"id": "bccsoc-1", "name": "Befriending",
                                                         "vocabulary": "esdServiceTypes"}}],
         "service_at_locations": [{"id": "sl1", "location": {
             "id": "l1", "name": "Church hall", "latitude": 53.8175, "longitude": -3.0357,
             "physical_addresses": [{"id": "a1", "address_1": "1 Church St", "postal_code": "FY1 4AB"}]}}]},
        {"id": "svc-grief", "name": "Lytham Bereavement Café", "status": "active",
         "organization": {"id": "org-2", "name": "Trinity Hospice"},
         "service_taxonomys": [{"id": "t2", "taxonomy": {"id": "x", "name": "Bereavement support"}}],
         "service_at_locations": [{"id": "sl2", "location": {
             "id": "l2", "physical_addresses": [{"id": "a2", "postal_code": "FY8 1AA"}]}}],
         "contacts": [{"id": "c2", "phones": [{"id": "p2", "number": "01253 000002"}]}]},
        {"id": "svc-debt", "name": "Debt advice clinic", "status": "active",
         "service_taxonomys": [{"id": "t3", "taxonomy": {"id": "y", "name": "Money advice"}}]},
    ],
}
# HSDS 3 / the newer ORUK profile: a plain list of services with `schedules`, `attributes` and `addresses`.
HSDS_LIST = [
    {"id": "svc-lifts", "name": "Community Car Scheme", "status": "active",
     "eligibility_description": "People who cannot use buses", "phones": [{"id": "p3", "number": "01253 000003"}],
     "schedules": [{"id": "s3", "description": "Weekdays 9-5"}],
     "attributes": [{"id": "at1", "taxonomy_term": {"id": "tt1", "name": "Transport"}}],
     "service_at_locations": [{"id": "sl3", "location": {"id": "l3", "latitude": 53.7500, "longitude": -2.9800,
                                                        "addresses": [{"id": "a3", "postal_code": "PR4 1AA"}]}}]},
]


@pytest.fixture
def intake(app_for):
    return app_for("intake")


def upload(client, name: str, content: bytes):
    page = client.get("/directory/import").text
    return client.post("/directory/import", data={"csrf_token": csrf(page), "file": (io.BytesIO(content), name)},
                       content_type="multipart/form-data")


def listed(client, **query) -> list[str]:
    """The names the directory page lists, in its order."""
    page = client.get("/directory", query_string=query).text
    return [cell.split(">", 2)[1].split("<", 1)[0] for cell in page.split('data-label="Name"><a href="/directory/')[1:]]


def test_oruk_json_as_an_api_publishes_it_is_imported_and_importing_it_again_updates_it(intake, token, tmp_path):
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    done = upload(coordinator, "services.json", json.dumps(ORUK_PAGE).encode())
    assert done.status_code == 200, done.text
    assert "Imported 2, updated 0" in done.text and "Debt advice clinic" in done.text  # left out: no kind of help
    found = intake.test_client().get("/directory/entries", headers=token("coordinator")).json
    by_name = {e["name"]: e for e in found}
    befriend = by_name["Fylde Befriending Circle"]
    assert befriend["kinds"] == ["home_visit", "phone_check_in"]
    assert (befriend["organisation"], befriend["phone"], befriend["area"]) == ("Fylde Age Concern", "01253 000001",
                                                                             "FY1")
    assert befriend["when"] == "Tue, Thu 10:00-12:00" and befriend["eligibility"] == "Adults over 60"
    assert (befriend["latitude"], befriend["longitude"]) == (53.8175, -3.0357)
    assert by_name["Lytham Bereavement Café"]["kinds"] == ["bereavement_visit", "bereavement_group"]
    assert by_name["Lytham Bereavement Café"]["latitude"] is not None  # from its postcode's district

    changed = copy.deepcopy(ORUK_PAGE)
    changed["content"][0]["name"] = "Fylde Befriending"
    changed["content"][1]["status"] = "inactive"  # retired by its publisher
    again = upload(coordinator, "services.json", json.dumps(changed).encode())
    assert "Imported 0, updated 2" in again.text
    assert listed(coordinator) == ["Fylde Befriending"]

    # a plain list (HSDS 3's shape), by the command line
    path = tmp_path / "hsds.json"
    path.write_text(json.dumps(HSDS_LIST))
    ran = CliRunner().invoke(main, ["directory", "import", str(path), "--community", "fylde-coast"])
    assert ran.exit_code == 0, ran.output
    assert "imported 1" in ran.output
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"content": [{"name": "", "service_taxonomys": [{"taxonomy": {"name": "Meals"}}]}]}))
    refused = CliRunner().invoke(main, ["directory", "import", str(broken), "--community", "fylde-coast"])
    assert refused.exit_code == 1 and "services[0]: name: Give the service's name." in refused.output
    assert "nothing was imported" in refused.output
    elsewhere = CliRunner().invoke(main, ["directory", "import", str(path), "--community", "atlantis"])
    assert elsewhere.exit_code == 2 and "no community 'atlantis'" in elsewhere.output
    car = next(e for e in intake.test_client().get("/directory/entries", headers=token("coordinator")).json
               if e["name"] == "Community Car Scheme")
    assert (car["kinds"], car["when"], car["area"]) == (["transport"], "Weekdays 9-5", "PR4")


def test_a_csv_with_mistakes_names_each_by_line_and_column_and_imports_nothing(intake):
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    template = coordinator.get("/directory/template.csv")
    assert template.status_code == 200 and template.mimetype == "text/csv"
    header, example = template.text.splitlines()
    assert header.startswith("id,name,kinds,")
    bad = "\r\n".join([header,
                       ",,home_visit,,,FY1 4AB,,,,01253 1,,,",  # line 2: no name
                       "x2,Garden club,gardening,,,FY1 4AB,,,,01253 2,,,",  # line 3: not a kind of help
                       "x3,Lunch club,meals,,,ZZ9 9ZZ,,,,01253 3,,,",  # line 4: no such postcode
                       "x4,Walk group,home_visit,,,,91,,,,,,"])  # line 5: latitude out of range, no longitude
    refused = upload(coordinator, "directory.csv", bad.encode())
    assert refused.status_code == 422
    problems = refused.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    for where in ("line 2, Name", "line 3, What it offers", "line 4, Postcode", "line 5, latitude"):
        assert where in problems, where
    assert "gardening" in problems
    assert listed(coordinator) == []  # nothing half-written

    good = upload(coordinator, "directory.csv", template.data)  # the template's example row, as it comes
    assert good.status_code == 200 and "Imported 1" in good.text
    assert listed(coordinator) == ["Fylde Befriending Circle"]
    unreadable = upload(coordinator, "directory.csv", b"who,what\r\na,b\r\n")
    assert unreadable.status_code == 422 and "Unknown column(s): who, what" in unreadable.text


def add(client, **fields) -> None:
    page = client.get("/directory/new").text
    data = {"csrf_token": csrf(page), "name": "", "kinds": [], "postcode": "", "phone": "01253 000000", **fields}
    answer = client.post("/directory/new", data=data)
    assert answer.status_code == 303, answer.text


def test_entries_are_found_by_need_and_nearest_a_postcode_and_edited_and_retired(intake, token):
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    page = coordinator.get("/directory/new").text
    refused = coordinator.post("/directory/new", data={"csrf_token": csrf(page), "name": "", "postcode": "XX1",
                                                       "email": "not an email"})
    assert refused.status_code == 422
    summary = refused.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    for field in ("name", "kinds", "postcode", "email"):
        assert f'href="#{field}"' in summary, field
    add(coordinator, name="Blackpool Visitors", kinds=["home_visit"], postcode="FY1 4AB")
    add(coordinator, name="Preston Visitors", kinds=["home_visit"], postcode="PR1 2HE")
    add(coordinator, name="Lancaster Visitors", kinds=["home_visit", "shopping"], postcode="LA1 1AA")
    add(coordinator, name="Helpline", kinds=["phone_check_in", "home_visit"], website="https://help.example")
    add(coordinator, name="Fylde Shopping", kinds=["shopping"], postcode="FY8 1AA")

    assert listed(coordinator, kind="home_visit", postcode="FY1") == [
        "Blackpool Visitors", "Preston Visitors", "Lancaster Visitors", "Helpline"]  # no place: after those near
    assert listed(coordinator, kind="home_visit", postcode="LA1") == [
        "Lancaster Visitors", "Blackpool Visitors", "Preston Visitors", "Helpline"]
    assert listed(coordinator, kind="home_visit", postcode="FY1", within_km="27") == [
        "Blackpool Visitors", "Preston Visitors", "Helpline"]
    assert listed(coordinator, kind="shopping") == ["Fylde Shopping", "Lancaster Visitors"]
    bad = coordinator.get("/directory", query_string={"postcode": "nowhere"})
    assert bad.status_code == 422 and 'href="#postcode"' in bad.text

    api = intake.test_client().get("/directory/entries", headers=token("coordinator"),
                                   query_string={"kind": "home_visit", "postcode": "PR1"})
    assert [e["name"] for e in api.json][:2] == ["Preston Visitors", "Blackpool Visitors"]
    assert api.json[0]["distance_km"] < 5 < api.json[1]["distance_km"]
    assert intake.test_client().get("/directory/entries", headers=token("coordinator"),
                                    query_string={"kind": "gardening"}).status_code == 422
    assert intake.test_client().get("/directory/entries", headers=token("manager")).status_code == 403
    assert "/directory/entries" in intake.test_client().get("/openapi/intake.json").json["paths"]

    page = coordinator.get("/directory").text
    entry = page.split('<a href="/directory/', 1)[1].split('"', 1)[0]  # the first by name: Blackpool Visitors
    edit = coordinator.get(f"/directory/{entry}").text
    assert 'value="Blackpool Visitors"' in edit
    changed = coordinator.post(f"/directory/{entry}", data={"csrf_token": csrf(edit), "name": "Blackpool Visiting",
                                                           "kinds": ["home_visit", "carer_respite"],
                                                           "postcode": "FY1 4AB", "phone": "01253 9"})
    assert changed.status_code == 303
    assert listed(coordinator, kind="carer_respite") == ["Blackpool Visiting"]
    coordinator.post(f"/directory/{entry}/retire", data={"csrf_token": csrf(edit), "retired": "1"})
    assert "Blackpool Visiting" not in listed(coordinator)
    assert "Blackpool Visiting" in listed(coordinator, retired="1")


def test_a_request_signposted_closes_with_it_matching_stops_the_referrer_sees_it_and_metrics_counts_it(
        app_for, token, monkeypatch):
    monkeypatch.setenv("CCS_SUPPRESS_BELOW", "0")
    intake = app_for("intake")
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    referrer, _ = signed_in(intake, "asha@pcn.example", "referrer", organisation="Fylde Coast PCN")
    admin = Actor("root@ccs.example", "admin", ("fylde-coast",))
    for name, kind, hook in (("Fylde Coast PCN", "pcn", "https://pcn.example/hook"), ("Trinity Hospice", "hospice",
                                                                                     None)):
        intake_service.add_organisation(intake.extensions["ccs"].uow(), admin, {
            "name": name, "type": kind, "adopted_on": None, "webhook_url": hook})
    add(coordinator, name="Lytham Bereavement Café", kinds=["bereavement_group", "bereavement_visit"],
        postcode="FY8 1AA", when="Fridays 14:00", organisation="trinity hospice")
    add(coordinator, name="Fylde Shopping", kinds=["shopping"], postcode="FY1 4AB")
    referral = intake.test_client().post("/referrals", json=REFERRAL, headers=token(
        "referrer", subject="asha@pcn.example", organisation="Fylde Coast PCN")).json

    page = coordinator.get(f"/board/{referral['id']}").text
    section = page.split('id="signposting"', 1)[1].split("</section>", 1)[0]
    assert section.index("Lytham Bereavement Café") < section.index("Fylde Shopping")  # its kind first
    entry = section.split('name="entry_id" value="', 1)[1].split('"', 1)[0]
    done = coordinator.post(f"/board/{referral['id']}/signpost", data={"csrf_token": csrf(page), "entry_id": entry})
    assert done.status_code == 303
    shown = intake.test_client().get(f"/requests/{referral['id']}", headers=token("coordinator")).json
    assert (shown["status"], shown["outcome"]) == ("signposted", "Signposted to Lytham Bereavement Café")
    assert shown["timeline"][-1]["what"] == "signposted"
    again = coordinator.post(f"/board/{referral['id']}/signpost", data={"csrf_token": csrf(page), "entry_id": entry})
    assert again.status_code == 303  # already closed: nothing more happens
    assert "Signpost instead" not in coordinator.get(f"/board/{referral['id']}").text

    mine = referrer.get("/my-referrals").text
    assert "Could not be met by a volunteer" in mine and "Signposted to Lytham Bereavement Café" in mine
    own = referrer.get(f"/my-referrals/{referral['id']}").text
    assert "Signposted to Lytham Bereavement Café" in own and "Fridays 14:00" in own

    with intake.extensions["ccs"].sessions() as session:
        told = session.scalars(sa.select(webhook_deliveries.c.body).where(
            webhook_deliveries.c.request_id == uuid.UUID(referral["id"])).order_by(webhook_deliveries.c.id)).all()
        hospice = session.scalar(sa.select(organisations.c.id).where(organisations.c.name == "Trinity Hospice"))
    assert [b["referral"]["stage"] for b in told] == ["Received", "Could not be met by a volunteer"]
    assert told[-1]["referral"]["detail"] == "Signposted to Lytham Bereavement Café"
    assert told[-1]["task"]["status"] in ("rejected", "failed")  # closed without a volunteer's help
    assert told[-1]["task"]["statusReason"]["text"] == "Signposted to Lytham Bereavement Café"
    [listed_entry] = [e for e in intake.test_client().get("/directory/entries", headers=token("coordinator")).json
                      if e["name"] == "Lytham Bereavement Café"]
    assert listed_entry["organisation_id"] == str(hospice)  # linked to the register by its name

    events = [load_event(body) for body in staged_events(intake.extensions["ccs"].sessions)]
    signposted = [e for e in events if e.type == "request.signposted"]
    assert len(signposted) == 1 and "request.cancelled" not in [e.type for e in events]
    assert (signposted[0].payload.support_type, str(signposted[0].payload.entry_id)) == ("bereavement_visit", entry)
    assert REFERRAL["person"]["name"] not in json.dumps(signposted[0].payload.as_dict(), default=str)

    matching, metrics = app_for("matching"), app_for("metrics")
    to_matching, to_metrics = dispatcher(matching, "matching"), dispatcher(metrics, "metrics")
    for event in events:
        if event.type in ("request.submitted", "request.signposted"):
            to_matching(event)
        to_metrics(event)
        to_metrics(event)  # a redelivery counts once
    from services.matching.domain import MatchRequest
    with matching.extensions["ccs"].sessions() as session:
        assert session.get(MatchRequest, uuid.UUID(referral["id"])).status == "cancelled"  # no one more is asked
    counts = metrics.test_client().get("/activity", headers=token("manager"),
                                       query_string={"period": "day"}).json["periods"][-1]["measures"]
    assert counts["requests_signposted"] == 1 and counts["signposted_by_kind"] == {"bereavement_visit": 1}
    assert counts["requests_cancelled"] == 0
    csv = metrics.test_client().get("/activity.csv", headers=token("manager"), query_string={"period": "day"}).text
    assert "Requests signposted to other support" in csv and "Requests signposted for bereavement_visit" in csv


def test_another_community_never_sees_nor_signposts_to_this_ones_entries(intake, token):
    fylde, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    ottawa, _ = signed_in(intake, "lee@ottawa.example", "coordinator", communities=("ottawa-west",))
    add(fylde, name="Fylde Shopping", kinds=["shopping"], postcode="FY1 4AB")
    entry = fylde.get("/directory").text.split('<a href="/directory/', 1)[1].split('"', 1)[0]
    assert listed(ottawa) == [] and ottawa.get(f"/directory/{entry}").status_code == 404
    page = ottawa.get("/directory").text
    assert ottawa.post(f"/directory/{entry}", data={"csrf_token": csrf(page), "name": "Mine now",
                                                    "kinds": ["shopping"], "phone": "1"}).status_code == 404
    assert ottawa.post(f"/directory/{entry}/retire", data={"csrf_token": csrf(page)}).status_code == 404
    assert intake.test_client().get("/directory/entries", headers=token(
        "coordinator", communities=["ottawa-west"])).json == []
    theirs = intake.test_client().post("/requests", json={**SHOPPING, "person": {**SHOPPING["person"],
                                                                                  "postcode": "K1Y",
                                                                                  "phone": "+16135550166"}},
                                       headers=token("coordinator", communities=["ottawa-west"])).json
    assert "Fylde Shopping" not in ottawa.get(f"/board/{theirs['id']}").text
    refused = ottawa.post(f"/board/{theirs['id']}/signpost", data={"csrf_token": csrf(page), "entry_id": entry})
    assert refused.status_code == 404
    mine = fylde.post(f"/board/{theirs['id']}/signpost", data={"csrf_token": csrf(fylde.get("/directory").text),
                                                               "entry_id": entry})
    assert mine.status_code == 404  # not a request of theirs
    assert intake.test_client().get(f"/requests/{theirs['id']}", headers=token(
        "coordinator", communities=["ottawa-west"])).json["status"] == "submitted"
