"""What our SMS say, in each language, and what volunteers' replies mean.

Offers name only the kind of help, the postcode district, the time window and the reference code: never a
name, a diagnosis or an address. Each text is written to fit one SMS segment where it can (`segments` counts
them the way carriers do). A community may reword any template in its entry in communities.json.

Replies are read the way people actually type them ("yes", "Y 4821", "4821 yes", "Yes!", "done 4821 1.5h",
"oui 4821") and the opt-out keywords the way carriers and Twilio treat them: the whole message is the keyword.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from shared.taxonomy import KINDS

# --- what our messages say -------------------------------------------------------------------------------------

LANGUAGES = ("en", "fr")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "offer": "Can you help? {kind}{place}, {when}. Reply YES {code} to accept or NO {code} to decline.",
        "place": " near {area}",
        "accepted": "Thank you! Task {code} is yours: {details}",
        "details": "{first_name}, {address}, tel {phone}. Reply DONE {code} <hours> when done.",
        "no_details": "your coordinator will call you with the details. Reply DONE {code} <hours> when done.",
        "withdrawn_taken": "Thank you: offer {code} is closed, another volunteer has taken it. No need to reply.",
        "withdrawn": "Thank you: offer {code} is closed, it is no longer needed. No need to reply.",
        "expiring": "A reminder: your {check} expires on {date}. Your coordinator can help you renew it.",
        "reminder_day_before": "Reminder: task {code} is tomorrow, {when}. Reply CANCEL {code} if you can't go.",
        "reminder_soon": "Reminder: task {code} starts in 2 hours, {when}. Thank you!",
        "prompt_done": "How did task {code} go? Reply DONE {code} <hours>, e.g. DONE {code} 2",
        "which": "You have more than one offer open ({codes}). Reply {keyword} with the code, e.g. {keyword} {first}",
        "help": "Reply YES <code> to accept an offer, NO <code> to decline, DONE <code> <hours> when done, "
                "PAUSE or RESUME. STOP to stop texts.",
        "unclear": "Sorry, we did not understand {problem}. {help}",
        "unknown_sender": "Sorry, we don't recognise this number. Please contact your coordinator.",
        "not_open": "Offer {code} is no longer open to you: it may have been taken or closed. Thank you all the same.",
        "nothing_open": "You have no offer open just now. {help}",
        "paused": "You are paused: no offers until you reply RESUME.",
        "resumed": "Welcome back: you will get offers again.",
    },
    "fr": {  # accents kept to those GSM-7 carries (é è à ù), so a French offer is still one segment
        "offer": "Pouvez-vous aider? {kind}{place}, {when}. Répondez OUI {code} pour accepter, NON {code} "
                 "pour refuser.",
        "place": " près de {area}",
        "accepted": "Merci! La mission {code} est à vous: {details}",
        "details": "{first_name}, {address}, tél {phone}. Répondez FINI {code} <heures> une fois faite.",
        "no_details": "votre coordinatrice vous appellera. Répondez FINI {code} <heures> une fois faite.",
        "withdrawn_taken": "Merci: l'offre {code} est close, une autre personne l'a prise. Inutile de répondre.",
        "withdrawn": "Merci: l'offre {code} est close, elle n'est plus nécessaire. Inutile de répondre.",
        "expiring": "Rappel: votre {check} expire le {date}. Votre coordinatrice peut vous aider à la renouveler.",
        "reminder_day_before": "Rappel: la mission {code} est demain, {when}. Répondez ANNULER {code} au besoin.",
        "reminder_soon": "Rappel: la mission {code} commence dans 2 heures, {when}. Merci!",
        "prompt_done": "Comment s'est passée la mission {code}? Répondez FINI {code} <heures>, ex. FINI {code} 2",
        "which": "Vous avez plusieurs offres ({codes}). Répondez {keyword} avec le code, ex. {keyword} {first}",
        "help": "Répondez OUI <code> pour accepter, NON <code> pour refuser, FINI <code> <heures> une fois faite, "
                "PAUSE ou REPRENDRE. ARRET pour ne plus recevoir.",
        "unclear": "Désolé, nous n'avons pas compris {problem}. {help}",
        "unknown_sender": "Désolé, nous ne reconnaissons pas ce numéro. Contactez votre coordinatrice.",
        "not_open": "L'offre {code} n'est plus ouverte pour vous: elle a pu être prise ou close. Merci quand même.",
        "nothing_open": "Vous n'avez aucune offre ouverte pour le moment. {help}",
        "paused": "Vous êtes en pause: plus d'offres jusqu'à ce que vous répondiez REPRENDRE.",
        "resumed": "Bon retour: vous recevrez de nouveau des offres.",
    },
}
# French keywords as a French speaker types them in a reply ("which" names the keyword to use).
KEYWORD_IN = {"fr": {"YES": "OUI", "NO": "NON", "DONE": "FINI", "CANCEL": "ANNULER"}}

KIND_LABELS_FR = {
    "shopping": "Courses",
    "prescription_collection": "Ordonnance à récupérer",
    "transport": "Transport à un rendez-vous",
    "meals": "Repas",
    "household_tasks": "Aide ménagère",
    "home_visit": "Visite de compagnie",
    "phone_check_in": "Appel de soutien",
    "carer_respite": "Répit pour un aidant",
    "bereavement_visit": "Visite de soutien au deuil",
    "bereavement_group": "Accompagnement à un groupe de deuil",
    "planning_conversation": "Discussion de planification des soins",
    "planning_session": "Séance de planification des soins",
}
DAY_NAMES = {"en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
             "fr": ["lun", "mar", "mer", "jeu", "ven", "sam", "dim"]}
MONTHS = {"en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
          "fr": ["jan", "fév", "mars", "avr", "mai", "juin", "juil", "aout", "sept", "oct", "nov", "déc"]}
PARTS = {"fr": {"morning": "matin", "afternoon": "après-midi", "evening": "soir"}}
ANY = {"en": ("any weekday", "any day", " or "), "fr": ("en semaine", "tous les jours", " ou ")}


def language_of(language: str | None) -> str:
    """The language we write in: the person's own if we have templates for it, else English."""
    base = (language or "en").split("-")[0].lower()
    return base if base in LANGUAGES else "en"


