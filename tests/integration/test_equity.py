"""Reach and equity, on both backends: a coordinator records a person's equity monitoring (API and page); intake
sends metrics bands, groups and the deprivation decile, never the postcode, and nothing without consent; metrics
counts the people supported by each answer once however often it hears it, forgets on a withdrawn consent, and
shows a manager of several communities each beside the others and their total, scoped to their own."""

from __future__ import annotations

import copy
import csv
import io
import uuid

import pytest

from shared.contracts import EXAMPLES, load_event, make_event
from shared.equity import NOT_RECORDED, PREFER_NOT
from tests.integration.test_bus import SHOPPING
from tests.integration.test_intake import staged_events
from tests.integration.test_metrics import Metrics
from shared import clock
from tests.integration.test_role_homes import signed_in
from tests.integration.test_security import signed_in as page_session
from tests.integration.test_webhooks import csrf

ANSWERS = {"consent": True, "age_band": "75-84", "sex": "female", "ethnicity": "asian_indian",
           "first_language": "gu", "disability": PREFER_NOT}


@pytest.fixture
def intake(app_for):
    return app_for("intake")


def person_of(intake, token, **person) -> str:
    """A person's record id, from a request logged for them (Pat, with `person`'s changes)."""
    body = copy.deepcopy(SHOPPING)
    body["person"].update(person)
    made = intake.test_client().post("/requests", json=body, headers=token("coordinator"))
    assert made.status_code == 201, made.json
    return made.json["person_id"]


def monitored(intake) -> list:
    """The person.monitored events intake staged for the bus, oldest first."""
    return [load_event(body).payload for body in staged_events(intake.extensions["ccs"].sessions)
            if body["type"] == "person.monitored"]


def test_a_coordinator_records_monitoring_and_metrics_is_sent_bands_groups_and_the_decile_only(intake, token):
    person = person_of(intake, token, date_of_birth="1938-02-11")
    answer = intake.test_client().put(f"/people/records/{person}/monitoring", json=ANSWERS,
                                      headers=token("coordinator"))
    assert answer.status_code == 200, answer.json
    assert answer.json["monitoring"]["ethnicity"] == "asian_indian" and answer.json["monitoring"]["consent"] is True
    [sent] = monitored(intake)
    assert sent.as_dict() == {
        "community": "fylde-coast", "person_ref": sent.person_ref, "consented": True,
        "age_band": "85+",  # from the date of birth, not as given
        "sex": "female", "ethnic_group": "asian", "first_language": "gu", "disability": PREFER_NOT,
        "deprivation_decile": "2"}  # FY1 in the English IMD 2019
    assert sent.person_ref.startswith("p_")
    wire = str(staged_events(intake.extensions["ccs"].sessions)[-1])
    assert "FY1" not in wire and "Pat" not in wire and "1938" not in wire and "asian_indian" not in wire

    withdrawn = intake.test_client().put(f"/people/records/{person}/monitoring", json={"consent": False,
                                                                                      "sex": "female"},
                                         headers=token("coordinator"))
    assert withdrawn.status_code == 200
    assert set(withdrawn.json["monitoring"]) == {"consent", "recorded_by", "recorded_at"}  # no answer kept
    last = monitored(intake)[-1]
    assert (last.consented, last.sex, last.deprivation_decile, last.age_band) == (False, None, None, None)


@pytest.mark.parametrize("body, field", [
    ({"consent": True, "ethnicity": "ca_latino"}, "ethnicity"),  # Ontario's category, for a person in England
    ({"consent": True, "age_band": "90-99"}, "age_band"),
    ({"consent": True, "disability": "sometimes"}, "disability"),
    ({"sex": "female"}, "consent"),
])
def test_an_answer_that_is_not_one_of_the_choices_is_refused_naming_the_field(intake, token, body, field):
    person = person_of(intake, token)
    answer = intake.test_client().put(f"/people/records/{person}/monitoring", json=body,
                                      headers=token("coordinator"))
    assert answer.status_code == 422 and answer.mimetype == "application/problem+json"
    assert field in str(answer.json), answer.json
    assert monitored(intake) == []  # nothing half-written


