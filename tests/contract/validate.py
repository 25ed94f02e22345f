"""Checks a Stripe JSON body against the schemas of ``sdk_schemas`` (the subset of JSON
Schema they use), naming every problem by its path, e.g.
``invoice.lines.data[0].pricing: required field missing``.

Which schema applies is read from the body itself, the way the SDK picks its classes: an
``error`` body, a deleted object, else the ``object`` field. A free dict (an event's
``data.object``, a list's items) that names a known ``object`` is checked as that object,
so expanded and nested objects are checked wherever they appear.
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract.sdk_schemas import SNAPSHOT

Schema = dict[str, Any]

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def load_snapshot() -> Schema:
    return json.loads(SNAPSHOT.read_text())


def _type_ok(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES[name])


def _free(schema: Schema) -> bool:
    """``{}`` (Any) or ``UntypedStripeObject[Any]``: nothing is known of the value."""
    return not schema or (
        schema.get("type") == "object"
        and "properties" not in schema
        and schema.get("additionalProperties") == {}
    )


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return f"object {value.get('object', '')}".strip()
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Validator:
    def __init__(self, document: Schema) -> None:
        self.document = document
        self.objects: dict[str, Schema] = document["objects"]

    def body_schema(self, body: Any) -> tuple[str, Schema] | None:
        """The name and schema that a top-level body (or an embedded object) claims."""
        if not isinstance(body, dict):
            return None
        if set(body) == {"error"}:
            return "error", self.objects["error"]
        if body.get("deleted") is True:
            return "deleted", self.objects["deleted"]
        kind = body.get("object")
        if isinstance(kind, str) and kind in self.objects:
            return kind, self.objects[kind]
        return None

    def check_body(self, body: Any) -> list[str]:
        """Every problem of one response body; an unknown body is one problem itself."""
        claimed = self.body_schema(body)
        if claimed is None:
            return [f"<body>: not a Stripe object we have a schema for: {_describe(body)}"]
        name, schema = claimed
        return self.check(body, schema, name)

    def resolve(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            schema = self.document["$defs"][schema["$ref"].removeprefix("#/$defs/")]
        return schema

    def check(self, value: Any, schema: Schema, path: str) -> list[str]:
        schema = self.resolve(schema)
        if _free(schema) and isinstance(value, dict):
            # Anything, or a free dict (an event's data.object); but a known embedded
            # object is checked as itself.
            claimed = self.body_schema(value)
            if claimed is not None:
                return self.check(value, claimed[1], path)
        if not schema:
            return []
        if "anyOf" in schema:
            return self.check_any(value, schema["anyOf"], path)
        if "const" in schema and value != schema["const"]:
            return [f"{path}: expected {schema['const']!r}, got {_describe(value)}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{path}: {_describe(value)} is not one of {schema['enum']}"]
        kinds = schema.get("type")
        if kinds is not None:
            names = [kinds] if isinstance(kinds, str) else kinds
            if not any(_type_ok(value, name) for name in names):
                return [f"{path}: expected {'|'.join(names)}, got {_describe(value)}"]
        if isinstance(value, list) and "items" in schema:
            problems: list[str] = []
            for index, item in enumerate(value):
                problems += self.check(item, schema["items"], f"{path}[{index}]")
            return problems
        if isinstance(value, dict):
            return self.check_object(value, schema, path)
        return []

    def check_object(self, value: dict[str, Any], schema: Schema, path: str) -> list[str]:
        problems: list[str] = []
        properties: dict[str, Schema] = schema.get("properties", {})
        title = schema.get("title", "this object")
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{path}.{name}: required field missing")
        extra = schema.get("additionalProperties", {})
        for name, item in value.items():
            if name in properties:
                problems += self.check(item, properties[name], f"{path}.{name}")
            elif extra is False:
                problems.append(f"{path}.{name}: not a field of {title} (unknown or removed)")
            else:
                problems += self.check(item, extra, f"{path}[{name!r}]")
        return problems

    def check_any(self, value: Any, options: list[Schema], path: str) -> list[str]:
        best: list[str] | None = None
        for option in options:
            problems = self.check(value, option, path)
            if not problems:
                return []
            resolved = self.resolve(option)
            same_kind = "type" in resolved and any(
                _type_ok(value, name)
                for name in ([resolved["type"]] if isinstance(resolved["type"], str) else [])
                + (resolved["type"] if isinstance(resolved["type"], list) else [])
            )
            if best is None or same_kind:
                best = problems
        return best or [f"{path}: matches none of the allowed shapes: {_describe(value)}"]
