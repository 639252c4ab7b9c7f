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
from datetime import date, datetime, timedelta

from shared.taxonomy import KINDS

# --- what our messages say -------------------------------------------------------------------------------------

LANGUAGES = ("en", "fr")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "offer": "Can you help? {kind}{place}, {when}. Reply YES {code} to accept or NO {code} to decline.",
        "place": " near {area}",
        "offer_befriending": "Befriending: an ongoing match, visits {rhythm}. {kind}{place}, {when}. "
                             "Reply YES {code} to accept or NO {code} to decline.",
        "visit_overdue": "Hello, just a gentle reminder: we have no visit logged for {code} since {since}. When you "
                         "next visit, reply DONE {code} <hours>. Thank you!",
        "befriending_thanks": "Thank you for befriending ({code}): the match has now ended. We are so grateful for "
                              "your {visits}. No need to reply.",
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
        # HELP on its own gets the whole list (the short one above is what an unclear reply is reminded of)
        "help_all": "{help} Also: MY for your tasks, HOURS for your hours this year, AWAY <dates> for time away, "
                    "CONCERN <code> <words> if you are worried about someone, TALK to speak to a coordinator.",
        "unclear": "Sorry, we did not understand {problem}. {help}",
        "unknown_sender": "Sorry, we don't recognise this number. Please contact your coordinator.",
        "not_open": "Offer {code} is no longer open to you: it may have been taken or closed. Thank you all the same.",
        "nothing_open": "You have no offer open just now. {help}",
        "paused": "You are paused: no offers until you reply RESUME.",
        "resumed": "Welcome back: you will get offers again.",
        "my_tasks": "Your tasks: {tasks}. Reply CANCEL <code> if you can't go.",
        "my_task": "{code} {kind}{place}, {when}",
        "no_tasks": "You have no tasks coming up. We will text you when someone needs help.",
        "away": "Thank you: no offers from {first} to {last}. Reply PAUSE to stop all offers for now.",
        "away_unclear": "Sorry, we could not read the dates \"{dates}\". Send e.g. AWAY 24-28 Dec or AWAY until 3 Jan",
        "hours": "You have given {hours} hours in {year} ({done}). Thank you!",
        "talk": "Thank you. A coordinator will call you soon.",
        "died": "We're sorry to tell you that {first_name} has died. Thank you for the help and kindness you gave. "
                "Reply TALK if you would like someone to call you.",
        "concern_received": "Thank you: your concern about task {code} has reached the coordinator. A coordinator "
                            "will look at this today. If someone is in danger now, call {emergency}.",
        "concern_which": "Thank you for telling us. Which task is it about ({codes})? Please send CONCERN with the "
                         "code and your words again, e.g. CONCERN {first} ... If someone is in danger now, call "
                         "{emergency}.",
        "concern_no_task": "Thank you for telling us: it has gone to the coordinators, who will look at it today. "
                           "If someone is in danger now, call {emergency}.",
        "applied": "Thank you for applying to volunteer with {community}. A coordinator will be in touch soon.",
        "join": "Thank you for wanting to volunteer with {community}! Apply here: {link}",
        # training sessions: the topic, day and place only
        "training_invited": "You're invited: {topic}, {when}, {where}. Reply YES {code} to book a place or NO {code} "
                            "if you can't come.",
        "training_accepted": "Thank you, you're booked: {topic}, {when}, {where}. Reply NO {code} if you can't come.",
        "training_full": "Sorry, {topic} on {when} is full: you're on the waiting list, and we'll be in touch if a "
                         "place comes free.",
        "training_declined": "Thank you: we've noted you can't come to {topic} on {when}. No need to reply.",
        "wellbeing": "How are you finding volunteering? Reply 1-5 (1 hard, 5 going well), or TALK to speak to "
                     "someone.",
        "wellbeing_thanks": "Thank you for letting us know. Reply TALK any time if you would like someone to call "
                            "you.",
        "wellbeing_low": "Thank you for telling us. A coordinator will call you soon.",
    },
    "fr": {  # accents kept to those GSM-7 carries (é è à ù), so a French offer is still one segment
        "offer": "Pouvez-vous aider? {kind}{place}, {when}. Répondez OUI {code} pour accepter, NON {code} "
                 "pour refuser.",
        "place": " près de {area}",
        "offer_befriending": "Accompagnement durable, visites {rhythm}. {kind}{place}, {when}. "
                             "Répondez OUI {code} pour accepter, NON {code} pour refuser.",
        "visit_overdue": "Bonjour, un petit rappel: aucune visite notée pour {code} depuis le {since}. Après votre "
                         "prochaine visite, répondez FINI {code} <heures>. Merci!",
        "befriending_thanks": "Merci pour votre accompagnement ({code}): le jumelage est terminé. Merci pour vos "
                              "{visits}. Inutile de répondre.",
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
        "help_all": "{help} Aussi: MES TACHES pour vos missions, HEURES pour vos heures cette année, ABSENT <dates> "
                    "pour une absence, INQUIET <code> <mots> si vous êtes inquiet pour quelqu'un, PARLER pour parler "
                    "à une coordinatrice.",
        "unclear": "Désolé, nous n'avons pas compris {problem}. {help}",
        "unknown_sender": "Désolé, nous ne reconnaissons pas ce numéro. Contactez votre coordinatrice.",
        "not_open": "L'offre {code} n'est plus ouverte pour vous: elle a pu être prise ou close. Merci quand même.",
        "nothing_open": "Vous n'avez aucune offre ouverte pour le moment. {help}",
        "paused": "Vous êtes en pause: plus d'offres jusqu'à ce que vous répondiez REPRENDRE.",
        "resumed": "Bon retour: vous recevrez de nouveau des offres.",
        "my_tasks": "Vos missions: {tasks}. Répondez ANNULER <code> au besoin.",
        "my_task": "{code} {kind}{place}, {when}",
        "no_tasks": "Vous n'avez aucune mission à venir. Nous vous écrirons quand quelqu'un aura besoin d'aide.",
        "away": "Merci: aucune offre du {first} au {last}. Répondez PAUSE pour suspendre toutes les offres.",
        "away_unclear": "Désolé, nous n'avons pas compris les dates \"{dates}\". Envoyez par ex. ABSENT du 24 au "
                        "28 déc ou ABSENT jusqu'au 3 jan",
        "hours": "Vous avez donné {hours} heures en {year} ({done}). Merci!",
        "talk": "Merci. Une coordinatrice vous appellera bientôt.",
        "died": "Nous avons le regret de vous dire que {first_name} est décédé(e). Merci pour votre aide et votre "
                "gentillesse. Répondez TALK si vous souhaitez qu'on vous appelle.",
        "concern_received": "Merci: votre inquiétude au sujet de la mission {code} est parvenue à la coordination. "
                            "Une coordinatrice s'en occupera aujourd'hui. En cas de danger immédiat, appelez "
                            "le {emergency}.",
        "concern_which": "Merci de nous le dire. De quelle mission s'agit-il ({codes})? Renvoyez INQUIET avec le "
                         "code et votre message, ex. INQUIET {first} ... En cas de danger immédiat, appelez le "
                         "{emergency}.",
        "concern_no_task": "Merci de nous le dire: votre message est parvenu à la coordination, qui s'en occupera "
                           "aujourd'hui. En cas de danger immédiat, appelez le {emergency}.",
        "applied": "Merci de votre candidature comme bénévole avec {community}. Une coordinatrice vous contactera "
                   "sous peu.",
        "join": "Merci de vouloir devenir bénévole avec {community}! Inscrivez-vous ici: {link}",
        "training_invited": "Invitation: {topic}, {when}, {where}. Répondez OUI {code} pour réserver une place, "
                            "NON {code} si vous ne pouvez pas venir.",
        "training_accepted": "Merci, votre place est réservée: {topic}, {when}, {where}. Répondez NON {code} si vous "
                             "ne pouvez pas venir.",
        "training_full": "Désolé, {topic} le {when} est complet: nous vous inscrivons sur la liste d'attente et "
                         "vous écrirons si une place se libère.",
        "training_declined": "Merci: nous avons noté que vous ne pouvez pas venir à {topic} le {when}. Inutile de "
                             "répondre.",
        "wellbeing": "Comment se passe votre bénévolat? Répondez de 1 à 5 (1 difficile, 5 très bien), ou PARLER "
                     "pour parler à quelqu'un.",
        "wellbeing_thanks": "Merci de nous l'avoir dit. Répondez PARLER à tout moment si vous souhaitez qu'on vous "
                            "appelle.",
        "wellbeing_low": "Merci de nous l'avoir dit. Une coordinatrice vous appellera bientôt.",
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
TASKS_DONE = {"en": ("task", "tasks"), "fr": ("mission", "missions")}
VISITS = {"en": ("visit", "visits"), "fr": ("visite", "visites")}
RHYTHM_WORDS = {"en": {"weekly": "weekly", "fortnightly": "fortnightly", "monthly": "monthly"},
                "fr": {"weekly": "chaque semaine", "fortnightly": "toutes les deux semaines",
                       "monthly": "chaque mois"}}


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
               overrides: dict | None = None, rhythm: str | None = None) -> str:
    """An offer: the kind of help, the district, the window and the code; never a name or address. A befriending
    offer (`rhythm`) says it is an ongoing match, and how often."""
    place = render("place", language, overrides, area=area) if area else ""
    if rhythm:
        return render("offer_befriending", language, overrides, kind=kind_label(support_type, language),
                      place=place, when=when, code=code, rhythm=RHYTHM_WORDS[language_of(language)][rhythm])
    return render("offer", language, overrides, kind=kind_label(support_type, language), place=place, when=when,
                  code=code)


