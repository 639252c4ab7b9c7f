"""Event contracts: the envelope every event shares, and each event as a type.

Each producer declares its events in its own module here (`intake.py`, `matching.py`, `notify.py`, `metrics.py`): a
frozen dataclass per event and version, registered with `@contract`, with an example. The marshmallow schema that checks
the wire format is made from the dataclass, so the two cannot drift. A producer builds the type
(`RequestCancelled(request_id=..., reason=...)`, unknown fields are a TypeError) and `make_event` dumps it
strictly; a consumer gets it back from `load_event`, which drops fields it does not know. Reading a field the
contract does not declare is an AttributeError (or KeyError), never a silent None.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, ClassVar

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load

from shared import clock

__all__ = ["Event", "EventPayload", "ValidationError", "EVENTS", "EXAMPLES", "contract", "part", "rule",
           "make_event", "load_event"]


class EventPayload:
    """Base of every event type: the fields of its payload, and what the registry knows of it."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    PRODUCER: ClassVar[str]
    EXAMPLE: ClassVar[dict[str, Any]]
    schema: ClassVar[type[Schema]]

    @classmethod
    @functools.cache
    def field_names(cls) -> frozenset[str]:
        """The fields this contract declares (worked out once per contract)."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    # Mapping-style reads, for code that treats a payload as a dict; an undeclared name is an error, not None.
    def __getitem__(self, name: str) -> Any:
        if name not in self.field_names():
            raise KeyError(f"{self.TYPE} v{self.VERSION} has no field {name!r}")
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        """A declared field's value (or `default` where it is None); KeyError for a field the contract lacks."""
        value = self[name]
        return default if value is None else value

    def __contains__(self, name: str) -> bool:
        return name in self.field_names()

    def as_dict(self) -> dict[str, Any]:
        """The payload's fields and values (Python values, not wire strings)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


EVENTS: dict[tuple[str, int], type[EventPayload]] = {}
EXAMPLES: dict[tuple[str, int], dict[str, Any]] = {}


def rule(validator: Callable | None = None, *, default: Any = dataclasses.MISSING,
         default_factory: Any = dataclasses.MISSING, description: str = "") -> Any:
    """A dataclass field with a marshmallow validator (e.g. `rule(validate.OneOf(KINDS))`)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"validate": validator, "description": description})


_SIMPLE: dict[Any, type[fields.Field]] = {
    uuid.UUID: fields.UUID, str: fields.String, int: fields.Integer, float: fields.Float, bool: fields.Boolean,
    datetime: fields.AwareDateTime, date: fields.Date,
}


def _field_for(hint: Any, spec: dataclasses.Field) -> fields.Field:
    """The marshmallow field for one dataclass field: its type, whether None is allowed, its default and rule."""
    allow_none = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        allow_none, hint = True, args[0]
        origin = typing.get_origin(hint)
    options: dict[str, Any] = {"allow_none": allow_none}
    if spec.metadata.get("validate"):
        options["validate"] = spec.metadata["validate"]
    if spec.metadata.get("description"):
        options["metadata"] = {"description": spec.metadata["description"]}
    if spec.default is not dataclasses.MISSING:
        options["load_default"] = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        options["load_default"] = spec.default_factory
    else:
        options["required"] = True
    if origin is list:
        (inner,) = typing.get_args(hint)
        if getattr(inner, "part_schema", None) is not None:
            return fields.List(fields.Nested(inner.part_schema), **options)
        return fields.List(_SIMPLE[inner](), **options)
    if hint is int:
        options["strict"] = True
    return _SIMPLE[hint](**options)


class _PayloadSchema(Schema):
    """Base of every payload's schema: a consumer drops the fields it does not know."""

    class Meta:
        unknown = EXCLUDE


def part(cls):
    """A frozen dataclass that an event carries a list of (`tasks: list[TaskLine]`), with its own schema: loaded
    back as the dataclass; like a payload, a consumer drops the fields it does not know."""
    cls = dataclass(frozen=True, kw_only=True)(cls)
    hints = typing.get_type_hints(cls)
    declared = {spec.name: _field_for(hints[spec.name], spec) for spec in dataclasses.fields(cls)}
    declared["_make"] = post_load(lambda self, data, **kwargs: cls(**data))
    cls.part_schema = type(f"{cls.__name__}Schema", (_PayloadSchema,), declared)
    return cls


