"""Each role's home in the browser, on both backends: a referrer's own referrals in plain words (never the roster),
and an administrator's choice of the community they work in, which every page then keeps to."""

from __future__ import annotations

import uuid

import pytest

from services.intake import service_layer
from services.intake.adapters import passwords
from shared.contracts import EXAMPLES, load_event, make_event
from tests.helpers import dispatcher
from tests.integration.test_bus import SHOPPING
from tests.integration.test_intake import REFERRAL
from tests.integration.test_sign_in_redirects import PASSWORD, csrf_of

ROSTER_WORDS = "2 without the skill, 1 without a criminal record check"


@pytest.fixture
def intake(app_for):
    return app_for("intake")


def signed_in(app, email: str, role: str, communities=("fylde-coast",), organisation=None):
    """A browser session of a new user of `role`."""
    service_layer.create_user(app.extensions["ccs"].uow(), passwords, email, email.split("@")[0].title(), role,
                              list(communities), organisation, PASSWORD)
    client = app.test_client()
    answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert answer.status_code == 302, answer.text
    return client, answer.headers["Location"]


def test_a_referrer_lands_on_their_referrals_and_follows_one_in_plain_words_without_the_roster(intake, token):
    client, home = signed_in(intake, "asha@pcn.example", "referrer", organisation="Fylde Coast PCN")
    assert home == "/my-referrals"
    assert "You have not referred anyone yet." in client.get(home).text
    gp = token("referrer", subject="asha@pcn.example", organisation="Fylde Coast PCN")
    mine = intake.test_client().post("/referrals", json=REFERRAL, headers=gp).json
    theirs = intake.test_client().post("/referrals", headers=token("referrer", subject="sam@prescribing.example"),
                                       json={**REFERRAL, "person": {**REFERRAL["person"], "name": "Other Person"},
                                             "referrer": {**REFERRAL["referrer"], "organisation": "Age UK"}}).json

    listed = client.get("/my-referrals")
    assert listed.status_code == 200
    assert f'href="/my-referrals/{mine["id"]}"' in listed.text and "Received" in listed.text
    assert theirs["id"] not in listed.text and "Other Person" not in listed.text
    assert client.get(f"/my-referrals/{theirs['id']}").status_code == 404

    deliver = dispatcher(intake, "intake")
    request_id = mine["id"]

    def matching_says(event_type, **payload):
        example = EXAMPLES[(event_type, 1)]
        deliver(load_event(make_event(event_type, {**example, "request_id": request_id, **payload})))

    matching_says("offer.made", offer_id=str(uuid.uuid4()), code="4821", sequence=1)
    matching_says("request.unmatched", reason=f"nobody eligible: {ROSTER_WORDS}", sequence=2)
    page = client.get(f"/my-referrals/{request_id}").text
    assert "No volunteer found yet" in page and "other ways to help" in page
    assert "without the skill" not in page and "4821" not in page  # the roster and offer references stay inside
    assert "without the skill" not in client.get("/my-referrals").text

    offer = str(uuid.uuid4())
    matching_says("offer.made", offer_id=offer, code="5532", sequence=3)
    matching_says("offer.accepted", offer_id=offer, code="5532", sequence=4)
    matching_says("request.matched", offer_id=offer, sequence=5)
    matching_says("task.completed", offer_id=offer, sequence=6)
    page = client.get(f"/my-referrals/{request_id}").text
    story = [line.split("</strong>")[0].split("<strong>")[-1] for line in page.split('<ol class="timeline">')[1]
             .split("</ol>")[0].split("<li>")[1:]]
    assert story == ["Received", "Looking for a volunteer", "No volunteer found yet", "Looking for a volunteer",
                     "Volunteer found", "Help given"]
    assert "5532" not in page and "ref " not in page

    # The referrer's pages are theirs alone; the coordinators' pages are not for them.
    assert client.get("/board").status_code == 403
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    assert coordinator.get("/my-referrals").status_code == 403


