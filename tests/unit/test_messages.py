"""What our SMS say and how many segments they take; what volunteers' replies mean, as they really type them."""

from datetime import UTC, date, datetime, timezone

import pytest

from services.notify.messages import (TEMPLATES, Reply, Segments, answer_for, asks_to_talk, offer_text, parse_reply,
                                      render, segments, wellbeing_score, window_text)
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


@pytest.mark.parametrize("language, examples", [
    ("en", {"MY": "MY", "HOURS": "HOURS", "AWAY 24-28 dec": "AWAY", "CONCERN 4821 she fell": "CONCERN"}),
    ("fr", {"MES TACHES": "MY", "HEURES": "HOURS", "ABSENT du 24 au 28 déc": "AWAY",
            "INQUIET 4821 elle est tombée": "CONCERN"}),
])
def test_help_names_every_command_a_volunteer_can_text_and_each_one_it_names_is_understood(language, examples):
    """HELP on its own lists what a volunteer can ask about themselves too; the words it teaches are the ones read."""
    answer = answer_for(Reply("HELP"), language)
    for example, keyword in examples.items():
        assert example.split()[0] in answer
        assert parse_reply(example, date(2026, 12, 1)).keyword == keyword, example
    talk = "TALK" if language == "en" else "PARLER"
    assert talk in answer and asks_to_talk(talk)


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
                  keyword="OUI", first="4821", problem="?", help="", area="K2P", tasks="", last="28 déc",
                  dates="24-28", hours="3", year=2026, done=2, rhythm="weekly", since="7 déc", visits="3",
                  emergency="999", community="Ottawa West", link="https://cc.example.org/join/ottawa-west",
                  topic="Bereavement support", where="Blackpool Library")
    for name in TEMPLATES[language]:
        assert "{" not in render(name, language, **values)


@pytest.mark.parametrize("body", ["JOIN", "join", "Join!", "volunteer", "I want to volunteer", "Bénévole",
                                  "rejoindre"])
def test_someone_asking_to_volunteer_is_read_as_join(body):
    assert parse_reply(body).keyword == "JOIN"


@pytest.mark.parametrize("body", ["join 4821", "YES join", "can I join the group on Tuesday"])
def test_join_is_the_whole_message_only(body):
    assert parse_reply(body).keyword != "JOIN"


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_acknowledgement_and_the_join_link_fit_one_segment_each(language):
    link = "https://cc.example.org/join/fylde-coast"
    assert segments(render("applied", language, community="Fylde Coast")).count == 1
    assert segments(render("join", language, community="Fylde Coast", link=link)).count == 1


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



# --- a volunteer asking about themselves: MY, AWAY <dates>, HOURS -------------------------------------------------

TODAY = date(2026, 12, 7)  # a Monday


@pytest.mark.parametrize("body, keyword", [
    ("MY", "MY"), ("my", "MY"), ("My tasks", "MY"), ("my tasks?", "MY"), ("TASKS?", "MY"), ("tasks", "MY"),
    ("Task", "MY"), ("mes tâches", "MY"), ("Mes taches", "MY"), ("mes missions", "MY"),
    ("hours", "HOURS"), ("HOURS?", "HOURS"), ("my hours", "HOURS"), ("heures", "HOURS"), ("Mes heures", "HOURS"),
    ("how many hours", "HOURS"), ("How many hours have I done?", "HOURS"), ("combien d'heures ?", "HOURS"),
    # words that appear in other replies are not questions about themselves
    ("yes, my pleasure 4821", "YES"), ("can't, my car broke down", "NO"), ("done 4821 2 hours", "DONE"),
])
def test_a_volunteer_asking_for_their_tasks_or_hours_is_read_as_people_type_it(body, keyword):
    reply = parse_reply(body, TODAY)
    assert (reply.keyword, reply.problem) == (keyword, None)


@pytest.mark.parametrize("body, first, last", [
    ("away 24-28 dec", "2026-12-24", "2026-12-28"),
    ("AWAY 24-28 Dec", "2026-12-24", "2026-12-28"),
    ("Away 24/12 to 28/12", "2026-12-24", "2026-12-28"),
    ("away 24/12 - 28/12", "2026-12-24", "2026-12-28"),
    ("away until 3 jan", "2026-12-07", "2027-01-03"),
    ("away till 3rd January", "2026-12-07", "2027-01-03"),
    ("absent du 24 au 28 déc", "2026-12-24", "2026-12-28"),
    ("absente du 24 au 28 décembre", "2026-12-24", "2026-12-28"),
    ("absent jusqu'au 3 janvier", "2026-12-07", "2027-01-03"),
    ("away 28 Dec - 3 Jan", "2026-12-28", "2027-01-03"),
    ("away 24th to 28th December", "2026-12-24", "2026-12-28"),
    ("away from the 24th to the 28th of december", "2026-12-24", "2026-12-28"),
    ("away Dec 24-28", "2026-12-24", "2026-12-28"),
    ("away 24 dec", "2026-12-24", "2026-12-24"),
    ("away 1-9 dec", "2026-12-01", "2026-12-09"),  # time away already begun
    ("away 1-5 dec", "2027-12-01", "2027-12-05"),  # over this year: next year's
    ("away 2 feb to 9 feb", "2027-02-02", "2027-02-09"),  # a day already past this year is next year's
    ("away 24/12/2026 - 28/12/2026", "2026-12-24", "2026-12-28"),
    ("away 2026-12-24 to 2026-12-28", "2026-12-24", "2026-12-28"),
    ("holiday 24.12-28.12", "2026-12-24", "2026-12-28"),
])
def test_away_reads_the_days_as_people_write_them(body, first, last):
    reply = parse_reply(body, TODAY)
    assert (reply.keyword, reply.problem) == ("AWAY", None)
    assert (reply.away_from, reply.away_until) == (date.fromisoformat(first), date.fromisoformat(last))


