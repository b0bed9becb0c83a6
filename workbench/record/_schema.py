"""The record's JSON Schema (per version), validation with readable errors, JSON paths and
JSON-safe values.

Versions: 1.3 (current) adds ``judge``, the identity of the judge whose scores gave the
behaviour figures (:meth:`workbench.judges.Judge.identity`; null when nothing was judged); 1.2
added the calibrated forecast, ``forecast.expected``
(:meth:`workbench.calibration.Expected.to_dict`, naming the calibration it came from); 1.1 named
the audit section ``audit``; 1.0 named it ``degradation``. A record is checked against the schema
of the version it declares (``schema-1.0.json``, ``schema-1.1.json`` and ``schema-1.2.json`` ship
frozen), so old records stay verifiable; :func:`upgrade_record` gives an old record's current
form.
"""

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

SCHEMA_VERSION: str = "1.3"
"""The version :func:`workbench.record.build_record` writes."""
SCHEMA_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", SCHEMA_VERSION)
"""Every version a record may declare and still be read (and verified)."""

AUDIT_KEY = "audit"
"""The audit section's key (schema 1.1 and later)."""
LEGACY_AUDIT_KEY = "degradation"
"""The audit section's key in schema 1.0 records."""
LEGACY_VERSION = "1.0"
"""The one version whose audit section is ``degradation``."""
JUDGE_KEY = "judge"
"""The judge's section (schema 1.3 and later; null in a record upgraded from an older one)."""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@functools.cache
def _schema_text(version: str) -> str:
    name = "schema.json" if version == SCHEMA_VERSION else f"schema-{version}.json"
    return resources.files("workbench.record").joinpath(name).read_text("utf-8")


def schema(version: str | None = None) -> dict[str, Any]:
    """The deployment-record JSON Schema (draft 2020-12) of ``version`` (default: the current
    :data:`SCHEMA_VERSION`), a fresh copy each call.

    Raises:
        ValueError: ``version`` is not one of :data:`SCHEMA_VERSIONS`.
    """
    v = SCHEMA_VERSION if version is None else version
    if v not in SCHEMA_VERSIONS:
        raise ValueError(
            f"no deployment-record schema {v!r}; known versions: {', '.join(SCHEMA_VERSIONS)}"
        )
    loaded: dict[str, Any] = json.loads(_schema_text(v))
    return loaded


def record_version(record: Any) -> str:
    """The schema version ``record`` is checked against: the ``schema_version`` it declares when
    that is a known one, else the current :data:`SCHEMA_VERSION` (whose schema then reports the
    unknown or missing version)."""
    declared = record.get("schema_version") if isinstance(record, Mapping) else None
    return declared if isinstance(declared, str) and declared in SCHEMA_VERSIONS else SCHEMA_VERSION


@functools.cache
def _validator(version: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(copy.deepcopy(schema(version)))


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


def _describe(err: jsonschema.ValidationError) -> list[SchemaError]:
    """The error in words: one per unexpected key for an ``additionalProperties`` error."""
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
        how = (
            "a judge's identity() names its kind, name, prompts and thresholds"
            if parts == [JUDGE_KEY]
            else "workbench.record.build_record writes every section"
        )
        return [SchemaError(
            path=path,
            expected="present",
            actual="missing",
            message=f"required key {name!r} is missing",
            fix=f"add `{path}`" + (" (null when there is none)" if nullable else "") + f"; {how}",
        )]
    if kind == "additionalProperties" and isinstance(err.instance, Mapping):
        known = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in known) or ["?"]
        return [
            SchemaError(
                path=json_path([*parts, name]),
                expected=f"one of {sorted(known)}",
                actual=name,
                message=f"unexpected key {name!r}",
                fix=f"remove `{json_path([*parts, name])}` (the schema has no such key; allowed: "
                f"{', '.join(sorted(known))})",
            )
            for name in extra
        ]
    path = json_path(parts)
    if kind == "pattern" and value == "^[0-9a-f]{64}$":
        expected, fix = "a sha256", "write a lowercase hex sha256 (64 characters)"
    elif kind == "type":
        types = value if isinstance(value, list) else [value]
        expected = " or ".join(types)
        fix = f"make `{path}` a JSON {expected}"
    elif kind == "const" and parts == ["schema_version"]:
        readable = ", ".join(json.dumps(v) for v in SCHEMA_VERSIONS)
        return [SchemaError(
            path,
            _short(value),
            _short(err.instance),
            f"unknown schema_version {_short(err.instance)}; this workbench reads {readable}",
            f"set `{path}` to the version the record was written with ({readable}); "
            "workbench.record.build_record writes the current one",
        )]
    elif kind == "const":
        expected, fix = _short(value), f"set `{path}` to {_short(value)}"
    else:
        expected = f"{kind}: {_short(value)}"
        fix = f"see the {kind!r} rule at `{path}` in workbench.record.schema()"
    return [SchemaError(path, expected, _short(err.instance), err.message, fix)]


