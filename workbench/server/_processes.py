"""Process control: each run executes in a worker process of its own, never in the server's.

:func:`start_worker` launches ``python -m workbench.server._worker`` for a prepared run, in a
new session (its own process group) with its output in ``<runs>/.workbench-server/<id>.log``;
:func:`signal_tree` signals that group and every descendant (papermill's kernel starts a
session of its own), which is how a run is cancelled. The scheduler
(:mod:`workbench.server._scheduler`) decides when workers start; this module only starts and
stops them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.runs import PreparedRun


@dataclass
class Job:
    """A run this server launched: its worker process and what it was launched with."""

    prep: PreparedRun
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    cancelled: bool = False


def start_worker(
    prep: PreparedRun, *, runs_root: Path, analyses: list[Path], kernel: str
) -> Job:
    """A worker process executing ``prep`` into ``runs_root`` with Jupyter kernel ``kernel``."""
    logs = runs_root / ".workbench-server"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{prep.id}.log"
    spec = {"notebook": str(prep.path), "parameters": prep.given, "run_id": prep.id,
            "runs_root": str(runs_root), "kernel": kernel}
    env = dict(os.environ, WORKBENCH_ANALYSES=os.pathsep.join(str(a) for a in analyses))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.server._worker", json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=runs_root,
            env=env, start_new_session=True,  # its own process group: cancel kills it all
        )
    return Job(prep, proc, log, time.time())


def signal_tree(pid: int, sig: int) -> None:
    """``sig`` to the worker's process group and to its descendants (the kernel runs in a
    session of its own)."""
    children: list[Any] = []
    try:
        import psutil

        children = psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing or the process gone
        children = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for child in children:
        with contextlib.suppress(Exception):
            child.send_signal(sig)