def render(name: str, language: str | None = "en", overrides: dict | None = None, **values) -> str:
    """A template filled in; `overrides` is a community's own wording, by language then template name."""
    language = language_of(language)
    template = ((overrides or {}).get(language) or {}).get(name) or TEMPLATES[language][name]
    return template.format(**values)


def kind_label(support_type: str, language: str | None = "en") -> str:
    """What a kind of help is called in a language."""
    if language_of(language) == "fr":
        return KIND_LABELS_FR.get(support_type, KINDS[support_type].label)
    return KINDS[support_type].label


def window_text(start: datetime | None, end: datetime | None, days: list[str] | None = None,
                part: str | None = None, language: str | None = "en") -> str:
    """A short time window: 'Wed 25 Nov 14:00-16:00', or 'any weekday afternoon', 'Mon or Thu morning'.

    `start` and `end` are shown as given: pass them in the community's time zone."""
    language = language_of(language)
    if start and end:
        day, month = DAY_NAMES[language][start.weekday()], MONTHS[language][start.month - 1]
        return f"{day} {start.day:02d} {month} {start:%H:%M}-{end:%H:%M}"
    weekdays, every_day, joiner = ANY[language]
    if days == WEEKDAYS:
        named = weekdays
    elif days and len(days) == 7:
        named = every_day
    else:
        short = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        named = joiner.join(DAY_NAMES[language][short.index(day)] for day in days or [] if day in short)
    part = PARTS.get(language, {}).get(part or "", part or "")
    return f"{named} {part}".strip()


def offer_text(support_type: str, area: str, when: str, code: str, language: str | None = "en",
               overrides: dict | None = None) -> str:
    """An offer: the kind of help, the district, the window and the code; never a name or address."""
    place = render("place", language, overrides, area=area) if area else ""
    return render("offer", language, overrides, kind=kind_label(support_type, language), place=place, when=when,
                  code=code)


# --- how many SMS segments a text takes ------------------------------------------------------------------------