def test_monitoring_is_recorded_only_in_the_coordinators_own_community(intake, token):
    person = person_of(intake, token)
    elsewhere = intake.test_client().put(f"/people/records/{person}/monitoring", json=ANSWERS,
                                         headers=token("coordinator", communities=("cheshire-east",)))
    assert elsewhere.status_code == 404
    managers = intake.test_client().put(f"/people/records/{person}/monitoring", json=ANSWERS,
                                        headers=token("manager"))
    assert managers.status_code == 403


def test_the_person_page_records_monitoring_with_the_countrys_categories(intake, token):
    person = person_of(intake, token)
    client, _ = signed_in(intake, "cora@example.org", "coordinator")
    page = client.get(f"/people/{person}").text
    assert "Equity monitoring" in page and "Not asked yet." in page
    assert "Asian: Indian" in page and "Latino" not in page  # England's census groups, not Ontario's
    refused = client.post(f"/people/{person}/monitoring", data={"csrf_token": csrf(page), "consent": "1",
                                                               "age_band": "150+"})
    assert refused.status_code == 422 and 'aria-invalid="true"' in refused.text and "Age band" in refused.text
    saved = client.post(f"/people/{person}/monitoring", data={
        "csrf_token": csrf(page), "consent": "1", "age_band": "65-74", "sex": PREFER_NOT,
        "ethnicity": "white_british", "first_language": "en", "disability": "yes"})
    assert saved.status_code == 303
    shown = client.get(saved.headers["Location"]).text
    assert "Equity monitoring saved." in shown and "They consented" in shown
    assert '<option value="white_british" selected>' in shown
    [sent] = monitored(intake)
    assert (sent.age_band, sent.ethnic_group, sent.disability) == ("65-74", "white", "yes")


# --- metrics -----------------------------------------------------------------------------------------------------

@pytest.fixture
def metrics(app_for):
    return Metrics(app_for("metrics"))


def monitoring(metrics: Metrics, person: str, community: str = "fylde-coast", at=None, **answers) -> None:
    metrics.deliver("person.monitored", {**EXAMPLES[("person.monitored", 1)], "person_ref": person,
                                         "community": community, **answers}, at=at)


def helped(metrics: Metrics, person: str, community: str = "fylde-coast") -> None:
    """A request for the person, done today."""
    request_id = str(uuid.uuid4())
    metrics.deliver("request.submitted", {**EXAMPLES[("request.submitted", 1)], "request_id": request_id,
                                          "community": community, "person_ref": person})
    volunteer, offer = str(uuid.uuid4()), str(uuid.uuid4())
    for event_type in ("offer.accepted", "task.completed"):
        metrics.deliver(event_type, {**EXAMPLES[(event_type, 1)], "request_id": request_id, "offer_id": offer,
                                     "volunteer_id": volunteer, "community": community})


