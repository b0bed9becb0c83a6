"""Crash publishing: a run whose runner died before publishing it (a crashed worker process,
a lost Ray task, an error of the runner itself) is still published, as failed, so the run
store never keeps a run that looks like it is running forever.

Sweeps (:mod:`workbench.runs._sweep`) and the server call :func:`record_failure` when a runner
they watched ended without a result; execution calls :func:`fail_staged` on its own errors.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from workbench.runs._prepared import PreparedRun
from workbench.runs._store import (
    FAILED,
    LOG,
    PARAMETERS,
    RUNNING,
    STATUS,
    RunInfo,
    new_staging,
    now,
    publish,
    read_info,
    staged_dirs,
    write_json,
)


def fail_staged(staging: Path, final: Path, error: str) -> None:
    """Mark the staged run in ``staging`` failed with ``error`` and publish it as ``final``."""
    info = read_info(staging)
    if info is None:
        return
    info.status, info.error, info.finished = FAILED, error, now()
    info.run_dir = final
    write_json(staging / STATUS, info.to_dict())
    publish(staging, final)


def record_failure(
    prep: PreparedRun,
    runs_root: str | os.PathLike[str],
    error: str,
    *,
    pid: int | None = None,
    output: str = "",
) -> RunInfo:
    """Publish a failed run for a runner that died before publishing (a crashed worker
    process, a lost Ray task): its staging dir when one is left (pid ``pid``), else a new run
    dir with ``parameters.json``, ``status.json`` and ``log.txt``."""
    root = Path(runs_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / prep.id
    for staged in staged_dirs(root, prep.id):
        sinfo = read_info(staged)
        if sinfo is not None and sinfo.status == RUNNING and (pid is None or sinfo.pid == pid):
            with open(staged / LOG, "a", encoding="utf-8") as log:
                log.write(f"\nFAILED: {error}\n{output[-4000:]}\n")
            fail_staged(staged, final, error)
            return read_info(final) or sinfo
    staging = new_staging(root, prep.id)
    staging.mkdir()
    stamp = now()
    info = RunInfo(
        id=prep.id, notebook=str(prep.path), notebook_sha256=prep.notebook_sha256,
        parameters=prep.parameters, status=FAILED, started=stamp, finished=stamp, error=error,
        run_dir=final, pid=pid, host=socket.gethostname(),
    )
    write_json(staging / PARAMETERS, prep.parameters)
    (staging / LOG).write_text(f"workbench run {prep.id}\nFAILED: {error}\n{output[-4000:]}\n",
                               encoding="utf-8")
    write_json(staging / STATUS, info.to_dict())
    publish(staging, final)
    return read_info(final) or info
