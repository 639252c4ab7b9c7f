"""A volunteer's own view by SMS (issue 16): MY lists their upcoming tasks, AWAY <dates> records time away that
matching then honours, HOURS their hours this year, in their language. Intake, matching and notify with their
databases on both backends, the bus played through their real handlers (`system`, from test_withdrawals), texting
through notify's signed webhook and sending through a recording gateway."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from services.notify.messages import parse_away, window_text
from shared.communities import get as community
from shared.contracts import load_event
from tests.integration.test_matching import register
from tests.integration.test_withdrawals import SHOPPING, TOMORROW, system  # noqa: F401 (the fixture)

ZONE = community("fylde-coast").zone


def at(day: date, hour: int = 14) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def when(start: datetime) -> dict:
    return {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()}


def shown(start: datetime, language: str = "en") -> str:
    """A window as the volunteer's texts show it."""
    return window_text(start.astimezone(ZONE), (start + timedelta(hours=2)).astimezone(ZONE), language=language)


def shown_day(day: date) -> str:
    """A day as a French text shows it."""
    return f"{['lun', 'mar', 'mer', 'jeu', 'ven', 'sam', 'dim'][day.weekday()]} {day.day} déc"


def take(s, phone: str, start: datetime, yes: str = "YES") -> tuple[str, str]:
    """A request at `start` offered to `phone`, who accepts it: (request id, code)."""
    request_id = s.request(when=when(start))
    s.carry()
    s.send()
    s.carry()
    code = s.offers(request_id)[phone].code
    s.text(phone, f"{yes} {code}")
    s.carry()
    assert s.offers(request_id)[phone].status == "accepted"
    return request_id, code


def ask(s, phone: str, body: str) -> str:
    """Text us, and return the answer the phone then gets."""
    before = len(s.gateway.to(phone))
    s.text(phone, body)
    s.carry()
    s.send()
    answers = s.gateway.to(phone)[before:]
    assert len(answers) == 1, answers
    return answers[0]


def test_a_volunteer_asks_for_their_tasks_records_time_away_and_asks_their_hours_by_sms(system):  # noqa: F811
    s = system(batch=1)
    ann = s.volunteer("Ann", "07911 123471")["phone"]
    first_start, second_start = TOMORROW, TOMORROW + timedelta(days=2)
    first, first_code = take(s, ann, first_start)
    _, second_code = take(s, ann, second_start)
    s.send()

    tasks = ask(s, ann, "my tasks")
    assert tasks == (f"Your tasks: {first_code} Shopping near FY1, {shown(first_start)}; "
                     f"{second_code} Shopping near FY1, {shown(second_start)}. Reply CANCEL <code> if you can't go.")
    assert "Pat" not in tasks and "Promenade" not in tasks
    assert ask(s, ann, "TASKS?") == tasks

    # a redelivered sms.received, and a redelivered answer, text nothing more
    asked = [row for row in s.outbox("notify") if row.event_type == "sms.received"][-1]
    s.dispatch["matching"](load_event(asked.body))
    answered = [row for row in s.outbox("matching") if row.event_type == "reply.answered"][-1]
    s.dispatch["notify"](load_event(answered.body))
    s.carry()
    assert s.send() == 0 and len(s.events("matching", "reply.answered")) == 2

    assert ask(s, ann, "away next week") == (
        'Sorry, we could not read the dates "next week". Send e.g. AWAY 24-28 Dec or AWAY until 3 Jan')
    away_from, away_until = parse_away("24-28 Dec", datetime.now(ZONE).date())
    answer = ask(s, ann, "AWAY 24-28 Dec")
    assert answer.startswith(f"Thank you: no offers from {away_from:%a} {away_from.day} Dec to "
                             f"{away_until:%a} {away_until.day} Dec.")
    volunteer = s.client("matching").get(f"/volunteers/{s.offers(first)[ann].volunteer_id}", headers=s.headers).json
    assert [(t["starts_on"], t["ends_on"]) for t in volunteer["time_away"]] == [
        (away_from.isoformat(), away_until.isoformat())]

    while_away = s.request(when=when(at(away_until)))
    after = s.request(when=when(at(away_until + timedelta(days=2))))
    s.carry()
    assert ann not in s.offers(while_away)
    assert ann in s.offers(after)
    s.send()

    assert ask(s, ann, "hours") == f"You have given 0 hours in {datetime.now(ZONE).year} (0 tasks). Thank you!"
    s.text(ann, f"DONE {first_code} 2.5h")
    s.carry()
    assert ask(s, ann, "How many hours?") == (
        f"You have given 2.5 hours in {datetime.now(ZONE).year} (1 task). Thank you!")
    assert ask(s, ann, "MY") == (f"Your tasks: {second_code} Shopping near FY1, {shown(second_start)}. "
                                 "Reply CANCEL <code> if you can't go.")


def test_a_french_volunteer_gets_french_answers(system):  # noqa: F811
    s = system(batch=1)
    bea = register(s.client("matching"), s.headers, "Béa", "07911 123472", languages=["fr", "en"])["phone"]
    _, code = take(s, bea, TOMORROW, yes="oui")
    s.send()

    assert ask(s, bea, "mes tâches") == (f"Vos missions: {code} Courses près de FY1, {shown(TOMORROW, 'fr')}. "
                                         "Répondez ANNULER <code> au besoin.")
    away_from, away_until = parse_away("24-28 Dec", datetime.now(ZONE).date())
    assert ask(s, bea, "absent du 24 au 28 déc").startswith(
        f"Merci: aucune offre du {shown_day(away_from)} au {shown_day(away_until)}.")
    assert ask(s, bea, "absent la semaine prochaine").startswith(
        'Désolé, nous n\'avons pas compris les dates "la semaine prochaine". Envoyez par ex. ABSENT du 24 au 28 déc')
    s.text(bea, f"fini {code} 2")
    s.carry()
    assert ask(s, bea, "heures") == f"Vous avez donné 2 heures en {datetime.now(ZONE).year} (1 mission). Merci!"
    assert ask(s, bea, "mes tâches").startswith("Vous n'avez aucune mission à venir.")
