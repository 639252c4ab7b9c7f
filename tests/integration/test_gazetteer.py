"""Postcodes anywhere in the UK or Canada, through intake's API into matching's distances, on both backends."""

from __future__ import annotations

import pytest

from shared import gazetteer
from shared.contracts import load_event
from tests.helpers import dispatcher
from tests.integration.test_bus import SHOPPING
from tests.integration.test_intake import staged_events
from tests.integration.test_matching import Matching, register


@pytest.mark.parametrize("community, postcode, phone, near, far", [
    # Preston: a volunteer in Fulwood is 3 km away, one in Blackpool 22 km.
    ("fylde-coast", "PR1 1AA", "01772 000111", ("PR2", "07911123601"), ("FY1", "07911123602")),
    # Ottawa's Lower Town: Centretown is 2 km away, Bells Corners 15 km.
    ("ottawa-west", "K1N 5N5", "+1 613 555 0166", ("K2P", "+16135550101"), ("K2H", "+16135550102")),
])
def test_a_request_from_a_district_the_old_small_list_lacked_is_placed_and_offered_to_the_nearest_volunteer(
        app_for, token, community, postcode, phone, near, far):
    coordinator = token("coordinator", (community,))
    intake, matching_app = app_for("intake"), app_for("matching")
    volunteers = matching_app.test_client()
    close = register(volunteers, coordinator, "Close", near[1], postcode=near[0])
    distant = register(volunteers, coordinator, "Distant", far[1], postcode=far[0])
    assert (close["area"], distant["area"]) == (near[0], far[0])

    answer = intake.test_client().post("/requests", headers=coordinator, json={
        **SHOPPING, "person": {**SHOPPING["person"], "phone": phone, "postcode": postcode}})
    assert answer.status_code == 201, answer.json
    place = gazetteer.locate(postcode)
    assert (answer.json["person"]["area"], answer.json["person"]["latitude"], answer.json["person"]["longitude"]) == (
        postcode.split()[0], place.latitude, place.longitude)

    [submitted] = [e for e in staged_events(intake.extensions["ccs"].sessions) if e["type"] == "request.submitted"]
    dispatcher(matching_app, "matching")(load_event(submitted))
    matching = Matching(matching_app)
    [offer] = matching.offers(answer.json["id"])
    assert str(offer.volunteer_id) == close["id"] and offer.distance_km < 5
    view = volunteers.get(f"/matches/{answer.json['id']}", headers=coordinator).json
    assert view["excluded"] == {"already asked": 1, "too far": 1}  # the distant volunteer is out of reach
