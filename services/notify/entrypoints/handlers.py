"""How notify hears the other services: each event it consumes queues one SMS (or cancels reminders), through one
use case, in the unit of work that records the event as handled. `bound(settings)` gives the worker each handler
as `handler(uow, event)`, with this process's settings and the time it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from services.notify import service_layer
from services.notify.adapters import revocations
from shared.clock import utcnow
from shared.contracts import Event

if TYPE_CHECKING:
    from services.notify.bootstrap import NotifySettings


def on_offer_made(uow, event: Event, settings: NotifySettings) -> None:
    """Text the volunteer the offer."""
    service_layer.queue_offer(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_offer_accepted(uow, event: Event, settings: NotifySettings) -> None:
    """Cancel the offer's SMS if it has not gone, and schedule the accepted task's reminders."""
    service_layer.task_accepted(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_details_shared(uow, event: Event, settings: NotifySettings) -> None:
    """Tell the volunteer who accepted what they need to know."""
    service_layer.queue_details(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_person_died(uow, event: Event, settings: NotifySettings) -> None:
    """Cancel what waits about a person who died, and tell the volunteers who helped them."""
    service_layer.person_died(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_offer_withdrawn(uow, event: Event, settings: NotifySettings) -> None:
    """Cancel the offer's SMS if it has not gone, or tell the volunteer it is closed if it did."""
    service_layer.queue_withdrawn(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_task_ended(uow, event: Event, settings: NotifySettings) -> None:
    """A task done or given back needs no more reminders."""
    service_layer.cancel_reminders(uow, event.payload.offer_id)


def on_reply_unresolved(uow, event: Event, settings: NotifySettings) -> None:
    """Answer an SMS matching could not act on."""
    service_layer.queue_answer(uow, event.payload, event.event_id, event.correlation_id, utcnow(), settings)


def on_reply_answered(uow, event: Event, settings: NotifySettings) -> None:
    """Text a volunteer the answer to their MY, AWAY or HOURS, and anyone the link for JOIN."""
    service_layer.queue_own_view(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_applicant_applied(uow, event: Event, settings: NotifySettings) -> None:
    """Acknowledge an application to volunteer by SMS."""
    service_layer.queue_acknowledgement(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_training_invited(uow, event: Event, settings: NotifySettings) -> None:
    """Text someone their invitation to a training session."""
    service_layer.queue_invitation(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_training_answered(uow, event: Event, settings: NotifySettings) -> None:
    """Answer a YES or NO to a training invitation: booked, on the waiting list, or noted."""
    service_layer.queue_training_answer(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_check_expiring(uow, event: Event, settings: NotifySettings) -> None:
    """Remind the volunteer that a check runs out soon."""
    service_layer.queue_expiry_reminder(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_visit_overdue(uow, event: Event, settings: NotifySettings) -> None:
    """Remind a befriending volunteer that a visit is overdue."""
    service_layer.queue_visit_overdue(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_befriending_ended(uow, event: Event, settings: NotifySettings) -> None:
    """Thank the volunteer of a befriending match that ended."""
    service_layer.queue_befriending_thanks(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_wellbeing_prompted(uow, event: Event, settings: NotifySettings) -> None:
    """Ask a volunteer how they are finding volunteering (their wellbeing check-in)."""
    service_layer.queue_wellbeing_prompt(uow, event.payload, event.correlation_id, utcnow(), settings)


def on_person_erased(uow, event: Event, settings: NotifySettings) -> None:
    """A person was erased: the texts about their requests go."""
    service_layer.erase_about(uow, event.payload, utcnow())


def on_survey_question(uow, event: Event, settings: NotifySettings) -> None:
    """Text a person their survey's next question (and, after the first, its one reminder later)."""
    service_layer.queue_survey_question(uow, event.payload, event.correlation_id, utcnow(), settings)


HANDLERS = {"offer.made": on_offer_made, "offer.accepted": on_offer_accepted, "task.details_shared": on_details_shared,
            "person.death_shared": on_person_died,
            "offer.withdrawn": on_offer_withdrawn, "task.completed": on_task_ended, "task.given_back": on_task_ended,
            "reply.unresolved": on_reply_unresolved, "reply.answered": on_reply_answered,
            "volunteer.check_expiring": on_check_expiring, "befriending.visit_overdue": on_visit_overdue,
            "befriending.ended": on_befriending_ended, "applicant.applied": on_applicant_applied,
            "person.erased": on_person_erased, "wellbeing.prompted": on_wellbeing_prompted,
            "training.invited": on_training_invited, "training.answered": on_training_answered,
            "survey.question": on_survey_question,
            "token.revoked": revocations.handle}


def bound(settings: NotifySettings) -> dict[str, Callable]:
    """HANDLERS as the worker calls them, `handler(uow, event)`, with these settings."""
    return {event_type: (lambda uow, event, handler=handler: handler(uow, event, settings))
            for event_type, handler in HANDLERS.items()}
