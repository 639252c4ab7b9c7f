"""What our SMS say and how many segments they take; what volunteers' replies mean, as they really type them."""

from datetime import datetime, timezone

import pytest

from services.notify.messages import (TEMPLATES, Reply, Segments, answer_for, offer_text, parse_reply, render,
                                      segments, window_text)
from shared.taxonomy import KINDS

# (what a volunteer typed, keyword, code, hours, understood all of it?)
REPLIES = [
    ("YES 4821", "YES", "4821", None, True),
    ("yes 4821", "YES", "4821", None, True),
    ("Yes", "YES", None, None, True),
    ("yes", "YES", None, None, True),
    ("Yes!", "YES", None, None, True),
    ("Y 4821", "YES", "4821", None, True),
    ("y", "YES", None, None, True),
    ("4821 yes", "YES", "4821", None, True),
    ("4821 Y", "YES", "4821", None, True),
    ("YES4821", "YES", "4821", None, True),
    ("  yes   4821  ", "YES", "4821", None, True),
    ("Yes please 4821", "YES", "4821", None, True),
    ("Yes, happy to help! 4821", "YES", "4821", None, True),
    ("yep 4821", "YES", "4821", None, True),
    ("OK 4821", "YES", "4821", None, True),
    ("Yes I can do it at 2pm 4821", "YES", "4821", None, True),
    ("oui 4821", "YES", "4821", None, True),
    ("Oui!", "YES", None, None, True),
    ("NO 4821", "NO", "4821", None, True),
    ("no, sorry 4821", "NO", "4821", None, True),
    ("No thanks", "NO", None, None, True),
    ("N 4821", "NO", "4821", None, True),
    ("Sorry I can't 4821", "NO", "4821", None, True),
    ("non merci 4821", "NO", "4821", None, True),
    ("DONE 4821", "DONE", "4821", None, True),
    ("DONE 4821 2", "DONE", "4821", 2.0, True),
    ("done 4821 1.5h", "DONE", "4821", 1.5, True),
    ("Done 4821 1.5 hours", "DONE", "4821", 1.5, True),
    ("done 4821 2hrs", "DONE", "4821", 2.0, True),
    ("done 4821 90 mins", "DONE", "4821", 1.5, True),
    ("4821 done 3", "DONE", "4821", 3.0, True),
    ("Done 2", "DONE", None, 2.0, True),
    ("fini 4821 1,5 heures", "DONE", "4821", 1.5, True),
    ("DONE 4821 40", "DONE", "4821", None, False),
    ("CANCEL 4821", "CANCEL", "4821", None, True),
    ("cancel 4821 sorry, unwell", "CANCEL", "4821", None, True),
    ("annuler 4821", "CANCEL", "4821", None, True),
    ("PAUSE", "PAUSE", None, None, True),
    ("pause please", "PAUSE", None, None, True),
    ("RESUME", "RESUME", None, None, True),
    ("Reprendre", "RESUME", None, None, True),
    ("HELP", "HELP", None, None, True),
    ("help?", "HELP", None, None, True),
    ("INFO", "HELP", None, None, True),
    ("aide", "HELP", None, None, True),
    ("STOP", "STOP", None, None, True),
    ("Stop.", "STOP", None, None, True),
    ("stop all", "STOP", None, None, True),
    ("STOPALL", "STOP", None, None, True),
    ("Unsubscribe", "STOP", None, None, True),
    ("CANCEL", "STOP", None, None, True),
    ("end", "STOP", None, None, True),
    ("QUIT", "STOP", None, None, True),
    ("Arrêt", "STOP", None, None, True),
    ("START", "START", None, None, True),
    ("unstop", "START", None, None, True),
    ("what is this", None, None, None, False),
    ("4821", None, "4821", None, False),
    ("YES 48211", "YES", None, None, False),
    ("yes 482", "YES", None, None, False),
    ("yes no 4821", None, "4821", None, False),
    ("YES 4821 5532", "YES", None, None, False),
    ("", None, None, None, False),
    ("👍", None, None, None, False),
]


@pytest.mark.parametrize("body, keyword, code, hours, clear", REPLIES)
def test_replies_read_as_people_type_them(body, keyword, code, hours, clear):
    reply = parse_reply(body)
    assert (reply.keyword, reply.code, reply.hours) == (keyword, code, hours)
    assert (reply.problem is None) == clear


def test_there_are_at_least_forty_real_world_spellings():
    assert len(REPLIES) >= 40


def test_stop_words_opt_out_only_as_the_whole_message():
    assert parse_reply("please stop the music 4821").keyword != "STOP"
    assert parse_reply("CANCEL 4821").keyword == "CANCEL"


