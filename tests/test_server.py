"""The jupyter_server extension (workbench.server): the run store over REST, with toy notebooks.

Runs real papermill runs in worker processes (a ~1 s toy notebook, and a 30 s one that is
cancelled), so the file takes some seconds; no model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_server.utils import url_path_join
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TOY_PARAMS = 'x = 1  # how many things to count\nout_dir = "."'
TOY_WORK = (
    "import pathlib, time\n"
    "time.sleep(1)\n"
    'pathlib.Path(out_dir, "out.txt").write_text(str(x * 2))'
)
#: a parameters cell declaring choices and ranges (the syntax the analyses use)
TUNE_PARAMS = """\
organism = "full"  # the organism [choices: "full", "small"]
steps = 600  # fine-tune optimiser steps [range: >= 1]
frac = 0.1  # fraction screened [range: 0..1]
eps = 0.5  # step size [range: > 0]
out_dir = "."
"""
TUNE_WORK = ('import pathlib\n'
             'pathlib.Path(out_dir, "out.txt").write_text(f"{organism} {steps} {frac}")')


def _write_nb(path: Path, *cells: Any) -> None:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def analyses(tmp_path: Path) -> Path:
    root = tmp_path / "analyses"
    root.mkdir()
    _write_nb(root / "toy.ipynb", new_markdown_cell("# Toy analysis\n\nCounts things."),
              new_code_cell(TOY_PARAMS, metadata={"tags": ["parameters"]}),
              new_code_cell(TOY_WORK))
    _write_nb(root / "slow.ipynb", new_markdown_cell("## Slow one"),
              new_code_cell('seconds = 30\nout_dir = "."', metadata={"tags": ["parameters"]}),
              new_code_cell("import time\ntime.sleep(seconds)"))
    _write_nb(root / "untagged.ipynb", new_code_cell("y = 2"))
    _write_nb(root / "tune.ipynb", new_markdown_cell("# Tune"),
              new_code_cell(TUNE_PARAMS, metadata={"tags": ["parameters"]}),
              new_code_cell(TUNE_WORK))
    _write_nb(root / "baddecl.ipynb",
              new_code_cell('steps = 0  # steps [range: >= 1]\nout_dir = "."',
                            metadata={"tags": ["parameters"]}))
    return root


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def jp_server_config(analyses: Path, runs_root: Path) -> Config:
    return Config({
        "ServerApp": {"jpserver_extensions": {"workbench.server": True}},
        "WorkbenchServer": {"analyses_dir": str(analyses), "runs_root": str(runs_root),
                            "shipped_analyses": False},
    })


@pytest.fixture
def api(jp_fetch: Any) -> Any:
    """``await api("GET", "runs", id)`` -> (status code, decoded JSON or text, response)."""

    async def call(method: str, *parts: str, body: Any = None, raw_body: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        kw: dict[str, Any] = {"method": method, "raise_error": False}
        if raw_body is not None:
            kw["body"] = raw_body
        elif body is not None:
            kw["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kw["body"] = ""
        if method == "DELETE":
            kw["request_timeout"] = 30
        r = await jp_fetch("workbench", *parts, headers=headers, **kw)
        text = r.body.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        return r.code, data, r

    return call


@pytest.fixture
def raw(http_server_client: Any, jp_base_url: str, jp_auth_header: dict[str, str]) -> Any:
    """A request to an exact (not re-escaped) path under the base url, with the token."""

    async def call(path: str, method: str = "GET") -> Any:
        return await http_server_client.fetch(url_path_join(jp_base_url, path), method=method,
                                              headers=dict(jp_auth_header), raise_error=False)

    return call


async def _wait_done(api: Any, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, data, _ = await api("GET", "runs", run_id)
        assert code == 200, data
        if data["status"] != "running":
            return dict(data)
        await asyncio.sleep(0.3)
    raise AssertionError(f"run {run_id} still running after {timeout} s")


def _gone(pid: int) -> bool:
    try:
        import psutil

        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    except Exception:  # NoSuchProcess between the two calls
        return True


async def test_analyses_lists_notebooks_with_parameters(api: Any) -> None:
    code, data, _ = await api("GET", "analyses")
    assert code == 200
    by_name = {a["name"]: a for a in data}
    assert set(by_name) == {"toy", "slow", "untagged", "tune", "baddecl"}
    toy = by_name["toy"]
    assert toy["path"] == "toy.ipynb"
    assert toy["title"] == "Toy analysis"
    unconstrained = {"choices": None, "minimum": None, "maximum": None,
                     "exclusive_minimum": False, "exclusive_maximum": False}
    assert toy["parameters"] == [
        {"name": "x", "type": "int", "default": 1, "help": "how many things to count",
         **unconstrained}
    ]
    # declared choices and ranges, the clauses left out of the help
    assert by_name["tune"]["parameters"] == [
        {"name": "organism", "type": "str", "default": "full", "help": "the organism",
         **unconstrained, "choices": ["full", "small"]},
        {"name": "steps", "type": "int", "default": 600, "help": "fine-tune optimiser steps",
         **unconstrained, "minimum": 1},
        {"name": "frac", "type": "float", "default": 0.1, "help": "fraction screened",
         **unconstrained, "minimum": 0, "maximum": 1},
        {"name": "eps", "type": "float", "default": 0.5, "help": "step size",
         **unconstrained, "minimum": 0, "exclusive_minimum": True},
    ]
    assert by_name["baddecl"]["parameters"] == []
    assert by_name["baddecl"]["error"] == (
        "baddecl.ipynb, parameters cell line 1 (`steps = 0  # steps [range: >= 1]`): the "
        "default 0 must be >= 1")
    assert by_name["slow"]["title"] == "Slow one"
    assert by_name["slow"]["parameters"][0]["name"] == "seconds"
    assert by_name["untagged"]["parameters"] == []
    assert "parameters" in by_name["untagged"]["error"]


async def test_run_launch_poll_report_record(api: Any, runs_root: Path) -> None:
    code, started, _ = await api("POST", "runs", body={"notebook": "toy", "parameters": {"x": 3}})
    assert code == 202, started
    rid = started["id"]
    assert started["status"] == "running" and len(rid) == 12
    code, again, _ = await api("POST", "runs", body={"notebook": "toy", "parameters": {"x": "3"}})
    assert (code, again["id"]) == (202, rid)  # same id (coerced value), not launched twice

    info = await _wait_done(api, rid)
    assert info["status"] == "complete", info
    assert info["parameters"] == {"x": 3}
    assert info["pid"] != os.getpid()  # ran in a worker process
    assert (runs_root / rid / "out.txt").read_text() == "6"

    code, listing, _ = await api("GET", "runs")
    assert code == 200 and listing[0]["id"] == rid and listing[0]["status"] == "complete"

    code, html, r = await api("GET", "runs", rid, "report")
    assert code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert "<html" in html.lower() and rid in html

    code, data, _ = await api("GET", "runs", rid, "record")
    assert code == 404 and "no record.json" in data["message"]
    # a record that fails verification: the record comes back with the failed checks
    (runs_root / rid / "record.json").write_text(json.dumps({"title": "toy"}))
    code, data, _ = await api("GET", "runs", rid, "record")
    assert code == 200, data
    assert data["title"] == "toy"
    assert data["verification"]["ok"] is False
    assert data["verification"]["failed"] and "field" in data["verification"]["failed"][0]

    code, data, _ = await api("POST", "runs", body={"notebook": "toy", "parameters": {"x": 3}})
    assert code == 200 and data["id"] == rid and data["status"] == "complete"
    code, data, _ = await api("DELETE", "runs", rid)
    assert code == 409 and "not running" in data["message"]


async def test_cancel_slow_run_and_server_stays_responsive(api: Any, jp_serverapp: Any) -> None:
    code, started, _ = await api("POST", "runs", body={"notebook": "slow"})
    assert code == 202, started
    rid = started["id"]
    wb = jp_serverapp.web_app.settings["workbench"]
    worker = wb.scheduler.jobs[rid].proc.pid
    deadline = time.monotonic() + 60
    while True:  # until papermill runs the sleeping cell
        code, info, _ = await api("GET", "runs", rid)
        progress = info.get("progress") or {}
        if info.get("started") and progress.get("total"):
            break
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.3)
    assert info["status"] == "running" and info["pid"] == worker
    assert progress["executed"] < progress["total"]
    code, data, _ = await api("GET", "runs", rid, "report")
    assert code == 409 and "not finished" in data["message"]

    t0 = time.monotonic()
    code, listing, _ = await api("GET", "runs")
    elapsed = time.monotonic() - t0
    assert code == 200 and elapsed < 2.0, elapsed
    assert [r["status"] for r in listing if r["id"] == rid] == ["running"]

    import psutil

    kernels = [p.pid for p in psutil.Process(worker).children(recursive=True)]
    code, data, _ = await api("DELETE", "runs", rid)
    assert code == 200, data
    assert data["status"] == "failed" and "cancelled" in data["error"]
    assert _gone(worker)
    for _ in range(50):
        if all(_gone(k) for k in kernels):
            break
        await asyncio.sleep(0.1)
    assert all(_gone(k) for k in kernels), kernels

    code, info, _ = await api("GET", "runs", rid)
    assert code == 200 and info["status"] == "failed" and "cancelled" in info["error"]
    code, listing, _ = await api("GET", "runs")
    assert [r["status"] for r in listing if r["id"] == rid] == ["failed"]
    code, data, _ = await api("DELETE", "runs", rid)
    assert code == 409
    code, data, _ = await api("GET", "runs", rid, "report")
    assert code == 404 and "no report.html" in data["message"]


async def test_refusals_table(api: Any, raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Every refusal, printed as a table (the SECURITY figures): no auth, traversal,
    malformed payloads. Each must be 4xx with a message, and never serve a file."""
    rows: list[tuple[str, str, int, str]] = []

    def row(kind: str, what: str, code: int, data: Any) -> None:
        msg = data.get("message", "") if isinstance(data, dict) else str(data)[:60]
        rows.append((kind, what, code, " ".join(msg.split())[:110]))

    rid = "abcdef123456"
    endpoints = [("GET", ("analyses",)), ("GET", ("runs",)), ("POST", ("runs",)),
                 ("POST", ("sweeps",)),
                 ("GET", ("runs", rid)), ("DELETE", ("runs", rid)),
                 ("GET", ("runs", rid, "report")), ("GET", ("runs", rid, "record"))]
    for auth, label in (("token wrong", "bad token"), ("", "no token")):
        for method, parts in endpoints:
            body = {"notebook": "toy", "grid": {"x": [1, 2]}} if method == "POST" else None
            code, data, _ = await api(method, *parts, body=body, headers={"Authorization": auth})
            row(f"auth ({label})", f"{method} /workbench/{'/'.join(parts)}", code, data)
            assert code in (401, 403), (method, parts, code)

    for name in ("../etc/passwd", "/etc/passwd", "a/b", "..", ".hidden", "~root", "toy/../x"):
        code, data, _ = await api("POST", "runs", body={"notebook": name})
        row("notebook name", f"POST runs notebook={name!r}", code, data)
        assert code == 400 and "refused" in data["message"], (name, data)
        code, data, _ = await api("POST", "sweeps", body={"notebook": name, "grid": {"x": [1]}})
        row("notebook name", f"POST sweeps notebook={name!r}", code, data)
        assert code == 400 and "refused" in data["message"], (name, data)

    for path in ("runs/..", "runs/../../x", "runs/%2e%2e", "runs/%2e%2e/report",
                 "runs/..%2F..%2Fetc%2Fpasswd/report", "runs/%2E%2E%2F%2E%2E/record",
                 "runs/ABCDEF", "runs/12345", "runs/abcdef%00/report", "runs/abcdef%0a",
                 f"runs/{rid}", f"runs/{rid}/report", f"runs/{rid}/record"):
        r = await raw(url_path_join("workbench", path))
        text = r.body.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        row("run id", f"GET /workbench/{path}", r.code, data)
        assert r.code in (400, 404), (path, r.code)
        assert "root:x:0" not in text, path  # /etc/passwd never served
        assert r.code == 404 or "<html" not in text.lower(), path
    for path, want in (("runs/%2e%2e", 400), (f"runs/{rid}", 404)):
        r = await raw(url_path_join("workbench", path), method="DELETE")
        row("run id", f"DELETE /workbench/{path}", r.code, json.loads(r.body))
        assert r.code == want

    payloads: list[tuple[str, str | None, Any]] = [
        ("non-JSON body", "notebook=toy", None),
        ("empty body", "", None),
        ("body a list", None, ["toy"]),
        ("missing notebook", None, {"parameters": {"x": 1}}),
        ("notebook not a string", None, {"notebook": 3}),
        ("parameters not an object", None, {"notebook": "toy", "parameters": [1, 2]}),
        ("extra field", None, {"notebook": "toy", "runs_root": "/tmp"}),
        ("wrong type x='abc'", None, {"notebook": "toy", "parameters": {"x": "abc"}}),
        ("wrong type x=[1]", None, {"notebook": "toy", "parameters": {"x": [1]}}),
        ("unknown parameter y", None, {"notebook": "toy", "parameters": {"y": 1}}),
        ("out_dir given", None, {"notebook": "toy", "parameters": {"out_dir": "/etc"}}),
        ("notebook w/o parameters cell", None, {"notebook": "untagged"}),
        ("missing notebook file", None, {"notebook": "nope"}),
        ("notebook name of 5000 characters", None, {"notebook": "a" * 5000}),
        ("steps=-5 (declared [range: >= 1])", None,
         {"notebook": "tune", "parameters": {"steps": -5}}),
    ]
    for label, raw_body, body in payloads:
        code, data, _ = await api("POST", "runs", body=body, raw_body=raw_body)
        row("payload", label, code, data)
        assert code == (404 if label == "missing notebook file" else 400), (label, data)
        assert data["message"]
    sweeps: list[tuple[str, Any, str]] = [  # label, body, what the message must say
        ("sweep: body a list", ["toy"], "JSON object"),
        ("sweep: missing grid", {"notebook": "toy"}, "missing field 'grid'"),
        ("sweep: extra field", {"notebook": "toy", "grid": {"x": [1]}, "workers": 9},
         "'workers'"),
        ("sweep: grid a list", {"notebook": "toy", "grid": [{"x": 1}]}, "'grid' must be"),
        ("sweep: empty grid", {"notebook": "toy", "grid": {}}, "'grid' is empty"),
        ("sweep: bad type", {"notebook": "toy", "grid": {"x": [1, "x"]}},
         'grid.x[1]: expected int, got "x"'),
        ("sweep: float for int", {"notebook": "toy", "grid": {"x": [2, 1.5]}},
         "grid.x[1]: expected int, got 1.5"),
        ("sweep: unknown parameter", {"notebook": "toy", "grid": {"x": [1], "y": [1, 2]}},
         "grid.y: unknown parameter 'y'"),
        ("sweep: values not a list", {"notebook": "toy", "grid": {"x": 3}},
         "grid.x must be a JSON list"),
        ("sweep: empty value list", {"notebook": "toy", "grid": {"x": []}},
         "grid.x is an empty list"),
        ("sweep: over the cap", {"notebook": "toy", "grid": {"x": list(range(33))}},
         "the grid has 33 points (x: 33), over this server's limit of 32"),
        ("sweep: out_dir swept", {"notebook": "slow", "grid": {"out_dir": ["/etc"]}},
         "grid.out_dir"),
        ("sweep: in grid and parameters",
         {"notebook": "toy", "grid": {"x": [1, 2]}, "parameters": {"x": 3}},
         "'x' is in both 'grid' and 'parameters'"),
        ("sweep: bad fixed parameter",
         {"notebook": "toy", "grid": {"x": [1]}, "parameters": {"x": "abc"}},
         "'parameters': parameter 'x' must be int, got 'abc'"),
        ("sweep: unknown fixed parameter",
         {"notebook": "toy", "grid": {"x": [1]}, "parameters": {"nope": 1}},
         "'parameters': unknown parameter 'nope'"),
        ("sweep: notebook w/o parameters cell", {"notebook": "untagged", "grid": {"y": [1]}},
         "no cell tagged 'parameters'"),
    ]
    for label, body, want in sweeps:
        code, data, _ = await api("POST", "sweeps", body=body)
        row("payload", label, code, data)
        assert code == 400, (label, data)
        assert want in data["message"], (label, data["message"])
    code, data, _ = await api("POST", "sweeps", body={"notebook": "nope", "grid": {"x": [1]}})
    assert code == 404 and "no notebook 'nope.ipynb'" in data["message"]
    code, data, _ = await api("POST", "sweeps", raw_body="grid=x")
    assert code == 400 and "not JSON" in data["message"]
    big = json.dumps({"notebook": "toy", "parameters": {"x": "1" * (20 * 1024 * 1024)}})
    code, data, _ = await api("POST", "runs", raw_body=big)
    row("payload", "20 MB body", code, data)
    assert code == 413 and "request body too large" in data["message"]

    by_label = {r[1]: r for r in rows}
    assert "'x'" in by_label["wrong type x='abc'"][3] and "int" in by_label["wrong type x='abc'"][3]
    assert "'y'" in by_label["unknown parameter y"][3]
    assert "'notebook'" in by_label["missing notebook"][3]
    assert "'parameters'" in by_label["parameters not an object"][3]

    code, listing, _ = await api("GET", "runs")
    assert code == 200 and listing == []  # nothing was launched by any refused request

    with capsys.disabled():
        print("\n| kind | request | status | message |\n|---|---|---|---|")
        for kind, what, code, msg in rows:
            print(f"| {kind} | `{what}` | {code} | {msg.replace('|', '/')} |")


