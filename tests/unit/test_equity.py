"""Reach and equity's rules, by table: age bands from a date of birth, each country's ethnicity categories and the
group each is counted in, the deprivation decile of a postcode, and what a person's monitoring sends metrics."""

from __future__ import annotations

import csv
import uuid
from datetime import date, datetime, timezone

import pytest

from services.intake.domain import NotAnAnswer, Person, person_ref
from services.metrics.domain import Monitoring, measures
from shared import equity
from shared.contracts import EXAMPLES
from shared.contracts.intake import PersonMonitored

NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("born, on, band", [
    (date(2009, 12, 8), date(2026, 12, 7), "0-17"),  # 18 tomorrow
    (date(2008, 12, 7), date(2026, 12, 7), "18-24"),  # 18 today
    (date(1961, 6, 1), date(2026, 12, 7), "65-74"),
    (date(1952, 1, 1), date(2026, 12, 7), "65-74"),  # 74
    (date(1951, 12, 7), date(2026, 12, 7), "75-84"),
    (date(1941, 12, 8), date(2026, 12, 7), "75-84"),  # 84 still
    (date(1941, 12, 7), date(2026, 12, 7), "85+"),
    (date(1920, 2, 29), date(2026, 12, 7), "85+"),
])
def test_the_age_band_of_a_date_of_birth_on_a_day(born, on, band):
    assert equity.age_band(born, on) == band


@pytest.mark.parametrize("postcode, country, decile", [
    ("FY1 4AB", "GB", "2"), ("fy14ab", "GB", "2"), ("FY1", "GB", "2"),  # Blackpool
    ("CW1 2AA", "GB", "8"), ("SK10", "GB", "8"),  # Cheshire East
    ("CF10 1AA", "GB", "unknown"),  # Cardiff: Wales is not in the English index
    ("EH1 1AA", "GB", "unknown"), ("BT1 1AA", "GB", "unknown"),
    ("K1N 5N5", "CA", "unknown"),  # no Ontario Marginalization Index shipped
    ("FY1 4AB", "CA", "unknown"), ("", "GB", "unknown"), (None, "GB", "unknown"), ("not a postcode", "GB", "unknown"),
])
def test_the_deprivation_decile_of_a_postcode_or_its_district(postcode, country, decile):
    assert equity.deprivation_decile(postcode, country) == decile


def test_the_shipped_deciles_cover_englands_districts_and_each_is_one_to_ten():
    with equity.DEPRIVATION.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 2000 and {row["imd_decile"] for row in rows} <= set(equity.DECILES)
    assert all(int(row["lsoas"]) > 0 for row in rows)
    assert not any(row["district"].startswith(("CF", "EH", "BT", "G1")) for row in rows)


def test_englands_census_has_nineteen_categories_in_five_groups_and_ontarios_its_race_categories():
    england = equity.ethnicities("GB")
    assert len(england) == 19 and {group for _, group in england.values()} == {
        "asian", "black", "mixed", "white", "other"}
    assert equity.group_of("white_gypsy_traveller", "GB") == "white"
    assert equity.group_of("other_arab", "GB") == "other"
    ontario = equity.ethnicities("CA")
    assert "ca_indigenous" in ontario and "white_british" not in ontario and len(ontario) == 8
    assert equity.group_of(equity.PREFER_NOT, "CA") == equity.PREFER_NOT and equity.group_of(None, "GB") is None
    assert equity.ethnicities("FR") == {}


def person(**details) -> Person:
    return Person("fylde-coast", "Pat Example", postcode="FY1 4AB", id=uuid.UUID(int=7), **details)


def test_what_metrics_is_sent_bands_groups_and_the_decile_under_a_pseudonym_and_nothing_without_consent():
    pat = person(date_of_birth=date(1944, 3, 1))
    pat.record_monitoring(True, {"age_band": "65-74", "sex": "female", "ethnicity": "black_caribbean",
                                 "first_language": "en", "disability": "no"}, "GB", "cora@example.org", NOW)
    sent = pat.monitored("GB", "secret", date(2026, 12, 7))
    assert sent == PersonMonitored(community="fylde-coast", person_ref=person_ref(pat.id, "secret"), consented=True,
                                   age_band="75-84", sex="female", ethnic_group="black", first_language="en",
                                   disability="no", deprivation_decile="2")
    prefers_not = person(date_of_birth=date(1944, 3, 1))
    prefers_not.record_monitoring(True, {"age_band": equity.PREFER_NOT}, "GB", "cora", NOW)
    assert prefers_not.monitored("GB", "secret", date(2026, 12, 7)).age_band == equity.PREFER_NOT  # not derived

    pat.record_monitoring(False, {"sex": "female"}, "GB", "cora", NOW)
    assert set(pat.monitoring) == {"consent", "recorded_by", "recorded_at"}
    withdrawn = pat.monitored("GB", "secret", date(2026, 12, 7))
    assert withdrawn.consented is False and all(
        getattr(withdrawn, name) is None for name, _ in equity.DIMENSIONS)
    never = person().monitored("GB", "secret", date(2026, 12, 7))
    assert never.consented is False and never.deprivation_decile is None


def test_another_countrys_category_is_refused_and_nothing_is_recorded():
    pat = person()
    with pytest.raises(NotAnAnswer):
        pat.record_monitoring(True, {"ethnicity": "ca_latino"}, "GB", "cora", NOW)
    assert pat.monitoring is None
    pat.record_monitoring(True, {"ethnicity": "ca_latino"}, "CA", "cora", NOW)
    assert pat.monitored("CA", "s", date(2026, 12, 7)).ethnic_group == "ca_latino"


def test_the_contracts_example_is_a_consented_persons_answers():
    assert PersonMonitored.schema().load(EXAMPLES[("person.monitored", 1)])


def test_the_people_supported_are_counted_by_their_answer_once_each_and_the_rest_not_recorded():
    def fact(event_type, request_id, person=None, **more):
        from services.metrics.domain import Fact
        return Fact(event_id=uuid.uuid4(), event_type=event_type, occurred_at=NOW, day=NOW.date(),
                    community="fylde-coast", request_id=request_id, person_ref=person, support_type="shopping",
                    **more)

    facts, history = [], []
    for n, person in enumerate(["p_a", "p_a", "p_b", "p_c"]):  # p_a twice: one person
        request_id = uuid.uuid4()
        submitted = fact("request.submitted", request_id, person)
        facts += [submitted, fact("task.completed", request_id, hours=1.0)]
        history.append(submitted)
    answers = {"p_a": Monitoring("p_a", "fylde-coast", NOW, consented=True, age_band="85+", sex=None),
               "p_b": Monitoring("p_b", "fylde-coast", NOW, consented=False, age_band="85+")}
    counted = measures(facts, [], volunteer_changes=[], history=history, monitoring=answers)
    assert counted["people_reached"] == 3
    assert counted["people_by_age_band"] == {"85+": 1, equity.NOT_RECORDED: 2}  # p_b withdrew, p_c never asked
    assert counted["people_by_sex"] == {equity.NOT_RECORDED: 3}  # p_a consented but did not answer
    assert all(sum(counted[key].values()) == 3 for key in
               ("people_by_ethnic_group", "people_by_first_language", "people_by_disability",
                "people_by_deprivation_decile"))
