"""Surveys by SMS, the pure parts: reading an answer from 0 to 10 in English and French, who is asked what and when,
who may be texted, and how metrics counts answers (bands, means shown only beside a distribution shown in full)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.intake.surveys import ONS4, CommunityQuestion, Survey, SurveyError, may_text, respondent_for
from services.metrics.domain import NOT_SHOWN, Fact, band_of, measures, shown
from services.notify.messages import TEMPLATES, parse_survey_answer

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("body, value", [
    ("7", 7), ("seven", 7), ("sept", 7), ("7/10", 7), ("10 thanks", 10), ("Seven!", 7), ("7 out of 10", 7),
    ("8 sur 10", 8), ("huit", 8), ("zéro", 0), ("0", 0), ("I'd say 6", 6), ("dix sur dix", 10), ("TEN", 10),
    ("  3 ", 3), ("neuf merci", 9),
    ("7 or 8", None), ("11", None), ("7.5", None), ("hello", None), ("", None), ("100", None),
    ("six or seven", None),
])
def test_an_answer_is_read_by_number_or_word_in_english_and_french(body, value):
    assert parse_survey_answer(body) == value


def test_every_survey_text_is_written_in_both_languages():
    for name in ("survey_thanks", "survey_unclear", "survey_reminder"):
        assert TEMPLATES["en"][name] and TEMPLATES["fr"][name]


@pytest.mark.parametrize("support_type, is_carer, respondent", [
    ("shopping", False, "service_user"), ("carer_respite", True, "carer"), ("shopping", True, "carer"),
    ("bereavement_visit", False, "bereaved"), ("bereavement_group", True, "bereaved")])
def test_who_answers_follows_the_help_given(support_type, is_carer, respondent):
    assert respondent_for(support_type, is_carer) == respondent


def test_a_survey_asks_ons4_then_the_communitys_own_questions_for_that_respondent_and_waits_for_the_bereaved():
    own = [CommunityQuestion(community="fylde-coast", respondent="carer", text="Do you feel supported?",
                             created_by="c@example.org"),
           CommunityQuestion(community="fylde-coast", respondent="bereaved", text="Did we listen?",
                             text_fr="Vous avons-nous écouté ?", created_by="c@example.org")]
    carer = Survey.after("fylde-coast", uuid.uuid4(), "carer_respite", True, NOW, own, bereavement_weeks=6)
    assert [q["id"] for q in carer.questions] == [q["id"] for q in ONS4] + [own[0].key]
    assert carer.due_at == NOW
    bereaved = Survey.after("fylde-coast", uuid.uuid4(), "bereavement_visit", False, NOW, own, bereavement_weeks=6)
    assert bereaved.due_at == NOW + timedelta(weeks=6) and bereaved.questions[-1]["fr"] == "Vous avons-nous écouté ?"

    first = bereaved.next_question("+447911123555", "fr", reminder_hours=48)
    assert first.text.startswith("Un court sondage sur le soutien reçu (5 questions). Répondez STOP")
    assert (first.number, first.of, first.reminder_hours, bereaved.status) == (1, 5, 48, "asking")
    assert bereaved.current["id"] == "ons4_life_satisfaction"
    second = bereaved.next_question("+447911123555", "fr", reminder_hours=48)
    assert second.reminder_hours == 0 and not second.text.startswith("Un court")  # one reminder: the first's
    for _ in range(3):
        bereaved.next_question("+447911123555", "fr", 48)
    assert bereaved.next_question("+447911123555", "fr", 48) is None and bereaved.status == "done"
    assert not bereaved.stop("died")  # done is done


def test_nobody_is_texted_without_consent_a_phone_or_once_they_died():
    assert may_text(consented=True, phone="+447911123555", died=False) is None
    assert may_text(consented=False, phone="+447911123555", died=False) == "no_consent"
    assert may_text(consented=True, phone=None, died=False) == "no_phone"
    assert may_text(consented=True, phone="+447911123555", died=True) == "died"


def test_a_communitys_question_is_refused_with_the_field_to_change():
    with pytest.raises(SurveyError) as short:
        CommunityQuestion(community="a", respondent="carer", text="Hm", created_by="x")
    assert short.value.field == "text"
    with pytest.raises(SurveyError) as who:
        CommunityQuestion(community="a", respondent="volunteer", text="Are you well?", created_by="x")
    assert who.value.field == "respondent"


def answers(*given: tuple[str, str, int]) -> list[Fact]:
    return [Fact(event_id=uuid.uuid4(), event_type="survey.answer_recorded", occurred_at=NOW, community="a",
                 respondent=r, question=q, answer=a) for r, q, a in given]


def test_answers_are_counted_in_the_ons_bands_with_means_and_none_of_a_tied_to_anyone():
    got = measures(answers(*[("carer", "ons4_anxiety", 1)] * 6, *[("carer", "ons4_anxiety", 7)] * 5,
                           *[("bereaved", "ons4_happiness", 9)] * 5), [], volunteer_changes=[], history=[])
    assert (got["carer_survey_answers"], got["user_survey_answers"]) == (11, 5)
    assert got["survey_answers"] == {"Bereaved people: happy yesterday: 9-10": 5,
                                     "Carers: anxious yesterday: 0-1": 6, "Carers: anxious yesterday: 6-10": 5}
    assert got["survey_means"] == {"Carers: anxious yesterday": 3.7, "Bereaved people: happy yesterday": 9.0}
    published = shown(got, 5)
    assert {k: published[k] for k in got if "survey" in k} == {k: got[k] for k in got if "survey" in k}  # all shown
    assert band_of("ons4_anxiety", 6) == "6-10" and band_of("ons4_life_satisfaction", 6) == "5-6"


def test_a_mean_is_not_shown_beside_a_small_or_hidden_band():
    got = shown(measures(answers(*[("carer", "ons4_life_satisfaction", 8)] * 9,
                                 ("carer", "ons4_life_satisfaction", 1)), [], volunteer_changes=[], history=[]), 5)
    assert got["survey_answers"] == {"Carers: life satisfaction: 0-4": "<5", "Carers: life satisfaction: 7-8": "hidden"}
    assert got["survey_responses"] == {"Carers: life satisfaction": 10}
    assert got["survey_means"] == {"Carers: life satisfaction": NOT_SHOWN}  # 7.3 and 10 answers would give 1 away