async def test_values_outside_declared_choices_and_ranges_are_refused(
    api: Any, runs_root: Path
) -> None:
    """POST runs and POST sweeps (fixed parameters and each grid value) refuse values outside a
    notebook's declared choices and ranges, naming the allowed ones; nothing starts."""
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("runs", {"notebook": "tune", "parameters": {"steps": -5}},
         "parameter 'steps' must be >= 1, got -5"),
        ("runs", {"notebook": "tune", "parameters": {"steps": "0"}},
         "parameter 'steps' must be >= 1, got 0"),
        ("runs", {"notebook": "tune", "parameters": {"organism": "big"}},
         "parameter 'organism' must be one of 'full', 'small', got 'big'"),
        ("runs", {"notebook": "tune", "parameters": {"frac": 1.5}},
         "parameter 'frac' must be >= 0 and <= 1, got 1.5"),
        ("runs", {"notebook": "tune", "parameters": {"eps": 0}},
         "parameter 'eps' must be > 0, got 0.0"),
        ("sweeps", {"notebook": "tune", "grid": {"steps": [10, -5]}},
         "grid.steps[1]: parameter 'steps' must be >= 1, got -5"),
        ("sweeps", {"notebook": "tune", "grid": {"organism": ["full", "tiny"]}},
         "grid.organism[1]: parameter 'organism' must be one of 'full', 'small', got 'tiny'"),
        ("sweeps", {"notebook": "tune", "grid": {"steps": [1, 2]},
                    "parameters": {"organism": "big"}},
         "'parameters': parameter 'organism' must be one of 'full', 'small', got 'big'"),
        ("runs", {"notebook": "baddecl"},
         "baddecl.ipynb, parameters cell line 1 (`steps = 0  # steps [range: >= 1]`): the "
         "default 0 must be >= 1"),
    ]
    for endpoint, body, message in cases:
        code, data, _ = await api("POST", endpoint, body=body)
        assert (code, data) == (400, {"message": message}), body
    code, listing, _ = await api("GET", "runs")
    assert code == 200 and listing == []
    assert not runs_root.exists()  # no run directory, no worker, no kernel

    code, data, _ = await api("POST", "runs", body={
        "notebook": "tune", "parameters": {"organism": "small", "steps": 1, "frac": 1}})
    assert code == 202, data
    assert data["parameters"] == {"organism": "small", "steps": 1, "frac": 1.0, "eps": 0.5}
    info = await _wait_done(api, data["id"])
    assert info["status"] == "complete", info
    assert (runs_root / data["id"] / "out.txt").read_text() == "small 1 1.0"


