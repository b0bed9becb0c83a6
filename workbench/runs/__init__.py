"""Runs: analysis notebooks executed by papermill into published run directories; sweeps.

::

    from workbench import runs
    info = runs.run("alignment_audit", {"seed": 1, "organism": "small"})
    infos = runs.sweep("alignment_audit", {"seed": [0, 1, 2]}, executor="local", workers=2)

**Notebooks.** ``run("name")`` runs ``name.ipynb`` from the first of :func:`analyses_dirs`
that has it: a user's own folders (``$WORKBENCH_ANALYSES``, ``os.pathsep``-separated; the CLI's
``workbench --analyses DIR``), then the analyses shipped with the package (the checkout's
``notebooks/``, which a wheel carries as ``workbench/analyses/``); names with path separators or
``..`` are refused. A notebook elsewhere runs only when passed as a path (``pathlib.Path``; on
the CLI a path ending in ``.ipynb`` with a separator, ``./mine.ipynb``), and must exist. See
:func:`resolve_notebook`.

**Parameters** are checked before any kernel starts (:func:`validate_parameters`): the notebook
must have a cell tagged ``parameters``; every name must be one of its parameters; values are
coerced to the declared type (annotation / ``# type:`` comment, else the default's literal), so
CLI strings work: ``"3"`` for an int, ``"0.5"`` for a float, ``"true"``/``"false"``, JSON for
lists and dicts. A parameter's comment may declare the values allowed,
``# steps [range: >= 1]`` or ``# [choices: "full", "small"]`` (:class:`ParamSpec`); values
outside them are refused naming the allowed ones (:func:`check_value`). ``out_dir`` is the
runner's: the kernel runs in the run's directory with ``out_dir = "."``. The run id is
``sha256(notebook bytes + canonical JSON of the effective parameters)[:12]`` (defaults included,
so ``{}`` and ``{"seed": 0}`` are one run when 0 is the default).

**Run directory** ``runs/<id>/``::

    notebook.ipynb    the executed notebook (papermill: injected parameters, outputs, widget state)
    report.html       offline report (workbench.reports) with a header: title, parameters,
                      fingerprints of record.json when there is one, status
    record.json       the deployment record, when the notebook wrote one to out_dir
    parameters.json   the effective parameters
    status.json       RunInfo: status, started/finished, failing cell, attempts, pid, host...
    log.txt           the kernel's stdout/stderr, then the outcome (and a failing traceback)
    ...               any other file the notebook wrote to out_dir (figures, data)

A run executes in ``runs/.<id>.tmp-<random>/`` (``status.json`` says ``running``, with the
runner's pid) and is renamed to ``runs/<id>`` when it ends, so a ``runs/<id>`` is always a
finished run. **Failed runs are published too**: ``runs/<id>`` with ``status.json``
``"status": "failed"`` and ``failing_cell`` = ``{index, executed_index, source (first line),
ename, evalue, kernel_error}`` (``index`` counts the notebook's own cells from 0; ``None`` with
``error`` set when no cell was running, e.g. the kernel never started, or the runner process
died: then the dir may hold only ``parameters.json``, ``status.json`` and ``log.txt``). Running
the same id again replaces a failed run and skips a complete one (``skipped=True``) unless
``force=True``. A staging dir whose runner died is listed by :func:`list_runs` as failed and
removed when its id runs again.

**Retries**: a run whose kernel failed to start or died (``DeadKernelError``, kernel-start
timeouts, port races) is retried with a fresh kernel up to ``retries`` times; cell errors are
not retried. A notebook that kills its own kernel therefore ends ``failed`` after its retries.

**Sweeps** (:func:`sweep`): ``executor="local"`` runs each parameter set in its own Python
process from a pool of ``workers`` threads; ``executor="ray"`` runs each as a Ray task
(``num_cpus=1``, plus ``num_gpus=1`` when ``device`` is ``"cuda..."``), on ``ray.init(address=...)``
or a local ``ray.init(num_cpus=workers)``; Ray is the optional extra ``workbench[ray]``.
"""

from __future__ import annotations

from workbench.runs._cli import main_run, main_runs, main_sweep
from workbench.runs._crash import record_failure
from workbench.runs._failures import is_kernel_error
from workbench.runs._params import (
    OUT_DIR,
    ParamSpec,
    analyses_dir,
    analyses_dirs,
    available_notebooks,
    check_name_length,
    check_value,
    coerce_value,
    notebook_argument,
    notebook_parameters,
    resolve_notebook,
    shipped_analyses_dir,
    validate_parameters,
)
from workbench.runs._prepared import PreparedRun, compute_run_id, prepare
from workbench.runs._run import run, run_prepared
from workbench.runs._store import (
    COMPLETE,
    FAILED,
    NOTEBOOK,
    RUNNING,
    RunInfo,
    get_run,
    list_runs,
)
from workbench.runs._sweep import expand_grid, load_grid, ray_options, sweep

__all__ = [
    "COMPLETE",
    "FAILED",
    "NOTEBOOK",
    "OUT_DIR",
    "RUNNING",
    "ParamSpec",
    "PreparedRun",
    "RunInfo",
    "analyses_dir",
    "analyses_dirs",
    "available_notebooks",
    "check_name_length",
    "check_value",
    "coerce_value",
    "compute_run_id",
    "expand_grid",
    "get_run",
    "is_kernel_error",
    "list_runs",
    "load_grid",
    "main_run",
    "main_runs",
    "main_sweep",
    "notebook_argument",
    "notebook_parameters",
    "prepare",
    "ray_options",
    "record_failure",
    "resolve_notebook",
    "run",
    "run_prepared",
    "shipped_analyses_dir",
    "sweep",
    "validate_parameters",
]