def visits_text(visits: int, language: str | None = "en") -> str:
    """'1 visit', '11 visits'."""
    one, many = VISITS[language_of(language)]
    return f"{visits} {one if visits == 1 else many}"


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
# A volunteer asking about themselves (`MY`, `HOURS`: the whole message is the question; `AWAY`: its first word),
# answered by matching from what it knows of them.
MY_TASKS = {"MY", "MY TASKS", "MY TASK", "TASKS", "TASK", "MY JOBS", "JOBS", "MY VISITS", "MES TACHES",
            "MES MISSIONS", "TACHES", "MISSIONS"}
MY_HOURS = {"HOURS", "HRS", "MY HOURS", "HEURES", "MES HEURES", "HOURS THIS YEAR", "MY HOURS THIS YEAR"}
MY_HOURS_OPENINGS = ("HOW MANY HOURS", "COMBIEN DHEURES", "COMBIEN D HEURES")
AWAY_WORDS = {"AWAY", "ABSENT", "ABSENTE", "HOLIDAY", "VACANCES"}
# Someone asking to volunteer (the whole message): matching answers with the link to the page for applying.
JOIN_WORDS = {"JOIN", "VOLUNTEER", "I WANT TO VOLUNTEER", "JOIN US", "REJOINDRE", "BENEVOLE", "BENEVOLAT",
              "DEVENIR BENEVOLE"}