@pytest.mark.parametrize("body, problem", [
    ("away", "(no dates)"),
    ("away next week", "next week"),
    ("away 24-28", "24-28"),  # no month
    ("away 31/02", "31/02"),  # no such day
    ("away 28 dec to 24 dec 2026", "28 dec to 24 dec 2026"),  # ends before it starts
    ("away 1 jan 2029", "1 jan 2029"),  # more than a year ahead
    ("away 1-5 dec 2026", "1-5 dec 2026"),  # over
    ("away 24 25 26 dec", "24 25 26 dec"),
])
def test_away_with_dates_it_cannot_read_says_which_text_it_could_not_read(body, problem):
    reply = parse_reply(body, TODAY)
    assert (reply.keyword, reply.problem, reply.away_from) == ("AWAY", problem, None)


def test_the_answers_to_a_volunteer_asking_about_themselves_fit_and_are_in_their_language():
    from services.notify.domain import answered_body
    from shared.contracts.matching import ReplyAnswered, TaskLine

    def answered(**fields):
        return ReplyAnswered(phone="+447911123456", message_sid="SM1", community="fylde-coast", **fields)

    tasks = [TaskLine(code="4821", support_type="shopping", area="FY1",
                      window_start=datetime(2026, 12, 9, 14, tzinfo=UTC),
                      window_end=datetime(2026, 12, 9, 16, tzinfo=UTC)),
             TaskLine(code="5532", support_type="meals", area="", window_days=["mon", "thu"], window_part="morning")]
    assert answered_body(answered(answer="tasks", tasks=tasks), None, "en") == (
        "Your tasks: 4821 Shopping near FY1, Wed 09 Dec 14:00-16:00; 5532 Meals, Mon or Thu morning. "
        "Reply CANCEL <code> if you can't go.")
    assert answered_body(answered(answer="tasks", tasks=tasks), None, "fr").startswith(
        "Vos missions: 4821 Courses près de FY1, mer 09 déc 14:00-16:00; 5532 Repas, lun ou jeu matin.")
    assert answered_body(answered(answer="tasks"), None, "en").startswith("You have no tasks coming up.")
    away = answered(answer="away", away_from=date(2026, 12, 24), away_until=date(2026, 12, 28))
    assert answered_body(away, None, "en").startswith("Thank you: no offers from Thu 24 Dec to Mon 28 Dec.")
    assert answered_body(away, None, "fr").startswith("Merci: aucune offre du jeu 24 déc au lun 28 déc.")
    unclear = answered_body(answered(answer="away_unclear"), None, "en", "next week")
    assert unclear == 'Sorry, we could not read the dates "next week". Send e.g. AWAY 24-28 Dec or AWAY until 3 Jan'
    hours = answered(answer="hours", year=2026, year_hours=12.5, year_tasks=4)
    assert answered_body(hours, None, "en") == "You have given 12.5 hours in 2026 (4 tasks). Thank you!"
    assert answered_body(hours, None, "fr") == "Vous avez donné 12,5 heures en 2026 (4 missions). Merci!"
    one = answered(answer="hours", year=2026, year_hours=2.0, year_tasks=1)
    assert answered_body(one, None, "en") == "You have given 2 hours in 2026 (1 task). Thank you!"
    for text in (answered_body(away, None, "fr"), unclear, answered_body(hours, None, "fr")):
        assert segments(text).count == 1, text