def test_people_supported_are_counted_by_each_answer_once_and_forgotten_when_consent_is_withdrawn(metrics, token):
    people = [f"p_equity{n:04d}" for n in range(12)]
    for n, person in enumerate(people):
        helped(metrics, person)
        if n < 7:
            monitoring(metrics, person, age_band="75-84" if n < 6 else "85+")
    monitoring(metrics, people[0], age_band="75-84")  # heard again: once
    manager = token("manager")
    equity = metrics.today(manager)["equity"]
    assert equity["people_by_age_band"] == {"75-84": 6, "85+": "<5", NOT_RECORDED: "hidden"}  # 12 - 6 - 5 would say
    assert equity["people_by_deprivation_decile"] == {"2": 7, NOT_RECORDED: 5}
    assert equity["people_by_ethnic_group"] == {"white": 7, NOT_RECORDED: 5}

    late = make_event("person.monitored", {**EXAMPLES[("person.monitored", 1)], "person_ref": people[1],
                                           "ethnic_group": "black"})
    late["occurred_at"] = "2000-01-01T00:00:00+00:00"
    metrics.dispatch(load_event(late))  # an older answer arriving late changes nothing
    assert metrics.today(manager)["equity"]["people_by_ethnic_group"] == {"white": 7, NOT_RECORDED: 5}
    for person in people[:3]:  # 7 - 3: four consented, a count to hide
        monitoring(metrics, person, consented=False, age_band=None, sex=None, ethnic_group=None, first_language=None,
                   disability=None, deprivation_decile=None)
    equity = metrics.today(manager)["equity"]
    # every view of the day (this one kind and source's too) is protected together (domain.jointly_shown): the 8
    # not recorded is hidden beside the "<5", so the 12 people supported can be shown
    assert equity["people_by_deprivation_decile"] == {"2": "<5", NOT_RECORDED: "hidden"}
    assert metrics.today(manager)["measures"]["people_reached"] == 12

    day = clock.today().isoformat()
    sheet = metrics.client.get("/activity.csv", headers=manager, query_string={"period": "day", "from": day,
                                                                               "to": day}).text
    rows = {row[2]: row[3] for row in csv.reader(io.StringIO(sheet)) if row[0] == day}
    assert rows["People supported by deprivation decile (1: most deprived tenth): 2"] == "<5"
    assert rows[f"People supported by age band: {NOT_RECORDED}"] == "8" and rows["People supported"] == "12"


def test_a_manager_of_two_communities_sees_them_side_by_side_and_a_manager_of_one_only_theirs(metrics):
    for n in range(9):
        person = f"p_north{n:04d}"
        helped(metrics, person)
        monitoring(metrics, person, age_band="75-84" if n < 6 else "65-74")
    for n in range(8):
        person = f"p_south{n:04d}"
        helped(metrics, person, community="cheshire-east")
        monitoring(metrics, person, community="cheshire-east", age_band="75-84")
    helped(metrics, "p_ottawa0001", community="ottawa-west")  # nobody here manages Ottawa

    both = page_session(metrics.app, "manager", communities=("fylde-coast", "cheshire-east"))
    today = clock.today().isoformat()
    page = both.get("/dashboard/communities", query_string={"period": "day", "to": today})
    assert page.status_code == 200
    assert "Fylde Coast" in page.text and "Cheshire East" in page.text and "Ottawa" not in page.text
    sheet = both.get("/dashboard/communities.csv", query_string={"period": "day", "to": today})
    rows = list(csv.reader(io.StringIO(sheet.text)))
    assert rows[0][:3] == ["period_start", "period_end", "measure"] and rows[0][-1] == "total"
    assert sorted(rows[0][3:-1]) == ["cheshire-east", "fylde-coast"]
    order = [rows[0].index(column) for column in ("fylde-coast", "cheshire-east", "total")]
    table = {row[2]: [row[n] for n in order] for row in rows[1:]}
    # the communities' people supported are hidden: with Fylde's "<5" aged 65-74 they would give away its 75-84
    assert table["People supported"] == ["hidden", "hidden", "17"]
    assert table["Requests received"] == ["9", "8", "17"]  # Ottawa's not in the total
    ages = {part: table[f"People supported by age band: {part}"] for part in ("65-74", "75-84")}
    assert ages == {"65-74": ["<5", "0", "<5"], "75-84": ["hidden", "hidden", "hidden"]}  # 9 - 3 would say Fylde's

    one = page_session(metrics.app, "manager")
    mine = list(csv.reader(io.StringIO(one.get("/dashboard/communities.csv",
                                               query_string={"period": "day", "to": today}).text)))
    assert mine[0] == ["period_start", "period_end", "measure", "fylde-coast"]
    assert "Cheshire East" not in one.get("/dashboard/communities", query_string={"period": "day"}).text
    assert page_session(metrics.app, "coordinator").get("/dashboard/communities").status_code == 403
