"""``c.WorkbenchServer``: the extension's configuration, and the scheduler built from it.

One :class:`WorkbenchServer` per Jupyter server, in ``web_app.settings["workbench"]``: where
the analyses are (the catalogue, :mod:`workbench.server._catalogue`), where runs are written,
the kernel runs use, and the limits on requests (body size, grid size) and on parallel workers.
Its :attr:`WorkbenchServer.scheduler` (:mod:`workbench.server._scheduler`) holds the runs this
server launched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from traitlets import Bool, Int, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from workbench.runs import PreparedRun, analyses_dirs, shipped_analyses_dir
from workbench.server._processes import Job, start_worker
from workbench.server._scheduler import Scheduler

#: the default of ``c.WorkbenchServer.max_body_size``: 1 MiB, far above a run or sweep request
MAX_BODY_SIZE = 1024 * 1024


class WorkbenchServer(LoggingConfigurable):
    """Configuration of the workbench server extension (``c.WorkbenchServer.*``)."""

    analyses_dir = Unicode(
        "", help="a folder of your own analysis notebooks, offered first (a name there shadows "
        "a shipped analysis of the same name); runs are launched from the analyses folders by "
        "name only. $WORKBENCH_ANALYSES folders come next, then the shipped analyses"
    ).tag(config=True)
    shipped_analyses = Bool(
        True, help="also offer the analyses that ship with workbench (workbench.runs."
        "shipped_analyses_dir()) after your own folders"
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
    max_body_size = Int(
        MAX_BODY_SIZE, help="the largest request body (bytes) POST /workbench/runs and "
        "/workbench/sweeps read; a larger one is refused with 413 (its bytes are discarded as "
        "they arrive, not buffered)"
    ).tag(config=True)
    root_dir = Unicode("", help="the server's root_dir (set by the extension loader)")

    @default("runs_root")
    def _default_runs_root(self) -> str:
        return str(Path(self.root_dir or os.getcwd()).expanduser() / "runs")

    @validate("max_parallel_runs", "max_sweep_runs", "max_body_size")
    def _at_least_one(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < 1:
            raise TraitError(f"WorkbenchServer.{proposal['trait'].name} must be >= 1, not {value}")
        return value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scheduler = Scheduler(self.runs_path, start=self._start_worker,
                                   limit=lambda: self.max_parallel_runs, log=self.log)

    def _start_worker(self, prep: PreparedRun) -> Job:
        return start_worker(prep, runs_root=self.runs_path, analyses=self.analyses_paths,
                            kernel=self.kernel)

    @property
    def analyses_paths(self) -> list[Path]:
        """The analyses folders, in lookup order: ``analyses_dir``, ``$WORKBENCH_ANALYSES``,
        then (with ``shipped_analyses``) the shipped analyses."""
        own = [Path(self.analyses_dir).expanduser().resolve()] if self.analyses_dir else []
        found = analyses_dirs()
        rest = found if self.shipped_analyses else found[:-1]  # the shipped folder comes last
        return list(dict.fromkeys([*own, *rest]))

    @property
    def analyses_path(self) -> Path:
        """The first analyses folder (where a user's own notebooks are)."""
        paths = self.analyses_paths
        return paths[0] if paths else shipped_analyses_dir()

    @property
    def runs_path(self) -> Path:
        return Path(self.runs_root).expanduser().resolve()

    def scrub(self, message: str) -> str:
        """A message with this server's own paths replaced by ``<analyses>`` / ``<runs>``."""
        for folder in self.analyses_paths:
            message = message.replace(str(folder), "<analyses>")
        return message.replace(str(self.runs_path), "<runs>")
