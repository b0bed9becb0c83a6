"""The workbench's jupyter_server extension: the run store (:mod:`workbench.runs`) over REST.

Enabled by ``jupyter-config/jupyter_server_config.d/workbench.json`` (installed into
``etc/jupyter/jupyter_server_config.d``) or ``--ServerApp.jpserver_extensions`` with
``{"workbench.server": true}``. Every endpoint needs an authenticated user (the server's
token or login) and is authorized on the resource ``"workbench"``; bodies are JSON.

=======  ===============================  =====================================================
GET      /workbench/analyses              the notebooks of the analyses folder: ``name``,
                                          ``path`` (relative to that folder), ``title`` (first
                                          markdown heading), ``parameters`` ``[{name, type,
                                          default, help, choices, minimum, maximum,
                                          exclusive_minimum, exclusive_maximum}]`` (the
                                          declared choices and range, null when none;
                                          ``error`` when not runnable)
GET      /workbench/runs                  every run (``RunInfo.to_dict()``), newest first;
                                          running ones carry ``progress`` ``{executed, total}``;
                                          queued ones come first, ``status`` ``queued``
POST     /workbench/runs                  ``{"notebook": name, "parameters": {...}}``: the
                                          name is looked up in the analyses folder only, the
                                          parameters validated against their declared types,
                                          choices and ranges (400 naming the field and the
                                          allowed values); the run
                                          starts in a worker process: 202 ``{id, status,
                                          parameters}`` (``status`` ``queued`` while
                                          ``max_parallel_runs`` runs are running); a run
                                          already complete: 200 with its info
POST     /workbench/sweeps                ``{"notebook": name, "grid": {param: [values...]},
                                          "parameters": {...}}``: every grid value checked
                                          against the declared type, choices and range (400
                                          naming ``grid.<param>[<i>]``), at most
                                          ``max_sweep_runs``
                                          points; each point launched as a run as above: 201
                                          ``{sweep, runs: [{id, status, parameters}]}``
GET      /workbench/runs/<id>             the run's status (``status``, ``progress``,
                                          ``failing_cell``, ``error``...); 404 if unknown
DELETE   /workbench/runs/<id>             cancel a running run: its worker process group and
                                          kernel are killed and the run published ``failed``
                                          with ``error`` saying it was cancelled (a queued run
                                          is published so without starting); 409 when it is
                                          not running, 404 if unknown
GET      /workbench/runs/<id>/report      ``report.html`` (text/html, CSP-sandboxed)
GET      /workbench/runs/<id>/record      ``record.json`` plus ``verification``
                                          ``{ok, checks, failed: [{field, expected, actual,
                                          message}], skipped}`` (:func:`workbench.record.verify`)
GET      /workbench/records/verify        ``?path=<a record file, relative to the server's
                                          root_dir>``: that ``verification`` object for any
                                          ``record.json`` / ``*.record.json`` under the root
                                          (the record viewer's check); ``..``, absolute paths
                                          and symlinks out of the root refused
=======  ===============================  =====================================================

Run ids in URLs must match ``^[0-9a-f]{6,64}$`` (else 400); notebook names are at most 255
characters (else 400). Errors are ``{"message": ...}``. Configuration (``c.WorkbenchServer``):
``analyses_dir`` (default :func:`workbench.runs.analyses_dir`), ``runs_root`` (default
``<root_dir>/runs``), ``kernel``, ``max_parallel_runs`` (default 2: runs executing at once;
more wait as ``queued``, in memory, so a server restart forgets them), ``max_sweep_runs``
(default 32: grid points per sweep) and ``max_body_size`` (default 1 MiB: a larger POST body
is refused with 413).

The modules, from the bottom up: ``_errors`` (a refused request), ``_catalogue`` (the analyses
folder: names, listing), ``_sweep`` (grids), ``_status`` (runs on disk, ids, progress),
``_processes`` (worker processes), ``_scheduler`` (running and queued runs), ``_config``
(``c.WorkbenchServer``), ``_requests`` (bodies -> prepared runs), ``_base`` (the handler base:
auth, replies, bounded bodies), ``_records`` and ``_handlers`` (the routes); ``_worker`` is the
worker process's entry point. The server reaches the run store through
:mod:`workbench.runs`' public API only.
"""

from __future__ import annotations

from typing import Any

from workbench.server._config import WorkbenchServer
from workbench.server._status import RUN_ID

__all__ = ["RUN_ID", "WorkbenchServer"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "workbench.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from workbench.server._handlers import handlers

    wb = WorkbenchServer(parent=serverapp, root_dir=str(getattr(serverapp, "root_dir", "")))
    web_app = serverapp.web_app
    web_app.settings["workbench"] = wb
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    serverapp.log.info("workbench server extension: analyses %s, runs %s", wb.analyses_paths,
                       wb.runs_path)
