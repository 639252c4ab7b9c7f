"""Coordinators' SMS pages: each contact's conversation, and the SMS simulator for the development gateway.

The simulator is how a new user tries the whole flow in a browser: it shows what each phone received from the
development gateway, and sends a reply as that phone through the same signed webhook Twilio calls."""

from __future__ import annotations

import functools
import secrets
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers
import requests
import sqlalchemy as sa
from flask import abort, g, redirect, render_template, request, session
from flask_smorest import Blueprint
from sqlalchemy.orm import aliased

from services.notify.messages import segments
from services.notify.model import Contact, InboundMessage, OutgoingMessage
from services.notify.sms import signature_for
from shared.communities import all_communities
from shared.communities import get as community
from shared.web import check_csrf, normalise_phone, page_requires, phone_region, service

blp = Blueprint("sms-pages", __name__, description="Coordinators' SMS pages: conversations and the simulator")
COORDINATORS = ("coordinator", "admin")
RECEIVED = ("sent", "delivered")  # what a phone has in its inbox
LIMIT = 500


def development() -> bool:
    """True when SMS go to the development gateway (no Twilio credentials), as `sms.gateway_for` decides."""
    return not service().settings.uses_twilio


def render(template: str, **context: Any):
    """Render a page with what every SMS page uses."""
    return render_template(template, card_id=card_id, **context)


@dataclass
class Entry:
    """One message in a thread: sent to the phone ("out") or received from it ("in")."""

    direction: str
    at: datetime
    message: OutgoingMessage | InboundMessage


def sent_at(m: OutgoingMessage) -> datetime:
    """When a message went, or is to go if it waits (quiet hours, a reminder's time), or else was written."""
    waits = m.next_attempt_at if m.status == "queued" else None
    return m.sent_at or waits or m.created_at


def entries(outgoing, inbound) -> list[Entry]:
    """Messages both ways in the order the phone sees them; those still waiting last."""
    both = [Entry("out", sent_at(m), m) for m in outgoing]
    both += [Entry("in", m.received_at, m) for m in inbound]
    return sorted(both, key=lambda e: e.at)


# --- whose messages a coordinator sees -----------------------------------------------------------------------------

def in_scope():
    """The numbers the signed-in user's communities texted from their sender numbers, or that texted those numbers
    (or a number that is no community's, which nobody else could see)."""
    ours = [community(slug).sms_from for slug in g.user["communities"]]
    every = [c.sms_from for c in all_communities().values()]
    return sa.union(
        sa.select(OutgoingMessage.to_phone.label("phone")).where(OutgoingMessage.from_phone.in_(ours)),
        sa.select(InboundMessage.from_phone.label("phone")).where(
            sa.or_(InboundMessage.to_phone.in_(ours), InboundMessage.to_phone.not_in(every))),
    ).subquery()


def latest(db, model, phone, at) -> dict[str, Any]:
    """Each in-scope phone's newest row of `model`, by phone."""
    scope = in_scope()
    ranked = sa.select(model, sa.func.row_number().over(partition_by=phone, order_by=at.desc()).label("n")) \
        .where(phone.in_(sa.select(scope.c.phone))).subquery()
    row = aliased(model, ranked)
    return {getattr(m, phone.key): m for m in db.scalars(sa.select(row).where(ranked.c.n == 1))}


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
    with service().sessions() as db:
        out = latest(db, OutgoingMessage, OutgoingMessage.to_phone,
                     sa.func.coalesce(OutgoingMessage.sent_at, OutgoingMessage.created_at))
        got = latest(db, InboundMessage, InboundMessage.from_phone, InboundMessage.received_at)
        phones, scope = set(out) | set(got), sa.select(in_scope().c.phone)
        texted = set(db.scalars(sa.select(OutgoingMessage.to_phone).distinct().where(
            OutgoingMessage.to_phone.in_(scope), OutgoingMessage.purpose != "answer")))  # not only answering them
        contacts = {c.phone: c for c in db.scalars(sa.select(Contact).where(Contact.phone.in_(scope)))}
    rows = []
    for phone in phones:
        happened = [Entry("out", out[phone].sent_at or out[phone].created_at, out[phone])] if phone in out else []
        happened += [Entry("in", got[phone].received_at, got[phone])] if phone in got else []
        last = max(happened, key=lambda e: e.at)
        rows.append({"phone": phone, "last": last, "contact": contacts.get(phone),
                     "unknown": phone in got and phone not in texted})
    rows.sort(key=lambda r: r["last"].at, reverse=True)
    return render("conversations.html", rows=rows[:LIMIT], total=len(rows))


