import uuid

import pytest

from shared.contracts import EVENTS, EXAMPLES, ValidationError, load_event, make_event
from shared import topology


@pytest.mark.parametrize("key", sorted(EVENTS))
def test_every_event_has_an_example_that_round_trips(key):
    event_type, version = key
    envelope = make_event(event_type, EXAMPLES[key], version=version)
    event = load_event(envelope)
    assert (event.type, event.version, event.producer) == (event_type, version, EVENTS[key].producer)
    assert EVENTS[key].schema().dump(event.payload) == EVENTS[key].schema().dump(
        EVENTS[key].schema().load(EXAMPLES[key]))


def test_producers_refuse_unknown_and_missing_fields():
    example = dict(EXAMPLES[("request.matched", 1)])
    with pytest.raises(ValidationError) as unknown:
        make_event("request.matched", {**example, "requester_name": "Pat"})
    assert "requester_name" in unknown.value.messages
    del example["offer_id"]
    with pytest.raises(ValidationError) as missing:
        make_event("request.matched", example)
    assert "offer_id" in missing.value.messages


def test_consumers_ignore_unknown_fields_in_envelope_and_payload():
    envelope = make_event("request.unmatched", EXAMPLES[("request.unmatched", 1)])
    envelope["added_later"] = 1
    envelope["payload"]["also_added_later"] = "x"
    event = load_event(envelope)
    assert "also_added_later" not in event.payload


def test_an_unknown_event_type_or_bad_payload_is_a_validation_error_naming_it():
    envelope = make_event("request.unmatched", EXAMPLES[("request.unmatched", 1)])
    with pytest.raises(ValidationError) as unknown:
        load_event({**envelope, "type": "request.vanished"})
    assert "type" in unknown.value.messages
    with pytest.raises(ValidationError) as bad:
        load_event({**envelope, "payload": {"request_id": "not-a-uuid", "reason": "x"}})
    assert "request_id" in bad.value.messages["payload"]
    with pytest.raises(ValidationError):
        load_event("not a dict")


def test_make_event_accepts_python_values_and_sets_the_envelope():
    request_id = uuid.uuid4()
    envelope = make_event("request.unmatched", {"request_id": request_id, "reason": "nobody"},
                          correlation_id="corr-1")
    assert envelope["payload"]["request_id"] == str(request_id)
    assert envelope["correlation_id"] == "corr-1"
    assert uuid.UUID(envelope["event_id"])


def test_every_event_is_bound_to_a_queue_of_each_consumer_that_handles_it():
    from services.intake.handlers import HANDLERS as intake
    from services.matching.handlers import HANDLERS as matching
    from services.metrics.handlers import HANDLERS as metrics
    from services.notify.handlers import HANDLERS as notify

    for consumer, handlers in {"intake": intake, "matching": matching, "notify": notify, "metrics": metrics}.items():
        bound = {b.routing_key for q in topology.QUEUES[consumer] for b in q.bindings
                 if b.exchange.name.endswith(".events")}
        assert bound == set(handlers), consumer
    assert all(q.durable for qs in topology.QUEUES.values() for q in qs)
