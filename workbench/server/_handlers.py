"""REST handlers: ``/workbench/analyses``, ``/workbench/runs[/<id>[/report|/record]]``,
``/workbench/sweeps``."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from workbench.server._app import RequestError, WorkbenchServer

T = TypeVar("T")
#: how long a cancelled worker gets to exit on SIGTERM before it is killed
CANCEL_GRACE_S = 5.0


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Blocking work (notebook inspection, hashing, disk scans) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class _Base(APIHandler):
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
        self.wb.check_id(run_id)
        info = await _in_thread(self.wb.published, run_id)
        if getattr(info, field) is None or info.run_dir is None:
            raise RequestError(404, f"run {info.id} has no {name}"
                               + missing.format(status=info.status))
        return Path(info.run_dir, name)


class AnalysesHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await _in_thread(self.wb.analyses))


class RunsHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await _in_thread(self.wb.runs))

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = _json_body(self.request.body)
            prep = await _in_thread(self.wb.prepare, body)
            status, out = await _in_thread(self.wb.launch, prep)
        except RequestError as e:
            return self.refuse(e)
        self.reply(out, status)


class SweepsHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = _json_body(self.request.body)
            preps = await _in_thread(self.wb.prepare_sweep, body)
            launched = await _in_thread(self.wb.launch_many, preps)
        except RequestError as e:
            return self.refuse(e)
        runs = [{"id": out["id"], "status": out["status"], "parameters": out["parameters"]}
                for _, out in launched]
        self.reply({"sweep": sweep_id(p.id for p in preps), "runs": runs}, 201)


class RunHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        try:
            self.wb.check_id(run_id)
            self.reply(await _in_thread(self.wb.status, run_id))
        except RequestError as e:
            self.refuse(e)

    @tornado.web.authenticated
    @authorized
    async def delete(self, run_id: str) -> None:
        try:
            self.wb.check_id(run_id)
            cancelled = await _in_thread(self.wb.cancel_queued, run_id)
            if cancelled is not None:  # it never started
                return self.reply(cancelled)
            job = self.wb.kill(run_id)
        except RequestError as e:
            return self.refuse(e)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_GRACE_S
        while job.proc.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if job.proc.poll() is None:
            self.wb.force_kill(job)
        self.reply(await _in_thread(self.wb.mark_cancelled, job))


class ReportHandler(_Base):
    @property
    def content_security_policy(self) -> str:
        # notebook output is arbitrary HTML: confine its scripts to a unique origin, as
        # jupyter_server's FilesHandler does, so they cannot call this server's API
        return "frame-ancestors 'self'; sandbox allow-scripts allow-popups"

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        try:
            path = await self.run_file(run_id, "report", "report.html",
                                       " (status {status}; see its log.txt)")
            html = await _in_thread(path.read_bytes)
        except RequestError as e:
            return self.refuse(e)
        self.finish(html, set_content_type="text/html; charset=UTF-8")


class RecordHandler(_Base):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        try:
            path = await self.run_file(run_id, "record", "record.json", ": its notebook did "
                                       "not write a deployment record to out_dir")
            out = await _in_thread(_record_with_verification, path)
        except RequestError as e:
            return self.refuse(e)
        self.reply(out)


def _json_body(raw: bytes | None) -> Any:
    try:
        return json.loads(raw or b"")
    except ValueError as e:
        raise RequestError(400, f"the body is not JSON: {e}") from None


def sweep_id(run_ids: Iterable[str]) -> str:
    """A sweep's label: a hash of its runs' ids (the same grid twice is the same sweep)."""
    return hashlib.sha256(",".join(sorted(run_ids)).encode()).hexdigest()[:12]


def _record_with_verification(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RequestError(500, f"record.json is unreadable: {e}") from None
    if not isinstance(record, dict):
        raise RequestError(500, "record.json is not a JSON object")
    return {**record, "verification": verification(path)}


def verification(path: Path) -> dict[str, Any]:
    """:func:`workbench.record.verify` of a record file as JSON: ``{ok, checks, failed: [{field,
    expected, actual, message}], skipped}``, or ``{ok: false, error, checks: 0, failed: []}``."""
    from workbench.record import verify

    try:
        v = verify(path)
    except (OSError, ValueError) as e:
        return {"ok": False, "error": str(e), "checks": 0, "failed": []}
    return {
        "ok": v.ok,
        "checks": len(v.checks),
        "failed": [{"field": c.field, "expected": c.expected, "actual": c.actual,
                    "message": c.message} for c in v.failures()],
        "skipped": list(v.skipped),
    }


def handlers(base_url: str) -> list[tuple[str, type[APIHandler]]]:
    from workbench.server._records import RecordVerifyHandler  # it imports this module

    def url(*parts: str) -> str:
        return url_path_join(base_url, "workbench", *parts)

    rid = r"([^/]+)"
    return [
        (url("records", "verify"), RecordVerifyHandler),
        (url("analyses"), AnalysesHandler),
        (url("runs"), RunsHandler),
        (url("sweeps"), SweepsHandler),
        (url("runs", rid), RunHandler),
        (url("runs", rid, "report"), ReportHandler),
        (url("runs", rid, "record"), RecordHandler),
    ]
