"""The run store: published run directories under a runs root, and what each one's
``status.json`` says (:class:`RunInfo`).

A run executes in a staging directory ``.<id>.tmp-<random>/`` and is renamed to ``<id>/`` when it
ends (:func:`publish`), so a directory named by a run id is always a finished run, complete or
failed. Execution (:mod:`workbench.runs._run`) and crash publishing
(:mod:`workbench.runs._crash`) write here; the CLI, sweeps and the server read with
:func:`list_runs`, :func:`get_run` and :func:`read_info`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
NOTEBOOK, REPORT, RECORD = "notebook.ipynb", "report.html", "record.json"
PARAMETERS, STATUS, LOG = "parameters.json", "status.json", "log.txt"
#: run ids (and run directory names): no separators, no leading dot
RUN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class RunInfo:
    """What one run did: its identity, parameters, status and where its files are.

    ``status`` is ``"running"`` (staged, not yet published), ``"complete"`` or ``"failed"``.
    ``failing_cell`` (failed runs) is ``{"index", "executed_index", "source", "ename",
    "evalue", "kernel_error"}``: ``index`` counts the cells of the notebook as written (0-based;
    papermill's injected-parameters cell and error markers not counted), ``executed_index`` the
    cells of the published ``notebook.ipynb``, ``source`` is the cell's first non-blank line;
    ``None`` when no cell was running (e.g. the kernel never started; see ``error``).
    ``skipped`` is true when this call found the run complete already and executed nothing.
    """

    id: str
    notebook: str
    notebook_sha256: str
    parameters: dict[str, Any]
    status: str
    started: str | None = None
    finished: str | None = None
    failing_cell: dict[str, Any] | None = None
    run_dir: Path | None = None
    report: Path | None = None
    record: Path | None = None
    error: str | None = None
    attempts: int = 1
    duration_s: float | None = None
    pid: int | None = None
    host: str | None = None
    kernel: str = "python3"
    skipped: bool = field(default=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETE

    def summary(self) -> str:
        """One line: id, status, and for a failed run its failing cell or error."""
        line = f"{self.id}  {self.status:<8}  {Path(self.notebook).name}  "
        line += json.dumps(self.parameters, sort_keys=True)
        if self.status == FAILED:
            line += "  " + failure_line(self)
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``status.json``): paths as strings, ``skipped`` left out."""
        out = dataclasses.asdict(self)
        out.pop("skipped")
        for key in ("run_dir", "report", "record"):
            out[key] = None if out[key] is None else str(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        for key in ("run_dir", "report", "record"):
            if kw.get(key) is not None:
                kw[key] = Path(kw[key])
        return cls(**kw)


def failure_line(info: RunInfo) -> str:
    """``cell 3 (`raise ValueError(...)`): ValueError: boom`` or the run's error."""
    cell = info.failing_cell
    if cell:
        return (f"cell {cell.get('index')} (`{cell.get('source', '')}`): "
                f"{cell.get('ename')}: {cell.get('evalue')}")
    return info.error or "failed"


def now() -> str:
    """The current time, UTC, ISO 8601 (``started`` / ``finished``)."""
    return datetime.now(timezone.utc).isoformat()


def elapsed(started: str, finished: str) -> float:
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def read_info(run_dir: Path) -> RunInfo | None:
    """The :class:`RunInfo` of a run directory (from its ``status.json``), paths made to point
    into ``run_dir`` wherever it now is; ``None`` when there is no readable status."""
    try:
        data = json.loads((run_dir / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = RunInfo.from_dict(data)
    info.run_dir = run_dir
    info.report = run_dir / REPORT if (run_dir / REPORT).is_file() else None
    info.record = run_dir / RECORD if (run_dir / RECORD).is_file() else None
    return info


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON at ``path``, replaced atomically (a reader never sees half)."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def new_staging(root: Path, run_id: str) -> Path:
    """A fresh staging directory path for ``run_id`` under ``root`` (not created)."""
    return root / f".{run_id}.tmp-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if not pid or (host and host != socket.gethostname()):
        return bool(pid)  # another machine's runner: assume it is alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staged_dirs(root: Path, run_id: str | None = None) -> list[Path]:
    """The staging directories under ``root`` (of ``run_id``, or of every run)."""
    pattern = f".{run_id}.tmp-*" if run_id else ".*.tmp-*"
    return sorted(p for p in root.glob(pattern) if p.is_dir())


def _staged_info(staged: Path) -> RunInfo | None:
    info = read_info(staged)
    if info is None:
        return None
    if info.status == RUNNING and not _pid_alive(info.pid, info.host):
        info.status = FAILED
        info.error = info.error or "runner process ended before publishing (stale staging dir)"
    return info


def remove_stale(root: Path, run_id: str) -> None:
    """Remove the staging dirs of ``run_id`` whose runner is no longer running."""
    for staged in staged_dirs(root, run_id):
        info = _staged_info(staged)
        if info is None or info.status != RUNNING:
            shutil.rmtree(staged, ignore_errors=True)


def publish(staging: Path, final: Path) -> None:
    """Rename a staging dir to ``final`` atomically; a run already there (a failed run being
    re-run, or one re-run with ``force``) is replaced."""
    for _ in range(10):
        try:
            os.rename(staging, final)
            return
        except OSError:
            if not final.exists():
                raise
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue
        try:
            os.rename(staging, final)
            return
        except OSError:
            if not final.exists():
                os.rename(old, final)
                raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    raise OSError(f"could not publish {staging} as {final}")


def list_runs(runs_root: str | os.PathLike[str] = "runs", *, staged: bool = True) -> list[RunInfo]:
    """Every run under ``runs_root``, oldest first. With ``staged``, runs still in their staging
    dir are listed too: ``running`` while their runner process lives, else ``failed``."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    infos = [i for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")
             if (i := read_info(p)) is not None]
    if staged:
        infos += [i for p in staged_dirs(root) if (i := _staged_info(p)) is not None]
    return sorted(infos, key=lambda i: (i.started or "", i.id))


def get_run(run_id: str, runs_root: str | os.PathLike[str] = "runs") -> RunInfo:
    """The published run ``run_id`` (or a unique prefix of it); ``KeyError`` if there is none."""
    root = Path(runs_root)
    if RUN_ID.match(run_id) and (info := read_info(root / run_id)) is not None:
        return info
    matches = [i for i in list_runs(root, staged=False) if i.id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise KeyError(f"no run {run_id!r} under {root}")
    raise KeyError(f"run id prefix {run_id!r} is ambiguous: {', '.join(i.id for i in matches)}")
