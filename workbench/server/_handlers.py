"""The REST routes: ``/workbench/analyses``, ``/workbench/runs[/<id>[/report|/record]]``,
``/workbench/sweeps`` and ``/workbench/records/verify``, each a thin handler over the
catalogue, the request checks and the scheduler."""

from __future__ import annotations

import asyncio

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from workbench.server._base import BodyHandler, WorkbenchHandler, in_thread
from workbench.server._catalogue import list_analyses
from workbench.server._errors import RequestError
from workbench.server._records import RecordHandler, RecordVerifyHandler
from workbench.server._requests import json_body, run_request, sweep_request
from workbench.server._status import check_id
from workbench.server._sweep import sweep_id

#: how long a cancelled worker gets to exit on SIGTERM before it is killed
CANCEL_GRACE_S = 5.0


class AnalysesHandler(WorkbenchHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await in_thread(list_analyses, self.wb.analyses_paths))


class RunsHandler(BodyHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await in_thread(self.wb.scheduler.listing))

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = json_body(self.body())
            prep = await in_thread(run_request, self.wb, body)
            ((status, out),) = await in_thread(self.wb.scheduler.launch_many, [prep])
        except RequestError as e:
            return self.refuse(e)
        self.reply(out, status)


class SweepsHandler(BodyHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = json_body(self.body())
            preps = await in_thread(sweep_request, self.wb, body)
            launched = await in_thread(self.wb.scheduler.launch_many, preps)
        except RequestError as e:
            return self.refuse(e)
        runs = [{"id": out["id"], "status": out["status"], "parameters": out["parameters"]}
                for _, out in launched]
        self.reply({"sweep": sweep_id(p.id for p in preps), "runs": runs}, 201)


class RunHandler(WorkbenchHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        try:
            check_id(run_id)
            self.reply(await in_thread(self.wb.scheduler.status, run_id))
        except RequestError as e:
            self.refuse(e)

    @tornado.web.authenticated
    @authorized
    async def delete(self, run_id: str) -> None:
        scheduler = self.wb.scheduler
        try:
            check_id(run_id)
            cancelled = await in_thread(scheduler.cancel_queued, run_id)
            if cancelled is not None:  # it never started
                return self.reply(cancelled)
            job = scheduler.kill(run_id)
        except RequestError as e:
            return self.refuse(e)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_GRACE_S
        while job.proc.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if job.proc.poll() is None:
            scheduler.force_kill(job)
        self.reply(await in_thread(scheduler.mark_cancelled, job))


class ReportHandler(WorkbenchHandler):
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
            html = await in_thread(path.read_bytes)
        except RequestError as e:
            return self.refuse(e)
        self.finish(html, set_content_type="text/html; charset=UTF-8")


def handlers(base_url: str) -> list[tuple[str, type[APIHandler]]]:
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
