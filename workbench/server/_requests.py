"""Request bodies -> prepared runs: ``POST /workbench/runs`` and ``POST /workbench/sweeps``.

A body is parsed as JSON (400 when it is not), its fields checked (unknown or missing fields
named), the notebook name resolved in the catalogue, and every parameter coerced to its
declared type and checked against its declared choices and range
(:func:`workbench.runs.prepare`; a sweep's grid by :func:`workbench.server._sweep.check_grid`)
before anything starts: a refusal is a :class:`~workbench.server._errors.RequestError` naming
the field, with the server's own paths left out of the message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.runs import PreparedRun, notebook_parameters, prepare, validate_parameters
from workbench.server._catalogue import resolve_name
from workbench.server._config import WorkbenchServer
from workbench.server._errors import RequestError
from workbench.server._sweep import check_grid, grid_points


def json_body(raw: bytes | None) -> Any:
    try:
        return json.loads(raw or b"")
    except ValueError as e:
        raise RequestError(400, f"the body is not JSON: {e}") from None


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    """A request's ``parameters`` (absent or null: none); 400 unless a JSON object."""
    params = body.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RequestError(400, "'parameters' must be a JSON object of name -> value, got "
                           f"{type(params).__name__}")
    return params


def _refusal(wb: WorkbenchServer, e: Exception, prefix: str = "") -> RequestError:
    """A validation error as a 400, the server's own paths left out of the message."""
    return RequestError(400, prefix + wb.scrub(str(e)))


def _prepare(wb: WorkbenchServer, path: Path, params: dict[str, Any]) -> PreparedRun:
    try:
        return prepare(path, params)
    except (ValueError, FileNotFoundError) as e:
        raise _refusal(wb, e) from None


def run_request(wb: WorkbenchServer, body: Any) -> PreparedRun:
    """A ``POST /workbench/runs`` body ``{"notebook": name, "parameters": {...}}`` -> the run."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object: "
                           '{"notebook": "<name>", "parameters": {...}}')
    unknown = sorted(set(body) - {"notebook", "parameters"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; "
                           "expected 'notebook' and 'parameters'")
    if "notebook" not in body:
        raise RequestError(400, "missing field 'notebook' (the name of an analysis notebook)")
    path = resolve_name(wb.analyses_paths, body["notebook"])
    return _prepare(wb, path, _parameters(body))


def sweep_request(wb: WorkbenchServer, body: Any) -> list[PreparedRun]:
    """A ``POST /workbench/sweeps`` body -> one prepared run per distinct grid point, in grid
    order; everything is checked before anything runs."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object: {\"notebook\": \"<name>\", "
                           '"grid": {"<param>": [values...]}, "parameters": {...}}')
    unknown = sorted(set(body) - {"notebook", "grid", "parameters"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; "
                           "expected 'notebook', 'grid' and 'parameters'")
    for field in ("notebook", "grid"):
        if field not in body:
            raise RequestError(400, f"missing field {field!r}: a sweep is "
                               '{"notebook": "<name>", "grid": {"<param>": [values...]}}')
    path = resolve_name(wb.analyses_paths, body["notebook"])
    fixed = _parameters(body)
    try:
        specs = notebook_parameters(path)
    except (ValueError, FileNotFoundError) as e:  # no parameters cell, a bad declaration
        raise _refusal(wb, e) from None
    try:
        fixed = validate_parameters(path, fixed)
    except ValueError as e:
        raise _refusal(wb, e, "'parameters': ") from None
    try:
        grid = check_grid(body["grid"], fixed, specs, notebook=path.name, cap=wb.max_sweep_runs)
    except ValueError as e:
        raise _refusal(wb, e) from None
    preps: dict[str, PreparedRun] = {}
    for point in grid_points(grid, fixed):
        prep = _prepare(wb, path, point)
        preps.setdefault(prep.id, prep)  # "1" and 1 for an int: one run
    return list(preps.values())
