"""Retention's pure rules: what identifies a person, how texts and documents are scrubbed of it, what a request
keeps once its person is forgotten, and the periods a community may set."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.intake.domain import REMOVED_NAME, SupportRequest, columns_from, personal_values, scrubbed
from shared.auth import Actor
from shared.communities import Retention

KIM = Actor(subject="kim@fylde.org", role="coordinator", communities=("fylde-coast",))
AT = datetime(2032, 1, 1, tzinfo=timezone.utc)


def a_request(**person) -> SupportRequest:
    data = {"person": {"name": "Pat Example", "phone": "+441253477000", "address": "1 Promenade, Blackpool",
                       "postcode": "FY1 4AB", "area": "FY1", "latitude": 53.8, "longitude": -3.0,
                       "date_of_birth": date(1941, 5, 17), **person},
            "support_type": "shopping", "coordinator_notes": "Pat's son visits on Sundays"}
    return SupportRequest.submit(KIM, columns_from(data), {"share_contact": True, "sms_contact": True})


def test_a_person_is_known_by_their_name_and_its_parts_phone_as_written_address_postcode_and_birthday():
    values = personal_values(a_request())
    assert {"Pat Example", "Pat", "Example", "+441253477000", "01253 477000", "01253477000", "+44 1253 477000",
            "1 Promenade, Blackpool", "FY1 4AB", "1941-05-17", "17/05/1941"} <= set(values)
    assert values.index("Pat Example") < values.index("Pat"), "the whole before its parts"


@pytest.mark.parametrize("text, expected", [
    ("Pat Example moved away", "[removed] moved away"),
    ("pat EXAMPLE moved away", "[removed] moved away"),
    ("Call 01253 477000 or +441253477000", "Call [removed] or [removed]"),
    ("Patient at 1 Promenade, Blackpool, FY1 4AB", "Patient at [removed], [removed]"),
    ("Nothing personal", "Nothing personal"),
])
def test_a_text_loses_every_personal_value_but_not_words_that_only_contain_one(text, expected):
    assert scrubbed(text, personal_values(a_request())) == expected


def test_a_document_is_scrubbed_at_every_depth_and_keeps_its_shape_and_numbers():
    document = {"person": {"name": "Pat Example", "phone": "+441253477000", "area": "FY1", "latitude": 53.8},
                "notes": ["Pat likes tea", 3], "carer": None}
    assert scrubbed(document, personal_values(a_request())) == {
        "person": {"name": "[removed]", "phone": "[removed]", "area": "FY1", "latitude": 53.8},
        "notes": ["[removed] likes tea", 3], "carer": None}


def test_a_forgotten_person_leaves_what_the_help_was_where_and_how_it_went():
    request = a_request()
    request.source_document = {"resourceType": "ServiceRequest", "subject": {"display": "Pat Example"}}
    request.cancel("Pat Example moved to 1 Promenade, Blackpool", "kim@fylde.org")
    removed = request.forget_person(AT)
    assert "Pat Example" in removed and request.pseudonymised_at == AT
    assert (request.person_name, request.person_phone, request.address, request.postcode, request.date_of_birth,
            request.coordinator_notes, request.source_document) == (REMOVED_NAME, None, "", None, None, "", None)
    assert (request.area, request.support_type, request.status) == ("FY1", "shopping", "cancelled")
    assert request.outcome == "[removed] moved to [removed]"
    assert [(e.what, e.detail) for e in request.timeline] == [("submitted", "Shopping, routine"),
                                                               ("cancelled", "[removed]")]


def test_a_closed_request_keeps_no_document_it_came_in():
    request = a_request()
    request.source_document = {"resourceType": "ServiceRequest"}
    request.advance("offered")
    assert request.source_document is not None
    request.cancel("No longer needed", "kim@fylde.org")
    assert request.source_document is None


def test_a_community_sets_the_periods_it_keeps_data_for_in_whole_days():
    assert Retention.of({}) == Retention(730, 365, 2920, 2920)
    assert Retention.of({"sms_body_days": 90}).sms_body_days == 90
    for wrong in ({"sms_days": 90}, {"sms_body_days": 0}, {"sms_body_days": "90"}, {"sms_body_days": True}):
        with pytest.raises(ValueError, match="retention"):
            Retention.of(wrong)


def test_an_erased_open_request_cannot_be_changed_and_shares_nothing_with_a_volunteer():
    from services.intake.domain import NotOpen
    from shared.contracts import EXAMPLES
    from shared.contracts.matching import OfferAccepted

    request = a_request()
    request.forget_person(AT)
    with pytest.raises(NotOpen, match="erased"):
        request.edit({"urgency": "urgent"}, None, "kim@fylde.org")
    details = request.details_for(OfferAccepted(**{**EXAMPLES[("offer.accepted", 1)], "request_id": request.id}))
    assert (details.shared, details.first_name, details.address, details.person_phone) == (False, None, None, None)
