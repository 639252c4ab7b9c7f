"""Training sessions by the rules alone: capacity and the waiting list, the answers read from SMS (with or without
the code, in English or French), codes never shared with an open offer, YES with one code never answering the
other, and attendance granting the session's check once. Matching's use cases on in-memory repositories."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.matching import service_layer
from services.matching.domain import CheckType, Conflict, Invalid, TrainingSession, attendee_digest
from shared.clock import months_after
from services.notify.messages import parse_reply, render, segments
from shared.auth import Actor
from shared.contracts.matching import OfferAccepted, ReplyUnresolved, TrainingAnswered, TrainingAttended, \
    TrainingInvited
from tests.unit.test_matching_service_layer import NOW, offer_of, submit, text, uow_with, volunteer

COORDINATOR = Actor("coordinator@example.org", "coordinator", ("fylde-coast",))
DETAILS = {"topic": "Bereavement support", "starts_at": NOW - timedelta(hours=1), "place": "Blackpool Library",
           "trainer": "Dr Rivera", "capacity": 1, "grants": "bereavement_training"}


def session(capacity: int = 1) -> TrainingSession:
    return TrainingSession(community="fylde-coast", created_at=NOW, **{**DETAILS, "capacity": capacity})


def test_yes_books_a_place_until_it_is_full_then_the_waiting_list_and_no_declines():
    training = session(capacity=1)
    first, second = (training.invite(phone, code, NOW) for phone, code in (("+447700900001", "1111"),
                                                                          ("+447700900002", "2222")))
    assert training.answer(first, True, NOW) == "accepted" and training.full()
    assert training.answer(first, True, NOW) == "unchanged"
    assert training.answer(second, True, NOW) == "full" and second.status == "waiting"
    assert training.answer(first, False, NOW) == "declined" and training.taken() == 0
    with pytest.raises(ValueError):
        training.invite("+447700900001", "3333", NOW)  # once per phone


@pytest.mark.parametrize("body, keyword, code", [
    ("YES", "YES", None), ("yes 5172", "YES", "5172"), ("Oui!", "YES", None), ("OUI 5172", "YES", "5172"),
    ("5172 no", "NO", "5172"), ("Non", "NO", None), ("no thanks", "NO", None)])
def test_answers_to_an_invitation_are_read_with_or_without_the_code_in_english_and_french(body, keyword, code):
    reply = parse_reply(body)
    assert (reply.keyword, reply.code, reply.problem) == (keyword, code, None)


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_training_texts_say_topic_day_place_and_code_only_in_gsm7_and_two_segments_at_most(language):
    for name in ("training_invited", "training_accepted", "training_full", "training_declined"):
        text_ = render(name, language, topic="Bereavement support", when="Mon 14 Dec 10:00",
                       where="Blackpool Library", code="5172")
        assert segments(text_).encoding == "GSM-7" and segments(text_).count <= 2, text_
    assert "YES 5172" in render("training_invited", "en", topic="T", when="W", where="P", code="5172")
    assert "OUI 5172" in render("training_invited", "fr", topic="T", when="W", where="P", code="5172")


def test_an_invitations_code_is_no_open_offers_and_yes_with_it_accepts_no_offer():
    val = volunteer("Val", "+447700900010")
    uow = uow_with(val)
    request = submit(uow)
    offer = offer_of(request, val)
    training = service_layer.schedule_session(uow, COORDINATOR, DETAILS, NOW)
    taken = set()
    for _ in range(50):  # codes chosen never collide with the open offer's, nor each other's
        taken.add(service_layer._free_code(uow, {offer.code} | taken))
    assert offer.code not in taken and len(taken) == 50
    [invitation] = service_layer.invite(uow.anew(), COORDINATOR, training.id, NOW, volunteer_ids=[val.id])
    assert invitation.code != offer.code
    assert uow.events(TrainingInvited)[0].code == invitation.code

    text(uow.anew(), val, "YES")  # both open, no code: which?
    [which] = uow.events(ReplyUnresolved)
    assert which.reason == "several_open" and set(which.codes) == {offer.code, invitation.code}
    text(uow.anew(), val, "YES", invitation.code)
    assert invitation.status == "accepted" and offer.status == "open" and not uow.events(OfferAccepted)
    assert uow.events(TrainingAnswered)[0].answer == "accepted"
    text(uow.anew(), val, "YES", offer.code)
    assert offer.status == "accepted" and not uow.events(TrainingAnswered)


def test_attendance_grants_the_check_once_and_metrics_gets_a_digest_never_the_phone():
    val = volunteer("Val", "+447700900011")
    uow = uow_with(val)
    uow.checks.add(CheckType(community="fylde-coast", key="bereavement_training", name="Bereavement-support training",
                             lasts_months=24))  # the community's own word: it lasts two years
    training = service_layer.schedule_session(uow, COORDINATOR, DETAILS, NOW)
    [invitation] = service_layer.invite(uow, COORDINATOR, training.id, NOW, volunteer_ids=[val.id])
    with pytest.raises(Conflict):  # before it begins
        service_layer.record_attendance(uow, COORDINATOR, training.id, [invitation.id], NOW - timedelta(hours=2),
                                        "key")
    service_layer.record_attendance(uow.anew(), COORDINATOR, training.id, [invitation.id], NOW, "key")
    granted = {c.check: c for c in val.checks}["bereavement_training"]
    assert (granted.done_on, granted.expires_on) == (NOW.date(), months_after(NOW.date(), 24))
    [attended] = uow.events(TrainingAttended)
    assert attended.attendee == attendee_digest(val.phone, "key") and val.phone not in str(attended)
    service_layer.record_attendance(uow.anew(), COORDINATOR, training.id, [invitation.id], NOW, "key")
    assert uow.events(TrainingAttended) == [] and len(val.checks) == 2  # recorded twice: nothing twice
    assert attendee_digest(val.phone, "key") != attendee_digest(val.phone, "another key")


def test_a_session_grants_only_a_check_the_community_has_and_has_not_retired():
    uow = uow_with()
    with pytest.raises(Invalid) as refused:
        service_layer.schedule_session(uow, COORDINATOR, {**DETAILS, "grants": "larkspur_training"}, NOW)
    assert list(refused.value.messages) == ["grants"] and uow.committed is False
    uow.checks.add(CheckType(community="fylde-coast", key="larkspur_training", name="Larkspur training"))
    assert service_layer.schedule_session(uow, COORDINATOR, {**DETAILS, "grants": "larkspur_training"}, NOW).grants \
        == "larkspur_training"
