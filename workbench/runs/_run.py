"""One notebook run: papermill in a staging directory, then published as ``runs/<id>/``."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.runs._params import (
    OUT_DIR,
    ParamSpec,
    effective_parameters,
    notebook_parameters,
    resolve_notebook,
    validate_parameters,
)

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
NOTEBOOK, REPORT, RECORD = "notebook.ipynb", "report.html", "record.json"
PARAMETERS, STATUS, LOG = "parameters.json", "status.json", "log.txt"
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MARKER_TAG = "papermill-error-cell-tag"
_INJECTED_TAG = "injected-parameters"
#: fragments of the messages of errors that mean "the kernel did not start, or died"
_KERNEL_ERRORS = (
    "kernel died", "dead kernel", "kernel didn't respond", "kernel did not respond",
    "kernel_info", "address already in use", "kernel failed to start", "kernel is dead",
    "no kernel", "kernel restarted",
)


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _elapsed(started: str, finished: str) -> float:
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


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
    if not _ID.match(rid):
        raise ValueError(f"run id {rid!r} must match {_ID.pattern}")
    return PreparedRun(path, data, specs, given, effective, rid)


# ------------------------------------------------------------------------------------------
# run directories


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


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


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


def _staged_dirs(root: Path, run_id: str | None = None) -> list[Path]:
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


def _remove_stale(root: Path, run_id: str) -> None:
    for staged in _staged_dirs(root, run_id):
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
        infos += [i for p in _staged_dirs(root) if (i := _staged_info(p)) is not None]
    return sorted(infos, key=lambda i: (i.started or "", i.id))


def get_run(run_id: str, runs_root: str | os.PathLike[str] = "runs") -> RunInfo:
    """The published run ``run_id`` (or a unique prefix of it); ``KeyError`` if there is none."""
    root = Path(runs_root)
    if _ID.match(run_id) and (info := read_info(root / run_id)) is not None:
        return info
    matches = [i for i in list_runs(root, staged=False) if i.id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise KeyError(f"no run {run_id!r} under {root}")
    raise KeyError(f"run id prefix {run_id!r} is ambiguous: {', '.join(i.id for i in matches)}")


# ------------------------------------------------------------------------------------------
# failures


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


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags") or [])


def _failing_cell(executed: Path, source_nb: Any, exc: BaseException) -> dict[str, Any] | None:
    """Locate the failing cell in the executed notebook (papermill saved it before raising)."""
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
        "evalue": _ANSI.sub("", str(evalue)),
        "kernel_error": is_kernel_error(exc),
    }


def _rewrite_paths(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return new + obj[len(old):] if obj == old or obj.startswith(old + os.sep) else obj
    if isinstance(obj, list):
        return [_rewrite_paths(v, old, new) for v in obj]
    if isinstance(obj, dict):
        return {k: _rewrite_paths(v, old, new) for k, v in obj.items()}
    return obj


# ------------------------------------------------------------------------------------------
# the run


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
    started = _now()
    info = RunInfo(
        id=prep.id, notebook=str(prep.path), notebook_sha256=prep.notebook_sha256,
        parameters=prep.parameters, status=RUNNING, started=started, attempts=attempt,
        pid=os.getpid(), host=socket.gethostname(), kernel=kernel, run_dir=staging,
    )
    _write_json(staging / PARAMETERS, prep.parameters)
    _write_json(staging / STATUS, info.to_dict())
    source_nb = nbformat.reads(prep.notebook_bytes.decode("utf-8"), as_version=4)
    pm_params = dict(prep.given)
    if OUT_DIR in prep.specs:
        pm_params[OUT_DIR] = "."  # the kernel runs in the staging dir
    log_path = staging / LOG
    exc: BaseException | None = None
    with open(log_path, "w", encoding="utf-8") as log:
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
            )
        except (KeyboardInterrupt, Exception) as e:
            exc = e
        finished = _now()
        info.finished = finished
        info.duration_s = round(_elapsed(started, finished), 3)
        log.write("--- end of notebook output ---\n")
        if exc is None:
            info.status = COMPLETE
        else:
            info.status = FAILED
            info.failing_cell = _failing_cell(staging / NOTEBOOK, source_nb, exc)
            if info.failing_cell is None:
                info.error = f"{type(exc).__name__}: {_ANSI.sub('', str(exc)).strip()}"
            if isinstance(exc, PapermillExecutionError):
                tb = "\n".join(exc.traceback)
            else:
                tb = "".join(traceback.format_exception(exc))
            log.write(f"FAILED: {failure_line(info)}\n{_ANSI.sub('', tb)}\n")
        # the record: copied from out_dir (the staging dir itself); staging paths -> final
        record_path = staging / RECORD
        record: dict[str, Any] | None = None
        if record_path.is_file():
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
                fixed = _rewrite_paths(record, str(staging), str(final))
                if fixed != record:
                    _write_json(record_path, fixed)
                    record = fixed
                info.record = final / RECORD
            except (OSError, ValueError) as e:
                log.write(f"record.json unreadable: {e}\n")
        if (staging / NOTEBOOK).is_file():
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
                # a run is complete with its report or visibly failed (DESIGN: runs are atomic);
                # the executed notebook and record stay in the run dir, and a rerun retries
                log.write(f"report.html not written: {type(e).__name__}: {e}\n")
                (staging / REPORT).unlink(missing_ok=True)
                if info.ok:
                    info.status = FAILED
                    info.error = (f"report.html not written: {type(e).__name__}: {e} (the "
                                  "notebook ran to the end: see notebook.ipynb; fix the report "
                                  "export, e.g. a missing nbconvert template, and run again)")
        log.write(f"finished: {finished} status: {info.status}"
                  f"{'' if info.ok else ' — ' + failure_line(info)}\n")
    info.run_dir = final
    _write_json(staging / STATUS, info.to_dict())
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

    ``notebook`` is a name in :func:`~workbench.runs.analyses_dir` or an explicit
    :class:`~pathlib.Path` (see :func:`~workbench.runs.resolve_notebook`). Parameters are checked
    and coerced first (:func:`~workbench.runs.validate_parameters`): a bad name, type or notebook
    raises ``ValueError`` before any kernel starts. The id is
    :func:`compute_run_id` unless ``run_id`` is given. A run already published ``complete``
    under that id is returned as it is (``skipped=True``) unless ``force``.

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
    _remove_stale(root, prep.id)
    earlier: list[str] = []
    attempt = 1
    while True:
        staging = root / f".{prep.id}.tmp-{uuid.uuid4().hex[:8]}"
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
                _fail_staged(staging, final, "runner error: " + traceback.format_exc(limit=3))
            raise
        if kernel_failed and attempt <= retries:
            earlier.append(failure_line(info))
            shutil.rmtree(staging, ignore_errors=True)
            attempt += 1
            continue
        publish(staging, final)
        return read_info(final) or info


def _fail_staged(staging: Path, final: Path, error: str) -> None:
    info = read_info(staging)
    if info is None:
        return
    info.status, info.error, info.finished = FAILED, error, _now()
    info.run_dir = final
    _write_json(staging / STATUS, info.to_dict())
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
    for staged in _staged_dirs(root, prep.id):
        sinfo = read_info(staged)
        if sinfo is not None and sinfo.status == RUNNING and (pid is None or sinfo.pid == pid):
            with open(staged / LOG, "a", encoding="utf-8") as log:
                log.write(f"\nFAILED: {error}\n{output[-4000:]}\n")
            _fail_staged(staged, final, error)
            return read_info(final) or sinfo
    staging = root / f".{prep.id}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    now = _now()
    info = RunInfo(
        id=prep.id, notebook=str(prep.path), notebook_sha256=prep.notebook_sha256,
        parameters=prep.parameters, status=FAILED, started=now, finished=now, error=error,
        run_dir=final, pid=pid, host=socket.gethostname(),
    )
    _write_json(staging / PARAMETERS, prep.parameters)
    (staging / LOG).write_text(f"workbench run {prep.id}\nFAILED: {error}\n{output[-4000:]}\n",
                               encoding="utf-8")
    _write_json(staging / STATUS, info.to_dict())
    publish(staging, final)
    return read_info(final) or info
