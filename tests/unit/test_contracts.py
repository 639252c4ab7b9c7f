import uuid

import pytest

from shared.contracts import EVENTS, EXAMPLES, ValidationError, load_event, make_event
from shared import topology


@pytest.mark.parametrize("key", sorted(EVENTS))
def test_every_event_has_an_example_that_round_trips(key):
    event_type, version = key
    envelope = make_event(event_type, EXAMPLES[key], version=version)
    event = load_event(envelope)
    assert (event.type, event.version, event.producer) == (event_type, version, EVENTS[key].PRODUCER)
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
    from importlib import import_module

    from shared.service import registry

    for consumer, definition in registry().items():
        handlers = import_module(f"{definition.package}.entrypoints.handlers").HANDLERS
        bound = {b.routing_key for q in topology.QUEUES[consumer] for b in q.bindings
                 if b.exchange.name.endswith(".events")}
        assert bound == set(handlers), consumer
    assert all(q.durable for qs in topology.QUEUES.values() for q in qs)


def test_reading_a_field_the_contract_does_not_declare_fails_loudly():
    """A consumer that reads an undeclared field gets an error, never a silent None (how drift was hidden)."""
    payload = load_event(make_event("offer.withdrawn", EXAMPLES[("offer.withdrawn", 1)])).payload
    assert payload.community == "fylde-coast"
    with pytest.raises(AttributeError):
        payload.quiet_hours
    with pytest.raises(KeyError):
        payload["quiet_hours"]
    with pytest.raises(KeyError):
        payload.get("quiet_hours")


def consumer_modules():
    """Every module of every service that handles events or runs use cases on them."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "services"
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


def undeclared_reads(path) -> list[str]:
    """`param.field` reads in `path` where `param` is annotated with an event type that lacks `field`."""
    import ast

    from shared.contracts import EventPayload

    types = {cls.__name__: cls for cls in EVENTS.values()}
    allowed = {name for name in dir(EventPayload) if not name.startswith("__")}
    problems = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        typed = {}
        for arg in function.args.args + function.args.kwonlyargs:
            nodes = list(ast.walk(arg.annotation)) if arg.annotation is not None else []
            names = {n.id for n in nodes if isinstance(n, ast.Name)} | {n.attr for n in nodes if isinstance(
                n, ast.Attribute)} | {n.value for n in nodes if isinstance(n, ast.Constant)}
            found = [types[n] for n in names if isinstance(n, str) and n in types]
            if found:
                typed[arg.arg] = found
        for node in ast.walk(function):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in typed:
                if not all(node.attr in cls.field_names() or node.attr in allowed for cls in typed[node.value.id]):
                    problems.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return problems


def test_no_consumer_reads_a_field_its_event_type_does_not_declare():
    """Wherever a function takes an event payload by its type, every field it reads is one the type declares."""
    problems = [p for path in consumer_modules() for p in undeclared_reads(path)]
    assert problems == []


def test_the_field_check_catches_the_drift_it_was_written_for(tmp_path):
    """notify once read `community` from offer.withdrawn, whose contract lacked it: the check names such a read."""
    code = tmp_path / "handler.py"
    code.write_text("def on_withdrawn(uow, p: RequestCancelled):\n    return p.community\n")
    assert undeclared_reads(code) == ["handler.py:2 p.community"]
