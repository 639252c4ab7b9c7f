"""Notify's HTTP API: Twilio's inbound webhook, and the messages a coordinator can review."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from services.notify.model import InboundMessage, OutgoingMessage, outbox
from services.notify.sms import HELP_TEXT, parse_reply
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
    """Refuse a webhook that Twilio did not sign, when an auth token is configured."""
    settings = service().settings
    if not settings.twilio_auth_token:
        return
    url = settings.public_url + request.full_path.rstrip("?")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(settings.twilio_auth_token).validate(url, request.form.to_dict(), signature):
        abort(403, message="The X-Twilio-Signature header is missing or does not match.")


@blp.route("/inbound")
class Inbound(MethodView):
    @blp.arguments(InboundForm, location="form")
    def post(self, form):
        """Twilio's webhook for an SMS a volunteer sent: recorded once, and passed on as `sms.received`."""
        check_signature()
        try:
            sender = normalise_phone(form["From"], service().settings.default_region)
        except ValueError:
            sender = form["From"]
        reply = parse_reply(form["Body"])
        with service().sessions.begin() as session:
            if session.get(InboundMessage, form["MessageSid"]) is not None:
                return twiml()
            session.add(InboundMessage(message_sid=form["MessageSid"], from_phone=sender, to_phone=form["To"],
                                       body=form["Body"], keyword=reply.keyword, code=reply.code))
            outbox.add(session, "sms.received", {
                "message_sid": form["MessageSid"], "from_phone": sender, "to_phone": form["To"],
                "body": form["Body"], "keyword": reply.keyword, "code": reply.code,
            })
        if reply.keyword in (None, "HELP") or (reply.keyword in ("YES", "NO") and not reply.code):
            return twiml(("Sorry, we did not understand that. " if reply.keyword is None else "") + HELP_TEXT)
        return twiml()


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
    return create_service_app("notify", [blp], test_config, title="Notify")