def test_an_administrator_chooses_the_community_they_work_in_and_every_page_keeps_to_it(intake, token):
    fylde = intake.test_client().post("/requests", json={**SHOPPING, "person": {**SHOPPING["person"],
                                      "name": "Fylde Person"}}, headers=token("coordinator")).json
    cheshire = intake.test_client().post("/requests", json={**SHOPPING, "person": {
        **SHOPPING["person"], "name": "Cheshire Person", "postcode": "CW1 2AB"}},
        headers=token("coordinator", communities=("cheshire-east",))).json
    assert fylde.get("id") and cheshire.get("id"), (fylde, cheshire)

    client, home = signed_in(intake, "root@ccs.example", "admin", communities=("cheshire-east", "fylde-coast"))
    assert home == "/communities"
    chooser = client.get(home).text
    assert "Cheshire East" in chooser and "Fylde Coast" in chooser and "Ottawa West" not in chooser
    board = client.get("/board").text  # before choosing: both of theirs
    assert "Fylde Person" in board and "Cheshire Person" in board

    csrf = chooser.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = client.post("/communities", data={"community": "ottawa-west", "csrf_token": csrf})
    assert refused.status_code == 422 and "Choose one of your communities." in refused.text
    assert "Cheshire Person" in client.get("/board").text  # nothing changed

    chosen = client.post("/communities", data={"community": "fylde-coast", "csrf_token": csrf})
    assert (chosen.status_code, chosen.headers["Location"]) == (303, "/board")
    board = client.get("/board").text
    assert "Fylde Person" in board and "Cheshire Person" not in board
    assert client.get(f"/board/{cheshire['id']}").status_code == 404
    assert 'href="/communities">Community: fylde-coast</a>' in board
    client.post("/communities", data={"community": "cheshire-east", "csrf_token": csrf})  # and back again
    board = client.get("/board").text
    assert "Cheshire Person" in board and "Fylde Person" not in board

    one, home = signed_in(intake, "solo@ccs.example", "admin")
    assert home == "/communities" and one.get(home).headers["Location"] == "/board"  # nothing to choose


def test_a_referrer_refers_someone_by_the_form_with_every_mistake_named_at_once_and_nothing_lost(intake):
    client, _ = signed_in(intake, "asha@pcn.example", "referrer", organisation="Fylde Coast PCN")
    form = client.get("/my-referrals/new").text
    assert 'value="Fylde Coast PCN"' in form and "readonly" in form  # they refer for their own organisation
    csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = {"csrf_token": csrf, "person.name": "Rose Quayle", "person.postcode": "ZZ9 9ZZ",
              "support_type": "home_visit", "when.kind": "flexible", "when.days": "tue",
              "when.part_of_day": "afternoon", "reason": "", "referrer.organisation": "Another Practice",
              "referrer.organisation_type": "pcn", "referrer.name": "Dr Asha Rao"}
    refused = client.post("/my-referrals/new", data=answer)
    assert refused.status_code == 422
    summary = refused.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    assert 'href="#reason"' in summary and "Why you are referring them" in summary
    assert 'href="#person-postcode"' in summary and "ZZ9" in summary  # the postcode message names what was typed
    assert 'id="reason" name="reason"' in refused.text and 'aria-invalid="true"' in refused.text
    assert 'value="Rose Quayle"' in refused.text and 'value="Fylde Coast PCN"' in refused.text  # kept; theirs
    assert "You have not referred anyone yet." in client.get("/my-referrals").text  # nothing half-written

    sent = client.post("/my-referrals/new", data={**answer, "person.postcode": "FY1 4AA",
                                                  "reason": "Lives alone since her husband died."})
    assert sent.status_code == 303 and sent.headers["Location"].startswith("/my-referrals/")
    page = client.get(sent.headers["Location"]).text
    assert "Companionship visit for Rose Quayle" in page and "Received" in page
    assert "Dr Asha Rao, Fylde Coast PCN" in page and "Another Practice" not in page
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    board = coordinator.get("/board").text
    assert "Rose Quayle" in board and "referral: Fylde Coast PCN" in board


def test_colleagues_follow_their_organisations_referrals_and_no_one_elses(intake, token):
    """A referral belongs to the organisation on the referrer's account: a colleague sees it, another organisation
    does not, and a body that names another organisation cannot file under its name."""
    asha = token("referrer", subject="asha@pcn.example", organisation="Fylde Coast PCN")
    colleague = token("referrer", subject="ben@pcn.example", organisation="Fylde Coast PCN")
    hospice = token("referrer", subject="cat@hospice.example", organisation="Trinity Hospice")
    client = intake.test_client()
    mine = client.post("/referrals", json=REFERRAL, headers=asha).json
    posing = client.post("/referrals", headers=hospice, json={**REFERRAL, "referrer": {
        **REFERRAL["referrer"], "organisation": "Fylde Coast PCN"}}).json
    assert posing["referrer_organisation"] == "Trinity Hospice"  # filed under the account's own organisation
    assert [r["id"] for r in client.get("/referrals", headers=colleague).json] == [mine["id"]]
    assert client.get(f"/referrals/{mine['id']}", headers=colleague).status_code == 200
    assert [r["id"] for r in client.get("/referrals", headers=hospice).json] == [posing["id"]]
    assert client.get(f"/referrals/{mine['id']}", headers=hospice).status_code == 404
    other_place = token("referrer", communities=("ottawa-west",), subject="asha@pcn.example",
                        organisation="Fylde Coast PCN")
    assert client.get("/referrals", headers=other_place).json == []
    browser, _ = signed_in(intake, "ben@pcn.example", "referrer", organisation="Fylde Coast PCN")
    listed = browser.get("/my-referrals").text
    assert mine["id"] in listed and posing["id"] not in listed