# A volunteer's concern, as a worried volunteer types it: (what they typed, the code, the words kept).
CONCERNS = [
    ("CONCERN 4821 she seemed confused", "4821", "she seemed confused"),
    ("concern 4821: she seemed confused", "4821", "she seemed confused"),
    ("Concern #4821 - not eating", "4821", "not eating"),
    ("CONCERN she seemed confused", None, "she seemed confused"),
    ("concern: Mrs B had a fall", None, "Mrs B had a fall"),
    ("Concern - Mrs B had a fall", None, "Mrs B had a fall"),
    ("Safeguarding concern 4821 bruises on her arm", "4821", "bruises on her arm"),
    ("worried about Mrs B, she seemed confused", None, "worried about Mrs B, she seemed confused"),
    ("Worried about 4821, she seemed confused", "4821", "Worried about 4821, she seemed confused"),
    ("Worried 4821: she was upset", "4821", "she was upset"),
    ("I'm worried about Mrs B", None, "I'm worried about Mrs B"),
    ("I’m really worried about her", None, "I’m really worried about her"),  # a phone's curly apostrophe
    ("Im a bit worried about Jo, he was very low", None, "Im a bit worried about Jo, he was very low"),
    ("I am concerned about Mr T", None, "I am concerned about Mr T"),
    ("I'm concerned re task 4821, door left open", "4821", "I'm concerned re task 4821, door left open"),
    ("Hi, I'm very worried about Ann", None, "Hi, I'm very worried about Ann"),
    ("I have a concern about Pat", None, "I have a concern about Pat"),
    ("Concerned about 4821 she was upset", "4821", "Concerned about 4821 she was upset"),
    ("4821 concern she fell", "4821", "4821 concern she fell"),
    ("inquiet pour M. Roy", None, "inquiet pour M. Roy"),
    ("Inquiète pour Mme Roy, elle ne mange plus", None, "Inquiète pour Mme Roy, elle ne mange plus"),
    ("inquiète 4821 elle ne mange plus", "4821", "elle ne mange plus"),
    ("Je suis inquiète pour la mission 4821", "4821", "Je suis inquiète pour la mission 4821"),
    ("Je m'inquiète pour elle", None, "Je m'inquiète pour elle"),
    ("Je m’inquiète pour elle", None, "Je m’inquiète pour elle"),
    ("J'ai une inquiétude pour M. Roy", None, "J'ai une inquiétude pour M. Roy"),
    ("préoccupé: il ne mange plus", None, "préoccupé: il ne mange plus"),
    ("Préoccupée au sujet de la mission 4821: chute", "4821", "Préoccupée au sujet de la mission 4821: chute"),
    ("Je suis très préoccupé pour M. Roy", None, "Je suis très préoccupé pour M. Roy"),
]


@pytest.mark.parametrize("body, code, text", CONCERNS)
def test_a_concern_is_read_however_a_worried_volunteer_puts_it(body, code, text):
    assert parse_reply(body) == Reply("CONCERN", code, text=text)


@pytest.mark.parametrize("body, keyword", [
    ("No worries 4821", "NO"),  # only a message that opens with a worry is a concern
    ("Sorry I'm worried I can't make it 4821", "NO"),
    ("yes 4821, she sounded worried", "YES"),
    ("Done 4821 2h, not worried", "DONE"),
])
def test_a_worry_word_later_in_a_reply_does_not_make_it_a_concern(body, keyword):
    assert parse_reply(body).keyword == keyword


@pytest.mark.parametrize("body", ["CONCERN", "concern 4821", "Concern:"])
def test_a_concern_without_words_asks_for_them(body):
    reply = parse_reply(body)
    assert reply.keyword == "CONCERN" and reply.text is None
    assert answer_for(reply).startswith("Sorry, we did not understand your concern: please say what worries you")


# --- a wellbeing check-in's answer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body, score", [
    ("4", 4), ("5!", 5), (" 3 ", 3), ("4/5", 4), ("4 / 5", 4), ("4 out of 5", 4), ("2 of 5", 2), ("3 sur 5", 3),
    ("five", 5), ("Five!", 5), ("cinq", 5), ("Quatre", 4), ("un", 1), ("four thanks", 4), ("4 thanks", 4),
    ("4 thanks, loving it", 4), ("2 - finding it hard", 2), ("5 stars", 5), ("quatre sur cinq", 4),
    ("one", 1), ("4.", 4),
    # not scores: a code, a number out of range, two numbers, words that merely start with a number word
    ("4821", None), ("6", None), ("0", None), ("3 or 4", None), ("12", None), ("one more thing", None),
    ("un peu difficile", None), ("YES 4821", None), ("DONE 4821 2", None), ("TALK", None), ("", None),
    ("fine", None), ("4,5", None),
])
def test_a_check_in_score_is_read_as_volunteers_type_it(body, score):
    assert wellbeing_score(body) == score


@pytest.mark.parametrize("body", ["4", "five", "4/5", "4 thanks"])
def test_a_score_alone_is_no_keyword_so_outside_a_check_in_it_is_not_misread(body):
    reply = parse_reply(body, date(2026, 12, 7))
    assert reply.keyword is None and reply.code is None  # notify reads it as a score only after asking


@pytest.mark.parametrize("body, keyword, code", [("YES 4821", "YES", "4821"), ("NO 4821", "NO", "4821"),
                                                 ("4821 yes", "YES", "4821")])
def test_answers_with_a_code_keep_their_meaning_beside_the_score_reading(body, keyword, code):
    assert (parse_reply(body).keyword, parse_reply(body).code, wellbeing_score(body)) == (keyword, code, None)


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_check_in_and_its_answers_fit_one_segment_and_say_how_to_answer(language):
    asked = render("wellbeing", language)
    assert "1" in asked and "5" in asked and ("TALK" in asked or "PARLER" in asked)
    for name in ("wellbeing", "wellbeing_thanks", "wellbeing_low"):
        assert segments(render(name, language)).count == 1, name
