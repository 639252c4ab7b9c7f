"""How metrics hears the other services: every event (but the personal one) becomes one fact, keyed by the event,
so a redelivery counts once (services/metrics/service_layer.py `record_event`).

What a fact takes from elsewhere (the community of an outcome, from its request's fact; the day, in the
community's time zone) is filled in when the request's fact arrives, even after the outcome's, and can be worked
out again at any time: `ccs metrics rebuild` does, after a community's time zone changed, and gives the same answer
as counting live did.
"""

from __future__ import annotations

from services.metrics import service_layer
from services.metrics.adapters import revocations
from shared.contracts import EVENTS, Event
from shared.topology import ERASURES, EVERY_SERVICE, PERSONAL


def record(uow, event: Event) -> None:
    """Keep the fact an event makes, in the unit of work that marks the event handled."""
    service_layer.record_event(uow, event)


# A person's erasure is not metrics' to hear: it holds nothing of anyone, and its counts stay as they were.
# Nor its own activity.logged: it counts the activity as it logs it.
HANDLERS = {**{event_type: record for (event_type, _version), contract in EVENTS.items()
               if event_type not in PERSONAL | EVERY_SERVICE | ERASURES and contract.PRODUCER != "metrics"},
            "token.revoked": revocations.handle,  # a revoked token is kept (and refused), not counted
            "organisation.changed": service_layer.record_organisation,  # the register, to count partners by
            "person.monitored": service_layer.record_monitoring}  # a person's equity monitoring, by their pseudonym
