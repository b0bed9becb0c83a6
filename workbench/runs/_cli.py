"""Command-line helpers for ``workbench run``, ``workbench sweep`` and ``workbench runs``.

Each ``main_*`` takes the arguments after the sub-command (a list of strings) and returns an
exit status: 0 when every run completed, 1 when one failed, 2 for a refused notebook or
parameter (nothing was started). ``add_*_arguments`` fill an ``argparse`` parser, for a CLI that
builds its own sub-parsers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from workbench.runs._params import notebook_argument


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="a notebook name in the analyses dir (notebooks/), or a "
                   "path ending in .ipynb (./mine.ipynb)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="a notebook parameter (repeatable)")
    p.add_argument("--runs-root", default="runs", help="where run dirs go (default: runs)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p.add_argument("--force", action="store_true", help="re-run runs that are complete")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--run-id", default=None, help="the run's id (default: content hash)")
    p.add_argument("--retries", type=int, default=0,
                   help="retries when the kernel fails to start or dies (default: 0)")


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--grid", required=True, help="YAML grid: name -> list of values "
                   "(cartesian product) or a list of parameter mappings")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, default=2, help="runs at a time (default: 2)")
    p.add_argument("--address", default=None, help="Ray cluster address (ray executor)")
    p.add_argument("--retries", type=int, default=1,
                   help="retries when a kernel fails to start or dies (default: 1)")


def add_runs_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list runs")
    ls.add_argument("--runs-root", default="runs")
    ls.add_argument("--json", action="store_true", help="JSON lines")
    show = sub.add_parser("show", help="one run's status.json")
    show.add_argument("run_id")
    show.add_argument("--runs-root", default="runs")


def _params(pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    return {name: value for name, value in pairs}


def _print_info(info: Any) -> None:
    where = info.run_dir if info.run_dir is not None else ""
    note = " (already complete, skipped)" if info.skipped else ""
    print(f"{info.summary()}{note}\n  -> {where}")


def main_run(argv: Sequence[str] | None = None) -> int:
    from workbench.runs._run import run

    p = argparse.ArgumentParser(prog="workbench run", description="Run one notebook.")
    add_run_arguments(p)
    a = p.parse_args(argv)
    try:
        info = run(notebook_argument(a.notebook), _params(a.parameter), runs_root=a.runs_root,
                   run_id=a.run_id, kernel=a.kernel, timeout=a.timeout,
                   progress=not a.no_progress, retries=a.retries, force=a.force)
    except (ValueError, FileNotFoundError) as e:
        print(f"workbench run: {e}", file=sys.stderr)
        return 2
    _print_info(info)
    return 0 if info.ok else 1


def main_sweep(argv: Sequence[str] | None = None) -> int:
    from workbench.runs._sweep import expand_grid, load_grid, sweep

    p = argparse.ArgumentParser(prog="workbench sweep",
                                description="Run one notebook over a grid of parameters.")
    add_sweep_arguments(p)
    a = p.parse_args(argv)
    fixed = _params(a.parameter)
    try:
        grid = [{**fixed, **point} for point in expand_grid(load_grid(a.grid))]
        infos = sweep(notebook_argument(a.notebook), grid, executor=a.executor,
                      workers=a.workers, address=a.address, runs_root=a.runs_root,
                      retries=a.retries, kernel=a.kernel, timeout=a.timeout, force=a.force,
                      progress=not a.no_progress)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"workbench sweep: {e}", file=sys.stderr)
        return 2
    for info in infos:
        _print_info(info)
    failed = sum(not i.ok for i in infos)
    print(f"{len(infos)} runs: {len(infos) - failed} complete, {failed} failed")
    return 0 if failed == 0 else 1


def main_runs(argv: Sequence[str] | None = None) -> int:
    from workbench.runs._run import get_run, list_runs

    p = argparse.ArgumentParser(prog="workbench runs", description="Runs on disk.")
    add_runs_arguments(p)
    a = p.parse_args(argv)
    if a.action == "show":
        try:
            info = get_run(a.run_id, a.runs_root)
        except KeyError as e:
            print(f"workbench runs: {e.args[0]}", file=sys.stderr)
            return 1
        print(json.dumps(info.to_dict(), indent=2, sort_keys=True))
        return 0
    for info in list_runs(a.runs_root):
        print(json.dumps(info.to_dict(), sort_keys=True) if a.json else info.summary())
    return 0