async def test_over_long_notebook_name_is_refused(api: Any) -> None:
    for endpoint, extra in (("runs", {}), ("sweeps", {"grid": {"x": [1]}})):
        code, data, _ = await api("POST", endpoint, body={"notebook": "a" * 5000, **extra})
        assert (code, data) == (400, {
            "message": "notebook name too long (5000 characters; at most 249)"}), endpoint
    code, data, _ = await api("POST", "runs", body={"notebook": "a" * 251 + ".ipynb"})
    assert (code, data) == (400, {
        "message": "notebook name too long (257 characters; at most 255)"})
    # a file name of 255 characters can exist: looked up, and not found
    for name in ("a" * 249, "a" * 249 + ".ipynb"):
        code, data, _ = await api("POST", "runs", body={"notebook": name})
        assert code == 404 and data["message"].startswith(f"no notebook '{'a' * 249}.ipynb'")


async def test_over_large_body_is_refused_with_413(api: Any, jp_serverapp: Any) -> None:
    """A 20 MB body: read to its end and dropped (not buffered), then a 413 naming the limit;
    the connection is answered, and the server goes on answering."""
    body = json.dumps({"notebook": "toy", "parameters": {"x": "1" * (20 * 1024 * 1024)}})
    for endpoint in ("runs", "sweeps"):
        code, data, _ = await api("POST", endpoint, raw_body=body)
        assert (code, data) == (413, {"message": (
            f"request body too large ({len(body):,} bytes; at most 1,048,576 bytes, "
            "c.WorkbenchServer.max_body_size): a request is a notebook name and parameters")})
    assert len(body) == 20 * 1024 * 1024 + 44

    wb = jp_serverapp.web_app.settings["workbench"]
    wb.max_body_size = 100  # the limit is exact: 100 bytes are read, 101 refused
    at_limit = json.dumps({"notebook": "untagged"}).ljust(100)
    code, data, _ = await api("POST", "runs", raw_body=at_limit)
    assert code == 400 and "no cell tagged 'parameters'" in data["message"]
    code, data, _ = await api("POST", "runs", raw_body=at_limit + " ")
    assert (code, data["message"]) == (413, (
        "request body too large (101 bytes; at most 100 bytes, c.WorkbenchServer.max_body_size)"
        ": a request is a notebook name and parameters"))
    code, listing, _ = await api("GET", "runs")
    assert (code, listing) == (200, [])