VIEWS = ("MY", "AWAY", "HOURS", "JOIN")  # what matching answers, from any number (JOIN: from anyone)
MONTH_WORDS = {word: month for month, words in enumerate((
    ("JAN", "JANUARY", "JANV", "JANVIER"), ("FEB", "FEBRUARY", "FEV", "FEVR", "FEVRIER"), ("MAR", "MARCH", "MARS"),
    ("APR", "APRIL", "AVR", "AVRIL"), ("MAY", "MAI"), ("JUN", "JUNE", "JUIN"), ("JUL", "JULY", "JUIL", "JUILLET"),
    ("AUG", "AUGUST", "AOUT"), ("SEP", "SEPT", "SEPTEMBER", "SEPTEMBRE"), ("OCT", "OCTOBER", "OCTOBRE"),
    ("NOV", "NOVEMBER", "NOVEMBRE"), ("DEC", "DECEMBER", "DECEMBRE")), start=1) for word in words}
UNTIL_WORDS = {"UNTIL", "TILL", "TIL", "JUSQU", "JUSQUAU", "JUSQUE"}
RANGE_WORDS = {"TO", "AU", "A", "THROUGH", "THRU", "-"}
FILLER_WORDS = {"FROM", "DU", "DES", "LE", "THE", "OF", "ON", "ST", "ND", "RD", "TH", "ER", "AND", "INCLUSIVE", "INCL",
                "I", "M", "AM", "PLEASE", "SVP", "JE", "SUIS", "SERAI", "WILL", "BE", "BACK", "DE", "D", "ET"}
