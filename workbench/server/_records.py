"""Deployment records over REST: a run's record with its verification, and any record file of
the server's root verified.

``GET /workbench/runs/<id>/record`` answers the run's ``record.json`` plus ``verification``;
``GET /workbench/records/verify?path=<path>`` answers only the ``verification`` of a record
file under the server's contents root. The JupyterLab record viewer (a document opened from
the file browser) has the record's JSON but not the files it fingerprints, so it asks the
second. ``verification`` is :func:`workbench.record.verify` as JSON: ``{ok, checks, failed:
[{field, expected, actual, message}], skipped}`` (or ``{ok: false, error, checks: 0, failed:
[]}`` when the record cannot be verified at all).

``path`` is what the file browser gives: relative to the server's contents root, ``/``
separated. Refused with a message naming the fix: no ``path``, an absolute path, ``..`` parts
or NUL bytes (400), a path that resolves outside the root, e.g. through a symlink, or a hidden
file when the contents manager hides them (403), no such file (404), a file that is not named
like a record (``record.json`` or ``*.record.json``) or not a JSON object (400).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from workbench.server._base import WorkbenchHandler, in_thread
from workbench.server._errors import RequestError

#: the file names the record viewer opens (the lab extension's file-type pattern)
RECORD_NAME = re.compile(r"(^|[./])record\.json$")


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
        "notes": list(v.notes),
    }


def _record_with_verification(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RequestError(500, f"record.json is unreadable: {e}") from None
    if not isinstance(record, dict):
        raise RequestError(500, "record.json is not a JSON object")
    return {**record, "verification": verification(path)}


def resolve_record_path(root: str | Path, path: str, allow_hidden: bool = True) -> Path:
    """The record file ``path`` (relative to ``root``) names, refusing anything outside ``root``.

    Raises:
        RequestError: 400 for an empty, absolute or ``..`` path, or a name that is not a
            record's; 403 when it resolves outside ``root`` (a symlink) or is hidden and hidden
            files are not allowed; 404 when there is no such file.
    """
    if not path or not path.strip("/"):
        raise RequestError(400, "pass ?path=<the record's path relative to the server root, "
                           "as the file browser shows it>, e.g. ?path=runs/abc123/record.json")
    if "\x00" in path or "\\" in path:
        raise RequestError(400, f"path {path!r} refused: NUL bytes and backslashes are not "
                           "allowed; use /-separated paths relative to the server root")
    if path.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", path):
        raise RequestError(400, f"path {path!r} refused: absolute paths are not allowed; pass "
                           "the path relative to the server root (as the file browser shows it)")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise RequestError(400, f"path {path!r} refused: '..' is not allowed; pass the path "
                           "relative to the server root without '..'")
    if not allow_hidden and any(p.startswith(".") for p in parts):
        raise RequestError(403, f"path {path!r} refused: hidden files are not served "
                           "(ContentsManager.allow_hidden is False)")
    name = parts[-1]
    if not RECORD_NAME.search(name):
        raise RequestError(400, f"{name!r} is not a deployment record: the viewer verifies files "
                           "named record.json or <name>.record.json")
    base = Path(root).expanduser().resolve()
    target = base.joinpath(*parts)
    resolved = target.resolve()
    if not resolved.is_relative_to(base):
        raise RequestError(403, f"path {path!r} refused: it resolves outside the server root "
                           "(a symlink pointing elsewhere); copy the record into the root")
    if not resolved.is_file():
        raise RequestError(404, f"no record file at {path!r} under the server root")
    return resolved


def verify_record_file(path: Path) -> dict[str, Any]:
    """The ``verification`` object of a record file (the same as the run-record endpoint's).

    Raises:
        RequestError: 400 when the file is not JSON or not a JSON object.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RequestError(400, f"{path.name} is not a JSON record ({e}); write records with "
                           "workbench.record.write_record") from None
    if not isinstance(record, dict):
        raise RequestError(400, f"{path.name} holds a JSON {type(record).__name__}, not a record "
                           "(a JSON object)")
    return verification(path)


class RecordHandler(WorkbenchHandler):
    """``GET /workbench/runs/<id>/record``: the run's record plus ``verification``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        try:
            path = await self.run_file(run_id, "record", "record.json", ": its notebook did "
                                       "not write a deployment record to out_dir")
            out = await in_thread(_record_with_verification, path)
        except RequestError as e:
            return self.refuse(e)
        self.reply(out)


class RecordVerifyHandler(WorkbenchHandler):
    """``GET /workbench/records/verify?path=<path relative to the server root>``."""

    def _root(self) -> str:
        root = getattr(self.contents_manager, "root_dir", None) or self.settings.get(
            "server_root_dir", "")
        return str(root)

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", True))
            path = resolve_record_path(self._root(), self.get_query_argument("path", ""),
                                       allow_hidden=allow_hidden)
            out = await in_thread(verify_record_file, path)
        except RequestError as e:
            return self.refuse(e)
        self.reply(out)