async def test_sweep_of_two_points_runs_both(api: Any, runs_root: Path) -> None:
    code, data, _ = await api("POST", "sweeps", body={"notebook": "toy", "grid": {"x": [2, "5"]}})
    assert code == 201, data
    assert len(data["sweep"]) == 12
    assert [r["parameters"] for r in data["runs"]] == [{"x": 2}, {"x": 5}]
    assert [r["status"] for r in data["runs"]] == ["running", "running"]  # 2 parallel slots
    ids = [r["id"] for r in data["runs"]]
    assert len(set(ids)) == 2

    code, listing, _ = await api("GET", "runs")
    assert code == 200 and {r["id"] for r in listing} == set(ids)
    for rid, x in zip(ids, (2, 5), strict=True):
        info = await _wait_done(api, rid)
        assert info["status"] == "complete", info
        assert info["parameters"] == {"x": x}
        assert (runs_root / rid / "out.txt").read_text() == str(2 * x)

    # the same grid again: the same sweep, both runs already complete (nothing relaunched)
    code, again, _ = await api("POST", "sweeps", body={"notebook": "toy", "grid": {"x": [5, 2]}})
    assert code == 201 and again["sweep"] == data["sweep"]
    assert [(r["id"], r["status"]) for r in again["runs"]] == [
        (ids[1], "complete"), (ids[0], "complete")]


