"""Checks and training as data, per community (issue 16), on both backends: an administrator adds a check and makes
a kind of help need it (API), and from then on matching asks only volunteers holding it, saying so by the check's
name, while offers already made stay; every change is audited; recording the check (its expiry from how long it
lasts) makes the volunteer eligible again; two matching processes see each other's rule changes in their next
decision, and the candidate index decides as the rules do volunteer by volunteer."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta

from services.matching import service_layer
from services.matching.domain import Volunteer, exclusion, facts_for, task_slots
from shared.clock import months_after, utcnow
from shared.communities import get as community
from tests.integration.test_candidate_index import decide, shopping
from tests.integration.test_matching import Matching, register
from tests.integration.test_security import csrf_of, signed_in

IN_DATE = {"done_on": "2026-01-05", "expires_on": "2035-01-05"}
BEREAVEMENT = [{"check": check, **IN_DATE} for check in ("safeguarding", "criminal_record", "bereavement_training")]
CULTURAL = {"key": "culturally_safe_practice", "name": "Culturally safe practice training",
            "evidence": "certificate seen", "lasts_months": 24}
NEEDED = ["safeguarding", "criminal_record", "bereavement_training", "culturally_safe_practice"]


def test_a_check_an_administrator_adds_and_requires_rules_out_volunteers_without_it_from_then_on(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    admin, coordinator = token("admin", subject="ada@example.org"), token("coordinator")
    bea = register(client, coordinator, "Bea", "07911123470", skills=["bereavement"], checks=BEREAVEMENT)
    before = matching.submit(support_type="bereavement_visit")
    assert [o.status for o in matching.request(before).offers] == ["open"]  # asked under the old rules

    added = client.post("/volunteers/checks", json=CULTURAL, headers=admin)
    assert added.status_code == 201, added.json
    assert added.json == {**{k: CULTURAL[k] for k in ("key", "name", "evidence", "lasts_months")}, "retired": False}
    needs = client.put("/volunteers/checks/requirements/bereavement_visit", json={"checks": NEEDED}, headers=admin)
    assert needs.status_code == 200 and needs.json["checks"] == NEEDED, needs.json

    after = matching.submit(support_type="bereavement_visit")
    assert matching.request(after).status == "unmatched"
    assert matching.request(after).unmatched_reason == \
        "nobody eligible: 1 without culturally safe practice training in date"
    view = client.get(f"/matches/{after}", headers=coordinator).json
    assert view["excluded"] == {"without culturally safe practice training in date": 1}
    assert [o.status for o in matching.request(before).offers] == ["open"]  # the offer made before stays
    group = matching.request(matching.submit(support_type="bereavement_group"))  # only visits need the new check
    assert [str(o.volunteer_id) for o in group.offers] == [bea["id"]]

    done_on = date.today() - timedelta(days=3)
    given = client.patch(f"/volunteers/{bea['id']}", headers=coordinator,
                         json={"checks": [{"check": "culturally_safe_practice", "done_on": done_on.isoformat()}]})
    assert given.status_code == 200, given.json
    held = {c["check"]: c["expires_on"] for c in given.json["checks"]}
    assert held["culturally_safe_practice"] == months_after(done_on, 24).isoformat()  # from how long it lasts
    again = matching.submit(support_type="bereavement_visit")
    assert [str(o.volunteer_id) for o in matching.request(again).offers] == [bea["id"]]

    rules = client.get("/volunteers/checks", headers=admin).json
    assert rules["community"] == "fylde-coast"
    assert {r["kind"]: r["checks"] for r in rules["requirements"]}["bereavement_visit"] == NEEDED
    changes = [(c["subject"], c["before"], c["after"], c["actor"], c["role"]) for c in rules["changes"]]
    assert changes == [
        ("requirement:bereavement_visit", {"checks": NEEDED[:3]}, {"checks": NEEDED}, "ada@example.org", "admin"),
        ("check_type:culturally_safe_practice", None, {k: CULTURAL[k] for k in ("name", "evidence", "lasts_months")}
         | {"retired": False}, "ada@example.org", "admin")]


def test_renaming_and_retiring_a_check_apply_from_then_on_and_are_audited(app_for, token):
    app = app_for("matching")
    client, matching = app.test_client(), Matching(app)
    admin, coordinator = token("admin", subject="ada@example.org"), token("coordinator")
    register(client, coordinator, "No checks", "07911123471", checks=[])
    renamed = client.patch("/volunteers/checks/safeguarding", json={"name": "Safeguarding adults training"},
                           headers=admin)
    assert renamed.status_code == 200 and renamed.json["name"] == "Safeguarding adults training"
    assert matching.request(matching.submit()).unmatched_reason == \
        "nobody eligible: 1 without safeguarding adults training in date"

    retired = client.patch("/volunteers/checks/safeguarding", json={"retired": True}, headers=admin)
    assert retired.status_code == 200 and retired.json["retired"] is True
    assert [o.status for o in matching.request(matching.submit()).offers] == ["open"]  # shopping needs nothing now
    refused = client.patch(f"/volunteers/{register(client, coordinator, 'Later', '07911123472', checks=[])['id']}",
                           headers=coordinator, json={"checks": [{"check": "safeguarding", **IN_DATE}]})
    assert refused.status_code == 422 and refused.json["errors"][0]["field"] == "checks.0.check", refused.json
    changes = client.get("/volunteers/checks", headers=admin).json["changes"]
    assert [(c["before"]["name"], c["after"]["name"], c["after"]["retired"]) for c in changes] == [
        ("Safeguarding adults training", "Safeguarding adults training", True),
        ("Safeguarding training", "Safeguarding adults training", False)]


def test_bad_rules_are_refused_naming_the_field_and_only_administrators_change_them(app_for, token):
    app = app_for("matching")
    client = app.test_client()
    admin = token("admin")
    bad = client.post("/volunteers/checks", json={"key": "Bad Key", "name": " ", "lasts_months": 0}, headers=admin)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json["errors"]} == {"key", "name", "lasts_months"}
    assert client.post("/volunteers/checks", json=CULTURAL, headers=admin).status_code == 201
    twice = client.post("/volunteers/checks", json=CULTURAL, headers=admin)
    assert twice.status_code == 422 and twice.json["errors"][0]["field"] == "key"
    unknown = client.put("/volunteers/checks/requirements/shopping", json={"checks": ["no_such_check"]},
                         headers=admin)
    assert unknown.status_code == 422 and unknown.json["errors"][0]["field"] == "checks", unknown.json
    assert client.put("/volunteers/checks/requirements/nothing", json={"checks": []}, headers=admin).status_code == 404
    assert client.patch("/volunteers/checks/no_such_check", json={"name": "X"}, headers=admin).status_code == 404
    for role in ("coordinator", "manager", "referrer"):
        assert client.post("/volunteers/checks", json={**CULTURAL, "key": "other"},
                           headers=token(role)).status_code == 403
        assert client.put("/volunteers/checks/requirements/shopping", json={"checks": []},
                          headers=token(role)).status_code == 403
    # another community's administrator changes their own rules only
    elsewhere = client.get("/volunteers/checks", headers=token("admin", ("cheshire-east",))).json
    assert "culturally_safe_practice" not in {t["key"] for t in elsewhere["check_types"]}
    assert elsewhere["changes"] == []


def reference(app, request) -> tuple[list[str], Counter]:
    """Who the rules allow, volunteer by volunteer over every volunteer loaded from the database, and why not."""
    context = app.extensions["ccs"]
    now = utcnow()
    zone = community(request.community).zone
    slots = task_slots(request, zone, now.astimezone(zone).date())
    with context.uow() as uow:
        rules = uow.checks.rules(request.community)
        everyone = uow.volunteers.session.query(Volunteer).all()
        facts = facts_for(request, [(v, 0.0) for v in everyone], {}, [], now)
        excluded, allowed = Counter(), []
        for v in everyone:
            rule = exclusion(v, request, facts[v.id], slots, context.settings.policy, rules)
            if rule is None:
                allowed.append(v.name)
            else:
                excluded[rule] += 1
    return sorted(allowed), excluded


def test_two_processes_see_a_rule_change_in_their_next_decision_and_the_index_agrees_with_the_rules(app_for, token):
    one, other = app_for("matching"), app_for("matching")
    admin, coordinator = token("admin"), token("coordinator")
    client = one.test_client()
    for n, checks in enumerate([BEREAVEMENT, BEREAVEMENT[:2], BEREAVEMENT + [{"check": "driving", **IN_DATE}]]):
        register(client, coordinator, f"V{n}", f"0791112346{n}", skills=["bereavement", "practical"], checks=checks)
    visit = shopping(support_type="bereavement_visit")
    assert decide(other, visit, everyone=True) == (["V0", "V2"], Counter({"check:bereavement_training": 1}))

    assert one.test_client().put("/volunteers/checks/requirements/bereavement_visit", headers=admin,
                                 json={"checks": ["safeguarding", "driving"]}).status_code == 200
    for app in (other, one):
        found = decide(app, visit, everyone=True)
        assert found == (["V2"], Counter({"check:driving": 2}))
        assert (sorted(found[0]), found[1]) == reference(app, visit)
    with other.extensions["ccs"].uow() as uow:  # a coordinator's view of the decision names the check
        report = service_layer._report(uow, visit, other.extensions["ccs"].settings.policy, utcnow())
    assert report["excluded"] == {"without driving licence and insurance seen in date": 2}

    assert one.test_client().post("/volunteers/checks", json=CULTURAL, headers=admin).status_code == 201
    assert one.test_client().put("/volunteers/checks/requirements/bereavement_visit", headers=admin,
                                 json={"checks": ["culturally_safe_practice"]}).status_code == 200
    found = decide(other, visit, everyone=True)  # a check nobody holds yet
    assert found == ([], Counter({"check:culturally_safe_practice": 3})) and found[1] == reference(other, visit)[1]


def test_a_spreadsheet_imports_the_communitys_own_checks_and_names_the_column_of_one_it_does_not_have(app_for, token):
    client = app_for("matching").test_client()
    admin, coordinator = token("admin"), token("coordinator")
    assert client.post("/volunteers/checks", json=CULTURAL, headers=admin).status_code == 201
    header = "name,phone,postcode,max_distance_km,skills,safeguarding_done,culturally_safe_practice_done"
    rows = ["Ida Import,07911123480,FY1,10,bereavement,2026-01-05,2026-02-01",
            "Jo Import,07911123481,FY1,10,bereavement,2026-01-05,"]
    sheet = "\n".join([header, *rows]) + "\n"
    done = client.post("/volunteers/import", data=sheet, headers={**coordinator, "Content-Type": "text/csv"})
    assert done.status_code == 201 and done.json == {"imported": 2, "rows": 2, "errors": []}, done.json
    ida = next(v for v in client.get("/volunteers", headers=coordinator).json if v["name"] == "Ida Import")
    assert {c["check"]: c["expires_on"] for c in ida["checks"]} == {"safeguarding": None,
                                                                    "culturally_safe_practice": "2028-02-01"}

    elsewhere = sheet.replace("culturally_safe_practice_done", "fylde_only_done").replace("0791112348", "0791112349")
    refused = client.post("/volunteers/import", data=elsewhere, headers={**coordinator, "Content-Type": "text/csv"})
    assert refused.status_code == 422 and refused.json["errors"] == [
        {"line": 2, "field": "fylde_only_done", "detail": refused.json["errors"][0]["detail"]}], refused.json
    assert refused.json["errors"][0]["detail"].startswith("Must be one of: safeguarding, ")


def test_the_checks_pages_change_the_rules_showing_each_mistake_beside_its_field(app_for):
    app = app_for("matching")
    admin = signed_in(app, "admin")
    page = admin.get("/roster/checks")
    assert page.status_code == 200 and "Checks and training in Fylde Coast" in page.get_data(as_text=True)
    token = csrf_of(page.get_data(as_text=True))

    blank = admin.post("/roster/checks/driving", data={"name": " ", "evidence": "", "lasts_months": "200",
                                                       "csrf_token": token})
    text = blank.get_data(as_text=True)
    assert blank.status_code == 422
    assert re.search(r'id="name-error">[^<]*blank', text) and re.search(r'id="lasts_months-error">[^<]*120', text)
    assert 'value="200"' in text  # what was typed is kept

    renamed = admin.post("/roster/checks/driving", data={"name": "Driving licence seen", "evidence": "",
                                                         "lasts_months": "36", "retired": "yes", "csrf_token": token})
    assert renamed.status_code == 303
    wrong = admin.post("/roster/checks/requirements", data={"requires.transport": ["safeguarding", "driving"],
                                                            "csrf_token": token})
    assert wrong.status_code == 422  # driving is retired now
    assert re.search(r'id="requires-transport-error">driving: not a check of this community',
                     wrong.get_data(as_text=True))
    saved = admin.post("/roster/checks/requirements", data={"requires.transport": ["safeguarding"],
                                                            "csrf_token": token})
    assert saved.status_code == 303
    shown = admin.get("/roster/checks").get_data(as_text=True)
    assert "Checks needed for transport to an appointment" in shown and "Driving licence seen" in shown
    with app.extensions["ccs"].uow() as uow:
        rules = uow.checks.rules("fylde-coast")
        assert rules.needed("transport") == ("safeguarding",) and rules.needed("meals") == ()  # none ticked: none
        assert rules.types["driving"].retired and rules.types["driving"].lasts_months == 36
    coordinator = signed_in(app, "coordinator")
    assert coordinator.get("/roster/checks").status_code == 403