def _types_at(sub_schema: Mapping[str, Any], name: str) -> list[str]:
    prop = sub_schema.get("properties", {}).get(name, {})
    t = prop.get("type", [])
    return t if isinstance(t, list) else [t]


def _audit_key_error(record: Mapping[str, Any], version: str) -> SchemaError | None:
    """The audit section under the wrong name for ``version``, or under both names."""
    has_new, has_old = AUDIT_KEY in record, LEGACY_AUDIT_KEY in record
    if has_new and has_old:
        extra = AUDIT_KEY if version == LEGACY_VERSION else LEGACY_AUDIT_KEY
        return SchemaError(
            path=extra,
            expected=f"`{AUDIT_KEY}` (schema 1.1 and later) or `{LEGACY_AUDIT_KEY}` (1.0)",
            actual="both",
            message=f"the record has both `{AUDIT_KEY}` and `{LEGACY_AUDIT_KEY}`: one section "
            f"under two names (schema 1.0 called the audit `{LEGACY_AUDIT_KEY}`, "
            f"1.1 and later call it `{AUDIT_KEY}`)",
            fix=f'keep `{AUDIT_KEY}` with schema_version "{SCHEMA_VERSION}" and remove '
            f"`{LEGACY_AUDIT_KEY}`",
        )
    if version != LEGACY_VERSION and has_old:
        return SchemaError(
            path=LEGACY_AUDIT_KEY,
            expected=AUDIT_KEY,
            actual=LEGACY_AUDIT_KEY,
            message=f"`{LEGACY_AUDIT_KEY}` is schema 1.0's name for the audit section; schema "
            f"{version} calls it `{AUDIT_KEY}`",
            fix=f'rename `{LEGACY_AUDIT_KEY}` to `{AUDIT_KEY}` (or, if the record was written '
            'as schema 1.0, set schema_version to "1.0")',
        )
    if version == LEGACY_VERSION and has_new:
        return SchemaError(
            path=AUDIT_KEY,
            expected=LEGACY_AUDIT_KEY,
            actual=AUDIT_KEY,
            message=f"a schema 1.0 record stores the audit as `{LEGACY_AUDIT_KEY}`; `{AUDIT_KEY}` "
            "is its name since schema 1.1",
            fix=f'set schema_version to "{SCHEMA_VERSION}" (then `{AUDIT_KEY}` is right), or '
            f"rename `{AUDIT_KEY}` to `{LEGACY_AUDIT_KEY}`",
        )
    return None