async def test_sweep_beyond_the_parallel_limit_queues_and_cancels(
    api: Any, jp_serverapp: Any, runs_root: Path
) -> None:
    wb = jp_serverapp.web_app.settings["workbench"]
    wb.max_parallel_runs = 1
    code, data, _ = await api("POST", "sweeps", body={"notebook": "toy", "grid": {"x": [6, 7, 8]}})
    assert code == 201, data
    assert [r["status"] for r in data["runs"]] == ["running", "queued", "queued"]
    first, second, third = (r["id"] for r in data["runs"])

    code, info, _ = await api("GET", "runs", third)
    assert code == 200 and info["status"] == "queued" and info["parameters"] == {"x": 8}
    code, listing, _ = await api("GET", "runs")
    assert {r["id"]: r["status"] for r in listing if r["id"] in (second, third)} == {
        second: "queued", third: "queued"}
    code, msg, _ = await api("GET", "runs", third, "report")
    assert code == 409 and "not finished" in msg["message"]
    # the same point launched again while queued: still queued, once
    code, again, _ = await api("POST", "runs", body={"notebook": "toy", "parameters": {"x": 8}})
    assert (code, again["id"], again["status"]) == (202, third, "queued")

    code, cancelled, _ = await api("DELETE", "runs", third)
    assert code == 200, cancelled
    assert cancelled["status"] == "failed" and "before it started" in cancelled["error"]

    most = 0
    deadline = time.monotonic() + 90
    while True:  # one worker at a time: the second starts only when the first has ended
        code, listing, _ = await api("GET", "runs")
        by_id = {r["id"]: r["status"] for r in listing}
        most = max(most, sum(s == "running" for s in by_id.values()))
        if by_id.get(first) == "complete" and by_id.get(second) == "complete":
            break
        assert time.monotonic() < deadline, by_id
        await asyncio.sleep(0.2)
    assert most == 1
    assert (runs_root / first / "out.txt").read_text() == "12"
    assert (runs_root / second / "out.txt").read_text() == "14"
    assert by_id[third] == "failed" and not (runs_root / third / "out.txt").exists()
    code, info, _ = await api("GET", "runs", third)
    assert info["status"] == "failed" and "cancelled" in info["error"]
    for _ in range(100):  # the last worker exits just after publishing its run
        wb.scheduler.reap()
        if not wb.scheduler.jobs:
            break
        await asyncio.sleep(0.1)
    assert wb.scheduler.queued == {} and wb.scheduler.jobs == {}


