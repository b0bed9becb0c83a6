"""Notebook runs: per-run overhead, and sweep throughput with the local and Ray executors.

A toy notebook (a ``parameters`` cell with ``seed`` and ``work``, a cell doing ``work`` seconds
of pure-Python arithmetic, a cell writing a small ``record.json`` to ``out_dir``) is run:

* **per-run overhead**: the notebook's code cells (parameters included) as one script in a
  plain ``python -c`` process, against :func:`workbench.runs.run` of the notebook (papermill:
  kernel start and execution; then the report export and publishing of the run directory).
  Median of ``--repeats``; the split comes from the run's ``status.json`` (``duration_s`` is the
  papermill part, kernel start included).
* **sweep throughput**: ``--runs`` runs (distinct seeds, a fresh runs root each time, so none is
  skipped) through :func:`workbench.runs.sweep` with 1, 2 and 4 workers, executor ``local``
  (one Python process + kernel per run) and ``ray`` (one Ray task per run). Ray is started with
  ``ray.init(num_cpus=workers)`` before the clock starts (its start-up time is printed apart),
  so both executors are timed on the runs alone. Runs per minute.

Usage: python benchmarks/runs.py [--runs 8] [--workers 1 2 4] [--executors local ray]
       [--work 0.2] [--repeats 3]
Needs the dev extra (papermill, nbconvert, ipykernel; ray for the Ray executor).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from workbench import runs

PARAMS = 'seed = 0\nwork = 0.2  # seconds of arithmetic\nout_dir = "."\n'
CELLS = [
    "import json, os, time\n"
    "t0 = time.perf_counter()\n"
    "acc = seed\n"
    "while time.perf_counter() - t0 < work:\n"
    "    for i in range(10000):\n"
    "        acc = (acc * 1103515245 + 12345) % 2147483648\n"
    "print(acc)",
    'json.dump({"title": "bench", "parameters": {"seed": seed}, "acc": acc},\n'
    '          open(os.path.join(out_dir, "record.json"), "w"))',
]


def write_notebook(path: Path) -> Path:
    nb = new_notebook()
    cell = new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(new_code_cell(c) for c in CELLS)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def plain_python(work: float, out_dir: Path) -> float:
    code = PARAMS.replace("work = 0.2", f"work = {work}").replace(
        'out_dir = "."', f"out_dir = {str(out_dir)!r}") + "\n".join(CELLS)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def overhead(nb: Path, tmp: Path, work: float, repeats: int) -> None:
    plain, total, papermill, rest = [], [], [], []
    for r in range(repeats):
        plain.append(plain_python(work, tmp))
        t0 = time.perf_counter()
        info = runs.run(nb, {"seed": 1000 + r, "work": work}, runs_root=tmp / "overhead",
                        progress=False)
        total.append(time.perf_counter() - t0)
        assert info.ok, info.summary()
        papermill.append(info.duration_s or 0.0)
        rest.append(total[-1] - papermill[-1])
    med = statistics.median
    print(f"\nper-run overhead (work = {work} s, median of {repeats})")
    print(f"  plain `python -c`            {med(plain):6.2f} s")
    print(f"  workbench.runs.run           {med(total):6.2f} s   "
          f"(+{med(total) - med(plain):.2f} s over plain python)")
    print(f"    papermill (kernel + cells) {med(papermill):6.2f} s")
    print(f"    validation, report, publish{med(rest):6.2f} s")


def throughput(nb: Path, tmp: Path, executor: str, workers: int, n: int, work: float) -> None:
    grid = [{"seed": 100 * workers + i, "work": work} for i in range(n)]
    root = tmp / f"{executor}-{workers}"
    started_ray = ""
    if executor == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started_ray = f"   (ray.init {time.perf_counter() - t0:.1f} s, not counted)"
    try:
        t0 = time.perf_counter()
        infos = runs.sweep(nb, grid, executor=executor, workers=workers, runs_root=root,
                           progress=False)
        wall = time.perf_counter() - t0
    finally:
        if executor == "ray":
            import ray

            ray.shutdown()
    ok = sum(i.ok for i in infos)
    print(f"  {executor:<5} workers={workers}  {n} runs in {wall:6.1f} s  "
          f"{60 * n / wall:6.1f} runs/min  ({ok}/{n} complete){started_ray}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--executors", nargs="+", default=["local", "ray"],
                    choices=["local", "ray"])
    ap.add_argument("--work", type=float, default=0.2, help="seconds of work per run")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="wb-bench-runs-") as d:
        tmp = Path(d)
        nb = write_notebook(tmp / "bench.ipynb")
        overhead(nb, tmp, a.work, a.repeats)
        print(f"\nsweep throughput ({a.runs} runs of {a.work} s work each)")
        for executor in a.executors:
            for workers in a.workers:
                throughput(nb, tmp, executor, workers, a.runs, a.work)


if __name__ == "__main__":
    main()
