"""Runs on disk as the server reports them: ids in URLs, lookup, and progress.

Run ids in URLs are the store's content hashes (:data:`RUN_ID`, checked by :func:`check_id`).
:func:`find` prefers a run that is executing (a staging directory, ``status: running``) over
the published one of the same id; :func:`with_progress` adds ``progress`` ``{executed,
total}`` to a running run, counted from the staged notebook papermill saves after each cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from workbench.runs import NOTEBOOK, RUNNING, RunInfo, get_run, list_runs
from workbench.server._errors import RequestError

#: run ids the server accepts in URLs: the store's content hashes (hex), nothing else
RUN_ID = re.compile(r"^[0-9a-f]{6,64}$")


def check_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise RequestError(400, "a run id is 6 to 64 lowercase hex digits")
    return run_id


def find(runs_root: Path, run_id: str) -> RunInfo | None:
    """A run's info: the running (staged) one first, else the published one."""
    staged = [i for i in list_runs(runs_root)
              if i.id == run_id and i.run_dir is not None and i.run_dir.name != run_id]
    for info in staged:
        if info.status == RUNNING:
            return info
    try:
        return get_run(run_id, runs_root)
    except KeyError:
        return staged[-1] if staged else None


def progress(info: RunInfo) -> dict[str, int] | None:
    """Cells executed so far, from the staged notebook papermill saves after each cell."""
    if info.run_dir is None:
        return None
    try:
        nb = json.loads((info.run_dir / NOTEBOOK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    done = sum(1 for c in cells
               if c.get("metadata", {}).get("papermill", {}).get("status") == "completed")
    return {"executed": done, "total": len(cells)}


def with_progress(info: RunInfo) -> dict[str, Any]:
    out = info.to_dict()
    if info.status == RUNNING:
        out["progress"] = progress(info)
    return out
