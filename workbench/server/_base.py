"""What every workbench handler shares: authentication, JSON replies and refusals, blocking
work off the event loop, and request bodies read with a size limit.

Handlers subclass :class:`WorkbenchHandler` (jupyter_server's ``APIHandler``: the server's
token or login, authorized on the resource ``"workbench"``) and answer a
:class:`~workbench.server._errors.RequestError` with :meth:`WorkbenchHandler.refuse`.
:class:`BodyHandler` streams its request body (tornado's ``stream_request_body``) and keeps at
most ``c.WorkbenchServer.max_body_size`` bytes of it: a larger body is read to its end and
discarded, then answered 413 naming the limit (a reply, not a dropped connection).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler

from workbench.server._config import WorkbenchServer
from workbench.server._errors import RequestError
from workbench.server._status import check_id

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Blocking work (notebook inspection, hashing, disk scans) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class WorkbenchHandler(APIHandler):
    auth_resource = "workbench"

    @property
    def wb(self) -> WorkbenchServer:
        wb: WorkbenchServer = self.settings["workbench"]
        return wb

    def reply(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj, default=str))

    def refuse(self, err: RequestError) -> None:
        self.reply({"message": err.message}, err.status)

    async def run_file(self, run_id: str, field: str, name: str, missing: str) -> Path:
        """``<run dir>/<name>`` of a published run (``RunInfo.<field>`` set); else 404 ``run <id>
        has no <name><missing>`` (``missing`` formatted with the run's ``status``)."""
        check_id(run_id)
        info = await in_thread(self.wb.scheduler.published, run_id)
        if getattr(info, field) is None or info.run_dir is None:
            raise RequestError(404, f"run {info.id} has no {name}"
                               + missing.format(status=info.status))
        return Path(info.run_dir, name)


@tornado.web.stream_request_body
class BodyHandler(WorkbenchHandler):
    """A handler whose body is read in chunks, at most ``max_body_size`` bytes kept."""

    _size = 0
    _chunks: list[bytes] | None = None

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._chunks is None:
            self._chunks = []
        if self._size <= self.wb.max_body_size:
            self._chunks.append(chunk)
        else:
            self._chunks.clear()  # over the limit: nothing more is kept

    def body(self) -> bytes:
        """The request body; 413 naming the limit when it was over ``max_body_size``."""
        limit = self.wb.max_body_size
        if self._size > limit:
            raise RequestError(413, f"request body too large ({self._size:,} bytes; at most "
                               f"{limit:,} bytes, c.WorkbenchServer.max_body_size): a request "
                               "is a notebook name and parameters")
        return b"".join(self._chunks or ())
