"""What intake does with matching's events (keep each request's status and timeline current), and with notify's
word that an offer's texts wait for the quiet hours."""

from __future__ import annotations

from services.intake import service_layer
from shared.contracts import Event
from shared.contracts.matching import (OfferAccepted, OfferMade, OfferWithdrawn, RequestMatched, RequestUnmatched,
                                       TaskCompleted, TaskGivenBack, TaskVolunteerOptedOut)
from shared.contracts.notify import SmsHeld


def follow_matching(uow, event: Event) -> None:
    """Note what matching did to a request, and move its status on."""
    service_layer.follow_matching(uow, event)


def offer_texts_held(uow, event: Event) -> None:
    """Say on the timeline when an offer's texts will go, so nobody thinks the volunteers have been asked yet."""
    service_layer.offer_texts_held(uow, event)


HANDLERS = {**{event.TYPE: follow_matching for event in (OfferMade, OfferAccepted, OfferWithdrawn, RequestMatched,
                                                         RequestUnmatched, TaskCompleted, TaskGivenBack,
                                                         TaskVolunteerOptedOut)},
            SmsHeld.TYPE: offer_texts_held}