def contract(event_type: str, version: int = 1, *, example: dict[str, Any]):
    """Register a dataclass as the payload of `event_type` at `version`, produced by the module's service."""

    def register(cls):
        cls = dataclass(frozen=True, kw_only=True)(cls)
        hints = typing.get_type_hints(cls)
        declared = {spec.name: _field_for(hints[spec.name], spec) for spec in dataclasses.fields(cls)}
        schema = _PayloadSchema.from_dict(declared, name=f"{cls.__name__}Schema")
        cls.TYPE, cls.VERSION, cls.PRODUCER = event_type, version, cls.__module__.rsplit(".", 1)[-1]
        cls.EXAMPLE, cls.schema = example, schema
        if (event_type, version) in EVENTS:
            raise ValueError(f"{event_type} v{version} is declared twice")
        EVENTS[(event_type, version)] = cls
        EXAMPLES[(event_type, version)] = example
        return cls

    return register


@dataclass(frozen=True)
class Event:
    """An event as a consumer sees it: the envelope fields and the payload, as its type."""

    event_id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    producer: str
    correlation_id: str
    payload: EventPayload
    traceparent: str | None = None  # the W3C trace context of the span that published it (shared/tracing.py)
    tracestate: str | None = None


class Envelope(Schema):
    """The wire format every event shares."""

    class Meta:
        unknown = EXCLUDE

    event_id = fields.UUID(required=True)
    type = fields.Str(required=True)
    version = fields.Int(required=True, strict=True)
    occurred_at = fields.AwareDateTime(required=True)
    producer = fields.Str(required=True)
    correlation_id = fields.Str(required=True)
    payload = fields.Dict(required=True)
    # W3C trace context, present only while tracing is on; a consumer that does not trace ignores it, and one
    # that does ignores a malformed one (it never costs an event).
    traceparent = fields.Str()
    tracestate = fields.Str()


ENVELOPE = Envelope()  # made once (a schema keeps nothing between loads and dumps)


def build(event_type: str, payload: dict[str, Any], version: int = 1) -> EventPayload:
    """The typed payload of an event given as a type name and a dict (ValidationError naming a bad field)."""
    cls = EVENTS[(event_type, version)]
    unknown = set(payload) - cls.field_names()
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    return cls(**strict_schema(cls).load({key: _wire(value) for key, value in payload.items()}))


@functools.cache
def strict_schema(cls: type[EventPayload]) -> Schema:
    """A contract's schema that refuses unknown fields, made once: marshmallow copies every field into each schema
    it makes, which cost a create as much as its SQL. (A schema holds no state between loads and dumps.)"""
    return cls.schema(unknown=RAISE)


@functools.cache
def loading_schema(cls: type[EventPayload]) -> Schema:
    """A contract's schema as a consumer loads with it (dropping fields it does not know), made once."""
    return cls.schema()


def make_event(event: EventPayload | str, payload: dict[str, Any] | None = None, *,
               correlation_id: str | None = None, version: int = 1,
               trace_context: dict[str, str] | None = None) -> dict[str, Any]:
    """A wire-ready envelope for a typed event (or a type name and payload), checked strictly against its contract;
    `trace_context` (`traceparent`, `tracestate`) is the span it continues, when tracing is on."""
    if isinstance(event, str):
        event = build(event, payload or {}, version)
    schema = strict_schema(type(event))
    wire = schema.dump(event)
    schema.load(wire)  # the rules (kinds, ranges, formats) hold for what goes out, not only what comes in
    event_id = str(uuid.uuid4())
    return {  # as ENVELOPE.dump would write it, without its cost: every field here is made, not given
        "event_id": event_id,
        "type": event.TYPE,
        "version": event.VERSION,
        "occurred_at": clock.utcnow().isoformat(),
        "producer": event.PRODUCER,
        "correlation_id": correlation_id or event_id,
        "payload": wire,
        **{key: str(value) for key, value in (trace_context or {}).items() if key in ("traceparent", "tracestate")},
    }


def load_event(body: Any) -> Event:
    """Read an envelope and its payload as its type; raises ValidationError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["event body is not a JSON object"]})
    envelope = ENVELOPE.load(body)
    cls = EVENTS.get((envelope["type"], envelope["version"]))
    if cls is None:
        raise ValidationError({"type": [f"unknown event {envelope['type']} v{envelope['version']}"]})
    try:
        payload = cls(**loading_schema(cls).load(envelope["payload"]))
    except ValidationError as err:
        raise ValidationError({"payload": err.messages}) from err
    return Event(payload=payload, **{k: v for k, v in envelope.items() if k != "payload"})


def _wire(value: Any) -> Any:
    """A payload value as it travels: UUIDs, dates and datetimes as strings."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


# The producers' modules register their events on import.
from shared.contracts import intake, matching, metrics, notify  # noqa: E402,F401
