"""Coordinators' SMS pages: each contact's conversation, and the SMS simulator for the development gateway.

The simulator is how a new user tries the whole flow in a browser: it shows what each phone received from the
development gateway, and sends a reply as that phone through the same signed webhook Twilio calls."""

from __future__ import annotations

import functools
from typing import Any

from flask import abort, redirect, render_template, request, session

from services.notify import service_layer
from services.notify.adapters import SimulatedPhone
from services.notify.domain import INBOX_REASONS, NotInScope
from shared import clock
from shared.taxonomy import LANGUAGES
from shared.web import Pages, current_actor, normalise_phone, page_requires, phone_region, service

blp = Pages("sms-pages", __name__, description="Coordinators' SMS pages: conversations and the simulator")
COORDINATORS = ("coordinator", "admin")
NOT_YOURS = {"to": "Text one of your community's numbers.",
             "phone": "That phone is another community's: text as one of yours, or a new number."}


def render(template: str, **context: Any):
    """Render a page with what every SMS page uses."""
    return render_template(template, card_id=card_id, language_names=dict(LANGUAGES), **context)


def card_id(phone: str) -> str:
    """The HTML id of a phone's card."""
    return "phone-" + "".join(ch for ch in phone if ch.isalnum())


def as_phone(text: str) -> str:
    """A number as we keep it: E.164 when it is one, else as the sender gave it."""
    try:
        return normalise_phone(text, phone_region())
    except ValueError:
        return text.strip()


# --- conversations ---------------------------------------------------------------------------------------------------

@blp.route("/sms/conversations")
@page_requires(*COORDINATORS)
def conversations():
    """Every number the community texts or hears from, newest first, with its last message and flags."""
    rows, total = service_layer.conversations(service().uow(), current_actor(), service().settings)
    waiting = service_layer.inbox(service().uow(), current_actor(), service().settings)
    return render("conversations.html", rows=rows, total=total, inbox=waiting, reasons=INBOX_REASONS)


@blp.route("/sms/inbox/<message_sid>/dealt-with", methods=["POST"])
@page_requires(*COORDINATORS)
def dealt_with(message_sid):
    """A coordinator has read a message in the inbox and acted on it: it leaves the inbox (kept in the thread)."""
    try:
        service_layer.deal_with(service().uow(), current_actor(), message_sid, service().settings, clock.utcnow())
    except NotInScope:
        abort(404)
    return redirect("/sms/conversations#inbox", 303)


@blp.route("/sms/conversations/<path:phone>")
@page_requires(*COORDINATORS)
def conversation(phone):
    """Every message sent to and received from one number, in time order, like a phone's thread."""
    phone = as_phone(phone)
    try:
        found = service_layer.conversation(service().uow(), current_actor(), phone, service().settings)
    except NotInScope:
        return render("conversation.html", phone=phone, thread=[], contact=None, unknown=False), 404
    return render("conversation.html", phone=phone, **found)


# --- the SMS simulator -----------------------------------------------------------------------------------------------

def development_only(view):
    """No simulator where SMS really go out: the page does not exist when Twilio is configured."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if service().settings.uses_twilio:
            abort(404)
        return view(*args, **kwargs)

    return wrapper


@blp.route("/simulator")
@development_only
@page_requires(*COORDINATORS)
def simulator():
    """Each phone the development gateway texted, with a box to reply as it."""
    cards = service_layer.simulator_phones(service().uow(), current_actor(), service().settings)
    return render("simulator.html", cards=cards, last=session.pop("simulated", None), errors={}, form={})


def own_address() -> str:
    """Where this web process listens (gunicorn names its bound socket), so the reply reaches this service
    whatever host name the browser used; the signature covers the public URL, not this one."""
    host, port = request.environ.get("SERVER_NAME", ""), request.environ.get("SERVER_PORT", "")
    if host in ("", "0.0.0.0", "::") or not port:
        return request.url_root.rstrip("/")
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


@blp.route("/simulator", methods=["POST"])
@development_only
@page_requires(*COORDINATORS)
def simulate_reply():
    """Text the system as a phone would: Twilio's form, signed as Twilio signs it, posted to /sms/inbound."""
    form = {"phone": request.form.get("phone", "").strip(), "body": request.form.get("body", "").strip(),
            "to": request.form.get("to", "").strip()}
    errors = {}
    try:
        sender = normalise_phone(form["phone"], phone_region())
    except ValueError as err:
        errors["phone"] = f"Phone {err}."
    if not form["body"]:
        errors["body"] = "Message is required."
    if errors:
        cards = service_layer.simulator_phones(service().uow(), current_actor(), service().settings)
        return render("simulator.html", cards=cards, last=None, errors=errors, form=form), 422
    try:
        session["simulated"] = service_layer.text_as_phone(
            service().uow(), SimulatedPhone(service().settings, own_address()), sender, form["to"] or None,
            form["body"], current_actor(), service().settings)
    except NotInScope as err:
        errors[str(err)] = NOT_YOURS[str(err)]
        cards = service_layer.simulator_phones(service().uow(), current_actor(), service().settings)
        return render("simulator.html", cards=cards, last=None, errors=errors, form=form), 422
    return redirect(f"/simulator#{card_id(sender)}", 303)
