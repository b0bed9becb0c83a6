"""Sweeps: one notebook over a grid of parameters, runs in parallel (local processes or Ray)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from workbench.runs._crash import record_failure
from workbench.runs._prepared import PreparedRun, prepare
from workbench.runs._run import check_kernel, run_spec
from workbench.runs._store import COMPLETE, FAILED, RunInfo, read_info

EXECUTORS = ("local", "ray")
RAY_MISSING = "the 'ray' executor needs Ray: pip install 'workbench[ray]'"


def expand_grid(grid: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Parameter sets of a grid: a mapping of name -> list of values is the cartesian product
    (a scalar value counts as a one-element list); a list of mappings is taken as it is."""
    if isinstance(grid, Mapping):
        names = list(grid)
        values = [v if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence):
        raise TypeError(f"a grid is a mapping of lists or a list of mappings, not {type(grid)}")
    out = []
    for i, point in enumerate(grid):
        if not isinstance(point, Mapping):
            raise TypeError(f"grid entry {i} is not a mapping: {point!r}")
        out.append(dict(point))
    return out


def load_grid(path: str | os.PathLike[str]) -> dict[str, Any] | list[dict[str, Any]]:
    """A grid from YAML (or JSON): a mapping of name -> list of values (cartesian product), or
    a list of mappings (one run each). A mapping with one key ``grid`` or ``runs`` is unwrapped.
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, Mapping) and len(data) == 1 and next(iter(data)) in ("grid", "runs"):
        data = next(iter(data.values()))
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(p, Mapping) for p in data):
        return [dict(p) for p in data]
    raise ValueError(f"{path}: a grid is a mapping of name -> list of values, or a list of "
                     "mappings of parameters")


def ray_options(prep: PreparedRun) -> dict[str, Any]:
    """Ray resources for one run: one CPU, and one GPU when its ``device`` asks for CUDA."""
    opts: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
    if prep.wants_gpu():
        opts["num_gpus"] = 1
    return opts


def _child_spec(prep: PreparedRun, runs_root: Path, kernel: str, timeout: float | None,
                retries: int, force: bool, result: str) -> dict[str, Any]:
    return {
        "notebook": str(prep.path), "parameters": prep.given, "run_id": prep.id,
        "runs_root": str(runs_root), "kernel": kernel, "timeout": timeout,
        "retries": retries, "force": force, "result": result,
    }


class _Runner:
    """A ``python -m workbench.runs._child`` process serving one sweep worker, run after run
    (its output goes to a temp file, so an orphaned kernel cannot hold a pipe open)."""

    def __init__(self) -> None:
        self.out = tempfile.TemporaryFile(mode="w+", prefix="wb-runner-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.runs._child"], stdin=subprocess.PIPE,
            stdout=self.out, stderr=subprocess.STDOUT, text=True,
        )

    def run(self, spec: dict[str, Any], result: Path,
            stop: threading.Event) -> dict[str, Any] | None:
        """Send one spec; the result, or ``None`` when the process died first (or ``stop`` was
        set: the process is then terminated, its kernel ends with it)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(spec) + "\n")
            self.proc.stdin.flush()
        except OSError:
            self.proc.wait()
            return None
        while True:
            if result.exists():
                try:
                    return dict(json.loads(result.read_text(encoding="utf-8")))
                except ValueError:  # not fully written yet
                    pass
            if self.proc.poll() is not None:
                return None
            if stop.is_set():
                self.proc.terminate()
                self.proc.wait()
                return None
            time.sleep(0.05)

    def tail(self, chars: int = 4000) -> str:
        self.out.flush()
        self.out.seek(0)
        return self.out.read()[-chars:]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def _local_worker(queue: Queue[PreparedRun], done: Callable[[PreparedRun, RunInfo], None],
                  stop: threading.Event, runs_root: Path, kernel: str, timeout: float | None,
                  retries: int, force: bool) -> None:
    """One worker of the local executor: runs from the queue, one at a time, through its own
    runner process; a runner that dies loses its current run only (published as failed) and
    is replaced for the next."""
    runner: _Runner | None = None
    with tempfile.TemporaryDirectory(prefix="wb-sweep-") as tmp:
        try:
            while not stop.is_set():
                try:
                    prep = queue.get_nowait()
                except Empty:
                    return
                result = Path(tmp) / f"{prep.id}.json"
                spec = _child_spec(prep, runs_root, kernel, timeout, retries, force, str(result))
                try:
                    if runner is None:
                        runner = _Runner()
                    data = runner.run(spec, result, stop)
                    if stop.is_set():
                        return
                    if data is None or "runner_error" in data:
                        if data is None:
                            code = runner.proc.returncode
                            error = f"runner process exited with code {code} before publishing"
                        else:
                            error = "runner error: " + str(data["runner_error"])[-2000:]
                        info = record_failure(prep, runs_root, error, pid=runner.proc.pid,
                                              output=runner.tail())
                        if data is None:
                            runner.close()
                            runner = None
                    else:
                        info = RunInfo.from_dict(data)
                        info.skipped = bool(data.get("skipped"))
                except Exception as e:  # the launcher itself failed: this run only
                    info = record_failure(prep, runs_root, f"launcher error: {e!r}")
                done(prep, info)
        finally:
            if runner is not None:
                runner.close()