GSM7_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Segments:
    """How a text travels: its encoding, and how many SMS segments it is billed and sent as."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    count: int


def segments(text: str) -> Segments:
    """Count segments as carriers do: GSM-7 160 per message or 153 per part; else UCS-2, 70 or 67."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, part, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = 70, 67, "UCS-2"
    count = 1 if units <= single else -(-units // part)
    return Segments(encoding, units, count)


# --- what volunteers' replies mean -----------------------------------------------------------------------------

# Words that answer an offer or a task, in English and French, as people type them.
ANSWERS = {
    "YES": {"YES", "Y", "YEP", "YEAH", "YUP", "YA", "OK", "OKAY", "SURE", "ACCEPT", "OUI"},
    "NO": {"NO", "N", "NOPE", "DECLINE", "CANT", "CANNOT", "NON"},
    "DONE": {"DONE", "COMPLETE", "COMPLETED", "FINISHED", "FINI", "FAIT", "TERMINE"},
    "CANCEL": {"CANCEL", "ANNULER", "ANNULE"},
    "PAUSE": {"PAUSE"},
    "RESUME": {"RESUME", "REPRENDRE", "UNPAUSE"},
    "HELP": {"HELP", "INFO", "AIDE"},
}
WORD_TO_ANSWER = {word: keyword for keyword, words in ANSWERS.items() for word in words}
# Opt-out and opt-in keywords as carriers and Twilio treat them: only when they are the whole message.
# ARRET is the French opt-out Canadian carriers honour.
OPT_OUT = {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET", "REVOKE", "OPTOUT"}
OPT_IN = {"START", "UNSTOP"}
# Words that say a number is hours or minutes: "1.5h", "2 hrs", "90 mins", "2 heures".
HOURS_UNITS = {"H", "HR", "HRS", "HOUR", "HOURS", "HEURE", "HEURES"}
MINUTE_UNITS = {"M", "MIN", "MINS", "MINUTE", "MINUTES"}
_TOKEN = re.compile(r"\d+(?:[.,]\d+)?|[A-Z]+")


@dataclass(frozen=True)
class Reply:
    """What a volunteer's SMS says.

    keyword: YES, NO, DONE, CANCEL, PAUSE, RESUME, HELP, STOP or START; None when we could not tell.
    code: the four-digit offer reference, if given. hours: for DONE, if given.
    problem: what we did not understand, in a few words for the answer we send back; None if all was clear.
    """

    keyword: str | None
    code: str | None = None
    hours: float | None = None
    problem: str | None = None


def _plain(body: str) -> str:
    """Upper case, accents and punctuation gone: 'Oui!' -> 'OUI', 'arrêt' -> 'ARRET'."""
    text = unicodedata.normalize("NFKD", body).encode("ascii", "ignore").decode().upper().replace("'", "")
    return re.sub(r"[^A-Z0-9.,]+", " ", text).strip(" .,")


def parse_reply(body: str) -> Reply:
    """Read a volunteer's reply: 'YES 4821', 'yes', 'Y 4821', '4821 yes', 'DONE 4821 1.5h', 'STOP'."""
    plain = _plain(body)
    whole = plain.replace(".", " ").replace(",", " ").split()
    if " ".join(whole) in OPT_OUT or plain.replace(" ", "") in OPT_OUT:
        return Reply("STOP")
    if " ".join(whole) in OPT_IN:
        return Reply("START")
    tokens = _TOKEN.findall(plain)
    keywords = []
    for token in tokens:
        if token in WORD_TO_ANSWER and WORD_TO_ANSWER[token] not in keywords:
            keywords.append(WORD_TO_ANSWER[token])
    if len(keywords) > 1 and "HELP" in keywords:  # "yes, happy to help 4821"
        keywords.remove("HELP")
    numbers = [(i, t) for i, t in enumerate(tokens) if t[0].isdigit()]
    codes = [t for _, t in numbers if len(t) == 4 and t.isdigit()]
    code = codes[0] if len(codes) == 1 else None
    if not keywords:
        if code:
            return Reply(None, code, problem=f"what to do with {code}")
        return Reply(None, problem="your message")
    if len(keywords) > 1:
        return Reply(None, code, problem=" and ".join(keywords) + " together")
    keyword = keywords[0]
    if len(codes) > 1:
        return Reply(keyword, None, problem="which code you meant (" + ", ".join(codes) + ")")
    if keyword in ("PAUSE", "RESUME", "HELP"):
        return Reply(keyword)
    others = [(i, t) for i, t in numbers if t != code]
    if keyword != "DONE":  # other numbers beside a code ("yes, at 2pm 4821") do not matter
        if others and not code:
            return Reply(keyword, None, problem=f"{others[0][1]}: a reference code has 4 digits")
        return Reply(keyword, code)
    hours = None
    if others:
        i, number = others[0]
        value = float(number.replace(",", "."))
        unit = tokens[i + 1] if i + 1 < len(tokens) else ""
        hours = round(value / 60, 2) if unit in MINUTE_UNITS else value
        if len(others) > 1 or not 0 < hours <= 24:
            return Reply(keyword, code, problem=f"the hours ({number})")
    return Reply(keyword, code, hours)


def answer_for(reply: Reply, language: str | None = "en", overrides: dict | None = None) -> str | None:
    """The short answer a reply gets by return SMS: help, or what we did not understand; None if all was clear."""
    help_text = render("help", language, overrides)
    if reply.keyword == "HELP":
        return help_text
    if reply.problem:
        return render("unclear", language, overrides, problem=reply.problem, help=help_text)
    return None