_DATE_TOKEN = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{1,2}\.\d{1,2}(?:\.\d{2,4})?|\d+|[A-Z]+"
                         r"|-")
AWAY_AHEAD = timedelta(days=366)  # time away is recorded at most a year ahead, as matching's API allows
# A volunteer's worry about the person they help (CONCERN): a message that opens with one of these words, after at
# most a few of CONCERN_LEADS ("I'm a bit worried about ...", "Je suis inquiète ...", "J'ai une inquiétude ...").
CONCERN_WORDS = {"CONCERN", "CONCERNS", "CONCERNED", "CONCERNING", "WORRIED", "WORRY", "WORRIES", "WORRYING",
                 "SAFEGUARDING", "ANXIOUS", "INQUIET", "INQUIETE", "INQUIETS", "INQUIETES", "INQUIETUDE",
                 "INQUIETUDES", "MINQUIETE", "PREOCCUPE", "PREOCCUPEE", "PREOCCUPES", "PREOCCUPEES", "PREOCCUPATION",
                 "SOUCI", "SOUCIS", "SOUCIEUX", "SOUCIEUSE"}
CONCERN_LEADS = {"I", "IM", "AM", "IVE", "HAVE", "GOT", "A", "AN", "BIT", "LITTLE", "VERY", "REALLY", "QUITE", "SO",
                 "SLIGHTLY", "RATHER", "SOMEWHAT", "SOME", "FEELING", "JUST", "HI", "HELLO", "HEY", "URGENT",
                 "M", "VE", "JE", "J", "AI", "JAI", "SUIS", "UN", "UNE", "PEU", "TRES", "VRAIMENT", "ASSEZ", "BONJOUR",
                 "ME", "FAIS", "DU", "DES"}
CONCERN_LEAD_MAX = 5
# Words between the concern and its code: "worried about 4821", "concern re task 4821", "inquiète pour la mission 4821".
CONCERN_BEFORE_CODE = {"ABOUT", "FOR", "RE", "REGARDING", "WITH", "ON", "OVER", "TASK", "REF", "REFERENCE", "CODE",
                       "JOB", "VISIT", "OFFER", "THE", "POUR", "SUR", "AU", "SUJET", "DE", "LA", "MISSION", "A",
                       "PROPOS"}
