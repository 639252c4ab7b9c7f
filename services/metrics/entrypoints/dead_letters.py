"""The admins' dead-letters page: what no handler could take, as `ccs dead-letters` shows it, with its replay and
purge.

Metrics serves it because it is the service that watches the others (it hears every event but the personal ones);
the page reads no table, only the dead-letter queues on the broker, through shared.bus.DeadLetters, which any web
process may reach. It shows where each message was going, its type and id, when it died and why, and never its
payload, which may name a person. Replaying or purging is a form post (with the session's CSRF token); purging asks
first, on a page that lists what would go."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import redirect, render_template, request
from marshmallow import Schema, ValidationError, fields, validate

from shared import topology
from shared.bus import DeadLetter, DeadLetters
from shared.contracts import EVENTS
from shared.web import Pages, Text, page_requires, service

blp = Pages("dead-letters", __name__, description="The admins' dead-letters page")
ADMINS = ("admin",)
SHOWN = 200  # rows on the page; the counts cover them all, and the filters narrow the rest down
QUEUES = sorted(queue.name.removesuffix(".dead") for queue in topology.DEAD_LETTER_QUEUES)
TYPES = sorted({event_type for event_type, _version in EVENTS}) + ["(undecodable)"]


class Chosen(Schema):
    """Which dead letters: by queue (the one it was taken from), event type and event id, as `ccs dead-letters`
    chooses them; a blank field chooses every one."""

    queue = fields.Str(validate=validate.OneOf(QUEUES, error="Choose one of the queues listed."))
    type = Text(validate=validate.Length(max=64))
    event_id = fields.UUID()

    def chosen(self, values) -> dict[str, str | None]:
        """The choice in `values` (a query string or a form) as DeadLetters takes it; ValidationError if unknown."""
        loaded = self.load({key: values[key] for key in ("queue", "type", "event_id") if values.get(key)})
        return {"queue": loaded.get("queue"), "event_type": loaded.get("type"),
                "event_id": str(loaded["event_id"]) if "event_id" in loaded else None}


def store() -> DeadLetters:
    """The dead-letter queues of the broker this service is configured with."""
    return DeadLetters(service().settings)


def age(seconds: float) -> str:
    """How long ago, in the largest unit or two that say it."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def row(letter: DeadLetter, now: float) -> dict:
    """What the page shows of one dead letter: its summary (never its payload), its age, and the first line of its
    reason. What follows that line (a database's DETAIL, SQLAlchemy's statement and parameters) can quote the values
    a handler was writing, a person's details among them; `ccs dead-letters show` prints it all to an operator."""
    summary = letter.summary()
    since = summary["dead_since"]
    reason = summary["reason"].strip()
    return {**summary, "reason": reason.splitlines()[0] if reason else "(no reason recorded)",
            "cut": len(reason.splitlines()) > 1,
            "since": datetime.fromtimestamp(since, timezone.utc) if since else None,
            "age": age(now - since) if since else "unknown"}


def listing(chosen: dict, shown: dict, status: int = 200, **context):
    """The page: the chosen dead letters, counted by queue, the first SHOWN of them row by row; `shown` is the
    list's filters (queue, type), which every form carries back."""
    letters = store().list(**chosen)
    counts: dict[str, int] = {}
    for letter in letters:
        counts[letter.original_queue] = counts.get(letter.original_queue, 0) + 1
    now = time.time()
    return render_template("dead_letters.html", rows=[row(letter, now) for letter in letters[:SHOWN]],
                           total=len(letters), counts=sorted(counts.items()), chosen=chosen, shown=shown,
                           queues=QUEUES, types=TYPES, **context), status


NOTHING_CHOSEN = {"queue": None, "event_type": None, "event_id": None}


def refused(err: ValidationError):
    """A choice the page did not offer (a queue that does not exist, an event id that is not one): 422, saying
    which, above the whole list."""
    return listing(NOTHING_CHOSEN, {}, 422, errors=err.messages)


@blp.route("/dead-letters")
@page_requires(*ADMINS)
def dead_letters():
    """Every dead letter chosen by queue and type: where it was going, what it is, since when and why."""
    try:
        chosen = Chosen().chosen(request.args)
    except ValidationError as err:
        return refused(err)
    done = request.args.get("done")
    return listing(chosen, {"queue": chosen["queue"], "type": chosen["event_type"]},
                   done=done if done in ("replayed", "purged") else None, count=request.args.get("count", type=int))


def shown_before() -> dict:
    """The list's filters when the form was posted from it."""
    return {"queue": request.form.get("shown_queue"), "type": request.form.get("shown_type")}


def back_to_list(done: str, count: int):
    """See the list again as it was filtered, saying what was done: a redirect, so that reloading the page posts
    nothing again."""
    query = {**shown_before(), "done": done, "count": count}
    return redirect("/dead-letters?" + urlencode({k: v for k, v in query.items() if v is not None and v != ""}),
                    code=303)


@blp.route("/dead-letters/replay", methods=["POST"])
@page_requires(*ADMINS)
def replay():
    """Put the chosen dead letters back on their queues, their tries reset, once the cause is fixed."""
    try:
        chosen = Chosen().chosen(request.form)
    except ValidationError as err:
        return refused(err)
    return back_to_list("replayed", len(store().replay(**chosen)))


@blp.route("/dead-letters/purge", methods=["POST"])
@page_requires(*ADMINS)
def purge():
    """Drop the chosen dead letters for good: first a page listing what would go, whose button purges those and
    nothing that died since."""
    try:
        chosen = Chosen().chosen(request.form)
    except ValidationError as err:
        return refused(err)
    if request.form.get("confirmed") != "yes":
        return listing(chosen, shown_before(), confirming=True, listed_at=f"{time.time():.3f}")
    return back_to_list("purged", len(store().purge(**chosen, older_than=listed_before())))


def listed_before() -> float | None:
    """Only what the confirming page listed goes: what died after it was shown is kept (as `older_than`)."""
    try:
        listed_at = float(request.form.get("listed_at", ""))
    except ValueError:
        return None
    return max(0.0, time.time() - listed_at)