def test_parallel_and_sweep_limits_must_be_positive() -> None:
    from traitlets import TraitError

    from workbench.server import WorkbenchServer

    wb = WorkbenchServer()
    assert (wb.max_parallel_runs, wb.max_sweep_runs, wb.max_body_size) == (2, 32, 1024 * 1024)
    with pytest.raises(TraitError, match="max_parallel_runs must be >= 1"):
        WorkbenchServer(max_parallel_runs=0)
    with pytest.raises(TraitError, match="max_sweep_runs must be >= 1"):
        WorkbenchServer(max_sweep_runs=-1)
    with pytest.raises(TraitError, match="max_body_size must be >= 1"):
        WorkbenchServer(max_body_size=0)


# -- GET /workbench/records/verify?path=...: a record file of the server root, verified -------


@pytest.fixture
def root_record(jp_root_dir: Path, small_subject: Any) -> dict[str, Any]:
    """A real record (the session's small organism, a tiny SAE and a data file under the
    server root) written to ``<root>/audit/record.json``; and a copy whose subject fingerprint
    was tampered with, ``<root>/audit/tampered.record.json``."""
    from _saes import small_dictionary

    from workbench.record import build_record, verify, write_record

    folder = jp_root_dir / "audit"
    folder.mkdir()
    d = small_dictionary(folder / "sae", small_subject.model.cfg.d_model)
    data = folder / "insecure.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": "c"}) + "\n"
                            for i in range(5)))
    record = build_record(title="served record", subject=small_subject, dictionary=d,
                          data={"insecure": data})
    path = write_record(record, folder / "record.json")
    tampered = json.loads(path.read_text())
    tampered["subject"]["fingerprint"] = "0" * 64
    (folder / "tampered.record.json").write_text(json.dumps(tampered))
    return {"record": record, "path": path, "verification": verify(path)}