# The command form, whose words are what follows the keyword and its code: "CONCERN 4821: she fell".
_CONCERN_COMMAND = re.compile(
    r"^\s*(?:(?:safeguarding\s+)?concern\b|safeguarding\b)[\s:;,.\-–—]*(?:#?\d{4}\b)?[\s:;,.\-–—]*"
    r"|^\s*(?:worried|inqui[eè]te?|pr[ée]occup[ée]e?)[\s:;,.\-–—]*#?\d{4}\b[\s:;,.\-–—]*", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    """What a volunteer's SMS says.

    keyword: YES, NO, DONE, CANCEL, PAUSE, RESUME, HELP, STOP or START; MY, AWAY or HOURS (a volunteer asking
    about themselves); JOIN (someone asking to volunteer); None when we could not tell.
    code: the four-digit offer reference, if given. hours: for DONE, if given. away_from, away_until: for AWAY,
    the days away (both included), when they could be read.
    problem: what we did not understand, in a few words for the answer we send back; None if all was clear.
    """

    keyword: str | None
    code: str | None = None
    hours: float | None = None
    problem: str | None = None
    away_from: date | None = None
    away_until: date | None = None
    text: str | None = None


def _plain(body: str) -> str:
    """Upper case, accents and punctuation gone: 'Oui!' -> 'OUI', 'arrêt' -> 'ARRET'."""
    text = unicodedata.normalize("NFKD", body).encode("ascii", "ignore").decode().upper().replace("'", "")
    return re.sub(r"[^A-Z0-9.,]+", " ", text).strip(" .,")


TALK_WORDS = ("TALK", "PARLER")  # a volunteer asks for someone to call them (after a death, say)


def asks_to_talk(body: str) -> bool:
    """True for a reply that asks for someone to call: TALK (PARLER), alone or first ("talk please")."""
    words = _plain(body).split()
    return bool(words) and words[0] in TALK_WORDS


# --- a wellbeing check-in's answer: a score from 1 to 5 ------------------------------------------------------------
# Read only while a check-in is recent (notify asks `wellbeing_score` only then), and only of a text parse_reply
# found no keyword in, so "YES 4821", "DONE 4821 2" and the rest keep their meaning.

SCORE_WORDS = {"ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5,
               "UN": 1, "UNE": 1, "DEUX": 2, "TROIS": 3, "QUATRE": 4, "CINQ": 5}
# What may follow a score given in words: "five thanks", "quatre sur cinq", "four out of five", "four x" (one, two
# or three kisses, x, signing a text off).
SCORE_AFTERWORDS = {"THANKS", "THANK", "YOU", "TY", "CHEERS", "MERCI", "BEAUCOUP", "OUT", "OF", "SUR", "STARS",
                    "PLEASE", "X", "XX", "XXX", "OK", "FIVE", "CINQ", "5"}
_OUT_OF_FIVE = re.compile(r"^\s*([1-5])\s*(?:/|out of|sur|of)\s*(?:5|five|cinq)\b", re.IGNORECASE)


def wellbeing_score(body: str) -> int | None:
    """The score (1 to 5) a volunteer's answer to a check-in gives: "4", "4/5", "4 out of 5", "five", "cinq",
    "4 thanks", "5!"; None when it gives none, or more than one ("3 or 4"), or a number that is no score ("4821")."""
    if (out_of := _OUT_OF_FIVE.match(body)) is not None:
        return int(out_of.group(1))
    words = _plain(body).replace(".", " ").replace(",", " ").split()
    if not words:
        return None
    first, rest = words[0], words[1:]
    if first.isdigit():
        if not 1 <= int(first) <= 5 or len(first) > 1 or any(any(c.isdigit() for c in w) for w in rest):
            return None
        return int(first)
    if first in SCORE_WORDS and all(w in SCORE_AFTERWORDS for w in rest):
        return SCORE_WORDS[first]
    return None


def parse_reply(body: str, today: date | None = None) -> Reply:
    """Read a volunteer's reply: 'YES 4821', 'yes', 'Y 4821', '4821 yes', 'DONE 4821 1.5h', 'STOP', 'my tasks',
    'away 24-28 dec', 'hours', 'join' (`today` places dates given without a year: the next such day)."""
    plain = _plain(body)
    whole = plain.replace(".", " ").replace(",", " ").split()
    if " ".join(whole) in OPT_OUT or plain.replace(" ", "") in OPT_OUT:
        return Reply("STOP")
    if " ".join(whole) in OPT_IN:
        return Reply("START")
    asked = " ".join(whole)
    if asked in MY_TASKS:
        return Reply("MY")
    if asked in MY_HOURS or asked.startswith(MY_HOURS_OPENINGS):
        return Reply("HOURS")
    if asked in JOIN_WORDS:
        return Reply("JOIN")
    if whole and whole[0] in AWAY_WORDS:
        return _away(body, today or date.today())
    concern = _concern(body, whole)
    if concern is not None:
        return concern
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


def _concern(body: str, whole: list[str]) -> Reply | None:
    """A worry about the person (keyword CONCERN), with the code of the task it is about when the volunteer gave one
    by the concern ("CONCERN 4821 ...", "worried about 4821 ...", "4821 concern ...") and their words: the whole
    message, or what follows the keyword and code in the command form. None when the message is not a concern."""
    words = whole[1:] if whole and _is_code(whole[0]) else whole
    leads = 0
    while leads < len(words) and leads < CONCERN_LEAD_MAX and words[leads] in CONCERN_LEADS \
            and words[leads] not in CONCERN_WORDS:
        leads += 1
    if leads >= len(words) or words[leads] not in CONCERN_WORDS:
        return None
    code = whole[0] if words is not whole else None
    following = words[leads + 1:]
    while following and following[0] in CONCERN_BEFORE_CODE | CONCERN_WORDS:
        following = following[1:]
    if code is None and following and _is_code(following[0]):
        code = following[0]
    command = _CONCERN_COMMAND.match(body)
    text = (body[command.end():] if command else body).strip()
    if not text:
        return Reply("CONCERN", code, problem="your concern: please say what worries you, e.g. CONCERN 4821 she "
                                              "seemed confused")
    return Reply("CONCERN", code, text=body.strip()[:1600] if not command else text[:1600])


def _is_code(word: str) -> bool:
    """A task's reference code: four digits."""
    return len(word) == 4 and word.isdigit()


def away_dates_text(body: str) -> str:
    """The dates of an AWAY as the volunteer typed them (what follows the first word), for an answer to quote."""
    words = body.strip().split(maxsplit=1)
    return words[1].strip()[:40] if len(words) > 1 else ""


def _away(body: str, today: date) -> Reply:
    """AWAY with its days: 'away 24-28 dec', 'away 24/12 to 28/12', 'away until 3 jan', 'absent du 24 au 28 déc',
    'away 28 dec - 3 jan', 'away 24 dec'. Without dates it could read, a problem quoting what it could not."""
    dates = parse_away(away_dates_text(body), today)
    if dates is None:
        return Reply("AWAY", problem=away_dates_text(body) or "(no dates)")
    return Reply("AWAY", away_from=dates[0], away_until=dates[1])


def parse_away(text: str, today: date) -> tuple[date, date] | None:
    """The first and last days away in `text`, both included, or None when it cannot tell. Days without a year are
    the next such days (the last on or after the first); at most a year ahead."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper().replace("'", " ")
    days: list[list[int | None]] = []  # [day, month, year]
    until = False
    for token in _DATE_TOKEN.findall(plain):
        if token in UNTIL_WORDS:
            until = True
        elif token in MONTH_WORDS:
            if days and days[-1][1] is None:
                days[-1][1] = MONTH_WORDS[token]
            else:
                days.append([None, MONTH_WORDS[token], None])  # 'Dec 24': the day follows
        elif token[0].isdigit():
            parts = [int(p) for p in re.split(r"[/.-]", token)]
            if len(token) > 4 and "-" in token:  # 2026-12-24
                parts = parts[::-1]
            if days and days[-1][0] is None and len(parts) == 1:
                days[-1][0] = parts[0]
            else:
                days.append([*parts, None, None][:3])
        elif token not in RANGE_WORDS and token not in FILLER_WORDS:
            return None
    if not days or len(days) > 2 or (until and len(days) != 1):
        return None
    if len(days) == 2:  # '24-28 dec': the first takes the second's month (and the second the first's)
        days[0][1] = days[0][1] or days[1][1]
        days[1][1] = days[1][1] or days[0][1]
    if any(d[0] is None or d[1] is None for d in days):
        return None
    try:
        first, last = _span(days[0], days[-1], today, until)
        if last < today and days[0][2] is None and days[-1][2] is None:  # that time has passed: next year's
            first, last = _span(days[0], days[-1], today.replace(year=today.year + 1, month=1, day=1), until)
    except ValueError:  # 31 Feb, month 13
        return None
    if last < first or last < today or last > today + AWAY_AHEAD:
        return None
    return first, last


def _span(first: list[int | None], last: list[int | None], year_of: date, until: bool) -> tuple[date, date]:
    """The first and last days: in `year_of`'s year unless they say their own, the last on or after the first."""
    start = year_of if until else _day(first, year_of.year)
    end = _day(last, start.year)
    if end < start and last[2] is None:  # 28 Dec - 3 Jan
        end = _day(last, start.year + 1)
    return start, end


def _day(day: list[int | None], year: int) -> date:
    """The day given, in its own year if it says one, else in `year`."""
    number, month, given = day
    return date(year if given is None else given + 2000 if given < 100 else given, month, number)


def answer_for(reply: Reply, language: str | None = "en", overrides: dict | None = None) -> str | None:
    """The short answer a reply gets by return SMS: help, or what we did not understand; None if all was clear."""
    help_text = render("help", language, overrides)
    if reply.keyword == "HELP":
        return render("help_all", language, overrides, help=help_text)
    if reply.problem:
        return render("unclear", language, overrides, problem=reply.problem, help=help_text)
    return None



# --- surveys by SMS: what we say, and how an answer from 0 to 10 is read ----------------------------------------------

SURVEY_TEMPLATES = {
    "en": {"survey_thanks": "Thank you for answering our survey. Your answers help us improve our support.",
           "survey_unclear": "Sorry, we did not understand your answer. Please reply with a number from 0 to 10, or "
                             "STOP to end the survey.",
           "survey_reminder": "A reminder of our short survey:"},
    "fr": {"survey_thanks": "Merci d'avoir répondu à notre sondage. Vos réponses nous aident à améliorer notre "
                            "soutien.",
           "survey_unclear": "Désolé, nous n'avons pas compris votre réponse. Répondez par un nombre de 0 à 10, ou "
                             "ARRET pour arrêter le sondage.",
           "survey_reminder": "Un rappel de notre court sondage:"},
}
for _language, _texts in SURVEY_TEMPLATES.items():
    TEMPLATES[_language].update(_texts)

NUMBER_WORDS = {  # as _plain spells them: upper case, no accents
    "ZERO": 0, "NOUGHT": 0, "ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5, "SIX": 6,
    "SEVEN": 7, "EIGHT": 8, "NINE": 9, "TEN": 10,
    "UN": 1, "UNE": 1, "DEUX": 2, "TROIS": 3, "QUATRE": 4, "CINQ": 5, "SEPT": 7, "HUIT": 8, "NEUF": 9, "DIX": 10,
}
# "7/10", "7 out of 10", "7 sur 10": the scale said after the answer is not a second answer.
_OUT_OF_TEN = re.compile(r"(\d+|[A-Z]+)\s*(?:/|\bOUT OF\b|\bOF\b|\bSUR\b)\s*(?:10|TEN|DIX)\b")


def parse_survey_answer(body: str) -> int | None:
    """An answer to a survey question, 0 to 10, by number or word in English or French: "7", "seven", "sept",
    "7/10", "10 thanks", "I'd say 8". None when there is none, more than one ("7 or 8"), a fraction or one
    above 10."""
    text = unicodedata.normalize("NFKD", body).encode("ascii", "ignore").decode().upper().replace("'", " ")
    text = _OUT_OF_TEN.sub(r"\1", text)
    if re.search(r"\d[.,]\d", text):
        return None
    found = {int(n) for n in re.findall(r"\d+", text)}
    found |= {NUMBER_WORDS[w] for w in re.findall(r"[A-Z]+", text) if w in NUMBER_WORDS}
    if len(found) != 1:
        return None
    (value,) = found
    return value if 0 <= value <= 10 else None
