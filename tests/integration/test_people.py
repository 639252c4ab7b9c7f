"""A person's record across their requests, on both backends: found on submission (the same phone and name links;
the same phone, or name and date of birth, is only offered to a coordinator), confirmed or merged by a
coordinator (requests move, the audit log says who), the pseudonym on the bus the same for one record's requests,
and the record seen only by its community's coordinators."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa

from shared.contracts import load_event
from tests.integration.test_bus import SHOPPING
from tests.integration.test_intake import REFERRAL, staged_events
from tests.integration.test_role_homes import signed_in
from tests.integration.test_webhooks import csrf

PAT = SHOPPING["person"]  # Pat Example, 01253 477000


@pytest.fixture
def intake(app_for):
    return app_for("intake")


def log(intake, token, **person) -> dict:
    """Log a request for `person` (Pat's details changed by `person`) by the API; the request as answered."""
    body = copy.deepcopy(SHOPPING)
    body["person"].update(person)
    made = intake.test_client().post("/requests", json=body, headers=token("coordinator"))
    assert made.status_code == 201, made.json
    return made.json


def person_refs(intake) -> dict[str, str]:
    """The person_ref of each request.submitted or request.updated staged, by request id (the latest)."""
    refs = {}
    for body in staged_events(intake.extensions["ccs"].sessions):
        event = load_event(body)
        if event.type in ("request.submitted", "request.updated"):
            refs[str(event.payload["request_id"])] = event.payload["person_ref"]
    return refs


def audit(intake, action: str) -> list:
    from services.intake.adapters import audit_log

    with intake.extensions["ccs"].sessions() as session:
        return session.execute(sa.select(audit_log).where(audit_log.c.action == action)).all()


def test_the_same_phone_and_name_link_every_way_a_request_arrives_and_carry_one_person_ref(intake, token):
    first = log(intake, token)
    again = log(intake, token, name="  pat   EXAMPLE ")  # any case, spaces: the same name
    referred = intake.test_client().post("/referrals", json=REFERRAL, headers=token("referrer")).json
    other = log(intake, token, name="Sam Other", phone="01253 000999")
    coordinator = token("coordinator")
    referral = intake.test_client().get(f"/requests/{referred['id']}", headers=coordinator).json

    assert first["person_id"] == again["person_id"] == referral["person_id"] != other["person_id"]
    assert first["maybe_person_id"] is None and again["maybe_person_id"] is None
    refs = person_refs(intake)
    assert refs[first["id"]] == refs[again["id"]] == refs[referred["id"]] != refs[other["id"]]
    assert refs[first["id"]].startswith("p_") and "Pat" not in str(staged_events(intake.extensions["ccs"].sessions))

    record = intake.test_client().get(f"/people/records/{first['person_id']}", headers=coordinator)
    assert record.status_code == 200, record.json
    assert record.json["name"] == "Pat Example" and record.json["phone"] == "+441253477000"
    assert {r["id"] for r in record.json["requests"]} == {first["id"], again["id"], referred["id"]}
    assert {r["referrer_organisation"] for r in record.json["requests"]} == {None, "Fylde Coast PCN"}


def test_a_likely_match_is_offered_to_the_coordinator_never_merged_and_different_ends_the_question(intake, token):
    pat = log(intake, token, date_of_birth="1941-05-02")
    same_phone = log(intake, token, name="Patricia Example")
    same_birth = log(intake, token, name="PAT example", phone="01253 000111", date_of_birth="1941-05-02")
    name_only = log(intake, token, phone="01253 000222")  # the same name, no date of birth: nothing to say

    assert len({pat["person_id"], same_phone["person_id"], same_birth["person_id"], name_only["person_id"]}) == 4
    assert same_phone["maybe_person_id"] == same_birth["maybe_person_id"] == pat["person_id"]
    assert name_only["maybe_person_id"] is None
    assert [t["what"] for t in same_phone["timeline"]] == ["submitted", "same person?"]

    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    page = coordinator.get(f"/board/{same_birth['id']}").text
    assert "This may be the same person as" in page and f'href="/people/{pat["person_id"]}"' in page
    assert "the same name and date of birth" in page
    assert "Same person" in page and "Different person" in page
    answer = coordinator.post(f"/board/{same_birth['id']}/same-person",
                              data={"answer": "different", "csrf_token": csrf(page)})
    assert answer.status_code == 303 and answer.headers["Location"] == f"/board/{same_birth['id']}"
    after = intake.test_client().get(f"/requests/{same_birth['id']}", headers=token("coordinator")).json
    assert after["maybe_person_id"] is None and after["person_id"] == same_birth["person_id"]
    assert "This may be the same person as" not in coordinator.get(f"/board/{same_birth['id']}").text
    assert [(a.action, str(a.person_id)) for a in audit(intake, "not same person")] == [
        ("not same person", pat["person_id"])]
    assert f'href="/people/{same_birth["person_id"]}"' in coordinator.get(f"/board/{same_birth['id']}").text


def test_same_person_merges_the_records_moves_the_requests_keeps_an_audit_entry_and_the_ref_follows(intake, token):
    pat = log(intake, token)
    patricia = log(intake, token, name="Patricia Example")
    refs = person_refs(intake)
    assert refs[pat["id"]] != refs[patricia["id"]]  # until a coordinator says so, two people

    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    page = coordinator.get(f"/board/{patricia['id']}").text
    answer = coordinator.post(f"/board/{patricia['id']}/same-person", data={"answer": "same", "csrf_token": csrf(page)})
    assert answer.status_code == 303 and answer.headers["Location"] == f"/people/{pat['person_id']}"

    person = coordinator.get(f"/people/{pat['person_id']}").text
    assert f'href="/board/{pat["id"]}"' in person and f'href="/board/{patricia["id"]}"' in person
    assert "Requests (2)" in person
    gone = coordinator.get(f"/people/{patricia['person_id']}")  # the merged record leads to the one it joined
    assert gone.status_code == 303 and gone.headers["Location"] == f"/people/{pat['person_id']}"
    api = intake.test_client().get(f"/people/records/{patricia['person_id']}", headers=token("coordinator")).json
    assert api["id"] == pat["person_id"] and {r["id"] for r in api["requests"]} == {pat["id"], patricia["id"]}

    moved = [a for a in audit(intake, "merge") if a.request_id is not None]
    assert [(str(a.request_id), str(a.person_id), a.actor) for a in moved] == [
        (patricia["id"], pat["person_id"], "kim@fylde.example")]
    [merged] = [a for a in audit(intake, "merge") if a.request_id is None]
    assert str(merged.person_id) == patricia["person_id"] and merged.fields == ["merged_into"]

    changed = intake.test_client().patch(f"/requests/{patricia['id']}", json={"urgency": "urgent"},
                                         headers=token("coordinator"))
    assert changed.status_code == 200 and changed.json["person_id"] == pat["person_id"]
    assert person_refs(intake)[patricia["id"]] == refs[pat["id"]]  # the merge is on the bus from then on
    assert log(intake, token)["person_id"] == pat["person_id"]  # and the next request links to the survivor


def test_a_coordinator_merges_two_records_from_the_person_page_once_confirmed(intake, token):
    pat = log(intake, token, date_of_birth="1941-05-02")
    other = log(intake, token, name="Patty Example", phone="01253 000333", date_of_birth="1941-05-02")
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    page = coordinator.get(f"/people/{pat['person_id']}").text
    assert f'<option value="{other["person_id"]}"' in page  # the same date of birth: offered to merge

    unconfirmed = coordinator.post(f"/people/{pat['person_id']}/merge",
                                   data={"other": other["person_id"], "csrf_token": csrf(page)})
    assert unconfirmed.status_code == 422
    assert 'id="confirm-error"' in unconfirmed.text and "Tick to confirm they are the same person." in unconfirmed.text
    assert audit(intake, "merge") == []

    done = coordinator.post(f"/people/{pat['person_id']}/merge",
                            data={"other": other["person_id"], "confirm": "1", "csrf_token": csrf(page)})
    assert done.status_code == 303
    record = intake.test_client().get(f"/people/records/{pat['person_id']}", headers=token("coordinator")).json
    assert {r["id"] for r in record["requests"]} == {pat["id"], other["id"]}
    assert len(audit(intake, "merge")) == 2


def test_the_merge_api_names_a_bad_other_record(intake, token):
    pat = log(intake, token)
    coordinator = token("coordinator")
    itself = intake.test_client().post(f"/people/records/{pat['person_id']}/merge", json={"other": pat["person_id"]},
                                       headers=coordinator)
    assert itself.status_code == 422 and itself.mimetype == "application/problem+json"
    assert [e["field"] for e in itself.json["errors"]] == ["other"]
    unknown = intake.test_client().post(f"/people/records/{pat['person_id']}/merge",
                                        json={"other": "not an id"}, headers=coordinator)
    assert unknown.status_code == 422 and [e["field"] for e in unknown.json["errors"]] == ["other"]
    other = log(intake, token, name="Sam Other", phone="01253 000999")
    merged = intake.test_client().post(f"/people/records/{pat['person_id']}/merge",
                                       json={"other": other["person_id"]}, headers=coordinator)
    assert merged.status_code == 200 and {r["id"] for r in merged.json["requests"]} == {pat["id"], other["id"]}
    again = intake.test_client().post(f"/people/records/{pat['person_id']}/merge",
                                      json={"other": other["person_id"]}, headers=coordinator)
    assert again.status_code == 422 and "merged into another already" in again.json["detail"]


def test_a_record_is_seen_only_by_its_communitys_coordinators_and_admins(intake, token):
    pat = log(intake, token)
    path = f"/people/records/{pat['person_id']}"
    client = intake.test_client()
    assert client.get(path, headers=token("admin")).status_code == 200
    assert client.get(path, headers=token("coordinator", communities=("ottawa-west",))).status_code == 404
    assert client.post(f"{path}/merge", json={"other": pat["person_id"]},
                       headers=token("coordinator", communities=("ottawa-west",))).status_code == 404
    for role in ("referrer", "manager"):
        assert client.get(path, headers=token(role)).status_code == 403
    assert client.get(path).status_code == 401
    ottawa, _ = signed_in(intake, "olive@ottawa.example", "coordinator", communities=("ottawa-west",))
    assert ottawa.get(f"/people/{pat['person_id']}").status_code == 404
    referrer, _ = signed_in(intake, "asha@pcn.example", "referrer", organisation="Fylde Coast PCN")
    assert referrer.get(f"/people/{pat['person_id']}").status_code == 403


def test_carers_are_listed_both_ways_linked_from_a_carers_request_or_the_page_and_unlinked(intake, token):
    pat = log(intake, token)
    coordinator = token("coordinator")
    client = intake.test_client()
    body = copy.deepcopy(SHOPPING)
    body.update(support_type="carer_respite", cares_for=pat["person_id"],
                person={**PAT, "name": "Jo Carer", "phone": "01253 000444"})
    jo = client.post("/requests", json=body, headers=coordinator)
    assert jo.status_code == 201, jo.json
    assert jo.json["person"]["is_carer"] is True and jo.json["cares_for_id"] == pat["person_id"]
    assert refs_differ(intake, pat["id"], jo.json["id"])

    record = client.get(f"/people/records/{pat['person_id']}", headers=coordinator).json
    assert record["carers"] == [{"id": jo.json["person_id"], "name": "Jo Carer"}] and record["cares_for"] == []
    carer = client.get(f"/people/records/{jo.json['person_id']}", headers=coordinator).json
    assert carer["cares_for"] == [{"id": pat["person_id"], "name": "Pat Example"}]
    assert [r["id"] for r in carer["requests"]] == [jo.json["id"]]  # the carer's own requests are theirs

    kim, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    page = kim.get(f"/people/{pat['person_id']}").text
    assert f'<a href="/people/{jo.json["person_id"]}">Jo Carer</a>' in page.split('id="carers-heading"')[1]
    assert f'<a href="/people/{pat["person_id"]}">Pat Example</a>' in \
        kim.get(f"/people/{jo.json['person_id']}").text.split("Cares for")[1]
    form = kim.get(f"/board/new?cares_for={pat['person_id']}").text
    assert f'name="cares_for" value="{pat["person_id"]}"' in form and "They care for" in form

    removed = client.delete(f"/people/records/{pat['person_id']}/carers/{jo.json['person_id']}", headers=coordinator)
    assert removed.status_code == 204
    assert client.get(f"/people/records/{pat['person_id']}", headers=coordinator).json["carers"] == []
    assert client.delete(f"/people/records/{pat['person_id']}/carers/{jo.json['person_id']}",
                         headers=coordinator).status_code == 404

    found = kim.get(f"/people/{pat['person_id']}?find=jo car").text
    assert "Link Jo Carer as a carer" in found
    linked = kim.post(f"/people/{pat['person_id']}/carers",
                      data={"carer": jo.json["person_id"], "csrf_token": csrf(found)})
    assert linked.status_code == 303
    assert client.get(f"/people/records/{pat['person_id']}", headers=coordinator).json["carers"] == [
        {"id": jo.json["person_id"], "name": "Jo Carer"}]
    assert {a.action for a in audit(intake, "link carer")} == {"link carer"} and len(audit(intake, "link carer")) == 2
    assert len(audit(intake, "unlink carer")) == 1


def refs_differ(intake, *request_ids) -> bool:
    refs = person_refs(intake)
    return len({refs[r] for r in request_ids}) == len(request_ids)


def test_a_carer_link_follows_a_merge_and_bad_links_are_named(intake, token):
    pat = log(intake, token)
    jo = log(intake, token, name="Jo Carer", phone="01253 000444")
    joanne = log(intake, token, name="Joanne Carer", phone="01253 000555")
    coordinator = token("coordinator")
    client = intake.test_client()
    assert client.post(f"/people/records/{pat['person_id']}/carers", json={"carer": joanne["person_id"]},
                       headers=coordinator).status_code == 200
    merged = client.post(f"/people/records/{jo['person_id']}/merge", json={"other": joanne["person_id"]},
                         headers=coordinator)
    assert merged.status_code == 200
    assert merged.json["cares_for"] == [{"id": pat["person_id"], "name": "Pat Example"}]
    assert client.get(f"/people/records/{pat['person_id']}", headers=coordinator).json["carers"] == [
        {"id": jo["person_id"], "name": "Jo Carer"}]

    themselves = client.post(f"/people/records/{pat['person_id']}/carers", json={"carer": pat["person_id"]},
                             headers=coordinator)
    assert themselves.status_code == 422 and [e["field"] for e in themselves.json["errors"]] == ["carer"]
    body = copy.deepcopy(SHOPPING)
    body.update(cares_for="5b0e7c1e-0000-4000-8000-000000000000")
    unknown = client.post("/requests", json=body, headers=coordinator)
    assert unknown.status_code == 422 and [e["field"] for e in unknown.json["errors"]] == ["cares_for"]