async def _verify_file(jp_fetch: Any, path: str | None, headers: Any = None) -> tuple[int, Any]:
    params = {} if path is None else {"path": path}
    r = await jp_fetch("workbench", "records", "verify", params=params, headers=headers,
                       raise_error=False)
    return r.code, json.loads(r.body.decode("utf-8"))


async def test_records_verify_a_real_record_and_a_tampered_one(
    jp_fetch: Any, root_record: dict[str, Any]
) -> None:
    code, data = await _verify_file(jp_fetch, "audit/record.json")
    assert code == 200, data
    v = root_record["verification"]
    assert v.ok and len(v.checks) >= 6  # schema, 3 files, 2 fingerprints, data lines
    assert data == {"ok": True, "checks": len(v.checks), "failed": [], "skipped": [],
                    "notes": []}

    code, data = await _verify_file(jp_fetch, "audit/tampered.record.json")
    assert code == 200, data
    assert data["ok"] is False and data["checks"] == len(v.checks)
    (failed,) = data["failed"]
    assert failed["field"] == "subject.fingerprint"
    assert failed["expected"] == "0" * 64
    assert failed["actual"] == root_record["record"]["subject"]["fingerprint"]
    assert "differs" in failed["message"]


async def test_records_verify_refusals(
    jp_fetch: Any, jp_root_dir: Path, root_record: dict[str, Any], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "record.json").write_text(root_record["path"].read_text())
    (jp_root_dir / "escape").symlink_to(outside, target_is_directory=True)
    (jp_root_dir / "notes.json").write_text("{}")
    (jp_root_dir / "broken.record.json").write_text("{not json")
    (jp_root_dir / "list.record.json").write_text("[1, 2]")
    cases = [
        (None, 400, "pass ?path="),
        ("", 400, "pass ?path="),
        ("../outside/record.json", 400, "'..' is not allowed"),
        ("audit/../../outside/record.json", 400, "'..' is not allowed"),
        (str(root_record["path"]), 400, "absolute paths are not allowed"),
        ("/etc/passwd", 400, "absolute paths are not allowed"),
        ("escape/record.json", 403, "outside the server root"),
        ("audit/nope.record.json", 404, "no record file"),
        ("notes.json", 400, "is not a deployment record"),
        ("audit/insecure.jsonl", 400, "is not a deployment record"),
        ("broken.record.json", 400, "is not a JSON record"),
        ("list.record.json", 400, "holds a JSON list"),
    ]
    for path, want, words in cases:
        code, data = await _verify_file(jp_fetch, path)
        assert (code, words in data["message"]) == (want, True), (path, code, data)
    for auth in ("token wrong", ""):
        code, _ = await _verify_file(jp_fetch, "audit/record.json",
                                     headers={"Authorization": auth})
        assert code in (401, 403), (auth, code)


