"""Form errors as a person reads them: marshmallow's messages in plain words, one per field, named by label."""

from __future__ import annotations

import pytest
from marshmallow import Schema, ValidationError, fields, validate

from shared.web import FormErrors, plain


class Sample(Schema):
    name = fields.Str(required=True)
    km = fields.Float(required=True, validate=validate.Range(min=0, max=200, min_inclusive=False))
    skills = fields.List(fields.Str(), required=True, validate=validate.Length(min=1))
    checks = fields.List(fields.Nested(Schema.from_dict({"done_on": fields.Date(required=True)})))


@pytest.mark.parametrize("message, words", [
    ("Missing data for required field.", "Name is needed."),
    ("Not a valid number.", "Name must be a number."),
    ("Not a valid date.", "Name must be a date."),
    ("Shorter than minimum length 1.", "Choose at least one."),
    ("Must be one of: a, b.", "Choose one of the options."),
    ("Must be greater than 0 and less than or equal to 200.", "Name must be more than 0 and at most 200."),
    ("Longer than maximum length 200.", "Name can be at most 200 characters."),
    ("'12' is not a valid phone number.", "'12' is not a valid phone number."),  # already plain: kept
])
def test_stock_messages_are_put_in_plain_words(message, words):
    assert plain(message, "Name") == words


def test_every_problem_is_listed_once_by_label_with_the_id_of_its_field():
    with pytest.raises(ValidationError) as refused:
        Sample().load({"km": "far", "skills": [], "checks": [{"done_on": "soon"}]})
    errors = FormErrors(refused.value.messages, {"name": "Name", "km": "Travels up to (km)"},
                        rename=lambda field: field.replace("checks.0", "checks.safeguarding"))
    assert sorted((e["field"], e["id"], e["label"], e["detail"]) for e in errors) == sorted([
        ("name", "name", "Name", "Name is needed."),
        ("km", "km", "Travels up to (km)", "Travels up to (km) must be a number."),
        ("skills", "skills", "Skills", "Choose at least one."),
        ("checks.safeguarding.done_on", "checks-safeguarding-done_on", "Done on", "Done on must be a date."),
    ])
    assert "km" in errors and "nothing" not in errors and errors.of("skills") == "Choose at least one."
    assert len(errors.add("phone", "Mobile phone", "Another volunteer has this phone number.")) == 5
