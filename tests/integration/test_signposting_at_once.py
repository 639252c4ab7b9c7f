"""Signposting as a request is made, on both backends: a referrer's form or a coordinator's form with a directory
entry chosen logs the request closed as signposted to it, in one transaction, and matching is never asked (no
offer, so no SMS); metrics counts it once as received and once as signposted; the referrer sees it at once. Another
community's entry cannot be chosen. A FHIR referral held for a coordinator's check and cancelled before release is
counted as received too."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from services.intake.domain import SupportRequest
from shared.contracts import load_event
from tests.helpers import dispatcher
from tests.integration.test_directory import add
from tests.integration.test_fhir import EHR, fixture, post
from tests.integration.test_intake import rows, staged_events
from tests.integration.test_role_homes import signed_in
from tests.integration.test_webhooks import csrf

REFERRAL_FORM = {"person.name": "Rose Quayle", "person.postcode": "FY8 2AB", "support_type": "bereavement_visit",
                 "when.kind": "flexible", "when.days": "tue", "when.part_of_day": "afternoon",
                 "reason": "Her husband died in March.", "referrer.organisation": "Fylde Coast PCN",
                 "referrer.organisation_type": "pcn", "referrer.name": "Dr Asha Rao"}


@pytest.fixture
def apps(app_for, monkeypatch):
    monkeypatch.setenv("CCS_SUPPRESS_BELOW", "0")
    return app_for("intake"), app_for("matching"), app_for("metrics")


def entry_ids(page: str) -> dict[str, str]:
    """The form's "Or point them to a service instead" choices: each entry's name and id, in the form's order."""
    section = page.split('<fieldset id="signpost_to"', 1)[1].split("</fieldset>", 1)[0]
    found = {}
    for choice in section.split('name="signpost_to" value="')[2:]:  # the first is "No: ask volunteers"
        entry_id, rest = choice.split('"', 1)
        found[rest.split(">", 1)[1].split(":", 1)[0].strip()] = entry_id
    return found


def delivered(intake, matching, metrics) -> list:
    """Intake's events given to matching's and metrics' workers, as the bus would; the events."""
    events = [load_event(body) for body in staged_events(intake.extensions["ccs"].sessions)]
    to_matching, to_metrics = dispatcher(matching, "matching"), dispatcher(metrics, "metrics")
    for event in events:
        if event.type.startswith("request."):
            to_matching(event)
        to_metrics(event)
    return events


def matching_wrote_nothing(matching) -> None:
    """Matching took nothing in, kept no early cancellation, and made no offer (so notify has no SMS to send)."""
    from services.matching.adapters import outbox
    from services.matching.domain import CancelledEarly, MatchRequest

    with matching.extensions["ccs"].sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MatchRequest)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(CancelledEarly)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(outbox.table)) == 0


def counts(metrics, token) -> dict:
    return metrics.test_client().get("/activity", headers=token("manager"),
                                     query_string={"period": "day"}).json["periods"][-1]["measures"]


def test_a_referral_by_the_form_signposted_at_once_is_closed_never_offered_counted_and_shown(apps, token):
    intake, matching, metrics = apps
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    referrer, _ = signed_in(intake, "asha@pcn.example", "referrer", organisation="Fylde Coast PCN")
    add(coordinator, name="Lytham Bereavement Café", kinds=["bereavement_group", "bereavement_visit"],
        postcode="FY8 1AA")
    add(coordinator, name="Blackpool Befriending", kinds=["home_visit"], postcode="FY1 4AB")
    add(coordinator, name="Cruse Helpline", kinds=["bereavement_group"], phone="0808 808 1677")

    form = referrer.get("/my-referrals/new").text
    assert list(entry_ids(form)) == ["Blackpool Befriending", "Cruse Helpline", "Lytham Bereavement Café"]  # by name
    assert 'value="" checked' in form.split('<fieldset id="signpost_to"', 1)[1]  # volunteers unless chosen
    refused = referrer.post("/my-referrals/new", data={**REFERRAL_FORM, "csrf_token": csrf(form), "reason": ""})
    assert refused.status_code == 422
    assert list(entry_ids(refused.text)) == ["Lytham Bereavement Café", "Blackpool Befriending",
                                             "Cruse Helpline"]  # nearest FY8 first, the helpline (no place) last
    assert "km away" in refused.text and "phone or online" in refused.text
    chosen = entry_ids(refused.text)["Lytham Bereavement Café"]

    sent = referrer.post("/my-referrals/new", data={**REFERRAL_FORM, "csrf_token": csrf(form),
                                                    "signpost_to": chosen})
    assert sent.status_code == 303, sent.text
    request_id = sent.headers["Location"].rsplit("/", 1)[1]
    shown = intake.test_client().get(f"/requests/{request_id}", headers=token("coordinator")).json
    assert (shown["status"], shown["outcome"]) == ("signposted", "Signposted to Lytham Bereavement Café")
    assert [t["what"] for t in shown["timeline"]][-1] == "signposted"
    mine = referrer.get("/my-referrals").text
    assert "Could not be met by a volunteer" in mine and "Signposted to Lytham Bereavement Café" in mine

    events = delivered(intake, matching, metrics)
    assert [e.type for e in events] == ["request.submitted", "request.signposted"]
    assert events[0].payload.closed and not events[1].payload.asked_matching
    assert str(events[1].payload.entry_id) == chosen
    matching_wrote_nothing(matching)
    measures = counts(metrics, token)
    assert (measures["requests_received"], measures["requests_signposted"]) == (1, 1)
    assert measures["signposted_by_kind"] == {"bereavement_visit": 1}
    assert measures["requests_by_source"] == {"pcn": 1} and measures["requests_cancelled"] == 0


