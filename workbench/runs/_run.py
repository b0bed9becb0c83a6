"""Execution: one notebook run by papermill in a staging directory, its record and report
written beside it, then published as ``runs/<id>/`` (:func:`run`, :func:`run_prepared`).

A run is first prepared (:mod:`workbench.runs._prepared`: notebook and parameters checked, id
computed), executes here, is diagnosed when it fails (:mod:`workbench.runs._failures`) and lands
in the run store (:mod:`workbench.runs._store`); a runner that dies on its own error is
published failed (:mod:`workbench.runs._crash`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from workbench.runs._crash import fail_staged
from workbench.runs._crash import record_failure as record_failure  # the server imports it here
from workbench.runs._failures import failing_cell, is_kernel_error, strip_ansi
from workbench.runs._params import OUT_DIR, papermill_inspection_quiet
from workbench.runs._prepared import PreparedRun, canonical_json, prepare
from workbench.runs._store import (
    COMPLETE,
    FAILED,
    LOG,
    NOTEBOOK,
    PARAMETERS,
    RECORD,
    REPORT,
    RUNNING,
    STATUS,
    RunInfo,
    elapsed,
    failure_line,
    new_staging,
    now,
    publish,
    read_info,
    remove_stale,
    write_json,
)
from workbench.runs._store import get_run as get_run  # the server imports these two here
from workbench.runs._store import list_runs as list_runs


def check_kernel(kernel: str) -> None:
    """``ValueError`` naming the fix when no kernelspec ``kernel`` is installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise ValueError(
            f"no Jupyter kernel {kernel!r} is installed; install one for this environment with "
            "`python -m ipykernel install --sys-prefix` (see `jupyter kernelspec list`)"
        ) from None


def kernel_config() -> Any:
    """The traitlets config runs start their kernel with: CurveZMQ transport encryption,
    provisioned by the kernel manager for kernels whose kernelspec declares it (ipykernel's
    does). An unencrypted kernel over TCP makes ipykernel log "Kernel is running over TCP without
    encryption" into the output (between the progress bars); this removes the cause instead of
    hiding the message. Left as it is where jupyter_client or pyzmq lack the feature."""
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    config = Config()
    if KernelManager.class_traits().get("transport_encryption") is not None and zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    return config