def schema_errors(record: Any) -> list[SchemaError]:
    """Every way ``record`` breaks the schema of its version (:func:`record_version`), in a
    stable order (by JSON path).

    The audit section under the other version's name (``degradation`` in a 1.1 or 1.2 record,
    ``audit`` in a 1.0 one), or under both, is one error saying so, in place of the schema's
    "missing" and "unexpected key" pair.
    """
    version = record_version(record)
    raw = sorted(
        _validator(version).iter_errors(record),
        key=lambda e: ([str(p) for p in e.absolute_path], e.validator, e.message),
    )
    errors = [d for e in raw for d in _describe(e)]
    key_error = _audit_key_error(record, version) if isinstance(record, Mapping) else None
    if key_error is not None:
        names = {AUDIT_KEY, LEGACY_AUDIT_KEY}
        errors = [
            e for e in errors if not (e.path in names and e.expected == "present")
            and not (e.path in names and e.message.startswith("unexpected key"))
        ]
        at = next((i for i, e in enumerate(errors) if e.path > key_error.path), len(errors))
        errors.insert(at, key_error)
    return errors


def validate_record(record: Any) -> None:
    """Raise ``ValueError`` naming the JSON path of the first schema error and the fix (the
    record is checked against the schema of the version it declares)."""
    errors = schema_errors(record)
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(
            f"the record breaks the deployment-record schema {record_version(record)} at "
            f"`{e.path}`: {e.message}{more}; fix: {e.fix}"
        )


def version_notes(record: Any) -> list[str]:
    """What a reader should know about reading ``record`` as the current schema: for a 1.0
    record, that its ``degradation`` section is the audit."""
    if (
        isinstance(record, Mapping)
        and record_version(record) == LEGACY_VERSION
        and LEGACY_AUDIT_KEY in record
        and AUDIT_KEY not in record
    ):
        return [
            f"schema 1.0 record, checked against schema 1.0: its `{LEGACY_AUDIT_KEY}` "
            f"section is the audit (schema 1.1 and later call it `{AUDIT_KEY}`); "
            "workbench.record.upgrade_record reads it in the current form, the file is "
            "left as it is"
        ]
    return []


def upgrade_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` in the current schema's form (a new dict; ``record`` is not changed).

    A 1.0 record's ``degradation`` becomes ``audit``; an older record gets ``judge: null``
    (schema 1.3's section, placed after the audit: which judge scored its behaviour the record
    does not say) and its ``schema_version`` becomes :data:`SCHEMA_VERSION` (1.2 only added
    ``forecast.expected``, which an older record simply has not got); a current record comes
    back as a copy. Nothing else is checked (:func:`validate_record` and
    :func:`workbench.record.verify` do that).

    Raises:
        ValueError: the record declares an unknown version, or has the audit under both names.
    """
    out = copy.deepcopy(dict(record))
    declared = out.get("schema_version")
    if declared not in SCHEMA_VERSIONS:
        raise ValueError(
            f"cannot upgrade a record of schema_version {_short(declared)}; this workbench "
            f"reads {', '.join(SCHEMA_VERSIONS)}"
        )
    if AUDIT_KEY in out and LEGACY_AUDIT_KEY in out:
        raise ValueError(
            f"the record has both `{AUDIT_KEY}` and `{LEGACY_AUDIT_KEY}` (one section under "
            f"its current and its 1.0 name); keep `{AUDIT_KEY}` and remove "
            f"`{LEGACY_AUDIT_KEY}`"
        )
    if declared == LEGACY_VERSION:
        out = {
            (AUDIT_KEY if k == LEGACY_AUDIT_KEY else k): v for k, v in out.items()
        }  # same key order, the section renamed in place
    if JUDGE_KEY not in out:
        out = _insert_after(out, AUDIT_KEY, JUDGE_KEY, None)
    out["schema_version"] = SCHEMA_VERSION
    return out


def _insert_after(d: dict[str, Any], after: str, key: str, value: Any) -> dict[str, Any]:
    """``d`` with ``key: value`` placed right after ``after`` (at the end without it)."""
    if after not in d:
        return {**d, key: value}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out[k] = v
        if k == after:
            out[key] = value
    return out


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