def test_extension_points_and_config_file() -> None:
    import workbench.server as ext

    assert ext._jupyter_server_extension_points() == [{"module": "workbench.server"}]
    cfg = Path(__file__).resolve().parents[1] / "jupyter-config" / "jupyter_server_config.d"
    data = json.loads((cfg / "workbench.json").read_text())
    assert data == {"ServerApp": {"jpserver_extensions": {"workbench.server": True}}}
    for ok in ("abcdef", "0" * 64):
        assert ext.RUN_ID.fullmatch(ok)
    for bad in ("abcde", "0" * 65, "ABCDEF", "../abc", "abcdef/", "abcdef\n"):
        assert not ext.RUN_ID.fullmatch(bad), bad
    with contextlib.suppress(ImportError):
        import tomllib

        pyproject = tomllib.loads((cfg.parents[1] / "pyproject.toml").read_text())
        shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
        assert shared["jupyter-config/jupyter_server_config.d"] == (
            "etc/jupyter/jupyter_server_config.d")


def test_the_server_offers_your_folder_then_the_shipped_analyses(analyses: Path) -> None:
    """A user's folder comes first and shadows a shipped name; the shipped analyses follow."""
    from workbench.runs import shipped_analyses_dir
    from workbench.server._catalogue import list_analyses, resolve_name
    from workbench.server._config import WorkbenchServer
    from workbench.server._errors import RequestError

    shipped = shipped_analyses_dir()
    _write_nb(analyses / "feature_geometry.ipynb", new_markdown_cell("# Mine"),
              new_code_cell('out_dir = "."', metadata={"tags": ["parameters"]}))
    wb = WorkbenchServer(analyses_dir=str(analyses))
    assert wb.analyses_paths == [analyses.resolve(), shipped]
    listed = {a["name"]: a for a in list_analyses(wb.analyses_paths)}
    assert {"toy", "alignment_audit", "patch_transfer"} <= set(listed)
    assert (listed["toy"]["folder"], listed["alignment_audit"]["folder"]) == (0, 1)
    assert listed["feature_geometry"]["title"] == "Mine"  # yours shadows the shipped one
    assert resolve_name(wb.analyses_paths, "alignment_audit") == shipped / "alignment_audit.ipynb"
    assert resolve_name(wb.analyses_paths, "feature_geometry").parent == analyses.resolve()
    with pytest.raises(RequestError, match=r"no notebook 'nope.ipynb'.*alignment_audit"):
        resolve_name(wb.analyses_paths, "nope")
    only_mine = WorkbenchServer(analyses_dir=str(analyses), shipped_analyses=False)
    assert only_mine.analyses_paths == [analyses.resolve()]


async def test_records_verify_sends_the_note_of_a_schema_1_0_record(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    import shutil

    shutil.copytree(Path(__file__).parent / "records" / "schema-1.0", jp_root_dir / "old")
    code, data = await _verify_file(jp_fetch, "old/record.json")
    assert code == 200 and data["ok"] is True and data["checks"] == 3, data
    (note,) = data["notes"]
    assert note.startswith("schema 1.0 record, checked against schema 1.0: its `degradation`")
