"""Every exchange, queue and binding on the bus, declared in one place.

Each producing service publishes on its own topic exchange, `<producer>.events`, with the event type as
routing key. Each consuming service has one durable queue per group of events it handles, named
`<consumer>.<producer>.<group>`, bound to exact routing keys. Every queue also has a binding on the
`retry` exchange (a message whose handler failed comes back through it) and its own dead-letter queue on the
`dead-letter` exchange. Every process declares all of it at start-up.

A message that must wait before it is tried again waits on RabbitMQ in a delay queue, one per wait
(`delay.5000ms`): it has no consumer, and after its time-to-live the broker moves the message to the `retry`
exchange with the routing key it was published with, its queue's name. (The filesystem transport has no
time-to-live; shared/bus.py keeps its waiting messages in a folder.)
"""

from __future__ import annotations

import os

from kombu import Connection, Exchange, Queue, binding

from shared.contracts import EVENTS

# `CCS_QUEUE_TYPE=quorum` declares every queue as a RabbitMQ quorum queue (replicated across the cluster's nodes;
# deploy/kubernetes sets it). A queue's type is fixed when it is first declared: an existing deployment keeps its
# classic queues unless they are drained and deleted first. Read here, once, because every process's queues must
# agree with what was declared.
QUEUE_TYPE = os.environ.get("CCS_QUEUE_TYPE", "classic").strip() or "classic"
if QUEUE_TYPE not in ("classic", "quorum"):
    raise ValueError(f"CCS_QUEUE_TYPE must be classic or quorum, not {QUEUE_TYPE!r}")
QUEUE_ARGUMENTS = {"x-queue-type": QUEUE_TYPE} if QUEUE_TYPE == "quorum" else {}

PRODUCERS = sorted({contract.PRODUCER for contract in EVENTS.values()})
EXCHANGES: dict[str, Exchange] = {
    producer: Exchange(f"{producer}.events", type="topic", durable=True) for producer in PRODUCERS
}
RETRY = Exchange("retry", type="direct", durable=True)
DEAD_LETTER = Exchange("dead-letter", type="direct", durable=True)

# Events that carry a person's details, or words about them: only the service that must act on them hears them, never
# metrics. A volunteer's text (sms.received: matching's) may be a concern about the person; concern.raised carries it
# to intake alone.
# A survey's question (a phone) and its answer (tied to a survey, so to a person) go between intake and notify alone;
# metrics counts survey.answer_recorded, which ties an answer to no one.
PERSONAL = {"task.details_shared", "person.death_shared", "sms.received", "concern.raised", "training.invited",
            "training.answered", "survey.question", "survey.answered"}
# Events every other service applies itself, each on a queue of its own (so a backlog of others cannot delay them):
# a revoked token is refused by every service.
EVERY_SERVICE = {"token.revoked"}
# A person's erasure: each service that holds something of theirs removes it, on a queue of its own; metrics holds
# nothing of anyone, and keeps its counts.
ERASURES = {"person.erased"}

