"""Notify's HTTP API: Twilio's inbound webhook, and the messages a coordinator can review."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from services.notify.messages import answer_for, parse_reply
from services.notify.model import Contact, InboundMessage, OutgoingMessage, outbox
from services.notify.sms import offer_of, webhook_token
from shared.clock import utcnow
from shared.telemetry import SMS
from shared.web import create_service_app, normalise_phone, requires, service

blp = Blueprint("sms", __name__, url_prefix="/sms", description="SMS to and from volunteers")


class InboundForm(Schema):
    """The fields of Twilio's inbound message webhook that we use (others are accepted and ignored)."""

    class Meta:
        unknown = "exclude"

    From = fields.Str(required=True)
    To = fields.Str(required=True)
    Body = fields.Str(required=True)
    MessageSid = fields.Str(required=True)


def twiml(text: str | None = None) -> Response:
    """A TwiML answer, with a reply message or none."""
    answer = MessagingResponse()
    if text:
        answer.message(text)
    return Response(str(answer), mimetype="application/xml")


def check_signature() -> None:
    """Refuse a webhook that Twilio (or, in development, the SMS simulator) did not sign.

    The signature covers the public URL from configuration, so it still matches behind a proxy that reached us
    by another host name, and every form field."""
    settings = service().settings
    url = settings.public_url + request.full_path.rstrip("?")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(webhook_token(settings)).validate(url, request.form.to_dict(), signature):
        abort(403, message="The X-Twilio-Signature header is missing or does not match.")


def receive(form: dict, now=None) -> str | None:
    """Record an SMS a volunteer sent, once per MessageSid, act on opt-out and opt-in keywords, and pass it on
    as `sms.received`. Returns the answer to send straight back, if any."""
    settings, now = service().settings, now or utcnow()
    try:
        sender = normalise_phone(form["From"], settings.default_region)
    except ValueError:
        sender = form["From"]
    reply = parse_reply(form["Body"])
    with service().sessions.begin() as session:
        if session.get(InboundMessage, form["MessageSid"]) is not None:
            return None  # Twilio retried a webhook we already have
        contact = Contact.of(session, sender)
        was_opted_out = contact.opted_out_at is not None
        if reply.keyword == "STOP" and not was_opted_out:
            contact.opted_out_at = now
            outbox.add(session, "contact.opted_out", {"phone": sender, "at": now, "source": "keyword"})
        elif reply.keyword == "START" and was_opted_out:
            contact.opted_out_at, contact.opted_in_at = None, now
            outbox.add(session, "contact.opted_in", {"phone": sender, "at": now, "source": "keyword"})
        keyword = reply.keyword if reply.problem is None else None  # "yes 482" must not say yes to anything
        session.add(InboundMessage(message_sid=form["MessageSid"], from_phone=sender, to_phone=form["To"],
                                   body=form["Body"], keyword=keyword, code=reply.code, received_at=now))
        outbox.add(session, "sms.received", {
            "message_sid": form["MessageSid"], "from_phone": sender, "to_phone": form["To"],
            "body": form["Body"], "keyword": keyword, "code": reply.code, "hours": reply.hours,
        })
        language = contact.language
        texted_before = session.scalar(sa.select(OutgoingMessage.id).where(OutgoingMessage.to_phone == sender,
                                                                           OutgoingMessage.purpose != "answer")
                                       .limit(1)) is not None
    SMS.labels("received").inc()
    if reply.keyword in ("STOP", "START") or (was_opted_out and reply.keyword != "START"):
        return None  # the carrier confirms opt-out and opt-in itself; an opted-out number gets nothing from us
    if not texted_before and reply.keyword != "HELP":
        return None  # matching answers a number we never texted: it knows whether it is a volunteer's
    return answer_for(reply, language)


@blp.route("/inbound")
class Inbound(MethodView):
    @blp.arguments(InboundForm, location="form")
    @blp.doc(responses={"403": {"description": "Not signed by Twilio"}})
    def post(self, form):
        """Twilio's webhook for an SMS a volunteer sent: recorded once, and passed on as `sms.received`.

        A reply we cannot read, or HELP, is answered at once with what we understood and how to answer."""
        check_signature()
        return twiml(receive(request.form.to_dict()))


class StatusForm(Schema):
    """The fields of Twilio's status callback that we use."""

    class Meta:
        unknown = "exclude"

    MessageSid = fields.Str(required=True)
    MessageStatus = fields.Str(required=True)
    ErrorCode = fields.Str(load_default=None)


# How far along a message is; a callback that arrives late never moves it back.
PROGRESS = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "undelivered": 3, "failed": 3}


def record_status(form: dict, now=None) -> None:
    """Record what Twilio says became of a message we sent. An offer's SMS that could not be delivered counts
    as declined at once (`sms.failed`), so the cascade moves on without waiting for the offer to time out."""
    status = form["MessageStatus"]
    with service().sessions.begin() as session:
        message = session.scalar(sa.select(OutgoingMessage).where(OutgoingMessage.provider_sid == form["MessageSid"]))
        if message is None or status not in PROGRESS or PROGRESS[status] <= PROGRESS.get(message.status, 3):
            return  # not ours, not a status we track, a duplicate or out of order
        message.status = status
        if status == "delivered":
            message.delivered_at = now or utcnow()
            SMS.labels("delivered").inc()
        elif status in ("undelivered", "failed"):
            reason = f"{status} {form.get('ErrorCode') or ''}".strip()
            message.error = reason
            outbox.add(session, "sms.failed", {"message_id": message.id, "purpose": message.purpose,
                                               "reason": reason, "offer_id": offer_of(message)},
                       correlation_id=message.correlation_id)
            SMS.labels("undelivered").inc()


@blp.route("/status")
class Status(MethodView):
    @blp.arguments(StatusForm, location="form")
    @blp.response(204)
    @blp.doc(responses={"403": {"description": "Not signed by Twilio"}})
    def post(self, form):
        """Twilio's status callback for a message we sent: sent, delivered, undelivered or failed."""
        check_signature()
        record_status(form)


class MessageOut(Schema):
    id = fields.UUID()
    purpose = fields.Str()
    to_phone = fields.Str()
    body = fields.Str()
    status = fields.Str()
    provider_sid = fields.Str(allow_none=True)
    created_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)


class MessageQuery(Schema):
    to = fields.Str()


@blp.route("/messages")
class Messages(MethodView):
    @requires("coordinator", "admin")
    @blp.arguments(MessageQuery, location="query")
    @blp.response(200, MessageOut(many=True))
    @blp.paginate()
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, query, pagination_parameters):
        """Messages sent to volunteers, newest first."""
        where = []
        if "to" in query:
            try:
                where.append(OutgoingMessage.to_phone == normalise_phone(query["to"],
                                                                         service().settings.default_region))
            except ValueError:
                abort(422, errors={"query": {"to": ["is not a valid phone number"]}})
        with service().sessions() as session:
            pagination_parameters.item_count = session.scalar(
                sa.select(sa.func.count()).select_from(OutgoingMessage).where(*where))
            return session.scalars(sa.select(OutgoingMessage).where(*where)
                                   .order_by(OutgoingMessage.created_at.desc())
                                   .offset(pagination_parameters.first_item)
                                   .limit(pagination_parameters.page_size)).all()


def create_app(test_config=None):
    """Notify's web app."""
    from services.notify.pages import blp as pages

    return create_service_app("notify", [blp, pages], test_config, title="Notify")
