"""What intake does with matching's events: keep each request's status and timeline current."""

from __future__ import annotations

from services.intake import service_layer
from shared.contracts import Event
from shared.contracts.matching import (OfferAccepted, OfferMade, OfferWithdrawn, RequestMatched, RequestUnmatched,
                                       TaskCompleted, TaskGivenBack, TaskVolunteerOptedOut)


def follow_matching(uow, event: Event) -> None:
    """Note what matching did to a request, and move its status on."""
    service_layer.follow_matching(uow, event)


HANDLERS = {event.TYPE: follow_matching for event in (OfferMade, OfferAccepted, OfferWithdrawn, RequestMatched,
                                                       RequestUnmatched, TaskCompleted, TaskGivenBack,
                                                       TaskVolunteerOptedOut)}