# consumer -> {group name: (producer, [event types])}
SUBSCRIPTIONS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "intake": {
        "outcomes": ("matching", ["offer.made", "offer.accepted", "offer.withdrawn", "request.matched",
                                  "request.unmatched", "task.completed", "task.given_back",
                                  "task.volunteer_opted_out", "offer.answer_due", "befriending.started",
                                  "befriending.visit_overdue", "befriending.visit_logged", "befriending.ended"]),
        "texts": ("notify", ["sms.held", "sms.waiting"]),
        "concerns": ("matching", ["concern.raised"]),
        "applicants": ("matching", ["applicants.waiting"]),
        "surveys": ("notify", ["survey.answered", "contact.opted_out"]),
    },
    "matching": {
        "requests": ("intake", ["request.submitted", "request.updated", "request.cancelled",
                                 "request.signposted", "person.died"]),
        "replies": ("notify", ["sms.received", "sms.sent", "sms.failed", "contact.opted_out", "contact.opted_in",
                               "contact.invalid"]),
        "tokens": ("intake", sorted(EVERY_SERVICE)),
        "erasures": ("intake", sorted(ERASURES)),
        "contributions": ("metrics", ["activity.logged"]),
    },
    "notify": {
        "offers": ("matching", ["offer.made", "offer.accepted", "offer.withdrawn", "volunteer.check_expiring",
                                "reply.unresolved", "reply.answered", "task.completed", "task.given_back",
                                "befriending.visit_overdue", "befriending.ended", "applicant.applied",
                                "training.invited", "training.answered", "wellbeing.prompted"]),
        "details": ("intake", ["task.details_shared", "person.death_shared"]),
        "surveys": ("intake", ["survey.question"]),
        "tokens": ("intake", sorted(EVERY_SERVICE)),
        "erasures": ("intake", sorted(ERASURES)),
    },
    "metrics": {
        **{f"{producer}-all": (producer, sorted({c.TYPE for c in EVENTS.values() if c.PRODUCER == producer
                                                 and c.TYPE not in PERSONAL | EVERY_SERVICE | ERASURES}))
           for producer in PRODUCERS if producer != "metrics"},  # its own events it counts as it logs them
        "tokens": ("intake", sorted(EVERY_SERVICE)),
    },
}


def _queue(consumer: str, group: str, producer: str, event_types: list[str]) -> Queue:
    name = f"{consumer}.{producer}.{group.removeprefix(producer + '-')}"
    bindings = [binding(EXCHANGES[producer], routing_key=event_type) for event_type in event_types]
    bindings.append(binding(RETRY, routing_key=name))
    return Queue(name, bindings=bindings, durable=True, queue_arguments=dict(QUEUE_ARGUMENTS))


QUEUES: dict[str, list[Queue]] = {
    consumer: [_queue(consumer, group, producer, types) for group, (producer, types) in groups.items()]
    for consumer, groups in SUBSCRIPTIONS.items()
}


def dead_letter_queue(queue_name: str) -> Queue:
    """The queue that keeps what `queue_name` could not handle, with the reason in its headers."""
    return Queue(f"{queue_name}.dead", exchange=DEAD_LETTER, routing_key=queue_name, durable=True,
                 queue_arguments=dict(QUEUE_ARGUMENTS))


DEAD_LETTER_QUEUES: list[Queue] = [dead_letter_queue(q.name) for qs in QUEUES.values() for q in qs]


def delay_exchange(seconds: float) -> Exchange:
    """Where a message waits `seconds` before it goes back to its queue (RabbitMQ)."""
    return Exchange(f"delay.{round(seconds * 1000)}ms", type="fanout", durable=True)


def delay_queue(seconds: float) -> Queue:
    """The queue behind a delay exchange: no consumer; what expires goes to `retry`, keeping its routing key."""
    exchange = delay_exchange(seconds)
    # a quorum queue dead-letters at most once unless told otherwise: a message whose wait is over must not be
    # dropped if its queue cannot take it at that moment
    safely = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"} if QUEUE_ARGUMENTS else {}
    return Queue(exchange.name, exchange=exchange, durable=True, queue_arguments={
        **QUEUE_ARGUMENTS, **safely, "x-message-ttl": round(seconds * 1000), "x-dead-letter-exchange": RETRY.name})


def declare_all(connection: Connection, delays: tuple[float, ...] = ()) -> None:
    """Declare every exchange, queue and binding, and a delay queue for each of `delays` (idempotent; every
    process calls it at start-up)."""
    channel = connection.default_channel
    for exchange in [*EXCHANGES.values(), RETRY, DEAD_LETTER]:
        exchange(channel).declare()
    for queue in [q for qs in QUEUES.values() for q in qs] + DEAD_LETTER_QUEUES:
        queue(channel).declare()
    for seconds in delays:
        delay_queue(seconds)(channel).declare()
