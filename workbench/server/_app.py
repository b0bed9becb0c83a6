"""The extension's state: its configuration and the worker processes it launched."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Int, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from workbench.runs._params import analyses_dir as default_analyses_dir
from workbench.runs._params import notebook_parameters, validate_parameters
from workbench.runs._run import (
    COMPLETE,
    NOTEBOOK,
    RUNNING,
    PreparedRun,
    RunInfo,
    get_run,
    list_runs,
    prepare,
    record_failure,
)
from workbench.server._sweep import check_grid, grid_points

#: run ids the server accepts in URLs: the store's content hashes (hex), nothing else
RUN_ID = re.compile(r"^[0-9a-f]{6,64}$")
#: notebook names: the run store's rule (a file of the analyses folder, no separators)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
CANCELLED = "cancelled by the user (DELETE /workbench/runs/<id>)"
CANCELLED_QUEUED = "cancelled by the user before it started (DELETE /workbench/runs/<id>)"
#: the status of a run launched while ``max_parallel_runs`` workers were busy
QUEUED = "queued"


class RequestError(Exception):
    """A request the server refuses: ``status`` and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Job:
    """A run this server launched: its worker process and what it was launched with."""

    prep: PreparedRun
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    cancelled: bool = False


class WorkbenchServer(LoggingConfigurable):
    """Configuration of the workbench server extension (``c.WorkbenchServer.*``)."""

    analyses_dir = Unicode(
        help="the folder of analysis notebooks that runs are launched from (by name only); "
        "default: workbench.runs.analyses_dir() ($WORKBENCH_ANALYSES or the repo's notebooks/)"
    ).tag(config=True)
    runs_root = Unicode(
        help="where run directories are written and read; default: <server root_dir>/runs"
    ).tag(config=True)
    kernel = Unicode("python3", help="the Jupyter kernel runs execute with").tag(config=True)
    max_parallel_runs = Int(
        2, help="the most runs (worker processes) this server executes at once; runs launched "
        "beyond it are listed with status 'queued' and start, in launch order, as others end"
    ).tag(config=True)
    max_sweep_runs = Int(
        32, help="the most runs (grid points) one POST /workbench/sweeps may launch; a larger "
        "grid is refused with 400"
    ).tag(config=True)
    root_dir = Unicode("", help="the server's root_dir (set by the extension loader)")

    @default("analyses_dir")
    def _default_analyses_dir(self) -> str:
        return str(default_analyses_dir())

    @default("runs_root")
    def _default_runs_root(self) -> str:
        return str(Path(self.root_dir or os.getcwd()).expanduser() / "runs")

    @validate("max_parallel_runs", "max_sweep_runs")
    def _at_least_one(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < 1:
            raise TraitError(f"WorkbenchServer.{proposal['trait'].name} must be >= 1, not {value}")
        return value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobs: dict[str, Job] = {}
        #: runs waiting for a free worker slot, in launch order
        self.queued: dict[str, PreparedRun] = {}
        # jobs and queued are touched from handler threads and the workers' watcher threads
        self._lock = threading.RLock()

    # -- paths --------------------------------------------------------------------------------

    @property
    def analyses_path(self) -> Path:
        return Path(self.analyses_dir).expanduser().resolve()

    @property
    def runs_path(self) -> Path:
        return Path(self.runs_root).expanduser().resolve()

    def resolve_notebook(self, name: Any) -> Path:
        """A notebook *name* -> its file inside the analyses folder; anything else refused."""
        root = self.analyses_path
        if not isinstance(name, str) or not name:
            raise RequestError(400, "'notebook' must be a non-empty string: the name of a "
                               f"notebook in the analyses folder ({root.name}/)")
        if not _NAME.match(name) or ".." in name:
            raise RequestError(400, f"refused notebook name {name!r}: a name is a file of the "
                               "analyses folder (no path separators, no '..', no leading dot)")
        file = name if name.endswith(".ipynb") else name + ".ipynb"
        path = (root / file).resolve()
        if not path.is_relative_to(root):
            raise RequestError(400, f"refused notebook name {name!r}: it resolves outside the "
                               "analyses folder")
        if not path.is_file():
            raise RequestError(404, f"no notebook {file!r} in the analyses folder; available: "
                               f"{', '.join(n['name'] for n in self.analyses()) or 'none'}")
        return path

    @staticmethod
    def check_id(run_id: str) -> str:
        if not RUN_ID.fullmatch(run_id):
            raise RequestError(400, "a run id is 6 to 64 lowercase hex digits")
        return run_id

    # -- analyses -----------------------------------------------------------------------------

    def analyses(self) -> list[dict[str, Any]]:
        root = self.analyses_path
        if not root.is_dir():
            return []
        out = []
        for path in sorted(root.glob("*.ipynb")):
            if path.name.startswith(".") or not path.is_file():
                continue
            if not path.resolve().is_relative_to(root):
                continue  # a symlink out of the folder: not runnable by name
            entry: dict[str, Any] = {
                "name": path.stem, "path": path.name, "title": _title(path), "parameters": [],
            }
            try:
                specs = notebook_parameters(path)
            except Exception as e:  # no parameters cell, unreadable notebook
                entry["error"] = str(e)
            else:
                entry["parameters"] = [
                    {"name": s.name, "type": s.type, "default": _jsonable(s.default, s.source),
                     "help": s.help}
                    for s in specs.values() if s.name != "out_dir"
                ]
            out.append(entry)
        return out

    # -- runs ---------------------------------------------------------------------------------

    def reap(self) -> None:
        """Collect exited workers (no zombies); forget them once their run is on disk."""
        with self._lock:
            for rid, job in list(self.jobs.items()):
                if job.proc.poll() is not None:
                    self.jobs.pop(rid, None)

    def _pending(self, rid: str) -> dict[str, Any]:
        job = self.jobs[rid]
        return {"id": rid, "notebook": str(job.prep.path), "parameters": job.prep.parameters,
                "status": RUNNING, "pid": job.proc.pid, "progress": None}

    @staticmethod
    def _waiting(prep: PreparedRun) -> dict[str, Any]:
        return {"id": prep.id, "notebook": str(prep.path), "parameters": prep.parameters,
                "status": QUEUED, "pid": None, "progress": None}

    def runs(self) -> list[dict[str, Any]]:
        infos = list_runs(self.runs_path)
        seen = {i.id for i in infos}
        with self._lock:
            pending = [self._pending(r) for r, j in self.jobs.items()
                       if r not in seen and j.proc.poll() is None]
            waiting = [self._waiting(p) for p in reversed(self.queued.values())]
            self.reap()
        queued = {w["id"] for w in waiting}  # a queued re-run of a failed run: the queued one
        out = [_with_progress(i) for i in reversed(infos) if i.id not in queued]
        return waiting + pending + out

    def find(self, run_id: str) -> RunInfo | None:
        """A run's info: the running (staged) one first, else the published one."""
        staged = [i for i in list_runs(self.runs_path)
                  if i.id == run_id and i.run_dir is not None and i.run_dir.name != run_id]
        for info in staged:
            if info.status == RUNNING:
                return info
        try:
            return get_run(run_id, self.runs_path)
        except KeyError:
            return staged[-1] if staged else None

    def status(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            prep = self.queued.get(run_id)
        if prep is not None:
            return self._waiting(prep)
        info = self.find(run_id)
        job = self.jobs.get(run_id)
        if job is not None and job.proc.poll() is None and (info is None or info.status != RUNNING):
            return self._pending(run_id)  # launched; its staging dir is not written yet
        if info is None:
            raise RequestError(404, f"no run {run_id!r}")
        return _with_progress(info)

    def published(self, run_id: str) -> RunInfo:
        try:
            return get_run(run_id, self.runs_path)
        except KeyError as e:
            if self.find(run_id) is not None or run_id in self.jobs or run_id in self.queued:
                raise RequestError(409, f"run {run_id!r} has not finished yet") from None
            raise RequestError(404, str(e.args[0]).replace(str(self.runs_path), "runs")) from None

    def prepare(self, body: Any) -> PreparedRun:
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object: "
                               '{"notebook": "<name>", "parameters": {...}}')
        unknown = sorted(set(body) - {"notebook", "parameters"})
        if unknown:
            raise RequestError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; "
                               "expected 'notebook' and 'parameters'")
        if "notebook" not in body:
            raise RequestError(400, "missing field 'notebook' (the name of an analysis notebook)")
        path = self.resolve_notebook(body["notebook"])
        return self._prepare(path, _parameters(body))

    def _refusal(self, e: Exception, prefix: str = "") -> RequestError:
        """A validation error as a 400, the server's own paths left out of the message."""
        return RequestError(400, prefix + str(e).replace(str(self.analyses_path), "<analyses>")
                            .replace(str(self.runs_path), "<runs>"))

    def _prepare(self, path: Path, params: dict[str, Any]) -> PreparedRun:
        try:
            return prepare(path, params)
        except (ValueError, FileNotFoundError) as e:
            raise self._refusal(e) from None

    def prepare_sweep(self, body: Any) -> list[PreparedRun]:
        """A ``POST /workbench/sweeps`` body -> one prepared run per distinct grid point, in
        grid order; everything is checked before anything runs (``RequestError`` 400)."""
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
        path = self.resolve_notebook(body["notebook"])
        fixed = _parameters(body)
        try:
            specs = notebook_parameters(path)
        except (ValueError, FileNotFoundError) as e:  # no parameters cell
            raise self._refusal(e) from None
        try:
            fixed = validate_parameters(path, fixed)
        except ValueError as e:
            raise self._refusal(e, "'parameters': ") from None
        try:
            grid = check_grid(body["grid"], fixed, specs, notebook=path.name,
                              cap=self.max_sweep_runs)
        except ValueError as e:
            raise self._refusal(e) from None
        preps: dict[str, PreparedRun] = {}
        for point in grid_points(grid, fixed):
            prep = self._prepare(path, point)
            preps.setdefault(prep.id, prep)  # "1" and 1 for an int: one run
        return list(preps.values())

    def launch(self, prep: PreparedRun) -> tuple[int, dict[str, Any]]:
        """Start a worker for ``prep`` unless the run is complete (200) or running (202); when
        ``max_parallel_runs`` workers are busy the run is queued (202, status ``queued``)."""
        return self.launch_many([prep])[0]

    def launch_many(self, preps: list[PreparedRun]) -> list[tuple[int, dict[str, Any]]]:
        """:meth:`launch` for each run, the run store scanned once."""
        root = self.runs_path
        elsewhere = {i.id for i in list_runs(root) if i.status == RUNNING}  # e.g. the CLI's
        out: list[tuple[int, dict[str, Any]]] = []
        for prep in preps:
            try:
                done = get_run(prep.id, root)
            except KeyError:
                done = None
            if done is not None and done.id == prep.id and done.status == COMPLETE:
                out.append((200, done.to_dict()))
                continue
            with self._lock:
                self.reap()
                job = self.jobs.get(prep.id)
                if prep.id in self.queued:
                    status = QUEUED
                elif (job is not None and job.proc.poll() is None) or prep.id in elsewhere:
                    status = RUNNING
                elif len(self.jobs) >= self.max_parallel_runs:
                    self.queued[prep.id] = prep
                    status = QUEUED
                    self.log.info("workbench: run %s (%s) queued: %d runs running", prep.id,
                                  prep.path.name, len(self.jobs))
                else:
                    self._start(prep)
                    status = RUNNING
            out.append((202, {"id": prep.id, "status": status, "parameters": prep.parameters}))
        return out

    def pump(self) -> None:
        """Start queued runs while fewer than ``max_parallel_runs`` workers are running (called
        whenever a worker exits)."""
        with self._lock:
            self.reap()
            while self.queued and len(self.jobs) < self.max_parallel_runs:
                rid = next(iter(self.queued))
                prep = self.queued.pop(rid)
                try:
                    self._start(prep)
                except Exception as e:  # no worker could start: this run only
                    self.log.error("workbench: queued run %s could not start: %r", rid, e)
                    record_failure(prep, self.runs_path, f"the server could not start its "
                                   f"worker: {e!r}")

    def _start(self, prep: PreparedRun) -> Job:
        """A worker process for ``prep`` (call with the lock held), watched by a thread that
        starts the next queued run when it exits."""
        root = self.runs_path
        logs = root / ".workbench-server"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{prep.id}.log"
        spec = {"notebook": str(prep.path), "parameters": prep.given, "run_id": prep.id,
                "runs_root": str(root), "kernel": self.kernel}
        env = dict(os.environ, WORKBENCH_ANALYSES=str(self.analyses_path))
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workbench.server._worker", json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                env=env, start_new_session=True,  # its own process group: cancel kills it all
            )
        job = Job(prep, proc, log, time.time())
        self.jobs[prep.id] = job
        self.log.info("workbench: run %s (%s) started in worker pid %d", prep.id,
                      prep.path.name, proc.pid)
        threading.Thread(target=self._watch, args=(job,), name=f"wb-watch-{prep.id}",
                         daemon=True).start()
        return job

    def _watch(self, job: Job) -> None:
        job.proc.wait()
        try:
            self.pump()
        except Exception:  # never let a watcher thread die loudly; the next exit pumps again
            self.log.exception("workbench: starting queued runs failed")

    def cancel_queued(self, run_id: str) -> dict[str, Any] | None:
        """Cancel a run that is still queued: it never starts and is published ``failed`` with
        ``error`` saying so. ``None`` when ``run_id`` is not queued."""
        with self._lock:
            prep = self.queued.pop(run_id, None)
        if prep is None:
            return None
        return record_failure(prep, self.runs_path, CANCELLED_QUEUED).to_dict()

    def kill(self, run_id: str) -> Job:
        """Signal a running job's process group (and its kernel); ``RequestError`` if none."""
        with self._lock:
            job = self.jobs.get(run_id)
        if job is None or job.proc.poll() is not None:
            info = self.find(run_id)
            if info is None:
                raise RequestError(404, f"no run {run_id!r}")
            if info.status == RUNNING:
                raise RequestError(409, f"run {run_id!r} was not started by this server; "
                                   f"stop its runner process (pid {info.pid}) instead")
            raise RequestError(409, f"run {run_id!r} is not running (status: {info.status})")
        job.cancelled = True
        _signal_tree(job.proc.pid, signal.SIGTERM)
        return job

    def force_kill(self, job: Job) -> None:
        _signal_tree(job.proc.pid, signal.SIGKILL)

    def mark_cancelled(self, job: Job) -> dict[str, Any]:
        """After the worker is gone: publish its run as failed (cancelled)."""
        job.proc.wait()
        info = record_failure(job.prep, self.runs_path, CANCELLED, pid=job.proc.pid)
        with self._lock:
            if self.jobs.get(job.prep.id) is job:
                self.jobs.pop(job.prep.id)
        return info.to_dict()


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    """A request's ``parameters`` (absent or null: none); 400 unless a JSON object."""
    params = body.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RequestError(400, "'parameters' must be a JSON object of name -> value, got "
                           f"{type(params).__name__}")
    return params


def _signal_tree(pid: int, sig: int) -> None:
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


def _title(path: Path) -> str:
    """The notebook's first markdown heading, else its file name."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.stem
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        for line in text.splitlines():
            m = _HEADING.match(line)
            if m:
                return m.group(1)
    return path.stem


def _jsonable(value: Any, source: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return source
    return value


def _progress(info: RunInfo) -> dict[str, int] | None:
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


def _with_progress(info: RunInfo) -> dict[str, Any]:
    out = info.to_dict()
    if info.status == RUNNING:
        out["progress"] = _progress(info)
    return out
