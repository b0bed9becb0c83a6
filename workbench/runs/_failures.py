"""Failure diagnosis: what went wrong in a run, read from the executed notebook papermill
saved before raising (the failing cell, as the notebook's author numbers it), and whether an
error means the kernel failed to start or died (worth a retry) rather than a cell's own error.

Execution (:mod:`workbench.runs._run`) records the diagnosis in the run's ``status.json``
(``failing_cell``) and retries kernel failures.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MARKER_TAG = "papermill-error-cell-tag"
_INJECTED_TAG = "injected-parameters"
#: fragments of the messages of errors that mean "the kernel did not start, or died"
_KERNEL_ERRORS = (
    "kernel died", "dead kernel", "kernel didn't respond", "kernel did not respond",
    "kernel_info", "address already in use", "kernel failed to start", "kernel is dead",
    "no kernel", "kernel restarted",
)


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (IPython colours its tracebacks)."""
    return _ANSI.sub("", text)


def is_kernel_error(exc: BaseException) -> bool:
    """Whether an execution error means the kernel failed to start or died (worth a retry),
    as opposed to an error raised by a cell."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if isinstance(exc, DeadKernelError):
        return True
    if isinstance(exc, CellTimeoutError):
        return False
    if type(exc).__module__.startswith("zmq"):
        return True
    msg = str(exc).lower()
    return isinstance(exc, (RuntimeError, TimeoutError, OSError)) and any(
        s in msg for s in _KERNEL_ERRORS
    )


def _head(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags") or [])


def failing_cell(executed: Path, source_nb: Any, exc: BaseException) -> dict[str, Any] | None:
    """Locate the failing cell in the executed notebook (papermill saved it before raising):
    ``{index, executed_index, source, ename, evalue, kernel_error}`` (see
    :class:`~workbench.runs.RunInfo`), or ``None`` when no cell was running."""
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return None
    cells = list(nb.cells)
    target = None
    for i, cell in enumerate(cells):  # a cell error: papermill marks the cell "failed"
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "failed":
            target = i
            break
    if target is None:  # a dead kernel or timeout: the last cell that was started
        for i, cell in enumerate(cells):
            if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
                target = i
    if target is None:
        return None
    clean = [i for i, c in enumerate(cells) if _MARKER_TAG not in _tags(c)]
    pos = clean.index(target) if target in clean else target
    had_injected = any(_INJECTED_TAG in _tags(c) for c in source_nb.cells)
    shift = 0 if had_injected else sum(
        1 for i in clean[:pos] if _INJECTED_TAG in _tags(cells[i])
    )
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        evalue = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {
        "index": pos - shift,
        "executed_index": target,
        "source": _head(cells[target].get("source", "")),
        "ename": ename,
        "evalue": strip_ansi(str(evalue)),
        "kernel_error": is_kernel_error(exc),
    }
