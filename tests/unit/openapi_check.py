"""A small checker and validator for the structural OpenAPI v3 schemas in our CRDs (test helper, not a product).

`structural_problems(schema)` lists what a Kubernetes 1.20 API server would reject or what our conventions
forbid; `validate(schema, value)` applies the subset of OpenAPI the CRDs use, including pruning: a field the
schema does not know is reported, because the API server would silently drop it.
"""

from __future__ import annotations

import re
from typing import Any

FORBIDDEN = ("$ref", "definitions", "$defs", "anyOf", "oneOf", "allOf", "not", "x-kubernetes-validations",
             "nullable", "title", "const", "examples")
TYPES = ("object", "array", "string", "integer", "number", "boolean")


def walk(schema: dict[str, Any], path: str = ""):
    """Every schema node with its path, parents first."""
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def structural_problems(schema: dict[str, Any]) -> list[str]:
    problems = []
    for path, node in walk(schema):
        where = path or "<root>"
        for key in FORBIDDEN:
            if key in node:
                problems.append(f"{where}: has {key}")
        special = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        if node.get("type") not in TYPES and not special:
            problems.append(f"{where}: no valid type ({node.get('type')!r})")
        if node.get("x-kubernetes-int-or-string") and "type" in node:
            problems.append(f"{where}: int-or-string must not also have a type")
        if "additionalProperties" in node and not isinstance(node["additionalProperties"], dict):
            problems.append(f"{where}: additionalProperties must be a schema, not {node['additionalProperties']!r}")
        if "additionalProperties" in node and "properties" in node:
            problems.append(f"{where}: properties and additionalProperties together")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{where}: array without items")
        for name, child in (node.get("properties") or {}).items():
            if path == "" and name == "metadata":
                # The API server owns metadata: a CRD may say nothing about it beyond its type (1.20 rejects
                # even a description there).
                if set(child) - {"type"}:
                    problems.append(f".metadata: must specify only its type, not {sorted(set(child) - {'type'})}")
                continue
            if not child.get("description"):
                problems.append(f"{path}.{name}: no description")
        for name in node.get("required") or []:
            if name not in (node.get("properties") or {}):
                problems.append(f"{where}: requires unknown property {name}")
        if "default" in node:
            for error in validate(node, node["default"], where):
                problems.append(f"{where}: default does not validate: {error}")
        if node.get("x-kubernetes-list-type") == "map":
            items = node.get("items") or {}
            for key in node.get("x-kubernetes-list-map-keys") or []:
                if key not in (items.get("required") or []) and "default" not in items["properties"].get(key, {}):
                    problems.append(f"{where}: list map key {key} is neither required nor defaulted")
        if node.get("x-kubernetes-preserve-unknown-fields"):
            for inner_path, inner in walk(node, where):
                if "default" in inner:
                    problems.append(f"{inner_path}: default inside a preserve-unknown-fields subtree")
    return problems


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise AssertionError(kind)


def validate(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Errors of value against schema (the OpenAPI subset the CRDs use), with pruning reported as errors."""
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            return [f"{path}: must be an integer or a string, not {value!r}"]
        return []
    kind = schema.get("type")
    if kind is None:
        # An untyped node (preserve-unknown-fields): each check applies to the values it is about, as in
        # kube-openapi (minimum to numbers, pattern to strings).
        if isinstance(value, str):
            return validate({**schema, "type": "string"}, value, path)
        if _type_ok("number", value):
            return validate({**schema, "type": "number"}, value, path)
        return []
    if not _type_ok(kind, value):
        return [f"{path}: must be {kind}, not {value!r}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if kind in ("integer", "number"):
        if "minimum" in schema and (value <= schema["minimum"] if schema.get("exclusiveMinimum")
                                    else value < schema["minimum"]):
            errors.append(f"{path}: {value} below minimum {schema['minimum']}")
        if "maximum" in schema and (value >= schema["maximum"] if schema.get("exclusiveMaximum")
                                    else value > schema["maximum"]):
            errors.append(f"{path}: {value} above maximum {schema['maximum']}")
    if kind == "string":
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if kind == "array":
        for index, item in enumerate(value):
            errors += validate(schema["items"], item, f"{path}[{index}]")
    if kind == "object":
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, item in value.items():
            if name in properties:
                errors += validate(properties[name], item, f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += validate(schema["additionalProperties"], item, f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{name}: unknown field (the API server would prune it)")
    return errors