@pytest.mark.parametrize("reply, says", [
    (Reply("HELP"), "Reply YES <code> to accept"),
    (parse_reply("what is this"), "Sorry, we did not understand your message."),
    (parse_reply("4821"), "Sorry, we did not understand what to do with 4821."),
    (parse_reply("yes 482"), "did not understand 482: a reference code has 4 digits"),
    (parse_reply("yes no"), "did not understand YES and NO together"),
])
def test_an_unclear_reply_is_told_what_was_not_understood_and_how_to_answer(reply, says):
    answer = answer_for(reply)
    assert says in answer and "YES <code>" in answer


def test_a_clear_reply_gets_no_answer_and_help_is_answered_in_french():
    assert answer_for(parse_reply("YES 4821")) is None
    assert answer_for(Reply("HELP"), "fr").startswith("Répondez OUI <code>")


START = datetime(2026, 11, 25, 14, tzinfo=timezone.utc)


def test_offer_names_only_kind_district_window_and_code():
    text = offer_text("shopping", "FY1", window_text(START, START.replace(hour=16)), "4821")
    assert text == ("Can you help? Shopping near FY1, Wed 25 Nov 14:00-16:00. "
                    "Reply YES 4821 to accept or NO 4821 to decline.")


def test_offer_in_french():
    text = offer_text("shopping", "K2P", window_text(START, START.replace(hour=16), language="fr-CA"), "4821",
                      "fr-CA")
    assert text == ("Pouvez-vous aider? Courses près de K2P, mer 25 nov 14:00-16:00. "
                    "Répondez OUI 4821 pour accepter, NON 4821 pour refuser.")


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_offer_fits_one_gsm7_segment_in_both_languages(kind, language):
    longest = window_text(None, None, ["mon", "tue", "wed"], "afternoon", language)
    text = offer_text(kind, "CW12", longest, "4821", language)
    assert segments(text).encoding == "GSM-7", text
    assert segments(text).count == 1, (len(text), text)


@pytest.mark.parametrize("text, encoding, units, count", [
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # the euro sign takes two septets
    ("€" * 81, "GSM-7", 162, 2),
    ("Répondez à l'offre", "GSM-7", 18, 1),  # é and à are in the GSM-7 alphabet
    ("Vous êtes en pause", "UCS-2", 18, 1),  # ê is not
    ("ê" * 70, "UCS-2", 70, 1),
    ("ê" * 71, "UCS-2", 71, 2),
    ("ê" * 134, "UCS-2", 134, 2),
    ("ê" * 135, "UCS-2", 135, 3),
    ("👍" * 35, "UCS-2", 70, 1),  # outside the BMP: two UTF-16 units each
])
def test_segments_are_counted_as_carriers_count_them(text, encoding, units, count):
    assert segments(text) == Segments(encoding, units, count)


@pytest.mark.parametrize("language", ["en", "fr"])
def test_every_template_fills_in_and_all_languages_have_the_same_ones(language):
    assert TEMPLATES[language].keys() == TEMPLATES["en"].keys()
    values = dict(kind="Courses", place="", when="lun matin", code="4821", details="", first_name="Ann",
                  address="1 Rue", phone="+1", check="formation", date="1 déc", codes="4821, 5532",
                  keyword="OUI", first="4821", problem="?", help="", area="K2P")
    for name in TEMPLATES[language]:
        assert "{" not in render(name, language, **values)


def test_a_community_rewords_a_template_and_unknown_languages_fall_back_to_english():
    overrides = {"en": {"offer": "Fylde Coast CC: {kind}{place}, {when}. YES {code} / NO {code}"}}
    assert offer_text("meals", "FY1", "Mon morning", "4821", "en", overrides) == \
        "Fylde Coast CC: Meals near FY1, Mon morning. YES 4821 / NO 4821"
    assert offer_text("meals", "FY1", "Mon morning", "4821", "cy").startswith("Can you help? Meals")


@pytest.mark.parametrize("days, part, language, text", [
    (["mon", "tue", "wed", "thu", "fri"], "afternoon", "en", "any weekday afternoon"),
    (["mon", "thu"], "morning", "en", "Mon or Thu morning"),
    (["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "evening", "en", "any day evening"),
    (["mon", "thu"], "morning", "fr", "lun ou jeu matin"),
    (["mon", "tue", "wed", "thu", "fri"], "afternoon", "fr", "en semaine après-midi"),
])
def test_flexible_windows_read_as_people_say_them(days, part, language, text):
    assert window_text(None, None, days, part, language) == text

