"""Event payloads and the JSON Schemas they are checked against.

A payload is a JSON object of at most ``MAX_PAYLOAD_BYTES``, nested at most ``MAX_DEPTH``
levels: deeper documents broke serialisation ("Recursion limit reached") and recursive
validation, where they belong to no real event.

A payload schema is written by a manager and applied to every event of its type, in the API's
event loop, so it is hostile input as well. When it is saved (:func:`check_payload_schema`):

- every ``$ref`` and ``$dynamicRef`` must be local (``#...``): a remote one made jsonschema
  fetch the URL, from inside the network, on every event. Validators are moreover built on a
  registry that retrieves nothing, so a schema stored before this check cannot make a request.
- every regular expression (``pattern``, the keys of ``patternProperties``) must compile
  with RE2, and is matched with RE2: matching time is linear in the input, where Python's
  backtracking engine took seconds on ``^(a+)+$`` and 24 characters. RE2 has no
  backreferences and no lookaround; those are refused when the schema is saved.
  ``unevaluatedProperties`` next to ``patternProperties`` is refused as well: jsonschema
  evaluates that pair with Python's engine. ``format`` is an annotation here (no format
  assertion), so ``format: regex`` compiles nothing at validation time.
- it is at most ``MAX_SCHEMA_BYTES`` and ``MAX_DEPTH`` levels deep.

A stored schema that no longer passes these checks refuses every payload with a typed error
naming the reason, until the type is saved again.
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import re2
from jsonschema import Draft202012Validator, SchemaError
from jsonschema import ValidationError as SchemaValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry
from referencing.exceptions import Unresolvable

from backend.errors import ValidationError

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_SCHEMA_BYTES = 64 * 1024
MAX_DEPTH = 64

# Keywords whose values are data, not schemas: a "$ref" or "pattern" inside them means nothing.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _depth_exceeds(value: Any, limit: int, serialized: bytes | None = None) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep (iteratively: a deep value
    must not exhaust the stack that checks it)."""
    if serialized is not None and serialized.count(b"{") + serialized.count(b"[") <= limit:
        return False  # cannot nest deeper than it has containers
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _serialize(value: Any, *, what: str, field: str, max_bytes: int) -> bytes:
    def deep() -> ValidationError:
        return ValidationError(f"{what} is nested more than {MAX_DEPTH} levels deep", field=field)

    try:
        serialized = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        if _depth_exceeds(value, MAX_DEPTH):
            raise deep() from exc
        raise ValidationError(f"{what} is not JSON: {exc}", field=field) from exc
    if len(serialized) > max_bytes:
        raise ValidationError(f"{what} is larger than {max_bytes} bytes", field=field)
    if _depth_exceeds(value, MAX_DEPTH, serialized):
        raise deep()
    return serialized


def check_payload(payload: Any, *, field: str) -> dict[str, Any]:
    """The payload (``{}`` for none), or a ValidationError on ``field``: a JSON object of at
    most ``MAX_PAYLOAD_BYTES``, nested at most ``MAX_DEPTH`` levels."""
    payload = {} if payload is None else payload
    if not isinstance(payload, dict):
        raise ValidationError("The payload must be a JSON object", field=field)
    _serialize(payload, what="The payload", field=field, max_bytes=MAX_PAYLOAD_BYTES)
    return payload


