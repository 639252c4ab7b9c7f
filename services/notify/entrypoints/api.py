"""Notify's HTTP API: Twilio's webhooks (an SMS a phone sent, and what became of one we sent), and the messages a
coordinator can review."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields
from twilio.twiml.messaging_response import MessagingResponse

from services.notify import service_layer
from services.notify.adapters import signed_by_twilio
from services.notify.domain import InboundSms
from shared.clock import utcnow
from shared.web import Blueprint, Text, csrf_exempt, current_actor, normalise_phone, requires, service

blp = Blueprint("sms", __name__, url_prefix="/sms", description="SMS to and from volunteers")


class InboundForm(Schema):
    """The fields of Twilio's inbound message webhook that we use (others are accepted and ignored)."""

    class Meta:
        unknown = "exclude"

    From = Text(required=True)
    To = Text(required=True)
    Body = Text(required=True, multiline=True)
    MessageSid = Text(required=True)


def twiml(text: str | None = None) -> Response:
    """A TwiML answer, with a reply message or none."""
    answer = MessagingResponse()
    if text:
        answer.message(text)
    return Response(str(answer), mimetype="application/xml")


def check_signature() -> None:
    """Refuse a webhook that Twilio (or, in development, the SMS simulator) did not sign: the signature covers
    every form field and the public URL from configuration (not the one the request reached us by)."""
    if not signed_by_twilio(service().settings, request.full_path.rstrip("?"), request.form.to_dict(),
                            request.headers.get("X-Twilio-Signature", "")):
        abort(403, message="The X-Twilio-Signature header is missing or does not match.")


def sender_of(number: str) -> str:
    """The sender's number in E.164 when it is one, else as the provider gave it."""
    try:
        return normalise_phone(number, service().settings.default_region)
    except ValueError:
        return number


@blp.route("/inbound")
class Inbound(MethodView):
    @csrf_exempt  # signed by Twilio instead (check_signature)
    @blp.arguments(InboundForm, location="form")
    @blp.doc(responses={"403": {"description": "Not signed by Twilio"}})
    def post(self, form):
        """Twilio's webhook for an SMS a volunteer sent: recorded once, and passed on as `sms.received`.

        A reply we cannot read, or HELP, is answered at once with what we understood and how to answer."""
        check_signature()
        sms = InboundSms(message_sid=form["MessageSid"], sender=sender_of(form["From"]), to=form["To"],
                         body=form["Body"])
        return twiml(service_layer.receive_sms(service().uow(), sms, utcnow(), service().settings))


class StatusForm(Schema):
    """The fields of Twilio's status callback that we use."""

    class Meta:
        unknown = "exclude"

    MessageSid = Text(required=True)
    MessageStatus = Text(required=True)
    ErrorCode = Text(load_default=None)


@blp.route("/status")
class Status(MethodView):
    @csrf_exempt  # signed by Twilio instead (check_signature)
    @blp.arguments(StatusForm, location="form")
    @blp.response(204)
    @blp.doc(responses={"403": {"description": "Not signed by Twilio"}})
    def post(self, form):
        """Twilio's status callback for a message we sent: sent, delivered, undelivered or failed."""
        check_signature()
        service_layer.record_status(service().uow(), form["MessageSid"], form["MessageStatus"], form["ErrorCode"],
                                    utcnow())


class MessageOut(Schema):
    """A message we sent (or mean to), as a coordinator reviews it."""

    id = fields.UUID()
    purpose = fields.Str()
    to_phone = fields.Str()
    body = fields.Str()
    status = fields.Str()
    provider_sid = fields.Str(allow_none=True)
    created_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)


class MessageQuery(Schema):
    """Which messages to list: those to one phone, or all."""

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
        to = None
        if "to" in query:
            try:
                to = normalise_phone(query["to"], service().settings.default_region)
            except ValueError:
                abort(422, errors={"query": {"to": ["is not a valid phone number"]}})
        return service_layer.list_messages(service().uow(), current_actor(), to, pagination_parameters,
                                           service().settings)