@blp.route("/sms/conversations/<path:phone>")
@page_requires(*COORDINATORS)
def conversation(phone):
    """Every message sent to and received from one number, in time order, like a phone's thread."""
    phone = as_phone(phone)
    with service().sessions() as db:
        scope = in_scope()
        if db.scalar(sa.select(scope.c.phone).where(scope.c.phone == phone).limit(1)) is None:
            return render("conversation.html", phone=phone, thread=[], contact=None, unknown=False), 404
        outgoing = db.scalars(sa.select(OutgoingMessage).where(OutgoingMessage.to_phone == phone)).all()
        inbound = db.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone == phone)).all()
        contact = db.get(Contact, phone)
    unknown = bool(inbound) and not any(m.purpose != "answer" for m in outgoing)
    return render("conversation.html", phone=phone, thread=entries(outgoing, inbound), contact=contact,
                  unknown=unknown)


# --- the SMS simulator -----------------------------------------------------------------------------------------------

def development_only(view):
    """No simulator where SMS really go out: the page does not exist when Twilio is configured."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not development():
            abort(404)
        return view(*args, **kwargs)

    return wrapper


def phones(db) -> list[dict[str, Any]]:
    """One card per in-scope phone that received messages: what it received and sent, newest phone first."""
    scope = in_scope()
    received = db.scalars(sa.select(OutgoingMessage).where(
        OutgoingMessage.status.in_(RECEIVED), OutgoingMessage.to_phone.in_(sa.select(scope.c.phone)))).all()
    numbers = {m.to_phone for m in received}
    sent = db.scalars(sa.select(InboundMessage).where(InboundMessage.from_phone.in_(numbers))).all()
    cards = []
    for number in numbers:
        thread = entries([m for m in received if m.to_phone == number], [m for m in sent if m.from_phone == number])
        ours = next((e.message.from_phone for e in reversed(thread) if e.direction == "out" and e.message.from_phone),
                    None)
        cards.append({"phone": number, "thread": thread, "to": ours})
    return sorted(cards, key=lambda c: c["thread"][-1].at, reverse=True)


@blp.route("/simulator")
@development_only
@page_requires(*COORDINATORS)
def simulator():
    """Each phone the development gateway texted, with a box to reply as it."""
    with service().sessions() as db:
        cards = phones(db)
    return render("simulator.html", cards=cards, last=session.pop("simulated", None), errors={}, form={})


def twilio_form(sender: str, to: str, body: str) -> dict[str, str]:
    """The fields Twilio posts to the inbound webhook for an SMS from `sender` to our number `to`."""
    sid = "SM" + secrets.token_hex(16)
    settings = service().settings

    def country(number: str) -> str:
        try:
            return phonenumbers.region_code_for_number(phonenumbers.parse(number)) or ""
        except phonenumbers.NumberParseException:
            return ""

    return {"ToCountry": country(to), "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received",
            "Body": body, "FromCountry": country(sender), "To": to, "NumSegments": str(segments(body).count),
            "MessageSid": sid, "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32, "From": sender,
            "ApiVersion": "2010-04-01"}


def own_address() -> str:
    """Where this web process listens (gunicorn names its bound socket), so the reply reaches this service
    whatever host name the browser used; the signature covers the public URL, not this one."""
    host, port = request.environ.get("SERVER_NAME", ""), request.environ.get("SERVER_PORT", "")
    if host in ("", "0.0.0.0", "::") or not port:
        return request.url_root.rstrip("/")
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def answer_in(twiml: str) -> str | None:
    """The text of the <Message> a TwiML answer sends back, if any."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError:
        return None
    texts = [(m.findtext("Body") or m.text or "").strip() for m in root.iter("Message")]
    return "\n".join(t for t in texts if t) or None


@blp.route("/simulator", methods=["POST"])
@development_only
@page_requires(*COORDINATORS)
def simulate_reply():
    """Text the system as a phone would: Twilio's form, signed as Twilio signs it, posted to /sms/inbound."""
    check_csrf()
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
        with service().sessions() as db:
            cards = phones(db)
        return render("simulator.html", cards=cards, last=None, errors=errors, form=form), 422
    to = form["to"] or community(g.user["communities"][0]).sms_from
    fields = twilio_form(sender, to, form["body"])
    signature = signature_for(service().settings, "/sms/inbound", fields)
    result = {"phone": sender, "body": form["body"]}
    try:
        answered = requests.post(own_address() + "/sms/inbound", data=fields, timeout=15,
                                 headers={"X-Twilio-Signature": signature})
    except requests.RequestException as err:
        result["error"] = f"The webhook did not answer ({type(err).__name__})."
    else:
        if answered.ok:
            result["answer"] = answer_in(answered.text)
        else:
            result["error"] = f"The webhook answered {answered.status_code}."
    session["simulated"] = result
    return redirect(f"/simulator#{card_id(sender)}", 303)


def card_id(phone: str) -> str:
    """The HTML id of a phone's card."""
    return "phone-" + "".join(ch for ch in phone if ch.isalnum())