# --- regular expressions: RE2 ---------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _search(pattern: str, text: str) -> bool:
    return _regex(pattern).search(text) is not None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        shown = reprlib.repr(instance)
        yield SchemaValidationError(f"{shown} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, pattern_properties: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for name, value in instance.items():
            if _search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        name
        for name in instance
        if name not in properties and not any(_search(p, name) for p in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        names = ", ".join(repr(name) for name in sorted(extras))
        verb = "was" if len(extras) == 1 else "were"
        yield SchemaValidationError(
            f"Additional properties are not allowed ({names} {verb} unexpected)"
        )


# Draft 2020-12 with every regular expression matched by RE2.
_PayloadValidator = extend(
    Draft202012Validator,
    validators={
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)


# --- schemas ---------------------------------------------------------------------------------


def _walk_schema(schema: Any) -> Iterator[tuple[str, Any]]:
    """Every (keyword, value) of ``schema`` and its subschemas, data keywords left out."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                yield key, value
                if key not in _DATA_KEYWORDS:
                    stack.append(value)


def _unsafe(schema: Any) -> str | None:
    """Why ``schema`` may not be used as a payload schema (beyond the metaschema), or None."""
    keywords: set[str] = set()
    for key, value in _walk_schema(schema):
        keywords.add(key)
        if key in ("$ref", "$dynamicRef") and isinstance(value, str) and not value.startswith("#"):
            return (
                f"{key} '{value[:200]}' is not local: only references within the schema "
                "('#/...') are allowed"
            )
        patterns: list[Any] = []
        if key == "pattern" and isinstance(value, str):
            patterns = [value]
        elif key == "patternProperties" and isinstance(value, dict):
            patterns = list(value)
        for pattern in patterns:
            try:
                _regex(pattern)
            except re2.error as exc:
                reason = exc.args[0].decode(errors="replace") if exc.args else "unsupported"
                return (
                    f"the regular expression '{pattern[:200]}' is not supported ({reason}): "
                    "patterns are matched in linear time, without backreferences or lookaround"
                )
    if {"patternProperties", "unevaluatedProperties"} <= keywords:
        return "patternProperties cannot be combined with unevaluatedProperties"
    return None


def check_payload_schema(schema: Any, *, field: str = "payloadSchema") -> dict[str, Any]:
    """A payload schema as it may be stored, or a ValidationError on ``field``."""
    if not isinstance(schema, dict):
        raise ValidationError("payloadSchema must be a JSON Schema object", field=field)
    _serialize(schema, what="payloadSchema", field=field, max_bytes=MAX_SCHEMA_BYTES)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValidationError(
            f"payloadSchema is not a valid JSON Schema: {exc.message}", field=field
        ) from exc
    reason = _unsafe(schema)
    if reason is None:
        try:
            # A reference that leads back to itself loops on any payload: {"$ref": "#"}.
            next(_PayloadValidator(schema, registry=Registry()).iter_errors({}), None)
        except RecursionError:
            reason = "its references loop"
    if reason is not None:
        raise ValidationError(f"payloadSchema: {reason}", field=field)
    return schema


def _path(error_path: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error_path)
    return "payload" + parts


@dataclass(frozen=True, slots=True)
class PayloadValidator:
    """Checks payloads against one stored schema; built once per rule (see RuleCache)."""

    validator: Validator | None  # None (with no refusal): the schema accepts every object
    refusal: str | None = None  # why the stored schema itself is no longer accepted

    def check(self, payload: dict[str, Any], *, prefix: str = "") -> None:
        """Raise a ValidationError naming the first offending path of ``payload``."""
        if self.refusal is not None:
            raise ValidationError(
                f"The event type's payloadSchema is refused ({self.refusal}); "
                "register the type again with a schema that passes",
                field=f"{prefix}payload",
            )
        if self.validator is None:
            return
        try:
            errors = sorted(self.validator.iter_errors(payload), key=lambda e: e.path)
        except (Unresolvable, RecursionError) as exc:
            reason = (
                "a $ref cannot be resolved"
                if isinstance(exc, Unresolvable)
                else ("its references loop")
            )
            raise ValidationError(
                f"The event type's payloadSchema cannot be applied: {reason}",
                field=f"{prefix}payload",
            ) from exc
        if errors:
            path = _path(errors[0].absolute_path)
            raise ValidationError(f"{path}: {errors[0].message}", field=f"{prefix}{path}")


def payload_validator(schema: dict[str, Any]) -> PayloadValidator:
    """The validator for a stored schema: RE2 for regular expressions, no remote retrieval."""
    try:
        check_payload_schema(schema)
    except ValidationError as exc:
        return PayloadValidator(validator=None, refusal=exc.message)
    if schema.get("type") == "object" and schema.keys() <= _ANY_OBJECT_KEYWORDS:
        # What check_payload already holds every payload to (the built-in types' schema):
        # jsonschema's walk would only say yes, at 2% of a sendEvent's CPU.
        return PayloadValidator(validator=None)
    return PayloadValidator(validator=_PayloadValidator(schema, registry=Registry()))


# "type": "object" and annotations, which assert nothing.
_ANY_OBJECT_KEYWORDS = {"type", "title", "description", "$comment", "examples"}
