"""Checks and training as data, per community (issue 16): how a community's rules are made from the defaults, its
communities.json block and its administrators' changes; when a check expires; eligibility and its explanation under
a community's rules; and the use cases that change them (audited, from then on) with in-memory repositories."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime, timezone

import pytest

from services.matching import service_layer
from services.matching.domain import (DEFAULT_RULES, CheckDefinition, CheckRules, CheckType, Facts, Invalid,
                                      KindRequirement, NotFound, Policy, check_expires_on, exclusion, explain,
                                      task_slots, why_unmatched)
from shared.auth import Actor
from shared.communities import all_communities
from shared.taxonomy import CHECKS, KINDS
from tests.unit.test_matching_rules import LONDON, MONDAY, check, volunteer
from tests.unit.test_matching_rules import request as bereavement_request
from tests.unit.test_matching_service_layer import COORDINATOR, FakeMatchingUnitOfWork

NOW = datetime(2030, 1, 7, 9, tzinfo=timezone.utc)
ADMIN = Actor(subject="ada@example.org", role="admin", communities=("fylde-coast",))
CULTURAL = CheckDefinition(key="culturally_safe_practice", name="Culturally safe practice training",
                           evidence="certificate seen", lasts_months=24)


def cultural() -> CheckType:
    """The community's own check, as a row (made fresh: a domain object is a row once mapped)."""
    return CheckType(community="fylde-coast", **CULTURAL.facts(), key=CULTURAL.key)


def test_a_community_that_defines_nothing_has_exactly_the_taxonomys_checks_and_requirements():
    rules = CheckRules.of("fylde-coast")
    assert {k: t.name for k, t in rules.types.items()} == CHECKS == rules.active()
    assert {kind: rules.needed(kind) for kind in KINDS} == {kind: k.checks for kind, k in KINDS.items()}
    assert DEFAULT_RULES.requires == rules.requires
    assert rules.expires_on("safeguarding", date(2030, 1, 31)) is None  # the defaults do not expire by themselves


def test_the_configured_block_then_the_communitys_rows_win_over_the_defaults():
    configured = {"criminal_record": {"name": "Vulnerable sector check", "evidence": "police result seen",
                                      "lasts_months": 36},
                  "first_aid": {"name": "First aid", "lasts_months": 36}}
    rules = CheckRules.of("ottawa-west", configured, {"shopping": ["first_aid"]},
                          [CheckType(community="ottawa-west", key="driving", name="Driving", retired=True)],
                          [KindRequirement(community="ottawa-west", kind="transport",
                                           checks=["driving", "criminal_record"])])
    assert rules.name("criminal_record") == "Vulnerable sector check"
    assert rules.needed("shopping") == ("first_aid",)
    assert rules.needed("transport") == ("criminal_record",)  # a retired check is asked for no more
    assert "driving" not in rules.active() and rules.name("driving") == "Driving"  # its records keep a name
    assert rules.needed("home_visit") == KINDS["home_visit"].checks
    assert rules.name("gone_since") == "gone_since"


def test_the_shipped_ottawa_west_words_the_criminal_record_check_its_own_way():
    ottawa = all_communities()["ottawa-west"]
    rules = CheckRules.of("ottawa-west", ottawa.checks, ottawa.requirements)
    assert rules.name("criminal_record") == "Vulnerable sector check"
    assert rules.requires == DEFAULT_RULES.requires


@pytest.mark.parametrize("lasts, done_on, expires_on", [
    (24, date(2030, 1, 15), date(2032, 1, 15)),
    (1, date(2030, 1, 31), date(2030, 2, 28)),  # the last day of a shorter month
    (12, date(2028, 2, 29), date(2029, 2, 28)),
    (None, date(2030, 1, 15), None),
])
def test_a_check_expires_as_long_after_it_was_done_as_its_type_lasts(lasts, done_on, expires_on):
    kind = CheckType(community="fylde-coast", key="k1", name="K", lasts_months=lasts)
    assert check_expires_on(kind, done_on) == expires_on
    assert check_expires_on(None, done_on) is None


def test_a_kind_needing_the_communitys_own_check_rules_out_a_volunteer_without_it_naming_it():
    rules = CheckRules.of("fylde-coast", types=[cultural()], requirements=[KindRequirement(
        community="fylde-coast", kind="bereavement_visit",
        checks=["safeguarding", "criminal_record", "bereavement_training", CULTURAL.key])])
    request = bereavement_request(support_type="bereavement_visit")
    slots = task_slots(request, LONDON, MONDAY)
    sam = volunteer()
    assert exclusion(sam, request, Facts(distance_km=1.0), slots, Policy()) is None  # the defaults
    assert exclusion(sam, request, Facts(distance_km=1.0), slots, Policy(), rules) == f"check:{CULTURAL.key}"
    sam.checks.append(check(CULTURAL.key))
    assert exclusion(sam, request, Facts(distance_km=1.0), slots, Policy(), rules) is None
    excluded = Counter({f"check:{CULTURAL.key}": 3, "too_far": 1})
    assert explain(excluded, rules) == "3 without culturally safe practice training in date, 1 too far"
    assert why_unmatched(0, excluded, rules).startswith("nobody eligible: 3 without culturally safe practice")


