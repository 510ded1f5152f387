"""Compiled validators for the JSON Schema subset that ``iccc.incident/1`` uses.

The sink validates every message; the general ``jsonschema`` validator takes about 0.4 ms per event,
which caps a sink near 2,500 events/s. This compiles the published schema file itself, so the file
stays the single source of truth, twice: ``compile_fast`` generates one Python function that only
answers valid or not (a few microseconds per event), and ``compile_schema`` builds closures that
also say where and why (run only for a message the fast check refused). A keyword they do not
implement is an error when compiling, never silently ignored; ``tests/test_schema.py`` checks that
both accept and reject exactly what ``jsonschema`` does on thousands of mutated events.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

# Raises Invalid(path, message); returns nothing when valid.
Check = Callable[[Any], None]

ANNOTATIONS = {"$schema", "$id", "title", "description", "$comment", "examples", "default"}
# RFC 3339 date-time with the field ranges in the pattern; leap seconds are not accepted (as jsonschema)
RFC3339 = re.compile(
    r"^(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$",
    re.ASCII,
)


class Invalid(Exception):
    def __init__(self, path: tuple, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def is_rfc3339(s: str) -> bool:
    m = RFC3339.match(s)
    if not m:
        return False
    year, month, day = m.group(1, 2, 3)
    if day <= "28" and year != "0000":  # every month has these days
        return True
    try:
        dt.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


FORMATS: dict[str, Callable[[str], bool]] = {"date-time": is_rfc3339}


PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),  # and floats with an integral value (below)
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _at(key: str | int, check: Check, value: Any) -> None:
    """Check a member; an error's path gains the member's key on the way out."""
    try:
        check(value)
    except Invalid as err:
        err.path = (key, *err.path)
        raise


def _check_supported(node: dict[str, Any]) -> None:
    """Refuse, when compiling, what the compiled validators do not implement: never ignore a keyword."""
    unknown = set(node) - ANNOTATIONS - HANDLED
    if unknown:
        raise ValueError(f"schema keyword(s) not supported by the compiled validator: {sorted(unknown)}")
    if "format" in node and node["format"] not in FORMATS:
        raise ValueError(f"format {node['format']!r} not supported by the compiled validator")
    if not isinstance(node.get("additionalProperties", True), bool):
        raise ValueError("additionalProperties: only true or false is supported by the compiled validator")


def compile_schema(schema: dict[str, Any]) -> Check:
    """One closure per schema node doing all of that node's checks; ``check(value)`` raises Invalid
    whose path is filled in on the way out (no path is built while the value is valid). Run only on
    a value ``compile_fast``'s check refused, to say where and why."""
    _check_supported(schema)
    names = schema.get("type")
    names = None if names is None else names if isinstance(names, list) else [names]
    types = None if names is None else frozenset(t for n in names for t in PY_TYPES[n])
    integral_floats = names is not None and "integer" in names and "number" not in names
    shown = "" if names is None else " or ".join(names)
    enum = schema["enum"] if "enum" in schema else [schema["const"]] if "const" in schema else None
    lo, hi = schema.get("minimum"), schema.get("maximum")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
    min_len = schema.get("minLength")
    fmt = FORMATS.get(schema.get("format", ""))
    props = {k: compile_schema(s) for k, s in schema.get("properties", {}).items()}
    required = list(schema.get("required", []))
    closed = schema.get("additionalProperties", True) is False
    prefix = [compile_schema(s) for s in schema.get("prefixItems", [])]
    items = compile_schema(schema["items"]) if "items" in schema else None
    min_items, max_items = schema.get("minItems"), schema.get("maxItems")
    branches = [compile_schema(s) for s in schema.get("oneOf", [])]

    def check(v: Any) -> None:
        t = type(v)
        if types is not None and t not in types:
            if not (integral_floats and t is float and v.is_integer()):
                raise Invalid((), f"{v!r:.80} is not of type {shown}")
        if enum is not None and not any(_json_equal(v, o) for o in enum):
            raise Invalid((), f"{v!r:.80} is not one of {enum}")
        if t is str:
            if pattern is not None and not pattern.search(v):
                raise Invalid((), f"{v!r:.80} does not match {pattern.pattern!r}")
            if min_len is not None and len(v) < min_len:
                raise Invalid((), f"{v!r:.80} is shorter than {min_len} characters")
            if fmt is not None and not fmt(v):
                raise Invalid((), f"{v!r:.80} is not a {schema['format']!r}")
        elif t is int or t is float:
            if lo is not None and v < lo:
                raise Invalid((), f"{v} is less than the minimum of {lo}")
            if hi is not None and v > hi:
                raise Invalid((), f"{v} is greater than the maximum of {hi}")
        elif t is dict:
            for k in required:
                if k not in v:
                    raise Invalid((), f"{k!r} is a required property")
            for k, item in v.items():
                c = props.get(k)
                if c is not None:
                    _at(k, c, item)
                elif closed:
                    raise Invalid((), f"additional property {k!r} is not allowed")
        elif t is list:
            if min_items is not None and len(v) < min_items:
                raise Invalid((), f"should have at least {min_items} items, has {len(v)}")
            if max_items is not None and len(v) > max_items:
                raise Invalid((), f"should have at most {max_items} items, has {len(v)}")
            if prefix or items is not None:
                for i, item in enumerate(v):
                    c = prefix[i] if i < len(prefix) else items
                    if c is not None:
                        _at(i, c, item)
        if branches:
            passed, first_error = 0, None
            for b in branches:
                try:
                    b(v)
                    passed += 1
                except Invalid as err:
                    first_error = first_error or err
            if passed != 1:
                detail = f" ({first_error.message})" if passed == 0 and first_error else ""
                raise Invalid((), f"matches {passed} of the {len(branches)} allowed shapes{detail}")

    return check


