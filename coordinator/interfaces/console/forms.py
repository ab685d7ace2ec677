"""An approval form generated from the gate's JSON schema, and the submitted form read back.

Flat object schemas become fields (string, number, integer, boolean, enum); anything else is one
JSON text area. What the form sends is checked by the gate's schema in the one resume path, so
the form is a convenience, never the check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SIMPLE = {"string", "number", "integer", "boolean"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # string | number | integer | boolean | enum
    required: bool
    choices: tuple[str, ...] = ()
    description: str = ""


def fields_of(schema: dict[str, Any] | None) -> list[Field] | None:
    """The form's fields, or None when the schema needs the JSON text area."""
    if schema is None:
        return []
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict):
        return None
    required = set(schema.get("required", []))
    fields = []
    for name, spec in properties.items():
        if not isinstance(spec, dict):
            return None
        if "enum" in spec and all(isinstance(choice, str) for choice in spec["enum"]):
            fields.append(Field(name, "enum", name in required, tuple(spec["enum"]), spec.get("description", "")))
        elif spec.get("type") in _SIMPLE:
            fields.append(Field(name, spec["type"], name in required, (), spec.get("description", "")))
        else:
            return None
    return fields


def data_from_form(schema: dict[str, Any] | None, form: dict[str, str]) -> Any:
    """The decision's ``data`` from the submitted form (values typed as the schema says; a value
    that cannot be typed is passed on as text, for the schema check to name)."""
    fields = fields_of(schema)
    if fields is None:
        raw = form.get("data_json", "").strip()
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return raw  # the schema check reports it (a string where an object is expected)
    if not fields:
        return None
    data: dict[str, Any] = {}
    for field in fields:
        value = form.get(f"field_{field.name}")
        if field.kind == "boolean":
            data[field.name] = value == "on"
        elif value is None or value == "":
            continue
        elif field.kind in ("number", "integer"):
            data[field.name] = _number(value, field.kind)
        else:
            data[field.name] = value
    return data


def _number(value: str, kind: str) -> Any:
    try:
        return int(value) if kind == "integer" else float(value)
    except ValueError:
        return value