def test_adding_a_check_and_requiring_it_is_audited_and_a_check_recorded_without_expiry_lasts_its_time():
    uow = FakeMatchingUnitOfWork()
    added = service_layer.add_check_type(uow, ADMIN, {
        "key": CULTURAL.key, "name": " Culturally safe practice training ", "evidence": "certificate seen",
        "lasts_months": 24}, NOW)
    assert added.name == "Culturally safe practice training" and uow.committed
    with pytest.raises(Invalid) as twice:
        service_layer.add_check_type(uow, ADMIN, {"key": CULTURAL.key, "name": "Again"}, NOW)
    assert list(twice.value.messages) == ["key"]
    needed = service_layer.set_requirements(uow, ADMIN, {"bereavement_visit": [CULTURAL.key, "safeguarding"]}, NOW)
    assert needed == {"bereavement_visit": ("safeguarding", CULTURAL.key)}  # in the order the checks are listed
    assert service_layer.set_requirements(uow, ADMIN, {"bereavement_visit": ["safeguarding", CULTURAL.key]}, NOW) \
        == needed  # no change: nothing audited
    view = service_layer.check_rules(uow, ADMIN)
    assert [(c.subject, c.before, c.after, c.actor) for c in view.changes] == [
        (f"check_type:{CULTURAL.key}", None, {"name": CULTURAL.name, "evidence": "certificate seen",
                                              "lasts_months": 24, "retired": False}, "ada@example.org"),
        ("requirement:bereavement_visit", {"checks": list(KINDS["bereavement_visit"].checks)},
         {"checks": ["safeguarding", CULTURAL.key]}, "ada@example.org")]
    assert view.rules.needed("bereavement_visit") == ("safeguarding", CULTURAL.key)

    with pytest.raises(Invalid) as unknown:
        service_layer.set_requirements(uow, ADMIN, {"shopping": ["nope"]}, NOW)
    assert list(unknown.value.messages) == ["requires.shopping"]
    with pytest.raises(NotFound):
        service_layer.set_requirements(uow, ADMIN, {"other": []}, NOW)  # never offered: a coordinator triages it

    registered = service_layer.register_volunteer(uow, COORDINATOR, {
        "name": "Bea", "phone": "+447911123401", "latitude": 53.81, "longitude": -3.05, "max_distance_km": 5,
        "skills": ["bereavement"], "checks": [{"check": CULTURAL.key, "done_on": date(2030, 1, 31), "expires_on": None},
                                              {"check": "safeguarding", "done_on": date(2029, 1, 1),
                                               "expires_on": None}]}, render=lambda v: {"id": v.id})
    bea = uow.volunteers.rows[registered.body["id"]]
    assert {c.check: c.expires_on for c in bea.checks} == {CULTURAL.key: date(2032, 1, 31), "safeguarding": None}
    with pytest.raises(Invalid) as foreign:
        service_layer.update_volunteer(uow, COORDINATOR, bea.id, {"checks": [{"check": "elsewhere_only",
                                                                             "done_on": date(2029, 1, 1)}]})
    assert foreign.value.messages == {"checks": {0: {"check": [f"Must be one of: {', '.join(view.rules.active())}."]}}}


def test_renaming_a_default_check_keeps_its_other_facts_and_an_unchanged_save_is_not_audited():
    uow = FakeMatchingUnitOfWork()
    renamed = service_layer.change_check_type(uow, ADMIN, "driving", {"name": "Driving licence seen"}, NOW)
    assert (renamed.name, renamed.lasts_months, renamed.retired) == ("Driving licence seen", None, False)
    service_layer.change_check_type(uow, ADMIN, "driving", {"name": "Driving licence seen"}, NOW)
    assert len(uow.checks.changed) == 1
    with pytest.raises(Invalid) as bad:
        service_layer.change_check_type(uow, ADMIN, "driving", {"lasts_months": 121}, NOW)
    assert list(bad.value.messages) == ["lasts_months"]
    with pytest.raises(NotFound):
        service_layer.change_check_type(uow, ADMIN, "no_such_check", {"name": "X"}, NOW)
    retired = service_layer.change_check_type(uow, ADMIN, "driving", {"retired": True}, NOW)
    assert retired.retired
    assert uow.checks.rules("fylde-coast").needed("transport") == ("safeguarding", "criminal_record")
    assert uow.checks.rules("cheshire-east").needed("transport") == KINDS["transport"].checks  # theirs alone


def test_the_default_rules_read_the_same_once_matchings_tables_are_mapped():
    import services.matching.adapters  # noqa: F401 (maps CheckType onto its table)

    assert DEFAULT_RULES.active() == CHECKS and DEFAULT_RULES.name("driving") == CHECKS["driving"]


def test_the_expiry_reminder_names_the_check_as_its_community_does_and_an_older_event_by_the_defaults():
    from services.notify.domain import expiring_body
    from shared.contracts.matching import CheckExpiring

    about = dict(volunteer_id=uuid.uuid4(), community="fylde-coast",
                 phone="+447911123401", expires_on=date(2030, 2, 1))
    own = CheckExpiring(**about, check=CULTURAL.key, check_name=CULTURAL.name)
    assert "culturally safe practice training" in expiring_body(own, "en")
    older = CheckExpiring(**about, check="criminal_record")  # before events carried the name
    assert CHECKS["criminal_record"].lower() in expiring_body(older, "en")