HANDLED = {
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "pattern",
    "minLength",
    "format",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "oneOf",
}


MISSING = object()


def _plain_types(schema: dict[str, Any]) -> frozenset[type] | None:
    """The Python types a schema's ``type`` admits, when that alone decides them (no integer, whose
    integral floats overlap number)."""
    names = schema.get("type")
    if names is None:
        return None
    names = names if isinstance(names, list) else [names]
    if "integer" in names:
        return None
    return frozenset(t for n in names for t in PY_TYPES[n])


def compile_fast(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """Generate one function ``valid(value) -> bool`` for ``schema`` (no error details)."""
    consts: dict[str, Any] = {"_json_equal": _json_equal, "MISSING": MISSING}
    lines: list[str] = []

    def const(value: Any) -> str:
        name = f"C{len(consts)}"
        consts[name] = value
        return name

    def emit(node: dict[str, Any], var: str, depth: int) -> None:
        pad = "    " * depth
        _check_supported(node)
        exact = None  # the one Python type the value has once the type check passed, if there is one
        if "type" in node:
            names = node["type"] if isinstance(node["type"], list) else [node["type"]]
            if len(names) == 1 and names[0] not in ("integer", "number"):
                exact = PY_TYPES[names[0]][0]
                lines.append(f"{pad}if type({var}) is not {const(exact)}: return False")
            else:
                types = const(frozenset(t for n in names for t in PY_TYPES[n]))
                cond = f"type({var}) not in {types}"
                if "integer" in names and "number" not in names:
                    cond += f" and not (type({var}) is float and {var}.is_integer())"
                lines.append(f"{pad}if {cond}: return False")

        def only_for(t: type) -> str:
            return "" if exact is t else f"type({var}) is {const(t)} and "

        if "enum" in node or "const" in node:
            options = node["enum"] if "enum" in node else [node["const"]]
            if all(type(o) is str for o in options):
                choices = const(frozenset(options))
                lines.append(f"{pad}if type({var}) is not str or {var} not in {choices}: return False")
            else:
                lines.append(
                    f"{pad}if not any(_json_equal({var}, o) for o in {const(options)}): return False"
                )
        number = f"(type({var}) is int or type({var}) is float)"
        if "minimum" in node:
            lines.append(f"{pad}if {number} and {var} < {node['minimum']!r}: return False")
        if "maximum" in node:
            lines.append(f"{pad}if {number} and {var} > {node['maximum']!r}: return False")
        if "pattern" in node:
            pattern = const(re.compile(node["pattern"]))
            lines.append(f"{pad}if {only_for(str)}not {pattern}.search({var}): return False")
        if "minLength" in node:
            lines.append(f"{pad}if {only_for(str)}len({var}) < {int(node['minLength'])}: return False")
        if "format" in node:
            lines.append(f"{pad}if {only_for(str)}not {const(FORMATS[node['format']])}({var}): return False")
        props = node.get("properties", {})
        if props or "required" in node or "additionalProperties" in node:
            lines.append(f"{pad}if {only_for(dict)}True:")
            required = node.get("required", [])
            for k in required:
                lines.append(f"{pad}    if {k!r} not in {var}: return False")
            if node.get("additionalProperties", True) is False:
                lines.append(f"{pad}    if not {const(frozenset(props))}.issuperset({var}): return False")
            for k, sub in props.items():
                item = f"v{len(lines)}"
                if k in required:
                    lines.append(f"{pad}    {item} = {var}[{k!r}]")
                    lines.append(f"{pad}    if True:")
                else:
                    lines.append(f"{pad}    {item} = {var}.get({k!r}, MISSING)")
                    lines.append(f"{pad}    if {item} is not MISSING:")
                lines.append(f"{pad}        pass")
                emit(sub, item, depth + 2)
        if {"items", "prefixItems", "minItems", "maxItems"} & set(node):
            lines.append(f"{pad}if {only_for(list)}True:")
            if "minItems" in node:
                lines.append(f"{pad}    if len({var}) < {int(node['minItems'])}: return False")
            if "maxItems" in node:
                lines.append(f"{pad}    if len({var}) > {int(node['maxItems'])}: return False")
            prefix = node.get("prefixItems", [])
            for i, sub in enumerate(prefix):
                item = f"v{len(lines)}"
                lines.append(f"{pad}    if len({var}) > {i}:")
                lines.append(f"{pad}        {item} = {var}[{i}]")
                emit(sub, item, depth + 2)
            if "items" in node:
                item = f"v{len(lines)}"
                lines.append(f"{pad}    for {item} in {var}[{len(prefix)}:]:")
                lines.append(f"{pad}        pass")
                emit(node["items"], item, depth + 2)
        if "oneOf" in node:
            shapes = node["oneOf"]
            kinds = [k for b in shapes if (k := _plain_types(b)) is not None]
            if len(kinds) == len(shapes) and sum(map(len, kinds)) == len(frozenset[type]().union(*kinds)):
                # the branches admit disjoint Python types: only the one for the value's type can match
                for i, (b, k) in enumerate(zip(shapes, kinds, strict=True)):
                    lines.append(f"{pad}{'if' if i == 0 else 'elif'} type({var}) in {const(k)}:")
                    lines.append(f"{pad}    pass")
                    emit(b, var, depth + 1)
                lines.append(f"{pad}else: return False")
            else:
                branches = ", ".join(f"{const(compile_fast(b))}({var})" for b in shapes)
                lines.append(f"{pad}if ({branches}).count(True) != 1: return False")

    emit(schema, "value", 1)
    source = "def valid(value):\n" + "\n".join(lines) + "\n    return True\n"
    namespace = dict(consts)
    exec(compile(source, "<compiled iccc schema>", "exec"), namespace)  # noqa: S102 - code made from the schema
    fn: Callable[[Any], bool] = namespace["valid"]
    return fn