def _ray_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: one :func:`run` in a Ray worker (its own kernel)."""
    return run_spec(spec)


def _run_local(preps: list[PreparedRun], workers: int, done: Callable[[RunInfo], None],
               **kw: Any) -> dict[str, RunInfo]:
    results: dict[str, RunInfo] = {}
    lock = threading.Lock()
    queue: Queue[PreparedRun] = Queue()
    stop = threading.Event()
    for prep in preps:
        queue.put(prep)

    def finished(prep: PreparedRun, info: RunInfo) -> None:
        with lock:
            results[prep.id] = info
            done(info)

    n = min(workers, len(preps))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="wb-run") as pool:
        futures = [pool.submit(_local_worker, queue, finished, stop, **kw) for _ in range(n)]
        try:
            for fut in futures:
                fut.result()
        except BaseException:  # Ctrl-C: stop the runner processes, leave the rest unrun
            stop.set()
            raise
    return results


def _run_ray(preps: list[PreparedRun], workers: int, address: str | None,
             done: Callable[[RunInfo], None], *, runs_root: Path, kernel: str,
             timeout: float | None, retries: int, force: bool) -> dict[str, RunInfo]:
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    started_ray = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started_ray = True
    results: dict[str, RunInfo] = {}
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        task = ray.remote(_ray_task)
        queue = list(preps)
        in_flight: dict[Any, PreparedRun] = {}
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                prep = queue.pop(0)
                opts = ray_options(prep)
                if opts.get("num_gpus") and gpus < 1:
                    info = record_failure(
                        prep, runs_root, f"device {prep.parameters.get('device')!r} needs a GPU "
                        "and the Ray cluster has none")
                    results[prep.id] = info
                    done(info)
                    continue
                spec = _child_spec(prep, runs_root, kernel, timeout, retries, force, "")
                in_flight[task.options(**opts).remote(spec)] = prep
            if not in_flight:
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                prep = in_flight.pop(ref)
                try:
                    data = ray.get(ref)
                    info = RunInfo.from_dict(data)
                    info.skipped = bool(data.get("skipped"))
                except Exception as e:  # a crashed worker, a lost task: this run only
                    info = record_failure(prep, runs_root, f"Ray task failed: {e!r}"[:2000])
                results[prep.id] = info
                done(info)
    finally:
        if started_ray:
            ray.shutdown()
    return results


def sweep(
    notebook: str | os.PathLike[str],
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    executor: str = "local",
    workers: int = 2,
    address: str | None = None,
    runs_root: str | os.PathLike[str] = "runs",
    retries: int = 1,
    kernel: str = "python3",
    timeout: float | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[RunInfo]:
    """Run a notebook once per parameter set of ``grid`` (see :func:`expand_grid`).

    Every parameter set is validated first (``ValueError`` naming the grid entry, before any
    kernel starts); identical sets run once. Runs already published ``complete`` are skipped
    (``skipped=True``) unless ``force``. At most ``workers`` run at a time:

    * ``executor="local"``: ``workers`` threads, each feeding runs one at a time to its own
      runner process (``python -m workbench.runs._child``); every run starts its own kernel,
      and a runner process that dies loses only its current run (published as failed) and is
      replaced;
    * ``executor="ray"``: each run a Ray task (``num_cpus=1``, ``num_gpus=1`` when its
      ``device`` parameter is ``"cuda..."``) calling :func:`~workbench.runs.run` in a Ray worker;
      ``ray.init(address=address)`` when given (the notebook and ``runs_root`` must then be on a
      filesystem every node sees, with workbench installed there), else a local
      ``ray.init(num_cpus=workers)``. An already initialised Ray is used as it is.

    A run whose kernel failed to start or died is retried up to ``retries`` times; a failing
    run (cell error, dead kernel, crashed worker) is published as failed and loses no other.
    Returns one :class:`RunInfo` per distinct parameter set, in grid order.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError(RAY_MISSING) from None
    points = expand_grid(grid)
    preps: list[PreparedRun] = []
    seen: set[str] = set()
    for i, point in enumerate(points):
        try:
            prep = prepare(notebook, point)
        except ValueError as e:
            raise ValueError(f"grid entry {i} {point!r}: {e}") from None
        if prep.id not in seen:
            seen.add(prep.id)
            preps.append(prep)
    check_kernel(kernel)
    root = Path(runs_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, RunInfo] = {}
    todo: list[PreparedRun] = []
    for prep in preps:
        existing = None if force else read_info(root / prep.id)
        if existing is not None and existing.status == COMPLETE:
            existing.skipped = True
            results[prep.id] = existing
        else:
            todo.append(prep)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(preps), initial=len(results), unit="run", desc="sweep",
               disable=not progress)
    failed = 0

    def done(info: RunInfo) -> None:
        nonlocal failed
        failed += info.status == FAILED
        bar.set_postfix(failed=failed)
        bar.update(1)

    try:
        if todo:
            kw: dict[str, Any] = {"runs_root": root, "kernel": kernel, "timeout": timeout,
                                  "retries": retries, "force": force}
            if executor == "local":
                results.update(_run_local(todo, workers, done, **kw))
            else:
                results.update(_run_ray(todo, workers, address, done, **kw))
    finally:
        bar.close()
    return [results[p.id] for p in preps]
