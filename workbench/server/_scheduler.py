"""The scheduler: which of the runs this server launched execute now, and which wait.

At most ``limit()`` workers (``c.WorkbenchServer.max_parallel_runs``) run at once; a run
launched beyond that is ``queued`` (in memory: a server restart forgets it) and starts, in
launch order, when a worker exits (each worker is watched by a thread that calls
:meth:`Scheduler.pump`). A run already complete in the store is not launched again; one
running (here, or from the CLI on the same store) is not started twice. Cancelling a queued
run publishes it failed without starting it; cancelling a running one signals its worker
(:mod:`workbench.server._processes`). The run views (:meth:`Scheduler.listing`,
:meth:`Scheduler.status`, :meth:`Scheduler.published`) merge these in-memory runs with the
store's.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.runs import (
    COMPLETE,
    RUNNING,
    PreparedRun,
    RunInfo,
    get_run,
    list_runs,
    record_failure,
)
from workbench.server._errors import RequestError
from workbench.server._processes import Job, signal_tree
from workbench.server._status import find, with_progress

CANCELLED = "cancelled by the user (DELETE /workbench/runs/<id>)"
CANCELLED_QUEUED = "cancelled by the user before it started (DELETE /workbench/runs/<id>)"
#: the status of a run launched while ``max_parallel_runs`` workers were busy
QUEUED = "queued"


class Scheduler:
    """The runs this server launched: ``jobs`` (running workers) and ``queued`` (waiting for a
    free worker slot, in launch order), over the run store at ``runs_root``."""

    def __init__(self, runs_root: Path, *, start: Callable[[PreparedRun], Job],
                 limit: Callable[[], int], log: logging.Logger | logging.LoggerAdapter[Any]
                 ) -> None:
        self.runs_root = runs_root
        self._start_worker = start
        self._limit = limit
        self.log = log
        self.jobs: dict[str, Job] = {}
        self.queued: dict[str, PreparedRun] = {}
        # jobs and queued are touched from handler threads and the workers' watcher threads
        self._lock = threading.RLock()

    # -- launching ----------------------------------------------------------------------------

    def launch_many(self, preps: list[PreparedRun]) -> list[tuple[int, dict[str, Any]]]:
        """For each run: 200 with its info when it is complete already; else 202 ``{id, status,
        parameters}``, ``status`` ``running`` (started now, or running already) or ``queued``
        (``limit()`` workers busy). The run store is scanned once."""
        root = self.runs_root
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
                elif len(self.jobs) >= self._limit():
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
        """Start queued runs while fewer than ``limit()`` workers are running (called whenever
        a worker exits)."""
        with self._lock:
            self.reap()
            while self.queued and len(self.jobs) < self._limit():
                rid = next(iter(self.queued))
                prep = self.queued.pop(rid)
                try:
                    self._start(prep)
                except Exception as e:  # no worker could start: this run only
                    self.log.error("workbench: queued run %s could not start: %r", rid, e)
                    record_failure(prep, self.runs_root, f"the server could not start its "
                                   f"worker: {e!r}")

    def reap(self) -> None:
        """Collect exited workers (no zombies); forget them once their run is on disk."""
        with self._lock:
            for rid, job in list(self.jobs.items()):
                if job.proc.poll() is not None:
                    self.jobs.pop(rid, None)

    def _start(self, prep: PreparedRun) -> Job:
        """A worker for ``prep`` (call with the lock held), watched by a thread that starts the
        next queued run when it exits."""
        job = self._start_worker(prep)
        self.jobs[prep.id] = job
        self.log.info("workbench: run %s (%s) started in worker pid %d", prep.id,
                      prep.path.name, job.proc.pid)
        threading.Thread(target=self._watch, args=(job,), name=f"wb-watch-{prep.id}",
                         daemon=True).start()
        return job

    def _watch(self, job: Job) -> None:
        job.proc.wait()
        try:
            self.pump()
        except Exception:  # never let a watcher thread die loudly; the next exit pumps again
            self.log.exception("workbench: starting queued runs failed")

    # -- cancelling ---------------------------------------------------------------------------

    def cancel_queued(self, run_id: str) -> dict[str, Any] | None:
        """Cancel a run that is still queued: it never starts and is published ``failed`` with
        ``error`` saying so. ``None`` when ``run_id`` is not queued."""
        with self._lock:
            prep = self.queued.pop(run_id, None)
        if prep is None:
            return None
        return record_failure(prep, self.runs_root, CANCELLED_QUEUED).to_dict()

    def kill(self, run_id: str) -> Job:
        """SIGTERM a running job's process group (and its kernel); ``RequestError`` (404 or
        409, naming why) if this server is not running it."""
        with self._lock:
            job = self.jobs.get(run_id)
        if job is None or job.proc.poll() is not None:
            info = find(self.runs_root, run_id)
            if info is None:
                raise RequestError(404, f"no run {run_id!r}")
            if info.status == RUNNING:
                raise RequestError(409, f"run {run_id!r} was not started by this server; "
                                   f"stop its runner process (pid {info.pid}) instead")
            raise RequestError(409, f"run {run_id!r} is not running (status: {info.status})")
        job.cancelled = True
        signal_tree(job.proc.pid, signal.SIGTERM)
        return job

    def force_kill(self, job: Job) -> None:
        signal_tree(job.proc.pid, signal.SIGKILL)

    def mark_cancelled(self, job: Job) -> dict[str, Any]:
        """After the worker is gone: publish its run as failed (cancelled)."""
        job.proc.wait()
        info = record_failure(job.prep, self.runs_root, CANCELLED, pid=job.proc.pid)
        with self._lock:
            if self.jobs.get(job.prep.id) is job:
                self.jobs.pop(job.prep.id)
        return info.to_dict()

    # -- views --------------------------------------------------------------------------------

    def _pending(self, rid: str) -> dict[str, Any]:
        job = self.jobs[rid]
        return {"id": rid, "notebook": str(job.prep.path), "parameters": job.prep.parameters,
                "status": RUNNING, "pid": job.proc.pid, "progress": None}

    @staticmethod
    def _waiting(prep: PreparedRun) -> dict[str, Any]:
        return {"id": prep.id, "notebook": str(prep.path), "parameters": prep.parameters,
                "status": QUEUED, "pid": None, "progress": None}

    def listing(self) -> list[dict[str, Any]]:
        """``GET /workbench/runs``: queued runs first, then launched ones not on disk yet, then
        the store's runs, newest first."""
        infos = list_runs(self.runs_root)
        seen = {i.id for i in infos}
        with self._lock:
            pending = [self._pending(r) for r, j in self.jobs.items()
                       if r not in seen and j.proc.poll() is None]
            waiting = [self._waiting(p) for p in reversed(self.queued.values())]
            self.reap()
        queued = {w["id"] for w in waiting}  # a queued re-run of a failed run: the queued one
        out = [with_progress(i) for i in reversed(infos) if i.id not in queued]
        return waiting + pending + out

    def status(self, run_id: str) -> dict[str, Any]:
        """``GET /workbench/runs/<id>``; 404 for an unknown run."""
        with self._lock:
            prep = self.queued.get(run_id)
        if prep is not None:
            return self._waiting(prep)
        info = find(self.runs_root, run_id)
        job = self.jobs.get(run_id)
        if job is not None and job.proc.poll() is None and (info is None or info.status != RUNNING):
            return self._pending(run_id)  # launched; its staging dir is not written yet
        if info is None:
            raise RequestError(404, f"no run {run_id!r}")
        return with_progress(info)

    def published(self, run_id: str) -> RunInfo:
        """The finished run ``run_id``; 409 while it is queued or running, else 404."""
        try:
            return get_run(run_id, self.runs_root)
        except KeyError as e:
            if (find(self.runs_root, run_id) is not None or run_id in self.jobs
                    or run_id in self.queued):
                raise RequestError(409, f"run {run_id!r} has not finished yet") from None
            raise RequestError(404, str(e.args[0]).replace(str(self.runs_root), "runs")
                               ) from None