def test_a_coordinators_request_signposted_at_once_is_closed_and_never_offered(apps, token):
    intake, matching, metrics = apps
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    add(coordinator, name="Fylde Shopping", kinds=["shopping"], postcode="FY1 4AB")
    form = coordinator.get("/board/new").text
    chosen = entry_ids(form)["Fylde Shopping"]
    sent = coordinator.post("/board/new", data={"csrf_token": csrf(form), "person.name": "Pat Quayle",
                                                "person.postcode": "FY1 3AA", "support_type": "shopping",
                                                "when.kind": "flexible", "when.days": "mon",
                                                "when.part_of_day": "morning", "signpost_to": chosen})
    assert sent.status_code == 303, sent.text
    page = coordinator.get(sent.headers["Location"]).text
    assert "Signposted to Fylde Shopping" in page

    delivered(intake, matching, metrics)
    matching_wrote_nothing(matching)
    measures = counts(metrics, token)
    assert (measures["requests_received"], measures["requests_signposted"]) == (1, 1)
    assert measures["signposted_by_kind"] == {"shopping": 1} and measures["requests_by_kind"] == {"shopping": 1}


def test_another_communitys_entry_cannot_be_chosen_and_nothing_is_written(apps):
    intake, _, _ = apps
    fylde, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    ottawa, _ = signed_in(intake, "lee@ottawa.example", "coordinator", communities=("ottawa-west",))
    add(fylde, name="Fylde Shopping", kinds=["shopping"], postcode="FY1 4AB")
    theirs = entry_ids(fylde.get("/board/new").text)["Fylde Shopping"]
    form = ottawa.get("/board/new").text
    assert "Fylde Shopping" not in form
    refused = ottawa.post("/board/new", data={"csrf_token": csrf(form), "person.name": "Olive Ottawa",
                                              "person.postcode": "K1Y", "support_type": "shopping",
                                              "when.kind": "flexible", "when.days": "mon",
                                              "when.part_of_day": "morning", "signpost_to": theirs})
    assert refused.status_code == 422
    summary = refused.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    assert 'href="#signpost_to"' in summary and "Or point them to a service instead" in summary
    assert 'value="Olive Ottawa"' in refused.text  # what was typed is kept
    nonsense = ottawa.post("/board/new", data={"csrf_token": csrf(form), "person.name": "Olive Ottawa",
                                               "person.postcode": "K1Y", "signpost_to": "x"})
    summary = nonsense.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    assert nonsense.status_code == 422 and 'href="#signpost_to"' in summary and 'href="#support_type"' in summary
    assert rows(intake.extensions["ccs"].sessions, SupportRequest) == 0
    assert staged_events(intake.extensions["ccs"].sessions) == []


def test_a_held_fhir_referral_cancelled_before_release_is_counted_as_received(apps, token):
    intake, matching, metrics = apps
    client = intake.test_client()
    resource = fixture("servicerequest-fylde-coast.json")
    del resource["contained"][0]["address"][0]["postalCode"]  # no place: held until a coordinator checks it
    created = post(client, resource, token("referrer", subject=EHR))
    assert created.status_code == 201, created.json
    assert staged_events(intake.extensions["ccs"].sessions) == []  # matching not asked
    cancelled = client.post(f"/requests/{created.json['id']}/cancel", json={"reason": "Moved away"},
                            headers=token("coordinator"))
    assert cancelled.status_code == 200, cancelled.json

    events = delivered(intake, matching, metrics)
    assert [e.type for e in events] == ["request.submitted", "request.cancelled"] and events[0].payload.closed
    from services.matching.domain import MatchRequest
    with matching.extensions["ccs"].sessions() as session:
        assert session.get(MatchRequest, uuid.UUID(created.json["id"])) is None  # never taken in, never offered
    measures = counts(metrics, token)
    assert (measures["requests_received"], measures["requests_cancelled"]) == (1, 1)