def _rewrite_paths(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return new + obj[len(old):] if obj == old or obj.startswith(old + os.sep) else obj
    if isinstance(obj, list):
        return [_rewrite_paths(v, old, new) for v in obj]
    if isinstance(obj, dict):
        return {k: _rewrite_paths(v, old, new) for k, v in obj.items()}
    return obj


def _take_record(staging: Path, final: Path, info: RunInfo, log: IO[str]) -> dict[str, Any] | None:
    """The record the notebook wrote to out_dir (the staging dir itself), its staging paths
    rewritten to the final run dir; ``None`` when there is none (or it is unreadable)."""
    record_path = staging / RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        fixed = _rewrite_paths(record, str(staging), str(final))
        if fixed != record:
            write_json(record_path, fixed)
            record = fixed
        info.record = final / RECORD
    except (OSError, ValueError) as e:
        log.write(f"record.json unreadable: {e}\n")
        return None
    return record


def _write_report(prep: PreparedRun, staging: Path, final: Path, info: RunInfo,
                  record: dict[str, Any] | None, log: IO[str]) -> None:
    """``report.html`` of the executed notebook; a run whose report cannot be written is
    failed (DESIGN: a run is complete with its report, or visibly failed)."""
    if not (staging / NOTEBOOK).is_file():
        return
    try:
        from workbench.reports import export_html

        export_html(
            staging / NOTEBOOK, staging / REPORT,
            title=f"{prep.path.stem} — run {prep.id}",
            parameters=prep.parameters, record=record,
            status=info.status if info.ok else f"{FAILED}: {failure_line(info)}",
        )
        info.report = final / REPORT
    except Exception as e:
        # the executed notebook and record stay in the run dir, and a rerun retries
        log.write(f"report.html not written: {type(e).__name__}: {e}\n")
        (staging / REPORT).unlink(missing_ok=True)
        if info.ok:
            info.status = FAILED
            info.error = (f"report.html not written: {type(e).__name__}: {e} (the "
                          "notebook ran to the end: see notebook.ipynb; fix the report "
                          "export, e.g. a missing nbconvert template, and run again)")


def _execute_once(
    prep: PreparedRun,
    staging: Path,
    final: Path,
    *,
    kernel: str,
    timeout: float | None,
    progress: bool,
    attempt: int,
    earlier: list[str],
) -> tuple[RunInfo, bool]:
    """One papermill execution into ``staging``; writes every file but does not publish.
    Returns the run's info and whether it failed because its kernel did not start or died."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    staging.mkdir(parents=True)
    started = now()
    info = RunInfo(
        id=prep.id, notebook=str(prep.path), notebook_sha256=prep.notebook_sha256,
        parameters=prep.parameters, status=RUNNING, started=started, attempts=attempt,
        pid=os.getpid(), host=socket.gethostname(), kernel=kernel, run_dir=staging,
    )
    write_json(staging / PARAMETERS, prep.parameters)
    write_json(staging / STATUS, info.to_dict())
    source_nb = nbformat.reads(prep.notebook_bytes.decode("utf-8"), as_version=4)
    pm_params = dict(prep.given)
    if OUT_DIR in prep.specs:
        pm_params[OUT_DIR] = "."  # the kernel runs in the staging dir
    exc: BaseException | None = None
    with open(staging / LOG, "w", encoding="utf-8") as log:
        log.write(f"workbench run {prep.id} (attempt {attempt})\n")
        log.write(f"notebook: {prep.path}\nsha256: {prep.notebook_sha256}\n")
        log.write(f"parameters: {canonical_json(prep.parameters)}\nkernel: {kernel}\n")
        log.write(f"started: {started}\nhost: {info.host} pid {info.pid}\n")
        for line in earlier:
            log.write(f"earlier attempt failed: {line}\n")
        log.write("--- notebook output ---\n")
        log.flush()
        bar: bool | dict[str, Any] = {"desc": f"{prep.path.stem} {prep.id}"} if progress else False
        try:
            with papermill_inspection_quiet():  # its false warnings about [range: >= 1] lines
                papermill.execute_notebook(
                    source_nb,
                    str(staging / NOTEBOOK),
                    parameters=pm_params,
                    kernel_name=kernel,
                    language="python",
                    progress_bar=bar,
                    stdout_file=log,
                    stderr_file=log,
                    execution_timeout=timeout,
                    request_save_on_cell_execute=True,
                    resources={"metadata": {"path": str(staging)}},
                    config=kernel_config(),
                )
        except (KeyboardInterrupt, Exception) as e:
            exc = e
        finished = now()
        info.finished = finished
        info.duration_s = round(elapsed(started, finished), 3)
        log.write("--- end of notebook output ---\n")
        if exc is None:
            info.status = COMPLETE
        else:
            info.status = FAILED
            info.failing_cell = failing_cell(staging / NOTEBOOK, source_nb, exc)
            if info.failing_cell is None:
                info.error = f"{type(exc).__name__}: {strip_ansi(str(exc)).strip()}"
            if isinstance(exc, PapermillExecutionError):
                tb = "\n".join(exc.traceback)
            else:
                tb = "".join(traceback.format_exception(exc))
            log.write(f"FAILED: {failure_line(info)}\n{strip_ansi(tb)}\n")
        record = _take_record(staging, final, info, log)
        _write_report(prep, staging, final, info, record, log)
        log.write(f"finished: {finished} status: {info.status}"
                  f"{'' if info.ok else ' — ' + failure_line(info)}\n")
    info.run_dir = final
    write_json(staging / STATUS, info.to_dict())
    if isinstance(exc, KeyboardInterrupt):
        publish(staging, final)
        raise exc
    return info, exc is not None and is_kernel_error(exc)


def run(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    runs_root: str | os.PathLike[str] = "runs",
    run_id: str | None = None,
    kernel: str = "python3",
    timeout: float | None = None,
    progress: bool = True,
    retries: int = 0,
    force: bool = False,
) -> RunInfo:
    """Execute a notebook with papermill and publish ``runs_root/<id>/``.

    ``notebook`` is a name in :func:`~workbench.runs.analyses_dirs` or an explicit
    :class:`~pathlib.Path` (see :func:`~workbench.runs.resolve_notebook`). Parameters are checked
    and coerced first (:func:`~workbench.runs.validate_parameters`): a bad name, type or notebook
    raises ``ValueError`` before any kernel starts. The id is
    :func:`~workbench.runs.compute_run_id` unless ``run_id`` is given. A run already published
    ``complete`` under that id is returned as it is (``skipped=True``) unless ``force``.

    The kernel (``kernel``, a Jupyter kernelspec) runs in the staging dir
    ``runs_root/.<id>.tmp-<random>/`` with ``out_dir = "."``; ``timeout`` is papermill's per-cell
    execution timeout (seconds, ``None``: none); ``progress`` shows papermill's progress bar. A
    run whose kernel failed to start or died is retried up to ``retries`` times (a fresh kernel
    and staging dir each time). Failed runs are published too, with ``status.json`` saying
    ``failed`` and naming the failing cell; a later run of the same id replaces them.
    """
    prep = prepare(notebook, parameters, run_id=run_id)
    check_kernel(kernel)
    return run_prepared(prep, runs_root=runs_root, kernel=kernel, timeout=timeout,
                        progress=progress, retries=retries, force=force)


def run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One run of a sweep from its JSON spec (notebook path, parameters, run id, runs root,
    kernel, timeout, retries, force), in a sweep's runner process or Ray task: the run's
    :class:`RunInfo` as a dict, plus ``skipped``."""
    prep = prepare(Path(spec["notebook"]), spec["parameters"], run_id=spec["run_id"])
    info = run_prepared(prep, runs_root=spec["runs_root"], kernel=spec["kernel"],
                        timeout=spec["timeout"], progress=False, retries=spec["retries"],
                        force=spec["force"])
    out = info.to_dict()
    out["skipped"] = info.skipped
    return out


def run_prepared(
    prep: PreparedRun,
    *,
    runs_root: str | os.PathLike[str] = "runs",
    kernel: str = "python3",
    timeout: float | None = None,
    progress: bool = True,
    retries: int = 0,
    force: bool = False,
) -> RunInfo:
    """:func:`run` for an already prepared (validated) run."""
    root = Path(runs_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / prep.id
    if not force:
        existing = read_info(final)
        if existing is not None and existing.status == COMPLETE:
            existing.skipped = True
            return existing
    remove_stale(root, prep.id)
    earlier: list[str] = []
    attempt = 1
    while True:
        staging = new_staging(root, prep.id)
        try:
            info, kernel_failed = _execute_once(
                prep, staging, final, kernel=kernel, timeout=timeout, progress=progress,
                attempt=attempt, earlier=earlier,
            )
        except KeyboardInterrupt:
            raise
        except BaseException:
            # an error of the runner itself (not of the notebook): publish what there is
            with contextlib.suppress(Exception):
                fail_staged(staging, final, "runner error: " + traceback.format_exc(limit=3))
            raise
        if kernel_failed and attempt <= retries:
            earlier.append(failure_line(info))
            shutil.rmtree(staging, ignore_errors=True)
            attempt += 1
            continue
        publish(staging, final)
        return read_info(final) or info
