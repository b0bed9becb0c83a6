"""The record's JSON Schema, validation with readable errors, JSON paths and JSON-safe values."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import PurePath
from typing import Any

import jsonschema
import numpy as np
import torch

SCHEMA_VERSION: str = "1.0"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@functools.cache
def _schema_text() -> str:
    return resources.files("workbench.record").joinpath("schema.json").read_text("utf-8")


def schema() -> dict[str, Any]:
    """The deployment-record JSON Schema (draft 2020-12), a fresh copy each call."""
    loaded: dict[str, Any] = json.loads(_schema_text())
    return loaded


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(copy.deepcopy(schema()))


def json_path(parts: Sequence[str | int]) -> str:
    """``["subject", "files", 0, "sha256"]`` -> ``"subject.files[0].sha256"`` (``"$"`` if empty).

    Keys that are not identifiers are written ``["key"]``, e.g. ``data["my set"].sha256``.
    """
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENT.match(p):
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(p)}]"
    return out or "$"


@dataclasses.dataclass(frozen=True)
class SchemaError:
    """One way a record breaks the schema: where, what is wrong, and how to fix it."""

    path: str
    expected: str
    actual: str
    message: str
    fix: str


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(err: jsonschema.ValidationError) -> SchemaError:
    parts: list[str | int] = list(err.absolute_path)
    kind = err.validator
    value = err.validator_value
    if kind == "required" and isinstance(err.instance, Mapping):
        missing = [k for k in value if k not in err.instance]
        name = next(
            (k for k in missing if err.message == f"{k!r} is a required property"),
            missing[0] if missing else "?",
        )
        path = json_path([*parts, name])
        nullable = "null" in _types_at(err.schema, name)
        return SchemaError(
            path=path,
            expected="present",
            actual="missing",
            message=f"required key {name!r} is missing",
            fix=f"add `{path}`"
            + (" (null when there is none)" if nullable else "")
            + "; workbench.record.build_record writes every section",
        )
    if kind == "additionalProperties" and isinstance(err.instance, Mapping):
        known = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in known)
        name = extra[0] if extra else "?"
        path = json_path([*parts, name])
        return SchemaError(
            path=path,
            expected=f"one of {sorted(known)}",
            actual=name,
            message=f"unexpected key {name!r}",
            fix=f"remove `{path}` (the schema has no such key; allowed: "
            f"{', '.join(sorted(known))})",
        )
    path = json_path(parts)
    if kind == "pattern" and value == "^[0-9a-f]{64}$":
        expected, fix = "a sha256", "write a lowercase hex sha256 (64 characters)"
    elif kind == "type":
        types = value if isinstance(value, list) else [value]
        expected = " or ".join(types)
        fix = f"make `{path}` a JSON {expected}"
    elif kind == "const":
        expected, fix = _short(value), f"set `{path}` to {_short(value)}"
    else:
        expected = f"{kind}: {_short(value)}"
        fix = f"see the {kind!r} rule at `{path}` in workbench.record.schema()"
    return SchemaError(path, expected, _short(err.instance), err.message, fix)


def _types_at(sub_schema: Mapping[str, Any], name: str) -> list[str]:
    prop = sub_schema.get("properties", {}).get(name, {})
    t = prop.get("type", [])
    return t if isinstance(t, list) else [t]


def schema_errors(record: Any) -> list[SchemaError]:
    """Every way ``record`` breaks the schema, in a stable order (by JSON path)."""
    errors = sorted(
        _validator().iter_errors(record),
        key=lambda e: ([str(p) for p in e.absolute_path], e.validator, e.message),
    )
    return [_describe(e) for e in errors]


def validate_record(record: Any) -> None:
    """Raise ``ValueError`` naming the JSON path of the first schema error and the fix."""
    errors = schema_errors(record)
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(
            f"the record breaks the deployment-record schema {SCHEMA_VERSION} at `{e.path}`: "
            f"{e.message}{more}; fix: {e.fix}"
        )


def json_safe(value: Any, where: str = "$") -> Any:
    """``value`` as plain JSON: NaN and infinities -> None, tensors and arrays -> lists,
    numpy scalars -> Python numbers, paths -> strings, dataclasses -> dicts.

    Raises:
        TypeError: something with no JSON form, naming its JSON path.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, torch.Tensor):
        return json_safe(value.detach().to("cpu").tolist(), where)
    if isinstance(value, np.ndarray | np.generic):
        return json_safe(value.tolist(), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise TypeError(f"{where}: key {k!r} is not a string; JSON keys are strings")
            out[str(k)] = json_safe(v, _child(where, str(k)))
        return out
    if isinstance(value, list | tuple):
        return [json_safe(v, f"{'' if where == '$' else where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where)
    raise TypeError(
        f"{where}: a {type(value).__name__} has no JSON form; pass plain values "
        "(dict, list, str, number, bool, None), e.g. an object's summary() or describe()"
    )


def _child(where: str, key: str) -> str:
    step = json_path([key])
    if where == "$":
        return step
    return f"{where}.{step}" if not step.startswith("[") else where + step
