"""``POST /workbench/sweeps``: a grid of parameter values checked before any run starts.

:func:`check_grid` validates a request's ``grid`` against a notebook's declared parameters
(:func:`workbench.runs.notebook_parameters`): every key a declared parameter, every value list
non-empty, the grid's size within the server's cap, and every value coerced to its parameter's
type and checked against its declared choices and range exactly as ``POST /workbench/runs``
checks it (:func:`workbench.runs.check_value`), with the refused field named as
``grid.<name>[<index>]``. :func:`grid_points` then expands it with
:func:`workbench.runs.expand_grid`; :func:`sweep_id` labels the sweep. Errors are ``ValueError``
whose message names the fix; the server answers them with 400.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from workbench.runs import OUT_DIR, ParamSpec, check_value, coerce_value, expand_grid

#: where the cap is configured, for the messages
CAP_TRAIT = "c.WorkbenchServer.max_sweep_runs"


def grid_size(grid: Mapping[str, list[Any]]) -> int:
    """The number of points of a grid: the product of its value lists' lengths."""
    return math.prod(len(v) for v in grid.values())


def _show(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)


def check_grid(grid: Any, fixed: Mapping[str, Any], specs: Mapping[str, ParamSpec], *,
               notebook: str, cap: int) -> dict[str, list[Any]]:
    """``grid`` (a request's JSON) -> ``{name: [coerced values]}``; ``ValueError`` naming the
    field otherwise. ``fixed`` are the sweep's fixed parameters (a name may not be in both)."""
    known = ", ".join(f"{s.name} ({s.type})" for s in specs.values() if s.name != OUT_DIR)
    if not isinstance(grid, dict):
        raise ValueError("'grid' must be a JSON object of parameter name -> list of values, "
                         f'e.g. {{"seed": [0, 1]}}; got {type(grid).__name__}')
    if not grid:
        raise ValueError("'grid' is empty: give at least one parameter a list of values "
                         "(for a single run, POST /workbench/runs)")
    for name, values in grid.items():
        if name not in specs:
            raise ValueError(f"grid.{name}: unknown parameter {name!r} for notebook "
                             f"{notebook}; known parameters: {known or 'none'}")
        if name == OUT_DIR:
            raise ValueError(f"grid.{OUT_DIR}: {OUT_DIR!r} is set by the runner (the run's own "
                             "directory); do not sweep it")
        if name in fixed:
            raise ValueError(f"{name!r} is in both 'grid' and 'parameters': give it in one of "
                             "them")
        if not isinstance(values, list):
            raise ValueError(f"grid.{name} must be a JSON list of values, e.g. [1, 2]; got "
                             f"{_show(values)}")
        if not values:
            raise ValueError(f"grid.{name} is an empty list: give it at least one value")
    size = grid_size(grid)
    if size > cap:
        shape = " × ".join(f"{n}: {len(v)}" for n, v in grid.items())
        raise ValueError(f"the grid has {size} points ({shape}), over this server's limit of "
                         f"{cap} runs per sweep ({CAP_TRAIT}): split the sweep or raise the "
                         "limit")
    out: dict[str, list[Any]] = {}
    for name, values in grid.items():
        spec = specs[name]
        coerced = []
        for i, value in enumerate(values):
            try:
                coerce_value(spec, value)
            except ValueError:
                want = spec.type + (" or null" if spec.optional else "")
                hint = " (use true or false)" if spec.type == "bool" else ""
                raise ValueError(f"grid.{name}[{i}]: expected {want}, got {_show(value)}{hint}"
                                 ) from None
            try:
                coerced.append(check_value(spec, value))
            except ValueError as e:  # outside the declared choices or range
                raise ValueError(f"grid.{name}[{i}]: {e}") from None
        out[name] = coerced
    return out


def grid_points(grid: Mapping[str, list[Any]], fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each point of a checked grid merged over the fixed parameters, in grid order (the last
    parameter varies fastest)."""
    return [{**fixed, **point} for point in expand_grid(grid)]


def sweep_id(run_ids: Iterable[str]) -> str:
    """A sweep's label: a hash of its runs' ids (the same grid twice is the same sweep)."""
    return hashlib.sha256(",".join(sorted(run_ids)).encode()).hexdigest()[:12]
