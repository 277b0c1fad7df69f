"""Event payload schemas: a schema that asserts nothing beyond "an object" skips jsonschema's
walk (every payload is already an object); any other keyword still checks."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from backend.errors import ValidationError
from backend.services.payloads import payload_validator

PAYLOADS = [{}, {"a": 1}, {"a": "x", "b": [1, {"c": None}]}, {"nested": {"deep": True}}]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"type": "object", "title": "Signup", "description": "d", "$comment": "c"},
        {"type": "object", "examples": [{"a": 1}]},
    ],
)
def test_a_schema_that_only_says_object_accepts_every_payload(schema):
    validator = payload_validator(schema)
    for payload in PAYLOADS:
        assert Draft202012Validator(schema).is_valid(payload)
        validator.check(payload)


@pytest.mark.parametrize(
    ("schema", "refused", "message"),
    [
        ({"type": "object", "required": ["a"]}, {}, "payload: 'a' is a required property"),
        ({"type": "object", "additionalProperties": False}, {"a": 1}, "payload: Additional"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"a": 1},
            "payload.a: 1 is not of type 'string'",
        ),
        (
            {"type": "object", "maxProperties": 0},
            {"a": 1},
            "payload: {'a': 1} is expected to be empty",
        ),
        ({"type": "object", "not": {"required": ["a"]}}, {"a": 1}, "payload: {'a': 1} should not"),
        ({"type": "array"}, {}, "payload: {} is not of type 'array'"),
    ],
)
def test_any_other_keyword_still_checks(schema, refused, message):
    with pytest.raises(ValidationError) as caught:
        payload_validator(schema).check(refused)
    assert caught.value.message.startswith(message)
    assert not Draft202012Validator(schema).is_valid(refused)
