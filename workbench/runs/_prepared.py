"""A run before it runs: the notebook resolved, its parameters checked and coerced, and the
run's id computed from both (:class:`PreparedRun`), with no kernel started.

Everything that can refuse a run refuses it here, so the CLI, sweeps and the server validate
once, then hand the :class:`PreparedRun` to execution (:func:`workbench.runs._run.run_prepared`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.runs._params import (
    ParamSpec,
    effective_parameters,
    notebook_parameters,
    resolve_notebook,
    validate_parameters,
)
from workbench.runs._store import RUN_ID


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def compute_run_id(notebook_bytes: bytes, parameters: Mapping[str, Any]) -> str:
    """sha256(notebook bytes + canonical JSON of the parameters)[:12]: the same notebook with
    the same effective parameters (defaults included, ``out_dir`` left out) has the same id."""
    h = hashlib.sha256(notebook_bytes)
    h.update(canonical_json(dict(parameters)).encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class PreparedRun:
    """A notebook and parameters checked (no kernel started), with the run's id."""

    path: Path
    notebook_bytes: bytes
    specs: dict[str, ParamSpec]
    given: dict[str, Any]
    parameters: dict[str, Any]
    id: str

    @property
    def notebook_sha256(self) -> str:
        return hashlib.sha256(self.notebook_bytes).hexdigest()

    def wants_gpu(self) -> bool:
        device = self.parameters.get("device")
        return isinstance(device, str) and device.lower().startswith("cuda")


def prepare(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
) -> PreparedRun:
    """Resolve the notebook, validate and coerce the parameters, compute the run id; no kernel
    starts. Raises ``ValueError``/``FileNotFoundError`` naming what is wrong."""
    path = resolve_notebook(notebook)
    specs = notebook_parameters(path)
    given = validate_parameters(path, parameters or {})
    data = path.read_bytes()
    effective = effective_parameters(specs, given)
    rid = run_id or compute_run_id(data, effective)
    if not RUN_ID.match(rid):
        raise ValueError(f"run id {rid!r} must match {RUN_ID.pattern}")
    return PreparedRun(path, data, specs, given, effective, rid)
